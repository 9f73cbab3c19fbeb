/*
 * api/shards: ListShards (paging with NextToken, ExclusiveStartShardId, MaxResults, every ShardFilter type,
 * StreamCreationTimestamp) and the Shard writer shared with DescribeStream.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "server/api/api.h"
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
