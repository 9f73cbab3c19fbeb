/*
 * fuzz_request_json: the request body path of the JSON 1.1 protocol (protocol.c): cJSON parses the body,
 * anything but an object is refused, and the object is validated against an operation's input model. Here
 * it is validated against every operation's model. Nothing may crash, leak or read out of bounds, and the
 * result must be coherent: an error always comes with a message, success never does.
 *
 * PutRecord and PutRecords bodies first go through the fast reader (put_parse.c), which must only accept
 * what the generic path accepts too, and must read the same values: the two are compared on every input.
 *
 * The input also serves as an operation name for api_find_op (the X-Amz-Target suffix), cut at the first
 * NUL byte: the HTTP layer never delivers a header value with a NUL in it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/buf.h"
#include "server/api/api.h"
#include "server/api/put_parse.h"
#include "server/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const op_names[] = {
    "AddTagsToStream",
    "CreateStream",
    "DecreaseStreamRetentionPeriod",
    "DeleteStream",
    "DescribeAccountSettings",
    "DescribeLimits",
    "DescribeStream",
    "DescribeStreamSummary",
    "DisableEnhancedMonitoring",
    "EnableEnhancedMonitoring",
    "GetRecords",
    "GetShardIterator",
    "IncreaseStreamRetentionPeriod",
    "ListShards",
    "ListStreams",
    "ListTagsForResource",
    "ListTagsForStream",
    "PutRecord",
    "PutRecords",
    "RemoveTagsFromStream",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "TagResource",
    "UntagResource",
    "UpdateAccountSettings",
    "UpdateMaxRecordSize",
    "UpdateStreamMode",
};

static void validate_all(const cJSON *input)
{
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        const api_op_t *op = api_find_op(op_names[i], strlen(op_names[i]));
        if (op == NULL || strcmp(op->name, op_names[i]) != 0) {
            abort(); /* the operation table lost an operation */
        }
        buf_t msg = BUF_INIT;
        kerr_t k = validate_input(input, op->input, &msg);
        const char *text = buf_cstr(&msg);
        if ((k == KERR_NONE) != (msg.len == 0) || strlen(text) != msg.len) {
            abort(); /* an error without a message, a message without an error, or a NUL inside it */
        }
        if (k != KERR_NONE && k != KERR_VALIDATION && k != KERR_SERIALIZATION) {
            abort();
        }
        buf_dispose(&msg);
    }
}

/* A view from the fast reader equals the generic path's string member `name` of obj (or both are absent). */
static bool same_member(const cJSON *obj, const char *name, const char *view, size_t len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (view == NULL) {
        return item == NULL || cJSON_IsNull(item);
    }
    if (!cJSON_IsString(item)) {
        return false;
    }
    if (memchr(view, '\0', len) != NULL) {
        return true; /* only Data may hold a NUL (its base64 decoder refuses it); cJSON ends the string there */
    }
    return strlen(item->valuestring) == len && memcmp(item->valuestring, view, len) == 0;
}

static void fail(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "%s: %.*s\n", what, (int)(size < 400 ? size : 400), (const char *)data);
    abort();
}

/* The fast reader accepts a body only if the generic path (cJSON + validate_input) accepts it, with the
 * same values. */
static void compare_fast_reader(const uint8_t *data, size_t size, const cJSON *input, bool single)
{
    static put_entry_in_t entries[PUT_RECORDS_MAX];
    put_body_t body = {.entries = entries};
    if (!put_parse_fast((const char *)data, size, single, &body)) {
        return;
    }
    if (input == NULL || !cJSON_IsObject(input)) {
        fail("the fast reader accepted a body that is not a JSON object", data, size);
    }
    const char *name = single ? "PutRecord" : "PutRecords";
    const api_op_t *op = api_find_op(name, strlen(name));
    buf_t msg = BUF_INIT;
    kerr_t k = validate_input(input, op->input, &msg);
    if (k != KERR_NONE) {
        fprintf(stderr, "validation: %s\n", buf_cstr(&msg));
        fail("the fast reader accepted a body that validation refuses", data, size);
    }
    buf_dispose(&msg);
    if (!same_member(input, "StreamName", body.stream_name, body.stream_name_len) ||
        !same_member(input, "StreamARN", body.stream_arn, body.stream_arn_len)) {
        fail("the fast reader read another stream name or ARN", data, size);
    }
    const cJSON *records = single ? NULL : cJSON_GetObjectItemCaseSensitive(input, "Records");
    if (!single && (size_t)cJSON_GetArraySize(records) != body.count) {
        fail("the fast reader counted another number of records", data, size);
    }
    for (size_t i = 0; i < body.count; i++) {
        const cJSON *rec = single ? input : cJSON_GetArrayItem(records, (int)i);
        const put_entry_in_t *e = &body.entries[i];
        if (!same_member(rec, "Data", e->data, e->data_len) ||
            !same_member(rec, "PartitionKey", e->pk, e->pk_len) ||
            !same_member(rec, "ExplicitHashKey", e->ehk, e->ehk_len)) {
            fail("the fast reader read another record member", data, size);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool empty_done;
    if (!empty_done) {
        /* an empty body: protocol.c validates {} (validate_input also accepts NULL) */
        validate_all(NULL);
        empty_done = true;
    }

    cJSON *input = size > 0 ? cJSON_ParseWithLength((const char *)data, size) : cJSON_CreateObject();
    if (input != NULL && cJSON_IsObject(input)) {
        validate_all(input);
    }
    compare_fast_reader(data, size, input, false);
    compare_fast_reader(data, size, input, true);
    cJSON_Delete(input);

    size_t name_len = size < 64 ? size : 64;
    const void *nul = memchr(data, '\0', name_len);
    if (nul != NULL) {
        name_len = (size_t)((const uint8_t *)nul - data);
    }
    const api_op_t *op = api_find_op((const char *)data, name_len);
    if (op != NULL && (strlen(op->name) != name_len || memcmp(op->name, data, name_len) != 0)) {
        abort(); /* found an operation by a name that is not its own */
    }
    return 0;
}
