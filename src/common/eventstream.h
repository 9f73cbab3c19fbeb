/*
 * eventstream: the AWS event stream codec (media type application/vnd.amazon.eventstream), the framing of
 * Kinesis SubscribeToShard replies. evs_encode appends messages to a buf_t; evs_decode reads one message
 * from untrusted bytes without allocating and without ever reading outside them.
 *
 * All integers are big-endian. A message (16 .. EVS_MAX_MESSAGE bytes):
 *   offset      size  field
 *   0           4     total_length: of the whole message, this field and the trailing crc included
 *   4           4     headers_length: of the header block (0 .. EVS_MAX_HEADERS_SIZE)
 *   8           4     prelude_crc: CRC-32 (IEEE, as zlib's crc32) of bytes 0..7
 *   12          H     headers, packed one after the other (H = headers_length)
 *   12+H        P     payload (P = total_length - H - 16)
 *   total-4     4     message_crc: CRC-32 of bytes 0 .. total_length-5 (prelude and its crc included)
 *
 * A header:
 *   size  field
 *   1     name_len (1..255)
 *   N     name bytes (by convention UTF-8; not checked)
 *   1     value type, then the value:
 *           0 bool true, 1 bool false  nothing
 *           2 byte                     1 byte, signed
 *           3 int16, 4 int32, 5 int64  2, 4, 8 bytes, signed
 *           6 byte array, 7 string     u16 length (0 .. EVS_MAX_VALUE), then that many bytes
 *           8 timestamp                8 bytes, signed milliseconds since the Unix epoch
 *           9 uuid                     16 bytes
 *
 * Validity rule (what evs_decode accepts, and exactly what evs_encode produces): the prelude crc matches;
 * 16 <= total_length <= EVS_MAX_MESSAGE; headers_length <= EVS_MAX_HEADERS_SIZE and <= total_length - 16;
 * the message crc matches; the header block parses into at most EVS_MAX_HEADERS headers that end exactly at
 * its end, each with a name of 1..255 bytes, a known type and a byte array or string of at most
 * EVS_MAX_VALUE bytes. Header names are not checked for duplicates (the first one wins in evs_find).
 *
 * Recovery rule: there is none within a stream. Messages carry no sync marker, so after an invalid message
 * the rest of the stream cannot be framed; the AWS spec says the stream MUST then be terminated.
 */
#ifndef EDDY_COMMON_EVENTSTREAM_H
#define EDDY_COMMON_EVENTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/buf.h"

#define EVS_PRELUDE_SIZE 12
#define EVS_MIN_MESSAGE 16                  /* prelude + message crc, no headers, no payload */
#define EVS_MAX_MESSAGE (16u * 1024 * 1024) /* total_length */
#define EVS_MAX_HEADERS_SIZE (128u * 1024)  /* headers_length */
#define EVS_MAX_HEADERS 32                  /* headers per message (our limit, not AWS's) */
#define EVS_MAX_NAME 255                    /* header name bytes (at least 1) */
#define EVS_MAX_VALUE 32767                 /* byte array and string values: the spec's 2^15-1 */
#define EVS_UUID_SIZE 16                    /* uuid value bytes */

/* Results. EVS_INCOMPLETE is positive: not an error, more bytes are needed. Errors are in the project
 * range below -4095 (STYLE.md); -4200 .. -4209 belong to this module. */
enum {
    EVS_OK = 0,
    EVS_INCOMPLETE = 1,
    EVS_ERR_PRELUDE_CRC = -4200,      /* the prelude crc does not match: the lengths cannot be trusted */
    EVS_ERR_MESSAGE_CRC = -4201,      /* the message crc does not match */
    EVS_ERR_LENGTH = -4202,           /* total or headers length out of range or inconsistent */
    EVS_ERR_HEADER = -4203,           /* a malformed header (or, to evs_encode, an invalid one) */
    EVS_ERR_TOO_MANY_HEADERS = -4204, /* more than EVS_MAX_HEADERS */
};

typedef enum evs_type {
    EVS_BOOL_TRUE = 0,
    EVS_BOOL_FALSE = 1,
    EVS_BYTE = 2,
    EVS_INT16 = 3,
    EVS_INT32 = 4,
    EVS_INT64 = 5,
    EVS_BYTES = 6,
    EVS_STRING = 7,
    EVS_TIMESTAMP = 8,
    EVS_UUID = 9,
} evs_type_t;

/* One header. Which value field is used depends on type:
 *   EVS_BOOL_TRUE, EVS_BOOL_FALSE       none (evs_decode sets integer to 1 or 0)
 *   EVS_BYTE, INT16, INT32, INT64       integer (evs_encode refuses values outside the type's range)
 *   EVS_TIMESTAMP                       integer, milliseconds since the epoch
 *   EVS_BYTES, EVS_STRING               value, value_len (not NUL-terminated)
 *   EVS_UUID                            value, EVS_UUID_SIZE bytes (value_len is EVS_UUID_SIZE)
 * Pointers are borrowed: by evs_encode for the call; from evs_decode they are views into its input. */
typedef struct evs_header {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    evs_type_t type;
    int64_t integer;
    const char *value;
    size_t value_len;
} evs_header_t;

/* A decoded message: views into the bytes given to evs_decode, valid while those bytes are. */
typedef struct evs_message {
    size_t nheaders;
    evs_header_t headers[EVS_MAX_HEADERS]; /* in wire order */
    const unsigned char *payload;
    size_t payload_len;
} evs_message_t;

/* A string header with NUL-terminated name and value (both borrowed, usually literals). */
static inline evs_header_t evs_string_header(const char *name, const char *value)
{
    evs_header_t h = {name, strlen(name), EVS_STRING, 0, value, strlen(value)};
    return h;
}

/* Appends one message to out. headers (nheaders of them, at most EVS_MAX_HEADERS) and payload are borrowed
 * for the call; headers may be NULL when nheaders is 0, payload when payload_len is 0; neither may point into
 * out. Returns 0, or EVS_ERR_HEADER for an invalid header, EVS_ERR_TOO_MANY_HEADERS, EVS_ERR_LENGTH when the
 * headers or the message would exceed their limits; on error out is unchanged. Aborts on out-of-memory (buf_t
 * policy: server only). */
int evs_encode(buf_t *out, const evs_header_t *headers, size_t nheaders, const void *payload,
               size_t payload_len);

/* An event: headers :event-type, :content-type (left out when content_type is NULL) and
 * :message-type "event", in that order. Same contract as evs_encode. */
int evs_encode_event(buf_t *out, const char *event_type, const char *content_type, const void *payload,
                     size_t payload_len);

/* A modeled error: headers :exception-type, :content-type "application/json" and :message-type
 * "exception", in that order; the payload is the JSON error body. Same contract as evs_encode. */
int evs_encode_exception(buf_t *out, const char *exception_type, const void *payload, size_t payload_len);

/* Decodes the message at the start of data (len bytes, untrusted). Returns
 *   EVS_OK          *msg holds the message (views into data, valid while data is), *consumed its length;
 *   EVS_INCOMPLETE  data is a valid beginning but shorter than the message: call again with more bytes
 *                   (the prelude, once 12 bytes are there, has already been checked);
 *   EVS_ERR_*       data does not begin with a valid message; the stream cannot be resynchronized.
 * On anything but EVS_OK, *consumed is 0 and *msg is unspecified. */
int evs_decode(const unsigned char *data, size_t len, evs_message_t *msg, size_t *consumed);

/* The first header named name (NUL-terminated, borrowed), or NULL. */
const evs_header_t *evs_find(const evs_message_t *msg, const char *name);

/* True when h is a string header whose value equals s (NUL-terminated). */
bool evs_header_is(const evs_header_t *h, const char *s);

/* A static description of an EVS_* result. */
const char *evs_strerror(int code);

#endif
