/*
 * eddy/error.h: libeddy's error codes. Functions return 0 or one of these (negative); eddy_err_name()
 * names them and eddy_err_retriable() says whether trying again later may succeed.
 */
#ifndef EDDY_ERROR_H
#define EDDY_ERROR_H

#include <stdbool.h>

#include "eddy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum eddy_err {
    EDDY_OK = 0,
    EDDY_ERR_INVALID = -1,     /* a bad argument or configuration value (not retriable) */
    EDDY_ERR_NOMEM = -2,       /* out of memory (libeddy never aborts the process) */
    EDDY_ERR_TRANSPORT = -3,   /* could not connect, or the connection broke (retriable) */
    EDDY_ERR_TIMEOUT = -4,     /* no reply within request_timeout_ms (retriable; the request may have been applied) */
    EDDY_ERR_SERVICE = -5,     /* the service answered with an error: see eddy_response_t (retriable per its type) */
    EDDY_ERR_PROTOCOL = -6,    /* the reply could not be understood */
    EDDY_ERR_CREDENTIALS = -7, /* no credentials found (environment, shared file, or configuration) */
    EDDY_ERR_WOULD_BLOCK = -8, /* the producer's buffer is full and it was told not to block (retriable) */
    EDDY_ERR_CLOSED = -9,      /* the client or producer is shutting down */
    EDDY_ERR_EXPIRED = -10,    /* a record outlived its record_ttl_ms before it could be put */
    EDDY_ERR_TOO_LARGE = -11,  /* a record is larger than the service accepts */
    EDDY_ERR_CANCELLED = -12,  /* the caller cancelled the call (eddy_stream_cancel) */
    EDDY_ERR_LEASE_LOST = -13, /* consumer: this worker no longer holds the shard's lease (a zombie checkpoint) */
    EDDY_ERR_SHUTDOWN = -14,   /* consumer: the worker or the shard's processing is shutting down */
} eddy_err_t;

/* A static name for an error ("EDDY_ERR_TIMEOUT"), and whether trying again may succeed. */
EDDY_API const char *eddy_err_name(int err);
EDDY_API bool eddy_err_retriable(int err);

#ifdef __cplusplus
}
#endif

#endif
