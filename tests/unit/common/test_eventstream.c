/*
 * Unit tests for common/eventstream: round trips of every header type, exact bytes against messages built
 * by hand (CRCs from a bitwise CRC-32 written here, independent of the library's) and against a message
 * from the AWS test suites, decode errors (truncation, bit flips, lying lengths, malformed headers, header
 * count), and incremental decoding of a stream.
 *
 * Inputs to evs_decode are copied into heap blocks of exactly their length, so that AddressSanitizer
 * catches any read past the end.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/eventstream.h"

/* Reflected CRC-32 (polynomial 0xEDB88320), the checksum zlib's crc32 computes; a byte table built bit by
 * bit here, independent of the library's. */
static uint32_t ref_crc32(const void *data, size_t n)
{
    static uint32_t table[256];
    if (table[1] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
            }
            table[i] = c;
        }
    }
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    }
    return ~c;
}

static void put32(buf_t *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    buf_append(b, x, 4);
}

static uint32_t get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void put16(buf_t *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    buf_append(b, x, 2);
}

/* A string header in wire form, built by hand. */
static void hand_string_header(buf_t *b, const char *name, const char *value)
{
    buf_putc(b, (char)strlen(name));
    buf_puts(b, name);
    buf_putc(b, 7);
    put16(b, (uint16_t)strlen(value));
    buf_puts(b, value);
}

/* Appends a message with the given (possibly lying) length fields and correct CRCs over what is written. */
static void hand_frame(buf_t *b, uint32_t total, uint32_t headers_len, const void *headers, size_t hn,
                       const void *payload, size_t pn)
{
    size_t start = b->len;
    put32(b, total);
    put32(b, headers_len);
    put32(b, ref_crc32(b->data + start, 8));
    buf_append(b, headers, hn);
    buf_append(b, payload, pn);
    put32(b, ref_crc32(b->data + start, b->len - start));
}

/* A message whose length fields are right. */
static void hand_message(buf_t *b, const void *headers, size_t hn, const void *payload, size_t pn)
{
    hand_frame(b, (uint32_t)(16 + hn + pn), (uint32_t)hn, headers, hn, payload, pn);
}

/* Decodes a private heap copy of exactly n bytes. The copy is returned in *copy (free it) so that views
 * stay valid; pass copy == NULL to free it at once. */
static int decode_copy(const void *p, size_t n, evs_message_t *msg, size_t *consumed, unsigned char **copy)
{
    unsigned char *c = malloc(n > 0 ? n : 1);
    cr_assert_not_null(c);
    if (n > 0) {
        memcpy(c, p, n);
    }
    int rc = evs_decode(c, n, msg, consumed);
    if (copy != NULL) {
        *copy = c;
    } else {
        free(c);
    }
    return rc;
}

static int decode_rc(const void *p, size_t n)
{
    evs_message_t msg;
    size_t consumed = 99;
    int rc = decode_copy(p, n, &msg, &consumed, NULL);
    if (rc != EVS_OK) {
        cr_assert_eq(consumed, 0, "consumed must be 0 when rc is %d", rc);
    }
    return rc;
}

static void assert_string_header(const evs_message_t *m, const char *name, const char *value)
{
    const evs_header_t *h = evs_find(m, name);
    cr_assert_not_null(h, "header %s missing", name);
    cr_assert(evs_header_is(h, value), "header %s: %.*s, expected %s", name, (int)h->value_len, h->value,
              value);
}

Test(eventstream, reference_crc_is_crc32)
{
    cr_assert_eq(ref_crc32("123456789", 9), 0xCBF43926u);
}

/* The message of the AWS event stream test suites (aws-c-event-stream and the SDKs' parsers): one header
 * content-type: application/json, payload {'foo':'bar'}. Made by AWS's encoder, not by us. */
static const unsigned char aws_vector[] = {
    0x00, 0x00, 0x00, 0x3d, 0x00, 0x00, 0x00, 0x20, 0x07, 0xfd, 0x83, 0x96, 0x0c, 0x63, 0x6f, 0x6e,
    0x74, 0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x07, 0x00, 0x10, 0x61, 0x70, 0x70, 0x6c,
    0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x6a, 0x73, 0x6f, 0x6e, 0x7b, 0x27, 0x66, 0x6f,
    0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0x8d, 0x9c, 0x08, 0xb1,
};

Test(eventstream, aws_test_vector_decodes_and_encodes_identically)
{
    _Static_assert(sizeof aws_vector == 0x3d, "vector length");
    /* Its CRCs agree with the independent CRC-32. */
    cr_assert_eq(ref_crc32(aws_vector, 8), 0x07fd8396u);
    cr_assert_eq(ref_crc32(aws_vector, sizeof aws_vector - 4), 0x8d9c08b1u);

    evs_message_t m;
    size_t consumed;
    unsigned char *copy;
    cr_assert_eq(decode_copy(aws_vector, sizeof aws_vector, &m, &consumed, &copy), EVS_OK);
    cr_assert_eq(consumed, sizeof aws_vector);
    cr_assert_eq(m.nheaders, 1);
    assert_string_header(&m, "content-type", "application/json");
    cr_assert_eq(m.payload_len, 13);
    cr_assert_eq(memcmp(m.payload, "{'foo':'bar'}", 13), 0);
    free(copy);

    buf_t b = BUF_INIT;
    evs_header_t h = evs_string_header("content-type", "application/json");
    cr_assert_eq(evs_encode(&b, &h, 1, "{'foo':'bar'}", 13), EVS_OK);
    cr_assert_eq(b.len, sizeof aws_vector);
    cr_assert_eq(memcmp(b.data, aws_vector, sizeof aws_vector), 0);
    buf_dispose(&b);
}

Test(eventstream, event_has_exact_bytes)
{
    const char *payload = "{\"Records\":[],\"ContinuationSequenceNumber\":\"1\",\"MillisBehindLatest\":0}";
    buf_t hdr = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
    hand_string_header(&hdr, ":event-type", "SubscribeToShardEvent");
    hand_string_header(&hdr, ":content-type", "application/x-amz-json-1.1");
    hand_string_header(&hdr, ":message-type", "event");
    hand_message(&want, hdr.data, hdr.len, payload, strlen(payload));

    /* Header sizes, spelled out: name length byte, name, type byte, value length, value. */
    cr_assert_eq(hdr.len, (1 + 11 + 1 + 2 + 21) + (1 + 13 + 1 + 2 + 26) + (1 + 13 + 1 + 2 + 5));
    cr_assert_eq(want.len, 16 + hdr.len + strlen(payload));

    buf_puts(&got, "prefix"); /* evs_encode appends */
    cr_assert_eq(evs_encode_event(&got, "SubscribeToShardEvent", "application/x-amz-json-1.1", payload,
                                  strlen(payload)),
                 EVS_OK);
    cr_assert_eq(got.len, 6 + want.len);
    cr_assert_eq(memcmp(got.data, "prefix", 6), 0);
    cr_assert_eq(memcmp(got.data + 6, want.data, want.len), 0);

    /* Without a content type the header is left out. */
    buf_reset(&hdr);
    buf_reset(&want);
    buf_reset(&got);
    hand_string_header(&hdr, ":event-type", "initial-response");
    hand_string_header(&hdr, ":message-type", "event");
    hand_message(&want, hdr.data, hdr.len, "{}", 2);
    cr_assert_eq(evs_encode_event(&got, "initial-response", NULL, "{}", 2), EVS_OK);
    cr_assert_eq(got.len, want.len);
    cr_assert_eq(memcmp(got.data, want.data, want.len), 0);

    buf_dispose(&hdr);
    buf_dispose(&want);
    buf_dispose(&got);
}

Test(eventstream, exception_has_exact_bytes)
{
    const char *payload = "{\"message\":\"Shard not found\"}";
    buf_t hdr = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
    hand_string_header(&hdr, ":exception-type", "ResourceNotFoundException");
    hand_string_header(&hdr, ":content-type", "application/json");
    hand_string_header(&hdr, ":message-type", "exception");
    hand_message(&want, hdr.data, hdr.len, payload, strlen(payload));
    cr_assert_eq(evs_encode_exception(&got, "ResourceNotFoundException", payload, strlen(payload)), EVS_OK);
    cr_assert_eq(got.len, want.len);
    cr_assert_eq(memcmp(got.data, want.data, want.len), 0);
    buf_dispose(&hdr);
    buf_dispose(&want);
    buf_dispose(&got);
}

Test(eventstream, empty_message_is_16_bytes)
{
    buf_t b = BUF_INIT;
    cr_assert_eq(evs_encode(&b, NULL, 0, NULL, 0), EVS_OK);
    cr_assert_eq(b.len, 16);
    const unsigned char *p = (const unsigned char *)b.data;
    cr_assert_eq(p[3], 16);
    cr_assert_eq(p[7], 0);
    evs_message_t m;
    size_t consumed;
    cr_assert_eq(decode_copy(b.data, b.len, &m, &consumed, NULL), EVS_OK);
    cr_assert_eq(consumed, 16);
    cr_assert_eq(m.nheaders, 0);
    cr_assert_eq(m.payload_len, 0);
    buf_dispose(&b);
}

Test(eventstream, every_header_type_round_trips)
{
    static char big[EVS_MAX_VALUE];
    for (size_t i = 0; i < sizeof big; i++) {
        big[i] = (char)(i * 7);
    }
    const char uuid[EVS_UUID_SIZE] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, (char)0xf0,
                                      0,    1,    2,    3,    4,    5,    6,    7};
    char name255[EVS_MAX_NAME];
    memset(name255, 'n', sizeof name255);
    const evs_header_t in[] = {
        {"t", 1, EVS_BOOL_TRUE, 0, NULL, 0},
        {"f", 1, EVS_BOOL_FALSE, 0, NULL, 0},
        {"b-", 2, EVS_BYTE, INT8_MIN, NULL, 0},
        {"b+", 2, EVS_BYTE, INT8_MAX, NULL, 0},
        {"b0", 2, EVS_BYTE, -1, NULL, 0},
        {"s-", 2, EVS_INT16, INT16_MIN, NULL, 0},
        {"s+", 2, EVS_INT16, INT16_MAX, NULL, 0},
        {"i-", 2, EVS_INT32, INT32_MIN, NULL, 0},
        {"i+", 2, EVS_INT32, INT32_MAX, NULL, 0},
        {"l-", 2, EVS_INT64, INT64_MIN, NULL, 0},
        {"l+", 2, EVS_INT64, INT64_MAX, NULL, 0},
        {"l1", 2, EVS_INT64, -2, NULL, 0},
        {"ba", 2, EVS_BYTES, 0, "\0\1\2\xff", 4},
        {"b0", 2, EVS_BYTES, 0, NULL, 0},
        {"big", 3, EVS_BYTES, 0, big, sizeof big},
        {"str", 3, EVS_STRING, 0, "h\xc3\xa9llo", 6},
        {"empty", 5, EVS_STRING, 0, "", 0},
        {"ts", 2, EVS_TIMESTAMP, 1700000000123, NULL, 0},
        {"ts-", 3, EVS_TIMESTAMP, -1, NULL, 0},
        {"uuid", 4, EVS_UUID, 0, uuid, EVS_UUID_SIZE},
        {name255, sizeof name255, EVS_STRING, 0, "x", 1},
    };
    const size_t n = sizeof in / sizeof in[0];
    const char payload[] = "pay\0load";

    buf_t b = BUF_INIT;
    cr_assert_eq(evs_encode(&b, in, n, payload, sizeof payload), EVS_OK);
    evs_message_t m;
    size_t consumed;
    unsigned char *copy;
    cr_assert_eq(decode_copy(b.data, b.len, &m, &consumed, &copy), EVS_OK);
    cr_assert_eq(consumed, b.len);
    cr_assert_eq(m.nheaders, n);
    cr_assert_eq(m.payload_len, sizeof payload);
    cr_assert_eq(memcmp(m.payload, payload, sizeof payload), 0);
    for (size_t i = 0; i < n; i++) {
        const evs_header_t *h = &m.headers[i];
        cr_assert_eq(h->name_len, in[i].name_len, "header %zu", i);
        cr_assert_eq(memcmp(h->name, in[i].name, h->name_len), 0, "header %zu", i);
        cr_assert_eq(h->type, in[i].type, "header %zu", i);
        switch (h->type) {
        case EVS_BOOL_TRUE:
            cr_assert_eq(h->integer, 1);
            break;
        case EVS_BOOL_FALSE:
            cr_assert_eq(h->integer, 0);
            break;
        case EVS_BYTE:
        case EVS_INT16:
        case EVS_INT32:
        case EVS_INT64:
        case EVS_TIMESTAMP:
            cr_assert_eq(h->integer, in[i].integer, "header %zu: %lld", i, (long long)h->integer);
            break;
        case EVS_BYTES:
        case EVS_STRING:
        case EVS_UUID:
            cr_assert_eq(h->value_len, in[i].value_len, "header %zu", i);
            cr_assert(h->value_len == 0 || memcmp(h->value, in[i].value, h->value_len) == 0, "header %zu", i);
            /* Views point into the input. */
            cr_assert((const unsigned char *)h->value >= copy &&
                      (const unsigned char *)h->value + h->value_len <= copy + consumed);
            break;
        }
    }

    /* What decodes re-encodes to the same bytes. */
    buf_t again = BUF_INIT;
    cr_assert_eq(evs_encode(&again, m.headers, m.nheaders, m.payload, m.payload_len), EVS_OK);
    cr_assert_eq(again.len, b.len);
    cr_assert_eq(memcmp(again.data, b.data, b.len), 0);

    /* Wire bytes of fixed-width values, spot-checked: "s-" is 80 00, "l1" is ff .. fe (big-endian). */
    const unsigned char *v = (const unsigned char *)m.headers[5].name + 2;
    cr_assert_eq(v[0], EVS_INT16);
    cr_assert_eq(v[1], 0x80);
    cr_assert_eq(v[2], 0x00);
    v = (const unsigned char *)m.headers[11].name + 2;
    cr_assert_eq(v[0], EVS_INT64);
    for (int i = 1; i < 8; i++) {
        cr_assert_eq(v[i], 0xff);
    }
    cr_assert_eq(v[8], 0xfe);
    free(copy);
    buf_dispose(&again);
    buf_dispose(&b);
}

Test(eventstream, encoder_refuses_invalid_headers_and_leaves_the_buffer_alone)
{
    static char big[EVS_MAX_VALUE + 1];
    char name256[EVS_MAX_NAME + 1];
    memset(name256, 'n', sizeof name256);
    const evs_header_t bad[] = {
        {"", 0, EVS_STRING, 0, "x", 1},
        {NULL, 1, EVS_STRING, 0, "x", 1},
        {name256, sizeof name256, EVS_STRING, 0, "x", 1},
        {"v", 1, EVS_STRING, 0, big, sizeof big},
        {"v", 1, EVS_BYTES, 0, big, sizeof big},
        {"v", 1, EVS_STRING, 0, NULL, 3},
        {"v", 1, EVS_BYTE, 128, NULL, 0},
        {"v", 1, EVS_BYTE, -129, NULL, 0},
        {"v", 1, EVS_INT16, 32768, NULL, 0},
        {"v", 1, EVS_INT16, -32769, NULL, 0},
        {"v", 1, EVS_INT32, (int64_t)INT32_MAX + 1, NULL, 0},
        {"v", 1, EVS_INT32, (int64_t)INT32_MIN - 1, NULL, 0},
        {"v", 1, EVS_UUID, 0, "0123456789abcde", 15},
        {"v", 1, EVS_UUID, 0, NULL, 16},
        {"v", 1, (evs_type_t)10, 0, NULL, 0},
    };
    buf_t b = BUF_INIT;
    buf_puts(&b, "keep");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        evs_header_t h[2] = {evs_string_header("ok", "fine"), bad[i]};
        cr_assert_eq(evs_encode(&b, h, 2, "p", 1), EVS_ERR_HEADER, "case %zu", i);
        cr_assert_eq(b.len, 4, "case %zu", i);
    }

    /* More than EVS_MAX_HEADERS headers. */
    evs_header_t many[EVS_MAX_HEADERS + 1];
    for (size_t i = 0; i < EVS_MAX_HEADERS + 1; i++) {
        many[i] = evs_string_header("h", "v");
    }
    cr_assert_eq(evs_encode(&b, many, EVS_MAX_HEADERS + 1, NULL, 0), EVS_ERR_TOO_MANY_HEADERS);
    cr_assert_eq(b.len, 4);
    cr_assert_eq(evs_encode(&b, many, EVS_MAX_HEADERS, NULL, 0), EVS_OK);
    buf_reset(&b);

    /* Headers over 128 KiB: four values of 32767 bytes (4 * 32772 = 131088 bytes). */
    evs_header_t large[4];
    for (size_t i = 0; i < 4; i++) {
        large[i] = (evs_header_t){"a", 1, EVS_BYTES, 0, big, EVS_MAX_VALUE};
    }
    cr_assert_eq(evs_encode(&b, large, 4, NULL, 0), EVS_ERR_LENGTH);
    cr_assert_eq(evs_encode(&b, large, 3, NULL, 0), EVS_OK);
    buf_reset(&b);

    /* A message over 16 MiB (the payload is not read when refused). */
    cr_assert_eq(evs_encode(&b, NULL, 0, "x", EVS_MAX_MESSAGE - 15), EVS_ERR_LENGTH);
    cr_assert_eq(evs_encode(&b, many, 1, "x", EVS_MAX_MESSAGE - 16 - 5), EVS_ERR_LENGTH);
    cr_assert_eq(evs_encode(&b, NULL, 0, "x", SIZE_MAX), EVS_ERR_LENGTH);
    cr_assert_eq(b.len, 0);
    buf_dispose(&b);
}

Test(eventstream, largest_message_round_trips)
{
    size_t pn = EVS_MAX_MESSAGE - 16 - 6; /* one header "h": "v" takes 1 + 1 + 1 + 2 + 1 bytes */
    unsigned char *payload = malloc(pn);
    cr_assert_not_null(payload);
    for (size_t i = 0; i < pn; i++) {
        payload[i] = (unsigned char)(i * 31 + (i >> 12));
    }
    evs_header_t h = evs_string_header("h", "v");
    buf_t b = BUF_INIT;
    cr_assert_eq(evs_encode(&b, &h, 1, payload, pn), EVS_OK);
    cr_assert_eq(b.len, EVS_MAX_MESSAGE);
    cr_assert_eq(ref_crc32(b.data, b.len - 4), get32(b.data + b.len - 4));
    evs_message_t m;
    size_t consumed;
    cr_assert_eq(evs_decode((const unsigned char *)b.data, b.len, &m, &consumed), EVS_OK);
    cr_assert_eq(consumed, EVS_MAX_MESSAGE);
    cr_assert_eq(m.payload_len, pn);
    cr_assert_eq(memcmp(m.payload, payload, pn), 0);
    free(payload);
    buf_dispose(&b);
}

/* A message with headers of several types, for the error tests. */
static void sample(buf_t *b)
{
    const char *uuid = "0123456789abcdef";
    const evs_header_t h[] = {
        evs_string_header(":event-type", "SubscribeToShardEvent"),
        {"n", 1, EVS_INT32, -7, NULL, 0},
        {"t", 1, EVS_BOOL_TRUE, 0, NULL, 0},
        {"u", 1, EVS_UUID, 0, uuid, EVS_UUID_SIZE},
    };
    cr_assert_eq(evs_encode(b, h, sizeof h / sizeof h[0], "{\"Records\":[]}", 14), EVS_OK);
}

Test(eventstream, truncated_at_every_length_is_incomplete)
{
    buf_t b = BUF_INIT;
    sample(&b);
    for (size_t n = 0; n < b.len; n++) {
        cr_assert_eq(decode_rc(b.data, n), EVS_INCOMPLETE, "length %zu of %zu", n, b.len);
    }
    cr_assert_eq(decode_rc(b.data, b.len), EVS_OK);
    buf_dispose(&b);
}

Test(eventstream, every_flipped_bit_is_detected)
{
    buf_t b = BUF_INIT;
    sample(&b);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (char)(1 << bit);
            int want = i < EVS_PRELUDE_SIZE ? EVS_ERR_PRELUDE_CRC : EVS_ERR_MESSAGE_CRC;
            cr_assert_eq(decode_rc(b.data, b.len), want, "byte %zu bit %d", i, bit);
            b.data[i] ^= (char)(1 << bit);
        }
    }
    cr_assert_eq(decode_rc(b.data, b.len), EVS_OK);
    buf_dispose(&b);
}

Test(eventstream, lying_lengths_are_refused)
{
    buf_t hdr = BUF_INIT, b = BUF_INIT;
    hand_string_header(&hdr, "name", "value"); /* 1 + 4 + 1 + 2 + 5 = 13 bytes */
    cr_assert_eq(hdr.len, 13);

    /* total_length below 16, down to 0 (prelude crc right, so the lengths are what is refused). */
    for (uint32_t total = 0; total < 16; total++) {
        buf_reset(&b);
        hand_frame(&b, total, 0, NULL, 0, NULL, 0);
        cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_LENGTH, "total %u", total);
        cr_assert_eq(decode_rc(b.data, 12), EVS_ERR_LENGTH, "total %u, prelude only", total);
    }
    /* total_length over 16 MiB: refused from the prelude alone, without waiting for the bytes. */
    buf_reset(&b);
    hand_frame(&b, EVS_MAX_MESSAGE + 1, 0, NULL, 0, NULL, 0);
    cr_assert_eq(decode_rc(b.data, 12), EVS_ERR_LENGTH);
    buf_reset(&b);
    hand_frame(&b, UINT32_MAX, 0, NULL, 0, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_LENGTH);
    /* headers_length over 128 KiB, in a message that could hold it. */
    buf_reset(&b);
    hand_frame(&b, EVS_MAX_MESSAGE, EVS_MAX_HEADERS_SIZE + 1, NULL, 0, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_LENGTH);
    /* headers_length beyond total_length - 16. */
    buf_reset(&b);
    hand_frame(&b, 16 + 13, 14, hdr.data, hdr.len, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_LENGTH);
    buf_reset(&b);
    hand_frame(&b, 16, 1, NULL, 0, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_LENGTH);
    buf_reset(&b);
    hand_frame(&b, 16, UINT32_MAX, NULL, 0, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_LENGTH);
    /* headers_length ending inside a header (crcs right): every cut point. */
    for (uint32_t cut = 1; cut < 13; cut++) {
        buf_reset(&b);
        hand_frame(&b, 16 + 13, cut, hdr.data, hdr.len, NULL, 0);
        cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_HEADER, "cut %u", cut);
    }
    /* headers_length 0: the header bytes are the payload, which is valid. */
    buf_reset(&b);
    hand_frame(&b, 16 + 13, 0, hdr.data, hdr.len, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_OK);
    /* total_length larger than the bytes that follow: indistinguishable from a partial read. */
    buf_reset(&b);
    hand_frame(&b, 16 + 13 + 100, 13, hdr.data, hdr.len, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_INCOMPLETE);
    /* total_length smaller than the message: the crc is then read from the wrong place. */
    buf_reset(&b);
    hand_frame(&b, 16 + 13 - 1, 12, hdr.data, hdr.len, NULL, 0);
    cr_assert_eq(decode_rc(b.data, b.len), EVS_ERR_MESSAGE_CRC);
    buf_dispose(&hdr);
    buf_dispose(&b);
}

/* Decodes a message whose header block is the given bytes (crcs right). */
static int decode_headers(const void *headers, size_t n)
{
    buf_t b = BUF_INIT;
    hand_message(&b, headers, n, "p", 1);
    int rc = decode_rc(b.data, b.len);
    buf_dispose(&b);
    return rc;
}

Test(eventstream, malformed_headers_are_refused)
{
    /* name length 0 */
    cr_assert_eq(decode_headers("\x00\x07\x00\x01x", 5), EVS_ERR_HEADER);
    /* name running past the block */
    cr_assert_eq(decode_headers("\x05nam", 4), EVS_ERR_HEADER);
    /* name ends the block, no type byte */
    cr_assert_eq(decode_headers("\x01n", 2), EVS_ERR_HEADER);
    /* unknown types 10 and 255 */
    cr_assert_eq(decode_headers("\x01n\x0a", 3), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\xff", 3), EVS_ERR_HEADER);
    /* string: length missing, length cut, value running past the block */
    cr_assert_eq(decode_headers("\x01n\x07", 3), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x07\x00", 4), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x07\x00\x03\x61\x62", 6), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x06\xff\xff", 5), EVS_ERR_HEADER);
    /* fixed-width values cut short */
    cr_assert_eq(decode_headers("\x01n\x02", 3), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x03\x00", 4), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x04\x00\x00\x00", 6), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x05\x00\x00\x00\x00\x00\x00\x00", 10), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x08\x00\x00\x00\x00\x00\x00\x00", 10), EVS_ERR_HEADER);
    cr_assert_eq(decode_headers("\x01n\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 18),
                 EVS_ERR_HEADER);
    /* ... and exactly long enough */
    cr_assert_eq(decode_headers("\x01n\x05\x00\x00\x00\x00\x00\x00\x00\x00", 11), EVS_OK);
    cr_assert_eq(decode_headers("\x01n\x07\x00\x00", 5), EVS_OK);
    cr_assert_eq(decode_headers("\x01n\x00\x01m\x01", 6), EVS_OK);

    /* A value of 32768 bytes (over the spec's 2^15-1) in a block that holds it. */
    buf_t hdr = BUF_INIT;
    buf_append(&hdr, "\x01n\x06\x80\x00", 5);
    for (int i = 0; i < 32768; i++) {
        buf_putc(&hdr, 'x');
    }
    cr_assert_eq(decode_headers(hdr.data, hdr.len), EVS_ERR_HEADER);
    hdr.data[3] = 0x7f;
    hdr.data[4] = (char)0xff;
    cr_assert_eq(decode_headers(hdr.data, hdr.len - 1), EVS_OK);
    buf_dispose(&hdr);
}

Test(eventstream, header_count_is_bounded)
{
    buf_t hdr = BUF_INIT;
    for (int i = 0; i < EVS_MAX_HEADERS; i++) {
        buf_append(&hdr, "\x01h\x00", 3);
    }
    cr_assert_eq(decode_headers(hdr.data, hdr.len), EVS_OK);
    buf_append(&hdr, "\x01h\x00", 3);
    cr_assert_eq(decode_headers(hdr.data, hdr.len), EVS_ERR_TOO_MANY_HEADERS);
    buf_dispose(&hdr);
}

Test(eventstream, find_and_header_is)
{
    buf_t b = BUF_INIT;
    sample(&b);
    evs_message_t m;
    size_t consumed;
    cr_assert_eq(evs_decode((const unsigned char *)b.data, b.len, &m, &consumed), EVS_OK);
    assert_string_header(&m, ":event-type", "SubscribeToShardEvent");
    cr_assert_null(evs_find(&m, ":event-typ"));
    cr_assert_null(evs_find(&m, ":message-type"));
    const evs_header_t *n = evs_find(&m, "n");
    cr_assert_not_null(n);
    cr_assert_eq(n->type, EVS_INT32);
    cr_assert_eq(n->integer, -7);
    cr_assert_not(evs_header_is(n, "-7"));
    cr_assert_not(evs_header_is(NULL, ""));
    cr_assert_not(evs_header_is(evs_find(&m, ":event-type"), "SubscribeToShardEven"));
    buf_dispose(&b);
}

Test(eventstream, stream_decodes_incrementally)
{
    buf_t stream = BUF_INIT;
    cr_assert_eq(evs_encode_event(&stream, "initial-response", "application/json", "{}", 2), EVS_OK);
    size_t first = stream.len;
    cr_assert_eq(
        evs_encode_event(&stream, "SubscribeToShardEvent", "application/json", "{\"Records\":[]}", 14),
        EVS_OK);

    /* Whole stream at once: two messages, then an empty remainder. */
    evs_message_t m;
    size_t consumed;
    unsigned char *copy;
    cr_assert_eq(decode_copy(stream.data, stream.len, &m, &consumed, &copy), EVS_OK);
    cr_assert_eq(consumed, first);
    assert_string_header(&m, ":event-type", "initial-response");
    size_t second;
    cr_assert_eq(evs_decode(copy + first, stream.len - first, &m, &second), EVS_OK);
    cr_assert_eq(first + second, stream.len);
    assert_string_header(&m, ":event-type", "SubscribeToShardEvent");
    assert_string_header(&m, ":message-type", "event");
    cr_assert_eq(evs_decode(copy + stream.len, 0, &m, &consumed), EVS_INCOMPLETE);
    free(copy);

    /* Arriving in chunks of every size: a reader that buffers and decodes what it can. */
    for (size_t chunk = 1; chunk <= stream.len; chunk++) {
        buf_t pending = BUF_INIT;
        size_t fed = 0, done = 0;
        const char *types[2] = {NULL, NULL};
        int got = 0;
        while (fed < stream.len) {
            size_t n = stream.len - fed < chunk ? stream.len - fed : chunk;
            buf_append(&pending, stream.data + fed, n);
            fed += n;
            for (;;) {
                int rc = decode_copy(pending.data + done, pending.len - done, &m, &consumed, &copy);
                if (rc == EVS_INCOMPLETE) {
                    free(copy);
                    break;
                }
                cr_assert_eq(rc, EVS_OK, "chunk %zu", chunk);
                cr_assert_lt(got, 2);
                types[got++] = evs_header_is(evs_find(&m, ":event-type"), "initial-response")
                                   ? "initial-response"
                                   : "SubscribeToShardEvent";
                free(copy);
                done += consumed;
            }
        }
        cr_assert_eq(got, 2, "chunk %zu", chunk);
        cr_assert_eq(done, stream.len);
        cr_assert_str_eq(types[0], "initial-response");
        cr_assert_str_eq(types[1], "SubscribeToShardEvent");
        buf_dispose(&pending);
    }
    buf_dispose(&stream);
}

Test(eventstream, results_have_distinct_descriptions)
{
    const int codes[] = {EVS_OK,         EVS_INCOMPLETE, EVS_ERR_PRELUDE_CRC,     EVS_ERR_MESSAGE_CRC,
                         EVS_ERR_LENGTH, EVS_ERR_HEADER, EVS_ERR_TOO_MANY_HEADERS};
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        if (codes[i] < 0) {
            cr_assert_lt(codes[i], -4095);
        }
        for (size_t j = 0; j < i; j++) {
            cr_assert_str_neq(evs_strerror(codes[i]), evs_strerror(codes[j]));
        }
    }
    cr_assert_str_eq(evs_strerror(-1), "unknown event stream result");
}
