/*
 * client: libeddy's Kinesis client (include/eddy/client.h): configuration, credentials, SigV4-signed AWS
 * JSON 1.1 requests over libcurl's multi interface, retries with backoff.
 *
 * Threads. The caller's threads only submit: eddy_client_call_async copies the request into a call, pushes
 * it on `submitted` under `lock` and wakes the I/O thread (curl_multi_wakeup). The I/O thread owns the rest:
 * the multi handle and every easy handle, the pool of idle easy handles, the backoff timers and every call
 * it has taken from the queue. A call's life, all on the I/O thread after submission:
 *     submitted -> attempt (an easy handle in the multi) -> [backoff timer -> attempt]... -> done() -> freed
 * `live` counts the calls accepted and not yet done; eddy_client_free sets `closing` (no new calls), and the
 * thread leaves its loop once `live` is 0, so every accepted call gets its callback exactly once.
 *
 * Connections belong to the multi handle's cache, so they outlive easy handles: HTTP/1.1 keep-alive or
 * HTTP/2 (ALPN on https:, prior knowledge on request), at most max_connections per host; with HTTP/2,
 * CURLOPT_PIPEWAIT makes new requests wait for a connection that can multiplex rather than open another.
 *
 * Timers. A retry waits in a binary min-heap of calls keyed by due time; the loop's poll timeout is the time
 * to the earliest, so waiting never blocks other requests.
 *
 * Memory. Nothing here aborts (STYLE.md): every allocation is checked and a failure becomes EDDY_ERR_NOMEM
 * for the call or the function concerned. buf_t is only grown through sigv4 (which reserves with
 * buf_try_reserve).
 */
#include "client/client_private.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/eventstream.h"
#include "common/kinesis_errors.h"
#include "common/sigv4.h"

#ifndef EDDY_VERSION
#define EDDY_VERSION "0"
#endif

#define OPERATION_MAX 64
#define TARGET_MAX (32 + OPERATION_MAX)
#define REPLY_MAX ((size_t)64 << 20) /* a larger reply is a protocol error (GetRecords returns <= 10 MiB) */
#define POOL_MAX 64                  /* idle easy handles kept */
#define ERROR_TYPE_MAX 128
#define MESSAGE_MAX 1024
#define REQUEST_ID_MAX 128
#define POLL_MAX_MS 1000
#define CREDENTIALS_FILE_MAX ((long)1 << 20)

/* ---- small helpers ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A non-empty environment variable, or NULL. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Copies s (NULL stays NULL) into *dst, freeing what was there; false when out of memory (*dst kept). */
static bool replace(char **dst, const char *s)
{
    char *copy = NULL;
    if (s != NULL && (copy = strdup(s)) == NULL) {
        return false;
    }
    free(*dst);
    *dst = copy;
    return true;
}

static void copy_trunc(char *dst, size_t cap, const char *s, size_t n)
{
    if (cap == 0) {
        return;
    }
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* No control characters (a value that ends up in a header must not split it). */
static bool printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return false;
        }
    }
    return true;
}

static uint64_t next_random(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- errors ---- */

const char *eddy_err_name(int err)
{
    switch (err) {
    case EDDY_OK:
        return "EDDY_OK";
    case EDDY_ERR_INVALID:
        return "EDDY_ERR_INVALID";
    case EDDY_ERR_NOMEM:
        return "EDDY_ERR_NOMEM";
    case EDDY_ERR_TRANSPORT:
        return "EDDY_ERR_TRANSPORT";
    case EDDY_ERR_TIMEOUT:
        return "EDDY_ERR_TIMEOUT";
    case EDDY_ERR_SERVICE:
        return "EDDY_ERR_SERVICE";
    case EDDY_ERR_PROTOCOL:
        return "EDDY_ERR_PROTOCOL";
    case EDDY_ERR_CREDENTIALS:
        return "EDDY_ERR_CREDENTIALS";
    case EDDY_ERR_WOULD_BLOCK:
        return "EDDY_ERR_WOULD_BLOCK";
    case EDDY_ERR_CLOSED:
        return "EDDY_ERR_CLOSED";
    case EDDY_ERR_EXPIRED:
        return "EDDY_ERR_EXPIRED";
    case EDDY_ERR_TOO_LARGE:
        return "EDDY_ERR_TOO_LARGE";
    case EDDY_ERR_CANCELLED:
        return "EDDY_ERR_CANCELLED";
    case EDDY_ERR_LEASE_LOST:
        return "EDDY_ERR_LEASE_LOST";
    case EDDY_ERR_SHUTDOWN:
        return "EDDY_ERR_SHUTDOWN";
    default:
        return "EDDY_ERR_UNKNOWN";
    }
}

/* By the code alone. EDDY_ERR_SERVICE depends on the error's type: eddy_response_t.retriable says. */
bool eddy_err_retriable(int err)
{
    return err == EDDY_ERR_TRANSPORT || err == EDDY_ERR_TIMEOUT || err == EDDY_ERR_WOULD_BLOCK;
}

bool client_error_retriable(int http_status, const char *type)
{
    if (type != NULL && type[0] != '\0') {
        const kerr_info_t *k = kerr_by_type(type, strlen(type));
        if (k != NULL && k->retriable) {
            return true;
        }
        /* DynamoDB's retriable errors that Kinesis does not share */
        static const char *const dynamodb[] = {"ProvisionedThroughputExceededException", "ThrottlingException",
                                               "RequestLimitExceeded", "InternalServerError",
                                               "ServiceUnavailable", "LimitExceededException"};
        for (size_t i = 0; i < sizeof dynamodb / sizeof dynamodb[0]; i++) {
            if (strcmp(type, dynamodb[i]) == 0) {
                return true;
            }
        }
    }
    return http_status >= 500 || http_status == 429;
}

int64_t client_backoff_ms(long base_ms, long max_ms, int retry, uint64_t *rng)
{
    int64_t cap = base_ms > 0 ? base_ms : 0, max = max_ms > 0 ? max_ms : 0;
    for (int i = 0; i < retry && cap < max; i++) {
        cap *= 2; /* stops once past max: no overflow */
    }
    if (cap > max) {
        cap = max;
    }
    return (int64_t)(next_random(rng) % (uint64_t)(cap + 1));
}

/* Copies the part of a type after the last '#' ("aws.protocoltests#ResourceNotFoundException"). */
static void copy_type(char *dst, size_t cap, const char *s, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == '#') {
            s += i;
            n -= i;
            break;
        }
    }
    copy_trunc(dst, cap, s, n);
}

void client_parse_error(const char *body, size_t len, const char *header_type, char *type, size_t type_len,
                        char *message, size_t message_len)
{
    type[0] = '\0';
    message[0] = '\0';
    cJSON *doc = len > 0 ? cJSON_ParseWithLength(body, len) : NULL; /* NULL also when out of memory */
    if (doc != NULL) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "__type");
        if (cJSON_IsString(t)) {
            copy_type(type, type_len, t->valuestring, strlen(t->valuestring));
        }
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "message");
        if (!cJSON_IsString(m)) {
            m = cJSON_GetObjectItemCaseSensitive(doc, "Message");
        }
        if (cJSON_IsString(m)) {
            copy_trunc(message, message_len, m->valuestring, strlen(m->valuestring));
        }
        cJSON_Delete(doc);
    }
    if (type[0] == '\0' && header_type != NULL) {
        /* "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/" */
        size_t n = strcspn(header_type, ":");
        copy_type(type, type_len, header_type, n);
    }
}

/* ---- configuration ---- */

eddy_config_t *eddy_config_new(void)
{
    eddy_config_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        return NULL;
    }
    cfg->http2 = CLIENT_HTTP2_ON;
    cfg->max_connections = 24;
    cfg->request_timeout_ms = 6000;
    cfg->connect_timeout_ms = 6000;
    cfg->max_retries = 3;
    cfg->retry_base_ms = 25;
    cfg->retry_max_ms = 2000;
    cfg->verify_tls = true;

    const char *endpoint = env("AWS_ENDPOINT_URL_KINESIS");
    const char *region = env("AWS_REGION");
    bool ok = replace(&cfg->endpoint, endpoint != NULL ? endpoint : env("AWS_ENDPOINT_URL")) &&
              replace(&cfg->region, region != NULL ? region : env("AWS_DEFAULT_REGION")) &&
              (cfg->region != NULL || replace(&cfg->region, "us-east-1")) &&
              replace(&cfg->env_access_key_id, env("AWS_ACCESS_KEY_ID")) &&
              replace(&cfg->env_secret_access_key, env("AWS_SECRET_ACCESS_KEY")) &&
              replace(&cfg->env_session_token, env("AWS_SESSION_TOKEN")) &&
              replace(&cfg->profile, env("AWS_PROFILE")) &&
              replace(&cfg->credentials_file, env("AWS_SHARED_CREDENTIALS_FILE"));
    if (!ok) {
        eddy_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void cleanse_free(char *s)
{
    if (s != NULL) {
        /* a secret should not linger in freed memory */
        volatile char *p = s;
        while (*p != '\0') {
            *p++ = '\0';
        }
        free(s);
    }
}

void eddy_config_free(eddy_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->endpoint);
    free(cfg->region);
    free(cfg->access_key_id);
    cleanse_free(cfg->secret_access_key);
    cleanse_free(cfg->session_token);
    free(cfg->env_access_key_id);
    cleanse_free(cfg->env_secret_access_key);
    cleanse_free(cfg->env_session_token);
    free(cfg->profile);
    free(cfg->credentials_file);
    free(cfg->ca_file);
    free(cfg->user_agent_suffix);
    free(cfg);
}

typedef struct int_key {
    const char *name;
    size_t offset;
    long min, max;
} int_key_t;

static const int_key_t int_keys[] = {
    {"max_connections", offsetof(eddy_config_t, max_connections), 1, 1000},
    {"request_timeout_ms", offsetof(eddy_config_t, request_timeout_ms), 1, 3600000},
    {"connect_timeout_ms", offsetof(eddy_config_t, connect_timeout_ms), 1, 3600000},
    {"max_retries", offsetof(eddy_config_t, max_retries), 0, 100},
    {"retry_base_ms", offsetof(eddy_config_t, retry_base_ms), 1, 3600000},
    {"retry_max_ms", offsetof(eddy_config_t, retry_max_ms), 1, 3600000},
};

static bool parse_bool(const char *v, bool *out)
{
    if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* A string key: "" unsets it. */
static int set_string(char **dst, const char *key, const char *value, char *err, size_t errlen)
{
    if (!printable(value)) {
        set_err(err, errlen, "%s must not contain control characters", key);
        return EDDY_ERR_INVALID;
    }
    if (!replace(dst, value[0] != '\0' ? value : NULL)) {
        set_err(err, errlen, "out of memory");
        return EDDY_ERR_NOMEM;
    }
    return EDDY_OK;
}

int eddy_config_set(eddy_config_t *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    if (cfg == NULL || key == NULL || value == NULL) {
        set_err(err, errlen, "eddy_config_set: the configuration, key and value must not be NULL");
        return EDDY_ERR_INVALID;
    }
    if (strcmp(key, "service") == 0) {
        client_service_t service;
        const char *env_name;
        if (strcmp(value, "kinesis") == 0) {
            service = CLIENT_SERVICE_KINESIS;
            env_name = "AWS_ENDPOINT_URL_KINESIS";
        } else if (strcmp(value, "dynamodb") == 0) {
            service = CLIENT_SERVICE_DYNAMODB;
            env_name = "AWS_ENDPOINT_URL_DYNAMODB";
        } else {
            set_err(err, errlen, "service '%s': kinesis or dynamodb", value);
            return EDDY_ERR_INVALID;
        }
        cfg->service = service;
        if (!cfg->endpoint_is_set) { /* the endpoint the AWS tools would take for this service */
            const char *endpoint = env(env_name);
            if (!replace(&cfg->endpoint, endpoint != NULL ? endpoint : env("AWS_ENDPOINT_URL"))) {
                set_err(err, errlen, "out of memory");
                return EDDY_ERR_NOMEM;
            }
        }
        return EDDY_OK;
    }
    if (strcmp(key, "endpoint") == 0) {
        cfg->endpoint_is_set = true;
        if (value[0] != '\0') {
            client_endpoint_t e;
            int rc = client_parse_endpoint(value, &e, err, errlen);
            if (rc != 0) {
                return rc;
            }
            client_endpoint_dispose(&e);
        }
        return set_string(&cfg->endpoint, key, value, err, errlen);
    }
    if (strcmp(key, "region") == 0) {
        size_t n = strlen(value);
        if (n == 0 || n > 63 || strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789-") != n) {
            set_err(err, errlen, "region '%s' is not a region name (like us-east-1: 1 to 63 lower-case letters, "
                                 "digits and '-')", value);
            return EDDY_ERR_INVALID;
        }
        return set_string(&cfg->region, key, value, err, errlen);
    }
    if (strcmp(key, "access_key_id") == 0) {
        if (strlen(value) > SIGV4_KEY_ID_MAX || strchr(value, '/') != NULL || strchr(value, ' ') != NULL) {
            set_err(err, errlen, "access_key_id must be at most %d characters, without '/' or spaces",
                    SIGV4_KEY_ID_MAX);
            return EDDY_ERR_INVALID;
        }
        return set_string(&cfg->access_key_id, key, value, err, errlen);
    }
    if (strcmp(key, "secret_access_key") == 0) {
        return set_string(&cfg->secret_access_key, key, value, err, errlen);
    }
    if (strcmp(key, "session_token") == 0) {
        return set_string(&cfg->session_token, key, value, err, errlen);
    }
    if (strcmp(key, "profile") == 0) {
        return set_string(&cfg->profile, key, value, err, errlen);
    }
    if (strcmp(key, "credentials_file") == 0) {
        return set_string(&cfg->credentials_file, key, value, err, errlen);
    }
    if (strcmp(key, "http2") == 0) {
        bool on;
        if (strcasecmp(value, "prior-knowledge") == 0) {
            cfg->http2 = CLIENT_HTTP2_PRIOR_KNOWLEDGE;
        } else if (parse_bool(value, &on)) {
            cfg->http2 = on ? CLIENT_HTTP2_ON : CLIENT_HTTP2_OFF;
        } else {
            set_err(err, errlen, "http2 must be \"true\", \"false\" or \"prior-knowledge\", not '%s'", value);
            return EDDY_ERR_INVALID;
        }
        return EDDY_OK;
    }
    if (strcmp(key, "verify_tls") == 0) {
        if (!parse_bool(value, &cfg->verify_tls)) {
            set_err(err, errlen, "verify_tls must be \"true\" or \"false\", not '%s'", value);
            return EDDY_ERR_INVALID;
        }
        return EDDY_OK;
    }
    if (strcmp(key, "ca_file") == 0) {
        if (value[0] != '\0' && access(value, R_OK) != 0) {
            set_err(err, errlen, "ca_file '%s' cannot be read: %s", value, strerror(errno));
            return EDDY_ERR_INVALID;
        }
        return set_string(&cfg->ca_file, key, value, err, errlen);
    }
    if (strcmp(key, "user_agent_suffix") == 0) {
        return set_string(&cfg->user_agent_suffix, key, value, err, errlen);
    }
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        const int_key_t *k = &int_keys[i];
        if (strcmp(key, k->name) != 0) {
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || errno != 0 || v < k->min || v > k->max) {
            set_err(err, errlen, "%s must be a whole number from %ld to %ld, not '%s'", k->name, k->min, k->max,
                    value);
            return EDDY_ERR_INVALID;
        }
        *(long *)((char *)cfg + k->offset) = (long)v;
        return EDDY_OK;
    }
    set_err(err, errlen,
            "unknown configuration key '%s' (known: endpoint, region, access_key_id, secret_access_key, "
            "session_token, profile, credentials_file, http2, max_connections, request_timeout_ms, "
            "connect_timeout_ms, max_retries, retry_base_ms, retry_max_ms, verify_tls, ca_file, user_agent_suffix)",
            key);
    return EDDY_ERR_INVALID;
}

/* ---- credentials ---- */

void client_credentials_dispose(client_credentials_t *c)
{
    free(c->key_id);
    cleanse_free(c->secret);
    cleanse_free(c->token);
    c->key_id = c->secret = c->token = NULL;
}

static int credentials_from(client_credentials_t *out, const char *key_id, const char *secret, const char *token,
                            const char *source, char *err, size_t errlen)
{
    if (!replace(&out->key_id, key_id) || !replace(&out->secret, secret) ||
        !replace(&out->token, token != NULL && token[0] != '\0' ? token : NULL)) {
        client_credentials_dispose(out);
        set_err(err, errlen, "out of memory");
        return EDDY_ERR_NOMEM;
    }
    snprintf(out->source, sizeof out->source, "%s", source);
    return EDDY_OK;
}

static char *trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t')) {
        s++;
    }
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) {
        end--;
    }
    *end = '\0';
    return s;
}

int client_read_credentials_file(const char *path, const char *profile, client_credentials_t *out, char *err,
                                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = EDDY_ERR_CREDENTIALS;
    char *text = NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        set_err(err, errlen, "cannot open the credentials file %s: %s", path, strerror(errno));
        return EDDY_ERR_CREDENTIALS;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        set_err(err, errlen, "cannot read the credentials file %s: %s", path, strerror(errno));
        goto out;
    }
    long size = ftell(f);
    if (size < 0 || size > CREDENTIALS_FILE_MAX) {
        set_err(err, errlen, "the credentials file %s is not a readable file of at most 1 MiB", path);
        goto out;
    }
    rewind(f);
    text = malloc((size_t)size + 1);
    if (text == NULL) {
        set_err(err, errlen, "out of memory");
        rc = EDDY_ERR_NOMEM;
        goto out;
    }
    size_t got = fread(text, 1, (size_t)size, f);
    if (ferror(f)) {
        set_err(err, errlen, "cannot read the credentials file %s: %s", path, strerror(errno));
        goto out;
    }
    text[got] = '\0';

    bool in_profile = false, found = false;
    const char *key_id = NULL, *secret = NULL, *token = NULL;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        char *end = nl != NULL ? nl : line + strlen(line);
        char *next = nl != NULL ? nl + 1 : NULL;
        char *s = trim(line, end);
        line = next;
        if (s[0] == '\0' || s[0] == '#' || s[0] == ';') {
            continue;
        }
        if (s[0] == '[') {
            char *close = strchr(s, ']');
            if (close == NULL) {
                in_profile = false;
                continue;
            }
            char *name = trim(s + 1, close);
            in_profile = strcmp(name, profile) == 0;
            found |= in_profile;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_profile || eq == NULL) {
            continue;
        }
        char *k = trim(s, eq);
        char *v = trim(eq + 1, eq + 1 + strlen(eq + 1));
        if (strcasecmp(k, "aws_access_key_id") == 0) {
            key_id = v;
        } else if (strcasecmp(k, "aws_secret_access_key") == 0) {
            secret = v;
        } else if (strcasecmp(k, "aws_session_token") == 0) {
            token = v;
        }
    }
    if (!found) {
        set_err(err, errlen, "no profile [%s] in the credentials file %s", profile, path);
        goto out;
    }
    if (key_id == NULL || key_id[0] == '\0' || secret == NULL || secret[0] == '\0') {
        set_err(err, errlen, "the profile [%s] of the credentials file %s has no %s", profile, path,
                key_id == NULL || key_id[0] == '\0' ? "aws_access_key_id" : "aws_secret_access_key");
        goto out;
    }
    if (strlen(key_id) > SIGV4_KEY_ID_MAX || !printable(key_id) || !printable(secret) ||
        (token != NULL && !printable(token))) {
        set_err(err, errlen, "the profile [%s] of the credentials file %s has a malformed key", profile, path);
        goto out;
    }
    char source[320];
    snprintf(source, sizeof source, "%s [%s]", path, profile);
    rc = credentials_from(out, key_id, secret, token, source, err, errlen);
out:
    if (text != NULL) {
        memset(text, 0, (size_t)size); /* it held secrets */
        free(text);
    }
    fclose(f);
    return rc;
}

int client_resolve_credentials(const eddy_config_t *cfg, client_credentials_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (cfg->access_key_id != NULL || cfg->secret_access_key != NULL) {
        if (cfg->access_key_id == NULL || cfg->secret_access_key == NULL) {
            set_err(err, errlen, "access_key_id and secret_access_key must be set together (%s is missing)",
                    cfg->access_key_id == NULL ? "access_key_id" : "secret_access_key");
            return EDDY_ERR_CREDENTIALS;
        }
        return credentials_from(out, cfg->access_key_id, cfg->secret_access_key, cfg->session_token,
                                "configuration", err, errlen);
    }
    if (cfg->env_access_key_id != NULL || cfg->env_secret_access_key != NULL) {
        if (cfg->env_access_key_id == NULL || cfg->env_secret_access_key == NULL) {
            set_err(err, errlen, "%s is set in the environment but %s is not",
                    cfg->env_access_key_id != NULL ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                    cfg->env_access_key_id != NULL ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
            return EDDY_ERR_CREDENTIALS;
        }
        if (strlen(cfg->env_access_key_id) > SIGV4_KEY_ID_MAX || !printable(cfg->env_access_key_id) ||
            !printable(cfg->env_secret_access_key) ||
            (cfg->env_session_token != NULL && !printable(cfg->env_session_token))) {
            set_err(err, errlen, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN is malformed");
            return EDDY_ERR_CREDENTIALS;
        }
        return credentials_from(out, cfg->env_access_key_id, cfg->env_secret_access_key, cfg->env_session_token,
                                "environment", err, errlen);
    }
    const char *profile = cfg->profile != NULL ? cfg->profile : "default";
    char path[4096];
    if (cfg->credentials_file != NULL) {
        snprintf(path, sizeof path, "%s", cfg->credentials_file);
    } else if (env("HOME") != NULL) {
        snprintf(path, sizeof path, "%s/.aws/credentials", env("HOME"));
    } else {
        set_err(err, errlen,
                "no credentials: set access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or a credentials file (HOME is not set)");
        return EDDY_ERR_CREDENTIALS;
    }
    char why[512];
    int rc = client_read_credentials_file(path, profile, out, why, sizeof why);
    if (rc == EDDY_ERR_CREDENTIALS) {
        set_err(err, errlen,
                "no credentials: set access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or the profile [%s] in %s (%s)",
                profile, path, why);
    } else if (rc != 0) {
        set_err(err, errlen, "%s", why);
    }
    return rc;
}

/* ---- endpoint ---- */

void client_endpoint_dispose(client_endpoint_t *e)
{
    free(e->authority);
    free(e->path);
    free(e->url);
    free(e->display);
    memset(e, 0, sizeof *e);
}

int client_parse_endpoint(const char *url, client_endpoint_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        out->https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        set_err(err, errlen, "endpoint '%s' must start with http:// or https://", url);
        return EDDY_ERR_INVALID;
    }
    for (const char *s = url; *s != '\0'; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '?' || *s == '#') {
            set_err(err, errlen, "endpoint '%s' must be scheme://host[:port][/path] without spaces, query or fragment",
                    url);
            return EDDY_ERR_INVALID;
        }
    }
    size_t alen = strcspn(p, "/");
    if (memchr(p, '@', alen) != NULL) {
        set_err(err, errlen, "endpoint '%s' must not carry user information", url);
        return EDDY_ERR_INVALID;
    }
    const char *host_end;
    if (alen > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        host_end = close != NULL ? close + 1 : NULL;
        if (close == p + 1) {
            host_end = NULL;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        host_end = colon != NULL ? colon : p + alen;
    }
    if (host_end == NULL || host_end == p) {
        set_err(err, errlen, "endpoint '%s' has no host", url);
        return EDDY_ERR_INVALID;
    }
    if (host_end < p + alen) {
        const char *port = host_end + 1;
        size_t plen = (size_t)(p + alen - port);
        long v = 0;
        for (size_t i = 0; i < plen && i < 6; i++) {
            v = port[i] >= '0' && port[i] <= '9' ? v * 10 + (port[i] - '0') : -1;
            if (v < 0) {
                break;
            }
        }
        if (*host_end != ':' || plen == 0 || plen > 5 || v < 1 || v > 65535) {
            set_err(err, errlen, "endpoint '%s' has a bad port (1 to 65535)", url);
            return EDDY_ERR_INVALID;
        }
    }
    const char *path = p[alen] != '\0' ? p + alen : "/";
    const char *scheme = out->https ? "https://" : "http://";
    size_t n = strlen(scheme) + alen + strlen(path) + 1;
    out->authority = strndup(p, alen);
    out->path = strdup(path);
    out->url = malloc(n);
    out->display = malloc(n);
    if (out->authority == NULL || out->path == NULL || out->url == NULL || out->display == NULL) {
        client_endpoint_dispose(out);
        set_err(err, errlen, "out of memory");
        return EDDY_ERR_NOMEM;
    }
    snprintf(out->url, n, "%s%.*s%s", scheme, (int)alen, p, path);
    snprintf(out->display, n, "%s%.*s%s", scheme, (int)alen, p, strcmp(path, "/") == 0 ? "" : path);
    return EDDY_OK;
}

/* ---- the client ---- */

typedef struct call call_t;

struct call {
    call_t *next; /* in the submission queue (under the client's lock) */
    eddy_client_t *client;
    char target[TARGET_MAX]; /* X-Amz-Target */
    char *body; /* an owned copy, or the caller's (body_borrowed) */
    bool body_borrowed;
    size_t body_len;
    char payload_hash[65];
    eddy_call_fn done;
    void *arg;
    /* the I/O thread's from here */
    int attempts;
    bool h2_bootstrap; /* this attempt opens the prior-knowledge connection (see pk_workaround) */
    int64_t due_us;    /* when the backoff timer fires */
    int64_t started_us;
    CURL *easy;                  /* during an attempt */
    struct curl_slist *headers;  /* during an attempt */
    char *reply;                 /* the attempt's reply body, NUL-terminated (reply_cap > reply_len) */
    size_t reply_len, reply_cap;
    bool reply_nomem, reply_too_large;
    char request_id[REQUEST_ID_MAX];
    char header_error_type[ERROR_TYPE_MAX];
    char curl_error[CURL_ERROR_SIZE];
    /* the outcome of the last attempt */
    int err;
    int http_status;
    bool retriable;
    int64_t latency_us;
    char error_type[ERROR_TYPE_MAX];
    char message[MESSAGE_MAX];
    /* streaming calls only: the reply buffer holds the event bytes not yet decoded */
    eddy_event_fn on_event;
    eddy_stream_t *stream;
    call_t *stream_next; /* in the client's list of live streams (I/O thread) */
    bool delivered;      /* an event went to on_event: no more retries */
    bool paused;
    bool stream_error;   /* a malformed stream, or a modeled exception (error_type set) */
    bool end_pending;    /* the transfer ended while paused with events undelivered: completes once drained */
};

/* A stream's handle: the caller's reference and the call's (freed when both are gone). */
struct eddy_stream {
    _Atomic int refs;
    _Atomic bool resume, cancel;
    eddy_client_t *client;
};

struct eddy_client {
    eddy_config_t *cfg; /* owned */
    const char *target_prefix, *content_type, *service;
    client_credentials_t creds;
    client_endpoint_t endpoint;
    char *user_agent;
    long http_version; /* CURL_HTTP_VERSION_... */
    bool pipewait;
    CURLM *multi;
    pthread_t thread;
    bool thread_started;
    bool lock_ready;
    pthread_mutex_t lock; /* guards the fields down to free_on_exit */
    call_t *submitted, *submitted_tail;
    bool closing;
    size_t live; /* calls accepted and not yet done */
    bool free_on_exit;
    /* the I/O thread's */
    CURL *pool[POOL_MAX];
    size_t npool;
    call_t **timers; /* min-heap on due_us */
    size_t ntimers, timers_cap;
    uint64_t rng;
    /* http2 = prior-knowledge with a libcurl older than 7.89.0, whose second prior-knowledge request on a
     * reused HTTP/2 connection fails ("Error in the HTTP2 framing layer", curl issue #10634): one request
     * opens the connection with prior knowledge while the others wait (parked); once a reply came over
     * HTTP/2 the rest ask for CURL_HTTP_VERSION_2_0, which reuses and multiplexes that connection (and, if
     * it is gone, opens a new one with an h2c Upgrade). */
    bool pk_workaround;
    enum { H2_NONE, H2_CONNECTING, H2_UP } h2_state;
    call_t *parked, *parked_tail;
    call_t *streams; /* streaming calls not yet completed */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void stream_release(eddy_stream_t *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        free(s);
    }
}

static void call_free(call_t *call)
{
    stream_release(call->stream);
    if (!call->body_borrowed) {
        free(call->body);
    }
    free(call->reply);
    free(call);
}

static void client_destroy(eddy_client_t *c)
{
    for (size_t i = 0; i < c->npool; i++) {
        curl_easy_cleanup(c->pool[i]);
    }
    if (c->multi != NULL) {
        curl_multi_cleanup(c->multi);
    }
    free(c->timers);
    free(c->user_agent);
    client_credentials_dispose(&c->creds);
    client_endpoint_dispose(&c->endpoint);
    eddy_config_free(c->cfg);
    if (c->lock_ready) {
        pthread_mutex_destroy(&c->lock);
    }
    free(c);
}

/* ---- timers (I/O thread) ---- */

static bool timer_push(eddy_client_t *c, call_t *call)
{
    if (c->ntimers == c->timers_cap) {
        size_t cap = c->timers_cap ? 2 * c->timers_cap : 64;
        call_t **bigger = realloc(c->timers, cap * sizeof *bigger);
        if (bigger == NULL) {
            return false;
        }
        c->timers = bigger;
        c->timers_cap = cap;
    }
    size_t i = c->ntimers++;
    while (i > 0 && c->timers[(i - 1) / 2]->due_us > call->due_us) {
        c->timers[i] = c->timers[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->timers[i] = call;
    return true;
}

static call_t *timer_pop(eddy_client_t *c)
{
    call_t *top = c->timers[0], *last = c->timers[--c->ntimers];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t due = last->due_us;
        if (l < c->ntimers && c->timers[l]->due_us < due) {
            m = l;
            due = c->timers[l]->due_us;
        }
        if (r < c->ntimers && c->timers[r]->due_us < due) {
            m = r;
        }
        if (m == i) {
            break;
        }
        c->timers[i] = c->timers[m];
        i = m;
    }
    if (c->ntimers > 0) {
        c->timers[i] = last;
    }
    return top;
}

/* ---- one call on the I/O thread ---- */

/* Runs the callback with the call's outcome and frees the call. @thread I/O */
static void complete(eddy_client_t *c, call_t *call)
{
    if (call->on_event != NULL) {
        for (call_t **p = &c->streams; *p != NULL; p = &(*p)->stream_next) {
            if (*p == call) {
                *p = call->stream_next;
                break;
            }
        }
    }
    bool replied = call->err == EDDY_OK || call->err == EDDY_ERR_SERVICE || call->err == EDDY_ERR_PROTOCOL;
    bool event_bytes = call->on_event != NULL && call->http_status >= 200 && call->http_status < 300;
    eddy_response_t r = {
        .err = call->err,
        .http_status = call->http_status,
        .body = replied && call->reply != NULL && !event_bytes ? call->reply : "",
        .body_len = replied && call->reply != NULL && !event_bytes ? call->reply_len : 0,
        .error_type = call->error_type,
        .message = call->message,
        .retriable = call->err != EDDY_OK && call->retriable,
        .attempts = call->attempts,
        .latency_us = call->latency_us,
        .request_id = call->request_id,
    };
    call->done(call->arg, &r);
    call_free(call);
    pthread_mutex_lock(&c->lock);
    c->live--;
    pthread_mutex_unlock(&c->lock);
}

static void fail(call_t *call, int err, bool retriable, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail(call_t *call, int err, bool retriable, const char *fmt, ...)
{
    call->err = err;
    call->retriable = retriable;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->message, sizeof call->message, fmt, ap);
    va_end(ap);
}

static size_t on_body_stream(call_t *call, char *data, size_t len);

/* Appends to the reply buffer, keeping it NUL-terminated. false (reply_nomem) when out of memory. */
static bool reply_append(call_t *call, const char *data, size_t len)
{
    if (call->reply_len + len + 1 > call->reply_cap) {
        size_t cap = call->reply_cap ? call->reply_cap : 1024;
        while (cap < call->reply_len + len + 1) {
            cap *= 2;
        }
        char *bigger = realloc(call->reply, cap);
        if (bigger == NULL) {
            call->reply_nomem = true;
            return false;
        }
        call->reply = bigger;
        call->reply_cap = cap;
    }
    memcpy(call->reply + call->reply_len, data, len);
    call->reply_len += len;
    call->reply[call->reply_len] = '\0';
    return true;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    call_t *call = arg;
    size_t len = size * n;
    if (call->on_event != NULL) {
        long status = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            return on_body_stream(call, data, len);
        }
    }
    if (call->reply_len + len > REPLY_MAX) {
        call->reply_too_large = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    return reply_append(call, data, len) ? len : 0;
}

/* Copies the value of header line `line` into dst when its name is `name`. */
static void header_value(const char *line, size_t len, const char *name, char *dst, size_t cap)
{
    size_t nlen = strlen(name);
    if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':') {
        return;
    }
    const char *v = line + nlen + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    copy_trunc(dst, cap, v, (size_t)(end - v));
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    call_t *call = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* a new response (after a 1xx): forget the last one's headers */
        call->request_id[0] = '\0';
        call->header_error_type[0] = '\0';
    }
    header_value(data, len, "x-amzn-RequestId", call->request_id, sizeof call->request_id);
    header_value(data, len, "x-amzn-ErrorType", call->header_error_type, sizeof call->header_error_type);
    return len;
}

static bool add_header(struct curl_slist **list, const char *name, const char *value)
{
    size_t name_len = strlen(name), value_len = strlen(value);
    size_t n = name_len + 2 + value_len + 1;
    char stack[512];
    char *line = n <= sizeof stack ? stack : malloc(n);
    if (line == NULL) {
        return false;
    }
    /* "name: value" (memcpy: exact lengths, and no format-truncation false alarm at -O2) */
    memcpy(line, name, name_len);
    line[name_len] = ':';
    line[name_len + 1] = ' ';
    memcpy(line + name_len + 2, value, value_len);
    line[n - 1] = '\0';
    struct curl_slist *l = curl_slist_append(*list, line); /* copies line */
    if (line != stack) {
        free(line);
    }
    if (l == NULL) {
        return false;
    }
    *list = l;
    return true;
}

/* The signed headers of one attempt (signed now: a retry carries a fresh X-Amz-Date). Returns 0 or an
 * eddy_err_t. */
static int build_headers(eddy_client_t *c, call_t *call)
{
    char amz_date[17];
    sigv4_format_amz_date(clock_now_ms(), amz_date);
    const char *authority = c->endpoint.authority;
    sigv4_header_t h[4] = {
        {"content-type", 12, c->content_type, strlen(c->content_type)},
        {"host", 4, authority, strlen(authority)},
        {"x-amz-date", 10, amz_date, 16},
        {"x-amz-target", 12, call->target, strlen(call->target)},
    };
    sigv4_sign_input_t in = {
        .method = "POST",
        .path = c->endpoint.path,
        .query = NULL,
        .headers = h,
        .nheaders = 4,
        .payload_hash = call->payload_hash,
        .key_id = c->creds.key_id,
        .secret = c->creds.secret,
        .session_token = c->creds.token,
        .region = c->cfg->region,
        .service = c->service,
        .amz_date = amz_date,
    };
    buf_t authz = BUF_INIT;
    int rc = sigv4_sign(&in, &authz);
    if (rc != 0) {
        buf_dispose(&authz);
        return rc == -ENOMEM ? EDDY_ERR_NOMEM : EDDY_ERR_INVALID;
    }
    struct curl_slist *list = NULL;
    bool ok = add_header(&list, "Host", authority) && add_header(&list, "Content-Type", c->content_type) &&
              add_header(&list, "X-Amz-Target", call->target) && add_header(&list, "X-Amz-Date", amz_date) &&
              (c->creds.token == NULL || add_header(&list, "X-Amz-Security-Token", c->creds.token)) &&
              add_header(&list, "Authorization", authz.data) &&
              (list = curl_slist_append(list, "Expect:")) != NULL; /* no 100-continue round trip */
    buf_dispose(&authz);
    if (!ok) {
        curl_slist_free_all(list);
        return EDDY_ERR_NOMEM;
    }
    call->headers = list;
    return EDDY_OK;
}

#define SETOPT(e, opt, value)                                                                                      \
    do {                                                                                                           \
        if (curl_easy_setopt(e, opt, value) != CURLE_OK) {                                                         \
            goto setopt_failed;                                                                                    \
        }                                                                                                          \
    } while (0)

/* Sets every option of an attempt (the handle was reset). false when libcurl refused one (out of memory:
 * string options are copied). */
static bool set_options(eddy_client_t *c, call_t *call, CURL *e)
{
    const eddy_config_t *cfg = c->cfg;
    SETOPT(e, CURLOPT_URL, c->endpoint.url);
    SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_PATH_AS_IS, 1L); /* send the path that was signed */
    SETOPT(e, CURLOPT_POST, 1L);
    SETOPT(e, CURLOPT_POSTFIELDS, call->body); /* not copied: the call outlives the attempt */
    SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
    SETOPT(e, CURLOPT_HTTPHEADER, call->headers);
    SETOPT(e, CURLOPT_USERAGENT, c->user_agent);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(e, CURLOPT_WRITEDATA, call);
    SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(e, CURLOPT_HEADERDATA, call);
    SETOPT(e, CURLOPT_PRIVATE, call);
    SETOPT(e, CURLOPT_ERRORBUFFER, call->curl_error);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    SETOPT(e, CURLOPT_TCP_NODELAY, 1L);
    /* a stream has no end to wait for; the server ends it (Kinesis: after 5 minutes) */
    SETOPT(e, CURLOPT_TIMEOUT_MS, call->on_event != NULL ? 0L : cfg->request_timeout_ms);
    SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    long version = c->http_version;
    if (c->pk_workaround && c->h2_state == H2_UP) {
        version = CURL_HTTP_VERSION_2_0;
    }
    SETOPT(e, CURLOPT_HTTP_VERSION, version);
    if (c->pipewait) {
        SETOPT(e, CURLOPT_PIPEWAIT, 1L);
    }
    if (c->endpoint.https) {
        SETOPT(e, CURLOPT_SSL_VERIFYPEER, cfg->verify_tls ? 1L : 0L);
        SETOPT(e, CURLOPT_SSL_VERIFYHOST, cfg->verify_tls ? 2L : 0L);
        if (cfg->ca_file != NULL) {
            SETOPT(e, CURLOPT_CAINFO, cfg->ca_file);
        }
    }
    return true;
setopt_failed:
    return false;
}

static void release_easy(eddy_client_t *c, CURL *e)
{
    if (c->npool < POOL_MAX) {
        curl_easy_reset(e); /* options gone; connections stay in the multi handle's cache */
        c->pool[c->npool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void start_attempt(eddy_client_t *c, call_t *call);

/* The prior-knowledge bootstrap attempt ended: HTTP/2 is up (the parked calls will multiplex on it) or
 * not (the first parked call bootstraps again). @thread I/O */
static void h2_bootstrap_done(eddy_client_t *c, call_t *call, bool up)
{
    call->h2_bootstrap = false;
    c->h2_state = up ? H2_UP : H2_NONE;
    call_t *list = c->parked;
    c->parked = c->parked_tail = NULL;
    while (list != NULL) {
        call_t *next = list->next;
        list->next = NULL;
        start_attempt(c, list);
        list = next;
    }
}

/* Gives back an attempt's handle and headers (the handle is out of the multi handle); a bootstrap attempt
 * counts as failed. @thread I/O */
static void detach_attempt(eddy_client_t *c, call_t *call, CURL *e)
{
    curl_slist_free_all(call->headers);
    call->headers = NULL;
    release_easy(c, e);
    if (call->h2_bootstrap) {
        h2_bootstrap_done(c, call, false);
    }
}

/* Starts an attempt; a failure to start completes the call. @thread I/O */
static void start_attempt(eddy_client_t *c, call_t *call)
{
    if (c->pk_workaround) {
        if (c->h2_state == H2_CONNECTING) {
            call->next = NULL; /* waits for the connection the bootstrap attempt opens */
            if (c->parked_tail != NULL) {
                c->parked_tail->next = call;
            } else {
                c->parked = call;
            }
            c->parked_tail = call;
            return;
        }
        if (c->h2_state == H2_NONE) {
            c->h2_state = H2_CONNECTING;
            call->h2_bootstrap = true;
        }
    }
    if (call->stream != NULL && atomic_load(&call->stream->cancel)) {
        fail(call, EDDY_ERR_CANCELLED, false, "cancelled");
        if (call->h2_bootstrap) {
            h2_bootstrap_done(c, call, false);
        }
        complete(c, call);
        return;
    }
    call->attempts++;
    call->reply_len = 0;
    call->paused = call->stream_error = false;
    if (call->reply != NULL) {
        call->reply[0] = '\0';
    }
    call->reply_nomem = call->reply_too_large = false;
    call->request_id[0] = call->header_error_type[0] = call->curl_error[0] = '\0';
    call->http_status = 0;
    call->error_type[0] = '\0';
    call->latency_us = 0;

    CURL *e = c->npool > 0 ? c->pool[--c->npool] : curl_easy_init();
    if (e == NULL) {
        fail(call, EDDY_ERR_NOMEM, false, "out of memory (curl_easy_init)");
        if (call->h2_bootstrap) {
            h2_bootstrap_done(c, call, false);
        }
        complete(c, call);
        return;
    }
    int rc = build_headers(c, call);
    if (rc != EDDY_OK) {
        fail(call, rc, false, rc == EDDY_ERR_NOMEM ? "out of memory" : "the request could not be signed");
        goto failed;
    }
    if (!set_options(c, call, e)) {
        fail(call, EDDY_ERR_NOMEM, false, "out of memory (curl_easy_setopt)");
        goto failed;
    }
    call->easy = e;
    call->started_us = clock_monotonic_us();
    CURLMcode m = curl_multi_add_handle(c->multi, e);
    if (m != CURLM_OK) {
        call->easy = NULL;
        fail(call, m == CURLM_OUT_OF_MEMORY ? EDDY_ERR_NOMEM : EDDY_ERR_TRANSPORT, false, "curl_multi_add_handle: %s",
             curl_multi_strerror(m));
        goto failed;
    }
    return;
failed:
    detach_attempt(c, call, e);
    complete(c, call);
}

/* The outcome of a stream that carried an exception or could not be decoded. */
static void stream_error_outcome(call_t *call)
{
    if (call->error_type[0] != '\0') { /* a modeled exception; its message is set */
        call->err = EDDY_ERR_SERVICE;
        call->retriable = client_error_retriable(0, call->error_type);
    } else {
        fail(call, EDDY_ERR_PROTOCOL, false, "malformed event stream");
    }
}

/* A stream whose events are all delivered ends well only when no partial message is left. */
static void stream_check_end(call_t *call)
{
    if (call->err == EDDY_OK && call->reply_len > 0) {
        fail(call, EDDY_ERR_PROTOCOL, false, "the event stream ended inside a message");
    }
}

/* Classifies an attempt's outcome into call->err, ->retriable, ->message, ->error_type. */
static void classify(eddy_client_t *c, call_t *call, CURLcode res, long status)
{
    call->http_status = (int)status;
    const char *detail = call->curl_error[0] != '\0' ? call->curl_error : curl_easy_strerror(res);
    if (res != CURLE_OK) {
        switch (res) {
        case CURLE_OPERATION_TIMEDOUT:
            fail(call, EDDY_ERR_TIMEOUT, true, "no reply within %ld ms (%s)", c->cfg->request_timeout_ms, detail);
            return;
        case CURLE_OUT_OF_MEMORY:
            fail(call, EDDY_ERR_NOMEM, false, "out of memory (libcurl)");
            return;
        case CURLE_WRITE_ERROR:
            if (call->reply_nomem) {
                fail(call, EDDY_ERR_NOMEM, false, "out of memory reading the reply");
                return;
            }
            if (call->reply_too_large) {
                fail(call, EDDY_ERR_PROTOCOL, false, "the reply is larger than %zu bytes", REPLY_MAX);
                return;
            }
            if (call->stream_error) {
                stream_error_outcome(call);
                return;
            }
            break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_CRL_BADFILE:
            /* trying again will not make the certificate trusted */
            fail(call, EDDY_ERR_TRANSPORT, false, "TLS verification failed: %s", detail);
            return;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
            fail(call, EDDY_ERR_INVALID, false, "%s", detail);
            return;
        default:
            break;
        }
        fail(call, EDDY_ERR_TRANSPORT, true, "%s", detail);
        return;
    }
    if (status >= 200 && status < 300) {
        call->err = EDDY_OK;
        call->retriable = false;
        call->message[0] = '\0';
        return;
    }
    if (status >= 400) {
        client_parse_error(call->reply, call->reply_len, call->header_error_type[0] ? call->header_error_type : NULL,
                           call->error_type, sizeof call->error_type, call->message, sizeof call->message);
        call->err = EDDY_ERR_SERVICE;
        call->retriable = client_error_retriable((int)status, call->error_type);
        if (call->message[0] == '\0') {
            snprintf(call->message, sizeof call->message, "HTTP %ld%s%s", status, call->error_type[0] ? " " : "",
                     call->error_type);
        }
        return;
    }
    fail(call, EDDY_ERR_PROTOCOL, false, "unexpected HTTP status %ld", status);
}

/* An attempt ended: retry after a backoff, or complete. @thread I/O */
static void finish_attempt(eddy_client_t *c, call_t *call, CURLcode res)
{
    CURL *e = call->easy;
    long status = 0, version = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
    int64_t now = clock_monotonic_us();
    call->latency_us = now - call->started_us;
    curl_multi_remove_handle(c->multi, e);
    call->easy = NULL;
    curl_slist_free_all(call->headers);
    call->headers = NULL;
    classify(c, call, res, status);
    release_easy(c, e);
    if (call->h2_bootstrap) {
        h2_bootstrap_done(c, call, res == CURLE_OK && version == CURL_HTTP_VERSION_2_0);
    }
    if (call->on_event != NULL && call->err == EDDY_OK) {
        if (call->paused && call->reply_len > 0) {
            call->end_pending = true; /* streams_control completes it once the events are delivered */
            return;
        }
        stream_check_end(call);
    }
    if (call->err != EDDY_OK && call->retriable && call->attempts <= c->cfg->max_retries && !call->delivered) {
        int64_t wait_ms = client_backoff_ms(c->cfg->retry_base_ms, c->cfg->retry_max_ms, call->attempts - 1, &c->rng);
        call->due_us = now + wait_ms * 1000;
        if (timer_push(c, call)) {
            return;
        }
        /* no room for the timer (out of memory): the last outcome stands */
    }
    complete(c, call);
}

static void streams_control(eddy_client_t *c);

static bool should_exit(eddy_client_t *c)
{
    pthread_mutex_lock(&c->lock);
    bool done = c->closing && c->live == 0;
    pthread_mutex_unlock(&c->lock);
    return done;
}

static void *io_main(void *arg)
{
    eddy_client_t *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        call_t *list = c->submitted;
        c->submitted = c->submitted_tail = NULL;
        pthread_mutex_unlock(&c->lock);
        while (list != NULL) {
            call_t *next = list->next;
            list->next = NULL;
            if (list->on_event != NULL) {
                list->stream_next = c->streams;
                c->streams = list;
            }
            start_attempt(c, list);
            list = next;
        }
        int64_t now = clock_monotonic_us();
        while (c->ntimers > 0 && c->timers[0]->due_us <= now) {
            start_attempt(c, timer_pop(c));
        }
        streams_control(c);
        int running;
        curl_multi_perform(c->multi, &running);
        CURLMsg *msg;
        int queued;
        while ((msg = curl_multi_info_read(c->multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            CURLcode res = msg->data.result; /* msg is invalid once the handle is removed */
            char *private = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private);
            finish_attempt(c, (call_t *)(void *)private, res);
        }
        if (should_exit(c)) {
            break;
        }
        int timeout_ms = POLL_MAX_MS;
        if (c->ntimers > 0) {
            int64_t wait_us = c->timers[0]->due_us - clock_monotonic_us();
            int64_t ms = wait_us <= 0 ? 0 : (wait_us + 999) / 1000;
            timeout_ms = ms < timeout_ms ? (int)ms : timeout_ms;
        }
        /* libcurl's own timers (connect, timeouts) shorten the wait as needed */
        curl_multi_poll(c->multi, NULL, 0, timeout_ms, NULL);
    }
    pthread_mutex_lock(&c->lock);
    bool free_self = c->free_on_exit;
    pthread_mutex_unlock(&c->lock);
    if (free_self) {
        pthread_detach(pthread_self());
        client_destroy(c);
    }
    return NULL;
}

eddy_client_t *eddy_client_new(eddy_config_t *cfg, char *err, size_t errlen)
{
    if (cfg == NULL) {
        set_err(err, errlen, "eddy_client_new: no configuration");
        return NULL;
    }
    eddy_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        eddy_config_free(cfg);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    if (cfg->service == CLIENT_SERVICE_DYNAMODB) {
        c->target_prefix = "DynamoDB_20120810.";
        c->content_type = "application/x-amz-json-1.0";
        c->service = "dynamodb";
    } else {
        c->target_prefix = "Kinesis_20131202.";
        c->content_type = "application/x-amz-json-1.1";
        c->service = "kinesis";
    }
    if (client_resolve_credentials(cfg, &c->creds, err, errlen) != 0) {
        goto failed;
    }
    char default_endpoint[128];
    const char *endpoint = cfg->endpoint;
    if (endpoint == NULL) {
        snprintf(default_endpoint, sizeof default_endpoint, "https://%s.%s.amazonaws.com",
                 cfg->service == CLIENT_SERVICE_DYNAMODB ? "dynamodb" : "kinesis", cfg->region);
        endpoint = default_endpoint;
    }
    if (client_parse_endpoint(endpoint, &c->endpoint, err, errlen) != 0) {
        goto failed;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK) {
        set_err(err, errlen, "libcurl could not start: %s", curl_easy_strerror(curl_init_result));
        goto failed;
    }
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    bool has_h2 = (v->features & CURL_VERSION_HTTP2) != 0;
    if (c->endpoint.https && (v->features & CURL_VERSION_SSL) == 0) {
        set_err(err, errlen, "this libcurl has no TLS support for %s", c->endpoint.display);
        goto failed;
    }
    switch (cfg->http2) {
    case CLIENT_HTTP2_PRIOR_KNOWLEDGE:
        if (!has_h2) {
            set_err(err, errlen, "http2 = prior-knowledge: this libcurl has no HTTP/2 support");
            goto failed;
        }
        c->http_version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
        break;
    case CLIENT_HTTP2_ON:
        c->http_version = c->endpoint.https && has_h2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1;
        break;
    case CLIENT_HTTP2_OFF:
        c->http_version = CURL_HTTP_VERSION_1_1;
        break;
    }
    c->pipewait = c->http_version != CURL_HTTP_VERSION_1_1;
    c->pk_workaround = c->http_version == CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE && v->version_num < 0x075900;
    const char *suffix = cfg->user_agent_suffix;
    size_t ua_len = strlen("eddy/" EDDY_VERSION) + (suffix != NULL ? 1 + strlen(suffix) : 0) + 1;
    if ((c->user_agent = malloc(ua_len)) == NULL) {
        set_err(err, errlen, "out of memory");
        goto failed;
    }
    snprintf(c->user_agent, ua_len, "eddy/" EDDY_VERSION "%s%s", suffix != NULL ? " " : "", suffix ? suffix : "");
    if ((c->multi = curl_multi_init()) == NULL) {
        set_err(err, errlen, "out of memory (curl_multi_init)");
        goto failed;
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cfg->max_connections);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (getrandom(&c->rng, sizeof c->rng, GRND_NONBLOCK) != (ssize_t)sizeof c->rng) {
        c->rng = (uint64_t)clock_monotonic_us() ^ (uint64_t)(uintptr_t)c;
    }
    c->rng |= 1; /* xorshift state must not be 0 */
    int rc = pthread_mutex_init(&c->lock, NULL);
    if (rc != 0) {
        set_err(err, errlen, "pthread_mutex_init: %s", strerror(rc));
        goto failed;
    }
    c->lock_ready = true;
    rc = pthread_create(&c->thread, NULL, io_main, c);
    if (rc != 0) {
        set_err(err, errlen, "cannot start the client's I/O thread: %s", strerror(rc));
        goto failed;
    }
    c->thread_started = true;
    return c;
failed:
    client_destroy(c); /* frees cfg too */
    return NULL;
}

static bool on_io_thread(const eddy_client_t *c)
{
    return c->thread_started && pthread_equal(pthread_self(), c->thread);
}

void eddy_client_free(eddy_client_t *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    if (on_io_thread(c)) {
        /* from a completion callback (which the API forbids): the thread frees the client once drained */
        c->free_on_exit = true;
        pthread_mutex_unlock(&c->lock);
        return;
    }
    pthread_mutex_unlock(&c->lock);
    curl_multi_wakeup(c->multi);
    pthread_join(c->thread, NULL);
    client_destroy(c);
}

const char *eddy_client_endpoint(const eddy_client_t *c)
{
    return c->endpoint.display;
}

static bool valid_operation(const char *op)
{
    size_t n = strlen(op);
    if (n == 0 || n > OPERATION_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = op[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) {
            return false;
        }
    }
    return true;
}

static int submit(eddy_client_t *c, const char *operation, const char *body, size_t body_len, bool borrow,
                  eddy_call_fn done, void *arg, eddy_event_fn on_event, eddy_stream_t *stream)
{
    if (c == NULL || operation == NULL || !valid_operation(operation) || done == NULL ||
        (body == NULL && body_len > 0)) {
        return EDDY_ERR_INVALID;
    }
    if (body == NULL) {
        body = "{}"; /* an operation without input still sends a JSON object */
        body_len = 2;
    }
    call_t *call = calloc(1, sizeof *call);
    if (call == NULL) {
        return EDDY_ERR_NOMEM;
    }
    if (borrow) {
        call->body = (char *)(uintptr_t)body; /* never written: libcurl only reads it */
        call->body_borrowed = true;
    } else if ((call->body = malloc(body_len + 1)) != NULL) {
        memcpy(call->body, body, body_len);
        call->body[body_len] = '\0';
    }
    if (call->body == NULL || sigv4_payload_hash(body, body_len, call->payload_hash) != 0) {
        call_free(call);
        return EDDY_ERR_NOMEM;
    }
    call->body_len = body_len;
    call->client = c;
    call->done = done;
    call->arg = arg;
    call->on_event = on_event;
    snprintf(call->target, sizeof call->target, "%s%s", c->target_prefix, operation);

    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        call_free(call);
        return EDDY_ERR_CLOSED;
    }
    if (c->submitted_tail != NULL) {
        c->submitted_tail->next = call;
    } else {
        c->submitted = call;
    }
    c->submitted_tail = call;
    c->live++;
    if (stream != NULL) {
        call->stream = stream; /* the call's reference, taken only once the call is sure to run */
        atomic_fetch_add(&stream->refs, 1);
    }
    pthread_mutex_unlock(&c->lock);
    curl_multi_wakeup(c->multi);
    return EDDY_OK;
}

int eddy_client_call_async(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                           eddy_call_fn done, void *arg)
{
    return submit(c, operation, body, body_len, false, done, arg, NULL, NULL);
}

int eddy_client_call_async_borrowed(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                                    eddy_call_fn done, void *arg)
{
    return submit(c, operation, body, body_len, true, done, arg, NULL, NULL);
}

/* ---- streaming calls ---- */

/* Decodes and delivers the complete events in the reply buffer until it runs out or on_event pauses.
 * false on a malformed stream or an exception (call->stream_error). @thread I/O */
static bool deliver_events(call_t *call)
{
    size_t off = 0;
    bool ok = true;
    while (!call->paused && off < call->reply_len) {
        evs_message_t msg;
        size_t used = 0;
        int rc = evs_decode((const unsigned char *)call->reply + off, call->reply_len - off, &msg, &used);
        if (rc == EVS_INCOMPLETE) {
            break;
        }
        if (rc != EVS_OK) {
            call->stream_error = true;
            ok = false;
            break;
        }
        off += used;
        const evs_header_t *mt = evs_find(&msg, ":message-type");
        if (mt != NULL && !evs_header_is(mt, "event")) {
            const evs_header_t *et = evs_find(&msg, ":exception-type");
            if (et == NULL) {
                et = evs_find(&msg, ":error-code");
            }
            copy_type(call->error_type, sizeof call->error_type, et != NULL ? et->value : "InternalFailure",
                      et != NULL ? et->value_len : 15);
            char type_unused[ERROR_TYPE_MAX];
            client_parse_error((const char *)msg.payload, msg.payload_len, NULL, type_unused, sizeof type_unused,
                               call->message, sizeof call->message);
            call->stream_error = true;
            ok = false;
            break;
        }
        const evs_header_t *ev = evs_find(&msg, ":event-type");
        char type[ERROR_TYPE_MAX];
        copy_type(type, sizeof type, ev != NULL ? ev->value : "", ev != NULL ? ev->value_len : 0);
        /* the payload is followed by the message crc, so it can be terminated in place only by copying;
         * the callback gets (pointer, length) and must not read past them */
        call->delivered = true;
        if (call->on_event(call->arg, type, (const char *)msg.payload, msg.payload_len) != 0) {
            call->paused = true;
        }
    }
    if (off > 0) {
        memmove(call->reply, call->reply + off, call->reply_len - off);
        call->reply_len -= off;
    }
    return ok;
}

static size_t on_body_stream(call_t *call, char *data, size_t len)
{
    if (call->stream_error) {
        return 0;
    }
    if (call->paused) {
        return CURL_WRITEFUNC_PAUSE; /* libcurl keeps the bytes and holds the transfer */
    }
    if (call->reply_len + len > (size_t)EVS_MAX_MESSAGE + CURL_MAX_WRITE_SIZE) {
        call->reply_too_large = true; /* more than one message's worth undecoded: not a valid stream */
        return 0;
    }
    if (!reply_append(call, data, len)) {
        return 0;
    }
    return deliver_events(call) ? len : 0;
}

/* Stops a running stream's transfer and completes the call with its outcome. @thread I/O */
static void stream_stop(eddy_client_t *c, call_t *call)
{
    if (call->easy != NULL) {
        CURL *e = call->easy;
        curl_multi_remove_handle(c->multi, e);
        call->easy = NULL;
        detach_attempt(c, call, e);
    }
    complete(c, call);
}

/* Acts on eddy_stream_resume and eddy_stream_cancel. @thread I/O */
static void streams_control(eddy_client_t *c)
{
    call_t *call = c->streams;
    while (call != NULL) {
        call_t *next = call->stream_next; /* complete() unlinks call */
        eddy_stream_t *s = call->stream;
        bool running = call->easy != NULL || call->end_pending;
        if (running && atomic_load(&s->cancel)) {
            fail(call, EDDY_ERR_CANCELLED, false, "cancelled");
            stream_stop(c, call);
        } else if (running && atomic_exchange(&s->resume, false) && call->paused) {
            call->paused = false;
            if (!deliver_events(call)) {
                stream_error_outcome(call);
                stream_stop(c, call);
            } else if (!call->paused) {
                if (call->end_pending) {
                    stream_check_end(call);
                    complete(c, call);
                } else {
                    curl_easy_pause(call->easy, CURLPAUSE_CONT);
                }
            }
        }
        call = next;
    }
}

int eddy_client_stream_async(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                             eddy_event_fn on_event, eddy_call_fn done, void *arg, eddy_stream_t **out)
{
    if (out == NULL || on_event == NULL) {
        return EDDY_ERR_INVALID;
    }
    *out = NULL;
    eddy_stream_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return EDDY_ERR_NOMEM;
    }
    atomic_init(&s->refs, 1);
    s->client = c;
    int rc = submit(c, operation, body, body_len, false, done, arg, on_event, s);
    if (rc != EDDY_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return EDDY_OK;
}

void eddy_stream_resume(eddy_stream_t *s)
{
    if (s != NULL) {
        atomic_store(&s->resume, true);
        curl_multi_wakeup(s->client->multi);
    }
}

void eddy_stream_cancel(eddy_stream_t *s)
{
    if (s != NULL) {
        atomic_store(&s->cancel, true);
        curl_multi_wakeup(s->client->multi);
    }
}

void eddy_stream_free(eddy_stream_t *s)
{
    if (s != NULL) {
        eddy_stream_cancel(s);
        stream_release(s);
    }
}

/* ---- the synchronous call ---- */

/* Handed out when even a response could not be allocated; eddy_response_free knows it. */
static eddy_response_t nomem_response = {
    .err = EDDY_ERR_NOMEM, .body = "", .error_type = "", .message = "out of memory", .request_id = ""};

/* One allocation: the struct, then the body, error type, message and request id. */
static eddy_response_t *response_copy(const eddy_response_t *r)
{
    size_t type_len = strlen(r->error_type), msg_len = strlen(r->message), id_len = strlen(r->request_id);
    eddy_response_t *copy = malloc(sizeof *copy + r->body_len + 1 + type_len + 1 + msg_len + 1 + id_len + 1);
    if (copy == NULL) {
        return &nomem_response;
    }
    *copy = *r;
    char *p = (char *)(copy + 1);
    memcpy(p, r->body, r->body_len);
    p[r->body_len] = '\0';
    copy->body = p;
    p += r->body_len + 1;
    memcpy(p, r->error_type, type_len + 1);
    copy->error_type = p;
    p += type_len + 1;
    memcpy(p, r->message, msg_len + 1);
    copy->message = p;
    p += msg_len + 1;
    memcpy(p, r->request_id, id_len + 1);
    copy->request_id = p;
    return copy;
}

static eddy_response_t *error_response(int err, const char *message)
{
    eddy_response_t r = {.err = err, .body = "", .error_type = "", .message = message, .request_id = ""};
    return response_copy(&r);
}

typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    eddy_response_t *resp;
} sync_wait_t;

static void on_sync_done(void *arg, const eddy_response_t *resp)
{
    sync_wait_t *w = arg;
    eddy_response_t *copy = response_copy(resp);
    pthread_mutex_lock(&w->lock);
    w->resp = copy;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int eddy_client_call(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                     eddy_response_t **out)
{
    if (out == NULL) {
        return EDDY_ERR_INVALID;
    }
    if (c != NULL && on_io_thread(c)) {
        *out = error_response(EDDY_ERR_INVALID, "eddy_client_call must not be called from a completion callback");
        return (*out)->err;
    }
    sync_wait_t w = {.done = false, .resp = NULL};
    if (pthread_mutex_init(&w.lock, NULL) != 0) {
        *out = &nomem_response;
        return EDDY_ERR_NOMEM;
    }
    if (pthread_cond_init(&w.cond, NULL) != 0) {
        pthread_mutex_destroy(&w.lock);
        *out = &nomem_response;
        return EDDY_ERR_NOMEM;
    }
    int rc = eddy_client_call_async(c, operation, body, body_len, on_sync_done, &w);
    if (rc != EDDY_OK) {
        *out = error_response(rc, rc == EDDY_ERR_CLOSED  ? "the client is shutting down"
                                  : rc == EDDY_ERR_NOMEM ? "out of memory"
                                                         : "bad arguments: a client, an operation name (letters and "
                                                           "digits) and a body are needed");
    } else {
        pthread_mutex_lock(&w.lock);
        while (!w.done) {
            pthread_cond_wait(&w.cond, &w.lock);
        }
        pthread_mutex_unlock(&w.lock);
        *out = w.resp;
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return (*out)->err;
}

void eddy_response_free(eddy_response_t *resp)
{
    if (resp != NULL && resp != &nomem_response) {
        free(resp);
    }
}
