/*
 * tail: `eddy tail`, which prints a stream's records for humans and follows new ones, through libeddy's
 * client (GetShardIterator, GetRecords) and its aggregation decoder (KPL aggregates are shown as their user
 * records, with the KCL's rules).
 *
 *   eddy tail [--endpoint URL] [--region R] --stream NAME [--from trim-horizon|latest|TIME]
 *             [--format text|base64|json] [--raw] [--exit-at-end] [--limit N]
 *
 * TIME: seconds since the epoch, or YYYY-MM-DDTHH:MM:SSZ. Every shard is read, one GetRecords each per round
 * (one thread); closed shards drop out at their end and new shards (after a reshard) are found by listing
 * the shards again, read from their start. Rounds that find nothing wait POLL_MS, which keeps each shard
 * under its 5 GetRecords calls per second.
 * text: the data as it is, one record per line; base64: the data in base64; json: one object per record
 * {"shard_id","sequence_number","sub_sequence_number","partition_key","arrival","data"} (data in base64).
 */
#include "cli/tail.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base64.h"
#include "common/buf.h"
#include "eddy/agg.h"
#include "eddy/client.h"

#define POLL_MS 250
#define RELIST_MS 5000

typedef struct tail_shard {
    char id[64];
    unsigned char start[16], end[16];
    char *iterator; /* NULL once the shard ended */
    bool caught_up;
} tail_shard_t;

typedef struct tail {
    eddy_client_t *client;
    const char *stream;
    const char *from;
    int64_t from_ts;
    enum { FORMAT_TEXT, FORMAT_BASE64, FORMAT_JSON } format;
    bool raw, exit_at_end;
    long long limit, printed;
    tail_shard_t *shards;
    size_t nshards;
    char current_shard[64];
    const char *current_seq;
    double current_arrival;
} tail_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static cJSON *call(tail_t *t, const char *op, const char *body, char *err, size_t errlen)
{
    eddy_response_t *resp = NULL;
    int rc = eddy_client_call(t->client, op, body, strlen(body), &resp);
    cJSON *j = NULL;
    if (rc == EDDY_OK) {
        j = cJSON_ParseWithLength(resp->body, resp->body_len);
    } else {
        snprintf(err, errlen, "%s: %s%s%s", op, resp != NULL && resp->error_type && resp->error_type[0]
                                                    ? resp->error_type
                                                    : eddy_err_name(rc),
                 resp != NULL && resp->message[0] ? ": " : "", resp != NULL ? resp->message : "");
    }
    eddy_response_free(resp);
    return j;
}

static int visit(void *arg, const eddy_user_record_t *r)
{
    tail_t *t = arg;
    if (t->limit > 0 && t->printed >= t->limit) {
        return 1;
    }
    buf_t line = BUF_INIT;
    switch (t->format) {
    case FORMAT_TEXT:
        buf_append(&line, r->data, r->data_len);
        break;
    case FORMAT_BASE64:
        base64_encode_into(&line, r->data, r->data_len);
        break;
    case FORMAT_JSON: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "shard_id", t->current_shard);
        cJSON_AddStringToObject(o, "sequence_number", t->current_seq);
        cJSON_AddNumberToObject(o, "sub_sequence_number", (double)r->sub_sequence_number);
        char *pk = strndup(r->partition_key, r->partition_key_len);
        cJSON_AddStringToObject(o, "partition_key", pk != NULL ? pk : "");
        free(pk);
        cJSON_AddNumberToObject(o, "arrival", t->current_arrival);
        buf_t data = BUF_INIT;
        base64_encode_into(&data, r->data, r->data_len);
        cJSON_AddStringToObject(o, "data", buf_cstr(&data));
        buf_dispose(&data);
        char *text = cJSON_PrintUnformatted(o);
        buf_puts(&line, text != NULL ? text : "{}");
        free(text);
        cJSON_Delete(o);
        break;
    }
    }
    buf_putc(&line, '\n');
    fwrite(line.data, 1, line.len, stdout);
    buf_dispose(&line);
    t->printed++;
    return 0;
}

/* The iterator a newly found shard starts at: --from for the first listing, TRIM_HORIZON for shards
 * found later (children of a reshard began after the tail started). */
static char *first_iterator(tail_t *t, const char *shard, bool initial, char *err, size_t errlen)
{
    char body[512];
    const char *type = !initial || strcmp(t->from, "trim-horizon") == 0 ? "TRIM_HORIZON"
                       : strcmp(t->from, "latest") == 0               ? "LATEST"
                                                                      : "AT_TIMESTAMP";
    if (strcmp(type, "AT_TIMESTAMP") == 0) {
        snprintf(body, sizeof body,
                 "{\"StreamName\":\"%s\",\"ShardId\":\"%s\",\"ShardIteratorType\":\"AT_TIMESTAMP\",\"Timestamp\":%" PRId64
                 "}",
                 t->stream, shard, t->from_ts);
    } else {
        snprintf(body, sizeof body, "{\"StreamName\":\"%s\",\"ShardId\":\"%s\",\"ShardIteratorType\":\"%s\"}",
                 t->stream, shard, type);
    }
    cJSON *j = call(t, "GetShardIterator", body, err, errlen);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "ShardIterator");
    char *out = cJSON_IsString(it) ? strdup(it->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

/* Lists the shards and adds the ones not known yet. Returns false on an error (said in err). */
static bool list_shards(tail_t *t, bool initial, char *err, size_t errlen)
{
    char body[512];
    snprintf(body, sizeof body, "{\"StreamName\":\"%s\"}", t->stream);
    for (;;) {
        cJSON *j = call(t, "ListShards", body, err, errlen);
        if (j == NULL) {
            return false;
        }
        const cJSON *sh;
        cJSON_ArrayForEach(sh, cJSON_GetObjectItemCaseSensitive(j, "Shards"))
        {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(sh, "ShardId");
            const cJSON *range = cJSON_GetObjectItemCaseSensitive(sh, "HashKeyRange");
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(range, "StartingHashKey");
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(range, "EndingHashKey");
            if (!cJSON_IsString(id) || !cJSON_IsString(a) || !cJSON_IsString(b)) {
                continue;
            }
            bool known = false;
            for (size_t i = 0; i < t->nshards; i++) {
                known |= strcmp(t->shards[i].id, id->valuestring) == 0;
            }
            if (known) {
                continue;
            }
            tail_shard_t *grown = realloc(t->shards, (t->nshards + 1) * sizeof *grown);
            if (grown == NULL) {
                cJSON_Delete(j);
                snprintf(err, errlen, "out of memory");
                return false;
            }
            t->shards = grown;
            tail_shard_t *x = &t->shards[t->nshards];
            memset(x, 0, sizeof *x);
            snprintf(x->id, sizeof x->id, "%s", id->valuestring);
            eddy_hash_key_parse(a->valuestring, strlen(a->valuestring), x->start);
            eddy_hash_key_parse(b->valuestring, strlen(b->valuestring), x->end);
            x->iterator = first_iterator(t, x->id, initial, err, errlen);
            t->nshards++;
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "NextToken");
        if (!cJSON_IsString(next)) {
            cJSON_Delete(j);
            return true;
        }
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "NextToken", next->valuestring);
        char *text = cJSON_PrintUnformatted(b);
        snprintf(body, sizeof body, "%s", text != NULL ? text : "{}");
        free(text);
        cJSON_Delete(b);
        cJSON_Delete(j);
    }
}

/* One GetRecords on a shard. Returns the number of Kinesis records read, or -1 on an error. */
static long read_shard(tail_t *t, tail_shard_t *x, char *err, size_t errlen)
{
    buf_t body = BUF_INIT;
    buf_printf(&body, "{\"ShardIterator\":\"%s\",\"Limit\":10000}", x->iterator);
    cJSON *j = call(t, "GetRecords", buf_cstr(&body), err, errlen);
    buf_dispose(&body);
    if (j == NULL) {
        return strstr(err, "ProvisionedThroughputExceeded") != NULL ? 0 : -1;
    }
    long n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(j, "Records"))
    {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(r, "Data");
        const cJSON *pk = cJSON_GetObjectItemCaseSensitive(r, "PartitionKey");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(r, "SequenceNumber");
        const cJSON *arrival = cJSON_GetObjectItemCaseSensitive(r, "ApproximateArrivalTimestamp");
        if (!cJSON_IsString(data) || !cJSON_IsString(pk) || !cJSON_IsString(seq)) {
            continue;
        }
        size_t len = strlen(data->valuestring);
        unsigned char *bytes = malloc(len / 4 * 3 + 3);
        long got = bytes != NULL ? base64_decode(data->valuestring, len, bytes) : -1;
        if (got >= 0) {
            snprintf(t->current_shard, sizeof t->current_shard, "%s", x->id);
            t->current_seq = seq->valuestring;
            t->current_arrival = cJSON_IsNumber(arrival) ? arrival->valuedouble : 0;
            if (t->raw) {
                eddy_user_record_t u = {.data = bytes, .data_len = (size_t)got, .partition_key = pk->valuestring,
                                        .partition_key_len = strlen(pk->valuestring)};
                visit(t, &u);
            } else {
                eddy_agg_decode(bytes, (size_t)got, pk->valuestring, strlen(pk->valuestring), NULL, x->start, x->end,
                                visit, t);
            }
        }
        free(bytes);
        n++;
    }
    fflush(stdout);
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "NextShardIterator");
    const cJSON *behind = cJSON_GetObjectItemCaseSensitive(j, "MillisBehindLatest");
    free(x->iterator);
    x->iterator = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
    x->caught_up = n == 0 && (!cJSON_IsNumber(behind) || behind->valuedouble == 0);
    cJSON_Delete(j);
    return n;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: eddy tail [--endpoint URL] [--region R] --stream NAME [--from trim-horizon|latest|TIME]\n"
                 "                 [--format text|base64|json] [--raw] [--exit-at-end] [--limit N]\n\n"
                 "Prints the stream's records and follows new ones (Ctrl-C stops). KPL aggregates are shown as\n"
                 "their user records unless --raw. TIME: epoch seconds or YYYY-MM-DDTHH:MM:SSZ (default: latest).\n"
                 "  --exit-at-end   stop once every shard is read to its end or to the tip\n"
                 "  --limit N       stop after N records\n");
}

static bool parse_time(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end != s && *end == '\0') {
        *out = v;
        return true;
    }
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL || (*rest != 'Z' && *rest != '\0') || (*rest == 'Z' && rest[1] != '\0')) {
        return false;
    }
    *out = (int64_t)timegm(&tm);
    return true;
}

int tail_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"region", required_argument, NULL, 'r'},
        {"stream", required_argument, NULL, 's'},   {"from", required_argument, NULL, 'f'},
        {"format", required_argument, NULL, 'o'},   {"raw", no_argument, NULL, 'w'},
        {"exit-at-end", no_argument, NULL, 'x'},    {"limit", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    tail_t t = {.from = "latest"};
    const char *endpoint = NULL, *region = NULL;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e': endpoint = optarg; break;
        case 'r': region = optarg; break;
        case 's': t.stream = optarg; break;
        case 'f': t.from = optarg; break;
        case 'w': t.raw = true; break;
        case 'x': t.exit_at_end = true; break;
        case 'n': t.limit = atoll(optarg); break;
        case 'o':
            if (strcmp(optarg, "text") == 0) {
                t.format = FORMAT_TEXT;
            } else if (strcmp(optarg, "base64") == 0) {
                t.format = FORMAT_BASE64;
            } else if (strcmp(optarg, "json") == 0) {
                t.format = FORMAT_JSON;
            } else {
                fprintf(stderr, "eddy tail: --format: text, base64 or json\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (t.stream == NULL || strlen(t.stream) > 128 || strchr(t.stream, '"') != NULL) {
        fprintf(stderr, "eddy tail: --stream NAME is required\n");
        return 2;
    }
    if (strcmp(t.from, "trim-horizon") != 0 && strcmp(t.from, "latest") != 0 && !parse_time(t.from, &t.from_ts)) {
        fprintf(stderr, "eddy tail: --from: trim-horizon, latest, epoch seconds or YYYY-MM-DDTHH:MM:SSZ\n");
        return 2;
    }
    char err[512];
    eddy_config_t *cfg = eddy_config_new();
    if (cfg == NULL || (endpoint && eddy_config_set(cfg, "endpoint", endpoint, err, sizeof err) != 0) ||
        (region && eddy_config_set(cfg, "region", region, err, sizeof err) != 0)) {
        fprintf(stderr, "eddy tail: %s\n", cfg == NULL ? "out of memory" : err);
        eddy_config_free(cfg);
        return 2;
    }
    t.client = eddy_client_new(cfg, err, sizeof err);
    if (t.client == NULL) {
        fprintf(stderr, "eddy tail: %s\n", err);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int status = 0;
    if (!list_shards(&t, true, err, sizeof err)) {
        fprintf(stderr, "eddy tail: %s\n", err);
        status = 1;
    }
    int64_t listed = monotonic_ms();
    while (status == 0 && !interrupted && (t.limit <= 0 || t.printed < t.limit)) {
        long got = 0;
        bool all_done = true;
        for (size_t i = 0; i < t.nshards && status == 0; i++) {
            tail_shard_t *x = &t.shards[i];
            if (x->iterator == NULL) {
                continue;
            }
            long n = read_shard(&t, x, err, sizeof err);
            if (n < 0) {
                fprintf(stderr, "eddy tail: %s\n", err);
                status = 1;
                break;
            }
            got += n;
            all_done &= x->iterator == NULL || x->caught_up;
        }
        if (status != 0 || (t.limit > 0 && t.printed >= t.limit)) {
            break;
        }
        if (got == 0 && monotonic_ms() - listed >= RELIST_MS) {
            size_t before = t.nshards;
            if (list_shards(&t, false, err, sizeof err)) {
                all_done &= t.nshards == before;
            }
            listed = monotonic_ms();
        }
        if (t.exit_at_end && all_done && got == 0) {
            break;
        }
        if (got == 0) {
            struct timespec ts = {0, POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    for (size_t i = 0; i < t.nshards; i++) {
        free(t.shards[i].iterator);
    }
    free(t.shards);
    eddy_client_free(t.client);
    return status;
}
