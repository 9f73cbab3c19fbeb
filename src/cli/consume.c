/*
 * consume: `eddy consume`, a KCL MultiLang daemon without Java. It runs libeddy's consumer (leases,
 * checkpoints, failover, resharding order) and, for every shard lease it holds, one child process running
 * COMMAND, spoken to in the KCL MultiLang protocol (kinesis-family.md §3.10): JSON lines on the child's stdin
 * and stdout.
 *
 *   eddy consume [--endpoint URL] [--dynamodb-endpoint URL] [--region R] --app NAME --stream S
 *                [--fan-out NAME] [--initial-position TRIM_HORIZON|LATEST|AT_TIMESTAMP] [--timestamp T]
 *                [--worker-id ID] [--failover-ms N] [--taker-interval-ms N] [--parent-poll-ms N]
 *                [--shard-sync-ms N] [--idle-ms N] [--max-records N] [--threads N] -- COMMAND [ARG...]
 *
 * To the child: {"action":"initialize","shardId","sequenceNumber","subSequenceNumber"},
 * {"action":"processRecords","records":[{"action":"record","data"(base64),"partitionKey","sequenceNumber",
 * "subSequenceNumber","approximateArrivalTimestamp"(ms)}],"millisBehindLatest"}, {"action":"leaseLost"},
 * {"action":"shardEnded"}, {"action":"shutdownRequested"}, and the answer to each of its checkpoint requests
 * {"action":"checkpoint","sequenceNumber","subSequenceNumber","error"} (error null, or the KCL exception's
 * name: ShutdownException, InvalidStateException, ThrottlingException, KinesisClientLibDependencyException).
 * From the child: {"action":"checkpoint","sequenceNumber"(null: the last record delivered),
 * "subSequenceNumber"} at any time while handling a message, and {"action":"status","responseFor":ACTION}
 * when done with it. The child's stderr is passed through.
 *
 * A child that exits or breaks the protocol stops the worker (exit status 1) without checkpointing for it:
 * its records are processed again by the next owner. SIGINT/SIGTERM: graceful shutdown (every child gets
 * shutdownRequested and may checkpoint; the leases are released).
 */
#include "cli/consume.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/buf.h"
#include "eddy/client.h"
#include "eddy/consumer.h"

#define LINE_MAX_BYTES (64u << 20) /* a child's line longer than this breaks the protocol */

extern char **environ;

typedef struct app {
    char **command;
    eddy_consumer_t *consumer;
    atomic_bool failed;
} app_t;

typedef struct child {
    app_t *app;
    char shard[256];
    pid_t pid;
    FILE *to;   /* the child's stdin */
    FILE *from; /* the child's stdout */
    char *line;
    size_t line_cap;
    bool broken;
    bool checkpointed; /* a checkpoint request of the current exchange succeeded */
} child_t;

static void fail_worker(child_t *ch, const char *what)
{
    if (!ch->broken) {
        fprintf(stderr, "eddy consume: the record processor of %s %s: stopping the worker\n", ch->shard, what);
    }
    ch->broken = true;
    atomic_store(&ch->app->failed, true);
    eddy_consumer_shutdown(ch->app->consumer, false);
}

static void end_child(child_t *ch)
{
    if (ch->to != NULL) {
        fclose(ch->to);
    }
    if (ch->from != NULL) {
        fclose(ch->from);
    }
    if (ch->pid > 0) {
        int status;
        if (ch->broken) {
            kill(ch->pid, SIGKILL);
        }
        while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    free(ch->line);
    free(ch);
}

static child_t *spawn(app_t *app, const char *shard)
{
    child_t *ch = calloc(1, sizeof *ch);
    if (ch == NULL) {
        return NULL;
    }
    ch->app = app;
    snprintf(ch->shard, sizeof ch->shard, "%s", shard);
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_ok = false, attr_ok = false;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        goto failed;
    }
    fa_ok = posix_spawn_file_actions_init(&fa) == 0;
    attr_ok = posix_spawnattr_init(&attr) == 0;
    if (!fa_ok || !attr_ok) {
        goto failed;
    }
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    /* its own process group: a Ctrl-C (or a signal to the worker's group) is the worker's to handle, which
     * lets the child checkpoint in shutdownRequested; the child ends when its stdin closes */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    int rc = posix_spawnp(&ch->pid, app->command[0], &fa, &attr, app->command, environ);
    if (rc != 0) {
        fprintf(stderr, "eddy consume: cannot run %s: %s\n", app->command[0], strerror(rc));
        ch->pid = 0;
        goto failed;
    }
    close(in[0]);
    close(out[1]);
    in[0] = out[1] = -1;
    ch->to = fdopen(in[1], "w");
    if (ch->to != NULL) {
        in[1] = -1;
    }
    ch->from = fdopen(out[0], "r");
    if (ch->from != NULL) {
        out[0] = -1;
    }
    if (ch->to == NULL || ch->from == NULL) {
        goto failed;
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return ch;
failed:
    if (fa_ok) {
        posix_spawn_file_actions_destroy(&fa);
    }
    if (attr_ok) {
        posix_spawnattr_destroy(&attr);
    }
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) {
            close(in[i]);
        }
        if (out[i] >= 0) {
            close(out[i]);
        }
    }
    ch->broken = true;
    end_child(ch);
    return NULL;
}

static bool send_json(child_t *ch, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (s == NULL) {
        return false;
    }
    bool ok = fputs(s, ch->to) >= 0 && fputc('\n', ch->to) != EOF && fflush(ch->to) == 0;
    free(s);
    return ok;
}

static const char *checkpoint_error(int rc)
{
    switch (rc) {
    case EDDY_OK:
        return NULL;
    case EDDY_ERR_LEASE_LOST:
    case EDDY_ERR_SHUTDOWN:
        return "ShutdownException";
    case EDDY_ERR_INVALID:
        return "InvalidStateException";
    default:
        return "KinesisClientLibDependencyException";
    }
}

/* Answers a checkpoint request of the child. */
static bool do_checkpoint(child_t *ch, const cJSON *req, eddy_checkpointer_t *cp)
{
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(req, "sequenceNumber");
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(req, "subSequenceNumber");
    int rc;
    if (cp == NULL) {
        rc = EDDY_ERR_SHUTDOWN;
    } else if (cJSON_IsString(seq)) {
        /* a sub-sequence number outside 0 .. 2^63 cannot be one the worker delivered */
        bool sub_ok = !cJSON_IsNumber(sub) || (sub->valuedouble >= 0 && sub->valuedouble <= 9.0e18);
        rc = sub_ok ? eddy_checkpoint_at(cp, seq->valuestring, cJSON_IsNumber(sub) ? (uint64_t)sub->valuedouble : 0)
                    : EDDY_ERR_INVALID;
    } else {
        rc = eddy_checkpoint(cp);
    }
    cJSON *reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "action", "checkpoint");
    if (cJSON_IsString(seq)) {
        cJSON_AddStringToObject(reply, "sequenceNumber", seq->valuestring);
    } else {
        cJSON_AddNullToObject(reply, "sequenceNumber");
    }
    cJSON_AddNumberToObject(reply, "subSequenceNumber", cJSON_IsNumber(sub) ? sub->valuedouble : 0);
    ch->checkpointed |= rc == EDDY_OK;
    const char *error = checkpoint_error(rc);
    if (error != NULL) {
        cJSON_AddStringToObject(reply, "error", error);
    } else {
        cJSON_AddNullToObject(reply, "error");
    }
    return send_json(ch, reply);
}

/* Sends a message and serves the child's checkpoint requests until its status for the action. */
static bool exchange(child_t *ch, cJSON *msg, const char *action, eddy_checkpointer_t *cp)
{
    if (ch->broken) {
        cJSON_Delete(msg);
        return false;
    }
    ch->checkpointed = false;
    if (!send_json(ch, msg)) {
        fail_worker(ch, "does not read its input (it exited?)");
        return false;
    }
    for (;;) {
        ssize_t n = getline(&ch->line, &ch->line_cap, ch->from);
        if (n < 0) {
            fail_worker(ch, "exited or closed its output");
            return false;
        }
        if ((size_t)n > LINE_MAX_BYTES) {
            fail_worker(ch, "wrote a line too long");
            return false;
        }
        cJSON *j = cJSON_ParseWithLength(ch->line, (size_t)n);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "action");
        if (!cJSON_IsString(a)) {
            fprintf(stderr, "eddy consume: %s: not a MultiLang message, ignored: %.*s", ch->shard, (int)(n > 200 ? 200 : n),
                    ch->line);
            cJSON_Delete(j);
            continue;
        }
        if (strcmp(a->valuestring, "checkpoint") == 0) {
            bool ok = do_checkpoint(ch, j, cp);
            cJSON_Delete(j);
            if (!ok) {
                fail_worker(ch, "does not read its input (it exited?)");
                return false;
            }
            continue;
        }
        if (strcmp(a->valuestring, "status") == 0) {
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "responseFor");
            bool match = cJSON_IsString(r) && strcmp(r->valuestring, action) == 0;
            cJSON_Delete(j);
            if (!match) {
                fail_worker(ch, "answered a status for another action");
                return false;
            }
            return true;
        }
        cJSON_Delete(j);
        fail_worker(ch, "sent an unknown action");
        return false;
    }
}

static cJSON *message(const char *action)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "action", action);
    return j;
}

static void *on_initialize(void *arg, const char *shard_id, const char *seq, uint64_t sub)
{
    app_t *app = arg;
    child_t *ch = spawn(app, shard_id);
    if (ch == NULL) {
        atomic_store(&app->failed, true);
        eddy_consumer_shutdown(app->consumer, false);
        return NULL;
    }
    cJSON *j = message("initialize");
    cJSON_AddStringToObject(j, "shardId", shard_id);
    cJSON_AddStringToObject(j, "sequenceNumber", seq);
    cJSON_AddNumberToObject(j, "subSequenceNumber", (double)sub);
    exchange(ch, j, "initialize", NULL);
    return ch;
}

static void on_records(void *state, const eddy_records_input_t *in, eddy_checkpointer_t *cp)
{
    child_t *ch = state;
    if (ch == NULL || ch->broken) {
        return;
    }
    cJSON *j = message("processRecords");
    cJSON *records = cJSON_AddArrayToObject(j, "records");
    buf_t b64 = BUF_INIT;
    for (size_t i = 0; i < in->count; i++) {
        const eddy_record_t *r = &in->records[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "action", "record");
        b64.len = 0;
        base64_encode_into(&b64, r->data, r->data_len);
        buf_append(&b64, "", 1);
        cJSON_AddStringToObject(o, "data", b64.data);
        cJSON_AddStringToObject(o, "partitionKey", r->partition_key);
        if (r->explicit_hash_key != NULL) {
            cJSON_AddStringToObject(o, "explicitHashKey", r->explicit_hash_key);
        }
        cJSON_AddStringToObject(o, "sequenceNumber", r->sequence_number);
        cJSON_AddNumberToObject(o, "subSequenceNumber", (double)r->sub_sequence_number);
        cJSON_AddNumberToObject(o, "approximateArrivalTimestamp", (double)r->approximate_arrival_ms);
        cJSON_AddItemToArray(records, o);
    }
    buf_dispose(&b64);
    cJSON_AddNumberToObject(j, "millisBehindLatest", (double)(in->millis_behind_latest < 0 ? 0 : in->millis_behind_latest));
    exchange(ch, j, "processRecords", cp);
}

static void on_lease_lost(void *state)
{
    child_t *ch = state;
    if (ch != NULL) {
        exchange(ch, message("leaseLost"), "leaseLost", NULL);
        end_child(ch);
    }
}

static void on_shard_ended(void *state, eddy_checkpointer_t *cp)
{
    child_t *ch = state;
    if (ch != NULL && exchange(ch, message("shardEnded"), "shardEnded", cp) && ch->checkpointed) {
        end_child(ch); /* final: the library calls shard_ended again only when no checkpoint was made */
    }
}

static void on_shutdown_requested(void *state, eddy_checkpointer_t *cp)
{
    child_t *ch = state;
    if (ch != NULL) {
        exchange(ch, message("shutdownRequested"), "shutdownRequested", cp);
        end_child(ch);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: eddy consume [--endpoint URL] [--dynamodb-endpoint URL] [--region R] --app NAME --stream S\n"
            "                    [--fan-out NAME] [--initial-position TRIM_HORIZON|LATEST|AT_TIMESTAMP]\n"
            "                    [--timestamp SECONDS] [--worker-id ID] [--failover-ms N] [--taker-interval-ms N]\n"
            "                    [--parent-poll-ms N] [--shard-sync-ms N] [--idle-ms N] [--max-records N]\n"
            "                    [--threads N] -- COMMAND [ARG...]\n\n"
            "Runs COMMAND once per shard lease as a KCL MultiLang record processor (JSON lines on its stdin and\n"
            "stdout). Leases and checkpoints live in the DynamoDB table named after --app (eddy serves it).\n"
            "  --endpoint URL           Kinesis endpoint (default: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, or\n"
            "                           the region's); also the DynamoDB endpoint unless --dynamodb-endpoint\n"
            "  --fan-out NAME           enhanced fan-out through the stream consumer NAME (default: polling)\n"
            "  --initial-position P     where new leases start (default TRIM_HORIZON)\n");
}

int consume_main(int argc, char **argv)
{
    const char *endpoint = NULL, *ddb_endpoint = NULL, *region = NULL;
    eddy_consumer_config_t *cfg = eddy_consumer_config_new();
    char err[512];
    if (cfg == NULL) {
        fprintf(stderr, "eddy consume: out of memory\n");
        return 1;
    }
    eddy_consumer_config_set(cfg, "initial_position", "TRIM_HORIZON", err, sizeof err);
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"dynamodb-endpoint", required_argument, NULL, 'd'},
        {"region", required_argument, NULL, 'r'},
        {"app", required_argument, NULL, 'a'},
        {"stream", required_argument, NULL, 's'},
        {"fan-out", required_argument, NULL, 'f'},
        {"initial-position", required_argument, NULL, 'p'},
        {"timestamp", required_argument, NULL, 't'},
        {"worker-id", required_argument, NULL, 'w'},
        {"failover-ms", required_argument, NULL, 'F'},
        {"taker-interval-ms", required_argument, NULL, 'T'},
        {"parent-poll-ms", required_argument, NULL, 'P'},
        {"shard-sync-ms", required_argument, NULL, 'S'},
        {"idle-ms", required_argument, NULL, 'I'},
        {"max-records", required_argument, NULL, 'M'},
        {"threads", required_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct {
        int opt;
        const char *key;
    } keys[] = {{'a', "application"},        {'s', "stream"},           {'f', "fan_out"},
                {'p', "initial_position"},   {'t', "initial_timestamp"}, {'w', "worker_id"},
                {'F', "failover_ms"},        {'T', "taker_interval_ms"}, {'P', "parent_poll_ms"},
                {'S', "shard_sync_ms"},      {'I', "idle_between_reads_ms"}, {'M', "max_records"},
                {'N', "threads"}};
    int opt;
    int status = 2;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (opt == 'e') {
            endpoint = optarg;
        } else if (opt == 'd') {
            ddb_endpoint = optarg;
        } else if (opt == 'r') {
            region = optarg;
        } else if (opt == 'h') {
            usage(stdout);
            eddy_consumer_config_free(cfg);
            return 0;
        } else {
            size_t k = 0;
            while (k < sizeof keys / sizeof keys[0] && keys[k].opt != opt) {
                k++;
            }
            if (k == sizeof keys / sizeof keys[0]) {
                usage(stderr);
                eddy_consumer_config_free(cfg);
                return 2;
            }
            if (eddy_consumer_config_set(cfg, keys[k].key, optarg, err, sizeof err) != 0) {
                fprintf(stderr, "eddy consume: %s\n", err);
                eddy_consumer_config_free(cfg);
                return 2;
            }
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "eddy consume: a record processor command is needed after --\n");
        usage(stderr);
        eddy_consumer_config_free(cfg);
        return 2;
    }
    app_t app = {.command = argv + optind};
    atomic_init(&app.failed, false);

    eddy_client_t *kinesis = NULL, *ddb = NULL;
    eddy_consumer_t *consumer = NULL;
    eddy_config_t *kc = eddy_config_new(), *dc = eddy_config_new();
    if (kc == NULL || dc == NULL) {
        fprintf(stderr, "eddy consume: out of memory\n");
        eddy_config_free(kc);
        eddy_config_free(dc);
        goto out;
    }
    bool ok = eddy_config_set(dc, "service", "dynamodb", err, sizeof err) == 0 &&
              (endpoint == NULL || eddy_config_set(kc, "endpoint", endpoint, err, sizeof err) == 0) &&
              ((ddb_endpoint == NULL && endpoint == NULL) ||
               eddy_config_set(dc, "endpoint", ddb_endpoint != NULL ? ddb_endpoint : endpoint, err, sizeof err) == 0) &&
              (region == NULL || (eddy_config_set(kc, "region", region, err, sizeof err) == 0 &&
                                  eddy_config_set(dc, "region", region, err, sizeof err) == 0));
    if (!ok) {
        fprintf(stderr, "eddy consume: %s\n", err);
        eddy_config_free(kc);
        eddy_config_free(dc);
        goto out;
    }
    kinesis = eddy_client_new(kc, err, sizeof err);
    if (kinesis == NULL) {
        fprintf(stderr, "eddy consume: %s\n", err);
        eddy_config_free(dc);
        goto out;
    }
    ddb = eddy_client_new(dc, err, sizeof err);
    if (ddb == NULL) {
        fprintf(stderr, "eddy consume: %s\n", err);
        goto out;
    }
    static const eddy_processor_ops_t ops = {
        .initialize = on_initialize,
        .process_records = on_records,
        .lease_lost = on_lease_lost,
        .shard_ended = on_shard_ended,
        .shutdown_requested = on_shutdown_requested,
    };
    /* SIGINT/SIGTERM are taken by sigwait below; the worker's threads inherit the mask */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    consumer = eddy_consumer_new(kinesis, ddb, cfg, &ops, &app, err, sizeof err);
    if (consumer == NULL) {
        fprintf(stderr, "eddy consume: %s\n", err);
        status = 1;
        goto out;
    }
    app.consumer = consumer;
    if (eddy_consumer_start(consumer) != 0) {
        fprintf(stderr, "eddy consume: cannot start the worker's threads\n");
        status = 1;
        goto out;
    }
    fprintf(stderr, "eddy consume: worker %s consuming %s\n", eddy_consumer_worker_id(consumer),
            eddy_client_endpoint(kinesis));
    for (;;) {
        struct timespec tick = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&stop, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            fprintf(stderr, "eddy consume: shutting down (checkpoints of shutdownRequested are kept)\n");
            eddy_consumer_shutdown(consumer, true);
            break;
        }
        if (atomic_load(&app.failed)) {
            break;
        }
    }
    eddy_consumer_wait(consumer);
    status = atomic_load(&app.failed) ? 1 : 0;
out:
    eddy_consumer_free(consumer);
    eddy_client_free(kinesis);
    eddy_client_free(ddb);
    eddy_consumer_config_free(cfg);
    return status;
}
