/*
 * agg: the KPL aggregated record codec of libeddy (include/eddy/agg.h).
 *
 * Byte layout (the spec's §1.1, §1.2):
 *     F3 89 9A C2 | AggregatedRecord (protobuf, proto2) | MD5 of the protobuf bytes
 *     AggregatedRecord = (0A len pk)* (12 len ehk)* (1A len Record)*
 *     Record           = 08 varint(pk index) [10 varint(ehk index)] 1A len data
 *
 * Encoding writes these bytes by hand, and as records are added rather than at the end: each key table
 * entry is appended, serialised, to its table's buffer the first time the key is seen (a hash set finds
 * keys already there), and each record is serialised into the records buffer when it is added (its table
 * indexes are known then). Invariant: the protobuf is exactly pk table bytes + ehk table bytes + records
 * bytes, in that order, so eddy_agg_size is exact by construction and encoding is three copies and an MD5.
 * The tables keep keys in first-seen order and records in added order, which gives the same bytes as the
 * KPL and aws-kinesis-agg (both de-duplicate the same way). An add changes nothing until every buffer it
 * needs has been grown, so a failed add (TOO_LARGE, INVALID, NOMEM) leaves the aggregate as it was.
 *
 * Decoding follows the KCL's AggregatorUtil (the spec's §1.5) and parses with protobuf-c, into an arena
 * that lives for one call (protobuf-c copies every field; an arena makes that one bump per field and frees
 * it all at once) and is bounded by a multiple of the input. Input longer than any Kinesis record (10 MiB)
 * is passed through unparsed. Where the KCL's Java gives a meaning to bytes, this file gives the same one:
 *   - a table index is cast to a Java int (the low 32 bits, signed); outside the table is an exception;
 *   - an explicit hash key is read as java.math.BigInteger(String) does (optional sign, ASCII digits,
 *     leading zeros allowed); one that does not parse is an exception, one outside 0 .. 2^128-1 is outside
 *     every shard and drops the aggregate;
 *   - a partition key that is not valid UTF-8 becomes what a Java String makes of it (each invalid part
 *     replaced by U+FFFD, see utf8_replace_invalid); that text is what the record carries and is hashed;
 *   - an exception at record i keeps records 0 .. i-1 (the KCL logs it and keeps what it emitted) unless
 *     one of those is outside the shard, which drops the aggregate as the KCL's loop would have first.
 * Known differences, only for bytes no producer writes (protobuf-c is stricter than protobuf-java): a known
 * field with the wrong wire type, an unknown group field, a length prefix longer than 5 bytes, and explicit
 * hash keys in non-ASCII digits make us pass the record through where the KCL would de-aggregate it.
 */
/* MD5() is deprecated in OpenSSL 3 but has no context to set up and no provider to look up: it takes half
 * the time of EVP for a partition key. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "eddy/agg.h"

#include <openssl/md5.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/md5_multi.h"
#include "common/u128.h"
#include "kpl_aggregated.pb-c.h"

static const unsigned char agg_magic[EDDY_AGG_MAGIC_LEN] = {0xF3, 0x89, 0x9A, 0xC2};

#define MD5_LEN 16
#define PK_MAX_CHARS 256
/* The largest Kinesis record (MaxRecordSizeInKiB up to 10240): anything longer cannot come from a stream,
 * and is passed through without being parsed. */
#define DECODE_MAX_BYTES ((size_t)10 * 1024 * 1024)

static void md5(const void *p, size_t n, unsigned char out[MD5_LEN])
{
    MD5(p, n, out);
}

/* ---- varints ---- */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* ---- hash keys ---- */

void eddy_hash_key(const char *partition_key, size_t len, unsigned char out[16])
{
    md5(partition_key, len, out);
}

static void u128_to_be(u128 v, unsigned char out[16])
{
    for (int i = 15; i >= 0; i--) {
        out[i] = (unsigned char)v;
        v >>= 8;
    }
}

size_t eddy_hash_key_format(const unsigned char key[16], char *out)
{
    return u128_format(u128_from_be_bytes(key), out);
}

bool eddy_hash_key_parse(const char *s, size_t len, unsigned char out[16])
{
    u128 v;
    if (s == NULL || u128_parse(s, len, &v) != 0) {
        return false;
    }
    u128_to_be(v, out);
    return true;
}

/* ---- UTF-8 ---- */

/* The length of the well-formed UTF-8 sequence that starts at s[0] (Unicode's table 3-7: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when none does. Then *replaced gets how many bytes a Java String
 * turns into one U+FFFD (at least 1): the maximal subpart, as Unicode recommends, except that Java decodes
 * ED A0..BF xx (a surrogate) before refusing it, so for ED any continuation byte extends the subpart and the
 * three bytes of a surrogate make one U+FFFD. */
static size_t utf8_sequence(const unsigned char *s, size_t n, size_t *replaced)
{
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *replaced = 1;
    if (b < 0x80) {
        return 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        lo = b == 0xE0 ? 0xA0 : 0x80;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        lo = b == 0xF0 ? 0x90 : 0x80;
        hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *replaced = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    if (b == 0xED && s[1] >= 0xA0) {
        *replaced = 3;
        return 0;
    }
    return i;
}

/* Characters (code points) of valid UTF-8, or -1 when it is not. */
static long utf8_chars(const unsigned char *s, size_t n)
{
    long chars = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
        } else {
            size_t replaced;
            size_t k = utf8_sequence(s + i, n - i, &replaced);
            if (k == 0) {
                return -1;
            }
            i += k;
        }
        chars++;
    }
    return chars;
}

/* What a Java String made of these bytes holds (new String(bytes, UTF_8), as protobuf-java makes a string
 * field), in UTF-8: each invalid part becomes U+FFFD (EF BF BD). out: at least 3 * n bytes. Returns its
 * length. Checked against OpenJDK 17 on 200,000 random byte strings. */
static size_t utf8_replace_invalid(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    size_t i = 0;
    while (i < n) {
        size_t replaced;
        size_t k = utf8_sequence(s + i, n - i, &replaced);
        if (k > 0) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            out[o++] = 0xEF;
            out[o++] = 0xBF;
            out[o++] = 0xBD;
            i += replaced;
        }
    }
    return o;
}

/* ---- encoding ---- */

/* A key table: its serialised entries (tag, varint length, key) and a hash set over them. */
typedef struct key_entry {
    size_t off; /* of the key's bytes in bytes */
    uint32_t len;
    uint32_t hash;
} key_entry_t;

typedef struct key_table {
    unsigned char tag; /* 0x0A or 0x12 */
    unsigned char *bytes;
    size_t len, cap;
    key_entry_t *entries;
    size_t count, entries_cap;
    uint32_t *slots; /* entry index + 1; 0: empty */
    size_t nslots;   /* a power of two, at least twice count */
} key_table_t;

struct eddy_agg {
    size_t max_bytes;
    size_t max_count;
    uint64_t seed;
    key_table_t pks;
    key_table_t ehks;
    unsigned char *recs; /* the serialised records (1A len Record)* */
    size_t recs_len, recs_cap;
    size_t count;
    bool first_has_ehk; /* the first record's keys are entry 0 of each table */
};

static uint32_t key_hash(uint64_t seed, const unsigned char *p, size_t n)
{
    uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n > 0) {
        memcpy(&w, p, n);
    }
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    return (uint32_t)h;
}

/* Index of the key in the table, or -1. */
static long table_find(const key_table_t *t, const unsigned char *key, size_t len, uint32_t hash)
{
    if (t->nslots == 0) {
        return -1;
    }
    size_t mask = t->nslots - 1;
    size_t i = hash & mask;
    for (;;) {
        uint32_t s = t->slots[i];
        if (s == 0) {
            return -1;
        }
        const key_entry_t *e = &t->entries[s - 1];
        if (e->hash == hash && e->len == len && memcmp(t->bytes + e->off, key, len) == 0) {
            return (long)(s - 1);
        }
        i = (i + 1) & mask;
    }
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap > 0 ? *cap : first;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem) {
            return EDDY_ERR_NOMEM;
        }
        n *= 2;
    }
    void *q = realloc(*p, n * elem);
    if (q == NULL) {
        return EDDY_ERR_NOMEM;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* Makes room for one more entry of entry_bytes serialised bytes; rehashes when the set gets half full.
 * Changes no content. */
static int table_reserve(key_table_t *t, size_t entry_bytes)
{
    void *p = t->bytes;
    int rc = grow(&p, &t->cap, t->len + entry_bytes, 1, 1024);
    t->bytes = p;
    if (rc != 0) {
        return rc;
    }
    p = t->entries;
    rc = grow(&p, &t->entries_cap, t->count + 1, sizeof(key_entry_t), 32);
    t->entries = p;
    if (rc != 0) {
        return rc;
    }
    if ((t->count + 1) * 2 > t->nslots) {
        size_t n = t->nslots > 0 ? t->nslots * 2 : 64;
        if (t->count + 1 >= UINT32_MAX || n > SIZE_MAX / sizeof(uint32_t)) {
            return EDDY_ERR_NOMEM;
        }
        uint32_t *slots = calloc(n, sizeof(uint32_t));
        if (slots == NULL) {
            return EDDY_ERR_NOMEM;
        }
        for (size_t e = 0; e < t->count; e++) {
            size_t i = t->entries[e].hash & (n - 1);
            while (slots[i] != 0) {
                i = (i + 1) & (n - 1);
            }
            slots[i] = (uint32_t)(e + 1);
        }
        free(t->slots);
        t->slots = slots;
        t->nslots = n;
    }
    return 0;
}

/* Appends a key that table_find did not find (room reserved by table_reserve). */
static void table_add(key_table_t *t, const unsigned char *key, size_t len, uint32_t hash)
{
    size_t mask = t->nslots - 1;
    size_t i = hash & mask;
    while (t->slots[i] != 0) {
        i = (i + 1) & mask;
    }
    unsigned char *p = t->bytes + t->len;
    *p++ = t->tag;
    p = put_varint(p, len);
    key_entry_t *e = &t->entries[t->count];
    e->off = (size_t)(p - t->bytes);
    e->len = (uint32_t)len;
    e->hash = hash;
    memcpy(p, key, len);
    t->len = e->off + len;
    t->slots[i] = (uint32_t)(++t->count);
}

static void table_reset(key_table_t *t)
{
    if (t->count > 0) {
        memset(t->slots, 0, t->nslots * sizeof(uint32_t));
    }
    t->len = 0;
    t->count = 0;
}

static void table_dispose(key_table_t *t)
{
    free(t->bytes);
    free(t->entries);
    free(t->slots);
}

eddy_agg_t *eddy_agg_new(size_t max_bytes, size_t max_count)
{
    eddy_agg_t *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return NULL;
    }
    a->max_bytes = max_bytes == 0 ? EDDY_AGG_DEFAULT_MAX_BYTES : max_bytes < 64 ? 64 : max_bytes;
    a->max_count = max_count == 0 ? SIZE_MAX : max_count;
    /* Keys may come from outside (an agent's log lines): a seed per aggregate keeps crafted keys from
     * piling into one probe chain. */
    a->seed = ((uint64_t)(uintptr_t)a * 0x9E3779B97F4A7C15ULL) ^ 0x5851F42D4C957F2DULL;
    a->pks.tag = 0x0A;
    a->ehks.tag = 0x12;
    return a;
}

void eddy_agg_free(eddy_agg_t *a)
{
    if (a == NULL) {
        return;
    }
    table_dispose(&a->pks);
    table_dispose(&a->ehks);
    free(a->recs);
    free(a);
}

void eddy_agg_reset(eddy_agg_t *a)
{
    table_reset(&a->pks);
    table_reset(&a->ehks);
    a->recs_len = 0;
    a->count = 0;
    a->first_has_ehk = false;
}

size_t eddy_agg_count(const eddy_agg_t *a)
{
    return a->count;
}

size_t eddy_agg_size(const eddy_agg_t *a)
{
    return EDDY_AGG_OVERHEAD + a->pks.len + a->ehks.len + a->recs_len;
}

int eddy_agg_add(eddy_agg_t *a, const char *partition_key, size_t pk_len, const char *explicit_hash_key,
                 const void *data, size_t data_len)
{
    const unsigned char *pk = (const unsigned char *)partition_key;
    if (pk == NULL || pk_len == 0 || pk_len > PK_MAX_CHARS * 4 || (data == NULL && data_len > 0) ||
        data_len > SIZE_MAX / 4) {
        return EDDY_ERR_INVALID;
    }
    uint32_t pk_hash = key_hash(a->seed, pk, pk_len);
    long pk_index = table_find(&a->pks, pk, pk_len, pk_hash);
    /* A key already in the table was checked when it came in. */
    if (pk_index < 0) {
        long chars = utf8_chars(pk, pk_len);
        if (chars < 1 || chars > PK_MAX_CHARS) {
            return EDDY_ERR_INVALID;
        }
    }

    const unsigned char *ehk = (const unsigned char *)explicit_hash_key;
    size_t ehk_len = 0;
    uint32_t ehk_hash = 0;
    long ehk_index = -1;
    if (ehk != NULL) {
        ehk_len = strnlen(explicit_hash_key, EDDY_HASH_KEY_STR_MAX);
        ehk_hash = key_hash(a->seed, ehk, ehk_len);
        ehk_index = table_find(&a->ehks, ehk, ehk_len, ehk_hash);
        unsigned char check[16];
        if (ehk_index < 0 && !eddy_hash_key_parse(explicit_hash_key, ehk_len, check)) {
            return EDDY_ERR_INVALID;
        }
    }

    /* What the record adds to the protobuf. */
    uint64_t pk_i = pk_index >= 0 ? (uint64_t)pk_index : a->pks.count;
    uint64_t ehk_i = ehk_index >= 0 ? (uint64_t)ehk_index : a->ehks.count;
    size_t pk_entry = pk_index >= 0 ? 0 : 1 + varint_len(pk_len) + pk_len;
    size_t ehk_entry = ehk == NULL || ehk_index >= 0 ? 0 : 1 + varint_len(ehk_len) + ehk_len;
    size_t inner = 1 + varint_len(pk_i) + (ehk != NULL ? 1 + varint_len(ehk_i) : 0) + 1 +
                   varint_len(data_len) + data_len;
    size_t rec = 1 + varint_len(inner) + inner;
    if (a->count > 0 &&
        (a->count >= a->max_count || eddy_agg_size(a) + pk_entry + ehk_entry + rec > a->max_bytes)) {
        return EDDY_ERR_TOO_LARGE;
    }

    /* Room first, then the change. */
    void *p = a->recs;
    int rc = grow(&p, &a->recs_cap, a->recs_len + rec, 1, 4096);
    a->recs = p;
    if (rc != 0) {
        return rc;
    }
    if (pk_entry > 0 && (rc = table_reserve(&a->pks, pk_entry)) != 0) {
        return rc;
    }
    if (ehk_entry > 0 && (rc = table_reserve(&a->ehks, ehk_entry)) != 0) {
        return rc;
    }
    if (pk_entry > 0) {
        table_add(&a->pks, pk, pk_len, pk_hash);
    }
    if (ehk_entry > 0) {
        table_add(&a->ehks, ehk, ehk_len, ehk_hash);
    }

    unsigned char *w = a->recs + a->recs_len;
    *w++ = 0x1A;
    w = put_varint(w, inner);
    *w++ = 0x08;
    w = put_varint(w, pk_i);
    if (ehk != NULL) {
        *w++ = 0x10;
        w = put_varint(w, ehk_i);
    }
    *w++ = 0x1A;
    w = put_varint(w, data_len);
    if (data_len > 0) {
        memcpy(w, data, data_len);
    }
    a->recs_len += rec;
    if (a->count == 0) {
        a->first_has_ehk = ehk != NULL;
    }
    a->count++;
    return 0;
}

/* Writes the magic and the protobuf; returns the protobuf's length (the MD5 goes right after it). */
static size_t encode_body(const eddy_agg_t *a, unsigned char *out)
{
    unsigned char *p = out;
    memcpy(p, agg_magic, EDDY_AGG_MAGIC_LEN);
    p += EDDY_AGG_MAGIC_LEN;
    unsigned char *proto = p;
    if (a->pks.len > 0) {
        memcpy(p, a->pks.bytes, a->pks.len);
        p += a->pks.len;
    }
    if (a->ehks.len > 0) {
        memcpy(p, a->ehks.bytes, a->ehks.len);
        p += a->ehks.len;
    }
    if (a->recs_len > 0) {
        memcpy(p, a->recs, a->recs_len);
        p += a->recs_len;
    }
    return (size_t)(p - proto);
}

size_t eddy_agg_encode(const eddy_agg_t *a, unsigned char *out)
{
    size_t proto = encode_body(a, out);
    md5(out + EDDY_AGG_MAGIC_LEN, proto, out + EDDY_AGG_MAGIC_LEN + proto);
    return EDDY_AGG_OVERHEAD + proto;
}

void eddy_agg_encode_many(const eddy_agg_t *const *aggs, size_t n, unsigned char *const *out, size_t *lens)
{
    enum { BATCH = 64 }; /* hashed together; more would only need bigger arrays */
    for (size_t base = 0; base < n; base += BATCH) {
        size_t m = n - base < BATCH ? n - base : BATCH;
        const unsigned char *proto[BATCH];
        size_t proto_len[BATCH];
        unsigned char digest[BATCH][MD5_MULTI_LEN];
        for (size_t i = 0; i < m; i++) {
            proto_len[i] = encode_body(aggs[base + i], out[base + i]);
            proto[i] = out[base + i] + EDDY_AGG_MAGIC_LEN;
        }
        md5_multi(proto, proto_len, m, digest);
        for (size_t i = 0; i < m; i++) {
            memcpy(out[base + i] + EDDY_AGG_MAGIC_LEN + proto_len[i], digest[i], MD5_LEN);
            lens[base + i] = EDDY_AGG_OVERHEAD + proto_len[i];
        }
    }
}

void eddy_agg_outer_key(const eddy_agg_t *a, const char **partition_key, char *ehk)
{
    *partition_key = "a";
    if (a->count == 0) {
        ehk[0] = '\0';
        return;
    }
    if (a->first_has_ehk) {
        /* Checked by eddy_hash_key_parse when added, so already the canonical decimal text. */
        const key_entry_t *e = &a->ehks.entries[0];
        memcpy(ehk, a->ehks.bytes + e->off, e->len);
        ehk[e->len] = '\0';
        return;
    }
    const key_entry_t *e = &a->pks.entries[0];
    unsigned char key[16];
    md5(a->pks.bytes + e->off, e->len, key);
    eddy_hash_key_format(key, ehk);
}

/* Reads a varint this file wrote (so well formed and in bounds). */
static const unsigned char *get_varint(const unsigned char *p, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0;; shift += 7) {
        unsigned char b = *p++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            break;
        }
    }
    *v = x;
    return p;
}

int eddy_agg_records(const eddy_agg_t *a, eddy_agg_visit_fn visit, void *arg)
{
    const unsigned char *p = a->recs, *end = a->recs + a->recs_len;
    for (uint64_t n = 0; p < end; n++) {
        /* 1A len (08 pk_i [10 ehk_i] 1A len data) */
        uint64_t inner, pk_i, ehk_i = 0, data_len;
        p = get_varint(p + 1, &inner);
        p = get_varint(p + 1, &pk_i);
        bool has_ehk = *p == 0x10;
        if (has_ehk) {
            p = get_varint(p + 1, &ehk_i);
        }
        p = get_varint(p + 1, &data_len);
        eddy_user_record_t r = {0};
        r.data = data_len > 0 ? p : (const unsigned char *)"";
        r.data_len = (size_t)data_len;
        p += data_len;
        const key_entry_t *pk = &a->pks.entries[pk_i];
        r.partition_key = (const char *)a->pks.bytes + pk->off;
        r.partition_key_len = pk->len;
        if (has_ehk) {
            const key_entry_t *e = &a->ehks.entries[ehk_i];
            r.explicit_hash_key = (const char *)a->ehks.bytes + e->off;
            r.explicit_hash_key_len = e->len;
            eddy_hash_key_parse(r.explicit_hash_key, r.explicit_hash_key_len, r.hash_key); /* checked when added */
        } else {
            md5(r.partition_key, r.partition_key_len, r.hash_key);
        }
        r.sub_sequence_number = n;
        r.aggregated = true;
        int rc = visit(arg, &r);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- decoding ---- */

/* A bump allocator for protobuf-c: a first block on the caller's stack, then heap blocks; free does
 * nothing, and arena_dispose returns it all. It gives out at most limit bytes, so that hostile input cannot
 * make one call take more memory than a fixed multiple of its size. */
typedef struct arena_block {
    struct arena_block *next;
    alignas(max_align_t) unsigned char data[];
} arena_block_t;

typedef struct arena {
    unsigned char *cur, *end;
    arena_block_t *blocks;
    size_t given, limit, next_block;
    bool exhausted;
} arena_t;

#define ARENA_ALIGN 8 /* protobuf-c's structs hold pointers, size_t and uint64_t at most */
#define ARENA_STACK_BYTES 4096
/* The limit is ARENA_RATIO times the input plus ARENA_SLACK. protobuf-c's representation is what costs:
 * aggregates of 100-byte records take about 2.5 times their size; the worst inputs measured (all 2-byte
 * fields: empty keys, unknown varints) take about 50 times, our per-entry tables included. */
#define ARENA_RATIO 96
#define ARENA_SLACK ((size_t)64 * 1024)

static void arena_init(arena_t *ar, unsigned char *first, size_t first_len, size_t input_len)
{
    ar->cur = first;
    ar->end = first + first_len;
    ar->blocks = NULL;
    ar->given = 0;
    ar->limit = input_len * ARENA_RATIO + ARENA_SLACK;
    ar->next_block = input_len * 3 + 16384;
    ar->exhausted = false;
}

static void *arena_alloc(void *data, size_t size)
{
    arena_t *ar = data;
    size_t n = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n < size || n > ar->limit - ar->given) {
        ar->exhausted = true;
        return NULL;
    }
    if (n > (size_t)(ar->end - ar->cur)) {
        size_t block = ar->next_block > n ? ar->next_block : n;
        if (block > ar->limit - ar->given) {
            block = ar->limit - ar->given;
        }
        arena_block_t *b = malloc(sizeof *b + block);
        if (b == NULL) {
            ar->exhausted = true;
            return NULL;
        }
        b->next = ar->blocks;
        ar->blocks = b;
        ar->cur = b->data;
        ar->end = b->data + block;
        ar->next_block = block * 2;
    }
    void *p = ar->cur;
    ar->cur += n;
    ar->given += n;
    return p;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

static void arena_dispose(arena_t *ar)
{
    while (ar->blocks != NULL) {
        arena_block_t *next = ar->blocks->next;
        free(ar->blocks);
        ar->blocks = next;
    }
}

/* java.math.BigInteger(String) for a hash key: [+-]?[0-9]+. */
typedef enum { EHK_OK, EHK_OUT_OF_RANGE, EHK_MALFORMED } ehk_parse_t;

static ehk_parse_t parse_java_integer(const unsigned char *s, size_t n, unsigned char out[16])
{
    bool negative = false;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        s++;
        n--;
    }
    if (n == 0) {
        return EHK_MALFORMED;
    }
    u128 v = 0;
    bool overflow = false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)s[i] - '0';
        if (d > 9) {
            return EHK_MALFORMED;
        }
        if (v > (U128_MAX - d) / 10) {
            overflow = true; /* keep going: a later non-digit still makes it malformed */
        } else {
            v = v * 10 + d;
        }
    }
    if (overflow || (negative && v != 0)) {
        return EHK_OUT_OF_RANGE;
    }
    u128_to_be(v, out);
    return EHK_OK;
}

/* A table entry as the KCL reads it, worked out once per entry however many records use it. */
typedef struct resolved_key {
    const unsigned char *text; /* a partition key as a Java String holds it, in UTF-8; never NULL */
    uint32_t len;              /* inputs are at most DECODE_MAX_BYTES */
    bool has_text, has_hash;
    unsigned char parsed; /* explicit hash keys: an ehk_parse_t */
    unsigned char hash_key[16];
} resolved_key_t;

/* The KCL's (int) cast of a uint64 index: valid when it lands in 0 .. n-1. */
static bool java_index(uint64_t index, size_t n, size_t *out)
{
    int32_t i = (int32_t)(uint32_t)index;
    if (i < 0 || (size_t)i >= n) {
        return false;
    }
    *out = (size_t)i;
    return true;
}

static const unsigned char empty[1] = {0};

/* The partition key text of table entry i (NULL when out of memory). */
static resolved_key_t *resolve_pk(resolved_key_t *keys, const ProtobufCBinaryData *table, size_t i,
                                  arena_t *ar)
{
    resolved_key_t *k = &keys[i];
    if (!k->has_text) {
        k->text = table[i].len > 0 ? table[i].data : empty;
        k->len = (uint32_t)table[i].len;
        if (utf8_chars(k->text, k->len) < 0) {
            unsigned char *fixed = arena_alloc(ar, table[i].len * 3);
            if (fixed == NULL) {
                return NULL;
            }
            k->len = (uint32_t)utf8_replace_invalid(table[i].data, table[i].len, fixed);
            k->text = fixed;
        }
        k->has_text = true;
    }
    return k;
}

static const unsigned char *pk_hash_key(resolved_key_t *k)
{
    if (!k->has_hash) {
        md5(k->text, k->len, k->hash_key);
        k->has_hash = true;
    }
    return k->hash_key;
}

static const resolved_key_t *resolve_ehk(resolved_key_t *keys, const ProtobufCBinaryData *table, size_t i)
{
    resolved_key_t *k = &keys[i];
    if (!k->has_text) {
        k->text = table[i].len > 0 ? table[i].data : empty;
        k->len = (uint32_t)table[i].len;
        k->parsed = (unsigned char)parse_java_integer(k->text, k->len, k->hash_key);
        k->has_text = true;
    }
    return k;
}

static bool in_range(const unsigned char key[16], const unsigned char *start, const unsigned char *end)
{
    return (start == NULL || memcmp(key, start, 16) >= 0) && (end == NULL || memcmp(key, end, 16) <= 0);
}

static int pass_through(const void *data, size_t len, const char *partition_key, size_t pk_len,
                        const char *explicit_hash_key, eddy_agg_visit_fn visit, void *arg)
{
    eddy_user_record_t r = {0};
    r.data = data;
    r.data_len = len;
    r.partition_key = partition_key;
    r.partition_key_len = pk_len;
    r.explicit_hash_key = explicit_hash_key;
    r.explicit_hash_key_len = explicit_hash_key != NULL ? strlen(explicit_hash_key) : 0;
    /* Kinesis has checked the outer keys; an explicit hash key it would not take counts as absent here. */
    if (explicit_hash_key == NULL || parse_java_integer((const unsigned char *)explicit_hash_key,
                                                        r.explicit_hash_key_len, r.hash_key) != EHK_OK) {
        md5(partition_key != NULL ? partition_key : "", partition_key != NULL ? pk_len : 0, r.hash_key);
    }
    return visit(arg, &r);
}

int eddy_agg_decode(const void *data, size_t len, const char *partition_key, size_t pk_len,
                    const char *explicit_hash_key, const unsigned char *shard_start,
                    const unsigned char *shard_end, eddy_agg_visit_fn visit, void *arg)
{
    const unsigned char *bytes = data;
    /* The KCL: magic, then more than 16 bytes (so at least one protobuf byte), then the MD5. */
    if (len < EDDY_AGG_MAGIC_LEN + MD5_LEN + 1 || len > DECODE_MAX_BYTES ||
        memcmp(bytes, agg_magic, EDDY_AGG_MAGIC_LEN) != 0) {
        return pass_through(data, len, partition_key, pk_len, explicit_hash_key, visit, arg);
    }
    const unsigned char *proto = bytes + EDDY_AGG_MAGIC_LEN;
    size_t proto_len = len - EDDY_AGG_OVERHEAD;
    unsigned char digest[MD5_LEN];
    md5(proto, proto_len, digest);
    if (memcmp(digest, proto + proto_len, MD5_LEN) != 0) {
        return pass_through(data, len, partition_key, pk_len, explicit_hash_key, visit, arg);
    }

    alignas(max_align_t) unsigned char first_block[ARENA_STACK_BYTES];
    arena_t ar;
    arena_init(&ar, first_block, sizeof first_block, proto_len);
    ProtobufCAllocator allocator = {arena_alloc, arena_free, &ar};
    int rc = 0;
    EddyKpl__AggregatedRecord *msg = eddy_kpl__aggregated_record__unpack(&allocator, proto_len, proto);
    if (msg == NULL) {
        if (ar.exhausted) {
            rc = EDDY_ERR_NOMEM;
            goto out;
        }
        rc = pass_through(data, len, partition_key, pk_len, explicit_hash_key, visit, arg);
        goto out;
    }

    size_t npk = msg->n_partition_key_table, nehk = msg->n_explicit_hash_key_table;
    resolved_key_t *pks = npk > 0 ? arena_alloc(&ar, npk * sizeof *pks) : NULL;
    resolved_key_t *ehks = nehk > 0 ? arena_alloc(&ar, nehk * sizeof *ehks) : NULL;
    if ((npk > 0 && pks == NULL) || (nehk > 0 && ehks == NULL)) {
        rc = EDDY_ERR_NOMEM;
        goto out;
    }
    if (npk > 0) {
        memset(pks, 0, npk * sizeof *pks);
    }
    if (nehk > 0) {
        memset(ehks, 0, nehk * sizeof *ehks);
    }

    /* Every record is judged before the first visit, in the KCL's order: the records before the first
     * exception are kept, unless one of them is outside the shard, which drops them all. */
    size_t keep = 0;
    for (; keep < msg->n_records; keep++) {
        const EddyKpl__Record *r = msg->records[keep];
        size_t i;
        if (!java_index(r->partition_key_index, npk, &i)) {
            break;
        }
        resolved_key_t *pk = resolve_pk(pks, msg->partition_key_table, i, &ar);
        if (pk == NULL) {
            rc = EDDY_ERR_NOMEM;
            goto out;
        }
        const unsigned char *hash_key;
        if (r->has_explicit_hash_key_index) {
            if (!java_index(r->explicit_hash_key_index, nehk, &i)) {
                break;
            }
            const resolved_key_t *ehk = resolve_ehk(ehks, msg->explicit_hash_key_table, i);
            if (ehk->parsed == EHK_MALFORMED) {
                break;
            }
            if (ehk->parsed == EHK_OUT_OF_RANGE) {
                rc = EDDY_AGG_DROPPED;
                goto out;
            }
            hash_key = ehk->hash_key;
        } else {
            hash_key = pk_hash_key(pk);
        }
        if (!in_range(hash_key, shard_start, shard_end)) {
            rc = EDDY_AGG_DROPPED;
            goto out;
        }
    }

    for (size_t n = 0; n < keep; n++) {
        const EddyKpl__Record *r = msg->records[n];
        const resolved_key_t *pk = &pks[(uint32_t)r->partition_key_index];
        eddy_user_record_t u = {0};
        u.data = r->data.len > 0 ? r->data.data : empty;
        u.data_len = r->data.len;
        u.partition_key = (const char *)pk->text;
        u.partition_key_len = pk->len;
        if (r->has_explicit_hash_key_index) {
            const resolved_key_t *ehk = &ehks[(uint32_t)r->explicit_hash_key_index];
            u.explicit_hash_key = (const char *)ehk->text;
            u.explicit_hash_key_len = ehk->len;
            memcpy(u.hash_key, ehk->hash_key, 16);
        } else {
            memcpy(u.hash_key, pk->hash_key, 16);
        }
        u.sub_sequence_number = n;
        u.aggregated = true;
        if ((rc = visit(arg, &u)) != 0) {
            goto out;
        }
    }
out:
    arena_dispose(&ar);
    return rc;
}
