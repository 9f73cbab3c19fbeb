/*
 * policy: IAM-style policy parsing and evaluation (grammar, condition subset and evaluation rule in
 * policy.h).
 *
 * A parsed policy is a tree of plain arrays built once by policy_parse and never changed afterwards, so it
 * can be shared by every thread. Each string the evaluator needs is copied out of the cJSON tree, which is
 * freed before policy_parse returns. Condition values that need parsing (CIDRs, booleans) are parsed here
 * once, so evaluation is comparisons only: no allocation, no locks.
 *
 * The wildcard matcher is the classic two-pointer glob with a single backtrack point (the most recent '*'):
 * on a mismatch after a '*', the '*' absorbs one more byte and the pattern resumes after it. Backtracking to
 * an earlier '*' is never needed, because whatever an earlier star could absorb the latest one can as
 * well, so the work is bounded by len(pattern) * len(value) and needs no recursion.
 */
#include "server/policy.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the parsed form ---- */

typedef struct strlist {
    char **items;
    size_t n;
} strlist_t;

typedef enum principal_type {
    PRINCIPAL_ANY,     /* "*" */
    PRINCIPAL_ACCOUNT, /* value: 12 digits; matches every principal of the account */
    PRINCIPAL_ARN,     /* value: one principal's ARN, compared exactly */
} principal_type_t;

typedef struct principal {
    principal_type_t type;
    char *value; /* NULL for PRINCIPAL_ANY */
} principal_t;

typedef enum cond_key {
    KEY_PRINCIPAL_ACCOUNT,
    KEY_PRINCIPAL_ARN,
    KEY_SOURCE_IP,
    KEY_SECURE_TRANSPORT,
} cond_key_t;

typedef enum cond_match {
    MATCH_EQUALS,    /* exact, case-sensitive */
    MATCH_EQUALS_CI, /* exact, ASCII case-insensitive */
    MATCH_LIKE,      /* glob, case-sensitive */
    MATCH_ARN,       /* ArnEquals / ArnLike: glob, case-sensitive (IAM treats the two alike) */
    MATCH_IP,        /* CIDR containment */
    MATCH_BOOL,      /* "true" / "false" */
} cond_match_t;

typedef struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned prefix;
    unsigned char addr[16];
} cidr_t;

typedef struct condition {
    cond_match_t match;
    cond_key_t key;
    bool negated;
    bool if_exists;
    size_t n;
    char **values; /* MATCH_IP: NULL (see cidrs); MATCH_BOOL: "true" / "false" */
    cidr_t *cidrs;
} condition_t;

typedef struct statement {
    char *sid; /* NULL when absent */
    bool deny;
    bool not_action;
    bool not_resource;
    bool has_principal;
    bool not_principal;
    strlist_t actions;
    strlist_t resources;
    principal_t *principals;
    size_t nprincipals;
    condition_t *conditions;
    size_t nconditions;
} statement_t;

struct policy {
    policy_kind_t kind;
    statement_t *statements;
    size_t n;
};

/* ---- condition tables ---- */

typedef struct cond_op_def {
    const char *name;
    cond_match_t match;
    bool negated;
} cond_op_def_t;

static const cond_op_def_t cond_ops[] = {
    {"StringEquals", MATCH_EQUALS, false},
    {"StringNotEquals", MATCH_EQUALS, true},
    {"StringEqualsIgnoreCase", MATCH_EQUALS_CI, false},
    {"StringNotEqualsIgnoreCase", MATCH_EQUALS_CI, true},
    {"StringLike", MATCH_LIKE, false},
    {"StringNotLike", MATCH_LIKE, true},
    {"ArnEquals", MATCH_ARN, false},
    {"ArnNotEquals", MATCH_ARN, true},
    {"ArnLike", MATCH_ARN, false},
    {"ArnNotLike", MATCH_ARN, true},
    {"IpAddress", MATCH_IP, false},
    {"NotIpAddress", MATCH_IP, true},
    {"Bool", MATCH_BOOL, false},
};

#define STRING_MATCHES (1u << MATCH_EQUALS | 1u << MATCH_EQUALS_CI | 1u << MATCH_LIKE)

typedef struct cond_key_def {
    const char *name;
    cond_key_t key;
    unsigned matches; /* bit set of the cond_match_t usable with the key */
} cond_key_def_t;

static const cond_key_def_t cond_keys[] = {
    {"aws:PrincipalAccount", KEY_PRINCIPAL_ACCOUNT, STRING_MATCHES},
    {"aws:PrincipalArn", KEY_PRINCIPAL_ARN, STRING_MATCHES | 1u << MATCH_ARN},
    {"aws:SourceIp", KEY_SOURCE_IP, 1u << MATCH_IP},
    {"aws:SecureTransport", KEY_SECURE_TRANSPORT, 1u << MATCH_BOOL},
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- small string helpers ---- */

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool ascii_equal_ci(const char *a, const char *b)
{
    for (;; a++, b++) {
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b)) {
            return false;
        }
        if (*a == '\0') {
            return true;
        }
    }
}

static bool ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k || memcmp(s + n - k, suffix, k) != 0) {
        return false;
    }
    *stem = n - k;
    return true;
}

static bool is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static bool is_account_id(const char *s)
{
    return strlen(s) == 12 && is_digits(s, 12);
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* ---- wildcard matching ---- */

bool policy_match(const char *pattern, const char *value, bool case_insensitive)
{
    const char *p = pattern, *v = value;
    const char *star_p = NULL; /* pattern position just after the latest '*' */
    const char *star_v = NULL; /* value position that '*' currently extends to */
    while (*v != '\0') {
        if (*p == '*') {
            star_p = ++p;
            star_v = v;
            continue;
        }
        if (*p != '\0' &&
            (*p == '?' || *p == *v ||
             (case_insensitive && ascii_lower((unsigned char)*p) == ascii_lower((unsigned char)*v)))) {
            p++;
            v++;
            continue;
        }
        if (star_p == NULL) {
            return false;
        }
        p = star_p; /* the latest '*' absorbs one more byte */
        v = ++star_v;
    }
    while (*p == '*') {
        p++;
    }
    return *p == '\0';
}

/* ---- parsing ---- */

typedef struct parser {
    char *err;
    size_t errlen;
    int rc;
    char where[32]; /* "Statement[3]: " or "" */
} parser_t;

/* A user-supplied value, quoted in messages: at most 64 bytes, anything but printable ASCII as '?', so the
 * message stays valid UTF-8 and short. */
typedef struct shown {
    char text[72];
} shown_t;

static shown_t show(const char *s)
{
    shown_t out;
    size_t i = 0;
    for (; s[i] != '\0' && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        out.text[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s[i] != '\0') {
        memcpy(out.text + i, "...", 3);
        i += 3;
    }
    out.text[i] = '\0';
    return out;
}

__attribute__((format(printf, 2, 3))) static int fail(parser_t *ps, const char *fmt, ...)
{
    if (ps->errlen > 0) {
        int n = snprintf(ps->err, ps->errlen, "%s", ps->where);
        size_t off = n < 0 ? 0 : (size_t)n;
        if (off < ps->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err + off, ps->errlen - off, fmt, ap);
            va_end(ap);
        }
    }
    ps->rc = -EINVAL;
    return -EINVAL;
}

static int out_of_memory(parser_t *ps)
{
    if (ps->errlen > 0) {
        snprintf(ps->err, ps->errlen, "Out of memory");
    }
    ps->rc = -ENOMEM;
    return -ENOMEM;
}

static int copy_string(parser_t *ps, const char *s, char **out)
{
    *out = strdup(s);
    return *out == NULL ? out_of_memory(ps) : 0;
}

/* Rejects an object member that appears twice (cJSON keeps both). */
static int check_unique_keys(parser_t *ps, const cJSON *obj, bool case_insensitive, const char *what)
{
    for (const cJSON *a = obj->child; a != NULL; a = a->next) {
        for (const cJSON *b = a->next; b != NULL; b = b->next) {
            bool same =
                case_insensitive ? ascii_equal_ci(a->string, b->string) : strcmp(a->string, b->string) == 0;
            if (same) {
                return fail(ps, "Duplicate %s \"%s\"", what, show(a->string).text);
            }
        }
    }
    return 0;
}

typedef int (*entry_check_fn)(parser_t *ps, const char *field, const char *value);

/* Checks that v is a string or a non-empty array of at most POLICY_MAX_LIST strings; the count goes to *n. */
static int list_shape(parser_t *ps, const cJSON *v, const char *field, size_t *n)
{
    if (cJSON_IsString(v)) {
        *n = 1;
        return 0;
    }
    if (!cJSON_IsArray(v)) {
        return fail(ps, "%s must be a string or an array of strings", field);
    }
    size_t count = 0;
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e)) {
            return fail(ps, "%s must be a string or an array of strings", field);
        }
        if (++count > POLICY_MAX_LIST) {
            return fail(ps, "%s has more than %d entries", field, POLICY_MAX_LIST);
        }
    }
    if (count == 0) {
        return fail(ps, "%s must not be empty", field);
    }
    *n = count;
    return 0;
}

static int take_list(parser_t *ps, const cJSON *v, const char *field, entry_check_fn check, strlist_t *out)
{
    size_t n = 0;
    int rc = list_shape(ps, v, field, &n);
    if (rc != 0) {
        return rc;
    }
    out->items = calloc(n, sizeof *out->items);
    if (out->items == NULL) {
        return out_of_memory(ps);
    }
    const cJSON *e = cJSON_IsString(v) ? v : v->child;
    for (; e != NULL; e = cJSON_IsString(v) ? NULL : e->next) {
        if ((rc = check(ps, field, e->valuestring)) != 0 ||
            (rc = copy_string(ps, e->valuestring, &out->items[out->n])) != 0) {
            return rc;
        }
        out->n++;
    }
    return 0;
}

/* "*", or vendor:Name with vendor [A-Za-z0-9-]+ and Name [A-Za-z0-9*?]+. */
static int check_action(parser_t *ps, const char *field, const char *s)
{
    if (strcmp(s, "*") == 0) {
        return 0;
    }
    const char *colon = strchr(s, ':');
    bool ok = colon != NULL && colon > s && colon[1] != '\0';
    for (const char *c = s; ok && c < colon; c++) {
        ok = is_alnum(*c) || *c == '-';
    }
    for (const char *c = ok ? colon + 1 : s; ok && *c != '\0'; c++) {
        ok = is_alnum(*c) || *c == '*' || *c == '?';
    }
    if (!ok) {
        return fail(ps,
                    "%s \"%s\" must be \"*\" or a service prefix and an action name, e.g. kinesis:PutRecord",
                    field, show(s).text);
    }
    return 0;
}

/* "*", or arn:partition:service:region:account:resource (wildcards allowed in every part). */
static int check_resource(parser_t *ps, const char *field, const char *s)
{
    if (strcmp(s, "*") == 0) {
        return 0;
    }
    size_t colons = 0;
    for (const char *c = s; *c != '\0'; c++) {
        colons += *c == ':';
    }
    if (strncmp(s, "arn:", 4) != 0 || colons < 5) {
        return fail(ps, "%s \"%s\" must be in ARN format or \"*\"", field, show(s).text);
    }
    return 0;
}

/* One "AWS" principal: "*", an account id, arn:PARTITION:(iam|sts)::ACCOUNT:(root|RESOURCE). */
static int take_principal(parser_t *ps, const char *s, principal_t *out)
{
    if (strcmp(s, "*") == 0) {
        out->type = PRINCIPAL_ANY;
        return 0;
    }
    if (is_account_id(s)) {
        out->type = PRINCIPAL_ACCOUNT;
        return copy_string(ps, s, &out->value);
    }
    /* arn : partition : service : region(empty) : account : resource */
    const char *part[6];
    size_t len[6];
    const char *c = s;
    size_t i = 0;
    for (; i < 5; i++) {
        const char *colon = strchr(c, ':');
        if (colon == NULL) {
            break;
        }
        part[i] = c;
        len[i] = (size_t)(colon - c);
        c = colon + 1;
    }
    bool ok = i == 5;
    if (ok) {
        part[5] = c;
        len[5] = strlen(c);
        ok = len[0] == 3 && memcmp(part[0], "arn", 3) == 0 && len[1] > 0 &&
             ((len[2] == 3 && memcmp(part[2], "iam", 3) == 0) ||
              (len[2] == 3 && memcmp(part[2], "sts", 3) == 0)) &&
             len[3] == 0 && len[4] == 12 && is_digits(part[4], 12) && len[5] > 0 && strpbrk(s, "*?") == NULL;
    }
    if (!ok) {
        return fail(ps, "Invalid principal in policy: \"AWS\":\"%s\"", show(s).text);
    }
    if (strcmp(part[5], "root") == 0) {
        out->type = PRINCIPAL_ACCOUNT;
        out->value = strndup(part[4], 12);
        return out->value == NULL ? out_of_memory(ps) : 0;
    }
    out->type = PRINCIPAL_ARN;
    return copy_string(ps, s, &out->value);
}

static int take_principals(parser_t *ps, const cJSON *v, const char *field, statement_t *st)
{
    int rc;
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "*") != 0) {
            return fail(ps, "Invalid principal in policy: \"%s\" (use \"*\" or {\"AWS\": ...})",
                        show(v->valuestring).text);
        }
        st->principals = calloc(1, sizeof *st->principals);
        if (st->principals == NULL) {
            return out_of_memory(ps);
        }
        st->principals[0].type = PRINCIPAL_ANY;
        st->nprincipals = 1;
        return 0;
    }
    if (!cJSON_IsObject(v)) {
        return fail(ps, "%s must be \"*\" or an object such as {\"AWS\": \"123456789012\"}", field);
    }
    const cJSON *aws = NULL;
    for (const cJSON *m = v->child; m != NULL; m = m->next) {
        if (strcmp(m->string, "AWS") != 0) {
            return fail(ps, "%s type \"%s\" is not supported (only \"AWS\")", field, show(m->string).text);
        }
        if (aws != NULL) {
            return fail(ps, "Duplicate field \"AWS\" in %s", field);
        }
        aws = m;
    }
    if (aws == NULL) {
        return fail(ps, "%s must name at least one principal", field);
    }
    size_t n = 0;
    char name[32];
    snprintf(name, sizeof name, "%s.AWS", field);
    if ((rc = list_shape(ps, aws, name, &n)) != 0) {
        return rc;
    }
    st->principals = calloc(n, sizeof *st->principals);
    if (st->principals == NULL) {
        return out_of_memory(ps);
    }
    const cJSON *e = cJSON_IsString(aws) ? aws : aws->child;
    for (; e != NULL; e = cJSON_IsString(aws) ? NULL : e->next) {
        if ((rc = take_principal(ps, e->valuestring, &st->principals[st->nprincipals])) != 0) {
            return rc;
        }
        st->nprincipals++;
    }
    return 0;
}

/* An address, or address/prefix. */
static bool parse_cidr(const char *s, cidr_t *out)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr) {
        return false;
    }
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    out->prefix = max;
    if (slash != NULL) {
        const char *digits = slash + 1;
        size_t n = strlen(digits);
        if (n == 0 || n > 3 || !is_digits(digits, n)) {
            return false;
        }
        unsigned prefix = (unsigned)atoi(digits);
        if (prefix > max) {
            return false;
        }
        out->prefix = prefix;
    }
    return true;
}

static int take_condition_values(parser_t *ps, const cJSON *v, const char *op, const char *key,
                                 condition_t *c)
{
    size_t n = 0;
    int rc;
    char field[160];
    snprintf(field, sizeof field, "Condition %s \"%s\"", show(op).text, show(key).text);
    if (c->match == MATCH_BOOL && cJSON_IsBool(v)) {
        n = 1;
    } else if (c->match == MATCH_BOOL && cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e != NULL; e = e->next) {
            if (!cJSON_IsBool(e) && !cJSON_IsString(e)) {
                return fail(ps, "%s values must be \"true\" or \"false\"", field);
            }
            if (++n > POLICY_MAX_LIST) {
                return fail(ps, "%s has more than %d entries", field, POLICY_MAX_LIST);
            }
        }
        if (n == 0) {
            return fail(ps, "%s must not be empty", field);
        }
    } else if ((rc = list_shape(ps, v, field, &n)) != 0) {
        return rc;
    }
    if (c->match == MATCH_IP) {
        c->cidrs = calloc(n, sizeof *c->cidrs);
        if (c->cidrs == NULL) {
            return out_of_memory(ps);
        }
    } else {
        c->values = calloc(n, sizeof *c->values);
        if (c->values == NULL) {
            return out_of_memory(ps);
        }
    }
    bool single = !cJSON_IsArray(v);
    for (const cJSON *e = single ? v : v->child; e != NULL; e = single ? NULL : e->next) {
        if (c->match == MATCH_IP) {
            if (!parse_cidr(e->valuestring, &c->cidrs[c->n])) {
                return fail(ps, "%s: invalid IP address or CIDR \"%s\"", field, show(e->valuestring).text);
            }
        } else if (c->match == MATCH_BOOL) {
            bool b;
            if (cJSON_IsBool(e)) {
                b = cJSON_IsTrue(e);
            } else if (ascii_equal_ci(e->valuestring, "true") || ascii_equal_ci(e->valuestring, "false")) {
                b = ascii_equal_ci(e->valuestring, "true");
            } else {
                return fail(ps, "%s values must be \"true\" or \"false\"", field);
            }
            if ((rc = copy_string(ps, b ? "true" : "false", &c->values[c->n])) != 0) {
                return rc;
            }
        } else if ((rc = copy_string(ps, e->valuestring, &c->values[c->n])) != 0) {
            return rc;
        }
        c->n++;
    }
    return 0;
}

static int take_conditions(parser_t *ps, const cJSON *v, statement_t *st)
{
    int rc;
    if (!cJSON_IsObject(v)) {
        return fail(ps, "Condition must be an object");
    }
    if ((rc = check_unique_keys(ps, v, false, "condition operator")) != 0) {
        return rc;
    }
    size_t total = 0;
    for (const cJSON *op = v->child; op != NULL; op = op->next) {
        if (!cJSON_IsObject(op) || op->child == NULL) {
            return fail(ps, "Condition operator \"%s\" must map to an object of condition keys",
                        show(op->string).text);
        }
        if ((rc = check_unique_keys(ps, op, true, "condition key")) != 0) {
            return rc;
        }
        for (const cJSON *k = op->child; k != NULL; k = k->next) {
            if (++total > POLICY_MAX_LIST) {
                return fail(ps, "Condition has more than %d operator/key pairs", POLICY_MAX_LIST);
            }
        }
    }
    if (total == 0) {
        return 0;
    }
    st->conditions = calloc(total, sizeof *st->conditions);
    if (st->conditions == NULL) {
        return out_of_memory(ps);
    }
    for (const cJSON *op = v->child; op != NULL; op = op->next) {
        const char *name = op->string;
        if (strncmp(name, "ForAnyValue:", 12) == 0 || strncmp(name, "ForAllValues:", 13) == 0) {
            return fail(ps,
                        "Condition operator \"%s\" is not supported: the supported condition keys are "
                        "single-valued",
                        show(name).text);
        }
        size_t stem = strlen(name);
        bool if_exists = ends_with(name, "IfExists", &stem);
        const cond_op_def_t *def = NULL;
        for (size_t i = 0; i < ARRAY_LEN(cond_ops); i++) {
            if (strlen(cond_ops[i].name) == stem && memcmp(cond_ops[i].name, name, stem) == 0) {
                def = &cond_ops[i];
            }
        }
        if (def == NULL) {
            return fail(
                ps,
                "Condition operator \"%s\" is not supported (supported: String[Not]Equals[IgnoreCase], "
                "String[Not]Like, Arn[Not]Equals, Arn[Not]Like, [Not]IpAddress, Bool; each with an "
                "optional IfExists)",
                show(name).text);
        }
        for (const cJSON *k = op->child; k != NULL; k = k->next) {
            const cond_key_def_t *key = NULL;
            for (size_t i = 0; i < ARRAY_LEN(cond_keys); i++) {
                if (ascii_equal_ci(cond_keys[i].name, k->string)) {
                    key = &cond_keys[i];
                }
            }
            if (key == NULL) {
                return fail(ps,
                            "Condition key \"%s\" is not supported (supported: aws:PrincipalAccount, "
                            "aws:PrincipalArn, aws:SourceIp, aws:SecureTransport)",
                            show(k->string).text);
            }
            if ((key->matches & 1u << def->match) == 0) {
                return fail(ps, "Condition operator \"%s\" cannot be used with key %s", show(name).text,
                            key->name);
            }
            condition_t *c = &st->conditions[st->nconditions++];
            c->match = def->match;
            c->negated = def->negated;
            c->if_exists = if_exists;
            c->key = key->key;
            if ((rc = take_condition_values(ps, k, name, key->name, c)) != 0) {
                return rc;
            }
        }
    }
    return 0;
}

enum {
    F_SID = 1 << 0,
    F_EFFECT = 1 << 1,
    F_ACTION = 1 << 2,
    F_NOT_ACTION = 1 << 3,
    F_RESOURCE = 1 << 4,
    F_NOT_RESOURCE = 1 << 5,
    F_PRINCIPAL = 1 << 6,
    F_NOT_PRINCIPAL = 1 << 7,
    F_CONDITION = 1 << 8,
};

static const struct {
    const char *name;
    unsigned flag;
} statement_fields[] = {
    {"Sid", F_SID},
    {"Effect", F_EFFECT},
    {"Action", F_ACTION},
    {"NotAction", F_NOT_ACTION},
    {"Resource", F_RESOURCE},
    {"NotResource", F_NOT_RESOURCE},
    {"Principal", F_PRINCIPAL},
    {"NotPrincipal", F_NOT_PRINCIPAL},
    {"Condition", F_CONDITION},
};

static int take_statement(parser_t *ps, policy_kind_t kind, const cJSON *obj, statement_t *st)
{
    int rc;
    if (!cJSON_IsObject(obj)) {
        return fail(ps, "Statement must be an object");
    }
    const cJSON *field[ARRAY_LEN(statement_fields)] = {NULL};
    unsigned seen = 0;
    for (const cJSON *m = obj->child; m != NULL; m = m->next) {
        size_t i = 0;
        while (i < ARRAY_LEN(statement_fields) && strcmp(statement_fields[i].name, m->string) != 0) {
            i++;
        }
        if (i == ARRAY_LEN(statement_fields)) {
            return fail(ps, "Unknown field \"%s\"", show(m->string).text);
        }
        if (seen & statement_fields[i].flag) {
            return fail(ps, "Duplicate field \"%s\"", statement_fields[i].name);
        }
        seen |= statement_fields[i].flag;
        field[i] = m;
    }
    const cJSON *sid = field[0], *effect = field[1], *action = field[2], *not_action = field[3];
    const cJSON *resource = field[4], *not_resource = field[5], *principal = field[6];
    const cJSON *not_principal = field[7], *condition = field[8];

    if (sid != NULL) {
        if (!cJSON_IsString(sid)) {
            return fail(ps, "Sid must be a string");
        }
        if ((rc = copy_string(ps, sid->valuestring, &st->sid)) != 0) {
            return rc;
        }
    }
    if (effect == NULL) {
        return fail(ps, "Missing required field Effect");
    }
    if (!cJSON_IsString(effect) ||
        (strcmp(effect->valuestring, "Allow") != 0 && strcmp(effect->valuestring, "Deny") != 0)) {
        return fail(ps, "Effect must be \"Allow\" or \"Deny\"");
    }
    st->deny = strcmp(effect->valuestring, "Deny") == 0;

    if (action != NULL && not_action != NULL) {
        return fail(ps, "Action and NotAction cannot both be present");
    }
    if (action == NULL && not_action == NULL) {
        return fail(ps, "Missing required field Action (or NotAction)");
    }
    st->not_action = action == NULL;
    if ((rc = take_list(ps, action != NULL ? action : not_action, action != NULL ? "Action" : "NotAction",
                        check_action, &st->actions)) != 0) {
        return rc;
    }

    if (resource != NULL && not_resource != NULL) {
        return fail(ps, "Resource and NotResource cannot both be present");
    }
    if (resource == NULL && not_resource == NULL) {
        return fail(ps, "Missing required field Resource (or NotResource)");
    }
    st->not_resource = resource == NULL;
    if ((rc = take_list(ps, resource != NULL ? resource : not_resource,
                        resource != NULL ? "Resource" : "NotResource", check_resource, &st->resources)) !=
        0) {
        return rc;
    }

    if (kind == POLICY_IDENTITY && (principal != NULL || not_principal != NULL)) {
        return fail(ps, "Has prohibited field %s: identity policies apply to the caller they are attached to",
                    principal != NULL ? "Principal" : "NotPrincipal");
    }
    if (principal != NULL && not_principal != NULL) {
        return fail(ps, "Principal and NotPrincipal cannot both be present");
    }
    if (kind == POLICY_RESOURCE) {
        if (principal == NULL && not_principal == NULL) {
            return fail(ps, "Missing required field Principal (or NotPrincipal)");
        }
        st->has_principal = true;
        st->not_principal = principal == NULL;
        if ((rc = take_principals(ps, principal != NULL ? principal : not_principal,
                                  principal != NULL ? "Principal" : "NotPrincipal", st)) != 0) {
            return rc;
        }
    }

    if (condition != NULL && (rc = take_conditions(ps, condition, st)) != 0) {
        return rc;
    }
    return 0;
}

/* cJSON turns "\u0000" inside a string into an early end of that string: refuse it rather than silently
 * match a shorter value. The document is known to be valid JSON here. */
static bool has_escaped_nul(const char *s, size_t n)
{
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            in_string = s[i] == '"';
        } else if (s[i] == '"') {
            in_string = false;
        } else if (s[i] == '\\') {
            if (n - i >= 6 && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) {
                return true;
            }
            i++;
        }
    }
    return false;
}

static int take_document(parser_t *ps, policy_kind_t kind, const cJSON *root, policy_t *p)
{
    int rc;
    if (!cJSON_IsObject(root)) {
        return fail(ps, "Policy document must be a JSON object");
    }
    const cJSON *statements = NULL, *version = NULL, *id = NULL;
    for (const cJSON *m = root->child; m != NULL; m = m->next) {
        const cJSON **slot = strcmp(m->string, "Statement") == 0 ? &statements
                             : strcmp(m->string, "Version") == 0 ? &version
                             : strcmp(m->string, "Id") == 0      ? &id
                                                                 : NULL;
        if (slot == NULL) {
            return fail(ps, "Unknown field \"%s\"", show(m->string).text);
        }
        if (*slot != NULL) {
            return fail(ps, "Duplicate field \"%s\"", m->string);
        }
        *slot = m;
    }
    if (version != NULL) {
        if (!cJSON_IsString(version)) {
            return fail(ps, "Version must be a string");
        }
        if (strcmp(version->valuestring, "2012-10-17") != 0 &&
            strcmp(version->valuestring, "2008-10-17") != 0) {
            return fail(ps, "Invalid Version \"%s\": must be \"2012-10-17\" or \"2008-10-17\"",
                        show(version->valuestring).text);
        }
    }
    if (id != NULL && !cJSON_IsString(id)) {
        return fail(ps, "Id must be a string");
    }
    if (statements == NULL) {
        return fail(ps, "Missing required field Statement");
    }
    size_t n = 1;
    if (cJSON_IsArray(statements)) {
        n = 0;
        for (const cJSON *e = statements->child; e != NULL; e = e->next) {
            if (++n > POLICY_MAX_STATEMENTS) {
                return fail(ps, "Policy has more than %d statements", POLICY_MAX_STATEMENTS);
            }
        }
        if (n == 0) {
            return fail(ps, "Statement must not be empty");
        }
    } else if (!cJSON_IsObject(statements)) {
        return fail(ps, "Statement must be an object or an array of objects");
    }
    p->statements = calloc(n, sizeof *p->statements);
    if (p->statements == NULL) {
        return out_of_memory(ps);
    }
    bool array = cJSON_IsArray(statements);
    size_t i = 0;
    for (const cJSON *e = array ? statements->child : statements; e != NULL;
         e = array ? e->next : NULL, i++) {
        if (array) {
            snprintf(ps->where, sizeof ps->where, "Statement[%zu]: ", i);
        } else {
            snprintf(ps->where, sizeof ps->where, "Statement: ");
        }
        rc = take_statement(ps, kind, e, &p->statements[p->n]);
        p->n++; /* counted even when half built, so policy_free releases it */
        if (rc != 0) {
            return rc;
        }
        const char *sid = p->statements[p->n - 1].sid;
        for (size_t j = 0; sid != NULL && j + 1 < p->n; j++) {
            if (p->statements[j].sid != NULL && strcmp(p->statements[j].sid, sid) == 0) {
                return fail(ps, "Duplicate Sid \"%s\": statement ids must be unique within a policy",
                            show(sid).text);
            }
        }
    }
    ps->where[0] = '\0';
    return 0;
}

int policy_parse(policy_kind_t kind, const char *json, size_t len, policy_t **out, char *err, size_t errlen)
{
    parser_t ps = {.err = err, .errlen = errlen};
    cJSON *root = NULL;
    policy_t *p = NULL;
    *out = NULL;
    if (errlen > 0) {
        err[0] = '\0';
    }

    size_t max = kind == POLICY_RESOURCE ? POLICY_MAX_RESOURCE_BYTES : POLICY_MAX_IDENTITY_BYTES;
    if (len > max) {
        fail(&ps, "Policy document is too large: %zu bytes, the limit is %zu", len, max);
        goto out;
    }
    const char *nul = memchr(json, '\0', len);
    if (nul != NULL) {
        fail(&ps, "Syntax errors in policy: NUL byte at offset %zu", (size_t)(nul - json));
        goto out;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (root == NULL) {
        /* cJSON reports where it stopped; it cannot tell a syntax error from running out of memory, and a
         * document this small only fails for its syntax in practice. */
        size_t at = end != NULL && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        fail(&ps, "Syntax errors in policy: invalid JSON near offset %zu", at);
        goto out;
    }
    for (size_t at = (size_t)(end - json); at < len; at++) {
        if (json[at] != ' ' && json[at] != '\t' && json[at] != '\n' && json[at] != '\r') {
            fail(&ps, "Syntax errors in policy: unexpected text after the document at offset %zu", at);
            goto out;
        }
    }
    if (has_escaped_nul(json, len)) {
        fail(&ps, "Syntax errors in policy: strings must not contain \\u0000");
        goto out;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        out_of_memory(&ps);
        goto out;
    }
    p->kind = kind;
    if (take_document(&ps, kind, root, p) != 0) {
        goto out;
    }
    *out = p;
    p = NULL;
out:
    cJSON_Delete(root);
    policy_free(p);
    return ps.rc;
}

static void strlist_dispose(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
}

void policy_free(policy_t *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        statement_t *st = &p->statements[i];
        free(st->sid);
        strlist_dispose(&st->actions);
        strlist_dispose(&st->resources);
        for (size_t j = 0; j < st->nprincipals; j++) {
            free(st->principals[j].value);
        }
        free(st->principals);
        for (size_t j = 0; j < st->nconditions; j++) {
            condition_t *c = &st->conditions[j];
            for (size_t k = 0; c->values != NULL && k < c->n; k++) {
                free(c->values[k]);
            }
            free(c->values);
            free(c->cidrs);
        }
        free(st->conditions);
    }
    free(p->statements);
    free(p);
}

policy_kind_t policy_kind(const policy_t *p)
{
    return p->kind;
}

size_t policy_statement_count(const policy_t *p)
{
    return p->n;
}

/* ---- evaluation ---- */

typedef struct eval {
    const char *account;   /* "" when unknown */
    const char *principal; /* "" when unknown */
    const char *action;
    const char *resource;
    bool secure_transport;
    bool has_ip;
    cidr_t ip; /* prefix unused */
} eval_t;

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static void eval_init(eval_t *ev, const policy_request_t *req)
{
    ev->account = or_empty(req->account_id);
    ev->principal = or_empty(req->principal_arn);
    ev->action = or_empty(req->action);
    ev->resource = or_empty(req->resource);
    ev->secure_transport = req->secure_transport;
    ev->has_ip =
        req->source_ip != NULL && strchr(req->source_ip, '/') == NULL && parse_cidr(req->source_ip, &ev->ip);
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ev->has_ip && ev->ip.family == AF_INET6 && memcmp(ev->ip.addr, v4_mapped, 12) == 0) {
        memmove(ev->ip.addr, ev->ip.addr + 12, 4);
        memset(ev->ip.addr + 4, 0, 12);
        ev->ip.family = AF_INET;
    }
}

static bool cidr_contains(const cidr_t *net, const cidr_t *ip)
{
    if (net->family != ip->family) {
        return false;
    }
    unsigned bytes = net->prefix / 8, bits = net->prefix % 8;
    if (memcmp(net->addr, ip->addr, bytes) != 0) {
        return false;
    }
    if (bits == 0) {
        return true;
    }
    unsigned char mask = (unsigned char)(0xff << (8 - bits));
    return (net->addr[bytes] & mask) == (ip->addr[bytes] & mask);
}

static bool condition_holds(const condition_t *c, const eval_t *ev)
{
    const char *value = NULL;
    switch (c->key) {
    case KEY_PRINCIPAL_ACCOUNT:
        value = ev->account[0] != '\0' ? ev->account : NULL;
        break;
    case KEY_PRINCIPAL_ARN:
        value = ev->principal[0] != '\0' ? ev->principal : NULL;
        break;
    case KEY_SOURCE_IP:
        value = ev->has_ip ? "" : NULL;
        break;
    case KEY_SECURE_TRANSPORT:
        value = ev->secure_transport ? "true" : "false";
        break;
    }
    if (value == NULL) {
        return c->if_exists || c->negated;
    }
    bool any = false;
    for (size_t i = 0; i < c->n && !any; i++) {
        switch (c->match) {
        case MATCH_EQUALS:
        case MATCH_BOOL:
            any = strcmp(c->values[i], value) == 0;
            break;
        case MATCH_EQUALS_CI:
            any = ascii_equal_ci(c->values[i], value);
            break;
        case MATCH_LIKE:
        case MATCH_ARN:
            any = policy_match(c->values[i], value, false);
            break;
        case MATCH_IP:
            any = cidr_contains(&c->cidrs[i], &ev->ip);
            break;
        }
    }
    return c->negated ? !any : any;
}

static bool list_matches(const strlist_t *l, const char *value, bool case_insensitive)
{
    for (size_t i = 0; i < l->n; i++) {
        if (policy_match(l->items[i], value, case_insensitive)) {
            return true;
        }
    }
    return false;
}

static bool principal_matches(const statement_t *st, const eval_t *ev)
{
    bool any = false;
    for (size_t i = 0; i < st->nprincipals && !any; i++) {
        const principal_t *pr = &st->principals[i];
        switch (pr->type) {
        case PRINCIPAL_ANY:
            any = true;
            break;
        case PRINCIPAL_ACCOUNT:
            any = strcmp(pr->value, ev->account) == 0;
            break;
        case PRINCIPAL_ARN:
            any = strcmp(pr->value, ev->principal) == 0;
            break;
        }
    }
    return st->not_principal ? !any : any;
}

static bool statement_applies(const statement_t *st, const eval_t *ev)
{
    if (list_matches(&st->actions, ev->action, true) == st->not_action) {
        return false;
    }
    if (list_matches(&st->resources, ev->resource, false) == st->not_resource) {
        return false;
    }
    if (st->has_principal && !principal_matches(st, ev)) {
        return false;
    }
    for (size_t i = 0; i < st->nconditions; i++) {
        if (!condition_holds(&st->conditions[i], ev)) {
            return false;
        }
    }
    return true;
}

/* Scans p: returns true at the first applicable Deny (reported in *deny); records the first applicable
 * Allow in *allow unless one was found before. */
static bool scan(const policy_t *p, const eval_t *ev, policy_reason_t *deny, policy_reason_t *allow)
{
    for (size_t i = 0; i < p->n; i++) {
        const statement_t *st = &p->statements[i];
        if (!(st->deny || allow->policy == NULL) || !statement_applies(st, ev)) {
            continue;
        }
        policy_reason_t *r = st->deny ? deny : allow;
        r->policy = p;
        r->statement = i;
        r->sid = st->sid;
        if (st->deny) {
            return true;
        }
    }
    return false;
}

policy_decision_t policy_evaluate(const policy_t *const *identity, size_t n, const policy_t *resource,
                                  const policy_request_t *req, policy_reason_t *reason)
{
    eval_t ev;
    eval_init(&ev, req);
    policy_reason_t deny = {0}, allow = {0};
    policy_decision_t d = POLICY_DENY_IMPLICIT;
    for (size_t i = 0; i < n && d != POLICY_DENY_EXPLICIT; i++) {
        if (identity[i] != NULL && scan(identity[i], &ev, &deny, &allow)) {
            d = POLICY_DENY_EXPLICIT;
        }
    }
    if (d != POLICY_DENY_EXPLICIT && resource != NULL && scan(resource, &ev, &deny, &allow)) {
        d = POLICY_DENY_EXPLICIT;
    }
    if (d != POLICY_DENY_EXPLICIT && allow.policy != NULL) {
        d = POLICY_ALLOW;
    }
    if (reason != NULL) {
        *reason = d == POLICY_DENY_EXPLICIT ? deny : d == POLICY_ALLOW ? allow : (policy_reason_t){0};
    }
    return d;
}

const char *policy_decision_name(policy_decision_t d)
{
    switch (d) {
    case POLICY_ALLOW:
        return "Allow";
    case POLICY_DENY_EXPLICIT:
        return "Deny (explicit)";
    case POLICY_DENY_IMPLICIT:
        return "Deny (implicit)";
    }
    return "?";
}
