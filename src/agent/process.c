/*
 * process: the dataProcessingOptions chain (see process.h).
 *
 * Each converter reads a view of the record and writes its result into one of the chain's two buffers
 * (they alternate, so a converter never reads the buffer it writes). JSON output is built with cJSON, in
 * insertion order, compact unless jsonFormat is PRETTYPRINT, and ends with "\n".
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "agent/process.h"

#include <curl/curl.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"

typedef enum opt_kind {
    OPT_SINGLELINE,
    OPT_CSVTOJSON,
    OPT_LOGTOJSON,
    OPT_ADDMETADATA,
    OPT_ADDEC2METADATA,
    OPT_ADDBRACKETS,
} opt_kind_t;

typedef enum mismatch { MISMATCH_DROP, MISMATCH_RAW, MISMATCH_NULL } mismatch_t;

typedef struct converter {
    opt_kind_t kind;
    const char *name;
    proc_counters_t counters;
    bool no_trim, escape_newline; /* SINGLELINE */
    char **fields;                /* CSVTOJSON, LOGTOJSON: output field names */
    size_t nfields;
    pcre2_code *re; /* CSVTOJSON: the delimiter; LOGTOJSON: the line pattern */
    pcre2_match_data *md;
    mismatch_t mismatch;
    bool pretty;
    bool timestamp;       /* ADDMETADATA */
    cJSON *metadata;      /* ADDMETADATA: the object to add; ADDEC2METADATA: the instance's (NULL: none) */
    char **ec2_fields;    /* ADDEC2METADATA metadataFields (NULL: all) */
    size_t nec2_fields;
} converter_t;

struct proc_chain {
    converter_t *conv;
    size_t n;
    buf_t buf[2];
};

/* ---- built-in log formats ---- */

#define QUOTED "\"((?:[^\"\\\\]|\\\\.)*)\""
#define COMMON_RE "^(\\S+) (\\S+) (\\S+) \\[([^\\]]+)\\] " QUOTED " (\\d{3}|-) (\\d+|-)"
#define SYSLOG_TAIL " (?:<[^>]*> )?(\\S+) ([^\\s\\[:]+)(?:\\[(\\d+)\\])?: (.*)$"

static const struct log_format {
    const char *name;
    const char *pattern;
    const char *fields[9];
} log_formats[] = {
    {"COMMONAPACHELOG", COMMON_RE, {"host", "ident", "authuser", "datetime", "request", "response", "bytes"}},
    {"COMBINEDAPACHELOG",
     COMMON_RE " " QUOTED " " QUOTED,
     {"host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer", "agent"}},
    {"APACHEERRORLOG",
     "^\\[([^\\]]+)\\] \\[(?:([^:\\]]+):)?([^\\]]+)\\] \\[pid (\\d+)(?::tid (\\d+))?\\](?: \\[client "
     "([^\\]]+)\\])? (.*)$",
     {"timestamp", "module", "severity", "processid", "threadid", "client", "message"}},
    {"SYSLOG",
     "^([A-Z][a-z]{2} +\\d{1,2} \\d{2}:\\d{2}:\\d{2})" SYSLOG_TAIL,
     {"timestamp", "hostname", "program", "processid", "message"}},
    {"RFC3339SYSLOG",
     "^(\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d+)?(?:Z|[+-]\\d{2}:\\d{2}))" SYSLOG_TAIL,
     {"timestamp", "hostname", "program", "processid", "message"}},
};

/* ---- parameter helpers ---- */

static bool one_of(const char *key, const char *const *allowed)
{
    for (; *allowed != NULL; allowed++) {
        if (strcmp(key, *allowed) == 0) {
            return true;
        }
    }
    return false;
}

/* A parameter as text: strings as they are, booleans and numbers printed. NULL for other types. */
static const char *param_text(const cJSON *v, char tmp[64])
{
    if (cJSON_IsString(v)) {
        return v->valuestring;
    }
    if (cJSON_IsBool(v)) {
        return cJSON_IsTrue(v) ? "true" : "false";
    }
    if (cJSON_IsNumber(v)) {
        snprintf(tmp, 64, "%.17g", v->valuedouble);
        return tmp;
    }
    return NULL;
}

static int string_list(const cJSON *v, char ***out, size_t *n, const char *what, char *err, size_t errlen)
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
        snprintf(err, errlen, "%s must be a non-empty array of strings", what);
        return -1;
    }
    size_t count = (size_t)cJSON_GetArraySize(v);
    char **list = calloc(count, sizeof *list);
    if (list == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        if (!cJSON_IsString(item) || item->valuestring[0] == '\0' || (list[i] = strdup(item->valuestring)) == NULL) {
            snprintf(err, errlen, "%s[%zu] must be a non-empty string", what, i);
            for (size_t j = 0; j < i; j++) {
                free(list[j]);
            }
            free(list);
            return -1;
        }
        i++;
    }
    *out = list;
    *n = count;
    return 0;
}

static pcre2_code *compile(const char *pattern, const char *what, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                                   &code, &at, NULL);
    if (re == NULL) {
        char msg[160];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
        snprintf(err, errlen, "%s: invalid regular expression at offset %zu: %s", what, (size_t)at, msg);
        return NULL;
    }
    /* JIT when available; the interpreter otherwise */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static int parse_mismatch(const cJSON *v, converter_t *cv, bool null_allowed, const char *what, char *err,
                          size_t errlen)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    if (strcmp(s, "DROP") == 0) {
        cv->mismatch = MISMATCH_DROP;
    } else if (strcmp(s, "RAW") == 0) {
        cv->mismatch = MISMATCH_RAW;
    } else if (null_allowed && strcmp(s, "NULL") == 0) {
        cv->mismatch = MISMATCH_NULL;
    } else {
        snprintf(err, errlen, "%s.onMismatch must be %s", what, null_allowed ? "NULL, DROP or RAW" : "DROP or RAW");
        return -1;
    }
    return 0;
}

static int parse_json_format(const cJSON *v, converter_t *cv, const char *what, char *err, size_t errlen)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    if (strcmp(s, "COMPACT") != 0 && strcmp(s, "PRETTYPRINT") != 0) {
        snprintf(err, errlen, "%s.jsonFormat must be COMPACT or PRETTYPRINT", what);
        return -1;
    }
    cv->pretty = strcmp(s, "PRETTYPRINT") == 0;
    return 0;
}

static int parse_bool_param(const cJSON *v, bool *out, const char *what, const char *key, char *err, size_t errlen)
{
    char tmp[64];
    const char *s = param_text(v, tmp);
    if (s != NULL && strcmp(s, "true") == 0) {
        *out = true;
    } else if (s != NULL && strcmp(s, "false") == 0) {
        *out = false;
    } else {
        snprintf(err, errlen, "%s.%s must be \"true\" or \"false\"", what, key);
        return -1;
    }
    return 0;
}

static int setup_singleline(converter_t *cv, const cJSON *opt, const char *what, char *err, size_t errlen)
{
    static const char *const keys[] = {"optionName", "parseOptions", NULL};
    const cJSON *p;
    cJSON_ArrayForEach(p, opt)
    {
        if (!one_of(p->string, keys)) {
            snprintf(err, errlen, "%s: unknown parameter \"%s\" (SINGLELINE takes parseOptions)", what, p->string);
            return -1;
        }
    }
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(opt, "parseOptions");
    if (po == NULL) {
        return 0;
    }
    if (!cJSON_IsArray(po)) {
        snprintf(err, errlen, "%s.parseOptions must be an array of NO_TRIM, ESCAPE_NEW_LINE", what);
        return -1;
    }
    cJSON_ArrayForEach(p, po)
    {
        if (cJSON_IsString(p) && strcmp(p->valuestring, "NO_TRIM") == 0) {
            cv->no_trim = true;
        } else if (cJSON_IsString(p) && strcmp(p->valuestring, "ESCAPE_NEW_LINE") == 0) {
            cv->escape_newline = true;
        } else {
            snprintf(err, errlen, "%s.parseOptions: expected NO_TRIM or ESCAPE_NEW_LINE", what);
            return -1;
        }
    }
    return 0;
}

static int setup_csv(converter_t *cv, const cJSON *opt, const char *what, char *err, size_t errlen)
{
    static const char *const keys[] = {"optionName", "customFieldNames", "delimiter", "jsonFormat", "onMismatch", NULL};
    const cJSON *p;
    cJSON_ArrayForEach(p, opt)
    {
        if (!one_of(p->string, keys)) {
            snprintf(err, errlen, "%s: unknown parameter \"%s\" (CSVTOJSON takes customFieldNames, delimiter, "
                     "jsonFormat, onMismatch)", what, p->string);
            return -1;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "%s.customFieldNames", what);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(opt, "customFieldNames");
    if (names == NULL) {
        snprintf(err, errlen, "%s: CSVTOJSON needs customFieldNames", what);
        return -1;
    }
    if (string_list(names, &cv->fields, &cv->nfields, name, err, errlen) != 0) {
        return -1;
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(opt, "delimiter");
    if (d != NULL && (!cJSON_IsString(d) || d->valuestring[0] == '\0')) {
        snprintf(err, errlen, "%s.delimiter must be a non-empty string", what);
        return -1;
    }
    snprintf(name, sizeof name, "%s.delimiter", what);
    if ((cv->re = compile(d != NULL ? d->valuestring : ",", name, err, errlen)) == NULL) {
        return -1;
    }
    cv->mismatch = MISMATCH_NULL;
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "onMismatch")) != NULL &&
        parse_mismatch(p, cv, true, what, err, errlen) != 0) {
        return -1;
    }
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "jsonFormat")) != NULL &&
        parse_json_format(p, cv, what, err, errlen) != 0) {
        return -1;
    }
    return 0;
}

static int setup_log(converter_t *cv, const cJSON *opt, const char *what, char *err, size_t errlen)
{
    static const char *const keys[] = {"optionName", "logFormat", "matchPattern", "customFieldNames", "jsonFormat",
                                       "onMismatch", NULL};
    const cJSON *p;
    cJSON_ArrayForEach(p, opt)
    {
        if (!one_of(p->string, keys)) {
            snprintf(err, errlen, "%s: unknown parameter \"%s\" (LOGTOJSON takes logFormat, matchPattern, "
                     "customFieldNames, jsonFormat, onMismatch)", what, p->string);
            return -1;
        }
    }
    const cJSON *lf = cJSON_GetObjectItemCaseSensitive(opt, "logFormat");
    const struct log_format *fmt = NULL;
    for (size_t i = 0; cJSON_IsString(lf) && i < sizeof log_formats / sizeof log_formats[0]; i++) {
        if (strcmp(lf->valuestring, log_formats[i].name) == 0) {
            fmt = &log_formats[i];
        }
    }
    if (fmt == NULL) {
        snprintf(err, errlen, "%s.logFormat must be COMMONAPACHELOG, COMBINEDAPACHELOG, APACHEERRORLOG, SYSLOG or "
                 "RFC3339SYSLOG", what);
        return -1;
    }
    const cJSON *mp = cJSON_GetObjectItemCaseSensitive(opt, "matchPattern");
    if (mp != NULL && (!cJSON_IsString(mp) || mp->valuestring[0] == '\0')) {
        snprintf(err, errlen, "%s.matchPattern must be a non-empty string", what);
        return -1;
    }
    char name[96];
    snprintf(name, sizeof name, "%s.matchPattern", what);
    if ((cv->re = compile(mp != NULL ? mp->valuestring : fmt->pattern, name, err, errlen)) == NULL) {
        return -1;
    }
    uint32_t groups = 0;
    pcre2_pattern_info(cv->re, PCRE2_INFO_CAPTURECOUNT, &groups);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(opt, "customFieldNames");
    snprintf(name, sizeof name, "%s.customFieldNames", what);
    if (names != NULL) {
        if (string_list(names, &cv->fields, &cv->nfields, name, err, errlen) != 0) {
            return -1;
        }
    } else if (mp != NULL) {
        snprintf(err, errlen, "%s: a matchPattern needs customFieldNames (one per capture group)", what);
        return -1;
    } else {
        size_t n = 0;
        while (n < 9 && fmt->fields[n] != NULL) {
            n++;
        }
        cv->fields = calloc(n, sizeof *cv->fields);
        if (cv->fields == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (cv->nfields = 0; cv->nfields < n; cv->nfields++) {
            if ((cv->fields[cv->nfields] = strdup(fmt->fields[cv->nfields])) == NULL) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
    }
    if (cv->nfields != groups) {
        snprintf(err, errlen, "%s: %zu customFieldNames for a pattern with %u capture groups", what, cv->nfields,
                 groups);
        return -1;
    }
    cv->mismatch = MISMATCH_DROP;
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "onMismatch")) != NULL &&
        parse_mismatch(p, cv, false, what, err, errlen) != 0) {
        return -1;
    }
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "jsonFormat")) != NULL &&
        parse_json_format(p, cv, what, err, errlen) != 0) {
        return -1;
    }
    return 0;
}

static int setup_metadata(converter_t *cv, const cJSON *opt, const char *what, char *err, size_t errlen)
{
    static const char *const keys[] = {"optionName", "timestamp", "metadata", "jsonFormat", NULL};
    const cJSON *p;
    cJSON_ArrayForEach(p, opt)
    {
        if (!one_of(p->string, keys)) {
            snprintf(err, errlen, "%s: unknown parameter \"%s\" (ADDMETADATA takes timestamp, metadata, jsonFormat)",
                     what, p->string);
            return -1;
        }
    }
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "timestamp")) != NULL &&
        parse_bool_param(p, &cv->timestamp, what, "timestamp", err, errlen) != 0) {
        return -1;
    }
    p = cJSON_GetObjectItemCaseSensitive(opt, "metadata");
    if (p != NULL && !cJSON_IsObject(p)) {
        snprintf(err, errlen, "%s.metadata must be an object", what);
        return -1;
    }
    cv->metadata = p != NULL ? cJSON_Duplicate(p, true) : cJSON_CreateObject();
    if (cv->metadata == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "jsonFormat")) != NULL &&
        parse_json_format(p, cv, what, err, errlen) != 0) {
        return -1;
    }
    return 0;
}

static const char *const ec2_field_names[] = {"privateIp", "availabilityZone", "instanceId", "instanceType",
                                              "accountId", "amiId", "region", NULL};

static int setup_ec2(converter_t *cv, const cJSON *opt, const char *what, char *err, size_t errlen)
{
    static const char *const keys[] = {"optionName", "metadataFields", "metadataTTL", "jsonFormat", NULL};
    const cJSON *p;
    cJSON_ArrayForEach(p, opt)
    {
        if (!one_of(p->string, keys)) {
            snprintf(err, errlen, "%s: unknown parameter \"%s\" (ADDEC2METADATA takes metadataFields, metadataTTL, "
                     "jsonFormat%s)", what, p->string,
                     strcmp(p->string, "logFormat") == 0 ? "; put a LOGTOJSON option before it instead of logFormat"
                                                         : "");
            return -1;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "%s.metadataFields", what);
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "metadataFields")) != NULL) {
        if (string_list(p, &cv->ec2_fields, &cv->nec2_fields, name, err, errlen) != 0) {
            return -1;
        }
        for (size_t i = 0; i < cv->nec2_fields; i++) {
            if (!one_of(cv->ec2_fields[i], ec2_field_names)) {
                snprintf(err, errlen, "%s[%zu]: unknown field \"%s\" (privateIp, availabilityZone, instanceId, "
                         "instanceType, accountId, amiId, region)", name, i, cv->ec2_fields[i]);
                return -1;
            }
        }
    }
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "metadataTTL")) != NULL &&
        !(cJSON_IsNumber(p) && p->valuedouble >= 0)) {
        snprintf(err, errlen, "%s.metadataTTL must be a number of seconds", what);
        return -1;
    }
    if ((p = cJSON_GetObjectItemCaseSensitive(opt, "jsonFormat")) != NULL &&
        parse_json_format(p, cv, what, err, errlen) != 0) {
        return -1;
    }
    return 0;
}

static void converter_dispose(converter_t *cv)
{
    for (size_t i = 0; i < cv->nfields; i++) {
        free(cv->fields[i]);
    }
    free(cv->fields);
    for (size_t i = 0; i < cv->nec2_fields; i++) {
        free(cv->ec2_fields[i]);
    }
    free(cv->ec2_fields);
    pcre2_match_data_free(cv->md);
    pcre2_code_free(cv->re);
    cJSON_Delete(cv->metadata);
}

proc_chain_t *proc_chain_new(const cJSON *options, char *err, size_t errlen)
{
    proc_chain_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (options == NULL) {
        return c;
    }
    if (!cJSON_IsArray(options)) {
        snprintf(err, errlen, "dataProcessingOptions must be an array");
        goto fail;
    }
    size_t n = (size_t)cJSON_GetArraySize(options);
    c->conv = calloc(n > 0 ? n : 1, sizeof *c->conv);
    if (c->conv == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    const cJSON *opt;
    cJSON_ArrayForEach(opt, options)
    {
        char what[64];
        snprintf(what, sizeof what, "dataProcessingOptions[%zu]", c->n);
        converter_t *cv = &c->conv[c->n++];
        const cJSON *on = cJSON_GetObjectItemCaseSensitive(opt, "optionName");
        if (!cJSON_IsObject(opt) || !cJSON_IsString(on)) {
            snprintf(err, errlen, "%s must be an object with an optionName", what);
            goto fail;
        }
        static const struct {
            const char *name;
            opt_kind_t kind;
            int (*setup)(converter_t *, const cJSON *, const char *, char *, size_t);
        } kinds[] = {
            {"SINGLELINE", OPT_SINGLELINE, setup_singleline}, {"CSVTOJSON", OPT_CSVTOJSON, setup_csv},
            {"LOGTOJSON", OPT_LOGTOJSON, setup_log},          {"ADDMETADATA", OPT_ADDMETADATA, setup_metadata},
            {"ADDEC2METADATA", OPT_ADDEC2METADATA, setup_ec2}, {"ADDBRACKETS", OPT_ADDBRACKETS, NULL},
        };
        bool found = false;
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            if (strcmp(on->valuestring, kinds[k].name) == 0) {
                cv->kind = kinds[k].kind;
                cv->name = kinds[k].name;
                found = true;
                if (kinds[k].setup != NULL && kinds[k].setup(cv, opt, what, err, errlen) != 0) {
                    goto fail;
                }
            }
        }
        if (!found) {
            snprintf(err, errlen, "%s.optionName \"%s\" is %s", what, on->valuestring,
                     strcmp(on->valuestring, "USINGPLUGGIN") == 0
                         ? "not supported (eddy agent runs no Java plugins)"
                         : "unknown (SINGLELINE, CSVTOJSON, LOGTOJSON, ADDMETADATA, ADDEC2METADATA, ADDBRACKETS)");
            goto fail;
        }
        if (cv->kind == OPT_ADDBRACKETS && cJSON_GetArraySize(opt) > 1) {
            snprintf(err, errlen, "%s: ADDBRACKETS takes no parameters", what);
            goto fail;
        }
        if (cv->re != NULL && (cv->md = pcre2_match_data_create_from_pattern(cv->re, NULL)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    return c;
fail:
    proc_chain_free(c);
    return NULL;
}

void proc_chain_free(proc_chain_t *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        converter_dispose(&c->conv[i]);
    }
    free(c->conv);
    buf_dispose(&c->buf[0]);
    buf_dispose(&c->buf[1]);
    free(c);
}

size_t proc_chain_length(const proc_chain_t *c)
{
    return c->n;
}

const char *proc_chain_option(const proc_chain_t *c, size_t i)
{
    return c->conv[i].name;
}

const proc_counters_t *proc_chain_counters(const proc_chain_t *c, size_t i)
{
    return &c->conv[i].counters;
}

bool proc_chain_wants_ec2(const proc_chain_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->conv[i].kind == OPT_ADDEC2METADATA) {
            return true;
        }
    }
    return false;
}

void proc_chain_set_ec2_metadata(proc_chain_t *c, const char *json_object)
{
    for (size_t i = 0; i < c->n; i++) {
        converter_t *cv = &c->conv[i];
        if (cv->kind != OPT_ADDEC2METADATA) {
            continue;
        }
        cJSON_Delete(cv->metadata);
        cv->metadata = NULL;
        cJSON *all = json_object != NULL ? cJSON_Parse(json_object) : NULL;
        if (!cJSON_IsObject(all)) {
            cJSON_Delete(all);
            continue;
        }
        if (cv->ec2_fields == NULL) {
            cv->metadata = all;
            continue;
        }
        cv->metadata = cJSON_CreateObject();
        for (size_t f = 0; cv->metadata != NULL && f < cv->nec2_fields; f++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(all, cv->ec2_fields[f]);
            if (v != NULL) {
                cJSON_AddItemToObject(cv->metadata, cv->ec2_fields[f], cJSON_Duplicate(v, true));
            }
        }
        cJSON_Delete(all);
    }
}

/* ---- the converters ---- */

/* The record without its line terminator ("\n" or "\r\n"). */
static size_t strip_newline(const char *in, size_t len)
{
    if (len > 0 && in[len - 1] == '\n') {
        len--;
        if (len > 0 && in[len - 1] == '\r') {
            len--;
        }
    }
    return len;
}

static cJSON *string_of(const char *s, size_t len)
{
    char *tmp = strndup(s, len);
    cJSON *v = tmp != NULL ? cJSON_CreateString(tmp) : NULL;
    free(tmp);
    return v;
}

/* Prints obj (taken) into out with a final newline; returns PROC_OK, or -1 when out of memory. */
static int emit_json(const converter_t *cv, cJSON *obj, buf_t *out)
{
    char *text = obj != NULL ? (cv->pretty ? cJSON_Print(obj) : cJSON_PrintUnformatted(obj)) : NULL;
    cJSON_Delete(obj);
    if (text == NULL) {
        return -1;
    }
    buf_reset(out);
    buf_puts(out, text);
    buf_putc(out, '\n');
    free(text);
    return PROC_OK;
}

static bool is_blank(char ch)
{
    return (unsigned char)ch <= ' '; /* Java's String.trim() */
}

static void singleline(const converter_t *cv, const char *in, size_t len, buf_t *out)
{
    buf_reset(out);
    size_t end = len;
    while (end > 0 && in[end - 1] == '\n') { /* Java's split drops trailing empty pieces */
        end--;
    }
    size_t start = 0;
    bool first = true;
    while (start <= end) {
        const char *nl = memchr(in + start, '\n', end - start);
        size_t stop = nl != NULL ? (size_t)(nl - in) : end;
        size_t a = start, b = stop;
        if (!cv->no_trim) {
            while (a < b && is_blank(in[a])) {
                a++;
            }
            while (b > a && is_blank(in[b - 1])) {
                b--;
            }
        }
        if (!first && cv->escape_newline) {
            buf_append(out, "\\n", 2);
        }
        buf_append(out, in + a, b - a);
        first = false;
        if (nl == NULL) {
            break;
        }
        start = stop + 1;
    }
    buf_putc(out, '\n');
}

/* 1: converted into out; 0: malformed (fewer fields than names); -1: out of memory. */
static int csv_to_json(converter_t *cv, const char *in, size_t len, buf_t *out)
{
    len = strip_newline(in, len);
    cJSON *obj = cJSON_CreateObject();
    size_t pos = 0, col = 0;
    /* the columns, Java-split style: pieces between delimiter matches; trailing empty pieces dropped */
    size_t starts[1024], ends[1024];
    size_t ncols = 0;
    while (ncols < 1024) {
        int rc = pos <= len ? pcre2_match(cv->re, (PCRE2_SPTR)in, len, pos, 0, cv->md, NULL) : -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(cv->md);
        if (rc < 0 || ov[1] == ov[0]) {
            starts[ncols] = pos;
            ends[ncols++] = len;
            break;
        }
        starts[ncols] = pos;
        ends[ncols++] = ov[0];
        pos = ov[1];
    }
    while (ncols > 0 && ends[ncols - 1] == starts[ncols - 1]) {
        ncols--;
    }
    bool malformed = ncols < cv->nfields;
    if (malformed && cv->mismatch != MISMATCH_NULL) {
        cJSON_Delete(obj);
        return 0;
    }
    for (col = 0; obj != NULL && col < cv->nfields; col++) {
        cJSON *v = col < ncols ? string_of(in + starts[col], ends[col] - starts[col]) : cJSON_CreateNull();
        if (v == NULL) {
            cJSON_Delete(obj);
            return -1;
        }
        cJSON_AddItemToObject(obj, cv->fields[col], v);
    }
    if (emit_json(cv, obj, out) != PROC_OK) {
        return -1;
    }
    return malformed ? 2 : 1;
}

/* 1: converted; 0: the pattern does not match; -1: out of memory. */
static int log_to_json(converter_t *cv, const char *in, size_t len, buf_t *out)
{
    len = strip_newline(in, len);
    int rc = pcre2_match(cv->re, (PCRE2_SPTR)in, len, 0, 0, cv->md, NULL);
    if (rc < 0) {
        return 0;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(cv->md);
    cJSON *obj = cJSON_CreateObject();
    for (size_t g = 1; obj != NULL && g <= cv->nfields && (int)g < rc; g++) {
        if (ov[2 * g] == PCRE2_UNSET) {
            continue; /* an optional group that did not take part: the field is left out */
        }
        cJSON *v = string_of(in + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
        if (v == NULL) {
            cJSON_Delete(obj);
            return -1;
        }
        cJSON_AddItemToObject(obj, cv->fields[g - 1], v);
    }
    return emit_json(cv, obj, out) == PROC_OK ? 1 : -1;
}

static int add_metadata(const converter_t *cv, const char *in, size_t len, int64_t now_ms, buf_t *out)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL) {
        return -1;
    }
    cJSON_AddItemToObject(obj, "metadata", cJSON_Duplicate(cv->metadata, true));
    cJSON *msg = string_of(in, strip_newline(in, len));
    if (msg == NULL) {
        cJSON_Delete(obj);
        return -1;
    }
    cJSON_AddItemToObject(obj, "message", msg);
    if (cv->timestamp) {
        time_t secs = (time_t)(now_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char ts[64];
        snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now_ms % 1000));
        cJSON_AddStringToObject(obj, "ts", ts);
    }
    return emit_json(cv, obj, out) == PROC_OK ? 1 : -1;
}

int proc_chain_run(proc_chain_t *c, const char *in, size_t len, int64_t now_ms, const char **out, size_t *out_len)
{
    const char *cur = in;
    size_t cur_len = len;
    int next = 0;
    for (size_t i = 0; i < c->n; i++) {
        converter_t *cv = &c->conv[i];
        buf_t *dst = &c->buf[next];
        int rc;
        switch (cv->kind) {
        case OPT_SINGLELINE:
            singleline(cv, cur, cur_len, dst);
            rc = 1;
            break;
        case OPT_CSVTOJSON:
            rc = csv_to_json(cv, cur, cur_len, dst);
            break;
        case OPT_LOGTOJSON:
            rc = log_to_json(cv, cur, cur_len, dst);
            break;
        case OPT_ADDMETADATA:
            rc = add_metadata(cv, cur, cur_len, now_ms, dst);
            break;
        case OPT_ADDEC2METADATA:
            rc = cv->metadata != NULL ? add_metadata(cv, cur, cur_len, now_ms, dst) : 3;
            break;
        case OPT_ADDBRACKETS:
        default:
            buf_reset(dst);
            buf_putc(dst, '[');
            buf_append(dst, cur, cur_len);
            buf_putc(dst, ']');
            rc = 1;
            break;
        }
        if (rc == 3) { /* ADDEC2METADATA without metadata: unchanged */
            continue;
        }
        if (rc < 0) {
            /* out of memory inside cJSON: drop this record rather than send something half-made */
            cv->counters.malformed++;
            cv->counters.dropped++;
            return PROC_DROP;
        }
        if (rc == 0 || rc == 2) {
            cv->counters.malformed++;
        }
        if (rc == 0) {
            if (cv->mismatch == MISMATCH_RAW) {
                cv->counters.kept_raw++;
                continue;
            }
            cv->counters.dropped++;
            return PROC_DROP;
        }
        cv->counters.converted++;
        cur = dst->data;
        cur_len = dst->len;
        next ^= 1;
    }
    *out = cur;
    *out_len = cur_len;
    return PROC_OK;
}

/* ---- EC2 instance metadata ---- */

static size_t collect(char *ptr, size_t size, size_t n, void *arg)
{
    buf_t *b = arg;
    if (b->len + size * n > 65536) {
        return 0; /* no metadata answer is this large */
    }
    buf_append(b, ptr, size * n);
    return size * n;
}

/* One request; 0 with the body in out, or -1. */
static int imds(CURL *h, const char *url, const char *method, struct curl_slist *headers, long timeout_ms, buf_t *out)
{
    buf_reset(out);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    long status = 0;
    if (curl_easy_perform(h) != CURLE_OK || curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
        status != 200) {
        return -1;
    }
    buf_cstr(out);
    return 0;
}

char *proc_ec2_fetch_metadata(const char *endpoint, long timeout_ms, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    buf_t body = BUF_INIT, token = BUF_INIT;
    struct curl_slist *headers = NULL;
    cJSON *obj = NULL;
    char *text = NULL;
    char url[512];
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    long each = timeout_ms / 4 > 100 ? timeout_ms / 4 : 100;
    snprintf(url, sizeof url, "%s/latest/api/token", endpoint);
    struct curl_slist *ttl = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
    int rc = imds(h, url, "PUT", ttl, each, &token);
    curl_slist_free_all(ttl);
    if (rc == 0 && token.len > 0 && token.len < 200) {
        char header[256];
        snprintf(header, sizeof header, "X-aws-ec2-metadata-token: %s", token.data);
        headers = curl_slist_append(NULL, header);
    }
    snprintf(url, sizeof url, "%s/latest/dynamic/instance-identity/document", endpoint);
    if (imds(h, url, "GET", headers, each, &body) != 0) {
        snprintf(err, errlen, "no EC2 instance metadata at %s (not on EC2, or the service is off)", endpoint);
        goto out;
    }
    cJSON *doc = cJSON_Parse(body.data);
    obj = cJSON_CreateObject();
    static const struct {
        const char *doc_key, *field;
    } from_doc[] = {{"privateIp", "privateIp"},   {"availabilityZone", "availabilityZone"},
                    {"instanceId", "instanceId"}, {"instanceType", "instanceType"},
                    {"accountId", "accountId"},   {"imageId", "amiId"},
                    {"region", "region"}};
    for (size_t i = 0; obj != NULL && i < sizeof from_doc / sizeof from_doc[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, from_doc[i].doc_key);
        if (cJSON_IsString(v)) {
            cJSON_AddStringToObject(obj, from_doc[i].field, v->valuestring);
        }
    }
    cJSON_Delete(doc);
    if (obj == NULL || cJSON_GetArraySize(obj) == 0) {
        snprintf(err, errlen, "the EC2 instance identity document at %s could not be read", endpoint);
        goto out;
    }
    text = cJSON_PrintUnformatted(obj);
out:
    cJSON_Delete(obj);
    curl_slist_free_all(headers);
    buf_dispose(&body);
    buf_dispose(&token);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    return text;
}
