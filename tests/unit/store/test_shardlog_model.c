/*
 * Model-based test of store/shardlog: a seeded PRNG drives random operations (appends of random batches,
 * syncs, reads with random limits, seeks by time, close and reopen, trims) against the real shard log and
 * against a small in-memory reference, and every result is compared exactly after every step.
 *
 * The reference knows only the contract and the format's segment rule: a segment rolls on the first
 * append after it reached segment_bytes (header 24 bytes + 32 + key + data per record), a roll makes
 * everything before it durable (and so visible), a trim removes whole segments, oldest first, never the
 * active one, only when all their records are visible and arrived before the cutoff.
 *
 * A failure message names the seed and step; rerun one seed with EDDY_MODEL_SEED=<seed>.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "store/shardlog.h"

static char tmp[64];
static char logdir[128];

static void setup(void)
{
    log_set_level(LOG_ERROR + 1);
    snprintf(tmp, sizeof tmp, "/tmp/eddy-model-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(logdir, sizeof logdir, "%s/log", tmp);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(shardlog_model, .init = setup, .fini = teardown);

/* The real I/O without the wait for the disk: this test never crashes, so durability is not its subject
 * (test_shardlog_faults.c covers failing syncs), and a few thousand fdatasyncs would take seconds. */
static int no_fdatasync(int fd)
{
    (void)fd;
    return 0;
}

static fileio_t fast_io;

/* ---- PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t between(uint64_t lo, uint64_t hi)
{
    return lo + rnd() % (hi - lo + 1);
}

static bool chance(unsigned percent)
{
    return rnd() % 100 < percent;
}

/* ---- records: contents derived from a payload id ---- */

static void fill_pk(uint64_t id, char *pk, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        pk[k] = (char)('a' + (id * 7 + k) % 26);
    }
}

static void fill_data(uint64_t id, unsigned char *data, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        data[k] = (unsigned char)(id * 31 + k * 13);
    }
}

/* ---- the reference ---- */

typedef struct mrec {
    uint64_t id;
    int64_t arrival;
    uint16_t pk_len;
    uint32_t data_len;
} mrec_t;

typedef struct mseg {
    uint64_t first, end;
    int64_t last_arrival;
    uint64_t size;
} mseg_t;

typedef struct model {
    uint64_t base; /* index of recs[0] */
    mrec_t *recs;  /* [base, written) */
    size_t cap;
    uint64_t first, written, visible, durable;
    int64_t last_arrival;
    mseg_t *segs;
    size_t nsegs, segs_cap;
    size_t segment_bytes;
    bool visible_after_sync;
} model_t;

static const mrec_t *mrec(const model_t *m, uint64_t index)
{
    return &m->recs[index - m->base];
}

static void model_push_segment(model_t *m, uint64_t first)
{
    if (m->nsegs == m->segs_cap) {
        m->segs_cap = m->segs_cap ? m->segs_cap * 2 : 16;
        m->segs = realloc(m->segs, m->segs_cap * sizeof *m->segs);
        cr_assert_not_null(m->segs);
    }
    m->segs[m->nsegs++] = (mseg_t){first, first, 0, SEG_HEADER_SIZE};
}

/* ---- the run ---- */

/* What the runs exercised, so that the test cannot silently turn trivial. */
static struct coverage {
    int rolls, trimmed, reopens, partial_reads, clamped, seek_hits;
} cov;

static uint64_t seed_now;
static int step_now;
static char where[64];

static void set_where(const char *op)
{
    snprintf(where, sizeof where, "seed %" PRIu64 " step %d (%s)", seed_now, step_now, op);
}

static shard_log_t *open_log(const shard_log_options_t *o, uint64_t first_index)
{
    char err[256] = "";
    shard_log_t *log = NULL;
    int rc = shard_log_open(logdir, o, first_index, &log, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: shard_log_open: %d %s", where, rc, err);
    return log;
}

typedef struct visit_state {
    const model_t *m;
    uint64_t expected;
    size_t visited;
    size_t stop_after; /* 0: never */
} visit_state_t;

static bool visit(void *arg, const seg_record_t *r)
{
    visit_state_t *vs = arg;
    const model_t *m = vs->m;
    cr_assert_eq(r->index, vs->expected, "%s: read index %" PRIu64 ", expected %" PRIu64, where, r->index,
                 vs->expected);
    cr_assert(r->index >= m->first && r->index < m->visible,
              "%s: record %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 ")", where, r->index, m->first,
              m->visible);
    const mrec_t *e = mrec(m, r->index);
    cr_assert_eq(r->arrival_ms, e->arrival, "%s: record %" PRIu64 " arrival %" PRId64 " != %" PRId64, where,
                 r->index, r->arrival_ms, e->arrival);
    cr_assert_eq(r->pk_len, e->pk_len, "%s: record %" PRIu64 " pk_len", where, r->index);
    cr_assert_eq(r->data_len, e->data_len, "%s: record %" PRIu64 " data_len", where, r->index);
    static char pk[SEG_MAX_PK];
    static unsigned char data[16384];
    fill_pk(e->id, pk, e->pk_len);
    fill_data(e->id, data, e->data_len);
    cr_assert_eq(memcmp(r->pk, pk, e->pk_len), 0, "%s: record %" PRIu64 " pk", where, r->index);
    cr_assert_eq(memcmp(r->data, data, e->data_len), 0, "%s: record %" PRIu64 " data", where, r->index);
    vs->expected++;
    vs->visited++;
    return vs->stop_after == 0 || vs->visited < vs->stop_after;
}

static void check_bounds(shard_log_t *log, const model_t *m)
{
    uint64_t first = 0, end = 0;
    int64_t last = 0;
    shard_log_bounds(log, &first, &end, &last);
    cr_assert_eq(first, m->first, "%s: first %" PRIu64 " != %" PRIu64, where, first, m->first);
    cr_assert_eq(end, m->visible, "%s: visible end %" PRIu64 " != %" PRIu64, where, end, m->visible);
    cr_assert_eq(shard_log_written_end(log), m->written, "%s: written end", where);
    cr_assert_eq(shard_log_dirty(log), m->durable != m->written, "%s: dirty", where);
    /* The last visible record's arrival. Compared only when nothing unsynced is pending: with unsynced
     * records the log reports their arrival instead (see test_shardlog.c,
     * bounds_last_arrival_is_that_of_the_last_visible_record). */
    if (m->visible == m->written) {
        int64_t want = m->visible > m->first ? mrec(m, m->visible - 1)->arrival : 0;
        cr_assert_eq(last, want, "%s: last arrival %" PRId64 " != %" PRId64, where, last, want);
    }
}

static void do_append(shard_log_t *log, model_t *m, int64_t *clock, uint64_t *next_id)
{
    size_t n = chance(10) ? (size_t)between(9, 30) : (size_t)between(1, 8);
    log_entry_t *e = calloc(n, sizeof *e);
    cr_assert_not_null(e);
    size_t total = 0;
    uint64_t id0 = *next_id;
    for (size_t k = 0; k < n; k++) {
        size_t pk_len = chance(3) ? SEG_MAX_PK : (size_t)between(1, 24);
        size_t data_len = chance(3) ? (size_t)between(4000, 16384) : chance(10) ? 0 : (size_t)between(1, 400);
        char *pk = malloc(pk_len);
        unsigned char *data = malloc(data_len + 1);
        cr_assert(pk != NULL && data != NULL);
        fill_pk(id0 + k, pk, pk_len);
        fill_data(id0 + k, data, data_len);
        e[k] = (log_entry_t){pk, pk_len, data, data_len};
        total += seg_frame_size(pk_len, data_len);
    }
    *next_id += n;
    /* the clock mostly moves forward, sometimes stands still, sometimes steps back */
    *clock += chance(10) ? -(int64_t)between(0, 5) : (int64_t)between(0, 3);
    uint64_t first = UINT64_MAX;
    int64_t arrival = 0;
    int rc = shard_log_append(log, e, n, *clock, &first, &arrival);
    cr_assert_eq(rc, 0, "%s: append: %d", where, rc);

    /* the reference */
    mseg_t *active = &m->segs[m->nsegs - 1];
    if (active->size >= m->segment_bytes && active->end > active->first) {
        m->durable = m->written;
        if (m->visible_after_sync) {
            m->visible = m->written;
        }
        model_push_segment(m, m->written);
        active = &m->segs[m->nsegs - 1];
        cov.rolls++;
    }
    int64_t want_arrival = *clock > m->last_arrival ? *clock : m->last_arrival;
    cov.clamped += *clock < m->last_arrival;
    cr_assert_eq(first, m->written, "%s: append first %" PRIu64 " != %" PRIu64, where, first, m->written);
    cr_assert_eq(arrival, want_arrival, "%s: arrival %" PRId64 " != %" PRId64, where, arrival, want_arrival);
    size_t need = (size_t)(m->written + n - m->base);
    if (need > m->cap) {
        m->cap = need * 2;
        m->recs = realloc(m->recs, m->cap * sizeof *m->recs);
        cr_assert_not_null(m->recs);
    }
    for (size_t k = 0; k < n; k++) {
        m->recs[m->written + k - m->base] =
            (mrec_t){id0 + k, want_arrival, (uint16_t)e[k].pk_len, (uint32_t)e[k].data_len};
        free((void *)e[k].pk);
        free((void *)e[k].data);
    }
    free(e);
    m->written += n;
    m->last_arrival = want_arrival;
    active->end = m->written;
    active->size += total;
    active->last_arrival = want_arrival;
    if (!m->visible_after_sync) {
        m->visible = m->written;
    }
}

static void do_read(shard_log_t *log, const model_t *m)
{
    uint64_t lo = m->first > m->base + 3 ? m->first - 3 : m->base;
    uint64_t from = chance(5) ? 0 : between(lo, m->written + 3);
    size_t max_records = chance(20) ? SIZE_MAX : (size_t)between(1, 60);
    size_t max_bytes = chance(40) ? SIZE_MAX : chance(10) ? 0 : (size_t)between(0, 40000);
    size_t stop_after = chance(10) ? (size_t)between(1, 5) : 0;

    /* the reference */
    uint64_t start = from > m->first ? from : m->first;
    size_t count = 0, bytes = 0;
    for (uint64_t i = start; i < m->visible; i++) {
        size_t size = mrec(m, i)->pk_len + mrec(m, i)->data_len;
        if (count > 0 && (count >= max_records || bytes + size > max_bytes)) {
            break;
        }
        if (stop_after != 0 && count >= stop_after) {
            break;
        }
        count++;
        bytes += size;
    }
    uint64_t want_next = start + count;
    cov.partial_reads += count > 0 && start + count < m->visible;

    visit_state_t vs = {m, start, 0, stop_after};
    uint64_t next = UINT64_MAX;
    int rc = shard_log_read(log, from, max_records, max_bytes, visit, &vs, &next);
    cr_assert_eq(rc, 0, "%s: read: %d", where, rc);
    cr_assert_eq(vs.visited, count,
                 "%s: read from %" PRIu64 " max_records %zu max_bytes %zu: %zu records, expected %zu", where,
                 from, max_records, max_bytes, vs.visited, count);
    cr_assert_eq(next, want_next, "%s: next %" PRIu64 " != %" PRIu64, where, next, want_next);
}

static void check_everything(shard_log_t *log, const model_t *m)
{
    visit_state_t vs = {m, m->first, 0, 0};
    uint64_t pos = m->first;
    while (pos < m->visible) {
        uint64_t next = 0;
        size_t before = vs.visited;
        cr_assert_eq(shard_log_read(log, pos, 1000, SIZE_MAX, visit, &vs, &next), 0, "%s: full read", where);
        cr_assert_gt(vs.visited, before, "%s: full read stalled at %" PRIu64, where, pos);
        pos = next;
    }
    cr_assert_eq(vs.visited, m->visible - m->first, "%s: full read", where);
}

static void do_seek(shard_log_t *log, const model_t *m, int64_t clock)
{
    /* around the arrival times seen so far (they never go above the last one) */
    int64_t lo = m->written > m->base ? m->recs[0].arrival - 5 : clock - 5;
    int64_t hi = m->written > m->base ? m->last_arrival + 5 : clock + 5;
    int64_t ts = chance(3)   ? INT64_MIN
                 : chance(3) ? INT64_MAX
                             : lo + (int64_t)between(0, (uint64_t)(hi - lo));
    uint64_t want = m->visible;
    for (uint64_t i = m->first; i < m->visible; i++) {
        if (mrec(m, i)->arrival >= ts) {
            want = i;
            break;
        }
    }
    cov.seek_hits += want > m->first && want < m->visible;
    uint64_t got = UINT64_MAX;
    cr_assert_eq(shard_log_seek_time(log, ts, &got), 0, "%s: seek", where);
    cr_assert_eq(got, want, "%s: seek %" PRId64 ": %" PRIu64 ", expected %" PRIu64, where, ts, got, want);
}

static void do_trim(shard_log_t *log, model_t *m, int64_t clock)
{
    int64_t lo = m->written > m->base ? m->recs[0].arrival - 2 : clock - 2;
    int64_t hi = m->written > m->base ? m->last_arrival + 2 : clock + 2;
    int64_t cutoff = chance(5) ? INT64_MAX : lo + (int64_t)between(0, (uint64_t)(hi - lo));
    int want = 0;
    while (m->nsegs > 1 && m->segs[0].last_arrival < cutoff && m->segs[0].end <= m->visible) {
        memmove(m->segs, m->segs + 1, (m->nsegs - 1) * sizeof *m->segs);
        m->nsegs--;
        want++;
    }
    m->first = m->segs[0].first;
    cov.trimmed += want;
    int got = shard_log_trim(log, cutoff);
    cr_assert_eq(got, want, "%s: trim before %" PRId64 " removed %d, expected %d", where, cutoff, got, want);
}

static void run_seed(uint64_t seed, int steps)
{
    seed_now = seed;
    rng_state = seed;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", logdir);
    cr_assert_eq(system(cmd), 0);

    static const size_t segment_sizes[] = {1024, 4096, 16384};
    static const size_t intervals[] = {64, 256, 1024, 4096};
    shard_log_options_t o;
    shard_log_default_options(&o);
    fast_io = fileio_posix;
    fast_io.fdatasync = no_fdatasync;
    o.io = &fast_io;
    o.segment_bytes = segment_sizes[rnd() % 3];
    o.index_interval = intervals[rnd() % 4];
    o.visible_after_sync = chance(50);
    uint64_t base = chance(50) ? 0 : between(1, 1u << 30);

    model_t m = {0};
    m.base = base;
    m.first = m.written = m.visible = m.durable = base;
    m.segment_bytes = o.segment_bytes;
    m.visible_after_sync = o.visible_after_sync;
    model_push_segment(&m, base);

    int64_t clock = 1700000000000 + (int64_t)between(0, 1000);
    uint64_t next_id = 1;
    step_now = 0;
    set_where("open");
    shard_log_t *log = open_log(&o, base);
    check_bounds(log, &m);
    for (step_now = 1; step_now <= steps; step_now++) {
        unsigned op = (unsigned)(rnd() % 100);
        if (op < 40) {
            set_where("append");
            do_append(log, &m, &clock, &next_id);
        } else if (op < 50) {
            set_where("sync");
            uint64_t synced = 0;
            cr_assert_eq(shard_log_sync(log, &synced), 0, "%s", where);
            m.durable = m.written;
            m.visible = m.written;
            cr_assert_eq(synced, m.written, "%s: synced end", where);
        } else if (op < 75) {
            set_where("read");
            do_read(log, &m);
        } else if (op < 87) {
            set_where("seek");
            do_seek(log, &m, clock);
        } else if (op < 92) {
            set_where("trim");
            do_trim(log, &m, clock);
        } else if (op < 95) {
            set_where("reopen");
            shard_log_unref(log);
            log = open_log(&o, chance(50) ? base : 42);
            /* everything written is on disk: recovery serves it all */
            m.visible = m.durable = m.written;
            cov.reopens++;
        } else {
            set_where("full read");
            check_everything(log, &m);
        }
        check_bounds(log, &m);
    }
    set_where("end");
    check_everything(log, &m);
    shard_log_unref(log);
    free(m.recs);
    free(m.segs);
}

Test(shardlog_model, random_operations_match_the_reference)
{
    const char *one = getenv("EDDY_MODEL_SEED");
    if (one != NULL) {
        run_seed(strtoull(one, NULL, 10), 2000);
        return;
    }
    for (uint64_t seed = 1; seed <= 8; seed++) {
        run_seed(seed, 500);
    }
    cr_assert_gt(cov.rolls, 100, "rolls: %d", cov.rolls);
    cr_assert_gt(cov.trimmed, 20, "trimmed segments: %d", cov.trimmed);
    cr_assert_gt(cov.reopens, 30, "reopens: %d", cov.reopens);
    cr_assert_gt(cov.partial_reads, 300, "reads that stopped at a limit: %d", cov.partial_reads);
    cr_assert_gt(cov.clamped, 50, "appends with a clock behind the last arrival: %d", cov.clamped);
    cr_assert_gt(cov.seek_hits, 50, "seeks into the middle of the log: %d", cov.seek_hits);
}
