/*
 * eddy: the command. Subcommands: serve (the server), version, help.
 *
 * serve options come from, in increasing priority: built-in defaults, a config file (--config FILE, lines
 * of "key = value" using the long option names without dashes, '#' comments), and command-line flags.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/agent.h"
#include "cli/cert.h"
#include "cli/put.h"
#include "cli/tail.h"
#include "cli/consume.h"
#include "common/log.h"
#include "server/server.h"

#ifndef EDDY_VERSION
#define EDDY_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out, "eddy %s: a self-hosted, Kinesis-compatible data streaming server\n\n"
                 "usage: eddy <command> [options]\n\n"
                 "commands:\n"
                 "  serve     run the server (eddy serve --help for its options)\n"
                 "  cert      create a local CA and a server certificate for TLS (eddy cert --help)\n"
                 "  put       put lines or records from files or stdin into a stream (eddy put --help)\n"
                 "  tail      print a stream's records and follow new ones (eddy tail --help)\n"
                 "  agent     tail log files into streams, configured by the Kinesis Agent's agent.json\n"
                 "  consume   run a KCL MultiLang record processor per shard lease (eddy consume --help)\n"
                 "  version   print the version\n"
                 "  help      print this help\n",
            EDDY_VERSION);
}

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy serve [options]\n\n"
            "Serves the Kinesis Data Streams API (AWS JSON 1.1 over HTTP/1.1 and cleartext HTTP/2).\n\n"
            "options:\n"
            "  --host ADDR                 address to listen on (default 127.0.0.1)\n"
            "  --port N                    port to listen on; 0 picks a free port (default 4567)\n"
            "  --data DIR                  data folder, created if missing (default ./eddy-data)\n"
            "  --state-delay-ms N          how long streams stay CREATING/UPDATING/DELETING (default 500;\n"
            "                              0 makes every change instant)\n"
            "  --account-id ID             12-digit account id used in ARNs and messages (default 000000000000)\n"
            "  --region NAME               region used in ARNs (default us-east-1)\n"
            "  --threads N                 event-loop threads (default: one per core)\n"
            "  --max-body-mib N            largest accepted request body in MiB; larger gets 413 (default 16)\n"
            "  --header-timeout-ms N       HTTP/1 request read timeout (default 10000)\n"
            "  --idle-timeout-ms N         HTTP/2 idle connection timeout (default 120000)\n"
            "  --shard-limit N             provisioned shards allowed per account (default 500)\n"
            "  --on-demand-stream-limit N  ON_DEMAND streams allowed per account (default 50)\n"
            "  --durability MODE           fsync (default): a write is acknowledged only once it is on disk\n"
            "                              (fdatasync; concurrent writers share one sync); interval: acknowledged\n"
            "                              once written, synced every --sync-interval-ms (a crash may lose that\n"
            "                              much); none: synced when the OS decides (a machine crash may lose\n"
            "                              recent writes; a process crash loses nothing written)\n"
            "  --sync-interval-ms N        sync period for --durability interval (default 1000)\n"
            "  --shard-limits on|off       enforce Kinesis per-shard throughput limits: writes 1 MiB/s and 1000\n"
            "                              records/s, reads 2 MiB/s and 5 calls/s (default on)\n"
            "  --segment-mib N             size of shard log segment files (default 64)\n"
            "  --on-demand-split-after S   ON_DEMAND streams: split a shard whose write demand stayed above\n"
            "                              its limit (1 MiB/s or 1000 records/s) for S seconds (default 5)\n"
            "  --on-demand-merge-after S   ... and merge two adjacent shards below 10%% of it for S seconds\n"
            "                              (default 600; never below 4 open shards)\n"
            "  --subscription-seconds S    how long a SubscribeToShard subscription lasts (default 300, as\n"
            "                              on AWS)\n"
            "  --credentials FILE          access keys (JSON, see docs/SECURITY.md): every request must then\n"
            "                              carry a valid SigV4 signature; reloaded on SIGHUP\n"
            "  --insecure                  accept unauthenticated requests on a non-loopback address\n"
            "  --tls-cert FILE, --tls-key FILE\n"
            "                              also serve HTTPS (TLS 1.2+, ALPN h2 and http/1.1) with this PEM\n"
            "                              certificate chain and key; `eddy cert` makes a local CA and both\n"
            "  --tls-port N                the HTTPS port (default 4568; 0 picks a free one)\n"
            "  --log-level LEVEL           debug, info, warn or error (default info)\n"
            "  --request-log MODE          one line per request: off (default), text or json\n"
            "  --request-log-file FILE     where request lines go (default stderr); reopened on SIGHUP\n"
            "  --config FILE               read options from FILE (\"key = value\" lines, keys as above\n"
            "                              without the dashes); flags given on the command line win\n"
            "  --help                      print this help\n\n"
            "When ready, eddy prints \"eddy listening on http://HOST:PORT\" to stderr. SIGINT or SIGTERM stop\n"
            "it gracefully. SIGHUP reloads the credentials file and applies request-log and request-log-file\n"
            "from a fresh reading of the configuration (edit the --config file, then send SIGHUP).\n"
            "GET /metrics serves Prometheus metrics and GET / a dashboard (docs/METRICS.md).\n");
}

enum {
    OPT_HOST = 1000,
    OPT_PORT,
    OPT_DATA,
    OPT_STATE_DELAY,
    OPT_ACCOUNT,
    OPT_REGION,
    OPT_THREADS,
    OPT_MAX_BODY,
    OPT_HEADER_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_SHARD_LIMIT,
    OPT_ON_DEMAND_LIMIT,
    OPT_LOG_LEVEL,
    OPT_DURABILITY,
    OPT_SYNC_INTERVAL,
    OPT_SHARD_LIMITS,
    OPT_SEGMENT_MIB,
    OPT_SPLIT_AFTER,
    OPT_MERGE_AFTER,
    OPT_SUBSCRIPTION,
    OPT_CREDENTIALS,
    OPT_INSECURE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_PORT,
    OPT_REQUEST_LOG,
    OPT_REQUEST_LOG_FILE,
    OPT_CONFIG,
    OPT_HELP,
};

static const struct option serve_options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"data", required_argument, NULL, OPT_DATA},
    {"state-delay-ms", required_argument, NULL, OPT_STATE_DELAY},
    {"account-id", required_argument, NULL, OPT_ACCOUNT},
    {"region", required_argument, NULL, OPT_REGION},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-body-mib", required_argument, NULL, OPT_MAX_BODY},
    {"header-timeout-ms", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"shard-limit", required_argument, NULL, OPT_SHARD_LIMIT},
    {"on-demand-stream-limit", required_argument, NULL, OPT_ON_DEMAND_LIMIT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    {"sync-interval-ms", required_argument, NULL, OPT_SYNC_INTERVAL},
    {"shard-limits", required_argument, NULL, OPT_SHARD_LIMITS},
    {"segment-mib", required_argument, NULL, OPT_SEGMENT_MIB},
    {"on-demand-split-after", required_argument, NULL, OPT_SPLIT_AFTER},
    {"on-demand-merge-after", required_argument, NULL, OPT_MERGE_AFTER},
    {"subscription-seconds", required_argument, NULL, OPT_SUBSCRIPTION},
    {"credentials", required_argument, NULL, OPT_CREDENTIALS},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-port", required_argument, NULL, OPT_TLS_PORT},
    {"request-log", required_argument, NULL, OPT_REQUEST_LOG},
    {"request-log-file", required_argument, NULL, OPT_REQUEST_LOG_FILE},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static bool parse_long(const char *s, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

/* Applies one option; returns false (after printing why) when the value is invalid. */
static bool apply(server_config_t *cfg, int opt, const char *name, const char *value)
{
    long long n = 0;
    switch (opt) {
    case OPT_HOST:
        snprintf(cfg->host, sizeof cfg->host, "%s", value);
        return true;
    case OPT_DATA:
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", value);
        return true;
    case OPT_REGION:
        if (*value == '\0' || strlen(value) >= sizeof cfg->region) {
            break;
        }
        snprintf(cfg->region, sizeof cfg->region, "%s", value);
        return true;
    case OPT_ACCOUNT:
        if (strlen(value) != 12 || strspn(value, "0123456789") != 12) {
            fprintf(stderr, "eddy: --account-id must be 12 digits\n");
            return false;
        }
        snprintf(cfg->account_id, sizeof cfg->account_id, "%s", value);
        return true;
    case OPT_LOG_LEVEL:
        if (strcmp(value, "debug") == 0) {
            log_set_level(LOG_DEBUG);
        } else if (strcmp(value, "info") == 0) {
            log_set_level(LOG_INFO);
        } else if (strcmp(value, "warn") == 0) {
            log_set_level(LOG_WARN);
        } else if (strcmp(value, "error") == 0) {
            log_set_level(LOG_ERROR);
        } else {
            break;
        }
        return true;
    case OPT_DURABILITY:
        if (strcmp(value, "fsync") == 0) {
            cfg->durability = DURABILITY_FSYNC;
        } else if (strcmp(value, "interval") == 0) {
            cfg->durability = DURABILITY_INTERVAL;
        } else if (strcmp(value, "none") == 0) {
            cfg->durability = DURABILITY_NONE;
        } else {
            break;
        }
        return true;
    case OPT_SHARD_LIMITS:
        if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
            break;
        }
        cfg->shard_limits = strcmp(value, "on") == 0;
        return true;
    case OPT_SYNC_INTERVAL:
        if (!parse_long(value, 1, 3600000, &n)) {
            break;
        }
        cfg->sync_interval_ms = (int)n;
        return true;
    case OPT_SEGMENT_MIB:
        if (!parse_long(value, 1, 4096, &n)) {
            break;
        }
        cfg->segment_bytes = (size_t)n << 20;
        return true;
    case OPT_CREDENTIALS:
        if (value[0] == '\0' || strlen(value) >= sizeof cfg->credentials_path) {
            break;
        }
        snprintf(cfg->credentials_path, sizeof cfg->credentials_path, "%s", value);
        return true;
    case OPT_TLS_CERT:
    case OPT_TLS_KEY: {
        char *dst = opt == OPT_TLS_CERT ? cfg->tls_cert : cfg->tls_key;
        if (value[0] == '\0' || strlen(value) >= sizeof cfg->tls_cert) {
            break;
        }
        snprintf(dst, sizeof cfg->tls_cert, "%s", value);
        return true;
    }
    case OPT_REQUEST_LOG:
        if (!reqlog_parse_mode(value, &cfg->request_log)) {
            break;
        }
        return true;
    case OPT_REQUEST_LOG_FILE:
        if (strlen(value) >= sizeof cfg->request_log_file) {
            break;
        }
        snprintf(cfg->request_log_file, sizeof cfg->request_log_file, "%s", value);
        return true;
    case OPT_TLS_PORT:
        if (!parse_long(value, 0, 65535, &n)) {
            break;
        }
        cfg->tls_port = (int)n;
        return true;
    case OPT_INSECURE:
        cfg->insecure = value == NULL || strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || value[0] == '\0';
        return true;
    case OPT_SUBSCRIPTION:
        if (!parse_long(value, 1, 86400, &n)) {
            break;
        }
        cfg->subscription_ms = n * 1000;
        return true;
    case OPT_SPLIT_AFTER:
    case OPT_MERGE_AFTER:
        if (!parse_long(value, 1, 86400, &n)) {
            break;
        }
        *(opt == OPT_SPLIT_AFTER ? &cfg->on_demand_split_after_s : &cfg->on_demand_merge_after_s) = (int)n;
        return true;
    case OPT_PORT:
        if (!parse_long(value, 0, 65535, &n)) {
            break;
        }
        cfg->port = (int)n;
        return true;
    case OPT_STATE_DELAY:
        if (!parse_long(value, 0, 3600000, &n)) {
            break;
        }
        cfg->state_delay_ms = n;
        return true;
    case OPT_THREADS:
        if (!parse_long(value, 0, 256, &n)) {
            break;
        }
        cfg->threads = (int)n;
        return true;
    case OPT_MAX_BODY:
        if (!parse_long(value, 1, 1024, &n)) {
            break;
        }
        cfg->max_body = (size_t)n << 20;
        return true;
    case OPT_HEADER_TIMEOUT:
    case OPT_IDLE_TIMEOUT:
        if (!parse_long(value, 100, 86400000, &n)) {
            break;
        }
        *(opt == OPT_HEADER_TIMEOUT ? &cfg->header_timeout_ms : &cfg->idle_timeout_ms) = (uint64_t)n;
        return true;
    case OPT_SHARD_LIMIT:
    case OPT_ON_DEMAND_LIMIT:
        if (!parse_long(value, 1, 1000000, &n)) {
            break;
        }
        *(opt == OPT_SHARD_LIMIT ? &cfg->shard_limit : &cfg->on_demand_stream_limit) = (int)n;
        return true;
    default:
        fprintf(stderr, "eddy: unknown option %s\n", name);
        return false;
    }
    fprintf(stderr, "eddy: invalid value '%s' for %s\n", value, name);
    return false;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) {
        *--end = '\0';
    }
    return s;
}

static bool load_config(server_config_t *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "eddy: cannot read config %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[8192];
    int lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *s = trim(line);
        if (*s == '\0') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            fprintf(stderr, "eddy: %s:%d: expected key = value\n", path, lineno);
            ok = false;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        int opt = 0;
        for (const struct option *o = serve_options; o->name != NULL; o++) {
            if (strcmp(o->name, key) == 0 && o->val != OPT_CONFIG && o->val != OPT_HELP) {
                opt = o->val;
            }
        }
        if (opt == 0) {
            fprintf(stderr, "eddy: %s:%d: unknown key '%s'\n", path, lineno, key);
            ok = false;
            break;
        }
        ok = apply(cfg, opt, key, value);
    }
    fclose(f);
    return ok;
}

/* Reads the configuration: defaults, then the --config file, then the flags (which win). Returns 0, 1 after
 * --help, or 2 on an invalid configuration (said on stderr). */
static int read_config(int argc, char **argv, server_config_t *cfg)
{
    server_config_defaults(cfg);
    /* First pass: the config file, so that flags override it. */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
        if (path != NULL && !load_config(cfg, path)) {
            return 2;
        }
    }
    optind = 0; /* glibc: start over (this runs again on SIGHUP) */
    int opt;
    while ((opt = getopt_long(argc, argv, "", serve_options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            serve_usage(stdout);
            return 1;
        }
        if (opt == OPT_CONFIG) {
            continue;
        }
        if (opt == '?' || !apply(cfg, opt, argv[optind - 1], optarg)) {
            fprintf(stderr, "eddy: see 'eddy serve --help'\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eddy: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

typedef struct args {
    int argc;
    char **argv;
} args_t;

/* SIGHUP: the configuration again (server_config_loader_fn). */
static bool reread_config(server_config_t *cfg, void *arg)
{
    const args_t *a = arg;
    if (read_config(a->argc, a->argv, cfg) != 0) {
        fprintf(stderr, "eddy: SIGHUP: the configuration is not valid any more; nothing changed\n");
        return false;
    }
    return true;
}

static int cmd_serve(int argc, char **argv)
{
    server_config_t cfg;
    int rc = read_config(argc, argv, &cfg);
    if (rc != 0) {
        return rc == 1 ? 0 : 2;
    }
    /* glibc malloc: PutRecords bodies of several MiB (h2o's body buffers, the store's frames) are above the
     * default mmap threshold, so every request mapped fresh memory and page-faulted it in again; heap
     * memory up to 32 MiB per allocation, and up to 128 MiB of free heap kept before trimming, made eddy's
     * CPU per aggregated record 1.5-2x lower (docs/BENCHMARKS.md, "libeddy's producer"). Both are needed:
     * either alone is worse than neither. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    server_block_signals();
    server_t srv;
    if (server_start(&srv, &cfg) != 0) {
        return 1;
    }
    args_t args = {argc, argv};
    srv.reload = reread_config;
    srv.reload_arg = &args;
    server_run(&srv);
    server_stop(&srv);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "cert") == 0) {
        return cert_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "serve") == 0) {
        return cmd_serve(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "put") == 0) {
        return put_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "tail") == 0) {
        return tail_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "agent") == 0) {
        return agent_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "consume") == 0) {
        return consume_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("eddy %s\n", EDDY_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "eddy: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
