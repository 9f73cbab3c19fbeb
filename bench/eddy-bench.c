/*
 * eddy-bench: a load generator for any Kinesis endpoint (eddy, kinesalite, kinesis-mock, AWS itself).
 *
 * Modes (the first argument):
 *   put-records  PutRecords of --batch records of --record-bytes each, --connections requests in flight,
 *                for --duration seconds after --warmup seconds: records/s, payload MB/s, requests/s,
 *                failed records (FailedRecordCount summed), errors, request latency.
 *   put-record   PutRecord latency: --connections clients (default 1), each with one request at a time:
 *                p50/p99/p99.9/max in microseconds and throughput.
 *   get-records  drain: optionally put --fill records first, then GetShardIterator TRIM_HORIZON on every
 *                shard and GetRecords (--limit) on all shards at once until each answers with no
 *                records: records/s and payload MB/s. --duration caps the drain.
 *   setup        only create the stream and wait for ACTIVE (every mode does that first with --setup).
 *   ready        poll ListStreams until the endpoint answers 200 and report the time since --since (a
 *                wall-clock time in seconds, as bash's $EPOCHREALTIME gives it); with --port-file the
 *                endpoint is read from the "listening on http://HOST:PORT" line a server writes there.
 *
 * Requests are AWS JSON 1.1 (POST /, X-Amz-Target Kinesis_20131202.<Op>) with a SigV4-shaped but unsigned
 * Authorization header: the servers measured here check that it is well formed, not what it signs.
 *
 * Speed: every thread owns one curl multi handle and a fixed set of easy handles ("slots"), one per
 * connection (HTTP/1.1 keep-alive) or per stream (--http2: h2c with prior knowledge, multiplexed). Request
 * bodies are built once (a small pool of distinct bodies with random partition keys) and handed to curl
 * without copying; response buffers are kept per slot and reused; responses are scanned, not parsed
 * (FailedRecordCount, the Data fields, NextShardIterator). Nothing is allocated per request on our side.
 *
 * Counting: a request counts when it completes inside the measured window [start + warmup, end).
 * Payload is the records' data bytes (before base64), MB = 10^6 bytes.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PUT_RECORDS_POOL 8  /* distinct PutRecords bodies */
#define PUT_RECORD_POOL 256 /* distinct PutRecord bodies */
#define PARTITION_KEY_LEN 16
#define MAX_THREADS 64
#define MAX_CONNECTIONS 4096
#define MAX_SHARDS 1024
#define ERROR_TEXT_MAX 300
#define GET_ERRORS_IN_A_ROW_MAX 50

typedef enum bench_mode {
    MODE_PUT_RECORDS,
    MODE_PUT_RECORD,
    MODE_GET_RECORDS,
    MODE_SETUP,
    MODE_READY,
} bench_mode_t;

static const char *const mode_names[] = {"put-records", "put-record", "get-records", "setup", "ready"};

typedef struct options {
    bench_mode_t mode;
    char *endpoint;        /* http://host:port (owned) */
    const char *stream;    /* stream name (borrowed from argv) */
    const char *label;     /* free text copied into the JSON line */
    const char *port_file; /* ready: file holding "listening on http://HOST:PORT" */
    int shards;
    bool setup;
    bool http2;
    bool json;
    int threads;
    int connections; /* 0: the mode's default */
    int batch;
    int record_bytes;
    double duration_s;
    double warmup_s;
    int limit;
    long fill;        /* get-records: records to put before draining */
    double timeout_s; /* setup/ready deadline; per-request timeout */
    double since;     /* ready: wall-clock seconds of the server's spawn (0: not given) */
} options_t;

/* ---------------------------------------------------------------------------------------------------- */
/* small helpers                                                                                        */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "eddy-bench: out of memory\n");
        exit(2);
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        fprintf(stderr, "eddy-bench: out of memory\n");
        exit(2);
    }
    return p;
}

/* splitmix64: fast, good enough for payloads and partition keys. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A growable byte buffer, always NUL-terminated when non-empty. */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + extra + 1 > cap) {
            cap *= 2;
        }
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
}

static void buf_add(buf_t *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_addf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_addf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void buf_free(buf_t *b)
{
    free(b->data);
    *b = (buf_t){0};
}

/* Finds the value of "key" in a JSON text: returns a pointer just past the ':' and any blanks after it, or
 * NULL. A match must be a key (followed by ':'), so a string value equal to the key is skipped. */
static const char *json_find(const char *p, const char *end, const char *key, size_t key_len)
{
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), key, key_len);
        if (hit == NULL) {
            return NULL;
        }
        const char *q = hit + key_len;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) {
            q++;
        }
        if (q < end && *q == ':') {
            q++;
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) {
                q++;
            }
            return q;
        }
        p = hit + key_len;
    }
    return NULL;
}

#define JSON_FIND(p, end, lit) json_find((p), (end), (lit), sizeof(lit) - 1)

/* The string value at p (which points at its opening quote): sets *len and returns its first byte, or NULL
 * when p is not a string. Kinesis values that we read here never contain escapes. */
static const char *json_string(const char *p, const char *end, size_t *len)
{
    if (p == NULL || p >= end || *p != '"') {
        return NULL;
    }
    const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
    if (q == NULL) {
        return NULL;
    }
    *len = (size_t)(q - p - 1);
    return p + 1;
}

/* ---------------------------------------------------------------------------------------------------- */
/* requests                                                                                             */

static char amz_date[32];
static char authorization[400];
static long request_timeout_ms = 30000;

/* The headers of one operation, built once and shared read-only by every handle and thread. */
static struct curl_slist *make_headers(const char *op)
{
    char target[96];
    snprintf(target, sizeof(target), "X-Amz-Target: Kinesis_20131202.%s", op);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/x-amz-json-1.1");
    h = curl_slist_append(h, target);
    h = curl_slist_append(h, amz_date);
    h = curl_slist_append(h, authorization);
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for bodies over 1 KiB */
    h = curl_slist_append(h, "Accept:");
    if (h == NULL) {
        fprintf(stderr, "eddy-bench: out of memory\n");
        exit(2);
    }
    return h;
}

static void init_auth(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char day[16], stamp[20];
    strftime(day, sizeof(day), "%Y%m%d", &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(amz_date, sizeof(amz_date), "X-Amz-Date: %s", stamp);
    snprintf(authorization, sizeof(authorization),
             "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEDDYBENCH/%s/us-east-1/kinesis/aws4_request, "
             "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
             "Signature=%064d",
             day, 0);
}

static size_t write_to_buf(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buf_add(userdata, ptr, size * nmemb);
    return size * nmemb;
}

/* Options every handle shares; the caller sets the body and headers.
 *
 * HTTP/2: libcurl 7.88 (Debian 12) breaks a connection opened with prior knowledge as soon as a second
 * transfer reuses it ("Error in the HTTP2 framing layer": it switches the reused connection to HTTP/2 a
 * second time; curl issue 10634, fixed in 8.0). A transfer that asks for plain CURL_HTTP_VERSION_2_0 does
 * not switch, and reuses an HTTP/2 connection as it is. So only the first transfer of each worker's
 * connection uses prior knowledge (`opens`); every other one asks for HTTP/2 and, with PIPEWAIT, waits for
 * that connection and multiplexes on it. */
static void easy_common(CURL *e, const options_t *o, buf_t *resp, bool opens)
{
    curl_easy_setopt(e, CURLOPT_URL, o->endpoint);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_to_buf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    long version = CURL_HTTP_VERSION_1_1;
    if (o->http2) {
        version = opens ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE : CURL_HTTP_VERSION_2_0;
    }
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, version);
    if (o->http2) {
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L); /* share the connection rather than open another */
    }
}

/* One blocking request (control plane and setup). Returns the HTTP status, or -1 on a transport error. */
static long call(const options_t *o, const char *op, const char *body, buf_t *resp)
{
    CURL *e = curl_easy_init();
    struct curl_slist *h = make_headers(op);
    resp->len = 0;
    buf_reserve(resp, 0);
    resp->data[0] = '\0';
    easy_common(e, o, resp, true);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    long status = -1;
    CURLcode rc = curl_easy_perform(e);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    } else {
        buf_addf(resp, "%s", curl_easy_strerror(rc));
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    return status;
}

/* ---------------------------------------------------------------------------------------------------- */
/* setup, ready                                                                                         */

static int setup_stream(const options_t *o)
{
    buf_t body = {0}, resp = {0};
    int ret = -1;
    buf_addf(&body, "{\"StreamName\":\"%s\",\"ShardCount\":%d}", o->stream, o->shards);
    long st = call(o, "CreateStream", body.data, &resp);
    if (st != 200 && !(st == 400 && strstr(resp.data, "ResourceInUseException") != NULL)) {
        fprintf(stderr, "eddy-bench: CreateStream failed: HTTP %ld %.300s\n", st, resp.data);
        goto out;
    }
    body.len = 0;
    buf_addf(&body, "{\"StreamName\":\"%s\"}", o->stream);
    uint64_t deadline = mono_ns() + (uint64_t)(o->timeout_s * 1e9);
    for (;;) {
        st = call(o, "DescribeStreamSummary", body.data, &resp);
        if (st == 200) {
            size_t n;
            const char *v = json_string(JSON_FIND(resp.data, resp.data + resp.len, "\"StreamStatus\""),
                                        resp.data + resp.len, &n);
            if (v != NULL && n == 6 && memcmp(v, "ACTIVE", 6) == 0) {
                ret = 0;
                goto out;
            }
        }
        if (mono_ns() > deadline) {
            fprintf(stderr, "eddy-bench: stream %s not ACTIVE after %.1f s: HTTP %ld %.300s\n", o->stream,
                    o->timeout_s, st, resp.data);
            goto out;
        }
        sleep_us(5000);
    }
out:
    buf_free(&body);
    buf_free(&resp);
    return ret;
}

/* Reads "listening on http://HOST:PORT" from a server's log file; returns the URL (owned) or NULL. */
static char *endpoint_from_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strstr(text, "listening on http://");
    if (p == NULL) {
        return NULL;
    }
    p += strlen("listening on ");
    const char *eol = strchr(p, '\n');
    if (eol == NULL) {
        return NULL; /* the line is not complete yet */
    }
    size_t len = (size_t)(eol - p);
    while (len > 0 && isspace((unsigned char)p[len - 1])) {
        len--;
    }
    char *url = xmalloc(len + 1);
    memcpy(url, p, len);
    url[len] = '\0';
    return url;
}

static int run_ready(options_t *o)
{
    uint64_t deadline = mono_ns() + (uint64_t)(o->timeout_s * 1e9);
    buf_t resp = {0};
    long attempts = 0, st = -1;
    int ret = -1;
    while (o->endpoint == NULL) {
        o->endpoint = endpoint_from_file(o->port_file);
        if (o->endpoint == NULL) {
            if (mono_ns() > deadline) {
                fprintf(stderr, "eddy-bench: no \"listening on\" line in %s after %.1f s\n", o->port_file,
                        o->timeout_s);
                goto out;
            }
            sleep_us(200);
        }
    }
    for (;;) {
        attempts++;
        st = call(o, "ListStreams", "{}", &resp);
        if (st == 200) {
            break;
        }
        if (mono_ns() > deadline) {
            fprintf(stderr, "eddy-bench: %s not ready after %.1f s: %ld %.300s\n", o->endpoint, o->timeout_s,
                    st, resp.data);
            goto out;
        }
        sleep_us(1000);
    }
    double ready_ms = o->since > 0 ? (wall_s() - o->since) * 1e3 : 0;
    printf("ready: %s answered ListStreams after %ld attempt%s", o->endpoint, attempts,
           attempts == 1 ? "" : "s");
    if (o->since > 0) {
        printf(", %.1f ms after spawn", ready_ms);
    }
    printf("\n");
    if (o->json) {
        printf(
            "{\"mode\":\"ready\",\"label\":\"%s\",\"endpoint\":\"%s\",\"attempts\":%ld,\"ready_ms\":%.1f}\n",
            o->label, o->endpoint, attempts, ready_ms);
    }
    ret = 0;
out:
    buf_free(&resp);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------- */
/* request bodies                                                                                       */

typedef struct body {
    char *data;
    size_t len;
} body_t;

static void add_random_record_fields(buf_t *b, uint64_t *rng, int record_bytes, unsigned char *raw, char *b64)
{
    for (int i = 0; i < record_bytes; i++) {
        raw[i] = (unsigned char)rng_next(rng);
    }
    int n = EVP_EncodeBlock((unsigned char *)b64, raw, record_bytes);
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char key[PARTITION_KEY_LEN + 1];
    for (int i = 0; i < PARTITION_KEY_LEN; i++) {
        key[i] = alphabet[rng_next(rng) % (sizeof(alphabet) - 1)];
    }
    key[PARTITION_KEY_LEN] = '\0';
    buf_add(b, "\"Data\":\"", 8);
    buf_add(b, b64, (size_t)n);
    buf_addf(b, "\",\"PartitionKey\":\"%s\"", key);
}

/* PutRecords bodies (batch > 0) or PutRecord bodies (batch == 0). */
static body_t *make_bodies(const options_t *o, int count, int batch)
{
    uint64_t rng = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
    unsigned char *raw = xmalloc((size_t)o->record_bytes + 1);
    char *b64 = xmalloc((size_t)o->record_bytes * 4 / 3 + 8);
    body_t *bodies = xmalloc(sizeof(*bodies) * (size_t)count);
    for (int i = 0; i < count; i++) {
        buf_t b = {0};
        buf_addf(&b, "{\"StreamName\":\"%s\",", o->stream);
        if (batch > 0) {
            buf_add(&b, "\"Records\":[", 11);
            for (int r = 0; r < batch; r++) {
                buf_add(&b, r ? ",{" : "{", r ? 2 : 1);
                add_random_record_fields(&b, &rng, o->record_bytes, raw, b64);
                buf_add(&b, "}", 1);
            }
            buf_add(&b, "]}", 2);
        } else {
            add_random_record_fields(&b, &rng, o->record_bytes, raw, b64);
            buf_add(&b, "}", 1);
        }
        bodies[i].data = b.data;
        bodies[i].len = b.len;
    }
    free(raw);
    free(b64);
    return bodies;
}

/* ---------------------------------------------------------------------------------------------------- */
/* the load loop                                                                                        */

typedef struct stats {
    uint64_t requests; /* completed with HTTP 200 */
    uint64_t records;  /* records accepted (put) or read (get) */
    uint64_t failed;   /* FailedRecordCount summed */
    uint64_t errors;   /* transport errors and non-200 answers */
    uint64_t bytes;    /* payload bytes of the counted records */
    uint32_t *lat_us;  /* latency of each counted request */
    size_t lat_len, lat_cap;
    char first_error[ERROR_TEXT_MAX];
} stats_t;

typedef struct run run_t;

typedef struct slot {
    CURL *easy;
    buf_t resp;
    uint64_t started_ns;
    unsigned next_body;
    /* get-records */
    int shard;
    buf_t req;
    bool done;
    int errors_in_row;
    bool opens; /* --http2: this slot's transfers open the worker's connection (see easy_common) */
} slot_t;

typedef struct worker {
    int id;
    run_t *run;
    CURLM *multi;
    slot_t *slots;
    int nslots;
    int active;
    stats_t st;
    pthread_t thread;
} worker_t;

struct run {
    const options_t *o;
    bench_mode_t kind; /* MODE_PUT_RECORDS, MODE_PUT_RECORD or MODE_GET_RECORDS */
    uint64_t t_start, t_measure, t_end, t_abandon;
    long issue_limit; /* put: stop issuing after this many records (0: no limit) */
    atomic_long issued;
    int batch;
    body_t *bodies;
    int nbodies;
    struct curl_slist *headers;
    /* get-records */
    int nshards;
    char **iterators; /* initial iterator per shard */
    bool *shard_complete;
    uint64_t *shard_done_ns;
};

static void note_error(stats_t *st, const char *what, long status, const buf_t *resp)
{
    st->errors++;
    if (st->first_error[0] == '\0') {
        snprintf(st->first_error, sizeof(st->first_error), "%s: HTTP %ld %.200s", what, status,
                 resp->data ? resp->data : "");
    }
}

static void record_latency(stats_t *st, uint64_t ns)
{
    if (st->lat_len == st->lat_cap) {
        st->lat_cap = st->lat_cap ? st->lat_cap * 2 : 65536;
        st->lat_us = xrealloc(st->lat_us, st->lat_cap * sizeof(*st->lat_us));
    }
    uint64_t us = ns / 1000;
    st->lat_us[st->lat_len++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Prepares the slot's next request; false when the slot has nothing more to do. */
static bool slot_next(worker_t *w, slot_t *s)
{
    run_t *r = w->run;
    if (mono_ns() >= r->t_end) {
        return false;
    }
    if (r->kind == MODE_GET_RECORDS) {
        if (s->done) {
            return false;
        }
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->req.data);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->req.len);
    } else {
        if (r->issue_limit > 0 && atomic_fetch_add(&r->issued, r->batch) >= r->issue_limit) {
            return false;
        }
        const body_t *b = &r->bodies[s->next_body++ % (unsigned)r->nbodies];
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, b->data);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
    }
    s->resp.len = 0;
    if (s->resp.data != NULL) {
        s->resp.data[0] = '\0';
    }
    s->started_ns = mono_ns();
    return true;
}

/* Counts the records of a GetRecords answer and their payload bytes; finds NextShardIterator. */
static void scan_get_records(const buf_t *resp, uint64_t *records, uint64_t *bytes, const char **next,
                             size_t *next_len)
{
    const char *p = resp->data, *end = resp->data + resp->len;
    *records = 0;
    *bytes = 0;
    for (;;) {
        size_t n;
        const char *v = json_string(JSON_FIND(p, end, "\"Data\""), end, &n);
        if (v == NULL) {
            break;
        }
        size_t pad = (n >= 1 && v[n - 1] == '=') + (n >= 2 && v[n - 2] == '=');
        *records += 1;
        *bytes += n / 4 * 3 - pad;
        p = v + n + 1;
    }
    *next = json_string(JSON_FIND(resp->data, end, "\"NextShardIterator\""), end, next_len);
}

static void set_get_body(buf_t *req, const char *iterator, size_t len, int limit)
{
    req->len = 0;
    buf_add(req, "{\"ShardIterator\":\"", 18);
    buf_add(req, iterator, len);
    buf_addf(req, "\",\"Limit\":%d}", limit);
}

static void get_slot_failed(worker_t *w, slot_t *s, uint64_t now)
{
    if (++s->errors_in_row > GET_ERRORS_IN_A_ROW_MAX) {
        s->done = true;
        w->run->shard_done_ns[s->shard] = now;
    }
}

/* Accounts for a finished request. */
static void slot_done(worker_t *w, slot_t *s, CURLcode rc, uint64_t now)
{
    run_t *r = w->run;
    stats_t *st = &w->st;
    bool counted = now >= r->t_measure && now < r->t_end;
    if (s->opens && rc == CURLE_OK) {
        curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_0);
        s->opens = false;
    }
    if (rc != CURLE_OK) {
        if (counted) {
            buf_t msg = {.data = (char *)curl_easy_strerror(rc)};
            note_error(st, "transport", 0, &msg);
        }
        if (r->kind == MODE_GET_RECORDS) {
            get_slot_failed(w, s, now);
        }
        return;
    }
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        if (counted) {
            note_error(st, mode_names[r->kind], status, &s->resp);
        }
        if (r->kind == MODE_GET_RECORDS) {
            get_slot_failed(w, s, now);
        }
        return;
    }
    if (!counted) {
        return;
    }
    const char *end = s->resp.data + s->resp.len;
    switch (r->kind) {
    case MODE_PUT_RECORDS: {
        const char *v = JSON_FIND(s->resp.data, end, "\"FailedRecordCount\"");
        if (v == NULL) {
            note_error(st, "PutRecords answer without FailedRecordCount", status, &s->resp);
            return;
        }
        uint64_t failed = strtoull(v, NULL, 10);
        if (failed > (uint64_t)r->batch) {
            failed = (uint64_t)r->batch;
        }
        st->requests++;
        st->failed += failed;
        st->records += (uint64_t)r->batch - failed;
        st->bytes += ((uint64_t)r->batch - failed) * (uint64_t)r->o->record_bytes;
        break;
    }
    case MODE_PUT_RECORD:
        st->requests++;
        st->records++;
        st->bytes += (uint64_t)r->o->record_bytes;
        break;
    case MODE_GET_RECORDS: {
        uint64_t records, bytes;
        const char *next;
        size_t next_len = 0;
        scan_get_records(&s->resp, &records, &bytes, &next, &next_len);
        st->requests++;
        st->records += records;
        st->bytes += bytes;
        s->errors_in_row = 0;
        if (records == 0 || next == NULL) {
            s->done = true;
            r->shard_complete[s->shard] = true;
            r->shard_done_ns[s->shard] = now;
        } else {
            set_get_body(&s->req, next, next_len, r->o->limit);
        }
        break;
    }
    default:
        break;
    }
    record_latency(st, now - s->started_ns);
}

/* @thread worker: drives its slots until the run ends or every slot is done. */
static void *worker_main(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    for (int i = 0; i < w->nslots; i++) {
        if (slot_next(w, &w->slots[i])) {
            curl_multi_add_handle(w->multi, w->slots[i].easy);
            w->active++;
        }
    }
    /* Past t_end no request starts; those in flight may finish (uncounted) until t_abandon, so that the
     * server is idle again when the run returns, not still working through requests nobody waits for. */
    while (w->active > 0) {
        uint64_t now = mono_ns();
        if (now >= r->t_abandon) {
            break;
        }
        int running;
        curl_multi_perform(w->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            CURL *e = m->easy_handle;
            CURLcode rc = m->data.result;
            slot_t *s;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
            curl_multi_remove_handle(w->multi, e);
            w->active--;
            slot_done(w, s, rc, mono_ns());
            if (slot_next(w, s)) {
                curl_multi_add_handle(w->multi, e);
                w->active++;
            }
        }
        if (w->active == 0) {
            break;
        }
        now = mono_ns();
        if (now >= r->t_abandon) {
            break;
        }
        uint64_t left_ms = (r->t_abandon - now) / 1000000 + 1;
        curl_multi_poll(w->multi, NULL, 0, left_ms < 100 ? (int)left_ms : 100, NULL);
    }
    for (int i = 0; i < w->nslots; i++) {
        curl_multi_remove_handle(w->multi, w->slots[i].easy); /* abandons what is still in flight */
    }
    return NULL;
}

typedef struct result {
    stats_t st;
    double seconds;
    bool complete; /* get-records: every shard drained */
} result_t;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t percentile(const stats_t *st, double p)
{
    if (st->lat_len == 0) {
        return 0;
    }
    size_t rank = (size_t)ceil(p * (double)st->lat_len);
    if (rank < 1) {
        rank = 1;
    }
    return st->lat_us[rank > st->lat_len ? st->lat_len - 1 : rank - 1];
}

/* Runs the load with `nslots` slots spread over the threads; fills *res. */
static void run_load(run_t *r, int nslots, result_t *res)
{
    const options_t *o = r->o;
    int nthreads = o->threads < nslots ? o->threads : nslots;
    worker_t *workers = calloc((size_t)nthreads, sizeof(*workers));
    slot_t *slots = calloc((size_t)nslots, sizeof(*slots));
    if (workers == NULL || slots == NULL) {
        fprintf(stderr, "eddy-bench: out of memory\n");
        exit(2);
    }
    /* Slots i, i + nthreads, ... belong to worker i; they are laid out per worker. */
    int next = 0;
    for (int t = 0; t < nthreads; t++) {
        worker_t *w = &workers[t];
        w->id = t;
        w->run = r;
        w->slots = &slots[next];
        for (int i = t; i < nslots; i += nthreads) {
            slot_t *s = &slots[next++];
            w->nslots++;
            s->shard = i;
            s->next_body = (unsigned)i;
            s->easy = curl_easy_init();
            s->opens = o->http2 && w->nslots == 1;
            easy_common(s->easy, o, &s->resp, s->opens);
            curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, r->headers);
            curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
            if (r->kind == MODE_GET_RECORDS) {
                set_get_body(&s->req, r->iterators[i], strlen(r->iterators[i]), o->limit);
            }
        }
        w->multi = curl_multi_init();
        curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->nslots + 4);
        curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, o->http2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
        if (o->http2) {
            curl_multi_setopt(w->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)w->nslots);
        }
    }
    r->t_start = mono_ns();
    r->t_measure = r->t_start + (uint64_t)(o->warmup_s * 1e9);
    if (r->kind == MODE_GET_RECORDS || r->issue_limit > 0) {
        r->t_measure = r->t_start;
    }
    r->t_end = r->t_measure + (uint64_t)(o->duration_s * 1e9);
    r->t_abandon = r->t_end + (uint64_t)request_timeout_ms * 1000000;
    for (int t = 0; t < nthreads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
            fprintf(stderr, "eddy-bench: cannot start a thread\n");
            exit(2);
        }
    }
    *res = (result_t){0};
    for (int t = 0; t < nthreads; t++) {
        pthread_join(workers[t].thread, NULL);
    }
    uint64_t finished = mono_ns();
    if (finished > r->t_end) {
        finished = r->t_end;
    }
    for (int t = 0; t < nthreads; t++) {
        worker_t *w = &workers[t];
        stats_t *a = &res->st, *b = &w->st;
        a->requests += b->requests;
        a->records += b->records;
        a->failed += b->failed;
        a->errors += b->errors;
        a->bytes += b->bytes;
        if (b->lat_len > 0) {
            a->lat_us = xrealloc(a->lat_us, (a->lat_len + b->lat_len) * sizeof(*a->lat_us));
            memcpy(a->lat_us + a->lat_len, b->lat_us, b->lat_len * sizeof(*b->lat_us));
            a->lat_len += b->lat_len;
        }
        if (b->first_error[0] != '\0') {
            fprintf(stderr, "eddy-bench: %" PRIu64 " error%s on thread %d, the first: %s\n", b->errors,
                    b->errors == 1 ? "" : "s", t, b->first_error);
            if (a->first_error[0] == '\0') {
                memcpy(a->first_error, b->first_error, sizeof(a->first_error));
            }
        }
        free(b->lat_us);
        for (int i = 0; i < w->nslots; i++) {
            curl_easy_cleanup(w->slots[i].easy);
            buf_free(&w->slots[i].resp);
            buf_free(&w->slots[i].req);
        }
        curl_multi_cleanup(w->multi);
    }
    if (res->st.lat_len > 0) {
        qsort(res->st.lat_us, res->st.lat_len, sizeof(*res->st.lat_us), cmp_u32);
    }
    if (r->kind == MODE_GET_RECORDS) {
        res->complete = true;
        uint64_t last = r->t_start;
        for (int i = 0; i < r->nshards; i++) {
            res->complete = res->complete && r->shard_complete[i];
            if (r->shard_done_ns[i] > last) {
                last = r->shard_done_ns[i];
            }
        }
        res->seconds = (double)((res->complete ? last : finished) - r->t_start) / 1e9;
    } else if (r->issue_limit > 0) {
        res->seconds = (double)(finished - r->t_start) / 1e9;
    } else {
        res->seconds = (double)(r->t_end - r->t_measure) / 1e9;
    }
    free(workers);
    free(slots);
}

/* ---------------------------------------------------------------------------------------------------- */
/* modes                                                                                                */

static const char *http_name(const options_t *o)
{
    return o->http2 ? "h2c" : "HTTP/1.1";
}

static void print_json_head(const options_t *o, const result_t *res)
{
    printf("{\"mode\":\"%s\",\"label\":\"%s\",\"endpoint\":\"%s\",\"http\":\"%s\",\"threads\":%d,"
           "\"connections\":%d,\"seconds\":%.3f,\"requests\":%" PRIu64 ",\"records\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"payload_bytes\":%" PRIu64 ",\"requests_per_s\":%.1f,"
           "\"records_per_s\":%.1f,\"mb_per_s\":%.3f",
           mode_names[o->mode], o->label, o->endpoint, o->http2 ? "2" : "1.1", o->threads, o->connections,
           res->seconds, res->st.requests, res->st.records, res->st.errors, res->st.bytes,
           (double)res->st.requests / res->seconds, (double)res->st.records / res->seconds,
           (double)res->st.bytes / 1e6 / res->seconds);
    printf(",\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u",
           percentile(&res->st, 0.5), percentile(&res->st, 0.9), percentile(&res->st, 0.99),
           percentile(&res->st, 0.999), res->st.lat_len ? res->st.lat_us[res->st.lat_len - 1] : 0);
}

static int run_put(options_t *o)
{
    bool many = o->mode == MODE_PUT_RECORDS;
    run_t r = {.o = o, .kind = o->mode, .batch = many ? o->batch : 1};
    r.nbodies = many ? PUT_RECORDS_POOL : PUT_RECORD_POOL;
    r.bodies = make_bodies(o, r.nbodies, many ? o->batch : 0);
    r.headers = make_headers(many ? "PutRecords" : "PutRecord");
    result_t res;
    run_load(&r, o->connections, &res);
    double secs = res.seconds;
    uint32_t max = res.st.lat_len ? res.st.lat_us[res.st.lat_len - 1] : 0;
    if (many) {
        printf("put-records: %.0f records/s, %.2f MB/s, %.1f requests/s; failed records %" PRIu64
               ", errors %" PRIu64 "; latency p50 %u us, p99 %u us, max %u us "
               "(%.1f s, %s, %d in flight, %d thread%s, %d x %d B)\n",
               (double)res.st.records / secs, (double)res.st.bytes / 1e6 / secs,
               (double)res.st.requests / secs, res.st.failed, res.st.errors, percentile(&res.st, 0.5),
               percentile(&res.st, 0.99), max, secs, http_name(o), o->connections, o->threads,
               o->threads == 1 ? "" : "s", o->batch, o->record_bytes);
    } else {
        printf("put-record: p50 %u us, p99 %u us, p99.9 %u us, max %u us; %.0f requests/s, errors %" PRIu64
               " (%.1f s, %s, %d client%s, %d thread%s, %d B)\n",
               percentile(&res.st, 0.5), percentile(&res.st, 0.99), percentile(&res.st, 0.999), max,
               (double)res.st.requests / secs, res.st.errors, secs, http_name(o), o->connections,
               o->connections == 1 ? "" : "s", o->threads, o->threads == 1 ? "" : "s", o->record_bytes);
    }
    if (o->json) {
        print_json_head(o, &res);
        printf(",\"failed_records\":%" PRIu64 ",\"batch\":%d,\"record_bytes\":%d}\n", res.st.failed, r.batch,
               o->record_bytes);
    }
    for (int i = 0; i < r.nbodies; i++) {
        free(r.bodies[i].data);
    }
    free(r.bodies);
    free(res.st.lat_us);
    curl_slist_free_all(r.headers);
    return res.st.requests > 0 ? 0 : 1; /* nothing got through: say so to scripts */
}

/* Puts o->fill records with PutRecords before a drain. */
static int fill_stream(options_t *o)
{
    options_t f = *o;
    f.mode = MODE_PUT_RECORDS;
    f.connections = o->connections;
    f.warmup_s = 0;
    f.duration_s = 600;
    run_t r = {.o = &f, .kind = MODE_PUT_RECORDS, .batch = o->batch, .issue_limit = o->fill};
    r.nbodies = PUT_RECORDS_POOL;
    r.bodies = make_bodies(&f, r.nbodies, o->batch);
    r.headers = make_headers("PutRecords");
    result_t res;
    run_load(&r, f.connections, &res);
    fprintf(stderr,
            "fill: %" PRIu64 " records in %.2f s (%.0f records/s), failed %" PRIu64 ", errors %" PRIu64 "\n",
            res.st.records, res.seconds, (double)res.st.records / res.seconds, res.st.failed, res.st.errors);
    for (int i = 0; i < r.nbodies; i++) {
        free(r.bodies[i].data);
    }
    free(r.bodies);
    free(res.st.lat_us);
    curl_slist_free_all(r.headers);
    return res.st.errors == 0 ? 0 : -1;
}

static int run_get(options_t *o)
{
    int ret = -1;
    buf_t body = {0}, resp = {0};
    run_t r = {.o = o, .kind = MODE_GET_RECORDS};
    r.iterators = calloc(MAX_SHARDS, sizeof(*r.iterators));
    r.shard_complete = calloc(MAX_SHARDS, sizeof(*r.shard_complete));
    r.shard_done_ns = calloc(MAX_SHARDS, sizeof(*r.shard_done_ns));
    if (o->fill > 0 && fill_stream(o) != 0) {
        goto out;
    }
    buf_addf(&body, "{\"StreamName\":\"%s\"}", o->stream);
    long st = call(o, "ListShards", body.data, &resp);
    if (st != 200) {
        fprintf(stderr, "eddy-bench: ListShards failed: HTTP %ld %.300s\n", st, resp.data);
        goto out;
    }
    char *ids[MAX_SHARDS];
    const char *p = resp.data, *end = resp.data + resp.len;
    for (;;) {
        size_t n;
        const char *v = json_string(JSON_FIND(p, end, "\"ShardId\""), end, &n);
        if (v == NULL || r.nshards == MAX_SHARDS) {
            break;
        }
        ids[r.nshards] = strndup(v, n);
        r.nshards++;
        p = v + n + 1;
    }
    if (r.nshards == 0) {
        fprintf(stderr, "eddy-bench: no shards in %.300s\n", resp.data);
        goto out;
    }
    for (int i = 0; i < r.nshards; i++) {
        body.len = 0;
        buf_addf(&body, "{\"StreamName\":\"%s\",\"ShardId\":\"%s\",\"ShardIteratorType\":\"TRIM_HORIZON\"}",
                 o->stream, ids[i]);
        st = call(o, "GetShardIterator", body.data, &resp);
        size_t n;
        const char *v = json_string(JSON_FIND(resp.data, resp.data + resp.len, "\"ShardIterator\""),
                                    resp.data + resp.len, &n);
        if (st != 200 || v == NULL) {
            fprintf(stderr, "eddy-bench: GetShardIterator %s failed: HTTP %ld %.300s\n", ids[i], st,
                    resp.data);
            goto out;
        }
        r.iterators[i] = strndup(v, n);
    }
    o->connections = r.nshards;
    r.headers = make_headers("GetRecords");
    result_t res;
    run_load(&r, r.nshards, &res);
    double secs = res.seconds;
    printf("get-records: %.0f records/s, %.2f MB/s; %" PRIu64 " records in %.2f s, %" PRIu64
           " requests, %d shards, %s; errors %" PRIu64 " (%s, limit %d, %d thread%s)\n",
           (double)res.st.records / secs, (double)res.st.bytes / 1e6 / secs, res.st.records, secs,
           res.st.requests, r.nshards, res.complete ? "drained" : "NOT drained (time cap)", res.st.errors,
           http_name(o), o->limit, o->threads, o->threads == 1 ? "" : "s");
    if (o->json) {
        print_json_head(o, &res);
        printf(",\"shards\":%d,\"limit\":%d,\"complete\":%s}\n", r.nshards, o->limit,
               res.complete ? "true" : "false");
    }
    free(res.st.lat_us);
    ret = res.complete ? 0 : 1;
    for (int i = 0; i < r.nshards; i++) {
        free(ids[i]);
    }
out:
    for (int i = 0; i < MAX_SHARDS; i++) {
        free(r.iterators[i]);
    }
    free(r.iterators);
    free(r.shard_complete);
    free(r.shard_done_ns);
    curl_slist_free_all(r.headers);
    buf_free(&body);
    buf_free(&resp);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------- */
/* command line                                                                                         */

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: eddy-bench MODE --endpoint URL [options]\n\n"
        "Drives a Kinesis endpoint (AWS JSON 1.1) and reports throughput and latency.\n\n"
        "modes:\n"
        "  put-records   PutRecords load: records/s, MB/s, requests/s, failed records, errors\n"
        "  put-record    PutRecord latency (one request at a time per client): p50/p99/p99.9/max\n"
        "  get-records   drain every shard from TRIM_HORIZON with GetRecords: records/s, MB/s\n"
        "  setup         create the stream and wait until it is ACTIVE\n"
        "  ready         poll ListStreams until it answers; report the time since --since\n\n"
        "options:\n"
        "  --endpoint URL       http://HOST:PORT of the server (required, except ready --port-file)\n"
        "  --http2              cleartext HTTP/2 with prior knowledge, streams multiplexed\n"
        "  --stream NAME        stream name (default eddy-bench)\n"
        "  --shards N           shards for --setup (default 4)\n"
        "  --setup              create the stream first (an existing one is used) and wait for ACTIVE\n"
        "  --threads N          generator threads (default 1)\n"
        "  --connections C      requests in flight: connections, or streams with --http2\n"
        "                       (default 16 for put-records, 1 for put-record; get-records: one per shard)\n"
        "  --batch N            records per PutRecords (default 500)\n"
        "  --record-bytes B     data bytes per record (default 100)\n"
        "  --duration S         measured seconds (default 10); get-records: the drain's time cap\n"
        "                       (default 60)\n"
        "  --warmup S           unmeasured seconds first (default 1)\n"
        "  --limit N            GetRecords Limit (default 10000)\n"
        "  --fill N             get-records: put N records first (default 0: drain what is there)\n"
        "  --timeout S          deadline of setup and ready, and of each request; requests still in\n"
        "                       flight at the end get this long to finish, uncounted (default 30)\n"
        "  --port-file FILE     ready: read the endpoint from a \"listening on http://HOST:PORT\" line\n"
        "  --since T            ready: wall-clock seconds (bash $EPOCHREALTIME) the server was spawned\n"
        "  --label TEXT         copied into the JSON line\n"
        "  --json               also print the results as one JSON line\n"
        "  --help               print this help\n\n"
        "Exit status: 0 on success; 1 when the run failed (setup or ready timed out, no request\n"
        "succeeded, a drain did not finish); 2 on bad usage.\n");
}

enum {
    OPT_ENDPOINT = 256,
    OPT_HTTP2,
    OPT_STREAM,
    OPT_SHARDS,
    OPT_SETUP,
    OPT_THREADS,
    OPT_CONNECTIONS,
    OPT_BATCH,
    OPT_RECORD_BYTES,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_LIMIT,
    OPT_FILL,
    OPT_TIMEOUT,
    OPT_PORT_FILE,
    OPT_SINCE,
    OPT_LABEL,
    OPT_JSON,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
    {"http2", no_argument, NULL, OPT_HTTP2},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"shards", required_argument, NULL, OPT_SHARDS},
    {"setup", no_argument, NULL, OPT_SETUP},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"record-bytes", required_argument, NULL, OPT_RECORD_BYTES},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"fill", required_argument, NULL, OPT_FILL},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"since", required_argument, NULL, OPT_SINCE},
    {"label", required_argument, NULL, OPT_LABEL},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        return false;
    }
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.stream = "eddy-bench",
                     .label = "",
                     .shards = 4,
                     .threads = 1,
                     .batch = 500,
                     .record_bytes = 100,
                     .duration_s = -1,
                     .warmup_s = 1,
                     .limit = 10000,
                     .timeout_s = 30};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? -1 : 1;
    }
    size_t m = 0;
    while (m < sizeof(mode_names) / sizeof(mode_names[0]) && strcmp(argv[1], mode_names[m]) != 0) {
        m++;
    }
    if (m == sizeof(mode_names) / sizeof(mode_names[0])) {
        fprintf(stderr, "eddy-bench: unknown mode '%s' (eddy-bench --help lists them)\n", argv[1]);
        return -1;
    }
    o->mode = (bench_mode_t)m;
    int c;
    long v;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case OPT_ENDPOINT:
            free(o->endpoint);
            o->endpoint = strdup(optarg);
            break;
        case OPT_HTTP2:
            o->http2 = true;
            break;
        case OPT_STREAM:
            o->stream = optarg;
            ok = strlen(optarg) >= 1 && strlen(optarg) <= 128 && strpbrk(optarg, "\"\\") == NULL;
            break;
        case OPT_SHARDS:
            ok = parse_long(optarg, 1, MAX_SHARDS, &v);
            o->shards = (int)v;
            break;
        case OPT_SETUP:
            o->setup = true;
            break;
        case OPT_THREADS:
            ok = parse_long(optarg, 1, MAX_THREADS, &v);
            o->threads = (int)v;
            break;
        case OPT_CONNECTIONS:
            ok = parse_long(optarg, 1, MAX_CONNECTIONS, &v);
            o->connections = (int)v;
            break;
        case OPT_BATCH:
            ok = parse_long(optarg, 1, 10000, &v);
            o->batch = (int)v;
            break;
        case OPT_RECORD_BYTES:
            ok = parse_long(optarg, 1, 1 << 20, &v);
            o->record_bytes = (int)v;
            break;
        case OPT_DURATION:
            ok = parse_double(optarg, 0.001, 86400, &o->duration_s);
            break;
        case OPT_WARMUP:
            ok = parse_double(optarg, 0, 86400, &o->warmup_s);
            break;
        case OPT_LIMIT:
            ok = parse_long(optarg, 1, 10000, &v);
            o->limit = (int)v;
            break;
        case OPT_FILL:
            ok = parse_long(optarg, 0, 1000000000L, &v);
            o->fill = v;
            break;
        case OPT_TIMEOUT:
            ok = parse_double(optarg, 0.001, 86400, &o->timeout_s);
            break;
        case OPT_PORT_FILE:
            o->port_file = optarg;
            break;
        case OPT_SINCE:
            ok = parse_double(optarg, 0, 1e11, &o->since);
            break;
        case OPT_LABEL:
            o->label = optarg;
            ok = strpbrk(optarg, "\"\\") == NULL;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_HELP:
            usage(stdout);
            return 1;
        default:
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "eddy-bench: bad value '%s' for --%s\n", optarg,
                    long_options[c - OPT_ENDPOINT].name);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eddy-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->endpoint == NULL && !(o->mode == MODE_READY && o->port_file != NULL)) {
        fprintf(stderr, "eddy-bench: --endpoint URL is required\n");
        return -1;
    }
    if (o->endpoint != NULL &&
        (strpbrk(o->endpoint, "\"\\") != NULL || strncmp(o->endpoint, "http", 4) != 0)) {
        fprintf(stderr, "eddy-bench: --endpoint must be an http:// URL\n");
        return -1;
    }
    if (o->connections == 0) {
        o->connections = o->mode == MODE_PUT_RECORDS ? 16 : 1;
    }
    if (o->duration_s < 0) {
        o->duration_s = o->mode == MODE_GET_RECORDS ? 60 : 10;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? 2 : 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "eddy-bench: curl_global_init failed\n");
        return 2;
    }
    request_timeout_ms = (long)(o.timeout_s * 1000);
    init_auth();
    int ret = 0;
    if (o.mode == MODE_READY) {
        ret = run_ready(&o) == 0 ? 0 : 1;
        goto out;
    }
    if ((o.setup || o.mode == MODE_SETUP) && setup_stream(&o) != 0) {
        ret = 1;
        goto out;
    }
    switch (o.mode) {
    case MODE_PUT_RECORDS:
    case MODE_PUT_RECORD:
        ret = run_put(&o);
        break;
    case MODE_GET_RECORDS:
        ret = run_get(&o) == 0 ? 0 : 1;
        break;
    case MODE_SETUP:
        printf("setup: stream %s ACTIVE\n", o.stream);
        break;
    default:
        break;
    }
out:
    free(o.endpoint);
    curl_global_cleanup();
    return ret;
}
