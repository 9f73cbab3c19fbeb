/*
 * A stress test of the local engine's group commit: two writer threads append to four shards while the
 * sync workers' fdatasyncs fail now and then and small segments roll all the time. Every durability wait
 * must complete exactly once, and after a reopen every acknowledged record must still be there.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/engine.h"

#define SHARDS 4
#define WRITERS 2
#define APPENDS 3000

static _Atomic int sync_calls;
static _Atomic int armed;

static int flaky_fdatasync(int fd)
{
    if (atomic_load(&armed) && atomic_fetch_add(&sync_calls, 1) % 7 == 3) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static fileio_t io;
static engine_t *engine;
static engine_shard_t *shards[SHARDS];
static _Atomic long completed, acked, pending;
static _Atomic uint64_t acked_end[SHARDS]; /* highest end index of an acknowledged append per shard */

typedef struct wait {
    int shard;
    uint64_t end;
} wait_t;

static void on_durable(void *arg, int status)
{
    wait_t *w = arg;
    if (status == 0) {
        uint64_t cur = atomic_load(&acked_end[w->shard]);
        while (cur < w->end && !atomic_compare_exchange_weak(&acked_end[w->shard], &cur, w->end)) {
        }
        atomic_fetch_add(&acked, 1);
    }
    atomic_fetch_add(&completed, 1);
    atomic_fetch_sub(&pending, 1);
    free(w);
}

static void *writer(void *arg)
{
    long t = (long)arg;
    char data[100];
    memset(data, 'x', sizeof data);
    long waits = 0;
    for (int i = 0; i < APPENDS; i++) {
        int s = (int)((t + i) % SHARDS);
        log_entry_t entries[8];
        for (int k = 0; k < 8; k++) {
            entries[k] = (log_entry_t){"pk", 2, data, sizeof data};
        }
        uint64_t first, ticket;
        int64_t arrival;
        if (engine->ops->append(engine, shards[s], entries, 8, 1000 + i, &first, &arrival, &ticket) != 0) {
            continue;
        }
        wait_t *w = malloc(sizeof *w);
        cr_assert_not_null(w);
        *w = (wait_t){s, first + 8};
        atomic_fetch_add(&pending, 1);
        waits++;
        if (engine->ops->when_durable(engine, shards[s], ticket, on_durable, w) != 0) {
            atomic_fetch_sub(&pending, 1);
            free(w);
        }
    }
    return (void *)waits;
}

static engine_t *open_engine(const char *dir, const fileio_t *fio)
{
    engine_local_options_t o = {.data_dir = dir, .durability = DURABILITY_FSYNC};
    shard_log_default_options(&o.log);
    o.log.io = fio;
    o.log.segment_bytes = 64 * 1024;
    char err[256] = "";
    engine_t *e = engine_local_new(&o, err, sizeof err);
    cr_assert_not_null(e, "%s", err);
    for (int i = 0; i < SHARDS; i++) {
        cr_assert_eq(e->ops->open_shard(e, "s", (uint32_t)i, 0, &shards[i]), 0);
    }
    return e;
}

Test(engine_stress, failing_syncs_never_lose_acknowledged_records, .timeout = 120)
{
    char dir[] = "/tmp/eddy-engine-stress-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    io = fileio_posix;
    io.fdatasync = flaky_fdatasync;
    engine = open_engine(dir, &io);
    atomic_store(&armed, 1);
    pthread_t threads[WRITERS];
    for (long t = 0; t < WRITERS; t++) {
        cr_assert_eq(pthread_create(&threads[t], NULL, writer, (void *)t), 0);
    }
    long waits = 0;
    for (int t = 0; t < WRITERS; t++) {
        void *n;
        pthread_join(threads[t], &n);
        waits += (long)n;
    }
    /* every wait completes exactly once (polled: the sync workers finish them) */
    for (int spins = 0; atomic_load(&pending) > 0 && spins < 100000; spins++) {
        usleep(100);
    }
    cr_assert_eq(atomic_load(&pending), 0);
    cr_assert_eq(atomic_load(&completed), waits);
    cr_assert_gt(atomic_load(&acked), 0);
    cr_assert_lt(atomic_load(&acked), waits, "some syncs should have failed");
    atomic_store(&armed, 0);
    for (int i = 0; i < SHARDS; i++) {
        engine->ops->close_shard(engine, shards[i]);
    }
    engine->ops->close(engine);

    /* reopen without faults: everything acknowledged is there */
    engine = open_engine(dir, &fileio_posix);
    for (int i = 0; i < SHARDS; i++) {
        uint64_t first = 0, end = 0;
        engine->ops->bounds(engine, shards[i], &first, &end, NULL);
        cr_assert_geq(end, atomic_load(&acked_end[i]), "shard %d lost acknowledged records", i);
        engine->ops->close_shard(engine, shards[i]);
    }
    engine->ops->close(engine);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
