/* agent: the main loop of `eddy agent` (see agent.h). */
#include "agent/agent.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/checkpoint.h"
#include "agent/metrics_http.h"
#include "agent/process.h"
#include "agent/sender.h"
#include "agent/tailer.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"

#define EC2_ENDPOINT "http://169.254.169.254"
#define EC2_TIMEOUT_MS 1000
#define PRUNE_EVERY_MS (3600 * 1000)
/* The tailer runs at most once per tick: files being written are read on timers spread over time and idle
 * ones wake the loop through inotify; a tick batches the reads that fall due and the events the kernel
 * queues meanwhile (its queue holds 16384). */
#define TAIL_TICK_MS 20
#define DRAIN_TICK_MS 50

typedef struct agent {
    agent_config_t *cfg;
    ckpt_store_t *store;
    sender_t *sender;
    tailer_t *tailer;
    metrics_http_t *http;
    bool full; /* the last read stopped for lack of room */
} agent_t;

/* ---- the tailer's callbacks ---- */

static bool has_room(void *arg)
{
    agent_t *a = arg;
    bool room = sender_has_room(a->sender);
    a->full = a->full || !room;
    return room;
}

static int on_record(void *arg, tail_source_t *s, const char *data, size_t len, int64_t end_offset)
{
    agent_t *a = arg;
    if (!sender_has_room(a->sender)) {
        a->full = true;
        return -EAGAIN;
    }
    proc_chain_t *chain = s->flow->cfg->chain;
    const char *out = data;
    size_t out_len = len;
    if (proc_chain_length(chain) > 0 && proc_chain_run(chain, data, len, clock_now_ms(), &out, &out_len) == PROC_DROP) {
        s->flow->stats.records_skipped++;
        return 0;
    }
    return sender_put(a->sender, s, out, out_len, end_offset);
}

static void on_forget(void *arg, tail_source_t *s)
{
    (void)arg;
    sender_release_queue(s);
}

/* ---- metrics ---- */

static void label_value(buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            buf_putc(b, '\\');
            buf_putc(b, *s);
        } else if (*s == '\n') {
            buf_puts(b, "\\n");
        } else {
            buf_putc(b, *s);
        }
    }
}

static void flow_label(buf_t *b, const tail_flow_t *f)
{
    buf_puts(b, "{flow=\"");
    label_value(b, f->cfg->id);
    buf_puts(b, "\"");
}

static const char *state_name(source_state_t st)
{
    static const char *const names[] = {"live", "detached", "unsure", "copy", "retired"};
    return names[st];
}

static void render(void *arg, buf_t *b)
{
    agent_t *a = arg;
    static const struct {
        const char *name, *help;
        size_t offset;
    } counters[] = {
        {"eddy_agent_records_parsed_total", "Records cut from files.", offsetof(tail_flow_stats_t, records_parsed)},
        {"eddy_agent_bytes_parsed_total", "Bytes of the records cut from files.", offsetof(tail_flow_stats_t, bytes_parsed)},
        {"eddy_agent_records_skipped_total", "Header and footer lines, records dropped by dataProcessingOptions.",
         offsetof(tail_flow_stats_t, records_skipped)},
        {"eddy_agent_records_truncated_total", "Records cut at maxRecordSizeBytes.",
         offsetof(tail_flow_stats_t, records_truncated)},
        {"eddy_agent_records_sent_total", "Records acknowledged by the stream.", offsetof(tail_flow_stats_t, records_sent)},
        {"eddy_agent_bytes_sent_total", "Bytes of the records acknowledged.", offsetof(tail_flow_stats_t, bytes_sent)},
        {"eddy_agent_record_send_errors_total", "Failed attempts at sending a record (each retried).",
         offsetof(tail_flow_stats_t, record_send_errors)},
        {"eddy_agent_records_dropped_total", "Records refused for good (too large, invalid).",
         offsetof(tail_flow_stats_t, records_dropped)},
        {"eddy_agent_bytes_lost_total", "Bytes truncated away before they could be read (truncate without a copy).",
         offsetof(tail_flow_stats_t, bytes_lost)},
        {"eddy_agent_rotations_total", "Truncations followed (copytruncate, truncate).",
         offsetof(tail_flow_stats_t, rotations)},
    };
    size_t nflows = tailer_flow_count(a->tailer);
    for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name, counters[c].help, counters[c].name);
        for (size_t i = 0; i < nflows; i++) {
            tail_flow_t *f = tailer_flow(a->tailer, i);
            buf_puts(b, counters[c].name);
            flow_label(b, f);
            buf_printf(b, "} %" PRIu64 "\n", *(const uint64_t *)((const char *)&f->stats + counters[c].offset));
        }
    }
    buf_puts(b, "# HELP eddy_agent_converter_records_total Records through each dataProcessingOptions converter.\n"
                "# TYPE eddy_agent_converter_records_total counter\n");
    for (size_t i = 0; i < nflows; i++) {
        tail_flow_t *f = tailer_flow(a->tailer, i);
        for (size_t k = 0; k < proc_chain_length(f->cfg->chain); k++) {
            const proc_counters_t *pc = proc_chain_counters(f->cfg->chain, k);
            const char *outcomes[] = {"converted", "malformed", "dropped", "kept_raw"};
            uint64_t values[] = {pc->converted, pc->malformed, pc->dropped, pc->kept_raw};
            for (int o = 0; o < 4; o++) {
                buf_puts(b, "eddy_agent_converter_records_total");
                flow_label(b, f);
                buf_printf(b, ",option=\"%s\",index=\"%zu\",outcome=\"%s\"} %" PRIu64 "\n",
                           proc_chain_option(f->cfg->chain, k), k, outcomes[o], values[o]);
            }
        }
    }
    buf_printf(b, "# HELP eddy_agent_buffered_bytes Bytes of records held until acknowledged.\n"
                  "# TYPE eddy_agent_buffered_bytes gauge\neddy_agent_buffered_bytes %zu\n"
                  "# HELP eddy_agent_buffered_bytes_limit eddy.maxBufferedBytes.\n"
                  "# TYPE eddy_agent_buffered_bytes_limit gauge\neddy_agent_buffered_bytes_limit %zu\n"
                  "# HELP eddy_agent_buffered_records Records held until acknowledged.\n"
                  "# TYPE eddy_agent_buffered_records gauge\neddy_agent_buffered_records %zu\n",
               sender_buffered_bytes(a->sender), sender_limit_bytes(a->sender), sender_buffered_records(a->sender));
    uint64_t retries, throttles, requests;
    sender_producer_metrics(a->sender, &retries, &throttles, &requests);
    buf_printf(b, "# TYPE eddy_agent_producer_retries_total counter\neddy_agent_producer_retries_total %" PRIu64 "\n"
                  "# TYPE eddy_agent_producer_throttles_total counter\neddy_agent_producer_throttles_total %" PRIu64 "\n"
                  "# TYPE eddy_agent_put_records_requests_total counter\neddy_agent_put_records_requests_total %" PRIu64
                  "\n# HELP eddy_agent_inotify 1 when files are watched with inotify, 0 when polled.\n"
                  "# TYPE eddy_agent_inotify gauge\neddy_agent_inotify %d\n",
               retries, throttles, requests, tailer_uses_inotify(a->tailer) ? 1 : 0);
    static const char *const file_metrics[] = {
        "eddy_agent_file_size_bytes", "eddy_agent_file_read_offset_bytes", "eddy_agent_file_acked_offset_bytes",
        "eddy_agent_file_checkpoint_offset_bytes", "eddy_agent_file_lag_bytes"};
    static const char *const file_help[] = {
        "Size of the file at the last look.", "Bytes read and cut into records.",
        "Bytes whose records are all acknowledged.", "Offset in the checkpoint file.",
        "Bytes not yet acknowledged (size - acked offset)."};
    buf_puts(b, "# HELP eddy_agent_files_tracked Files followed per flow.\n# TYPE eddy_agent_files_tracked gauge\n");
    for (size_t i = 0; i < nflows; i++) {
        tail_flow_t *f = tailer_flow(a->tailer, i);
        buf_puts(b, "eddy_agent_files_tracked");
        flow_label(b, f);
        buf_printf(b, "} %zu\n", f->count);
    }
    for (int m = 0; m < 5; m++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", file_metrics[m], file_help[m], file_metrics[m]);
        for (size_t i = 0; i < nflows; i++) {
            tail_flow_t *f = tailer_flow(a->tailer, i);
            for (tail_source_t *s = f->head; s != NULL; s = s->next) {
                int64_t acked = tailer_safe_offset(s);
                int64_t values[] = {s->size, s->offset, acked, s->ckpt_row_written ? s->ckpt_written : -1,
                                    s->size > acked ? s->size - acked : 0};
                buf_puts(b, file_metrics[m]);
                flow_label(b, f);
                buf_puts(b, ",path=\"");
                label_value(b, s->path);
                buf_printf(b, "\",id=\"%" PRIu64 "\",state=\"%s\"} %" PRId64 "\n", s->id, state_name(s->state),
                           values[m]);
            }
        }
    }
}

static void log_status(agent_t *a)
{
    for (size_t i = 0; i < tailer_flow_count(a->tailer); i++) {
        tail_flow_t *f = tailer_flow(a->tailer, i);
        int64_t behind = 0;
        for (tail_source_t *s = f->head; s != NULL; s = s->next) {
            int64_t acked = tailer_safe_offset(s);
            behind += s->size > acked ? s->size - acked : 0;
        }
        const tail_flow_stats_t *st = &f->stats;
        log_info("agent: %s: %zu files; %" PRIu64 " records parsed (%" PRIu64 " bytes), %" PRIu64 " sent (%" PRIu64
                 " bytes), %" PRIu64 " skipped, %" PRIu64 " send errors, %" PRIu64 " dropped; tailer is %.2f MB behind",
                 f->cfg->id, f->count, st->records_parsed, st->bytes_parsed, st->records_sent, st->bytes_sent,
                 st->records_skipped, st->record_send_errors, st->records_dropped, (double)behind / 1e6);
    }
    log_info("agent: %zu records (%zu bytes) buffered of %zu allowed", sender_buffered_records(a->sender),
             sender_buffered_bytes(a->sender), sender_limit_bytes(a->sender));
}

/* ---- setup ---- */

static void raise_open_files_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void ec2_metadata(agent_config_t *cfg)
{
    bool wanted = false;
    for (size_t i = 0; i < cfg->nflows; i++) {
        wanted = wanted || proc_chain_wants_ec2(cfg->flows[i].chain);
    }
    if (!wanted) {
        return;
    }
    char err[256];
    char *json = proc_ec2_fetch_metadata(EC2_ENDPOINT, EC2_TIMEOUT_MS, err, sizeof err);
    if (json == NULL) {
        log_warn("agent: ADDEC2METADATA: %s; records pass without EC2 metadata", err);
    } else {
        log_info("agent: ADDEC2METADATA: %s", json);
    }
    for (size_t i = 0; i < cfg->nflows; i++) {
        proc_chain_set_ec2_metadata(cfg->flows[i].chain, json);
    }
    free(json);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int agent_run(agent_config_t *cfg, const agent_options_t *opt)
{
    agent_t a = {.cfg = cfg};
    int status = 1;
    int sfd = -1;
    char err[512];
    raise_open_files_limit();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL); /* before any thread starts: they inherit it */
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        log_error("agent: signalfd: %s", strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        log_warn("agent: %s", cfg->warnings[i]);
    }
    a.store = ckpt_open(cfg->checkpoint_file, err, sizeof err);
    if (a.store == NULL) {
        log_error("agent: %s", err);
        goto out;
    }
    int64_t wall = clock_now_ms();
    int pruned = ckpt_prune(a.store, wall - (int64_t)cfg->checkpoint_ttl_days * 86400000);
    if (pruned > 0) {
        log_info("agent: %d checkpoints older than %d days removed", pruned, cfg->checkpoint_ttl_days);
    }
    ec2_metadata(cfg);
    a.sender = sender_new(cfg, err, sizeof err);
    if (a.sender == NULL) {
        log_error("agent: %s", err);
        goto out;
    }
    tailer_ops_t ops = {.has_room = has_room, .record = on_record, .forget = on_forget, .arg = &a};
    a.tailer = tailer_new(cfg, a.store, !opt->no_inotify, &ops, clock_monotonic_ms(), err, sizeof err);
    if (a.tailer == NULL) {
        log_error("agent: %s", err);
        goto out;
    }
    const char *listen_on = opt->metrics_listen != NULL ? opt->metrics_listen : cfg->metrics_listen;
    if (listen_on != NULL) {
        a.http = metrics_http_new(listen_on, render, &a, err, sizeof err);
        if (a.http == NULL) {
            log_error("agent: %s", err);
            goto out;
        }
    }
    size_t files = 0;
    for (size_t i = 0; i < tailer_flow_count(a.tailer); i++) {
        files += tailer_flow(a.tailer, i)->count;
    }
    log_info("agent: started: %zu flows, %zu files, %s; metrics on %s", cfg->nflows, files,
             tailer_uses_inotify(a.tailer) ? "inotify" : "polling", a.http ? metrics_http_url(a.http) : "(off)");

    int64_t now = clock_monotonic_ms();
    int64_t next_ckpt = now + cfg->checkpoint_interval_ms;
    int64_t next_status = now + (int64_t)cfg->status_period_s * 1000;
    int64_t next_prune = now + PRUNE_EVERY_MS;
    int64_t stop_deadline = 0;
    bool stopping = false;
    int64_t last_tail_ms = INT64_MIN / 2, tail_next = 0; /* the tailer's last run, and when it wants the next */
    bool events_pending = false;
    struct pollfd fds[3 + 1 + METRICS_MAX_CLIENTS];
    for (;;) {
        now = clock_monotonic_ms();
        int64_t next = now + 1000;
        next = min64(next, sender_drain(a.sender, now));
        if (a.full && sender_has_room(a.sender)) {
            a.full = false;
            tailer_kick_all(a.tailer);
            tail_next = now;
        }
        if (!stopping) {
            if (now - last_tail_ms >= TAIL_TICK_MS || now >= tail_next) {
                tail_next = tailer_run(a.tailer, now);
                sender_submit(a.sender); /* what the round read, to the producers together */
                last_tail_ms = now;
                events_pending = false;
            }
            next = min64(next, tail_next);
        }
        if (now >= next_ckpt) {
            tailer_write_checkpoints(a.tailer, clock_now_ms());
            next_ckpt = now + cfg->checkpoint_interval_ms;
        }
        next = min64(next, next_ckpt);
        if (now >= next_status) {
            log_status(&a);
            next_status = now + (int64_t)cfg->status_period_s * 1000;
        }
        if (now >= next_prune) {
            if (ckpt_prune(a.store, clock_now_ms() - (int64_t)cfg->checkpoint_ttl_days * 86400000) > 0) {
                tailer_checkpoints_pruned(a.tailer); /* a tracked file idle that long keeps its row */
            }
            next_prune = now + PRUNE_EVERY_MS;
        }
        if (stopping && (sender_buffered_records(a.sender) == 0 || now >= stop_deadline)) {
            log_status(&a);
            break;
        }
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        /* completions are taken every DRAIN_TICK_MS (or with the tailer's rounds), not as each reply
         * comes, unless reading waits for the room they free, or the agent is stopping */
        if (a.full || stopping) {
            fds[n++] = (struct pollfd){.fd = sender_fd(a.sender), .events = POLLIN};
        } else if (sender_buffered_records(a.sender) > 0) {
            next = min64(next, now + DRAIN_TICK_MS);
        }
        size_t tail_at = n;
        /* events came within the tick: leave them queued until it ends instead of waking for each */
        bool hold = events_pending && now - last_tail_ms < TAIL_TICK_MS;
        if (hold) {
            next = min64(next, last_tail_ms + TAIL_TICK_MS);
        }
        if (tailer_fd(a.tailer) >= 0 && !stopping && !hold) {
            fds[n++] = (struct pollfd){.fd = tailer_fd(a.tailer), .events = POLLIN};
        }
        size_t http_at = n;
        if (a.http != NULL) {
            n += metrics_http_fill(a.http, fds + n);
        }
        int64_t wait = next - now;
        wait = wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
        if (poll(fds, n, (int)wait) < 0 && errno != EINTR) {
            log_error("agent: poll: %s", strerror(errno));
            break;
        }
        if (tail_at < http_at && (fds[tail_at].revents & POLLIN)) {
            events_pending = true; /* tailer_run reads them */
        }
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == sizeof si && !stopping) {
                log_info("agent: signal %u: sending what is buffered (up to %lld ms), then stopping", si.ssi_signo,
                         (long long)cfg->shutdown_timeout_ms);
                stopping = true;
                tailer_stop_reading(a.tailer);
                sender_flush(a.sender);
                stop_deadline = clock_monotonic_ms() + cfg->shutdown_timeout_ms;
            }
        }
        if (a.http != NULL) {
            metrics_http_handle(a.http, fds + http_at, n - http_at, clock_monotonic_ms());
        }
    }
    status = 0;
out:
    if (a.sender != NULL) {
        sender_free(a.sender); /* waits for the producers: every outcome is applied */
        a.sender = NULL;
    }
    if (a.tailer != NULL) {
        if (status == 0) {
            tailer_write_checkpoints(a.tailer, clock_now_ms());
        }
        tailer_free(a.tailer);
    }
    metrics_http_free(a.http);
    ckpt_close(a.store);
    if (sfd >= 0) {
        close(sfd);
    }
    if (status == 0) {
        log_info("agent: stopped");
    }
    return status;
}
