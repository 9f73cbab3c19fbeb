/* put_parse: fast PutRecords/PutRecord body reader (see put_parse.h). */
#include "server/api/put_parse.h"

#include <string.h>

#include "common/jscan.h"
#include "server/validate.h"

/* Reads the members of one record object (PutRecords entry, or the PutRecord body itself when top). */
static bool record_member(const char *k, size_t kn, const char *v, size_t vn, put_entry_in_t *e)
{
    if (jscan_key_is(k, kn, "Data")) {
        if (e->data != NULL) {
            return false; /* duplicate member: leave it to the generic path */
        }
        e->data = v;
        e->data_len = vn;
    } else if (jscan_key_is(k, kn, "PartitionKey")) {
        if (e->pk != NULL) {
            return false;
        }
        e->pk = v;
        e->pk_len = vn;
    } else if (jscan_key_is(k, kn, "ExplicitHashKey")) {
        if (e->ehk != NULL) {
            return false;
        }
        e->ehk = v;
        e->ehk_len = vn;
    } else {
        return false;
    }
    return true;
}

static bool entry_ok(const put_entry_in_t *e)
{
    if (e->data == NULL || e->pk == NULL) {
        return false;
    }
    size_t chars = utf8_length(e->pk, e->pk_len);
    if (chars < 1 || chars > 256) {
        return false;
    }
    return e->ehk == NULL || pattern_match(PAT_HASH_KEY, e->ehk, e->ehk_len);
}

static bool parse_records(jscan_t *s, put_body_t *out)
{
    if (!jscan_expect(s, '[')) {
        return false;
    }
    jscan_ws(s);
    if (s->p < s->end && *s->p == ']') {
        return false; /* empty: the generic path reports it */
    }
    for (;;) {
        if (out->count == PUT_RECORDS_MAX || !jscan_expect(s, '{')) {
            return false;
        }
        put_entry_in_t *e = &out->entries[out->count++];
        memset(e, 0, sizeof *e);
        for (;;) {
            const char *k, *v;
            size_t kn, vn;
            if (!jscan_plain_string(s, &k, &kn, true) || !jscan_expect(s, ':') ||
                !jscan_plain_string(s, &v, &vn, !jscan_key_is(k, kn, "Data")) || !record_member(k, kn, v, vn, e)) {
                return false;
            }
            if (jscan_expect(s, ',')) {
                continue;
            }
            if (jscan_expect(s, '}')) {
                break;
            }
            return false;
        }
        if (!entry_ok(e)) {
            return false;
        }
        if (jscan_expect(s, ',')) {
            continue;
        }
        return jscan_expect(s, ']');
    }
}

bool put_parse_fast(const char *body, size_t len, bool single, put_body_t *out)
{
    jscan_t s = {body, body + len};
    out->stream_name = out->stream_arn = NULL;
    out->count = 0;
    bool have_records = false;
    if (single) {
        memset(&out->entries[0], 0, sizeof out->entries[0]);
        out->count = 1;
    }
    if (!jscan_expect(&s, '{')) {
        return false;
    }
    for (;;) {
        const char *k, *v;
        size_t kn, vn;
        if (!jscan_plain_string(&s, &k, &kn, true) || !jscan_expect(&s, ':')) {
            return false;
        }
        if (!single && jscan_key_is(k, kn, "Records")) {
            if (have_records || !parse_records(&s, out)) {
                return false;
            }
            have_records = true;
        } else {
            if (!jscan_plain_string(&s, &v, &vn, !jscan_key_is(k, kn, "Data"))) {
                return false;
            }
            if (jscan_key_is(k, kn, "StreamName")) {
                if (out->stream_name != NULL || vn < 1 || vn > 128 || !pattern_match(PAT_NAME, v, vn)) {
                    return false;
                }
                out->stream_name = v;
                out->stream_name_len = vn;
            } else if (jscan_key_is(k, kn, "StreamARN")) {
                if (out->stream_arn != NULL || vn < 1 || vn > 2048 || !pattern_match(PAT_STREAM_ARN, v, vn)) {
                    return false;
                }
                out->stream_arn = v;
                out->stream_arn_len = vn;
            } else if (jscan_key_is(k, kn, "StreamId")) {
                /* reserved by the service; accepted and ignored */
            } else if (!single || jscan_key_is(k, kn, "SequenceNumberForOrdering")) {
                if (!single || !pattern_match(PAT_SEQUENCE, v, vn)) {
                    return false;
                }
            } else if (!record_member(k, kn, v, vn, &out->entries[0])) {
                return false;
            }
        }
        if (jscan_expect(&s, ',')) {
            continue;
        }
        if (!jscan_expect(&s, '}')) {
            return false;
        }
        break;
    }
    jscan_ws(&s);
    if (s.p != s.end) {
        return false;
    }
    if (single) {
        return entry_ok(&out->entries[0]);
    }
    return have_records;
}
