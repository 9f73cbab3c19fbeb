/* sender: records into streams, held until acknowledged (see sender.h). */
#include "agent/sender.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "eddy/client.h"
#include "eddy/producer.h"

#define MAX_PRODUCERS 8
#define WOULD_BLOCK_RETRY_MS 20
#define INFLIGHT_SMALL 512      /* records up to this size (with their header, rounded up to 64 bytes) */
#define INFLIGHT_SPARE_MAX 1024 /* are kept for reuse, this many at most (a batch is freed at once) */
#define SUBMIT_MAX 256          /* records handed to the producers together (eddy_producer_put_many) */

typedef struct producer_slot {
    eddy_producer_t *p;
    bool aggregation;
    int64_t age_ms;
    int records;
    int64_t bytes;
} producer_slot_t;

struct sender {
    const agent_config_t *cfg;
    eddy_client_t *client;
    producer_slot_t producers[MAX_PRODUCERS];
    size_t nproducers;
    size_t *flow_producer; /* per flow */
    int wake_fd;
    _Atomic(inflight_t *) done; /* completion list (pushed by the producers' threads, taken whole) */
    inflight_t **waiting; /* records to put again */
    size_t nwaiting, waiting_cap;
    size_t buffered_bytes, buffered_records;
    uint64_t rng;
    inflight_t *spare; /* small records for reuse */
    size_t nspare;
    inflight_t *pending[SUBMIT_MAX]; /* queued in their sources, not yet put (sender_submit) */
    size_t npending;
    bool closing; /* the producers are gone: nothing is put again */
};

/* @thread a producer's or the client's: links the record into the completion list, wakes the main thread */
static void on_done(void *arg, const eddy_put_result_t *r)
{
    inflight_t *rec = arg;
    sender_t *s = rec->owner;
    rec->done_err = r->err;
    inflight_t *head = atomic_load_explicit(&s->done, memory_order_relaxed);
    do {
        rec->done_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&s->done, &head, rec, memory_order_release,
                                                    memory_order_relaxed));
    if (head == NULL) {
        uint64_t one = 1;
        ssize_t w = write(s->wake_fd, &one, sizeof one);
        (void)w; /* EAGAIN: the counter is already non-zero, which is all that matters */
    }
}

static int set(eddy_producer_config_t *pc, const char *key, const char *value, char *err, size_t errlen)
{
    return eddy_producer_config_set(pc, key, value, err, errlen);
}

static size_t producer_for(sender_t *s, const agent_flow_config_t *fl, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->nproducers; i++) {
        producer_slot_t *ps = &s->producers[i];
        if (ps->aggregation == fl->aggregation && ps->age_ms == fl->max_buffer_age_ms &&
            ps->records == fl->max_buffer_records && ps->bytes == fl->max_buffer_bytes) {
            return i;
        }
    }
    if (s->nproducers == MAX_PRODUCERS) {
        snprintf(err, errlen, "more than %d different buffer settings across flows", MAX_PRODUCERS);
        return SIZE_MAX;
    }
    eddy_producer_config_t *pc = eddy_producer_config_new();
    if (pc == NULL) {
        snprintf(err, errlen, "out of memory");
        return SIZE_MAX;
    }
    char v[32];
    size_t outstanding = s->cfg->max_buffered_bytes * 2 + (1u << 20);
    int rc = set(pc, "aggregation", fl->aggregation ? "true" : "false", err, errlen);
    snprintf(v, sizeof v, "%lld", (long long)fl->max_buffer_age_ms);
    rc = rc ? rc : set(pc, "record_max_buffered_time_ms", v, err, errlen);
    snprintf(v, sizeof v, "%d", fl->max_buffer_records);
    rc = rc ? rc : set(pc, "collection_max_count", v, err, errlen);
    snprintf(v, sizeof v, "%lld", (long long)(fl->max_buffer_bytes < 52224 ? 52224 : fl->max_buffer_bytes));
    rc = rc ? rc : set(pc, "collection_max_bytes", v, err, errlen);
    /* records never expire in the producer: it retries a failed one ahead of the file's later records
     * (the file's order holds however long the stream is down); the agent's own retries, with its backoff,
     * are for records the producer failed for good (a missing stream) */
    rc = rc ? rc : set(pc, "record_ttl_ms", "1000000000000000", err, errlen);
    snprintf(v, sizeof v, "%zu", outstanding);
    rc = rc ? rc : set(pc, "max_outstanding_bytes", v, err, errlen);
    rc = rc ? rc : set(pc, "block_when_full", "false", err, errlen);
    if (rc != 0) {
        eddy_producer_config_free(pc);
        return SIZE_MAX;
    }
    eddy_producer_t *p = eddy_producer_new(s->client, pc, err, errlen);
    if (p == NULL) {
        return SIZE_MAX;
    }
    producer_slot_t *ps = &s->producers[s->nproducers];
    ps->p = p;
    ps->aggregation = fl->aggregation;
    ps->age_ms = fl->max_buffer_age_ms;
    ps->records = fl->max_buffer_records;
    ps->bytes = fl->max_buffer_bytes;
    return s->nproducers++;
}

sender_t *sender_new(const agent_config_t *cfg, char *err, size_t errlen)
{
    sender_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->flow_producer = calloc(cfg->nflows, sizeof *s->flow_producer);
    if (getrandom(&s->rng, sizeof s->rng, 0) != sizeof s->rng || s->rng == 0) {
        s->rng = (uint64_t)time(NULL) | 1;
    }
    eddy_config_t *cc = eddy_config_new();
    if (s->wake_fd < 0 || s->flow_producer == NULL || cc == NULL) {
        snprintf(err, errlen, "out of memory");
        eddy_config_free(cc);
        goto fail;
    }
    char v[32];
    int rc = 0;
    if (cfg->endpoint != NULL) {
        rc = eddy_config_set(cc, "endpoint", cfg->endpoint, err, errlen);
    }
    if (rc == 0 && cfg->region != NULL) {
        rc = eddy_config_set(cc, "region", cfg->region, err, errlen);
    }
    if (rc == 0 && cfg->access_key_id != NULL) {
        rc = eddy_config_set(cc, "access_key_id", cfg->access_key_id, err, errlen);
        rc = rc ? rc : eddy_config_set(cc, "secret_access_key", cfg->secret_access_key, err, errlen);
    }
    if (rc == 0 && cfg->connect_timeout_ms > 0) {
        snprintf(v, sizeof v, "%lld", (long long)cfg->connect_timeout_ms);
        rc = eddy_config_set(cc, "connect_timeout_ms", v, err, errlen);
    }
    if (rc == 0 && cfg->socket_timeout_ms > 0) {
        snprintf(v, sizeof v, "%lld", (long long)cfg->socket_timeout_ms);
        rc = eddy_config_set(cc, "request_timeout_ms", v, err, errlen);
    }
    if (rc == 0 && cfg->max_connections > 0) {
        snprintf(v, sizeof v, "%d", cfg->max_connections);
        rc = eddy_config_set(cc, "max_connections", v, err, errlen);
    }
    if (rc != 0) {
        eddy_config_free(cc);
        goto fail;
    }
    s->client = eddy_client_new(cc, err, errlen);
    if (s->client == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < cfg->nflows; i++) {
        size_t k = producer_for(s, &cfg->flows[i], err, errlen);
        if (k == SIZE_MAX) {
            goto fail;
        }
        s->flow_producer[i] = k;
    }
    return s;
fail:
    sender_free(s);
    return NULL;
}

static uint64_t next_random(sender_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

/* The partition key of a record into key (1..256 bytes); its length. */
static size_t partition_key(sender_t *s, const agent_flow_config_t *fl, const char *data, size_t len, char key[257])
{
    switch (fl->pk_mode) {
    case AGENT_PK_DETERMINISTIC: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1) {
            n = 0;
        }
        for (unsigned int i = 0; i < n; i++) {
            snprintf(key + 2 * i, 3, "%02x", md[i]);
        }
        if (n > 0) {
            return 2 * n;
        }
        break;
    }
    case AGENT_PK_FIELD: {
        cJSON *j = cJSON_ParseWithLength(data, len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, fl->pk_field);
        int n;
        if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
            n = snprintf(key, 257, "%s", v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            n = snprintf(key, 257, "%.17g", v->valuedouble);
        } else {
            n = snprintf(key, 257, "-");
        }
        cJSON_Delete(j);
        size_t k = n > 256 ? 256 : (size_t)n;
        while (k > 1 && ((unsigned char)key[k] & 0xC0) == 0x80) {
            k--; /* never cut a UTF-8 character in two */
        }
        return k;
    }
    case AGENT_PK_RANDOM:
    default:
        break;
    }
    /* the Kinesis Agent's: a random number in [0, 10^6) as text, "<integer>.<6 digits>" (by hand: snprintf
     * cost more than the rest of the key) */
    uint64_t r = next_random(s);
    uint64_t whole = (r >> 20) % 1000000, frac = r % 1000000;
    char digits[8];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole != 0);
    size_t klen = 0;
    while (n > 0) {
        key[klen++] = digits[--n];
    }
    key[klen++] = '.';
    for (int i = 5; i >= 0; i--) {
        key[klen + (size_t)i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    klen += 6;
    key[klen] = '\0';
    return klen;
}

static int put_one(sender_t *s, inflight_t *rec)
{
    const tail_source_t *src = rec->src;
    return eddy_producer_put(s->producers[rec->producer].p, src->flow->cfg->stream, rec->bytes + rec->len, rec->pk_len,
                             NULL, rec->bytes, rec->len, on_done, rec);
}

static int64_t backoff(sender_t *s, const agent_flow_config_t *fl, int failures)
{
    int64_t b = fl->retry_initial_backoff_ms;
    for (int i = 1; i < failures && b < fl->retry_max_backoff_ms; i++) {
        b *= 2;
    }
    b = b < fl->retry_max_backoff_ms ? b : fl->retry_max_backoff_ms;
    int64_t jitter = b * 3 / 10;
    if (jitter > 0) {
        b += (int64_t)(next_random(s) % (uint64_t)(2 * jitter + 1)) - jitter;
    }
    return b > 0 ? b : 1;
}

static void wait_again(sender_t *s, inflight_t *rec, int64_t at)
{
    if (s->nwaiting == s->waiting_cap) {
        size_t cap = s->waiting_cap ? s->waiting_cap * 2 : 256;
        inflight_t **grown = realloc(s->waiting, cap * sizeof *grown);
        if (grown == NULL) {
            abort(); /* the agent, like the server, stops on out-of-memory (STYLE.md) */
        }
        s->waiting = grown;
        s->waiting_cap = cap;
    }
    rec->status = INFLIGHT_WAITING;
    rec->retry_at_ms = at;
    rec->src->q_waiting++;
    s->waiting[s->nwaiting++] = rec;
}

/* Waiting records by source, each source's in file order. */
static int cmp_waiting(const void *a, const void *b)
{
    const inflight_t *x = *(inflight_t *const *)a, *y = *(inflight_t *const *)b;
    if (x->src != y->src) {
        return x->src->seq < y->src->seq ? -1 : 1;
    }
    return x->end_offset < y->end_offset ? -1 : x->end_offset > y->end_offset;
}

/* Pops the acknowledged prefix of src's queue. */
static void settle(sender_t *s, tail_source_t *src)
{
    inflight_t *head = src->q_head;
    while (head != NULL && head->status == INFLIGHT_ACKED) {
        src->acked_offset = head->end_offset;
        src->q_head = head->next;
        src->q_count--;
        s->buffered_bytes -= head->len;
        s->buffered_records--;
        if (head->size <= INFLIGHT_SMALL && s->nspare < INFLIGHT_SPARE_MAX) {
            head->next = s->spare;
            s->spare = head;
            s->nspare++;
        } else {
            free(head);
        }
        head = src->q_head;
    }
    if (head == NULL) {
        src->q_tail = NULL;
    }
}

/* What happens to a record a producer refused (rc not 0). */
static void refused(sender_t *s, inflight_t *rec, int rc)
{
    if (rc == EDDY_ERR_WOULD_BLOCK) {
        wait_again(s, rec, 0);
        return;
    }
    /* refused for good: dropped, and the checkpoint may pass it */
    tail_source_t *src = rec->src;
    if (src->flow->stats.records_dropped++ < 10) {
        log_warn("agent: %s: a record of %zu bytes at byte %lld was refused (%s): dropped", src->path, rec->len,
                 (long long)rec->end_offset, eddy_err_name(rc));
    }
    rec->status = INFLIGHT_ACKED;
    settle(s, src);
}

void sender_submit(sender_t *s)
{
    eddy_producer_record_t recs[SUBMIT_MAX];
    size_t i = 0;
    while (i < s->npending) {
        /* a run of records for one producer and stream */
        inflight_t *first = s->pending[i];
        const char *stream = first->src->flow->cfg->stream;
        size_t n = 0;
        while (i + n < s->npending && s->pending[i + n]->producer == first->producer &&
               s->pending[i + n]->src->flow->cfg->stream == stream) {
            inflight_t *rec = s->pending[i + n];
            recs[n] = (eddy_producer_record_t){.partition_key = rec->bytes + rec->len, .pk_len = rec->pk_len,
                                               .data = rec->bytes, .data_len = rec->len, .done = on_done,
                                               .arg = rec};
            n++;
        }
        eddy_producer_put_many(s->producers[first->producer].p, stream, recs, n);
        for (size_t k = 0; k < n; k++) {
            if (recs[k].result != EDDY_OK) {
                refused(s, s->pending[i + k], recs[k].result);
            } else {
                s->pending[i + k]->src->q_sent++;
            }
        }
        i += n;
    }
    s->npending = 0;
}

int sender_put(sender_t *s, tail_source_t *src, const char *data, size_t len, int64_t end_offset)
{
    if (!sender_has_room(s)) {
        return -EAGAIN;
    }
    const agent_flow_config_t *fl = src->flow->cfg;
    char key[257];
    size_t pk_len = partition_key(s, fl, data, len, key);
    size_t size = (sizeof(inflight_t) + len + pk_len + 63) & ~(size_t)63;
    inflight_t *rec = s->spare != NULL && s->spare->size >= size ? s->spare : NULL;
    if (rec != NULL) {
        s->spare = rec->next;
        s->nspare--;
        size = rec->size;
    } else if ((rec = malloc(size)) == NULL) {
        return -EAGAIN;
    }
    memset(rec, 0, sizeof *rec);
    rec->size = size;
    rec->owner = s;
    rec->src = src;
    rec->end_offset = end_offset;
    rec->producer = s->flow_producer[src->flow->index];
    rec->len = len;
    rec->pk_len = pk_len;
    memcpy(rec->bytes, data, len);
    memcpy(rec->bytes + len, key, pk_len);
    if (src->q_tail != NULL) {
        src->q_tail->next = rec;
    } else {
        src->q_head = rec;
    }
    src->q_tail = rec;
    src->q_count++;
    s->buffered_bytes += len;
    s->buffered_records++;
    if (src->q_waiting > 0) {
        wait_again(s, rec, 0); /* behind the file's records waiting to be put again */
        return 0;
    }
    s->pending[s->npending++] = rec;
    if (s->npending == SUBMIT_MAX) {
        sender_submit(s);
    }
    return 0;
}

int64_t sender_drain(sender_t *s, int64_t now)
{
    sender_submit(s);
    uint64_t counter;
    ssize_t r = read(s->wake_fd, &counter, sizeof counter);
    (void)r;
    inflight_t *list = atomic_exchange_explicit(&s->done, NULL, memory_order_acquire);
    for (inflight_t *rec = list, *next; rec != NULL; rec = next) {
        next = rec->done_next;
        tail_flow_stats_t *st = &rec->src->flow->stats;
        rec->src->q_sent--;
        if (rec->done_err == EDDY_OK) {
            rec->status = INFLIGHT_ACKED;
            st->records_sent++;
            st->bytes_sent += rec->len;
        } else if (rec->done_err == EDDY_ERR_INVALID || rec->done_err == EDDY_ERR_TOO_LARGE) {
            rec->status = INFLIGHT_ACKED;
            st->records_dropped++;
        } else {
            st->record_send_errors++;
            rec->failures++;
            if (rec->failures == 1 || rec->failures % 20 == 0) {
                log_debug("agent: a record of %s failed (%s, %d times): retried", rec->src->path,
                          eddy_err_name(rec->done_err), rec->failures);
            }
            wait_again(s, rec, now + backoff(s, rec->src->flow->cfg, rec->failures));
        }
        settle(s, rec->src); /* may free rec */
    }
    /* the records to put again, each file's in order: a file's record waits while an earlier one does, and
     * they all wait while the file has records in a producer (those may fail too, and then go first) */
    int64_t next = now + 60000;
    if (s->nwaiting > 1) {
        qsort(s->waiting, s->nwaiting, sizeof *s->waiting, cmp_waiting);
    }
    const tail_source_t *src_now = NULL;
    bool blocked = false;
    size_t kept = 0;
    for (size_t i = 0; i < s->nwaiting; i++) {
        inflight_t *rec = s->waiting[i];
        tail_source_t *src = rec->src;
        if (src != src_now) {
            src_now = src;
            blocked = src->q_sent > 0;
        }
        if (blocked) {
            s->waiting[kept++] = rec;
            continue;
        }
        if (rec->retry_at_ms > now || s->closing) {
            next = rec->retry_at_ms < next ? rec->retry_at_ms : next;
            blocked = true;
            s->waiting[kept++] = rec;
            continue;
        }
        rec->status = INFLIGHT_SENT;
        int rc = put_one(s, rec);
        if (rc == EDDY_ERR_WOULD_BLOCK) {
            rec->status = INFLIGHT_WAITING;
            rec->retry_at_ms = now + WOULD_BLOCK_RETRY_MS;
            next = rec->retry_at_ms < next ? rec->retry_at_ms : next;
            blocked = true;
            s->waiting[kept++] = rec;
            continue;
        }
        src->q_waiting--;
        src->q_sent += rc == EDDY_OK;
        if (rc != EDDY_OK) {
            rec->status = INFLIGHT_ACKED;
            src->flow->stats.records_dropped++;
            settle(s, src); /* may free rec */
        }
    }
    s->nwaiting = kept;
    return next;
}

void sender_flush(sender_t *s)
{
    sender_submit(s);
    for (size_t i = 0; i < s->nproducers; i++) {
        eddy_producer_flush(s->producers[i].p, NULL);
    }
}

int sender_fd(const sender_t *s)
{
    return s->wake_fd;
}

bool sender_has_room(const sender_t *s)
{
    return s->buffered_bytes < s->cfg->max_buffered_bytes;
}

size_t sender_buffered_bytes(const sender_t *s)
{
    return s->buffered_bytes;
}

size_t sender_buffered_records(const sender_t *s)
{
    return s->buffered_records;
}

size_t sender_limit_bytes(const sender_t *s)
{
    return s->cfg->max_buffered_bytes;
}

void sender_producer_metrics(const sender_t *s, uint64_t *retries, uint64_t *throttles, uint64_t *requests)
{
    *retries = *throttles = *requests = 0;
    for (size_t i = 0; i < s->nproducers; i++) {
        eddy_producer_metrics_t m;
        eddy_producer_metrics(s->producers[i].p, &m);
        *retries += m.retries;
        *throttles += m.throttles;
        *requests += m.put_records_requests;
    }
}

void sender_free(sender_t *s)
{
    if (s == NULL) {
        return;
    }
    sender_submit(s);
    for (size_t i = 0; i < s->nproducers; i++) {
        /* what is not sent by now fails at its next failed attempt instead of being retried (it stays
         * unacknowledged, to be read again after a restart) */
        eddy_producer_set_record_ttl(s->producers[i].p, 0);
    }
    for (size_t i = 0; i < s->nproducers; i++) {
        eddy_producer_destroy(s->producers[i].p); /* every callback has run when it returns */
    }
    s->nproducers = 0;
    s->closing = true;
    if (s->client != NULL) {
        sender_drain(s, 0); /* the outcomes applied: the checkpoints can take them */
        eddy_client_free(s->client);
    }
    /* records never acknowledged stay in their sources' queues (sender_release_queue frees them) */
    for (inflight_t *rec = s->spare, *next; rec != NULL; rec = next) {
        next = rec->next;
        free(rec);
    }
    free(s->waiting);
    if (s->wake_fd >= 0) {
        close(s->wake_fd);
    }
    free(s->flow_producer);
    free(s);
}

void sender_release_queue(tail_source_t *src)
{
    for (inflight_t *rec = src->q_head, *next; rec != NULL; rec = next) {
        next = rec->next;
        free(rec);
    }
    src->q_head = src->q_tail = NULL;
    src->q_count = 0;
}
