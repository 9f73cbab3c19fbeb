/*
 * lease: the consumer's lease table in DynamoDB (KCL schema, kinesis-family.md §3.1) and the taker's
 * arithmetic (§3.3, with the faster stealing eddy promises).
 *
 * Every write is conditional, as the KCL's:
 *   create      attribute_not_exists(leaseKey)
 *   renew       leaseCounter = mine AND leaseOwner = me          -> leaseCounter + 1
 *   take        leaseCounter = seen                              -> leaseOwner = me, leaseCounter + 1,
 *                                                                   ownerSwitchesSinceCheckpoint + 1
 *   checkpoint  leaseCounter = mine AND leaseOwner = me          -> checkpoint, checkpointSubSequenceNumber,
 *                                                                   ownerSwitchesSinceCheckpoint = 0,
 *                                                                   childShardIds (at SHARD_END), counter + 1
 *   release     leaseCounter = mine AND leaseOwner = me          -> REMOVE leaseOwner, leaseCounter + 1
 * A failed condition is LEASE_CONFLICT (someone else changed the lease); other failures are eddy_err_t.
 * Functions block on the DynamoDB client (eddy_client_call): never call them on a client's I/O thread.
 */
#ifndef EDDY_CONSUMER_LEASE_H
#define EDDY_CONSUMER_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/client.h"

#define LEASE_CONFLICT 1 /* ConditionalCheckFailedException */
#define LEASE_KEY_MAX 256
#define LEASE_OWNER_MAX 256
#define LEASE_CHECKPOINT_MAX 130 /* a sequence number (<= 128 digits) or a sentinel */
#define LEASE_PARENTS_MAX 2

typedef struct lease {
    char key[LEASE_KEY_MAX];     /* the shard id */
    char owner[LEASE_OWNER_MAX]; /* "" when unassigned */
    int64_t counter;
    char checkpoint[LEASE_CHECKPOINT_MAX]; /* TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END or a number */
    uint64_t sub_sequence;
    int64_t owner_switches;
    char parents[LEASE_PARENTS_MAX][LEASE_KEY_MAX];
    int nparents;
    char start_hash[48], end_hash[48]; /* the shard's hash key range in decimal, "" when not recorded */
} lease_t;

/* Creates the table (leaseKey S HASH, PAY_PER_REQUEST) unless it exists, then waits until it is ACTIVE. */
int lease_table_ensure(eddy_client_t *ddb, const char *table, char *err, size_t errlen);
/* Every lease (consistent scan, all pages). *out: a malloc'd array the caller frees. */
int lease_scan(eddy_client_t *ddb, const char *table, lease_t **out, size_t *n, char *err, size_t errlen);
/* One lease (consistent read); 1 when it does not exist. */
int lease_get(eddy_client_t *ddb, const char *table, const char *key, lease_t *out, char *err, size_t errlen);
/* A new unowned lease at l->checkpoint with its parents and hash range (when not ""); LEASE_CONFLICT when
 * it exists already. */
int lease_create(eddy_client_t *ddb, const char *table, const lease_t *l, char *err, size_t errlen);
int lease_renew(eddy_client_t *ddb, const char *table, const char *key, const char *owner, int64_t counter,
                char *err, size_t errlen);
/* Takes a lease last seen with (seen_counter, seen_owner); on success the counter is seen_counter + 1. */
int lease_take(eddy_client_t *ddb, const char *table, const char *key, int64_t seen_counter, const char *seen_owner,
               const char *me, char *err, size_t errlen);
/* children: the child shard ids to record (SHARD_END), or none. */
int lease_checkpoint(eddy_client_t *ddb, const char *table, const char *key, const char *owner, int64_t counter,
                     const char *checkpoint, uint64_t sub_sequence, const char *const *children, size_t nchildren,
                     char *err, size_t errlen);
int lease_release(eddy_client_t *ddb, const char *table, const char *key, const char *owner, int64_t counter,
                  char *err, size_t errlen);

/* ---- the taker's arithmetic (pure) ---- */

typedef struct lease_view {
    const char *owner; /* "" or NULL when unowned */
    bool available;    /* unowned or expired */
} lease_view_t;

/* Which leases worker `me` should take now: indexes into leases, written to pick (room for n), count
 * returned. Leases available are taken first (at random, via rng); then, if still below the target
 * (ceil(leases / workers), workers = the owners of unavailable leases plus me, capped by max_leases), the
 * excess of every worker above the target is stolen, most loaded first, at least one lease when two or more
 * are needed and some worker holds more than me + 1. `mine` counts the leases me holds. */
size_t lease_plan_take(const lease_view_t *leases, size_t n, const char *me, size_t max_leases, uint64_t *rng,
                       size_t *pick);

#endif
