/* Unit tests for server/validate: AWS-shaped validation messages, types and patterns. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server/api/api.h"
#include "server/validate.h"

static const char *const modes[] = {"PROVISIONED", "ON_DEMAND", NULL};
static const vfield_t mode_details[] = {
    {"StreamMode", VT_STRING, true, VNONE, VNONE, PAT_NONE, modes, NULL},
    {NULL, VT_STRING, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
};
static const vfield_t tag_map[] = {
    {"key", VT_STRING, true, 1, 128, PAT_NONE, NULL, NULL},
    {"value", VT_STRING, true, 0, 256, PAT_NONE, NULL, NULL},
};
static const vfield_t tag_key = {"member", VT_STRING, true, 1, 128, PAT_NONE, NULL, NULL};
static const vfield_t fields[] = {
    {"StreamName", VT_STRING, true, 1, 128, PAT_NAME, NULL, NULL},
    {"ShardCount", VT_INT, false, 1, 100000, PAT_NONE, NULL, NULL},
    {"StreamModeDetails", VT_STRUCT, false, VNONE, VNONE, PAT_NONE, NULL, mode_details},
    {"Tags", VT_MAP, false, 1, 3, PAT_NONE, NULL, tag_map},
    {"TagKeys", VT_LIST, false, 1, 2, PAT_NONE, NULL, &tag_key},
    {"Flag", VT_BOOL, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    {"At", VT_TIMESTAMP, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    {NULL, VT_STRING, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
};

static kerr_t check(const char *json, buf_t *msg)
{
    cJSON *root = cJSON_Parse(json);
    cr_assert_not_null(root, "bad test json %s", json);
    buf_reset(msg);
    kerr_t k = validate_input(root, fields, msg);
    cJSON_Delete(root);
    buf_cstr(msg);
    return k;
}

Test(validate, valid_input_passes)
{
    buf_t msg = BUF_INIT;
    cr_assert_eq(check("{\"StreamName\":\"a-b_c.1\",\"ShardCount\":2,\"StreamModeDetails\":{\"StreamMode\":"
                       "\"ON_DEMAND\"},\"Tags\":{\"k\":\"\"},\"Unknown\":[1]}",
                       &msg),
                 KERR_NONE);
    buf_dispose(&msg);
}

Test(validate, missing_required_member)
{
    buf_t msg = BUF_INIT;
    cr_assert_eq(check("{}", &msg), KERR_VALIDATION);
    cr_assert_str_eq(msg.data, "1 validation error detected: Value null at 'streamName' failed to satisfy "
                               "constraint: Member must not be null");
    buf_dispose(&msg);
}

Test(validate, several_errors_are_joined)
{
    buf_t msg = BUF_INIT;
    cr_assert_eq(check("{\"StreamName\":\"a b\",\"ShardCount\":0}", &msg), KERR_VALIDATION);
    cr_assert_str_eq(msg.data,
                     "2 validation errors detected: Value 'a b' at 'streamName' failed to satisfy constraint: "
                     "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '0' at 'shardCount' "
                     "failed to satisfy constraint: Member must have value greater than or equal to 1");
    buf_dispose(&msg);
}

Test(validate, length_counts_code_points)
{
    buf_t msg = BUF_INIT;
    char json[400];
    char name[130];
    memset(name, 'x', 129);
    name[129] = '\0';
    snprintf(json, sizeof json, "{\"StreamName\":\"%s\"}", name);
    cr_assert_eq(check(json, &msg), KERR_VALIDATION);
    cr_assert(strstr(msg.data, "Member must have length less than or equal to 128") != NULL);
    /* 128 two-byte characters in a tag key are within the limit */
    char key[300] = "";
    for (int i = 0; i < 128; i++) {
        strcat(key, "\xc3\xa9");
    }
    snprintf(json, sizeof json, "{\"StreamName\":\"s\",\"Tags\":{\"%s\":\"v\"}}", key);
    cr_assert_eq(check(json, &msg), KERR_NONE, "%s", msg.data);
    buf_dispose(&msg);
}

Test(validate, enums_in_nested_structures)
{
    buf_t msg = BUF_INIT;
    cr_assert_eq(check("{\"StreamName\":\"s\",\"StreamModeDetails\":{\"StreamMode\":\"FAST\"}}", &msg),
                 KERR_VALIDATION);
    cr_assert_str_eq(msg.data, "1 validation error detected: Value 'FAST' at 'streamModeDetails.streamMode' "
                               "failed to satisfy constraint: Member must satisfy enum value set: "
                               "[PROVISIONED, ON_DEMAND]");
    cr_assert_eq(check("{\"StreamName\":\"s\",\"StreamModeDetails\":{}}", &msg), KERR_VALIDATION);
    cr_assert(strstr(msg.data, "at 'streamModeDetails.streamMode'") != NULL);
    buf_dispose(&msg);
}

Test(validate, maps_and_lists)
{
    buf_t msg = BUF_INIT;
    cr_assert_eq(check("{\"StreamName\":\"s\",\"Tags\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\"}}", &msg),
                 KERR_VALIDATION);
    cr_assert(strstr(msg.data, "Value '{a=1, b=2, c=3, d=4}' at 'tags' failed to satisfy constraint: Member must "
                               "have length less than or equal to 3") != NULL,
              "%s", msg.data);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"Tags\":{\"\":\"1\"}}", &msg), KERR_VALIDATION);
    cr_assert(strstr(msg.data, "Map keys must satisfy constraint: [Member must have length less than or equal to "
                               "128, Member must have length greater than or equal to 1]") != NULL,
              "%s", msg.data);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"TagKeys\":[\"\"]}", &msg), KERR_VALIDATION);
    cr_assert(strstr(msg.data, "Value '[]' at 'tagKeys' failed to satisfy constraint: Member must satisfy "
                               "constraint: [Member must have length less than or equal to 128, Member must "
                               "have length greater than or equal to 1]") != NULL,
              "%s", msg.data);
    buf_dispose(&msg);
}

Test(validate, wrong_json_types_are_serialization_errors)
{
    buf_t msg = BUF_INIT;
    cr_assert_eq(check("{\"StreamName\":5}", &msg), KERR_SERIALIZATION);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"ShardCount\":\"2\"}", &msg), KERR_SERIALIZATION);
    cr_assert_str_eq(msg.data, "class java.lang.String can not be converted to an Integer");
    cr_assert_eq(check("{\"StreamName\":[]}", &msg), KERR_SERIALIZATION);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"Flag\":1}", &msg), KERR_SERIALIZATION);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"StreamModeDetails\":\"x\"}", &msg), KERR_SERIALIZATION);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"At\":true}", &msg), KERR_SERIALIZATION);
    cr_assert_eq(check("{\"StreamName\":\"s\",\"At\":1700000000.5}", &msg), KERR_NONE);
    buf_dispose(&msg);
}

Test(validate, patterns)
{
    cr_assert(pattern_match(PAT_STREAM_ARN, "arn:aws:kinesis:us-east-1:123456789012:stream/s", 47));
    const char *bad_arn = "arn:aws:kinesis:us-east-1:12345678901:stream/s";
    cr_assert_not(pattern_match(PAT_STREAM_ARN, bad_arn, strlen(bad_arn)));
    const char *cn = "arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1700000000";
    cr_assert(pattern_match(PAT_CONSUMER_ARN, cn, strlen(cn)));
    cr_assert(pattern_match(PAT_HASH_KEY, "0", 1));
    cr_assert_not(pattern_match(PAT_HASH_KEY, "01", 2));
    cr_assert_not(pattern_match(PAT_HASH_KEY, "1234567890123456789012345678901234567890", 40));
    cr_assert(pattern_match(PAT_NAME, "a.b-c_D9", 8));
    cr_assert_not(pattern_match(PAT_NAME, "a/b", 3));
}

/* api_find_op searches the operation table by halving: it must stay sorted, and every name must be found. */
Test(ops, table_is_sorted_and_every_operation_is_found)
{
    size_t n = 0;
    const api_op_t *ops = api_ops(&n);
    cr_assert_gt(n, 30);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            cr_assert_lt(strcmp(ops[i - 1].name, ops[i].name), 0, "%s before %s", ops[i - 1].name, ops[i].name);
        }
        cr_assert_eq(api_find_op(ops[i].name, strlen(ops[i].name)), &ops[i], "%s", ops[i].name);
    }
    cr_assert_null(api_find_op("SubscribeToShar", 15));
}
