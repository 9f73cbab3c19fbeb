/* auth: request authentication with SigV4 against the credentials file (see auth.h). */
#include "server/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include <cjson/cJSON.h>

#include "common/base64.h"
#include "server/dataplane.h"
#include "server/policy.h"
#include "common/sigv4.h"

#define AUTH_HEADERS_MAX 128

struct auth {
    pthread_mutex_t lock; /* guards set (swapped on reload) */
    credentials_t *set;   /* NULL: authentication off */
    policy_t *allow_all;  /* the identity policy of keys that have none */
};

static bool loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0) {
        return true;
    }
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1) {
        return a[0] == 127;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        return memcmp(a, one, 16) == 0;
    }
    return false;
}

int auth_init(server_t *srv, char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof *a);
    if (a == NULL) {
        abort();
    }
    pthread_mutex_init(&a->lock, NULL);
    srv->auth = a;
    static const char allow_all[] = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                                    "\"Action\":\"*\",\"Resource\":\"*\"}]}";
    char why[POLICY_ERR_MAX];
    if (policy_parse(POLICY_IDENTITY, allow_all, strlen(allow_all), &a->allow_all, why, sizeof why) != 0) {
        abort();
    }
    if (srv->cfg.credentials_path[0] != '\0') {
        a->set = credentials_load(srv->cfg.credentials_path, srv->cfg.account_id, err, errlen);
        if (a->set == NULL) {
            return -EINVAL;
        }
        log_info("authentication on: SigV4 with %zu key%s from %s", credentials_count(a->set),
                 credentials_count(a->set) == 1 ? "" : "s", srv->cfg.credentials_path);
        return 0;
    }
    if (!loopback(srv->cfg.host) && !srv->cfg.insecure) {
        snprintf(err, errlen,
                 "refusing to listen on %s without --credentials: anyone who can reach it could read and write "
                 "every stream (give --credentials FILE, or --insecure to accept unauthenticated requests)",
                 srv->cfg.host);
        return -EPERM;
    }
    log_warn("authentication off: no --credentials, so any well-formed request is accepted%s",
             loopback(srv->cfg.host) ? " (listening on loopback only)" : " (--insecure)");
    return 0;
}

void auth_reload(server_t *srv)
{
    struct auth *a = srv->auth;
    if (a == NULL || srv->cfg.credentials_path[0] == '\0') {
        log_info("SIGHUP: no credentials file to reload");
        return;
    }
    char err[512];
    credentials_t *fresh = credentials_load(srv->cfg.credentials_path, srv->cfg.account_id, err, sizeof err);
    if (fresh == NULL) {
        log_error("SIGHUP: keeping the current credentials: %s", err);
        return;
    }
    pthread_mutex_lock(&a->lock);
    credentials_t *old = a->set;
    a->set = fresh;
    pthread_mutex_unlock(&a->lock);
    credentials_unref(old);
    log_info("SIGHUP: reloaded %zu key%s from %s", credentials_count(fresh), credentials_count(fresh) == 1 ? "" : "s",
             srv->cfg.credentials_path);
}

void auth_dispose(server_t *srv)
{
    struct auth *a = srv->auth;
    if (a == NULL) {
        return;
    }
    credentials_unref(a->set);
    policy_free(a->allow_all);
    pthread_mutex_destroy(&a->lock);
    free(a);
    srv->auth = NULL;
}

bool auth_enabled(const server_t *srv)
{
    return srv->auth != NULL && srv->auth->set != NULL;
}

static credentials_t *current_set(struct auth *a)
{
    pthread_mutex_lock(&a->lock);
    credentials_t *set = a->set;
    if (set != NULL) {
        credentials_ref(set);
    }
    pthread_mutex_unlock(&a->lock);
    return set;
}

static bool header(const http_header_view_t *h, size_t n, const char *name, const char **v, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == strlen(name) && strncasecmp(h[i].name, name, h[i].name_len) == 0) {
            *v = h[i].value;
            *len = h[i].value_len;
            return true;
        }
    }
    return false;
}

kerr_t auth_check(server_t *srv, http_request_t *req, auth_principal_t *who, char *msg, size_t msglen)
{
    who->set = NULL;
    who->key = NULL;
    if (srv->auth == NULL) {
        return KERR_NONE;
    }
    credentials_t *set = current_set(srv->auth);
    if (set == NULL) {
        return KERR_NONE; /* authentication off */
    }
    http_header_view_t views[AUTH_HEADERS_MAX];
    sigv4_header_t headers[AUTH_HEADERS_MAX];
    size_t n = http_request_headers(req, views, AUTH_HEADERS_MAX);
    if (n > AUTH_HEADERS_MAX) {
        credentials_unref(set);
        snprintf(msg, msglen, "Too many headers to verify the signature (at most %d).", AUTH_HEADERS_MAX);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    for (size_t i = 0; i < n; i++) {
        headers[i] = (sigv4_header_t){views[i].name, views[i].name_len, views[i].value, views[i].value_len};
    }
    sigv4_request_t r = {.headers = headers, .nheaders = n};
    r.method = http_request_method(req, &r.method_len);
    r.target = http_request_path(req, &r.target_len);
    r.authority = http_request_authority(req, &r.authority_len);
    r.body = http_request_body(req, &r.body_len);

    sigv4_auth_t parsed;
    kerr_t e = sigv4_parse(&r, &parsed, msg, msglen);
    const credential_t *key = NULL;
    if (e == KERR_NONE) {
        key = credentials_find(set, parsed.key_id);
        if (key == NULL) {
            snprintf(msg, msglen, "The security token included in the request is invalid.");
            e = KERR_UNRECOGNIZED_CLIENT;
        }
    }
    if (e == KERR_NONE) {
        const char *token = NULL;
        size_t token_len = 0;
        bool has_token = header(views, n, "x-amz-security-token", &token, &token_len);
        bool match = key->session_token == NULL
                         ? !has_token
                         : has_token && token_len == strlen(key->session_token) &&
                               CRYPTO_memcmp(token, key->session_token, token_len) == 0;
        if (!match) {
            snprintf(msg, msglen, "The security token included in the request is invalid.");
            e = KERR_UNRECOGNIZED_CLIENT;
        }
    }
    int64_t now = clock_now_ms();
    if (e == KERR_NONE && key->expires_ms != 0 && now >= key->expires_ms) {
        snprintf(msg, msglen, "The security token included in the request is expired");
        e = KERR_EXPIRED_TOKEN;
    }
    if (e == KERR_NONE) {
        /* DynamoDB requests (the KCL's lease table, server/dynamodb) are signed for the service "dynamodb" */
        const char *target = NULL;
        size_t tlen = 0;
        bool dynamodb = header(views, n, "x-amz-target", &target, &tlen) && tlen > 18 &&
                        memcmp(target, "DynamoDB_20120810.", 18) == 0;
        e = sigv4_verify(&r, &parsed, key->secret, srv->cfg.region, dynamodb ? "dynamodb" : "kinesis", now, msg,
                         msglen);
        if (e == KERR_INVALID_SIGNATURE) {
            buf_t creq = BUF_INIT;
            sigv4_verified_canonical_request(&r, &parsed, &creq);
            log_debug("SigV4 mismatch for key %s; the canonical request was:\n%s", parsed.key_id, buf_cstr(&creq));
            buf_dispose(&creq);
        }
    }
    if (e != KERR_NONE) {
        credentials_unref(set);
        return e;
    }
    who->set = set;
    who->key = key;
    return KERR_NONE;
}

void auth_principal_dispose(auth_principal_t *who)
{
    credentials_unref(who->set);
    who->set = NULL;
    who->key = NULL;
}

/* ---- authorization ---- */

bool auth_needs_authorization(server_t *srv, const auth_principal_t *who)
{
    return who->key != NULL && (who->key->npolicies > 0 || catalog_policy_count(srv->catalog) > 0);
}

static const char *member(const cJSON *input, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(input, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The request's resource ARN into out ("*" when it names none). */
static void request_resource(server_t *srv, const char *op, const cJSON *input, buf_t *out)
{
    const char *arn = member(input, "ConsumerARN");
    if (arn == NULL) {
        arn = member(input, "ResourceARN");
    }
    if (arn == NULL) {
        arn = member(input, "StreamARN");
    }
    if (arn != NULL) {
        buf_puts(out, arn);
        return;
    }
    const char *name = member(input, "StreamName");
    iterator_pos_t pos;
    const char *token = member(input, "ShardIterator");
    if (name == NULL && token != NULL && strcmp(op, "GetRecords") == 0 &&
        iterator_decode(srv, token, strlen(token), INT64_MIN / 2, &pos) != ITERATOR_INVALID) {
        name = pos.stream;
        buf_printf(out, "arn:aws:kinesis:%s:%s:stream/%s", srv->cfg.region, srv->cfg.account_id, name);
        return;
    }
    if (name != NULL) {
        buf_printf(out, "arn:aws:kinesis:%s:%s:stream/%s", srv->cfg.region, srv->cfg.account_id, name);
        return;
    }
    buf_puts(out, "*");
}

/* A copy of the resource policy of the stream or consumer an ARN of this server names, or NULL. */
static char *resource_policy(server_t *srv, const char *arn)
{
    buf_t prefix = BUF_INIT;
    buf_printf(&prefix, "arn:aws:kinesis:%s:%s:stream/", srv->cfg.region, srv->cfg.account_id);
    if (strncmp(arn, prefix.data, prefix.len) != 0) {
        buf_dispose(&prefix);
        return NULL;
    }
    char name[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s", arn + prefix.len);
    buf_dispose(&prefix);
    char *consumer = strstr(name, "/consumer/");
    if (consumer != NULL) {
        *consumer = '\0';
        consumer += strlen("/consumer/");
        char *colon = strrchr(consumer, ':');
        if (colon != NULL) {
            *colon = '\0';
        }
    }
    char *copy = NULL;
    catalog_rdlock(srv->catalog);
    stream_t *s = catalog_find(srv->catalog, name);
    if (s != NULL) {
        consumer_t *con = consumer != NULL ? catalog_find_consumer(s, consumer) : NULL;
        const char *doc = consumer != NULL ? (con != NULL ? con->policy : NULL) : s->policy;
        if (doc != NULL) {
            copy = strdup(doc);
        }
    }
    catalog_unlock(srv->catalog);
    return copy;
}

kerr_t auth_authorize(server_t *srv, const auth_principal_t *who, const char *op, const cJSON *input,
                      bool secure_transport, char *msg, size_t msglen)
{
    if (!auth_needs_authorization(srv, who)) {
        return KERR_NONE;
    }
    buf_t resource = BUF_INIT, principal = BUF_INIT, action = BUF_INIT;
    request_resource(srv, op, input, &resource);
    buf_printf(&principal, "arn:aws:iam::%s:user/%s", who->key->account_id, who->key->key_id);
    buf_printf(&action, "kinesis:%s", op);
    policy_t *resource_pol = NULL;
    char *doc = strcmp(buf_cstr(&resource), "*") != 0 ? resource_policy(srv, buf_cstr(&resource)) : NULL;
    if (doc != NULL) {
        char why[POLICY_ERR_MAX];
        if (policy_parse(POLICY_RESOURCE, doc, strlen(doc), &resource_pol, why, sizeof why) != 0) {
            log_warn("the resource policy of %s no longer parses: %s", buf_cstr(&resource), why);
        }
        free(doc);
    }
    const policy_t *allow_all = srv->auth->allow_all;
    const policy_t *const *identity = who->key->npolicies > 0 ? (const policy_t *const *)who->key->compiled : &allow_all;
    size_t nidentity = who->key->npolicies > 0 ? who->key->npolicies : 1;
    policy_request_t req = {
        .account_id = who->key->account_id,
        .principal_arn = buf_cstr(&principal),
        .action = buf_cstr(&action),
        .resource = buf_cstr(&resource),
        .source_ip = NULL,
        .secure_transport = secure_transport,
    };
    policy_reason_t reason = {0};
    policy_decision_t d = policy_evaluate(identity, nidentity, resource_pol, &req, &reason);
    kerr_t e = KERR_NONE;
    if (d != POLICY_ALLOW) {
        if (d == POLICY_DENY_EXPLICIT) {
            snprintf(msg, msglen, "User: %s is not authorized to perform: %s on resource: %s with an explicit deny in a%s policy",
                     req.principal_arn, req.action, req.resource,
                     reason.policy != NULL && policy_kind(reason.policy) == POLICY_RESOURCE ? " resource-based"
                                                                                           : "n identity-based");
        } else {
            snprintf(msg, msglen,
                     "User: %s is not authorized to perform: %s on resource: %s because no identity-based policy "
                     "allows the %s action",
                     req.principal_arn, req.action, req.resource, req.action);
        }
        e = KERR_ACCESS_DENIED;
    }
    policy_free(resource_pol);
    buf_dispose(&resource);
    buf_dispose(&principal);
    buf_dispose(&action);
    return e;
}

/* The key of an "Authorization: Basic base64(KEY_ID:SECRET)" header whose secret matches, or NULL. */
static const credential_t *basic_key(const credentials_t *set, const char *value, size_t len)
{
    static const char scheme[] = "Basic ";
    if (len <= strlen(scheme) || strncasecmp(value, scheme, strlen(scheme)) != 0 || len > 2048) {
        return NULL;
    }
    value += strlen(scheme);
    len -= strlen(scheme);
    unsigned char decoded[1600];
    long n = base64_decode(value, len, decoded);
    if (n <= 0) {
        return NULL;
    }
    const unsigned char *colon = memchr(decoded, ':', (size_t)n);
    if (colon == NULL) {
        return NULL;
    }
    char key_id[256];
    size_t id_len = (size_t)(colon - decoded);
    if (id_len >= sizeof key_id) {
        return NULL;
    }
    memcpy(key_id, decoded, id_len);
    key_id[id_len] = '\0';
    const credential_t *key = credentials_find(set, key_id);
    size_t secret_len = (size_t)n - id_len - 1;
    if (key == NULL || strlen(key->secret) != secret_len ||
        CRYPTO_memcmp(key->secret, colon + 1, secret_len) != 0) {
        return NULL;
    }
    if (key->expires_ms != 0 && clock_now_ms() >= key->expires_ms) {
        return NULL;
    }
    return key;
}

bool auth_check_console(server_t *srv, http_request_t *req, int *status, char *msg, size_t msglen)
{
    if (!auth_enabled(srv)) {
        return true;
    }
    auth_principal_t who = {0};
    const char *value;
    size_t len;
    bool ok;
    if (http_request_header(req, "authorization", &value, &len) && len > 6 && strncasecmp(value, "Basic ", 6) == 0) {
        who.set = current_set(srv->auth);
        who.key = who.set != NULL ? basic_key(who.set, value, len) : NULL;
        ok = who.key != NULL;
        if (!ok) {
            snprintf(msg, msglen, "Unknown access key or wrong secret.");
        }
    } else {
        ok = auth_check(srv, req, &who, msg, msglen) == KERR_NONE && who.key != NULL;
    }
    if (!ok) {
        auth_principal_dispose(&who);
        *status = 401;
        return false;
    }
    cJSON *input = cJSON_CreateObject();
    kerr_t e = auth_needs_authorization(srv, &who)
                   ? auth_authorize(srv, &who, "ListStreams", input, http_request_is_tls(req), msg, msglen)
                   : KERR_NONE;
    cJSON_Delete(input);
    auth_principal_dispose(&who);
    if (e != KERR_NONE) {
        *status = 403;
        return false;
    }
    return true;
}
