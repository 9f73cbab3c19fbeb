/*
 * dynamodb: routing and operations of the DynamoDB subset (see dynamodb.h and docs/DYNAMODB.md).
 *
 * Each request: parse the JSON body, take the catalog write lock, run the operation (which fills a reply
 * object or an error), unlock, reply. Writes go to catalog.db (store.c) before the reply.
 *
 * The legacy parameters (Expected + ConditionalOperator, AttributeUpdates, AttributesToGet) are translated
 * into expression text with generated #names and :values, so that one evaluator (expr.c) serves both.
 */
#include "server/dynamodb/dynamodb.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/dynamodb/expr.h"
#include "server/dynamodb/store.h"
#include "store/catalog.h"

#define ITEM_SIZE_MAX (400 * 1024)
#define HASH_KEY_MAX 2048
#define RANGE_KEY_MAX 1024
#define TABLE_NAME_MAX 255
#define ATTR_NAME_MAX 65535
#define PAGE_BYTES_MAX (1024 * 1024)
#define LIST_TABLES_MAX 100

typedef enum ddb_err {
    E_NONE,
    E_VALIDATION,
    E_NOT_FOUND,
    E_IN_USE,
    E_CONDITIONAL,
    E_UNKNOWN_OP,
    E_SERIALIZATION,
    E_INTERNAL,
} ddb_err_t;

static const struct {
    const char *type;
    int status;
} errors[] = {
    [E_NONE] = {NULL, 200},
    [E_VALIDATION] = {"com.amazon.coral.validate#ValidationException", 400},
    [E_NOT_FOUND] = {"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", 400},
    [E_IN_USE] = {"com.amazonaws.dynamodb.v20120810#ResourceInUseException", 400},
    [E_CONDITIONAL] = {"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", 400},
    [E_UNKNOWN_OP] = {"com.amazon.coral.service#UnknownOperationException", 400},
    [E_SERIALIZATION] = {"com.amazon.coral.service#SerializationException", 400},
    [E_INTERNAL] = {"com.amazonaws.dynamodb.v20120810#InternalServerError", 500},
};

typedef struct ddb_req {
    server_t *srv;
    struct sqlite3 *db;
    const cJSON *in;
    cJSON *out; /* reply members */
    ddb_err_t err;
    char msg[DDB_ERR_MAX];
    int64_t now_ms;
} ddb_req_t;

static int fail(ddb_req_t *r, ddb_err_t e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ddb_req_t *r, ddb_err_t e, const char *fmt, ...)
{
    if (r->err == E_NONE) {
        r->err = e;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, sizeof r->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int internal(ddb_req_t *r, const char *what)
{
    log_error("dynamodb: %s failed: %s", what, sqlite3_errmsg(r->db));
    return fail(r, E_INTERNAL, "Internal server error");
}

/* ------------------------------------------------------------------ input helpers */

static const cJSON *member(const ddb_req_t *r, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(r->in, name);
}

/* A string member: NULL when absent; -1 (error set) when not a string. */
static int str_member(ddb_req_t *r, const char *name, const char **out)
{
    const cJSON *v = member(r, name);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (!cJSON_IsString(v)) {
        return fail(r, E_SERIALIZATION, "STRING_VALUE can not be converted to %s", name);
    }
    *out = v->valuestring;
    return 0;
}

static int obj_member(ddb_req_t *r, const char *name, const cJSON **out)
{
    const cJSON *v = member(r, name);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (!cJSON_IsObject(v)) {
        return fail(r, E_SERIALIZATION, "Expected an object for %s", name);
    }
    *out = v;
    return 0;
}

static int limit_member(ddb_req_t *r, int64_t *limit)
{
    const cJSON *v = member(r, "Limit");
    *limit = 0;
    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble) {
        return fail(r, E_SERIALIZATION, "NUMBER_VALUE can not be converted to Limit");
    }
    if (v->valuedouble < 1) {
        return fail(r, E_VALIDATION, "1 validation error detected: Value '%lld' at 'limit' failed to satisfy "
                                     "constraint: Member must have value greater than or equal to 1",
                    (long long)v->valuedouble);
    }
    *limit = v->valuedouble > 1e9 ? 1000000000 : (int64_t)v->valuedouble;
    return 0;
}

static bool valid_table_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > TABLE_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.')) {
            return false;
        }
    }
    return true;
}

static int table_name_member(ddb_req_t *r, const char **name)
{
    if (str_member(r, "TableName", name) != 0) {
        return -1;
    }
    if (*name == NULL) {
        return fail(r, E_VALIDATION, "1 validation error detected: Value null at 'tableName' failed to satisfy "
                                     "constraint: Member must not be null");
    }
    if (!valid_table_name(*name)) {
        return fail(r, E_VALIDATION, "1 validation error detected: Value '%.255s' at 'tableName' failed to satisfy "
                                     "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ "
                                     "and have length between 3 and 255", *name);
    }
    return 0;
}

/* ------------------------------------------------------------------ tables */

typedef struct table {
    const char *name;
    cJSON *desc; /* KeySchema, AttributeDefinitions, BillingMode, ProvisionedThroughput */
    const char *hash, *range; /* into desc; range NULL when none */
    char htype, rtype;
    int64_t created_ms, active_ms;
} table_t;

static void table_dispose(table_t *t)
{
    cJSON_Delete(t->desc);
    t->desc = NULL;
}

static char attr_type(const cJSON *defs, const char *name)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, defs)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(d, "AttributeName");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "AttributeType");
        if (cJSON_IsString(n) && cJSON_IsString(t) && strcmp(n->valuestring, name) == 0) {
            return t->valuestring[0];
        }
    }
    return 0;
}

static void table_keys(table_t *t)
{
    const cJSON *ks = cJSON_GetObjectItemCaseSensitive(t->desc, "KeySchema");
    const cJSON *defs = cJSON_GetObjectItemCaseSensitive(t->desc, "AttributeDefinitions");
    const cJSON *k;
    t->hash = t->range = NULL;
    cJSON_ArrayForEach(k, ks)
    {
        const char *n = cJSON_GetObjectItemCaseSensitive(k, "AttributeName")->valuestring;
        const char *kt = cJSON_GetObjectItemCaseSensitive(k, "KeyType")->valuestring;
        if (strcmp(kt, "HASH") == 0) {
            t->hash = n;
            t->htype = attr_type(defs, n);
        } else {
            t->range = n;
            t->rtype = attr_type(defs, n);
        }
    }
}

/* 0, or -1 with ResourceNotFoundException (also while CREATING when need_active). */
static int load_table(ddb_req_t *r, const char *name, table_t *t, bool need_active)
{
    memset(t, 0, sizeof *t);
    char *json = NULL;
    int rc = ddb_store_get_table(r->db, name, &json, &t->created_ms, &t->active_ms);
    if (rc < 0) {
        return internal(r, "reading a table");
    }
    if (rc == 1 || (need_active && r->now_ms < t->active_ms)) {
        free(json);
        return fail(r, E_NOT_FOUND, need_active ? "Requested resource not found"
                                                : "Requested resource not found: Table: %s not found", name);
    }
    t->desc = cJSON_Parse(json);
    free(json);
    if (t->desc == NULL) {
        return internal(r, "parsing a table description");
    }
    t->name = name;
    table_keys(t);
    return 0;
}

/* The description object DynamoDB returns (DescribeTable's Table, CreateTable's TableDescription). */
static cJSON *describe(ddb_req_t *r, const table_t *t, const char *status)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "AttributeDefinitions",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t->desc, "AttributeDefinitions"), true));
    cJSON_AddStringToObject(d, "TableName", t->name);
    cJSON_AddItemToObject(d, "KeySchema", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t->desc, "KeySchema"), true));
    cJSON_AddStringToObject(d, "TableStatus", status != NULL ? status : r->now_ms < t->active_ms ? "CREATING" : "ACTIVE");
    cJSON_AddNumberToObject(d, "CreationDateTime", (double)t->created_ms / 1000.0);
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(t->desc, "BillingMode");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(t->desc, "ProvisionedThroughput");
    cJSON *p = cJSON_AddObjectToObject(d, "ProvisionedThroughput");
    cJSON_AddNumberToObject(p, "NumberOfDecreasesToday", 0);
    cJSON_AddNumberToObject(p, "ReadCapacityUnits",
                            pt != NULL ? cJSON_GetObjectItemCaseSensitive(pt, "ReadCapacityUnits")->valuedouble : 0);
    cJSON_AddNumberToObject(p, "WriteCapacityUnits",
                            pt != NULL ? cJSON_GetObjectItemCaseSensitive(pt, "WriteCapacityUnits")->valuedouble : 0);
    int64_t items = 0, bytes = 0;
    if (ddb_store_count(r->db, t->name, &items, &bytes) != 0) {
        items = bytes = 0;
    }
    cJSON_AddNumberToObject(d, "TableSizeBytes", (double)bytes);
    cJSON_AddNumberToObject(d, "ItemCount", (double)items);
    char arn[512];
    snprintf(arn, sizeof arn, "arn:aws:dynamodb:%s:%s:table/%s", r->srv->cfg.region, r->srv->cfg.account_id, t->name);
    cJSON_AddStringToObject(d, "TableArn", arn);
    char id[40];
    snprintf(id, sizeof id, "%08llx-0000-4000-8000-%012llx", (unsigned long long)(t->created_ms & 0xffffffff),
             (unsigned long long)(t->created_ms >> 8) & 0xffffffffffffULL);
    cJSON_AddStringToObject(d, "TableId", id);
    if (cJSON_IsString(bm) && strcmp(bm->valuestring, "PAY_PER_REQUEST") == 0) {
        cJSON *s = cJSON_AddObjectToObject(d, "BillingModeSummary");
        cJSON_AddStringToObject(s, "BillingMode", "PAY_PER_REQUEST");
        cJSON_AddNumberToObject(s, "LastUpdateToPayPerRequestDateTime", (double)t->created_ms / 1000.0);
    }
    cJSON_AddBoolToObject(d, "DeletionProtectionEnabled", false);
    return d;
}

static int check_capacity(ddb_req_t *r, const cJSON *pt)
{
    const char *names[] = {"ReadCapacityUnits", "WriteCapacityUnits"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(pt, names[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e12) {
            return fail(r, E_VALIDATION, "One or more parameter values were invalid: %s must be at least 1 when "
                                         "BillingMode is PROVISIONED", names[i]);
        }
    }
    return 0;
}

static void op_create_table(ddb_req_t *r)
{
    const char *name, *billing;
    if (table_name_member(r, &name) != 0 || str_member(r, "BillingMode", &billing) != 0) {
        return;
    }
    const cJSON *ks = member(r, "KeySchema"), *defs = member(r, "AttributeDefinitions");
    const cJSON *pt = member(r, "ProvisionedThroughput");
    if (!cJSON_IsArray(ks) || cJSON_GetArraySize(ks) < 1 || cJSON_GetArraySize(ks) > 2) {
        fail(r, E_VALIDATION, "1 validation error detected: Value at 'keySchema' failed to satisfy constraint: Member "
                              "must have length less than or equal to 2 and greater than or equal to 1");
        return;
    }
    if (!cJSON_IsArray(defs) || cJSON_GetArraySize(defs) < 1) {
        fail(r, E_VALIDATION, "1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy "
                              "constraint: Member must not be null");
        return;
    }
    if (member(r, "GlobalSecondaryIndexes") != NULL || member(r, "LocalSecondaryIndexes") != NULL) {
        fail(r, E_VALIDATION, "eddy does not support secondary indexes (GlobalSecondaryIndexes, "
                              "LocalSecondaryIndexes); see docs/DYNAMODB.md");
        return;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, defs)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(d, "AttributeName");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "AttributeType");
        if (!cJSON_IsString(n) || n->valuestring[0] == '\0' || strlen(n->valuestring) > 255 || !cJSON_IsString(t) ||
            (strcmp(t->valuestring, "S") != 0 && strcmp(t->valuestring, "N") != 0 && strcmp(t->valuestring, "B") != 0)) {
            fail(r, E_VALIDATION, "1 validation error detected: Value at 'attributeDefinitions' failed to satisfy "
                                  "constraint: AttributeName must have length 1..255 and AttributeType must be one "
                                  "of [B, N, S]");
            return;
        }
    }
    int i = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, ks)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(k, "AttributeName");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(k, "KeyType");
        if (!cJSON_IsString(n) || !cJSON_IsString(t) ||
            strcmp(t->valuestring, i == 0 ? "HASH" : "RANGE") != 0) {
            fail(r, E_VALIDATION, "Invalid KeySchema: The first KeySchemaElement is not a HASH key type%s",
                 i == 0 ? "" : ", or the second is not a RANGE key type");
            return;
        }
        if (attr_type(defs, n->valuestring) == 0) {
            fail(r, E_VALIDATION, "One or more parameter values were invalid: Some index key attributes are not "
                                  "defined in AttributeDefinitions. Keys: [%.255s], AttributeDefinitions: [...]",
                 n->valuestring);
            return;
        }
        if (i == 1 && strcmp(n->valuestring, cJSON_GetArrayItem(ks, 0)->child->valuestring) == 0) {
            fail(r, E_VALIDATION, "Invalid KeySchema: Some index key attribute have no definition");
            return;
        }
        i++;
    }
    if (cJSON_GetArraySize(defs) != cJSON_GetArraySize(ks)) {
        fail(r, E_VALIDATION, "One or more parameter values were invalid: Number of attributes in KeySchema does not "
                              "exactly match number of attributes defined in AttributeDefinitions");
        return;
    }
    bool on_demand = billing != NULL && strcmp(billing, "PAY_PER_REQUEST") == 0;
    if (billing != NULL && !on_demand && strcmp(billing, "PROVISIONED") != 0) {
        fail(r, E_VALIDATION, "1 validation error detected: Value '%.64s' at 'billingMode' failed to satisfy "
                              "constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
             billing);
        return;
    }
    if (on_demand && pt != NULL && !cJSON_IsNull(pt)) {
        fail(r, E_VALIDATION, "One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                              "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST");
        return;
    }
    if (!on_demand) {
        if (!cJSON_IsObject(pt)) {
            fail(r, E_VALIDATION, "One or more parameter values were invalid: ReadCapacityUnits and "
                                  "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED");
            return;
        }
        if (check_capacity(r, pt) != 0) {
            return;
        }
    }
    const cJSON *spec = member(r, "StreamSpecification");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "StreamEnabled"))) {
        fail(r, E_VALIDATION, "eddy does not support DynamoDB Streams (StreamSpecification); see docs/DYNAMODB.md");
        return;
    }
    table_t t;
    char *existing = NULL;
    int64_t c_ms, a_ms;
    int rc = ddb_store_get_table(r->db, name, &existing, &c_ms, &a_ms);
    free(existing);
    if (rc < 0) {
        internal(r, "reading a table");
        return;
    }
    if (rc == 0) {
        fail(r, E_IN_USE, "Table already exists: %s", name);
        return;
    }
    memset(&t, 0, sizeof t);
    t.name = name;
    t.desc = cJSON_CreateObject();
    cJSON_AddItemToObject(t.desc, "KeySchema", cJSON_Duplicate(ks, true));
    cJSON_AddItemToObject(t.desc, "AttributeDefinitions", cJSON_Duplicate(defs, true));
    cJSON_AddStringToObject(t.desc, "BillingMode", on_demand ? "PAY_PER_REQUEST" : "PROVISIONED");
    if (!on_demand) {
        cJSON *p = cJSON_AddObjectToObject(t.desc, "ProvisionedThroughput");
        cJSON_AddNumberToObject(p, "ReadCapacityUnits",
                                cJSON_GetObjectItemCaseSensitive(pt, "ReadCapacityUnits")->valuedouble);
        cJSON_AddNumberToObject(p, "WriteCapacityUnits",
                                cJSON_GetObjectItemCaseSensitive(pt, "WriteCapacityUnits")->valuedouble);
    }
    t.created_ms = r->now_ms;
    t.active_ms = r->now_ms + (r->srv->cfg.state_delay_ms > 0 ? r->srv->cfg.state_delay_ms : 0);
    table_keys(&t);
    char *json = cJSON_PrintUnformatted(t.desc);
    rc = ddb_store_put_table(r->db, name, json, t.created_ms, t.active_ms);
    free(json);
    if (rc != 0) {
        internal(r, "creating a table");
    } else {
        cJSON_AddItemToObject(r->out, "TableDescription",
                              describe(r, &t, r->now_ms < t.active_ms ? "CREATING" : "ACTIVE"));
    }
    table_dispose(&t);
}

static void op_describe_table(ddb_req_t *r)
{
    const char *name;
    table_t t;
    if (table_name_member(r, &name) != 0 || load_table(r, name, &t, false) != 0) {
        return;
    }
    cJSON_AddItemToObject(r->out, "Table", describe(r, &t, NULL));
    table_dispose(&t);
}

static void op_delete_table(ddb_req_t *r)
{
    const char *name;
    table_t t;
    if (table_name_member(r, &name) != 0 || load_table(r, name, &t, false) != 0) {
        return;
    }
    if (r->now_ms < t.active_ms) {
        fail(r, E_IN_USE, "Attempt to change a resource which is still in use: Table is being created: %s", name);
        table_dispose(&t);
        return;
    }
    cJSON *d = describe(r, &t, "DELETING");
    if (ddb_store_drop_table(r->db, name) != 0) {
        cJSON_Delete(d);
        internal(r, "deleting a table");
    } else {
        cJSON_AddItemToObject(r->out, "TableDescription", d);
    }
    table_dispose(&t);
}

typedef struct list_state {
    cJSON *names;
    int64_t limit, count;
    bool more;
} list_state_t;

static bool list_one(void *arg, const char *name)
{
    list_state_t *ls = arg;
    if (ls->count == ls->limit) {
        ls->more = true;
        return false;
    }
    cJSON_AddItemToArray(ls->names, cJSON_CreateString(name));
    ls->count++;
    return true;
}

static void op_list_tables(ddb_req_t *r)
{
    const char *after;
    int64_t limit;
    if (str_member(r, "ExclusiveStartTableName", &after) != 0 || limit_member(r, &limit) != 0) {
        return;
    }
    if (limit > LIST_TABLES_MAX) {
        fail(r, E_VALIDATION, "1 validation error detected: Value '%lld' at 'limit' failed to satisfy constraint: "
                              "Member must have value less than or equal to 100", (long long)limit);
        return;
    }
    list_state_t ls = {.names = cJSON_AddArrayToObject(r->out, "TableNames"), .limit = limit ? limit : LIST_TABLES_MAX};
    if (ddb_store_list_tables(r->db, after, list_one, &ls) != 0) {
        internal(r, "listing tables");
        return;
    }
    if (ls.more) {
        cJSON *last = cJSON_GetArrayItem(ls.names, (int)ls.count - 1);
        cJSON_AddStringToObject(r->out, "LastEvaluatedTableName", last->valuestring);
    }
}

/* ------------------------------------------------------------------ keys and items */

/* Encodes a key attribute value of the given type into out ("S:..."); -1 with the error when it is not of
 * that type or not allowed as a key. */
static int encode_key_value(ddb_req_t *r, const char *name, char type, const cJSON *av, buf_t *out, size_t max)
{
    char t[2] = {type, 0};
    if (av == NULL || strcmp(ddb_value_type(av), t) != 0) {
        return fail(r, E_VALIDATION, "One or more parameter values were invalid: Type mismatch for key %.255s "
                                     "expected: %s actual: %s", name, t, av != NULL ? ddb_value_type(av) : "NULL");
    }
    const char *v = av->child->valuestring;
    if (v[0] == '\0') {
        return fail(r, E_VALIDATION, "One or more parameter values are not valid. The AttributeValue for a key "
                                     "attribute cannot contain an empty %s value. Key: %.255s",
                    type == 'S' ? "string" : "binary", name);
    }
    buf_putc(out, type);
    buf_putc(out, ':');
    if (type == 'N') {
        char canon[DDB_NUM_STR_MAX];
        char err[DDB_ERR_MAX];
        if (ddb_num_add(v, "0", false, canon, err, sizeof err) != 0) {
            return fail(r, E_VALIDATION, "%s", err);
        }
        buf_puts(out, canon);
    } else {
        buf_puts(out, v);
    }
    if (out->len - 2 > max) {
        return fail(r, E_VALIDATION, "One or more parameter values were invalid: Size of %s key %.255s is above the "
                                     "limit of %zu bytes", max == HASH_KEY_MAX ? "hashkey" : "rangekey", name, max);
    }
    return 0;
}

/* The encoded keys of an item or of a Key parameter (exact: nothing but the key attributes allowed). */
static int item_keys(ddb_req_t *r, const table_t *t, const cJSON *obj, bool exact, buf_t *hk, buf_t *rk)
{
    if (exact) {
        int n = cJSON_GetArraySize(obj);
        if (n != (t->range != NULL ? 2 : 1)) {
            return fail(r, E_VALIDATION, "The provided key element does not match the schema");
        }
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, t->hash);
    if (h == NULL) {
        return fail(r, E_VALIDATION, exact ? "The provided key element does not match the schema"
                                           : "One or more parameter values were invalid: Missing the key %.255s in "
                                             "the item", t->hash);
    }
    if (encode_key_value(r, t->hash, t->htype, h, hk, HASH_KEY_MAX) != 0) {
        return -1;
    }
    if (t->range != NULL) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(obj, t->range);
        if (g == NULL) {
            return fail(r, E_VALIDATION, exact ? "The provided key element does not match the schema"
                                               : "One or more parameter values were invalid: Missing the key %.255s "
                                                 "in the item", t->range);
        }
        if (encode_key_value(r, t->range, t->rtype, g, rk, RANGE_KEY_MAX) != 0) {
            return -1;
        }
    }
    return 0;
}

static int validate_attrs(ddb_req_t *r, const cJSON *obj, const char *what)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, obj)
    {
        if (a->string == NULL || a->string[0] == '\0' || strlen(a->string) > ATTR_NAME_MAX) {
            return fail(r, E_VALIDATION, "One or more parameter values were invalid: An attribute name in %s is "
                                         "empty or too long", what);
        }
        if (ddb_value_validate(a, what, r->msg, sizeof r->msg) != 0) {
            r->err = E_VALIDATION;
            return -1;
        }
    }
    return 0;
}

/* The key object parameter (Key, ExclusiveStartKey) of a table, validated, with its encoding. */
static int key_param(ddb_req_t *r, const table_t *t, const char *param, const cJSON **key, buf_t *hk, buf_t *rk)
{
    if (obj_member(r, param, key) != 0) {
        return -1;
    }
    if (*key == NULL) {
        return fail(r, E_VALIDATION, "1 validation error detected: Value null at '%s' failed to satisfy constraint: "
                                     "Member must not be null", param);
    }
    if (validate_attrs(r, *key, param) != 0) {
        return -1;
    }
    return item_keys(r, t, *key, true, hk, rk);
}

/* The stored item (NULL when absent); -1 on error. */
static int read_item(ddb_req_t *r, const table_t *t, const buf_t *hk, const buf_t *rk, cJSON **item)
{
    char *json = NULL;
    *item = NULL;
    int rc = ddb_store_get_item(r->db, t->name, hk->data, hk->len, rk->data, rk->len, &json);
    if (rc < 0) {
        return internal(r, "reading an item");
    }
    if (rc == 0) {
        *item = cJSON_Parse(json);
        free(json);
        if (*item == NULL) {
            return internal(r, "parsing a stored item");
        }
    }
    return 0;
}

static int write_item(ddb_req_t *r, const table_t *t, const buf_t *hk, const buf_t *rk, const cJSON *item)
{
    size_t size = ddb_item_size(item);
    if (size > ITEM_SIZE_MAX) {
        return fail(r, E_VALIDATION, "Item size has exceeded the maximum allowed size");
    }
    char *json = cJSON_PrintUnformatted(item);
    if (json == NULL) {
        abort();
    }
    int rc = ddb_store_put_item(r->db, t->name, hk->data, hk->len, rk->data, rk->len, json);
    free(json);
    return rc == 0 ? 0 : internal(r, "writing an item");
}

/* ------------------------------------------------------------------ expressions of a request */

typedef struct exprs {
    const cJSON *names, *values; /* the request's (borrowed) */
    cJSON *gen_names, *gen_values; /* generated from legacy parameters (owned) */
    buf_t gen_text;
    const char *texts[5];
    int ntexts;
} exprs_t;

static void exprs_dispose(exprs_t *x)
{
    cJSON_Delete(x->gen_names);
    cJSON_Delete(x->gen_values);
    buf_dispose(&x->gen_text);
}

static int exprs_init(ddb_req_t *r, exprs_t *x)
{
    memset(x, 0, sizeof *x);
    buf_init(&x->gen_text);
    if (obj_member(r, "ExpressionAttributeNames", &x->names) != 0 ||
        obj_member(r, "ExpressionAttributeValues", &x->values) != 0) {
        return -1;
    }
    const cJSON *n;
    cJSON_ArrayForEach(n, x->names)
    {
        if (!cJSON_IsString(n) || n->valuestring[0] == '\0' || n->string[0] != '#') {
            return fail(r, E_VALIDATION, "ExpressionAttributeNames contains invalid key or value: \"%.64s\"", n->string);
        }
    }
    cJSON_ArrayForEach(n, x->values)
    {
        if (n->string[0] != ':') {
            return fail(r, E_VALIDATION, "ExpressionAttributeValues contains invalid key: Syntax error; key: \"%.64s\"",
                        n->string);
        }
    }
    if (x->values != NULL && validate_attrs(r, x->values, "ExpressionAttributeValues") != 0) {
        return -1;
    }
    return 0;
}

/* Parses the request's expression member (or NULL when absent). */
static int parse_member_expr(ddb_req_t *r, exprs_t *x, const char *param, ddb_expr_kind_t kind, ddb_expr_t **out)
{
    const char *text;
    *out = NULL;
    if (str_member(r, param, &text) != 0) {
        return -1;
    }
    if (text == NULL) {
        return 0;
    }
    x->texts[x->ntexts++] = text;
    if (ddb_expr_parse(kind, param, text, strlen(text), x->names, x->values, out, r->msg, sizeof r->msg) != 0) {
        r->err = E_VALIDATION;
        return -1;
    }
    return 0;
}

static bool token_used(const char *key, const char *const *texts, int n)
{
    size_t kl = strlen(key);
    for (int i = 0; i < n; i++) {
        for (const char *p = strstr(texts[i], key); p != NULL; p = strstr(p + 1, key)) {
            char c = p[kl];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
                return true;
            }
        }
    }
    return false;
}

/* DynamoDB rejects names and values that no expression uses. */
static int check_unused(ddb_req_t *r, const exprs_t *x)
{
    const char *which[2] = {"ExpressionAttributeNames", "ExpressionAttributeValues"};
    const cJSON *objs[2] = {x->names, x->values};
    for (int i = 0; i < 2; i++) {
        if (objs[i] == NULL) {
            continue;
        }
        if (x->ntexts == 0) {
            return fail(r, E_VALIDATION, "%s can only be specified when using expressions", which[i]);
        }
        const cJSON *n;
        cJSON_ArrayForEach(n, objs[i])
        {
            if (!token_used(n->string, x->texts, x->ntexts)) {
                return fail(r, E_VALIDATION, "Value provided in %s unused in expressions: keys: {%.64s}", which[i],
                            n->string);
            }
        }
    }
    return 0;
}

static void gen_name(exprs_t *x, const char *attr, char out[16])
{
    snprintf(out, 16, "#g%d", cJSON_GetArraySize(x->gen_names));
    cJSON_AddStringToObject(x->gen_names, out, attr);
}

static void gen_value(exprs_t *x, const cJSON *av, char out[16])
{
    snprintf(out, 16, ":g%d", cJSON_GetArraySize(x->gen_values));
    cJSON_AddItemToObject(x->gen_values, out, cJSON_Duplicate(av, true));
}

/* Legacy Expected (+ ConditionalOperator) into a condition expression. *out NULL when absent. */
static int legacy_expected(ddb_req_t *r, exprs_t *x, ddb_expr_t **out)
{
    const cJSON *expected;
    const char *op;
    *out = NULL;
    if (obj_member(r, "Expected", &expected) != 0 || str_member(r, "ConditionalOperator", &op) != 0) {
        return -1;
    }
    if (expected == NULL || expected->child == NULL) {
        return 0;
    }
    if (op != NULL && strcmp(op, "AND") != 0 && strcmp(op, "OR") != 0) {
        return fail(r, E_VALIDATION, "1 validation error detected: Value '%.32s' at 'conditionalOperator' failed to "
                                     "satisfy constraint: Member must satisfy enum value set: [AND, OR]", op);
    }
    x->gen_names = cJSON_CreateObject();
    x->gen_values = cJSON_CreateObject();
    buf_t *b = &x->gen_text;
    const cJSON *e;
    bool first = true;
    cJSON_ArrayForEach(e, expected)
    {
        if (!cJSON_IsObject(e)) {
            return fail(r, E_SERIALIZATION, "Expected an object for Expected.%.64s", e->string);
        }
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(e, "Value");
        const cJSON *exists = cJSON_GetObjectItemCaseSensitive(e, "Exists");
        const cJSON *cmp = cJSON_GetObjectItemCaseSensitive(e, "ComparisonOperator");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(e, "AttributeValueList");
        char nm[16], v[16];
        gen_name(x, e->string, nm);
        buf_puts(b, first ? "(" : op != NULL && strcmp(op, "OR") == 0 ? " OR (" : " AND (");
        first = false;
        if (value != NULL && ddb_value_validate(value, "Expected", r->msg, sizeof r->msg) != 0) {
            r->err = E_VALIDATION;
            return -1;
        }
        if (cmp == NULL) {
            if (cJSON_IsFalse(exists)) {
                if (value != NULL) {
                    return fail(r, E_VALIDATION, "One or more parameter values were invalid: Value cannot be used "
                                                 "when Exists is false for Attribute: %.255s", e->string);
                }
                buf_printf(b, "attribute_not_exists(%s))", nm);
                continue;
            }
            if (value == NULL) {
                return fail(r, E_VALIDATION, "One or more parameter values were invalid: Value must be provided when "
                                             "Exists is %s for Attribute: %.255s",
                            exists != NULL ? "true" : "null", e->string);
            }
            gen_value(x, value, v);
            buf_printf(b, "%s = %s)", nm, v);
            continue;
        }
        if (!cJSON_IsString(cmp) || exists != NULL || value != NULL) {
            return fail(r, E_VALIDATION, "One or more parameter values were invalid: Exists and Value cannot be used "
                                         "with ComparisonOperator for Attribute: %.255s", e->string);
        }
        int nargs = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, list)
        {
            if (ddb_value_validate(a, "AttributeValueList", r->msg, sizeof r->msg) != 0) {
                r->err = E_VALIDATION;
                return -1;
            }
        }
        const char *c = cmp->valuestring;
        static const struct {
            const char *name, *sym;
        } binary[] = {{"EQ", "="}, {"NE", "<>"}, {"LT", "<"}, {"LE", "<="}, {"GT", ">"}, {"GE", ">="}};
        bool done = false;
        for (size_t i = 0; i < sizeof binary / sizeof binary[0] && !done; i++) {
            if (strcmp(c, binary[i].name) == 0) {
                if (nargs != 1) {
                    return fail(r, E_VALIDATION, "One or more parameter values were invalid: Invalid number of "
                                                 "argument(s) for the %s ComparisonOperator", c);
                }
                gen_value(x, list->child, v);
                buf_printf(b, "%s %s %s)", nm, binary[i].sym, v);
                done = true;
            }
        }
        if (done) {
            continue;
        }
        int want = strcmp(c, "NULL") == 0 || strcmp(c, "NOT_NULL") == 0 ? 0 : strcmp(c, "BETWEEN") == 0 ? 2
                   : strcmp(c, "IN") == 0 ? -1 : 1;
        if ((want >= 0 && nargs != want) || (want < 0 && nargs < 1)) {
            return fail(r, E_VALIDATION, "One or more parameter values were invalid: Invalid number of argument(s) "
                                         "for the %.32s ComparisonOperator", c);
        }
        if (strcmp(c, "NULL") == 0) {
            buf_printf(b, "attribute_not_exists(%s))", nm);
        } else if (strcmp(c, "NOT_NULL") == 0) {
            buf_printf(b, "attribute_exists(%s))", nm);
        } else if (strcmp(c, "CONTAINS") == 0 || strcmp(c, "NOT_CONTAINS") == 0 || strcmp(c, "BEGINS_WITH") == 0) {
            gen_value(x, list->child, v);
            buf_printf(b, "%s%s(%s, %s))", strcmp(c, "NOT_CONTAINS") == 0 ? "attribute_exists(" : "",
                       strcmp(c, "BEGINS_WITH") == 0 ? "begins_with" : "contains", nm, v);
            if (strcmp(c, "NOT_CONTAINS") == 0) {
                /* rewrite as attribute_exists(#n) AND NOT contains(#n, :v) */
                b->len -= strlen(nm) * 2 + strlen(v) + strlen("attribute_exists(contains(, ))") + 1;
                buf_printf(b, "attribute_exists(%s) AND NOT contains(%s, %s))", nm, nm, v);
            }
        } else if (strcmp(c, "BETWEEN") == 0) {
            char v2[16];
            gen_value(x, list->child, v);
            gen_value(x, list->child->next, v2);
            buf_printf(b, "%s BETWEEN %s AND %s)", nm, v, v2);
        } else if (strcmp(c, "IN") == 0) {
            buf_printf(b, "%s IN (", nm);
            for (a = list->child; a != NULL; a = a->next) {
                gen_value(x, a, v);
                buf_printf(b, "%s%s", v, a->next != NULL ? ", " : "))");
            }
        } else {
            return fail(r, E_VALIDATION, "1 validation error detected: Value '%.32s' at 'comparisonOperator' failed "
                                         "to satisfy constraint: Member must satisfy enum value set: [IN, NULL, "
                                         "BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, "
                                         "CONTAINS]", c);
        }
    }
    if (ddb_expr_parse(DDB_EXPR_CONDITION, "Expected", buf_cstr(b), b->len, x->gen_names, x->gen_values, out, r->msg,
                       sizeof r->msg) != 0) {
        r->err = E_VALIDATION;
        return -1;
    }
    return 0;
}

/* The condition of a write: ConditionExpression or legacy Expected (not both). */
static int write_condition(ddb_req_t *r, exprs_t *x, ddb_expr_t **cond)
{
    *cond = NULL;
    if (parse_member_expr(r, x, "ConditionExpression", DDB_EXPR_CONDITION, cond) != 0) {
        return -1;
    }
    if (member(r, "Expected") != NULL) {
        if (*cond != NULL || x->names != NULL || x->values != NULL) {
            return fail(r, E_VALIDATION, "Can not use both expression and non-expression parameters in the same "
                                         "request: Non-expression parameters: {Expected} Expression parameters: "
                                         "{ConditionExpression}");
        }
        return legacy_expected(r, x, cond);
    }
    return 0;
}

/* Legacy AttributeUpdates into an update expression. */
static int legacy_updates(ddb_req_t *r, exprs_t *x, const cJSON *updates, ddb_expr_t **out)
{
    buf_t set = BUF_INIT, rem = BUF_INIT, add = BUF_INIT, del = BUF_INIT;
    int rc = -1;
    if (x->gen_names == NULL) {
        x->gen_names = cJSON_CreateObject();
        x->gen_values = cJSON_CreateObject();
    }
    const cJSON *u;
    cJSON_ArrayForEach(u, updates)
    {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(u, "Value");
        const cJSON *action = cJSON_GetObjectItemCaseSensitive(u, "Action");
        const char *act = cJSON_IsString(action) ? action->valuestring : "PUT";
        char nm[16], v[16];
        if (value != NULL && ddb_value_validate(value, "AttributeUpdates", r->msg, sizeof r->msg) != 0) {
            r->err = E_VALIDATION;
            goto out;
        }
        gen_name(x, u->string, nm);
        if (strcmp(act, "PUT") == 0) {
            if (value == NULL) {
                fail(r, E_VALIDATION, "One or more parameter values were invalid: Only DELETE action is allowed when "
                                      "no attribute value is specified");
                goto out;
            }
            gen_value(x, value, v);
            buf_printf(&set, "%s%s = %s", set.len ? ", " : "", nm, v);
        } else if (strcmp(act, "DELETE") == 0) {
            if (value == NULL) {
                buf_printf(&rem, "%s%s", rem.len ? ", " : "", nm);
            } else {
                gen_value(x, value, v);
                buf_printf(&del, "%s%s %s", del.len ? ", " : "", nm, v);
            }
        } else if (strcmp(act, "ADD") == 0) {
            if (value == NULL) {
                fail(r, E_VALIDATION, "One or more parameter values were invalid: Only DELETE action is allowed when "
                                      "no attribute value is specified");
                goto out;
            }
            gen_value(x, value, v);
            buf_printf(&add, "%s%s %s", add.len ? ", " : "", nm, v);
        } else {
            fail(r, E_VALIDATION, "1 validation error detected: Value '%.32s' at 'attributeUpdates' failed to satisfy "
                                  "constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]", act);
            goto out;
        }
    }
    buf_t text = BUF_INIT;
    if (set.len) {
        buf_printf(&text, "SET %s ", buf_cstr(&set));
    }
    if (rem.len) {
        buf_printf(&text, "REMOVE %s ", buf_cstr(&rem));
    }
    if (add.len) {
        buf_printf(&text, "ADD %s ", buf_cstr(&add));
    }
    if (del.len) {
        buf_printf(&text, "DELETE %s ", buf_cstr(&del));
    }
    /* kept in x so that the expression's borrowed text lives long enough */
    buf_dispose(&x->gen_text);
    x->gen_text = text;
    if (text.len == 0) {
        rc = 0; /* nothing to update */
        goto out;
    }
    if (ddb_expr_parse(DDB_EXPR_UPDATE, "AttributeUpdates", buf_cstr(&x->gen_text), x->gen_text.len, x->gen_names,
                       x->gen_values, out, r->msg, sizeof r->msg) != 0) {
        r->err = E_VALIDATION;
        goto out;
    }
    rc = 0;
out:
    buf_dispose(&set);
    buf_dispose(&rem);
    buf_dispose(&add);
    buf_dispose(&del);
    return rc;
}

static int return_values(ddb_req_t *r, const char *const *allowed, size_t n, const char **rv)
{
    if (str_member(r, "ReturnValues", rv) != 0) {
        return -1;
    }
    if (*rv == NULL) {
        *rv = "NONE";
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(*rv, allowed[i]) == 0) {
            return 0;
        }
    }
    return fail(r, E_VALIDATION, "ReturnValues can only be %s on %s", n == 2 ? "ALL_OLD or NONE"
                                                                              : "NONE, ALL_OLD, UPDATED_OLD, ALL_NEW or "
                                                                                "UPDATED_NEW",
                n == 2 ? "PutItem or DeleteItem" : "UpdateItem");
}

static void consumed(ddb_req_t *r, const char *table)
{
    const char *rcc;
    if (str_member(r, "ReturnConsumedCapacity", &rcc) == 0 && rcc != NULL && strcmp(rcc, "NONE") != 0) {
        cJSON *c = cJSON_AddObjectToObject(r->out, "ConsumedCapacity");
        cJSON_AddStringToObject(c, "TableName", table);
        cJSON_AddNumberToObject(c, "CapacityUnits", 1.0);
    }
}

/* ------------------------------------------------------------------ item operations */

static void op_get_item(ddb_req_t *r)
{
    const char *name;
    table_t t = {0};
    exprs_t x;
    buf_t hk = BUF_INIT, rk = BUF_INIT;
    ddb_expr_t *proj = NULL;
    cJSON *item = NULL;
    const cJSON *key;
    if (exprs_init(r, &x) != 0 || table_name_member(r, &name) != 0 || load_table(r, name, &t, true) != 0 ||
        key_param(r, &t, "Key", &key, &hk, &rk) != 0 ||
        parse_member_expr(r, &x, "ProjectionExpression", DDB_EXPR_PROJECTION, &proj) != 0 || check_unused(r, &x) != 0) {
        goto out;
    }
    const cJSON *atg = member(r, "AttributesToGet");
    if (atg != NULL && proj != NULL) {
        fail(r, E_VALIDATION, "Can not use both expression and non-expression parameters in the same request: "
                              "Non-expression parameters: {AttributesToGet} Expression parameters: "
                              "{ProjectionExpression}");
        goto out;
    }
    if (read_item(r, &t, &hk, &rk, &item) != 0) {
        goto out;
    }
    if (item != NULL) {
        if (proj != NULL) {
            cJSON_AddItemToObject(r->out, "Item", ddb_project(proj, item));
        } else if (cJSON_IsArray(atg)) {
            cJSON *o = cJSON_AddObjectToObject(r->out, "Item");
            const cJSON *a;
            cJSON_ArrayForEach(a, atg)
            {
                const cJSON *v = cJSON_IsString(a) ? cJSON_GetObjectItemCaseSensitive(item, a->valuestring) : NULL;
                if (v != NULL && cJSON_GetObjectItemCaseSensitive(o, a->valuestring) == NULL) {
                    cJSON_AddItemToObject(o, a->valuestring, cJSON_Duplicate(v, true));
                }
            }
        } else {
            cJSON_AddItemToObject(r->out, "Item", item);
            item = NULL; /* now the reply's */
        }
    }
    consumed(r, name);
out:
    cJSON_Delete(item);
    ddb_expr_free(proj);
    exprs_dispose(&x);
    buf_dispose(&hk);
    buf_dispose(&rk);
    table_dispose(&t);
}

/* Copies into out the attributes named in touched that obj has (UPDATED_OLD / UPDATED_NEW). */
static void add_touched(cJSON *out, const cJSON *obj, const cJSON *touched)
{
    cJSON *attrs = cJSON_CreateObject();
    const cJSON *n;
    cJSON_ArrayForEach(n, touched)
    {
        const cJSON *v = obj != NULL ? cJSON_GetObjectItemCaseSensitive(obj, n->valuestring) : NULL;
        if (v != NULL) {
            cJSON_AddItemToObject(attrs, n->valuestring, cJSON_Duplicate(v, true));
        }
    }
    if (attrs->child != NULL) {
        cJSON_AddItemToObject(out, "Attributes", attrs);
    } else {
        cJSON_Delete(attrs);
    }
}

/* PutItem, UpdateItem and DeleteItem share their shape: key, condition, change, write, ReturnValues. */
typedef enum write_kind { W_PUT, W_UPDATE, W_DELETE } write_kind_t;

static void op_write(ddb_req_t *r, write_kind_t kind)
{
    static const char *const rv_put[] = {"NONE", "ALL_OLD"};
    static const char *const rv_update[] = {"NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"};
    const char *name, *rv;
    table_t t = {0};
    exprs_t x;
    buf_t hk = BUF_INIT, rk = BUF_INIT;
    ddb_expr_t *cond = NULL, *update = NULL;
    cJSON *old = NULL, *item = NULL, *touched = NULL;
    const cJSON *key = NULL;
    if (exprs_init(r, &x) != 0 || table_name_member(r, &name) != 0 ||
        return_values(r, kind == W_UPDATE ? rv_update : rv_put, kind == W_UPDATE ? 5 : 2, &rv) != 0 ||
        load_table(r, name, &t, true) != 0) {
        goto out;
    }
    if (kind == W_PUT) {
        if (obj_member(r, "Item", &key) != 0) {
            goto out;
        }
        if (key == NULL) {
            fail(r, E_VALIDATION, "1 validation error detected: Value null at 'item' failed to satisfy constraint: "
                                  "Member must not be null");
            goto out;
        }
        if (validate_attrs(r, key, "Item") != 0 || item_keys(r, &t, key, false, &hk, &rk) != 0) {
            goto out;
        }
    } else if (key_param(r, &t, "Key", &key, &hk, &rk) != 0) {
        goto out;
    }
    if (write_condition(r, &x, &cond) != 0) {
        goto out;
    }
    if (kind == W_UPDATE) {
        const cJSON *au;
        if (parse_member_expr(r, &x, "UpdateExpression", DDB_EXPR_UPDATE, &update) != 0 ||
            obj_member(r, "AttributeUpdates", &au) != 0) {
            goto out;
        }
        if (au != NULL) {
            if (update != NULL || x.names != NULL || x.values != NULL) {
                fail(r, E_VALIDATION, "Can not use both expression and non-expression parameters in the same request: "
                                      "Non-expression parameters: {AttributeUpdates} Expression parameters: "
                                      "{UpdateExpression}");
                goto out;
            }
            if (legacy_updates(r, &x, au, &update) != 0) {
                goto out;
            }
        }
    }
    if (check_unused(r, &x) != 0 || read_item(r, &t, &hk, &rk, &old) != 0) {
        goto out;
    }
    if (cond != NULL && !ddb_cond_eval(cond, old)) {
        fail(r, E_CONDITIONAL, "The conditional request failed");
        goto out;
    }
    if (kind == W_DELETE) {
        if (old != NULL && ddb_store_delete_item(r->db, t.name, hk.data, hk.len, rk.data, rk.len) != 0) {
            internal(r, "deleting an item");
            goto out;
        }
    } else {
        if (kind == W_PUT) {
            item = cJSON_Duplicate(key, true);
        } else {
            item = old != NULL ? cJSON_Duplicate(old, true) : cJSON_Duplicate(key, true);
            const char *keys[2] = {t.hash, t.range};
            if (update != NULL &&
                ddb_update_apply(update, item, keys, t.range != NULL ? 2 : 1, &touched, r->msg, sizeof r->msg) != 0) {
                r->err = E_VALIDATION;
                goto out;
            }
        }
        if (write_item(r, &t, &hk, &rk, item) != 0) {
            goto out;
        }
    }
    if (strcmp(rv, "ALL_OLD") == 0 && old != NULL) {
        cJSON_AddItemToObject(r->out, "Attributes", old);
        old = NULL;
    } else if (strcmp(rv, "ALL_NEW") == 0) {
        cJSON_AddItemToObject(r->out, "Attributes", item);
        item = NULL;
    } else if (strcmp(rv, "UPDATED_OLD") == 0) {
        add_touched(r->out, old, touched);
    } else if (strcmp(rv, "UPDATED_NEW") == 0) {
        add_touched(r->out, item, touched);
    }
    consumed(r, name);
out:
    cJSON_Delete(old);
    cJSON_Delete(item);
    cJSON_Delete(touched);
    ddb_expr_free(cond);
    ddb_expr_free(update);
    exprs_dispose(&x);
    buf_dispose(&hk);
    buf_dispose(&rk);
    table_dispose(&t);
}

static void op_put_item(ddb_req_t *r)
{
    op_write(r, W_PUT);
}

static void op_update_item(ddb_req_t *r)
{
    op_write(r, W_UPDATE);
}

static void op_delete_item(ddb_req_t *r)
{
    op_write(r, W_DELETE);
}

/* ------------------------------------------------------------------ Scan and Query */

typedef struct page {
    ddb_req_t *r;
    const table_t *t;
    const ddb_expr_t *filter, *proj, *key_cond;
    cJSON *items;      /* reply array, or NULL for Select COUNT */
    cJSON *last;       /* the last evaluated item (owned), for LastEvaluatedKey */
    int64_t limit;     /* 0: none */
    int64_t scanned, count;
    size_t bytes;
    bool stopped;      /* by Limit or the 1 MB page size */
    int segment, segments;
    bool failed;
} page_t;

static uint32_t fnv1a(const void *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ ((const unsigned char *)p)[i]) * 16777619u;
    }
    return h;
}

/* Evaluates one item (owned) against the page: counts it, filters, projects, keeps it as the last one. */
static bool page_take(page_t *pg, cJSON *item, size_t json_len)
{
    pg->scanned++;
    pg->bytes += json_len;
    if (pg->filter == NULL || ddb_cond_eval(pg->filter, item)) {
        pg->count++;
        if (pg->items != NULL) {
            cJSON_AddItemToArray(pg->items, pg->proj != NULL ? ddb_project(pg->proj, item) : cJSON_Duplicate(item, true));
        }
    }
    cJSON_Delete(pg->last);
    pg->last = item;
    if ((pg->limit > 0 && pg->scanned >= pg->limit) || pg->bytes >= PAGE_BYTES_MAX) {
        pg->stopped = true;
        return false;
    }
    return true;
}

static bool scan_one(void *arg, const void *hk, size_t hkn, const void *rk, size_t rkn, const char *json)
{
    (void)rk;
    (void)rkn;
    page_t *pg = arg;
    if (pg->segments > 1 && (int)(fnv1a(hk, hkn) % (uint32_t)pg->segments) != pg->segment) {
        return true;
    }
    cJSON *item = cJSON_Parse(json);
    if (item == NULL) {
        pg->failed = true;
        return false;
    }
    return page_take(pg, item, strlen(json));
}

static void page_reply(ddb_req_t *r, page_t *pg)
{
    cJSON_AddNumberToObject(r->out, "Count", (double)pg->count);
    cJSON_AddNumberToObject(r->out, "ScannedCount", (double)pg->scanned);
    if (pg->stopped && pg->last != NULL) {
        cJSON *k = cJSON_AddObjectToObject(r->out, "LastEvaluatedKey");
        cJSON_AddItemToObject(k, pg->t->hash, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(pg->last, pg->t->hash), true));
        if (pg->t->range != NULL) {
            cJSON_AddItemToObject(k, pg->t->range,
                                  cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(pg->last, pg->t->range), true));
        }
    }
    consumed(r, pg->t->name);
}

/* Shared parameters of Scan and Query. */
static int page_params(ddb_req_t *r, exprs_t *x, page_t *pg, ddb_expr_t **filter, ddb_expr_t **proj)
{
    const char *select;
    if (limit_member(r, &pg->limit) != 0 || str_member(r, "Select", &select) != 0 ||
        parse_member_expr(r, x, "FilterExpression", DDB_EXPR_CONDITION, filter) != 0 ||
        parse_member_expr(r, x, "ProjectionExpression", DDB_EXPR_PROJECTION, proj) != 0) {
        return -1;
    }
    if (member(r, "IndexName") != NULL) {
        return fail(r, E_VALIDATION, "eddy does not support secondary indexes (IndexName); see docs/DYNAMODB.md");
    }
    if (member(r, "ScanFilter") != NULL || member(r, "QueryFilter") != NULL || member(r, "KeyConditions") != NULL ||
        member(r, "AttributesToGet") != NULL) {
        return fail(r, E_VALIDATION, "eddy does not support the legacy parameters ScanFilter, QueryFilter, "
                                     "KeyConditions and AttributesToGet on Scan and Query; use the expression "
                                     "parameters (docs/DYNAMODB.md)");
    }
    if (select != NULL && strcmp(select, "COUNT") != 0 && strcmp(select, "ALL_ATTRIBUTES") != 0 &&
        strcmp(select, "SPECIFIC_ATTRIBUTES") != 0) {
        return fail(r, E_VALIDATION, "1 validation error detected: Value '%.32s' at 'select' failed to satisfy "
                                     "constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, "
                                     "ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]", select);
    }
    if (select != NULL && strcmp(select, "COUNT") == 0 && *proj != NULL) {
        return fail(r, E_VALIDATION, "Cannot specify the ProjectionExpression when choosing to get only the Count");
    }
    pg->items = select != NULL && strcmp(select, "COUNT") == 0 ? NULL : cJSON_AddArrayToObject(r->out, "Items");
    pg->filter = *filter;
    pg->proj = *proj;
    return 0;
}

static void op_scan(ddb_req_t *r)
{
    const char *name;
    table_t t = {0};
    exprs_t x;
    buf_t hk = BUF_INIT, rk = BUF_INIT;
    ddb_expr_t *filter = NULL, *proj = NULL;
    page_t pg = {.r = r, .t = &t, .segments = 1};
    if (exprs_init(r, &x) != 0 || table_name_member(r, &name) != 0 || load_table(r, name, &t, true) != 0 ||
        page_params(r, &x, &pg, &filter, &proj) != 0 || check_unused(r, &x) != 0) {
        goto out;
    }
    const cJSON *seg = member(r, "Segment"), *total = member(r, "TotalSegments");
    if (seg != NULL || total != NULL) {
        if (!cJSON_IsNumber(seg) || !cJSON_IsNumber(total) || total->valuedouble < 1 || total->valuedouble > 1000000 ||
            seg->valuedouble < 0 || seg->valuedouble >= total->valuedouble) {
            fail(r, E_VALIDATION, "The Segment parameter is required but was not present in the request when "
                                  "parameter TotalSegments is present, or is not below TotalSegments");
            goto out;
        }
        pg.segment = (int)seg->valuedouble;
        pg.segments = (int)total->valuedouble;
    }
    const cJSON *start = NULL;
    if (member(r, "ExclusiveStartKey") != NULL && key_param(r, &t, "ExclusiveStartKey", &start, &hk, &rk) != 0) {
        goto out;
    }
    if (ddb_store_scan(r->db, t.name, start != NULL ? hk.data : NULL, hk.len, rk.data, rk.len, scan_one, &pg) != 0 ||
        pg.failed) {
        internal(r, "scanning a table");
        goto out;
    }
    page_reply(r, &pg);
out:
    cJSON_Delete(pg.last);
    ddb_expr_free(filter);
    ddb_expr_free(proj);
    exprs_dispose(&x);
    buf_dispose(&hk);
    buf_dispose(&rk);
    table_dispose(&t);
}

typedef struct partition {
    cJSON **items;
    size_t n, cap;
    size_t *lens;
    bool failed;
} partition_t;

static bool collect(void *arg, const void *hk, size_t hkn, const void *rk, size_t rkn, const char *json)
{
    (void)hk;
    (void)hkn;
    (void)rk;
    (void)rkn;
    partition_t *p = arg;
    cJSON *item = cJSON_Parse(json);
    if (item == NULL) {
        p->failed = true;
        return false;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->items = realloc(p->items, p->cap * sizeof *p->items);
        p->lens = realloc(p->lens, p->cap * sizeof *p->lens);
        if (p->items == NULL || p->lens == NULL) {
            abort();
        }
    }
    p->items[p->n] = item;
    p->lens[p->n++] = strlen(json);
    return true;
}

static const char *sort_range_name; /* qsort has no context argument; set under the catalog write lock */

static int by_range(const void *a, const void *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, sort_range_name);
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, sort_range_name);
    bool ok;
    return ddb_value_cmp(x, y, &ok);
}

static void op_query(ddb_req_t *r)
{
    const char *name;
    table_t t = {0};
    exprs_t x;
    buf_t hk = BUF_INIT, rk = BUF_INIT, shk = BUF_INIT, srk = BUF_INIT;
    ddb_expr_t *filter = NULL, *proj = NULL, *kc = NULL;
    page_t pg = {.r = r, .t = &t, .segments = 1};
    partition_t part = {0};
    if (exprs_init(r, &x) != 0 || table_name_member(r, &name) != 0 || load_table(r, name, &t, true) != 0 ||
        parse_member_expr(r, &x, "KeyConditionExpression", DDB_EXPR_CONDITION, &kc) != 0 ||
        page_params(r, &x, &pg, &filter, &proj) != 0 || check_unused(r, &x) != 0) {
        goto out;
    }
    if (kc == NULL) {
        fail(r, E_VALIDATION, "Either the KeyConditions or KeyConditionExpression parameter must be specified in the "
                              "request.");
        goto out;
    }
    const cJSON *hv;
    if (ddb_key_condition(kc, t.hash, t.range, &hv, r->msg, sizeof r->msg) != 0) {
        r->err = E_VALIDATION;
        goto out;
    }
    if (encode_key_value(r, t.hash, t.htype, hv, &hk, HASH_KEY_MAX) != 0) {
        goto out;
    }
    const cJSON *start = NULL;
    if (member(r, "ExclusiveStartKey") != NULL && key_param(r, &t, "ExclusiveStartKey", &start, &shk, &srk) != 0) {
        goto out;
    }
    if (start != NULL && (shk.len != hk.len || memcmp(shk.data, hk.data, hk.len) != 0)) {
        fail(r, E_VALIDATION, "The provided starting key is invalid: The provided key element does not match the "
                              "schema");
        goto out;
    }
    const cJSON *forward = member(r, "ScanIndexForward");
    bool backward = cJSON_IsFalse(forward);
    if (ddb_store_partition(r->db, t.name, hk.data, hk.len, collect, &part) != 0 || part.failed) {
        internal(r, "reading a partition");
        goto out;
    }
    if (t.range != NULL) {
        sort_range_name = t.range;
        qsort(part.items, part.n, sizeof *part.items, by_range);
    }
    const cJSON *start_range = start != NULL && t.range != NULL ? cJSON_GetObjectItemCaseSensitive(start, t.range) : NULL;
    for (size_t k = 0; k < part.n; k++) {
        size_t i = backward ? part.n - 1 - k : k;
        cJSON *item = part.items[i];
        if (item == NULL) {
            continue;
        }
        if (start != NULL) {
            bool ok;
            int c = t.range != NULL ? ddb_value_cmp(cJSON_GetObjectItemCaseSensitive(item, t.range), start_range, &ok)
                                    : 0;
            if (t.range == NULL || (backward ? c >= 0 : c <= 0)) {
                continue; /* at or before the start key */
            }
        }
        if (!ddb_cond_eval(kc, item)) {
            continue;
        }
        part.items[i] = NULL; /* now the page's */
        if (!page_take(&pg, item, part.lens[i])) {
            break;
        }
    }
    page_reply(r, &pg);
out:
    for (size_t i = 0; i < part.n; i++) {
        cJSON_Delete(part.items[i]);
    }
    free(part.items);
    free(part.lens);
    cJSON_Delete(pg.last);
    ddb_expr_free(filter);
    ddb_expr_free(proj);
    ddb_expr_free(kc);
    exprs_dispose(&x);
    buf_dispose(&hk);
    buf_dispose(&rk);
    buf_dispose(&shk);
    buf_dispose(&srk);
    table_dispose(&t);
}

/* ------------------------------------------------------------------ routing */

static const struct {
    const char *name;
    void (*fn)(ddb_req_t *r);
} ops[] = {
    {"CreateTable", op_create_table}, {"DeleteItem", op_delete_item}, {"DeleteTable", op_delete_table},
    {"DescribeTable", op_describe_table}, {"GetItem", op_get_item}, {"ListTables", op_list_tables},
    {"PutItem", op_put_item}, {"Query", op_query}, {"Scan", op_scan},
    {"UpdateItem", op_update_item},
};

int ddb_init(server_t *srv)
{
    if (ddb_store_init(catalog_sqlite(srv->catalog)) != 0) {
        log_error("cannot create the DynamoDB tables in the catalog");
        return -EIO;
    }
    return 0;
}


void ddb_handle(server_t *srv, http_request_t *req, const char *request_id, int64_t start_us, const char *op,
                size_t oplen)
{
    ddb_req_t r = {.srv = srv, .now_ms = clock_now_ms(), .out = cJSON_CreateObject()};
    void (*fn)(ddb_req_t *) = NULL;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strlen(ops[i].name) == oplen && memcmp(ops[i].name, op, oplen) == 0) {
            fn = ops[i].fn;
        }
    }
    size_t blen;
    const char *body = http_request_body(req, &blen);
    cJSON *input = NULL;
    if (fn == NULL) {
        fail(&r, E_UNKNOWN_OP, "Unknown operation %.*s", (int)(oplen > 64 ? 64 : oplen), op);
    } else {
        input = blen ? cJSON_ParseWithLength(body, blen) : cJSON_CreateObject();
        if (!cJSON_IsObject(input)) {
            fail(&r, E_SERIALIZATION, input == NULL ? "Malformed JSON request body" : "Expected a JSON object");
        }
    }
    if (r.err == E_NONE) {
        r.in = input;
        catalog_lock(srv->catalog);
        r.db = catalog_sqlite(srv->catalog);
        fn(&r);
        catalog_unlock(srv->catalog);
    }
    cJSON_Delete(input);
    buf_t out = BUF_INIT;
    int status = errors[r.err].status;
    if (r.err != E_NONE) {
        cJSON_Delete(r.out);
        r.out = cJSON_CreateObject();
        cJSON_AddStringToObject(r.out, "__type", errors[r.err].type);
        cJSON_AddStringToObject(r.out, "message", r.msg);
    }
    char *text = cJSON_PrintUnformatted(r.out);
    if (text == NULL) {
        abort();
    }
    buf_puts(&out, text);
    free(text);
    cJSON_Delete(r.out);
    const char *etype = r.err != E_NONE ? strchr(errors[r.err].type, '#') + 1 : NULL;
    char name[80];
    snprintf(name, sizeof name, "DynamoDB.%.*s", (int)(oplen > 64 ? 64 : oplen), op);
    api_observe_named(srv, req, request_id, start_us, name, status, etype, out.len);
    http_reply(req, status, "application/x-amz-json-1.0", &out);
}
