/*
 * produce: puts each line of standard input into a Kinesis stream as one user record, through libeddy's
 * producer (aggregation and collection on), then prints what the producer measured.
 *
 *   cc produce.c $(pkg-config --cflags --libs eddy) -o produce
 *   AWS_ENDPOINT_URL=http://127.0.0.1:4567 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
 *       ./produce STREAM < lines.txt
 *
 * The partition key of a line is its number, so lines spread over the shards. Exit status: 0 when every
 * line was put, 1 otherwise.
 */
#include <eddy/client.h>
#include <eddy/producer.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong failed;

/* Called once per line, on a libeddy thread: must not block. */
static void on_done(void *arg, const eddy_put_result_t *r)
{
    (void)arg;
    if (r->err != EDDY_OK) {
        atomic_fetch_add(&failed, 1);
        fprintf(stderr, "a line failed after %zu attempts: %s: %s\n", r->attempt_count,
                r->error_code ? r->error_code : eddy_err_name(r->err), r->error_message ? r->error_message : "");
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s STREAM < lines\n", argv[0]);
        return 2;
    }
    char err[256];
    eddy_client_t *client = eddy_client_new(eddy_config_new(), err, sizeof err); /* endpoint etc. from AWS_* */
    if (client == NULL) {
        fprintf(stderr, "client: %s\n", err);
        return 1;
    }
    eddy_producer_t *producer = eddy_producer_new(client, eddy_producer_config_new(), err, sizeof err);
    if (producer == NULL) {
        fprintf(stderr, "producer: %s\n", err);
        eddy_client_free(client);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long n = 0;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n') {
            len--;
        }
        char key[32];
        int key_len = snprintf(key, sizeof key, "%lu", n++);
        int rc = eddy_producer_put(producer, argv[1], key, (size_t)key_len, NULL, line, (size_t)len, on_done, NULL);
        if (rc != EDDY_OK) {
            fprintf(stderr, "line %lu not accepted: %s\n", n, eddy_err_name(rc));
            atomic_fetch_add(&failed, 1);
        }
    }
    free(line);
    eddy_producer_flush_sync(producer);
    eddy_producer_metrics_print(producer, stdout);
    eddy_producer_destroy(producer); /* every callback has run once this returns */
    eddy_client_free(client);
    return atomic_load(&failed) == 0 ? 0 : 1;
}
