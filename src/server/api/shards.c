/*
 * api/shards: ListShards (paging with NextToken, ExclusiveStartShardId, MaxResults, every ShardFilter type,
 * StreamCreationTimestamp) and the Shard writer shared with DescribeStream.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/reshard.h"
#include "store/seqnum.h"

#define LIST_SHARDS_DEFAULT_LIMIT 1000
#define NEXT_TOKEN_TTL_MS (300 * 1000)

void api_write_shard(api_call_t *c, const stream_t *s, const shard_t *sh)
{
    char id[32], key[U128_DEC_MAX], seq[SEQNUM_STR_MAX];
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "ShardId");
    shard_id_format(sh->index, id);
    jsonw_str(&c->w, id);
    if (sh->parent >= 0) {
        jsonw_key(&c->w, "ParentShardId");
        shard_id_format((uint32_t)sh->parent, id);
        jsonw_str(&c->w, id);
    }
    if (sh->adjacent_parent >= 0) {
        jsonw_key(&c->w, "AdjacentParentShardId");
        shard_id_format((uint32_t)sh->adjacent_parent, id);
        jsonw_str(&c->w, id);
    }
    jsonw_key(&c->w, "HashKeyRange");
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "StartingHashKey");
    u128_format(sh->start_hash, key);
    jsonw_str(&c->w, key);
    jsonw_key(&c->w, "EndingHashKey");
    u128_format(sh->end_hash, key);
    jsonw_str(&c->w, key);
    jsonw_obj_end(&c->w);
    jsonw_key(&c->w, "SequenceNumberRange");
    jsonw_obj_begin(&c->w);
    seqnum_t sn = {
        .shard_created_secs = (uint64_t)(sh->created_ms / 1000),
        .index = sh->first_seq_index,
        .arrival_secs = (uint64_t)(sh->created_ms / 1000),
        .shard_index = sh->index,
        .stream_tag = seqnum_stream_tag(s->name, s->created_ms),
    };
    jsonw_key(&c->w, "StartingSequenceNumber");
    seqnum_format(&sn, seq);
    jsonw_str(&c->w, seq);
    if (sh->closed_ms != 0) {
        sn.index = sh->last_seq_index;
        sn.arrival_secs = (uint64_t)(sh->closed_ms / 1000);
        jsonw_key(&c->w, "EndingSequenceNumber");
        seqnum_format(&sn, seq);
        jsonw_str(&c->w, seq);
    }
    jsonw_obj_end(&c->w);
    jsonw_obj_end(&c->w);
}

typedef enum filter_type {
    F_NONE,
    F_AFTER_SHARD_ID,
    F_AT_TRIM_HORIZON,
    F_FROM_TRIM_HORIZON,
    F_AT_LATEST,
    F_AT_TIMESTAMP,
    F_FROM_TIMESTAMP,
} filter_type_t;

static const char *const filter_names[] = {"",          "AFTER_SHARD_ID", "AT_TRIM_HORIZON", "FROM_TRIM_HORIZON",
                                           "AT_LATEST", "AT_TIMESTAMP",   "FROM_TIMESTAMP"};

/* The position a listing continues from, carried in NextToken. */
typedef struct listing {
    char stream[STREAM_NAME_MAX + 1];
    int64_t stream_created_ms;
    int64_t after_index; /* list shards with index > this; -1 for all */
    filter_type_t filter;
    int64_t filter_ts_ms;
    int64_t filter_shard; /* AFTER_SHARD_ID */
} listing_t;

static void encode_token(api_call_t *c, const listing_t *l, buf_t *out)
{
    buf_t raw = BUF_INIT;
    buf_printf(&raw, "%" PRId64 "/%" PRId64 "/%" PRId64 "/%d/%" PRId64 "/%" PRId64 "/%s",
               c->now_ms + NEXT_TOKEN_TTL_MS, l->stream_created_ms, l->after_index, (int)l->filter,
               l->filter_ts_ms, l->filter_shard, l->stream);
    base64_encode_into(out, raw.data, raw.len);
    buf_dispose(&raw);
}

static bool decode_token(api_call_t *c, const char *token, listing_t *l)
{
    size_t n = strlen(token);
    unsigned char raw[512];
    long len = n <= 640 ? base64_decode(token, n, raw) : -1;
    int64_t expiry = 0;
    int filter = 0, used = 0;
    if (len > 0 && (size_t)len < sizeof raw) {
        raw[len] = '\0';
        if (sscanf((char *)raw, "%" SCNd64 "/%" SCNd64 "/%" SCNd64 "/%d/%" SCNd64 "/%" SCNd64 "/%n", &expiry,
                   &l->stream_created_ms, &l->after_index, &filter, &l->filter_ts_ms, &l->filter_shard,
                   &used) == 6 &&
            used > 0 && filter >= F_NONE && filter <= F_FROM_TIMESTAMP &&
            strlen((char *)raw + used) <= STREAM_NAME_MAX) {
            snprintf(l->stream, sizeof l->stream, "%s", (char *)raw + used);
            l->filter = (filter_type_t)filter;
            if (c->now_ms > expiry) {
                api_error(c, KERR_EXPIRED_NEXT_TOKEN, "The timestamp of NextToken has expired.");
                return false;
            }
            return true;
        }
    }
    api_error(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
    return false;
}

/* Reads ShardFilter into l; replies and returns false on a missing companion member. */
static bool read_filter(api_call_t *c, listing_t *l)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c->input, "ShardFilter");
    l->filter = F_NONE;
    if (f == NULL || cJSON_IsNull(f)) {
        return true;
    }
    const char *type = cJSON_GetObjectItemCaseSensitive(f, "Type")->valuestring;
    for (int i = 1; i <= F_FROM_TIMESTAMP; i++) {
        if (strcmp(type, filter_names[i]) == 0) {
            l->filter = (filter_type_t)i;
        }
    }
    const cJSON *shard = cJSON_GetObjectItemCaseSensitive(f, "ShardId");
    bool has_ts = api_timestamp(c, f, "Timestamp", &l->filter_ts_ms);
    if (l->filter == F_AFTER_SHARD_ID) {
        uint32_t index;
        if (!cJSON_IsString(shard)) {
            api_error(c, KERR_INVALID_ARGUMENT, "Must specify ShardId in ShardFilter when Type is AFTER_SHARD_ID.");
            return false;
        }
        l->filter_shard = shard_id_parse(shard->valuestring, &index) ? (int64_t)index : -1;
    } else if (cJSON_IsString(shard)) {
        api_error(c, KERR_INVALID_ARGUMENT, "ShardId in ShardFilter can only be used with Type AFTER_SHARD_ID.");
        return false;
    }
    if ((l->filter == F_AT_TIMESTAMP || l->filter == F_FROM_TIMESTAMP) && !has_ts) {
        api_error(c, KERR_INVALID_ARGUMENT, "Must specify Timestamp in ShardFilter when Type is %s.", type);
        return false;
    }
    if (has_ts && l->filter != F_AT_TIMESTAMP && l->filter != F_FROM_TIMESTAMP) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Timestamp in ShardFilter can only be used with Type AT_TIMESTAMP or FROM_TIMESTAMP.");
        return false;
    }
    return true;
}

static bool shard_selected(const api_call_t *c, const stream_t *s, const shard_t *sh, const listing_t *l)
{
    int64_t retention_start = c->now_ms - (int64_t)s->cfg.retention_hours * 3600 * 1000;
    int64_t trim_horizon = retention_start > s->created_ms ? retention_start : s->created_ms;
    bool open = sh->closed_ms == 0;
    bool expired = !open && sh->closed_ms < retention_start;
    if (expired) {
        return false;
    }
    switch (l->filter) {
    case F_NONE:
    case F_FROM_TRIM_HORIZON:
        return true;
    case F_AFTER_SHARD_ID:
        return (int64_t)sh->index > l->filter_shard;
    case F_AT_TRIM_HORIZON:
        return sh->created_ms <= trim_horizon && (open || sh->closed_ms > trim_horizon);
    case F_AT_LATEST:
        return open;
    case F_AT_TIMESTAMP:
        return sh->created_ms <= l->filter_ts_ms && (open || sh->closed_ms >= l->filter_ts_ms);
    case F_FROM_TIMESTAMP: {
        int64_t ts = l->filter_ts_ms > trim_horizon ? l->filter_ts_ms : trim_horizon;
        return open || sh->closed_ms >= ts;
    }
    }
    return true;
}

void op_list_shards(api_call_t *c)
{
    const char *token = api_str(c, "NextToken");
    const char *start = api_str(c, "ExclusiveStartShardId");
    bool named = api_str(c, "StreamName") != NULL || api_str(c, "StreamARN") != NULL;
    int64_t limit = LIST_SHARDS_DEFAULT_LIMIT;
    api_int(c, "MaxResults", &limit);
    if (limit > LIST_SHARDS_DEFAULT_LIMIT) {
        limit = LIST_SHARDS_DEFAULT_LIMIT; /* "at most 1000 results are returned" */
    }
    listing_t l = {.after_index = -1, .filter_shard = -1};
    stream_t *s;

    if (token != NULL) {
        if (named) {
            api_error(c, KERR_INVALID_ARGUMENT, "NextToken and StreamName cannot be provided together.");
            return;
        }
        if (start != NULL) {
            api_error(c, KERR_INVALID_ARGUMENT, "NextToken and ExclusiveStartShardId cannot be provided together.");
            return;
        }
        int64_t ignored;
        if (api_timestamp(c, NULL, "StreamCreationTimestamp", &ignored)) {
            api_error(c, KERR_INVALID_ARGUMENT, "NextToken and StreamCreationTimestamp cannot be provided together.");
            return;
        }
        if (!decode_token(c, token, &l)) {
            return;
        }
        s = catalog_find(c->srv->catalog, l.stream);
        if (s == NULL || s->created_ms != l.stream_created_ms) {
            api_stream_not_found(c, l.stream);
            return;
        }
    } else {
        if (!named) {
            api_error(c, KERR_INVALID_ARGUMENT, "Either NextToken or StreamName should be provided.");
            return;
        }
        s = api_stream(c);
        if (s == NULL) {
            return;
        }
        int64_t created;
        if (api_timestamp(c, NULL, "StreamCreationTimestamp", &created) &&
            created / 1000 != s->created_ms / 1000) {
            api_stream_not_found(c, s->name);
            return;
        }
        if (!read_filter(c, &l)) {
            return;
        }
        uint32_t index;
        if (start != NULL) {
            l.after_index = shard_id_parse(start, &index) ? (int64_t)index : -1;
        }
        snprintf(l.stream, sizeof l.stream, "%s", s->name);
        l.stream_created_ms = s->created_ms;
    }
    if (s->cfg.status == STREAM_CREATING) {
        api_require_active(c, s);
        return;
    }

    jsonw_key(&c->w, "Shards");
    jsonw_arr_begin(&c->w);
    int64_t written = 0;
    bool more = false;
    int64_t last = l.after_index;
    for (size_t i = 0; i < s->shard_count; i++) {
        const shard_t *sh = &s->shards[i];
        if ((int64_t)sh->index <= l.after_index || !shard_selected(c, s, sh, &l)) {
            continue;
        }
        if (written == limit) {
            more = true;
            break;
        }
        api_write_shard(c, s, sh);
        written++;
        last = sh->index;
    }
    jsonw_arr_end(&c->w);
    if (more) {
        buf_t tok = BUF_INIT;
        l.after_index = last;
        encode_token(c, &l, &tok);
        jsonw_key(&c->w, "NextToken");
        jsonw_strn(&c->w, tok.data, tok.len);
        buf_dispose(&tok);
    }
    api_ok(c);
}

/* ---- resharding ---- */

/* The stream of a resharding call: present, ACTIVE and provisioned; NULL after replying otherwise. */
static stream_t *reshard_stream(api_call_t *c, const char *op)
{
    stream_t *s = api_stream(c);
    if (s == NULL || !api_require_active(c, s)) {
        return NULL;
    }
    if (s->cfg.mode == STREAM_ON_DEMAND) {
        api_error(c, KERR_VALIDATION, "%s is not supported for stream %s under account %s because it is in ON_DEMAND mode.",
                  op, s->name, c->srv->cfg.account_id);
        return NULL;
    }
    return s;
}

/* The open shard named by member `name`; NULL after replying otherwise. */
static const shard_t *reshard_shard(api_call_t *c, const stream_t *s, const char *name)
{
    const char *id = api_str(c, name);
    uint32_t index;
    const shard_t *sh = shard_id_parse(id, &index) ? stream_find_shard(s, index) : NULL;
    if (sh == NULL) {
        api_error(c, KERR_RESOURCE_NOT_FOUND, "Could not find shard %s in stream %s under account %s.", id, s->name,
                  c->srv->cfg.account_id);
        return NULL;
    }
    if (sh->closed_ms != 0) {
        char sid[32];
        shard_id_format(sh->index, sid);
        api_error(c, KERR_RESOURCE_IN_USE,
                  "Shard %s in stream %s under account %s has already been merged or split, and thus is not "
                  "eligible for merging or splitting.",
                  sid, s->name, c->srv->cfg.account_id);
        return NULL;
    }
    return sh;
}

static void reshard_failed(api_call_t *c, const stream_t *s, int rc)
{
    log_error("resharding %s failed: %s", s->name, strerror(-rc));
    api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
}

void op_split_shard(api_call_t *c)
{
    stream_t *s = reshard_stream(c, "SplitShard");
    if (s == NULL) {
        return;
    }
    const shard_t *sh = reshard_shard(c, s, "ShardToSplit");
    if (sh == NULL) {
        return;
    }
    const char *key = api_str(c, "NewStartingHashKey");
    u128 at;
    char id[32], start[U128_DEC_MAX], end[U128_DEC_MAX];
    shard_id_format(sh->index, id);
    u128_format(sh->start_hash, start);
    u128_format(sh->end_hash, end);
    if (u128_parse(key, strlen(key), &at) != 0 || at <= sh->start_hash + 1 || at >= sh->end_hash) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under account %s is not both "
                  "greater than one plus the shard's StartingHashKey %s and less than the shard's EndingHashKey %s.",
                  key, id, s->name, c->srv->cfg.account_id, start, end);
        return;
    }
    size_t current = api_provisioned_open_shards(c->srv->catalog);
    if ((int64_t)current + 1 > c->srv->cfg.shard_limit) {
        api_shard_limit_error(c, current, 1);
        return;
    }
    stream_config_t cfg = s->cfg;
    api_transition(c, &cfg, STREAM_UPDATING);
    int rc = reshard_split(c->srv, s, sh->index, at, c->now_ms, &cfg);
    if (rc != 0) {
        reshard_failed(c, s, rc);
        return;
    }
    api_ok_empty(c);
}

void op_merge_shards(api_call_t *c)
{
    stream_t *s = reshard_stream(c, "MergeShards");
    if (s == NULL) {
        return;
    }
    const shard_t *a = reshard_shard(c, s, "ShardToMerge");
    if (a == NULL) {
        return;
    }
    const shard_t *b = reshard_shard(c, s, "AdjacentShardToMerge");
    if (b == NULL) {
        return;
    }
    bool adjacent = (a->end_hash != U128_MAX && a->end_hash + 1 == b->start_hash) ||
                    (b->end_hash != U128_MAX && b->end_hash + 1 == a->start_hash);
    if (!adjacent) {
        char ida[32], idb[32];
        shard_id_format(a->index, ida);
        shard_id_format(b->index, idb);
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Shards %s and %s in stream %s under account %s are not an adjacent pair of shards eligible for "
                  "merging",
                  ida, idb, s->name, c->srv->cfg.account_id);
        return;
    }
    stream_config_t cfg = s->cfg;
    api_transition(c, &cfg, STREAM_UPDATING);
    int rc = reshard_merge(c->srv, s, a->index, b->index, c->now_ms, &cfg);
    if (rc != 0) {
        reshard_failed(c, s, rc);
        return;
    }
    api_ok_empty(c);
}

#define SCALINGS_PER_DAY 10
#define STREAM_SHARDS_MAX 10000
#define DAY_MS (24 * 3600 * 1000LL)

void op_update_shard_count(api_call_t *c)
{
    stream_t *s = reshard_stream(c, "UpdateShardCount");
    if (s == NULL) {
        return;
    }
    int64_t target = 0;
    api_int(c, "TargetShardCount", &target);
    int64_t current = (int64_t)stream_open_shards(s);
    const char *account = c->srv->cfg.account_id;
    if (catalog_count_events(s, STREAM_EVENT_SCALE, c->now_ms - DAY_MS) >= SCALINGS_PER_DAY) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "Exceeded the number of allowed UpdateShardCount operations for stream %s under account %s: at "
                  "most %d in a rolling 24-hour period.",
                  s->name, account, SCALINGS_PER_DAY);
        return;
    }
    if (target > current * 2) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "UpdateShardCount for stream %s under account %s cannot scale up to more than double the current "
                  "shard count %" PRId64 ": target shard count %" PRId64 ".",
                  s->name, account, current, target);
        return;
    }
    if (target * 2 < current) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "UpdateShardCount for stream %s under account %s cannot scale down to less than half the current "
                  "shard count %" PRId64 ": target shard count %" PRId64 ".",
                  s->name, account, current, target);
        return;
    }
    if (target > STREAM_SHARDS_MAX && target > current) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "UpdateShardCount for stream %s under account %s cannot scale up to more than %d shards.", s->name,
                  account, STREAM_SHARDS_MAX);
        return;
    }
    size_t account_shards = api_provisioned_open_shards(c->srv->catalog);
    if (target > current && (int64_t)account_shards + (target - current) > c->srv->cfg.shard_limit) {
        api_shard_limit_error(c, account_shards, target - current);
        return;
    }
    if (target != current) {
        stream_config_t cfg = s->cfg;
        api_transition(c, &cfg, STREAM_UPDATING);
        int rc = reshard_uniform(c->srv, s, (uint32_t)target, c->now_ms, &cfg);
        if (rc == 0) {
            rc = catalog_note_event(c->srv->catalog, s, STREAM_EVENT_SCALE, c->now_ms);
        }
        if (rc != 0) {
            reshard_failed(c, s, rc);
            return;
        }
    }
    buf_t arn = BUF_INIT;
    api_stream_arn(c, s->name, &arn);
    jsonw_key(&c->w, "CurrentShardCount");
    jsonw_int(&c->w, current);
    jsonw_key(&c->w, "StreamARN");
    jsonw_strn(&c->w, arn.data, arn.len);
    jsonw_key(&c->w, "StreamName");
    jsonw_str(&c->w, s->name);
    jsonw_key(&c->w, "TargetShardCount");
    jsonw_int(&c->w, target);
    buf_dispose(&arn);
    api_ok(c);
}
