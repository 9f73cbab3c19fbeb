/*
 * api/account: DescribeLimits, DescribeAccountSettings, UpdateAccountSettings. Account settings live in
 * the catalog's settings table (keys "commitment.status", "commitment.started_ms", "commitment.ended_ms").
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api/api.h"

void op_describe_limits(api_call_t *c)
{
    catalog_t *cat = c->srv->catalog;
    size_t open = 0, on_demand = 0;
    for (size_t i = 0; i < catalog_stream_count(cat); i++) {
        const stream_t *s = catalog_stream_at(cat, i);
        if (s->cfg.mode == STREAM_ON_DEMAND) {
            on_demand++;
        } else {
            open += stream_open_shards(s);
        }
    }
    jsonw_key(&c->w, "ShardLimit");
    jsonw_int(&c->w, c->srv->cfg.shard_limit);
    jsonw_key(&c->w, "OpenShardCount");
    jsonw_int(&c->w, (int64_t)open);
    jsonw_key(&c->w, "OnDemandStreamCount");
    jsonw_int(&c->w, (int64_t)on_demand);
    jsonw_key(&c->w, "OnDemandStreamCountLimit");
    jsonw_int(&c->w, c->srv->cfg.on_demand_stream_limit);
    api_ok(c);
}

static int64_t setting_ms(catalog_t *cat, const char *key)
{
    char v[32];
    return catalog_get_setting(cat, key, v, sizeof v) == 0 ? strtoll(v, NULL, 10) : 0;
}

static void write_commitment(api_call_t *c)
{
    catalog_t *cat = c->srv->catalog;
    char status[32] = "DISABLED";
    catalog_get_setting(cat, "commitment.status", status, sizeof status);
    int64_t started = setting_ms(cat, "commitment.started_ms");
    int64_t ended = setting_ms(cat, "commitment.ended_ms");
    jsonw_key(&c->w, "MinimumThroughputBillingCommitment");
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "Status");
    jsonw_str(&c->w, status);
    if (started != 0) {
        jsonw_key(&c->w, "StartedAt");
        jsonw_timestamp_ms(&c->w, started);
    }
    if (ended != 0 && strcmp(status, "DISABLED") == 0) {
        jsonw_key(&c->w, "EndedAt");
        jsonw_timestamp_ms(&c->w, ended);
    }
    jsonw_obj_end(&c->w);
}

void op_describe_account_settings(api_call_t *c)
{
    write_commitment(c);
    api_ok(c);
}

void op_update_account_settings(api_call_t *c)
{
    catalog_t *cat = c->srv->catalog;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(c->input, "MinimumThroughputBillingCommitment");
    const char *want = cJSON_GetObjectItemCaseSensitive(m, "Status")->valuestring;
    char now[32];
    snprintf(now, sizeof now, "%" PRId64, c->now_ms);
    int rc = catalog_set_setting(cat, "commitment.status", want);
    if (rc == 0) {
        rc = catalog_set_setting(cat, strcmp(want, "ENABLED") == 0 ? "commitment.started_ms" : "commitment.ended_ms",
                                 now);
    }
    if (rc != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot store account settings.");
        return;
    }
    write_commitment(c);
    api_ok(c);
}
