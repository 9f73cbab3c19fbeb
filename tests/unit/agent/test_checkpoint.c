/*
 * Unit tests for agent/checkpoint: rows round-trip, an offset-only write keeps the identity, deletes and
 * pruning, and a checkpoint file of the first release (one eddy_file_checkpoints table) is moved into the
 * two tables of now without losing a row.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/checkpoint.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/eddy-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sub/checkpoints", dir); /* the folder is created too */
}

static void teardown(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static ckpt_store_t *open_store(void)
{
    char err[300] = "";
    ckpt_store_t *s = ckpt_open(path, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    return s;
}

static ckpt_row_t row(uint64_t id, const char *p, const char *fp, int64_t offset, int64_t updated)
{
    return (ckpt_row_t){.id = id, .dev = 7, .ino = 100 + id, .path = (char *)p, .fingerprint = (unsigned char *)fp,
                        .fingerprint_len = strlen(fp), .offset = offset, .updated_ms = updated};
}

TestSuite(checkpoint, .init = setup, .fini = teardown);

Test(checkpoint, rows_round_trip_and_offsets_alone)
{
    ckpt_store_t *s = open_store();
    cr_assert_eq(ckpt_max_id(s), 0);
    ckpt_row_t a = row(1, "/l/a.log", "first line of a\n", 10, 1000);
    ckpt_row_t b = row(2, "/l/b.log", "first line of b\n", 20, 1000);
    ckpt_row_t c = row(3, "/m/c.log", "c\n", 30, 1000);
    cr_assert_eq(ckpt_begin(s), 0);
    cr_assert_eq(ckpt_put(s, "flow-1", &a), 0);
    cr_assert_eq(ckpt_put(s, "flow-1", &b), 0);
    cr_assert_eq(ckpt_put(s, "flow-2", &c), 0);
    cr_assert_eq(ckpt_commit(s), 0);
    cr_assert_eq(ckpt_begin(s), 0);
    cr_assert_eq(ckpt_put_offset(s, 2, 4096, 2000), 0);
    cr_assert_eq(ckpt_commit(s), 0);
    ckpt_close(s);

    s = open_store();
    cr_assert_eq(ckpt_max_id(s), 3);
    ckpt_row_t *rows;
    size_t n;
    cr_assert_eq(ckpt_load(s, "flow-1", &rows, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(rows[0].id, 1);
    cr_assert_eq(rows[0].offset, 10);
    cr_assert_eq(rows[1].id, 2);
    cr_assert_str_eq(rows[1].path, "/l/b.log");
    cr_assert_eq(rows[1].ino, 102);
    cr_assert_eq(rows[1].fingerprint_len, strlen("first line of b\n"));
    cr_assert(memcmp(rows[1].fingerprint, "first line of b\n", rows[1].fingerprint_len) == 0);
    cr_assert_eq(rows[1].offset, 4096);
    cr_assert_eq(rows[1].updated_ms, 2000);
    ckpt_rows_free(rows, n);

    cr_assert_eq(ckpt_begin(s), 0);
    cr_assert_eq(ckpt_delete(s, 1), 0);
    cr_assert_eq(ckpt_commit(s), 0);
    cr_assert_eq(ckpt_load(s, "flow-1", &rows, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(rows[0].id, 2);
    ckpt_rows_free(rows, n);

    /* pruning: flow-2's file was last updated at 1000, flow-1's at 2000 */
    cr_assert_eq(ckpt_prune(s, 1500), 1);
    cr_assert_eq(ckpt_load(s, "flow-2", &rows, &n), 0);
    cr_assert_eq(n, 0);
    ckpt_rows_free(rows, n);
    cr_assert_eq(ckpt_load(s, "flow-1", &rows, &n), 0);
    cr_assert_eq(n, 1);
    ckpt_rows_free(rows, n);
    ckpt_close(s);
}

Test(checkpoint, a_first_release_file_is_moved_to_the_new_tables)
{
    char err[300] = "";
    ckpt_store_t *s = ckpt_open(path, err, sizeof err); /* makes the folder */
    cr_assert_not_null(s, "%s", err);
    ckpt_close(s);
    unlink(path);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    const char *old = "CREATE TABLE eddy_file_checkpoints ("
                      " flow TEXT NOT NULL, id INTEGER NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                      " path TEXT NOT NULL, fingerprint BLOB NOT NULL, offset INTEGER NOT NULL,"
                      " updated INTEGER NOT NULL, PRIMARY KEY (flow, id));"
                      "INSERT INTO eddy_file_checkpoints VALUES ('f', 5, 1, 2, '/x/a', X'6162630a', 123, 9000);"
                      "INSERT INTO eddy_file_checkpoints VALUES ('f', 9, 1, 3, '/x/b', X'', 0, 9000);"
                      "INSERT INTO eddy_file_checkpoints VALUES ('g', 7, 1, 4, '/y/c', X'63', 77, 9000);";
    cr_assert_eq(sqlite3_exec(db, old, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    s = open_store();
    cr_assert_eq(ckpt_max_id(s), 9);
    ckpt_row_t *rows;
    size_t n;
    cr_assert_eq(ckpt_load(s, "f", &rows, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(rows[0].id, 5);
    cr_assert_eq(rows[0].ino, 2);
    cr_assert_eq(rows[0].offset, 123);
    cr_assert_eq(rows[0].fingerprint_len, 4);
    cr_assert(memcmp(rows[0].fingerprint, "abc\n", 4) == 0);
    cr_assert_eq(rows[1].id, 9);
    cr_assert_eq(rows[1].fingerprint_len, 0);
    ckpt_rows_free(rows, n);
    cr_assert_eq(ckpt_load(s, "g", &rows, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(rows[0].offset, 77);
    ckpt_rows_free(rows, n);
    ckpt_close(s);

    /* the view stands where the table was, for people and scripts */
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT SUM(offset) FROM eddy_file_checkpoints", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int64(st, 0), 200);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
