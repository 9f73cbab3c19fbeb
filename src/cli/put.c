/*
 * put: `eddy put`, which produces lines (or length-delimited records) from standard input or files into a
 * stream through libeddy's producer (include/eddy/producer.h).
 *
 *   eddy put [--endpoint URL] --stream NAME [--aggregate] [--partition-key SPEC] [--length-delimited]
 *            [--region R] [--rate-limit PERCENT|off] [--quiet] [FILE...]
 *
 * SPEC: random (default: 16 random hex digits per record), constant:VALUE, field:NAME (a top-level field of
 * a JSON line; lines that are not JSON objects with that field use "-"), regex:RE (the first capture group
 * of an extended regular expression, or the whole match; "-" when it does not match).
 * On a terminal a progress line (records/s, MB/s, retries, failures) is redrawn every second. The exit
 * status is 0 when every record was put, 1 when some failed, 2 on bad usage.
 */
#include "cli/put.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "eddy/client.h"
#include "eddy/producer.h"

typedef enum key_mode { KEY_RANDOM, KEY_CONSTANT, KEY_FIELD, KEY_REGEX } key_mode_t;

typedef struct put_options {
    const char *endpoint, *stream, *region, *rate_limit;
    bool aggregate, delimited, quiet;
    key_mode_t key_mode;
    const char *key_arg;
    regex_t re;
} put_options_t;

static atomic_ulong failed_records;

static void usage(FILE *out)
{
    fprintf(out, "usage: eddy put [--endpoint URL] --stream NAME [--aggregate] [--partition-key SPEC]\n"
                 "                [--length-delimited] [--region R] [--rate-limit PERCENT|off] [--quiet] [FILE...]\n\n"
                 "Puts each line of the FILEs (or of standard input) into the stream as one record.\n"
                 "  --endpoint URL          default: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, or the region's\n"
                 "  --aggregate             pack records into KPL aggregated records (de-aggregated by KCL readers)\n"
                 "  --partition-key SPEC    random (default), constant:VALUE, field:NAME (JSON lines),\n"
                 "                          regex:RE (first capture group, or the match)\n"
                 "  --length-delimited      records are a 4-byte big-endian length and that many bytes\n"
                 "  --rate-limit P          percent of the shard limits the producer keeps to (150), or off\n"
                 "  --quiet                 no progress line\n");
}

static void on_done(void *arg, const eddy_put_result_t *r)
{
    (void)arg;
    if (r->err != EDDY_OK) {
        if (atomic_fetch_add(&failed_records, 1) < 10) {
            fprintf(stderr, "\neddy put: a record failed after %zu attempts: %s%s%s\n", r->attempt_count,
                    r->error_code ? r->error_code : eddy_err_name(r->err), r->error_message ? ": " : "",
                    r->error_message ? r->error_message : "");
        }
    }
}

/* The partition key of one record into key (at most 256 bytes); returns its length. */
static size_t partition_key(put_options_t *o, const char *data, size_t len, char key[257])
{
    switch (o->key_mode) {
    case KEY_CONSTANT:
        return (size_t)snprintf(key, 257, "%s", o->key_arg);
    case KEY_FIELD: {
        cJSON *j = cJSON_ParseWithLength(data, len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, o->key_arg);
        size_t n;
        if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
            n = (size_t)snprintf(key, 257, "%s", v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            n = (size_t)snprintf(key, 257, "%.17g", v->valuedouble);
        } else {
            n = (size_t)snprintf(key, 257, "-");
        }
        cJSON_Delete(j);
        return n > 256 ? 256 : n;
    }
    case KEY_REGEX: {
        char *line = strndup(data, len);
        regmatch_t m[2];
        size_t n = 1;
        key[0] = '-';
        if (line != NULL && regexec(&o->re, line, 2, m, 0) == 0) {
            regmatch_t *g = m[1].rm_so >= 0 ? &m[1] : &m[0];
            n = (size_t)(g->rm_eo - g->rm_so);
            n = n > 256 ? 256 : n;
            if (n == 0) {
                n = 1; /* an empty match: "-" */
            } else {
                memcpy(key, line + g->rm_so, n);
            }
        }
        free(line);
        return n;
    }
    case KEY_RANDOM:
    default: {
        static _Thread_local uint64_t state;
        if (state == 0 && getrandom(&state, sizeof state, 0) != sizeof state) {
            state = (uint64_t)time(NULL) | 1;
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return (size_t)snprintf(key, 257, "%016" PRIx64, state);
    }
    }
}

typedef struct progress {
    struct timespec start, last;
    uint64_t records, bytes;
} progress_t;

static double elapsed(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void show(eddy_producer_t *p, progress_t *pg, bool final)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!final && elapsed(&pg->last, &now) < 1.0) {
        return;
    }
    pg->last = now;
    eddy_producer_metrics_t m;
    eddy_producer_metrics(p, &m);
    double secs = elapsed(&pg->start, &now);
    secs = secs > 0 ? secs : 1e-9;
    fprintf(stderr, "\r%" PRIu64 " records put, %.0f records/s, %.2f MB/s, %" PRIu64 " retries, %" PRIu64 " failed   %s",
            m.user_records_put, (double)m.user_records_put / secs, (double)m.user_bytes_put / secs / 1e6, m.retries,
            m.user_records_failed, final ? "\n" : "");
}

/* Reads one record from f: a line (without its newline) or a length-delimited one. 1 with the record in *buf (length *len),
 * 0 at the end, -1 on a truncated length-delimited record. */
static int next_record(FILE *f, bool delimited, char **buf, size_t *cap, size_t *len)
{
    if (!delimited) {
        ssize_t n = getline(buf, cap, f);
        if (n < 0) {
            return 0;
        }
        *len = (size_t)n;
        if (*len > 0 && (*buf)[*len - 1] == '\n') {
            (*len)--;
        }
        return 1;
    }
    unsigned char head[4];
    size_t got = fread(head, 1, 4, f);
    if (got == 0) {
        return 0;
    }
    if (got < 4) {
        return -1;
    }
    size_t n = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3];
    if (n > 10u << 20) {
        return -1;
    }
    if (n + 1 > *cap) {
        char *grown = realloc(*buf, n + 1);
        if (grown == NULL) {
            return -1;
        }
        *buf = grown;
        *cap = n + 1;
    }
    if (fread(*buf, 1, n, f) != n) {
        return -1;
    }
    *len = n;
    return 1;
}

static int parse(int argc, char **argv, put_options_t *o)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},   {"stream", required_argument, NULL, 's'},
        {"aggregate", no_argument, NULL, 'a'},        {"partition-key", required_argument, NULL, 'k'},
        {"length-delimited", no_argument, NULL, 'd'}, {"region", required_argument, NULL, 'r'},
        {"rate-limit", required_argument, NULL, 'l'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e': o->endpoint = optarg; break;
        case 's': o->stream = optarg; break;
        case 'a': o->aggregate = true; break;
        case 'd': o->delimited = true; break;
        case 'r': o->region = optarg; break;
        case 'l': o->rate_limit = optarg; break;
        case 'q': o->quiet = true; break;
        case 'h': usage(stdout); return 1;
        case 'k':
            if (strcmp(optarg, "random") == 0) {
                o->key_mode = KEY_RANDOM;
            } else if (strncmp(optarg, "constant:", 9) == 0 && optarg[9] != '\0' && strlen(optarg + 9) <= 256) {
                o->key_mode = KEY_CONSTANT;
                o->key_arg = optarg + 9;
            } else if (strncmp(optarg, "field:", 6) == 0 && optarg[6] != '\0') {
                o->key_mode = KEY_FIELD;
                o->key_arg = optarg + 6;
            } else if (strncmp(optarg, "regex:", 6) == 0) {
                int rc = regcomp(&o->re, optarg + 6, REG_EXTENDED);
                if (rc != 0) {
                    char msg[200];
                    regerror(rc, &o->re, msg, sizeof msg);
                    fprintf(stderr, "eddy put: --partition-key regex: %s\n", msg);
                    return 2;
                }
                o->key_mode = KEY_REGEX;
            } else {
                fprintf(stderr, "eddy put: --partition-key: expected random, constant:VALUE, field:NAME or regex:RE\n");
                return 2;
            }
            break;
        default: usage(stderr); return 2;
        }
    }
    if (o->stream == NULL) {
        fprintf(stderr, "eddy put: --stream is required\n");
        return 2;
    }
    return 0;
}

int put_main(int argc, char **argv)
{
    put_options_t o = {0};
    int rc = parse(argc, argv, &o);
    if (rc != 0) {
        return rc == 1 ? 0 : rc;
    }
    char err[256];
    eddy_config_t *cfg = eddy_config_new();
    if (cfg == NULL || (o.endpoint && eddy_config_set(cfg, "endpoint", o.endpoint, err, sizeof err) != 0) ||
        (o.region && eddy_config_set(cfg, "region", o.region, err, sizeof err) != 0)) {
        fprintf(stderr, "eddy put: %s\n", cfg == NULL ? "out of memory" : err);
        eddy_config_free(cfg);
        return 2;
    }
    eddy_client_t *client = eddy_client_new(cfg, err, sizeof err);
    if (client == NULL) {
        fprintf(stderr, "eddy put: %s\n", err);
        return 1;
    }
    eddy_producer_config_t *pcfg = eddy_producer_config_new();
    if (pcfg == NULL || eddy_producer_config_set(pcfg, "aggregation", o.aggregate ? "true" : "false", err, sizeof err) ||
        (o.rate_limit && eddy_producer_config_set(pcfg, "rate_limit", o.rate_limit, err, sizeof err))) {
        fprintf(stderr, "eddy put: %s\n", pcfg == NULL ? "out of memory" : err);
        eddy_producer_config_free(pcfg);
        eddy_client_free(client);
        return 2;
    }
    eddy_producer_t *p = eddy_producer_new(client, pcfg, err, sizeof err);
    if (p == NULL) {
        fprintf(stderr, "eddy put: %s\n", err);
        eddy_client_free(client);
        return 1;
    }
    bool tty = !o.quiet && isatty(STDERR_FILENO);
    progress_t pg = {0};
    clock_gettime(CLOCK_MONOTONIC, &pg.start);
    pg.last = pg.start;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int status = 0;
    int nfiles = argc - optind;
    for (int i = 0; i < (nfiles > 0 ? nfiles : 1) && status == 0; i++) {
        const char *path = nfiles > 0 ? argv[optind + i] : "-";
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "eddy put: cannot open %s: %s\n", path, strerror(errno));
            status = 1;
            break;
        }
        int got;
        while ((got = next_record(f, o.delimited, &buf, &cap, &len)) == 1) {
            char key[257];
            size_t klen = partition_key(&o, buf, len, key);
            int prc = eddy_producer_put(p, o.stream, key, klen, NULL, buf, len, on_done, NULL);
            if (prc != EDDY_OK) {
                fprintf(stderr, "eddy put: a record was not accepted: %s\n", eddy_err_name(prc));
                atomic_fetch_add(&failed_records, 1);
            }
            if (tty) {
                show(p, &pg, false);
            }
        }
        if (got < 0) {
            fprintf(stderr, "eddy put: %s: a truncated or oversized length-delimited record\n", path);
            status = 1;
        }
        if (f != stdin) {
            fclose(f);
        }
    }
    free(buf);
    eddy_producer_flush_sync(p);
    if (tty) {
        show(p, &pg, true);
    }
    eddy_producer_destroy(p);
    eddy_client_free(client);
    if (o.key_mode == KEY_REGEX) {
        regfree(&o.re);
    }
    return status != 0 ? status : atomic_load(&failed_records) > 0 ? 1 : 0;
}
