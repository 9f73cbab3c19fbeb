/*
 * Fault-injection tests for store/shardlog through the I/O ops table (fileio_t): failed, short and torn
 * writes (ENOSPC, EIO), failed fdatasync, failed ftruncate and failed reads.
 *
 * The contract under test (shardlog.h): an append that fails appended nothing; a sync that fails discards
 * the records that were not yet durable (and their indexes are given out again); a read never serves a
 * record that was not successfully appended, and never a damaged one. Each test keeps a reference of the
 * records that must be in the log: a list of payload ids by index. Every attempted append uses a new id,
 * so a record from a failed append can never pass for a good one.
 *
 * One test drives the local engine (engine_local.c) over the same I/O table, because what its group commit
 * acknowledges depends on what a failed shard_log_sync discards.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/engine.h"
#include "store/shardlog.h"

/* ---- the fault-injecting I/O table ---- */

typedef enum write_fault {
    WF_ERRNO,      /* the call fails with errno, writing nothing */
    WF_TORN_SHORT, /* the call writes half and reports it; the next call fails with EIO */
    WF_TORN_ERR,   /* the call writes half and fails with EIO */
} write_fault_t;

static struct faults {
    int pwrite_calls, pwrite_fail_at; /* 1-based call number to fail; 0: none */
    write_fault_t pwrite_kind;
    int pwrite_errno;
    bool pwrite_fail_all; /* every call fails with pwrite_errno (disk full) */
    bool fail_next_pwrite;
    int fdatasync_calls, fdatasync_fail_at;
    bool ftruncate_fail;
    int pread_calls, pread_fail_at;
    int rename_calls;
} F;

static ssize_t fault_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    F.pwrite_calls++;
    if (F.fail_next_pwrite) {
        F.fail_next_pwrite = false;
        errno = EIO;
        return -1;
    }
    if (F.pwrite_fail_all) {
        errno = F.pwrite_errno;
        return -1;
    }
    if (F.pwrite_calls != F.pwrite_fail_at) {
        return fileio_posix.pwrite(fd, buf, n, off);
    }
    switch (F.pwrite_kind) {
    case WF_ERRNO:
        errno = F.pwrite_errno;
        return -1;
    case WF_TORN_SHORT:
        if (n > 1) {
            F.fail_next_pwrite = true;
            return fileio_posix.pwrite(fd, buf, n / 2, off);
        }
        errno = EIO;
        return -1;
    case WF_TORN_ERR:
        if (n > 1) {
            cr_assert_eq(fileio_posix.pwrite(fd, buf, n / 2, off), (ssize_t)(n / 2));
        }
        errno = EIO;
        return -1;
    }
    return -1;
}

/* A successful fdatasync does not wait for the disk: these tests never crash the machine, so only what
 * the log does with the result matters, and the sweeps make thousands of calls. */
static int fault_fdatasync(int fd)
{
    F.fdatasync_calls++;
    if (F.fdatasync_calls == F.fdatasync_fail_at) {
        errno = EIO;
        return -1;
    }
    (void)fd;
    return 0;
}

static int fault_ftruncate(int fd, off_t len)
{
    if (F.ftruncate_fail) {
        errno = EIO;
        return -1;
    }
    return fileio_posix.ftruncate(fd, len);
}

static ssize_t fault_pread(int fd, void *buf, size_t n, off_t off)
{
    F.pread_calls++;
    if (F.pread_calls == F.pread_fail_at) {
        errno = EIO;
        return -1;
    }
    return fileio_posix.pread(fd, buf, n, off);
}

static int fault_rename(const char *from, const char *to)
{
    F.rename_calls++;
    return fileio_posix.rename(from, to);
}

static int pass_open(const char *path, int flags, mode_t mode)
{
    return fileio_posix.open(path, flags, mode);
}

static int pass_close(int fd)
{
    return fileio_posix.close(fd);
}

static int pass_unlink(const char *path)
{
    return fileio_posix.unlink(path);
}

static const fileio_t fault_io = {
    .open = pass_open,
    .pwrite = fault_pwrite,
    .pread = fault_pread,
    .fdatasync = fault_fdatasync,
    .ftruncate = fault_ftruncate,
    .close = pass_close,
    .unlink = pass_unlink,
    .rename = fault_rename,
};

/* Stops injecting and zeroes the counters (after an open, so that call numbers count from there). */
static void faults_reset(void)
{
    memset(&F, 0, sizeof F);
}

/* ---- folder, records, reference ---- */

static char tmp[64];
static char logdir[128];

static void setup(void)
{
    log_set_level(LOG_ERROR + 1); /* the failures below are logged on purpose */
    faults_reset();
    snprintf(tmp, sizeof tmp, "/tmp/eddy-faults-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(logdir, sizeof logdir, "%s/log", tmp);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(shardlog_faults, .init = setup, .fini = teardown);

static void remove_log(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", logdir);
    cr_assert_eq(system(cmd), 0);
}

static shard_log_options_t options(size_t segment_bytes, bool visible_after_sync)
{
    shard_log_options_t o;
    shard_log_default_options(&o);
    o.io = &fault_io;
    o.segment_bytes = segment_bytes;
    o.index_interval = 128;
    o.visible_after_sync = visible_after_sync;
    return o;
}

static shard_log_t *open_log(const shard_log_options_t *o)
{
    char err[256] = "";
    shard_log_t *log = NULL;
    int rc = shard_log_open(logdir, o, 0, &log, err, sizeof err);
    cr_assert_eq(rc, 0, "shard_log_open: %d %s", rc, err);
    return log;
}

/* Payload of id: key of 1..30 bytes, data of 0..199 bytes, both derived from id. */
static size_t gen_pk(uint64_t id, char *pk)
{
    size_t len = 1 + (size_t)(id * 7 % 30);
    for (size_t k = 0; k < len; k++) {
        pk[k] = (char)('a' + (id + k * 3) % 26);
    }
    return len;
}

static size_t gen_data(uint64_t id, unsigned char *data)
{
    size_t len = (size_t)(id * 53 % 200);
    for (size_t k = 0; k < len; k++) {
        data[k] = (unsigned char)(id * 97 + k);
    }
    return len;
}

#define MAX_RECORDS 4096

/* What the log must hold: records [0, end), record i has payload ids[i]; [0, visible) is visible. */
typedef struct reference {
    uint64_t ids[MAX_RECORDS];
    int64_t arrivals[MAX_RECORDS];
    uint64_t end, visible;
    uint64_t next_id;
} reference_t;

/* Appends n new payloads; returns the rc. On success the reference grows (visible too when the log
 * shows records at once). */
static int try_append(shard_log_t *log, reference_t *ref, size_t n, bool visible_now)
{
    log_entry_t e[8];
    char pks[8][32];
    unsigned char datas[8][200];
    cr_assert_leq(n, 8u);
    uint64_t id0 = ref->next_id;
    for (size_t k = 0; k < n; k++) {
        e[k] = (log_entry_t){pks[k], gen_pk(id0 + k, pks[k]), datas[k], gen_data(id0 + k, datas[k])};
    }
    ref->next_id += n;
    uint64_t first = UINT64_MAX;
    int64_t arrival = 0;
    int rc = shard_log_append(log, e, n, 1000 + (int64_t)id0, &first, &arrival);
    if (rc == 0) {
        cr_assert_eq(first, ref->end, "append got index %" PRIu64 ", expected %" PRIu64, first, ref->end);
        cr_assert_leq(ref->end + n, (uint64_t)MAX_RECORDS);
        cr_assert_eq(arrival, 1000 + (int64_t)id0, "arrival times only grow here");
        for (size_t k = 0; k < n; k++) {
            ref->ids[ref->end + k] = id0 + k;
            ref->arrivals[ref->end + k] = arrival;
        }
        ref->end += n;
        if (visible_now) {
            ref->visible = ref->end;
        }
    }
    return rc;
}

typedef struct check_state {
    const reference_t *ref;
    uint64_t expected;
} check_state_t;

static bool check_visit(void *arg, const seg_record_t *r)
{
    check_state_t *cs = arg;
    cr_assert_eq(r->index, cs->expected, "read index %" PRIu64 ", expected %" PRIu64, r->index, cs->expected);
    cr_assert_lt(r->index, cs->ref->visible, "record %" PRIu64 " is not visible", r->index);
    char pk[32];
    unsigned char data[200];
    uint64_t id = cs->ref->ids[r->index];
    size_t pk_len = gen_pk(id, pk), data_len = gen_data(id, data);
    cr_assert_eq(r->pk_len, pk_len, "record %" PRIu64 ": not the payload it was appended with", r->index);
    cr_assert_eq(memcmp(r->pk, pk, pk_len), 0, "record %" PRIu64 " pk", r->index);
    cr_assert_eq(r->data_len, data_len, "record %" PRIu64 " data_len", r->index);
    cr_assert_eq(memcmp(r->data, data, data_len), 0, "record %" PRIu64 " data", r->index);
    cr_assert_eq(r->arrival_ms, cs->ref->arrivals[r->index]);
    cs->expected++;
    return true;
}

/* The log has written exactly the reference's records and serves exactly its visible ones. A roll syncs
 * the full segment, so records may become visible before the sync that the reference waits for: the
 * visible end may be anywhere between the reference's and its written end (and then it is adopted). */
static void check_log(shard_log_t *log, reference_t *ref)
{
    uint64_t first = 1, end = 0;
    shard_log_bounds(log, &first, &end, NULL);
    cr_assert_eq(first, 0u);
    cr_assert(end >= ref->visible && end <= ref->end,
              "visible end %" PRIu64 ", expected %" PRIu64 "..%" PRIu64, end, ref->visible, ref->end);
    ref->visible = end;
    cr_assert_eq(shard_log_written_end(log), ref->end, "written end %" PRIu64 ", expected %" PRIu64,
                 shard_log_written_end(log), ref->end);
    check_state_t cs = {ref, 0};
    uint64_t next = 0;
    cr_assert_eq(shard_log_read(log, 0, SIZE_MAX, SIZE_MAX, check_visit, &cs, &next), 0);
    cr_assert_eq(cs.expected, ref->visible);
}

/* Closes, reopens without faults and checks: a reopened log shows every record on disk. */
static void check_after_reopen(shard_log_t *log, reference_t *ref)
{
    shard_log_unref(log);
    faults_reset();
    shard_log_t *again = open_log(&(shard_log_options_t){&fault_io, 2048, 128, true});
    ref->visible = ref->end;
    check_log(again, ref);
    shard_log_unref(again);
}

static size_t count_files(const char *suffix)
{
    DIR *d = opendir(logdir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > strlen(suffix) && strcmp(e->d_name + len - strlen(suffix), suffix) == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* ---- write faults ---- */

/* The workload of the sweeps: 40 batches of 1..4 records in 2 KiB segments (rolls every few batches). */
#define SWEEP_BATCHES 40

static size_t batch_size(int b)
{
    return 1 + (size_t)(b * 7 % 4);
}

static int expected_errno(write_fault_t kind, int err)
{
    return kind == WF_ERRNO ? -err : -EIO;
}

/* Runs the workload with pwrite call number fail_at failing as `kind`; returns the pwrite calls made. */
static int run_write_sweep_case(write_fault_t kind, int err, int fail_at, bool visible_after_sync)
{
    remove_log();
    shard_log_options_t o = options(2048, visible_after_sync);
    shard_log_t *log = open_log(&o);
    faults_reset();
    F.pwrite_fail_at = fail_at;
    F.pwrite_kind = kind;
    F.pwrite_errno = err;
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    int failures = 0;
    for (int b = 0; b < SWEEP_BATCHES; b++) {
        uint64_t end_before = shard_log_written_end(log);
        int rc = try_append(log, &ref, batch_size(b), !visible_after_sync);
        if (rc != 0) {
            failures++;
            cr_assert_eq(rc, expected_errno(kind, err), "fail_at %d: append returned %d", fail_at, rc);
            cr_assert_eq(shard_log_written_end(log), end_before,
                         "fail_at %d: a failed append changed the end", fail_at);
            check_log(log, &ref);
        }
        if (visible_after_sync && b % 3 == 2) {
            cr_assert_eq(shard_log_sync(log, NULL), 0);
            ref.visible = ref.end;
        }
    }
    int calls = F.pwrite_calls;
    cr_assert_eq(failures, fail_at > 0 && fail_at <= calls ? 1 : 0, "fail_at %d: %d failures", fail_at,
                 failures);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    ref.visible = ref.end;
    check_log(log, &ref);
    cr_assert_eq(ref.end, ref.visible);
    check_after_reopen(log, &ref);
    return calls;
}

static void write_sweep(write_fault_t kind, int err, bool visible_after_sync)
{
    int calls = run_write_sweep_case(kind, err, 0, visible_after_sync);
    cr_assert_gt(calls, SWEEP_BATCHES, "the workload rolls segments: %d writes", calls);
    for (int n = 1; n <= calls; n++) {
        run_write_sweep_case(kind, err, n, visible_after_sync);
    }
}

Test(shardlog_faults, every_write_failing_with_enospc)
{
    write_sweep(WF_ERRNO, ENOSPC, false);
}

Test(shardlog_faults, every_write_failing_with_eio)
{
    write_sweep(WF_ERRNO, EIO, true);
}

Test(shardlog_faults, every_write_torn_by_a_short_write)
{
    write_sweep(WF_TORN_SHORT, EIO, false);
}

Test(shardlog_faults, every_write_torn_then_failing)
{
    write_sweep(WF_TORN_ERR, EIO, true);
}

/* Size of the active (highest-numbered) segment file. */
static off_t active_size(void)
{
    DIR *d = opendir(logdir);
    cr_assert_not_null(d);
    uint64_t last = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) == 24 && strcmp(e->d_name + 20, ".seg") == 0) {
            uint64_t f = strtoull(e->d_name, NULL, 10);
            last = f > last ? f : last;
        }
    }
    closedir(d);
    char path[256];
    snprintf(path, sizeof path, "%s/%020" PRIu64 ".seg", logdir, last);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

Test(shardlog_faults, appends_resume_when_space_returns)
{
    shard_log_options_t o = options(2048, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(try_append(log, &ref, 3, true), 0);
    }
    off_t size = active_size();
    /* the disk is full: every append fails and leaves the file as it was */
    F.pwrite_fail_all = true;
    F.pwrite_errno = ENOSPC;
    for (int k = 0; k < 12; k++) {
        cr_assert_eq(try_append(log, &ref, 1 + (size_t)k % 4, true), -ENOSPC);
        check_log(log, &ref);
        cr_assert_eq(active_size(), size);
    }
    /* space returns: fill the active segment so that the next append must roll */
    F.pwrite_fail_all = false;
    while (active_size() < 2048) {
        cr_assert_eq(try_append(log, &ref, 4, true), 0);
    }
    size_t segs = count_files(".seg");
    /* full again: the roll cannot write the new segment's header, and does not leave the file behind */
    F.pwrite_fail_all = true;
    for (int k = 0; k < 5; k++) {
        cr_assert_eq(try_append(log, &ref, 2, true), -ENOSPC);
        cr_assert_eq(count_files(".seg"), segs);
        check_log(log, &ref);
    }
    /* space returns for good: the indexes go on where they stopped */
    F.pwrite_fail_all = false;
    uint64_t before = ref.end;
    for (int k = 0; k < 20; k++) {
        cr_assert_eq(try_append(log, &ref, 1 + (size_t)k % 4, true), 0);
    }
    cr_assert_gt(count_files(".seg"), segs);
    cr_assert_eq(ref.end, before + 50);
    check_log(log, &ref);
    check_after_reopen(log, &ref);
}

Test(shardlog_faults, arrival_never_goes_back_after_reopen_with_an_empty_active_segment)
{
    /*
     * segment.h: arrival_ms is "never below the previous frame's", and shard_log_append promises an
     * arrival >= every earlier arrival. A roll whose first write fails leaves an empty active segment;
     * after a reopen the log must still know the last arrival of the segment before it.
     */
    shard_log_options_t o = options(2048, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    while (active_size() < 2048) {
        cr_assert_eq(try_append(log, &ref, 4, true), 0);
    }
    int64_t last = ref.arrivals[ref.end - 1];
    size_t segs = count_files(".seg");
    F.pwrite_fail_at = F.pwrite_calls + 2; /* the roll writes the new header, then the frames fail */
    F.pwrite_kind = WF_ERRNO;
    F.pwrite_errno = EIO;
    cr_assert_eq(try_append(log, &ref, 1, true), -EIO);
    cr_assert_eq(count_files(".seg"), segs + 1, "the new (empty) segment stays");
    shard_log_unref(log);
    faults_reset();
    log = open_log(&o);
    log_entry_t e = {"k", 1, "late", 4};
    uint64_t first = 0;
    int64_t arrival = 0;
    cr_assert_eq(shard_log_append(log, &e, 1, last - 500, &first, &arrival), 0);
    uint64_t found = 0;
    cr_assert_eq(shard_log_seek_time(log, last, &found), 0);
    shard_log_unref(log);
    cr_assert_eq(first, ref.end);
    cr_assert_eq(arrival, last, "arrival %" PRId64 " is below the previous record's %" PRId64, arrival, last);
    cr_assert_eq(found, ref.end - 4, "seek_time(%" PRId64 ") found %" PRIu64, last, found);
}

/* ---- sync faults ---- */

Test(shardlog_faults, failed_sync_discards_unsynced_records)
{
    shard_log_options_t o = options(1u << 20, true);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    cr_assert_eq(try_append(log, &ref, 3, false), 0);
    uint64_t synced = 0;
    cr_assert_eq(shard_log_sync(log, &synced), 0);
    cr_assert_eq(synced, 3u);
    ref.visible = 3;
    cr_assert_eq(try_append(log, &ref, 2, false), 0);
    cr_assert(shard_log_dirty(log));

    F.fdatasync_fail_at = F.fdatasync_calls + 1;
    cr_assert_eq(shard_log_sync(log, &synced), -EIO);
    cr_assert_eq(synced, 3u, "only the first batch is durable");
    /* records 3 and 4 are gone: never visible, and their indexes are given out again */
    ref.end = 3;
    check_log(log, &ref);
    cr_assert_not(shard_log_dirty(log));
    cr_assert_eq(try_append(log, &ref, 2, false), 0);
    cr_assert_eq(ref.ids[3], 5u, "index 3 now holds the payload of the next append");
    check_log(log, &ref);
    cr_assert_eq(shard_log_sync(log, &synced), 0);
    cr_assert_eq(synced, 5u);
    ref.visible = 5;
    check_log(log, &ref);
    check_after_reopen(log, &ref);
}

/* Syncs after every third append, with fdatasync number fail_at failing (no rolls: 1 MiB segments). */
static int run_sync_sweep_case(int fail_at)
{
    remove_log();
    shard_log_options_t o = options(1u << 20, true);
    shard_log_t *log = open_log(&o);
    faults_reset();
    F.fdatasync_fail_at = fail_at;
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    int failures = 0;
    for (int b = 0; b < 30; b++) {
        cr_assert_eq(try_append(log, &ref, batch_size(b), false), 0);
        if (b % 3 == 2) {
            uint64_t synced = 0;
            int rc = shard_log_sync(log, &synced);
            if (rc == 0) {
                ref.visible = ref.end;
            } else {
                cr_assert_eq(rc, -EIO);
                failures++;
                ref.end = ref.visible;
            }
            cr_assert_eq(synced, ref.visible);
            check_log(log, &ref);
        }
    }
    int calls = F.fdatasync_calls;
    cr_assert_eq(failures, fail_at > 0 && fail_at <= calls ? 1 : 0);
    check_after_reopen(log, &ref);
    return calls;
}

Test(shardlog_faults, every_sync_failing)
{
    int calls = run_sync_sweep_case(0);
    cr_assert_eq(calls, 10);
    for (int n = 1; n <= calls; n++) {
        run_sync_sweep_case(n);
    }
}

Test(shardlog_faults, failed_sync_without_visible_after_sync)
{
    /* records were visible at once; a failed sync still never leaves a damaged or partial record */
    shard_log_options_t o = options(1u << 20, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    cr_assert_eq(try_append(log, &ref, 3, true), 0);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    cr_assert_eq(try_append(log, &ref, 2, true), 0);
    F.fdatasync_fail_at = F.fdatasync_calls + 1;
    cr_assert_eq(shard_log_sync(log, NULL), -EIO);
    /* Records visible at once were already acknowledged in a mode that never promised they were on disk:
     * they are kept (no sequence number is ever reused) and the next sync tries again. */
    check_log(log, &ref);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    cr_assert_eq(try_append(log, &ref, 1, true), 0);
    check_log(log, &ref);
    check_after_reopen(log, &ref);
}

Test(shardlog_faults, failed_fdatasync_before_a_roll_discards_unsynced_records)
{
    /*
     * A roll fdatasyncs the full segment first. When that fails the kernel may have dropped the dirty
     * pages, exactly as in shard_log_sync: the records written since the last good sync must not become
     * visible (acknowledged) later just because a retried fdatasync reports success.
     */
    shard_log_options_t o = options(2048, true);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    cr_assert_eq(try_append(log, &ref, 2, false), 0);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    ref.visible = ref.end;
    uint64_t durable = ref.end;
    /* fill the segment past 2 KiB without syncing */
    while (count_files(".seg") == 1) {
        uint64_t end_before = ref.end;
        F.fdatasync_fail_at = F.fdatasync_calls + 1; /* the roll's fdatasync of the full segment fails */
        int rc = try_append(log, &ref, 4, false);
        F.fdatasync_fail_at = 0;
        if (rc != 0) {
            cr_assert_eq(rc, -EIO);
            cr_assert_eq(ref.end, end_before);
            break;
        }
    }
    cr_assert_eq(count_files(".seg"), 1u, "the roll failed");
    uint64_t written = shard_log_written_end(log);
    uint64_t synced = 0;
    int rc = shard_log_sync(log, &synced);
    uint64_t visible = 0;
    shard_log_bounds(log, NULL, &visible, NULL);
    shard_log_unref(log);
    cr_assert_eq(written, durable,
                 "after the failed fdatasync, records %" PRIu64 "..%" PRIu64
                 " (not durable) are still written",
                 durable, written - 1);
    cr_assert(rc != 0 || visible == durable,
              "a retried sync made records %" PRIu64 "..%" PRIu64 " visible after their fdatasync failed",
              durable, visible - 1);
}

/* ---- group commit (engine_local) over a failing sync ---- */

/* An fdatasync that, once armed, signals that it was entered, waits for the test, then fails. */
static struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool armed, entered, released;
} G = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false};

static int gated_fdatasync(int fd)
{
    (void)fd;
    pthread_mutex_lock(&G.lock);
    bool armed = G.armed;
    if (armed) {
        G.armed = false;
        G.entered = true;
        pthread_cond_broadcast(&G.cond);
        while (!G.released) {
            pthread_cond_wait(&G.cond, &G.lock);
        }
    }
    pthread_mutex_unlock(&G.lock);
    if (armed) {
        errno = EIO;
        return -1;
    }
    return 0;
}

typedef struct completion {
    bool done;
    int status;
} completion_t;

static void on_durable(void *arg, int status)
{
    completion_t *c = arg;
    pthread_mutex_lock(&G.lock);
    c->done = true;
    c->status = status;
    pthread_cond_broadcast(&G.cond);
    pthread_mutex_unlock(&G.lock);
}

Test(shardlog_faults, group_commit_never_acknowledges_records_a_failed_sync_discarded)
{
    /*
     * engine.h: when_durable calls done(arg, 0) once "every record appended to s so far is durable".
     * Record A waits in one group commit whose fdatasync fails; meanwhile record B is appended and waits
     * for the next one. The failure discards A and B (shard_log_sync cuts everything after the last good
     * sync), so B must not be acknowledged by the next, empty, sync.
     */
    fileio_t io = fileio_posix;
    io.fdatasync = gated_fdatasync;
    engine_local_options_t eo = {0};
    eo.data_dir = tmp;
    eo.durability = DURABILITY_FSYNC;
    shard_log_default_options(&eo.log);
    eo.log.io = &io;
    char err[256] = "";
    engine_t *e = engine_local_new(&eo, err, sizeof err);
    cr_assert_not_null(e, "engine_local_new: %s", err);
    engine_shard_t *shard = NULL;
    cr_assert_eq(e->ops->open_shard(e, "stream", 0, 0, &shard), 0);

    log_entry_t a = {"a", 1, "record A", 8}, b = {"b", 1, "record B", 8};
    uint64_t first_a = 9, first_b = 9;
    int64_t arrival;
    completion_t done_a = {0}, done_b = {0};
    G.armed = true;
    G.entered = G.released = false;
    uint64_t ticket_a = 0, ticket_b = 0;
    cr_assert_eq(e->ops->append(e, shard, &a, 1, 1000, &first_a, &arrival, &ticket_a), 0);
    cr_assert_eq(e->ops->when_durable(e, shard, ticket_a, on_durable, &done_a), 0);
    pthread_mutex_lock(&G.lock);
    while (!G.entered) {
        pthread_cond_wait(&G.cond, &G.lock);
    }
    pthread_mutex_unlock(&G.lock);
    /* the sync thread is inside A's fdatasync: B goes into the next batch */
    cr_assert_eq(e->ops->append(e, shard, &b, 1, 1001, &first_b, &arrival, &ticket_b), 0);
    cr_assert_eq(e->ops->when_durable(e, shard, ticket_b, on_durable, &done_b), 0);
    pthread_mutex_lock(&G.lock);
    G.released = true;
    pthread_cond_broadcast(&G.cond);
    while (!done_a.done || !done_b.done) {
        pthread_cond_wait(&G.cond, &G.lock);
    }
    pthread_mutex_unlock(&G.lock);
    uint64_t end = 9;
    e->ops->bounds(e, shard, NULL, &end, NULL);
    e->ops->close_shard(e, shard);
    e->ops->close(e);

    cr_assert_eq(first_a, 0u);
    cr_assert_eq(first_b, 1u);
    cr_assert_eq(done_a.status, -EIO);
    cr_assert_eq(end, 0u, "neither record is stored");
    cr_assert_neq(done_b.status, 0,
                  "record B (index 1) was acknowledged as durable, but the failed sync "
                  "discarded it (visible end %" PRIu64 "); index 1 will be given out again",
                  end);
}

/* ---- double faults ---- */

Test(shardlog_faults, torn_write_with_failing_ftruncate_is_cleaned_up_by_the_next_append)
{
    /*
     * shard_log_append: a failed append whose cleanup fails too is cleaned up before the next append (which
     * fails while that is impossible); a restart before that may bring the records of the failed append back,
     * never damaged. A batch of two equal frames torn in the middle leaves the first frame whole on disk.
     */
    shard_log_options_t o = options(1u << 20, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    cr_assert_eq(try_append(log, &ref, 2, true), 0);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    /* two entries of the same size: half the write is exactly the first frame */
    log_entry_t e[2] = {{"same", 4, "payload-a", 9}, {"same", 4, "payload-b", 9}};
    F.pwrite_fail_at = F.pwrite_calls + 1;
    F.pwrite_kind = WF_TORN_ERR;
    F.ftruncate_fail = true;
    uint64_t first;
    int64_t arrival;
    cr_assert_eq(shard_log_append(log, e, 2, 5000, &first, &arrival), -EIO);
    check_log(log, &ref);
    /* while the cleanup keeps failing, appends fail rather than leave the stray frame in the log */
    cr_assert_eq(shard_log_append(log, e, 1, 5001, &first, &arrival), -EIO);
    check_log(log, &ref);
    /* once it works, the next append goes where the failed one was */
    F.ftruncate_fail = false;
    cr_assert_eq(try_append(log, &ref, 1, true), 0);
    check_log(log, &ref);
    check_after_reopen(log, &ref);
}

Test(shardlog_faults, torn_write_with_failing_ftruncate_and_a_restart_never_serves_damage)
{
    shard_log_options_t o = options(1u << 20, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    cr_assert_eq(try_append(log, &ref, 2, true), 0);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    log_entry_t e[2] = {{"same", 4, "payload-a", 9}, {"same", 4, "payload-b", 9}};
    F.pwrite_fail_at = F.pwrite_calls + 1;
    F.pwrite_kind = WF_TORN_ERR;
    F.ftruncate_fail = true;
    uint64_t first;
    int64_t arrival;
    cr_assert_eq(shard_log_append(log, e, 2, 5000, &first, &arrival), -EIO);
    shard_log_unref(log);
    faults_reset();
    log = open_log(&(shard_log_options_t){&fileio_posix, 1u << 20, 128, false});
    uint64_t end = 0;
    shard_log_bounds(log, NULL, &end, NULL);
    /* the whole first frame of the failed append may come back (never acknowledged); the torn one not */
    cr_assert(end == 2u || end == 3u, "end %" PRIu64, end);
    /* the acknowledged records are intact; a third one, if back, is the first frame of the failed append */
    check_state_t cs = {&ref, 0};
    uint64_t next = 0;
    ref.visible = 2;
    cr_assert_eq(shard_log_read(log, 0, 2, SIZE_MAX, check_visit, &cs, &next), 0);
    cr_assert_eq(cs.expected, 2u);
    shard_log_unref(log);
}

/* ---- read faults ---- */

Test(shardlog_faults, failed_read_returns_eio_and_no_record)
{
    shard_log_options_t o = options(2048, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    for (int b = 0; b < 20; b++) {
        cr_assert_eq(try_append(log, &ref, 3, true), 0);
    }
    /* each pread of a full read in turn (a chunk read retries short reads, so it makes two calls) */
    bool partial = false;
    for (int n = 1;; n++) {
        faults_reset();
        F.pread_fail_at = n;
        check_state_t cs = {&ref, 0};
        uint64_t next = 0;
        int rc = shard_log_read(log, 0, SIZE_MAX, SIZE_MAX, check_visit, &cs, &next);
        if (rc == 0) {
            cr_assert_gt(n, F.pread_calls, "pread %d failed but the read succeeded", n);
            cr_assert_eq(cs.expected, ref.end);
            break;
        }
        cr_assert_eq(rc, -EIO, "pread %d: %d", n, rc);
        /* the records visited before the failure were whole (check_visit), in order, from the start */
        partial = partial || (cs.expected > 0 && cs.expected < ref.end);
    }
    cr_assert(partial, "some failure came after whole records were visited");
    faults_reset();
    check_log(log, &ref);
    shard_log_unref(log);
}

Test(shardlog_faults, failed_read_during_recovery_fails_the_open_and_keeps_the_files)
{
    /* a read error is not damage: recovery must neither truncate nor quarantine anything */
    shard_log_options_t o = options(2048, false);
    shard_log_t *log = open_log(&o);
    faults_reset();
    static reference_t ref;
    memset(&ref, 0, sizeof ref);
    for (int b = 0; b < 30; b++) {
        cr_assert_eq(try_append(log, &ref, 3, true), 0);
    }
    shard_log_unref(log);
    size_t segs = count_files(".seg");
    cr_assert_geq(segs, 3u);

    /* every pread of the open in turn: the header of a segment, then its frames, then the next */
    for (int n = 1; n <= 3 * (int)segs; n++) {
        faults_reset();
        F.pread_fail_at = n;
        char err[256] = "";
        shard_log_t *l = NULL;
        int rc = shard_log_open(logdir, &o, 0, &l, err, sizeof err);
        int calls = F.pread_calls;
        int renames = F.rename_calls;
        if (rc == 0) {
            uint64_t end = 0;
            shard_log_bounds(l, NULL, &end, NULL);
            shard_log_unref(l);
            cr_assert(n > calls,
                      "pread %d failed but the open succeeded with %" PRIu64 " of %" PRIu64 " records", n,
                      end, ref.end);
            break;
        }
        cr_assert_eq(rc, -EIO, "pread %d: open returned %d (%s)", n, rc, err);
        cr_assert_eq(renames, 0, "pread %d: a segment was quarantined after a read error", n);
        cr_assert_eq(count_files(".seg"), segs);
        cr_assert_eq(count_files(".corrupt"), 0u);
    }
    faults_reset();
    ref.visible = ref.end;
    log = open_log(&o);
    check_log(log, &ref);
    shard_log_unref(log);
}
