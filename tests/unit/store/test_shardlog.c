/*
 * Unit tests for store/shardlog: append and read round trips across segment rolls, read limits, the
 * visibility rule, seeking by time, trimming, reopening, and recovery from damaged files (torn tails, bad
 * crcs in the last and in older segments, empty and partial files, stray files, zero-filled tails).
 *
 * Every record's key and data are derived from its index (gen_pk, gen_data), so any read can be checked
 * byte for byte: a test never accepts a record it did not write.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/shardlog.h"

static char tmp[64];
static char logdir[128];

static void setup(void)
{
    log_set_level(LOG_ERROR + 1); /* recovery warnings are expected here */
    snprintf(tmp, sizeof tmp, "/tmp/eddy-shardlog-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(logdir, sizeof logdir, "%s/log", tmp);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(shardlog, .init = setup, .fini = teardown);
TestSuite(shardlog_recovery, .init = setup, .fini = teardown);

/* ---- helpers ---- */

/* The real I/O without waiting for the disk, for the loops that reopen a log hundreds of times (nothing
 * here crashes the machine, so the wait would prove nothing). */
static int no_fdatasync(int fd)
{
    (void)fd;
    return 0;
}

static const fileio_t *fast_io(void)
{
    static fileio_t io;
    io = fileio_posix;
    io.fdatasync = no_fdatasync;
    return &io;
}

static shard_log_options_t options(size_t segment_bytes, size_t index_interval, bool visible_after_sync)
{
    shard_log_options_t o;
    shard_log_default_options(&o);
    o.segment_bytes = segment_bytes;
    o.index_interval = index_interval;
    o.visible_after_sync = visible_after_sync;
    return o;
}

static shard_log_t *open_log(const shard_log_options_t *o, uint64_t first_index)
{
    char err[256] = "";
    shard_log_t *log = NULL;
    int rc = shard_log_open(logdir, o, first_index, &log, err, sizeof err);
    cr_assert_eq(rc, 0, "shard_log_open: %d %s", rc, err);
    cr_assert_not_null(log);
    return log;
}

/* Key of record i: 1..40 bytes. */
static size_t gen_pk(uint64_t i, char *pk)
{
    size_t len = 1 + (size_t)(i * 13 % 40);
    for (size_t k = 0; k < len; k++) {
        pk[k] = (char)('A' + (i + k) % 26);
    }
    return len;
}

/* Data of record i: 0..299 bytes unless big. */
static size_t gen_data(uint64_t i, unsigned char *data)
{
    size_t len = (size_t)(i * 37 % 300);
    for (size_t k = 0; k < len; k++) {
        data[k] = (unsigned char)(i * 131 + k * 7);
    }
    return len;
}

typedef struct rec_copy {
    uint64_t index;
    int64_t arrival;
    char *pk;
    size_t pk_len;
    unsigned char *data;
    size_t data_len;
} rec_copy_t;

typedef struct reads {
    rec_copy_t *v;
    size_t n, cap;
    size_t stop_after; /* the visitor returns false after this many (0: never) */
} reads_t;

static bool collect(void *arg, const seg_record_t *r)
{
    reads_t *rs = arg;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->v = realloc(rs->v, rs->cap * sizeof *rs->v);
        cr_assert_not_null(rs->v);
    }
    rec_copy_t *c = &rs->v[rs->n++];
    c->index = r->index;
    c->arrival = r->arrival_ms;
    c->pk_len = r->pk_len;
    c->data_len = r->data_len;
    c->pk = malloc(r->pk_len + 1);
    c->data = malloc(r->data_len + 1);
    cr_assert(c->pk != NULL && c->data != NULL);
    memcpy(c->pk, r->pk, r->pk_len);
    if (r->data_len > 0) {
        memcpy(c->data, r->data, r->data_len);
    }
    return rs->stop_after == 0 || rs->n < rs->stop_after;
}

static void reads_free(reads_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->v[i].pk);
        free(rs->v[i].data);
    }
    free(rs->v);
    *rs = (reads_t){0};
}

/* Reads from `from` with the limits; returns the records (caller frees) and checks rc 0. */
static reads_t read_log(shard_log_t *log, uint64_t from, size_t max_records, size_t max_bytes, uint64_t *next)
{
    reads_t rs = {0};
    uint64_t nx = 0;
    int rc = shard_log_read(log, from, max_records, max_bytes, collect, &rs, &nx);
    cr_assert_eq(rc, 0, "shard_log_read from %" PRIu64 ": %d", from, rc);
    if (next != NULL) {
        *next = nx;
    }
    return rs;
}

/* Checks that r is record `index` as generated, with the given arrival time. */
static void check_record(const rec_copy_t *r, uint64_t index, int64_t arrival)
{
    char pk[64];
    unsigned char data[1024];
    size_t pk_len = gen_pk(index, pk);
    size_t data_len = gen_data(index, data);
    cr_assert_eq(r->index, index, "index %" PRIu64 " != %" PRIu64, r->index, index);
    cr_assert_eq(r->arrival, arrival, "record %" PRIu64 ": arrival %" PRId64 " != %" PRId64, index,
                 r->arrival, arrival);
    cr_assert_eq(r->pk_len, pk_len, "record %" PRIu64 " pk_len", index);
    cr_assert_eq(memcmp(r->pk, pk, pk_len), 0, "record %" PRIu64 " pk", index);
    cr_assert_eq(r->data_len, data_len, "record %" PRIu64 " data_len", index);
    cr_assert_eq(memcmp(r->data, data, data_len), 0, "record %" PRIu64 " data", index);
}

/* Appends n generated records expected at `first` with arrival time now; returns the arrival. */
static int64_t append_gen(shard_log_t *log, uint64_t first, size_t n, int64_t now)
{
    log_entry_t *e = calloc(n, sizeof *e);
    char(*pks)[64] = calloc(n, 64);
    unsigned char(*datas)[300] = calloc(n, 300);
    cr_assert(e != NULL && pks != NULL && datas != NULL);
    for (size_t i = 0; i < n; i++) {
        e[i].pk = pks[i];
        e[i].pk_len = gen_pk(first + i, pks[i]);
        e[i].data = datas[i];
        e[i].data_len = gen_data(first + i, datas[i]);
    }
    uint64_t got_first = UINT64_MAX;
    int64_t arrival = -1;
    int rc = shard_log_append(log, e, n, now, &got_first, &arrival);
    cr_assert_eq(rc, 0, "append: %d", rc);
    cr_assert_eq(got_first, first, "append got first %" PRIu64 ", expected %" PRIu64, got_first, first);
    free(e);
    free(pks);
    free(datas);
    return arrival;
}

/* Checks that the log holds exactly records [first, end) with arrivals[index]. */
static void check_all(shard_log_t *log, uint64_t first, uint64_t end, const int64_t *arrivals)
{
    uint64_t b_first = 0, b_end = 0;
    shard_log_bounds(log, &b_first, &b_end, NULL);
    cr_assert_eq(b_first, first, "first %" PRIu64 " != %" PRIu64, b_first, first);
    cr_assert_eq(b_end, end, "visible end %" PRIu64 " != %" PRIu64, b_end, end);
    uint64_t next = 0;
    reads_t rs = read_log(log, 0, SIZE_MAX, SIZE_MAX, &next);
    cr_assert_eq(rs.n, end - first, "read %zu records, expected %" PRIu64, rs.n, end - first);
    for (size_t i = 0; i < rs.n; i++) {
        check_record(&rs.v[i], first + i, arrivals[first + i]);
    }
    if (end > first) {
        cr_assert_eq(next, end);
    }
    reads_free(&rs);
}

typedef struct seg_files {
    uint64_t firsts[256];
    size_t n;
    size_t corrupt;
} seg_files_t;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment files and quarantined files in the log folder. */
static seg_files_t list_files(void)
{
    seg_files_t f = {0};
    DIR *d = opendir(logdir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len == 24 && strcmp(e->d_name + 20, ".seg") == 0 && strspn(e->d_name, "0123456789") == 20) {
            cr_assert_lt(f.n, 256u);
            f.firsts[f.n++] = strtoull(e->d_name, NULL, 10);
        } else if (strstr(e->d_name, ".corrupt") != NULL) {
            f.corrupt++;
        }
    }
    closedir(d);
    qsort(f.firsts, f.n, sizeof f.firsts[0], cmp_u64);
    return f;
}

static void seg_file_path(uint64_t first, char *out, size_t len)
{
    char name[32];
    seg_file_name(first, name);
    snprintf(out, len, "%s/%s", logdir, name);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_size;
}

/* Reads a whole file (caller frees). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spill(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "create %s", path);
    if (len > 0) {
        cr_assert_eq(fwrite(buf, 1, len, f), len);
    }
    cr_assert_eq(fclose(f), 0);
}

/* The frames of a segment file, parsed independently of shardlog.c. */
typedef struct frames {
    uint64_t first_index;
    size_t n;
    uint64_t offsets[1024];
    uint64_t indexes[1024];
    uint64_t end_offset;
} frames_t;

static frames_t parse_file(const char *path)
{
    frames_t fr = {0};
    size_t len;
    unsigned char *buf = slurp(path, &len);
    cr_assert_geq(len, (size_t)SEG_HEADER_SIZE);
    cr_assert(seg_decode_header(buf, &fr.first_index));
    size_t off = SEG_HEADER_SIZE;
    uint64_t expected = fr.first_index;
    while (off < len) {
        seg_record_t rec;
        size_t flen;
        cr_assert_eq(seg_decode_frame(buf + off, len - off, expected, &rec, &flen), SEG_OK, "%s at %zu", path,
                     off);
        cr_assert_lt(fr.n, 1024u);
        fr.offsets[fr.n] = off;
        fr.indexes[fr.n] = rec.index;
        fr.n++;
        off += flen;
        expected++;
    }
    fr.end_offset = off;
    free(buf);
    return fr;
}

/* Flips one bit of the file at offset. */
static void flip_byte(const char *path, uint64_t offset)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)offset), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)offset), 1);
    close(fd);
}

/* A log of 4 KiB segments with n records in batches of 1..5, arrival times 1000 + index / 3. */
static shard_log_t *build_log(const shard_log_options_t *o, uint64_t n, int64_t *arrivals)
{
    shard_log_t *log = open_log(o, 0);
    uint64_t i = 0;
    while (i < n) {
        size_t batch = 1 + (size_t)(i % 5);
        if (i + batch > n) {
            batch = (size_t)(n - i);
        }
        int64_t arrival = append_gen(log, i, batch, 1000 + (int64_t)i / 3);
        for (size_t k = 0; k < batch; k++) {
            arrivals[i + k] = arrival;
        }
        i += batch;
    }
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    return log;
}

/* ---- basics ---- */

Test(shardlog, new_log_is_empty)
{
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = open_log(&o, 100);
    uint64_t first = 1, end = 1;
    int64_t last = -1;
    shard_log_bounds(log, &first, &end, &last);
    cr_assert_eq(first, 100u);
    cr_assert_eq(end, 100u);
    cr_assert_eq(last, 0);
    cr_assert_eq(shard_log_written_end(log), 100u);
    cr_assert_not(shard_log_dirty(log));
    uint64_t next = 0;
    reads_t rs = read_log(log, 100, 10, SIZE_MAX, &next);
    cr_assert_eq(rs.n, 0u);
    cr_assert_eq(next, 100u);
    uint64_t idx = 0;
    cr_assert_eq(shard_log_seek_time(log, 0, &idx), 0);
    cr_assert_eq(idx, 100u);
    seg_files_t f = list_files();
    cr_assert_eq(f.n, 1u);
    cr_assert_eq(f.firsts[0], 100u);
    char path[256];
    seg_file_path(100, path, sizeof path);
    cr_assert_eq(file_size(path), SEG_HEADER_SIZE);
    shard_log_unref(log);
}

Test(shardlog, append_assigns_consecutive_indexes_and_never_lowers_arrival)
{
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 7);
    cr_assert_eq(append_gen(log, 7, 3, 1000), 1000);
    cr_assert_eq(append_gen(log, 10, 1, 900), 1000, "arrival is clamped to the last one");
    cr_assert_eq(append_gen(log, 11, 2, 1000), 1000);
    cr_assert_eq(append_gen(log, 13, 1, 1500), 1500);
    cr_assert_eq(shard_log_written_end(log), 14u);
    int64_t arrivals[14] = {0};
    for (int i = 7; i < 13; i++) {
        arrivals[i] = 1000;
    }
    arrivals[13] = 1500;
    check_all(log, 7, 14, arrivals);
    int64_t last = 0;
    shard_log_bounds(log, NULL, NULL, &last);
    cr_assert_eq(last, 1500);
    shard_log_unref(log);
}

Test(shardlog, append_rejects_invalid_entries_and_changes_nothing)
{
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 0);
    append_gen(log, 0, 2, 1000);
    char big[SEG_MAX_PK + 1];
    memset(big, 'k', sizeof big);
    log_entry_t ok = {"k", 1, "d", 1};
    log_entry_t empty_pk = {"", 0, "d", 1};
    log_entry_t long_pk = {big, SEG_MAX_PK + 1, "d", 1};
    log_entry_t max_pk = {big, SEG_MAX_PK, "d", 1};
    uint64_t first = 99;
    int64_t arrival = 99;
    cr_assert_eq(shard_log_append(log, &ok, 0, 2000, &first, &arrival), -EINVAL);
    cr_assert_eq(shard_log_append(log, &empty_pk, 1, 2000, &first, &arrival), -EINVAL);
    cr_assert_eq(shard_log_append(log, &long_pk, 1, 2000, &first, &arrival), -EINVAL);
    log_entry_t mixed[] = {ok, long_pk};
    cr_assert_eq(shard_log_append(log, mixed, 2, 2000, &first, &arrival), -EINVAL);
    cr_assert_eq(first, 99u);
    cr_assert_eq(shard_log_written_end(log), 2u);
    cr_assert_eq(shard_log_append(log, &max_pk, 1, 2000, &first, &arrival), 0);
    cr_assert_eq(first, 2u);
    reads_t rs = read_log(log, 2, 1, SIZE_MAX, NULL);
    cr_assert_eq(rs.n, 1u);
    cr_assert_eq(rs.v[0].pk_len, (size_t)SEG_MAX_PK);
    reads_free(&rs);
    shard_log_unref(log);
}

/* ---- round trips across rolls ---- */

Test(shardlog, round_trip_across_segment_rolls)
{
    enum { N = 600 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    check_all(log, 0, N, arrivals);

    /* several segments, each named by its first index, each holding consecutive frames */
    seg_files_t f = list_files();
    cr_assert_geq(f.n, 10u, "only %zu segments", f.n);
    uint64_t expected = 0;
    for (size_t s = 0; s < f.n; s++) {
        char path[256];
        seg_file_path(f.firsts[s], path, sizeof path);
        frames_t fr = parse_file(path);
        cr_assert_eq(fr.first_index, f.firsts[s]);
        cr_assert_eq(fr.first_index, expected);
        cr_assert_gt(fr.n, 0u);
        if (s + 1 < f.n) {
            /* a segment rolls on the first append after it reached segment_bytes */
            cr_assert_geq(fr.end_offset, 4096u);
        }
        expected += fr.n;
    }
    cr_assert_eq(expected, (uint64_t)N);
    shard_log_unref(log);
}

Test(shardlog, read_from_every_index)
{
    enum { N = 400 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    for (uint64_t from = 0; from < N; from++) {
        uint64_t next = 0;
        reads_t rs = read_log(log, from, 1, SIZE_MAX, &next);
        cr_assert_eq(rs.n, 1u, "from %" PRIu64, from);
        check_record(&rs.v[0], from, arrivals[from]);
        cr_assert_eq(next, from + 1);
        reads_free(&rs);

        rs = read_log(log, from, 7, SIZE_MAX, &next);
        size_t want = N - from < 7 ? (size_t)(N - from) : 7;
        cr_assert_eq(rs.n, want, "from %" PRIu64, from);
        for (size_t k = 0; k < rs.n; k++) {
            check_record(&rs.v[k], from + k, arrivals[from + k]);
        }
        cr_assert_eq(next, from + want);
        reads_free(&rs);

        rs = read_log(log, from, SIZE_MAX, SIZE_MAX, &next);
        cr_assert_eq(rs.n, N - from);
        cr_assert_eq(next, (uint64_t)N);
        reads_free(&rs);
    }
    /* at and past the end: nothing, and next stays where it was */
    for (uint64_t from = N; from < N + 3; from++) {
        uint64_t next = 0;
        reads_t rs = read_log(log, from, 10, SIZE_MAX, &next);
        cr_assert_eq(rs.n, 0u);
        cr_assert_eq(next, from);
        reads_free(&rs);
    }
    shard_log_unref(log);
}

Test(shardlog, read_limits)
{
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 0);
    /* records 0..49, each pk + data = gen sizes */
    int64_t arrivals[50];
    for (uint64_t i = 0; i < 50; i++) {
        arrivals[i] = append_gen(log, i, 1, 1000);
    }
    size_t sizes[50];
    for (uint64_t i = 0; i < 50; i++) {
        char pk[64];
        unsigned char data[300];
        sizes[i] = gen_pk(i, pk) + gen_data(i, data);
    }
    for (uint64_t from = 0; from < 50; from += 7) {
        /* max_records */
        for (size_t max = 1; max <= 12; max++) {
            uint64_t next;
            reads_t rs = read_log(log, from, max, SIZE_MAX, &next);
            size_t want = 50 - from < max ? (size_t)(50 - from) : max;
            cr_assert_eq(rs.n, want);
            cr_assert_eq(next, from + want);
            reads_free(&rs);
        }
        /* max_bytes: exactly the sum of k records returns k records; one byte less returns k - 1 */
        size_t sum = 0;
        for (size_t k = 1; from + k <= 50 && k <= 10; k++) {
            sum += sizes[from + k - 1];
            uint64_t next;
            reads_t rs = read_log(log, from, SIZE_MAX, sum, &next);
            cr_assert_eq(rs.n, k, "from %" PRIu64 " bytes %zu", from, sum);
            cr_assert_eq(next, from + k);
            for (size_t j = 0; j < rs.n; j++) {
                check_record(&rs.v[j], from + j, arrivals[from + j]);
            }
            reads_free(&rs);
            if (k > 1 && sizes[from + k - 1] > 0) {
                rs = read_log(log, from, SIZE_MAX, sum - 1, &next);
                cr_assert_eq(rs.n, k - 1, "from %" PRIu64 " bytes %zu", from, sum - 1);
                cr_assert_eq(next, from + k - 1);
                reads_free(&rs);
            }
        }
        /* the first record is always returned, even above max_bytes */
        uint64_t next;
        reads_t rs = read_log(log, from, 10, 0, &next);
        cr_assert_eq(rs.n, 1u);
        check_record(&rs.v[0], from, arrivals[from]);
        cr_assert_eq(next, from + 1);
        reads_free(&rs);
    }
    /* the visitor can stop the read: next is after the last visited record */
    reads_t rs = {.stop_after = 3};
    uint64_t next = 0;
    cr_assert_eq(shard_log_read(log, 10, 100, SIZE_MAX, collect, &rs, &next), 0);
    cr_assert_eq(rs.n, 3u);
    cr_assert_eq(next, 13u);
    reads_free(&rs);
    shard_log_unref(log);
}

Test(shardlog, large_records)
{
    /* frames larger than the 256 KiB read buffer, in segments smaller than one frame */
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 0);
    size_t big = (1u << 20) + 17;
    unsigned char *data = malloc(big);
    cr_assert_not_null(data);
    for (size_t k = 0; k < big; k++) {
        data[k] = (unsigned char)(k * 31 + 1);
    }
    const size_t lens[] = {big, 10, big, big - 5, 3};
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 0; i < 5; i++) {
            log_entry_t e = {"key", 3, data, lens[i]};
            uint64_t first;
            int64_t arrival;
            cr_assert_eq(shard_log_append(log, &e, 1, 1000 + (int64_t)i, &first, &arrival), 0);
            cr_assert_eq(first, i);
        }
        for (uint64_t from = 0; from < 5; from++) {
            uint64_t next;
            reads_t rs = read_log(log, from, SIZE_MAX, SIZE_MAX, &next);
            cr_assert_eq(rs.n, 5 - from);
            cr_assert_eq(next, 5u);
            for (size_t j = 0; j < rs.n; j++) {
                cr_assert_eq(rs.v[j].index, from + j);
                cr_assert_eq(rs.v[j].data_len, lens[from + j]);
                cr_assert_eq(memcmp(rs.v[j].data, data, lens[from + j]), 0);
            }
            reads_free(&rs);
        }
        uint64_t idx;
        cr_assert_eq(shard_log_seek_time(log, 1003, &idx), 0);
        cr_assert_eq(idx, 3u);
        if (round == 0) {
            /* the same after recovery, which scans the big frames again; then start over */
            shard_log_unref(log);
            log = open_log(&o, 0);
            uint64_t end;
            shard_log_bounds(log, NULL, &end, NULL);
            cr_assert_eq(end, 5u);
            cr_assert_eq(shard_log_destroy_files(log), 0);
            shard_log_unref(log);
            cr_assert_not(file_exists(logdir));
            log = open_log(&o, 0);
        }
    }
    free(data);
    shard_log_unref(log);
}

/* ---- visibility ---- */

Test(shardlog, records_are_visible_only_after_sync_when_visible_after_sync)
{
    shard_log_options_t o = options(1u << 20, 4096, true);
    shard_log_t *log = open_log(&o, 0);
    int64_t arrivals[10];
    int64_t a = append_gen(log, 0, 3, 1000);
    arrivals[0] = arrivals[1] = arrivals[2] = a;
    cr_assert(shard_log_dirty(log));
    cr_assert_eq(shard_log_written_end(log), 3u);
    uint64_t end, next, idx;
    shard_log_bounds(log, NULL, &end, NULL);
    cr_assert_eq(end, 0u);
    reads_t rs = read_log(log, 0, 100, SIZE_MAX, &next);
    cr_assert_eq(rs.n, 0u);
    cr_assert_eq(next, 0u);
    reads_free(&rs);
    cr_assert_eq(shard_log_seek_time(log, 0, &idx), 0);
    cr_assert_eq(idx, 0u, "seek sees only visible records");

    uint64_t synced = 0;
    cr_assert_eq(shard_log_sync(log, &synced), 0);
    cr_assert_eq(synced, 3u);
    cr_assert_not(shard_log_dirty(log));
    check_all(log, 0, 3, arrivals);

    /* a second batch: the first stays visible, the second waits for the next sync */
    a = append_gen(log, 3, 2, 2000);
    arrivals[3] = arrivals[4] = a;
    shard_log_bounds(log, NULL, &end, NULL);
    cr_assert_eq(end, 3u);
    rs = read_log(log, 0, 100, SIZE_MAX, &next);
    cr_assert_eq(rs.n, 3u);
    cr_assert_eq(next, 3u);
    reads_free(&rs);
    rs = read_log(log, 3, 100, SIZE_MAX, &next);
    cr_assert_eq(rs.n, 0u);
    cr_assert_eq(next, 3u);
    reads_free(&rs);
    cr_assert_eq(shard_log_seek_time(log, 1500, &idx), 0);
    cr_assert_eq(idx, 3u, "nothing visible arrived at or after 1500: the visible end");
    cr_assert_eq(shard_log_sync(log, &synced), 0);
    cr_assert_eq(synced, 5u);
    check_all(log, 0, 5, arrivals);
    cr_assert_eq(shard_log_seek_time(log, 1500, &idx), 0);
    cr_assert_eq(idx, 3u);
    /* a sync with nothing to do */
    cr_assert_eq(shard_log_sync(log, &synced), 0);
    cr_assert_eq(synced, 5u);
    shard_log_unref(log);
}

Test(shardlog, records_are_visible_at_once_without_visible_after_sync)
{
    shard_log_options_t o = options(1u << 20, 4096, false);
    shard_log_t *log = open_log(&o, 0);
    int64_t arrivals[3];
    int64_t a = append_gen(log, 0, 3, 1000);
    arrivals[0] = arrivals[1] = arrivals[2] = a;
    check_all(log, 0, 3, arrivals);
    cr_assert(shard_log_dirty(log), "written but not yet durable");
    uint64_t synced = 0;
    cr_assert_eq(shard_log_sync(log, &synced), 0);
    cr_assert_eq(synced, 3u);
    cr_assert_not(shard_log_dirty(log));
    check_all(log, 0, 3, arrivals);
    shard_log_unref(log);
}

Test(shardlog, bounds_last_arrival_is_that_of_the_last_visible_record)
{
    /* shardlog.h: "the arrival time of the last visible record (0 when none)" */
    shard_log_options_t o = options(1u << 20, 4096, true);
    shard_log_t *log = open_log(&o, 0);
    append_gen(log, 0, 1, 1000);
    int64_t last = -1;
    shard_log_bounds(log, NULL, NULL, &last);
    cr_assert_eq(last, 0, "nothing is visible yet");
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    shard_log_bounds(log, NULL, NULL, &last);
    cr_assert_eq(last, 1000);
    append_gen(log, 1, 1, 2000); /* not synced: not visible */
    uint64_t end;
    shard_log_bounds(log, NULL, &end, &last);
    shard_log_unref(log);
    cr_assert_eq(end, 1u);
    cr_assert_eq(last, 1000, "last_arrival_ms %" PRId64 " is of record 1, which is not visible", last);
}

/* ---- seek_time ---- */

Test(shardlog, seek_time)
{
    /* runs of equal arrival times that cross index entries and segments */
    enum { N = 500 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 50);
    uint64_t i = 50;
    int64_t t = 10000;
    while (i < N) {
        size_t batch = 1 + (size_t)(i % 4);
        if (i + batch > N) {
            batch = (size_t)(N - i);
        }
        int64_t a = append_gen(log, i, batch, t);
        for (size_t k = 0; k < batch; k++) {
            arrivals[i + k] = a;
        }
        i += batch;
        /* equal times for long runs, then jumps of 1 or 5 */
        if (i % 37 < 5) {
            t += (i % 2) ? 1 : 5;
        }
    }
    cr_assert_geq(list_files().n, 5u);
    for (int64_t ts = 9990; ts <= arrivals[N - 1] + 3; ts++) {
        uint64_t want = N;
        for (uint64_t k = 50; k < N; k++) {
            if (arrivals[k] >= ts) {
                want = k;
                break;
            }
        }
        uint64_t got = 0;
        cr_assert_eq(shard_log_seek_time(log, ts, &got), 0);
        cr_assert_eq(got, want, "seek %" PRId64 ": %" PRIu64 ", expected %" PRIu64, ts, got, want);
    }
    uint64_t got = 0;
    cr_assert_eq(shard_log_seek_time(log, INT64_MIN, &got), 0);
    cr_assert_eq(got, 50u);
    cr_assert_eq(shard_log_seek_time(log, INT64_MAX, &got), 0);
    cr_assert_eq(got, (uint64_t)N);
    shard_log_unref(log);
}

/* ---- trim ---- */

Test(shardlog, trim_removes_whole_old_segments_only)
{
    enum { N = 400 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    seg_files_t before = list_files();
    cr_assert_geq(before.n, 6u);

    /* the last arrival of each segment, from the files */
    int64_t seg_last[256];
    uint64_t seg_end[256];
    for (size_t s = 0; s < before.n; s++) {
        seg_end[s] = s + 1 < before.n ? before.firsts[s + 1] : N;
        seg_last[s] = arrivals[seg_end[s] - 1];
    }
    /* a cutoff at the last arrival of segment 1 keeps segment 1 (its last record is not before it) */
    cr_assert_eq(shard_log_trim(log, seg_last[1]), 1);
    seg_files_t f = list_files();
    cr_assert_eq(f.n, before.n - 1);
    cr_assert_eq(f.firsts[0], before.firsts[1]);
    check_all(log, before.firsts[1], N, arrivals);
    /* reads from before the first stored index start at it */
    uint64_t next;
    reads_t rs = read_log(log, 0, 1, SIZE_MAX, &next);
    cr_assert_eq(rs.n, 1u);
    check_record(&rs.v[0], before.firsts[1], arrivals[before.firsts[1]]);
    cr_assert_eq(next, before.firsts[1] + 1);
    reads_free(&rs);
    uint64_t idx;
    cr_assert_eq(shard_log_seek_time(log, 0, &idx), 0);
    cr_assert_eq(idx, before.firsts[1]);

    /* nothing more to trim at the same cutoff */
    cr_assert_eq(shard_log_trim(log, seg_last[1]), 0);
    /* one past it removes segment 1 and the segments whose records all arrived before */
    size_t removable = 0;
    for (size_t s = 1; s + 1 < before.n && seg_last[s] < seg_last[1] + 1; s++) {
        removable++;
    }
    cr_assert_eq(shard_log_trim(log, seg_last[1] + 1), (int)removable);
    f = list_files();
    cr_assert_eq(f.firsts[0], before.firsts[1 + removable]);

    /* everything: the active segment always stays */
    int removed = shard_log_trim(log, INT64_MAX);
    cr_assert_eq(removed, (int)(before.n - 1 - 1 - removable));
    f = list_files();
    cr_assert_eq(f.n, 1u);
    cr_assert_eq(f.firsts[0], before.firsts[before.n - 1]);
    check_all(log, before.firsts[before.n - 1], N, arrivals);
    cr_assert_eq(shard_log_trim(log, INT64_MAX), 0);

    /* appends go on after the trim, and the trim survives a reopen */
    int64_t a = append_gen(log, N, 1, arrivals[N - 1] + 1);
    static int64_t arrivals2[N + 1];
    memcpy(arrivals2, arrivals, sizeof arrivals);
    arrivals2[N] = a;
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    shard_log_unref(log);
    log = open_log(&o, 0);
    check_all(log, before.firsts[before.n - 1], N + 1, arrivals2);
    shard_log_unref(log);
}

Test(shardlog, trim_with_one_segment_removes_nothing)
{
    shard_log_options_t o = options(1u << 20, 4096, false);
    shard_log_t *log = open_log(&o, 0);
    int64_t arrivals[5];
    int64_t a = append_gen(log, 0, 5, 1000);
    for (int i = 0; i < 5; i++) {
        arrivals[i] = a;
    }
    cr_assert_eq(shard_log_trim(log, INT64_MAX), 0);
    check_all(log, 0, 5, arrivals);
    shard_log_unref(log);
}

/* ---- reopen ---- */

Test(shardlog, reopen_gives_the_same_records_and_bounds)
{
    enum { N = 300 };
    static int64_t arrivals[N + 10];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    uint64_t first1, end1;
    int64_t last1;
    shard_log_bounds(log, &first1, &end1, &last1);
    seg_files_t files1 = list_files();
    shard_log_unref(log);

    log = open_log(&o, 12345); /* first_index only matters for a new log */
    uint64_t first2, end2;
    int64_t last2;
    shard_log_bounds(log, &first2, &end2, &last2);
    cr_assert_eq(first2, first1);
    cr_assert_eq(end2, end1);
    cr_assert_eq(last2, last1);
    cr_assert_eq(shard_log_written_end(log), (uint64_t)N);
    cr_assert_not(shard_log_dirty(log));
    check_all(log, 0, N, arrivals);
    seg_files_t files2 = list_files();
    cr_assert_eq(files2.n, files1.n);
    cr_assert_eq(memcmp(files2.firsts, files1.firsts, files1.n * sizeof files1.firsts[0]), 0);

    /* appends continue with the next index, and arrival never goes below the last one */
    int64_t a = append_gen(log, N, 2, last1 - 100);
    cr_assert_eq(a, last1);
    arrivals[N] = arrivals[N + 1] = a;
    /* unsynced records are on disk at close: recovery serves them */
    shard_log_unref(log);
    log = open_log(&o, 0);
    check_all(log, 0, N + 2, arrivals);
    shard_log_unref(log);
}

/* ---- recovery ---- */

Test(shardlog_recovery, torn_tail_at_every_offset_of_the_last_frame)
{
    enum { N = 80 };
    static int64_t arrivals[N + 1];
    shard_log_options_t o = options(4096, 256, true);
    o.io = fast_io();
    shard_log_t *log = build_log(&o, N - 1, arrivals);
    /* a last frame of 20 + 299 bytes of payload */
    arrivals[N - 1] = append_gen(log, N - 1, 1, 5000);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    shard_log_unref(log);

    seg_files_t files = list_files();
    cr_assert_geq(files.n, 3u);
    uint64_t last_first = files.firsts[files.n - 1];
    char path[256];
    seg_file_path(last_first, path, sizeof path);
    frames_t fr = parse_file(path);
    cr_assert_eq(fr.indexes[fr.n - 1], (uint64_t)N - 1);
    size_t full_len;
    unsigned char *full = slurp(path, &full_len);
    uint64_t frame_start = fr.offsets[fr.n - 1];
    cr_assert_gt(full_len - frame_start, 200u, "a long last frame: many cut points");

    for (uint64_t cut = frame_start; cut < full_len; cut++) {
        spill(path, full, (size_t)cut);
        log = open_log(&o, 0);
        cr_assert_eq(file_size(path), (off_t)frame_start, "cut %" PRIu64 ": the torn tail is cut off", cut);
        check_all(log, 0, N - 1, arrivals);
        cr_assert_eq(shard_log_written_end(log), (uint64_t)N - 1);
        int64_t a = append_gen(log, N - 1, 1, 6000);
        cr_assert_eq(a, 6000);
        cr_assert_eq(shard_log_sync(log, NULL), 0);
        shard_log_unref(log);
        /* the repaired log reopens with the new record */
        log = open_log(&o, 0);
        uint64_t end;
        shard_log_bounds(log, NULL, &end, NULL);
        cr_assert_eq(end, (uint64_t)N);
        reads_t rs = read_log(log, N - 1, 1, SIZE_MAX, NULL);
        cr_assert_eq(rs.n, 1u);
        check_record(&rs.v[0], N - 1, 6000);
        reads_free(&rs);
        shard_log_unref(log);
        cr_assert_eq(list_files().n, files.n, "cut %" PRIu64 ": no segment appeared or vanished", cut);
    }
    free(full);
}

Test(shardlog_recovery, bad_crc_in_the_middle_of_the_last_segment)
{
    enum { N = 120 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    shard_log_unref(log);
    seg_files_t files = list_files();
    char path[256];
    seg_file_path(files.firsts[files.n - 1], path, sizeof path);
    frames_t fr = parse_file(path);
    cr_assert_geq(fr.n, 6u);
    uint64_t bad = fr.indexes[3];
    flip_byte(path, fr.offsets[3] + 20); /* inside the arrival time: only the crc notices */

    log = open_log(&o, 0);
    check_all(log, 0, bad, arrivals);
    cr_assert_eq(shard_log_written_end(log), bad);
    cr_assert_eq(file_size(path), (off_t)fr.offsets[3], "the file is cut at the bad frame");
    cr_assert_eq(list_files().n, files.n);
    cr_assert_eq(list_files().corrupt, 0u);
    int64_t a = append_gen(log, bad, 2, 9000);
    arrivals[bad] = arrivals[bad + 1] = a;
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    shard_log_unref(log);
    log = open_log(&o, 0);
    check_all(log, 0, bad + 2, arrivals);
    shard_log_unref(log);
}

Test(shardlog_recovery, bad_crc_in_an_older_segment_quarantines_the_later_ones)
{
    enum { N = 300 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    shard_log_unref(log);
    seg_files_t files = list_files();
    cr_assert_geq(files.n, 4u);
    char path[256];
    seg_file_path(files.firsts[1], path, sizeof path);
    frames_t fr = parse_file(path);
    cr_assert_geq(fr.n, 6u);
    uint64_t bad = fr.indexes[3];
    flip_byte(path, fr.offsets[4] - 1); /* the last byte of frame 3 */

    log = open_log(&o, 0);
    check_all(log, 0, bad, arrivals);
    cr_assert_eq(file_size(path), (off_t)fr.offsets[3]);
    seg_files_t now = list_files();
    cr_assert_eq(now.n, 2u, "segments after the damaged one are not served");
    cr_assert_eq(now.firsts[0], files.firsts[0]);
    cr_assert_eq(now.firsts[1], files.firsts[1]);
    cr_assert_eq(now.corrupt, files.n - 2);
    for (size_t s = 2; s < files.n; s++) {
        char moved[300];
        seg_file_path(files.firsts[s], moved, sizeof moved);
        strcat(moved, ".corrupt");
        cr_assert(file_exists(moved), "%s", moved);
    }
    /* reads past the damage find nothing; appends continue at the damaged index */
    uint64_t next;
    reads_t rs = read_log(log, bad, 10, SIZE_MAX, &next);
    cr_assert_eq(rs.n, 0u);
    reads_free(&rs);
    int64_t a = append_gen(log, bad, 3, 9000);
    arrivals[bad] = arrivals[bad + 1] = arrivals[bad + 2] = a;
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    check_all(log, 0, bad + 3, arrivals);
    shard_log_unref(log);
    /* the quarantined files stay out on the next open */
    log = open_log(&o, 0);
    check_all(log, 0, bad + 3, arrivals);
    shard_log_unref(log);
}

Test(shardlog_recovery, empty_or_partial_last_segment_file_is_removed)
{
    enum { N = 150 };
    static int64_t arrivals[N + 2];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    shard_log_unref(log);
    seg_files_t files = list_files();
    unsigned char header[SEG_HEADER_SIZE];
    seg_encode_header(header, N);
    const size_t sizes[] = {0, 1, 10, SEG_HEADER_SIZE - 1};
    char path[256];
    seg_file_path(N, path, sizeof path);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        /* a crash while creating the next segment: its header is incomplete */
        spill(path, header, sizes[k]);
        log = open_log(&o, 0);
        check_all(log, 0, N, arrivals);
        seg_files_t now = list_files();
        cr_assert_eq(now.n, files.n, "size %zu", sizes[k]);
        cr_assert_eq(now.corrupt, 0u);
        shard_log_unref(log);
    }
    log = open_log(&o, 0);
    arrivals[N] = append_gen(log, N, 1, 50000);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    check_all(log, 0, N + 1, arrivals);
    shard_log_unref(log);
}

Test(shardlog_recovery, empty_segment_file_alone)
{
    cr_assert_eq(mkdir(logdir, 0750), 0);
    char path[256];
    seg_file_path(500, path, sizeof path);
    spill(path, "", 0);
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 0);
    uint64_t first, end;
    shard_log_bounds(log, &first, &end, NULL);
    cr_assert_eq(first, 500u, "the log starts where the file says");
    cr_assert_eq(end, 500u);
    cr_assert_eq(file_size(path), SEG_HEADER_SIZE, "the segment was created again, with its header");
    int64_t arrivals[501];
    arrivals[500] = append_gen(log, 500, 1, 1);
    check_all(log, 500, 501, arrivals);
    shard_log_unref(log);
}

Test(shardlog_recovery, partial_header_alone)
{
    cr_assert_eq(mkdir(logdir, 0750), 0);
    unsigned char header[SEG_HEADER_SIZE];
    seg_encode_header(header, 0);
    char path[256];
    seg_file_path(0, path, sizeof path);
    spill(path, header, 12);
    shard_log_options_t o = options(4096, 256, false);
    shard_log_t *log = open_log(&o, 0);
    uint64_t first, end;
    shard_log_bounds(log, &first, &end, NULL);
    cr_assert_eq(first, 0u);
    cr_assert_eq(end, 0u);
    int64_t arrivals[1];
    arrivals[0] = append_gen(log, 0, 1, 1);
    check_all(log, 0, 1, arrivals);
    shard_log_unref(log);
}

Test(shardlog_recovery, stray_files_are_ignored)
{
    enum { N = 100 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    shard_log_unref(log);
    seg_files_t files = list_files();
    const char *strays[] = {"README",
                            "123.seg",
                            "0000000000000000000x.seg",
                            "00000000000000000000.seg.tmp",
                            "000000000000000000001.seg",
                            ".00000000000000000000.seg"};
    for (size_t k = 0; k < sizeof strays / sizeof strays[0]; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", logdir, strays[k]);
        spill(path, "not a segment", 13);
    }
    log = open_log(&o, 0);
    check_all(log, 0, N, arrivals);
    cr_assert_eq(list_files().n, files.n);
    shard_log_unref(log);
    for (size_t k = 0; k < sizeof strays / sizeof strays[0]; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", logdir, strays[k]);
        cr_assert_eq(file_size(path), 13, "%s is left alone", strays[k]);
    }
}

Test(shardlog_recovery, zero_filled_tail_is_cut_off)
{
    enum { N = 60 };
    static int64_t arrivals[N + 1];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    shard_log_unref(log);
    seg_files_t files = list_files();
    char path[256];
    seg_file_path(files.firsts[files.n - 1], path, sizeof path);
    off_t size = file_size(path);
    /* preallocation: the file is longer than its frames and the rest reads as zeros */
    cr_assert_eq(truncate(path, size + 8192), 0);
    log = open_log(&o, 0);
    check_all(log, 0, N, arrivals);
    cr_assert_eq(file_size(path), size);
    arrivals[N] = append_gen(log, N, 1, 70000);
    cr_assert_eq(shard_log_sync(log, NULL), 0);
    shard_log_unref(log);
    log = open_log(&o, 0);
    check_all(log, 0, N + 1, arrivals);
    shard_log_unref(log);
}

Test(shardlog_recovery, segment_whose_header_disagrees_with_its_name)
{
    /* a segment file renamed by hand (or a gap) is not served, nor is anything after it */
    enum { N = 200 };
    static int64_t arrivals[N];
    shard_log_options_t o = options(4096, 256, true);
    shard_log_t *log = build_log(&o, N, arrivals);
    shard_log_unref(log);
    seg_files_t files = list_files();
    cr_assert_geq(files.n, 3u);
    char from[256], to[256];
    seg_file_path(files.firsts[1], from, sizeof from);
    seg_file_path(files.firsts[1] + 1, to, sizeof to);
    cr_assert_eq(rename(from, to), 0);
    log = open_log(&o, 0);
    check_all(log, 0, files.firsts[1], arrivals);
    seg_files_t now = list_files();
    cr_assert_eq(now.n, 1u);
    cr_assert_eq(now.corrupt, files.n - 1);
    shard_log_unref(log);
}

/* ---- concurrency ---- */

typedef struct writer_arg {
    shard_log_t *log;
    uint64_t n;
    int failures; /* assertions stay on the test's thread */
} writer_arg_t;

static void *writer(void *p)
{
    writer_arg_t *w = p;
    for (uint64_t i = 0; i < w->n; i += 3) {
        size_t batch = w->n - i < 3 ? (size_t)(w->n - i) : 3;
        log_entry_t e[3];
        char pks[3][64];
        unsigned char datas[3][300];
        for (size_t k = 0; k < batch; k++) {
            e[k] = (log_entry_t){pks[k], gen_pk(i + k, pks[k]), datas[k], gen_data(i + k, datas[k])};
        }
        uint64_t first;
        int64_t arrival;
        if (shard_log_append(w->log, e, batch, 1000 + (int64_t)i, &first, &arrival) != 0 || first != i) {
            w->failures++;
            break;
        }
        if ((i % 9 == 0 || i + batch == w->n) && shard_log_sync(w->log, NULL) != 0) {
            w->failures++;
            break;
        }
    }
    return NULL;
}

Test(shardlog, reader_concurrent_with_writer_sees_only_whole_visible_records)
{
    enum { N = 3000 };
    shard_log_options_t o = options(8192, 512, true);
    shard_log_t *log = open_log(&o, 0);
    writer_arg_t w = {log, N, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, writer, &w), 0);
    uint64_t pos = 0;
    while (pos < N) {
        uint64_t end;
        shard_log_bounds(log, NULL, &end, NULL);
        uint64_t next = pos;
        reads_t rs = read_log(log, pos, 50, SIZE_MAX, &next);
        cr_assert_leq(pos + rs.n, end > pos ? end + 50 : pos + 50);
        cr_assert_leq(next, shard_log_written_end(log));
        for (size_t k = 0; k < rs.n; k++) {
            uint64_t i = pos + k;
            check_record(&rs.v[k], i, 1000 + (int64_t)(i - i % 3));
        }
        cr_assert_eq(next, pos + rs.n);
        size_t got = rs.n;
        reads_free(&rs);
        pos = next;
        if (got == 0) {
            if (w.failures != 0) {
                break;
            }
            sched_yield();
        }
    }
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(w.failures, 0);
    cr_assert_eq(pos, (uint64_t)N);
    shard_log_unref(log);
}
