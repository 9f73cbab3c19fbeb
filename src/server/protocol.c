/* protocol: AWS JSON 1.1 request routing (see protocol.h). */
#include "server/protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/auth.h"
#include "server/cbor_json.h"
#include "server/dynamodb/dynamodb.h"
#include "server/scrape.h"
#include "server/ui/ui.h"

#define TARGET_PREFIX "Kinesis_20131202."

static bool equals(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* A random version-4 UUID, as AWS request ids are. */
static void request_id(char out[37])
{
    static _Thread_local uint64_t state[2];
    if (state[0] == 0 && state[1] == 0) {
        if (getrandom(state, sizeof state, 0) != (ssize_t)sizeof state) {
            state[0] = (uint64_t)clock_monotonic_ms() | 1;
            state[1] = (uint64_t)(uintptr_t)&state;
        }
    }
    /* xorshift128+ */
    uint64_t r[2];
    for (int i = 0; i < 2; i++) {
        uint64_t s1 = state[0];
        const uint64_t s0 = state[1];
        state[0] = s0;
        s1 ^= s1 << 23;
        state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
        r[i] = state[1] + s0;
    }
    snprintf(out, 37, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64, (uint32_t)r[0],
             (uint32_t)(r[0] >> 32) & 0xffff, (uint32_t)(r[0] >> 48) & 0xfff,
             (uint32_t)((r[1] & 0x3fff) | 0x8000), (uint64_t)((r[1] >> 16) & 0xffffffffffffULL));
}

/* A request being routed: what its log line and metrics need before it becomes an API call. */
typedef struct request {
    server_t *srv;
    http_request_t *req;
    char id[37];
    int64_t start_us;    /* monotonic */
    const api_op_t *op;  /* once X-Amz-Target named a known operation */
} request_t;

/* Sends a reply that no API call made (errors before the operation runs, and the GET endpoints). */
static void reply(const request_t *rq, int status, const char *content_type, buf_t *body, const char *error)
{
    api_observe(rq->srv, NULL, rq->req, rq->id, rq->start_us, rq->op, status, error, body->len);
    http_reply(rq->req, status, content_type, body);
}

static void reply_text(const request_t *rq, int status, const char *content_type, const char *text)
{
    buf_t body = BUF_INIT;
    buf_puts(&body, text);
    reply(rq, status, content_type, &body, NULL);
}

static void reply_error_as(const request_t *rq, kerr_t code, const char *message, bool cbor);

static void reply_error(const request_t *rq, kerr_t code, const char *message)
{
    reply_error_as(rq, code, message, false);
}

static void reply_error_as(const request_t *rq, kerr_t code, const char *message, bool cbor)
{
    const kerr_info_t *info = kerr_info(code);
    buf_t body = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &body);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "__type");
    jsonw_str(&w, info->type);
    if (message != NULL) {
        jsonw_key(&w, "message");
        jsonw_str(&w, message);
    }
    jsonw_obj_end(&w);
    if (cbor) {
        buf_t cb = BUF_INIT;
        json_to_cbor(body.data, body.len, &cb);
        buf_dispose(&body);
        reply(rq, info->http_status, "application/x-amz-cbor-1.1", &cb, info->type);
        return;
    }
    reply(rq, info->http_status, "application/x-amz-json-1.1", &body, info->type);
}

static void health(const request_t *rq, bool ready_check)
{
    if (ready_check && !atomic_load(&rq->srv->ready)) {
        reply_text(rq, 503, "application/json", "{\"status\":\"starting\"}");
        return;
    }
    reply_text(rq, 200, "application/json", ready_check ? "{\"status\":\"ready\"}" : "{\"status\":\"live\"}");
}

/* GET and HEAD: health checks (always open), then the observability endpoints (Prometheus /metrics, the
 * dashboard and its JSON), which need credentials when authentication is on (auth_check_console). */
static void handle_get(const request_t *rq, const char *path, size_t plen)
{
    const char *query = memchr(path, '?', plen);
    if (query != NULL) {
        plen = (size_t)(query - path);
    }
    if (equals(path, plen, "/health/live") || equals(path, plen, "/health/ready")) {
        health(rq, equals(path, plen, "/health/ready"));
        return;
    }
    int status;
    char msg[512];
    if (!auth_check_console(rq->srv, rq->req, &status, msg, sizeof msg)) {
        if (status == 401) {
            static const char challenge[] = "Basic realm=\"eddy\", charset=\"UTF-8\"";
            http_add_header(rq->req, "www-authenticate", challenge, strlen(challenge));
        }
        buf_t body = BUF_INIT;
        jsonw_t w;
        jsonw_init(&w, &body);
        jsonw_obj_begin(&w);
        jsonw_key(&w, "message");
        jsonw_str(&w, msg);
        jsonw_obj_end(&w);
        reply(rq, status, "application/json", &body, status == 401 ? "Unauthorized" : "AccessDenied");
        return;
    }
    buf_t body = BUF_INIT;
    if (equals(path, plen, "/metrics")) {
        scrape_prometheus(rq->srv, &body);
        reply(rq, 200, "text/plain; version=0.0.4; charset=utf-8", &body, NULL);
    } else if (equals(path, plen, "/ui/api/state")) {
        scrape_state_json(rq->srv, &body);
        http_add_header(rq->req, "cache-control", "no-store", 8);
        reply(rq, 200, "application/json", &body, NULL);
    } else if (ui_asset_for_path(path, plen) != NULL) {
        /* a dashboard asset (counted before the reply, after which the request is gone) */
        api_observe(rq->srv, NULL, rq->req, rq->id, rq->start_us, NULL, 200, NULL, ui_asset_for_path(path, plen)->len);
        ui_serve(rq->req, path, plen);
    } else {
        reply_text(rq, 404, "application/json", "{\"message\":\"Not Found\"}");
    }
}

static void handle_api(request_t *rq, const auth_principal_t *who, bool cbor, const char *ctype, size_t clen);

void protocol_handle(http_request_t *req, void *arg)
{
    request_t rq = {.srv = arg, .req = req, .start_us = clock_monotonic_us()};
    server_t *srv = rq.srv;
    size_t mlen, plen;
    const char *method = http_request_method(req, &mlen);
    const char *path = http_request_path(req, &plen);
    request_id(rq.id);
    http_add_header(req, "x-amzn-requestid", rq.id, strlen(rq.id));

    if (equals(method, mlen, "GET") || equals(method, mlen, "HEAD")) {
        handle_get(&rq, path, plen);
        return;
    }
    if (!equals(method, mlen, "POST")) {
        reply_text(&rq, 405, "application/json", "{\"message\":\"Method Not Allowed\"}");
        return;
    }

    const char *ctype = NULL;
    size_t clen = 0;
    http_request_header(req, "content-type", &ctype, &clen);
    if (ctype != NULL) {
        const char *semi = memchr(ctype, ';', clen);
        if (semi != NULL) {
            clen = (size_t)(semi - ctype);
        }
    }
    bool cbor = ctype != NULL && equals(ctype, clen, "application/x-amz-cbor-1.1");
    auth_principal_t who = {0};
    if (auth_enabled(srv)) {
        char msg[512];
        kerr_t e = auth_check(srv, req, &who, msg, sizeof msg);
        if (e != KERR_NONE) {
            reply_error_as(&rq, e, msg, cbor);
            return;
        }
    }
    /* who must be disposed of on every path below */
    handle_api(&rq, &who, cbor, ctype, clen);
    auth_principal_dispose(&who);
}

static void handle_api(request_t *rq, const auth_principal_t *who, bool cbor, const char *ctype, size_t clen)
{
    server_t *srv = rq->srv;
    http_request_t *req = rq->req;
    const char *target = NULL;
    size_t tlen = 0;
    /* DynamoDB (the KCL's lease table, server/dynamodb): AWS JSON 1.0, its own routing and replies. */
    http_request_header(req, "x-amz-target", &target, &tlen);
    if (target != NULL && tlen >= strlen(DDB_TARGET_PREFIX) &&
        memcmp(target, DDB_TARGET_PREFIX, strlen(DDB_TARGET_PREFIX)) == 0 && ctype != NULL &&
        (equals(ctype, clen, "application/x-amz-json-1.0") || equals(ctype, clen, "application/json"))) {
        if (auth_needs_authorization(srv, who)) {
            /* identity and resource policies name kinesis: actions only; fail closed */
            reply_text(rq, 400, "application/x-amz-json-1.0",
                       "{\"__type\":\"com.amazon.coral.service#AccessDeniedException\",\"message\":\"eddy does "
                       "not evaluate IAM policies for DynamoDB actions: use a key without identity policies\"}");
            return;
        }
        ddb_handle(srv, req, rq->id, rq->start_us, target + strlen(DDB_TARGET_PREFIX), tlen - strlen(DDB_TARGET_PREFIX));
        return;
    }
    if (ctype == NULL || !(cbor || equals(ctype, clen, "application/x-amz-json-1.1") || equals(ctype, clen, "application/json"))) {
        const char *auth;
        size_t alen;
        bool has_auth = http_request_header(req, "authorization", &auth, &alen);
        reply_error(rq, has_auth ? KERR_ACCESS_DENIED : KERR_MISSING_AUTHENTICATION_TOKEN,
                    has_auth ? "Unable to determine service/operation name to be authorized"
                             : "Missing Authentication Token");
        return;
    }
    http_request_header(req, "x-amz-target", &target, &tlen);
    const api_op_t *op = NULL;
    if (target != NULL && tlen > strlen(TARGET_PREFIX) && memcmp(target, TARGET_PREFIX, strlen(TARGET_PREFIX)) == 0) {
        op = api_find_op(target + strlen(TARGET_PREFIX), tlen - strlen(TARGET_PREFIX));
    }
    if (op == NULL) {
        reply_error_as(rq, KERR_UNKNOWN_OPERATION, NULL, cbor);
        return;
    }
    rq->op = op; /* errors from here on are logged and counted under the operation */

    size_t blen;
    const char *body = http_request_body(req, &blen);
    api_call_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        abort();
    }
    c->srv = srv;
    c->req = req;
    c->op = op->name;
    c->now_ms = clock_now_ms();
    c->cbor = cbor;
    c->start_us = rq->start_us;
    c->start_ms = c->now_ms - (clock_monotonic_us() - rq->start_us) / 1000;
    memcpy(c->request_id, rq->id, sizeof c->request_id);
    size_t nops;
    c->op_index = (int)(op - api_ops(&nops));
    c->latency = -1;
    jsonw_init(&c->w, &c->out);
    jsonw_obj_begin(&c->w);

    bool authorize = auth_needs_authorization(srv, who);
    if (op->fast != NULL && !cbor && !authorize) {
        catalog_rdlock(srv->catalog);
        bool handled = op->fast(c, body, blen);
        catalog_unlock(srv->catalog);
        if (handled) {
            return;
        }
    }

    cJSON *input;
    if (cbor) {
        char err[160];
        input = blen ? cbor_to_json(body, blen, err, sizeof err) : cJSON_CreateObject();
        if (input == NULL) {
            api_abandon(c);
            reply_error_as(rq, KERR_SERIALIZATION, err, true);
            return;
        }
    } else {
        input = blen ? cJSON_ParseWithLength(body, blen) : cJSON_CreateObject();
    }
    if (input == NULL || !cJSON_IsObject(input)) {
        cJSON_Delete(input);
        api_abandon(c);
        reply_error(rq, KERR_SERIALIZATION, input == NULL ? "Malformed JSON request body" : "Expected a JSON object");
        return;
    }
    buf_t msg = BUF_INIT;
    kerr_t verr = validate_input(input, op->input, &msg);
    if (verr != KERR_NONE) {
        reply_error_as(rq, verr, buf_cstr(&msg), cbor);
        buf_dispose(&msg);
        cJSON_Delete(input);
        api_abandon(c);
        return;
    }
    buf_dispose(&msg);
    c->input = input;
    if (authorize) {
        char why[1024];
        kerr_t e = auth_authorize(srv, who, op->name, input, http_request_is_tls(req), why, sizeof why);
        if (e != KERR_NONE) {
            api_error(c, e, "%s", why);
            return;
        }
    }

    if (op->data_plane) {
        /* Record operations share the catalog; they may finish later (after a group commit). */
        catalog_rdlock(srv->catalog);
        op->handler(c);
        catalog_unlock(srv->catalog);
        return;
    }
    /* Control-plane handlers work under the catalog's write lock and finish synchronously. */
    catalog_lock(srv->catalog);
    catalog_settle(srv->catalog, c->now_ms);
    op->handler(c);
    catalog_unlock(srv->catalog);
}
