/*
 * ddb expr: DynamoDB attribute values, numbers and expressions (condition, key condition, filter, update
 * and projection expressions), parsed by recursive descent into a small AST and evaluated against items.
 *
 * Pure: no I/O, no globals, no locks; any thread. Fuzzed by fuzz/fuzz_ddb_expr.c.
 *
 * Representation: an attribute value is a cJSON object in DynamoDB's JSON form ({"S":"x"}, {"N":"1.5"},
 * {"L":[...]}, ...); an item is a cJSON object mapping attribute names to attribute values. Numbers stay
 * decimal strings and are compared and added exactly (up to 38 significant digits, as DynamoDB).
 *
 * Invariants: a parsed expression borrows the expression text, the ExpressionAttributeNames object and the
 * ExpressionAttributeValues object it was parsed with; they must outlive it. Every function that can fail
 * returns 0 or -1 with a DynamoDB-style ValidationException message in err (no trailing period required).
 */
#ifndef EDDY_SERVER_DYNAMODB_EXPR_H
#define EDDY_SERVER_DYNAMODB_EXPR_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define DDB_EXPR_MAX 4096         /* bytes of one expression */
#define DDB_PATH_DEPTH_MAX 32     /* elements of one document path */
#define DDB_VALUE_DEPTH_MAX 32    /* nesting of L and M */
#define DDB_NUM_DIGITS_MAX 38     /* significant digits of a number */
#define DDB_NUM_STR_MAX 200       /* text of a number we produce (1e125 in plain form, with sign) */
#define DDB_ERR_MAX 512

typedef struct ddb_expr ddb_expr_t;

typedef enum ddb_expr_kind {
    DDB_EXPR_CONDITION,  /* ConditionExpression, FilterExpression, KeyConditionExpression */
    DDB_EXPR_UPDATE,     /* UpdateExpression */
    DDB_EXPR_PROJECTION, /* ProjectionExpression */
} ddb_expr_kind_t;

/* ---- numbers ---- */

/* Whether s is a valid DynamoDB number (at most 38 significant digits, magnitude within 1e-130 .. 1e126). */
bool ddb_num_valid(const char *s);
/* Numeric comparison of two valid numbers: <0, 0, >0. */
int ddb_num_cmp(const char *a, const char *b);
/* out = a + b (or a - b when subtract), in plain decimal form. -1 with err on overflow or too many
 * significant digits. */
int ddb_num_add(const char *a, const char *b, bool subtract, char out[DDB_NUM_STR_MAX], char *err, size_t errlen);

/* ---- attribute values ---- */

/* Checks an attribute value (recursively, depth bounded): exactly one type member of the right JSON type,
 * valid numbers and base64, sets non-empty without duplicates. what names it in messages. */
int ddb_value_validate(const cJSON *av, const char *what, char *err, size_t errlen);
/* The type letter(s) of a valid attribute value ("S", "NS", ...). */
const char *ddb_value_type(const cJSON *av);
/* Deep equality (numbers numerically, sets regardless of order). */
bool ddb_value_equal(const cJSON *a, const cJSON *b);
/* Ordering of two scalars of the same type S, N or B (strings and binaries bytewise, as DynamoDB). *ok
 * false when they are not comparable. */
int ddb_value_cmp(const cJSON *a, const cJSON *b, bool *ok);
/* DynamoDB's size of an attribute value / of an item (names + values), in bytes (close to AWS's rules). */
size_t ddb_value_size(const cJSON *av);
size_t ddb_item_size(const cJSON *item);

/* ---- expressions ---- */

/* Parses text (len bytes) as kind. names and values are the request's ExpressionAttributeNames and
 * ExpressionAttributeValues objects (each may be NULL); what names the expression in messages
 * ("ConditionExpression"). The result (*out, free with ddb_expr_free) borrows text, names and values. */
int ddb_expr_parse(ddb_expr_kind_t kind, const char *what, const char *text, size_t len, const cJSON *names,
                   const cJSON *values, ddb_expr_t **out, char *err, size_t errlen);
void ddb_expr_free(ddb_expr_t *e);

/* Evaluates a condition against item (NULL or an empty object when the item does not exist). */
bool ddb_cond_eval(const ddb_expr_t *e, const cJSON *item);

/* Applies an update expression to item in place (all operands read the item as it was before the
 * update). key_names[0..nkeys) are the table's key attributes, which may not be changed. On failure the
 * item is left unchanged. touched (may be NULL) receives the top-level attribute names the update changes
 * (a cJSON array of strings, caller frees). */
int ddb_update_apply(const ddb_expr_t *e, cJSON *item, const char *const *key_names, size_t nkeys,
                     cJSON **touched, char *err, size_t errlen);

/* A copy of the parts of item that a projection expression names (a new object; caller frees). */
cJSON *ddb_project(const ddb_expr_t *e, const cJSON *item);

/* For a key condition: checks the shape DynamoDB allows (hash = :v, optionally AND one condition on the
 * range key: = < <= > >= BETWEEN begins_with) against the table's key names (range_name NULL when the
 * table has none) and returns the hash key's value (borrowed from the values object). */
int ddb_key_condition(const ddb_expr_t *e, const char *hash_name, const char *range_name, const cJSON **hash_value,
                      char *err, size_t errlen);

#endif
