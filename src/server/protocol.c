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

static void reply_error_as(http_request_t *req, kerr_t code, const char *message, bool cbor);

static void reply_error(http_request_t *req, kerr_t code, const char *message)
{
    reply_error_as(req, code, message, false);
}

static void reply_error_as(http_request_t *req, kerr_t code, const char *message, bool cbor)
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
        http_reply(req, info->http_status, "application/x-amz-cbor-1.1", &cb);
        return;
    }
    http_reply(req, info->http_status, "application/x-amz-json-1.1", &body);
}

static void health(http_request_t *req, server_t *srv, bool ready_check)
{
    if (ready_check && !atomic_load(&srv->ready)) {
        http_reply_text(req, 503, "application/json", "{\"status\":\"starting\"}");
        return;
    }
    http_reply_text(req, 200, "application/json", ready_check ? "{\"status\":\"ready\"}" : "{\"status\":\"live\"}");
}

static void handle_api(server_t *srv, http_request_t *req, const auth_principal_t *who, bool cbor, const char *ctype,
                       size_t clen);

void protocol_handle(http_request_t *req, void *arg)
{
    server_t *srv = arg;
    size_t mlen, plen;
    const char *method = http_request_method(req, &mlen);
    const char *path = http_request_path(req, &plen);
    char rid[37];
    request_id(rid);
    http_add_header(req, "x-amzn-requestid", rid, strlen(rid));

    if (equals(method, mlen, "GET") || equals(method, mlen, "HEAD")) {
        if (equals(path, plen, "/health/live")) {
            health(req, srv, false);
        } else if (equals(path, plen, "/health/ready")) {
            health(req, srv, true);
        } else {
            http_reply_text(req, 404, "application/json", "{\"message\":\"Not Found\"}");
        }
        return;
    }
    if (!equals(method, mlen, "POST")) {
        http_reply_text(req, 405, "application/json", "{\"message\":\"Method Not Allowed\"}");
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
            reply_error_as(req, e, msg, cbor);
            return;
        }
    }
    /* who must be disposed of on every path below */
    handle_api(srv, req, &who, cbor, ctype, clen);
    auth_principal_dispose(&who);
}

static void handle_api(server_t *srv, http_request_t *req, const auth_principal_t *who, bool cbor, const char *ctype,
                       size_t clen)
{
    const char *target = NULL;
    size_t tlen = 0;
    if (ctype == NULL || !(cbor || equals(ctype, clen, "application/x-amz-json-1.1") || equals(ctype, clen, "application/json"))) {
        const char *auth;
        size_t alen;
        bool has_auth = http_request_header(req, "authorization", &auth, &alen);
        reply_error(req, has_auth ? KERR_ACCESS_DENIED : KERR_MISSING_AUTHENTICATION_TOKEN,
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
        reply_error_as(req, KERR_UNKNOWN_OPERATION, NULL, cbor);
        return;
    }

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
            reply_error_as(req, KERR_SERIALIZATION, err, true);
            return;
        }
    } else {
        input = blen ? cJSON_ParseWithLength(body, blen) : cJSON_CreateObject();
    }
    if (input == NULL || !cJSON_IsObject(input)) {
        cJSON_Delete(input);
        api_abandon(c);
        reply_error(req, KERR_SERIALIZATION, input == NULL ? "Malformed JSON request body" : "Expected a JSON object");
        return;
    }
    buf_t msg = BUF_INIT;
    kerr_t verr = validate_input(input, op->input, &msg);
    if (verr != KERR_NONE) {
        reply_error_as(req, verr, buf_cstr(&msg), cbor);
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
