/* auth: request authentication with SigV4 against the credentials file (see auth.h). */
#include "server/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "server/sigv4.h"

#define AUTH_HEADERS_MAX 128

struct auth {
    pthread_mutex_t lock; /* guards set (swapped on reload) */
    credentials_t *set;   /* NULL: authentication off */
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
        e = sigv4_verify(&r, &parsed, key->secret, srv->cfg.region, "kinesis", now, msg, msglen);
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
