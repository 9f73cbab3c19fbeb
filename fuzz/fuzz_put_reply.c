/*
 * fuzz_put_reply: the producer's fast PutRecords reply reader (src/producer/put_reply.c). The first byte
 * picks the record count the reply must hold (1..16); the rest is the reply. Nothing may crash or read out
 * of bounds, and whatever the fast reader accepts, cJSON must read the same way: an object whose Records
 * array holds that many entries, each with the same SequenceNumber and ShardId, and no failed record.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "producer/put_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const cJSON *entry, const char *name, const char *view, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, name);
    if (!cJSON_IsString(v) || strlen(v->valuestring) != len || memcmp(v->valuestring, view, len) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t count = (size_t)(data[0] % 16) + 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    put_reply_entry_t entries[16];
    if (!put_reply_fast(body, len, entries, count)) {
        return 0;
    }
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(root, "Records");
    const cJSON *failed = cJSON_GetObjectItemCaseSensitive(root, "FailedRecordCount");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(records) || (size_t)cJSON_GetArraySize(records) != count ||
        (failed != NULL && (!cJSON_IsNumber(failed) || failed->valuedouble != 0))) {
        abort();
    }
    size_t i = 0;
    for (const cJSON *e = records->child; e != NULL; e = e->next, i++) {
        same(e, "SequenceNumber", entries[i].seq, entries[i].seq_len);
        same(e, "ShardId", entries[i].shard_id, entries[i].shard_id_len);
        if (cJSON_GetObjectItemCaseSensitive(e, "ErrorCode") != NULL) {
            abort();
        }
    }
    cJSON_Delete(root);
    return 0;
}
