/* dataplane: shard runtime state, iterators and retention (see dataplane.h). */
#include "server/dataplane.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/base64.h"
#include "common/log.h"

/* Resolves the master key new records of s go under: NULL when the stream is not encrypted. A KeyId that
 * no longer resolves gives a key id no store holds, so that appends fail instead of storing in clear. */
static const char *stream_master_key(server_t *srv, const stream_t *s, char id[ENGINE_KEY_ID_MAX + 1],
                                     int *rc)
{
    *rc = 0;
    if (!s->cfg.encrypted) {
        return NULL;
    }
    engine_t *e = srv->engine;
    /* never creates a key: a lost key file is not replaced behind the user's back */
    *rc = e->ops->resolve_key(e, s->cfg.key_id, srv->cfg.region, srv->cfg.account_id, false, id);
    if (*rc != 0) {
        log_error("stream %s is encrypted under KeyId %s, which no master key of the key file answers to "
                  "(%s): puts to it fail until the key is back",
                  s->name, s->cfg.key_id, strerror(-*rc));
        snprintf(id, ENGINE_KEY_ID_MAX + 1, "!unresolved");
    }
    return id;
}

int dataplane_apply_encryption(server_t *srv, stream_t *s)
{
    char id[ENGINE_KEY_ID_MAX + 1];
    int rc = 0;
    const char *key = stream_master_key(srv, s, id, &rc);
    for (size_t i = 0; i < s->shard_count; i++) {
        if (s->shards[i].rt != NULL) {
            srv->engine->ops->set_encryption(srv->engine, s->shards[i].rt->storage, key);
        }
    }
    return rc;
}

int dataplane_attach_stream(server_t *srv, stream_t *s)
{
    char id[ENGINE_KEY_ID_MAX + 1];
    const char *key = NULL;
    bool resolved = false;
    for (size_t i = 0; i < s->shard_count; i++) {
        shard_t *sh = &s->shards[i];
        if (sh->rt != NULL) {
            continue;
        }
        shard_runtime_t *rt = calloc(1, sizeof *rt);
        if (rt == NULL) {
            abort();
        }
        int rc = srv->engine->ops->open_shard(srv->engine, s->name, sh->index, sh->first_seq_index, &rt->storage);
        if (rc != 0) {
            free(rt);
            return rc;
        }
        if (!resolved) {
            int ignored;
            key = stream_master_key(srv, s, id, &ignored);
            resolved = true;
        }
        srv->engine->ops->set_encryption(srv->engine, rt->storage, key);
        pthread_mutex_init(&rt->lock, NULL);
        rt->write_bytes = SHARD_WRITE_BYTES_PER_SEC;
        rt->write_records = SHARD_WRITE_RECORDS_PER_SEC;
        rt->read_bytes = SHARD_READ_BYTES_PER_SEC;
        rt->read_calls = SHARD_READ_CALLS_PER_SEC;
        rt->iterator_calls = SHARD_ITERATOR_CALLS_PER_SEC;
        sh->rt = rt;
    }
    return 0;
}

static void free_runtime(server_t *srv, shard_t *sh, bool drop)
{
    shard_runtime_t *rt = sh->rt;
    if (rt == NULL) {
        return;
    }
    if (drop) {
        srv->engine->ops->drop_shard(srv->engine, rt->storage);
    } else {
        srv->engine->ops->close_shard(srv->engine, rt->storage);
    }
    pthread_mutex_destroy(&rt->lock);
    free(rt);
    sh->rt = NULL;
}

void dataplane_drop_stream(void *arg, stream_t *s)
{
    server_t *srv = arg;
    for (size_t i = 0; i < s->shard_count; i++) {
        free_runtime(srv, &s->shards[i], true);
    }
    srv->engine->ops->drop_stream(srv->engine, s->name);
}

void dataplane_detach_all(server_t *srv)
{
    catalog_lock(srv->catalog);
    for (size_t i = 0; i < catalog_stream_count(srv->catalog); i++) {
        stream_t *s = catalog_stream_at(srv->catalog, i);
        for (size_t k = 0; k < s->shard_count; k++) {
            free_runtime(srv, &s->shards[k], false);
        }
    }
    catalog_unlock(srv->catalog);
}

static void refill(double *tokens, double rate, double cap, int64_t *last_ms, int64_t now_ms)
{
    if (now_ms > *last_ms) {
        *tokens += rate * (double)(now_ms - *last_ms) / 1000.0;
        if (*tokens > cap) {
            *tokens = cap;
        }
        *last_ms = now_ms;
    }
}

void dataplane_note_demand(shard_runtime_t *rt, size_t bytes)
{
    atomic_fetch_add_explicit(&rt->demand_bytes, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->demand_records, 1, memory_order_relaxed);
}

bool dataplane_take_write(shard_runtime_t *rt, int64_t now_ms, size_t bytes)
{
    pthread_mutex_lock(&rt->lock);
    int64_t last = rt->write_ms;
    refill(&rt->write_bytes, SHARD_WRITE_BYTES_PER_SEC, SHARD_WRITE_BYTES_PER_SEC, &last, now_ms);
    refill(&rt->write_records, SHARD_WRITE_RECORDS_PER_SEC, SHARD_WRITE_RECORDS_PER_SEC, &rt->write_ms, now_ms);
    /* A record larger than the 1 MiB budget (MaxRecordSizeInKiB up to 10 MiB) bursts: it is admitted when
     * the budget is full and leaves it in debt, so the shard still averages 1 MiB/s. */
    double need = (double)bytes < SHARD_WRITE_BYTES_PER_SEC ? (double)bytes : SHARD_WRITE_BYTES_PER_SEC;
    bool ok = rt->write_records >= 1.0 && rt->write_bytes >= need;
    if (ok) {
        rt->write_records -= 1.0;
        rt->write_bytes -= (double)bytes;
    }
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

bool dataplane_take_read(shard_runtime_t *rt, int64_t now_ms)
{
    pthread_mutex_lock(&rt->lock);
    int64_t last = rt->read_ms;
    refill(&rt->read_bytes, SHARD_READ_BYTES_PER_SEC, SHARD_READ_BYTES_PER_SEC, &last, now_ms);
    refill(&rt->read_calls, SHARD_READ_CALLS_PER_SEC, SHARD_READ_CALLS_PER_SEC, &rt->read_ms, now_ms);
    bool ok = rt->read_calls >= 1.0 && rt->read_bytes > 0.0;
    if (ok) {
        rt->read_calls -= 1.0;
    }
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

bool dataplane_take_iterator(shard_runtime_t *rt, int64_t now_ms)
{
    pthread_mutex_lock(&rt->lock);
    refill(&rt->iterator_calls, SHARD_ITERATOR_CALLS_PER_SEC, SHARD_ITERATOR_CALLS_PER_SEC, &rt->iterator_ms, now_ms);
    bool ok = rt->iterator_calls >= 1.0;
    if (ok) {
        rt->iterator_calls -= 1.0;
    }
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

void dataplane_charge_read(shard_runtime_t *rt, size_t bytes)
{
    pthread_mutex_lock(&rt->lock);
    rt->read_bytes -= (double)bytes;
    pthread_mutex_unlock(&rt->lock);
}

/* ---- iterators ----
 * Token = base64( version(1) | stream_created_ms(8) | shard(4) | position(8) | issued_ms(8) | name_len(1) |
 *                 name | HMAC-SHA256(key, all before)[0..16) ) */

#define ITER_VERSION 1
#define ITER_MAC 16

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void mac(const server_t *srv, const unsigned char *data, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), srv->iterator_key, sizeof srv->iterator_key, data, n, out, &len);
}

void iterator_encode(const server_t *srv, const iterator_pos_t *pos, buf_t *out)
{
    unsigned char raw[1 + 8 + 4 + 8 + 8 + 1 + STREAM_NAME_MAX + 32];
    size_t name_len = strlen(pos->stream);
    size_t n = 0;
    raw[n++] = ITER_VERSION;
    put_u64(raw + n, (uint64_t)pos->stream_created_ms);
    n += 8;
    raw[n++] = (unsigned char)(pos->shard >> 24);
    raw[n++] = (unsigned char)(pos->shard >> 16);
    raw[n++] = (unsigned char)(pos->shard >> 8);
    raw[n++] = (unsigned char)pos->shard;
    put_u64(raw + n, pos->position);
    n += 8;
    put_u64(raw + n, (uint64_t)pos->issued_ms);
    n += 8;
    raw[n++] = (unsigned char)name_len;
    memcpy(raw + n, pos->stream, name_len);
    n += name_len;
    unsigned char tag[32];
    mac(srv, raw, n, tag);
    memcpy(raw + n, tag, ITER_MAC);
    n += ITER_MAC;
    base64_encode_into(out, raw, n);
}

iterator_status_t iterator_decode(const server_t *srv, const char *token, size_t len, int64_t now_ms,
                                  iterator_pos_t *pos)
{
    unsigned char raw[512];
    if (len > 600 || len % 4 != 0) {
        return ITERATOR_INVALID;
    }
    long n = base64_decode(token, len, raw);
    if (n < 1 + 8 + 4 + 8 + 8 + 1 + 1 + ITER_MAC || raw[0] != ITER_VERSION) {
        return ITERATOR_INVALID;
    }
    size_t name_len = raw[29];
    if (name_len == 0 || name_len > STREAM_NAME_MAX || (size_t)n != 30 + name_len + ITER_MAC) {
        return ITERATOR_INVALID;
    }
    unsigned char tag[32];
    mac(srv, raw, 30 + name_len, tag);
    if (CRYPTO_memcmp(tag, raw + 30 + name_len, ITER_MAC) != 0) {
        return ITERATOR_INVALID;
    }
    pos->stream_created_ms = (int64_t)get_u64(raw + 1);
    pos->shard = (uint32_t)raw[9] << 24 | (uint32_t)raw[10] << 16 | (uint32_t)raw[11] << 8 | raw[12];
    pos->position = get_u64(raw + 13);
    pos->issued_ms = (int64_t)get_u64(raw + 21);
    memcpy(pos->stream, raw + 30, name_len);
    pos->stream[name_len] = '\0';
    if (now_ms - pos->issued_ms > ITERATOR_TTL_MS) {
        return ITERATOR_EXPIRED;
    }
    return ITERATOR_OK;
}

int dataplane_init_keys(server_t *srv)
{
    char hex[2 * sizeof srv->iterator_key + 1];
    catalog_lock(srv->catalog);
    int rc = catalog_get_setting(srv->catalog, "iterator_key", hex, sizeof hex);
    if (rc == 0 && strlen(hex) == 2 * sizeof srv->iterator_key) {
        for (size_t i = 0; i < sizeof srv->iterator_key; i++) {
            unsigned v = 0;
            sscanf(hex + 2 * i, "%2x", &v);
            srv->iterator_key[i] = (unsigned char)v;
        }
    } else {
        /* the kernel's generator: OpenSSL's would cost megabytes of resident memory to initialise */
        if (getrandom(srv->iterator_key, sizeof srv->iterator_key, 0) != (ssize_t)sizeof srv->iterator_key) {
            catalog_unlock(srv->catalog);
            return -1;
        }
        for (size_t i = 0; i < sizeof srv->iterator_key; i++) {
            snprintf(hex + 2 * i, 3, "%02x", srv->iterator_key[i]);
        }
        rc = catalog_set_setting(srv->catalog, "iterator_key", hex);
    }
    catalog_unlock(srv->catalog);
    return rc;
}

uint64_t dataplane_trim_horizon(server_t *srv, const stream_t *s, shard_runtime_t *rt, int64_t now_ms)
{
    int64_t cutoff = now_ms - (int64_t)s->cfg.retention_hours * 3600 * 1000;
    uint64_t first = 0, end = 0;
    srv->engine->ops->bounds(srv->engine, rt->storage, &first, &end, NULL);
    uint64_t index = first;
    if (srv->engine->ops->seek_time(srv->engine, rt->storage, cutoff, &index) != 0) {
        return first;
    }
    return index;
}

void dataplane_trim(server_t *srv, int64_t now_ms)
{
    catalog_rdlock(srv->catalog);
    for (size_t i = 0; i < catalog_stream_count(srv->catalog); i++) {
        stream_t *s = catalog_stream_at(srv->catalog, i);
        int64_t cutoff = now_ms - (int64_t)s->cfg.retention_hours * 3600 * 1000;
        for (size_t k = 0; k < s->shard_count; k++) {
            if (s->shards[k].rt != NULL) {
                srv->engine->ops->trim(srv->engine, s->shards[k].rt->storage, cutoff);
            }
        }
    }
    catalog_unlock(srv->catalog);
}
