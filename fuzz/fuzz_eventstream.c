/*
 * fuzz_eventstream: evs_decode on arbitrary bytes, as a client reading a SubscribeToShard stream would.
 *
 * The first input byte chooses the mode, the rest is the stream:
 *   bit 0  "reseal": before decoding, every prelude crc and every message crc that the claimed lengths
 *          delimit is made right, so that mutations reach the length and header checks behind the crcs
 *
 * The stream is decoded message after message until the first non-OK result. Invariants (abort on
 * violation): nothing reads outside the input (the copy has exactly its length, under ASan); a decoded
 * message is 16 .. EVS_MAX_MESSAGE bytes, with at most EVS_MAX_HEADERS headers whose names (1..255 bytes),
 * values and payload are views inside it; re-encoding it with evs_encode gives exactly the consumed bytes
 * (every header type is encodable, so this holds for every message); the same bytes cut by one are
 * EVS_INCOMPLETE; a non-OK result consumes nothing.
 */
#include <isa-l/crc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/eventstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                     \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void reseal(unsigned char *p, size_t n)
{
    while (n >= EVS_PRELUDE_SIZE) {
        put_be32(p + 8, crc32_gzip_refl(0, p, 8));
        uint32_t total = be32(p);
        if (total < EVS_MIN_MESSAGE || total > n) {
            return;
        }
        put_be32(p + total - 4, crc32_gzip_refl(0, p, total - 4));
        p += total;
        n -= total;
    }
}

static int inside(const void *view, size_t len, const unsigned char *msg, size_t msg_len)
{
    const unsigned char *v = view;
    return v >= msg && len <= msg_len && (size_t)(v - msg) <= msg_len - len;
}

static void check_message(const unsigned char *p, size_t consumed, const evs_message_t *m, buf_t *out)
{
    CHECK(consumed >= EVS_MIN_MESSAGE && consumed <= EVS_MAX_MESSAGE);
    CHECK(m->nheaders <= EVS_MAX_HEADERS);
    CHECK(inside(m->payload, m->payload_len, p, consumed));
    for (size_t i = 0; i < m->nheaders; i++) {
        const evs_header_t *h = &m->headers[i];
        CHECK(h->name_len >= 1 && h->name_len <= EVS_MAX_NAME);
        CHECK(inside(h->name, h->name_len, p, consumed));
        CHECK((unsigned)h->type <= EVS_UUID);
        if (h->type == EVS_BYTES || h->type == EVS_STRING || h->type == EVS_UUID) {
            CHECK(h->value_len <= EVS_MAX_VALUE);
            CHECK(h->type != EVS_UUID || h->value_len == EVS_UUID_SIZE);
            CHECK(h->value_len == 0 || inside(h->value, h->value_len, p, consumed));
        }
    }

    buf_reset(out);
    CHECK(evs_encode(out, m->headers, m->nheaders, m->payload, m->payload_len) == EVS_OK);
    CHECK(out->len == consumed);
    CHECK(memcmp(out->data, p, consumed) == 0);

    evs_message_t again;
    size_t n = 1;
    CHECK(evs_decode(p, consumed - 1, &again, &n) == EVS_INCOMPLETE);
    CHECK(n == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0];
    size_t n = size - 1;
    unsigned char *copy = malloc(n > 0 ? n : 1);
    CHECK(copy != NULL);
    if (n > 0) {
        memcpy(copy, data + 1, n);
    }
    if (mode & 1) {
        reseal(copy, n);
    }

    static buf_t out = BUF_INIT; /* kept across runs: no allocation per message */
    static evs_message_t msg;
    size_t off = 0;
    for (;;) {
        size_t consumed = 1;
        int rc = evs_decode(copy + off, n - off, &msg, &consumed);
        if (rc != EVS_OK) {
            CHECK(consumed == 0);
            CHECK(rc == EVS_INCOMPLETE || rc == EVS_ERR_PRELUDE_CRC || rc == EVS_ERR_MESSAGE_CRC ||
                  rc == EVS_ERR_LENGTH || rc == EVS_ERR_HEADER || rc == EVS_ERR_TOO_MANY_HEADERS);
            CHECK(rc != EVS_INCOMPLETE || n - off < EVS_MAX_MESSAGE);
            break;
        }
        check_message(copy + off, consumed, &msg, &out);
        off += consumed;
    }
    free(copy);
    return 0;
}
