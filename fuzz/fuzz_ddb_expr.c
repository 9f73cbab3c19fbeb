/*
 * fuzz_ddb_expr: the DynamoDB expression parser and evaluator (server/dynamodb/expr.c) on arbitrary text.
 *
 * The first input byte chooses the kind (condition, update, projection; bit 2 also checks the key
 * condition shape), the rest is the expression. It is parsed with fixed ExpressionAttributeNames and
 * ExpressionAttributeValues; a failure must leave a non-empty message; a success is evaluated (condition),
 * applied (update: a failed update must leave the item unchanged) or projected against a fixed item.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/dynamodb/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "check failed: %s\n", #cond);                                                    \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static const char ITEM[] = "{\"k\":{\"S\":\"x\"},\"n\":{\"N\":\"7\"},\"s\":{\"S\":\"hello\"},\"ss\":{\"SS\":[\"a\"]},"
                           "\"ns\":{\"NS\":[\"1\"]},\"l\":{\"L\":[{\"S\":\"x\"},{\"M\":{\"a\":{\"N\":\"1\"}}}]},"
                           "\"m\":{\"M\":{\"a\":{\"L\":[]},\"b\":{\"BOOL\":true}}},\"b\":{\"B\":\"AQID\"}}";
static const char VALUES[] = "{\":a\":{\"S\":\"a\"},\":n\":{\"N\":\"1\"},\":big\":{\"N\":\"9.9e125\"},"
                             "\":ss\":{\"SS\":[\"b\"]},\":ns\":{\"NS\":[\"2\"]},\":l\":{\"L\":[]},\":t\":{\"S\":\"N\"},"
                             "\":b\":{\"B\":\"AQ==\"},\":m\":{\"M\":{}}}";
static const char NAMES[] = "{\"#k\":\"k\",\"#n\":\"n\",\"#x\":\"x.y\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    static cJSON *item, *values, *names;
    if (item == NULL) {
        item = cJSON_Parse(ITEM);
        values = cJSON_Parse(VALUES);
        names = cJSON_Parse(NAMES);
    }
    ddb_expr_kind_t kind = (ddb_expr_kind_t)(data[0] % 3);
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    ddb_expr_t *e = NULL;
    char err[DDB_ERR_MAX] = "";
    int rc = ddb_expr_parse(kind, "X", text, size - 1, names, values, &e, err, sizeof err);
    if (rc != 0) {
        CHECK(e == NULL && err[0] != '\0');
        free(text);
        return 0;
    }
    if (kind == DDB_EXPR_CONDITION) {
        (void)ddb_cond_eval(e, item);
        (void)ddb_cond_eval(e, NULL);
        const cJSON *hv;
        if ((data[0] & 4) != 0) {
            (void)ddb_key_condition(e, "k", "n", &hv, err, sizeof err);
        }
    } else if (kind == DDB_EXPR_UPDATE) {
        cJSON *copy = cJSON_Duplicate(item, true);
        const char *keys[] = {"k"};
        cJSON *touched = NULL;
        if (ddb_update_apply(e, copy, keys, 1, &touched, err, sizeof err) != 0) {
            CHECK(cJSON_Compare(copy, item, true) && err[0] != '\0');
        }
        cJSON_Delete(touched);
        cJSON_Delete(copy);
    } else {
        cJSON_Delete(ddb_project(e, item));
    }
    ddb_expr_free(e);
    free(text);
    return 0;
}
