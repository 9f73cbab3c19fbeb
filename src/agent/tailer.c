/*
 * tailer: following files through rotations and cutting them into records (see tailer.h).
 *
 * Invariants:
 *   - a source is in its flow's list until freed, and in the inode index while it holds a file (not
 *     retired); the name index maps a file name to the source last seen under it;
 *   - offset never moves back; the records before it were handed over (or skipped);
 *   - a source is freed only once no record of it is in flight (q_count == 0), at a checkpoint write,
 *     which writes its final row (or deletes it when the file is gone).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "agent/tailer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define RESCAN_POLLING_MS 1000
#define TRICKLE_BYTES 4096        /* a read that finds less slows the file's reading down */
#define READ_INTERVAL_CAP_MS 1000 /* the slowest a trickling file is read */
#define FP_CHECK 64
#define LIST_PASSES_MAX 8 /* listings of a directory that changes while it is listed */
#define DIR_TICK_MS 100   /* more than the coarsest tick of the clock that stamps a directory */

struct tailer {
    const agent_config_t *cfg;
    ckpt_store_t *store;
    tailer_ops_t ops;
    tail_flow_t *flows;
    size_t nflows;
    int inotify_fd;
    uint64_t next_id;
    uint64_t next_seq; /* tail_source_t.seq */
    char *rbuf; /* the shared read buffer: the largest record and one byte (TAIL_BACK_CHECK more before it) */
    size_t rbuf_cap;
    /* the last pread: bytes [last_base, last_base + last_n) of last_src's file, at last_ptr */
    const tail_source_t *last_src;
    const char *last_ptr;
    int64_t last_base;
    size_t last_n;
    buf_t cut; /* a record cut at its maximum size */
    /* sources waiting to be read (scheduled flag set), with their due_ms: a round looks only at the sources
     * that are due */
    struct sched_entry {
        tail_source_t *s;
        int64_t due;
    } *sched;
    bool sched_dirty; /* a scheduled source's due_ms moved earlier: the next round looks at all */
    size_t nsched, sched_cap;
    tail_source_t **due; /* being read in this round (NULL: freed meanwhile) */
    size_t ndue, due_cap;
    tail_source_t **by_wd; /* armed sources by their file watch descriptor (chained on wd_next) */
    size_t wd_buckets, narmed;
    bool file_watch_failed; /* logged once */
    bool blocked; /* a read stopped for lack of room */
    bool in_scan;
    bool in_replaced; /* reading what a new file may have replaced */
    bool stopped;
    int64_t next_sweep_ms;
};

/* ---- small helpers ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static size_t inode_bucket(const tail_flow_t *f, uint64_t dev, uint64_t ino)
{
    return (size_t)(mix(dev * 31 + ino) & (f->buckets - 1));
}

static size_t name_bucket(const tail_flow_t *f, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name != '\0'; name++) {
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    }
    return (size_t)(mix(h) & (f->buckets - 1));
}

static void index_inode(tail_flow_t *f, tail_source_t *s)
{
    size_t b = inode_bucket(f, s->dev, s->ino);
    s->inode_next = f->by_inode[b];
    f->by_inode[b] = s;
}

static void unindex_inode(tail_flow_t *f, tail_source_t *s)
{
    for (tail_source_t **p = &f->by_inode[inode_bucket(f, s->dev, s->ino)]; *p != NULL; p = &(*p)->inode_next) {
        if (*p == s) {
            *p = s->inode_next;
            return;
        }
    }
}

static void index_name(tail_flow_t *f, tail_source_t *s)
{
    size_t b = name_bucket(f, s->name);
    s->name_next = f->by_name[b];
    f->by_name[b] = s;
}

static void unindex_name(tail_flow_t *f, tail_source_t *s)
{
    for (tail_source_t **p = &f->by_name[name_bucket(f, s->name)]; *p != NULL; p = &(*p)->name_next) {
        if (*p == s) {
            *p = s->name_next;
            return;
        }
    }
}

static tail_source_t *find_inode(tail_flow_t *f, uint64_t dev, uint64_t ino)
{
    for (tail_source_t *s = f->by_inode[inode_bucket(f, dev, ino)]; s != NULL; s = s->inode_next) {
        if (s->dev == dev && s->ino == ino) {
            return s;
        }
    }
    return NULL;
}

static tail_source_t *find_name(tail_flow_t *f, const char *name)
{
    for (tail_source_t *s = f->by_name[name_bucket(f, name)]; s != NULL; s = s->name_next) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Doubles the index tables when they hold more sources than buckets. */
static void grow_index(tail_flow_t *f)
{
    if (f->count + 1 < f->buckets) {
        return;
    }
    size_t nb = f->buckets * 2;
    tail_source_t **bi = calloc(nb, sizeof *bi), **bn = calloc(nb, sizeof *bn);
    if (bi == NULL || bn == NULL) {
        free(bi);
        free(bn);
        return; /* longer chains, still correct */
    }
    free(f->by_inode);
    free(f->by_name);
    f->by_inode = bi;
    f->by_name = bn;
    f->buckets = nb;
    for (tail_source_t *s = f->head; s != NULL; s = s->next) {
        if (s->state != SRC_RETIRED) {
            index_inode(f, s);
            index_name(f, s);
        }
    }
}

/* The file name glob, with Java's {a,b} alternatives on top of fnmatch. */
static bool glob_match(const char *pattern, const char *name)
{
    const char *open = strchr(pattern, '{');
    const char *close = open != NULL ? strchr(open, '}') : NULL;
    if (close == NULL) {
        return fnmatch(pattern, name, FNM_PERIOD) == 0;
    }
    size_t plen = strlen(pattern);
    char *alt = malloc(plen + 1);
    if (alt == NULL) {
        return false;
    }
    bool hit = false;
    const char *p = open + 1;
    while (!hit && p <= close) {
        const char *comma = memchr(p, ',', (size_t)(close - p));
        const char *stop = comma != NULL ? comma : close;
        int n = snprintf(alt, plen + 1, "%.*s%.*s%s", (int)(open - pattern), pattern, (int)(stop - p), p, close + 1);
        hit = n > 0 && glob_match(alt, name);
        p = stop + 1;
    }
    free(alt);
    return hit;
}

static bool name_matches(const tail_flow_t *f, const char *name)
{
    size_t n = strlen(name);
    static const char *const archives[] = {".gz", ".bz2", ".zip"};
    for (size_t i = 0; i < 3; i++) {
        size_t k = strlen(archives[i]);
        if (n >= k && strcmp(name + n - k, archives[i]) == 0) {
            return false;
        }
    }
    return glob_match(f->cfg->name_glob, name);
}

static bool re_match(void *re, void *md, const char *s, size_t len)
{
    return pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL) >= 0;
}

/* Reads the first bytes of fd into fp (up to CKPT_FINGERPRINT_MAX); their count, or -1. */
static ssize_t read_prefix(int fd, unsigned char *fp, int64_t size)
{
    size_t want = size < CKPT_FINGERPRINT_MAX ? (size_t)(size > 0 ? size : 0) : CKPT_FINGERPRINT_MAX;
    if (want == 0) {
        return 0;
    }
    return pread(fd, fp, want, 0);
}

static void schedule(tailer_t *t, tail_source_t *s, int64_t due)
{
    if (s->scheduled) {
        if (due < s->due_ms) {
            s->due_ms = due;
            t->sched_dirty = true;
        }
        return;
    }
    if (t->nsched == t->sched_cap) {
        size_t cap = t->sched_cap ? t->sched_cap * 2 : 64;
        struct sched_entry *grown = realloc(t->sched, cap * sizeof *grown);
        if (grown == NULL) {
            return; /* the next sweep finds it */
        }
        t->sched = grown;
        t->sched_cap = cap;
    }
    s->scheduled = true;
    s->due_ms = due;
    t->sched[t->nsched++] = (struct sched_entry){s, due};
}

static void unschedule(tailer_t *t, tail_source_t *s)
{
    if (!s->scheduled) {
        return;
    }
    for (size_t i = 0; i < t->nsched; i++) {
        if (t->sched[i].s == s) {
            t->sched[i] = t->sched[--t->nsched];
            break;
        }
    }
    s->scheduled = false;
}

/* ---- file watches ----
 * With inotify, a file is watched on its own (IN_MODIFY, IN_ONESHOT) only while it is idle: a read that
 * found something schedules the next read after the file's interval instead (a file written a line at a
 * time is read on a timer, and its writes cost the agent nothing); a read that found nothing arms the
 * watch, whose one event schedules a read. The directory's watch sees names come and go, not writes. */

static size_t wd_bucket(const tailer_t *t, int wd)
{
    return (size_t)(mix((uint64_t)(unsigned)wd) & (t->wd_buckets - 1));
}

static void disarm(tailer_t *t, tail_source_t *s)
{
    if (s->wd < 0) {
        return;
    }
    bool shared = false;
    for (tail_source_t **p = &t->by_wd[wd_bucket(t, s->wd)]; *p != NULL;) {
        if (*p == s) {
            *p = s->wd_next;
            continue;
        }
        shared |= (*p)->wd == s->wd;
        p = &(*p)->wd_next;
    }
    if (!shared) {
        inotify_rm_watch(t->inotify_fd, s->wd); /* EINVAL when it fired already: nothing to do */
    }
    s->wd = -1;
    t->narmed--;
}

/* Watches s's file for its next write. false when it cannot be watched (then it is polled). */
static bool arm(tailer_t *t, tail_source_t *s)
{
    if (s->wd >= 0) {
        return true;
    }
    if (t->narmed + 1 > t->wd_buckets) {
        size_t nb = t->wd_buckets * 2;
        tail_source_t **grown = calloc(nb, sizeof *grown);
        if (grown == NULL) {
            return false;
        }
        tail_source_t **old = t->by_wd;
        size_t ob = t->wd_buckets;
        t->by_wd = grown;
        t->wd_buckets = nb;
        for (size_t i = 0; i < ob; i++) {
            for (tail_source_t *u = old[i], *next; u != NULL; u = next) {
                next = u->wd_next;
                size_t b = wd_bucket(t, u->wd);
                u->wd_next = t->by_wd[b];
                t->by_wd[b] = u;
            }
        }
        free(old);
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", s->fd); /* the open file itself, whatever its name now */
    int wd = inotify_add_watch(t->inotify_fd, link, IN_MODIFY | IN_ONESHOT);
    if (wd < 0) {
        if (!t->file_watch_failed) {
            log_warn("agent: cannot watch %s with inotify (%s): idle files are polled instead", s->path,
                     strerror(errno));
            t->file_watch_failed = true;
        }
        return false;
    }
    s->wd = wd;
    size_t b = wd_bucket(t, wd);
    s->wd_next = t->by_wd[b];
    t->by_wd[b] = s;
    t->narmed++;
    return true;
}

/* A file watch fired: its sources are read (their watch is gone: IN_ONESHOT). */
static void watch_fired(tailer_t *t, int wd, int64_t now)
{
    for (tail_source_t **p = &t->by_wd[wd_bucket(t, wd)]; *p != NULL;) {
        tail_source_t *s = *p;
        if (s->wd != wd) {
            p = &s->wd_next;
            continue;
        }
        *p = s->wd_next;
        s->wd = -1;
        t->narmed--;
        schedule(t, s, now);
    }
}

static tail_source_t *source_new(tailer_t *t, tail_flow_t *f, const char *path, const struct stat *st, int fd,
                                 int64_t now)
{
    tail_source_t *s = calloc(1, sizeof *s);
    char *p = strdup(path);
    if (s == NULL || p == NULL) {
        free(s);
        free(p);
        return NULL;
    }
    s->id = t->next_id++;
    s->seq = ++t->next_seq;
    s->flow = f;
    s->wd = -1;
    s->path = p;
    const char *slash = strrchr(p, '/');
    s->name = slash != NULL ? slash + 1 : p;
    s->dev = (uint64_t)st->st_dev;
    s->ino = (uint64_t)st->st_ino;
    s->fd = fd;
    s->size = st->st_size;
    s->changed_ms = now;
    s->created_ms = now;
    grow_index(f); /* before s joins the list: growing re-indexes the list */
    s->prev = f->tail;
    if (f->tail != NULL) {
        f->tail->next = s;
    } else {
        f->head = s;
    }
    f->tail = s;
    f->count++;
    index_inode(f, s);
    index_name(f, s);
    return s;
}

/* Starts reading s from offset (the beginning of a file, a checkpoint, or its end). */
static void source_start_at(tail_source_t *s, int64_t offset)
{
    s->offset = offset;
    s->acked_offset = offset;
    s->header_left = offset == 0 ? s->flow->cfg->skip_header_lines : 0;
}

static void source_set_path(tail_flow_t *f, tail_source_t *s, const char *path, int64_t now)
{
    if (strcmp(s->path, path) == 0) {
        return;
    }
    char *p = strdup(path);
    if (p == NULL) {
        return;
    }
    unindex_name(f, s);
    free(s->path);
    s->path = p;
    s->ckpt_row_written = false; /* the new path goes into the row */
    s->renamed_ms = now;
    const char *slash = strrchr(p, '/');
    s->name = slash != NULL ? slash + 1 : p;
    index_name(f, s);
}

/* Leaves the indexes (the file is no longer this source's); the source waits for its records in flight. */
static void source_retire(tail_source_t *s)
{
    if (s->state == SRC_RETIRED) {
        return;
    }
    tail_flow_t *f = s->flow;
    unindex_inode(f, s);
    unindex_name(f, s);
    s->state = SRC_RETIRED;
}

static void source_free(tailer_t *t, tail_source_t *s)
{
    tail_flow_t *f = s->flow;
    unschedule(t, s);
    disarm(t, s);
    for (size_t i = 0; i < t->ndue; i++) {
        if (t->due[i] == s) {
            t->due[i] = NULL;
        }
    }
    if (s->state != SRC_RETIRED) {
        unindex_inode(f, s);
        unindex_name(f, s);
    }
    /* copies of it have nothing to continue: they are plain files now, read from their end */
    for (tail_source_t *c = f->head; c != NULL; c = c->next) {
        if (c->copy_of == s) {
            c->copy_of = NULL;
            c->state = SRC_LIVE;
            source_start_at(c, c->size);
        }
    }
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        f->head = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    } else {
        f->tail = s->prev;
    }
    f->count--;
    if (t->ops.forget != NULL) {
        t->ops.forget(t->ops.arg, s);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    buf_dispose(&s->pending);
    free(s->path);
    free(s);
}

/* ---- identity: new files, copies ---- */

/* Whether a and b agree on their common first bytes (and have some). */
static bool prefix_match(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    return n > 0 && memcmp(a, b, n) == 0;
}

/* The tracked source whose fingerprint agrees with fp, other than self (LIVE or DETACHED ones). */
static tail_source_t *fingerprint_owner(tail_flow_t *f, const tail_source_t *self, const unsigned char *fp,
                                        size_t len)
{
    for (tail_source_t *s = f->head; s != NULL; s = s->next) {
        if (s != self && (s->state == SRC_LIVE || s->state == SRC_DETACHED) &&
            prefix_match(s->fp, s->fp_len, fp, len)) {
            return s;
        }
    }
    return NULL;
}

/* A SRC_UNSURE source: a copy, a new file, or not known yet. */
static void classify(tailer_t *t, tail_source_t *s, int64_t now)
{
    struct stat st;
    if (fstat(s->fd, &st) == 0 && st.st_size != s->size) {
        s->size = st.st_size;
        s->changed_ms = now;
    }
    ssize_t n = read_prefix(s->fd, s->fp, s->size);
    s->fp_len = n > 0 ? (size_t)n : 0;
    int64_t timeout = s->flow->cfg->partial_line_timeout_ms;
    tail_source_t *owner = s->fp_len > 0 ? fingerprint_owner(s->flow, s, s->fp, s->fp_len) : NULL;
    if (s->fp_len == 0 && now - s->created_ms < timeout) {
        /* empty so far (a new file is often created, then written): looked at again soon, not only once
         * the timeout is over, else a rotation's new file would wait that long for its first read */
        int64_t again = now + s->flow->cfg->min_poll_interval_ms;
        schedule(t, s, again < s->created_ms + timeout ? again : s->created_ms + timeout);
        return;
    }
    if (owner == NULL) {
        s->state = SRC_LIVE;
        source_start_at(s, 0);
        return;
    }
    if (s->fp_len >= owner->fp_len) {
        s->state = SRC_COPY;
        s->copy_of = owner;
        log_debug("agent: %s is a copy of %s (not read unless that one is truncated)", s->path, owner->path);
        return;
    }
    if (now - s->changed_ms >= timeout) {
        s->state = SRC_LIVE; /* stopped growing short of the fingerprint: a new file that starts alike */
        source_start_at(s, 0);
        return;
    }
    schedule(t, s, s->changed_ms + timeout);
}

typedef struct found {
    char *path;
    struct stat st;
    int fd;
    unsigned char fp[CKPT_FINGERPRINT_MAX];
    size_t fp_len;
    bool taken;
} found_t;

/* Opens path and checks it is still the file stat saw; fd or -1. */
static int open_same(const char *path, const struct stat *st)
{
    /* O_NOATIME: reading a file ten times a second must not dirty its inode each time (only the file's
     * owner, or root, may ask for it: otherwise open plainly) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOATIME);
    if (fd < 0 && errno == EPERM) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    }
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            log_error("agent: cannot open %s: %s (raise the open files limit)", path, strerror(errno));
        }
        return -1;
    }
    struct stat now;
    if (fstat(fd, &now) != 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
        close(fd);
        return -1;
    }
    return fd;
}

/* For two files last written within the same clock tick (an application that rotates and writes on at
 * once): which name is older by rotation naming. A name that extends the other (app.log.1, app.log) is
 * the rotated one; names numbered with up to four digits count down to the newest (app.log.2.gz,
 * app.log.1.gz); other names (dated: app.log-20261122) sort as they read. */
static int by_rotation_name(const char *x, const char *y)
{
    size_t i = 0;
    while (x[i] != '\0' && x[i] == y[i]) {
        i++;
    }
    if (x[i] == '\0' || y[i] == '\0') {
        return x[i] == y[i] ? 0 : x[i] == '\0' ? 1 : -1; /* the longer one is the rotated one */
    }
    while (i > 0 && x[i - 1] >= '0' && x[i - 1] <= '9') {
        i--; /* back to the start of a number both names share the first digits of */
    }
    size_t xd = strspn(x + i, "0123456789"), yd = strspn(y + i, "0123456789");
    if (xd > 0 && yd > 0 && xd <= 4 && yd <= 4 && strcmp(x + i + xd, y + i + yd) == 0) {
        unsigned long xn = strtoul(x + i, NULL, 10), yn = strtoul(y + i, NULL, 10);
        if (xn != yn) {
            return xn > yn ? -1 : 1; /* a rotation count (app.log.2.gz before app.log.1.gz); longer: a date */
        }
    }
    return strcmp(x, y) < 0 ? -1 : 1;
}

/* Older files first: their records go before those of the files that replaced them. */
static int by_mtime(const void *a, const void *b)
{
    const found_t *fa = a, *fb = b;
    const struct stat *x = &fa->st, *y = &fb->st;
    if (x->st_mtim.tv_sec != y->st_mtim.tv_sec) {
        return x->st_mtim.tv_sec < y->st_mtim.tv_sec ? -1 : 1;
    }
    if (x->st_mtim.tv_nsec != y->st_mtim.tv_nsec) {
        return x->st_mtim.tv_nsec < y->st_mtim.tv_nsec ? -1 : 1;
    }
    return by_rotation_name(fa->path, fb->path);
}

static int64_t ns_of(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether out[0..n) already holds the file (under another name, or found by an earlier pass). */
static bool found_has(const found_t *out, size_t n, const struct stat *st)
{
    for (size_t i = 0; i < n; i++) {
        if (out[i].st.st_ino == st->st_ino && out[i].st.st_dev == st->st_dev) {
            return true;
        }
    }
    return false;
}

/* One pass over the directory: every matching regular file that is neither tracked nor in *out yet goes
 * into *out (opened). false when the directory cannot be opened. */
static bool list_pass(tail_flow_t *f, found_t **out, size_t *nout, size_t *cap, int64_t now)
{
    DIR *d = opendir(f->cfg->directory);
    if (d == NULL) {
        if (!f->dir_missing_logged) {
            log_warn("agent: flow %s: cannot list %s: %s (looking again every refresh)", f->cfg->id,
                     f->cfg->directory, strerror(errno));
            f->dir_missing_logged = true;
        }
        return false;
    }
    f->dir_missing_logged = false;
    struct dirent *e;
    size_t dlen = strlen(f->cfg->directory);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) {
            continue;
        }
        if (!name_matches(f, e->d_name)) {
            continue;
        }
        size_t plen = dlen + strlen(e->d_name) + 2;
        char *path = malloc(plen);
        if (path == NULL) {
            break;
        }
        snprintf(path, plen, "%s%s%s", f->cfg->directory, f->cfg->directory[dlen - 1] == '/' ? "" : "/", e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        tail_source_t *s = find_inode(f, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
        if (s != NULL) {
            s->seen = true;
            source_set_path(f, s, path, now);
            if (s->state == SRC_DETACHED) {
                s->state = SRC_LIVE;
            }
            s->unseen_since_ms = 0;
            free(path);
            continue;
        }
        if (found_has(*out, *nout, &st)) {
            free(path);
            continue;
        }
        if (*nout == *cap) {
            size_t grown_cap = *cap ? *cap * 2 : 16;
            found_t *grown = realloc(*out, grown_cap * sizeof *grown);
            if (grown == NULL) {
                free(path);
                break;
            }
            *out = grown;
            *cap = grown_cap;
        }
        found_t *fo = &(*out)[*nout];
        memset(fo, 0, sizeof *fo);
        fo->path = path;
        fo->st = st;
        fo->fd = open_same(path, &st);
        if (fo->fd < 0) {
            free(path);
            continue;
        }
        ssize_t n = read_prefix(fo->fd, fo->fp, st.st_size);
        fo->fp_len = n > 0 ? (size_t)n : 0;
        (*nout)++;
    }
    closedir(d);
    return true;
}

/* Lists the flow's directory; every matching regular file that is not tracked yet goes into *out (opened),
 * oldest first.
 * A listing is names first, then a stat of each: a rotation that shifts names meanwhile (app.log.1 to
 * app.log.2, then app.log to app.log.1) makes a name lead to another file than when it was listed, and a
 * file can be missed. The next scan would find it, after newer files were read: its lines would come
 * after theirs. So the directory is listed again while it changed during a pass (its mtime or ctime
 * moved), or may have (it changed within DIR_TICK_MS: a change within the same clock tick leaves its
 * times as they were) and the pass before found something; each pass adds what it finds. */
static void list_new(tail_flow_t *f, found_t **out, size_t *nout, int64_t now)
{
    *out = NULL;
    *nout = 0;
    size_t cap = 0;
    for (int pass = 0; pass < LIST_PASSES_MAX; pass++) {
        struct stat before, after;
        int64_t wall = clock_now_ms();
        bool stamped = stat(f->cfg->directory, &before) == 0;
        size_t had = *nout;
        if (!list_pass(f, out, nout, &cap, now) || !stamped) {
            break;
        }
        f->dir_ino = (uint64_t)before.st_ino;
        f->dir_mtime_ns = ns_of(before.st_mtim);
        f->dir_ctime_ns = ns_of(before.st_ctim);
        f->listed_wall_ms = wall;
        if (stat(f->cfg->directory, &after) != 0) {
            break;
        }
        bool changed = after.st_ino != before.st_ino || ns_of(after.st_mtim) != f->dir_mtime_ns ||
                       ns_of(after.st_ctim) != f->dir_ctime_ns;
        bool recent = f->dir_ctime_ns / 1000000 > clock_now_ms() - DIR_TICK_MS;
        if (!changed && !(recent && (pass == 0 || *nout > had))) {
            break;
        }
    }
    if (*nout > 1) {
        qsort(*out, *nout, sizeof **out, by_mtime);
    }
}

static void free_found(found_t *fo, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fo[i].taken && fo[i].fd >= 0) {
            close(fo[i].fd);
        }
        free(fo[i].path);
    }
    free(fo);
}

/* Whether the row's fingerprint is the start of the file's content. */
static bool row_fits(const ckpt_row_t *r, const found_t *fo)
{
    return r->fingerprint_len <= fo->fp_len && memcmp(r->fingerprint, fo->fp, r->fingerprint_len) == 0;
}

/* The first scan of a flow, against its checkpoint rows. */
static void scan_first(tailer_t *t, tail_flow_t *f, ckpt_row_t *rows, size_t nrows, int64_t now)
{
    found_t *fo;
    size_t n;
    list_new(f, &fo, &n, now);
    bool *claimed = calloc(nrows > 0 ? nrows : 1, sizeof *claimed);
    tail_source_t **by_row = calloc(nrows > 0 ? nrows : 1, sizeof *by_row);
    if (claimed == NULL || by_row == NULL) {
        free(claimed);
        free(by_row);
        free_found(fo, n);
        return;
    }
    /* 1: the same inode with the same first bytes: resume where the row says */
    for (size_t i = 0; i < n; i++) {
        for (size_t r = 0; r < nrows && !fo[i].taken; r++) {
            if (!claimed[r] && rows[r].dev == (uint64_t)fo[i].st.st_dev && rows[r].ino == (uint64_t)fo[i].st.st_ino &&
                row_fits(&rows[r], &fo[i]) && fo[i].st.st_size >= rows[r].offset) {
                tail_source_t *s = source_new(t, f, fo[i].path, &fo[i].st, fo[i].fd, now);
                if (s == NULL) {
                    continue;
                }
                s->id = rows[r].id;
                memcpy(s->fp, fo[i].fp, fo[i].fp_len);
                s->fp_len = fo[i].fp_len;
                source_start_at(s, rows[r].offset);
                s->ckpt_written = rows[r].offset;
                s->ckpt_row_written = true;
                s->seen = true;
                claimed[r] = fo[i].taken = true;
                by_row[r] = s;
            }
        }
    }
    /* 2: another inode with a checkpointed file's first bytes: its copy (copytruncate while we were away) */
    for (size_t i = 0; i < n; i++) {
        size_t best = nrows;
        for (size_t r = 0; r < nrows && !fo[i].taken; r++) {
            if (!claimed[r] && rows[r].fingerprint_len > 0 && row_fits(&rows[r], &fo[i]) &&
                (best == nrows || rows[r].fingerprint_len > rows[best].fingerprint_len)) {
                best = r;
            }
        }
        if (best == nrows) {
            continue;
        }
        tail_source_t *s = source_new(t, f, fo[i].path, &fo[i].st, fo[i].fd, now);
        if (s == NULL) {
            continue;
        }
        s->id = rows[best].id;
        memcpy(s->fp, fo[i].fp, fo[i].fp_len);
        s->fp_len = fo[i].fp_len;
        int64_t off = rows[best].offset < fo[i].st.st_size ? rows[best].offset : fo[i].st.st_size;
        source_start_at(s, off);
        s->seen = true;
        claimed[best] = fo[i].taken = true;
        by_row[best] = s;
        log_info("agent: %s continues %s (checkpoint at byte %lld): a copy made while the agent was away",
                 fo[i].path, rows[best].path, (long long)off);
    }
    /* 3: copies of files being resumed: held, not read; 4: the rest are new */
    bool first_run = nrows == 0;
    for (size_t i = 0; i < n; i++) {
        if (fo[i].taken) {
            continue;
        }
        tail_source_t *owner = NULL;
        for (size_t r = 0; r < nrows && owner == NULL; r++) {
            if (by_row[r] != NULL && rows[r].fingerprint_len > 0 && row_fits(&rows[r], &fo[i]) &&
                fo[i].fp_len >= by_row[r]->fp_len) {
                owner = by_row[r];
            }
        }
        tail_source_t *s = source_new(t, f, fo[i].path, &fo[i].st, fo[i].fd, now);
        if (s == NULL) {
            continue;
        }
        fo[i].taken = true;
        s->seen = true;
        memcpy(s->fp, fo[i].fp, fo[i].fp_len);
        s->fp_len = fo[i].fp_len;
        if (owner != NULL) {
            s->state = SRC_COPY;
            s->copy_of = owner;
            source_start_at(s, fo[i].st.st_size);
        } else {
            source_start_at(s, first_run && !f->cfg->start_of_file ? fo[i].st.st_size : 0);
        }
    }
    free(claimed);
    free(by_row);
    free_found(fo, n);
}

static void read_source(tailer_t *t, tail_source_t *s, int64_t now);

/* Adds s to the sources being read in this round. 0, or -1 when out of memory. */
static int due_push(tailer_t *t, tail_source_t *s)
{
    if (t->ndue == t->due_cap) {
        size_t cap = t->due_cap ? t->due_cap * 2 : 64;
        tail_source_t **grown = realloc(t->due, cap * sizeof *grown);
        if (grown == NULL) {
            return -1;
        }
        t->due = grown;
        t->due_cap = cap;
    }
    t->due[t->ndue++] = s;
    return 0;
}

/* A later scan: new files start unsure (a copy, or new); tracked files no name leads to are detached. */
/* Whether the flow's directory cannot have gained, lost or renamed a name since it was last listed
 * (its inode, mtime and ctime unchanged, that mtime well before the listing, so that a filesystem with
 * coarse timestamps cannot hide a change made just after it) and every tracked file was in that listing.
 * Saves listing (a stat per name) and reading every file at each refresh: once a second when polling,
 * every maxTimeBetweenFileTrackerRefreshMillis with inotify (whose events ask for a listing anyway). */
static bool dir_unchanged(tail_flow_t *f)
{
    struct stat st;
    if (f->listed_wall_ms == 0 || stat(f->cfg->directory, &st) != 0 || (uint64_t)st.st_ino != f->dir_ino ||
        ns_of(st.st_mtim) != f->dir_mtime_ns || ns_of(st.st_ctim) != f->dir_ctime_ns ||
        f->dir_mtime_ns / 1000000 > f->listed_wall_ms - 2000) {
        return false;
    }
    for (tail_source_t *s = f->head; s != NULL; s = s->next) {
        if (s->unseen_since_ms != 0) {
            return false;
        }
    }
    return true;
}

static void scan(tailer_t *t, tail_flow_t *f, int64_t now)
{
    if (!t->in_scan && !f->scan_wanted && dir_unchanged(f)) {
        f->next_scan_ms = now + (f->watch < 0 ? RESCAN_POLLING_MS : f->cfg->max_refresh_interval_ms);
        return;
    }
    for (tail_source_t *s = f->head; s != NULL; s = s->next) {
        s->seen = false;
    }
    found_t *fo;
    size_t n;
    if (!t->in_scan) {
        /* what the files we follow still hold goes first: the new files most likely replaced them */
        t->in_scan = true;
        t->ndue = 0;
        for (tail_source_t *s = f->head; s != NULL; s = s->next) {
            if ((s->state == SRC_LIVE || s->state == SRC_DETACHED) && due_push(t, s) != 0) {
                break;
            }
        }
        for (size_t i = 0; i < t->ndue && !t->blocked; i++) {
            if (t->due[i] != NULL) { /* NULL: freed meanwhile */
                read_source(t, t->due[i], now);
            }
        }
        t->ndue = 0;
        t->in_scan = false;
    }
    list_new(f, &fo, &n, now);
    for (size_t i = 0; i < n; i++) {
        tail_source_t *s = source_new(t, f, fo[i].path, &fo[i].st, fo[i].fd, now);
        if (s == NULL) {
            continue;
        }
        fo[i].taken = true;
        s->seen = true;
        s->state = SRC_UNSURE;
        schedule(t, s, now);
    }
    free_found(fo, n);
    for (tail_source_t *s = f->head, *next; s != NULL; s = next) {
        next = s->next;
        if (s->seen || s->state == SRC_RETIRED) {
            s->unseen_since_ms = 0;
            continue;
        }
        /* Not listed: renamed away or deleted, or renamed while we listed (logrotate shifting .1 to .2):
         * only a file missing from the listings for ROTATE_GRACE_MS is let go. */
        if (s->unseen_since_ms == 0) {
            s->unseen_since_ms = now;
        }
        if (s->state == SRC_COPY || s->state == SRC_UNSURE) {
            if (now - s->unseen_since_ms >= ROTATE_GRACE_MS) {
                source_free(t, s); /* a copy renamed away or deleted: nothing of it is needed */
            }
            continue;
        }
        if (s->state == SRC_LIVE) {
            s->state = SRC_DETACHED;
            log_debug("agent: %s: no matching name leads to it any more; reading it to its end", s->path);
        }
        schedule(t, s, now);
    }
    f->scan_wanted = false;
    int64_t every = f->cfg->max_refresh_interval_ms;
    if (f->watch < 0 && every > RESCAN_POLLING_MS) {
        every = RESCAN_POLLING_MS;
    }
    f->next_scan_ms = now + every;
}

/* ---- reading ---- */

/* Hands a record over, cut at the flow's maximum. 0, or -EAGAIN. */
static int emit(tailer_t *t, tail_source_t *s, const char *data, size_t len, int64_t end, bool cut)
{
    const agent_flow_config_t *c = s->flow->cfg;
    size_t term = strlen(c->truncated_record_terminator);
    if (len > c->max_record_bytes || cut) {
        size_t keep = len > c->max_record_bytes - term ? c->max_record_bytes - term : len;
        buf_reset(&t->cut);
        buf_append(&t->cut, data, keep);
        buf_append(&t->cut, c->truncated_record_terminator, term);
        data = t->cut.data;
        len = t->cut.len;
        cut = true;
    }
    int rc = t->ops.record(t->ops.arg, s, data, len, end);
    if (rc == 0) {
        s->flow->stats.records_parsed++;
        s->flow->stats.bytes_parsed += len;
        s->flow->stats.records_truncated += cut;
    }
    return rc;
}

static int flush_pending(tailer_t *t, tail_source_t *s)
{
    if (s->pending.len == 0) {
        return 0;
    }
    int rc = emit(t, s, s->pending.data, s->pending.len, s->offset, s->pending_cut);
    if (rc == 0) {
        buf_reset(&s->pending);
        s->pending_cut = false;
        if (s->pending.cap > 65536) {
            buf_dispose(&s->pending);
        }
    }
    return rc;
}

enum { LINE_TAKEN = 0, LINE_FOOTER = 1 };

/* One line [start, start + len) of s (with its "\n", or without for a timed-out last line). */
static int take_line(tailer_t *t, tail_source_t *s, const char *line, size_t len, int64_t start)
{
    tail_flow_t *f = s->flow;
    if (s->header_left > 0) {
        s->header_left--;
        f->stats.records_skipped++;
        return LINE_TAKEN;
    }
    if (f->footer_re != NULL && re_match(f->footer_re, f->footer_md, line, len)) {
        int rc = flush_pending(t, s);
        if (rc != 0) {
            return rc;
        }
        s->footer_seen = true;
        f->stats.records_skipped++;
        log_info("agent: %s: footer line: nothing more is read from it", s->path);
        return LINE_FOOTER;
    }
    if (f->start_re == NULL) {
        return emit(t, s, line, len, start + (int64_t)len, false);
    }
    if (re_match(f->start_re, f->start_md, line, len) && s->pending.len > 0) {
        int64_t keep = s->offset;
        s->offset = start; /* the pending record ends where this line starts */
        int rc = flush_pending(t, s);
        s->offset = keep;
        if (rc != 0) {
            return rc;
        }
    }
    if (s->pending.len == 0) {
        s->pending_start = start;
    }
    size_t max = f->cfg->max_record_bytes;
    if (s->pending.len + len > max) {
        size_t room = s->pending.len < max ? max - s->pending.len : 0;
        buf_append(&s->pending, line, room);
        s->pending_cut = true;
    } else {
        buf_append(&s->pending, line, len);
    }
    return LINE_TAKEN;
}

static bool first_bytes_unchanged(tail_source_t *s, int64_t size)
{
    /* One pread: while the fingerprint is short, all of it (checked and extended); once whole, only its
     * first FP_CHECK bytes, which a rewritten file changes too (copying 1 KiB per read was the agent's
     * largest cost with many files). */
    unsigned char now[CKPT_FINGERPRINT_MAX];
    bool extend = s->fp_len < CKPT_FINGERPRINT_MAX && size > (int64_t)s->fp_len;
    size_t check = extend || s->fp_len < FP_CHECK ? s->fp_len : FP_CHECK;
    ssize_t n = extend ? read_prefix(s->fd, now, size) : check > 0 ? pread(s->fd, now, check, 0) : 0;
    if (!extend) {
        return n == (ssize_t)check && memcmp(now, s->fp, check) == 0;
    }
    if (n < (ssize_t)s->fp_len || memcmp(now, s->fp, s->fp_len) != 0) {
        return false;
    }
    if ((size_t)n > s->fp_len) {
        memcpy(s->fp + s->fp_len, now + s->fp_len, (size_t)n - s->fp_len);
        s->fp_len = (size_t)n;
        s->ckpt_row_written = false; /* the longer fingerprint goes into the row */
    }
    return true;
}

static void read_source(tailer_t *t, tail_source_t *s, int64_t now);

/* s's file shrank below the offset or its first bytes changed: copytruncate or truncate. */
static void truncated(tailer_t *t, tail_source_t *s, int64_t now)
{
    tail_flow_t *f = s->flow;
    disarm(t, s); /* its file is the new source's now */
    bool was = t->in_scan;
    t->in_scan = true; /* list only: reading the other files now could come back here */
    scan(t, f, now);   /* the copy, if any, must be known */
    t->in_scan = was;
    for (tail_source_t *u = f->head; u != NULL; u = u->next) {
        if (u->state == SRC_UNSURE) {
            classify(t, u, now);
        }
    }
    tail_source_t *copy = NULL;
    for (tail_source_t *u = f->head; u != NULL; u = u->next) {
        if (u->state == SRC_COPY && u->copy_of == s && (copy == NULL || u->size > copy->size)) {
            copy = u;
        }
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0) {
        return;
    }
    /* the file's new content is a new source, read from its start */
    unindex_inode(f, s);
    unindex_name(f, s);
    int fd = s->fd;
    tail_source_t *fresh = source_new(t, f, s->path, &st, fd, now);
    if (fresh == NULL) {
        index_inode(f, s);
        index_name(f, s);
        return;
    }
    fresh->seen = true;
    source_start_at(fresh, 0);
    fresh->ckpt_row_written = false;
    ssize_t n = read_prefix(fd, fresh->fp, st.st_size);
    fresh->fp_len = n > 0 ? (size_t)n : 0;
    f->stats.rotations++;
    if (copy != NULL) {
        /* s goes on in the copy, at the same offset: the copy holds the same bytes */
        s->fd = copy->fd;
        copy->fd = -1;
        s->dev = copy->dev;
        s->ino = copy->ino;
        s->size = copy->size;
        s->state = SRC_LIVE;
        s->seen = true;
        s->ckpt_row_written = false;
        unindex_inode(f, copy);
        unindex_name(f, copy);
        copy->copy_of = NULL;
        copy->state = SRC_RETIRED;
        char *path = copy->path;
        copy->path = s->path;
        s->path = path;
        const char *slash = strrchr(s->path, '/');
        s->name = slash != NULL ? slash + 1 : s->path;
        slash = strrchr(copy->path, '/');
        copy->name = slash != NULL ? slash + 1 : copy->path;
        index_inode(f, s);
        index_name(f, s);
        log_info("agent: %s was truncated (copytruncate); reading on at byte %lld of its copy %s", fresh->path,
                 (long long)s->offset, s->path);
        source_free(t, copy);
        read_source(t, s, now); /* the rest of the old content before any of the new */
    } else {
        int64_t lost = s->size > s->offset ? s->size - s->offset : 0;
        f->stats.bytes_lost += (uint64_t)lost;
        s->fd = -1;
        s->state = SRC_RETIRED;
        if (lost > 0) {
            log_warn("agent: %s was truncated with %lld bytes not yet read, and no copy of it was found: they are lost",
                     s->path, (long long)lost);
        } else {
            log_info("agent: %s was truncated; reading it again from its start", s->path);
        }
    }
    schedule(t, fresh, now);
}

/* Keeps the TAIL_BACK_CHECK bytes before s's offset when the last pread (of s) holds them. */
static void keep_back(tailer_t *t, tail_source_t *s)
{
    if (t->last_src != s || s->offset == s->back_at || s->offset - TAIL_BACK_CHECK < t->last_base ||
        s->offset > t->last_base + (int64_t)t->last_n) {
        return;
    }
    memcpy(s->back, t->last_ptr + (s->offset - TAIL_BACK_CHECK - t->last_base), TAIL_BACK_CHECK);
    s->back_at = s->offset;
}

/* The first read of a source whose fingerprint is whole and whose last bytes before the offset are known:
 * one pread from TAIL_BACK_CHECK bytes before the offset, instead of an fstat, a pread of the first bytes
 * and a pread of the new ones. The size is learnt from where the read ends. Returns the new bytes read
 * (into t->rbuf); -1 when the file shrank below the offset or changed before it (the careful path decides);
 * -2 when it cannot be read now. */
static ssize_t quick_read(tailer_t *t, tail_source_t *s, int64_t now)
{
    char *at = t->rbuf - TAIL_BACK_CHECK;
    ssize_t got = pread(s->fd, at, t->rbuf_cap + TAIL_BACK_CHECK, s->offset - TAIL_BACK_CHECK);
    if (got < 0) {
        return -2;
    }
    if (got < TAIL_BACK_CHECK || memcmp(at, s->back, TAIL_BACK_CHECK) != 0) {
        return -1;
    }
    t->last_src = s;
    t->last_ptr = at;
    t->last_base = s->offset - TAIL_BACK_CHECK;
    t->last_n = (size_t)got;
    ssize_t n = got - TAIL_BACK_CHECK;
    int64_t end = s->offset + n;
    if ((size_t)n < t->rbuf_cap ? end != s->size : end > s->size) {
        s->size = end;
        s->changed_ms = now;
    }
    return n;
}

static void read_source_once(tailer_t *t, tail_source_t *s, int64_t now);

/* Reads what is new in s, then sets how soon it may be read again. A file that gives less than
 * TRICKLE_BYTES per read is read less and less often (its interval doubles, up to half the flow's
 * maxBufferAgeMillis and at most READ_INTERVAL_CAP_MS): with a thousand files written a line at a time,
 * reading each one at every write (or every 100 ms) costs a syscall or three per line for nothing, since
 * records wait for their batch anyway; a file that gives more goes back to minTimeBetweenFilePollsMillis. */
static void read_source(tailer_t *t, tail_source_t *s, int64_t now)
{
    const agent_flow_config_t *c = s->flow->cfg;
    int64_t before = s->offset;
    read_source_once(t, s, now);
    keep_back(t, s);
    int64_t cap = c->max_buffer_age_ms / 2;
    cap = cap > READ_INTERVAL_CAP_MS ? READ_INTERVAL_CAP_MS : cap;
    cap = cap < c->min_poll_interval_ms ? c->min_poll_interval_ms : cap;
    if (s->offset - before >= TRICKLE_BYTES || s->read_interval_ms < c->min_poll_interval_ms) {
        s->read_interval_ms = c->min_poll_interval_ms;
    } else {
        s->read_interval_ms = s->read_interval_ms * 2 > cap ? cap : s->read_interval_ms * 2;
    }
    if (s->state != SRC_LIVE || s->footer_seen || s->fd < 0 || t->blocked || s->scheduled) {
        return; /* not read; or a read is due anyway */
    }
    if (s->offset > before) {
        schedule(t, s, now + s->read_interval_ms); /* still being written: read on a timer */
        return;
    }
    if (t->inotify_fd < 0) {
        return; /* idle: the sweep looks at it every minTimeBetweenFilePollsMillis */
    }
    struct stat st;
    if (!arm(t, s)) {
        schedule(t, s, now + cap);
    } else if (fstat(s->fd, &st) == 0 && st.st_size != s->size) {
        schedule(t, s, now); /* written between the read and the watch */
    }
}

/* Before a new file's first read, what the files it may have replaced still hold is read: a rotation
 * renames the old file (or moves it out of the pattern), the application writes on to it until it
 * reopens, and only then creates the new file. Whatever it wrote to the old one is there by the time the
 * new one has bytes, so it goes first even when the old file's timer is not due yet. The same holds for
 * new files found before this one (sources are made oldest first): a file rotated away soon after it was
 * created may still be unsure of what it is. */
static void read_replaced(tailer_t *t, tail_source_t *s, int64_t now)
{
    if (t->in_replaced) {
        return; /* the outer call reads the rest, in order */
    }
    t->in_replaced = true;
    bool before = true;
    for (tail_source_t *o = s->flow->head; o != NULL && !t->blocked; o = o->next) {
        if (o == s) {
            before = false;
            continue;
        }
        if ((before && o->state == SRC_UNSURE) || o->state == SRC_DETACHED ||
            (o->state == SRC_LIVE && o->renamed_ms != 0 && now - o->renamed_ms < ROTATE_GRACE_MS)) {
            read_source(t, o, now);
        }
    }
    t->in_replaced = false;
}

static void read_source_once(tailer_t *t, tail_source_t *s, int64_t now)
{
    const agent_flow_config_t *c = s->flow->cfg;
    s->last_read_ms = now;
    t->last_src = NULL;
    if (s->state == SRC_RETIRED || s->state == SRC_COPY || s->fd < 0) {
        return;
    }
    bool quick = (s->state == SRC_LIVE || s->state == SRC_DETACHED) && !s->footer_seen &&
                 s->fp_len == CKPT_FINGERPRINT_MAX && s->back_at == s->offset && s->offset >= TAIL_BACK_CHECK;
    if (quick && !t->ops.has_room(t->ops.arg)) {
        t->blocked = true;
        return;
    }
    ssize_t first = quick ? quick_read(t, s, now) : -1;
    if (first == -2) {
        return;
    }
    if (first < 0) {
        struct stat st;
        if (fstat(s->fd, &st) != 0) {
            return;
        }
        if (st.st_size != s->size) {
            s->size = st.st_size;
            s->changed_ms = now;
        }
        if (s->state == SRC_UNSURE) {
            classify(t, s, now);
            if (s->state != SRC_LIVE) {
                return;
            }
            read_replaced(t, s, now);
            if (t->blocked) {
                return; /* read after them, once there is room */
            }
        }
        if (s->footer_seen) {
            return;
        }
        if (s->size < s->offset || !first_bytes_unchanged(s, s->size) || quick) {
            truncated(t, s, now); /* quick: the bytes before the offset changed */
            return;
        }
    }
    for (;;) {
        int64_t base = s->offset;
        ssize_t n = first;
        if (first >= 0) {
            first = -1;
        } else {
            if (s->offset >= s->size) {
                break;
            }
            if (!t->ops.has_room(t->ops.arg)) {
                t->blocked = true;
                return;
            }
            int64_t avail = s->size - s->offset;
            size_t want = avail < (int64_t)t->rbuf_cap ? (size_t)avail : t->rbuf_cap;
            n = pread(s->fd, t->rbuf, want, base);
            if (n > 0) {
                t->last_src = s;
                t->last_ptr = t->rbuf;
                t->last_base = base;
                t->last_n = (size_t)n;
            }
        }
        if (n <= 0) {
            break;
        }
        size_t pos = 0;
        bool stop = false;
        while (pos < (size_t)n) {
            const char *nl = memchr(t->rbuf + pos, '\n', (size_t)n - pos);
            if (nl == NULL) {
                break;
            }
            size_t len = (size_t)(nl - (t->rbuf + pos)) + 1;
            if (s->runaway) {
                s->runaway = false;
            } else {
                int rc = take_line(t, s, t->rbuf + pos, len, base + (int64_t)pos);
                if (rc < 0) {
                    t->blocked = true;
                    return; /* no room: this line is read again later */
                }
                if (rc == LINE_FOOTER) {
                    stop = true;
                }
            }
            pos += len;
            s->offset = base + (int64_t)pos;
            if (stop) {
                return;
            }
        }
        if (pos == (size_t)n) {
            continue;
        }
        size_t tail = (size_t)n - pos;
        if (s->runaway) {
            s->offset = base + n; /* still skipping the rest of a cut line */
            continue;
        }
        if (tail >= c->max_record_bytes) {
            if (emit(t, s, t->rbuf + pos, tail, base + n, true) != 0) {
                t->blocked = true;
                return;
            }
            s->runaway = true;
            s->offset = base + n;
            continue;
        }
        if (base + n >= s->size && now - s->changed_ms >= c->partial_line_timeout_ms) {
            /* an unterminated last line that stopped growing: sent as it is */
            int rc = take_line(t, s, t->rbuf + pos, tail, base + (int64_t)pos);
            if (rc < 0) {
                t->blocked = true;
                return;
            }
            s->offset = base + n;
            continue;
        }
        break;
    }
    bool waiting = s->offset < s->size || s->pending.len > 0;
    if (s->pending.len > 0 && s->offset >= s->size && now - s->changed_ms >= c->partial_line_timeout_ms) {
        if (flush_pending(t, s) != 0) {
            t->blocked = true;
            return;
        }
        waiting = false;
    }
    if (waiting) {
        schedule(t, s, s->changed_ms + c->partial_line_timeout_ms);
    }
    if (s->state == SRC_DETACHED) {
        if (!waiting && now - s->changed_ms >= ROTATE_GRACE_MS && s->unseen_since_ms != 0 &&
            now - s->unseen_since_ms >= ROTATE_GRACE_MS) {
            log_debug("agent: %s: read to its end and unchanged for %d ms: closed", s->path, ROTATE_GRACE_MS);
            disarm(t, s);
            source_retire(s);
            s->ckpt_row_written = false; /* the final row is written (or deleted) when it is freed */
        } else {
            schedule(t, s, now + c->min_poll_interval_ms);
        }
    }
}

/* ---- inotify ---- */

static void add_watch(tailer_t *t, tail_flow_t *f)
{
    if (t->inotify_fd < 0 || f->watch >= 0) {
        return;
    }
    f->watch = inotify_add_watch(t->inotify_fd, f->cfg->directory,
                                 IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |
                                     IN_MOVE_SELF | IN_ONLYDIR);
    if (f->watch < 0 && errno != ENOENT) {
        log_warn("agent: cannot watch %s with inotify (%s): polling it every %lld ms", f->cfg->directory,
                 strerror(errno), (long long)f->cfg->min_poll_interval_ms);
    }
}

static void read_events(tailer_t *t, int64_t now)
{
    char events[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(t->inotify_fd, events, sizeof events);
        if (n <= 0) {
            return;
        }
        for (char *p = events; p < events + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                for (size_t i = 0; i < t->nflows; i++) {
                    t->flows[i].scan_wanted = true;
                }
                tailer_kick_all(t);
                continue;
            }
            if (ev->len == 0 && t->narmed > 0) {
                watch_fired(t, ev->wd, now); /* a file's watch (a directory's own events come with no name
                                                only for IN_IGNORED and the self events, handled below) */
            }
            for (size_t i = 0; i < t->nflows; i++) {
                tail_flow_t *f = &t->flows[i];
                if (f->watch != ev->wd) {
                    continue;
                }
                if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                    f->watch = -1; /* polled until the directory is back and watched again */
                    f->scan_wanted = true;
                    continue;
                }
                if (ev->len == 0) {
                    continue;
                }
                if (ev->mask & IN_MODIFY) {
                    tail_source_t *s = find_name(f, ev->name);
                    if (s != NULL) {
                        schedule(t, s, now);
                    }
                } else if (name_matches(f, ev->name) || find_name(f, ev->name) != NULL) {
                    f->scan_wanted = true;
                }
            }
        }
    }
}

/* ---- the tailer ---- */

tailer_t *tailer_new(const agent_config_t *cfg, ckpt_store_t *store, bool use_inotify, const tailer_ops_t *ops,
                     int64_t now, char *err, size_t errlen)
{
    tailer_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cfg = cfg;
    t->store = store;
    t->ops = *ops;
    t->inotify_fd = -1;
    t->wd_buckets = 64;
    t->by_wd = calloc(t->wd_buckets, sizeof *t->by_wd);
    t->nflows = cfg->nflows;
    t->flows = calloc(cfg->nflows, sizeof *t->flows);
    size_t maxrec = 0;
    for (size_t i = 0; i < cfg->nflows; i++) {
        maxrec = cfg->flows[i].max_record_bytes > maxrec ? cfg->flows[i].max_record_bytes : maxrec;
    }
    t->rbuf_cap = maxrec + 1 > 65536 ? maxrec + 1 : 65536;
    char *rmem = malloc(TAIL_BACK_CHECK + t->rbuf_cap);
    t->rbuf = rmem != NULL ? rmem + TAIL_BACK_CHECK : NULL;
    if (t->flows == NULL || t->rbuf == NULL || t->by_wd == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (use_inotify) {
        t->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (t->inotify_fd < 0) {
            log_warn("agent: inotify is not available (%s): polling files every minTimeBetweenFilePollsMillis",
                     strerror(errno));
        }
    }
    t->next_id = (store != NULL ? ckpt_max_id(store) : 0) + 1;
    for (size_t i = 0; i < cfg->nflows; i++) {
        tail_flow_t *f = &t->flows[i];
        f->cfg = &cfg->flows[i];
        f->index = i;
        f->watch = -1;
        f->buckets = 64;
        f->by_inode = calloc(f->buckets, sizeof *f->by_inode);
        f->by_name = calloc(f->buckets, sizeof *f->by_name);
        if (f->by_inode == NULL || f->by_name == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        const char *pats[2] = {f->cfg->multiline_start_pattern, f->cfg->file_footer_pattern};
        void **res[2] = {&f->start_re, &f->footer_re};
        void **mds[2] = {&f->start_md, &f->footer_md};
        for (int k = 0; k < 2; k++) {
            if (pats[k] == NULL) {
                continue;
            }
            int code;
            PCRE2_SIZE at;
            pcre2_code *re = pcre2_compile((PCRE2_SPTR)pats[k], PCRE2_ZERO_TERMINATED,
                                           PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
            if (re == NULL) {
                snprintf(err, errlen, "%s: a pattern does not compile", f->cfg->id);
                goto fail;
            }
            (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
            *res[k] = re;
            *mds[k] = pcre2_match_data_create_from_pattern(re, NULL);
        }
        add_watch(t, f);
        ckpt_row_t *rows = NULL;
        size_t nrows = 0;
        if (store != NULL && ckpt_load(store, f->cfg->id, &rows, &nrows) != 0) {
            snprintf(err, errlen, "cannot read the checkpoints of %s", f->cfg->id);
            goto fail;
        }
        scan_first(t, f, rows, nrows, now);
        ckpt_rows_free(rows, nrows);
        for (tail_source_t *s = f->head; s != NULL; s = s->next) {
            if (s->state == SRC_LIVE) {
                schedule(t, s, now);
            }
        }
        f->next_scan_ms = now + f->cfg->max_refresh_interval_ms;
    }
    return t;
fail:
    tailer_free(t);
    return NULL;
}

void tailer_free(tailer_t *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; t->flows != NULL && i < t->nflows; i++) {
        tail_flow_t *f = &t->flows[i];
        while (f->head != NULL) {
            source_free(t, f->head);
        }
        free(f->by_inode);
        free(f->by_name);
        pcre2_code_free(f->start_re);
        pcre2_code_free(f->footer_re);
        pcre2_match_data_free(f->start_md);
        pcre2_match_data_free(f->footer_md);
    }
    free(t->flows);
    if (t->inotify_fd >= 0) {
        close(t->inotify_fd);
    }
    free(t->sched);
    free(t->due);
    free(t->by_wd);
    free(t->rbuf != NULL ? t->rbuf - TAIL_BACK_CHECK : NULL);
    buf_dispose(&t->cut);
    free(t);
}

int tailer_fd(const tailer_t *t)
{
    return t->inotify_fd;
}

bool tailer_uses_inotify(const tailer_t *t)
{
    return t->inotify_fd >= 0;
}

void tailer_kick_all(tailer_t *t)
{
    t->blocked = false;
    for (size_t i = 0; i < t->nflows; i++) {
        for (tail_source_t *s = t->flows[i].head; s != NULL; s = s->next) {
            if (s->state == SRC_LIVE || s->state == SRC_DETACHED) {
                schedule(t, s, 0);
            }
        }
    }
}

void tailer_stop_reading(tailer_t *t)
{
    t->stopped = true;
}

/* Looks at the size of every file (polling, and the safety net under inotify). */
static void sweep(tailer_t *t, int64_t now)
{
    for (size_t i = 0; i < t->nflows; i++) {
        for (tail_source_t *s = t->flows[i].head; s != NULL; s = s->next) {
            if (s->fd < 0 || s->state == SRC_COPY || s->footer_seen || s->scheduled) {
                continue; /* scheduled: read soon anyway */
            }
            struct stat st;
            if (fstat(s->fd, &st) == 0 && (st.st_size != s->size || st.st_size != s->offset)) {
                schedule(t, s, now);
            }
        }
    }
}

static int by_seq(const void *a, const void *b)
{
    const tail_source_t *x = *(tail_source_t *const *)a, *y = *(tail_source_t *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int64_t tailer_run(tailer_t *t, int64_t now)
{
    if (t->stopped) {
        return now + 1000;
    }
    if (t->inotify_fd >= 0) {
        read_events(t, now);
    }
    int64_t next = now + 60000;
    int64_t sweep_every = 60000;
    for (size_t i = 0; i < t->nflows; i++) {
        tail_flow_t *f = &t->flows[i];
        if (f->watch < 0 && t->inotify_fd >= 0 && (f->scan_wanted || now >= f->next_scan_ms)) {
            add_watch(t, f);
        }
        if (f->scan_wanted || now >= f->next_scan_ms) {
            scan(t, f, now);
        }
        next = f->next_scan_ms < next ? f->next_scan_ms : next;
        int64_t every = f->watch >= 0 ? f->cfg->max_refresh_interval_ms : f->cfg->min_poll_interval_ms;
        sweep_every = every < sweep_every ? every : sweep_every;
    }
    if (now >= t->next_sweep_ms) {
        sweep(t, now);
        t->next_sweep_ms = now + sweep_every;
    }
    next = t->next_sweep_ms < next ? t->next_sweep_ms : next;
    /* take what is due out of the schedule first: reading may schedule more, or free sources */
    t->ndue = 0;
    bool all = t->sched_dirty;
    t->sched_dirty = false;
    size_t kept = 0; /* the rest stay in order: sources are read in the order they were scheduled */
    for (size_t i = 0; i < t->nsched; i++) {
        tail_source_t *s = t->sched[i].s;
        int64_t due = t->sched[i].due;
        if (all || due <= now) {
            int64_t interval = s->read_interval_ms > 0 ? s->read_interval_ms : s->flow->cfg->min_poll_interval_ms;
            if (s->due_ms <= now && s->due_ms != 0 && s->last_read_ms != 0 && now - s->last_read_ms < interval) {
                s->due_ms = s->last_read_ms + interval; /* at most one read per interval */
            }
            due = s->due_ms;
            if (due <= now && !t->blocked && due_push(t, s) == 0) {
                s->scheduled = false;
                continue;
            }
        }
        t->sched[kept++] = (struct sched_entry){s, due};
    }
    t->nsched = kept;
    /* older sources first: a file and the one that replaced it due in the same round (after the tailer
     * was held back for room, every file is) are read in that order, whatever their places in sched */
    bool sorted = true;
    for (size_t i = 1; i < t->ndue && sorted; i++) {
        sorted = t->due[i - 1]->seq < t->due[i]->seq;
    }
    if (!sorted) {
        qsort(t->due, t->ndue, sizeof *t->due, by_seq);
    }
    for (size_t i = 0; i < t->ndue; i++) {
        if (t->due[i] != NULL) {
            read_source(t, t->due[i], now);
        }
    }
    t->ndue = 0;
    for (size_t i = 0; i < t->nsched; i++) {
        int64_t due = t->sched_dirty ? t->sched[i].s->due_ms : t->sched[i].due;
        if (!t->blocked || due > now) {
            next = due < next ? due : next;
        }
    }
    return next > now ? next : now + 1;
}

size_t tailer_flow_count(const tailer_t *t)
{
    return t->nflows;
}

tail_flow_t *tailer_flow(tailer_t *t, size_t i)
{
    return &t->flows[i];
}

int64_t tailer_safe_offset(const tail_source_t *s)
{
    if (s->q_count > 0) {
        return s->acked_offset;
    }
    return s->pending.len > 0 ? s->pending_start : s->offset;
}

int tailer_write_checkpoints(tailer_t *t, int64_t wall_ms)
{
    if (t->store == NULL) {
        return 0;
    }
    bool began = false;
    int rc = 0;
    for (size_t i = 0; i < t->nflows; i++) {
        tail_flow_t *f = &t->flows[i];
        for (tail_source_t *s = f->head, *next; s != NULL; s = next) {
            next = s->next;
            if (s->state == SRC_COPY || s->state == SRC_UNSURE) {
                continue;
            }
            int64_t off = tailer_safe_offset(s);
            bool done = s->state == SRC_RETIRED && s->q_count == 0;
            bool gone = false;
            if (done) {
                struct stat st;
                gone = s->fd < 0 || fstat(s->fd, &st) != 0 || st.st_nlink == 0;
            }
            if (!done && s->ckpt_row_written && off == s->ckpt_written) {
                continue;
            }
            if (!began) {
                if (ckpt_begin(t->store) != 0) {
                    return -1;
                }
                began = true;
            }
            if (gone) {
                rc |= ckpt_delete(t->store, s->id);
            } else if (s->ckpt_row_written) {
                rc |= ckpt_put_offset(t->store, s->id, off, wall_ms);
            } else {
                ckpt_row_t row = {.id = s->id, .dev = s->dev, .ino = s->ino, .path = s->path,
                                  .fingerprint = s->fp, .fingerprint_len = s->fp_len, .offset = off,
                                  .updated_ms = wall_ms};
                rc |= ckpt_put(t->store, f->cfg->id, &row);
            }
            s->ckpt_written = off;
            s->ckpt_row_written = true;
            if (done) {
                source_free(t, s);
            }
        }
    }
    if (began && ckpt_commit(t->store) != 0) {
        return -1;
    }
    return rc;
}

void tailer_checkpoints_pruned(tailer_t *t)
{
    for (size_t i = 0; i < t->nflows; i++) {
        for (tail_source_t *s = t->flows[i].head; s != NULL; s = s->next) {
            s->ckpt_row_written = false;
        }
    }
}
