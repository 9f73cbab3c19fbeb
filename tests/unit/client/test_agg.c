/*
 * Unit tests for the aggregation codec (include/eddy/agg.h, src/client/agg.c): the golden vectors of the
 * spec (tests/data/aggregation_vectors.json, made with aws-kinesis-agg and checked against KCL semantics),
 * the KCL's de-aggregation rules on hand-made aggregates, random round trips with exact size accounting,
 * the size and count limits, and hash key text.
 *
 * The vectors were made by aws-kinesis-agg, which de-duplicates both key tables in first-seen order and
 * writes fields in number order, as the KPL does and as we do: encoding their user records must give their
 * bytes exactly. Random aggregates are also checked against protobuf-c: unpacking ours and packing it again
 * gives the same bytes (our hand-written encoding is the canonical one).
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/agg.h"
#include "kpl_aggregated.pb-c.h"

#ifndef EDDY_TEST_DATA
#error "EDDY_TEST_DATA: the folder of aggregation_vectors.json"
#endif

static const char *const HASH_MAX = "340282366920938463463374607431768211455";

/* ---- helpers ---- */

static size_t unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    return n;
}

static void md5_of(const void *p, size_t n, unsigned char out[16])
{
    unsigned int len = 0;
    cr_assert_eq(EVP_Digest(p, n, out, &len, EVP_md5(), NULL), 1);
}

/* Magic + protobuf + MD5 of the protobuf. out: n + 20 bytes. */
static size_t seal(const unsigned char *proto, size_t n, unsigned char *out)
{
    static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
    memcpy(out, magic, 4);
    memcpy(out + 4, proto, n);
    md5_of(proto, n, out + 4 + n);
    return n + 20;
}

static const char *key_text(const unsigned char key[16])
{
    static char text[EDDY_HASH_KEY_STR_MAX];
    eddy_hash_key_format(key, text);
    return text;
}

static cJSON *vectors(void)
{
    static cJSON *doc;
    if (doc == NULL) {
        FILE *f = fopen(EDDY_TEST_DATA "/aggregation_vectors.json", "rb");
        cr_assert_not_null(f, "cannot open %s", EDDY_TEST_DATA "/aggregation_vectors.json");
        static char text[1 << 16];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        doc = cJSON_Parse(text);
        cr_assert_not_null(doc);
    }
    return doc;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The user records a decode visited, copied. */
typedef struct seen_record {
    unsigned char data[4096];
    size_t data_len;
    char pk[1100];
    size_t pk_len;
    char ehk[64];
    bool has_ehk;
    unsigned char hash_key[16];
    uint64_t sub;
    bool aggregated;
} seen_record_t;

typedef struct seen {
    seen_record_t recs[600];
    size_t n;
    size_t stop_after; /* 0: never */
} seen_t;

static int collect(void *arg, const eddy_user_record_t *r)
{
    seen_t *s = arg;
    cr_assert_lt(s->n, sizeof s->recs / sizeof s->recs[0]);
    seen_record_t *c = &s->recs[s->n++];
    cr_assert_not_null(r->data);
    cr_assert_not_null(r->partition_key);
    cr_assert_leq(r->data_len, sizeof c->data);
    memcpy(c->data, r->data, r->data_len);
    c->data_len = r->data_len;
    cr_assert_lt(r->partition_key_len, sizeof c->pk);
    memcpy(c->pk, r->partition_key, r->partition_key_len);
    c->pk[r->partition_key_len] = '\0';
    c->pk_len = r->partition_key_len;
    c->has_ehk = r->explicit_hash_key != NULL;
    if (c->has_ehk) {
        cr_assert_lt(r->explicit_hash_key_len, sizeof c->ehk);
        memcpy(c->ehk, r->explicit_hash_key, r->explicit_hash_key_len);
        c->ehk[r->explicit_hash_key_len] = '\0';
    }
    memcpy(c->hash_key, r->hash_key, 16);
    c->sub = r->sub_sequence_number;
    c->aggregated = r->aggregated;
    return s->stop_after != 0 && s->n == s->stop_after ? 42 : 0;
}

static seen_t *decode(const unsigned char *blob, size_t len, const char *outer_pk, const unsigned char *start,
                      const unsigned char *end, int *rc)
{
    static seen_t s;
    memset(&s, 0, sizeof s);
    *rc = eddy_agg_decode(blob, len, outer_pk, outer_pk != NULL ? strlen(outer_pk) : 0, NULL, start, end,
                          collect, &s);
    return &s;
}

static void key_of(const char *decimal, unsigned char out[16])
{
    cr_assert(eddy_hash_key_parse(decimal, strlen(decimal), out), "%s", decimal);
}

/* ---- golden vectors ---- */

Test(agg_vectors, decode_to_the_kcl_user_records)
{
    const cJSON *v;
    int checked = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(vectors(), "vectors"))
    {
        const char *name = str(v, "name");
        unsigned char blob[1024];
        size_t len = unhex(str(v, "aggregated_hex"), blob);
        cr_assert_eq(len, (size_t)cJSON_GetObjectItemCaseSensitive(v, "aggregated_len")->valueint, "%s",
                     name);
        int rc;
        seen_t *s =
            decode(blob, len, str(v, "outer_partition_key_chosen_by_aws_kinesis_agg"), NULL, NULL, &rc);
        cr_assert_eq(rc, 0, "%s", name);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(v, "expected_kcl_user_records");
        cr_assert_eq(s->n, (size_t)cJSON_GetArraySize(want), "%s", name);
        for (size_t i = 0; i < s->n; i++) {
            const cJSON *w = cJSON_GetArrayItem(want, (int)i);
            const seen_record_t *r = &s->recs[i];
            cr_assert_eq(r->sub,
                         (uint64_t)cJSON_GetObjectItemCaseSensitive(w, "subSequenceNumber")->valueint);
            cr_assert(r->aggregated);
            cr_assert_str_eq(r->pk, str(w, "partition_key"), "%s #%zu", name, i);
            const char *ehk = str(w, "explicit_hash_key");
            cr_assert_eq(r->has_ehk, ehk != NULL, "%s #%zu: explicit hash key present", name, i);
            if (ehk != NULL) {
                cr_assert_str_eq(r->ehk, ehk);
            }
            cr_assert_str_eq(key_text(r->hash_key), str(w, "effective_hash_key_decimal"), "%s #%zu", name, i);
            unsigned char data[256];
            size_t n = unhex(str(w, "data_hex"), data);
            cr_assert_eq(r->data_len, n);
            cr_assert_arr_eq(r->data, data, n);
            checked++;
        }
    }
    cr_assert_eq(checked, 9);
}

static eddy_agg_t *aggregate_of(const cJSON *user_records)
{
    eddy_agg_t *a = eddy_agg_new(0, 0);
    cr_assert_not_null(a);
    const cJSON *u;
    cJSON_ArrayForEach(u, user_records)
    {
        unsigned char data[256];
        size_t n = unhex(str(u, "data_hex"), data);
        const char *pk = str(u, "partition_key");
        cr_assert_eq(eddy_agg_add(a, pk, strlen(pk), str(u, "explicit_hash_key"), data, n), 0);
    }
    return a;
}

Test(agg_vectors, encode_to_the_same_bytes)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(vectors(), "vectors"))
    {
        const char *name = str(v, "name");
        const cJSON *users = cJSON_GetObjectItemCaseSensitive(v, "user_records");
        eddy_agg_t *a = aggregate_of(users);
        cr_assert_eq(eddy_agg_count(a), (size_t)cJSON_GetArraySize(users));
        unsigned char want[1024];
        size_t want_len = unhex(str(v, "aggregated_hex"), want);
        cr_assert_eq(eddy_agg_size(a), want_len, "%s: size %zu", name, eddy_agg_size(a));
        unsigned char got[1024];
        cr_assert_eq(eddy_agg_encode(a, got), want_len);
        cr_assert_arr_eq(got, want, want_len, "%s: bytes differ", name);
        eddy_agg_free(a);
    }
}

Test(agg_vectors, outer_key_is_the_kpl_one)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(vectors(), "vectors"))
    {
        const char *name = str(v, "name");
        const cJSON *users = cJSON_GetObjectItemCaseSensitive(v, "user_records");
        eddy_agg_t *a = aggregate_of(users);
        const char *pk = NULL;
        char ehk[EDDY_HASH_KEY_STR_MAX];
        eddy_agg_outer_key(a, &pk, ehk);
        cr_assert_str_eq(pk, "a");
        const cJSON *kpl = cJSON_GetObjectItemCaseSensitive(v, "kpl_outer_record_if_produced_by_KPL");
        /* The KPL sends a lone record un-aggregated under its own key, but with the same hash key. */
        if (cJSON_GetArraySize(users) > 1) {
            cr_assert_str_eq(str(kpl, "PartitionKey"), "a");
        }
        cr_assert_str_eq(ehk, str(kpl, "ExplicitHashKey"), "%s", name);
        eddy_agg_free(a);
    }
}

Test(agg_vectors, negatives_pass_through)
{
    const cJSON *neg = cJSON_GetObjectItemCaseSensitive(vectors(), "negative");
    cr_assert_eq(cJSON_GetArraySize(neg), 2);
    const cJSON *v;
    cJSON_ArrayForEach(v, neg)
    {
        const char *name = str(v, "name");
        const char *hex = str(v, "aggregated_hex") != NULL ? str(v, "aggregated_hex") : str(v, "data_hex");
        unsigned char blob[1024];
        size_t len = unhex(hex, blob);
        int rc;
        seen_t *s = decode(blob, len, "plain-pk", NULL, NULL, &rc);
        cr_assert_eq(rc, 0, "%s", name);
        cr_assert_eq(s->n, 1, "%s", name);
        cr_assert_not(s->recs[0].aggregated);
        cr_assert_eq(s->recs[0].sub, 0);
        cr_assert_eq(s->recs[0].data_len, len);
        cr_assert_arr_eq(s->recs[0].data, blob, len);
        cr_assert_str_eq(s->recs[0].pk, "plain-pk");
        cr_assert_not(s->recs[0].has_ehk);
        unsigned char key[16];
        eddy_hash_key("plain-pk", 8, key);
        cr_assert_arr_eq(s->recs[0].hash_key, key, 16);
    }
}

/* ---- the shard filter ---- */

Test(agg_decode, shard_filter_keeps_or_drops_the_whole_aggregate)
{
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(vectors(), "vectors"), 0);
    cr_assert_str_eq(str(v, "name"), "two_records_distinct_pks");
    unsigned char blob[256];
    size_t len = unhex(str(v, "aggregated_hex"), blob);
    /* Record 0: 273922656776327812788301823748127981641, record 1: 312950817501407239400439179232862430554 */
    unsigned char lo[16], hi[16], zero[16], max[16], below_hi[16], above_lo[16];
    key_of("273922656776327812788301823748127981641", lo);
    key_of("312950817501407239400439179232862430554", hi);
    key_of("0", zero);
    key_of(HASH_MAX, max);
    key_of("312950817501407239400439179232862430553", below_hi);
    key_of("273922656776327812788301823748127981642", above_lo);

    int rc;
    seen_t *s = decode(blob, len, "a", lo, hi, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 2);
    s = decode(blob, len, "a", zero, max, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 2);
    /* The second record is outside: nothing at all, not even the first. */
    s = decode(blob, len, "a", zero, below_hi, &rc);
    cr_assert_eq(rc, EDDY_AGG_DROPPED);
    cr_assert_eq(s->n, 0);
    s = decode(blob, len, "a", above_lo, max, &rc);
    cr_assert_eq(rc, EDDY_AGG_DROPPED);
    cr_assert_eq(s->n, 0);

    /* Explicit hash keys decide, not partition keys: keys 0 and 2^128-1 span everything. */
    v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(vectors(), "vectors"), 2);
    cr_assert_str_eq(str(v, "name"), "explicit_hash_keys");
    len = unhex(str(v, "aggregated_hex"), blob);
    s = decode(blob, len, "a", zero, max, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 3);
    unsigned char one[16];
    key_of("1", one);
    s = decode(blob, len, "a", one, max, &rc);
    cr_assert_eq(rc, EDDY_AGG_DROPPED);
    cr_assert_eq(s->n, 0);

    /* A record that is not an aggregate is never filtered. */
    s = decode((const unsigned char *)"plain", 5, "pk", above_lo, above_lo, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 1);
}

Test(agg_decode, a_visit_that_returns_nonzero_stops)
{
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(vectors(), "vectors"), 1);
    unsigned char blob[256];
    size_t len = unhex(str(v, "aggregated_hex"), blob);
    static seen_t s;
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    cr_assert_eq(eddy_agg_decode(blob, len, "a", 1, NULL, NULL, NULL, collect, &s), 42);
    cr_assert_eq(s.n, 2);
}

/* ---- the KCL's rules on hand-made aggregates ---- */

/* Builds the protobuf bytes of an aggregate from text: pk table, ehk table, then records as
 * "pk_index[/ehk_index]:data" (indexes in decimal, any uint64). */
static size_t proto_of(const char *const *pks, size_t npk, const char *const *ehks, size_t nehk,
                       const char *const *recs, size_t nrec, unsigned char *out)
{
    unsigned char *p = out;
    for (size_t i = 0; i < npk; i++) {
        *p++ = 0x0A;
        *p++ = (unsigned char)strlen(pks[i]);
        memcpy(p, pks[i], strlen(pks[i]));
        p += strlen(pks[i]);
    }
    for (size_t i = 0; i < nehk; i++) {
        *p++ = 0x12;
        *p++ = (unsigned char)strlen(ehks[i]);
        memcpy(p, ehks[i], strlen(ehks[i]));
        p += strlen(ehks[i]);
    }
    for (size_t i = 0; i < nrec; i++) {
        unsigned long long pki = 0, ehki = 0;
        int used = 0;
        bool has_ehk = sscanf(recs[i], "%llu/%llu:%n", &pki, &ehki, &used) == 2 && used > 0;
        if (!has_ehk) {
            cr_assert_eq(sscanf(recs[i], "%llu:%n", &pki, &used), 1);
        }
        const char *data = recs[i] + used;
        unsigned char inner[300], *q = inner;
        *q++ = 0x08;
        for (unsigned long long x = pki;; x >>= 7) {
            *q++ = (unsigned char)(x >= 0x80 ? (x & 0x7F) | 0x80 : x);
            if (x < 0x80) {
                break;
            }
        }
        if (has_ehk) {
            *q++ = 0x10;
            for (unsigned long long x = ehki;; x >>= 7) {
                *q++ = (unsigned char)(x >= 0x80 ? (x & 0x7F) | 0x80 : x);
                if (x < 0x80) {
                    break;
                }
            }
        }
        *q++ = 0x1A;
        *q++ = (unsigned char)strlen(data);
        memcpy(q, data, strlen(data));
        q += strlen(data);
        *p++ = 0x1A;
        *p++ = (unsigned char)(q - inner);
        memcpy(p, inner, (size_t)(q - inner));
        p += q - inner;
    }
    return (size_t)(p - out);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static seen_t *decode_proto(const unsigned char *proto, size_t n, const unsigned char *start,
                            const unsigned char *end, int *rc)
{
    static unsigned char blob[4096];
    size_t len = seal(proto, n, blob);
    return decode(blob, len, "outer", start, end, rc);
}

Test(agg_decode, an_index_outside_the_table_keeps_the_records_before_it)
{
    const char *pks[] = {"p0", "p1"};
    const char *recs[] = {"0:a", "1:b", "2:c", "0:d"};
    unsigned char proto[512];
    int rc;
    seen_t *s = decode_proto(proto, proto_of(pks, 2, NULL, 0, recs, N(recs), proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 2);
    cr_assert_str_eq(s->recs[1].pk, "p1");
    cr_assert(s->recs[1].aggregated);

    /* An explicit hash key index outside its table, and one with no table at all. */
    const char *ehks[] = {"5"};
    const char *recs2[] = {"0/0:a", "0/1:b"};
    s = decode_proto(proto, proto_of(pks, 2, ehks, 1, recs2, 2, proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_str_eq(s->recs[0].ehk, "5");
    const char *recs3[] = {"0/0:a"};
    s = decode_proto(proto, proto_of(pks, 2, NULL, 0, recs3, 1, proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 0);
}

Test(agg_decode, an_index_is_cast_to_a_java_int)
{
    /* (int) 2^32 + 1 == 1; (int) 2^31 < 0 is outside every table. */
    const char *pks[] = {"p0", "p1"};
    const char *recs[] = {"4294967297:a", "2147483648:b"};
    unsigned char proto[512];
    int rc;
    seen_t *s = decode_proto(proto, proto_of(pks, 2, NULL, 0, recs, 2, proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_str_eq(s->recs[0].pk, "p1");
}

Test(agg_decode, explicit_hash_keys_are_read_as_java_big_integers)
{
    const char *pks[] = {"p"};
    unsigned char proto[512];
    int rc;
    unsigned char seven[16];
    key_of("7", seven);

    /* Leading zeros and a sign parse; the text is handed over as it was. */
    const char *ehks[] = {"007", "+7", "-0"};
    const char *recs[] = {"0/0:a", "0/1:b", "0/2:c"};
    seen_t *s = decode_proto(proto, proto_of(pks, 1, ehks, 3, recs, 3, proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 3);
    cr_assert_str_eq(s->recs[0].ehk, "007");
    cr_assert_arr_eq(s->recs[0].hash_key, seven, 16);
    cr_assert_arr_eq(s->recs[1].hash_key, seven, 16);
    cr_assert_str_eq(key_text(s->recs[2].hash_key), "0");

    /* Outside 0 .. 2^128-1: outside every shard, so the aggregate is dropped even with no shard given. */
    const char *out_of_range[] = {"-1", "340282366920938463463374607431768211456",
                                  "0000999999999999999999999999999999999999999"};
    for (size_t i = 0; i < N(out_of_range); i++) {
        const char *e[] = {"1", out_of_range[i]};
        const char *r[] = {"0/0:a", "0/1:b"};
        s = decode_proto(proto, proto_of(pks, 1, e, 2, r, 2, proto), NULL, NULL, &rc);
        cr_assert_eq(rc, EDDY_AGG_DROPPED, "%s", out_of_range[i]);
        cr_assert_eq(s->n, 0);
    }

    /* Not a number: an exception, which keeps the records before it. */
    const char *malformed[] = {
        "", "abc", "1 ", " 1", "+", "-", "1e5", "0x10", "99999999999999999999999999999999999999999x"};
    for (size_t i = 0; i < N(malformed); i++) {
        const char *e[] = {"1", malformed[i]};
        const char *r[] = {"0/0:a", "0/1:b", "0/0:c"};
        s = decode_proto(proto, proto_of(pks, 1, e, 2, r, 3, proto), NULL, NULL, &rc);
        cr_assert_eq(rc, 0, "'%s'", malformed[i]);
        cr_assert_eq(s->n, 1, "'%s'", malformed[i]);
    }

    /* The KCL checks in order: an exception before a record outside the shard keeps what came before. */
    const char *e[] = {"1", "x", "-1"};
    const char *r[] = {"0/0:a", "0/1:b", "0/2:c"};
    s = decode_proto(proto, proto_of(pks, 1, e, 3, r, 3, proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 1);
    const char *r2[] = {"0/0:a", "0/2:b", "0/1:c"};
    s = decode_proto(proto, proto_of(pks, 1, e, 3, r2, 3, proto), NULL, NULL, &rc);
    cr_assert_eq(rc, EDDY_AGG_DROPPED);
    cr_assert_eq(s->n, 0);
}

static void check_java_string(const unsigned char *pk, size_t pk_len, const unsigned char *java,
                              size_t java_len)
{
    unsigned char proto[64], *p = proto;
    *p++ = 0x0A;
    *p++ = (unsigned char)pk_len;
    memcpy(p, pk, pk_len);
    p += pk_len;
    static const unsigned char rec[] = {0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, 'd'};
    memcpy(p, rec, sizeof rec);
    p += sizeof rec;
    int rc;
    seen_t *s = decode_proto(proto, (size_t)(p - proto), NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_eq(s->recs[0].pk_len, java_len);
    cr_assert_arr_eq(s->recs[0].pk, java, java_len);
    unsigned char key[16];
    md5_of(java, java_len, key);
    cr_assert_arr_eq(s->recs[0].hash_key, key, 16);
}

Test(agg_decode, a_partition_key_that_is_not_utf8_reads_as_a_java_string)
{
    /* Expected bytes from OpenJDK 17: new String(bytes, UTF_8).getBytes(UTF_8). C3 cut short, then "x";
     * E0 80 (a bad second byte: two replacements); a NUL, which stays; a lone continuation byte; F0 9F 98
     * cut short at the end (one replacement). */
    static const unsigned char pk1[] = {0xC3, 'x', 0xE0, 0x80, 'y', 0x00, 0xBF, 0xF0, 0x9F, 0x98};
    static const unsigned char java1[] = {0xEF, 0xBF, 0xBD, 'x',  0xEF, 0xBF, 0xBD, 0xEF, 0xBF,
                                          0xBD, 'y',  0x00, 0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD};
    check_java_string(pk1, sizeof pk1, java1, sizeof java1);
    /* Java decodes a surrogate (ED A0..BF xx) before refusing it: one replacement for all three bytes, and
     * ED A0 then a non-continuation byte is one replacement for two. */
    static const unsigned char pk2[] = {0xED, 0xA0, 0x80, 'z', 0xED, 0xA0, 'z'};
    static const unsigned char java2[] = {0xEF, 0xBF, 0xBD, 'z', 0xEF, 0xBF, 0xBD, 'z'};
    check_java_string(pk2, sizeof pk2, java2, sizeof java2);
    /* Valid UTF-8 is left alone. */
    static const unsigned char pk3[] = {0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80};
    check_java_string(pk3, sizeof pk3, pk3, sizeof pk3);
}

Test(agg_decode, what_is_not_an_aggregate_passes_through)
{
    unsigned char blob[256];
    int rc;
    seen_t *s;
    /* Magic and 16 bytes: the KCL wants more than 16 after the magic. */
    static const unsigned char empty_proto[1] = {0};
    size_t len = seal(empty_proto, 0, blob);
    cr_assert_eq(len, 20);
    s = decode(blob, len, "k", NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_not(s->recs[0].aggregated);
    cr_assert_eq(s->recs[0].data_len, 20);

    /* Short input, the magic cut short, nothing at all. */
    s = decode(blob, 3, "k", NULL, NULL, &rc);
    cr_assert_eq(s->n, 1);
    cr_assert_eq(s->recs[0].data_len, 3);
    s = decode(blob, 0, "k", NULL, NULL, &rc);
    cr_assert_eq(s->n, 1);
    cr_assert_eq(s->recs[0].data_len, 0);

    /* Protobuf that does not parse, or lacks a required field, under a right MD5. */
    static const unsigned char bad[][8] = {
        {0x1A, 0x05, 0x08, 0x00},                         /* truncated */
        {0x1A, 0x02, 0x08, 0x00},                         /* a record without data */
        {0x1A, 0x03, 0x1A, 0x01, 'x'},                    /* a record without a partition key index */
        {0x00, 0x00},                                     /* field number 0 */
        {0x0F},                                           /* wire type 7 */
        {0x1A, 0x06, 0x08, 0x00, 0x1A, 0x00, 0x22, 0x00}, /* a tag without its key */
    };
    static const size_t bad_len[] = {4, 4, 5, 2, 1, 8};
    for (size_t i = 0; i < N(bad); i++) {
        len = seal(bad[i], bad_len[i], blob);
        s = decode(blob, len, "k", NULL, NULL, &rc);
        cr_assert_eq(rc, 0, "#%zu", i);
        cr_assert_eq(s->n, 1, "#%zu", i);
        cr_assert_not(s->recs[0].aggregated, "#%zu", i);
        cr_assert_eq(s->recs[0].data_len, len);
    }

    /* The outer explicit hash key is the pass-through record's. */
    static seen_t one;
    memset(&one, 0, sizeof one);
    cr_assert_eq(eddy_agg_decode("plain", 5, "k", 1, "12345", NULL, NULL, collect, &one), 0);
    cr_assert_eq(one.n, 1);
    cr_assert_str_eq(one.recs[0].ehk, "12345");
    cr_assert_str_eq(key_text(one.recs[0].hash_key), "12345");
}

Test(agg_decode, fields_the_kcl_ignores)
{
    /* Tags, unknown fields, an aggregate with no records at all, a key table entry nobody uses, an empty
     * partition key, and empty data. */
    static const unsigned char proto[] = {
        0x0A, 0x00, 0x0A, 0x01, 'k',  0x12, 0x01, '9',  0x38, 0x05, /* pk "", pk "k", ehk, unknown */
        0x1A, 0x0C, 0x08, 0x01, 0x1A, 0x00, 0x22, 0x06, 0x0A, 0x01, 't', 0x12, 0x01, 'v', /* tag t=v */
        0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00,                                               /* pk "", no data */
    };
    int rc;
    seen_t *s = decode_proto(proto, sizeof proto, NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 2);
    cr_assert_str_eq(s->recs[0].pk, "k");
    cr_assert_eq(s->recs[0].data_len, 0);
    cr_assert_not(s->recs[0].has_ehk);
    cr_assert_eq(s->recs[1].pk_len, 0);
    cr_assert_eq(s->recs[1].sub, 1);
    unsigned char key[16];
    eddy_hash_key("", 0, key);
    cr_assert_arr_eq(s->recs[1].hash_key, key, 16);

    static const unsigned char only_tables[] = {0x0A, 0x01, 'k'};
    s = decode_proto(only_tables, sizeof only_tables, NULL, NULL, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s->n, 0);
}

/* ---- encoding: round trips, sizes, limits ---- */

static uint64_t rng_state = 0x853C49E6748FEA9BULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct user_record {
    char pk[300];
    size_t pk_len;
    char ehk[EDDY_HASH_KEY_STR_MAX];
    bool has_ehk;
    unsigned char data[3000];
    size_t data_len;
} user_record_t;

static void random_record(user_record_t *u, const user_record_t *earlier, size_t n_earlier)
{
    if (n_earlier > 0 && rnd() % 3 == 0) {
        /* reuse a key, so that the tables de-duplicate */
        const user_record_t *e = &earlier[rnd() % n_earlier];
        memcpy(u->pk, e->pk, e->pk_len);
        u->pk_len = e->pk_len;
        memcpy(u->ehk, e->ehk, sizeof u->ehk);
        u->has_ehk = e->has_ehk;
    } else {
        u->pk_len = 1 + rnd() % (rnd() % 8 == 0 ? 256 : 20);
        for (size_t i = 0; i < u->pk_len; i++) {
            u->pk[i] = (char)(rnd() % 2 == 0 ? 'a' + rnd() % 26 : 1 + rnd() % 127); /* ASCII incl. controls */
        }
        u->has_ehk = rnd() % 3 == 0;
        if (u->has_ehk) {
            unsigned char key[16];
            for (int i = 0; i < 16; i++) {
                key[i] = (unsigned char)rnd();
            }
            if (rnd() % 8 == 0) {
                memset(key, rnd() % 2 == 0 ? 0 : 0xFF, 16);
            }
            eddy_hash_key_format(key, u->ehk);
        }
    }
    u->data_len = rnd() % 4 == 0 ? 0 : rnd() % (rnd() % 10 == 0 ? sizeof u->data : 200);
    for (size_t i = 0; i < u->data_len; i++) {
        u->data[i] = (unsigned char)rnd();
    }
}

Test(agg_encode, random_round_trips_with_exact_sizes)
{
    static user_record_t users[600];
    static unsigned char blob[70000], repacked[70000];
    eddy_agg_t *a = eddy_agg_new(0, 0);
    cr_assert_not_null(a);
    for (int round = 0; round < 300; round++) {
        size_t limit = round % 3 == 0 ? EDDY_AGG_DEFAULT_MAX_BYTES : 64 + rnd() % 20000;
        eddy_agg_free(a);
        a = eddy_agg_new(limit, 0);
        cr_assert_not_null(a);
        size_t n = 0;
        for (;;) {
            cr_assert_lt(n, N(users));
            random_record(&users[n], users, n);
            user_record_t *u = &users[n];
            size_t before = eddy_agg_size(a);
            int rc = eddy_agg_add(a, u->pk, u->pk_len, u->has_ehk ? u->ehk : NULL, u->data, u->data_len);
            if (rc == EDDY_ERR_TOO_LARGE) {
                cr_assert_eq(eddy_agg_size(a), before);
                cr_assert_eq(eddy_agg_count(a), n);
                break;
            }
            cr_assert_eq(rc, 0, "round %d record %zu", round, n);
            n++;
            cr_assert_eq(eddy_agg_count(a), n);
            cr_assert(eddy_agg_size(a) <= limit || n == 1);
            if (n % 37 == 0) {
                cr_assert_eq(eddy_agg_encode(a, blob), eddy_agg_size(a));
            }
        }
        size_t len = eddy_agg_encode(a, blob);
        cr_assert_eq(len, eddy_agg_size(a));
        cr_assert(len <= limit || n == 1);

        /* protobuf-c packs what it unpacks from ours into the very same bytes. */
        EddyKpl__AggregatedRecord *m = eddy_kpl__aggregated_record__unpack(NULL, len - 20, blob + 4);
        cr_assert_not_null(m);
        cr_assert_eq(m->n_records, n);
        cr_assert_eq(eddy_kpl__aggregated_record__get_packed_size(m), len - 20);
        cr_assert_eq(eddy_kpl__aggregated_record__pack(m, repacked), len - 20);
        cr_assert_arr_eq(repacked, blob + 4, len - 20);
        /* The tables hold each key once. */
        for (size_t i = 0; i < m->n_partition_key_table; i++) {
            for (size_t j = 0; j < i; j++) {
                const ProtobufCBinaryData *x = &m->partition_key_table[i], *y = &m->partition_key_table[j];
                cr_assert(x->len != y->len || memcmp(x->data, y->data, x->len) != 0);
            }
        }
        eddy_kpl__aggregated_record__free_unpacked(m, NULL);

        int rc;
        seen_t *s = decode(blob, len, "a", NULL, NULL, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_eq(s->n, n);
        for (size_t i = 0; i < n; i++) {
            const user_record_t *u = &users[i];
            const seen_record_t *r = &s->recs[i];
            cr_assert(r->aggregated);
            cr_assert_eq(r->sub, i);
            cr_assert_eq(r->pk_len, u->pk_len);
            cr_assert_arr_eq(r->pk, u->pk, u->pk_len);
            cr_assert_eq(r->has_ehk, u->has_ehk);
            unsigned char key[16];
            if (u->has_ehk) {
                cr_assert_str_eq(r->ehk, u->ehk);
                key_of(u->ehk, key);
            } else {
                eddy_hash_key(u->pk, u->pk_len, key);
            }
            cr_assert_arr_eq(r->hash_key, key, 16);
            cr_assert_eq(r->data_len, u->data_len);
            cr_assert_arr_eq(r->data, u->data, u->data_len);
        }

        /* The outer key is the first record's hash key. */
        const char *opk;
        char ehk[EDDY_HASH_KEY_STR_MAX];
        eddy_agg_outer_key(a, &opk, ehk);
        cr_assert_str_eq(opk, "a");
        cr_assert_str_eq(ehk, key_text(s->recs[0].hash_key));

        /* Reset gives an empty aggregate that encodes as a fresh one would. */
        eddy_agg_reset(a);
        cr_assert_eq(eddy_agg_count(a), 0);
        cr_assert_eq(eddy_agg_size(a), 20);
    }
    eddy_agg_free(a);
}

Test(agg_encode, varint_boundaries_of_sizes_and_indexes)
{
    /* Data lengths and table indexes across the 1/2/3-byte varint boundaries. */
    static unsigned char data[20000], blob[1 << 20];
    eddy_agg_t *a = eddy_agg_new(1 << 20, 0);
    cr_assert_not_null(a);
    const size_t lens[] = {0, 1, 127, 128, 16383, 16384, 116, 117, 118, 119, 120};
    for (size_t k = 0; k < N(lens); k++) {
        cr_assert_eq(eddy_agg_add(a, "k", 1, NULL, data, lens[k]), 0);
        cr_assert_eq(eddy_agg_encode(a, blob), eddy_agg_size(a));
    }
    char pk[16];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(pk, sizeof pk, "k%d", i);
        cr_assert_eq(eddy_agg_add(a, pk, (size_t)n, i % 2 == 0 ? "1" : NULL, data, (size_t)i % 3), 0);
    }
    size_t len = eddy_agg_encode(a, blob);
    cr_assert_eq(len, eddy_agg_size(a));
    EddyKpl__AggregatedRecord *m = eddy_kpl__aggregated_record__unpack(NULL, len - 20, blob + 4);
    cr_assert_not_null(m);
    cr_assert_eq(m->n_partition_key_table, 20001);
    cr_assert_eq(m->n_explicit_hash_key_table, 1);
    cr_assert_eq(m->records[m->n_records - 1]->partition_key_index, 20000);
    eddy_kpl__aggregated_record__free_unpacked(m, NULL);
    eddy_agg_free(a);
}

Test(agg_encode, the_size_limit)
{
    static unsigned char data[1000], before[200], after[200];
    eddy_agg_t *a = eddy_agg_new(197, 0);
    cr_assert_not_null(a);
    /* 20 + pk entry (0A 02 "pk") 4 + record (1A 36 08 00 1A 32 data) 56 = 80, then 56 more each */
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 50), 0);
    cr_assert_eq(eddy_agg_size(a), 80);
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 50), 0);
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 50), 0);
    cr_assert_eq(eddy_agg_size(a), 192);
    size_t len = eddy_agg_encode(a, before);
    /* Over the limit is refused and changes nothing, whichever keys the record brings: 192 + 6, and
     * 192 + 5 (pk entry) + 3 (ehk entry) + 8. */
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 0), EDDY_ERR_TOO_LARGE);
    cr_assert_eq(eddy_agg_add(a, "new", 3, "5", data, 0), EDDY_ERR_TOO_LARGE);
    cr_assert_eq(eddy_agg_count(a), 3);
    cr_assert_eq(eddy_agg_size(a), 192);
    cr_assert_eq(eddy_agg_encode(a, after), len);
    cr_assert_arr_eq(after, before, len);
    eddy_agg_free(a);

    /* Exactly at the limit fits. */
    a = eddy_agg_new(200, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 50), 0);
    }
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 2), 0);
    cr_assert_eq(eddy_agg_size(a), 200);
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 0), EDDY_ERR_TOO_LARGE);
    eddy_agg_free(a);

    /* A record too large for any aggregate goes in alone; nothing joins it. 20 + pk entry 5 + record
     * (1A, varint 1005 in 2 bytes, 08 00 1A, varint 1000 in 2 bytes, data). */
    a = eddy_agg_new(100, 0);
    cr_assert_eq(eddy_agg_add(a, "big", 3, NULL, data, sizeof data), 0);
    cr_assert_eq(eddy_agg_count(a), 1);
    cr_assert_eq(eddy_agg_size(a), 20 + 5 + 1 + 2 + 3 + 2 + sizeof data);
    static unsigned char blob[1100];
    cr_assert_eq(eddy_agg_encode(a, blob), eddy_agg_size(a));
    cr_assert_eq(eddy_agg_add(a, "x", 1, NULL, data, 0), EDDY_ERR_TOO_LARGE);
    eddy_agg_free(a);

    /* Below 64 means 64: 20 + 4 + 32 = 56, then 8 more is 64. */
    a = eddy_agg_new(1, 0);
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 26), 0);
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 2), 0);
    cr_assert_eq(eddy_agg_size(a), 64);
    cr_assert_eq(eddy_agg_add(a, "pk", 2, NULL, data, 0), EDDY_ERR_TOO_LARGE);
    eddy_agg_free(a);
}

Test(agg_encode, the_count_limit)
{
    eddy_agg_t *a = eddy_agg_new(0, 3);
    cr_assert_not_null(a);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(eddy_agg_add(a, "k", 1, NULL, "d", 1), 0);
    }
    size_t size = eddy_agg_size(a);
    cr_assert_eq(eddy_agg_add(a, "k", 1, NULL, "d", 1), EDDY_ERR_TOO_LARGE);
    cr_assert_eq(eddy_agg_count(a), 3);
    cr_assert_eq(eddy_agg_size(a), size);
    eddy_agg_reset(a);
    cr_assert_eq(eddy_agg_add(a, "k", 1, NULL, "d", 1), 0);
    eddy_agg_free(a);
}

Test(agg_encode, bad_keys_are_refused_and_change_nothing)
{
    eddy_agg_t *a = eddy_agg_new(0, 0);
    cr_assert_not_null(a);
    cr_assert_eq(eddy_agg_add(a, "first", 5, "17", "x", 1), 0);
    size_t size = eddy_agg_size(a);

    char pk[1100];
    memset(pk, 'k', sizeof pk);
    cr_assert_eq(eddy_agg_add(a, pk, 0, NULL, "x", 1), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_agg_add(a, NULL, 0, NULL, "x", 1), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_agg_add(a, pk, 257, NULL, "x", 1), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_agg_add(a, "\xC3", 1, NULL, "x", 1), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_agg_add(a, "\xED\xA0\x80", 3, NULL, "x", 1), EDDY_ERR_INVALID); /* a surrogate */
    const char *bad_ehks[] = {"",
                              "01",
                              "-1",
                              "+1",
                              "1a",
                              " 1",
                              "340282366920938463463374607431768211456",
                              "99999999999999999999999999999999999999999999"};
    for (size_t i = 0; i < N(bad_ehks); i++) {
        cr_assert_eq(eddy_agg_add(a, "k", 1, bad_ehks[i], "x", 1), EDDY_ERR_INVALID, "'%s'", bad_ehks[i]);
    }
    cr_assert_eq(eddy_agg_count(a), 1);
    cr_assert_eq(eddy_agg_size(a), size);

    /* 256 characters is the limit, however many bytes they take. */
    cr_assert_eq(eddy_agg_add(a, pk, 256, NULL, "x", 1), 0);
    char wide[1024];
    for (int i = 0; i < 256; i++) {
        memcpy(wide + 4 * i, "\xF0\x9F\x98\x80", 4); /* U+1F600 */
    }
    cr_assert_eq(eddy_agg_add(a, wide, 1024, NULL, "x", 1), 0);
    cr_assert_eq(eddy_agg_add(a, wide, 1021, NULL, "x", 1), EDDY_ERR_INVALID); /* cut inside a character */
    cr_assert_eq(eddy_agg_add(a, "k", 1, HASH_MAX, "x", 1), 0);
    cr_assert_eq(eddy_agg_add(a, "k", 1, "0", NULL, 0), 0);
    cr_assert_eq(eddy_agg_add(a, "k", 1, NULL, NULL, 1), EDDY_ERR_INVALID);
    eddy_agg_free(a);
}

Test(agg_encode, outer_key_with_an_explicit_first_key)
{
    eddy_agg_t *a = eddy_agg_new(0, 0);
    cr_assert_not_null(a);
    cr_assert_eq(eddy_agg_add(a, "z", 1, NULL, "x", 1), 0);
    eddy_agg_reset(a);
    cr_assert_eq(eddy_agg_add(a, "p", 1, "123456789012345678901234567890", "x", 1), 0);
    cr_assert_eq(eddy_agg_add(a, "q", 1, NULL, "x", 1), 0);
    const char *pk;
    char ehk[EDDY_HASH_KEY_STR_MAX];
    eddy_agg_outer_key(a, &pk, ehk);
    cr_assert_str_eq(pk, "a");
    cr_assert_str_eq(ehk, "123456789012345678901234567890");
    eddy_agg_free(a);
}

/* ---- hash keys ---- */

Test(hash_key, format_and_parse)
{
    unsigned char key[16];
    char text[EDDY_HASH_KEY_STR_MAX];
    cr_assert(eddy_hash_key_parse("0", 1, key));
    unsigned char zero[16] = {0};
    cr_assert_arr_eq(key, zero, 16);
    cr_assert_eq(eddy_hash_key_format(key, text), 1);
    cr_assert_str_eq(text, "0");

    cr_assert(eddy_hash_key_parse(HASH_MAX, strlen(HASH_MAX), key));
    unsigned char max[16];
    memset(max, 0xFF, 16);
    cr_assert_arr_eq(key, max, 16);
    cr_assert_eq(eddy_hash_key_format(key, text), 39);
    cr_assert_str_eq(text, HASH_MAX);

    /* Big-endian: 2^64 is 00..01 00..00. */
    cr_assert(eddy_hash_key_parse("18446744073709551616", 20, key));
    unsigned char two64[16] = {0, 0, 0, 0, 0, 0, 0, 1};
    cr_assert_arr_eq(key, two64, 16);

    /* Only len bytes are read. */
    cr_assert(eddy_hash_key_parse("12345", 2, key));
    cr_assert_str_eq(key_text(key), "12");

    const char *bad[] = {"",
                         "340282366920938463463374607431768211456",
                         "999999999999999999999999999999999999999",
                         "1000000000000000000000000000000000000000",
                         "-1",
                         "+1",
                         "1a",
                         "a",
                         " 1",
                         "01",
                         "1.0"};
    for (size_t i = 0; i < N(bad); i++) {
        cr_assert_not(eddy_hash_key_parse(bad[i], strlen(bad[i]), key), "'%s'", bad[i]);
    }
    cr_assert_not(eddy_hash_key_parse(NULL, 0, key));

    /* The MD5 of a partition key, big-endian (the vectors' first record). */
    eddy_hash_key("pk-1", 4, key);
    cr_assert_str_eq(key_text(key), "273922656776327812788301823748127981641");
}

/* encode_many (aggregates hashed side by side) writes exactly what encode writes, one by one, for counts
 * below, at and above one batch of the multi-buffer MD5 and aggregates of very different sizes. */
Test(agg, encode_many_equals_encode)
{
    enum { N = 70 };
    eddy_agg_t *aggs[N];
    unsigned char *one[N], *many[N];
    size_t lens[N];
    char data[3000];
    memset(data, 'x', sizeof data);
    for (size_t i = 0; i < N; i++) {
        aggs[i] = eddy_agg_new(0, 0);
        cr_assert_not_null(aggs[i]);
        for (size_t r = 0; r <= i % 9; r++) {
            char pk[32];
            int pk_len = snprintf(pk, sizeof pk, "key-%zu-%zu", i, r);
            data[0] = (char)('a' + (int)(i % 26));
            cr_assert_eq(eddy_agg_add(aggs[i], pk, (size_t)pk_len, NULL, data, (i * 37 + r * 101) % sizeof data), 0);
        }
        size_t size = eddy_agg_size(aggs[i]);
        one[i] = malloc(size);
        many[i] = malloc(size);
        cr_assert(one[i] != NULL && many[i] != NULL);
        cr_assert_eq(eddy_agg_encode(aggs[i], one[i]), size);
    }
    size_t counts[] = {1, 15, 16, 17, 64, N};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        eddy_agg_encode_many((const eddy_agg_t *const *)aggs, counts[c], many, lens);
        for (size_t i = 0; i < counts[c]; i++) {
            cr_assert_eq(lens[i], eddy_agg_size(aggs[i]));
            cr_assert(memcmp(one[i], many[i], lens[i]) == 0, "aggregate %zu of %zu differs", i, counts[c]);
        }
    }
    for (size_t i = 0; i < N; i++) {
        free(one[i]);
        free(many[i]);
        eddy_agg_free(aggs[i]);
    }
}
