/*
 * fuzz_agg_decode: eddy_agg_decode (libeddy, src/client/agg.c) on arbitrary Kinesis record data, as a
 * consumer de-aggregating what it reads would, with and without a shard range.
 *
 * Input: a mode byte, then (mode bit 1) 32 bytes of shard range (start, end), then the record data.
 *   bit 0  "reseal": the data gets the magic and a right MD5 (when it is long enough to hold them), so that
 *          mutations reach protobuf-c and the KCL rules behind the checksum
 *   bit 1  a shard range is given
 * Seeds (fuzz/corpus/fuzz_agg_decode/): the aggregates of tests/data/aggregation_vectors.json behind mode
 * bytes 0 and 2 (with the range of a vector's records, or one that cuts them), and a few hand-made ones.
 *
 * Invariants (abort on violation): the result is 0 or EDDY_AGG_DROPPED, never EDDY_ERR_NOMEM (the decoder's
 * memory bound is a multiple of the input that real input never reaches); a record that is not an aggregate
 * comes back whole, once, with sub-sequence 0; the records of an aggregate come with sub-sequence numbers
 * 0, 1, 2, ..., and each one's hash key is its explicit hash key's value, or MD5 of its partition key; with
 * a range, every record is inside it, and a drop visits nothing; without one, a drop means an explicit hash
 * key outside 0 .. 2^128-1; a visit that returns nonzero stops the decode, which returns that value. Round
 * trip: when every record has keys that eddy_agg_add takes, encoding them again with eddy_agg gives exactly
 * eddy_agg_size bytes, which decode to the same records.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/md5.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/agg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                     \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#define MAX_RECORDS 4096

/* A visited record, copied (views are valid during the visit only). */
typedef struct copy {
    unsigned char *data;
    size_t data_len;
    char *pk;
    size_t pk_len;
    char *ehk; /* NUL-terminated, or NULL */
    unsigned char hash_key[16];
    uint64_t sub;
    bool aggregated;
} copy_t;

typedef struct visits {
    copy_t recs[MAX_RECORDS];
    size_t n;
    bool overflow;
    size_t stop_at; /* return nonzero at this visit (1-based); 0: never */
    const unsigned char *start, *end;
} visits_t;

static void *dup_bytes(const void *p, size_t n)
{
    unsigned char *q = malloc(n + 1);
    CHECK(q != NULL);
    if (n > 0) {
        memcpy(q, p, n);
    }
    q[n] = 0;
    return q;
}

static bool java_value(const char *s, size_t n, unsigned char out[16], bool *in_range)
{
    /* The decoder reads explicit hash keys as java.math.BigInteger does: [+-]?[0-9]+. */
    bool negative = false;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        s++;
        n--;
    }
    while (n > 1 && s[0] == '0') {
        s++;
        n--;
    }
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    *in_range = eddy_hash_key_parse(s, n, out) && !(negative && !(n == 1 && s[0] == '0'));
    return true;
}

static int visit(void *arg, const eddy_user_record_t *r)
{
    visits_t *v = arg;
    CHECK(r->data != NULL || r->data_len == 0);
    CHECK(r->partition_key != NULL || r->partition_key_len == 0);
    CHECK(r->explicit_hash_key != NULL || r->explicit_hash_key_len == 0);
    if (r->aggregated) {
        CHECK(r->sub_sequence_number == v->n);
        unsigned char key[16];
        if (r->explicit_hash_key != NULL) {
            bool in_range = false;
            CHECK(java_value(r->explicit_hash_key, r->explicit_hash_key_len, key, &in_range));
            CHECK(in_range);
        } else {
            MD5((const unsigned char *)r->partition_key, r->partition_key_len, key);
        }
        CHECK(memcmp(key, r->hash_key, 16) == 0);
        CHECK(v->start == NULL || memcmp(r->hash_key, v->start, 16) >= 0);
        CHECK(v->end == NULL || memcmp(r->hash_key, v->end, 16) <= 0);
    } else {
        CHECK(v->n == 0);
        CHECK(r->sub_sequence_number == 0);
    }
    if (v->n == MAX_RECORDS) {
        v->overflow = true;
    } else {
        copy_t *c = &v->recs[v->n];
        c->data = dup_bytes(r->data, r->data_len);
        c->data_len = r->data_len;
        c->pk = dup_bytes(r->partition_key, r->partition_key_len);
        c->pk_len = r->partition_key_len;
        c->ehk =
            r->explicit_hash_key != NULL ? dup_bytes(r->explicit_hash_key, r->explicit_hash_key_len) : NULL;
        memcpy(c->hash_key, r->hash_key, 16);
        c->sub = r->sub_sequence_number;
        c->aggregated = r->aggregated;
    }
    v->n++;
    return v->stop_at != 0 && v->n == v->stop_at ? 7 : 0;
}

static void release(visits_t *v)
{
    size_t n = v->n < MAX_RECORDS ? v->n : MAX_RECORDS;
    for (size_t i = 0; i < n; i++) {
        free(v->recs[i].data);
        free(v->recs[i].pk);
        free(v->recs[i].ehk);
    }
    v->n = 0;
    v->overflow = false;
}

/* Re-encodes what was decoded and checks that it decodes the same, when eddy_agg_add takes every key
 * (1..256 characters of valid UTF-8, canonical explicit hash keys). */
static void round_trip(const visits_t *v)
{
    if (v->n == 0 || v->overflow || !v->recs[0].aggregated) {
        return;
    }
    eddy_agg_t *a = eddy_agg_new(SIZE_MAX, 0);
    CHECK(a != NULL);
    for (size_t i = 0; i < v->n; i++) {
        const copy_t *c = &v->recs[i];
        int rc = eddy_agg_add(a, c->pk, c->pk_len, c->ehk, c->data, c->data_len);
        if (rc == EDDY_ERR_INVALID) {
            eddy_agg_free(a);
            return;
        }
        CHECK(rc == 0);
    }
    size_t size = eddy_agg_size(a);
    unsigned char *blob = malloc(size);
    CHECK(blob != NULL);
    CHECK(eddy_agg_encode(a, blob) == size);
    static visits_t again;
    int rc = eddy_agg_decode(blob, size, "a", 1, NULL, NULL, NULL, visit, &again);
    CHECK(rc == 0);
    CHECK(again.n == v->n);
    for (size_t i = 0; i < v->n; i++) {
        const copy_t *x = &v->recs[i], *y = &again.recs[i];
        CHECK(y->aggregated && y->sub == i);
        CHECK(x->data_len == y->data_len && memcmp(x->data, y->data, x->data_len) == 0);
        CHECK(x->pk_len == y->pk_len && memcmp(x->pk, y->pk, x->pk_len) == 0);
        CHECK((x->ehk == NULL) == (y->ehk == NULL));
        CHECK(x->ehk == NULL || strcmp(x->ehk, y->ehk) == 0);
        CHECK(memcmp(x->hash_key, y->hash_key, 16) == 0);
    }
    release(&again);
    free(blob);
    eddy_agg_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0];
    data++;
    size--;
    unsigned char range[32];
    const unsigned char *start = NULL, *end = NULL;
    if (mode & 2) {
        if (size < 32) {
            return 0;
        }
        memcpy(range, data, 32);
        start = range;
        end = range + 16;
        data += 32;
        size -= 32;
    }
    /* An exact-size copy, so that ASan sees any read past the end. */
    unsigned char *copy = malloc(size > 0 ? size : 1);
    CHECK(copy != NULL);
    if (size > 0) {
        memcpy(copy, data, size);
    }
    if ((mode & 1) && size >= 21) {
        static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
        memcpy(copy, magic, 4);
        MD5(copy + 4, size - 20, copy + size - 16);
    }

    static visits_t v;
    v.start = start;
    v.end = end;
    v.stop_at = 0;
    int rc = eddy_agg_decode(copy, size, "outer-pk", 8, NULL, start, end, visit, &v);
    CHECK(rc == 0 || rc == EDDY_AGG_DROPPED);
    if (rc == EDDY_AGG_DROPPED) {
        CHECK(v.n == 0);
        if (start == NULL) {
            /* Only an explicit hash key outside 0 .. 2^128-1 drops an aggregate when no range is given. */
            CHECK(size >= 21);
        }
    } else if (v.n > 0 && !v.recs[0].aggregated) {
        CHECK(v.n == 1);
        CHECK(v.recs[0].data_len == size && memcmp(v.recs[0].data, copy, size) == 0);
        CHECK(v.recs[0].pk_len == 8 && memcmp(v.recs[0].pk, "outer-pk", 8) == 0);
    }
    size_t visited = v.n;
    round_trip(&v);
    release(&v);

    /* A visit that says stop, stops. */
    if (rc == 0 && visited > 0) {
        v.stop_at = visited > 1 ? visited / 2 : 1;
        size_t want = v.stop_at;
        CHECK(eddy_agg_decode(copy, size, "outer-pk", 8, NULL, start, end, visit, &v) == 7);
        CHECK(v.n == want);
        release(&v);
    }
    free(copy);
    return 0;
}
