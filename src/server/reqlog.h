/*
 * reqlog: the request log: one line per request (time, request id, operation, stream, status, error,
 * latency, bytes in and out), as text or as JSON, to stderr or to a file. Off by default: a request then
 * costs one relaxed load here.
 *
 * Text:  2026-11-22T08:31:58.123Z 3f6c...-... PutRecords stream=orders status=200 latency_us=512 in=5120 out=812
 * JSON:  {"time":"2026-11-22T08:31:58.123Z","request_id":"…","operation":"PutRecords","stream":"orders",
 *         "status":200,"error":null,"latency_us":512,"bytes_in":5120,"bytes_out":812}
 *
 * Runtime changes: reqlog_configure switches the mode and the destination while requests are logged
 * (SIGHUP re-reads the settings file, see server.h); a file is opened O_APPEND and reopened on every
 * configure, so that logrotate's rename-then-HUP works. Each line is written with one write(2).
 * Threads: reqlog_write from any thread; reqlog_configure from one thread at a time.
 */
#ifndef EDDY_SERVER_REQLOG_H
#define EDDY_SERVER_REQLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum reqlog_mode {
    REQLOG_OFF,
    REQLOG_TEXT,
    REQLOG_JSON,
} reqlog_mode_t;

typedef struct reqlog reqlog_t;

/* Parses "off", "text" or "json". Returns false for anything else. */
bool reqlog_parse_mode(const char *s, reqlog_mode_t *out);
const char *reqlog_mode_name(reqlog_mode_t mode);

/* A request log that is off. */
reqlog_t *reqlog_new(void);
void reqlog_free(reqlog_t *rl);
/* Sets the mode and the destination (path, or NULL/"" for stderr; borrowed). The file is (re)opened even
 * when nothing changed. Returns 0, or -errno with errmsg filled (the previous settings stay). */
int reqlog_configure(reqlog_t *rl, reqlog_mode_t mode, const char *path, char *errmsg, size_t errmsg_len);
/* Whether lines are being written (cheap; any thread). */
bool reqlog_enabled(const reqlog_t *rl);

typedef struct reqlog_entry {
    int64_t time_ms;         /* wall clock, when the request arrived */
    const char *request_id;  /* borrowed, NUL-terminated */
    const char *operation;   /* "PutRecords", or "GET /metrics" for the other endpoints */
    const char *stream;      /* "" when none */
    int status;              /* HTTP status */
    const char *error;       /* the error's __type, or NULL */
    int64_t latency_us;
    uint64_t bytes_in, bytes_out; /* request and response bodies */
} reqlog_entry_t;

/* Writes one line when enabled. */
void reqlog_write(reqlog_t *rl, const reqlog_entry_t *e);

#endif
