/* Unit tests for store/catalog: create, update, tags, settle, drop, and that everything survives reopen. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/catalog.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/eddy-catalog-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static catalog_t *open_catalog(void)
{
    char err[256] = "";
    catalog_t *cat = catalog_open(dir, err, sizeof err);
    cr_assert_not_null(cat, "catalog_open: %s", err);
    return cat;
}

static stream_config_t active_config(void)
{
    stream_config_t cfg = {0};
    cfg.status = STREAM_ACTIVE;
    cfg.target_status = STREAM_ACTIVE;
    cfg.retention_hours = 24;
    cfg.max_record_kib = 1024;
    return cfg;
}

TestSuite(catalog, .init = setup, .fini = teardown);

Test(catalog, create_find_and_order)
{
    catalog_t *cat = open_catalog();
    stream_config_t cfg = active_config();
    catalog_lock(cat);
    cr_assert_eq(catalog_create_stream(cat, "b", 1000, &cfg, 2, NULL, 0, NULL), 0);
    cr_assert_eq(catalog_create_stream(cat, "a", 2000, &cfg, 3, NULL, 0, NULL), 0);
    cr_assert_eq(catalog_create_stream(cat, "c", 3000, &cfg, 1, NULL, 0, NULL), 0);
    cr_assert_eq(catalog_stream_count(cat), 3);
    cr_assert_str_eq(catalog_stream_at(cat, 0)->name, "a");
    cr_assert_str_eq(catalog_stream_at(cat, 2)->name, "c");
    cr_assert_eq(catalog_stream_after(cat, "a"), 1);
    cr_assert_eq(catalog_stream_after(cat, "aa"), 1);
    stream_t *s = catalog_find(cat, "a");
    cr_assert_not_null(s);
    cr_assert_eq(s->shard_count, 3);
    cr_assert_eq(s->shards[2].end_hash, U128_MAX);
    cr_assert_eq(s->shards[1].start_hash, s->shards[0].end_hash + 1);
    cr_assert_null(catalog_find(cat, "zz"));
    catalog_unlock(cat);
    catalog_close(cat);
}

Test(catalog, everything_survives_reopen)
{
    catalog_t *cat = open_catalog();
    stream_config_t cfg = active_config();
    tag_t tags[] = {{"team", "data"}, {"env", "dev"}};
    catalog_lock(cat);
    stream_t *s = NULL;
    cr_assert_eq(catalog_create_stream(cat, "orders", 1234, &cfg, 4, tags, 2, &s), 0);
    cfg.retention_hours = 48;
    cfg.encrypted = true;
    snprintf(cfg.key_id, sizeof cfg.key_id, "alias/aws/kinesis");
    cfg.shard_metrics = METRIC_INCOMING_BYTES | METRIC_ITERATOR_AGE_MILLISECONDS;
    cfg.mode = STREAM_ON_DEMAND;
    cr_assert_eq(catalog_update_config(cat, s, &cfg), 0);
    tag_t more[] = {{"team", "platform"}};
    cr_assert_eq(catalog_put_tags(cat, s, NULL, more, 1), 0);
    const char *gone[] = {"env"};
    cr_assert_eq(catalog_remove_tags(cat, s, NULL, gone, 1), 0);
    cr_assert_eq(catalog_set_setting(cat, "k", "v"), 0);
    catalog_unlock(cat);
    catalog_close(cat);

    cat = open_catalog();
    catalog_lock(cat);
    s = catalog_find(cat, "orders");
    cr_assert_not_null(s);
    cr_assert_eq(s->created_ms, 1234);
    cr_assert_eq(s->cfg.retention_hours, 48);
    cr_assert(s->cfg.encrypted);
    cr_assert_str_eq(s->cfg.key_id, "alias/aws/kinesis");
    cr_assert_eq(s->cfg.mode, STREAM_ON_DEMAND);
    cr_assert_eq(s->cfg.shard_metrics, METRIC_INCOMING_BYTES | METRIC_ITERATOR_AGE_MILLISECONDS);
    cr_assert_eq(s->shard_count, 4);
    cr_assert_eq(s->next_shard_index, 4);
    for (size_t i = 0; i < 4; i++) {
        u128 start, end;
        u128_even_range((uint32_t)i, 4, &start, &end);
        cr_assert(s->shards[i].start_hash == start && s->shards[i].end_hash == end);
        cr_assert_eq(s->shards[i].parent, -1);
    }
    cr_assert_eq(s->tag_count, 1);
    cr_assert_str_eq(catalog_find_tag(s, NULL, "team")->value, "platform");
    cr_assert_null(catalog_find_tag(s, NULL, "env"));
    char v[8];
    cr_assert_eq(catalog_get_setting(cat, "k", v, sizeof v), 0);
    cr_assert_str_eq(v, "v");
    catalog_unlock(cat);
    catalog_close(cat);
}

Test(catalog, settle_applies_due_transitions)
{
    catalog_t *cat = open_catalog();
    stream_config_t cfg = active_config();
    cfg.status = STREAM_CREATING;
    cfg.status_due_ms = 5000;
    catalog_lock(cat);
    cr_assert_eq(catalog_create_stream(cat, "s", 4000, &cfg, 1, NULL, 0, NULL), 0);
    cfg.status = STREAM_DELETING;
    cfg.target_status = STREAM_DELETING;
    cfg.status_due_ms = 6000;
    cr_assert_eq(catalog_create_stream(cat, "t", 4000, &cfg, 1, NULL, 0, NULL), 0);
    catalog_settle(cat, 4999);
    cr_assert_eq(catalog_find(cat, "s")->cfg.status, STREAM_CREATING);
    catalog_settle(cat, 5000);
    cr_assert_eq(catalog_find(cat, "s")->cfg.status, STREAM_ACTIVE);
    cr_assert_not_null(catalog_find(cat, "t"));
    catalog_settle(cat, 6000);
    cr_assert_null(catalog_find(cat, "t"));
    catalog_unlock(cat);
    catalog_close(cat);

    cat = open_catalog();
    catalog_lock(cat);
    cr_assert_eq(catalog_find(cat, "s")->cfg.status, STREAM_ACTIVE);
    cr_assert_null(catalog_find(cat, "t"));
    catalog_unlock(cat);
    catalog_close(cat);
}

Test(catalog, drop_removes_rows)
{
    catalog_t *cat = open_catalog();
    stream_config_t cfg = active_config();
    tag_t tags[] = {{"k", "v"}};
    catalog_lock(cat);
    stream_t *s = NULL;
    cr_assert_eq(catalog_create_stream(cat, "x", 1, &cfg, 2, tags, 1, &s), 0);
    cr_assert_eq(catalog_drop_stream(cat, s), 0);
    cr_assert_eq(catalog_stream_count(cat), 0);
    /* the same name can be created again, with no leftover tags or shards */
    cr_assert_eq(catalog_create_stream(cat, "x", 2, &cfg, 1, NULL, 0, &s), 0);
    catalog_unlock(cat);
    catalog_close(cat);
    cat = open_catalog();
    catalog_lock(cat);
    s = catalog_find(cat, "x");
    cr_assert_eq(s->shard_count, 1);
    cr_assert_eq(s->tag_count, 0);
    catalog_unlock(cat);
    catalog_close(cat);
}

Test(catalog, shard_ids)
{
    uint32_t i;
    cr_assert(shard_id_parse("shardId-000000000007", &i) && i == 7);
    cr_assert(shard_id_parse("shardId-7", &i) && i == 7);
    cr_assert(shard_id_parse("12", &i) && i == 12);
    cr_assert_not(shard_id_parse("shardId-", &i));
    cr_assert_not(shard_id_parse("shard-1", &i));
    cr_assert_not(shard_id_parse("shardId-99999999999", &i));
    char id[32];
    shard_id_format(3, id);
    cr_assert_str_eq(id, "shardId-000000000003");
}

Test(catalog, unwritable_folder_fails_cleanly)
{
    char err[256] = "";
    cr_assert_null(catalog_open("/proc/nonexistent-eddy", err, sizeof err));
    cr_assert(strlen(err) > 0);
}
