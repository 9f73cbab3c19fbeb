/*
 * eddy/client.h: the Kinesis Data Streams API over HTTP, for eddy and for the real service.
 *
 * A client holds a configuration, credentials, a pool of connections (libcurl: HTTP/1.1 keep-alive or
 * HTTP/2, TLS) and one I/O thread that runs every request it has in flight (libcurl's multi interface).
 * Requests are AWS JSON 1.1 (`X-Amz-Target: Kinesis_20131202.<Operation>`), signed with AWS Signature
 * Version 4.
 *
 * Retries: a request that fails with a retriable error (a transport error, a timeout, HTTP 5xx, or an AWS
 * error the Kinesis error table marks retriable: throttling, InternalFailure, ...) is retried by the
 * client up to `max_retries` times, after an exponential backoff with full jitter (random in
 * [0, min(retry_max_ms, retry_base_ms * 2^attempt)]); other errors are returned at once. Per-record errors
 * inside a successful PutRecords reply are the caller's to handle (the producer retries only those).
 *
 * Threads: every function may be called from any thread. Completion callbacks run on the client's I/O
 * thread: they must not block, and must not call eddy_client_free.
 *
 * Errors: functions return 0 or a negative eddy_err_t (eddy/error.h).
 */
#ifndef EDDY_CLIENT_H
#define EDDY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/error.h"
#include "eddy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ---- */

typedef struct eddy_config eddy_config_t;

/* A configuration with the defaults, then what the environment says (the AWS tools' variables):
 *   AWS_ENDPOINT_URL_KINESIS, else AWS_ENDPOINT_URL   -> endpoint
 *   AWS_REGION, else AWS_DEFAULT_REGION                -> region
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN -> credentials
 *   AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials) -> credentials when the
 *   variables above are not set.
 * NULL only when out of memory. Free with eddy_config_free (or hand it to eddy_client_new, which takes it). */
EDDY_API eddy_config_t *eddy_config_new(void);
EDDY_API void eddy_config_free(eddy_config_t *cfg);
/* Sets one key (both strings copied). Returns 0, or EDDY_ERR_INVALID with the reason in err. Keys:
 *   endpoint            "https://kinesis.us-east-1.amazonaws.com" (default: from the region) or
 *                       "http://127.0.0.1:4567"
 *   region              "us-east-1" (default)
 *   access_key_id, secret_access_key, session_token   explicit credentials (win over the environment)
 *   profile             the shared credentials file's profile (default "default")
 *   credentials_file    path of the shared credentials file
 *   http2               "true" (default for https: endpoints) or "false"; "prior-knowledge" forces
 *                       cleartext HTTP/2 on http: endpoints
 *   max_connections     connections per host (default 24)
 *   request_timeout_ms  whole request (default 6000); connect_timeout_ms (default 6000)
 *   max_retries         retries after the first attempt (default 3)
 *   retry_base_ms, retry_max_ms   backoff (defaults 25 and 2000)
 *   verify_tls          "true" (default) or "false"; ca_file: a PEM bundle to trust instead
 *   user_agent_suffix   appended to the User-Agent
 *   service             "kinesis" (default) or "dynamodb": the AWS JSON API the client speaks
 *                       (X-Amz-Target Kinesis_20131202.* or DynamoDB_20120810.*, the SigV4 service name, the
 *                       default endpoint). Setting "dynamodb" takes the endpoint from AWS_ENDPOINT_URL_DYNAMODB,
 *                       else AWS_ENDPOINT_URL, unless "endpoint" was set. */
EDDY_API int eddy_config_set(eddy_config_t *cfg, const char *key, const char *value, char *err, size_t errlen);

/* ---- the client ---- */

typedef struct eddy_client eddy_client_t;

/* Makes a client; takes ownership of cfg (also on failure). Returns NULL with the reason in err (no
 * credentials, a bad endpoint, or no memory). */
EDDY_API eddy_client_t *eddy_client_new(eddy_config_t *cfg, char *err, size_t errlen);
/* Waits for the requests in flight (their callbacks run), stops the I/O thread and frees the client. */
EDDY_API void eddy_client_free(eddy_client_t *c);

/* The outcome of a call. Views valid during the callback only (or until eddy_response_free for the
 * synchronous call). */
typedef struct eddy_response {
    int err;                 /* EDDY_OK, or an eddy_err_t */
    int http_status;         /* 0 when no reply came */
    const char *body;        /* the reply body (JSON), NUL-terminated; "" when none */
    size_t body_len;
    const char *error_type;  /* EDDY_ERR_SERVICE: the AWS __type ("ProvisionedThroughputExceededException") */
    const char *message;     /* a human-readable reason, never NULL ("" on success) */
    bool retriable;          /* whether the final error was retriable (retries were then exhausted) */
    int attempts;            /* 1 + retries made */
    int64_t latency_us;      /* of the last attempt */
    const char *request_id;  /* x-amzn-RequestId of the last reply, or "" */
} eddy_response_t;

typedef void (*eddy_call_fn)(void *arg, const eddy_response_t *resp);

/* Calls a Kinesis operation asynchronously: operation is its name ("PutRecords"), body its JSON input
 * (copied). done(arg, resp) is called exactly once, on the I/O thread, after the retries. Returns 0, or an
 * error (then done is not called). */
EDDY_API int eddy_client_call_async(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                           eddy_call_fn done, void *arg);
/* The same without copying the body: body is borrowed and must stay valid and unchanged until done has been
 * called (for callers that reuse their request buffers; a 5 MiB copy per request costs page faults). */
EDDY_API int eddy_client_call_async_borrowed(eddy_client_t *c, const char *operation, const char *body,
                                             size_t body_len, eddy_call_fn done, void *arg);
/* The same, waiting for the outcome: *out is the response (free it with eddy_response_free; also on
 * error). Returns resp->err. Must not be called from a completion callback. */
EDDY_API int eddy_client_call(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                     eddy_response_t **out);
EDDY_API void eddy_response_free(eddy_response_t *resp);

/* ---- streaming calls (SubscribeToShard) ---- */

/* A call whose reply is an AWS event stream (application/vnd.amazon.eventstream). */
typedef struct eddy_stream eddy_stream_t;

/* Called on the I/O thread for each event of the reply, in order: event_type is its :event-type header
 * ("initial-response", "SubscribeToShardEvent"), payload its JSON (views valid during the call). Return 0
 * to go on, or 1 to pause the stream: no more events (and, once libcurl's buffer is full, no more reading
 * from the network, which holds the sender back) until eddy_stream_resume. A modeled exception in the
 * stream (":message-type" exception) ends the call with EDDY_ERR_SERVICE and its type. */
typedef int (*eddy_event_fn)(void *arg, const char *event_type, const char *payload, size_t payload_len);

/* Starts a streaming call of `operation` (body copied). Each event goes to on_event; done(arg, resp) is
 * called exactly once when the stream ends (the server closed it: EDDY_OK), failed, or was cancelled
 * (EDDY_ERR_CANCELLED); resp->body is the error reply, if any. Retries (as for other calls) happen only
 * while no event has been delivered. There is no whole-request timeout: the stream lasts as long as the
 * server keeps it open. *out (kept by the caller) is the stream's handle, freed with eddy_stream_free; both
 * arg and the handle must stay valid until done has been called. Returns 0, or an error (then done is not
 * called and *out is NULL). */
EDDY_API int eddy_client_stream_async(eddy_client_t *c, const char *operation, const char *body, size_t body_len,
                                      eddy_event_fn on_event, eddy_call_fn done, void *arg, eddy_stream_t **out);
/* Delivers events again after on_event returned 1. Any thread. */
EDDY_API void eddy_stream_resume(eddy_stream_t *s);
/* Ends the stream early: done follows with EDDY_ERR_CANCELLED (unless it already ended). Any thread. */
EDDY_API void eddy_stream_cancel(eddy_stream_t *s);
/* Releases the caller's handle (cancelling the stream when it still runs; done is still called). */
EDDY_API void eddy_stream_free(eddy_stream_t *s);

/* Where the client sends requests ("http://127.0.0.1:4567"); static for the client's lifetime. */
EDDY_API const char *eddy_client_endpoint(const eddy_client_t *c);

#ifdef __cplusplus
}
#endif

#endif
