/*
 * validate: request validation against the Kinesis service model, with AWS's error shapes.
 *
 * Each operation declares its input members as a table of vfield_t (name, type, required, length or value
 * range, pattern, enum, nested members). validate_input() first checks JSON types (a mismatch is a
 * SerializationException, as the service's deserializer reports it), then every constraint, collecting up
 * to 10 messages in AWS's format:
 *   "2 validation errors detected: Value 'a b' at 'streamName' failed to satisfy constraint: Member must
 *    satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value null at 'shardCount' failed to ..."
 * Unknown members are ignored, as the service does.
 */
#ifndef EDDY_SERVER_VALIDATE_H
#define EDDY_SERVER_VALIDATE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/kinesis_errors.h"

typedef enum vtype {
    VT_STRING,
    VT_INT,
    VT_BOOL,
    VT_TIMESTAMP,
    VT_BLOB,
    VT_STRUCT,
    VT_LIST,
    VT_MAP,
} vtype_t;

typedef enum vpattern {
    PAT_NONE,
    PAT_NAME,         /* [a-zA-Z0-9_.-]+ */
    PAT_STREAM_ARN,   /* arn:aws.*:kinesis:.*:\d{12}:stream/\S+ */
    PAT_CONSUMER_ARN, /* ^(arn):aws.*:kinesis:.*:\d{12}:.*stream\/[a-zA-Z0-9_.-]+\/consumer\/[a-zA-Z0-9_.-]+:[0-9]+ */
    PAT_RESOURCE_ARN, /* arn:aws.*:kinesis:.*:\d{12}:.*stream/\S+ */
    PAT_HASH_KEY,     /* 0|([1-9]\d{0,38}) */
    PAT_SEQUENCE,     /* 0|([1-9]\d{0,128}) */
} vpattern_t;

#define VNONE INT64_MIN

typedef struct vfield {
    const char *name; /* member name as on the wire; NULL ends a member table */
    vtype_t type;
    bool required;
    int64_t min, max; /* length (strings, blobs, lists, maps) or value (ints); VNONE when unbounded */
    vpattern_t pattern;
    const char *const *enums;  /* NULL-terminated allowed values, or NULL */
    const struct vfield *sub;  /* struct: member table; list: element; map: {key, value} */
} vfield_t;

/* Validates root (the request object, may be NULL for an empty body) against fields. Returns KERR_NONE,
 * or KERR_SERIALIZATION / KERR_VALIDATION with the message appended to msg. */
kerr_t validate_input(const cJSON *root, const vfield_t *fields, buf_t *msg);

/* Pattern matchers (exported for tests and for handlers that check values themselves). */
bool pattern_match(vpattern_t p, const char *s, size_t n);
const char *pattern_text(vpattern_t p);

/* Parses a JSON 1.1 timestamp (epoch seconds as a number, or a numeric string) into epoch ms. */
bool timestamp_from_json(const cJSON *v, int64_t *ms);

/* Number of Unicode code points in UTF-8 s (how the service counts string lengths). */
size_t utf8_length(const char *s, size_t n);

#endif
