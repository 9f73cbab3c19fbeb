/*
 * lease: the lease table through DynamoDB's JSON API (lease.h has the conditions of every write).
 * Requests are built with cJSON; numbers travel as DynamoDB's decimal strings.
 */
#include "consumer/lease.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

#define TABLE_ACTIVE_WAIT_MS 60000

static void set_err(char *err, size_t errlen, const char *op, const eddy_response_t *r, int rc)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s: %s%s%s", op,
                 r != NULL && r->error_type[0] ? r->error_type : eddy_err_name(rc),
                 r != NULL && r->message[0] ? ": " : "", r != NULL ? r->message : "");
    }
}

/* Calls op with the JSON j (freed). *out: the parsed reply (caller frees) when wanted. Returns 0,
 * LEASE_CONFLICT, 2 for ResourceNotFoundException, 3 for ResourceInUseException, or an eddy_err_t. */
static int call(eddy_client_t *ddb, const char *op, cJSON *j, cJSON **out, char *err, size_t errlen)
{
    if (out != NULL) {
        *out = NULL;
    }
    char *body = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (body == NULL) {
        set_err(err, errlen, op, NULL, EDDY_ERR_NOMEM);
        return EDDY_ERR_NOMEM;
    }
    eddy_response_t *r = NULL;
    int rc = eddy_client_call(ddb, op, body, strlen(body), &r);
    free(body);
    if (rc == EDDY_ERR_SERVICE) {
        if (strcmp(r->error_type, "ConditionalCheckFailedException") == 0) {
            rc = LEASE_CONFLICT;
        } else if (strcmp(r->error_type, "ResourceNotFoundException") == 0) {
            rc = 2;
        } else if (strcmp(r->error_type, "ResourceInUseException") == 0) {
            rc = 3;
        }
    }
    if (rc < 0) {
        set_err(err, errlen, op, r, rc);
    } else if (rc == EDDY_OK && out != NULL) {
        *out = cJSON_ParseWithLength(r->body, r->body_len);
        if (*out == NULL) {
            set_err(err, errlen, op, NULL, EDDY_ERR_PROTOCOL);
            rc = EDDY_ERR_PROTOCOL;
        }
    }
    eddy_response_free(r);
    return rc;
}

static cJSON *attr(const char *type, const char *value)
{
    cJSON *a = cJSON_CreateObject();
    if (a != NULL && cJSON_AddStringToObject(a, type, value) == NULL) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

static cJSON *num_attr(int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    return attr("N", s);
}

static cJSON *key_of(const char *key)
{
    cJSON *k = cJSON_CreateObject();
    if (k != NULL) {
        cJSON_AddItemToObject(k, "leaseKey", attr("S", key));
    }
    return k;
}

static cJSON *request(const char *table, const char *key)
{
    cJSON *j = cJSON_CreateObject();
    if (j != NULL) {
        cJSON_AddStringToObject(j, "TableName", table);
        if (key != NULL) {
            cJSON_AddItemToObject(j, "Key", key_of(key));
        }
    }
    return j;
}

int lease_table_ensure(eddy_client_t *ddb, const char *table, char *err, size_t errlen)
{
    int64_t deadline = clock_monotonic_us() / 1000 + TABLE_ACTIVE_WAIT_MS;
    bool created = false;
    for (;;) {
        cJSON *reply = NULL;
        int rc = call(ddb, "DescribeTable", request(table, NULL), &reply, err, errlen);
        if (rc == 2 && !created) {
            cJSON *j = request(table, NULL);
            cJSON *defs = cJSON_AddArrayToObject(j, "AttributeDefinitions");
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "AttributeName", "leaseKey");
            cJSON_AddStringToObject(d, "AttributeType", "S");
            cJSON_AddItemToArray(defs, d);
            cJSON *schema = cJSON_AddArrayToObject(j, "KeySchema");
            cJSON *k = cJSON_CreateObject();
            cJSON_AddStringToObject(k, "AttributeName", "leaseKey");
            cJSON_AddStringToObject(k, "KeyType", "HASH");
            cJSON_AddItemToArray(schema, k);
            cJSON_AddStringToObject(j, "BillingMode", "PAY_PER_REQUEST");
            rc = call(ddb, "CreateTable", j, NULL, err, errlen);
            if (rc != EDDY_OK && rc != 3) { /* 3: another worker created it first */
                return rc < 0 ? rc : EDDY_ERR_SERVICE;
            }
            created = true;
            continue;
        }
        if (rc != EDDY_OK) {
            cJSON_Delete(reply);
            return rc < 0 ? rc : EDDY_ERR_SERVICE;
        }
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(reply, "Table"),
                                                               "TableStatus");
        bool active = cJSON_IsString(status) && strcmp(status->valuestring, "ACTIVE") == 0;
        cJSON_Delete(reply);
        if (active) {
            return EDDY_OK;
        }
        if (clock_monotonic_us() / 1000 > deadline) {
            snprintf(err, errlen, "the lease table %s did not become ACTIVE within %d s", table,
                     TABLE_ACTIVE_WAIT_MS / 1000);
            return EDDY_ERR_TIMEOUT;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static const char *str_of(const cJSON *item, const char *name, const char *type)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(item, name), type);
    return cJSON_IsString(a) ? a->valuestring : NULL;
}

static void copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* false when the item is not a lease this module can use (no key, or fields out of range). */
static bool parse_item(const cJSON *item, lease_t *l)
{
    memset(l, 0, sizeof *l);
    const char *key = str_of(item, "leaseKey", "S");
    if (key == NULL || strlen(key) >= sizeof l->key) {
        return false;
    }
    copy(l->key, sizeof l->key, key);
    copy(l->owner, sizeof l->owner, str_of(item, "leaseOwner", "S"));
    const char *n = str_of(item, "leaseCounter", "N");
    l->counter = n != NULL ? strtoll(n, NULL, 10) : 0;
    copy(l->checkpoint, sizeof l->checkpoint, str_of(item, "checkpoint", "S"));
    n = str_of(item, "checkpointSubSequenceNumber", "N");
    l->sub_sequence = n != NULL ? strtoull(n, NULL, 10) : 0;
    n = str_of(item, "ownerSwitchesSinceCheckpoint", "N");
    l->owner_switches = n != NULL ? strtoll(n, NULL, 10) : 0;
    copy(l->start_hash, sizeof l->start_hash, str_of(item, "startingHashKey", "S"));
    copy(l->end_hash, sizeof l->end_hash, str_of(item, "endingHashKey", "S"));
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(item, "parentShardId"), "SS");
    const cJSON *p;
    cJSON_ArrayForEach(p, ss)
    {
        if (cJSON_IsString(p) && l->nparents < LEASE_PARENTS_MAX && strlen(p->valuestring) < LEASE_KEY_MAX) {
            copy(l->parents[l->nparents++], LEASE_KEY_MAX, p->valuestring);
        }
    }
    return true;
}

int lease_scan(eddy_client_t *ddb, const char *table, lease_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    lease_t *all = NULL;
    size_t count = 0, cap = 0;
    cJSON *start = NULL;
    for (;;) {
        cJSON *j = request(table, NULL);
        cJSON_AddBoolToObject(j, "ConsistentRead", 1);
        if (start != NULL) {
            cJSON_AddItemToObject(j, "ExclusiveStartKey", start);
            start = NULL;
        }
        cJSON *reply = NULL;
        int rc = call(ddb, "Scan", j, &reply, err, errlen);
        if (rc != EDDY_OK) {
            free(all);
            return rc < 0 ? rc : EDDY_ERR_SERVICE;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(reply, "Items"))
        {
            if (count == cap) {
                size_t bigger = cap ? 2 * cap : 64;
                lease_t *a = realloc(all, bigger * sizeof *a);
                if (a == NULL) {
                    free(all);
                    cJSON_Delete(reply);
                    snprintf(err, errlen, "Scan: out of memory");
                    return EDDY_ERR_NOMEM;
                }
                all = a;
                cap = bigger;
            }
            if (parse_item(item, &all[count])) {
                count++;
            }
        }
        cJSON *last = cJSON_DetachItemFromObjectCaseSensitive(reply, "LastEvaluatedKey");
        cJSON_Delete(reply);
        if (last == NULL || cJSON_GetArraySize(last) == 0) {
            cJSON_Delete(last);
            break;
        }
        start = last;
    }
    *out = all;
    *n = count;
    return EDDY_OK;
}

int lease_get(eddy_client_t *ddb, const char *table, const char *key, lease_t *out, char *err, size_t errlen)
{
    cJSON *j = request(table, key);
    cJSON_AddBoolToObject(j, "ConsistentRead", 1);
    cJSON *reply = NULL;
    int rc = call(ddb, "GetItem", j, &reply, err, errlen);
    if (rc != EDDY_OK) {
        return rc < 0 ? rc : EDDY_ERR_SERVICE;
    }
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(reply, "Item");
    rc = item != NULL && parse_item(item, out) ? EDDY_OK : 1;
    cJSON_Delete(reply);
    return rc;
}

static int write_result(int rc)
{
    return rc == 2 || rc == 3 ? EDDY_ERR_SERVICE : rc;
}

int lease_create(eddy_client_t *ddb, const char *table, const lease_t *l, char *err, size_t errlen)
{
    cJSON *j = request(table, NULL);
    cJSON *item = cJSON_AddObjectToObject(j, "Item");
    cJSON_AddItemToObject(item, "leaseKey", attr("S", l->key));
    cJSON_AddItemToObject(item, "leaseCounter", num_attr(0));
    cJSON_AddItemToObject(item, "checkpoint", attr("S", l->checkpoint));
    cJSON_AddItemToObject(item, "checkpointSubSequenceNumber", num_attr((int64_t)l->sub_sequence));
    cJSON_AddItemToObject(item, "ownerSwitchesSinceCheckpoint", num_attr(0));
    if (l->nparents > 0) {
        cJSON *ss = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(ss, "SS");
        for (int i = 0; i < l->nparents; i++) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(l->parents[i]));
        }
        cJSON_AddItemToObject(item, "parentShardId", ss);
    }
    if (l->start_hash[0] != '\0' && l->end_hash[0] != '\0') {
        cJSON_AddItemToObject(item, "startingHashKey", attr("S", l->start_hash));
        cJSON_AddItemToObject(item, "endingHashKey", attr("S", l->end_hash));
    }
    cJSON_AddStringToObject(j, "ConditionExpression", "attribute_not_exists(leaseKey)");
    return write_result(call(ddb, "PutItem", j, NULL, err, errlen));
}

/* An UpdateItem on key with the given expressions; values: ":me" and ":counter" always, more by the caller. */
static cJSON *update(const char *table, const char *key, const char *update_expr, const char *condition)
{
    cJSON *j = request(table, key);
    cJSON_AddStringToObject(j, "UpdateExpression", update_expr);
    cJSON_AddStringToObject(j, "ConditionExpression", condition);
    cJSON_AddObjectToObject(j, "ExpressionAttributeValues");
    return j;
}

static void value(cJSON *j, const char *name, cJSON *v)
{
    cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(j, "ExpressionAttributeValues"), name, v);
}

#define MINE "leaseCounter = :counter AND leaseOwner = :me"

int lease_renew(eddy_client_t *ddb, const char *table, const char *key, const char *owner, int64_t counter,
                char *err, size_t errlen)
{
    cJSON *j = update(table, key, "SET leaseCounter = :next", MINE);
    value(j, ":counter", num_attr(counter));
    value(j, ":next", num_attr(counter + 1));
    value(j, ":me", attr("S", owner));
    return write_result(call(ddb, "UpdateItem", j, NULL, err, errlen));
}

int lease_take(eddy_client_t *ddb, const char *table, const char *key, int64_t seen_counter, const char *seen_owner,
               const char *me, char *err, size_t errlen)
{
    bool switching = seen_owner == NULL || strcmp(seen_owner, me) != 0;
    cJSON *j = update(table, key,
                      switching ? "SET leaseOwner = :me, leaseCounter = :next, ownerSwitchesSinceCheckpoint = "
                                  "if_not_exists(ownerSwitchesSinceCheckpoint, :zero) + :one REMOVE checkpointOwner"
                                : "SET leaseOwner = :me, leaseCounter = :next REMOVE checkpointOwner",
                      "leaseCounter = :counter");
    value(j, ":counter", num_attr(seen_counter));
    value(j, ":next", num_attr(seen_counter + 1));
    value(j, ":me", attr("S", me));
    if (switching) {
        value(j, ":zero", num_attr(0));
        value(j, ":one", num_attr(1));
    }
    return write_result(call(ddb, "UpdateItem", j, NULL, err, errlen));
}

int lease_checkpoint(eddy_client_t *ddb, const char *table, const char *key, const char *owner, int64_t counter,
                     const char *checkpoint, uint64_t sub_sequence, const char *const *children, size_t nchildren,
                     char *err, size_t errlen)
{
    cJSON *j = update(table, key,
                      nchildren > 0 ? "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, "
                                      "ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :next, childShardIds = "
                                      ":children REMOVE pendingCheckpoint, pendingCheckpointSubSequenceNumber, "
                                      "pendingCheckpointState"
                                    : "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, "
                                      "ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :next REMOVE "
                                      "pendingCheckpoint, pendingCheckpointSubSequenceNumber, pendingCheckpointState",
                      MINE);
    value(j, ":counter", num_attr(counter));
    value(j, ":next", num_attr(counter + 1));
    value(j, ":me", attr("S", owner));
    value(j, ":cp", attr("S", checkpoint));
    value(j, ":sub", num_attr((int64_t)sub_sequence));
    value(j, ":zero", num_attr(0));
    if (nchildren > 0) {
        cJSON *ss = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(ss, "SS");
        for (size_t i = 0; i < nchildren; i++) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(children[i]));
        }
        value(j, ":children", ss);
    }
    return write_result(call(ddb, "UpdateItem", j, NULL, err, errlen));
}

int lease_release(eddy_client_t *ddb, const char *table, const char *key, const char *owner, int64_t counter,
                  char *err, size_t errlen)
{
    cJSON *j = update(table, key, "SET leaseCounter = :next REMOVE leaseOwner, checkpointOwner", MINE);
    value(j, ":counter", num_attr(counter));
    value(j, ":next", num_attr(counter + 1));
    value(j, ":me", attr("S", owner));
    return write_result(call(ddb, "UpdateItem", j, NULL, err, errlen));
}

/* ---- the taker's arithmetic ---- */

static uint64_t next_random(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void shuffle(size_t *a, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(next_random(rng) % i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

typedef struct owner_count {
    const char *owner;
    size_t count;
} owner_count_t;

static int by_count_desc(const void *a, const void *b)
{
    const owner_count_t *x = a, *y = b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : strcmp(x->owner, y->owner);
}

size_t lease_plan_take(const lease_view_t *leases, size_t n, const char *me, size_t max_leases, uint64_t *rng,
                       size_t *pick)
{
    if (n == 0) {
        return 0;
    }
    owner_count_t *owners = calloc(n + 1, sizeof *owners);
    size_t *idx = calloc(n, sizeof *idx);
    size_t npick = 0;
    if (owners == NULL || idx == NULL) {
        goto out;
    }
    size_t nowners = 1, mine = 0;
    owners[0].owner = me;
    for (size_t i = 0; i < n; i++) {
        if (leases[i].available || leases[i].owner == NULL || leases[i].owner[0] == '\0') {
            continue;
        }
        size_t o = 0;
        while (o < nowners && strcmp(owners[o].owner, leases[i].owner) != 0) {
            o++;
        }
        if (o == nowners) {
            owners[nowners++].owner = leases[i].owner;
        }
        owners[o].count++;
    }
    mine = owners[0].count;
    size_t target = nowners >= n ? 1 : (n + nowners - 1) / nowners;
    if (max_leases > 0 && target > max_leases) {
        target = max_leases;
    }
    if (mine >= target) {
        goto out;
    }
    size_t needed = target - mine;
    /* 1. available leases */
    size_t navail = 0;
    for (size_t i = 0; i < n; i++) {
        if (leases[i].available) {
            idx[navail++] = i;
        }
    }
    shuffle(idx, navail, rng);
    for (size_t i = 0; i < navail && npick < needed; i++) {
        pick[npick++] = idx[i];
    }
    if (npick > 0) {
        goto out; /* the next cycle sees the new counts before stealing */
    }
    /* 2. steal the excess of every worker above the target, most loaded first */
    qsort(owners + 1, nowners - 1, sizeof *owners, by_count_desc);
    for (size_t o = 1; o < nowners && npick < needed; o++) {
        size_t take = owners[o].count > target ? owners[o].count - target : 0;
        if (take == 0 && o == 1 && needed > 1 && owners[o].count > mine + 1) {
            take = 1; /* everybody at the target but me far below it */
        }
        if (take > needed - npick) {
            take = needed - npick;
        }
        size_t nof = 0;
        for (size_t i = 0; i < n; i++) {
            if (!leases[i].available && leases[i].owner != NULL && strcmp(leases[i].owner, owners[o].owner) == 0) {
                idx[nof++] = i;
            }
        }
        shuffle(idx, nof, rng);
        for (size_t i = 0; i < take && i < nof; i++) {
            pick[npick++] = idx[i];
        }
    }
out:
    free(owners);
    free(idx);
    return npick;
}
