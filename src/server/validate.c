/* validate: service-model validation (see validate.h). */
#include "server/validate.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define MAX_ERRORS 10

typedef struct vctx {
    buf_t *msg;
    buf_t errors; /* "; "-joined messages */
    int count;
} vctx_t;

size_t utf8_length(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            count++;
        }
    }
    return count;
}

static bool name_chars(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool digits(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max) {
        return false;
    }
    if (n > 1 && s[0] == '0') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Matches "arn:aws<any>:kinesis:<any>:<12 digits>:" and returns the offset after it, or 0. */
static size_t arn_prefix(const char *s, size_t n)
{
    if (n < 8 || memcmp(s, "arn:aws", 7) != 0) {
        return 0;
    }
    /* Greedy ".*" in the patterns: find ":kinesis:" then the account ":\d{12}:" after a region. */
    for (size_t k = 7; k + 9 <= n; k++) {
        if (memcmp(s + k, ":kinesis:", 9) != 0) {
            continue;
        }
        for (size_t a = k + 9; a + 14 <= n; a++) {
            if (s[a] != ':') {
                continue;
            }
            bool ok = s[a + 13] == ':';
            for (size_t d = 1; ok && d <= 12; d++) {
                ok = s[a + d] >= '0' && s[a + d] <= '9';
            }
            if (ok) {
                return a + 14;
            }
        }
    }
    return 0;
}

static bool no_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

bool pattern_match(vpattern_t p, const char *s, size_t n)
{
    switch (p) {
    case PAT_NONE:
        return true;
    case PAT_NAME:
        return name_chars(s, n);
    case PAT_HASH_KEY:
        return digits(s, n, 39);
    case PAT_SEQUENCE:
        return digits(s, n, 129);
    case PAT_STREAM_ARN: {
        size_t at = arn_prefix(s, n);
        return at != 0 && n - at > 7 && memcmp(s + at, "stream/", 7) == 0 && no_space(s + at + 7, n - at - 7);
    }
    case PAT_RESOURCE_ARN: {
        /* .*stream/\S+ after the account */
        size_t at = arn_prefix(s, n);
        if (at == 0) {
            return false;
        }
        for (size_t i = at; i + 7 < n; i++) {
            if (memcmp(s + i, "stream/", 7) == 0 && no_space(s + i + 7, n - i - 7)) {
                return true;
            }
        }
        return false;
    }
    case PAT_CONSUMER_ARN: {
        size_t at = arn_prefix(s, n);
        if (at == 0) {
            return false;
        }
        /* .*stream/NAME/consumer/NAME:DIGITS */
        const char *rest = s + at;
        size_t rn = n - at;
        const char *st = NULL;
        for (size_t i = 0; i + 7 <= rn; i++) {
            if (memcmp(rest + i, "stream/", 7) == 0) {
                st = rest + i + 7;
                break;
            }
        }
        if (st == NULL) {
            return false;
        }
        const char *end = s + n;
        const char *slash = memchr(st, '/', (size_t)(end - st));
        if (slash == NULL || !name_chars(st, (size_t)(slash - st)) || end - slash < 10 ||
            memcmp(slash, "/consumer/", 10) != 0) {
            return false;
        }
        const char *cn = slash + 10;
        const char *colon = memchr(cn, ':', (size_t)(end - cn));
        if (colon == NULL || !name_chars(cn, (size_t)(colon - cn)) || colon + 1 == end) {
            return false;
        }
        for (const char *d = colon + 1; d < end; d++) {
            if (*d < '0' || *d > '9') {
                return false;
            }
        }
        return true;
    }
    }
    return false;
}

const char *pattern_text(vpattern_t p)
{
    switch (p) {
    case PAT_NAME:
        return "[a-zA-Z0-9_.-]+";
    case PAT_STREAM_ARN:
        return "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";
    case PAT_CONSUMER_ARN:
        return "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+";
    case PAT_RESOURCE_ARN:
        return "arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+";
    case PAT_HASH_KEY:
        return "0|([1-9]\\d{0,38})";
    case PAT_SEQUENCE:
        return "0|([1-9]\\d{0,128})";
    case PAT_NONE:
        break;
    }
    return "";
}

bool timestamp_from_json(const cJSON *v, int64_t *ms)
{
    double secs;
    if (cJSON_IsNumber(v)) {
        secs = v->valuedouble;
    } else if (cJSON_IsString(v)) {
        char *end = NULL;
        secs = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end != '\0') {
            return false;
        }
    } else {
        return false;
    }
    if (!isfinite(secs) || secs < -1e13 || secs > 1e13) {
        return false;
    }
    *ms = (int64_t)llround(secs * 1000.0);
    return true;
}

static void lower_first(buf_t *b, const char *name)
{
    buf_putc(b, (char)tolower((unsigned char)name[0]));
    buf_puts(b, name + 1);
}

/* Where a value sits in the request, rendered only when an error needs it ("records.3.member.data"). */
typedef struct vpath {
    const struct vpath *parent;
    const char *name; /* member name, or NULL for a list element */
    int index;        /* list element number (1-based) */
} vpath_t;

static void render_path(buf_t *b, const vpath_t *p)
{
    if (p == NULL) {
        return;
    }
    if (p->parent != NULL) {
        render_path(b, p->parent);
        buf_putc(b, '.');
    }
    if (p->name != NULL) {
        lower_first(b, p->name);
    } else {
        buf_printf(b, "%d.member", p->index);
    }
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsArray(v)) {
        return "list";
    }
    if (cJSON_IsObject(v)) {
        return "structure";
    }
    return "value";
}

/* ---- pass 1: types ---- */

static bool type_error(vctx_t *c, const char *text)
{
    buf_puts(c->msg, text);
    return false;
}

static bool check_type(vctx_t *c, const cJSON *v, const vfield_t *f);

static bool check_types(vctx_t *c, const cJSON *obj, const vfield_t *fields)
{
    for (const vfield_t *f = fields; f->name != NULL; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
        if (v != NULL && !cJSON_IsNull(v) && !check_type(c, v, f)) {
            return false;
        }
    }
    return true;
}

static bool check_type(vctx_t *c, const cJSON *v, const vfield_t *f)
{
    if (cJSON_IsArray(v) && f->type != VT_LIST) {
        return type_error(c, "Start of list found where not expected");
    }
    if (cJSON_IsObject(v) && f->type != VT_STRUCT && f->type != VT_MAP) {
        return type_error(c, "Start of structure or map found where not expected.");
    }
    switch (f->type) {
    case VT_STRING:
    case VT_BLOB:
        if (cJSON_IsBool(v)) {
            return type_error(c, f->type == VT_BLOB ? "class java.lang.Boolean can not be converted to a Blob"
                                                     : "class java.lang.Boolean can not be converted to an String");
        }
        if (cJSON_IsNumber(v)) {
            return type_error(c, f->type == VT_BLOB ? "class java.math.BigDecimal can not be converted to a Blob"
                                                     : "class java.math.BigDecimal can not be converted to an String");
        }
        return true;
    case VT_INT:
        if (cJSON_IsBool(v)) {
            return type_error(c, "class java.lang.Boolean can not be converted to an Integer");
        }
        if (cJSON_IsString(v)) {
            return type_error(c, "class java.lang.String can not be converted to an Integer");
        }
        if (!isfinite(v->valuedouble) || fabs(v->valuedouble) > 9.2e18) {
            return type_error(c, "NUMBER_VALUE can not be converted to an Integer");
        }
        return true;
    case VT_BOOL:
        if (cJSON_IsNumber(v)) {
            return type_error(c, "class java.math.BigDecimal can not be converted to an Boolean");
        }
        if (cJSON_IsString(v)) {
            buf_printf(c->msg, "'%s' can not be converted to an Boolean", v->valuestring);
            return false;
        }
        return true;
    case VT_TIMESTAMP: {
        int64_t ms;
        if (!timestamp_from_json(v, &ms)) {
            return type_error(c, cJSON_IsBool(v) ? "class java.lang.Boolean can not be converted to milliseconds since epoch"
                                                  : "Unable to parse date value");
        }
        return true;
    }
    case VT_STRUCT:
        if (!cJSON_IsObject(v)) {
            return type_error(c, "Expected null");
        }
        return check_types(c, v, f->sub);
    case VT_LIST: {
        if (!cJSON_IsArray(v)) {
            return type_error(c, "Expected list or null");
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (!cJSON_IsNull(e) && !check_type(c, e, f->sub)) {
                return false;
            }
        }
        return true;
    }
    case VT_MAP: {
        if (!cJSON_IsObject(v)) {
            return type_error(c, "Expected map or null");
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (!cJSON_IsNull(e) && !check_type(c, e, &f->sub[1])) {
                return false;
            }
        }
        return true;
    }
    }
    (void)json_type_name;
    return true;
}

/* ---- pass 2: constraints ---- */

static void value_text(buf_t *b, const cJSON *v, const vfield_t *f)
{
    if (v == NULL || cJSON_IsNull(v)) {
        buf_puts(b, "null");
        return;
    }
    buf_putc(b, '\'');
    switch (f->type) {
    case VT_STRING:
    case VT_BLOB:
        buf_puts(b, v->valuestring);
        break;
    case VT_INT:
        buf_printf(b, "%" PRId64, (int64_t)floor(v->valuedouble));
        break;
    case VT_BOOL:
        buf_puts(b, cJSON_IsTrue(v) ? "true" : "false");
        break;
    case VT_TIMESTAMP: {
        int64_t ms = 0;
        timestamp_from_json(v, &ms);
        buf_printf(b, "%" PRId64, ms);
        break;
    }
    case VT_LIST: {
        buf_putc(b, '[');
        const cJSON *e;
        bool first = true;
        cJSON_ArrayForEach(e, v)
        {
            if (!first) {
                buf_puts(b, ", ");
            }
            first = false;
            if (cJSON_IsString(e)) {
                buf_puts(b, e->valuestring);
            } else {
                char *p = cJSON_PrintUnformatted(e);
                buf_puts(b, p ? p : "");
                cJSON_free(p);
            }
        }
        buf_putc(b, ']');
        break;
    }
    case VT_MAP: {
        buf_putc(b, '{');
        const cJSON *e;
        bool first = true;
        cJSON_ArrayForEach(e, v)
        {
            if (!first) {
                buf_puts(b, ", ");
            }
            first = false;
            buf_printf(b, "%s=%s", e->string, cJSON_IsString(e) ? e->valuestring : "");
        }
        buf_putc(b, '}');
        break;
    }
    case VT_STRUCT: {
        char *p = cJSON_PrintUnformatted(v);
        buf_puts(b, p ? p : "");
        cJSON_free(p);
        break;
    }
    }
    buf_putc(b, '\'');
}

static void add_error(vctx_t *c, const cJSON *v, const vfield_t *f, const vpath_t *path, const char *constraint)
{
    if (c->count >= MAX_ERRORS) {
        return;
    }
    if (c->count > 0) {
        buf_puts(&c->errors, "; ");
    }
    c->count++;
    buf_puts(&c->errors, "Value ");
    value_text(&c->errors, v, f);
    buf_puts(&c->errors, " at '");
    render_path(&c->errors, path);
    buf_printf(&c->errors, "' failed to satisfy constraint: %s", constraint);
}

/* Length of a value as the service counts it: code points, decoded bytes, elements or entries. */
static int64_t value_length(const cJSON *v, const vfield_t *f)
{
    switch (f->type) {
    case VT_STRING:
        return (int64_t)utf8_length(v->valuestring, strlen(v->valuestring));
    case VT_BLOB: {
        size_t n = strlen(v->valuestring);
        size_t pad = 0;
        while (pad < 2 && n > pad && v->valuestring[n - 1 - pad] == '=') {
            pad++;
        }
        return (int64_t)(n / 4 * 3 - pad);
    }
    case VT_LIST:
    case VT_MAP:
        return cJSON_GetArraySize(v);
    default:
        return 0;
    }
}

static bool enum_ok(const vfield_t *f, const char *s)
{
    for (const char *const *e = f->enums; *e != NULL; e++) {
        if (strcmp(*e, s) == 0) {
            return true;
        }
    }
    return false;
}

static void enum_constraint(buf_t *b, const vfield_t *f)
{
    buf_puts(b, "Member must satisfy enum value set: [");
    for (const char *const *e = f->enums; *e != NULL; e++) {
        if (e != f->enums) {
            buf_puts(b, ", ");
        }
        buf_puts(b, *e);
    }
    buf_putc(b, ']');
}

/* Checks a scalar element's own constraints without reporting; used for list members and map entries. */
static bool element_ok(const cJSON *v, const vfield_t *f)
{
    if (v == NULL || cJSON_IsNull(v)) {
        return false;
    }
    if (f->type == VT_STRING) {
        if (f->pattern != PAT_NONE && !pattern_match(f->pattern, v->valuestring, strlen(v->valuestring))) {
            return false;
        }
        if (f->enums != NULL && !enum_ok(f, v->valuestring)) {
            return false;
        }
    }
    int64_t len = value_length(v, f);
    if (f->type == VT_STRING && ((f->min != VNONE && len < f->min) || (f->max != VNONE && len > f->max))) {
        return false;
    }
    return true;
}

/* The constraint text of a list element or map key/value spec, for the "[...]" messages. */
static void element_constraint(buf_t *b, const vfield_t *f)
{
    bool first = true;
    if (f->enums != NULL) {
        enum_constraint(b, f);
        first = false;
    }
    if (f->max != VNONE) {
        buf_printf(b, "%sMember must have length less than or equal to %" PRId64, first ? "" : ", ", f->max);
        first = false;
    }
    if (f->min != VNONE) {
        buf_printf(b, "%sMember must have length greater than or equal to %" PRId64, first ? "" : ", ", f->min);
        first = false;
    }
    if (f->pattern != PAT_NONE) {
        buf_printf(b, "%sMember must satisfy regular expression pattern: %s", first ? "" : ", ",
                   pattern_text(f->pattern));
    }
}

static void check_field(vctx_t *c, const cJSON *v, const vfield_t *f, const vpath_t *parent);

static void check_members(vctx_t *c, const cJSON *obj, const vfield_t *fields, const vpath_t *parent)
{
    for (const vfield_t *f = fields; f->name != NULL; f++) {
        const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, f->name) : NULL;
        check_field(c, v, f, parent);
    }
}

/* Reports a constraint failure; the message is formatted only then. */
static void fail(vctx_t *c, const cJSON *v, const vfield_t *f, const vpath_t *p, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(vctx_t *c, const cJSON *v, const vfield_t *f, const vpath_t *p, const char *fmt, ...)
{
    buf_t constraint = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&constraint, fmt, ap);
    va_end(ap);
    add_error(c, v, f, p, buf_cstr(&constraint));
    buf_dispose(&constraint);
}

static void fail_element(vctx_t *c, const cJSON *v, const vfield_t *f, const vpath_t *p, const char *prefix,
                         const vfield_t *element)
{
    buf_t constraint = BUF_INIT;
    buf_puts(&constraint, prefix);
    element_constraint(&constraint, element);
    buf_putc(&constraint, ']');
    add_error(c, v, f, p, buf_cstr(&constraint));
    buf_dispose(&constraint);
}

static void check_field(vctx_t *c, const cJSON *v, const vfield_t *f, const vpath_t *parent)
{
    vpath_t self = {parent, f->name, 0};
    const vpath_t *p = &self;

    if (v == NULL || cJSON_IsNull(v)) {
        if (f->required) {
            add_error(c, NULL, f, p, "Member must not be null");
        }
        return;
    }
    if (f->type == VT_STRING && f->pattern != PAT_NONE &&
        !pattern_match(f->pattern, v->valuestring, strlen(v->valuestring))) {
        fail(c, v, f, p, "Member must satisfy regular expression pattern: %s", pattern_text(f->pattern));
    }
    if (f->type == VT_STRING && f->enums != NULL && !enum_ok(f, v->valuestring)) {
        buf_t constraint = BUF_INIT;
        enum_constraint(&constraint, f);
        add_error(c, v, f, p, buf_cstr(&constraint));
        buf_dispose(&constraint);
    }
    if (f->type == VT_INT) {
        int64_t n = (int64_t)floor(v->valuedouble);
        if (f->min != VNONE && n < f->min) {
            fail(c, v, f, p, "Member must have value greater than or equal to %" PRId64, f->min);
        }
        if (f->max != VNONE && n > f->max) {
            fail(c, v, f, p, "Member must have value less than or equal to %" PRId64, f->max);
        }
    } else if (f->type != VT_STRUCT && f->type != VT_BOOL && f->type != VT_TIMESTAMP &&
               (f->min != VNONE || f->max != VNONE)) {
        int64_t len = value_length(v, f);
        if (f->min != VNONE && len < f->min) {
            fail(c, v, f, p, "Member must have length greater than or equal to %" PRId64, f->min);
        }
        if (f->max != VNONE && len > f->max) {
            fail(c, v, f, p, "Member must have length less than or equal to %" PRId64, f->max);
        }
    }
    if (f->type == VT_STRUCT) {
        check_members(c, v, f->sub, p);
    } else if (f->type == VT_LIST && f->sub->type == VT_STRUCT) {
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            vpath_t element = {p, NULL, ++i};
            check_members(c, e, f->sub->sub, &element);
        }
    } else if (f->type == VT_LIST) {
        bool ok = true;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            ok = ok && element_ok(e, f->sub);
        }
        if (!ok) {
            fail_element(c, v, f, p, "Member must satisfy constraint: [", f->sub);
        }
    } else if (f->type == VT_MAP) {
        bool keys_ok = true, values_ok = true;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            cJSON key = {0};
            key.type = cJSON_String;
            key.valuestring = e->string;
            keys_ok = keys_ok && element_ok(&key, &f->sub[0]);
            values_ok = values_ok && cJSON_IsString(e) && element_ok(e, &f->sub[1]);
        }
        if (!keys_ok) {
            fail_element(c, v, f, p, "Map keys must satisfy constraint: [", &f->sub[0]);
        }
        if (!values_ok) {
            fail_element(c, v, f, p, "Map value must satisfy constraint: [", &f->sub[1]);
        }
    }
}

kerr_t validate_input(const cJSON *root, const vfield_t *fields, buf_t *msg)
{
    vctx_t c = {msg, BUF_INIT, 0};
    if (root != NULL && !check_types(&c, root, fields)) {
        return KERR_SERIALIZATION;
    }
    check_members(&c, root, fields, NULL);
    if (c.count == 0) {
        buf_dispose(&c.errors);
        return KERR_NONE;
    }
    buf_printf(msg, "%d validation error%s detected: ", c.count, c.count > 1 ? "s" : "");
    buf_append(msg, c.errors.data, c.errors.len);
    buf_dispose(&c.errors);
    return KERR_VALIDATION;
}
