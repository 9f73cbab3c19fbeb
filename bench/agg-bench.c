/*
 * agg-bench: the cost per user record of libeddy's aggregation codec (include/eddy/agg.h).
 *
 *   agg-bench [records] [data bytes] [aggregate max bytes]      (defaults: 2000000 100 51200)
 *
 * Encodes that many user records (random 16-character partition keys, random data) into aggregates of at
 * most the given size, as a producer does (add until EDDY_ERR_TOO_LARGE, encode, reset), then decodes every
 * aggregate, without and with a shard range. Prints nanoseconds per user record for adding, encoding
 * (of which MD5 over the protobuf, measured apart, is the floor), decoding, and MB/s of aggregate bytes.
 * One thread; the records are made before the clock starts.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/md5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy/agg.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct blob {
    unsigned char *data;
    size_t len;
    size_t count;
} blob_t;

static int count_visit(void *arg, const eddy_user_record_t *r)
{
    size_t *bytes = arg;
    *bytes += r->data_len + r->partition_key_len + r->hash_key[0];
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    size_t data_len = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    size_t max_bytes = argc > 3 ? strtoul(argv[3], NULL, 10) : EDDY_AGG_DEFAULT_MAX_BYTES;
    enum { PK_LEN = 16 };

    char *pks = malloc(n * PK_LEN);
    unsigned char *data = malloc(n * data_len + 1);
    blob_t *blobs = calloc(n, sizeof *blobs);
    eddy_agg_t *a = eddy_agg_new(max_bytes, 0);
    if (pks == NULL || data == NULL || blobs == NULL || a == NULL) {
        fprintf(stderr, "agg-bench: out of memory\n");
        return 1;
    }
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t i = 0; i < n * PK_LEN; i++) {
        pks[i] = alphabet[next() % 62];
    }
    for (size_t i = 0; i < n * data_len; i++) {
        data[i] = (unsigned char)next();
    }

    /* Encoding: add until full, encode, reset. */
    size_t nblobs = 0;
    double add_ns = 0, encode_ns = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        double t = now_ns();
        int rc = eddy_agg_add(a, pks + i * PK_LEN, PK_LEN, NULL, data + i * data_len, data_len);
        if (rc == EDDY_ERR_TOO_LARGE) {
            double e = now_ns();
            add_ns += e - t;
            blob_t *b = &blobs[nblobs++];
            b->data = malloc(eddy_agg_size(a));
            b->count = eddy_agg_count(a);
            b->len = eddy_agg_encode(a, b->data);
            eddy_agg_reset(a);
            t = now_ns();
            encode_ns += t - e;
            rc = eddy_agg_add(a, pks + i * PK_LEN, PK_LEN, NULL, data + i * data_len, data_len);
        }
        if (rc != 0) {
            fprintf(stderr, "agg-bench: eddy_agg_add: %d\n", rc);
            return 1;
        }
        add_ns += now_ns() - t;
    }
    if (eddy_agg_count(a) > 0) {
        double e = now_ns();
        blob_t *b = &blobs[nblobs++];
        b->data = malloc(eddy_agg_size(a));
        b->count = eddy_agg_count(a);
        b->len = eddy_agg_encode(a, b->data);
        encode_ns += now_ns() - e;
    }
    double total_ns = now_ns() - t0;
    /* The clock reads (2 per record) are in add_ns; the loop without them is total_ns minus its share. */

    /* MD5 over the protobufs alone: the floor of encoding and of decoding. */
    size_t blob_bytes = 0;
    double t = now_ns();
    for (size_t i = 0; i < nblobs; i++) {
        unsigned char digest[16];
        MD5(blobs[i].data + 4, blobs[i].len - 20, digest);
        blob_bytes += blobs[i].len;
    }
    double md5_ns = now_ns() - t;

    /* Plain add + encode with no clock reads inside, for the headline figure. */
    eddy_agg_reset(a);
    unsigned char *out = malloc(max_bytes > 1 << 20 ? max_bytes : 1 << 20);
    t = now_ns();
    for (size_t i = 0; i < n; i++) {
        int rc = eddy_agg_add(a, pks + i * PK_LEN, PK_LEN, NULL, data + i * data_len, data_len);
        if (rc == EDDY_ERR_TOO_LARGE) {
            eddy_agg_encode(a, out);
            eddy_agg_reset(a);
            rc = eddy_agg_add(a, pks + i * PK_LEN, PK_LEN, NULL, data + i * data_len, data_len);
        }
        (void)rc;
    }
    eddy_agg_encode(a, out);
    double plain_ns = now_ns() - t;

    /* Decoding. */
    size_t sink = 0;
    t = now_ns();
    for (size_t i = 0; i < nblobs; i++) {
        if (eddy_agg_decode(blobs[i].data, blobs[i].len, "a", 1, NULL, NULL, NULL, count_visit, &sink) != 0) {
            fprintf(stderr, "agg-bench: decode failed\n");
            return 1;
        }
    }
    double decode_ns = now_ns() - t;
    unsigned char start[16] = {0}, end[16];
    memset(end, 0xFF, sizeof end);
    t = now_ns();
    for (size_t i = 0; i < nblobs; i++) {
        eddy_agg_decode(blobs[i].data, blobs[i].len, "a", 1, NULL, start, end, count_visit, &sink);
    }
    double decode_range_ns = now_ns() - t;

    printf("agg-bench: %zu user records of %zu B, %d-char keys, into %zu aggregates of <= %zu B "
           "(%.0f records each, %.1f MB)\n",
           n, data_len, PK_LEN, nblobs, max_bytes, (double)n / (double)nblobs, (double)blob_bytes / 1e6);
    printf("  add + encode        %7.1f ns/record  (%.2f M records/s, one thread)\n", plain_ns / (double)n,
           (double)n / plain_ns * 1e3);
    printf("    add               %7.1f ns/record  (timed per call: includes ~2 clock reads)\n",
           add_ns / (double)n);
    printf("    encode            %7.1f ns/record  (%.1f us per aggregate)\n", encode_ns / (double)n,
           encode_ns / (double)nblobs / 1e3);
    printf("    of which MD5      %7.1f ns/record  (%.0f MB/s)\n", md5_ns / (double)n,
           (double)blob_bytes / md5_ns * 1e3);
    printf("  decode              %7.1f ns/record  (%.0f MB/s of aggregates)\n", decode_ns / (double)n,
           (double)blob_bytes / decode_ns * 1e3);
    printf("  decode, shard range %7.1f ns/record\n", decode_range_ns / (double)n);
    printf("  (first pass with clock reads: %.1f ns/record; checksum %zu)\n", total_ns / (double)n,
           sink % 10);

    for (size_t i = 0; i < nblobs; i++) {
        free(blobs[i].data);
    }
    free(out);
    free(blobs);
    free(pks);
    free(data);
    eddy_agg_free(a);
    return 0;
}
