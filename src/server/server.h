/*
 * server: the eddy server process: configuration, the shared state the API handlers work on, and the
 * lifecycle (start, wait for a signal, graceful stop).
 */
#ifndef EDDY_SERVER_SERVER_H
#define EDDY_SERVER_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/http.h"
#include "server/reqlog.h"
#include "store/catalog.h"
#include "store/engine.h"

typedef struct server_config {
    char host[256];
    int port;
    char data_dir[4096];
    int64_t state_delay_ms; /* CREATING/UPDATING/DELETING duration */
    char account_id[13];    /* 12 digits */
    char region[64];
    int threads;            /* event-loop threads; 0 = one per core */
    size_t max_body;        /* bytes */
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    int shard_limit;           /* provisioned shards per account */
    int on_demand_stream_limit; /* ON_DEMAND streams per account */
    durability_t durability;
    int sync_interval_ms;       /* DURABILITY_INTERVAL period */
    bool shard_limits;          /* enforce Kinesis per-shard throughput limits */
    size_t segment_bytes;       /* shard log segment size */
    int on_demand_split_after_s; /* see autoscale.h */
    int on_demand_merge_after_s;
    int64_t subscription_ms;     /* SubscribeToShard lifetime */
    char credentials_path[4096]; /* --credentials: access keys (empty: authentication off) */
    bool insecure;               /* allow a non-loopback address without credentials */
    char tls_cert[4096];         /* --tls-cert / --tls-key: also serve HTTPS on tls_port */
    char tls_key[4096];
    int tls_port;
    reqlog_mode_t request_log;     /* --request-log (off by default; changes on SIGHUP) */
    char request_log_file[4096];   /* --request-log-file ("": stderr; reopened on SIGHUP) */
} server_config_t;

/* Reads the configuration afresh, as at start (for SIGHUP): fills cfg and returns true, or returns false
 * (having said why). */
typedef bool (*server_config_loader_fn)(server_config_t *cfg, void *arg);

typedef struct server {
    server_config_t cfg;
    catalog_t *catalog;
    engine_t *engine;
    http_server_t *http;
    unsigned char iterator_key[32];
    int port; /* bound port */
    int tls_port; /* bound HTTPS port (0 without TLS) */
    atomic_bool ready;
    int64_t autoscale_tick_ms; /* the autoscaler's last tick (housekeeping thread) */
    struct fanout *fanout;     /* SubscribeToShard subscriptions (api/subscribe.c) */
    struct auth *auth;         /* request authentication (auth.c) */
    struct metrics *metrics;   /* Kinesis metrics and request counters (metrics.h) */
    struct reqlog *reqlog;     /* the request log (reqlog.h) */
    int64_t started_ms;        /* wall clock, when server_start began */
    server_config_loader_fn reload; /* set by the caller before server_run; NULL: SIGHUP reloads credentials only */
    void *reload_arg;
} server_t;

/* Fills cfg with the documented defaults. */
void server_config_defaults(server_config_t *cfg);
/* Opens the data folder and catalog, starts listening and prints "eddy listening on http://HOST:PORT".
 * Returns 0 or a negative code (message already logged). */
int server_start(server_t *srv, const server_config_t *cfg);
/* Runs housekeeping (state transitions, retention, metrics) every second until SIGINT or SIGTERM. SIGHUP
 * reloads the credentials file and, through srv->reload, the request log settings (and reopens its file,
 * for logrotate); other settings need a restart. The caller must
 * have blocked those signals in every thread (server_block_signals before server_start). */
void server_run(server_t *srv);
void server_block_signals(void);
/* Stops serving gracefully and releases everything. */
void server_stop(server_t *srv);

#endif
