/* metrics: per-thread counters of streams, consumers and requests (see metrics.h). */
#include "server/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

const int metrics_statuses[METRICS_STATUSES - 1] = {200, 400, 401, 403, 404, 413, 500};

#define SLOT_OF(id) ((id) & 0xffffu)

/* One thread's counts of one series. */
typedef struct block {
    _Atomic uint32_t series;
    _Atomic uint64_t counters[MC_COUNT_];
    histogram_t hist[MH_COUNT_];
} block_t;

/* One thread's counts. The overflow table (threads beyond METRICS_THREADS_MAX) is shared and updated with
 * read-modify-write instructions. */
typedef struct thread_table {
    bool shared;
    block_t *_Atomic blocks[METRICS_SERIES_MAX];
    _Atomic uint64_t requests[METRICS_OPS_MAX + 1][METRICS_STATUSES];
    histogram_t latency[METRICS_OPS_MAX + 1];
} thread_table_t;

struct metrics {
    uint64_t instance; /* tells this registry from an earlier one at the same address */
    pthread_mutex_t lock; /* guards the slot infos, generations and thread registration */
    _Atomic uint32_t ids[METRICS_SERIES_MAX]; /* the live series id of each slot, 0 when free */
    uint16_t generations[METRICS_SERIES_MAX];
    metrics_series_info_t infos[METRICS_SERIES_MAX];
    bool full_logged;
    thread_table_t *_Atomic tables[METRICS_THREADS_MAX];
    _Atomic int ntables;
    thread_table_t *overflow;
};

static _Atomic uint64_t instances;
static _Thread_local struct {
    uint64_t instance;
    thread_table_t *table;
} mine;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        abort();
    }
    return p;
}

metrics_t *metrics_new(void)
{
    metrics_t *m = xcalloc(1, sizeof *m);
    m->instance = atomic_fetch_add(&instances, 1) + 1;
    pthread_mutex_init(&m->lock, NULL);
    m->overflow = xcalloc(1, sizeof *m->overflow);
    m->overflow->shared = true;
    return m;
}

static void table_free(thread_table_t *t)
{
    for (size_t i = 0; i < METRICS_SERIES_MAX; i++) {
        free(atomic_load(&t->blocks[i]));
    }
    free(t);
}

void metrics_free(metrics_t *m)
{
    if (m == NULL) {
        return;
    }
    for (int i = 0; i < atomic_load(&m->ntables); i++) {
        table_free(atomic_load(&m->tables[i]));
    }
    table_free(m->overflow);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---- series ---- */

static bool same_series(const metrics_series_info_t *a, const metrics_series_info_t *b)
{
    return a->consumer == b->consumer && a->stream_created_ms == b->stream_created_ms &&
           strcmp(a->stream, b->stream) == 0 &&
           (!a->consumer || (a->consumer_created_ms == b->consumer_created_ms &&
                             strcmp(a->consumer_name, b->consumer_name) == 0));
}

static uint32_t find_or_claim(metrics_t *m, const metrics_series_info_t *want)
{
    pthread_mutex_lock(&m->lock);
    uint32_t id = 0;
    int free_slot = -1;
    for (int i = 0; i < METRICS_SERIES_MAX && id == 0; i++) {
        uint32_t cur = atomic_load_explicit(&m->ids[i], memory_order_relaxed);
        if (cur == 0) {
            if (free_slot < 0) {
                free_slot = i;
            }
        } else if (same_series(&m->infos[i], want)) {
            id = cur;
        }
    }
    if (id == 0 && free_slot >= 0) {
        uint16_t gen = (uint16_t)(m->generations[free_slot] + 1);
        m->generations[free_slot] = gen == 0 ? 1 : gen;
        m->infos[free_slot] = *want;
        id = (uint32_t)free_slot | (uint32_t)m->generations[free_slot] << 16;
        m->infos[free_slot].id = id;
        atomic_store(&m->ids[free_slot], id);
    } else if (id == 0 && !m->full_logged) {
        m->full_logged = true;
        log_warn("metrics: more than %d streams and consumers; %s and later ones are not measured",
                 METRICS_SERIES_MAX, want->stream);
    }
    pthread_mutex_unlock(&m->lock);
    return id;
}

static bool live(metrics_t *m, uint32_t id)
{
    return id != 0 && atomic_load_explicit(&m->ids[SLOT_OF(id)], memory_order_relaxed) == id;
}

uint32_t metrics_stream_series(metrics_t *m, stream_t *s)
{
    uint32_t id = atomic_load_explicit(&s->metrics_id, memory_order_relaxed);
    if (live(m, id)) {
        return id;
    }
    metrics_series_info_t want = {.stream_created_ms = s->created_ms};
    snprintf(want.stream, sizeof want.stream, "%s", s->name);
    id = find_or_claim(m, &want);
    atomic_store_explicit(&s->metrics_id, id, memory_order_relaxed);
    return id;
}

uint32_t metrics_consumer_series(metrics_t *m, const stream_t *s, consumer_t *c)
{
    uint32_t id = atomic_load_explicit(&c->metrics_id, memory_order_relaxed);
    if (live(m, id)) {
        return id;
    }
    metrics_series_info_t want = {.consumer = true, .stream_created_ms = s->created_ms,
                                  .consumer_created_ms = c->created_ms};
    snprintf(want.stream, sizeof want.stream, "%s", s->name);
    snprintf(want.consumer_name, sizeof want.consumer_name, "%s", c->name);
    id = find_or_claim(m, &want);
    atomic_store_explicit(&c->metrics_id, id, memory_order_relaxed);
    return id;
}

void metrics_sweep(metrics_t *m, catalog_t *cat)
{
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        if (atomic_load_explicit(&m->ids[i], memory_order_relaxed) == 0) {
            continue;
        }
        const metrics_series_info_t *info = &m->infos[i];
        stream_t *s = catalog_find(cat, info->stream);
        bool alive = s != NULL && s->created_ms == info->stream_created_ms;
        if (alive && info->consumer) {
            consumer_t *c = catalog_find_consumer(s, info->consumer_name);
            alive = c != NULL && c->created_ms == info->consumer_created_ms;
        }
        if (!alive) {
            atomic_store(&m->ids[i], 0);
            memset(&m->infos[i], 0, sizeof m->infos[i]);
        }
    }
    pthread_mutex_unlock(&m->lock);
}

static int compare_infos(const void *a, const void *b)
{
    const metrics_series_info_t *x = a, *y = b;
    int c = strcmp(x->stream, y->stream);
    if (c != 0) {
        return c;
    }
    if (x->consumer != y->consumer) {
        return x->consumer ? 1 : -1;
    }
    return strcmp(x->consumer_name, y->consumer_name);
}

size_t metrics_list_series(metrics_t *m, metrics_series_info_t **out)
{
    pthread_mutex_lock(&m->lock);
    size_t n = 0;
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        n += atomic_load_explicit(&m->ids[i], memory_order_relaxed) != 0;
    }
    metrics_series_info_t *list = xcalloc(n ? n : 1, sizeof *list);
    n = 0;
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        if (atomic_load_explicit(&m->ids[i], memory_order_relaxed) != 0) {
            list[n++] = m->infos[i];
        }
    }
    pthread_mutex_unlock(&m->lock);
    qsort(list, n, sizeof *list, compare_infos);
    *out = list;
    return n;
}

/* ---- recording ---- */

static thread_table_t *my_table(metrics_t *m)
{
    if (mine.instance == m->instance) {
        return mine.table;
    }
    pthread_mutex_lock(&m->lock);
    int n = atomic_load(&m->ntables);
    thread_table_t *t;
    if (n < METRICS_THREADS_MAX) {
        t = xcalloc(1, sizeof *t);
        atomic_store_explicit(&m->tables[n], t, memory_order_release);
        atomic_store_explicit(&m->ntables, n + 1, memory_order_release);
    } else {
        t = m->overflow;
    }
    pthread_mutex_unlock(&m->lock);
    mine.instance = m->instance;
    mine.table = t;
    return t;
}

static void bump(const thread_table_t *t, _Atomic uint64_t *c, uint64_t v)
{
    if (t->shared) {
        atomic_fetch_add_explicit(c, v, memory_order_relaxed);
    } else {
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
    }
}

static void reset_block(block_t *b, uint32_t series)
{
    for (int k = 0; k < MC_COUNT_; k++) {
        atomic_store_explicit(&b->counters[k], 0, memory_order_relaxed);
    }
    for (int h = 0; h < MH_COUNT_; h++) {
        histogram_reset(&b->hist[h]);
    }
    atomic_store_explicit(&b->series, series, memory_order_release);
}

/* This thread's block of a live series, made ready for it; NULL when the series is stale. */
static block_t *my_block(metrics_t *m, thread_table_t *t, uint32_t series)
{
    if (!live(m, series)) {
        return NULL;
    }
    block_t *b = atomic_load_explicit(&t->blocks[SLOT_OF(series)], memory_order_acquire);
    if (b != NULL && atomic_load_explicit(&b->series, memory_order_relaxed) == series) {
        return b;
    }
    if (t->shared) {
        /* the overflow table's blocks are made and reset under the lock (a rare, slow path) */
        pthread_mutex_lock(&m->lock);
        b = atomic_load(&t->blocks[SLOT_OF(series)]);
        if (b == NULL) {
            b = xcalloc(1, sizeof *b);
            atomic_store_explicit(&t->blocks[SLOT_OF(series)], b, memory_order_release);
        }
        if (atomic_load(&b->series) != series) {
            reset_block(b, series);
        }
        pthread_mutex_unlock(&m->lock);
        return b;
    }
    if (b == NULL) {
        b = xcalloc(1, sizeof *b);
        atomic_store_explicit(&b->series, series, memory_order_relaxed);
        atomic_store_explicit(&t->blocks[SLOT_OF(series)], b, memory_order_release);
        return b;
    }
    reset_block(b, series);
    return b;
}

void metrics_add(metrics_t *m, uint32_t series, metrics_counter_t k, uint64_t v)
{
    if (series == 0 || v == 0) {
        return;
    }
    thread_table_t *t = my_table(m);
    block_t *b = my_block(m, t, series);
    if (b != NULL) {
        bump(t, &b->counters[k], v);
    }
}

void metrics_observe(metrics_t *m, uint32_t series, metrics_histogram_t h, uint64_t us)
{
    if (series == 0) {
        return;
    }
    thread_table_t *t = my_table(m);
    block_t *b = my_block(m, t, series);
    if (b == NULL) {
        return;
    }
    if (t->shared) {
        histogram_observe(&b->hist[h], us);
    } else {
        histogram_observe_owned(&b->hist[h], us);
    }
}

static int status_slot(int status)
{
    for (int i = 0; i < METRICS_STATUSES - 1; i++) {
        if (metrics_statuses[i] == status) {
            return i;
        }
    }
    return METRICS_STATUSES - 1;
}

void metrics_request(metrics_t *m, int op, int status, uint64_t us)
{
    int row = op >= 0 && op < METRICS_OPS_MAX ? op + 1 : 0;
    thread_table_t *t = my_table(m);
    bump(t, &t->requests[row][status_slot(status)], 1);
    if (t->shared) {
        histogram_observe(&t->latency[row], us);
    } else {
        histogram_observe_owned(&t->latency[row], us);
    }
}

/* ---- reading ---- */

/* Calls fn on every table (the overflow one included). */
static void each_table(metrics_t *m, void (*fn)(const thread_table_t *t, void *arg), void *arg)
{
    int n = atomic_load_explicit(&m->ntables, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        fn(atomic_load_explicit(&m->tables[i], memory_order_acquire), arg);
    }
    fn(m->overflow, arg);
}

typedef struct series_sum {
    uint32_t series;
    uint64_t *counters;
    histogram_snapshot_t *hist;
} series_sum_t;

static void add_series(const thread_table_t *t, void *arg)
{
    series_sum_t *sum = arg;
    const block_t *b = atomic_load_explicit(&t->blocks[SLOT_OF(sum->series)], memory_order_acquire);
    if (b == NULL || atomic_load_explicit(&b->series, memory_order_acquire) != sum->series) {
        return;
    }
    for (int k = 0; k < MC_COUNT_; k++) {
        sum->counters[k] += atomic_load_explicit(&b->counters[k], memory_order_relaxed);
    }
    for (int h = 0; h < MH_COUNT_; h++) {
        histogram_add_to(&b->hist[h], &sum->hist[h]);
    }
}

void metrics_read_series(metrics_t *m, uint32_t series, uint64_t counters[MC_COUNT_],
                         histogram_snapshot_t hist[MH_COUNT_])
{
    memset(counters, 0, MC_COUNT_ * sizeof counters[0]);
    memset(hist, 0, MH_COUNT_ * sizeof hist[0]);
    if (!live(m, series)) {
        return;
    }
    series_sum_t sum = {series, counters, hist};
    each_table(m, add_series, &sum);
}

static void add_requests(const thread_table_t *t, void *arg)
{
    metrics_requests_t *out = arg;
    for (int r = 0; r <= METRICS_OPS_MAX; r++) {
        for (int s = 0; s < METRICS_STATUSES; s++) {
            out->requests[r][s] += atomic_load_explicit(&t->requests[r][s], memory_order_relaxed);
        }
        histogram_add_to(&t->latency[r], &out->latency[r]);
    }
}

void metrics_read_requests(metrics_t *m, metrics_requests_t *out)
{
    memset(out, 0, sizeof *out);
    each_table(m, add_requests, out);
}
