/*
 * put_parse: a fast, allocation-free reader of PutRecords and PutRecord bodies, the hot path of the server.
 *
 * It accepts only the common, simple shape (an object with string members; Records an array of objects
 * whose members are strings without escape sequences, except PartitionKey which may not have escapes
 * either) and checks exactly what the service model checks for that shape. Anything else, including every
 * invalid request, makes it return false so that the generic path (cJSON + validate.c) handles the request
 * and produces the exact error. Views point into the body.
 */
#ifndef EDDY_SERVER_API_PUT_PARSE_H
#define EDDY_SERVER_API_PUT_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define PUT_RECORDS_MAX 500

typedef struct put_entry_in {
    const char *data; /* base64 text */
    size_t data_len;
    const char *pk;
    size_t pk_len;
    const char *ehk; /* NULL when absent */
    size_t ehk_len;
} put_entry_in_t;

typedef struct put_body {
    const char *stream_name, *stream_arn; /* NULL when absent */
    size_t stream_name_len, stream_arn_len;
    put_entry_in_t *entries; /* caller-provided array of PUT_RECORDS_MAX (1 for PutRecord) */
    size_t count;
} put_body_t;

/* Parses a PutRecords body (single = false) or PutRecord body (single = true) into out. */
bool put_parse_fast(const char *body, size_t len, bool single, put_body_t *out);

#endif
