/*
 * scrape: /metrics and the dashboard's JSON (see scrape.h).
 *
 * Both first copy what they show into a view (under the catalog read lock, briefly) and then format it
 * without any lock. In the Prometheus format every line of a metric family must be together, so the
 * formatting walks family by family over the copied streams.
 */
#include "server/scrape.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/jsonw.h"
#include "common/u128.h"
#include "server/api/api.h"
#include "server/auth.h"
#include "server/dataplane.h"
#include "server/metrics.h"

#ifndef EDDY_VERSION
#define EDDY_VERSION "dev"
#endif

#define LOOPS_MAX 256

/* ---- the view ---- */

typedef struct shard_view {
    uint32_t index;
    u128 start_hash, end_hash;
    int64_t parent, adjacent_parent;
    int64_t created_ms, closed_ms;
    int64_t iterator_age_ms; /* -1: no GetRecords in the window */
    uint64_t in_bytes, in_records, out_bytes, out_records, read_throttled, write_throttled;
} shard_view_t;

typedef struct consumer_view {
    char name[CONSUMER_NAME_MAX + 1];
    int64_t created_ms;
    stream_status_t status;
    uint64_t counters[MC_COUNT_];
    int64_t millis_behind; /* the largest of its open subscriptions', -1 when it has none */
} consumer_view_t;

typedef struct stream_view {
    char name[STREAM_NAME_MAX + 1];
    int64_t created_ms;
    stream_config_t cfg;
    uint64_t counters[MC_COUNT_];
    histogram_snapshot_t hist[MH_COUNT_];
    int64_t iterator_age_ms; /* the largest of its shards' (-1: none in the window) */
    uint64_t disk_bytes;
    shard_view_t *shards;
    size_t nshards, open_shards;
    consumer_view_t *consumers;
    size_t nconsumers;
} stream_view_t;

typedef struct view {
    int64_t now_ms;
    stream_view_t *streams;
    size_t nstreams;
    subscribe_info_t *subs;
    size_t nsubs;
} view_t;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        abort();
    }
    return p;
}

static void copy_stream(server_t *srv, stream_t *s, const view_t *v, stream_view_t *sv)
{
    snprintf(sv->name, sizeof sv->name, "%s", s->name);
    sv->created_ms = s->created_ms;
    sv->cfg = s->cfg;
    histogram_snapshot_t hist[MH_COUNT_];
    metrics_read_series(srv->metrics, atomic_load(&s->metrics_id), sv->counters, hist);
    memcpy(sv->hist, hist, sizeof hist);
    sv->iterator_age_ms = -1;
    sv->shards = xcalloc(s->shard_count, sizeof *sv->shards);
    sv->nshards = s->shard_count;
    for (size_t i = 0; i < s->shard_count; i++) {
        const shard_t *sh = &s->shards[i];
        shard_view_t *x = &sv->shards[i];
        x->index = sh->index;
        x->start_hash = sh->start_hash;
        x->end_hash = sh->end_hash;
        x->parent = sh->parent;
        x->adjacent_parent = sh->adjacent_parent;
        x->created_ms = sh->created_ms;
        x->closed_ms = sh->closed_ms;
        x->iterator_age_ms = -1;
        sv->open_shards += sh->closed_ms == 0;
        shard_runtime_t *rt = sh->rt;
        if (rt == NULL) {
            continue;
        }
        int64_t at = atomic_load_explicit(&rt->iterator_age_at_ms, memory_order_relaxed);
        if (at != 0 && v->now_ms - at <= SCRAPE_ITERATOR_AGE_WINDOW_MS) {
            x->iterator_age_ms = atomic_load_explicit(&rt->iterator_age_ms, memory_order_relaxed);
            if (x->iterator_age_ms > sv->iterator_age_ms) {
                sv->iterator_age_ms = x->iterator_age_ms;
            }
        }
        x->in_bytes = atomic_load_explicit(&rt->m_incoming_bytes, memory_order_relaxed);
        x->in_records = atomic_load_explicit(&rt->m_incoming_records, memory_order_relaxed);
        x->out_bytes = atomic_load_explicit(&rt->m_outgoing_bytes, memory_order_relaxed);
        x->out_records = atomic_load_explicit(&rt->m_outgoing_records, memory_order_relaxed);
        x->read_throttled = atomic_load_explicit(&rt->m_read_throttled, memory_order_relaxed);
        x->write_throttled = atomic_load_explicit(&rt->m_write_throttled, memory_order_relaxed);
    }
    sv->consumers = xcalloc(s->consumer_count, sizeof *sv->consumers);
    sv->nconsumers = s->consumer_count;
    for (size_t i = 0; i < s->consumer_count; i++) {
        consumer_t *con = &s->consumers[i];
        consumer_view_t *cv = &sv->consumers[i];
        snprintf(cv->name, sizeof cv->name, "%s", con->name);
        cv->created_ms = con->created_ms;
        cv->status = con->status;
        histogram_snapshot_t unused[MH_COUNT_];
        metrics_read_series(srv->metrics, atomic_load(&con->metrics_id), cv->counters, unused);
        cv->millis_behind = -1;
        for (size_t k = 0; k < v->nsubs; k++) {
            const subscribe_info_t *sub = &v->subs[k];
            if (sub->stream_created_ms == s->created_ms && strcmp(sub->stream, s->name) == 0 &&
                strcmp(sub->consumer, con->name) == 0 && sub->millis_behind > cv->millis_behind) {
                cv->millis_behind = sub->millis_behind;
            }
        }
    }
    sv->disk_bytes = srv->engine->ops->stream_disk_bytes(srv->engine, s->name);
}

static void view_take(server_t *srv, view_t *v)
{
    memset(v, 0, sizeof *v);
    v->now_ms = clock_now_ms();
    v->nsubs = subscribe_list(srv, &v->subs);
    catalog_rdlock(srv->catalog);
    v->nstreams = catalog_stream_count(srv->catalog);
    v->streams = xcalloc(v->nstreams, sizeof *v->streams);
    for (size_t i = 0; i < v->nstreams; i++) {
        copy_stream(srv, catalog_stream_at(srv->catalog, i), v, &v->streams[i]);
    }
    catalog_unlock(srv->catalog);
}

static void view_dispose(view_t *v)
{
    for (size_t i = 0; i < v->nstreams; i++) {
        free(v->streams[i].shards);
        free(v->streams[i].consumers);
    }
    free(v->streams);
    free(v->subs);
}

/* ---- the process ---- */

typedef struct process_view {
    uint64_t rss_bytes, virtual_bytes;
    uint64_t open_fds, max_fds;
    uint64_t threads;
    double cpu_seconds;
    http_loop_stats_t loops[LOOPS_MAX];
    size_t nloops;
    uint64_t connections;
} process_view_t;

static void process_take(server_t *srv, process_view_t *p)
{
    memset(p, 0, sizeof *p);
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        unsigned long size = 0, resident = 0;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
            p->virtual_bytes = (uint64_t)size * (uint64_t)page;
            p->rss_bytes = (uint64_t)resident * (uint64_t)page;
        }
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            p->open_fds += e->d_name[0] != '.';
        }
        closedir(d);
        p->open_fds -= p->open_fds > 0; /* the directory's own */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        p->max_fds = (uint64_t)rl.rlim_cur;
    }
    f = fopen("/proc/self/status", "r");
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof line, f) != NULL) {
            unsigned long n;
            if (sscanf(line, "Threads: %lu", &n) == 1) {
                p->threads = n;
            }
        }
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        p->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    }
    if (srv->http != NULL) {
        p->nloops = http_server_stats(srv->http, p->loops, LOOPS_MAX);
        if (p->nloops > LOOPS_MAX) {
            p->nloops = LOOPS_MAX;
        }
        for (size_t i = 0; i < p->nloops; i++) {
            p->connections += p->loops[i].connections;
        }
    }
}

/* ---- Prometheus ---- */

static void family(buf_t *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the exposition format wants (backslash, double quote, newline). */
static void label_value(buf_t *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"') {
            buf_putc(out, '\\');
            buf_putc(out, *v);
        } else if (*v == '\n') {
            buf_puts(out, "\\n");
        } else {
            buf_putc(out, *v);
        }
    }
}

static void stream_label(buf_t *out, const char *metric, const char *stream)
{
    buf_printf(out, "%s{stream=\"", metric);
    label_value(out, stream);
    buf_putc(out, '"');
}

static void histogram_lines(buf_t *out, const char *name, const char *labels, const histogram_snapshot_t *h)
{
    uint64_t cumulative = 0;
    const char *sep = labels[0] != '\0' ? "," : "";
    for (int i = 0; i < HISTOGRAM_BUCKETS - 1; i++) {
        cumulative += h->buckets[i];
        buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
                   (double)histogram_bound_us(i) / 1e6, cumulative);
    }
    buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, h->count);
    const char *open = labels[0] != '\0' ? "{" : "", *close = labels[0] != '\0' ? "}" : "";
    buf_printf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %" PRIu64 "\n", name, open, labels, close,
               (double)h->sum_us / 1e6, name, open, labels, close, h->count);
}

/* The stream-level Kinesis metrics that are plain counters. */
static const struct {
    const char *name;
    metrics_counter_t counter;
    bool consumer; /* a consumer-level metric (labels stream and consumer) */
    const char *help;
} counters[] = {
    {"kinesis_incoming_bytes_total", MC_INCOMING_BYTES, false,
     "IncomingBytes: bytes (data and partition keys) put to the stream successfully."},
    {"kinesis_incoming_records_total", MC_INCOMING_RECORDS, false, "IncomingRecords: records put successfully."},
    {"kinesis_put_record_bytes_total", MC_PUT_RECORD_BYTES, false, "PutRecord.Bytes: bytes put with PutRecord."},
    {"kinesis_put_record_success_total", MC_PUT_RECORD_SUCCESS, false,
     "PutRecord.Success: successful PutRecord calls (all calls: kinesis_put_record_latency_seconds_count)."},
    {"kinesis_put_records_bytes_total", MC_PUT_RECORDS_BYTES, false,
     "PutRecords.Bytes: bytes of the records put successfully with PutRecords."},
    {"kinesis_put_records_success_total", MC_PUT_RECORDS_SUCCESS, false,
     "PutRecords.Success: PutRecords calls in which at least one record succeeded."},
    {"kinesis_put_records_records_total", MC_PUT_RECORDS_SUCCESSFUL_RECORDS, false,
     "PutRecords.Records (deprecated by AWS; the same as SuccessfulRecords)."},
    {"kinesis_put_records_successful_records_total", MC_PUT_RECORDS_SUCCESSFUL_RECORDS, false,
     "PutRecords.SuccessfulRecords: records put successfully with PutRecords."},
    {"kinesis_put_records_failed_records_total", MC_PUT_RECORDS_FAILED_RECORDS, false,
     "PutRecords.FailedRecords: records rejected by internal failures."},
    {"kinesis_put_records_throttled_records_total", MC_PUT_RECORDS_THROTTLED_RECORDS, false,
     "PutRecords.ThrottledRecords: records rejected by throttling."},
    {"kinesis_put_records_total_records_total", MC_PUT_RECORDS_TOTAL_RECORDS, false,
     "PutRecords.TotalRecords: records sent in PutRecords calls."},
    {"kinesis_get_records_bytes_total", MC_GET_RECORDS_BYTES, false, "GetRecords.Bytes: bytes returned by GetRecords."},
    {"kinesis_get_records_records_total", MC_GET_RECORDS_RECORDS, false,
     "GetRecords.Records: records returned by GetRecords."},
    {"kinesis_get_records_success_total", MC_GET_RECORDS_SUCCESS, false,
     "GetRecords.Success: successful GetRecords calls (all calls: kinesis_get_records_latency_seconds_count)."},
    {"kinesis_read_provisioned_throughput_exceeded_total", MC_READ_THROTTLED, false,
     "ReadProvisionedThroughputExceeded: GetRecords calls throttled."},
    {"kinesis_write_provisioned_throughput_exceeded_total", MC_WRITE_THROTTLED, false,
     "WriteProvisionedThroughputExceeded: records throttled (PutRecord and PutRecords)."},
    {"kinesis_subscribe_to_shard_rate_exceeded_total", MC_SUBSCRIBE_RATE_EXCEEDED, true,
     "SubscribeToShard.RateExceeded: subscriptions refused (one per consumer and shard every 5 s)."},
    {"kinesis_subscribe_to_shard_event_bytes_total", MC_SUBSCRIBE_EVENT_BYTES, true,
     "SubscribeToShardEvent.Bytes: bytes delivered to the consumer."},
    {"kinesis_subscribe_to_shard_event_records_total", MC_SUBSCRIBE_EVENT_RECORDS, true,
     "SubscribeToShardEvent.Records: records delivered to the consumer."},
    {"kinesis_subscribe_to_shard_event_success_total", MC_SUBSCRIBE_EVENT_SUCCESS, true,
     "SubscribeToShardEvent.Success: events delivered to the consumer."},
};

static const struct {
    const char *name;
    metrics_histogram_t hist;
    const char *help;
} latencies[] = {
    {"kinesis_put_record_latency_seconds", MH_PUT_RECORD_LATENCY, "PutRecord.Latency."},
    {"kinesis_put_records_latency_seconds", MH_PUT_RECORDS_LATENCY, "PutRecords.Latency."},
    {"kinesis_get_records_latency_seconds", MH_GET_RECORDS_LATENCY, "GetRecords.Latency."},
};

/* Shard-level metrics (enhanced monitoring): shown for the metrics the stream enables. */
static const struct {
    const char *name;
    uint32_t metric;
    size_t offset; /* of the value in shard_view_t */
    const char *help;
} shard_counters[] = {
    {"kinesis_shard_incoming_bytes_total", METRIC_INCOMING_BYTES, offsetof(shard_view_t, in_bytes),
     "IncomingBytes of the shard (enhanced monitoring)."},
    {"kinesis_shard_incoming_records_total", METRIC_INCOMING_RECORDS, offsetof(shard_view_t, in_records),
     "IncomingRecords of the shard (enhanced monitoring)."},
    {"kinesis_shard_outgoing_bytes_total", METRIC_OUTGOING_BYTES, offsetof(shard_view_t, out_bytes),
     "OutgoingBytes: bytes read from the shard by GetRecords and SubscribeToShard (enhanced monitoring)."},
    {"kinesis_shard_outgoing_records_total", METRIC_OUTGOING_RECORDS, offsetof(shard_view_t, out_records),
     "OutgoingRecords: records read from the shard (enhanced monitoring)."},
    {"kinesis_shard_read_provisioned_throughput_exceeded_total", METRIC_READ_PROVISIONED_THROUGHPUT_EXCEEDED,
     offsetof(shard_view_t, read_throttled), "ReadProvisionedThroughputExceeded of the shard (enhanced monitoring)."},
    {"kinesis_shard_write_provisioned_throughput_exceeded_total", METRIC_WRITE_PROVISIONED_THROUGHPUT_EXCEEDED,
     offsetof(shard_view_t, write_throttled),
     "WriteProvisionedThroughputExceeded of the shard (enhanced monitoring)."},
};

static void shard_label(buf_t *out, const char *metric, const stream_view_t *sv, const shard_view_t *x)
{
    char id[32];
    shard_id_format(x->index, id);
    stream_label(out, metric, sv->name);
    buf_printf(out, ",shard=\"%s\"}", id);
}

static void prometheus_streams(const view_t *v, buf_t *out)
{
    for (size_t f = 0; f < sizeof counters / sizeof counters[0]; f++) {
        family(out, counters[f].name, "counter", counters[f].help);
        for (size_t i = 0; i < v->nstreams; i++) {
            const stream_view_t *sv = &v->streams[i];
            if (!counters[f].consumer) {
                stream_label(out, counters[f].name, sv->name);
                buf_printf(out, "} %" PRIu64 "\n", sv->counters[counters[f].counter]);
                continue;
            }
            for (size_t k = 0; k < sv->nconsumers; k++) {
                stream_label(out, counters[f].name, sv->name);
                buf_puts(out, ",consumer=\"");
                label_value(out, sv->consumers[k].name);
                buf_printf(out, "\"} %" PRIu64 "\n", sv->consumers[k].counters[counters[f].counter]);
            }
        }
    }
    for (size_t f = 0; f < sizeof latencies / sizeof latencies[0]; f++) {
        family(out, latencies[f].name, "histogram", latencies[f].help);
        for (size_t i = 0; i < v->nstreams; i++) {
            buf_t labels = BUF_INIT;
            buf_puts(&labels, "stream=\"");
            label_value(&labels, v->streams[i].name);
            buf_putc(&labels, '"');
            histogram_lines(out, latencies[f].name, buf_cstr(&labels), &v->streams[i].hist[latencies[f].hist]);
            buf_dispose(&labels);
        }
    }
    family(out, "kinesis_get_records_iterator_age_milliseconds", "gauge",
           "GetRecords.IteratorAgeMilliseconds: the largest age of the last record returned by a GetRecords call on "
           "any shard of the stream in the last minute (0 at the tip; absent without calls).");
    for (size_t i = 0; i < v->nstreams; i++) {
        if (v->streams[i].iterator_age_ms >= 0) {
            stream_label(out, "kinesis_get_records_iterator_age_milliseconds", v->streams[i].name);
            buf_printf(out, "} %" PRId64 "\n", v->streams[i].iterator_age_ms);
        }
    }
    family(out, "kinesis_subscribe_to_shard_event_millis_behind_latest", "gauge",
           "SubscribeToShardEvent.MillisBehindLatest: the largest MillisBehindLatest of the consumer's open "
           "subscriptions' last events.");
    for (size_t i = 0; i < v->nstreams; i++) {
        const stream_view_t *sv = &v->streams[i];
        for (size_t k = 0; k < sv->nconsumers; k++) {
            if (sv->consumers[k].millis_behind >= 0) {
                stream_label(out, "kinesis_subscribe_to_shard_event_millis_behind_latest", sv->name);
                buf_puts(out, ",consumer=\"");
                label_value(out, sv->consumers[k].name);
                buf_printf(out, "\"} %" PRId64 "\n", sv->consumers[k].millis_behind);
            }
        }
    }
    /* shard level, for the metrics enabled with EnableEnhancedMonitoring only */
    for (size_t f = 0; f < sizeof shard_counters / sizeof shard_counters[0]; f++) {
        family(out, shard_counters[f].name, "counter", shard_counters[f].help);
        for (size_t i = 0; i < v->nstreams; i++) {
            const stream_view_t *sv = &v->streams[i];
            if ((sv->cfg.shard_metrics & shard_counters[f].metric) == 0) {
                continue;
            }
            for (size_t k = 0; k < sv->nshards; k++) {
                const shard_view_t *x = &sv->shards[k];
                shard_label(out, shard_counters[f].name, sv, x);
                buf_printf(out, " %" PRIu64 "\n", *(const uint64_t *)((const char *)x + shard_counters[f].offset));
            }
        }
    }
    family(out, "kinesis_shard_iterator_age_milliseconds", "gauge",
           "IteratorAgeMilliseconds of the shard: the age of the last record returned by GetRecords in the last "
           "minute (enhanced monitoring).");
    for (size_t i = 0; i < v->nstreams; i++) {
        const stream_view_t *sv = &v->streams[i];
        if ((sv->cfg.shard_metrics & METRIC_ITERATOR_AGE_MILLISECONDS) == 0) {
            continue;
        }
        for (size_t k = 0; k < sv->nshards; k++) {
            if (sv->shards[k].iterator_age_ms >= 0) {
                shard_label(out, "kinesis_shard_iterator_age_milliseconds", sv, &sv->shards[k]);
                buf_printf(out, " %" PRId64 "\n", sv->shards[k].iterator_age_ms);
            }
        }
    }
    family(out, "eddy_stream_info", "gauge", "One per stream, with its status and capacity mode as labels.");
    for (size_t i = 0; i < v->nstreams; i++) {
        stream_label(out, "eddy_stream_info", v->streams[i].name);
        buf_printf(out, ",status=\"%s\",mode=\"%s\"} 1\n", stream_status_name(v->streams[i].cfg.status),
                   stream_mode_name(v->streams[i].cfg.mode));
    }
    family(out, "eddy_stream_shards", "gauge", "Shards of the stream, open or closed (kept for retention).");
    for (size_t i = 0; i < v->nstreams; i++) {
        const stream_view_t *sv = &v->streams[i];
        stream_label(out, "eddy_stream_shards", sv->name);
        buf_printf(out, ",state=\"open\"} %zu\n", sv->open_shards);
        stream_label(out, "eddy_stream_shards", sv->name);
        buf_printf(out, ",state=\"closed\"} %zu\n", sv->nshards - sv->open_shards);
    }
    family(out, "eddy_stream_disk_bytes", "gauge", "Bytes the stream's records take on disk.");
    for (size_t i = 0; i < v->nstreams; i++) {
        stream_label(out, "eddy_stream_disk_bytes", v->streams[i].name);
        buf_printf(out, "} %" PRIu64 "\n", v->streams[i].disk_bytes);
    }
}

static void status_label(int slot, char out[16])
{
    if (slot < METRICS_STATUSES - 1) {
        snprintf(out, 16, "%d", metrics_statuses[slot]);
    } else {
        snprintf(out, 16, "other");
    }
}

static void prometheus_requests(server_t *srv, buf_t *out)
{
    metrics_requests_t *r = xcalloc(1, sizeof *r);
    metrics_read_requests(srv->metrics, r);
    size_t nops;
    const api_op_t *ops = api_ops(&nops);
    family(out, "eddy_requests_total", "counter",
           "Requests by operation and HTTP status (operation \"other\": unknown operations, requests refused "
           "before one was chosen, and the GET endpoints).");
    for (size_t row = 0; row <= nops && row <= METRICS_OPS_MAX; row++) {
        for (int s = 0; s < METRICS_STATUSES; s++) {
            if (r->requests[row][s] == 0) {
                continue;
            }
            char status[16];
            status_label(s, status);
            buf_printf(out, "eddy_requests_total{operation=\"%s\",status=\"%s\"} %" PRIu64 "\n",
                       row == 0 ? "other" : ops[row - 1].name, status, r->requests[row][s]);
        }
    }
    family(out, "eddy_request_duration_seconds", "histogram", "Time from receiving a request to replying, by operation.");
    for (size_t row = 0; row <= nops && row <= METRICS_OPS_MAX; row++) {
        if (r->latency[row].count == 0) {
            continue;
        }
        char labels[96];
        snprintf(labels, sizeof labels, "operation=\"%s\"", row == 0 ? "other" : ops[row - 1].name);
        histogram_lines(out, "eddy_request_duration_seconds", labels, &r->latency[row]);
    }
    free(r);
}

static void prometheus_process(server_t *srv, const process_view_t *p, buf_t *out)
{
    family(out, "eddy_build_info", "gauge", "The running version.");
    buf_printf(out, "eddy_build_info{version=\"%s\"} 1\n", EDDY_VERSION);
    family(out, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.");
    buf_printf(out, "process_start_time_seconds %.3f\n", (double)srv->started_ms / 1000.0);
    family(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    buf_printf(out, "process_cpu_seconds_total %.3f\n", p->cpu_seconds);
    family(out, "process_resident_memory_bytes", "gauge", "Resident memory size.");
    buf_printf(out, "process_resident_memory_bytes %" PRIu64 "\n", p->rss_bytes);
    family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
    buf_printf(out, "process_virtual_memory_bytes %" PRIu64 "\n", p->virtual_bytes);
    family(out, "process_open_fds", "gauge", "Open file descriptors.");
    buf_printf(out, "process_open_fds %" PRIu64 "\n", p->open_fds);
    family(out, "process_max_fds", "gauge", "The limit on open file descriptors.");
    buf_printf(out, "process_max_fds %" PRIu64 "\n", p->max_fds);
    family(out, "eddy_threads", "gauge", "Threads of the process (fixed: event loops, sync workers, housekeeping).");
    buf_printf(out, "eddy_threads %" PRIu64 "\n", p->threads);
    family(out, "eddy_connections", "gauge", "Open client connections, by event loop.");
    for (size_t i = 0; i < p->nloops; i++) {
        buf_printf(out, "eddy_connections{loop=\"%zu\"} %" PRIu64 "\n", i, p->loops[i].connections);
    }
    family(out, "eddy_event_loop_lag_seconds", "gauge",
           "How long the last probe (one a second) waited for the event loop to get to it.");
    for (size_t i = 0; i < p->nloops; i++) {
        buf_printf(out, "eddy_event_loop_lag_seconds{loop=\"%zu\"} %.6f\n", i, (double)p->loops[i].lag_us / 1e6);
    }
    histogram_snapshot_t fsync = {0};
    srv->engine->ops->sync_latency(srv->engine, &fsync);
    family(out, "eddy_fsync_duration_seconds", "histogram",
           "Duration of the shard log syncs (fdatasync; one per shard per group commit).");
    histogram_lines(out, "eddy_fsync_duration_seconds", "", &fsync);
}

void scrape_prometheus(server_t *srv, buf_t *out)
{
    view_t v;
    view_take(srv, &v);
    process_view_t *p = xcalloc(1, sizeof *p);
    process_take(srv, p);
    prometheus_streams(&v, out);
    prometheus_requests(srv, out);
    prometheus_process(srv, p, out);
    free(p);
    view_dispose(&v);
}

/* ---- the dashboard's JSON ---- */

static void json_shard_id(jsonw_t *w, int64_t index)
{
    if (index < 0) {
        jsonw_null(w);
        return;
    }
    char id[32];
    shard_id_format((uint32_t)index, id);
    jsonw_str(w, id);
}

/* "key": v, or "key": null when v is `none`. */
static void json_optional(jsonw_t *w, const char *key, int64_t v, int64_t none)
{
    jsonw_key(w, key);
    if (v != none) {
        jsonw_int(w, v);
    } else {
        jsonw_null(w);
    }
}

static void json_counter(jsonw_t *w, const char *key, uint64_t v)
{
    jsonw_key(w, key);
    jsonw_int(w, (int64_t)v);
}

static void json_stream(server_t *srv, const view_t *v, const stream_view_t *sv, jsonw_t *w)
{
    char text[64];
    buf_t arn = BUF_INIT;
    jsonw_obj_begin(w);
    jsonw_key(w, "name");
    jsonw_str(w, sv->name);
    buf_printf(&arn, "arn:aws:kinesis:%s:%s:stream/%s", srv->cfg.region, srv->cfg.account_id, sv->name);
    jsonw_key(w, "arn");
    jsonw_str(w, buf_cstr(&arn));
    jsonw_key(w, "status");
    jsonw_str(w, stream_status_name(sv->cfg.status));
    jsonw_key(w, "mode");
    jsonw_str(w, stream_mode_name(sv->cfg.mode));
    json_counter(w, "retention_hours", (uint64_t)sv->cfg.retention_hours);
    jsonw_key(w, "encrypted");
    jsonw_bool(w, sv->cfg.encrypted);
    json_counter(w, "created_ms", (uint64_t)sv->created_ms);
    jsonw_key(w, "enhanced_monitoring");
    jsonw_arr_begin(w);
    for (int b = 0; b < 7; b++) {
        if (sv->cfg.shard_metrics & (1u << b)) {
            jsonw_str(w, shard_metric_names[b]);
        }
    }
    jsonw_arr_end(w);
    json_counter(w, "disk_bytes", sv->disk_bytes);
    jsonw_key(w, "counters");
    jsonw_obj_begin(w);
    json_counter(w, "incoming_records", sv->counters[MC_INCOMING_RECORDS]);
    json_counter(w, "incoming_bytes", sv->counters[MC_INCOMING_BYTES]);
    json_counter(w, "get_records_records", sv->counters[MC_GET_RECORDS_RECORDS]);
    json_counter(w, "get_records_bytes", sv->counters[MC_GET_RECORDS_BYTES]);
    json_counter(w, "write_throttled", sv->counters[MC_WRITE_THROTTLED]);
    json_counter(w, "read_throttled", sv->counters[MC_READ_THROTTLED]);
    json_counter(w, "put_records_failed_records", sv->counters[MC_PUT_RECORDS_FAILED_RECORDS]);
    uint64_t sub_records = 0;
    for (size_t k = 0; k < sv->nconsumers; k++) {
        sub_records += sv->consumers[k].counters[MC_SUBSCRIBE_EVENT_RECORDS];
    }
    json_counter(w, "subscribe_event_records", sub_records);
    jsonw_obj_end(w);
    json_optional(w, "iterator_age_ms", sv->iterator_age_ms, -1);
    jsonw_key(w, "shards");
    jsonw_arr_begin(w);
    for (size_t k = 0; k < sv->nshards; k++) {
        const shard_view_t *x = &sv->shards[k];
        jsonw_obj_begin(w);
        jsonw_key(w, "id");
        json_shard_id(w, x->index);
        jsonw_key(w, "open");
        jsonw_bool(w, x->closed_ms == 0);
        u128_format(x->start_hash, text);
        jsonw_key(w, "start_hash");
        jsonw_str(w, text);
        u128_format(x->end_hash, text);
        jsonw_key(w, "end_hash");
        jsonw_str(w, text);
        jsonw_key(w, "parent");
        json_shard_id(w, x->parent);
        jsonw_key(w, "adjacent_parent");
        json_shard_id(w, x->adjacent_parent);
        json_counter(w, "created_ms", (uint64_t)x->created_ms);
        json_optional(w, "closed_ms", x->closed_ms, 0);
        json_optional(w, "iterator_age_ms", x->iterator_age_ms, -1);
        jsonw_obj_end(w);
    }
    jsonw_arr_end(w);
    jsonw_key(w, "consumers");
    jsonw_arr_begin(w);
    for (size_t k = 0; k < sv->nconsumers; k++) {
        const consumer_view_t *cv = &sv->consumers[k];
        jsonw_obj_begin(w);
        jsonw_key(w, "name");
        jsonw_str(w, cv->name);
        jsonw_key(w, "status");
        jsonw_str(w, stream_status_name(cv->status));
        buf_t consumer_arn = BUF_INIT;
        buf_printf(&consumer_arn, "%s/consumer/%s:%" PRId64, buf_cstr(&arn), cv->name, cv->created_ms / 1000);
        jsonw_key(w, "arn");
        jsonw_str(w, buf_cstr(&consumer_arn));
        buf_dispose(&consumer_arn);
        jsonw_key(w, "counters");
        jsonw_obj_begin(w);
        json_counter(w, "subscribe_event_records", cv->counters[MC_SUBSCRIBE_EVENT_RECORDS]);
        json_counter(w, "subscribe_event_bytes", cv->counters[MC_SUBSCRIBE_EVENT_BYTES]);
        json_counter(w, "rate_exceeded", cv->counters[MC_SUBSCRIBE_RATE_EXCEEDED]);
        jsonw_obj_end(w);
        json_optional(w, "millis_behind_latest", cv->millis_behind, -1);
        jsonw_key(w, "subscriptions");
        jsonw_arr_begin(w);
        for (size_t i = 0; i < v->nsubs; i++) {
            const subscribe_info_t *sub = &v->subs[i];
            if (sub->stream_created_ms != sv->created_ms || strcmp(sub->stream, sv->name) != 0 ||
                strcmp(sub->consumer, cv->name) != 0) {
                continue;
            }
            jsonw_obj_begin(w);
            jsonw_key(w, "shard");
            json_shard_id(w, sub->shard);
            jsonw_key(w, "millis_behind_latest");
            jsonw_int(w, sub->millis_behind);
            json_counter(w, "started_ms", (uint64_t)sub->started_ms);
            jsonw_obj_end(w);
        }
        jsonw_arr_end(w);
        jsonw_obj_end(w);
    }
    jsonw_arr_end(w);
    jsonw_obj_end(w);
    buf_dispose(&arn);
}

void scrape_state_json(server_t *srv, buf_t *out)
{
    view_t v;
    view_take(srv, &v);
    process_view_t *p = xcalloc(1, sizeof *p);
    process_take(srv, p);
    jsonw_t w;
    jsonw_init(&w, out);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "server");
    jsonw_obj_begin(&w);
    jsonw_key(&w, "version");
    jsonw_str(&w, EDDY_VERSION);
    json_counter(&w, "started_ms", (uint64_t)srv->started_ms);
    json_counter(&w, "now_ms", (uint64_t)v.now_ms);
    jsonw_key(&w, "durability");
    jsonw_str(&w, durability_name(srv->cfg.durability));
    jsonw_key(&w, "data_dir");
    jsonw_str(&w, srv->cfg.data_dir);
    json_counter(&w, "rss_bytes", p->rss_bytes);
    json_counter(&w, "open_files", p->open_fds);
    json_counter(&w, "connections", p->connections);
    json_counter(&w, "threads", p->threads);
    jsonw_key(&w, "auth");
    jsonw_bool(&w, auth_enabled(srv));
    jsonw_obj_end(&w);
    jsonw_key(&w, "streams");
    jsonw_arr_begin(&w);
    for (size_t i = 0; i < v.nstreams; i++) {
        json_stream(srv, &v, &v.streams[i], &w);
    }
    jsonw_arr_end(&w);
    jsonw_obj_end(&w);
    free(p);
    view_dispose(&v);
}
