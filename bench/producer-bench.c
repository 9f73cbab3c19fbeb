/*
 * producer-bench: libeddy producer throughput. Puts N user records of B bytes (random 16-character
 * partition keys) into a stream through eddy_producer_put from T threads, waits for every callback
 * (flush_sync), and reports user records/s, MB/s and the producer process's CPU time per million records.
 *
 *   producer-bench --endpoint URL --stream NAME [--records N] [--bytes B] [--threads T]
 *                  [--aggregate on|off] [--rate-limit P|off] [--set KEY=VALUE]... [--json]
 *
 * --set passes any producer setting (eddy_producer_config_set). Besides the process's CPU, it reports the
 * putting threads' own CPU per million records (CLOCK_THREAD_CPUTIME_ID): the rest is the producer's and
 * the client's threads.
 *
 * The stream must exist. Exit status 1 when a record failed.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "eddy/client.h"
#include "eddy/producer.h"

static atomic_ulong failed;

typedef struct worker {
    eddy_producer_t *p;
    const char *stream;
    size_t from, to, bytes;
    double cpu_s; /* this thread's CPU time */
} worker_t;

static void on_done(void *arg, const eddy_put_result_t *r)
{
    (void)arg;
    if (r->err != EDDY_OK) {
        atomic_fetch_add(&failed, 1);
    }
}

static void *run(void *arg)
{
    worker_t *w = arg;
    unsigned char *data = malloc(w->bytes);
    memset(data, 'x', w->bytes);
    uint64_t state = (uint64_t)w->from * 2654435761u + 1;
    for (size_t i = w->from; i < w->to; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        char key[17];
        static const char hex[] = "0123456789abcdef";
        for (int k = 0; k < 16; k++) {
            key[k] = hex[(state >> (4 * k)) & 15]; /* not snprintf: measure the producer, not the key maker */
        }
        key[16] = '\0';
        memcpy(data, &i, w->bytes >= sizeof i ? sizeof i : w->bytes);
        int rc = eddy_producer_put(w->p, w->stream, key, 16, NULL, data, w->bytes, on_done, NULL);
        if (rc != EDDY_OK) {
            fprintf(stderr, "put: %s\n", eddy_err_name(rc));
            atomic_fetch_add(&failed, 1);
        }
    }
    free(data);
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    w->cpu_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *stream = NULL, *aggregate = "on", *rate = "off";
    size_t records = 1000000, bytes = 100;
    int threads = 1;
    bool json = false;
    const char *sets[32];
    size_t nsets = 0;
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"stream", required_argument, NULL, 's'},
        {"records", required_argument, NULL, 'n'},  {"bytes", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},  {"aggregate", required_argument, NULL, 'a'},
        {"rate-limit", required_argument, NULL, 'r'}, {"json", no_argument, NULL, 'j'},
        {"set", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e': endpoint = optarg; break;
        case 's': stream = optarg; break;
        case 'n': records = strtoull(optarg, NULL, 10); break;
        case 'b': bytes = strtoull(optarg, NULL, 10); break;
        case 't': threads = atoi(optarg); break;
        case 'a': aggregate = optarg; break;
        case 'r': rate = optarg; break;
        case 'j': json = true; break;
        case 'S':
            if (nsets == sizeof sets / sizeof sets[0] || strchr(optarg, '=') == NULL) {
                fprintf(stderr, "producer-bench: --set KEY=VALUE (at most 32)\n");
                return 2;
            }
            sets[nsets++] = optarg;
            break;
        default:
            fprintf(stderr, "usage: producer-bench --endpoint URL --stream NAME [--records N] [--bytes B] "
                            "[--threads T] [--aggregate on|off] [--rate-limit P|off] [--set KEY=VALUE]... "
                            "[--json]\n");
            return 2;
        }
    }
    if (endpoint == NULL || stream == NULL || threads < 1 || threads > 64 || bytes < 1) {
        fprintf(stderr, "producer-bench: --endpoint and --stream are required\n");
        return 2;
    }
    char err[256];
    eddy_config_t *cfg = eddy_config_new();
    eddy_config_set(cfg, "endpoint", endpoint, err, sizeof err);
    eddy_client_t *client = eddy_client_new(cfg, err, sizeof err);
    if (client == NULL) {
        fprintf(stderr, "client: %s\n", err);
        return 1;
    }
    eddy_producer_config_t *pcfg = eddy_producer_config_new();
    if (eddy_producer_config_set(pcfg, "aggregation", strcmp(aggregate, "on") == 0 ? "true" : "false", err,
                                 sizeof err) != 0 ||
        eddy_producer_config_set(pcfg, "rate_limit", rate, err, sizeof err) != 0) {
        fprintf(stderr, "producer: %s\n", err);
        return 2;
    }
    for (size_t i = 0; i < nsets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
        if (eddy_producer_config_set(pcfg, key, eq + 1, err, sizeof err) != 0) {
            fprintf(stderr, "producer: %s\n", err);
            return 2;
        }
    }
    eddy_producer_t *p = eddy_producer_new(client, pcfg, err, sizeof err);
    if (p == NULL) {
        fprintf(stderr, "producer: %s\n", err);
        return 1;
    }
    double t0 = now_s(), c0 = cpu_s();
    pthread_t tids[64];
    worker_t workers[64];
    for (int i = 0; i < threads; i++) {
        workers[i] = (worker_t){p, stream, records * (size_t)i / (size_t)threads,
                                records * (size_t)(i + 1) / (size_t)threads, bytes};
        pthread_create(&tids[i], NULL, run, &workers[i]);
    }
    double put_cpu = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        put_cpu += workers[i].cpu_s;
    }
    eddy_producer_flush_sync(p);
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    eddy_producer_metrics_t m;
    eddy_producer_metrics(p, &m);
    eddy_producer_destroy(p);
    eddy_client_free(client);
    double rps = (double)records / secs;
    if (json) {
        printf("{\"records\":%zu,\"bytes\":%zu,\"aggregate\":\"%s\",\"seconds\":%.3f,\"records_per_s\":%.0f,"
               "\"mb_per_s\":%.2f,\"cpu_s_per_million\":%.3f,\"put_cpu_s_per_million\":%.3f,"
               "\"kinesis_records\":%" PRIu64
               ",\"requests\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"failed\":%lu}\n",
               records, bytes, aggregate, secs, rps, rps * (double)bytes / 1e6, cpu / ((double)records / 1e6),
               put_cpu / ((double)records / 1e6), m.kinesis_records_put, m.put_records_requests, m.retries,
               atomic_load(&failed));
    } else {
        printf("%zu records of %zu B, aggregation %s: %.2f s, %.0f records/s, %.1f MB/s, producer CPU %.3f s per "
               "million (putting threads %.3f); %" PRIu64 " Kinesis records in %" PRIu64 " requests, %" PRIu64
               " retries, %lu failed\n",
               records, bytes, aggregate, secs, rps, rps * (double)bytes / 1e6, cpu / ((double)records / 1e6),
               put_cpu / ((double)records / 1e6), m.kinesis_records_put, m.put_records_requests, m.retries,
               atomic_load(&failed));
    }
    return atomic_load(&failed) == 0 ? 0 : 1;
}
