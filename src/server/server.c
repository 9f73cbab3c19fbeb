/* server: process lifecycle (see server.h). */
#include "server/server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "common/clock.h"
#include "server/auth.h"
#include "server/autoscale.h"
#include "server/dataplane.h"
#include "server/dynamodb/dynamodb.h"
#include "server/api/api.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "server/reqlog.h"

void server_config_defaults(server_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    cfg->port = 4567;
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "./eddy-data");
    cfg->state_delay_ms = 500;
    snprintf(cfg->account_id, sizeof cfg->account_id, "000000000000");
    snprintf(cfg->region, sizeof cfg->region, "us-east-1");
    cfg->threads = 0;
    cfg->max_body = 16u << 20;
    cfg->header_timeout_ms = 10000;
    cfg->idle_timeout_ms = 120000;
    cfg->shard_limit = 500;
    cfg->on_demand_stream_limit = 50;
    cfg->durability = DURABILITY_FSYNC;
    cfg->sync_interval_ms = 1000;
    cfg->shard_limits = true;
    cfg->segment_bytes = 64u << 20;
    cfg->on_demand_split_after_s = 5;
    cfg->on_demand_merge_after_s = 600;
    cfg->subscription_ms = 5 * 60 * 1000;
    cfg->tls_port = 4568;
}


/* Puts the request log as cfg says. Returns 0, or -errno with err filled (nothing changed). */
static int apply_request_log(server_t *srv, const server_config_t *cfg, char *err, size_t errlen)
{
    int rc = reqlog_configure(srv->reqlog, cfg->request_log, cfg->request_log_file, err, errlen);
    if (rc == 0) {
        log_info("request log: %s%s%s", reqlog_mode_name(cfg->request_log), cfg->request_log == REQLOG_OFF ? "" : " to ",
                 cfg->request_log == REQLOG_OFF ? "" : cfg->request_log_file[0] ? cfg->request_log_file : "stderr");
    }
    return rc;
}

/* SIGHUP: the credentials, and what may change while running (the request log), from a fresh reading of
 * the configuration. */
static void reload(server_t *srv)
{
    auth_reload(srv);
    server_config_t fresh;
    if (srv->reload == NULL || !srv->reload(&fresh, srv->reload_arg)) {
        return;
    }
    char err[512];
    if (apply_request_log(srv, &fresh, err, sizeof err) != 0) {
        log_error("SIGHUP: keeping the request log as it was: %s", err);
        return;
    }
    srv->cfg.request_log = fresh.request_log;
    snprintf(srv->cfg.request_log_file, sizeof srv->cfg.request_log_file, "%s", fresh.request_log_file);
}

int server_start(server_t *srv, const server_config_t *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    srv->started_ms = clock_now_ms();
    atomic_init(&srv->ready, false);
    srv->metrics = metrics_new();
    srv->reqlog = reqlog_new();
    char err[512] = "";
    int rc = apply_request_log(srv, cfg, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        server_stop(srv);
        return rc;
    }
    rc = mkdir_p(cfg->data_dir);
    if (rc != 0) {
        log_error("cannot create data folder %s: %s", cfg->data_dir, strerror(-rc));
        server_stop(srv);
        return rc;
    }
    srv->catalog = catalog_open(cfg->data_dir, err, sizeof err);
    if (srv->catalog == NULL) {
        log_error("%s", err);
        server_stop(srv);
        return -EIO;
    }
    engine_local_options_t eo = {.data_dir = cfg->data_dir, .durability = cfg->durability,
                                 .interval_ms = cfg->sync_interval_ms};
    shard_log_default_options(&eo.log);
    eo.log.segment_bytes = cfg->segment_bytes;
    srv->engine = engine_local_new(&eo, err, sizeof err);
    if (srv->engine == NULL) {
        log_error("%s", err);
        server_stop(srv);
        return -EIO;
    }
    catalog_set_drop_hook(srv->catalog, dataplane_drop_stream, srv);
    subscribe_init(srv);
    rc = auth_init(srv, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        goto fail;
    }
    if (dataplane_init_keys(srv) != 0) {
        log_error("cannot create the iterator key in the catalog");
        rc = -EIO;
        goto fail;
    }
    catalog_lock(srv->catalog);
    rc = ddb_init(srv);
    if (rc != 0) {
        catalog_unlock(srv->catalog);
        goto fail;
    }
    catalog_settle(srv->catalog, clock_now_ms());
    for (size_t i = 0; i < catalog_stream_count(srv->catalog); i++) {
        stream_t *s = catalog_stream_at(srv->catalog, i);
        rc = dataplane_attach_stream(srv, s);
        if (rc != 0) {
            catalog_unlock(srv->catalog);
            log_error("cannot open the records of stream %s: %s", s->name, strerror(-rc));
            goto fail;
        }
    }
    catalog_unlock(srv->catalog);

    int threads = cfg->threads;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    http_config_t hc = {
        .host = cfg->host,
        .port = cfg->port,
        .threads = threads,
        .max_body = cfg->max_body,
        .header_timeout_ms = cfg->header_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .tls_cert = cfg->tls_cert[0] ? cfg->tls_cert : NULL,
        .tls_key = cfg->tls_key[0] ? cfg->tls_key : NULL,
        .tls_port = cfg->tls_port,
        .handler = protocol_handle,
        .handler_arg = srv,
    };
    if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0')) {
        log_error("--tls-cert and --tls-key go together");
        rc = -EINVAL;
        goto fail;
    }
    rc = http_server_start(&hc, &srv->http, &srv->port, &srv->tls_port, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        goto fail;
    }
    atomic_store(&srv->ready, true);
    const char *host = cfg->host;
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "eddy listening on http://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", srv->port);
    if (srv->tls_port != 0) {
        fprintf(stderr, "eddy listening on https://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", srv->tls_port);
    }
    log_info("data in %s, durability %s, %d event-loop thread%s, account %s, region %s, shard limits %s",
             cfg->data_dir, durability_name(cfg->durability), threads, threads == 1 ? "" : "s", cfg->account_id,
             cfg->region, cfg->shard_limits ? "on" : "off");
    return 0;
fail:
    srv->http = NULL;
    server_stop(srv);
    return rc;
}

void server_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void server_run(server_t *srv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        /* Housekeeping once a second: due state transitions, then retention. */
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) {
            int64_t now = clock_now_ms();
            catalog_lock(srv->catalog);
            catalog_settle(srv->catalog, now);
            autoscale_tick(srv, now);
            catalog_unlock(srv->catalog);
            dataplane_trim(srv, now);
            subscribe_tick(srv, now);
            catalog_rdlock(srv->catalog);
            metrics_sweep(srv->metrics, srv->catalog);
            catalog_unlock(srv->catalog);
            http_server_probe(srv->http);
            continue;
        }
        if (sig == SIGHUP) {
            reload(srv);
            continue;
        }
        log_info("%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
}

void server_stop(server_t *srv)
{
    atomic_store(&srv->ready, false);
    if (srv->http != NULL) {
        subscribe_end_all(srv);
        http_server_stop(srv->http, 2000);
        srv->http = NULL;
    }
    if (srv->catalog != NULL && srv->engine != NULL) {
        dataplane_detach_all(srv);
    }
    subscribe_dispose(srv);
    auth_dispose(srv);
    if (srv->engine != NULL) {
        srv->engine->ops->close(srv->engine);
        srv->engine = NULL;
    }
    if (srv->catalog != NULL) {
        catalog_close(srv->catalog);
        srv->catalog = NULL;
    }
    metrics_free(srv->metrics);
    srv->metrics = NULL;
    reqlog_free(srv->reqlog);
    srv->reqlog = NULL;
    log_info("stopped; data in %s", srv->cfg.data_dir);
}
