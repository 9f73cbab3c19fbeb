/*
 * eventstream: encoder and decoder of AWS event stream messages (format in eventstream.h).
 *
 * The encoder validates every header first and then writes the message with one buffer reservation, so a
 * refused message leaves the buffer untouched. The decoder checks the prelude crc before it trusts the
 * lengths, the lengths before it waits for the rest, and the message crc before it parses the headers;
 * every read of a header field is bounded by the end of the header block.
 *
 * The CRC is ISA-L's crc32_gzip_refl: the reflected IEEE CRC-32 with zlib's conventions (crc32_gzip_refl(0,
 * p, n) == crc32(0, p, n)), already a dependency of src/common for CRC-32C and much faster than zlib's.
 */
#include "common/eventstream.h"

#include <isa-l/crc.h>

_Static_assert(EVS_MAX_MESSAGE <= UINT32_MAX, "total_length is a u32");
_Static_assert(EVS_MAX_HEADERS_SIZE <= EVS_MAX_MESSAGE - EVS_MIN_MESSAGE, "headers fit in a message");
_Static_assert(EVS_MAX_VALUE <= UINT16_MAX, "value lengths are u16");
_Static_assert(EVS_MAX_NAME <= UINT8_MAX, "name lengths are u8");

static uint32_t crc32_ieee_of(const unsigned char *p, size_t n)
{
    /* The largest input is EVS_MAX_MESSAGE bytes: one call. */
    return crc32_gzip_refl(0, p, n);
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static unsigned char *put_be(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    }
    return p + n;
}

/* Value size in bytes of a fixed-size type, after the type byte; 0 for booleans, SIZE_MAX for variable or
 * unknown types. */
static size_t fixed_size(evs_type_t type)
{
    switch (type) {
    case EVS_BOOL_TRUE:
    case EVS_BOOL_FALSE:
        return 0;
    case EVS_BYTE:
        return 1;
    case EVS_INT16:
        return 2;
    case EVS_INT32:
        return 4;
    case EVS_INT64:
    case EVS_TIMESTAMP:
        return 8;
    case EVS_UUID:
        return EVS_UUID_SIZE;
    case EVS_BYTES:
    case EVS_STRING:
        break;
    }
    return SIZE_MAX;
}

/* The encoded size of h (name length byte to the end of its value), or 0 when h is invalid. */
static size_t header_size(const evs_header_t *h)
{
    if (h->name == NULL || h->name_len < 1 || h->name_len > EVS_MAX_NAME) {
        return 0;
    }
    size_t base = 1 + h->name_len + 1;
    switch (h->type) {
    case EVS_BOOL_TRUE:
    case EVS_BOOL_FALSE:
        return base;
    case EVS_BYTE:
        return h->integer >= INT8_MIN && h->integer <= INT8_MAX ? base + 1 : 0;
    case EVS_INT16:
        return h->integer >= INT16_MIN && h->integer <= INT16_MAX ? base + 2 : 0;
    case EVS_INT32:
        return h->integer >= INT32_MIN && h->integer <= INT32_MAX ? base + 4 : 0;
    case EVS_INT64:
    case EVS_TIMESTAMP:
        return base + 8;
    case EVS_UUID:
        return h->value != NULL && h->value_len == EVS_UUID_SIZE ? base + EVS_UUID_SIZE : 0;
    case EVS_BYTES:
    case EVS_STRING:
        if (h->value_len > EVS_MAX_VALUE || (h->value == NULL && h->value_len > 0)) {
            return 0;
        }
        return base + 2 + h->value_len;
    }
    return 0;
}

static unsigned char *put_header(unsigned char *p, const evs_header_t *h)
{
    *p++ = (unsigned char)h->name_len;
    memcpy(p, h->name, h->name_len);
    p += h->name_len;
    *p++ = (unsigned char)h->type;
    switch (h->type) {
    case EVS_BOOL_TRUE:
    case EVS_BOOL_FALSE:
        break;
    case EVS_BYTE:
    case EVS_INT16:
    case EVS_INT32:
    case EVS_INT64:
    case EVS_TIMESTAMP:
        /* Two's complement, truncated to the (already range-checked) width. */
        p = put_be(p, (uint64_t)h->integer, fixed_size(h->type));
        break;
    case EVS_UUID:
        memcpy(p, h->value, EVS_UUID_SIZE);
        p += EVS_UUID_SIZE;
        break;
    case EVS_BYTES:
    case EVS_STRING:
        p = put_be(p, h->value_len, 2);
        if (h->value_len > 0) {
            memcpy(p, h->value, h->value_len);
        }
        p += h->value_len;
        break;
    }
    return p;
}

int evs_encode(buf_t *out, const evs_header_t *headers, size_t nheaders, const void *payload,
               size_t payload_len)
{
    if (nheaders > EVS_MAX_HEADERS) {
        return EVS_ERR_TOO_MANY_HEADERS;
    }
    size_t headers_len = 0;
    for (size_t i = 0; i < nheaders; i++) {
        size_t n = header_size(&headers[i]);
        if (n == 0) {
            return EVS_ERR_HEADER;
        }
        headers_len += n; /* at most 32 * (2 + 255 + 1 + 2 + 32767): no overflow */
    }
    if (headers_len > EVS_MAX_HEADERS_SIZE || payload_len > EVS_MAX_MESSAGE - EVS_MIN_MESSAGE - headers_len) {
        return EVS_ERR_LENGTH;
    }
    size_t total = EVS_MIN_MESSAGE + headers_len + payload_len;

    buf_reserve(out, total);
    unsigned char *start = (unsigned char *)out->data + out->len;
    unsigned char *p = put_be(start, total, 4);
    p = put_be(p, headers_len, 4);
    p = put_be(p, crc32_ieee_of(start, 8), 4);
    for (size_t i = 0; i < nheaders; i++) {
        p = put_header(p, &headers[i]);
    }
    if (payload_len > 0) {
        memcpy(p, payload, payload_len);
        p += payload_len;
    }
    put_be(p, crc32_ieee_of(start, total - 4), 4);
    out->len += total;
    return EVS_OK;
}

int evs_encode_event(buf_t *out, const char *event_type, const char *content_type, const void *payload,
                     size_t payload_len)
{
    evs_header_t h[3];
    size_t n = 0;
    h[n++] = evs_string_header(":event-type", event_type);
    if (content_type != NULL) {
        h[n++] = evs_string_header(":content-type", content_type);
    }
    h[n++] = evs_string_header(":message-type", "event");
    return evs_encode(out, h, n, payload, payload_len);
}

int evs_encode_exception(buf_t *out, const char *exception_type, const void *payload, size_t payload_len)
{
    evs_header_t h[3] = {
        evs_string_header(":exception-type", exception_type),
        evs_string_header(":content-type", "application/json"),
        evs_string_header(":message-type", "exception"),
    };
    return evs_encode(out, h, 3, payload, payload_len);
}

/* Sign-extends the low 8*n bits of v. */
static int64_t sign_extend(uint64_t v, size_t n)
{
    if (n == 8) {
        return (int64_t)v;
    }
    uint64_t sign = (uint64_t)1 << (8 * n - 1);
    v &= (sign << 1) - 1;
    return (int64_t)(v ^ sign) - (int64_t)sign;
}

/* Parses the header block [p, end) into msg. */
static int parse_headers(const unsigned char *p, const unsigned char *end, evs_message_t *msg)
{
    msg->nheaders = 0;
    while (p < end) {
        if (msg->nheaders == EVS_MAX_HEADERS) {
            return EVS_ERR_TOO_MANY_HEADERS;
        }
        evs_header_t *h = &msg->headers[msg->nheaders];
        /* name_len, the name and the type byte */
        size_t name_len = *p++;
        if (name_len == 0 || (size_t)(end - p) < name_len + 1) {
            return EVS_ERR_HEADER;
        }
        h->name = (const char *)p;
        h->name_len = name_len;
        p += name_len;
        unsigned type = *p++;
        if (type > EVS_UUID) {
            return EVS_ERR_HEADER;
        }
        h->type = (evs_type_t)type;
        h->integer = 0;
        h->value = NULL;
        h->value_len = 0;
        size_t avail = (size_t)(end - p);
        size_t n = fixed_size(h->type);
        if (n == SIZE_MAX) { /* byte array or string */
            if (avail < 2) {
                return EVS_ERR_HEADER;
            }
            n = (size_t)p[0] << 8 | p[1];
            p += 2;
            if (n > EVS_MAX_VALUE || avail - 2 < n) {
                return EVS_ERR_HEADER;
            }
            h->value = (const char *)p;
            h->value_len = n;
        } else if (avail < n) {
            return EVS_ERR_HEADER;
        } else if (h->type == EVS_UUID) {
            h->value = (const char *)p;
            h->value_len = n;
        } else if (n == 0) {
            h->integer = h->type == EVS_BOOL_TRUE;
        } else {
            uint64_t v = 0;
            for (size_t i = 0; i < n; i++) {
                v = v << 8 | p[i];
            }
            h->integer = sign_extend(v, n);
        }
        p += n;
        msg->nheaders++;
    }
    return EVS_OK;
}

int evs_decode(const unsigned char *data, size_t len, evs_message_t *msg, size_t *consumed)
{
    *consumed = 0;
    if (len < EVS_PRELUDE_SIZE) {
        return EVS_INCOMPLETE;
    }
    if (crc32_ieee_of(data, 8) != get_be32(data + 8)) {
        return EVS_ERR_PRELUDE_CRC;
    }
    uint32_t total = get_be32(data);
    uint32_t headers_len = get_be32(data + 4);
    if (total < EVS_MIN_MESSAGE || total > EVS_MAX_MESSAGE || headers_len > EVS_MAX_HEADERS_SIZE ||
        headers_len > total - EVS_MIN_MESSAGE) {
        return EVS_ERR_LENGTH;
    }
    if (len < total) {
        return EVS_INCOMPLETE;
    }
    if (crc32_ieee_of(data, total - 4) != get_be32(data + total - 4)) {
        return EVS_ERR_MESSAGE_CRC;
    }
    const unsigned char *headers = data + EVS_PRELUDE_SIZE;
    int rc = parse_headers(headers, headers + headers_len, msg);
    if (rc != EVS_OK) {
        return rc;
    }
    msg->payload = headers + headers_len;
    msg->payload_len = total - EVS_MIN_MESSAGE - headers_len;
    *consumed = total;
    return EVS_OK;
}

const evs_header_t *evs_find(const evs_message_t *msg, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < msg->nheaders; i++) {
        const evs_header_t *h = &msg->headers[i];
        if (h->name_len == n && memcmp(h->name, name, n) == 0) {
            return h;
        }
    }
    return NULL;
}

bool evs_header_is(const evs_header_t *h, const char *s)
{
    size_t n = strlen(s);
    return h != NULL && h->type == EVS_STRING && h->value_len == n && (n == 0 || memcmp(h->value, s, n) == 0);
}

const char *evs_strerror(int code)
{
    switch (code) {
    case EVS_OK:
        return "ok";
    case EVS_INCOMPLETE:
        return "incomplete event stream message";
    case EVS_ERR_PRELUDE_CRC:
        return "event stream prelude checksum mismatch";
    case EVS_ERR_MESSAGE_CRC:
        return "event stream message checksum mismatch";
    case EVS_ERR_LENGTH:
        return "event stream message or headers length out of range";
    case EVS_ERR_HEADER:
        return "malformed event stream header";
    case EVS_ERR_TOO_MANY_HEADERS:
        return "too many event stream headers";
    }
    return "unknown event stream result";
}
