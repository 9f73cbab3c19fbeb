/*
 * ddb store: the DynamoDB subset's tables and items in eddy's catalog database (catalog.db), next to the
 * Kinesis catalog, through the catalog's own SQLite connection (catalog_sqlite).
 *
 * Schema (created on first use; docs/DYNAMODB.md):
 *   ddb_tables(name TEXT PRIMARY KEY, description TEXT, created_ms INTEGER, active_ms INTEGER)
 *       description: JSON {KeySchema, AttributeDefinitions, BillingMode, ProvisionedThroughput}; the table
 *       is CREATING until active_ms (exact across restarts, like the streams' due times).
 *   ddb_items(table_name TEXT, hash_key BLOB, range_key BLOB, item TEXT, PRIMARY KEY(table_name, hash_key,
 *       range_key)) WITHOUT ROWID
 *       keys are encoded as "<type>:<value>" (numbers in canonical decimal form, so that 1 and 1.0 are one
 *       key); range_key is empty for tables without a range key; item is the item's DynamoDB JSON.
 *
 * Durability: each mutation is one statement or one transaction on a WAL connection with synchronous=FULL,
 * so it is on disk when the function returns 0. Recovery is SQLite's.
 *
 * Thread: every function requires the catalog's write lock (the connection is not thread-safe). Functions
 * return 0 on success, 1 for "not found" where stated, -1 on a SQLite error (logged by the caller).
 */
#ifndef EDDY_SERVER_DYNAMODB_STORE_H
#define EDDY_SERVER_DYNAMODB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sqlite3;

int ddb_store_init(struct sqlite3 *db);
/* *desc_json malloc'd (caller frees). 1 when there is no such table. */
int ddb_store_get_table(struct sqlite3 *db, const char *name, char **desc_json, int64_t *created_ms,
                        int64_t *active_ms);
int ddb_store_put_table(struct sqlite3 *db, const char *name, const char *desc_json, int64_t created_ms,
                        int64_t active_ms);
/* Removes the table and all its items in one transaction. */
int ddb_store_drop_table(struct sqlite3 *db, const char *name);
/* Calls fn with each table name > after (after NULL: from the start), in name order, until fn returns false. */
typedef bool (*ddb_store_name_fn)(void *arg, const char *name);
int ddb_store_list_tables(struct sqlite3 *db, const char *after, ddb_store_name_fn fn, void *arg);
int ddb_store_count(struct sqlite3 *db, const char *table, int64_t *items, int64_t *bytes);

/* *item_json malloc'd. 1 when there is no such item. */
int ddb_store_get_item(struct sqlite3 *db, const char *table, const void *hk, size_t hkn, const void *rk, size_t rkn,
                       char **item_json);
int ddb_store_put_item(struct sqlite3 *db, const char *table, const void *hk, size_t hkn, const void *rk, size_t rkn,
                       const char *item_json);
int ddb_store_delete_item(struct sqlite3 *db, const char *table, const void *hk, size_t hkn, const void *rk,
                          size_t rkn);

/* Visits items in key order (views valid during the call); stops when fn returns false. scan: the whole
 * table, after the key (ahk, ark) when ahk is not NULL; partition: the items of one hash key. */
typedef bool (*ddb_store_item_fn)(void *arg, const void *hk, size_t hkn, const void *rk, size_t rkn,
                                  const char *item_json);
int ddb_store_scan(struct sqlite3 *db, const char *table, const void *ahk, size_t ahkn, const void *ark, size_t arkn,
                   ddb_store_item_fn fn, void *arg);
int ddb_store_partition(struct sqlite3 *db, const char *table, const void *hk, size_t hkn, ddb_store_item_fn fn,
                        void *arg);

#endif
