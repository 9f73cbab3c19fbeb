/*
 * Unit tests for server/cbor_json: CBOR requests to cJSON trees, JSON replies to CBOR.
 *
 * CBOR inputs and expected outputs are built with a small writer of item heads below, independent of the
 * encoder under test (libcbor's), so that a mistake in one does not hide in the other.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "server/api/api.h"
#include "server/cbor_json.h"
#include "server/validate.h"

/* ---- a CBOR writer for the tests ---- */

enum { MAJ_UINT, MAJ_NEGINT, MAJ_BYTES, MAJ_TEXT, MAJ_ARRAY, MAJ_MAP, MAJ_TAG, MAJ_SIMPLE };

static void put_byte(buf_t *b, unsigned v)
{
    buf_putc(b, (char)(unsigned char)v);
}

static void head(buf_t *b, int major, uint64_t v)
{
    unsigned m = (unsigned)major << 5;
    if (v < 24) {
        put_byte(b, m | (unsigned)v);
    } else if (v <= 0xff) {
        put_byte(b, m | 24);
        put_byte(b, (unsigned)v);
    } else if (v <= 0xffff) {
        put_byte(b, m | 25);
        for (int s = 8; s >= 0; s -= 8) {
            put_byte(b, (unsigned)(v >> s) & 0xff);
        }
    } else if (v <= 0xffffffffu) {
        put_byte(b, m | 26);
        for (int s = 24; s >= 0; s -= 8) {
            put_byte(b, (unsigned)(v >> s) & 0xff);
        }
    } else {
        put_byte(b, m | 27);
        for (int s = 56; s >= 0; s -= 8) {
            put_byte(b, (unsigned)(v >> s) & 0xff);
        }
    }
}

static void text(buf_t *b, const char *s)
{
    head(b, MAJ_TEXT, strlen(s));
    buf_puts(b, s);
}

static void bytes(buf_t *b, const void *p, size_t n)
{
    head(b, MAJ_BYTES, n);
    buf_append(b, p, n);
}

static void double_item(buf_t *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_byte(b, 0xfb);
    for (int s = 56; s >= 0; s -= 8) {
        put_byte(b, (unsigned)(bits >> s) & 0xff);
    }
}

/* Appends raw bytes given in hex ("a1 61 61 01"; spaces ignored). */
static void hex(buf_t *b, const char *h)
{
    while (*h) {
        if (*h == ' ') {
            h++;
            continue;
        }
        unsigned v;
        cr_assert_eq(sscanf(h, "%2x", &v), 1, "bad hex in test: %s", h);
        put_byte(b, v);
        h += 2;
    }
}

/* ---- helpers ---- */

/* Decodes b, which must succeed, and compares with the JSON text expected. */
static void expect_json(const buf_t *b, const char *expected)
{
    char err[128] = "x";
    cJSON *got = cbor_to_json(b->data, b->len, err, sizeof err);
    cr_assert_not_null(got, "refused: %s (expected %s)", err, expected);
    cr_assert_str_eq(err, "", "an error message on success");
    cJSON *want = cJSON_Parse(expected);
    cr_assert_not_null(want, "bad expected JSON in test: %s", expected);
    char *printed = cJSON_PrintUnformatted(got);
    cr_assert(cJSON_Compare(got, want, true), "got %s, expected %s", printed, expected);
    cJSON_free(printed);
    cJSON_Delete(want);
    cJSON_Delete(got);
}

/* Decodes n bytes at p, which must be refused with a message containing why (when not NULL). */
static void expect_refused_n(const void *p, size_t n, const char *why)
{
    char err[128] = "";
    cJSON *got = cbor_to_json(p, n, err, sizeof err);
    if (got != NULL) {
        char *printed = cJSON_PrintUnformatted(got);
        cr_assert_fail("accepted %zu bytes as %s (expected: %s)", n, printed, why ? why : "refusal");
    }
    cr_assert_neq(err[0], '\0', "refused without a message");
    if (why != NULL) {
        cr_assert(strstr(err, why) != NULL, "message '%s' does not say '%s'", err, why);
    }
}

static void expect_refused(const buf_t *b, const char *why)
{
    expect_refused_n(b->data, b->len, why);
}

static void expect_refused_hex(const char *h, const char *why)
{
    buf_t b = BUF_INIT;
    hex(&b, h);
    expect_refused(&b, why);
    buf_dispose(&b);
}

/* Converts JSON text (must succeed) and compares the bytes with expected. */
static void expect_cbor(const char *json, const buf_t *expected)
{
    buf_t out = BUF_INIT;
    cr_assert_eq(json_to_cbor(json, strlen(json), &out), 0, "refused %s", json);
    cr_assert_eq(out.len, expected->len, "%s: %zu bytes, expected %zu", json, out.len, expected->len);
    for (size_t i = 0; i < out.len; i++) {
        cr_assert_eq((unsigned char)out.data[i], (unsigned char)expected->data[i],
                     "%s: byte %zu is %02x, expected %02x", json, i, (unsigned char)out.data[i],
                     (unsigned char)expected->data[i]);
    }
    buf_dispose(&out);
}

static void expect_cbor_hex(const char *json, const char *h)
{
    buf_t want = BUF_INIT;
    hex(&want, h);
    expect_cbor(json, &want);
    buf_dispose(&want);
}

/* A PutRecords request with three records, in the shape the Java SDK writes (indefinite maps and arrays) or
 * with definite lengths throughout. */
static void put_records_request(buf_t *b, bool indefinite)
{
    static const char *const pks[] = {"pk-0", "pk-1", "pk-2"};
    static const char *const payloads[] = {"", "a", "hello\0world"};
    static const size_t lens[] = {0, 1, 11};
    indefinite ? put_byte(b, 0xbf) : head(b, MAJ_MAP, 2);
    text(b, "StreamName");
    text(b, "orders");
    text(b, "Records");
    indefinite ? put_byte(b, 0x9f) : head(b, MAJ_ARRAY, 3);
    for (int i = 0; i < 3; i++) {
        indefinite ? put_byte(b, 0xbf) : head(b, MAJ_MAP, i == 2 ? 3 : 2);
        text(b, "Data");
        bytes(b, payloads[i], lens[i]);
        text(b, "PartitionKey");
        text(b, pks[i]);
        if (i == 2) {
            text(b, "ExplicitHashKey");
            text(b, "12345");
        }
        if (indefinite) {
            put_byte(b, 0xff);
        }
    }
    if (indefinite) {
        put_byte(b, 0xff);
        put_byte(b, 0xff);
    }
}

static const char put_records_json[] =
    "{\"StreamName\":\"orders\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"pk-0\"},"
    "{\"Data\":\"YQ==\",\"PartitionKey\":\"pk-1\"},"
    "{\"Data\":\"aGVsbG8Ad29ybGQ=\",\"PartitionKey\":\"pk-2\",\"ExplicitHashKey\":\"12345\"}]}";

/* ---- requests: every type ---- */

Test(cbor_request, integers)
{
    buf_t b = BUF_INIT;
    head(&b, MAJ_MAP, 9);
    static const uint64_t values[] = {0, 23, 24, 255, 256, 65535, 65536, 4294967296ull};
    const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < 8; i++) {
        text(&b, names[i]);
        head(&b, MAJ_UINT, values[i]);
    }
    text(&b, "neg");
    head(&b, MAJ_ARRAY, 5);
    head(&b, MAJ_NEGINT, 0);     /* -1 */
    head(&b, MAJ_NEGINT, 23);    /* -24 */
    head(&b, MAJ_NEGINT, 255);   /* -256 */
    head(&b, MAJ_NEGINT, 65535); /* -65536 */
    head(&b, MAJ_NEGINT, 4294967295ull);
    expect_json(&b, "{\"a\":0,\"b\":23,\"c\":24,\"d\":255,\"e\":256,\"f\":65535,\"g\":65536,\"h\":4294967296,"
                    "\"neg\":[-1,-24,-256,-65536,-4294967296]}");
    buf_dispose(&b);
}

Test(cbor_request, floats_of_every_width)
{
    buf_t b = BUF_INIT;
    head(&b, MAJ_MAP, 3);
    text(&b, "half");
    hex(&b, "f9 3e00"); /* 1.5 */
    text(&b, "single");
    hex(&b, "fa 3fc00000"); /* 1.5 */
    text(&b, "double");
    double_item(&b, -2.25);
    expect_json(&b, "{\"half\":1.5,\"single\":1.5,\"double\":-2.25}");
    buf_dispose(&b);
}

Test(cbor_request, strings_bytes_and_simple_values)
{
    buf_t b = BUF_INIT;
    head(&b, MAJ_MAP, 8);
    text(&b, "s");
    text(&b, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"); /* 2-, 3- and 4-byte UTF-8 */
    text(&b, "empty");
    text(&b, "");
    text(&b, "Data");
    bytes(&b, "\x00\xff\x10", 3);
    text(&b, "nobytes");
    bytes(&b, "", 0);
    text(&b, "t");
    put_byte(&b, 0xf5);
    text(&b, "f");
    put_byte(&b, 0xf4);
    text(&b, "n");
    put_byte(&b, 0xf6);
    text(&b, "u");
    put_byte(&b, 0xf7); /* undefined */
    expect_json(&b, "{\"s\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\",\"empty\":\"\",\"Data\":\"AP8Q\","
                    "\"nobytes\":\"\",\"t\":true,\"f\":false,\"n\":null,\"u\":null}");
    buf_dispose(&b);
}

Test(cbor_request, empty_body_is_an_empty_object)
{
    char err[64] = "x";
    cJSON *got = cbor_to_json("", 0, err, sizeof err);
    cr_assert(cJSON_IsObject(got) && got->child == NULL);
    cr_assert_str_eq(err, "");
    cJSON_Delete(got);
    buf_t b = BUF_INIT;
    hex(&b, "a0");
    expect_json(&b, "{}");
    buf_reset(&b);
    hex(&b, "bf ff");
    expect_json(&b, "{}");
    buf_dispose(&b);
}

Test(cbor_request, nested_containers)
{
    buf_t b = BUF_INIT;
    /* {"a": [1, {"b": [], "c": {}}, [[null]]], "d": {"e": [true]}} with a mix of both length kinds */
    head(&b, MAJ_MAP, 2);
    text(&b, "a");
    head(&b, MAJ_ARRAY, 3);
    head(&b, MAJ_UINT, 1);
    put_byte(&b, 0xbf);
    text(&b, "b");
    head(&b, MAJ_ARRAY, 0);
    text(&b, "c");
    put_byte(&b, 0xbf);
    put_byte(&b, 0xff);
    put_byte(&b, 0xff);
    put_byte(&b, 0x9f);
    head(&b, MAJ_ARRAY, 1);
    put_byte(&b, 0xf6);
    put_byte(&b, 0xff);
    text(&b, "d");
    head(&b, MAJ_MAP, 1);
    text(&b, "e");
    put_byte(&b, 0x9f);
    put_byte(&b, 0xf5);
    put_byte(&b, 0xff);
    expect_json(&b, "{\"a\":[1,{\"b\":[],\"c\":{}},[[null]]],\"d\":{\"e\":[true]}}");
    buf_dispose(&b);
}

Test(cbor_request, put_records_with_three_records_both_length_kinds)
{
    for (int indefinite = 0; indefinite < 2; indefinite++) {
        buf_t b = BUF_INIT;
        put_records_request(&b, indefinite);
        expect_json(&b, put_records_json);

        /* the tree passes the PutRecords model exactly as the JSON request does */
        cJSON *tree = cbor_to_json(b.data, b.len, NULL, 0);
        const api_op_t *op = api_find_op("PutRecords", strlen("PutRecords"));
        cr_assert_not_null(op);
        buf_t msg = BUF_INIT;
        cr_assert_eq(validate_input(tree, op->input, &msg), KERR_NONE, "%s", buf_cstr(&msg));
        buf_dispose(&msg);
        cJSON_Delete(tree);
        buf_dispose(&b);
    }
}

Test(cbor_request, indefinite_length_strings)
{
    buf_t b = BUF_INIT;
    head(&b, MAJ_MAP, 3);
    put_byte(&b, 0x7f); /* an indefinite key: "Stream" "Name" */
    text(&b, "Stream");
    text(&b, "Name");
    put_byte(&b, 0xff);
    put_byte(&b, 0x7f); /* "a" "" "bc", with a 4-byte character split across chunks */
    text(&b, "a");
    text(&b, "");
    head(&b, MAJ_TEXT, 2);
    buf_append(&b, "\xf0\x9f", 2);
    head(&b, MAJ_TEXT, 2);
    buf_append(&b, "\x98\x80", 2);
    put_byte(&b, 0xff);
    text(&b, "Data");
    put_byte(&b, 0x5f); /* bytes "ab" "c" */
    bytes(&b, "ab", 2);
    bytes(&b, "c", 1);
    put_byte(&b, 0xff);
    text(&b, "none");
    hex(&b, "5f ff"); /* no chunks at all */
    expect_json(&b, "{\"StreamName\":\"a\xf0\x9f\x98\x80\",\"Data\":\"YWJj\",\"none\":\"\"}");
    buf_reset(&b);
    hex(&b, "a1 7f ff 7f ff"); /* "" : "" */
    expect_json(&b, "{\"\":\"\"}");
    buf_dispose(&b);
}

Test(cbor_request, self_described_marker_is_ignored)
{
    buf_t b = BUF_INIT;
    hex(&b, "d9 d9f7");
    head(&b, MAJ_MAP, 1);
    text(&b, "a");
    hex(&b, "d9 d9f7");
    head(&b, MAJ_UINT, 1);
    expect_json(&b, "{\"a\":1}");
    buf_dispose(&b);
}

/* ---- requests: timestamps ---- */

static int64_t decoded_timestamp_ms(const buf_t *b)
{
    char err[128];
    cJSON *tree = cbor_to_json(b->data, b->len, err, sizeof err);
    cr_assert_not_null(tree, "%s", err);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(tree, "Timestamp");
    cr_assert(cJSON_IsNumber(ts));
    int64_t ms = 0;
    cr_assert(timestamp_from_json(ts, &ms));
    cJSON_Delete(tree);
    return ms;
}

static void timestamp_request(buf_t *b, void (*value)(buf_t *, const void *), const void *arg)
{
    buf_reset(b);
    head(b, MAJ_MAP, 3);
    text(b, "StreamName");
    text(b, "s");
    text(b, "ShardIteratorType");
    text(b, "AT_TIMESTAMP");
    text(b, "Timestamp");
    head(b, MAJ_TAG, 1);
    value(b, arg);
}

static void uint_value(buf_t *b, const void *arg)
{
    head(b, MAJ_UINT, *(const uint64_t *)arg);
}

static void double_value(buf_t *b, const void *arg)
{
    double_item(b, *(const double *)arg);
}

Test(cbor_request, timestamps_in_milliseconds_as_the_java_sdk_sends_them)
{
    /* captured shape: c1 1b <epoch ms> (aws-sdk-java-v2 SdkCborGenerator) */
    buf_t b = BUF_INIT;
    uint64_t ms = 1700000000123ull;
    timestamp_request(&b, uint_value, &ms);
    cr_assert_eq(decoded_timestamp_ms(&b), 1700000000123);
    expect_json(&b,
                "{\"StreamName\":\"s\",\"ShardIteratorType\":\"AT_TIMESTAMP\",\"Timestamp\":1700000000.123}");
    ms = 1700000000000ull;
    timestamp_request(&b, uint_value, &ms);
    cr_assert_eq(decoded_timestamp_ms(&b), 1700000000000);
    ms = 100000000000ull; /* the threshold itself: 1973-03-03 */
    timestamp_request(&b, uint_value, &ms);
    cr_assert_eq(decoded_timestamp_ms(&b), 100000000000);
    double fms = 1700000000123.0; /* milliseconds in a float */
    timestamp_request(&b, double_value, &fms);
    cr_assert_eq(decoded_timestamp_ms(&b), 1700000000123);

    /* the tree passes GetShardIterator's model */
    cJSON *tree = cbor_to_json(b.data, b.len, NULL, 0);
    const api_op_t *op = api_find_op("GetShardIterator", strlen("GetShardIterator"));
    buf_t msg = BUF_INIT;
    cJSON_AddStringToObject(tree, "ShardId", "shardId-000000000000");
    cr_assert_eq(validate_input(tree, op->input, &msg), KERR_NONE, "%s", buf_cstr(&msg));
    buf_dispose(&msg);
    cJSON_Delete(tree);
    buf_dispose(&b);
}

Test(cbor_request, timestamps_in_seconds_as_rfc_8949_encoders_send_them)
{
    buf_t b = BUF_INIT;
    uint64_t s = 1700000000ull;
    timestamp_request(&b, uint_value, &s);
    cr_assert_eq(decoded_timestamp_ms(&b), 1700000000000);
    double fs = 1700000000.5;
    timestamp_request(&b, double_value, &fs);
    cr_assert_eq(decoded_timestamp_ms(&b), 1700000000500);
    fs = 0.25;
    timestamp_request(&b, double_value, &fs);
    cr_assert_eq(decoded_timestamp_ms(&b), 250);
    /* before 1970: -1.5 s as a negative integer of seconds and as a float */
    buf_reset(&b);
    hex(&b, "a1 69");
    buf_puts(&b, "Timestamp");
    hex(&b, "c1 20"); /* tag 1, -1 */
    cr_assert_eq(decoded_timestamp_ms(&b), -1000);
    buf_dispose(&b);
}

Test(cbor_request, untagged_numbers_stay_as_sent)
{
    /* the JSON protocol's own shape (epoch seconds, untagged) passes through unchanged */
    buf_t b = BUF_INIT;
    head(&b, MAJ_MAP, 1);
    text(&b, "Timestamp");
    double_item(&b, 1700000000.123);
    cr_assert_eq(decoded_timestamp_ms(&b), 1700000000123);
    buf_dispose(&b);
}

/* ---- requests: refused ---- */

/* A prefix of a valid body: refused as truncated, or for declaring more than the prefix holds. */
static void expect_truncated(const buf_t *b, size_t n)
{
    char err[128] = "";
    cJSON *got = cbor_to_json(b->data, n, err, sizeof err);
    cr_assert_null(got, "accepted the first %zu of %zu bytes", n, b->len);
    cr_assert(strstr(err, "truncated") != NULL || strstr(err, "body is shorter") != NULL, "%zu bytes: %s", n,
              err);
}

Test(cbor_request, truncated_at_every_length)
{
    for (int indefinite = 0; indefinite < 2; indefinite++) {
        buf_t b = BUF_INIT;
        put_records_request(&b, indefinite);
        for (size_t n = 1; n < b.len; n++) {
            expect_truncated(&b, n);
        }
        buf_dispose(&b);
    }
    buf_t b = BUF_INIT;
    uint64_t ms = 1700000000123ull;
    timestamp_request(&b, uint_value, &ms);
    for (size_t n = 1; n < b.len; n++) {
        expect_truncated(&b, n);
    }
    buf_dispose(&b);
}

Test(cbor_request, top_level_must_be_a_map)
{
    expect_refused_hex("80", "must be a CBOR map");          /* [] */
    expect_refused_hex("9f ff", "must be a CBOR map");       /* [_ ] */
    expect_refused_hex("01", "must be a CBOR map");          /* 1 */
    expect_refused_hex("20", "must be a CBOR map");          /* -1 */
    expect_refused_hex("61 61", "must be a CBOR map");       /* "a" */
    expect_refused_hex("41 61", "must be a CBOR map");       /* h'61' */
    expect_refused_hex("7f 61 61 ff", "must be a CBOR map"); /* (_ "a") */
    expect_refused_hex("f6", "must be a CBOR map");          /* null */
    expect_refused_hex("f5", "must be a CBOR map");          /* true */
    expect_refused_hex("fb 3ff8000000000000", "must be a CBOR map");
    expect_refused_hex("c1 1a 6553f100", "must be a CBOR map"); /* a timestamp */
}

Test(cbor_request, keys_must_be_text)
{
    expect_refused_hex("a1 01 01", "map keys must be text");
    expect_refused_hex("a1 20 01", "map keys must be text");
    expect_refused_hex("a1 41 61 01", "map keys must be text");
    expect_refused_hex("a1 5f 41 61 ff 01", "map keys must be text");
    expect_refused_hex("a1 80 01", "map keys must be text");
    expect_refused_hex("a1 a0 01", "map keys must be text");
    expect_refused_hex("a1 f6 01", "map keys must be text");
    expect_refused_hex("a1 f5 01", "map keys must be text");
    expect_refused_hex("a1 f9 3c00 01", "map keys must be text");
    expect_refused_hex("a1 c1 01 01", "map keys must be text");
    expect_refused_hex("bf 61 61 01 02 03 ff", "map keys must be text");
    /* and inside nested maps */
    expect_refused_hex("a1 61 61 a1 61 62 a1 01 01", "map keys must be text");
}

Test(cbor_request, trailing_bytes)
{
    expect_refused_hex("a0 00", "after the top-level map");
    expect_refused_hex("a0 a0", "after the top-level map");
    expect_refused_hex("bf ff ff", "after the top-level map");
    expect_refused_hex("a1 61 61 01 ff", "after the top-level map");
    expect_refused_hex("a0 1c", "after the top-level map"); /* even a malformed one */
}

Test(cbor_request, deep_nesting)
{
    /* the top-level map plus 63 arrays: 64 levels, accepted */
    for (int indefinite = 0; indefinite < 2; indefinite++) {
        buf_t b = BUF_INIT;
        hex(&b, "a1 61 61");
        for (int i = 0; i < CBOR_JSON_MAX_DEPTH - 1; i++) {
            put_byte(&b, indefinite ? 0x9f : 0x81);
        }
        put_byte(&b, 0x00);
        for (int i = 0; indefinite && i < CBOR_JSON_MAX_DEPTH - 1; i++) {
            put_byte(&b, 0xff);
        }
        char err[128];
        cJSON *tree = cbor_to_json(b.data, b.len, err, sizeof err);
        cr_assert_not_null(tree, "%s", err);
        cJSON_Delete(tree);
        buf_dispose(&b);
    }
    /* one more level is refused, however it continues */
    buf_t b = BUF_INIT;
    hex(&b, "a1 61 61");
    for (int i = 0; i < CBOR_JSON_MAX_DEPTH; i++) {
        put_byte(&b, 0x81);
    }
    put_byte(&b, 0x00);
    expect_refused(&b, "nesting deeper than 64");
    buf_reset(&b);
    hex(&b, "a1 61 61");
    for (int i = 0; i < 100000; i++) {
        put_byte(&b, 0x9f);
    }
    expect_refused(&b, "nesting deeper than 64");
    buf_dispose(&b);
}

Test(cbor_request, absurd_declared_lengths, .timeout = 10)
{
    /* each would need exabytes; refused at once, without allocating */
    expect_refused_hex("a1 61 61 9b ffffffffffffffff", "declares");
    expect_refused_hex("a1 61 61 9b 7fffffffffffffff 00", "declares");
    expect_refused_hex("a1 61 61 9a ffffffff 00", "declares");
    expect_refused_hex("bb ffffffffffffffff", "declares");
    expect_refused_hex("ba 80000000 61 61", "declares");
    expect_refused_hex("a1 61 61 b9 ffff", "declares");
    expect_refused_hex("a2 61 61 01", "truncated"); /* within bounds, but the body ends */
    expect_refused_hex("a1 61 61 83 01 02", "truncated");
    /* strings: the declared size is more than the body holds */
    expect_refused_hex("a1 61 61 7b ffffffffffffffff", "truncated");
    expect_refused_hex("a1 61 61 5b ffffffffffffffff 00", "truncated");
    expect_refused_hex("a1 61 61 7a 7fffffff 6161", "truncated");
    expect_refused_hex("a1 7b 0000000100000000 61", "truncated");
    expect_refused_hex("a1 61 61 5f 5b ffffffffffffffff ff", "truncated");
}

Test(cbor_request, too_many_items)
{
    /* {"a": [0, 0, ...]}: a few bytes per item under the limit passes, one more item is refused */
    for (int over = 0; over < 2; over++) {
        uint64_t n = CBOR_JSON_MAX_ITEMS - 3 + (uint64_t)over; /* plus the map, its key and the array */
        for (int indefinite = 0; indefinite < 2; indefinite++) {
            buf_t b = BUF_INIT;
            hex(&b, "a1 61 61");
            indefinite ? put_byte(&b, 0x9f) : head(&b, MAJ_ARRAY, n);
            for (uint64_t i = 0; i < n; i++) {
                put_byte(&b, 0x00);
            }
            if (indefinite) {
                put_byte(&b, 0xff);
            }
            char err[128];
            cJSON *tree = cbor_to_json(b.data, b.len, err, sizeof err);
            if (over) {
                cr_assert_null(tree);
                cr_assert(strstr(err, "more than 100000 data items") != NULL, "%s", err);
            } else {
                cr_assert_not_null(tree, "%s", err);
                cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(tree, "a")), (int)n);
            }
            cJSON_Delete(tree);
            buf_dispose(&b);
        }
    }
}

Test(cbor_request, text_must_be_utf8_without_nul)
{
    static const char *const bad[] = {
        "ff",          /* never valid */
        "80",          /* a lone continuation byte */
        "c0 80",       /* overlong NUL */
        "c1 bf",       /* overlong */
        "e0 80 80",    /* overlong */
        "ed a0 80",    /* a UTF-16 surrogate */
        "f4 90 80 80", /* above U+10FFFF */
        "f8 88 80 80 80",
        "c3",    /* cut short */
        "e2 82", /* cut short */
        "c3 28", /* bad continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_t raw = BUF_INIT, b = BUF_INIT;
        hex(&raw, bad[i]);
        /* as a value, as a key, and in an indefinite string */
        hex(&b, "a1 61 61");
        head(&b, MAJ_TEXT, raw.len);
        buf_append(&b, raw.data, raw.len);
        expect_refused(&b, "UTF-8");
        buf_reset(&b);
        head(&b, MAJ_MAP, 1);
        head(&b, MAJ_TEXT, raw.len);
        buf_append(&b, raw.data, raw.len);
        head(&b, MAJ_UINT, 1);
        expect_refused(&b, "UTF-8");
        buf_reset(&b);
        hex(&b, "a1 61 61 7f");
        head(&b, MAJ_TEXT, raw.len);
        buf_append(&b, raw.data, raw.len);
        put_byte(&b, 0xff);
        expect_refused(&b, "UTF-8");
        buf_dispose(&raw);
        buf_dispose(&b);
    }
    expect_refused_hex("a1 61 61 63 61 00 62", "NUL");
    expect_refused_hex("a1 62 61 00 01", "NUL");
    /* the largest code point and the ones around the surrogates are fine */
    buf_t b = BUF_INIT;
    head(&b, MAJ_MAP, 1);
    text(&b, "a");
    text(&b, "\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80");
    expect_json(&b, "{\"a\":\"\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\"}");
    buf_dispose(&b);
}

Test(cbor_request, nan_and_infinity)
{
    expect_refused_hex("a1 61 61 f9 7e00", "NaN");
    expect_refused_hex("a1 61 61 f9 7c00", "NaN");
    expect_refused_hex("a1 61 61 fa 7f800000", "NaN");
    expect_refused_hex("a1 61 61 fb fff0000000000000", "NaN");
    expect_refused_hex("a1 61 61 c1 fb 7ff8000000000000", "NaN");
}

Test(cbor_request, tags)
{
    expect_refused_hex("a1 61 61 c2 41 01", "unsupported CBOR tag 2");     /* bignum */
    expect_refused_hex("a1 61 61 c0 61 78", "unsupported CBOR tag 0");     /* date string */
    expect_refused_hex("a1 61 61 d8 20 61 78", "unsupported CBOR tag 32"); /* URI */
    expect_refused_hex("a1 61 61 c1 61 78", "tag 1 (epoch time) must be followed by a number");
    expect_refused_hex("a1 61 61 c1 80", "tag 1 (epoch time) must be followed by a number");
    expect_refused_hex("a1 61 61 c1 f6", "tag 1 (epoch time) must be followed by a number");
    expect_refused_hex("a1 61 61 c1 c1 01", "tag 1 (epoch time) must be followed by a number");
    expect_refused_hex("a1 61 61 c1 d9 d9f7 01", "unsupported CBOR tag 55799");
    expect_refused_hex("bf 61 61 c1 ff", "tag 1 (epoch time) must be followed by a number");
    expect_refused_hex("a1 61 61 c1", "truncated");
    expect_refused_hex("a1 61 61 7f c1 61 61 ff", "indefinite-length string");
}

Test(cbor_request, malformed_structure)
{
    expect_refused_hex("ff", "break outside");
    expect_refused_hex("a1 61 61 ff", "break outside");
    expect_refused_hex("a1 61 61 81 ff", "break outside");
    expect_refused_hex("bf 61 61 ff", "between a key and its value");
    /* an indefinite string holds definite strings of its own type only */
    expect_refused_hex("a1 61 61 7f 41 61 ff", "indefinite-length string");
    expect_refused_hex("a1 61 61 5f 61 61 ff", "indefinite-length string");
    expect_refused_hex("a1 61 61 7f 7f ff ff", "indefinite-length string");
    expect_refused_hex("a1 61 61 7f 01 ff", "indefinite-length string");
    expect_refused_hex("a1 61 61 7f 80 ff", "indefinite-length string");
    /* reserved and unassigned initial bytes */
    static const char *const reserved[] = {"1c", "3d", "5e",    "7c", "9d", "be",
                                           "dc", "f0", "f8 20", "fc", "ff"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        buf_t b = BUF_INIT;
        hex(&b, "a1 61 61");
        hex(&b, reserved[i]);
        expect_refused(&b, NULL);
        buf_dispose(&b);
    }
}

Test(cbor_request, error_buffer_handling)
{
    /* a short buffer gets a truncated, terminated message; no buffer at all is fine too */
    char err[8];
    memset(err, 'x', sizeof err);
    cr_assert_null(cbor_to_json("\x80", 1, err, sizeof err));
    cr_assert_eq(strlen(err), sizeof err - 1);
    cr_assert_null(cbor_to_json("\x80", 1, NULL, 0));
    char one[1] = {'x'};
    cr_assert_null(cbor_to_json("\x80", 1, one, 1));
    cr_assert_eq(one[0], '\0');
}

/* ---- replies: every type ---- */

Test(cbor_reply, scalars_and_containers)
{
    expect_cbor_hex("{}", "a0");
    expect_cbor_hex("[]", "80");
    expect_cbor_hex("{\"a\":1,\"b\":[true,false,null]}", "a2 6161 01 6162 83 f5 f4 f6");
    expect_cbor_hex("{\"n\":[0,23,24,255,256,65536,4294967296]}",
                    "a1 616e 87 00 17 1818 18ff 190100 1a00010000 1b0000000100000000");
    expect_cbor_hex("[-1,-24,-25,-256,-257,-9007199254740992]",
                    "86 20 37 3818 38ff 390100 3b001fffffffffffff");
    expect_cbor_hex("[1.5,-0.1,1e300]", "83 fb3ff8000000000000 fbbfb999999999999a fb7e37e43c8800759c");
    /* integral but beyond 2^53: not exact as an integer, so a double */
    expect_cbor_hex("[9007199254740994, 1e20]", "82 fb4340000000000001 fb4415af1d78b58c40");
    expect_cbor_hex("[-0]", "81 00");
    expect_cbor_hex("{\"s\":\"h\xc3\xa9\\n\\u00e9\"}", "a1 6173 66 68c3a90ac3a9");
    expect_cbor_hex("\"\"", "60");
    expect_cbor_hex("  {\"a\" : [ ] }\n", "a1 6161 80");
}

Test(cbor_reply, get_records_reply_has_byte_strings_and_millisecond_timestamps)
{
    const char *json =
        "{\"Records\":[{\"SequenceNumber\":\"4959\",\"ApproximateArrivalTimestamp\":1700000000.123,"
        "\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"pk\"},{\"SequenceNumber\":\"4960\","
        "\"ApproximateArrivalTimestamp\":1700000001.000,\"Data\":\"\",\"PartitionKey\":\"pk\","
        "\"EncryptionType\":\"NONE\"}],\"NextShardIterator\":\"AAAA\",\"MillisBehindLatest\":0}";
    buf_t want = BUF_INIT;
    head(&want, MAJ_MAP, 3);
    text(&want, "Records");
    head(&want, MAJ_ARRAY, 2);
    head(&want, MAJ_MAP, 4);
    text(&want, "SequenceNumber");
    text(&want, "4959");
    text(&want, "ApproximateArrivalTimestamp");
    head(&want, MAJ_TAG, 1);
    head(&want, MAJ_UINT, 1700000000123ull);
    text(&want, "Data");
    bytes(&want, "hello", 5);
    text(&want, "PartitionKey");
    text(&want, "pk");
    head(&want, MAJ_MAP, 5);
    text(&want, "SequenceNumber");
    text(&want, "4960");
    text(&want, "ApproximateArrivalTimestamp");
    head(&want, MAJ_TAG, 1);
    head(&want, MAJ_UINT, 1700000001000ull);
    text(&want, "Data");
    bytes(&want, "", 0);
    text(&want, "PartitionKey");
    text(&want, "pk");
    text(&want, "EncryptionType");
    text(&want, "NONE");
    text(&want, "NextShardIterator");
    text(&want, "AAAA"); /* base64-looking, but not Data: stays text */
    text(&want, "MillisBehindLatest");
    head(&want, MAJ_UINT, 0);
    expect_cbor(json, &want);
    buf_dispose(&want);
}

Test(cbor_reply, every_timestamp_member)
{
    for (size_t i = 0; CBOR_JSON_TIMESTAMP_MEMBERS[i] != NULL; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"X\":{\"%s\":1699999999.5}}", CBOR_JSON_TIMESTAMP_MEMBERS[i]);
        buf_t want = BUF_INIT;
        hex(&want, "a1 6158 a1");
        text(&want, CBOR_JSON_TIMESTAMP_MEMBERS[i]);
        head(&want, MAJ_TAG, 1);
        head(&want, MAJ_UINT, 1699999999500ull);
        expect_cbor(json, &want);
        buf_dispose(&want);
    }
    /* whole seconds, as written for StreamCreationTimestamp, and before 1970 */
    expect_cbor_hex("{\"StreamCreationTimestamp\":1700000000}",
                    "a1 77 53747265616d4372656174696f6e54696d657374616d70 c1 1b0000018bcfe56800");
    expect_cbor_hex("{\"StartedAt\":-1.5}", "a1 69 53746172746564 4174 c1 3905db");
    /* not a number, or not a timestamp member: left alone */
    expect_cbor_hex("{\"EndedAt\":\"x\"}", "a1 67 456e646564 4174 61 78");
    expect_cbor_hex("{\"Other\":1.5}", "a1 65 4f74686572 fb3ff8000000000000");
    expect_cbor_hex("[1700000000.123]", "81 fb41d954fc4007df3b");
}

Test(cbor_reply, data_members)
{
    /* any member named Data with a string value, wherever it is */
    expect_cbor_hex("{\"Data\":\"AP8Q\"}", "a1 6444617461 43 00ff10");
    expect_cbor_hex("{\"a\":[{\"b\":{\"Data\":\"YQ==\"}}]}", "a1 6161 81 a1 6162 a1 6444617461 41 61");
    /* not strict base64: stays text rather than failing the reply */
    expect_cbor_hex("{\"Data\":\"YQ=\"}", "a1 6444617461 63 59513d");
    expect_cbor_hex("{\"Data\":\"Y===\"}", "a1 6444617461 64 593d3d3d");
    expect_cbor_hex("{\"Data\":\" YQ=\"}", "a1 6444617461 64 2059513d");
    expect_cbor_hex("{\"Data\":\"héll\"}", "a1 6444617461 65 68c3a96c6c");
    /* a Data that is not a string, and a string "Data" that is not a member */
    expect_cbor_hex("{\"Data\":5}", "a1 6444617461 05");
    expect_cbor_hex("[\"Data\",\"YQ==\"]", "82 6444617461 6459513d3d");
}

Test(cbor_reply, error_replies)
{
    const char *json = "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s under account "
                       "000000000000 not found.\"}";
    buf_t want = BUF_INIT;
    head(&want, MAJ_MAP, 2);
    text(&want, "__type");
    text(&want, "ResourceNotFoundException");
    text(&want, "message");
    text(&want, "Stream s under account 000000000000 not found.");
    expect_cbor(json, &want);
    buf_dispose(&want);
    expect_cbor_hex("{\"__type\":\"SerializationException\"}",
                    "a1 66 5f5f74797065 76 53657269616c697a6174696f6e457863657074696f6e");
}

Test(cbor_reply, empty_replies_and_bad_json)
{
    buf_t out = BUF_INIT;
    buf_puts(&out, "kept");
    cr_assert_eq(json_to_cbor("", 0, &out), 0);
    cr_assert_eq(json_to_cbor(" \n\t\r", 4, &out), 0);
    cr_assert_eq(out.len, 4);
    static const char *const bad[] = {"{", "{\"a\":}", "[1,]", "{} {}", "{}x", "nul", "\"abc", "{\"a\":1}]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(json_to_cbor(bad[i], strlen(bad[i]), &out), -EINVAL, "accepted %s", bad[i]);
        cr_assert_eq(out.len, 4, "changed the buffer on %s", bad[i]);
        cr_assert_eq(memcmp(out.data, "kept", 4), 0);
    }
    /* the length is honoured: no NUL needed, and what follows is not read */
    cr_assert_eq(json_to_cbor("{}garbage", 2, &out), 0);
    cr_assert_eq(out.len, 5);
    cr_assert_eq((unsigned char)out.data[4], 0xa0);
    buf_dispose(&out);
}

/* ---- both ways ---- */

Test(cbor_both, a_request_tree_survives_a_trip_through_the_reply_encoder)
{
    buf_t b = BUF_INIT;
    put_records_request(&b, true);
    cJSON *tree = cbor_to_json(b.data, b.len, NULL, 0);
    cr_assert_not_null(tree);
    char *json = cJSON_PrintUnformatted(tree);
    buf_t again = BUF_INIT;
    cr_assert_eq(json_to_cbor(json, strlen(json), &again), 0);
    /* the definite-length encoding of the same request, byte for byte */
    buf_t definite = BUF_INIT;
    put_records_request(&definite, false);
    cr_assert_eq(again.len, definite.len);
    cr_assert_eq(memcmp(again.data, definite.data, again.len), 0);
    expect_json(&again, put_records_json);
    cJSON_free(json);
    cJSON_Delete(tree);
    buf_dispose(&again);
    buf_dispose(&definite);
    buf_dispose(&b);
}

Test(cbor_both, timestamps_round_trip_in_milliseconds)
{
    /* reply side writes what the Java SDK reads; the request side reads what it writes */
    buf_t out = BUF_INIT;
    const char *json = "{\"Timestamp\":1700000000.123}";
    cr_assert_eq(json_to_cbor(json, strlen(json), &out), 0);
    cr_assert_eq(decoded_timestamp_ms(&out), 1700000000123);
    buf_dispose(&out);
}
