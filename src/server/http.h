/*
 * http: the HTTP front. A fixed set of event-loop threads serve HTTP/1.1 (keep-alive) and cleartext HTTP/2
 * (prior knowledge and Upgrade) on one port. h2o does the protocol work; nothing outside this module and
 * http.c includes h2o, so that the library can be replaced.
 *
 * Threads: http_server_start spawns `threads` loop threads sharing one listening socket; each request is
 * handled on the loop thread that accepted its connection (@thread loop). A request handle is valid from
 * the handler call until http_reply*() has been called on it, and only on that thread.
 */
#ifndef EDDY_SERVER_HTTP_H
#define EDDY_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct http_request http_request_t;
typedef struct http_server http_server_t;

typedef void (*http_handler_fn)(http_request_t *req, void *arg);

typedef struct http_config {
    const char *host;            /* address to bind, e.g. "127.0.0.1" */
    int port;                    /* 0 picks a free port */
    int threads;                 /* event-loop threads, >= 1 */
    size_t max_body;             /* larger request bodies get 413 */
    uint64_t header_timeout_ms;  /* HTTP/1 request (headers + body) timeout */
    uint64_t idle_timeout_ms;    /* HTTP/2 idle timeout */
    const char *tls_cert;        /* PEM certificate chain; with tls_key, also serve HTTPS on tls_port */
    const char *tls_key;         /* PEM private key */
    int tls_port;                /* 0 picks a free port */
    http_handler_fn handler;     /* called for every request */
    void *handler_arg;           /* borrowed, passed to handler */
} http_config_t;

/* Binds and starts serving. On success *out is the server and *bound_port the port in use (and
 * *bound_tls_port the HTTPS port, when TLS is configured; may be NULL otherwise).
 * Returns 0 or -errno (errmsg filled). HTTPS: TLS 1.2 or later, ALPN h2 and http/1.1. */
int http_server_start(const http_config_t *cfg, http_server_t **out, int *bound_port, int *bound_tls_port,
                      char *errmsg, size_t errmsg_len);
/* Stops accepting, lets in-flight requests finish (up to grace_ms), joins the threads, frees. */
void http_server_stop(http_server_t *srv, uint64_t grace_ms);

/* Per-loop figures for the metrics (any thread): up to max loops into out; returns how many loops there are. */
typedef struct http_loop_stats {
    uint64_t connections; /* open connections (HTTP and HTTPS) */
    int64_t lag_us;       /* how long the last probe waited to run on the loop */
} http_loop_stats_t;
size_t http_server_stats(http_server_t *srv, http_loop_stats_t *out, size_t max);
/* Queues a probe on every loop that measures how long the loop takes to get to it (the event-loop lag);
 * call it periodically (any thread). */
void http_server_probe(http_server_t *srv);

/* Request accessors (@thread loop). Returned views are valid until the reply. */
const char *http_request_method(http_request_t *req, size_t *len);
const char *http_request_path(http_request_t *req, size_t *len);
/* Looks up a header by lower-case name. Returns false when absent. */
bool http_request_header(http_request_t *req, const char *name, const char **value, size_t *len);
const char *http_request_body(http_request_t *req, size_t *len);
/* Every request header (names in lower case), at most max; returns how many there are in all. */
typedef struct http_header_view {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} http_header_view_t;
size_t http_request_headers(http_request_t *req, http_header_view_t *out, size_t max);
/* The Host header or HTTP/2 :authority. */
const char *http_request_authority(http_request_t *req, size_t *len);
/* Whether the request came over TLS. */
bool http_request_is_tls(http_request_t *req);
/* 1 for HTTP/1.x, 2 for HTTP/2. */
int http_request_version(http_request_t *req);

/* Adds a response header; name must be a lower-case literal or outlive the request. Copies value. */
void http_add_header(http_request_t *req, const char *name, const char *value, size_t len);
/* Sends the complete response. Takes the contents of body (left empty). The handle is invalid after. */
void http_reply(http_request_t *req, int status, const char *content_type, buf_t *body);
/* Sends a short literal response (copied). */
void http_reply_text(http_request_t *req, int status, const char *content_type, const char *text);

/* The event loop that owns req (valid for the server's lifetime, unlike req). */
typedef struct http_loop http_loop_t;
http_loop_t *http_request_loop(http_request_t *req);
/* Deferred work: runs fn(arg) on that loop thread, soon. Thread-safe; the only http function other threads
 * may call. */
void http_loop_run_later(http_loop_t *loop, void (*fn)(void *arg), void *arg);

/* A guard calls fn(arg) on the loop thread if h2o disposes of req before the reply was sent (the client
 * went away). Cancel it right before replying. */
typedef struct http_guard http_guard_t;
http_guard_t *http_request_guard(http_request_t *req, void (*fn)(void *arg), void *arg);
void http_guard_cancel(http_guard_t *guard);

/* Streaming replies (SubscribeToShard): a response whose body is written piece by piece, over HTTP/1.1
 * chunked transfer encoding or HTTP/2 DATA frames. At most one piece is in h2o's hands at a time; what is
 * written meanwhile waits in a buffer, so http_stream_pending() is the writer's back-pressure signal.
 * Callbacks run on the request's loop thread:
 *   on_drain(arg)  everything written so far has been handed to the socket (a good time to write more);
 *   on_close(arg)  the stream is over (ended and sent, or the client went away); called exactly once, after
 *                  which the stream handle must not be used.
 * The stream lives in the request's memory pool. @thread loop */
typedef struct http_stream http_stream_t;
typedef struct http_stream_events {
    void (*on_drain)(void *arg);
    void (*on_close)(void *arg);
    void *arg;
} http_stream_events_t;
/* Sends the status and headers (with those added by http_add_header) and starts the body. The request
 * handle belongs to the stream afterwards. */
http_stream_t *http_stream_start(http_request_t *req, int status, const char *content_type,
                                 const http_stream_events_t *events);
/* Appends bytes to the body (copied). Ignored once the stream ended or the client went away. */
void http_stream_write(http_stream_t *st, const void *data, size_t len);
/* Bytes written but not yet handed to the socket. */
size_t http_stream_pending(const http_stream_t *st);
/* Ends the body after what was written. */
void http_stream_end(http_stream_t *st);

#endif
