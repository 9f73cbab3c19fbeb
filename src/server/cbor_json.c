/*
 * cbor_json: CBOR request bodies to cJSON trees, JSON reply text to CBOR (see cbor_json.h for the mapping).
 *
 * Why the timestamp and blob rules are what they are (AWS's "x-amz-cbor-1.1" is not documented; this is
 * what the clients that speak it do):
 *   - The AWS SDK for Java v2 (the SDK that uses CBOR for Kinesis by default, as v1 did) writes a timestamp
 *     as tag 1 followed by an integer of epoch *milliseconds* (SdkCborGenerator.writeValue(Instant):
 *     writeTag(1); writeNumber(instant.toEpochMilli())), against RFC 8949, where tag 1 counts seconds
 *     (aws/aws-sdk-java-v2#4661). AwsCborProtocolFactory sets the payload timestamp format to
 *     UNIX_TIMESTAMP_MILLIS for both directions, and the parser ignores the tag and reads the number with
 *     getLongValue()/Long.parseLong: a reply holding seconds decodes as a date in 1970, a float fails
 *     ("For input string: 1.603149588042E9", localstack/localstack#3134, whose capture of real Kinesis shows
 *     integer milliseconds; aws/aws-sdk-java-v2#184 and PR #979 fixed the SDK to read milliseconds).
 *     So replies carry tag 1 + integer milliseconds. Requests may come from encoders that follow the RFC
 *     (seconds, integer or float), so a tag 1 value is read as milliseconds only when its magnitude is at
 *     least 1e11: as seconds that is the year 5138, as milliseconds March 1973; the two readings only
 *     disagree for instants no Kinesis stream holds records for.
 *   - Blobs: the Java SDK writes them with Jackson's writeBinary (a byte string) and reads either a byte
 *     string or a base64 text string. Kinesis has one blob shape, Data (PutRecord, PutRecordsRequestEntry,
 *     Record), so a reply member named Data with a string value is written as a byte string.
 *   - kinesalite 3.3.3 also answers CBOR, but through the node `cbor` encoder with its JSON-shaped objects
 *     (seconds as plain floats, Data as base64 text): that is the 1970 bug above, not a model.
 * Maps and arrays in replies get definite lengths (Jackson reads both kinds; definite is shorter).
 *
 * The decoder drives libcbor's streaming decoder one item head at a time and keeps its own stack, so it
 * never allocates from a declared length (libcbor's cbor_load would preallocate a declared array size) and
 * bounds depth and item count itself. Invariant while decoding: stack[0..depth) are the open containers,
 * each already attached to its parent (or the root); a definite container's `remaining` counts the keys and
 * values it still expects.
 */
#include "server/cbor_json.h"

#include <assert.h>
#include <cbor.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

const char *const CBOR_JSON_TIMESTAMP_MEMBERS[] = {
    "ApproximateArrivalTimestamp",
    "ChannelCreationTimestamp",
    "ConsumerCreationTimestamp",
    "EarliestAllowedEndAt",
    "EndedAt",
    "StartedAt",
    "StreamCreationTimestamp",
    "Timestamp",
    NULL,
};

#define TAG_EPOCH_TIME 1
#define TAG_SELF_DESCRIBED 55799
#define MAX_EXACT_INTEGER 9007199254740992.0 /* 2^53: every integer up to here is exact in a double */

static _Noreturn void out_of_memory(void)
{
    fprintf(stderr, "eddy: out of memory converting CBOR\n");
    abort();
}

static void *check_alloc(void *p)
{
    if (p == NULL) {
        out_of_memory();
    }
    return p;
}

/* ---- requests: CBOR -> cJSON ---- */

typedef struct frame {
    cJSON *node;        /* the object or array being filled (owned by the tree) */
    uint64_t remaining; /* definite only: keys and values (one each) still expected */
    bool indefinite;
    bool is_map;
    char *key; /* map only: a key read, waiting for its value (heap) */
} frame_t;

typedef enum chunked {
    CHUNKED_NONE,
    CHUNKED_TEXT,
    CHUNKED_BYTES,
} chunked_t;

typedef struct decoder {
    cJSON *root;
    frame_t stack[CBOR_JSON_MAX_DEPTH];
    int depth;
    size_t left;       /* bytes from the current item's head to the end of the body */
    size_t items;      /* data items so far (tags and string chunks are not items) */
    bool tagged_time;  /* a tag 1 was read: a number must follow */
    chunked_t chunked; /* inside an indefinite-length string */
    buf_t str;         /* scratch: the string being assembled (raw bytes) */
    buf_t b64;         /* scratch: a byte string in base64 */
    bool done;         /* the top-level map is complete */
    char msg[128];     /* the first error; empty while there is none */
} decoder_t;

static bool failed(const decoder_t *d)
{
    return d->msg[0] != '\0';
}

static void fail(decoder_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(decoder_t *d, const char *fmt, ...)
{
    if (failed(d)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
}

static frame_t *top(decoder_t *d)
{
    return d->depth > 0 ? &d->stack[d->depth - 1] : NULL;
}

/* The next item of the innermost map is a key. */
static bool expects_key(decoder_t *d)
{
    frame_t *f = top(d);
    return f != NULL && f->is_map && f->key == NULL;
}

/* Checks common to every data item (not tags, breaks or string chunks), before it is used. */
static bool begin_item(decoder_t *d, bool is_number)
{
    if (failed(d)) {
        return false;
    }
    if (d->chunked != CHUNKED_NONE) {
        fail(d, "an indefinite-length string may only hold definite strings of its own type");
        return false;
    }
    if (d->tagged_time && !is_number) {
        fail(d, "tag 1 (epoch time) must be followed by a number");
        return false;
    }
    if (++d->items > CBOR_JSON_MAX_ITEMS) {
        fail(d, "more than %d data items", CBOR_JSON_MAX_ITEMS);
        return false;
    }
    return true;
}

static void count_one(frame_t *f)
{
    if (f != NULL && !f->indefinite) {
        f->remaining--;
    }
}

/* Pops every finished definite container; the body is complete when the top-level map is popped. */
static void settle(decoder_t *d)
{
    frame_t *f;
    while ((f = top(d)) != NULL && !f->indefinite && f->remaining == 0) {
        d->depth--;
    }
    if (d->depth == 0 && d->root != NULL) {
        d->done = true;
    }
}

/* Adds a value (transferred) to the innermost container, or makes it the root. */
static bool attach(decoder_t *d, cJSON *item)
{
    frame_t *f = top(d);
    if (f == NULL) {
        if (!cJSON_IsObject(item)) {
            cJSON_Delete(item);
            fail(d, "the body must be a CBOR map");
            return false;
        }
        d->root = item;
        return true;
    }
    if (f->is_map) {
        if (f->key == NULL) {
            cJSON_Delete(item);
            fail(d, "map keys must be text strings");
            return false;
        }
        if (!cJSON_AddItemToObject(f->node, f->key, item)) {
            out_of_memory(); /* it only fails to copy the key */
        }
        free(f->key);
        f->key = NULL;
    } else {
        cJSON_AddItemToArray(f->node, item);
    }
    count_one(f);
    return true;
}

static void put_scalar(decoder_t *d, cJSON *item)
{
    if (attach(d, check_alloc(item))) {
        settle(d);
    }
}

static void put_number(decoder_t *d, double v)
{
    if (!begin_item(d, true)) {
        return;
    }
    if (!isfinite(v)) {
        fail(d, "NaN and infinity have no JSON form");
        return;
    }
    if (d->tagged_time) {
        d->tagged_time = false;
        if (fabs(v) >= CBOR_JSON_MILLIS_THRESHOLD) {
            v /= 1000.0; /* epoch milliseconds, as the AWS SDKs for Java send them */
        }
    }
    put_scalar(d, cJSON_CreateNumber(v));
}

static void open_container(decoder_t *d, bool is_map, bool indefinite, uint64_t count)
{
    if (!begin_item(d, false)) {
        return;
    }
    if (d->depth >= CBOR_JSON_MAX_DEPTH) {
        fail(d, "nesting deeper than %d", CBOR_JSON_MAX_DEPTH);
        return;
    }
    if (!indefinite) {
        /* every key, value or element takes at least one byte */
        if (count > d->left || (is_map && count > d->left / 2)) {
            fail(d, "a %s declares %llu entries but the body is shorter", is_map ? "map" : "array",
                 (unsigned long long)count);
            return;
        }
        if (count * (is_map ? 2 : 1) > CBOR_JSON_MAX_ITEMS - d->items) {
            fail(d, "more than %d data items", CBOR_JSON_MAX_ITEMS);
            return;
        }
    }
    cJSON *node = check_alloc(is_map ? cJSON_CreateObject() : cJSON_CreateArray());
    if (!attach(d, node)) {
        return;
    }
    d->stack[d->depth++] = (frame_t){
        .node = node,
        .remaining = indefinite ? 0 : count * (is_map ? 2 : 1),
        .indefinite = indefinite,
        .is_map = is_map,
        .key = NULL,
    };
    settle(d);
}

/* Returns NULL when s (n bytes) is acceptable as a JSON string, else why not. */
static const char *text_problem(const unsigned char *s, size_t n)
{
    if (memchr(s, '\0', n) != NULL) {
        return "text strings must not contain NUL characters";
    }
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return "text strings must be UTF-8";
        }
        if (n - i - 1 < more) {
            return "text strings must be UTF-8";
        }
        for (size_t k = 1; k <= more; k++) {
            unsigned b = s[i + k];
            if ((b & 0xC0) != 0x80) {
                return "text strings must be UTF-8";
            }
            cp = cp << 6 | (b & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return "text strings must be UTF-8";
        }
        i += more + 1;
    }
    return NULL;
}

/* A complete string (definite, or the chunks of an indefinite one): a map key or a value. */
static void put_string(decoder_t *d, bool text, const unsigned char *s, size_t n)
{
    if (text) {
        const char *problem = text_problem(s, n);
        if (problem != NULL) {
            fail(d, "%s", problem);
            return;
        }
    }
    frame_t *f = top(d);
    if (expects_key(d)) {
        if (!text) {
            fail(d, "map keys must be text strings");
            return;
        }
        f->key = check_alloc(malloc(n + 1));
        memcpy(f->key, s, n);
        f->key[n] = '\0';
        count_one(f);
        return;
    }
    const char *value;
    if (text) {
        if (s != (const unsigned char *)d->str.data) {
            buf_reset(&d->str);
            buf_append(&d->str, s, n);
        }
        value = buf_cstr(&d->str);
    } else {
        buf_reset(&d->b64);
        base64_encode_into(&d->b64, s, n);
        value = buf_cstr(&d->b64);
    }
    put_scalar(d, cJSON_CreateString(value));
}

static void on_string(decoder_t *d, bool text, cbor_data s, size_t n)
{
    chunked_t kind = text ? CHUNKED_TEXT : CHUNKED_BYTES;
    if (d->chunked == kind) {
        buf_append(&d->str, s, n); /* a chunk: bounded by the body, which holds it */
        return;
    }
    if (begin_item(d, false)) {
        put_string(d, text, s, n);
    }
}

static void on_string_start(decoder_t *d, bool text)
{
    if (!begin_item(d, false)) {
        return;
    }
    if (!text && expects_key(d)) {
        fail(d, "map keys must be text strings");
        return;
    }
    d->chunked = text ? CHUNKED_TEXT : CHUNKED_BYTES;
    buf_reset(&d->str);
}

static void on_break(decoder_t *d)
{
    if (failed(d)) {
        return;
    }
    if (d->chunked != CHUNKED_NONE) {
        bool text = d->chunked == CHUNKED_TEXT;
        d->chunked = CHUNKED_NONE;
        /* buf_cstr gives empty strings a block too, so data is never NULL below */
        buf_cstr(&d->str);
        put_string(d, text, (const unsigned char *)d->str.data, d->str.len);
        return;
    }
    frame_t *f = top(d);
    if (d->tagged_time) {
        fail(d, "tag 1 (epoch time) must be followed by a number");
    } else if (f == NULL || !f->indefinite) {
        fail(d, "a break outside an indefinite-length item");
    } else if (f->is_map && f->key != NULL) {
        fail(d, "a map ends between a key and its value");
    } else {
        d->depth--;
        settle(d);
    }
}

static void on_tag(decoder_t *d, uint64_t tag)
{
    if (failed(d)) {
        return;
    }
    if (d->chunked != CHUNKED_NONE) {
        fail(d, "an indefinite-length string may only hold definite strings of its own type");
    } else if (tag == TAG_SELF_DESCRIBED && !d->tagged_time) {
        /* "this is CBOR": says nothing about the value */
    } else if (tag != TAG_EPOCH_TIME) {
        fail(d, "unsupported CBOR tag %llu", (unsigned long long)tag);
    } else if (d->tagged_time) {
        fail(d, "tag 1 (epoch time) must be followed by a number");
    } else if (expects_key(d)) {
        fail(d, "map keys must be text strings");
    } else {
        d->tagged_time = true;
    }
}

/* libcbor callbacks: each forwards to the decoder above. */
static void cb_uint8(void *ctx, uint8_t v)
{
    put_number(ctx, (double)v);
}
static void cb_uint16(void *ctx, uint16_t v)
{
    put_number(ctx, (double)v);
}
static void cb_uint32(void *ctx, uint32_t v)
{
    put_number(ctx, (double)v);
}
static void cb_uint64(void *ctx, uint64_t v)
{
    put_number(ctx, (double)v);
}
/* a negative integer is -1 - n */
static void cb_negint8(void *ctx, uint8_t n)
{
    put_number(ctx, -1.0 - (double)n);
}
static void cb_negint16(void *ctx, uint16_t n)
{
    put_number(ctx, -1.0 - (double)n);
}
static void cb_negint32(void *ctx, uint32_t n)
{
    put_number(ctx, -1.0 - (double)n);
}
static void cb_negint64(void *ctx, uint64_t n)
{
    put_number(ctx, -1.0 - (double)n);
}
static void cb_float(void *ctx, float v)
{
    put_number(ctx, (double)v);
}
static void cb_double(void *ctx, double v)
{
    put_number(ctx, v);
}
static void cb_bytes(void *ctx, cbor_data s, size_t n)
{
    on_string(ctx, false, s, n);
}
static void cb_text(void *ctx, cbor_data s, size_t n)
{
    on_string(ctx, true, s, n);
}
static void cb_bytes_start(void *ctx)
{
    on_string_start(ctx, false);
}
static void cb_text_start(void *ctx)
{
    on_string_start(ctx, true);
}
static void cb_array(void *ctx, size_t n)
{
    open_container(ctx, false, false, n);
}
static void cb_indef_array(void *ctx)
{
    open_container(ctx, false, true, 0);
}
static void cb_map(void *ctx, size_t n)
{
    open_container(ctx, true, false, n);
}
static void cb_indef_map(void *ctx)
{
    open_container(ctx, true, true, 0);
}
static void cb_tag(void *ctx, uint64_t tag)
{
    on_tag(ctx, tag);
}
static void cb_null(void *ctx)
{
    if (begin_item(ctx, false)) {
        put_scalar(ctx, cJSON_CreateNull());
    }
}
static void cb_bool(void *ctx, bool v)
{
    if (begin_item(ctx, false)) {
        put_scalar(ctx, cJSON_CreateBool(v));
    }
}
static void cb_break(void *ctx)
{
    on_break(ctx);
}

static const struct cbor_callbacks callbacks = {
    .uint8 = cb_uint8,
    .uint16 = cb_uint16,
    .uint32 = cb_uint32,
    .uint64 = cb_uint64,
    .negint8 = cb_negint8,
    .negint16 = cb_negint16,
    .negint32 = cb_negint32,
    .negint64 = cb_negint64,
    .byte_string = cb_bytes,
    .byte_string_start = cb_bytes_start,
    .string = cb_text,
    .string_start = cb_text_start,
    .array_start = cb_array,
    .indef_array_start = cb_indef_array,
    .map_start = cb_map,
    .indef_map_start = cb_indef_map,
    .tag = cb_tag,
    .float2 = cb_float,
    .float4 = cb_float,
    .float8 = cb_double,
    .undefined = cb_null, /* JSON has no undefined; Jackson reads it as null too */
    .null = cb_null,
    .boolean = cb_bool,
    .indef_break = cb_break,
};

cJSON *cbor_to_json(const void *data, size_t len, char *err, size_t errlen)
{
    if (errlen > 0) {
        err[0] = '\0';
    }
    if (len == 0) {
        return check_alloc(cJSON_CreateObject());
    }
    decoder_t d = {.root = NULL};
    buf_init(&d.str);
    buf_init(&d.b64);
    const unsigned char *p = data;
    size_t off = 0;
    while (off < len && !failed(&d)) {
        if (d.done) {
            fail(&d, "%zu bytes after the top-level map", len - off);
            break;
        }
        d.left = len - off;
        struct cbor_decoder_result r = cbor_stream_decode(p + off, len - off, &callbacks, &d);
        if (r.status == CBOR_DECODER_NEDATA) {
            fail(&d, "truncated CBOR body");
        } else if (r.status != CBOR_DECODER_FINISHED || r.read == 0) {
            fail(&d, "malformed CBOR at byte %zu (0x%02x is reserved or unsupported)", off, p[off]);
        } else {
            off += r.read;
        }
    }
    if (!failed(&d) && !d.done) {
        fail(&d, "truncated CBOR body");
    }
    for (int i = 0; i < d.depth; i++) {
        free(d.stack[i].key);
    }
    buf_dispose(&d.str);
    buf_dispose(&d.b64);
    if (failed(&d)) {
        cJSON_Delete(d.root);
        if (errlen > 0) {
            snprintf(err, errlen, "%s", d.msg);
        }
        return NULL;
    }
    return d.root;
}

/* ---- replies: JSON -> CBOR ---- */

/* Room for one item head (at most 9 bytes), to be filled by a cbor_encode_* call and committed. */
static unsigned char *head_room(buf_t *out)
{
    buf_reserve(out, 9);
    return (unsigned char *)out->data + out->len;
}

static void commit(buf_t *out, size_t n)
{
    assert(n > 0 && n <= 9);
    out->len += n;
}

static bool is_timestamp_member(const char *name)
{
    for (size_t i = 0; CBOR_JSON_TIMESTAMP_MEMBERS[i] != NULL; i++) {
        if (strcmp(name, CBOR_JSON_TIMESTAMP_MEMBERS[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void put_text(buf_t *out, const char *s, size_t n)
{
    commit(out, cbor_encode_string_start(n, head_room(out), 9));
    buf_append(out, s, n);
}

/* Writes strict base64 s as a byte string; false (out unchanged) when s is not strict base64. */
static bool put_blob(buf_t *out, const char *s, size_t n)
{
    if (n % 4 != 0) {
        return false;
    }
    size_t pad = n > 0 && s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    size_t bytes = n / 4 * 3 - pad;
    size_t start = out->len;
    commit(out, cbor_encode_bytestring_start(bytes, head_room(out), 9));
    buf_reserve(out, n / 4 * 3);
    long got = base64_decode(s, n, (unsigned char *)out->data + out->len);
    if (got < 0 || (size_t)got != bytes) {
        out->len = start;
        return false;
    }
    out->len += bytes;
    return true;
}

static void put_number_value(buf_t *out, double v)
{
    if (v == floor(v) && fabs(v) <= MAX_EXACT_INTEGER) {
        if (v >= 0) {
            commit(out, cbor_encode_uint((uint64_t)v, head_room(out), 9));
        } else {
            commit(out, cbor_encode_negint((uint64_t)(-1.0 - v), head_room(out), 9));
        }
    } else {
        commit(out, cbor_encode_double(v, head_room(out), 9));
    }
}

/* Writes v; name is its member name when v is an object member (borrowed), else NULL. */
static int put_json(buf_t *out, const cJSON *v, const char *name)
{
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        size_t count = 0;
        const cJSON *child;
        cJSON_ArrayForEach(child, v)
        {
            count++;
        }
        bool is_map = cJSON_IsObject(v);
        commit(out, is_map ? cbor_encode_map_start(count, head_room(out), 9)
                           : cbor_encode_array_start(count, head_room(out), 9));
        cJSON_ArrayForEach(child, v)
        {
            if (is_map) {
                put_text(out, child->string, strlen(child->string));
            }
            int rc = put_json(out, child, is_map ? child->string : NULL);
            if (rc < 0) {
                return rc;
            }
        }
        return 0;
    }
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        if (name != NULL && strcmp(name, "Data") == 0 && put_blob(out, v->valuestring, n)) {
            return 0;
        }
        put_text(out, v->valuestring, n);
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        double ms = v->valuedouble * 1000.0;
        if (name != NULL && is_timestamp_member(name) && isfinite(ms) && fabs(ms) <= MAX_EXACT_INTEGER) {
            commit(out, cbor_encode_tag(TAG_EPOCH_TIME, head_room(out), 9));
            put_number_value(out, round(ms));
        } else {
            put_number_value(out, v->valuedouble);
        }
        return 0;
    }
    if (cJSON_IsBool(v)) {
        commit(out, cbor_encode_bool(cJSON_IsTrue(v), head_room(out), 9));
        return 0;
    }
    if (cJSON_IsNull(v)) {
        commit(out, cbor_encode_null(head_room(out), 9));
        return 0;
    }
    return -EINVAL; /* cJSON_Raw or an invalid node: the parser makes neither */
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int json_to_cbor(const char *json, size_t len, buf_t *out)
{
    size_t i = 0;
    while (i < len && is_json_space(json[i])) {
        i++;
    }
    if (i == len) {
        return 0;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (root == NULL) {
        return -EINVAL;
    }
    for (size_t j = (size_t)(end - json); j < len; j++) {
        if (!is_json_space(json[j])) {
            cJSON_Delete(root);
            return -EINVAL;
        }
    }
    size_t start = out->len;
    int rc = put_json(out, root, NULL);
    if (rc < 0) {
        out->len = start;
    }
    cJSON_Delete(root);
    return rc;
}
