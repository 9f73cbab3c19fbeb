/* Unit tests for server/dynamodb/expr: numbers, attribute values, condition / update / projection / key
 * condition expressions (parsing, evaluation, errors). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "server/dynamodb/expr.h"

static cJSON *json(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    cr_assert_not_null(j, "bad test JSON: %s", text);
    return j;
}

static const char *ITEM = "{\"leaseKey\":{\"S\":\"shardId-1\"},\"leaseCounter\":{\"N\":\"7\"},"
                          "\"leaseOwner\":{\"S\":\"w1\"},\"s\":{\"S\":\"hello world\"},\"ss\":{\"SS\":[\"a\",\"b\"]},"
                          "\"ns\":{\"NS\":[\"1\",\"2.50\"]},\"l\":{\"L\":[{\"S\":\"x\"},{\"N\":\"2\"}]},"
                          "\"m\":{\"M\":{\"in\":{\"S\":\"v\"},\"deep\":{\"M\":{\"z\":{\"N\":\"1\"}}}}},"
                          "\"b\":{\"B\":\"AQID\"},\"t\":{\"BOOL\":true},\"nul\":{\"NULL\":true}}";

static const char *VALUES = "{\":c\":{\"N\":\"7.0\"},\":o\":{\"S\":\"w1\"},\":one\":{\"N\":\"1\"},\":5\":{\"N\":\"5\"},"
                            "\":20\":{\"N\":\"20\"},\":he\":{\"S\":\"hello\"},\":wo\":{\"S\":\"world\"},"
                            "\":a\":{\"S\":\"a\"},\":S\":{\"S\":\"S\"},\":x\":{\"S\":\"x\"},\":2\":{\"N\":\"2\"},"
                            "\":b\":{\"B\":\"AQI=\"},\":set\":{\"SS\":[\"c\"]},\":ns\":{\"NS\":[\"2.5\",\"3\"]},"
                            "\":l\":{\"L\":[{\"S\":\"y\"}]},\":bad\":{\"S\":\"nope\"}}";

static const char *NAMES = "{\"#o\":\"leaseOwner\",\"#c\":\"leaseCounter\"}";

static bool eval(const char *cond)
{
    cJSON *item = json(ITEM), *values = json(VALUES), *names = json(NAMES);
    ddb_expr_t *e;
    char err[DDB_ERR_MAX];
    int rc = ddb_expr_parse(DDB_EXPR_CONDITION, "ConditionExpression", cond, strlen(cond), names, values, &e, err,
                            sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", cond, err);
    bool r = ddb_cond_eval(e, item);
    ddb_expr_free(e);
    cJSON_Delete(item);
    cJSON_Delete(values);
    cJSON_Delete(names);
    return r;
}

static void parse_error(ddb_expr_kind_t kind, const char *text, const char *fragment)
{
    cJSON *values = json(VALUES), *names = json(NAMES);
    ddb_expr_t *e = NULL;
    char err[DDB_ERR_MAX] = "";
    int rc = ddb_expr_parse(kind, "X", text, strlen(text), names, values, &e, err, sizeof err);
    cr_assert_eq(rc, -1, "expected an error for %s", text);
    cr_assert_null(e);
    cr_assert(strstr(err, fragment) != NULL, "%s: message '%s' lacks '%s'", text, err, fragment);
    cJSON_Delete(values);
    cJSON_Delete(names);
}

Test(ddb_num, compare_and_add)
{
    cr_assert(ddb_num_valid("1") && ddb_num_valid("-0.5") && ddb_num_valid("1e5") && ddb_num_valid("00012.3400"));
    cr_assert(!ddb_num_valid("") && !ddb_num_valid("abc") && !ddb_num_valid("1.2.3") && !ddb_num_valid("1e"));
    cr_assert(!ddb_num_valid("1e200") && !ddb_num_valid("123456789012345678901234567890123456789"));
    cr_assert(ddb_num_valid("1000000000000000000000000000000000000000000")); /* one significant digit */
    cr_assert_eq(ddb_num_cmp("10", "9"), 1);
    cr_assert_eq(ddb_num_cmp("1.0", "1"), 0);
    cr_assert_eq(ddb_num_cmp("-2", "-10"), 1);
    cr_assert_eq(ddb_num_cmp("0", "-0.0"), 0);
    cr_assert_eq(ddb_num_cmp("1e2", "99.9"), 1);
    char out[DDB_NUM_STR_MAX], err[DDB_ERR_MAX];
    cr_assert_eq(ddb_num_add("7", "1", false, out, err, sizeof err), 0);
    cr_assert_str_eq(out, "8");
    cr_assert_eq(ddb_num_add("0.1", "0.2", false, out, err, sizeof err), 0);
    cr_assert_str_eq(out, "0.3");
    cr_assert_eq(ddb_num_add("1", "2.5", true, out, err, sizeof err), 0);
    cr_assert_str_eq(out, "-1.5");
    cr_assert_eq(ddb_num_add("1e3", "0", false, out, err, sizeof err), 0);
    cr_assert_str_eq(out, "1000");
    cr_assert_eq(ddb_num_add("5", "5", true, out, err, sizeof err), 0);
    cr_assert_str_eq(out, "0");
    cr_assert_eq(ddb_num_add("99999999999999999999999999999999999999", "1", false, out, err, sizeof err), 0);
    cr_assert_str_eq(out, "100000000000000000000000000000000000000");
    cr_assert_eq(ddb_num_add("99999999999999999999999999999999999999", "0.1", false, out, err, sizeof err), -1);
    cr_assert(strstr(err, "38") != NULL);
    cr_assert_eq(ddb_num_add("9.9e125", "9.9e125", false, out, err, sizeof err), -1);
}

Test(ddb_value, validate_and_equal)
{
    char err[DDB_ERR_MAX];
    const char *good[] = {"{\"S\":\"\"}", "{\"N\":\"1\"}", "{\"B\":\"AQID\"}", "{\"BOOL\":false}", "{\"NULL\":true}",
                          "{\"SS\":[\"a\"]}", "{\"NS\":[\"1\",\"2\"]}", "{\"L\":[]}", "{\"M\":{\"a\":{\"S\":\"x\"}}}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cJSON *v = json(good[i]);
        cr_assert_eq(ddb_value_validate(v, "Item", err, sizeof err), 0, "%s: %s", good[i], err);
        cJSON_Delete(v);
    }
    const char *bad[] = {"{}", "{\"S\":1}", "{\"N\":\"x\"}", "{\"B\":\"!!\"}", "{\"NULL\":false}", "{\"SS\":[]}",
                         "{\"SS\":[\"a\",\"a\"]}", "{\"NS\":[\"1\",\"1.0\"]}", "{\"X\":\"1\"}", "{\"S\":\"a\",\"N\":\"1\"}",
                         "{\"L\":[{}]}", "{\"M\":{\"a\":{\"Q\":1}}}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *v = json(bad[i]);
        cr_assert_eq(ddb_value_validate(v, "Item", err, sizeof err), -1, "%s accepted", bad[i]);
        cr_assert(err[0] != '\0');
        cJSON_Delete(v);
    }
    /* nesting beyond 32 levels */
    char deep[1024] = "";
    for (int i = 0; i < 40; i++) {
        strcat(deep, "{\"L\":[");
    }
    strcat(deep, "{\"S\":\"x\"}");
    for (int i = 0; i < 40; i++) {
        strcat(deep, "]}");
    }
    cJSON *v = json(deep);
    cr_assert_eq(ddb_value_validate(v, "Item", err, sizeof err), -1);
    cJSON_Delete(v);

    cJSON *a = json("{\"NS\":[\"1\",\"2\"]}"), *b = json("{\"NS\":[\"2.0\",\"1\"]}");
    cr_assert(ddb_value_equal(a, b));
    cJSON *c = json("{\"M\":{\"x\":{\"N\":\"1\"},\"y\":{\"L\":[{\"S\":\"a\"}]}}}");
    cJSON *d = json("{\"M\":{\"y\":{\"L\":[{\"S\":\"a\"}]},\"x\":{\"N\":\"1.00\"}}}");
    cr_assert(ddb_value_equal(c, d));
    cr_assert(!ddb_value_equal(a, c));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(d);
}

Test(ddb_cond, kcl_conditions)
{
    cr_assert(eval("attribute_exists(leaseKey)"));
    cr_assert(!eval("attribute_not_exists(leaseKey)"));
    cr_assert(eval("leaseCounter = :c"));
    cr_assert(eval("#c = :c AND #o = :o"));
    cr_assert(eval("leaseCounter = :c AND attribute_not_exists(checkpointOwner)"));
    cr_assert(!eval("leaseOwner = :x"));
}

Test(ddb_cond, operators_and_functions)
{
    cr_assert(eval("leaseCounter > :5") && eval("leaseCounter >= :c") && eval("leaseCounter < :20"));
    cr_assert(eval("leaseCounter <= :c") && eval("leaseCounter <> :5") && !eval("leaseCounter <> :c"));
    cr_assert(eval("leaseCounter BETWEEN :5 AND :20") && !eval("leaseCounter BETWEEN :20 AND :5"));
    cr_assert(eval("leaseCounter IN (:5, :c)") && !eval("leaseCounter IN (:5,:20)"));
    cr_assert(eval("begins_with(s, :he)") && !eval("begins_with(s, :wo)") && eval("begins_with(b, :b)"));
    cr_assert(eval("contains(s, :wo)") && eval("contains(ss, :a)") && eval("contains(l, :x)") &&
              eval("contains(l, :2)") && !eval("contains(ss, :x)"));
    cr_assert(eval("attribute_type(s, :S)") && !eval("attribute_type(leaseCounter, :S)"));
    cr_assert(eval("size(s) > :5") && eval("size(ss) = :2") && eval("size(l) = :2") && eval("size(m) = :2"));
    cr_assert(eval("m.deep.z = :one") && eval("l[1] = :2") && !eval("l[9] = :2") && !eval("m.nope.z = :one"));
    cr_assert(eval("NOT leaseOwner = :x") && eval("NOT NOT leaseOwner = :o"));
    cr_assert(eval("(leaseCounter = :5 OR leaseCounter = :c) AND NOT (s = :x)"));
    cr_assert(!eval("leaseCounter = :5 OR (leaseCounter = :20 AND s = :he)"));
    cr_assert(eval("leaseCounter = :5 OR leaseCounter = :20 OR leaseOwner = :o"));
    cr_assert(eval("a_missing <> :x") && !eval("a_missing = :x") && !eval("a_missing < :x"));
    cr_assert(!eval("s < :5"), "different types do not compare");
    cr_assert(eval("LEASEOWNER = :o") == false && eval("leaseOwner = :o and leaseCounter = :c"));
}

Test(ddb_cond, errors)
{
    parse_error(DDB_EXPR_CONDITION, "a = ", "Syntax error");
    parse_error(DDB_EXPR_CONDITION, "a = :nope", "not defined; attribute value: :nope");
    parse_error(DDB_EXPR_CONDITION, "#nope = :o", "not defined; attribute name: #nope");
    parse_error(DDB_EXPR_CONDITION, "foo(a)", "Invalid function name");
    parse_error(DDB_EXPR_CONDITION, "attribute_type(a, :bad)", "Invalid attribute type name");
    parse_error(DDB_EXPR_CONDITION, "a = :o extra", "Syntax error");
    parse_error(DDB_EXPR_CONDITION, "a BETWEEN :5", "Syntax error");
    parse_error(DDB_EXPR_CONDITION, "", "can not be empty");
    parse_error(DDB_EXPR_CONDITION, "a[x] = :o", "Syntax error");
    parse_error(DDB_EXPR_CONDITION, "a = :o $", "Syntax error");
    char deep[600] = "";
    for (int i = 0; i < 100; i++) {
        strcat(deep, "(");
    }
    strcat(deep, "a = :o");
    for (int i = 0; i < 100; i++) {
        strcat(deep, ")");
    }
    parse_error(DDB_EXPR_CONDITION, deep, "nested too deeply");
    char *longer = malloc(DDB_EXPR_MAX + 10);
    memset(longer, 'a', DDB_EXPR_MAX + 9);
    longer[DDB_EXPR_MAX + 9] = '\0';
    parse_error(DDB_EXPR_CONDITION, longer, "maximum allowed size");
    free(longer);
}

static cJSON *update(const char *expr, int expect_rc, const char *fragment)
{
    cJSON *item = json(ITEM), *values = json(VALUES), *names = json(NAMES);
    ddb_expr_t *e;
    char err[DDB_ERR_MAX] = "";
    int rc = ddb_expr_parse(DDB_EXPR_UPDATE, "UpdateExpression", expr, strlen(expr), names, values, &e, err, sizeof err);
    if (rc == 0) {
        const char *keys[] = {"leaseKey"};
        cJSON *before = cJSON_Duplicate(item, true);
        rc = ddb_update_apply(e, item, keys, 1, NULL, err, sizeof err);
        if (rc != 0) {
            cr_assert(cJSON_Compare(before, item, true), "a failed update changed the item");
        }
        cJSON_Delete(before);
        ddb_expr_free(e);
    }
    cr_assert_eq(rc, expect_rc, "%s: rc %d (%s)", expr, rc, err);
    if (fragment != NULL) {
        cr_assert(strstr(err, fragment) != NULL, "%s: '%s' lacks '%s'", expr, err, fragment);
    }
    cJSON_Delete(values);
    cJSON_Delete(names);
    return item;
}

static const char *num(const cJSON *item, const char *name)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(item, name), "N")->valuestring;
}

Test(ddb_update, actions)
{
    cJSON *it = update("SET leaseOwner = :x ADD leaseCounter :one REMOVE checkpointOwner, s", 0, NULL);
    cr_assert_str_eq(num(it, "leaseCounter"), "8");
    cr_assert_null(cJSON_GetObjectItem(it, "s"));
    cJSON_Delete(it);

    it = update("SET leaseCounter = leaseCounter + :one, n2 = if_not_exists(n2, :5) - :one", 0, NULL);
    cr_assert_str_eq(num(it, "leaseCounter"), "8");
    cr_assert_str_eq(num(it, "n2"), "4");
    cJSON_Delete(it);

    it = update("SET l = list_append(l, :l), m.deep.w = :x, ss = :a", 0, NULL);
    cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "l"), "L");
    cr_assert_eq(cJSON_GetArraySize(l), 3);
    cJSON_Delete(it);
    it = update("SET l[0] = :a, l[7] = :x", 0, NULL); /* beyond the end: appended */
    l = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "l"), "L");
    cr_assert_eq(cJSON_GetArraySize(l), 3);
    cJSON_Delete(it);

    it = update("ADD ss :set, ns :ns, fresh :one", 0, NULL);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "ss"), "SS")), 3);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "ns"), "NS")), 3, "2.5 = 2.50");
    cr_assert_str_eq(num(it, "fresh"), "1");
    cJSON_Delete(it);

    it = update("DELETE ss :ss", -1, "not defined");
    cJSON_Delete(it);
    it = update("REMOVE l[0], m.deep", 0, NULL);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "l"), "L")), 1);
    cJSON_Delete(it);
}

Test(ddb_update, errors)
{
    cJSON_Delete(update("SET leaseKey = :x", -1, "part of the key"));
    cJSON_Delete(update("SET a = missing + :one", -1, "does not exist"));
    cJSON_Delete(update("SET a = s + :one", -1, "incorrect data type"));
    cJSON_Delete(update("ADD s :one", -1, "incorrect data type"));
    cJSON_Delete(update("ADD ss :one", -1, "incorrect data type"));
    cJSON_Delete(update("SET nope.x = :one", -1, "invalid for update"));
    cJSON_Delete(update("SET a = :one, a = :x", -1, "overlap"));
    cJSON_Delete(update("SET m = :one REMOVE m.deep", -1, "overlap"));
    cJSON_Delete(update("SET l = :l REMOVE l[0]", -1, "overlap"));
    cJSON_Delete(update("REMOVE m.in", -1, "Syntax error")); /* IN is a keyword: use #names */
    cJSON_Delete(update("SET a = :one SET b = :one", -1, "only be used once"));
    cJSON_Delete(update("SET a :one", -1, "Syntax error"));
    cJSON_Delete(update("ADD a = :one", -1, "Syntax error"));
    cJSON_Delete(update("FROB a", -1, "Syntax error"));
    cJSON_Delete(update("SET l = list_append(s, :l)", -1, "list_append"));
}

Test(ddb_projection, paths)
{
    cJSON *item = json(ITEM);
    ddb_expr_t *e;
    char err[DDB_ERR_MAX];
    const char *p = "leaseKey, m.deep.z, l[1], nope";
    cr_assert_eq(ddb_expr_parse(DDB_EXPR_PROJECTION, "ProjectionExpression", p, strlen(p), NULL, NULL, &e, err, sizeof err), 0,
                 "%s", err);
    cJSON *out = ddb_project(e, item);
    char *text = cJSON_PrintUnformatted(out);
    cr_assert_str_eq(text, "{\"leaseKey\":{\"S\":\"shardId-1\"},\"m\":{\"M\":{\"deep\":{\"M\":{\"z\":{\"N\":\"1\"}}}}},"
                           "\"l\":{\"L\":[{\"N\":\"2\"}]}}");
    free(text);
    cJSON_Delete(out);
    ddb_expr_free(e);
    cJSON_Delete(item);
    parse_error(DDB_EXPR_PROJECTION, "a, a", "overlap");
    parse_error(DDB_EXPR_PROJECTION, "a,", "Syntax error");
}

Test(ddb_key_condition, shapes)
{
    cJSON *values = json(VALUES);
    const char *ok[] = {"pk = :o", "pk = :o AND sk > :5", "sk BETWEEN :5 AND :20 AND pk = :o",
                        "pk = :o AND begins_with(sk, :he)"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ddb_expr_t *e;
        char err[DDB_ERR_MAX];
        cr_assert_eq(ddb_expr_parse(DDB_EXPR_CONDITION, "KeyConditionExpression", ok[i], strlen(ok[i]), NULL, values, &e,
                                    err, sizeof err), 0);
        const cJSON *hv;
        cr_assert_eq(ddb_key_condition(e, "pk", "sk", &hv, err, sizeof err), 0, "%s: %s", ok[i], err);
        cr_assert_str_eq(hv->child->valuestring, "w1");
        ddb_expr_free(e);
    }
    const char *bad[] = {"sk = :o", "pk = :o OR sk = :5", "pk = :o AND other = :5", "pk <> :o", "pk = :o AND sk = :5 AND sk = :20",
                         "pk = sk"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddb_expr_t *e;
        char err[DDB_ERR_MAX];
        cr_assert_eq(ddb_expr_parse(DDB_EXPR_CONDITION, "KeyConditionExpression", bad[i], strlen(bad[i]), NULL, values,
                                    &e, err, sizeof err), 0);
        const cJSON *hv;
        cr_assert_eq(ddb_key_condition(e, "pk", "sk", &hv, err, sizeof err), -1, "%s accepted", bad[i]);
        ddb_expr_free(e);
    }
    cJSON_Delete(values);
}
