/* ddb store: DynamoDB tables and items in catalog.db (format and contract in store.h). */
#include "server/dynamodb/store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS ddb_tables(name TEXT PRIMARY KEY, description TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, active_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ddb_items(table_name TEXT NOT NULL, hash_key BLOB NOT NULL,"
    " range_key BLOB NOT NULL, item TEXT NOT NULL, PRIMARY KEY(table_name, hash_key, range_key)) WITHOUT ROWID;";

int ddb_store_init(sqlite3 *db)
{
    return sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static char *dup_text(const unsigned char *s)
{
    const char *t = s != NULL ? (const char *)s : "";
    char *d = strdup(t);
    if (d == NULL) {
        abort();
    }
    return d;
}

int ddb_store_get_table(sqlite3 *db, const char *name, char **desc_json, int64_t *created_ms, int64_t *active_ms)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT description, created_ms, active_ms FROM ddb_tables WHERE name = ?", -1, &st,
                           NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
    if (rc == SQLITE_ROW) {
        *desc_json = dup_text(sqlite3_column_text(st, 0));
        *created_ms = sqlite3_column_int64(st, 1);
        *active_ms = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return out;
}

int ddb_store_put_table(sqlite3 *db, const char *name, const char *desc_json, int64_t created_ms, int64_t active_ms)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO ddb_tables(name, description, created_ms, active_ms)"
                               " VALUES(?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, desc_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, created_ms);
    sqlite3_bind_int64(st, 4, active_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int exec_name(sqlite3 *db, const char *sql, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int ddb_store_drop_table(sqlite3 *db, const char *name)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        return -1;
    }
    if (exec_name(db, "DELETE FROM ddb_items WHERE table_name = ?", name) != 0 ||
        exec_name(db, "DELETE FROM ddb_tables WHERE name = ?", name) != 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int ddb_store_list_tables(sqlite3 *db, const char *after, ddb_store_name_fn fn, void *arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name FROM ddb_tables WHERE name > ? ORDER BY name", -1, &st, NULL) !=
        SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, after != NULL ? after : "", -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fn(arg, (const char *)sqlite3_column_text(st, 0))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int ddb_store_count(sqlite3 *db, const char *table, int64_t *items, int64_t *bytes)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(length(item)), 0) FROM ddb_items WHERE table_name = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *items = sqlite3_column_int64(st, 0);
        *bytes = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static void bind_key(sqlite3_stmt *st, int col, const void *k, size_t n)
{
    sqlite3_bind_blob(st, col, n ? k : "", (int)n, SQLITE_STATIC);
}

int ddb_store_get_item(sqlite3 *db, const char *table, const void *hk, size_t hkn, const void *rk, size_t rkn,
                       char **item_json)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT item FROM ddb_items WHERE table_name = ? AND hash_key = ? AND range_key = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    bind_key(st, 2, hk, hkn);
    bind_key(st, 3, rk, rkn);
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
    if (rc == SQLITE_ROW) {
        *item_json = dup_text(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
}

int ddb_store_put_item(sqlite3 *db, const char *table, const void *hk, size_t hkn, const void *rk, size_t rkn,
                       const char *item_json)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO ddb_items(table_name, hash_key, range_key, item)"
                               " VALUES(?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    bind_key(st, 2, hk, hkn);
    bind_key(st, 3, rk, rkn);
    sqlite3_bind_text(st, 4, item_json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int ddb_store_delete_item(sqlite3 *db, const char *table, const void *hk, size_t hkn, const void *rk, size_t rkn)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "DELETE FROM ddb_items WHERE table_name = ? AND hash_key = ? AND range_key = ?", -1,
                           &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    bind_key(st, 2, hk, hkn);
    bind_key(st, 3, rk, rkn);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int visit(sqlite3_stmt *st, ddb_store_item_fn fn, void *arg)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fn(arg, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 1),
                (size_t)sqlite3_column_bytes(st, 1), (const char *)sqlite3_column_text(st, 2))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int ddb_store_scan(sqlite3 *db, const char *table, const void *ahk, size_t ahkn, const void *ark, size_t arkn,
                   ddb_store_item_fn fn, void *arg)
{
    sqlite3_stmt *st;
    const char *sql = ahk != NULL ? "SELECT hash_key, range_key, item FROM ddb_items WHERE table_name = ?"
                                    " AND (hash_key, range_key) > (?, ?) ORDER BY hash_key, range_key"
                                  : "SELECT hash_key, range_key, item FROM ddb_items WHERE table_name = ?"
                                    " ORDER BY hash_key, range_key";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    if (ahk != NULL) {
        bind_key(st, 2, ahk, ahkn);
        bind_key(st, 3, ark, arkn);
    }
    return visit(st, fn, arg);
}

int ddb_store_partition(sqlite3 *db, const char *table, const void *hk, size_t hkn, ddb_store_item_fn fn, void *arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT hash_key, range_key, item FROM ddb_items WHERE table_name = ?"
                               " AND hash_key = ? ORDER BY range_key", -1, &st, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    bind_key(st, 2, hk, hkn);
    return visit(st, fn, arg);
}
