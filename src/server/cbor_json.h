/*
 * cbor_json: the CBOR side of the Kinesis wire protocol (Content-Type: application/x-amz-cbor-1.1) as a
 * translation to and from the JSON the server speaks.
 *
 * A CBOR request body becomes the cJSON tree the same request in JSON would have produced, so that
 * validation and the handlers need not know the difference; a JSON reply (success or error) becomes the CBOR
 * reply body. The mapping (see cbor_json.c for the evidence behind each rule):
 *
 *   request (cbor_to_json)                       reply (json_to_cbor)
 *   map (text keys only) -> object               object -> map (definite length)
 *   text string          -> string               string -> text string, except:
 *   byte string          -> base64 string        member "Data" with a string value -> byte string
 *                                                (base64-decoded; a value that is not strict base64
 *                                                stays a text string)
 *   integer, float       -> number               integral number (|v| <= 2^53) -> integer; others -> double
 *   tag 1 (epoch time)   -> number of seconds    timestamp members (CBOR_JSON_TIMESTAMP_MEMBERS below)
 *                           (|v| >= 1e11 means      holding a number -> tag 1 + integer epoch milliseconds
 *                           milliseconds, as the
 *                           AWS SDKs for Java send)
 *   true, false, null    -> true, false, null    true, false, null -> the same
 *   undefined            -> null                 array -> array (definite length)
 *   array                -> array
 *
 * Definite and indefinite lengths are both accepted. Refused, with a message for the SerializationException
 * the caller sends: a top level other than a map, bytes after the top-level item, truncation, map keys that
 * are not text, text that is not UTF-8 or holds a NUL, NaN or infinity, tags other than 1 (and 55799, the
 * self-describing marker, which is ignored), nesting deeper than CBOR_JSON_MAX_DEPTH, more than
 * CBOR_JSON_MAX_ITEMS data items, and declared lengths larger than what is left of the body. Memory use is
 * bounded by the body size: nothing is allocated from a declared length.
 *
 * Both functions are pure (no shared state) and may run on any thread. Out of memory aborts (server policy).
 */
#ifndef EDDY_SERVER_CBOR_JSON_H
#define EDDY_SERVER_CBOR_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "common/buf.h"

/* Containers (maps, arrays) nested deeper than this are refused; the top-level map is depth 1. */
#define CBOR_JSON_MAX_DEPTH 64
/* At most this many data items (map keys, values, array elements) in one request; a legitimate Kinesis
 * request has a few thousand at most (PutRecords: 500 records of up to 4 members). */
#define CBOR_JSON_MAX_ITEMS 100000
/* Tag 1 values at least this large (in magnitude) are epoch milliseconds, smaller ones epoch seconds. */
#define CBOR_JSON_MILLIS_THRESHOLD 1e11

/* The reply members written as tag 1 timestamps when their value is a number (the Kinesis API's
 * timestamp members, outputs and inputs), NULL-terminated. */
extern const char *const CBOR_JSON_TIMESTAMP_MEMBERS[];

/*
 * Decodes a CBOR request body of len bytes (data: borrowed, only read during the call) into a cJSON tree.
 * An empty body (len 0) yields an empty object, as the JSON protocol treats an empty body.
 *
 * Returns the tree (transferred: the caller frees it with cJSON_Delete), always an object; or NULL when the
 * body is refused, with a short NUL-terminated reason in err (borrowed, errlen bytes, may be truncated;
 * err may be NULL when errlen is 0).
 */
cJSON *cbor_to_json(const void *data, size_t len, char *err, size_t errlen);

/*
 * Converts the JSON text json (len bytes, borrowed, need not be NUL-terminated) of a reply into CBOR,
 * appended to out (borrowed; the caller owns and disposes of it). Empty or all-whitespace JSON (an
 * operation without output) appends nothing.
 *
 * Returns 0, or -EINVAL when json is not one valid JSON value, in which case out is left as it was.
 */
int json_to_cbor(const char *json, size_t len, buf_t *out);

#endif
