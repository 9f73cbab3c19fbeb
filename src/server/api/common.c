/* api/common: finishing calls, input helpers and stream resolution shared by every handler. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/metrics.h"
#include "server/reqlog.h"
#include "server/cbor_json.h"

void api_note_stream(api_call_t *c, stream_t *s, int latency)
{
    memcpy(c->stream, s->name, strlen(s->name) + 1); /* names fit: STREAM_NAME_MAX */
    c->series = metrics_stream_series(c->srv->metrics, s);
    c->latency = latency;
}

/* The stream a call names in its input (StreamName, or the stream part of StreamARN or ConsumerARN), for
 * the request log, when the handler did not note one. */
static void stream_from_input(const api_call_t *c, char out[STREAM_NAME_MAX + 1])
{
    const char *name = c->input != NULL ? api_str(c, "StreamName") : NULL;
    if (name != NULL) {
        snprintf(out, STREAM_NAME_MAX + 1, "%s", name);
        return;
    }
    const char *arn = c->input != NULL ? api_str(c, "StreamARN") : NULL;
    arn = arn != NULL ? arn : c->input != NULL ? api_str(c, "ConsumerARN") : NULL;
    const char *p = arn != NULL ? strstr(arn, ":stream/") : NULL;
    if (p != NULL) {
        p += strlen(":stream/");
        size_t n = strcspn(p, "/");
        snprintf(out, STREAM_NAME_MAX + 1, "%.*s", (int)(n > STREAM_NAME_MAX ? STREAM_NAME_MAX : n), p);
    }
}

static void observe(server_t *srv, const api_call_t *c, http_request_t *req, const char *request_id,
                    int64_t start_us, const api_op_t *op, const char *op_name, int status, const char *error,
                    size_t bytes_out);

void api_observe(server_t *srv, const api_call_t *c, http_request_t *req, const char *request_id, int64_t start_us,
                 const api_op_t *op, int status, const char *error, size_t bytes_out)
{
    observe(srv, c, req, request_id, start_us, op, NULL, status, error, bytes_out);
}

void api_observe_named(server_t *srv, http_request_t *req, const char *request_id, int64_t start_us,
                       const char *operation, int status, const char *error, size_t bytes_out)
{
    observe(srv, NULL, req, request_id, start_us, NULL, operation, status, error, bytes_out);
}

static void observe(server_t *srv, const api_call_t *c, http_request_t *req, const char *request_id,
                    int64_t start_us, const api_op_t *op, const char *op_name, int status, const char *error,
                    size_t bytes_out)
{
    if (c != NULL) {
        start_us = c->start_us;
        request_id = c->request_id;
    }
    int64_t now_us = clock_monotonic_us();
    int64_t us = now_us - start_us;
    size_t nops;
    int op_index = c != NULL ? c->op_index : op != NULL ? (int)(op - api_ops(&nops)) : -1;
    metrics_request(srv->metrics, op_index, status, (uint64_t)us);
    if (c != NULL && c->series != 0 && c->latency >= 0) {
        metrics_observe(srv->metrics, c->series, (metrics_histogram_t)c->latency, (uint64_t)us);
    }
    if (!reqlog_enabled(srv->reqlog)) {
        return;
    }
    char stream[STREAM_NAME_MAX + 1] = "";
    size_t bytes_in = 0;
    http_request_body(req, &bytes_in);
    size_t plen = 0;
    const char *path = http_request_path(req, &plen);
    char path_op[64];
    snprintf(path_op, sizeof path_op, "%.*s", (int)(plen < 63 ? plen : 63), path);
    if (c != NULL) {
        snprintf(stream, sizeof stream, "%s", c->stream);
        if (stream[0] == '\0') {
            stream_from_input(c, stream);
        }
    }
    reqlog_entry_t e = {
        .time_ms = c != NULL ? c->start_ms : clock_now_ms() - us / 1000,
        .request_id = request_id,
        .operation = c != NULL ? c->op : op != NULL ? op->name : op_name != NULL ? op_name : path_op,
        .stream = stream,
        .status = status,
        .error = error,
        .latency_us = us,
        .bytes_in = bytes_in,
        .bytes_out = bytes_out,
    };
    reqlog_write(srv->reqlog, &e);
}

static void finish(api_call_t *c, int status, const char *error)
{
    c->done = true;
    size_t bytes_out;
    if (c->cbor) {
        buf_t body = BUF_INIT;
        if (c->out.len > 0 && json_to_cbor(c->out.data, c->out.len, &body) != 0) {
            log_error("%s: reply is not valid JSON; sent as an empty CBOR body", c->op);
        }
        bytes_out = body.len;
        api_observe(c->srv, c, c->req, NULL, 0, NULL, status, error, bytes_out);
        http_reply(c->req, status, "application/x-amz-cbor-1.1", &body);
    } else {
        bytes_out = c->out.len;
        api_observe(c->srv, c, c->req, NULL, 0, NULL, status, error, bytes_out);
        http_reply(c->req, status, "application/x-amz-json-1.1", &c->out);
    }
    cJSON_Delete((cJSON *)c->input);
    buf_dispose(&c->out);
    free(c);
}

void api_abandon(api_call_t *c)
{
    cJSON_Delete((cJSON *)c->input);
    buf_dispose(&c->out);
    free(c);
}

void api_ok(api_call_t *c)
{
    jsonw_obj_end(&c->w);
    finish(c, 200, NULL);
}

void api_ok_empty(api_call_t *c)
{
    buf_reset(&c->out);
    finish(c, 200, NULL);
}

void api_error(api_call_t *c, kerr_t code, const char *fmt, ...)
{
    const kerr_info_t *info = kerr_info(code);
    buf_t msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    buf_reset(&c->out);
    jsonw_init(&c->w, &c->out);
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "__type");
    jsonw_str(&c->w, info->type);
    jsonw_key(&c->w, "message");
    jsonw_strn(&c->w, msg.data ? msg.data : "", msg.len);
    jsonw_obj_end(&c->w);
    if (info->http_status >= 500) {
        log_error("%s: %s: %s", c->op, info->type, buf_cstr(&msg));
    }
    buf_dispose(&msg);
    finish(c, info->http_status, info->type);
}

const char *api_str(const api_call_t *c, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->input, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool api_int(const api_call_t *c, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->input, name);
    if (!cJSON_IsNumber(v)) {
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

bool api_bool(const api_call_t *c, const char *name, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->input, name);
    if (!cJSON_IsBool(v)) {
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

bool api_timestamp(const api_call_t *c, const cJSON *obj, const char *name, int64_t *ms)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj ? obj : c->input, name);
    if (v == NULL || cJSON_IsNull(v)) {
        return false;
    }
    return timestamp_from_json(v, ms);
}

void api_stream_arn(const api_call_t *c, const char *name, buf_t *out)
{
    buf_printf(out, "arn:aws:kinesis:%s:%s:stream/%s", c->srv->cfg.region, c->srv->cfg.account_id, name);
}

void api_stream_not_found(api_call_t *c, const char *name)
{
    api_error(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", name,
              c->srv->cfg.account_id);
}

/* Splits a stream ARN into region, account and name. Returns false when it is not one. */
static bool parse_stream_arn(const char *arn, char *region, size_t rlen, char *account, char *name)
{
    /* arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME */
    const char *p = arn;
    const char *parts[6];
    size_t lens[6];
    for (int i = 0; i < 5; i++) {
        const char *colon = strchr(p, ':');
        if (colon == NULL) {
            return false;
        }
        parts[i] = p;
        lens[i] = (size_t)(colon - p);
        p = colon + 1;
    }
    parts[5] = p;
    lens[5] = strlen(p);
    if (lens[2] != 7 || memcmp(parts[2], "kinesis", 7) != 0 || lens[4] != 12 || lens[5] <= 7 ||
        memcmp(parts[5], "stream/", 7) != 0 || lens[5] - 7 > STREAM_NAME_MAX || lens[3] >= rlen) {
        return false;
    }
    memcpy(region, parts[3], lens[3]);
    region[lens[3]] = '\0';
    memcpy(account, parts[4], 12);
    account[12] = '\0';
    memcpy(name, parts[5] + 7, lens[5] - 7);
    name[lens[5] - 7] = '\0';
    return strchr(name, '/') == NULL;
}

stream_t *api_stream(api_call_t *c)
{
    const char *name = api_str(c, "StreamName");
    const char *arn = api_str(c, "StreamARN");
    char arn_name[STREAM_NAME_MAX + 1];
    if (arn != NULL) {
        char region[64], account[13];
        if (!parse_stream_arn(arn, region, sizeof region, account, arn_name)) {
            api_error(c, KERR_INVALID_ARGUMENT, "StreamARN %s is not a valid stream ARN.", arn);
            return NULL;
        }
        if (strcmp(region, c->srv->cfg.region) != 0 || strcmp(account, c->srv->cfg.account_id) != 0) {
            api_error(c, KERR_RESOURCE_NOT_FOUND, "Stream %s under account %s not found.", arn_name, account);
            return NULL;
        }
        if (name != NULL && strcmp(name, arn_name) != 0) {
            api_error(c, KERR_INVALID_ARGUMENT, "StreamName %s and StreamARN %s do not refer to the same stream.",
                      name, arn);
            return NULL;
        }
        name = arn_name;
    }
    if (name == NULL) {
        api_error(c, KERR_VALIDATION, "Either StreamName or StreamARN must be provided.");
        return NULL;
    }
    stream_t *s = catalog_find(c->srv->catalog, name);
    if (s == NULL) {
        api_stream_not_found(c, name);
    }
    return s;
}

bool api_require_active(api_call_t *c, const stream_t *s)
{
    if (s->cfg.status == STREAM_ACTIVE) {
        return true;
    }
    api_error(c, KERR_RESOURCE_IN_USE, "Stream %s under account %s not ACTIVE, instead in state %s", s->name,
              c->srv->cfg.account_id, stream_status_name(s->cfg.status));
    return false;
}

void api_write_enhanced_monitoring(api_call_t *c, uint32_t metrics)
{
    jsonw_arr_begin(&c->w);
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "ShardLevelMetrics");
    jsonw_arr_begin(&c->w);
    for (int i = 0; i < 7; i++) {
        if (metrics & (1u << i)) {
            jsonw_str(&c->w, shard_metric_names[i]);
        }
    }
    jsonw_arr_end(&c->w);
    jsonw_obj_end(&c->w);
    jsonw_arr_end(&c->w);
}

size_t stream_open_shards(const stream_t *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->shard_count; i++) {
        n += s->shards[i].closed_ms == 0;
    }
    return n;
}

void api_transition(api_call_t *c, stream_config_t *cfg, stream_status_t status)
{
    if (c->srv->cfg.state_delay_ms <= 0) {
        cfg->status = STREAM_ACTIVE;
        cfg->status_due_ms = 0;
    } else {
        cfg->status = status;
        cfg->status_due_ms = c->now_ms + c->srv->cfg.state_delay_ms;
    }
    cfg->target_status = STREAM_ACTIVE;
}

size_t api_provisioned_open_shards(catalog_t *cat)
{
    size_t n = 0;
    for (size_t i = 0; i < catalog_stream_count(cat); i++) {
        const stream_t *s = catalog_stream_at(cat, i);
        if (s->cfg.mode == STREAM_PROVISIONED) {
            n += stream_open_shards(s);
        }
    }
    return n;
}

void api_shard_limit_error(api_call_t *c, size_t current, int64_t more)
{
    api_error(c, KERR_LIMIT_EXCEEDED,
              "This request would exceed the shard limit for the account %s in %s. Current shard count for "
              "the account: %zu. Limit: %d. Number of additional shards that would have resulted from this "
              "request: %" PRId64 ". Refer to the AWS Service Limits page "
              "(https://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits "
              "and how to request higher limits.",
              c->srv->cfg.account_id, c->srv->cfg.region, current, c->srv->cfg.shard_limit, more);
}
