/* Unit tests for server/metrics: series ids, per-thread counting added up exactly, stale series after a
 * sweep, consumers, and the request counters. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

static stream_t make_stream(const char *name, int64_t created_ms)
{
    stream_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", name);
    s.created_ms = created_ms;
    return s;
}

Test(metrics, series_are_cached_and_distinct)
{
    metrics_t *m = metrics_new();
    stream_t a = make_stream("a", 1), b = make_stream("b", 1), a2 = make_stream("a", 2);
    uint32_t ia = metrics_stream_series(m, &a);
    cr_assert_neq(ia, 0);
    cr_assert_eq(a.metrics_id, ia);
    cr_assert_eq(metrics_stream_series(m, &a), ia);
    uint32_t ib = metrics_stream_series(m, &b);
    uint32_t ia2 = metrics_stream_series(m, &a2); /* same name, created again: another series */
    cr_assert_neq(ib, ia);
    cr_assert_neq(ia2, ia);
    /* a stream struct rebuilt by the catalog (id 0) finds its series again by name and creation time */
    stream_t copy = make_stream("a", 1);
    cr_assert_eq(metrics_stream_series(m, &copy), ia);
    metrics_series_info_t *list;
    size_t n = metrics_list_series(m, &list);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(list[0].stream, "a");
    cr_assert_str_eq(list[2].stream, "b");
    free(list);
    metrics_free(m);
}

typedef struct worker_arg {
    metrics_t *m;
    uint32_t series;
} worker_arg_t;

static void *count(void *p)
{
    worker_arg_t *a = p;
    for (int i = 0; i < 50000; i++) {
        metrics_add(a->m, a->series, MC_INCOMING_RECORDS, 1);
        metrics_add(a->m, a->series, MC_INCOMING_BYTES, 10);
        metrics_observe(a->m, a->series, MH_PUT_RECORD_LATENCY, 100);
        metrics_request(a->m, 3, 200, 100);
    }
    return NULL;
}

Test(metrics, threads_add_up_exactly)
{
    metrics_t *m = metrics_new();
    stream_t s = make_stream("s", 1);
    worker_arg_t arg = {m, metrics_stream_series(m, &s)};
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        pthread_create(&t[i], NULL, count, &arg);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
    }
    uint64_t c[MC_COUNT_];
    histogram_snapshot_t h[MH_COUNT_];
    metrics_read_series(m, arg.series, c, h);
    cr_assert_eq(c[MC_INCOMING_RECORDS], 300000);
    cr_assert_eq(c[MC_INCOMING_BYTES], 3000000);
    cr_assert_eq(c[MC_GET_RECORDS_RECORDS], 0);
    cr_assert_eq(h[MH_PUT_RECORD_LATENCY].count, 300000);
    cr_assert_eq(h[MH_GET_RECORDS_LATENCY].count, 0);
    metrics_requests_t *r = calloc(1, sizeof *r);
    metrics_read_requests(m, r);
    cr_assert_eq(r->requests[4][0], 300000); /* operation 3, status 200 */
    cr_assert_eq(r->latency[4].count, 300000);
    free(r);
    metrics_free(m);
}

Test(metrics, more_threads_than_tables_still_count)
{
    metrics_t *m = metrics_new();
    stream_t s = make_stream("s", 1);
    worker_arg_t arg = {m, metrics_stream_series(m, &s)};
    enum { N = METRICS_THREADS_MAX + 8 };
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        pthread_create(&t[i], NULL, count, &arg);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
    }
    uint64_t c[MC_COUNT_];
    histogram_snapshot_t h[MH_COUNT_];
    metrics_read_series(m, arg.series, c, h);
    cr_assert_eq(c[MC_INCOMING_RECORDS], 50000ull * N);
    metrics_free(m);
}

static char dir[64];

Test(metrics, sweep_drops_gone_streams_and_consumers)
{
    snprintf(dir, sizeof dir, "/tmp/eddy-metrics-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char err[256] = "";
    catalog_t *cat = catalog_open(dir, err, sizeof err);
    cr_assert_not_null(cat, "%s", err);
    stream_config_t cfg = {.status = STREAM_ACTIVE, .target_status = STREAM_ACTIVE, .retention_hours = 24,
                           .max_record_kib = 1024};
    catalog_lock(cat);
    cr_assert_eq(catalog_create_stream(cat, "kept", 1000, &cfg, 1, NULL, 0, NULL), 0);
    stream_t *kept = catalog_find(cat, "kept");
    metrics_t *m = metrics_new();
    uint32_t live = metrics_stream_series(m, kept);
    stream_t gone = make_stream("gone", 5);
    uint32_t dead = metrics_stream_series(m, &gone);
    consumer_t con;
    memset(&con, 0, sizeof con);
    snprintf(con.name, sizeof con.name, "app");
    con.created_ms = 7;
    uint32_t dead_consumer = metrics_consumer_series(m, kept, &con); /* the catalog has no such consumer */
    metrics_add(m, live, MC_INCOMING_RECORDS, 5);
    metrics_add(m, dead, MC_INCOMING_RECORDS, 5);
    metrics_add(m, dead_consumer, MC_SUBSCRIBE_EVENT_RECORDS, 5);
    metrics_sweep(m, cat);
    uint64_t c[MC_COUNT_];
    histogram_snapshot_t h[MH_COUNT_];
    metrics_read_series(m, live, c, h);
    cr_assert_eq(c[MC_INCOMING_RECORDS], 5);
    metrics_read_series(m, dead, c, h);
    cr_assert_eq(c[MC_INCOMING_RECORDS], 0);
    metrics_series_info_t *list;
    cr_assert_eq(metrics_list_series(m, &list), 1);
    cr_assert_str_eq(list[0].stream, "kept");
    free(list);
    /* a recording that still holds the old id is dropped; the slot's next series starts from zero */
    metrics_add(m, dead, MC_INCOMING_RECORDS, 5);
    stream_t other = make_stream("other", 9);
    uint32_t fresh = metrics_stream_series(m, &other);
    cr_assert_neq(fresh, dead);
    metrics_read_series(m, fresh, c, h);
    cr_assert_eq(c[MC_INCOMING_RECORDS], 0);
    metrics_add(m, fresh, MC_INCOMING_RECORDS, 2);
    metrics_read_series(m, fresh, c, h);
    cr_assert_eq(c[MC_INCOMING_RECORDS], 2);
    catalog_unlock(cat);
    metrics_free(m);
    catalog_close(cat);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
