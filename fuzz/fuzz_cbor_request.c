/*
 * fuzz_cbor_request: the CBOR side of the protocol (cbor_json.c), both ways. Nothing may crash, leak or read
 * out of bounds, and the results must be coherent:
 *   - cbor_to_json on arbitrary bytes either refuses them with a message or yields an object and no message;
 *   - a tree it yields, printed by cJSON and converted back with json_to_cbor (the reply path), is CBOR that
 *     cbor_to_json accepts again (the two directions agree on what CBOR is), and the tree goes through
 *     validation like a JSON request does;
 *   - json_to_cbor on the input taken as JSON text either converts it or leaves the output untouched.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/buf.h"
#include "server/api/api.h"
#include "server/cbor_json.h"
#include "server/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The operations whose models hold the CBOR-specific shapes: blobs and timestamps. */
static const char *const op_names[] = {"PutRecord", "PutRecords", "GetShardIterator", "ListShards"};

static void validate_some(const cJSON *input)
{
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        const api_op_t *op = api_find_op(op_names[i], strlen(op_names[i]));
        if (op == NULL) {
            abort();
        }
        buf_t msg = BUF_INIT;
        kerr_t k = validate_input(input, op->input, &msg);
        if ((k == KERR_NONE) != (msg.len == 0)) {
            abort();
        }
        buf_dispose(&msg);
    }
}

static void request_side(const uint8_t *data, size_t size)
{
    char err[128];
    memset(err, 'x', sizeof err);
    cJSON *tree = cbor_to_json(data, size, err, sizeof err);
    if (tree == NULL) {
        if (err[0] == '\0' || memchr(err, '\0', sizeof err) == NULL) {
            abort(); /* refused without a message, or an unterminated one */
        }
        return;
    }
    if (err[0] != '\0' || !cJSON_IsObject(tree)) {
        abort();
    }
    validate_some(tree);

    char *json = cJSON_PrintUnformatted(tree);
    if (json == NULL) {
        abort();
    }
    buf_t out = BUF_INIT;
    if (json_to_cbor(json, strlen(json), &out) != 0) {
        fprintf(stderr, "the reply encoder refused a printed request tree: %s\n", json);
        abort();
    }
    cJSON *again = cbor_to_json(out.data, out.len, err, sizeof err);
    if (again == NULL) {
        fprintf(stderr, "the request decoder refused the reply encoder's CBOR (%s): %s\n", err, json);
        abort();
    }
    cJSON_Delete(again);
    buf_dispose(&out);
    cJSON_free(json);
    cJSON_Delete(tree);
}

static void reply_side(const uint8_t *data, size_t size)
{
    buf_t out = BUF_INIT;
    buf_puts(&out, "x");
    int rc = json_to_cbor((const char *)data, size, &out);
    if (rc != 0 && out.len != 1) {
        abort(); /* a refusal must leave the buffer as it was */
    }
    buf_dispose(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request_side(data, size);
    reply_side(data, size);
    return 0;
}
