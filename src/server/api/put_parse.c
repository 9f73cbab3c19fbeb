/* put_parse: fast PutRecords/PutRecord body reader (see put_parse.h). */
#include "server/api/put_parse.h"

#include <string.h>

#include "server/validate.h"

typedef struct scan {
    const char *p, *end;
} scan_t;

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) {
        s->p++;
    }
}

static bool expect(scan_t *s, char c)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* A string without escapes; returns its bytes. Control characters (invalid in JSON strings) are checked
 * only when check_controls is set: Data is base64 and its decoder rejects them anyway. */
static bool plain_string(scan_t *s, const char **str, size_t *len, bool check_controls)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"') {
        return false;
    }
    const char *start = ++s->p;
    const char *q = memchr(start, '"', (size_t)(s->end - start));
    if (q == NULL || memchr(start, '\\', (size_t)(q - start)) != NULL) {
        return false;
    }
    if (check_controls) {
        for (const char *c = start; c < q; c++) {
            if ((unsigned char)*c < 0x20) {
                return false;
            }
        }
    }
    *str = start;
    *len = (size_t)(q - start);
    s->p = q + 1;
    return true;
}

static bool key_is(const char *k, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(k, lit, n) == 0;
}

/* Reads the members of one record object (PutRecords entry, or the PutRecord body itself when top). */
static bool record_member(const char *k, size_t kn, const char *v, size_t vn, put_entry_in_t *e)
{
    if (key_is(k, kn, "Data")) {
        if (e->data != NULL) {
            return false; /* duplicate member: leave it to the generic path */
        }
        e->data = v;
        e->data_len = vn;
    } else if (key_is(k, kn, "PartitionKey")) {
        if (e->pk != NULL) {
            return false;
        }
        e->pk = v;
        e->pk_len = vn;
    } else if (key_is(k, kn, "ExplicitHashKey")) {
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

static bool parse_records(scan_t *s, put_body_t *out)
{
    if (!expect(s, '[')) {
        return false;
    }
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        return false; /* empty: the generic path reports it */
    }
    for (;;) {
        if (out->count == PUT_RECORDS_MAX || !expect(s, '{')) {
            return false;
        }
        put_entry_in_t *e = &out->entries[out->count++];
        memset(e, 0, sizeof *e);
        for (;;) {
            const char *k, *v;
            size_t kn, vn;
            if (!plain_string(s, &k, &kn, true) || !expect(s, ':') ||
                !plain_string(s, &v, &vn, !key_is(k, kn, "Data")) || !record_member(k, kn, v, vn, e)) {
                return false;
            }
            if (expect(s, ',')) {
                continue;
            }
            if (expect(s, '}')) {
                break;
            }
            return false;
        }
        if (!entry_ok(e)) {
            return false;
        }
        if (expect(s, ',')) {
            continue;
        }
        return expect(s, ']');
    }
}

bool put_parse_fast(const char *body, size_t len, bool single, put_body_t *out)
{
    scan_t s = {body, body + len};
    out->stream_name = out->stream_arn = NULL;
    out->count = 0;
    bool have_records = false;
    if (single) {
        memset(&out->entries[0], 0, sizeof out->entries[0]);
        out->count = 1;
    }
    if (!expect(&s, '{')) {
        return false;
    }
    for (;;) {
        const char *k, *v;
        size_t kn, vn;
        if (!plain_string(&s, &k, &kn, true) || !expect(&s, ':')) {
            return false;
        }
        if (!single && key_is(k, kn, "Records")) {
            if (have_records || !parse_records(&s, out)) {
                return false;
            }
            have_records = true;
        } else {
            if (!plain_string(&s, &v, &vn, !key_is(k, kn, "Data"))) {
                return false;
            }
            if (key_is(k, kn, "StreamName")) {
                if (out->stream_name != NULL || vn < 1 || vn > 128 || !pattern_match(PAT_NAME, v, vn)) {
                    return false;
                }
                out->stream_name = v;
                out->stream_name_len = vn;
            } else if (key_is(k, kn, "StreamARN")) {
                if (out->stream_arn != NULL || vn < 1 || vn > 2048 || !pattern_match(PAT_STREAM_ARN, v, vn)) {
                    return false;
                }
                out->stream_arn = v;
                out->stream_arn_len = vn;
            } else if (key_is(k, kn, "StreamId")) {
                /* reserved by the service; accepted and ignored */
            } else if (!single || key_is(k, kn, "SequenceNumberForOrdering")) {
                if (!single || !pattern_match(PAT_SEQUENCE, v, vn)) {
                    return false;
                }
            } else if (!record_member(k, kn, v, vn, &out->entries[0])) {
                return false;
            }
        }
        if (expect(&s, ',')) {
            continue;
        }
        if (!expect(&s, '}')) {
            return false;
        }
        break;
    }
    skip_ws(&s);
    if (s.p != s.end) {
        return false;
    }
    if (single) {
        return entry_ok(&out->entries[0]);
    }
    return have_records;
}
