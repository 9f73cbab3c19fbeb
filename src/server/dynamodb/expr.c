/*
 * ddb expr: DynamoDB numbers, attribute values and expressions (see expr.h).
 *
 * Grammar (keywords case-insensitive; names are letters, digits and '_', or #name; values are :name):
 *   condition  := and_cond ( OR and_cond )*
 *   and_cond   := not_cond ( AND not_cond )*
 *   not_cond   := NOT not_cond | '(' condition ')' | function | operand comparison
 *   comparison := (= | <> | < | <= | > | >=) operand | BETWEEN operand AND operand | IN '(' operand, ... ')'
 *   function   := attribute_exists(path) | attribute_not_exists(path) | attribute_type(path, :v)
 *               | begins_with(operand, operand) | contains(operand, operand)
 *   operand    := path | :value | size(path)
 *   path       := name ( '.' name | '[' digits ']' )*
 *   update     := ( SET set_action, ... | REMOVE path, ... | ADD path :value, ... | DELETE path :value, ... )+
 *   set_action := path = set_value ;  set_value := set_operand [ (+|-) set_operand ]
 *   set_operand:= path | :value | if_not_exists(path, set_operand) | list_append(set_operand, set_operand)
 *   projection := path ( ',' path )*
 *
 * The AST lives in growable arrays indexed by int (no pointers between nodes), so freeing is three frees
 * plus the resolved names. Recursion is bounded by PARSE_DEPTH_MAX (parentheses and NOT chains) and by
 * DDB_VALUE_DEPTH_MAX (nested values), so no input can exhaust the stack.
 */
#include "server/dynamodb/expr.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

#define PARSE_DEPTH_MAX 64
#define NUM_TEXT_MAX 400

static void fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        abort(); /* the server may abort on out-of-memory */
    }
    return q;
}

/* ================================ numbers ================================ */

/* value = sign * 0.d[0]d[1]...d[nd-1] * 10^exp, d[0] != 0; zero has sign 0 and nd 0. */
typedef struct dec {
    int sign;
    int nd;
    int exp;
    unsigned char d[DDB_NUM_DIGITS_MAX + 2];
} dec_t;

/* 0 ok, -1 malformed, -2 too many significant digits, -3 out of range. */
static int dec_parse(const char *s, dec_t *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(s);
    if (n == 0 || n > NUM_TEXT_MAX) {
        return -1;
    }
    size_t i = 0;
    bool neg = false;
    if (s[i] == '-' || s[i] == '+') {
        neg = s[i] == '-';
        i++;
    }
    unsigned char digits[NUM_TEXT_MAX];
    int nd = 0, point = -1;
    for (; i < n && (isdigit((unsigned char)s[i]) || s[i] == '.'); i++) {
        if (s[i] == '.') {
            if (point >= 0) {
                return -1;
            }
            point = nd;
        } else {
            digits[nd++] = (unsigned char)(s[i] - '0');
        }
    }
    if (nd == 0) {
        return -1;
    }
    if (point < 0) {
        point = nd;
    }
    long e10 = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '-' || s[i] == '+')) {
            eneg = s[i] == '-';
            i++;
        }
        size_t start = i;
        for (; i < n && isdigit((unsigned char)s[i]); i++) {
            if (i - start >= 6) {
                return -1;
            }
            e10 = e10 * 10 + (s[i] - '0');
        }
        if (i == start) {
            return -1;
        }
        if (eneg) {
            e10 = -e10;
        }
    }
    if (i != n) {
        return -1;
    }
    int lz = 0;
    while (lz < nd && digits[lz] == 0) {
        lz++;
    }
    if (lz == nd) {
        return 0; /* zero */
    }
    int last = nd - 1;
    while (digits[last] == 0) {
        last--;
    }
    int sig = last - lz + 1;
    if (sig > DDB_NUM_DIGITS_MAX) {
        return -2;
    }
    long exp = (long)point - lz + e10;
    if (exp - 1 > 125 || exp - 1 < -130) {
        return -3;
    }
    out->sign = neg ? -1 : 1;
    out->nd = sig;
    out->exp = (int)exp;
    memcpy(out->d, digits + lz, (size_t)sig);
    return 0;
}

static int dec_cmp_abs(const dec_t *a, const dec_t *b)
{
    if (a->nd == 0 || b->nd == 0) {
        return (a->nd != 0) - (b->nd != 0);
    }
    if (a->exp != b->exp) {
        return a->exp < b->exp ? -1 : 1;
    }
    int n = a->nd > b->nd ? a->nd : b->nd;
    for (int i = 0; i < n; i++) {
        int x = i < a->nd ? a->d[i] : 0, y = i < b->nd ? b->d[i] : 0;
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return 0;
}

static int dec_cmp(const dec_t *a, const dec_t *b)
{
    if (a->sign != b->sign) {
        return a->sign < b->sign ? -1 : 1;
    }
    int c = dec_cmp_abs(a, b);
    return a->sign < 0 ? -c : c;
}

static void dec_format(const dec_t *v, char out[DDB_NUM_STR_MAX])
{
    size_t o = 0;
    if (v->nd == 0) {
        strcpy(out, "0");
        return;
    }
    if (v->sign < 0) {
        out[o++] = '-';
    }
    if (v->exp <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -v->exp; i++) {
            out[o++] = '0';
        }
        for (int i = 0; i < v->nd; i++) {
            out[o++] = (char)('0' + v->d[i]);
        }
    } else {
        for (int i = 0; i < v->nd || i < v->exp; i++) {
            if (i == v->exp) {
                out[o++] = '.';
            }
            out[o++] = (char)('0' + (i < v->nd ? v->d[i] : 0));
        }
    }
    out[o] = '\0';
}

bool ddb_num_valid(const char *s)
{
    dec_t d;
    return dec_parse(s, &d) == 0;
}

int ddb_num_cmp(const char *a, const char *b)
{
    dec_t x, y;
    if (dec_parse(a, &x) != 0 || dec_parse(b, &y) != 0) {
        return strcmp(a, b); /* not reached for validated numbers */
    }
    return dec_cmp(&x, &y);
}

#define SPAN_MAX 400 /* digit positions from 1e-170 to 1e128, with room */

int ddb_num_add(const char *as, const char *bs, bool subtract, char out[DDB_NUM_STR_MAX], char *err, size_t errlen)
{
    dec_t a, b;
    if (dec_parse(as, &a) != 0 || dec_parse(bs, &b) != 0) {
        fail(err, errlen, "An operand in the update expression has an incorrect data type");
        return -1;
    }
    if (subtract) {
        b.sign = -b.sign;
    }
    int low_a = a.exp - a.nd, low_b = b.exp - b.nd;
    int low = a.nd == 0 ? low_b : b.nd == 0 ? low_a : (low_a < low_b ? low_a : low_b);
    int xa[SPAN_MAX] = {0}, xb[SPAN_MAX] = {0}, r[SPAN_MAX] = {0};
    for (int i = 0; i < a.nd; i++) {
        xa[a.exp - 1 - i - low] = a.d[i];
    }
    for (int i = 0; i < b.nd; i++) {
        xb[b.exp - 1 - i - low] = b.d[i];
    }
    int sign;
    if (a.sign == 0 || b.sign == 0 || a.sign == b.sign) {
        sign = a.sign != 0 ? a.sign : b.sign;
        int carry = 0;
        for (int p = 0; p < SPAN_MAX; p++) {
            int s = xa[p] + xb[p] + carry;
            r[p] = s % 10;
            carry = s / 10;
        }
    } else {
        int c = dec_cmp_abs(&a, &b);
        if (c == 0) {
            strcpy(out, "0");
            return 0;
        }
        int *big = c > 0 ? xa : xb, *small = c > 0 ? xb : xa;
        sign = c > 0 ? a.sign : b.sign;
        int borrow = 0;
        for (int p = 0; p < SPAN_MAX; p++) {
            int s = big[p] - small[p] - borrow;
            borrow = s < 0;
            r[p] = s < 0 ? s + 10 : s;
        }
    }
    int hp = SPAN_MAX - 1, lp = 0;
    while (hp >= 0 && r[hp] == 0) {
        hp--;
    }
    if (hp < 0) {
        strcpy(out, "0");
        return 0;
    }
    while (r[lp] == 0) {
        lp++;
    }
    dec_t v = {.sign = sign, .nd = hp - lp + 1, .exp = hp + low + 1};
    if (v.nd > DDB_NUM_DIGITS_MAX) {
        fail(err, errlen, "Number overflow. Attempting to store a number with more than 38 significant digits");
        return -1;
    }
    if (v.exp - 1 > 125 || v.exp - 1 < -130) {
        fail(err, errlen, "Number overflow. Attempting to store a number with magnitude larger than supported range");
        return -1;
    }
    for (int i = 0; i < v.nd; i++) {
        v.d[i] = (unsigned char)r[hp - i];
    }
    dec_format(&v, out);
    return 0;
}

/* ============================ attribute values ============================ */

static const char *const type_names[] = {"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"};

const char *ddb_value_type(const cJSON *av)
{
    if (!cJSON_IsObject(av) || av->child == NULL || av->child->string == NULL) {
        return "";
    }
    return av->child->string;
}

static const cJSON *value_of(const cJSON *av)
{
    return av != NULL ? av->child : NULL;
}

static bool is_type(const cJSON *av, const char *t)
{
    return av != NULL && strcmp(ddb_value_type(av), t) == 0;
}

static bool base64_valid(const char *s, size_t *decoded_len)
{
    size_t n = strlen(s);
    if (n % 4 != 0) {
        return false;
    }
    unsigned char *tmp = malloc(n / 4 * 3 + 1);
    if (tmp == NULL) {
        abort();
    }
    long r = base64_decode(s, n, tmp);
    free(tmp);
    if (decoded_len != NULL) {
        *decoded_len = r < 0 ? 0 : (size_t)r;
    }
    return r >= 0;
}

static int validate(const cJSON *av, const char *what, int depth, char *err, size_t errlen)
{
    if (depth > DDB_VALUE_DEPTH_MAX) {
        fail(err, errlen, "Nesting Levels have exceeded supported limits: %s is nested more than %d levels",
             what, DDB_VALUE_DEPTH_MAX);
        return -1;
    }
    if (!cJSON_IsObject(av)) {
        fail(err, errlen, "Supplied AttributeValue is not an object in %s", what);
        return -1;
    }
    int members = 0;
    for (const cJSON *m = av->child; m != NULL; m = m->next) {
        members++;
    }
    if (members != 1) {
        fail(err, errlen,
             "Supplied AttributeValue has %s, only one datatype is allowed per AttributeValue in %s",
             members == 0 ? "no datatype" : "more than one datatype set", what);
        return -1;
    }
    const cJSON *v = av->child;
    const char *t = v->string;
    size_t ti = 0;
    for (; ti < sizeof type_names / sizeof type_names[0]; ti++) {
        if (strcmp(t, type_names[ti]) == 0) {
            break;
        }
    }
    if (ti == sizeof type_names / sizeof type_names[0]) {
        fail(err, errlen, "Supplied AttributeValue has an unknown datatype \"%.32s\" in %s", t, what);
        return -1;
    }
    if (strcmp(t, "S") == 0 || strcmp(t, "B") == 0) {
        if (!cJSON_IsString(v)) {
            fail(err, errlen, "Invalid %s value in %s: expected a string", t, what);
            return -1;
        }
        if (t[0] == 'B' && !base64_valid(v->valuestring, NULL)) {
            fail(err, errlen, "Invalid Base64 value in %s", what);
            return -1;
        }
        return 0;
    }
    if (strcmp(t, "N") == 0) {
        dec_t d;
        int rc = cJSON_IsString(v) ? dec_parse(v->valuestring, &d) : -1;
        if (rc == -2) {
            fail(err, errlen, "Attempting to store more than 38 significant digits in a Number in %s", what);
        } else if (rc == -3) {
            fail(err, errlen, "Number overflow. Attempting to store a number with magnitude larger than supported range in %s", what);
        } else if (rc != 0) {
            fail(err, errlen, "A value provided cannot be converted into a number in %s", what);
        }
        return rc == 0 ? 0 : -1;
    }
    if (strcmp(t, "BOOL") == 0) {
        if (!cJSON_IsBool(v)) {
            fail(err, errlen, "Invalid BOOL value in %s: expected true or false", what);
            return -1;
        }
        return 0;
    }
    if (strcmp(t, "NULL") == 0) {
        if (!cJSON_IsTrue(v)) {
            fail(err, errlen, "One or more parameter values were invalid: Null attribute value types must have the value of true");
            return -1;
        }
        return 0;
    }
    if (strcmp(t, "L") == 0 || strcmp(t, "M") == 0) {
        bool list = t[0] == 'L';
        if (list ? !cJSON_IsArray(v) : !cJSON_IsObject(v)) {
            fail(err, errlen, "Invalid %s value in %s: expected a JSON %s", t, what, list ? "array" : "object");
            return -1;
        }
        for (const cJSON *e = v->child; e != NULL; e = e->next) {
            if (validate(e, what, depth + 1, err, errlen) != 0) {
                return -1;
            }
        }
        return 0;
    }
    /* sets */
    if (!cJSON_IsArray(v)) {
        fail(err, errlen, "Invalid %s value in %s: expected a JSON array", t, what);
        return -1;
    }
    if (v->child == NULL) {
        fail(err, errlen, "One or more parameter values were invalid: An %s may not be empty",
             t[0] == 'S' ? "string set" : t[0] == 'N' ? "number set" : "binary set");
        return -1;
    }
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e)) {
            fail(err, errlen, "Invalid %s value in %s: elements must be strings", t, what);
            return -1;
        }
        if (t[0] == 'N') {
            dec_t d;
            if (dec_parse(e->valuestring, &d) != 0) {
                fail(err, errlen, "A value provided cannot be converted into a number in %s", what);
                return -1;
            }
        } else if (t[0] == 'B' && !base64_valid(e->valuestring, NULL)) {
            fail(err, errlen, "Invalid Base64 value in %s", what);
            return -1;
        }
        for (const cJSON *f = v->child; f != e; f = f->next) {
            bool same = t[0] == 'N' ? ddb_num_cmp(f->valuestring, e->valuestring) == 0
                                    : strcmp(f->valuestring, e->valuestring) == 0;
            if (same) {
                fail(err, errlen, "One or more parameter values were invalid: Input collection contains duplicates");
                return -1;
            }
        }
    }
    return 0;
}

int ddb_value_validate(const cJSON *av, const char *what, char *err, size_t errlen)
{
    return validate(av, what, 1, err, errlen);
}

static bool set_has(const cJSON *set, const char *t, const char *s)
{
    for (const cJSON *e = set->child; e != NULL; e = e->next) {
        if (t[0] == 'N' ? ddb_num_cmp(e->valuestring, s) == 0 : strcmp(e->valuestring, s) == 0) {
            return true;
        }
    }
    return false;
}

bool ddb_value_equal(const cJSON *a, const cJSON *b)
{
    if (a == NULL || b == NULL) {
        return false;
    }
    const char *t = ddb_value_type(a);
    if (strcmp(t, ddb_value_type(b)) != 0) {
        return false;
    }
    const cJSON *x = value_of(a), *y = value_of(b);
    if (strcmp(t, "S") == 0 || strcmp(t, "B") == 0) {
        return strcmp(x->valuestring, y->valuestring) == 0;
    }
    if (strcmp(t, "N") == 0) {
        return ddb_num_cmp(x->valuestring, y->valuestring) == 0;
    }
    if (strcmp(t, "BOOL") == 0) {
        return cJSON_IsTrue(x) == cJSON_IsTrue(y);
    }
    if (strcmp(t, "NULL") == 0) {
        return true;
    }
    if (strcmp(t, "L") == 0) {
        const cJSON *e = x->child, *f = y->child;
        for (; e != NULL && f != NULL; e = e->next, f = f->next) {
            if (!ddb_value_equal(e, f)) {
                return false;
            }
        }
        return e == NULL && f == NULL;
    }
    if (cJSON_GetArraySize(x) != cJSON_GetArraySize(y)) {
        return false;
    }
    if (strcmp(t, "M") == 0) {
        for (const cJSON *e = x->child; e != NULL; e = e->next) {
            if (!ddb_value_equal(e, cJSON_GetObjectItemCaseSensitive(y, e->string))) {
                return false;
            }
        }
        return true;
    }
    for (const cJSON *e = x->child; e != NULL; e = e->next) { /* sets */
        if (!set_has(y, t, e->valuestring)) {
            return false;
        }
    }
    return true;
}

/* Bytes of a B value (decoded) for comparisons; *out malloc'd. */
static size_t decode_b(const char *s, unsigned char **out)
{
    size_t n = strlen(s);
    *out = malloc(n / 4 * 3 + 1);
    if (*out == NULL) {
        abort();
    }
    long r = base64_decode(s, n, *out);
    return r < 0 ? 0 : (size_t)r;
}

static int bytes_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return an < bn ? -1 : an > bn;
}

int ddb_value_cmp(const cJSON *a, const cJSON *b, bool *ok)
{
    *ok = false;
    if (a == NULL || b == NULL) {
        return 0;
    }
    const char *t = ddb_value_type(a);
    if (strcmp(t, ddb_value_type(b)) != 0) {
        return 0;
    }
    const cJSON *x = value_of(a), *y = value_of(b);
    if (strcmp(t, "N") == 0) {
        *ok = true;
        return ddb_num_cmp(x->valuestring, y->valuestring);
    }
    if (strcmp(t, "S") == 0) {
        *ok = true;
        return bytes_cmp((const unsigned char *)x->valuestring, strlen(x->valuestring),
                         (const unsigned char *)y->valuestring, strlen(y->valuestring));
    }
    if (strcmp(t, "B") == 0) {
        unsigned char *p, *q;
        size_t pn = decode_b(x->valuestring, &p), qn = decode_b(y->valuestring, &q);
        int c = bytes_cmp(p, pn, q, qn);
        free(p);
        free(q);
        *ok = true;
        return c;
    }
    return 0;
}

size_t ddb_value_size(const cJSON *av)
{
    const char *t = ddb_value_type(av);
    const cJSON *v = value_of(av);
    if (v == NULL) {
        return 0;
    }
    if (strcmp(t, "S") == 0) {
        return strlen(v->valuestring);
    }
    if (strcmp(t, "N") == 0) {
        return (strlen(v->valuestring) + 1) / 2 + 1;
    }
    if (strcmp(t, "B") == 0) {
        return strlen(v->valuestring) / 4 * 3;
    }
    if (strcmp(t, "BOOL") == 0 || strcmp(t, "NULL") == 0) {
        return 1;
    }
    size_t n = 3;
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        if (strcmp(t, "L") == 0) {
            n += 1 + ddb_value_size(e);
        } else if (strcmp(t, "M") == 0) {
            n += 1 + strlen(e->string) + ddb_value_size(e);
        } else {
            n += t[0] == 'N' ? (strlen(e->valuestring) + 1) / 2 + 1
                 : t[0] == 'B' ? strlen(e->valuestring) / 4 * 3
                               : strlen(e->valuestring);
        }
    }
    return n;
}

size_t ddb_item_size(const cJSON *item)
{
    size_t n = 0;
    for (const cJSON *a = item != NULL ? item->child : NULL; a != NULL; a = a->next) {
        n += strlen(a->string) + ddb_value_size(a);
    }
    return n;
}

/* ================================== AST ================================== */

typedef enum node_kind {
    NK_PATH,
    NK_VALUE,
    NK_SIZE,
    NK_IF_NOT_EXISTS,
    NK_LIST_APPEND,
    NK_PLUS,
    NK_MINUS,
    NK_CMP,
    NK_BETWEEN,
    NK_IN,
    NK_AND,
    NK_OR,
    NK_NOT,
    NK_EXISTS,
    NK_NOT_EXISTS,
    NK_TYPE,
    NK_BEGINS,
    NK_CONTAINS,
} node_kind_t;

typedef enum cmp_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } cmp_op_t;

typedef struct node {
    node_kind_t kind;
    cmp_op_t op;
    int a, b, c;   /* children (-1 when none); NK_IN: a = left operand, b = first list node */
    int next;      /* NK_IN list chaining */
    int path;      /* NK_PATH */
    const cJSON *value; /* NK_VALUE (borrowed from ExpressionAttributeValues) */
} node_t;

typedef struct path_elem {
    char *name; /* owned; NULL for an index */
    long index;
} path_elem_t;

typedef struct path {
    int first, n; /* into elems */
} path_t;

typedef enum action_kind { ACT_SET, ACT_REMOVE, ACT_ADD, ACT_DELETE } action_kind_t;

typedef struct action {
    action_kind_t kind;
    int path;
    int value; /* node; -1 for REMOVE */
} action_t;

struct ddb_expr {
    ddb_expr_kind_t kind;
    node_t *nodes;
    int nnodes, cap_nodes;
    path_elem_t *elems;
    int nelems, cap_elems;
    path_t *paths;
    int npaths, cap_paths;
    action_t *actions; /* update */
    int nactions, cap_actions;
    int *projection; /* paths, projection */
    int nprojection, cap_projection;
    int root; /* condition */
};

void ddb_expr_free(ddb_expr_t *e)
{
    if (e == NULL) {
        return;
    }
    for (int i = 0; i < e->nelems; i++) {
        free(e->elems[i].name);
    }
    free(e->nodes);
    free(e->elems);
    free(e->paths);
    free(e->actions);
    free(e->projection);
    free(e);
}

#define GROW(arr, n, cap)                                                                                    \
    do {                                                                                                     \
        if ((n) == (cap)) {                                                                                  \
            (cap) = (cap) ? (cap) * 2 : 16;                                                                  \
            (arr) = xrealloc((arr), (size_t)(cap) * sizeof *(arr));                                          \
        }                                                                                                    \
    } while (0)

static int new_node(ddb_expr_t *e, node_kind_t kind)
{
    GROW(e->nodes, e->nnodes, e->cap_nodes);
    e->nodes[e->nnodes] = (node_t){.kind = kind, .a = -1, .b = -1, .c = -1, .next = -1, .path = -1};
    return e->nnodes++;
}

/* ================================= lexer ================================= */

typedef enum tok_type {
    T_END,
    T_NAME,  /* identifier */
    T_HNAME, /* #name */
    T_VALUE, /* :value */
    T_INT,   /* digits (list index) */
    T_PUNCT, /* ( ) [ ] , . = <> < <= > >= + - */
    T_BAD,
} tok_type_t;

typedef struct parser {
    ddb_expr_t *e;
    const char *what;
    const char *s;
    size_t len, pos;
    tok_type_t type;
    const char *tok;
    size_t tlen;
    const cJSON *names, *values;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
} parser_t;

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static void next(parser_t *p)
{
    while (p->pos < p->len && isspace((unsigned char)p->s[p->pos])) {
        p->pos++;
    }
    p->tok = p->s + p->pos;
    if (p->pos >= p->len) {
        p->type = T_END;
        p->tlen = 0;
        return;
    }
    char c = p->s[p->pos];
    size_t start = p->pos;
    if (c == '#' || c == ':') {
        p->pos++;
        while (p->pos < p->len && is_name_char(p->s[p->pos])) {
            p->pos++;
        }
        p->type = p->pos - start > 1 ? (c == '#' ? T_HNAME : T_VALUE) : T_BAD;
    } else if (isdigit((unsigned char)c)) {
        while (p->pos < p->len && isdigit((unsigned char)p->s[p->pos])) {
            p->pos++;
        }
        p->type = T_INT;
    } else if (is_name_char(c)) {
        while (p->pos < p->len && is_name_char(p->s[p->pos])) {
            p->pos++;
        }
        p->type = T_NAME;
    } else if (strchr("()[],.=+-", c) != NULL) {
        p->pos++;
        p->type = T_PUNCT;
    } else if (c == '<' || c == '>') {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '=' || (c == '<' && p->s[p->pos] == '>'))) {
            p->pos++;
        }
        p->type = T_PUNCT;
    } else {
        p->pos++;
        p->type = T_BAD;
    }
    p->tlen = p->pos - start;
}

static bool tok_is(const parser_t *p, const char *lit)
{
    return (p->type == T_PUNCT || p->type == T_NAME) && p->tlen == strlen(lit) &&
           strncasecmp(p->tok, lit, p->tlen) == 0;
}

/* The next non-space character after the current token. */
static char peek_char(const parser_t *p)
{
    size_t i = p->pos;
    while (i < p->len && isspace((unsigned char)p->s[i])) {
        i++;
    }
    return i < p->len ? p->s[i] : '\0';
}

static void syntax(parser_t *p)
{
    if (p->failed) {
        return;
    }
    p->failed = true;
    if (p->type == T_END) {
        fail(p->err, p->errlen, "Invalid %s: Syntax error; token: \"<EOF>\", near: \"%.*s\"", p->what,
             (int)(p->len < 20 ? p->len : 20), p->s + (p->len < 20 ? 0 : p->len - 20));
        return;
    }
    size_t at = (size_t)(p->tok - p->s);
    size_t from = at > 10 ? at - 10 : 0;
    size_t to = at + p->tlen + 10 < p->len ? at + p->tlen + 10 : p->len;
    fail(p->err, p->errlen, "Invalid %s: Syntax error; token: \"%.*s\", near: \"%.*s\"", p->what,
         (int)(p->tlen > 64 ? 64 : p->tlen), p->tok, (int)(to - from), p->s + from);
}

static void semantic(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void semantic(parser_t *p, const char *fmt, ...)
{
    if (p->failed) {
        return;
    }
    p->failed = true;
    char msg[DDB_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail(p->err, p->errlen, "Invalid %s: %s", p->what, msg);
}

static bool expect(parser_t *p, const char *lit)
{
    if (p->failed) {
        return false;
    }
    if (!tok_is(p, lit)) {
        syntax(p);
        return false;
    }
    next(p);
    return true;
}

static bool is_keyword(const parser_t *p)
{
    static const char *const kw[] = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"};
    if (p->type != T_NAME) {
        return false;
    }
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++) {
        if (tok_is(p, kw[i])) {
            return true;
        }
    }
    return false;
}

/* ================================= parser ================================= */

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL) {
        abort();
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static bool add_name_elem(parser_t *p)
{
    ddb_expr_t *e = p->e;
    char *name;
    if (p->type == T_HNAME) {
        char key[256];
        if (p->tlen >= sizeof key) {
            semantic(p, "Expression attribute name too long: %.32s...", p->tok);
            return false;
        }
        memcpy(key, p->tok, p->tlen);
        key[p->tlen] = '\0';
        const cJSON *v = p->names != NULL ? cJSON_GetObjectItemCaseSensitive(p->names, key) : NULL;
        if (!cJSON_IsString(v)) {
            semantic(p, "An expression attribute name used in the document path is not defined; attribute name: %s", key);
            return false;
        }
        name = dup_n(v->valuestring, strlen(v->valuestring));
    } else if (p->type == T_NAME && !is_keyword(p)) {
        name = dup_n(p->tok, p->tlen);
    } else {
        syntax(p);
        return false;
    }
    GROW(e->elems, e->nelems, e->cap_elems);
    e->elems[e->nelems++] = (path_elem_t){.name = name};
    next(p);
    return true;
}

static int parse_path(parser_t *p)
{
    ddb_expr_t *e = p->e;
    int first = e->nelems;
    if (!add_name_elem(p)) {
        return -1;
    }
    for (;;) {
        if (e->nelems - first > DDB_PATH_DEPTH_MAX) {
            semantic(p, "The document path has too many nesting levels; nesting levels: %d", e->nelems - first);
            return -1;
        }
        if (tok_is(p, ".")) {
            next(p);
            if (!add_name_elem(p)) {
                return -1;
            }
        } else if (tok_is(p, "[")) {
            next(p);
            if (p->type != T_INT || p->tlen > 9) {
                syntax(p);
                return -1;
            }
            long idx = strtol(p->tok, NULL, 10);
            GROW(e->elems, e->nelems, e->cap_elems);
            e->elems[e->nelems++] = (path_elem_t){.name = NULL, .index = idx};
            next(p);
            if (!expect(p, "]")) {
                return -1;
            }
        } else {
            break;
        }
    }
    GROW(e->paths, e->npaths, e->cap_paths);
    e->paths[e->npaths] = (path_t){.first = first, .n = e->nelems - first};
    int n = new_node(e, NK_PATH);
    e->nodes[n].path = e->npaths++;
    return n;
}

static int parse_value_ref(parser_t *p)
{
    if (p->type != T_VALUE) {
        syntax(p);
        return -1;
    }
    char key[256];
    if (p->tlen >= sizeof key) {
        semantic(p, "Expression attribute value name too long: %.32s...", p->tok);
        return -1;
    }
    memcpy(key, p->tok, p->tlen);
    key[p->tlen] = '\0';
    const cJSON *v = p->values != NULL ? cJSON_GetObjectItemCaseSensitive(p->values, key) : NULL;
    if (v == NULL) {
        semantic(p, "An expression attribute value used in expression is not defined; attribute value: %s", key);
        return -1;
    }
    int n = new_node(p->e, NK_VALUE);
    p->e->nodes[n].value = v;
    next(p);
    return n;
}

static bool is_function(const parser_t *p, const char *name)
{
    return p->type == T_NAME && p->tlen == strlen(name) && memcmp(p->tok, name, p->tlen) == 0 && peek_char(p) == '(';
}

/* operand := path | :value | size(path) */
static int parse_operand(parser_t *p)
{
    if (p->failed) {
        return -1;
    }
    if (p->type == T_VALUE) {
        return parse_value_ref(p);
    }
    if (is_function(p, "size")) {
        next(p);
        next(p); /* ( */
        int n = new_node(p->e, NK_SIZE);
        int a = parse_path(p);
        p->e->nodes[n].a = a;
        if (a < 0 || !expect(p, ")")) {
            return -1;
        }
        return n;
    }
    if (p->type == T_NAME && peek_char(p) == '(') {
        semantic(p, "Invalid function name; function: %.*s", (int)(p->tlen > 64 ? 64 : p->tlen), p->tok);
        return -1;
    }
    return parse_path(p);
}

static int parse_condition(parser_t *p);

static int parse_function_cond(parser_t *p)
{
    static const struct {
        const char *name;
        node_kind_t kind;
        int args;
    } fns[] = {
        {"attribute_exists", NK_EXISTS, 1}, {"attribute_not_exists", NK_NOT_EXISTS, 1},
        {"attribute_type", NK_TYPE, 2},     {"begins_with", NK_BEGINS, 2},
        {"contains", NK_CONTAINS, 2},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        if (!is_function(p, fns[i].name)) {
            continue;
        }
        next(p);
        next(p); /* ( */
        int n = new_node(p->e, fns[i].kind);
        int a = fns[i].kind == NK_BEGINS || fns[i].kind == NK_CONTAINS ? parse_operand(p) : parse_path(p);
        p->e->nodes[n].a = a;
        if (a < 0) {
            return -1;
        }
        if (fns[i].args == 2) {
            if (!expect(p, ",")) {
                return -1;
            }
            int b = fns[i].kind == NK_TYPE ? parse_value_ref(p) : parse_operand(p);
            p->e->nodes[n].b = b;
            if (b < 0) {
                return -1;
            }
            if (fns[i].kind == NK_TYPE) {
                const cJSON *tv = p->e->nodes[b].value;
                bool known = false;
                if (is_type(tv, "S")) {
                    for (size_t k = 0; k < sizeof type_names / sizeof type_names[0]; k++) {
                        known = known || strcmp(value_of(tv)->valuestring, type_names[k]) == 0;
                    }
                }
                if (!known) {
                    semantic(p, "Invalid attribute type name found; type: %s, valid types: { B,NULL,SS,BOOL,L,BS,N,NS,S,M }",
                             is_type(tv, "S") ? value_of(tv)->valuestring : ddb_value_type(tv));
                    return -1;
                }
            }
        }
        if (!expect(p, ")")) {
            return -1;
        }
        return n;
    }
    return -2; /* not a boolean function */
}

static int parse_predicate(parser_t *p)
{
    if (p->failed) {
        return -1;
    }
    if (tok_is(p, "(")) {
        next(p);
        int n = parse_condition(p);
        if (n < 0 || !expect(p, ")")) {
            return -1;
        }
        return n;
    }
    int f = parse_function_cond(p);
    if (f != -2) {
        return f;
    }
    int left = parse_operand(p);
    if (left < 0) {
        return -1;
    }
    static const struct {
        const char *lit;
        cmp_op_t op;
    } ops[] = {{"=", OP_EQ}, {"<>", OP_NE}, {"<", OP_LT}, {"<=", OP_LE}, {">", OP_GT}, {">=", OP_GE}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (p->type == T_PUNCT && tok_is(p, ops[i].lit)) {
            next(p);
            int n = new_node(p->e, NK_CMP);
            p->e->nodes[n].op = ops[i].op;
            p->e->nodes[n].a = left;
            int right = parse_operand(p);
            p->e->nodes[n].b = right;
            return right < 0 ? -1 : n;
        }
    }
    if (tok_is(p, "BETWEEN")) {
        next(p);
        int n = new_node(p->e, NK_BETWEEN);
        p->e->nodes[n].a = left;
        int lo = parse_operand(p);
        p->e->nodes[n].b = lo;
        if (lo < 0 || !expect(p, "AND")) {
            return -1;
        }
        int hi = parse_operand(p);
        p->e->nodes[n].c = hi;
        return hi < 0 ? -1 : n;
    }
    if (tok_is(p, "IN")) {
        next(p);
        if (!expect(p, "(")) {
            return -1;
        }
        int n = new_node(p->e, NK_IN);
        p->e->nodes[n].a = left;
        int prev = -1, count = 0;
        for (;;) {
            int o = parse_operand(p);
            if (o < 0) {
                return -1;
            }
            if (++count > 100) {
                semantic(p, "The IN operator is provided with too many operands; number of operands: %d", count);
                return -1;
            }
            if (prev < 0) {
                p->e->nodes[n].b = o;
            } else {
                p->e->nodes[prev].next = o;
            }
            prev = o;
            if (!tok_is(p, ",")) {
                break;
            }
            next(p);
        }
        return expect(p, ")") ? n : -1;
    }
    syntax(p);
    return -1;
}

static int parse_not(parser_t *p)
{
    if (++p->depth > PARSE_DEPTH_MAX) {
        semantic(p, "The expression is nested too deeply (more than %d levels)", PARSE_DEPTH_MAX);
        return -1;
    }
    int r;
    if (tok_is(p, "NOT")) {
        next(p);
        r = new_node(p->e, NK_NOT);
        int a = parse_not(p);
        p->e->nodes[r].a = a;
        if (a < 0) {
            r = -1;
        }
    } else {
        r = parse_predicate(p);
    }
    p->depth--;
    return r;
}

static int parse_and(parser_t *p)
{
    int left = parse_not(p);
    while (left >= 0 && tok_is(p, "AND")) {
        next(p);
        int n = new_node(p->e, NK_AND);
        p->e->nodes[n].a = left;
        int right = parse_not(p);
        p->e->nodes[n].b = right;
        left = right < 0 ? -1 : n;
    }
    return left;
}

static int parse_condition(parser_t *p)
{
    if (++p->depth > PARSE_DEPTH_MAX) {
        semantic(p, "The expression is nested too deeply (more than %d levels)", PARSE_DEPTH_MAX);
        return -1;
    }
    int left = parse_and(p);
    while (left >= 0 && tok_is(p, "OR")) {
        next(p);
        int n = new_node(p->e, NK_OR);
        p->e->nodes[n].a = left;
        int right = parse_and(p);
        p->e->nodes[n].b = right;
        left = right < 0 ? -1 : n;
    }
    p->depth--;
    return left;
}

static int parse_set_operand(parser_t *p)
{
    if (p->failed) {
        return -1;
    }
    if (++p->depth > PARSE_DEPTH_MAX) {
        semantic(p, "The expression is nested too deeply (more than %d levels)", PARSE_DEPTH_MAX);
        return -1;
    }
    int r;
    if (p->type == T_VALUE) {
        r = parse_value_ref(p);
    } else if (is_function(p, "if_not_exists") || is_function(p, "list_append")) {
        bool ine = is_function(p, "if_not_exists");
        next(p);
        next(p);
        r = new_node(p->e, ine ? NK_IF_NOT_EXISTS : NK_LIST_APPEND);
        int a = ine ? parse_path(p) : parse_set_operand(p);
        p->e->nodes[r].a = a;
        int b = -1;
        if (a >= 0 && expect(p, ",")) {
            b = parse_set_operand(p);
        }
        p->e->nodes[r].b = b;
        if (b < 0 || !expect(p, ")")) {
            r = -1;
        }
    } else if (p->type == T_NAME && peek_char(p) == '(') {
        semantic(p, "Invalid function name; function: %.*s", (int)(p->tlen > 64 ? 64 : p->tlen), p->tok);
        r = -1;
    } else {
        r = parse_path(p);
    }
    p->depth--;
    return r;
}

static int add_action(parser_t *p, action_kind_t kind, int path_node, int value)
{
    ddb_expr_t *e = p->e;
    GROW(e->actions, e->nactions, e->cap_actions);
    e->actions[e->nactions++] = (action_t){.kind = kind, .path = e->nodes[path_node].path, .value = value};
    return 0;
}

static int parse_update(parser_t *p)
{
    static const char *const clauses[] = {"SET", "REMOVE", "ADD", "DELETE"};
    bool seen[4] = {false};
    if (p->type == T_END) {
        syntax(p);
        return -1;
    }
    while (p->type != T_END && !p->failed) {
        int k = -1;
        for (int i = 0; i < 4; i++) {
            if (tok_is(p, clauses[i])) {
                k = i;
            }
        }
        if (k < 0) {
            syntax(p);
            return -1;
        }
        if (seen[k]) {
            semantic(p, "The \"%s\" section can only be used once in an update expression;", clauses[k]);
            return -1;
        }
        seen[k] = true;
        next(p);
        for (;;) {
            int path = parse_path(p);
            if (path < 0) {
                return -1;
            }
            int value = -1;
            if (k == ACT_SET) {
                if (!expect(p, "=")) {
                    return -1;
                }
                value = parse_set_operand(p);
                if (value < 0) {
                    return -1;
                }
                if (p->type == T_PUNCT && (tok_is(p, "+") || tok_is(p, "-"))) {
                    int n = new_node(p->e, tok_is(p, "+") ? NK_PLUS : NK_MINUS);
                    next(p);
                    p->e->nodes[n].a = value;
                    int b = parse_set_operand(p);
                    if (b < 0) {
                        return -1;
                    }
                    p->e->nodes[n].b = b;
                    value = n;
                }
            } else if (k == ACT_ADD || k == ACT_DELETE) {
                value = parse_value_ref(p);
                if (value < 0) {
                    return -1;
                }
            }
            add_action(p, (action_kind_t)k, path, value);
            if (!tok_is(p, ",")) {
                break;
            }
            next(p);
        }
    }
    return p->failed ? -1 : 0;
}

static bool paths_overlap(const ddb_expr_t *e, int a, int b)
{
    const path_t *x = &e->paths[a], *y = &e->paths[b];
    int n = x->n < y->n ? x->n : y->n;
    for (int i = 0; i < n; i++) {
        const path_elem_t *u = &e->elems[x->first + i], *v = &e->elems[y->first + i];
        if ((u->name == NULL) != (v->name == NULL)) {
            return false;
        }
        if (u->name != NULL ? strcmp(u->name, v->name) != 0 : u->index != v->index) {
            return false;
        }
    }
    return true;
}

int ddb_expr_parse(ddb_expr_kind_t kind, const char *what, const char *text, size_t len, const cJSON *names,
                   const cJSON *values, ddb_expr_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len == 0) {
        fail(err, errlen, "Invalid %s: The expression can not be empty;", what);
        return -1;
    }
    if (len > DDB_EXPR_MAX) {
        fail(err, errlen, "Invalid %s: Expression size has exceeded the maximum allowed size; expression size: %zu",
             what, len);
        return -1;
    }
    ddb_expr_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        abort();
    }
    e->kind = kind;
    e->root = -1;
    parser_t p = {.e = e, .what = what, .s = text, .len = len, .names = names, .values = values, .err = err,
                  .errlen = errlen};
    next(&p);
    if (kind == DDB_EXPR_CONDITION) {
        e->root = parse_condition(&p);
    } else if (kind == DDB_EXPR_UPDATE) {
        parse_update(&p);
    } else {
        for (;;) {
            int n = parse_path(&p);
            if (n < 0) {
                break;
            }
            GROW(e->projection, e->nprojection, e->cap_projection);
            e->projection[e->nprojection++] = e->nodes[n].path;
            if (!tok_is(&p, ",")) {
                break;
            }
            next(&p);
        }
    }
    if (!p.failed && p.type != T_END) {
        syntax(&p);
    }
    if (!p.failed && kind == DDB_EXPR_UPDATE) {
        for (int i = 0; i < e->nactions && !p.failed; i++) {
            for (int j = 0; j < i; j++) {
                if (paths_overlap(e, e->actions[i].path, e->actions[j].path)) {
                    fail(err, errlen, "Invalid %s: Two document paths overlap with each other; must remove or "
                                      "rewrite one of these paths", what);
                    p.failed = true;
                    break;
                }
            }
        }
    }
    if (!p.failed && kind == DDB_EXPR_PROJECTION) {
        for (int i = 0; i < e->nprojection && !p.failed; i++) {
            for (int j = 0; j < i; j++) {
                if (paths_overlap(e, e->projection[i], e->projection[j])) {
                    fail(err, errlen, "Invalid %s: Two document paths overlap with each other; must remove or "
                                      "rewrite one of these paths", what);
                    p.failed = true;
                    break;
                }
            }
        }
    }
    if (p.failed) {
        ddb_expr_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

/* =============================== evaluation =============================== */

static const cJSON *path_get(const ddb_expr_t *e, int path, const cJSON *item)
{
    const path_t *pt = &e->paths[path];
    const cJSON *av = NULL;
    for (int i = 0; i < pt->n; i++) {
        const path_elem_t *el = &e->elems[pt->first + i];
        if (i == 0) {
            av = item != NULL ? cJSON_GetObjectItemCaseSensitive(item, el->name) : NULL;
        } else if (el->name != NULL) {
            av = is_type(av, "M") ? cJSON_GetObjectItemCaseSensitive(value_of(av), el->name) : NULL;
        } else {
            av = is_type(av, "L") && el->index >= 0 ? cJSON_GetArrayItem(value_of(av), (int)el->index) : NULL;
        }
        if (av == NULL) {
            return NULL;
        }
    }
    return av;
}

typedef struct eval {
    const ddb_expr_t *e;
    const cJSON *item;
    cJSON *temps; /* array owning computed values */
    char *err;
    size_t errlen;
    bool failed;
} eval_t;

static const cJSON *keep(eval_t *ev, cJSON *v)
{
    cJSON_AddItemToArray(ev->temps, v);
    return v;
}

static cJSON *number_value(const char *s)
{
    cJSON *av = cJSON_CreateObject();
    cJSON_AddStringToObject(av, "N", s);
    return av;
}

/* The two operands of a binary update function (list_append, +, -); false (ev failed, err said) when one is
 * missing from the item. */
static const cJSON *operand(eval_t *ev, int node);
static bool both_operands(eval_t *ev, const node_t *nd, const cJSON **a, const cJSON **b)
{
    *a = operand(ev, nd->a);
    *b = operand(ev, nd->b);
    if (ev->failed) {
        return false;
    }
    if (*a == NULL || *b == NULL) {
        ev->failed = true;
        fail(ev->err, ev->errlen, "The provided expression refers to an attribute that does not exist in the item");
        return false;
    }
    return true;
}

/* The value of an operand; NULL when it names a missing attribute (or on failure, ev->failed). */
static const cJSON *operand(eval_t *ev, int n)
{
    const node_t *nd = &ev->e->nodes[n];
    switch (nd->kind) {
    case NK_PATH:
        return path_get(ev->e, nd->path, ev->item);
    case NK_VALUE:
        return nd->value;
    case NK_SIZE: {
        const cJSON *v = path_get(ev->e, ev->e->nodes[nd->a].path, ev->item);
        if (v == NULL) {
            return NULL;
        }
        const char *t = ddb_value_type(v);
        size_t size = 0;
        if (strcmp(t, "S") == 0) {
            size = strlen(value_of(v)->valuestring);
        } else if (strcmp(t, "B") == 0) {
            base64_valid(value_of(v)->valuestring, &size);
        } else if (strcmp(t, "N") == 0 || strcmp(t, "BOOL") == 0 || strcmp(t, "NULL") == 0) {
            return NULL; /* size() of these is not defined: the comparison is false */
        } else {
            size = (size_t)cJSON_GetArraySize(value_of(v));
        }
        char num[32];
        snprintf(num, sizeof num, "%zu", size);
        return keep(ev, number_value(num));
    }
    case NK_IF_NOT_EXISTS: {
        const cJSON *v = path_get(ev->e, ev->e->nodes[nd->a].path, ev->item);
        return v != NULL ? v : operand(ev, nd->b);
    }
    case NK_LIST_APPEND: {
        const cJSON *a, *b;
        if (!both_operands(ev, nd, &a, &b)) {
            return NULL;
        }
        if (!is_type(a, "L") || !is_type(b, "L")) {
            ev->failed = true;
            fail(ev->err, ev->errlen, "Invalid UpdateExpression: Incorrect operand type for operator or function; "
                                      "operator or function: list_append, operand type: %s",
                 !is_type(a, "L") ? ddb_value_type(a) : ddb_value_type(b));
            return NULL;
        }
        cJSON *r = cJSON_Duplicate(a, true);
        cJSON *list = r->child;
        for (const cJSON *x = value_of(b)->child; x != NULL; x = x->next) {
            cJSON_AddItemToArray(list, cJSON_Duplicate(x, true));
        }
        return keep(ev, r);
    }
    case NK_PLUS:
    case NK_MINUS: {
        const cJSON *a, *b;
        if (!both_operands(ev, nd, &a, &b)) {
            return NULL;
        }
        if (!is_type(a, "N") || !is_type(b, "N")) {
            ev->failed = true;
            fail(ev->err, ev->errlen, "An operand in the update expression has an incorrect data type");
            return NULL;
        }
        char sum[DDB_NUM_STR_MAX];
        if (ddb_num_add(value_of(a)->valuestring, value_of(b)->valuestring, nd->kind == NK_MINUS, sum, ev->err,
                        ev->errlen) != 0) {
            ev->failed = true;
            return NULL;
        }
        return keep(ev, number_value(sum));
    }
    default:
        return NULL;
    }
}

static bool begins_with(const cJSON *a, const cJSON *b)
{
    if (is_type(a, "S") && is_type(b, "S")) {
        const char *x = value_of(a)->valuestring, *y = value_of(b)->valuestring;
        return strncmp(x, y, strlen(y)) == 0;
    }
    if (is_type(a, "B") && is_type(b, "B")) {
        unsigned char *x, *y;
        size_t xn = decode_b(value_of(a)->valuestring, &x), yn = decode_b(value_of(b)->valuestring, &y);
        bool r = yn <= xn && memcmp(x, y, yn) == 0;
        free(x);
        free(y);
        return r;
    }
    return false;
}

static bool contains(const cJSON *a, const cJSON *b)
{
    if (a == NULL || b == NULL) {
        return false;
    }
    const char *t = ddb_value_type(a), *u = ddb_value_type(b);
    if (strcmp(t, "S") == 0 && strcmp(u, "S") == 0) {
        return strstr(value_of(a)->valuestring, value_of(b)->valuestring) != NULL;
    }
    if ((strcmp(t, "SS") == 0 && strcmp(u, "S") == 0) || (strcmp(t, "NS") == 0 && strcmp(u, "N") == 0) ||
        (strcmp(t, "BS") == 0 && strcmp(u, "B") == 0)) {
        return set_has(value_of(a), t, value_of(b)->valuestring);
    }
    if (strcmp(t, "L") == 0) {
        for (const cJSON *x = value_of(a)->child; x != NULL; x = x->next) {
            if (ddb_value_equal(x, b)) {
                return true;
            }
        }
    }
    return false;
}

static bool cond(eval_t *ev, int n)
{
    const node_t *nd = &ev->e->nodes[n];
    switch (nd->kind) {
    case NK_AND:
        return cond(ev, nd->a) && cond(ev, nd->b);
    case NK_OR:
        return cond(ev, nd->a) || cond(ev, nd->b);
    case NK_NOT:
        return !cond(ev, nd->a);
    case NK_EXISTS:
        return path_get(ev->e, ev->e->nodes[nd->a].path, ev->item) != NULL;
    case NK_NOT_EXISTS:
        return path_get(ev->e, ev->e->nodes[nd->a].path, ev->item) == NULL;
    case NK_TYPE: {
        const cJSON *v = path_get(ev->e, ev->e->nodes[nd->a].path, ev->item);
        return v != NULL && strcmp(ddb_value_type(v), value_of(ev->e->nodes[nd->b].value)->valuestring) == 0;
    }
    case NK_BEGINS:
        return begins_with(operand(ev, nd->a), operand(ev, nd->b));
    case NK_CONTAINS:
        return contains(operand(ev, nd->a), operand(ev, nd->b));
    case NK_CMP: {
        const cJSON *a = operand(ev, nd->a), *b = operand(ev, nd->b);
        if (nd->op == OP_EQ) {
            return ddb_value_equal(a, b);
        }
        if (nd->op == OP_NE) {
            return !ddb_value_equal(a, b);
        }
        bool ok;
        int c = ddb_value_cmp(a, b, &ok);
        if (!ok) {
            return false;
        }
        switch (nd->op) {
        case OP_LT:
            return c < 0;
        case OP_LE:
            return c <= 0;
        case OP_GT:
            return c > 0;
        default:
            return c >= 0;
        }
    }
    case NK_BETWEEN: {
        const cJSON *a = operand(ev, nd->a), *lo = operand(ev, nd->b), *hi = operand(ev, nd->c);
        bool ok1, ok2;
        int c1 = ddb_value_cmp(a, lo, &ok1), c2 = ddb_value_cmp(a, hi, &ok2);
        return ok1 && ok2 && c1 >= 0 && c2 <= 0;
    }
    case NK_IN: {
        const cJSON *a = operand(ev, nd->a);
        for (int o = nd->b; o >= 0; o = ev->e->nodes[o].next) {
            if (ddb_value_equal(a, operand(ev, o))) {
                return true;
            }
        }
        return false;
    }
    default:
        return false;
    }
}

bool ddb_cond_eval(const ddb_expr_t *e, const cJSON *item)
{
    if (e == NULL || e->kind != DDB_EXPR_CONDITION || e->root < 0) {
        return false;
    }
    eval_t ev = {.e = e, .item = item, .temps = cJSON_CreateArray()};
    bool r = cond(&ev, e->root);
    cJSON_Delete(ev.temps);
    return r;
}

/* The container that holds the last element of path in item, created for nothing: NULL when the parent is
 * missing or of the wrong type. */
static cJSON *parent_of(const ddb_expr_t *e, int path, cJSON *item)
{
    const path_t *pt = &e->paths[path];
    if (pt->n == 1) {
        return item;
    }
    path_t parent = {.first = pt->first, .n = pt->n - 1};
    /* reuse path_get with a temporary path entry */
    ddb_expr_t tmp = *e;
    path_t paths[1] = {parent};
    tmp.paths = paths;
    cJSON *av = (cJSON *)path_get(&tmp, 0, item);
    const path_elem_t *last = &e->elems[pt->first + pt->n - 1];
    if (av == NULL || (last->name != NULL ? !is_type(av, "M") : !is_type(av, "L"))) {
        return NULL;
    }
    return av->child;
}

static int path_set(const ddb_expr_t *e, int path, cJSON *item, cJSON *value, char *err, size_t errlen)
{
    cJSON *container = parent_of(e, path, item);
    const path_t *pt = &e->paths[path];
    const path_elem_t *last = &e->elems[pt->first + pt->n - 1];
    if (container == NULL) {
        cJSON_Delete(value);
        fail(err, errlen, "The document path provided in the update expression is invalid for update");
        return -1;
    }
    if (last->name != NULL) {
        if (cJSON_GetObjectItemCaseSensitive(container, last->name) != NULL) {
            cJSON_ReplaceItemInObjectCaseSensitive(container, last->name, value);
        } else {
            cJSON_AddItemToObject(container, last->name, value);
        }
    } else if (last->index < cJSON_GetArraySize(container)) {
        cJSON_ReplaceItemInArray(container, (int)last->index, value);
    } else {
        cJSON_AddItemToArray(container, value); /* beyond the end: appended, as DynamoDB does */
    }
    return 0;
}

static void path_remove(const ddb_expr_t *e, int path, cJSON *item)
{
    cJSON *container = parent_of(e, path, item);
    const path_t *pt = &e->paths[path];
    const path_elem_t *last = &e->elems[pt->first + pt->n - 1];
    if (container == NULL) {
        return;
    }
    if (last->name != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(container, last->name);
    } else if (last->index < cJSON_GetArraySize(container)) {
        cJSON_DeleteItemFromArray(container, (int)last->index);
    }
}

static int apply_action(eval_t *ev, const action_t *a, cJSON *work)
{
    const ddb_expr_t *e = ev->e;
    if (a->kind == ACT_REMOVE) {
        path_remove(e, a->path, work);
        return 0;
    }
    const cJSON *v = operand(ev, a->value);
    if (ev->failed) {
        return -1;
    }
    if (v == NULL) {
        fail(ev->err, ev->errlen, "The provided expression refers to an attribute that does not exist in the item");
        return -1;
    }
    if (a->kind == ACT_SET) {
        return path_set(e, a->path, work, cJSON_Duplicate(v, true), ev->err, ev->errlen);
    }
    const cJSON *old = path_get(e, a->path, ev->item);
    const char *t = ddb_value_type(v);
    bool is_set = strcmp(t, "SS") == 0 || strcmp(t, "NS") == 0 || strcmp(t, "BS") == 0;
    if (a->kind == ACT_ADD) {
        if (strcmp(t, "N") == 0) {
            if (old != NULL && !is_type(old, "N")) {
                fail(ev->err, ev->errlen, "An operand in the update expression has an incorrect data type");
                return -1;
            }
            char sum[DDB_NUM_STR_MAX];
            if (ddb_num_add(old != NULL ? value_of(old)->valuestring : "0", value_of(v)->valuestring, false, sum,
                            ev->err, ev->errlen) != 0) {
                return -1;
            }
            return path_set(e, a->path, work, number_value(sum), ev->err, ev->errlen);
        }
        if (!is_set || (old != NULL && !is_type(old, t))) {
            fail(ev->err, ev->errlen, "An operand in the update expression has an incorrect data type");
            return -1;
        }
        cJSON *r = cJSON_Duplicate(old != NULL ? old : v, true);
        if (old != NULL) {
            for (const cJSON *x = value_of(v)->child; x != NULL; x = x->next) {
                if (!set_has(r->child, t, x->valuestring)) {
                    cJSON_AddItemToArray(r->child, cJSON_CreateString(x->valuestring));
                }
            }
        }
        return path_set(e, a->path, work, r, ev->err, ev->errlen);
    }
    /* DELETE */
    if (!is_set || (old != NULL && !is_type(old, t))) {
        fail(ev->err, ev->errlen, "An operand in the update expression has an incorrect data type");
        return -1;
    }
    if (old == NULL) {
        return 0;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(r, t);
    for (const cJSON *x = value_of(old)->child; x != NULL; x = x->next) {
        if (!set_has(value_of(v), t, x->valuestring)) {
            cJSON_AddItemToArray(list, cJSON_CreateString(x->valuestring));
        }
    }
    if (list->child == NULL) {
        cJSON_Delete(r);
        path_remove(e, a->path, work);
        return 0;
    }
    return path_set(e, a->path, work, r, ev->err, ev->errlen);
}

int ddb_update_apply(const ddb_expr_t *e, cJSON *item, const char *const *key_names, size_t nkeys, cJSON **touched,
                     char *err, size_t errlen)
{
    if (touched != NULL) {
        *touched = NULL;
    }
    if (e == NULL || e->kind != DDB_EXPR_UPDATE) {
        fail(err, errlen, "Invalid UpdateExpression");
        return -1;
    }
    for (int i = 0; i < e->nactions; i++) {
        const char *top = e->elems[e->paths[e->actions[i].path].first].name;
        for (size_t k = 0; k < nkeys; k++) {
            if (strcmp(top, key_names[k]) == 0) {
                fail(err, errlen, "One or more parameter values were invalid: Cannot update attribute %s. This "
                                  "attribute is part of the key", top);
                return -1;
            }
        }
    }
    cJSON *work = cJSON_Duplicate(item, true);
    eval_t ev = {.e = e, .item = item, .temps = cJSON_CreateArray(), .err = err, .errlen = errlen};
    int rc = 0;
    for (int i = 0; i < e->nactions && rc == 0; i++) {
        rc = apply_action(&ev, &e->actions[i], work);
    }
    cJSON_Delete(ev.temps);
    if (rc != 0) {
        cJSON_Delete(work);
        return -1;
    }
    if (touched != NULL) {
        cJSON *names = cJSON_CreateArray();
        for (int i = 0; i < e->nactions; i++) {
            const char *top = e->elems[e->paths[e->actions[i].path].first].name;
            bool dup = false;
            for (const cJSON *x = names->child; x != NULL; x = x->next) {
                dup = dup || strcmp(x->valuestring, top) == 0;
            }
            if (!dup) {
                cJSON_AddItemToArray(names, cJSON_CreateString(top));
            }
        }
        *touched = names;
    }
    cJSON *swap = item->child;
    item->child = work->child;
    work->child = swap;
    cJSON_Delete(work);
    return 0;
}

/* Copies the value at path (elements from i on) of src into dst (both containers of DynamoDB values:
 * an item object, a map's member object or a list's array). */
static void project_into(const ddb_expr_t *e, const path_t *pt, int i, const cJSON *src, cJSON *dst)
{
    const path_elem_t *el = &e->elems[pt->first + i];
    const cJSON *v = el->name != NULL ? (cJSON_IsObject(src) ? cJSON_GetObjectItemCaseSensitive(src, el->name) : NULL)
                                      : (cJSON_IsArray(src) && el->index >= 0 ? cJSON_GetArrayItem(src, (int)el->index)
                                                                               : NULL);
    if (v == NULL) {
        return;
    }
    if (i == pt->n - 1) {
        if (el->name != NULL) {
            cJSON_AddItemToObject(dst, el->name, cJSON_Duplicate(v, true));
        } else {
            cJSON_AddItemToArray(dst, cJSON_Duplicate(v, true));
        }
        return;
    }
    const path_elem_t *child = &e->elems[pt->first + i + 1];
    const char *want = child->name != NULL ? "M" : "L";
    if (!is_type(v, want)) {
        return;
    }
    cJSON *existing = el->name != NULL && cJSON_IsObject(dst) ? cJSON_GetObjectItemCaseSensitive(dst, el->name) : NULL;
    if (existing == NULL) {
        existing = cJSON_CreateObject();
        if (child->name != NULL) {
            cJSON_AddObjectToObject(existing, "M");
        } else {
            cJSON_AddArrayToObject(existing, "L");
        }
        if (el->name != NULL) {
            cJSON_AddItemToObject(dst, el->name, existing);
        } else {
            cJSON_AddItemToArray(dst, existing);
        }
    }
    project_into(e, pt, i + 1, value_of(v), existing->child);
}

cJSON *ddb_project(const ddb_expr_t *e, const cJSON *item)
{
    cJSON *out = cJSON_CreateObject();
    if (e == NULL || item == NULL) {
        return out;
    }
    for (int i = 0; i < e->nprojection; i++) {
        project_into(e, &e->paths[e->projection[i]], 0, item, out);
    }
    return out;
}

/* The top-level attribute name of a path operand node, or NULL when it is not a one-element path. */
static const char *simple_name(const ddb_expr_t *e, int n)
{
    if (n < 0 || e->nodes[n].kind != NK_PATH) {
        return NULL;
    }
    const path_t *pt = &e->paths[e->nodes[n].path];
    return pt->n == 1 ? e->elems[pt->first].name : NULL;
}

int ddb_key_condition(const ddb_expr_t *e, const char *hash_name, const char *range_name, const cJSON **hash_value,
                      char *err, size_t errlen)
{
    *hash_value = NULL;
    if (e == NULL || e->kind != DDB_EXPR_CONDITION || e->root < 0) {
        fail(err, errlen, "Invalid KeyConditionExpression");
        return -1;
    }
    int parts[2], nparts = 0;
    const node_t *root = &e->nodes[e->root];
    if (root->kind == NK_AND) {
        parts[nparts++] = root->a;
        parts[nparts++] = root->b;
    } else {
        parts[nparts++] = e->root;
    }
    bool have_range = false;
    for (int i = 0; i < nparts; i++) {
        const node_t *nd = &e->nodes[parts[i]];
        const char *name = nd->kind == NK_CMP || nd->kind == NK_BETWEEN || nd->kind == NK_BEGINS ? simple_name(e, nd->a)
                                                                                                  : NULL;
        bool rhs_values = nd->kind == NK_BETWEEN
                              ? e->nodes[nd->b].kind == NK_VALUE && e->nodes[nd->c].kind == NK_VALUE
                              : nd->b >= 0 && e->nodes[nd->b].kind == NK_VALUE;
        if (name == NULL || !rhs_values || (nd->kind == NK_CMP && nd->op == OP_NE)) {
            fail(err, errlen, "Invalid KeyConditionExpression: only conditions of the form key = :v, key < :v, "
                              "key BETWEEN :a AND :b and begins_with(key, :v), joined by AND, are supported");
            return -1;
        }
        if (strcmp(name, hash_name) == 0 && nd->kind == NK_CMP && nd->op == OP_EQ && *hash_value == NULL) {
            *hash_value = e->nodes[nd->b].value;
        } else if (range_name != NULL && strcmp(name, range_name) == 0 && !have_range) {
            have_range = true;
        } else {
            fail(err, errlen, "Query condition missed key schema element%s: %s",
                 *hash_value == NULL ? "" : " or used a non-key attribute", name);
            return -1;
        }
    }
    if (*hash_value == NULL) {
        fail(err, errlen, "Query condition missed key schema element: %s", hash_name);
        return -1;
    }
    return 0;
}
