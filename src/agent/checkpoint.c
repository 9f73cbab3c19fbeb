/* checkpoint: the SQLite checkpoint store (format in checkpoint.h). */
#include "agent/checkpoint.h"

#include <errno.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

struct ckpt_store {
    sqlite3 *db;
    sqlite3_stmt *put, *put_offset, *del, *del_offset, *load;
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
    /* Tables of the first release (one eddy_file_checkpoints table) are moved into the two of now. */
    const char *setup =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=FULL;"
        "BEGIN IMMEDIATE;"
        "CREATE TABLE IF NOT EXISTS eddy_files ("
        " id INTEGER PRIMARY KEY, flow TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
        " path TEXT NOT NULL, fingerprint BLOB NOT NULL);"
        "CREATE INDEX IF NOT EXISTS eddy_files_by_flow ON eddy_files (flow);"
        "CREATE TABLE IF NOT EXISTS eddy_file_offsets ("
        " id INTEGER PRIMARY KEY, offset INTEGER NOT NULL, updated INTEGER NOT NULL);";
    const char *migrate =
        "INSERT OR REPLACE INTO eddy_files (id, flow, dev, ino, path, fingerprint)"
        " SELECT id, flow, dev, ino, path, fingerprint FROM eddy_file_checkpoints;"
        "INSERT OR REPLACE INTO eddy_file_offsets (id, offset, updated)"
        " SELECT id, offset, updated FROM eddy_file_checkpoints;"
        "DROP TABLE eddy_file_checkpoints;";
    const char *view = "CREATE VIEW IF NOT EXISTS eddy_file_checkpoints AS"
                       " SELECT f.flow, f.id, f.dev, f.ino, f.path, f.fingerprint, o.offset, o.updated"
                       " FROM eddy_files f JOIN eddy_file_offsets o USING (id);"
                       "COMMIT;";
    char *msg = NULL;
    bool old = false;
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(s->db, setup, NULL, NULL, &msg) == SQLITE_OK &&
        sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'eddy_file_checkpoints'",
                           -1, &st, NULL) == SQLITE_OK) {
        old = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (msg != NULL || (old && sqlite3_exec(s->db, migrate, NULL, NULL, &msg) != SQLITE_OK) ||
        sqlite3_exec(s->db, view, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "checkpointFile %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        goto fail;
    }
    if (old) {
        log_info("agent: checkpointFile %s: checkpoints moved to this version's tables", path);
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO eddy_files (id, flow, dev, ino, path, fingerprint)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &s->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO eddy_file_offsets (id, offset, updated) VALUES (?1, ?2, ?3)",
                           -1, &s->put_offset, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM eddy_files WHERE id = ?1", -1, &s->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM eddy_file_offsets WHERE id = ?1", -1, &s->del_offset, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "SELECT f.id, f.dev, f.ino, f.path, f.fingerprint, o.offset, o.updated"
                           " FROM eddy_files f JOIN eddy_file_offsets o USING (id) WHERE f.flow = ?1 ORDER BY f.id",
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
    sqlite3_finalize(s->put_offset);
    sqlite3_finalize(s->del);
    sqlite3_finalize(s->del_offset);
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
    if (sqlite3_prepare_v2(s->db, "SELECT MAX(id) FROM eddy_files", -1, &st, NULL) == SQLITE_OK &&
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

static int step(ckpt_store_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        log_error("agent: %s: %s", what, sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

int ckpt_put(ckpt_store_t *s, const char *flow, const ckpt_row_t *row)
{
    sqlite3_stmt *st = s->put;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)row->id);
    sqlite3_bind_text(st, 2, flow, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)row->dev);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)row->ino);
    sqlite3_bind_text(st, 5, row->path, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, row->fingerprint_len > 0 ? (const void *)row->fingerprint : "", (int)row->fingerprint_len,
                      SQLITE_STATIC);
    if (step(s, st, "writing a checkpoint") != 0) {
        return -1;
    }
    return ckpt_put_offset(s, row->id, row->offset, row->updated_ms);
}

int ckpt_put_offset(ckpt_store_t *s, uint64_t id, int64_t offset, int64_t updated_ms)
{
    sqlite3_stmt *st = s->put_offset;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, offset);
    sqlite3_bind_int64(st, 3, updated_ms);
    return step(s, st, "writing a checkpoint");
}

int ckpt_delete(ckpt_store_t *s, uint64_t id)
{
    sqlite3_bind_int64(s->del, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(s->del_offset, 1, (sqlite3_int64)id);
    int rc = step(s, s->del, "deleting a checkpoint");
    return rc | step(s, s->del_offset, "deleting a checkpoint");
}

int ckpt_prune(ckpt_store_t *s, int64_t before_ms)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "DELETE FROM eddy_files WHERE id NOT IN (SELECT id FROM eddy_file_offsets WHERE updated >= %lld);"
             "DELETE FROM eddy_file_offsets WHERE id NOT IN (SELECT id FROM eddy_files);",
             (long long)before_ms);
    if (ckpt_begin(s) != 0) {
        return -1;
    }
    int before = sqlite3_total_changes(s->db);
    if (exec(s, sql) != 0) {
        exec(s, "ROLLBACK");
        return -1;
    }
    int removed = sqlite3_total_changes(s->db) - before;
    return ckpt_commit(s) == 0 ? removed / 2 : -1;
}
