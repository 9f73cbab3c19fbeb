/*
 * api/consumers: enhanced fan-out consumers: RegisterStreamConsumer, DeregisterStreamConsumer,
 * DescribeStreamConsumer, ListStreamConsumers (SubscribeToShard is in api/subscribe.c).
 *
 * A consumer is CREATING for the state delay after registration, then ACTIVE; deregistering makes it
 * DELETING for the state delay, then it is gone. At most CONSUMERS_PER_STREAM per stream (those being
 * deleted included, as AWS counts them).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "server/api/api.h"
#include "server/api/tags.h"

#define CONSUMERS_PER_STREAM 20
#define CONSUMERS_CREATING_MAX 5 /* registrations in progress at once */
#define LIST_CONSUMERS_DEFAULT 100
#define NEXT_TOKEN_TTL_MS (300 * 1000)

void api_consumer_arn(const api_call_t *c, const stream_t *s, const consumer_t *con, buf_t *out)
{
    buf_printf(out, "arn:aws:kinesis:%s:%s:stream/%s/consumer/%s:%" PRId64, c->srv->cfg.region,
               c->srv->cfg.account_id, s->name, con->name, con->created_ms / 1000);
}

/* arn:PARTITION:kinesis:REGION:ACCOUNT:stream/STREAM/consumer/NAME:SECS -> its parts; false if not one. */
static bool parse_consumer_arn(const api_call_t *c, const char *arn, char *stream, char *name, int64_t *secs)
{
    const char *p = arn;
    for (int i = 0; i < 5; i++) {
        const char *colon = strchr(p, ':');
        if (colon == NULL) {
            return false;
        }
        size_t len = (size_t)(colon - p);
        if ((i == 2 && (len != 7 || memcmp(p, "kinesis", 7) != 0)) ||
            (i == 3 && (len != strlen(c->srv->cfg.region) || memcmp(p, c->srv->cfg.region, len) != 0)) ||
            (i == 4 && (len != 12 || memcmp(p, c->srv->cfg.account_id, 12) != 0))) {
            return false;
        }
        p = colon + 1;
    }
    if (strncmp(p, "stream/", 7) != 0) {
        return false;
    }
    p += 7;
    const char *slash = strchr(p, '/');
    if (slash == NULL || slash == p || (size_t)(slash - p) > STREAM_NAME_MAX || strncmp(slash, "/consumer/", 10) != 0) {
        return false;
    }
    memcpy(stream, p, (size_t)(slash - p));
    stream[slash - p] = '\0';
    p = slash + 10;
    const char *colon = strrchr(p, ':');
    if (colon == NULL || colon == p || (size_t)(colon - p) > CONSUMER_NAME_MAX) {
        return false;
    }
    memcpy(name, p, (size_t)(colon - p));
    name[colon - p] = '\0';
    char *end = NULL;
    long long v = strtoll(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || v < 0) {
        return false;
    }
    *secs = v;
    return true;
}

stream_t *api_consumer_by_arn(api_call_t *c, const char *arn, consumer_t **out)
{
    char sname[STREAM_NAME_MAX + 1], cname[CONSUMER_NAME_MAX + 1];
    int64_t secs = -1;
    stream_t *s = parse_consumer_arn(c, arn, sname, cname, &secs) ? catalog_find(c->srv->catalog, sname) : NULL;
    consumer_t *con = s != NULL && s->cfg.status != STREAM_DELETING ? catalog_find_consumer(s, cname) : NULL;
    if (con == NULL || con->created_ms / 1000 != secs || con->status == STREAM_DELETING) {
        api_error(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s not found.", arn);
        return NULL;
    }
    *out = con;
    return s;
}

stream_t *api_consumer(api_call_t *c, consumer_t **out)
{
    const char *arn = api_str(c, "ConsumerARN");
    const char *name = api_str(c, "ConsumerName");
    const char *stream_arn = api_str(c, "StreamARN");
    char sname[STREAM_NAME_MAX + 1], cname[CONSUMER_NAME_MAX + 1];
    int64_t secs = -1;
    stream_t *s = NULL;
    if (arn != NULL) {
        if (!parse_consumer_arn(c, arn, sname, cname, &secs)) {
            api_error(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s not found.", arn);
            return NULL;
        }
        s = catalog_find(c->srv->catalog, sname);
        name = cname;
    } else if (name != NULL && stream_arn != NULL) {
        s = api_stream(c);
        if (s == NULL) {
            return NULL;
        }
    } else {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Either ConsumerARN or both ConsumerName and StreamARN must be provided.");
        return NULL;
    }
    consumer_t *con = s != NULL && s->cfg.status != STREAM_DELETING ? catalog_find_consumer(s, name) : NULL;
    if (con == NULL || (secs >= 0 && con->created_ms / 1000 != secs)) {
        if (arn != NULL) {
            api_error(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s not found.", arn);
        } else {
            api_error(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s under stream %s under account %s not found.", name,
                      s->name, c->srv->cfg.account_id);
        }
        return NULL;
    }
    *out = con;
    return s;
}

static void write_consumer(api_call_t *c, const stream_t *s, const consumer_t *con, bool with_stream)
{
    buf_t arn = BUF_INIT;
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "ConsumerName");
    jsonw_str(&c->w, con->name);
    jsonw_key(&c->w, "ConsumerARN");
    api_consumer_arn(c, s, con, &arn);
    jsonw_strn(&c->w, arn.data, arn.len);
    jsonw_key(&c->w, "ConsumerStatus");
    jsonw_str(&c->w, stream_status_name(con->status));
    jsonw_key(&c->w, "ConsumerCreationTimestamp");
    jsonw_timestamp_ms(&c->w, con->created_ms);
    if (with_stream) {
        buf_reset(&arn);
        api_stream_arn(c, s->name, &arn);
        jsonw_key(&c->w, "StreamARN");
        jsonw_strn(&c->w, arn.data, arn.len);
    }
    jsonw_obj_end(&c->w);
    buf_dispose(&arn);
}

void op_register_stream_consumer(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return;
    }
    if (s->cfg.status == STREAM_CREATING || s->cfg.status == STREAM_DELETING) {
        api_require_active(c, s);
        return;
    }
    const char *name = api_str(c, "ConsumerName");
    if (catalog_find_consumer(s, name) != NULL) {
        api_error(c, KERR_RESOURCE_IN_USE, "Consumer %s under stream %s already exists for account %s.", name,
                  s->name, c->srv->cfg.account_id);
        return;
    }
    if (s->consumer_count >= CONSUMERS_PER_STREAM) {
        api_error(c, KERR_LIMIT_EXCEEDED, "Consumer limit of %d for stream %s under account %s has been reached.",
                  CONSUMERS_PER_STREAM, s->name, c->srv->cfg.account_id);
        return;
    }
    size_t creating = 0;
    for (size_t i = 0; i < s->consumer_count; i++) {
        creating += s->consumers[i].status == STREAM_CREATING;
    }
    if (creating >= CONSUMERS_CREATING_MAX) {
        api_error(c, KERR_LIMIT_EXCEEDED,
                  "Stream %s under account %s already has %d consumers in CREATING state; wait for them to become "
                  "ACTIVE.",
                  s->name, c->srv->cfg.account_id, CONSUMERS_CREATING_MAX);
        return;
    }
    tag_list_t tags;
    if (!tags_from_input(c, cJSON_GetObjectItemCaseSensitive(c->input, "Tags"), &tags)) {
        return;
    }
    consumer_t con = {0};
    snprintf(con.name, sizeof con.name, "%s", name);
    con.created_ms = c->now_ms;
    bool delay = c->srv->cfg.state_delay_ms > 0;
    con.status = delay ? STREAM_CREATING : STREAM_ACTIVE;
    con.status_due_ms = delay ? c->now_ms + c->srv->cfg.state_delay_ms : 0;
    int rc = catalog_add_consumer(c->srv->catalog, s, &con);
    if (rc == 0 && tags.count > 0) {
        rc = catalog_put_tags(c->srv->catalog, s, catalog_find_consumer(s, con.name), tags.items, tags.count);
    }
    tags_dispose(&tags);
    if (rc != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
        return;
    }
    jsonw_key(&c->w, "Consumer");
    write_consumer(c, s, &con, false);
    api_ok(c);
}

void op_deregister_stream_consumer(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_consumer(c, &con);
    if (s == NULL) {
        return;
    }
    if (con->status == STREAM_DELETING) {
        api_error(c, KERR_RESOURCE_NOT_FOUND, "Consumer %s under stream %s under account %s not found.", con->name,
                  s->name, c->srv->cfg.account_id);
        return;
    }
    int64_t delay = c->srv->cfg.state_delay_ms;
    if (catalog_set_consumer_status(c->srv->catalog, s, con->name, STREAM_DELETING, c->now_ms + delay) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
        return;
    }
    if (delay <= 0) {
        catalog_settle(c->srv->catalog, c->now_ms);
    }
    subscribe_wake_stream(c->srv, s->name);
    api_ok_empty(c);
}

void op_describe_stream_consumer(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_consumer(c, &con);
    if (s == NULL) {
        return;
    }
    jsonw_key(&c->w, "ConsumerDescription");
    write_consumer(c, s, con, true);
    api_ok(c);
}

void op_list_stream_consumers(api_call_t *c)
{
    const char *token = api_str(c, "NextToken");
    int64_t max = LIST_CONSUMERS_DEFAULT, offset = 0;
    api_int(c, "MaxResults", &max);
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return;
    }
    int64_t created_ms;
    if (api_timestamp(c, c->input, "StreamCreationTimestamp", &created_ms) && created_ms / 1000 != s->created_ms / 1000) {
        api_stream_not_found(c, s->name);
        return;
    }
    if (token != NULL) {
        /* "expiry/stream creation ms/offset", base64 */
        unsigned char raw[128];
        size_t n = strlen(token);
        long len = n <= 160 ? base64_decode(token, n, raw) : -1;
        int64_t expiry = 0, stream_ms = 0;
        int used = 0;
        if (len <= 0 || (size_t)len >= sizeof raw) {
            len = -1;
        } else {
            raw[len] = '\0';
        }
        if (len < 0 ||
            sscanf((char *)raw, "%" SCNd64 "/%" SCNd64 "/%" SCNd64 "%n", &expiry, &stream_ms, &offset, &used) != 3 ||
            raw[used] != '\0' || offset < 0 || stream_ms != s->created_ms) {
            api_error(c, KERR_INVALID_ARGUMENT, "Invalid NextToken.");
            return;
        }
        if (c->now_ms > expiry) {
            api_error(c, KERR_EXPIRED_NEXT_TOKEN, "The timestamp of NextToken has expired.");
            return;
        }
    }
    jsonw_key(&c->w, "Consumers");
    jsonw_arr_begin(&c->w);
    size_t i = (size_t)offset;
    for (; i < s->consumer_count && (int64_t)i < offset + max; i++) {
        write_consumer(c, s, &s->consumers[i], false);
    }
    jsonw_arr_end(&c->w);
    if (i < s->consumer_count) {
        buf_t raw = BUF_INIT, tok = BUF_INIT;
        buf_printf(&raw, "%" PRId64 "/%" PRId64 "/%zu", c->now_ms + NEXT_TOKEN_TTL_MS, s->created_ms, i);
        base64_encode_into(&tok, raw.data, raw.len);
        jsonw_key(&c->w, "NextToken");
        jsonw_strn(&c->w, tok.data, tok.len);
        buf_dispose(&raw);
        buf_dispose(&tok);
    }
    api_ok(c);
}
