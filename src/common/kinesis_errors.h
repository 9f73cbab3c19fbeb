/*
 * kinesis_errors: the one table of Kinesis API errors (code, wire __type, HTTP status, retriable).
 *
 * The server builds every error reply from it; client code decides whether to retry from it. Add an error
 * here, never spell a __type string anywhere else.
 */
#ifndef EDDY_COMMON_KINESIS_ERRORS_H
#define EDDY_COMMON_KINESIS_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

typedef enum kerr {
    KERR_NONE = 0,
    KERR_VALIDATION,
    KERR_SERIALIZATION,
    KERR_UNKNOWN_OPERATION,
    KERR_INVALID_ARGUMENT,
    KERR_RESOURCE_NOT_FOUND,
    KERR_RESOURCE_IN_USE,
    KERR_LIMIT_EXCEEDED,
    KERR_PROVISIONED_THROUGHPUT_EXCEEDED,
    KERR_EXPIRED_ITERATOR,
    KERR_EXPIRED_NEXT_TOKEN,
    KERR_ACCESS_DENIED,
    KERR_KMS_DISABLED,
    KERR_KMS_INVALID_STATE,
    KERR_KMS_ACCESS_DENIED,
    KERR_KMS_NOT_FOUND,
    KERR_KMS_OPT_IN_REQUIRED,
    KERR_KMS_THROTTLING,
    KERR_INTERNAL_FAILURE,
    KERR_SERVICE_UNAVAILABLE,
    KERR_MISSING_AUTHENTICATION_TOKEN,
    KERR_INCOMPLETE_SIGNATURE,
    KERR_INVALID_SIGNATURE,
    KERR_UNRECOGNIZED_CLIENT,
    KERR_EXPIRED_TOKEN,
    KERR_REQUEST_ENTITY_TOO_LARGE,
    KERR_COUNT_
} kerr_t;

typedef struct kerr_info {
    kerr_t code;
    const char *type; /* the wire __type */
    int http_status;
    bool retriable;
} kerr_info_t;

/* Returns the table row for code (never NULL for a valid code). */
const kerr_info_t *kerr_info(kerr_t code);
/* Finds the row by wire __type (also accepts "prefix#Type" forms); NULL when unknown. */
const kerr_info_t *kerr_by_type(const char *type, size_t len);

#endif
