/*
 * metrics_http: a minimal HTTP/1.1 responder for GET /metrics, driven by the agent's poll loop (no thread of
 * its own). Each connection sends one request (at most 8 KiB of head, within 5 s) and gets one reply,
 * then is closed; at most METRICS_MAX_CLIENTS at a time (more wait in the listen backlog). Anything but
 * GET /metrics gets 404. The body is made by the caller's render function when the request is complete.
 *
 * Why not h2o: the agent needs one plain endpoint polled every few seconds; a poll-driven responder keeps
 * the agent on its one main thread and out of the server's HTTP layer.
 */
#ifndef EDDY_AGENT_METRICS_HTTP_H
#define EDDY_AGENT_METRICS_HTTP_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define METRICS_MAX_CLIENTS 8

typedef struct metrics_http metrics_http_t;
typedef void (*metrics_render_fn)(void *arg, buf_t *out);

/* Listens on "HOST:PORT" (PORT 0: a free one). NULL with the reason in err. */
metrics_http_t *metrics_http_new(const char *listen, metrics_render_fn render, void *arg, char *err, size_t errlen);
void metrics_http_free(metrics_http_t *m);
/* "http://HOST:PORT" as bound. */
const char *metrics_http_url(const metrics_http_t *m);
/* Adds its descriptors to fds (room for 1 + METRICS_MAX_CLIENTS); returns how many. */
size_t metrics_http_fill(metrics_http_t *m, struct pollfd *fds);
/* Handles the n descriptors it filled (their revents). */
void metrics_http_handle(metrics_http_t *m, const struct pollfd *fds, size_t n, int64_t now_ms);

#endif
