/* put_reply: the fast PutRecords reply reader (see put_reply.h). */
#include "producer/put_reply.h"

#include "common/jscan.h"

static bool read_records(jscan_t *s, put_reply_entry_t *entries, size_t count)
{
    if (!jscan_expect(s, '[')) {
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        if ((i > 0 && !jscan_expect(s, ',')) || !jscan_expect(s, '{')) {
            return false;
        }
        put_reply_entry_t *e = &entries[i];
        e->seq = e->shard_id = NULL;
        for (;;) {
            const char *k, *v;
            size_t kn, vn;
            if (!jscan_plain_string(s, &k, &kn, true) || !jscan_expect(s, ':') ||
                !jscan_plain_string(s, &v, &vn, true) || vn == 0) {
                return false;
            }
            if (jscan_key_is(k, kn, "SequenceNumber") && e->seq == NULL) {
                e->seq = v;
                e->seq_len = vn;
            } else if (jscan_key_is(k, kn, "ShardId") && e->shard_id == NULL) {
                e->shard_id = v;
                e->shard_id_len = vn;
            } else {
                return false;
            }
            if (jscan_expect(s, '}')) {
                break;
            }
            if (!jscan_expect(s, ',')) {
                return false;
            }
        }
        if (e->seq == NULL || e->shard_id == NULL) {
            return false;
        }
    }
    return jscan_expect(s, ']');
}

bool put_reply_fast(const char *body, size_t len, put_reply_entry_t *entries, size_t count)
{
    jscan_t s = {body, body + len};
    bool have_failed = false, have_records = false, have_encryption = false;
    if (count == 0 || !jscan_expect(&s, '{')) {
        return false;
    }
    do {
        const char *k, *v;
        size_t kn, vn;
        uint64_t failed;
        if (!jscan_plain_string(&s, &k, &kn, true) || !jscan_expect(&s, ':')) {
            return false;
        }
        if (jscan_key_is(k, kn, "FailedRecordCount") && !have_failed) {
            if (!jscan_uint(&s, &failed) || failed != 0) {
                return false;
            }
            have_failed = true;
        } else if (jscan_key_is(k, kn, "Records") && !have_records) {
            if (!read_records(&s, entries, count)) {
                return false;
            }
            have_records = true;
        } else if (jscan_key_is(k, kn, "EncryptionType") && !have_encryption) {
            if (!jscan_plain_string(&s, &v, &vn, true)) {
                return false;
            }
            have_encryption = true;
        } else {
            return false;
        }
    } while (jscan_expect(&s, ','));
    return jscan_expect(&s, '}') && jscan_done(&s) && have_records;
}
