/*
 * engine_local: the local storage engine: one shardlog per shard under data/streams/<stream>/<shard>, and
 * sync workers that do group commit: every writer waiting for durability is queued, a worker takes
 * the whole queue, fdatasyncs each shard log in it once, and completes all its waiters. Concurrent
 * requests therefore share one fdatasync per shard (one costs ~150 us here, and milliseconds when the
 * disk is busy). There are SYNC_WORKERS such threads, each owning the shards that hash to it, so that
 * different shards' fdatasyncs run in parallel while one shard's are never reordered.
 *
 * The engine owns the key store (DATA/keys.json, keystore.h): shard logs borrow it to unwrap the data keys
 * of their sealed records when they open and to wrap new ones.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "store/engine.h"
#include "store/keystore.h"

_Static_assert(ENGINE_KEY_ID_MAX == KEYSTORE_ID_MAX && KEYSTORE_ID_MAX == SEG_KEY_ID_MAX,
               "one limit on master key ids");

typedef struct waiter {
    struct waiter *next;
    shard_log_t *log; /* holds a reference */
    uint64_t generation; /* the log's discard generation when the records were appended */
    engine_done_fn done;
    void *arg;
} waiter_t;

typedef struct open_log {
    struct open_log *prev, *next;
    shard_log_t *log;
} open_log_t;

struct engine_shard {
    open_log_t link; /* in the engine's list of open logs (for interval syncs) */
    shard_log_t *log;
};

#define SYNC_WORKERS 4

struct local_engine;

typedef struct sync_worker {
    struct local_engine *le;
    int id;
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    waiter_t *head, *tail;
    bool stopping;
} sync_worker_t;

typedef struct local_engine {
    engine_t base;
    engine_local_options_t opt;
    char data_dir[4096];
    keystore_t *keys;
    pthread_mutex_t lock; /* guards the list of open logs */
    open_log_t logs;      /* sentinel of the list of open shards */
    sync_worker_t workers[SYNC_WORKERS];
    int nworkers;         /* started */
    histogram_t sync_latency; /* of every shard_log_sync that wrote something */
} local_engine_t;

const char *durability_name(durability_t d)
{
    switch (d) {
    case DURABILITY_FSYNC:
        return "fsync";
    case DURABILITY_INTERVAL:
        return "interval";
    case DURABILITY_NONE:
        return "none";
    }
    return "fsync";
}

static local_engine_t *local(engine_t *e)
{
    return (local_engine_t *)e;
}

static void shard_dir(local_engine_t *le, const char *stream, uint32_t shard, char *out, size_t len)
{
    snprintf(out, len, "%s/streams/%s/%" PRIu32, le->data_dir, stream, shard);
}

static int open_shard(engine_t *e, const char *stream, uint32_t shard, uint64_t first_index, engine_shard_t **out)
{
    local_engine_t *le = local(e);
    char dir[4400], err[1024] = "";
    shard_dir(le, stream, shard, dir, sizeof dir);
    engine_shard_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        abort();
    }
    int rc = shard_log_open(dir, &le->opt.log, first_index, &s->log, err, sizeof err);
    if (rc != 0) {
        log_error("cannot open shard %" PRIu32 " of stream %s: %s", shard, stream, err);
        free(s);
        return rc;
    }
    s->link.log = s->log;
    pthread_mutex_lock(&le->lock);
    s->link.next = le->logs.next;
    s->link.prev = &le->logs;
    le->logs.next->prev = &s->link;
    le->logs.next = &s->link;
    pthread_mutex_unlock(&le->lock);
    *out = s;
    return 0;
}

static void close_shard(engine_t *e, engine_shard_t *s)
{
    local_engine_t *le = local(e);
    pthread_mutex_lock(&le->lock);
    s->link.prev->next = s->link.next;
    s->link.next->prev = s->link.prev;
    pthread_mutex_unlock(&le->lock);
    shard_log_unref(s->log);
    free(s);
}

static int drop_shard(engine_t *e, engine_shard_t *s)
{
    int rc = shard_log_destroy_files(s->log);
    close_shard(e, s);
    return rc;
}

static void drop_stream(engine_t *e, const char *stream)
{
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/streams/%s", local(e)->data_dir, stream);
    rmdir(dir);
}

static int append(engine_t *e, engine_shard_t *s, const log_entry_t *entries, size_t n, int64_t now_ms,
                  uint64_t *first, int64_t *arrival_ms, uint64_t *ticket)
{
    (void)e;
    return shard_log_append_gen(s->log, entries, n, now_ms, first, arrival_ms, ticket);
}

static int when_durable(engine_t *e, engine_shard_t *s, uint64_t ticket, engine_done_fn done, void *arg)
{
    local_engine_t *le = local(e);
    if (le->opt.durability != DURABILITY_FSYNC) {
        return 1;
    }
    waiter_t *w = malloc(sizeof *w);
    if (w == NULL) {
        abort();
    }
    shard_log_ref(s->log);
    *w = (waiter_t){NULL, s->log, ticket, done, arg};
    /* a shard always goes to the same worker: its waiters stay in order */
    sync_worker_t *wk = &le->workers[((uintptr_t)s->log >> 6) % SYNC_WORKERS];
    pthread_mutex_lock(&wk->lock);
    if (wk->tail != NULL) {
        wk->tail->next = w;
    } else {
        wk->head = w;
    }
    wk->tail = w;
    pthread_cond_signal(&wk->wake);
    pthread_mutex_unlock(&wk->lock);
    return 0;
}

static int read_records(engine_t *e, engine_shard_t *s, uint64_t from, size_t max_records, size_t max_bytes,
                        log_visit_fn fn, void *arg, uint64_t *next)
{
    (void)e;
    return shard_log_read(s->log, from, max_records, max_bytes, fn, arg, next);
}

static int seek_time(engine_t *e, engine_shard_t *s, int64_t ts_ms, uint64_t *index)
{
    (void)e;
    return shard_log_seek_time(s->log, ts_ms, index);
}

static void bounds(engine_t *e, engine_shard_t *s, uint64_t *first, uint64_t *visible_end, int64_t *last_arrival)
{
    (void)e;
    shard_log_bounds(s->log, first, visible_end, last_arrival);
}

static uint64_t written_end(engine_t *e, engine_shard_t *s)
{
    (void)e;
    return shard_log_written_end(s->log);
}

static int trim(engine_t *e, engine_shard_t *s, int64_t before_ms)
{
    (void)e;
    return shard_log_trim(s->log, before_ms);
}

static int resolve_key(engine_t *e, const char *key_ref, const char *region, const char *account, bool create,
                       char key_id[ENGINE_KEY_ID_MAX + 1])
{
    return keystore_resolve(local(e)->keys, key_ref, region, account, create, key_id);
}

static int set_encryption(engine_t *e, engine_shard_t *s, const char *key_id)
{
    (void)e;
    return shard_log_set_encryption(s->log, key_id);
}

/* shard_log_sync, timed. */
static int timed_sync(local_engine_t *le, shard_log_t *log)
{
    int64_t start = clock_monotonic_us();
    int rc = shard_log_sync(log, NULL);
    histogram_observe(&le->sync_latency, (uint64_t)(clock_monotonic_us() - start));
    return rc;
}

/* Syncs each distinct log of the batch once and completes its waiters. */
static void complete_batch(local_engine_t *le, waiter_t *batch)
{
    while (batch != NULL) {
        shard_log_t *log = batch->log;
        int rc = timed_sync(le, log);
        /* A waiter whose records a failed sync discarded (possibly an earlier sync than this one: its
         * records may have been appended while that sync ran) must not be told they are durable. */
        uint64_t generation = shard_log_generation(log);
        waiter_t **pp = &batch;
        while (*pp != NULL) {
            waiter_t *w = *pp;
            if (w->log != log) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            w->done(w->arg, rc != 0 ? rc : w->generation != generation ? -EIO : 0);
            shard_log_unref(w->log);
            free(w);
        }
    }
}

/* Syncs every open log that has unsynced records (interval mode and shutdown). */
static void sync_all(local_engine_t *le)
{
    pthread_mutex_lock(&le->lock);
    size_t n = 0;
    for (open_log_t *l = le->logs.next; l != &le->logs; l = l->next) {
        n++;
    }
    shard_log_t **logs = calloc(n ? n : 1, sizeof *logs);
    if (logs == NULL) {
        abort();
    }
    n = 0;
    for (open_log_t *l = le->logs.next; l != &le->logs; l = l->next) {
        if (shard_log_dirty(l->log)) {
            shard_log_ref(l->log);
            logs[n++] = l->log;
        }
    }
    pthread_mutex_unlock(&le->lock);
    for (size_t i = 0; i < n; i++) {
        timed_sync(le, logs[i]);
        shard_log_unref(logs[i]);
    }
    free(logs);
}

static void *sync_main(void *arg)
{
    sync_worker_t *wk = arg;
    local_engine_t *le = wk->le;
    /* worker 0 also runs the periodic sync of --durability interval */
    bool periodic = wk->id == 0 && le->opt.durability == DURABILITY_INTERVAL;
    pthread_mutex_lock(&wk->lock);
    for (;;) {
        if (wk->head == NULL && !wk->stopping) {
            if (periodic) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += (long)le->opt.interval_ms * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                int rc = pthread_cond_timedwait(&wk->wake, &wk->lock, &ts);
                if (rc != 0 && wk->head == NULL && !wk->stopping) {
                    pthread_mutex_unlock(&wk->lock);
                    sync_all(le);
                    pthread_mutex_lock(&wk->lock);
                }
                continue;
            }
            pthread_cond_wait(&wk->wake, &wk->lock);
            continue;
        }
        waiter_t *batch = wk->head;
        wk->head = wk->tail = NULL;
        bool stopping = wk->stopping;
        pthread_mutex_unlock(&wk->lock);
        complete_batch(le, batch);
        if (stopping && batch == NULL) {
            return NULL;
        }
        pthread_mutex_lock(&wk->lock);
    }
}

static void stop_workers(local_engine_t *le)
{
    for (int i = 0; i < le->nworkers; i++) {
        sync_worker_t *wk = &le->workers[i];
        pthread_mutex_lock(&wk->lock);
        wk->stopping = true;
        pthread_cond_signal(&wk->wake);
        pthread_mutex_unlock(&wk->lock);
    }
    for (int i = 0; i < le->nworkers; i++) {
        pthread_join(le->workers[i].tid, NULL);
        pthread_mutex_destroy(&le->workers[i].lock);
        pthread_cond_destroy(&le->workers[i].wake);
    }
    le->nworkers = 0;
}

/* Sums the sizes of the regular files under dir (a stream's shard folders hold files only). */
static uint64_t folder_bytes(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    uint64_t total = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') {
            continue;
        }
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) {
            continue; /* removed meanwhile (trimmed) */
        }
        if (S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_blocks * 512;
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            total += folder_bytes(path, depth - 1);
        }
    }
    closedir(d);
    return total;
}

static uint64_t stream_disk_bytes(engine_t *e, const char *stream)
{
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/streams/%s", local(e)->data_dir, stream);
    return folder_bytes(dir, 1);
}

static void sync_latency(engine_t *e, histogram_snapshot_t *snap)
{
    histogram_add_to(&local(e)->sync_latency, snap);
}

static void engine_close(engine_t *e)
{
    local_engine_t *le = local(e);
    stop_workers(le);
    if (le->opt.durability != DURABILITY_NONE) {
        sync_all(le);
    }
    pthread_mutex_destroy(&le->lock);
    keystore_free(le->keys);
    free(le);
}

static const engine_ops_t local_ops = {
    .open_shard = open_shard,
    .close_shard = close_shard,
    .drop_shard = drop_shard,
    .drop_stream = drop_stream,
    .append = append,
    .when_durable = when_durable,
    .read = read_records,
    .seek_time = seek_time,
    .bounds = bounds,
    .written_end = written_end,
    .trim = trim,
    .resolve_key = resolve_key,
    .set_encryption = set_encryption,
    .stream_disk_bytes = stream_disk_bytes,
    .sync_latency = sync_latency,
    .close = engine_close,
};

engine_t *engine_local_new(const engine_local_options_t *opt, char *errmsg, size_t errmsg_len)
{
    local_engine_t *le = calloc(1, sizeof *le);
    if (le == NULL) {
        abort();
    }
    le->base.ops = &local_ops;
    le->opt = *opt;
    snprintf(le->data_dir, sizeof le->data_dir, "%s", opt->data_dir);
    le->opt.data_dir = le->data_dir;
    le->opt.log.visible_after_sync = opt->durability == DURABILITY_FSYNC;
    if (le->opt.interval_ms <= 0) {
        le->opt.interval_ms = 1000;
    }
    le->logs.next = le->logs.prev = &le->logs;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/streams", le->data_dir);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(errmsg, errmsg_len, "cannot create %s: %s", dir, strerror(errno));
        free(le);
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s/%s", le->data_dir, KEYSTORE_FILE);
    if (keystore_open(dir, &le->keys, errmsg, errmsg_len) != 0) {
        free(le);
        return NULL;
    }
    le->opt.log.keys = le->keys;
    pthread_mutex_init(&le->lock, NULL);
    for (int i = 0; i < SYNC_WORKERS; i++) {
        sync_worker_t *wk = &le->workers[i];
        wk->le = le;
        wk->id = i;
        pthread_mutex_init(&wk->lock, NULL);
        pthread_cond_init(&wk->wake, NULL);
        if (pthread_create(&wk->tid, NULL, sync_main, wk) != 0) {
            pthread_mutex_destroy(&wk->lock);
            pthread_cond_destroy(&wk->wake);
            stop_workers(le);
            pthread_mutex_destroy(&le->lock);
            snprintf(errmsg, errmsg_len, "cannot start the sync threads");
            keystore_free(le->keys);
            free(le);
            return NULL;
        }
        le->nworkers = i + 1;
    }
    return &le->base;
}
