/*
 * consume: prints every record of a Kinesis stream as "shard sequence/sub-sequence partition-key data",
 * through libeddy's consumer: leases and checkpoints in the DynamoDB table named APP (eddy serves it; run
 * several copies and they share the shards), KPL aggregates de-aggregated, children after their parents.
 * It checkpoints after every batch and at the end of each shard. Ctrl-C stops it gracefully.
 *
 *   cc consume.c $(pkg-config --cflags --libs eddy) -o consume
 *   AWS_ENDPOINT_URL=http://127.0.0.1:4567 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
 *       ./consume APP STREAM
 */
#include <eddy/client.h>
#include <eddy/consumer.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Per shard: its id, for printing. The library calls these serially per shard, on its own threads. */
typedef struct shard {
    char id[64];
} shard_t;

static void *initialize(void *app, const char *shard_id, const char *sequence_number, uint64_t sub_sequence_number)
{
    (void)app;
    shard_t *s = calloc(1, sizeof *s);
    if (s != NULL) {
        snprintf(s->id, sizeof s->id, "%s", shard_id);
    }
    fprintf(stderr, "%s: starting after %s/%llu\n", shard_id, sequence_number,
            (unsigned long long)sub_sequence_number);
    return s;
}

static void process_records(void *state, const eddy_records_input_t *in, eddy_checkpointer_t *cp)
{
    (void)state;
    for (size_t i = 0; i < in->count; i++) {
        const eddy_record_t *r = &in->records[i];
        printf("%s %s/%llu %s %.*s\n", in->shard_id, r->sequence_number, (unsigned long long)r->sub_sequence_number,
               r->partition_key, (int)r->data_len, (const char *)r->data);
    }
    fflush(stdout);
    int rc = eddy_checkpoint(cp); /* everything printed so far */
    if (rc != EDDY_OK) {
        fprintf(stderr, "%s: checkpoint: %s\n", in->shard_id, eddy_err_name(rc));
    }
}

static void lease_lost(void *state)
{
    free(state); /* another worker has the shard now; it resumes from the last checkpoint */
}

static void shard_ended(void *state, eddy_checkpointer_t *cp)
{
    if (eddy_checkpoint(cp) == EDDY_OK) { /* SHARD_END: lets the children start */
        free(state);
    }
}

static void shutdown_requested(void *state, eddy_checkpointer_t *cp)
{
    eddy_checkpoint(cp);
    free(state);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s APP STREAM\n", argv[0]);
        return 2;
    }
    char err[256];
    eddy_config_t *dcfg = eddy_config_new();
    if (dcfg == NULL || eddy_config_set(dcfg, "service", "dynamodb", err, sizeof err) != EDDY_OK) {
        eddy_config_free(dcfg);
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    eddy_client_t *kinesis = eddy_client_new(eddy_config_new(), err, sizeof err); /* from AWS_* */
    eddy_client_t *dynamodb = kinesis != NULL ? eddy_client_new(dcfg, err, sizeof err) : NULL;
    if (kinesis == NULL) {
        eddy_config_free(dcfg);
    }
    eddy_consumer_config_t *cfg = eddy_consumer_config_new();
    eddy_consumer_t *consumer = NULL;
    int status = 1;
    if (kinesis == NULL || dynamodb == NULL || cfg == NULL ||
        eddy_consumer_config_set(cfg, "application", argv[1], err, sizeof err) != EDDY_OK ||
        eddy_consumer_config_set(cfg, "stream", argv[2], err, sizeof err) != EDDY_OK ||
        eddy_consumer_config_set(cfg, "initial_position", "TRIM_HORIZON", err, sizeof err) != EDDY_OK) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    static const eddy_processor_ops_t ops = {initialize, process_records, lease_lost, shard_ended, shutdown_requested};
    consumer = eddy_consumer_new(kinesis, dynamodb, cfg, &ops, NULL, err, sizeof err);
    if (consumer == NULL || eddy_consumer_start(consumer) != EDDY_OK) {
        fprintf(stderr, "consumer: %s\n", consumer == NULL ? err : "cannot start");
        goto out;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stop) {
        sleep(1); /* a signal ends it early */
    }
    eddy_consumer_shutdown(consumer, true);
    status = eddy_consumer_wait(consumer) == EDDY_OK ? 0 : 1;
out:
    eddy_consumer_free(consumer);
    eddy_consumer_config_free(cfg);
    eddy_client_free(dynamodb);
    eddy_client_free(kinesis);
    return status;
}
