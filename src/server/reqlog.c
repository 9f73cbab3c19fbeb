/* reqlog: the request log (see reqlog.h). */
#include "server/reqlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/jsonw.h"

struct reqlog {
    _Atomic int mode;      /* reqlog_mode_t: read without the lock on every request */
    pthread_rwlock_t lock; /* writers of lines hold it shared; configure holds it exclusively */
    int fd;                /* 2 (stderr) or an owned file */
};

bool reqlog_parse_mode(const char *s, reqlog_mode_t *out)
{
    static const char *const names[] = {"off", "text", "json"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (reqlog_mode_t)i;
            return true;
        }
    }
    return false;
}

const char *reqlog_mode_name(reqlog_mode_t mode)
{
    return mode == REQLOG_TEXT ? "text" : mode == REQLOG_JSON ? "json" : "off";
}

reqlog_t *reqlog_new(void)
{
    reqlog_t *rl = calloc(1, sizeof *rl);
    if (rl == NULL) {
        abort();
    }
    atomic_init(&rl->mode, REQLOG_OFF);
    pthread_rwlock_init(&rl->lock, NULL);
    rl->fd = STDERR_FILENO;
    return rl;
}

void reqlog_free(reqlog_t *rl)
{
    if (rl == NULL) {
        return;
    }
    if (rl->fd != STDERR_FILENO) {
        close(rl->fd);
    }
    pthread_rwlock_destroy(&rl->lock);
    free(rl);
}

int reqlog_configure(reqlog_t *rl, reqlog_mode_t mode, const char *path, char *errmsg, size_t errmsg_len)
{
    int fd = STDERR_FILENO;
    if (mode != REQLOG_OFF && path != NULL && path[0] != '\0') {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            int rc = -errno;
            snprintf(errmsg, errmsg_len, "cannot open the request log %s: %s", path, strerror(errno));
            return rc;
        }
    }
    pthread_rwlock_wrlock(&rl->lock);
    int old = rl->fd;
    rl->fd = fd;
    atomic_store(&rl->mode, mode);
    pthread_rwlock_unlock(&rl->lock);
    if (old != STDERR_FILENO) {
        close(old);
    }
    return 0;
}

bool reqlog_enabled(const reqlog_t *rl)
{
    return rl != NULL && atomic_load_explicit(&rl->mode, memory_order_relaxed) != REQLOG_OFF;
}

static void format_time(int64_t ms, char out[64])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void reqlog_write(reqlog_t *rl, const reqlog_entry_t *e)
{
    if (!reqlog_enabled(rl)) {
        return;
    }
    char when[64];
    format_time(e->time_ms, when);
    buf_t line = BUF_INIT;
    pthread_rwlock_rdlock(&rl->lock);
    reqlog_mode_t mode = (reqlog_mode_t)atomic_load(&rl->mode);
    if (mode == REQLOG_JSON) {
        jsonw_t w;
        jsonw_init(&w, &line);
        jsonw_obj_begin(&w);
        jsonw_key(&w, "time");
        jsonw_str(&w, when);
        jsonw_key(&w, "request_id");
        jsonw_str(&w, e->request_id);
        jsonw_key(&w, "operation");
        jsonw_str(&w, e->operation);
        jsonw_key(&w, "stream");
        jsonw_str(&w, e->stream);
        jsonw_key(&w, "status");
        jsonw_int(&w, e->status);
        jsonw_key(&w, "error");
        if (e->error != NULL) {
            jsonw_str(&w, e->error);
        } else {
            jsonw_null(&w);
        }
        jsonw_key(&w, "latency_us");
        jsonw_int(&w, e->latency_us);
        jsonw_key(&w, "bytes_in");
        jsonw_int(&w, (int64_t)e->bytes_in);
        jsonw_key(&w, "bytes_out");
        jsonw_int(&w, (int64_t)e->bytes_out);
        jsonw_obj_end(&w);
        buf_putc(&line, '\n');
    } else if (mode == REQLOG_TEXT) {
        /* names and types never hold spaces (validated); the stream is quoted only when empty */
        buf_printf(&line, "%s %s %s stream=%s status=%d", when, e->request_id, e->operation,
                   e->stream[0] ? e->stream : "-", e->status);
        if (e->error != NULL) {
            buf_printf(&line, " error=%s", e->error);
        }
        buf_printf(&line, " latency_us=%" PRId64 " in=%" PRIu64 " out=%" PRIu64 "\n", e->latency_us, e->bytes_in,
                   e->bytes_out);
    }
    if (line.len > 0) {
        /* one write per line: lines from several threads never interleave (O_APPEND for files) */
        ssize_t n = write(rl->fd, line.data, line.len);
        (void)n;
    }
    pthread_rwlock_unlock(&rl->lock);
    buf_dispose(&line);
}
