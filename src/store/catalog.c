/*
 * catalog: stream metadata in memory, written through to SQLite (see catalog.h for the contract).
 *
 * SQLite schema (version 1):
 *   settings(key TEXT PRIMARY KEY, value TEXT)                 account settings and schema_version
 *   streams(name TEXT PRIMARY KEY, created_ms, status, target_status, status_due_ms, mode,
 *           retention_hours, encrypted, key_id, shard_metrics, max_record_kib, next_shard_index)
 *   shards(stream, idx, start_hash TEXT, end_hash TEXT, parent, adjacent_parent, created_ms,
 *          first_seq_index, closed_ms, last_seq_index, PRIMARY KEY(stream, idx))
 *   tags(stream, key, value, PRIMARY KEY(stream, key))
 * Hash keys are stored as decimal text (exact and readable); enums as their small integer values.
 */
#include "store/catalog.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

const char *const shard_metric_names[7] = {
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
};

struct catalog {
    sqlite3 *db;
    catalog_drop_hook_fn drop_hook;
    void *drop_hook_arg;
    pthread_rwlock_t lock;
    stream_t **streams; /* sorted by name */
    size_t count, cap;
    _Atomic size_t policies; /* resource policies in the catalog */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS streams(name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,"
    " status INTEGER NOT NULL, target_status INTEGER NOT NULL, status_due_ms INTEGER NOT NULL,"
    " mode INTEGER NOT NULL, retention_hours INTEGER NOT NULL, encrypted INTEGER NOT NULL,"
    " key_id TEXT NOT NULL, shard_metrics INTEGER NOT NULL, max_record_kib INTEGER NOT NULL,"
    " next_shard_index INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS shards(stream TEXT NOT NULL, idx INTEGER NOT NULL,"
    " start_hash TEXT NOT NULL, end_hash TEXT NOT NULL, parent INTEGER NOT NULL,"
    " adjacent_parent INTEGER NOT NULL, created_ms INTEGER NOT NULL, first_seq_index INTEGER NOT NULL,"
    " closed_ms INTEGER NOT NULL, last_seq_index INTEGER NOT NULL, PRIMARY KEY(stream, idx));"
    "CREATE TABLE IF NOT EXISTS tags(stream TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY(stream, key));"
    "CREATE TABLE IF NOT EXISTS consumers(stream TEXT NOT NULL, name TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, status INTEGER NOT NULL, status_due_ms INTEGER NOT NULL,"
    " PRIMARY KEY(stream, name));"
    "CREATE TABLE IF NOT EXISTS resource_policies(owner TEXT PRIMARY KEY, policy TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS stream_events(stream TEXT NOT NULL, kind INTEGER NOT NULL,"
    " at_ms INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO settings(key, value) VALUES('schema_version', '1');";

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        log_error("out of memory");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL) {
        log_error("out of memory");
        abort();
    }
    return p;
}

static int exec(catalog_t *cat, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(cat->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("catalog: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int begin(catalog_t *cat)
{
    return exec(cat, "BEGIN IMMEDIATE");
}

static int commit(catalog_t *cat)
{
    int rc = exec(cat, "COMMIT");
    if (rc != 0) {
        exec(cat, "ROLLBACK");
    }
    return rc;
}

static void rollback(catalog_t *cat)
{
    exec(cat, "ROLLBACK");
}

static sqlite3_stmt *prepare(catalog_t *cat, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("catalog: prepare %s: %s", sql, sqlite3_errmsg(cat->db));
        return NULL;
    }
    return st;
}

/* Steps a statement to completion and finalizes it. */
static int run(catalog_t *cat, sqlite3_stmt *st)
{
    if (st == NULL) {
        return -EIO;
    }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_error("catalog: step: %s", sqlite3_errmsg(cat->db));
        return -EIO;
    }
    return 0;
}

static void text(sqlite3_stmt *st, int col, const char *s)
{
    sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static void bind_u128(sqlite3_stmt *st, int col, u128 v)
{
    char tmp[U128_DEC_MAX];
    u128_format(v, tmp);
    sqlite3_bind_text(st, col, tmp, -1, SQLITE_TRANSIENT);
}

static u128 column_u128(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    u128 v = 0;
    if (s != NULL) {
        u128_parse(s, strlen(s), &v);
    }
    return v;
}

/* ---- in-memory helpers ---- */

static void free_tags(tag_t *tags, size_t count);

static void stream_free(stream_t *s)
{
    free_tags(s->tags, s->tag_count);
    free(s->policy);
    for (size_t i = 0; i < s->consumer_count; i++) {
        free_tags(s->consumers[i].tags, s->consumers[i].tag_count);
        free(s->consumers[i].policy);
    }
    free(s->shards);
    free(s->consumers);
    free(s);
}

static size_t lower_bound(const catalog_t *cat, const char *name)
{
    size_t lo = 0, hi = cat->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(cat->streams[mid]->name, name) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void insert_stream(catalog_t *cat, stream_t *s)
{
    if (cat->count == cat->cap) {
        size_t cap = cat->cap ? cat->cap * 2 : 16;
        stream_t **p = realloc(cat->streams, cap * sizeof *p);
        if (p == NULL) {
            log_error("out of memory");
            abort();
        }
        cat->streams = p;
        cat->cap = cap;
    }
    size_t at = lower_bound(cat, s->name);
    memmove(cat->streams + at + 1, cat->streams + at, (cat->count - at) * sizeof *cat->streams);
    cat->streams[at] = s;
    cat->count++;
}

static int tag_cmp(const void *a, const void *b)
{
    return strcmp(((const tag_t *)a)->key, ((const tag_t *)b)->key);
}

/* Sets key=value in memory (the SQL side is done by the caller). */
/* The tag array of a stream (con NULL) or of one of its consumers. */
static void tag_owner(stream_t *s, consumer_t *con, tag_t ***tags, size_t **count)
{
    *tags = con != NULL ? &con->tags : &s->tags;
    *count = con != NULL ? &con->tag_count : &s->tag_count;
}

/* The tags table's owner column: the stream's name, or "STREAM/consumer/NAME" (stream names have no '/'). */
static void tag_owner_key(const stream_t *s, const consumer_t *con, char *out, size_t len)
{
    if (con != NULL) {
        snprintf(out, len, "%s/consumer/%s", s->name, con->name);
    } else {
        snprintf(out, len, "%s", s->name);
    }
}

static void memory_put_tag(stream_t *s, consumer_t *con, const char *key, const char *value)
{
    tag_t **tags;
    size_t *count;
    tag_owner(s, con, &tags, &count);
    for (size_t i = 0; i < *count; i++) {
        if (strcmp((*tags)[i].key, key) == 0) {
            char *v = xstrdup(value);
            free((*tags)[i].value);
            (*tags)[i].value = v;
            return;
        }
    }
    tag_t *p = realloc(*tags, (*count + 1) * sizeof *p);
    if (p == NULL) {
        log_error("out of memory");
        abort();
    }
    *tags = p;
    p[*count].key = xstrdup(key);
    p[*count].value = xstrdup(value);
    (*count)++;
    qsort(p, *count, sizeof *p, tag_cmp);
}

static void free_tags(tag_t *tags, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(tags[i].key);
        free(tags[i].value);
    }
    free(tags);
}

/* ---- loading ---- */

static void memory_add_consumer(stream_t *s, const consumer_t *c)
{
    consumer_t *p = realloc(s->consumers, (s->consumer_count + 1) * sizeof *p);
    if (p == NULL) {
        abort();
    }
    s->consumers = p;
    s->consumers[s->consumer_count++] = *c;
}

/* Keeps the newest STREAM_EVENTS_KEPT times of each kind (oldest dropped first). */
static void memory_note_event(stream_t *s, stream_event_t kind, int64_t at_ms)
{
    int64_t *t = s->events[kind];
    memmove(t, t + 1, (STREAM_EVENTS_KEPT - 1) * sizeof *t);
    t[STREAM_EVENTS_KEPT - 1] = at_ms;
}

/* The stream (and consumer) an owner column names: "STREAM" or "STREAM/consumer/NAME" (see tag_owner_key).
 * Returns whether it names a consumer; *s and *con are NULL when absent. */
static bool find_owner(catalog_t *cat, const char *owner_text, stream_t **s, consumer_t **con)
{
    char owner[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 16];
    snprintf(owner, sizeof owner, "%s", owner_text != NULL ? owner_text : "");
    char *slash = strstr(owner, "/consumer/");
    const char *consumer = NULL;
    if (slash != NULL) {
        *slash = '\0';
        consumer = slash + strlen("/consumer/");
    }
    *s = catalog_find(cat, owner);
    *con = *s != NULL && consumer != NULL ? catalog_find_consumer(*s, consumer) : NULL;
    return consumer != NULL;
}

static int load(catalog_t *cat)
{
    sqlite3_stmt *st = prepare(cat, "SELECT name, created_ms, status, target_status, status_due_ms, mode,"
                                    " retention_hours, encrypted, key_id, shard_metrics, max_record_kib,"
                                    " next_shard_index FROM streams ORDER BY name");
    if (st == NULL) {
        return -EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_t *s = xcalloc(1, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", (const char *)sqlite3_column_text(st, 0));
        s->created_ms = sqlite3_column_int64(st, 1);
        s->cfg.status = (stream_status_t)sqlite3_column_int(st, 2);
        s->cfg.target_status = (stream_status_t)sqlite3_column_int(st, 3);
        s->cfg.status_due_ms = sqlite3_column_int64(st, 4);
        s->cfg.mode = (stream_mode_t)sqlite3_column_int(st, 5);
        s->cfg.retention_hours = sqlite3_column_int(st, 6);
        s->cfg.encrypted = sqlite3_column_int(st, 7) != 0;
        snprintf(s->cfg.key_id, sizeof s->cfg.key_id, "%s", (const char *)sqlite3_column_text(st, 8));
        s->cfg.shard_metrics = (uint32_t)sqlite3_column_int(st, 9);
        s->cfg.max_record_kib = sqlite3_column_int(st, 10);
        s->next_shard_index = (uint32_t)sqlite3_column_int64(st, 11);
        insert_stream(cat, s);
    }
    sqlite3_finalize(st);

    st = prepare(cat, "SELECT stream, idx, start_hash, end_hash, parent, adjacent_parent, created_ms,"
                      " first_seq_index, closed_ms, last_seq_index FROM shards ORDER BY stream, idx");
    if (st == NULL) {
        return -EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_t *s = catalog_find(cat, (const char *)sqlite3_column_text(st, 0));
        if (s == NULL) {
            continue;
        }
        shard_t *p = realloc(s->shards, (s->shard_count + 1) * sizeof *p);
        if (p == NULL) {
            abort();
        }
        s->shards = p;
        shard_t *sh = &s->shards[s->shard_count++];
        memset(sh, 0, sizeof *sh);
        sh->index = (uint32_t)sqlite3_column_int64(st, 1);
        sh->start_hash = column_u128(st, 2);
        sh->end_hash = column_u128(st, 3);
        sh->parent = sqlite3_column_int64(st, 4);
        sh->adjacent_parent = sqlite3_column_int64(st, 5);
        sh->created_ms = sqlite3_column_int64(st, 6);
        sh->first_seq_index = (uint64_t)sqlite3_column_int64(st, 7);
        sh->closed_ms = sqlite3_column_int64(st, 8);
        sh->last_seq_index = (uint64_t)sqlite3_column_int64(st, 9);
    }
    sqlite3_finalize(st);

    st = prepare(cat, "SELECT stream, name, created_ms, status, status_due_ms FROM consumers ORDER BY created_ms");
    if (st == NULL) {
        return -EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_t *s = catalog_find(cat, (const char *)sqlite3_column_text(st, 0));
        if (s == NULL) {
            continue;
        }
        consumer_t c = {0};
        snprintf(c.name, sizeof c.name, "%s", (const char *)sqlite3_column_text(st, 1));
        c.created_ms = sqlite3_column_int64(st, 2);
        c.status = (stream_status_t)sqlite3_column_int(st, 3);
        c.status_due_ms = sqlite3_column_int64(st, 4);
        memory_add_consumer(s, &c);
    }
    sqlite3_finalize(st);

    st = prepare(cat, "SELECT stream, kind, at_ms FROM stream_events ORDER BY at_ms");
    if (st == NULL) {
        return -EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_t *s = catalog_find(cat, (const char *)sqlite3_column_text(st, 0));
        int kind = sqlite3_column_int(st, 1);
        if (s != NULL && kind >= 0 && kind < STREAM_EVENT_KINDS_) {
            memory_note_event(s, (stream_event_t)kind, sqlite3_column_int64(st, 2));
        }
    }
    sqlite3_finalize(st);

    st = prepare(cat, "SELECT owner, policy FROM resource_policies");
    if (st == NULL) {
        return -EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_t *s;
        consumer_t *con;
        bool of_consumer = find_owner(cat, (const char *)sqlite3_column_text(st, 0), &s, &con);
        char **slot = con != NULL ? &con->policy : !of_consumer && s != NULL ? &s->policy : NULL;
        if (slot != NULL && *slot == NULL) {
            *slot = xstrdup((const char *)sqlite3_column_text(st, 1));
            atomic_fetch_add(&cat->policies, 1);
        }
    }
    sqlite3_finalize(st);

    st = prepare(cat, "SELECT stream, key, value FROM tags");
    if (st == NULL) {
        return -EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        stream_t *s;
        consumer_t *con;
        bool of_consumer = find_owner(cat, (const char *)sqlite3_column_text(st, 0), &s, &con);
        if (s != NULL && (!of_consumer || con != NULL)) {
            memory_put_tag(s, con, (const char *)sqlite3_column_text(st, 1),
                           (const char *)sqlite3_column_text(st, 2));
        }
    }
    sqlite3_finalize(st);
    return 0;
}

catalog_t *catalog_open(const char *dir, char *errmsg, size_t errmsg_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/catalog.db", dir);
    catalog_t *cat = xcalloc(1, sizeof *cat);
    pthread_rwlock_init(&cat->lock, NULL);
    if (sqlite3_open_v2(path, &cat->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "cannot open %s: %s", path,
                 cat->db ? sqlite3_errmsg(cat->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(cat->db, 5000);
    if (exec(cat, "PRAGMA journal_mode=WAL") != 0 || exec(cat, "PRAGMA synchronous=FULL") != 0 ||
        exec(cat, schema) != 0) {
        snprintf(errmsg, errmsg_len, "cannot initialise %s: %s", path, sqlite3_errmsg(cat->db));
        goto fail;
    }
    char version[16];
    if (catalog_get_setting(cat, "schema_version", version, sizeof version) != 0 ||
        strcmp(version, "1") != 0) {
        snprintf(errmsg, errmsg_len, "%s has an unsupported schema version", path);
        goto fail;
    }
    if (load(cat) != 0) {
        snprintf(errmsg, errmsg_len, "cannot read %s: %s", path, sqlite3_errmsg(cat->db));
        goto fail;
    }
    return cat;
fail:
    catalog_close(cat);
    return NULL;
}

void catalog_close(catalog_t *cat)
{
    if (cat == NULL) {
        return;
    }
    for (size_t i = 0; i < cat->count; i++) {
        stream_free(cat->streams[i]);
    }
    free(cat->streams);
    if (cat->db != NULL) {
        sqlite3_close(cat->db);
    }
    pthread_rwlock_destroy(&cat->lock);
    free(cat);
}

struct sqlite3 *catalog_sqlite(catalog_t *cat)
{
    return cat->db;
}

void catalog_lock(catalog_t *cat)
{
    pthread_rwlock_wrlock(&cat->lock);
}

void catalog_rdlock(catalog_t *cat)
{
    pthread_rwlock_rdlock(&cat->lock);
}

void catalog_unlock(catalog_t *cat)
{
    pthread_rwlock_unlock(&cat->lock);
}

/* ---- queries ---- */

stream_t *catalog_find(catalog_t *cat, const char *name)
{
    size_t at = lower_bound(cat, name);
    if (at < cat->count && strcmp(cat->streams[at]->name, name) == 0) {
        return cat->streams[at];
    }
    return NULL;
}

size_t catalog_stream_count(const catalog_t *cat)
{
    return cat->count;
}

stream_t *catalog_stream_at(catalog_t *cat, size_t i)
{
    return i < cat->count ? cat->streams[i] : NULL;
}

size_t catalog_stream_after(const catalog_t *cat, const char *name)
{
    size_t at = lower_bound(cat, name);
    if (at < cat->count && strcmp(cat->streams[at]->name, name) == 0) {
        at++;
    }
    return at;
}

const tag_t *catalog_find_tag(const stream_t *s, const consumer_t *con, const char *key)
{
    const tag_t *tags = con != NULL ? con->tags : s->tags;
    size_t count = con != NULL ? con->tag_count : s->tag_count;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(tags[i].key, key) == 0) {
            return &tags[i];
        }
    }
    return NULL;
}

const shard_t *stream_find_shard(const stream_t *s, uint32_t index)
{
    size_t lo = 0, hi = s->shard_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->shards[mid].index < index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->shard_count && s->shards[lo].index == index ? &s->shards[lo] : NULL;
}

bool shard_id_parse(const char *id, uint32_t *index)
{
    const char *p = id;
    if (strncmp(p, "shardId-", 8) == 0) {
        p += 8;
    }
    if (*p == '\0' || strlen(p) > 20) {
        return false;
    }
    uint64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) {
            return false;
        }
    }
    *index = (uint32_t)v;
    return true;
}

void shard_id_format(uint32_t index, char out[32])
{
    /* "shardId-" and 12 digits (more when the index needs them), without printf: it is on the hot path */
    char digits[16];
    int n = 0;
    do {
        digits[n++] = (char)('0' + index % 10);
        index /= 10;
    } while (index != 0);
    memcpy(out, "shardId-", 8);
    int width = n > 12 ? n : 12;
    for (int i = 0; i < width; i++) {
        out[8 + i] = i < width - n ? '0' : digits[width - 1 - i];
    }
    out[8 + width] = '\0';
}

const char *stream_status_name(stream_status_t st)
{
    switch (st) {
    case STREAM_CREATING:
        return "CREATING";
    case STREAM_DELETING:
        return "DELETING";
    case STREAM_ACTIVE:
        return "ACTIVE";
    case STREAM_UPDATING:
        return "UPDATING";
    }
    return "ACTIVE";
}

const char *stream_mode_name(stream_mode_t m)
{
    return m == STREAM_ON_DEMAND ? "ON_DEMAND" : "PROVISIONED";
}

/* ---- mutations ---- */

static int write_stream_row(catalog_t *cat, const stream_t *s, const stream_config_t *cfg,
                            uint32_t next_shard_index, bool insert)
{
    sqlite3_stmt *st = prepare(
        cat, insert ? "INSERT INTO streams(created_ms, status, target_status, status_due_ms, mode,"
                      " retention_hours, encrypted, key_id, shard_metrics, max_record_kib, next_shard_index,"
                      " name) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)"
                    : "UPDATE streams SET created_ms=?, status=?, target_status=?, status_due_ms=?, mode=?,"
                      " retention_hours=?, encrypted=?, key_id=?, shard_metrics=?, max_record_kib=?,"
                      " next_shard_index=? WHERE name=?");
    if (st == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(st, 1, s->created_ms);
    sqlite3_bind_int(st, 2, cfg->status);
    sqlite3_bind_int(st, 3, cfg->target_status);
    sqlite3_bind_int64(st, 4, cfg->status_due_ms);
    sqlite3_bind_int(st, 5, cfg->mode);
    sqlite3_bind_int(st, 6, cfg->retention_hours);
    sqlite3_bind_int(st, 7, cfg->encrypted);
    text(st, 8, cfg->key_id);
    sqlite3_bind_int(st, 9, (int)cfg->shard_metrics);
    sqlite3_bind_int(st, 10, cfg->max_record_kib);
    sqlite3_bind_int64(st, 11, next_shard_index);
    text(st, 12, s->name);
    return run(cat, st);
}

static int write_shard_row(catalog_t *cat, const char *stream, const shard_t *sh)
{
    sqlite3_stmt *st = prepare(cat, "INSERT OR REPLACE INTO shards(stream, idx, start_hash, end_hash, parent,"
                                    " adjacent_parent, created_ms, first_seq_index, closed_ms, last_seq_index)"
                                    " VALUES(?,?,?,?,?,?,?,?,?,?)");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, stream);
    sqlite3_bind_int64(st, 2, sh->index);
    bind_u128(st, 3, sh->start_hash);
    bind_u128(st, 4, sh->end_hash);
    sqlite3_bind_int64(st, 5, sh->parent);
    sqlite3_bind_int64(st, 6, sh->adjacent_parent);
    sqlite3_bind_int64(st, 7, sh->created_ms);
    sqlite3_bind_int64(st, 8, (int64_t)sh->first_seq_index);
    sqlite3_bind_int64(st, 9, sh->closed_ms);
    sqlite3_bind_int64(st, 10, (int64_t)sh->last_seq_index);
    return run(cat, st);
}

static int write_tag_row(catalog_t *cat, const char *stream, const char *key, const char *value)
{
    sqlite3_stmt *st = prepare(cat, "INSERT OR REPLACE INTO tags(stream, key, value) VALUES(?,?,?)");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, stream);
    text(st, 2, key);
    text(st, 3, value);
    return run(cat, st);
}

static int delete_rows(catalog_t *cat, const char *sql, const char *stream, const char *key)
{
    sqlite3_stmt *st = prepare(cat, sql);
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, stream);
    if (key != NULL) {
        text(st, 2, key);
    }
    return run(cat, st);
}

int catalog_create_stream(catalog_t *cat, const char *name, int64_t now_ms, const stream_config_t *cfg,
                          uint32_t shard_count, const tag_t *tags, size_t tag_count, stream_t **out)
{
    stream_t *s = xcalloc(1, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->created_ms = now_ms;
    s->cfg = *cfg;
    s->shards = xcalloc(shard_count, sizeof *s->shards);
    s->shard_count = shard_count;
    s->next_shard_index = shard_count;
    for (uint32_t i = 0; i < shard_count; i++) {
        shard_t *sh = &s->shards[i];
        sh->index = i;
        u128_even_range(i, shard_count, &sh->start_hash, &sh->end_hash);
        sh->parent = -1;
        sh->adjacent_parent = -1;
        sh->created_ms = now_ms;
        /* records start at index 1: "the number before the first record" stays expressible, which
         * SubscribeToShard's ContinuationSequenceNumber on an empty shard needs (AFTER_SEQUENCE_NUMBER) */
        sh->first_seq_index = 1;
    }
    int rc = begin(cat);
    if (rc != 0) {
        goto fail;
    }
    rc = write_stream_row(cat, s, cfg, s->next_shard_index, true);
    for (uint32_t i = 0; rc == 0 && i < shard_count; i++) {
        rc = write_shard_row(cat, name, &s->shards[i]);
    }
    for (size_t i = 0; rc == 0 && i < tag_count; i++) {
        rc = write_tag_row(cat, name, tags[i].key, tags[i].value);
    }
    if (rc != 0) {
        rollback(cat);
        goto fail;
    }
    rc = commit(cat);
    if (rc != 0) {
        goto fail;
    }
    for (size_t i = 0; i < tag_count; i++) {
        memory_put_tag(s, NULL, tags[i].key, tags[i].value);
    }
    insert_stream(cat, s);
    if (out != NULL) {
        *out = s;
    }
    return 0;
fail:
    stream_free(s);
    return rc;
}

int catalog_update_config(catalog_t *cat, stream_t *s, const stream_config_t *cfg)
{
    int rc = write_stream_row(cat, s, cfg, s->next_shard_index, false);
    if (rc == 0) {
        s->cfg = *cfg;
    }
    return rc;
}

int catalog_reshard(catalog_t *cat, stream_t *s, const catalog_close_t *close, size_t nclose, const shard_t *add,
                    size_t nadd, const stream_config_t *cfg)
{
    for (size_t i = 0; i < nadd; i++) {
        if (add[i].index != s->next_shard_index + i) {
            return -EINVAL;
        }
    }
    shard_t *closed = xcalloc(nclose ? nclose : 1, sizeof *closed);
    for (size_t i = 0; i < nclose; i++) {
        const shard_t *sh = stream_find_shard(s, close[i].index);
        if (sh == NULL || sh->closed_ms != 0) {
            free(closed);
            return -EINVAL;
        }
        closed[i] = *sh;
        closed[i].closed_ms = close[i].closed_ms;
        closed[i].last_seq_index = close[i].last_seq_index;
    }
    uint32_t next = s->next_shard_index + (uint32_t)nadd;
    int rc = begin(cat);
    if (rc == 0) {
        rc = write_stream_row(cat, s, cfg, next, false);
    }
    for (size_t i = 0; rc == 0 && i < nclose; i++) {
        rc = write_shard_row(cat, s->name, &closed[i]);
    }
    for (size_t i = 0; rc == 0 && i < nadd; i++) {
        rc = write_shard_row(cat, s->name, &add[i]);
    }
    if (rc == 0) {
        rc = commit(cat);
    } else {
        rollback(cat);
    }
    if (rc != 0) {
        free(closed);
        return rc;
    }
    /* memory: close, then append (indexes only grow, so the array stays ordered by index) */
    for (size_t i = 0; i < nclose; i++) {
        shard_t *sh = (shard_t *)stream_find_shard(s, close[i].index);
        sh->closed_ms = closed[i].closed_ms;
        sh->last_seq_index = closed[i].last_seq_index;
    }
    free(closed);
    shard_t *grown = realloc(s->shards, (s->shard_count + nadd) * sizeof *grown);
    if (grown == NULL) {
        abort();
    }
    s->shards = grown;
    for (size_t i = 0; i < nadd; i++) {
        s->shards[s->shard_count++] = add[i];
        s->shards[s->shard_count - 1].rt = NULL;
    }
    s->next_shard_index = next;
    s->cfg = *cfg;
    return 0;
}

int catalog_add_consumer(catalog_t *cat, stream_t *s, const consumer_t *c)
{
    sqlite3_stmt *st = prepare(cat, "INSERT OR REPLACE INTO consumers(stream, name, created_ms, status, status_due_ms)"
                                    " VALUES(?,?,?,?,?)");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, s->name);
    text(st, 2, c->name);
    sqlite3_bind_int64(st, 3, c->created_ms);
    sqlite3_bind_int(st, 4, c->status);
    sqlite3_bind_int64(st, 5, c->status_due_ms);
    int rc = run(cat, st);
    if (rc == 0) {
        memory_add_consumer(s, c);
    }
    return rc;
}

consumer_t *catalog_find_consumer(stream_t *s, const char *name)
{
    for (size_t i = 0; i < s->consumer_count; i++) {
        if (strcmp(s->consumers[i].name, name) == 0) {
            return &s->consumers[i];
        }
    }
    return NULL;
}

static int remove_consumer(catalog_t *cat, stream_t *s, consumer_t *c)
{
    char owner[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 16];
    tag_owner_key(s, c, owner, sizeof owner);
    int rc = begin(cat);
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM consumers WHERE stream=? AND name=?", s->name, c->name);
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM tags WHERE stream=?", owner, NULL);
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM resource_policies WHERE owner=?", owner, NULL);
    }
    if (rc == 0) {
        rc = commit(cat);
    } else {
        rollback(cat);
    }
    if (rc == 0) {
        free_tags(c->tags, c->tag_count);
        if (c->policy != NULL) {
            free(c->policy);
            atomic_fetch_sub(&cat->policies, 1);
        }
        size_t at = (size_t)(c - s->consumers);
        memmove(c, c + 1, (s->consumer_count - at - 1) * sizeof *c);
        s->consumer_count--;
    }
    return rc;
}

int catalog_set_consumer_status(catalog_t *cat, stream_t *s, const char *name, stream_status_t status, int64_t due_ms)
{
    consumer_t *c = catalog_find_consumer(s, name);
    if (c == NULL) {
        return -ENOENT;
    }
    sqlite3_stmt *st = prepare(cat, "UPDATE consumers SET status=?, status_due_ms=? WHERE stream=? AND name=?");
    if (st == NULL) {
        return -EIO;
    }
    sqlite3_bind_int(st, 1, status);
    sqlite3_bind_int64(st, 2, due_ms);
    text(st, 3, s->name);
    text(st, 4, name);
    int rc = run(cat, st);
    if (rc == 0) {
        c->status = status;
        c->status_due_ms = due_ms;
    }
    return rc;
}

/* Consumers whose CREATING or DELETING time is up become ACTIVE or go. */
static void settle_consumers(catalog_t *cat, stream_t *s, int64_t now_ms)
{
    for (size_t i = 0; i < s->consumer_count;) {
        consumer_t *c = &s->consumers[i];
        if (c->status == STREAM_ACTIVE || now_ms < c->status_due_ms) {
            i++;
        } else if (c->status == STREAM_DELETING) {
            if (remove_consumer(cat, s, c) != 0) {
                i++;
            }
        } else {
            catalog_set_consumer_status(cat, s, c->name, STREAM_ACTIVE, 0);
            i++;
        }
    }
}

int catalog_set_policy(catalog_t *cat, stream_t *s, consumer_t *con, const char *doc)
{
    char owner[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 16];
    tag_owner_key(s, con, owner, sizeof owner);
    sqlite3_stmt *st = prepare(cat, doc != NULL ? "INSERT OR REPLACE INTO resource_policies(owner, policy) VALUES(?,?)"
                                                 : "DELETE FROM resource_policies WHERE owner=?");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, owner);
    if (doc != NULL) {
        text(st, 2, doc);
    }
    int rc = run(cat, st);
    if (rc != 0) {
        return rc;
    }
    char **slot = con != NULL ? &con->policy : &s->policy;
    if (*slot == NULL && doc != NULL) {
        atomic_fetch_add(&cat->policies, 1);
    } else if (*slot != NULL && doc == NULL) {
        atomic_fetch_sub(&cat->policies, 1);
    }
    free(*slot);
    *slot = doc != NULL ? xstrdup(doc) : NULL;
    return 0;
}

size_t catalog_policy_count(const catalog_t *cat)
{
    return atomic_load(&((catalog_t *)cat)->policies);
}

int catalog_note_event(catalog_t *cat, stream_t *s, stream_event_t kind, int64_t at_ms)
{
    sqlite3_stmt *st = prepare(cat, "INSERT INTO stream_events(stream, kind, at_ms) VALUES(?,?,?)");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, s->name);
    sqlite3_bind_int(st, 2, kind);
    sqlite3_bind_int64(st, 3, at_ms);
    int rc = run(cat, st);
    if (rc == 0) {
        memory_note_event(s, kind, at_ms);
        /* rows older than the newest STREAM_EVENTS_KEPT of their kind are never needed again */
        st = prepare(cat, "DELETE FROM stream_events WHERE stream=?1 AND kind=?2 AND at_ms < ?3");
        if (st != NULL) {
            text(st, 1, s->name);
            sqlite3_bind_int(st, 2, kind);
            sqlite3_bind_int64(st, 3, s->events[kind][0]);
            run(cat, st);
        }
    }
    return rc;
}

size_t catalog_count_events(const stream_t *s, stream_event_t kind, int64_t since_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < STREAM_EVENTS_KEPT; i++) {
        n += s->events[kind][i] != 0 && s->events[kind][i] >= since_ms;
    }
    return n;
}

int catalog_put_tags(catalog_t *cat, stream_t *s, consumer_t *con, const tag_t *tags, size_t n)
{
    char owner[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 16];
    tag_owner_key(s, con, owner, sizeof owner);
    int rc = begin(cat);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = write_tag_row(cat, owner, tags[i].key, tags[i].value);
    }
    if (rc != 0) {
        rollback(cat);
        return rc;
    }
    rc = commit(cat);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        memory_put_tag(s, con, tags[i].key, tags[i].value);
    }
    return 0;
}

int catalog_remove_tags(catalog_t *cat, stream_t *s, consumer_t *con, const char *const *keys, size_t n)
{
    char owner[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 16];
    tag_owner_key(s, con, owner, sizeof owner);
    int rc = begin(cat);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = delete_rows(cat, "DELETE FROM tags WHERE stream=? AND key=?", owner, keys[i]);
    }
    if (rc != 0) {
        rollback(cat);
        return rc;
    }
    rc = commit(cat);
    if (rc != 0) {
        return rc;
    }
    tag_t **tags;
    size_t *count;
    tag_owner(s, con, &tags, &count);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < *count; j++) {
            if (strcmp((*tags)[j].key, keys[i]) == 0) {
                free((*tags)[j].key);
                free((*tags)[j].value);
                memmove(&(*tags)[j], &(*tags)[j + 1], (*count - j - 1) * sizeof **tags);
                (*count)--;
                break;
            }
        }
    }
    return 0;
}

void catalog_set_drop_hook(catalog_t *cat, catalog_drop_hook_fn fn, void *arg)
{
    cat->drop_hook = fn;
    cat->drop_hook_arg = arg;
}

int catalog_drop_stream(catalog_t *cat, stream_t *s)
{
    int rc = begin(cat);
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM tags WHERE stream=?", s->name, NULL);
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM shards WHERE stream=?", s->name, NULL);
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM stream_events WHERE stream=?", s->name, NULL);
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM consumers WHERE stream=?", s->name, NULL);
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM resource_policies WHERE owner=?", s->name, NULL);
    }
    for (size_t i = 0; rc == 0 && i < s->consumer_count; i++) {
        char owner[STREAM_NAME_MAX + CONSUMER_NAME_MAX + 16];
        tag_owner_key(s, &s->consumers[i], owner, sizeof owner);
        rc = delete_rows(cat, "DELETE FROM tags WHERE stream=?", owner, NULL);
        if (rc == 0) {
            rc = delete_rows(cat, "DELETE FROM resource_policies WHERE owner=?", owner, NULL);
        }
    }
    if (rc == 0) {
        rc = delete_rows(cat, "DELETE FROM streams WHERE name=?", s->name, NULL);
    }
    if (rc != 0) {
        rollback(cat);
        return rc;
    }
    rc = commit(cat);
    if (rc != 0) {
        return rc;
    }
    if (cat->drop_hook != NULL) {
        cat->drop_hook(cat->drop_hook_arg, s);
    }
    size_t at = lower_bound(cat, s->name);
    memmove(cat->streams + at, cat->streams + at + 1, (cat->count - at - 1) * sizeof *cat->streams);
    cat->count--;
    size_t policies = s->policy != NULL;
    for (size_t i = 0; i < s->consumer_count; i++) {
        policies += s->consumers[i].policy != NULL;
    }
    atomic_fetch_sub(&cat->policies, policies);
    stream_free(s);
    return 0;
}

void catalog_settle(catalog_t *cat, int64_t now_ms)
{
    for (size_t i = 0; i < cat->count;) {
        stream_t *s = cat->streams[i];
        settle_consumers(cat, s, now_ms);
        bool transitional = s->cfg.status != STREAM_ACTIVE;
        if (!transitional || now_ms < s->cfg.status_due_ms) {
            i++;
            continue;
        }
        if (s->cfg.status == STREAM_DELETING) {
            if (catalog_drop_stream(cat, s) != 0) {
                i++; /* try again on the next settle */
            }
            continue;
        }
        stream_config_t cfg = s->cfg;
        cfg.status = cfg.target_status;
        cfg.status_due_ms = 0;
        if (catalog_update_config(cat, s, &cfg) != 0) {
            log_warn("catalog: cannot settle stream %s; will retry", s->name);
        }
        i++;
    }
}

int catalog_get_setting(catalog_t *cat, const char *key, char *value, size_t value_len)
{
    sqlite3_stmt *st = prepare(cat, "SELECT value FROM settings WHERE key=?");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, key);
    int rc = -ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(value, value_len, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

int catalog_set_setting(catalog_t *cat, const char *key, const char *value)
{
    sqlite3_stmt *st = prepare(cat, "INSERT OR REPLACE INTO settings(key, value) VALUES(?,?)");
    if (st == NULL) {
        return -EIO;
    }
    text(st, 1, key);
    text(st, 2, value);
    return run(cat, st);
}
