/* sigv4: AWS Signature Version 4 verification and signing (see sigv4.h). */
#include "common/sigv4.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALGORITHM "AWS4-HMAC-SHA256"

static bool equals(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static bool equals_nocase(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool unhex32(const char *s, size_t n, unsigned char out[32])
{
    if (n != 64) {
        return false;
    }
    for (size_t i = 0; i < 32; i++) {
        int hi = unhex_digit(s[2 * i]), lo = unhex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* OpenSSL 3's one-shot digest and HMAC allocate, so both can fail (out of memory): false then. */
static bool sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    if (SHA256(p, n, d) == NULL) {
        memset(out, '0', 64);
        out[64] = '\0';
        return false;
    }
    hex(d, 32, out);
    return true;
}

static bool hmac(const void *key, size_t key_len, const void *msg, size_t len, unsigned char out[32])
{
    unsigned int out_len = 32;
    if (HMAC(EVP_sha256(), key, (int)key_len, msg, len, out, &out_len) == NULL) {
        memset(out, 0, 32);
        return false;
    }
    return true;
}

bool sigv4_parse_amz_date(const char *s, size_t len, int64_t *ms)
{
    if (len != 16 || s[8] != 'T' || s[15] != 'Z') {
        return false;
    }
    int v[6];
    const int at[6] = {0, 4, 6, 9, 11, 13}, width[6] = {4, 2, 2, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        v[i] = 0;
        for (int k = 0; k < width[i]; k++) {
            char c = s[at[i] + k];
            if (c < '0' || c > '9') {
                return false;
            }
            v[i] = v[i] * 10 + (c - '0');
        }
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60) {
        return false;
    }
    struct tm tm = {.tm_year = v[0] - 1900, .tm_mon = v[1] - 1, .tm_mday = v[2],
                    .tm_hour = v[3], .tm_min = v[4], .tm_sec = v[5]};
    time_t t = timegm(&tm);
    *ms = (int64_t)t * 1000;
    return true;
}

/* ---- request views ---- */

static const sigv4_header_t *find_header(const sigv4_request_t *req, const char *name, size_t len, size_t from)
{
    for (size_t i = from; i < req->nheaders; i++) {
        if (req->headers[i].name_len == len && strncasecmp(req->headers[i].name, name, len) == 0) {
            return &req->headers[i];
        }
    }
    return NULL;
}

static bool header_value(const sigv4_request_t *req, const char *name, const char **v, size_t *len)
{
    const sigv4_header_t *h = find_header(req, name, strlen(name), 0);
    if (h == NULL) {
        return false;
    }
    *v = h->value;
    *len = h->value_len;
    return true;
}

/* The query string (after '?'), or NULL. */
static const char *query_of(const sigv4_request_t *req, size_t *len)
{
    const char *q = memchr(req->target, '?', req->target_len);
    if (q == NULL) {
        *len = 0;
        return NULL;
    }
    *len = req->target_len - (size_t)(q + 1 - req->target);
    return q + 1;
}

/* Percent-decodes s into out (at most cap bytes); returns the length or -1. '+' stays '+'. */
static long url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return -1;
            }
            int hi = unhex_digit(s[i + 1]), lo = unhex_digit(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o >= cap) {
            return -1;
        }
        out[o++] = c;
    }
    return (long)o;
}

/* The value of query parameter `name` (decoded into out); false when absent or malformed. */
static bool query_param(const sigv4_request_t *req, const char *name, char *out, size_t cap, size_t *len)
{
    size_t qlen;
    const char *q = query_of(req, &qlen);
    size_t nlen = strlen(name);
    while (q != NULL && qlen > 0) {
        const char *amp = memchr(q, '&', qlen);
        size_t plen = amp ? (size_t)(amp - q) : qlen;
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen;
        if (klen == nlen && memcmp(q, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : q + plen;
            long n = url_decode(v, (size_t)(q + plen - v), out, cap - 1);
            if (n < 0) {
                return false;
            }
            out[n] = '\0';
            *len = (size_t)n;
            return true;
        }
        if (amp == NULL) {
            break;
        }
        qlen -= plen + 1;
        q = amp + 1;
    }
    return false;
}

/* ---- parsing ---- */

/* "AKID/20150830/us-east-1/kinesis/aws4_request" */
static bool parse_credential(const char *s, size_t n, sigv4_auth_t *auth)
{
    const char *parts[5];
    size_t lens[5];
    const char *p = s;
    for (int i = 0; i < 5; i++) {
        const char *slash = i < 4 ? memchr(p, '/', (size_t)(s + n - p)) : s + n;
        if (slash == NULL) {
            return false;
        }
        parts[i] = p;
        lens[i] = (size_t)(slash - p);
        p = slash + 1;
    }
    if (lens[0] == 0 || lens[0] > SIGV4_KEY_ID_MAX || lens[1] != 8 || lens[2] == 0 || lens[2] >= sizeof auth->region ||
        lens[3] == 0 || lens[3] >= sizeof auth->service || !equals(parts[4], lens[4], "aws4_request")) {
        return false;
    }
    memcpy(auth->key_id, parts[0], lens[0]);
    auth->key_id[lens[0]] = '\0';
    memcpy(auth->date, parts[1], 8);
    auth->date[8] = '\0';
    memcpy(auth->region, parts[2], lens[2]);
    auth->region[lens[2]] = '\0';
    memcpy(auth->service, parts[3], lens[3]);
    auth->service[lens[3]] = '\0';
    return true;
}

static kerr_t parse_header_form(const sigv4_request_t *req, const char *v, size_t n, sigv4_auth_t *auth, char *msg,
                                size_t msglen)
{
    if (n < strlen(ALGORITHM) + 1 || memcmp(v, ALGORITHM, strlen(ALGORITHM)) != 0 || v[strlen(ALGORITHM)] != ' ') {
        snprintf(msg, msglen, "Authorization header requires the '%s' algorithm. Authorization=%.*s", ALGORITHM,
                 (int)(n > 200 ? 200 : n), v);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    const char *p = v + strlen(ALGORITHM) + 1, *end = v + n;
    const char *cred = NULL, *signed_h = NULL, *sig = NULL;
    size_t cred_len = 0, signed_len = 0, sig_len = 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ',')) {
            p++;
        }
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        const char *eq = memchr(p, '=', (size_t)(item_end - p));
        if (eq != NULL) {
            size_t klen = (size_t)(eq - p), vlen = (size_t)(item_end - eq - 1);
            if (equals(p, klen, "Credential")) {
                cred = eq + 1, cred_len = vlen;
            } else if (equals(p, klen, "SignedHeaders")) {
                signed_h = eq + 1, signed_len = vlen;
            } else if (equals(p, klen, "Signature")) {
                sig = eq + 1, sig_len = vlen;
            }
        }
        p = item_end;
    }
    const char *date_v = NULL;
    size_t date_len = 0;
    bool has_date = header_value(req, "x-amz-date", &date_v, &date_len) || header_value(req, "date", &date_v, &date_len);
    if (cred == NULL || signed_h == NULL || sig == NULL || !has_date) {
        snprintf(msg, msglen, "%s%s%s%sAuthorization=%.*s",
                 cred == NULL ? "Authorization header requires 'Credential' parameter. " : "",
                 signed_h == NULL ? "Authorization header requires 'SignedHeaders' parameter. " : "",
                 sig == NULL ? "Authorization header requires 'Signature' parameter. " : "",
                 !has_date ? "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
                           : "",
                 (int)(n > 200 ? 200 : n), v);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    if (!parse_credential(cred, cred_len, auth)) {
        snprintf(msg, msglen,
                 "Credential should be scoped to a valid region, service and date: "
                 "'<key>/<YYYYMMDD>/<region>/<service>/aws4_request', not '%.*s'.",
                 (int)(cred_len > 200 ? 200 : cred_len), cred);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    if (!unhex32(sig, sig_len, auth->signature)) {
        snprintf(msg, msglen, "The signature must be 64 hexadecimal characters.");
        return KERR_INCOMPLETE_SIGNATURE;
    }
    if (date_len != 16) {
        /* a Date header in RFC 1123 form is not supported: eddy's clients all send X-Amz-Date */
        snprintf(msg, msglen, "Date must be in ISO-8601 'basic format'. Got '%.*s'.", (int)(date_len > 64 ? 64 : date_len),
                 date_v);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    memcpy(auth->amz_date, date_v, 16);
    auth->amz_date[16] = '\0';
    auth->signed_headers = signed_h;
    auth->signed_headers_len = signed_len;
    return KERR_NONE;
}

static kerr_t parse_query_form(const sigv4_request_t *req, sigv4_auth_t *auth, char *msg, size_t msglen)
{
    char value[512];
    size_t len;
    if (!query_param(req, "X-Amz-Algorithm", value, sizeof value, &len) || !equals(value, len, ALGORITHM)) {
        snprintf(msg, msglen, "X-Amz-Algorithm only supports '%s'.", ALGORITHM);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    auth->presigned = true;
    if (!query_param(req, "X-Amz-Credential", value, sizeof value, &len) || !parse_credential(value, len, auth)) {
        snprintf(msg, msglen, "X-Amz-Credential must be '<key>/<YYYYMMDD>/<region>/<service>/aws4_request'.");
        return KERR_INCOMPLETE_SIGNATURE;
    }
    if (!query_param(req, "X-Amz-Date", value, sizeof value, &len) || len != 16) {
        snprintf(msg, msglen, "X-Amz-Date must be in the ISO-8601 basic format (YYYYMMDDTHHMMSSZ).");
        return KERR_INCOMPLETE_SIGNATURE;
    }
    memcpy(auth->amz_date, value, 16);
    auth->amz_date[16] = '\0';
    if (!query_param(req, "X-Amz-Expires", value, sizeof value, &len) || len == 0 || len > 6 ||
        strspn(value, "0123456789") != len) {
        snprintf(msg, msglen, "X-Amz-Expires must be a number of seconds.");
        return KERR_INCOMPLETE_SIGNATURE;
    }
    auth->expires_s = strtoll(value, NULL, 10);
    if (auth->expires_s > 604800) {
        snprintf(msg, msglen, "X-Amz-Expires must be less than a week (in seconds) that is 604800.");
        return KERR_INCOMPLETE_SIGNATURE;
    }
    if (!query_param(req, "X-Amz-Signature", value, sizeof value, &len) || !unhex32(value, len, auth->signature)) {
        snprintf(msg, msglen, "X-Amz-Signature must be 64 hexadecimal characters.");
        return KERR_INCOMPLETE_SIGNATURE;
    }
    /* SignedHeaders stays a view into the raw query (percent-encoded ';' is decoded when used) */
    size_t qlen;
    const char *q = query_of(req, &qlen);
    static const char key[] = "X-Amz-SignedHeaders=";
    const char *at = q, *end = q + qlen; /* the target is a view: never search past its end */
    while (at != NULL && (at = memmem(at, (size_t)(end - at), key, strlen(key))) != NULL) {
        if (at == q || at[-1] == '&') {
            const char *v = at + strlen(key);
            const char *amp = memchr(v, '&', (size_t)(end - v));
            auth->signed_headers = v;
            auth->signed_headers_len = amp ? (size_t)(amp - v) : (size_t)(end - v);
            return KERR_NONE;
        }
        at++;
    }
    snprintf(msg, msglen, "X-Amz-SignedHeaders is required.");
    return KERR_INCOMPLETE_SIGNATURE;
}

kerr_t sigv4_parse(const sigv4_request_t *req, sigv4_auth_t *auth, char *msg, size_t msglen)
{
    memset(auth, 0, sizeof *auth);
    msg[0] = '\0';
    const char *v;
    size_t n;
    if (header_value(req, "authorization", &v, &n)) {
        return parse_header_form(req, v, n, auth, msg, msglen);
    }
    char value[64];
    size_t len;
    if (query_param(req, "X-Amz-Algorithm", value, sizeof value, &len)) {
        return parse_query_form(req, auth, msg, msglen);
    }
    snprintf(msg, msglen, "Missing Authentication Token");
    return KERR_MISSING_AUTHENTICATION_TOKEN;
}

/* ---- output that never aborts ---- */

/* Canonicalisation appends to a buf_t through these: the first growth that fails sets nomem and every later
 * append does nothing, so the code reads straight and checks once at the end. Each append reserves with
 * buf_try_reserve first, so buf_append never needs to grow (and never aborts: this module is in libeddy). */
typedef struct out {
    buf_t *b;
    bool nomem;
} out_t;

static void out_append(out_t *o, const void *p, size_t n)
{
    if (o->nomem || n == 0) {
        return;
    }
    if (buf_try_reserve(o->b, n) != 0) {
        o->nomem = true;
        return;
    }
    buf_append(o->b, p, n);
}

static void out_putc(out_t *o, char c)
{
    out_append(o, &c, 1);
}

static void out_puts(out_t *o, const char *s)
{
    out_append(o, s, strlen(s));
}

/* ---- canonical request ---- */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

static void encode_into(out_t *out, const char *s, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t from = 0; /* unreserved runs are appended whole */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            continue;
        }
        out_append(out, s + from, i - from);
        char e[3] = {'%', digits[c >> 4], digits[c & 15]};
        out_append(out, e, 3);
        from = i + 1;
    }
    out_append(out, s + from, n - from);
}

/* The path with "." and ".." segments removed (a trailing slash kept), encoded again. */
static void canonical_uri(const sigv4_request_t *req, out_t *out)
{
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    const char *path = req->target;
    if (plen == 0 || path[0] != '/') {
        out_putc(out, '/');
        return;
    }
    /* segments kept: offsets into path */
    size_t starts[256], lens[256], n = 0;
    size_t i = 1;
    while (i <= plen) {
        size_t j = i;
        while (j < plen && path[j] != '/') {
            j++;
        }
        size_t len = j - i;
        if (len == 1 && path[i] == '.') {
            /* skip */
        } else if (len == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (n > 0) {
                n--;
            }
        } else if (len > 0 && n < 256) {
            starts[n] = i;
            lens[n++] = len;
        }
        i = j + 1;
    }
    bool trailing = plen > 1 && path[plen - 1] == '/';
    if (n == 0) {
        out_putc(out, '/');
        return;
    }
    for (size_t k = 0; k < n; k++) {
        out_putc(out, '/');
        encode_into(out, path + starts[k], lens[k], false);
    }
    if (trailing) {
        out_putc(out, '/');
    }
}

typedef struct qparam {
    char *name, *value; /* encoded */
} qparam_t;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* s decoded then encoded strictly, as a heap string; NULL when out of memory. */
static char *encoded_copy(const char *s, size_t n)
{
    char *tmp = malloc(n + 1);
    if (tmp == NULL) {
        return NULL;
    }
    long d = url_decode(s, n, tmp, n);
    buf_t b = BUF_INIT;
    out_t o = {&b, false};
    if (d < 0) {
        encode_into(&o, s, n, false); /* not decodable: encode what was sent */
    } else {
        encode_into(&o, tmp, (size_t)d, false);
    }
    free(tmp);
    if (o.nomem || buf_try_reserve(&b, 0) != 0) {
        buf_dispose(&b);
        return NULL;
    }
    return buf_release(&b, NULL); /* cap > 0 now, so buf_release does not allocate */
}

static void canonical_query(const sigv4_request_t *req, bool presigned, out_t *out)
{
    size_t qlen;
    const char *q = query_of(req, &qlen);
    if (q == NULL || qlen == 0) {
        return;
    }
    size_t cap = 16, n = 0;
    qparam_t *params = malloc(cap * sizeof *params);
    if (params == NULL) {
        out->nomem = true;
        return;
    }
    while (qlen > 0 && n < 1000) {
        const char *amp = memchr(q, '&', qlen);
        size_t plen = amp ? (size_t)(amp - q) : qlen;
        if (plen > 0) {
            const char *eq = memchr(q, '=', plen);
            size_t klen = eq ? (size_t)(eq - q) : plen;
            if (!(presigned && equals(q, klen, "X-Amz-Signature"))) {
                if (n == cap) {
                    qparam_t *bigger = realloc(params, 2 * cap * sizeof *params);
                    if (bigger == NULL) {
                        out->nomem = true;
                        goto out;
                    }
                    params = bigger;
                    cap *= 2;
                }
                params[n].name = encoded_copy(q, klen);
                params[n].value = eq ? encoded_copy(eq + 1, (size_t)(q + plen - eq - 1)) : encoded_copy("", 0);
                n++;
                if (params[n - 1].name == NULL || params[n - 1].value == NULL) {
                    out->nomem = true;
                    goto out;
                }
            }
        }
        if (amp == NULL) {
            break;
        }
        qlen -= plen + 1;
        q = amp + 1;
    }
    qsort(params, n, sizeof *params, qparam_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            out_putc(out, '&');
        }
        out_puts(out, params[i].name);
        out_putc(out, '=');
        out_puts(out, params[i].value);
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(params[i].name);
        free(params[i].value);
    }
    free(params);
}

/* Appends a header value trimmed, with inner runs of spaces and tabs collapsed to one space. */
static void append_trimmed(out_t *out, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t')) {
        i++;
    }
    while (n > i && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
        n--;
    }
    bool space = false;
    for (; i < n; i++) {
        if (v[i] == ' ' || v[i] == '\t') {
            space = true;
            continue;
        }
        if (space) {
            out_putc(out, ' ');
            space = false;
        }
        out_putc(out, v[i]);
    }
}

static void canonical_request(const sigv4_request_t *req, const sigv4_auth_t *auth, const char *payload_hash,
                              out_t *out)
{
    out_append(out, req->method, req->method_len);
    out_putc(out, '\n');
    canonical_uri(req, out);
    out_putc(out, '\n');
    canonical_query(req, auth->presigned, out);
    out_putc(out, '\n');
    /* signed headers: as listed (the client lists them sorted, lower case); %3B in the query form is ';' */
    char names[2048];
    long nl = url_decode(auth->signed_headers, auth->signed_headers_len, names, sizeof names - 1);
    if (nl < 0) {
        nl = 0;
    }
    names[nl] = '\0';
    buf_t list_buf = BUF_INIT;
    out_t list = {&list_buf, false};
    for (char *p = names; *p != '\0';) {
        char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        for (size_t k = 0; k < len; k++) {
            p[k] = (char)((p[k] >= 'A' && p[k] <= 'Z') ? p[k] + 32 : p[k]);
        }
        out_append(out, p, len);
        out_putc(out, ':');
        bool found = false;
        for (size_t from = 0;;) {
            const sigv4_header_t *h = find_header(req, p, len, from);
            if (h == NULL) {
                break;
            }
            if (found) {
                out_putc(out, ',');
            }
            append_trimmed(out, h->value, h->value_len);
            found = true;
            from = (size_t)(h - req->headers) + 1;
        }
        /* HTTP servers keep some headers apart: the authority (Host, or HTTP/2's :authority, which the JS
         * SDK signs as a header) and the body length */
        if (!found && (equals(p, len, "host") || equals(p, len, ":authority")) && req->authority != NULL) {
            append_trimmed(out, req->authority, req->authority_len);
        } else if (!found && equals(p, len, "content-length")) {
            char n[24];
            snprintf(n, sizeof n, "%zu", req->body_len);
            out_puts(out, n);
        }
        out_putc(out, '\n');
        if (list_buf.len > 0) {
            out_putc(&list, ';');
        }
        out_append(&list, p, len);
        if (semi == NULL) {
            break;
        }
        p = semi + 1;
    }
    out_putc(out, '\n');
    out_append(out, list_buf.data, list_buf.len);
    out->nomem |= list.nomem;
    buf_dispose(&list_buf);
    out_putc(out, '\n');
    out_puts(out, payload_hash);
}

int sigv4_canonical_request(const sigv4_request_t *req, const sigv4_auth_t *auth, const char *payload_hash,
                            buf_t *out)
{
    out_t o = {out, false};
    canonical_request(req, auth, payload_hash, &o);
    return o.nomem ? -ENOMEM : 0;
}

int sigv4_string_to_sign(const sigv4_auth_t *auth, const char *canonical_request, size_t len, buf_t *out)
{
    char h[65];
    if (!sha256_hex(canonical_request, len, h)) {
        return -ENOMEM;
    }
    out_t o = {out, false};
    out_puts(&o, ALGORITHM "\n");
    out_puts(&o, auth->amz_date);
    out_putc(&o, '\n');
    out_puts(&o, auth->date);
    out_putc(&o, '/');
    out_puts(&o, auth->region);
    out_putc(&o, '/');
    out_puts(&o, auth->service);
    out_puts(&o, "/aws4_request\n");
    out_puts(&o, h);
    return o.nomem ? -ENOMEM : 0;
}

int sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                      unsigned char key[32])
{
    /* the first key is "AWS4" + secret: on the stack unless the secret is unusually long */
    char stack[1024 + 4];
    size_t secret_len = strlen(secret), klen = 4 + secret_len;
    char *k = klen <= sizeof stack ? stack : malloc(klen);
    if (k == NULL) {
        return -ENOMEM;
    }
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, secret_len);
    unsigned char a[32], b[32];
    bool ok = hmac(k, klen, date, strlen(date), a) && hmac(a, 32, region, strlen(region), b) &&
              hmac(b, 32, service, strlen(service), a) && hmac(a, 32, "aws4_request", 12, key);
    OPENSSL_cleanse(k, klen);
    if (k != stack) {
        free(k);
    }
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return ok ? 0 : -ENOMEM;
}

/* A few signing keys per thread: one per (secret, date, region, service) in use. */
typedef struct key_cache_entry {
    unsigned char secret_hash[32];
    char scope[9 + 64 + 64 + 2];
    unsigned char key[32];
    bool used;
} key_cache_entry_t;

static _Thread_local key_cache_entry_t key_cache[4];
static _Thread_local unsigned key_cache_next;

static int cached_signing_key(const char *secret, const sigv4_auth_t *auth, unsigned char key[32])
{
    unsigned char sh[32];
    if (SHA256((const unsigned char *)secret, strlen(secret), sh) == NULL) {
        return sigv4_signing_key(secret, auth->date, auth->region, auth->service, key); /* uncached */
    }
    char scope[sizeof key_cache[0].scope];
    snprintf(scope, sizeof scope, "%s/%s/%s", auth->date, auth->region, auth->service);
    for (size_t i = 0; i < 4; i++) {
        if (key_cache[i].used && memcmp(key_cache[i].secret_hash, sh, 32) == 0 && strcmp(key_cache[i].scope, scope) == 0) {
            memcpy(key, key_cache[i].key, 32);
            return 0;
        }
    }
    int rc = sigv4_signing_key(secret, auth->date, auth->region, auth->service, key);
    if (rc != 0) {
        return rc;
    }
    key_cache_entry_t *e = &key_cache[key_cache_next++ % 4];
    memcpy(e->secret_hash, sh, 32);
    snprintf(e->scope, sizeof e->scope, "%s", scope);
    memcpy(e->key, key, 32);
    e->used = true;
    return 0;
}

/* The signature of req under auth's scope: canonical request, string to sign, HMAC with the signing key.
 * Returns 0 or -ENOMEM. */
static int signature_of(const sigv4_request_t *req, const sigv4_auth_t *auth, const char *payload_hash,
                        const char *secret, unsigned char sig[32])
{
    buf_t creq = BUF_INIT, sts = BUF_INIT;
    unsigned char key[32];
    int rc = sigv4_canonical_request(req, auth, payload_hash, &creq);
    if (rc == 0) {
        rc = sigv4_string_to_sign(auth, creq.data, creq.len, &sts);
    }
    if (rc == 0) {
        rc = cached_signing_key(secret, auth, key);
    }
    if (rc == 0 && !hmac(key, 32, sts.data, sts.len, sig)) {
        rc = -ENOMEM;
    }
    OPENSSL_cleanse(key, sizeof key);
    buf_dispose(&creq);
    buf_dispose(&sts);
    return rc;
}

void sigv4_format_amz_date(int64_t ms, char out[17])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int sigv4_payload_hash(const void *body, size_t len, char out[65])
{
    return sha256_hex(body, len, out) ? 0 : -ENOMEM;
}

/* ---- verification ---- */

/* The payload hash the canonical request uses (into hash, or a literal in *used): UNSIGNED-PAYLOAD for the
 * query form or when x-amz-content-sha256 says so, else the body's (which must then match that header). */
static kerr_t payload_hash_for(const sigv4_request_t *req, const sigv4_auth_t *auth, char hash[65],
                               const char **used, char *msg, size_t msglen)
{
    const char *claimed;
    size_t claimed_len;
    *used = hash;
    if (auth->presigned) {
        *used = "UNSIGNED-PAYLOAD";
        return KERR_NONE;
    }
    bool has_claim = header_value(req, "x-amz-content-sha256", &claimed, &claimed_len);
    if (has_claim && equals(claimed, claimed_len, "UNSIGNED-PAYLOAD")) {
        *used = "UNSIGNED-PAYLOAD";
        return KERR_NONE;
    }
    if (!sha256_hex(req->body, req->body_len, hash)) {
        snprintf(msg, msglen, "Out of memory while checking the signature.");
        return KERR_INTERNAL_FAILURE;
    }
    if (has_claim && !equals_nocase(claimed, claimed_len, hash)) {
        snprintf(msg, msglen, "The provided 'x-amz-content-sha256' header does not match what was computed.");
        return KERR_INVALID_SIGNATURE;
    }
    return KERR_NONE;
}

int sigv4_verified_canonical_request(const sigv4_request_t *req, const sigv4_auth_t *auth, buf_t *out)
{
    char hash[65], msg[128];
    const char *used;
    if (payload_hash_for(req, auth, hash, &used, msg, sizeof msg) == KERR_INTERNAL_FAILURE) {
        return -ENOMEM;
    }
    return sigv4_canonical_request(req, auth, used, out);
}

kerr_t sigv4_verify(const sigv4_request_t *req, const sigv4_auth_t *auth, const char *secret, const char *region,
                    const char *service, int64_t now_ms, char *msg, size_t msglen)
{
    if (strcmp(auth->region, region) != 0) {
        snprintf(msg, msglen, "Credential should be scoped to a valid region, not '%s'. ", auth->region);
        return KERR_INVALID_SIGNATURE;
    }
    if (strcmp(auth->service, service) != 0) {
        snprintf(msg, msglen, "Credential should be scoped to correct service: '%s'. ", service);
        return KERR_INVALID_SIGNATURE;
    }
    int64_t signed_ms;
    if (!sigv4_parse_amz_date(auth->amz_date, 16, &signed_ms)) {
        snprintf(msg, msglen, "Date must be in ISO-8601 'basic format'. Got '%s'.", auth->amz_date);
        return KERR_INCOMPLETE_SIGNATURE;
    }
    if (memcmp(auth->date, auth->amz_date, 8) != 0) {
        snprintf(msg, msglen,
                 "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != "
                 "'%.8s', from '%s'.",
                 auth->date, auth->amz_date, auth->amz_date);
        return KERR_INVALID_SIGNATURE;
    }
    char now_s[17], edge[17];
    sigv4_format_amz_date(now_ms, now_s);
    if (auth->presigned) {
        if (now_ms > signed_ms + auth->expires_s * 1000) {
            snprintf(msg, msglen, "Signature expired: %s is now earlier than %s.", auth->amz_date, now_s);
            return KERR_INVALID_SIGNATURE;
        }
        if (signed_ms > now_ms + SIGV4_CLOCK_SKEW_MS) {
            sigv4_format_amz_date(now_ms + SIGV4_CLOCK_SKEW_MS, edge);
            snprintf(msg, msglen, "Signature not yet current: %s is still later than %s (%s + 15 min.)", auth->amz_date,
                     edge, now_s);
            return KERR_INVALID_SIGNATURE;
        }
    } else if (signed_ms < now_ms - SIGV4_CLOCK_SKEW_MS) {
        sigv4_format_amz_date(now_ms - SIGV4_CLOCK_SKEW_MS, edge);
        snprintf(msg, msglen, "Signature expired: %s is now earlier than %s (%s - 15 min.)", auth->amz_date, edge,
                 now_s);
        return KERR_INVALID_SIGNATURE;
    } else if (signed_ms > now_ms + SIGV4_CLOCK_SKEW_MS) {
        sigv4_format_amz_date(now_ms + SIGV4_CLOCK_SKEW_MS, edge);
        snprintf(msg, msglen, "Signature not yet current: %s is still later than %s (%s + 15 min.)", auth->amz_date,
                 edge, now_s);
        return KERR_INVALID_SIGNATURE;
    }

    char payload_hash[65];
    const char *hash_used;
    kerr_t e = payload_hash_for(req, auth, payload_hash, &hash_used, msg, msglen);
    if (e != KERR_NONE) {
        return e;
    }
    unsigned char sig[32];
    if (signature_of(req, auth, hash_used, secret, sig) != 0) {
        snprintf(msg, msglen, "Out of memory while checking the signature.");
        return KERR_INTERNAL_FAILURE;
    }
    if (CRYPTO_memcmp(sig, auth->signature, 32) != 0) {
        snprintf(msg, msglen,
                 "The request signature we calculated does not match the signature you provided. Check your AWS "
                 "Secret Access Key and signing method. Consult the service documentation for details.");
        return KERR_INVALID_SIGNATURE;
    }
    return KERR_NONE;
}

/* ---- signing ---- */

static int name_cmp_nocase(const sigv4_header_t *a, const sigv4_header_t *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a->name[i], y = (unsigned char)b->name[i];
        x = (unsigned char)(x >= 'A' && x <= 'Z' ? x + 32 : x);
        y = (unsigned char)(y >= 'A' && y <= 'Z' ? y + 32 : y);
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len ? 1 : 0;
}

static bool has_header(const sigv4_header_t *h, size_t n, const char *name)
{
    sigv4_header_t key = {name, strlen(name), NULL, 0};
    for (size_t i = 0; i < n; i++) {
        if (name_cmp_nocase(&h[i], &key) == 0) {
            return true;
        }
    }
    return false;
}

static bool valid_name(const sigv4_header_t *h)
{
    if (h->name == NULL || h->name_len == 0 || h->value == NULL) {
        return false;
    }
    for (size_t i = 0; i < h->name_len; i++) {
        unsigned char c = (unsigned char)h->name[i];
        if (c <= ' ' || c >= 127 || c == ';' || c == ':' || c == ',') {
            return false;
        }
    }
    return true;
}

int sigv4_sign(const sigv4_sign_input_t *in, buf_t *authorization)
{
    int64_t when;
    if (in->method == NULL || in->payload_hash == NULL || in->key_id == NULL || in->key_id[0] == '\0' ||
        strlen(in->key_id) > SIGV4_KEY_ID_MAX || in->secret == NULL || in->region == NULL || in->region[0] == '\0' ||
        strlen(in->region) >= sizeof ((sigv4_auth_t *)0)->region || in->service == NULL || in->service[0] == '\0' ||
        strlen(in->service) >= sizeof ((sigv4_auth_t *)0)->service || in->amz_date == NULL ||
        !sigv4_parse_amz_date(in->amz_date, strlen(in->amz_date), &when) ||
        in->nheaders > SIGV4_MAX_SIGNED_HEADERS || (in->nheaders > 0 && in->headers == NULL)) {
        return -EINVAL;
    }
    /* the headers signed: the input's, then x-amz-date and x-amz-security-token when not among them */
    sigv4_header_t all[SIGV4_MAX_SIGNED_HEADERS + 2];
    size_t n = 0;
    for (size_t i = 0; i < in->nheaders; i++) {
        if (!valid_name(&in->headers[i])) {
            return -EINVAL;
        }
        all[n++] = in->headers[i];
    }
    if (!has_header(all, n, "host")) {
        return -EINVAL;
    }
    if (!has_header(all, n, "x-amz-date")) {
        all[n++] = (sigv4_header_t){"x-amz-date", 10, in->amz_date, 16};
    }
    if (in->session_token != NULL && in->session_token[0] != '\0' && !has_header(all, n, "x-amz-security-token")) {
        all[n++] = (sigv4_header_t){"x-amz-security-token", 20, in->session_token, strlen(in->session_token)};
    }

    /* the signed-headers list: names lower-cased, sorted, each once (repeated headers are joined by the
     * canonical request, which finds every header of a listed name) */
    const sigv4_header_t *sorted[SIGV4_MAX_SIGNED_HEADERS + 2];
    for (size_t i = 0; i < n; i++) {
        size_t k = i;
        while (k > 0 && name_cmp_nocase(sorted[k - 1], &all[i]) > 0) {
            sorted[k] = sorted[k - 1];
            k--;
        }
        sorted[k] = &all[i];
    }
    char list[2048];
    size_t list_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && name_cmp_nocase(sorted[i - 1], sorted[i]) == 0) {
            continue;
        }
        if (list_len + sorted[i]->name_len + 1 >= sizeof list) {
            return -EINVAL;
        }
        if (list_len > 0) {
            list[list_len++] = ';';
        }
        for (size_t k = 0; k < sorted[i]->name_len; k++) {
            char c = sorted[i]->name[k];
            list[list_len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
    }
    list[list_len] = '\0';

    /* the request as the verifier sees it: target = path ? query */
    const char *path = in->path != NULL && in->path[0] != '\0' ? in->path : "/";
    const char *query = in->query != NULL ? in->query : "";
    size_t path_len = strlen(path), query_len = strlen(query), target_len = path_len + (query_len ? 1 + query_len : 0);
    char stack_target[512];
    char *target = target_len < sizeof stack_target ? stack_target : malloc(target_len + 1);
    if (target == NULL) {
        return -ENOMEM;
    }
    memcpy(target, path, path_len);
    if (query_len > 0) {
        target[path_len] = '?';
        memcpy(target + path_len + 1, query, query_len);
    }
    target[target_len] = '\0';
    sigv4_request_t req = {in->method, strlen(in->method), target, target_len, all, n, NULL, 0, NULL, 0};
    sigv4_auth_t auth = {.presigned = false, .signed_headers = list, .signed_headers_len = list_len};
    snprintf(auth.key_id, sizeof auth.key_id, "%s", in->key_id);
    memcpy(auth.date, in->amz_date, 8);
    auth.date[8] = '\0';
    snprintf(auth.region, sizeof auth.region, "%s", in->region);
    snprintf(auth.service, sizeof auth.service, "%s", in->service);
    memcpy(auth.amz_date, in->amz_date, 16);
    auth.amz_date[16] = '\0';

    unsigned char sig[32];
    int rc = signature_of(&req, &auth, in->payload_hash, in->secret, sig);
    if (target != stack_target) {
        free(target);
    }
    if (rc != 0) {
        return rc;
    }
    char sig_hex[65];
    hex(sig, 32, sig_hex);
    /* built apart, then appended in one step: on failure authorization is unchanged */
    buf_t header = BUF_INIT;
    out_t o = {&header, false};
    out_puts(&o, ALGORITHM " Credential=");
    out_puts(&o, in->key_id);
    out_putc(&o, '/');
    out_puts(&o, auth.date);
    out_putc(&o, '/');
    out_puts(&o, auth.region);
    out_putc(&o, '/');
    out_puts(&o, auth.service);
    out_puts(&o, "/aws4_request, SignedHeaders=");
    out_append(&o, list, list_len);
    out_puts(&o, ", Signature=");
    out_puts(&o, sig_hex);
    out_t dst = {authorization, o.nomem};
    out_append(&dst, header.data, header.len);
    buf_dispose(&header);
    if (dst.nomem) {
        return -ENOMEM;
    }
    buf_cstr(authorization); /* terminated (cap > 0: no allocation) */
    return 0;
}
