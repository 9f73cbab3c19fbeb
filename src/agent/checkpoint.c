/* checkpoint: the SQLite checkpoint store (format in checkpoint.h). */
#include "agent/checkpoint.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

struct ckpt_store {
    sqlite3 *db;
    sqlite3_stmt *put, *del, *load;
};

/* mkdir -p of path's folder */
static int make_parent(const char *path)
{
    char *dir = strdup(path);
    if (dir == NULL) {
        return -ENOMEM;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
                int e = -errno;
                free(dir);
                return e;
            }
            *p = '/';
        }
    }
    int rc = mkdir(dir, 0755) != 0 && errno != EEXIST ? -errno : 0;
    free(dir);
    return rc;
}

ckpt_store_t *ckpt_open(const char *path, char *err, size_t errlen)
{
    ckpt_store_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = make_parent(path);
    if (rc != 0) {
        snprintf(err, errlen, "checkpointFile %s: cannot create its folder: %s", path, strerror(-rc));
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "checkpointFile %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    const char *setup = "PRAGMA journal_mode=WAL;"
                        "PRAGMA synchronous=FULL;"
                        "CREATE TABLE IF NOT EXISTS eddy_file_checkpoints ("
                        " flow TEXT NOT NULL, id INTEGER NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                        " path TEXT NOT NULL, fingerprint BLOB NOT NULL, offset INTEGER NOT NULL,"
                        " updated INTEGER NOT NULL, PRIMARY KEY (flow, id));";
    char *msg = NULL;
    if (sqlite3_exec(s->db, setup, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "checkpointFile %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        goto fail;
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO eddy_file_checkpoints (flow, id, dev, ino, path, fingerprint, offset,"
                           " updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           -1, &s->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM eddy_file_checkpoints WHERE flow = ?1 AND id = ?2", -1, &s->del,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "SELECT id, dev, ino, path, fingerprint, offset, updated FROM eddy_file_checkpoints"
                           " WHERE flow = ?1 ORDER BY id",
                           -1, &s->load, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "checkpointFile %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    return s;
fail:
    ckpt_close(s);
    return NULL;
}

void ckpt_close(ckpt_store_t *s)
{
    if (s == NULL) {
        return;
    }
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->del);
    sqlite3_finalize(s->load);
    sqlite3_close(s->db);
    free(s);
}

void ckpt_rows_free(ckpt_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].path);
        free(rows[i].fingerprint);
    }
    free(rows);
}

int ckpt_load(ckpt_store_t *s, const char *flow, ckpt_row_t **rows, size_t *n)
{
    *rows = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_reset(s->load);
    sqlite3_bind_text(s->load, 1, flow, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(s->load)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            ckpt_row_t *grown = realloc(*rows, cap * sizeof *grown);
            if (grown == NULL) {
                goto fail;
            }
            *rows = grown;
        }
        ckpt_row_t *r = &(*rows)[*n];
        memset(r, 0, sizeof *r);
        r->id = (uint64_t)sqlite3_column_int64(s->load, 0);
        r->dev = (uint64_t)sqlite3_column_int64(s->load, 1);
        r->ino = (uint64_t)sqlite3_column_int64(s->load, 2);
        const unsigned char *p = sqlite3_column_text(s->load, 3);
        r->path = strdup(p != NULL ? (const char *)p : "");
        int fl = sqlite3_column_bytes(s->load, 4);
        r->fingerprint_len = fl > 0 && fl <= CKPT_FINGERPRINT_MAX ? (size_t)fl : 0;
        r->fingerprint = malloc(r->fingerprint_len + 1);
        (*n)++;
        if (r->path == NULL || r->fingerprint == NULL) {
            goto fail;
        }
        if (r->fingerprint_len > 0) {
            memcpy(r->fingerprint, sqlite3_column_blob(s->load, 4), r->fingerprint_len);
        }
        r->offset = sqlite3_column_int64(s->load, 5);
        r->updated_ms = sqlite3_column_int64(s->load, 6);
        if (r->offset < 0) {
            r->offset = 0;
        }
    }
    sqlite3_reset(s->load);
    if (rc != SQLITE_DONE) {
        log_error("agent: reading checkpoints: %s", sqlite3_errmsg(s->db));
        goto fail;
    }
    return 0;
fail:
    sqlite3_reset(s->load);
    ckpt_rows_free(*rows, *n);
    *rows = NULL;
    *n = 0;
    return -1;
}

uint64_t ckpt_max_id(ckpt_store_t *s)
{
    sqlite3_stmt *st = NULL;
    uint64_t id = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT MAX(id) FROM eddy_file_checkpoints", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        id = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return id;
}

static int exec(ckpt_store_t *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("agent: checkpoints: %s: %s", sql, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int ckpt_begin(ckpt_store_t *s)
{
    return exec(s, "BEGIN IMMEDIATE");
}

int ckpt_commit(ckpt_store_t *s)
{
    if (exec(s, "COMMIT") != 0) {
        exec(s, "ROLLBACK");
        return -1;
    }
    return 0;
}

int ckpt_put(ckpt_store_t *s, const char *flow, const ckpt_row_t *row)
{
    sqlite3_stmt *st = s->put;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, flow, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)row->id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)row->dev);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)row->ino);
    sqlite3_bind_text(st, 5, row->path, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, row->fingerprint_len > 0 ? (const void *)row->fingerprint : "", (int)row->fingerprint_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, row->offset);
    sqlite3_bind_int64(st, 8, row->updated_ms);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        log_error("agent: writing a checkpoint: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

int ckpt_delete(ckpt_store_t *s, const char *flow, uint64_t id)
{
    sqlite3_stmt *st = s->del;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, flow, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int ckpt_prune(ckpt_store_t *s, int64_t before_ms)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM eddy_file_checkpoints WHERE updated < ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, before_ms);
        if (sqlite3_step(st) == SQLITE_DONE) {
            n = sqlite3_changes(s->db);
        }
    }
    sqlite3_finalize(st);
    return n;
}
