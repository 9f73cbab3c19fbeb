/*
 * agg_tool: libeddy's aggregation codec on the command line, for the interoperability tests
 * (tests/integration/js/agg_interop.test.mjs).
 *
 *   agg_tool encode [--max-bytes N] [--max-count N]
 *       stdin:  JSON lines {"pk": "...", "ehk": "..." or null or absent, "data": base64}
 *       stdout: one JSON line per aggregate: {"data": base64 blob, "partitionKey": "a",
 *               "explicitHashKey": "...", "count": user records, "size": bytes}
 *               (a new aggregate starts when the next record does not fit, as a producer would do)
 *   agg_tool decode [--pk PK] [--ehk EHK] [--shard START END]
 *       stdin:  lines of base64 Kinesis record data; --pk/--ehk: the Kinesis record's keys; --shard: the
 *               consuming shard's hash key range (decimal)
 *       stdout: one JSON line per input line: {"result": 0 or 1 (dropped), "records": [{"partitionKey",
 *               "explicitHashKey" (or null), "hashKey" (decimal), "subSequenceNumber", "aggregated",
 *               "data" (base64)}]}
 *
 * Exit status 0, or 1 with a message on stderr for bad input.
 */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/agg.h"

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "agg_tool: %s\n", what);
    exit(1);
}

/* Decodes strict base64; returns the length, or -1. out: at least len / 4 * 3 bytes. */
static long unbase64(const char *s, size_t len, unsigned char *out)
{
    if (len % 4 != 0) {
        return -1;
    }
    if (len == 0) {
        return 0;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0) {
        return -1;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (s[len - 1] == '=') {
        n--;
        if (s[len - 2] == '=') {
            n--;
        }
    }
    return n;
}

static char *base64(const unsigned char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out == NULL) {
        die("out of memory");
    }
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

static char *read_line(FILE *f, size_t *len)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) {
        line[--n] = '\0';
    }
    *len = (size_t)n;
    return line;
}

static void print_json(cJSON *o)
{
    char *text = cJSON_PrintUnformatted(o);
    if (text == NULL) {
        die("out of memory");
    }
    puts(text);
    free(text);
    cJSON_Delete(o);
}

static void flush_aggregate(eddy_agg_t *a)
{
    if (eddy_agg_count(a) == 0) {
        return;
    }
    unsigned char *blob = malloc(eddy_agg_size(a));
    if (blob == NULL) {
        die("out of memory");
    }
    size_t len = eddy_agg_encode(a, blob);
    if (len != eddy_agg_size(a)) {
        die("encoded size differs from eddy_agg_size");
    }
    const char *pk;
    char ehk[EDDY_HASH_KEY_STR_MAX];
    eddy_agg_outer_key(a, &pk, ehk);
    cJSON *o = cJSON_CreateObject();
    char *data = base64(blob, len);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddStringToObject(o, "partitionKey", pk);
    cJSON_AddStringToObject(o, "explicitHashKey", ehk);
    cJSON_AddNumberToObject(o, "count", (double)eddy_agg_count(a));
    cJSON_AddNumberToObject(o, "size", (double)len);
    print_json(o);
    free(data);
    free(blob);
    eddy_agg_reset(a);
}

static int encode(size_t max_bytes, size_t max_count)
{
    eddy_agg_t *a = eddy_agg_new(max_bytes, max_count);
    if (a == NULL) {
        die("out of memory");
    }
    char *line;
    size_t len;
    while ((line = read_line(stdin, &len)) != NULL) {
        if (len == 0) {
            free(line);
            continue;
        }
        cJSON *r = cJSON_Parse(line);
        const cJSON *pk = cJSON_GetObjectItemCaseSensitive(r, "pk");
        const cJSON *ehk = cJSON_GetObjectItemCaseSensitive(r, "ehk");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(r, "data");
        if (!cJSON_IsString(pk) || !cJSON_IsString(data) ||
            (ehk != NULL && !cJSON_IsString(ehk) && !cJSON_IsNull(ehk))) {
            die("each line must be {\"pk\": string, \"ehk\": string or null, \"data\": base64}");
        }
        size_t b64_len = strlen(data->valuestring);
        unsigned char *bytes = malloc(b64_len / 4 * 3 + 1);
        long n = bytes != NULL ? unbase64(data->valuestring, b64_len, bytes) : -1;
        if (n < 0) {
            die("data is not base64");
        }
        const char *ehk_text = cJSON_IsString(ehk) ? ehk->valuestring : NULL;
        int rc = eddy_agg_add(a, pk->valuestring, strlen(pk->valuestring), ehk_text, bytes, (size_t)n);
        if (rc == EDDY_ERR_TOO_LARGE) {
            flush_aggregate(a);
            rc = eddy_agg_add(a, pk->valuestring, strlen(pk->valuestring), ehk_text, bytes, (size_t)n);
        }
        if (rc != 0) {
            fprintf(stderr, "agg_tool: eddy_agg_add: %d\n", rc);
            return 1;
        }
        free(bytes);
        cJSON_Delete(r);
        free(line);
    }
    flush_aggregate(a);
    eddy_agg_free(a);
    return 0;
}

static char *text_of(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL) {
        die("out of memory");
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int add_record(void *arg, const eddy_user_record_t *r)
{
    cJSON *records = arg;
    cJSON *o = cJSON_CreateObject();
    char *pk = text_of(r->partition_key, r->partition_key_len);
    cJSON_AddStringToObject(o, "partitionKey", pk);
    free(pk);
    if (r->explicit_hash_key != NULL) {
        char *ehk = text_of(r->explicit_hash_key, r->explicit_hash_key_len);
        cJSON_AddStringToObject(o, "explicitHashKey", ehk);
        free(ehk);
    } else {
        cJSON_AddNullToObject(o, "explicitHashKey");
    }
    char key[EDDY_HASH_KEY_STR_MAX];
    eddy_hash_key_format(r->hash_key, key);
    cJSON_AddStringToObject(o, "hashKey", key);
    cJSON_AddNumberToObject(o, "subSequenceNumber", (double)r->sub_sequence_number);
    cJSON_AddBoolToObject(o, "aggregated", r->aggregated);
    char *data = base64(r->data, r->data_len);
    cJSON_AddStringToObject(o, "data", data);
    free(data);
    cJSON_AddItemToArray(records, o);
    return 0;
}

static int decode(const char *pk, const char *ehk, const unsigned char *start, const unsigned char *end)
{
    char *line;
    size_t len;
    while ((line = read_line(stdin, &len)) != NULL) {
        unsigned char *blob = malloc(len / 4 * 3 + 1);
        long n = blob != NULL ? unbase64(line, len, blob) : -1;
        if (n < 0) {
            die("input is not base64");
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *records = cJSON_CreateArray();
        int rc = eddy_agg_decode(blob, (size_t)n, pk, strlen(pk), ehk, start, end, add_record, records);
        cJSON_AddNumberToObject(o, "result", rc);
        cJSON_AddItemToObject(o, "records", records);
        print_json(o);
        free(blob);
        free(line);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        die("usage: agg_tool encode [--max-bytes N] [--max-count N] | decode [--pk PK] [--ehk EHK] "
            "[--shard START END]");
    }
    if (strcmp(argv[1], "encode") == 0) {
        size_t max_bytes = 0, max_count = 0;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--max-bytes") == 0 && i + 1 < argc) {
                max_bytes = strtoul(argv[++i], NULL, 10);
            } else if (strcmp(argv[i], "--max-count") == 0 && i + 1 < argc) {
                max_count = strtoul(argv[++i], NULL, 10);
            } else {
                die("unknown option");
            }
        }
        return encode(max_bytes, max_count);
    }
    if (strcmp(argv[1], "decode") == 0) {
        const char *pk = "";
        const char *ehk = NULL;
        unsigned char start[16], end[16];
        bool shard = false;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--pk") == 0 && i + 1 < argc) {
                pk = argv[++i];
            } else if (strcmp(argv[i], "--ehk") == 0 && i + 1 < argc) {
                ehk = argv[++i];
            } else if (strcmp(argv[i], "--shard") == 0 && i + 2 < argc) {
                if (!eddy_hash_key_parse(argv[i + 1], strlen(argv[i + 1]), start) ||
                    !eddy_hash_key_parse(argv[i + 2], strlen(argv[i + 2]), end)) {
                    die("--shard wants two decimal hash keys");
                }
                shard = true;
                i += 2;
            } else {
                die("unknown option");
            }
        }
        return decode(pk, ehk, shard ? start : NULL, shard ? end : NULL);
    }
    die("the first argument is encode or decode");
}
