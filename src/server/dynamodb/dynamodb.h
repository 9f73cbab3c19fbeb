/*
 * dynamodb: the subset of the DynamoDB API that the KCL's lease management uses (docs/DYNAMODB.md), served
 * on eddy's endpoint. protocol.c routes requests whose X-Amz-Target starts with DDB_TARGET_PREFIX here,
 * after authentication (SigV4 scope service "dynamodb").
 *
 * Replies are application/x-amz-json-1.0 with DynamoDB's error shape ({"__type", "message"}). Every
 * operation runs under the catalog's write lock (items live in catalog.db, store.h), so conditional writes
 * are atomic, and a write is durable before its reply.
 */
#ifndef EDDY_SERVER_DYNAMODB_H
#define EDDY_SERVER_DYNAMODB_H

#include <stddef.h>
#include <stdint.h>

#include "server/http.h"
#include "server/server.h"

#define DDB_TARGET_PREFIX "DynamoDB_20120810."

/* Creates the DynamoDB tables (ddb_tables, ddb_items) in the catalog's database when missing. Called by
 * server_start under the catalog write lock. Returns 0, or -EIO (logged). */
int ddb_init(server_t *srv);

/* Handles one request and replies (always, exactly once). op/oplen: the operation name after the prefix
 * (a view into the request). request_id and start_us (monotonic) are for the request log and metrics.
 * @thread loop */
void ddb_handle(server_t *srv, http_request_t *req, const char *request_id, int64_t start_us, const char *op,
                size_t oplen);

#endif
