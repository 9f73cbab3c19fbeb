/*
 * api/streams: stream lifecycle and configuration: CreateStream, DeleteStream, DescribeStream,
 * DescribeStreamSummary, ListStreams, retention, stream mode, enhanced monitoring, encryption (the records
 * appended after StartStreamEncryption are encrypted at rest under the KeyId's master key, which must
 * exist: docs/format/keys.md) and maximum record size. Every handler runs under the catalog's write lock
 * (taken by the protocol layer).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "server/api/api.h"
#include "server/api/tags.h"
#include "server/dataplane.h"

#define RETENTION_MIN_HOURS 24
#define RETENTION_MAX_HOURS 8760
#define DEFAULT_RETENTION_HOURS 24
#define DEFAULT_MAX_RECORD_KIB 1024
#define ON_DEMAND_SHARDS 4
#define LIST_STREAMS_DEFAULT_LIMIT 100
#define DESCRIBE_STREAM_DEFAULT_LIMIT 100
#define NEXT_TOKEN_TTL_MS (300 * 1000)

static size_t on_demand_streams(catalog_t *cat)
{
    size_t n = 0;
    for (size_t i = 0; i < catalog_stream_count(cat); i++) {
        n += catalog_stream_at(cat, i)->cfg.mode == STREAM_ON_DEMAND;
    }
    return n;
}

/* Returns the requested StreamModeDetails.StreamMode, or PROVISIONED when absent. */
static stream_mode_t requested_mode(const api_call_t *c)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c->input, "StreamModeDetails");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(d, "StreamMode");
    return cJSON_IsString(m) && strcmp(m->valuestring, "ON_DEMAND") == 0 ? STREAM_ON_DEMAND : STREAM_PROVISIONED;
}

void op_create_stream(api_call_t *c)
{
    catalog_t *cat = c->srv->catalog;
    const char *name = api_str(c, "StreamName");
    stream_mode_t mode = requested_mode(c);
    int64_t shard_count = 0;
    bool has_count = api_int(c, "ShardCount", &shard_count);

    if (catalog_find(cat, name) != NULL) {
        api_error(c, KERR_RESOURCE_IN_USE, "Stream %s under account %s already exists.", name,
                  c->srv->cfg.account_id);
        return;
    }
    size_t creating = 0;
    for (size_t i = 0; i < catalog_stream_count(cat); i++) {
        creating += catalog_stream_at(cat, i)->cfg.status == STREAM_CREATING;
    }
    if (creating >= 5) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "Account %s already has %zu streams in the CREATING state; at most 5 can be CREATING at a time.",
                  c->srv->cfg.account_id, creating);
        return;
    }
    if (mode == STREAM_PROVISIONED && !has_count) {
        api_error(c, KERR_INVALID_ARGUMENT, "ShardCount is required for a stream in PROVISIONED mode.");
        return;
    }
    tag_list_t tags;
    if (!tags_from_input(c, cJSON_GetObjectItemCaseSensitive(c->input, "Tags"), &tags)) {
        return;
    }
    if (tags.count > TAGS_PER_STREAM_MAX) {
        tags_dispose(&tags);
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Failed to create stream %s under account %s because a given stream cannot have more than %d "
                  "tags associated with it.",
                  name, c->srv->cfg.account_id, TAGS_PER_STREAM_MAX);
        return;
    }
    if (mode == STREAM_ON_DEMAND) {
        shard_count = ON_DEMAND_SHARDS;
        if (on_demand_streams(cat) >= (size_t)c->srv->cfg.on_demand_stream_limit) {
            tags_dispose(&tags);
            api_error(c, KERR_LIMIT_EXCEEDED,
                      "This request would exceed the on-demand stream limit for the account %s in %s. Limit: %d.",
                      c->srv->cfg.account_id, c->srv->cfg.region, c->srv->cfg.on_demand_stream_limit);
            return;
        }
    } else {
        size_t current = api_provisioned_open_shards(cat);
        if ((int64_t)current + shard_count > c->srv->cfg.shard_limit) {
            tags_dispose(&tags);
            api_shard_limit_error(c, current, shard_count);
            return;
        }
    }

    stream_config_t cfg = {0};
    api_transition(c, &cfg, STREAM_CREATING);
    cfg.mode = mode;
    cfg.retention_hours = DEFAULT_RETENTION_HOURS;
    int64_t max_kib = DEFAULT_MAX_RECORD_KIB;
    api_int(c, "MaxRecordSizeInKiB", &max_kib);
    cfg.max_record_kib = (int32_t)max_kib;
    stream_t *s = NULL;
    int rc = catalog_create_stream(cat, name, c->now_ms, &cfg, (uint32_t)shard_count, tags.items, tags.count, &s);
    tags_dispose(&tags);
    if (rc != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot store stream %s.", name);
        return;
    }
    rc = dataplane_attach_stream(c->srv, s);
    if (rc != 0) {
        catalog_drop_stream(cat, s);
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot create the storage of stream %s: %s.", name, strerror(-rc));
        return;
    }
    api_ok_empty(c);
}

void op_delete_stream(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return;
    }
    if (s->cfg.status == STREAM_DELETING) {
        api_stream_not_found(c, s->name);
        return;
    }
    if (s->cfg.status == STREAM_CREATING) {
        api_require_active(c, s);
        return;
    }
    bool enforce = false;
    api_bool(c, "EnforceConsumerDeletion", &enforce);
    if (s->consumer_count > 0 && !enforce) {
        api_error(c, KERR_RESOURCE_IN_USE,
                  "Stream %s under account %s has registered consumers. Use EnforceConsumerDeletion to delete the "
                  "stream with its consumers.",
                  s->name, c->srv->cfg.account_id);
        return;
    }
    char name[STREAM_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", s->name); /* s is gone after a drop */
    int rc;
    if (c->srv->cfg.state_delay_ms <= 0) {
        rc = catalog_drop_stream(c->srv->catalog, s);
    } else {
        stream_config_t cfg = s->cfg;
        cfg.status = STREAM_DELETING;
        cfg.target_status = STREAM_DELETING;
        cfg.status_due_ms = c->now_ms + c->srv->cfg.state_delay_ms;
        rc = catalog_update_config(c->srv->catalog, s, &cfg);
    }
    if (rc != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot delete stream.");
        return;
    }
    subscribe_wake_stream(c->srv, name);
    api_ok_empty(c);
}

static void write_mode(api_call_t *c, stream_mode_t mode)
{
    jsonw_key(&c->w, "StreamModeDetails");
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "StreamMode");
    jsonw_str(&c->w, stream_mode_name(mode));
    jsonw_obj_end(&c->w);
}

/* Members shared by StreamDescription and StreamDescriptionSummary. */
static void write_stream_head(api_call_t *c, const stream_t *s)
{
    buf_t arn = BUF_INIT;
    api_stream_arn(c, s->name, &arn);
    jsonw_key(&c->w, "StreamName");
    jsonw_str(&c->w, s->name);
    jsonw_key(&c->w, "StreamARN");
    jsonw_strn(&c->w, arn.data, arn.len);
    jsonw_key(&c->w, "StreamStatus");
    jsonw_str(&c->w, stream_status_name(s->cfg.status));
    write_mode(c, s->cfg.mode);
    buf_dispose(&arn);
}

static void write_stream_tail(api_call_t *c, const stream_t *s)
{
    jsonw_key(&c->w, "RetentionPeriodHours");
    jsonw_int(&c->w, s->cfg.retention_hours);
    jsonw_key(&c->w, "StreamCreationTimestamp");
    jsonw_timestamp_ms(&c->w, s->created_ms);
    jsonw_key(&c->w, "EnhancedMonitoring");
    api_write_enhanced_monitoring(c, s->cfg.shard_metrics);
    jsonw_key(&c->w, "EncryptionType");
    jsonw_str(&c->w, s->cfg.encrypted ? "KMS" : "NONE");
    if (s->cfg.encrypted) {
        jsonw_key(&c->w, "KeyId");
        jsonw_str(&c->w, s->cfg.key_id);
    }
}

/* Index of the first shard after the ExclusiveStartShardId value (all shards when absent). */
static size_t shards_after(const stream_t *s, const char *exclusive_start)
{
    if (exclusive_start == NULL) {
        return 0;
    }
    uint32_t index;
    char id[32];
    size_t i = 0;
    if (shard_id_parse(exclusive_start, &index)) {
        while (i < s->shard_count && s->shards[i].index <= index) {
            i++;
        }
        return i;
    }
    while (i < s->shard_count) {
        shard_id_format(s->shards[i].index, id);
        if (strcmp(id, exclusive_start) > 0) {
            break;
        }
        i++;
    }
    return i;
}

void op_describe_stream(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return;
    }
    int64_t limit = DESCRIBE_STREAM_DEFAULT_LIMIT;
    api_int(c, "Limit", &limit);
    if (limit > DESCRIBE_STREAM_DEFAULT_LIMIT) {
        limit = DESCRIBE_STREAM_DEFAULT_LIMIT; /* "at most 100 results are returned" */
    }
    size_t first = shards_after(s, api_str(c, "ExclusiveStartShardId"));
    bool creating = s->cfg.status == STREAM_CREATING;

    jsonw_key(&c->w, "StreamDescription");
    jsonw_obj_begin(&c->w);
    write_stream_head(c, s);
    jsonw_key(&c->w, "Shards");
    jsonw_arr_begin(&c->w);
    size_t i = first;
    for (; !creating && i < s->shard_count && (int64_t)(i - first) < limit; i++) {
        api_write_shard(c, s, &s->shards[i]);
    }
    jsonw_arr_end(&c->w);
    jsonw_key(&c->w, "HasMoreShards");
    jsonw_bool(&c->w, !creating && i < s->shard_count);
    write_stream_tail(c, s);
    jsonw_obj_end(&c->w);
    api_ok(c);
}

void op_describe_stream_summary(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return;
    }
    jsonw_key(&c->w, "StreamDescriptionSummary");
    jsonw_obj_begin(&c->w);
    write_stream_head(c, s);
    write_stream_tail(c, s);
    jsonw_key(&c->w, "OpenShardCount");
    jsonw_int(&c->w, s->cfg.status == STREAM_CREATING ? 0 : (int64_t)stream_open_shards(s));
    jsonw_key(&c->w, "ConsumerCount");
    jsonw_int(&c->w, (int64_t)s->consumer_count);
    jsonw_key(&c->w, "MaxRecordSizeInKiB");
    jsonw_int(&c->w, s->cfg.max_record_kib);
    jsonw_obj_end(&c->w);
    api_ok(c);
}

/* ListStreams NextToken: base64 of "<expiry ms>/<last stream name returned>". */
static void make_list_token(api_call_t *c, const char *last, buf_t *out)
{
    buf_t raw = BUF_INIT;
    buf_printf(&raw, "%" PRId64 "/%s", c->now_ms + NEXT_TOKEN_TTL_MS, last);
    base64_encode_into(out, raw.data, raw.len);
    buf_dispose(&raw);
}

/* Decodes a ListStreams token into the name to start after; replies and returns false when invalid. */
static bool read_list_token(api_call_t *c, const char *token, char *name, size_t name_len)
{
    size_t n = strlen(token);
    unsigned char raw[512];
    long len = n <= 640 ? base64_decode(token, n, raw) : -1;
    if (len <= 0 || (size_t)len >= sizeof raw) {
        api_error(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        return false;
    }
    raw[len] = '\0';
    char *slash = strchr((char *)raw, '/');
    if (slash == NULL || (size_t)(len - (slash + 1 - (char *)raw)) >= name_len) {
        api_error(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        return false;
    }
    int64_t expiry = strtoll((char *)raw, NULL, 10);
    if (c->now_ms > expiry) {
        api_error(c, KERR_EXPIRED_NEXT_TOKEN, "The timestamp of NextToken has expired.");
        return false;
    }
    snprintf(name, name_len, "%s", slash + 1);
    return true;
}

void op_list_streams(api_call_t *c)
{
    catalog_t *cat = c->srv->catalog;
    int64_t limit = LIST_STREAMS_DEFAULT_LIMIT;
    api_int(c, "Limit", &limit);
    if (limit > LIST_STREAMS_DEFAULT_LIMIT) {
        limit = LIST_STREAMS_DEFAULT_LIMIT; /* "at most 100 results are returned" */
    }
    const char *start = api_str(c, "ExclusiveStartStreamName");
    const char *token = api_str(c, "NextToken");
    char after[STREAM_NAME_MAX + 1];
    if (token != NULL && start != NULL) {
        api_error(c, KERR_INVALID_ARGUMENT, "NextToken and ExclusiveStartStreamName cannot be provided together.");
        return;
    }
    if (token != NULL) {
        if (!read_list_token(c, token, after, sizeof after)) {
            return;
        }
        start = after;
    }
    size_t first = start ? catalog_stream_after(cat, start) : 0;
    size_t total = catalog_stream_count(cat);
    size_t end = first;
    while (end < total && (int64_t)(end - first) < limit) {
        end++;
    }
    jsonw_key(&c->w, "StreamNames");
    jsonw_arr_begin(&c->w);
    for (size_t i = first; i < end; i++) {
        jsonw_str(&c->w, catalog_stream_at(cat, i)->name);
    }
    jsonw_arr_end(&c->w);
    jsonw_key(&c->w, "HasMoreStreams");
    jsonw_bool(&c->w, end < total);
    if (end < total && end > first) {
        buf_t tok = BUF_INIT;
        make_list_token(c, catalog_stream_at(cat, end - 1)->name, &tok);
        jsonw_key(&c->w, "NextToken");
        jsonw_strn(&c->w, tok.data, tok.len);
        buf_dispose(&tok);
    }
    jsonw_key(&c->w, "StreamSummaries");
    jsonw_arr_begin(&c->w);
    for (size_t i = first; i < end; i++) {
        const stream_t *s = catalog_stream_at(cat, i);
        jsonw_obj_begin(&c->w);
        write_stream_head(c, s);
        jsonw_key(&c->w, "StreamCreationTimestamp");
        jsonw_timestamp_ms(&c->w, s->created_ms);
        jsonw_obj_end(&c->w);
    }
    jsonw_arr_end(&c->w);
    api_ok(c);
}

static void change_retention(api_call_t *c, bool increase)
{
    stream_t *s = api_stream(c);
    if (s == NULL || !api_require_active(c, s)) {
        return;
    }
    int64_t hours = 0;
    api_int(c, "RetentionPeriodHours", &hours);
    if (hours < RETENTION_MIN_HOURS) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Minimum allowed retention period is %d hours. Requested retention period (%" PRId64
                  " hours) is too short.",
                  RETENTION_MIN_HOURS, hours);
        return;
    }
    if (hours > RETENTION_MAX_HOURS) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Maximum allowed retention period is %d hours. Requested retention period (%" PRId64
                  " hours) is too long.",
                  RETENTION_MAX_HOURS, hours);
        return;
    }
    if (increase && hours < s->cfg.retention_hours) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Requested retention period (%" PRId64 " hours) for stream %s can not be shorter than existing "
                  "retention period (%d hours). Use DecreaseRetentionPeriod API.",
                  hours, s->name, s->cfg.retention_hours);
        return;
    }
    if (!increase && hours > s->cfg.retention_hours) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Requested retention period (%" PRId64 " hours) for stream %s can not be longer than existing "
                  "retention period (%d hours). Use IncreaseRetentionPeriod API.",
                  hours, s->name, s->cfg.retention_hours);
        return;
    }
    stream_config_t cfg = s->cfg;
    cfg.retention_hours = (int32_t)hours;
    if (catalog_update_config(c->srv->catalog, s, &cfg) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot update stream %s.", s->name);
        return;
    }
    api_ok_empty(c);
}

void op_increase_retention(api_call_t *c)
{
    change_retention(c, true);
}

void op_decrease_retention(api_call_t *c)
{
    change_retention(c, false);
}

void op_update_stream_mode(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL || !api_require_active(c, s)) {
        return;
    }
    stream_mode_t mode = requested_mode(c);
    if (mode == s->cfg.mode) {
        api_error(c, KERR_INVALID_ARGUMENT, "Stream %s under account %s is already in %s mode.", s->name,
                  c->srv->cfg.account_id, stream_mode_name(mode));
        return;
    }
    if (mode == STREAM_ON_DEMAND && on_demand_streams(c->srv->catalog) >= (size_t)c->srv->cfg.on_demand_stream_limit) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "This request would exceed the on-demand stream limit for the account %s in %s. Limit: %d.",
                  c->srv->cfg.account_id, c->srv->cfg.region, c->srv->cfg.on_demand_stream_limit);
        return;
    }
    if (mode == STREAM_PROVISIONED) {
        size_t current = api_provisioned_open_shards(c->srv->catalog);
        size_t more = stream_open_shards(s);
        if (current + more > (size_t)c->srv->cfg.shard_limit) {
            api_shard_limit_error(c, current, (int64_t)more);
            return;
        }
    }
    if (catalog_count_events(s, STREAM_EVENT_MODE_SWITCH, c->now_ms - 24 * 3600 * 1000LL) >= 2) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "Stream %s under account %s has already switched capacity mode twice in the last 24 hours.",
                  s->name, c->srv->cfg.account_id);
        return;
    }
    stream_config_t cfg = s->cfg;
    cfg.mode = mode;
    api_transition(c, &cfg, STREAM_UPDATING);
    if (catalog_update_config(c->srv->catalog, s, &cfg) != 0 ||
        catalog_note_event(c->srv->catalog, s, STREAM_EVENT_MODE_SWITCH, c->now_ms) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot update stream %s.", s->name);
        return;
    }
    api_ok_empty(c);
}

static uint32_t requested_metrics(const api_call_t *c)
{
    uint32_t bits = 0;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(c->input, "ShardLevelMetrics");
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        if (!cJSON_IsString(e)) {
            continue;
        }
        if (strcmp(e->valuestring, "ALL") == 0) {
            bits |= METRIC_ALL_;
        }
        for (int i = 0; i < 7; i++) {
            if (strcmp(e->valuestring, shard_metric_names[i]) == 0) {
                bits |= 1u << i;
            }
        }
    }
    return bits;
}

static void change_monitoring(api_call_t *c, bool enable)
{
    stream_t *s = api_stream(c);
    if (s == NULL || !api_require_active(c, s)) {
        return;
    }
    uint32_t before = s->cfg.shard_metrics;
    uint32_t asked = requested_metrics(c);
    stream_config_t cfg = s->cfg;
    cfg.shard_metrics = enable ? (before | asked) : (before & ~asked);
    if (catalog_update_config(c->srv->catalog, s, &cfg) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot update stream %s.", s->name);
        return;
    }
    buf_t arn = BUF_INIT;
    api_stream_arn(c, s->name, &arn);
    jsonw_key(&c->w, "StreamName");
    jsonw_str(&c->w, s->name);
    jsonw_key(&c->w, "StreamARN");
    jsonw_strn(&c->w, arn.data, arn.len);
    buf_dispose(&arn);
    for (int k = 0; k < 2; k++) {
        uint32_t bits = k == 0 ? before : cfg.shard_metrics;
        jsonw_key(&c->w, k == 0 ? "CurrentShardLevelMetrics" : "DesiredShardLevelMetrics");
        jsonw_arr_begin(&c->w);
        for (int i = 0; i < 7; i++) {
            if (bits & (1u << i)) {
                jsonw_str(&c->w, shard_metric_names[i]);
            }
        }
        jsonw_arr_end(&c->w);
    }
    api_ok(c);
}

void op_enable_monitoring(api_call_t *c)
{
    change_monitoring(c, true);
}

void op_disable_monitoring(api_call_t *c)
{
    change_monitoring(c, false);
}

static void change_encryption(api_call_t *c, bool start)
{
    stream_t *s = api_stream(c);
    if (s == NULL || !api_require_active(c, s)) {
        return;
    }
    const char *type = api_str(c, "EncryptionType");
    const char *key = api_str(c, "KeyId");
    if (strcmp(type, "KMS") != 0) {
        api_error(c, KERR_INVALID_ARGUMENT, "Invalid EncryptionType %s. The only supported type is KMS.", type);
        return;
    }
    if (!start && (!s->cfg.encrypted || strcmp(s->cfg.key_id, key) != 0)) {
        api_error(c, KERR_INVALID_ARGUMENT, "Stream %s under account %s is not encrypted with KeyId %s.", s->name,
                  c->srv->cfg.account_id, key);
        return;
    }
    if (start) {
        /* the key must exist now (the master keys are in the data folder's key file, keystore.h) */
        engine_t *e = c->srv->engine;
        char id[ENGINE_KEY_ID_MAX + 1];
        int rc = e->ops->resolve_key(e, key, c->srv->cfg.region, c->srv->cfg.account_id, true, id);
        if (rc == -ENOENT) {
            api_error(c, KERR_KMS_NOT_FOUND, "Key '%s' does not exist in account %s, region %s.", key,
                      c->srv->cfg.account_id, c->srv->cfg.region);
            return;
        }
        if (rc != 0) {
            api_error(c, KERR_INTERNAL_FAILURE, "Cannot create the key %s: %s.", key, strerror(-rc));
            return;
        }
    }
    stream_config_t cfg = s->cfg;
    cfg.encrypted = start;
    snprintf(cfg.key_id, sizeof cfg.key_id, "%s", start ? key : "");
    api_transition(c, &cfg, STREAM_UPDATING);
    if (catalog_update_config(c->srv->catalog, s, &cfg) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot update stream %s.", s->name);
        return;
    }
    /* records appended from now on: sealed under the key, or in clear again (earlier ones stay as they
     * are) */
    dataplane_apply_encryption(c->srv, s);
    api_ok_empty(c);
}

void op_start_encryption(api_call_t *c)
{
    change_encryption(c, true);
}

void op_stop_encryption(api_call_t *c)
{
    change_encryption(c, false);
}

void op_update_max_record_size(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL || !api_require_active(c, s)) {
        return;
    }
    int64_t kib = DEFAULT_MAX_RECORD_KIB;
    api_int(c, "MaxRecordSizeInKiB", &kib);
    stream_config_t cfg = s->cfg;
    cfg.max_record_kib = (int32_t)kib;
    api_transition(c, &cfg, STREAM_UPDATING);
    if (catalog_update_config(c->srv->catalog, s, &cfg) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot update stream %s.", s->name);
        return;
    }
    api_ok_empty(c);
}
