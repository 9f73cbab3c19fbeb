/*
 * fuzz_policy: policy_parse on arbitrary bytes, evaluation of what parses, and policy_match against a
 * reference matcher.
 *
 * The first input byte chooses the mode, the rest is the input (seeds start with an ASCII digit):
 *   bit 1 clear  policy: the rest is a policy document, parsed as a resource policy when bit 0 is set, else
 *                as an identity policy. A failure is -EINVAL with a printable ASCII message, and the same
 *                message cut to any shorter buffer; a success is evaluated against a few fixed requests
 *                (own account, other account, consumer ARN, odd actions), and the decision must be coherent
 *                with the reason (a deciding statement inside the policy for Allow / explicit Deny, none for
 *                an implicit Deny) and unchanged when the same policy is given twice.
 *   bit 1 set    match: the rest is split at its first NUL byte (or in the middle) into pattern and value
 *                (the value is cut at its own first NUL); policy_match must agree with a dynamic-programming
 *                reference in both case modes, and a case-sensitive match implies a case-insensitive one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                     \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#define REF_MAX 512 /* the reference matcher's table is (REF_MAX + 1)^2 bits' worth of bools */

static const policy_request_t requests[] = {
    {"111111111111", "arn:aws:iam::111111111111:user/alice", "kinesis:PutRecord",
     "arn:aws:kinesis:us-east-1:111111111111:stream/orders", "192.0.2.10", true},
    {"222222222222", "arn:aws:iam::222222222222:root", "kinesis:GetRecords",
     "arn:aws:kinesis:us-east-1:111111111111:stream/orders", "2001:db8::1", false},
    {"111111111111", "arn:aws:iam::111111111111:role/app", "kinesis:SubscribeToShard",
     "arn:aws:kinesis:us-east-1:111111111111:stream/orders/consumer/c:1700000000", NULL, true},
    {"", "", "KINESIS:deletestream", "arn:aws:kinesis:eu-west-1:333333333333:stream/x", "not an ip", false},
    {NULL, NULL, "", "", "::ffff:10.0.0.1", true},
};

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* m[i][j]: pattern[i..] matches value[j..]. Bottom-up, so no recursion. */
static bool reference_match(const char *p, size_t pn, const char *v, size_t vn, bool ci)
{
    static bool m[REF_MAX + 2][REF_MAX + 2];
    for (size_t i = pn + 1; i-- > 0;) {
        for (size_t j = vn + 1; j-- > 0;) {
            bool r;
            if (i == pn) {
                r = j == vn;
            } else if (p[i] == '*') {
                r = m[i + 1][j] || (j < vn && m[i][j + 1]);
            } else if (j == vn) {
                r = false;
            } else {
                bool same = p[i] == '?' || p[i] == v[j] ||
                            (ci && lower((unsigned char)p[i]) == lower((unsigned char)v[j]));
                r = same && m[i + 1][j + 1];
            }
            m[i][j] = r;
        }
    }
    return m[0][0];
}

static void fuzz_match(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t pn = nul != NULL ? (size_t)(nul - data) : size / 2;
    const uint8_t *vstart = nul != NULL ? nul + 1 : data + pn;
    size_t vn = size - (size_t)(vstart - data);
    const uint8_t *vnul = memchr(vstart, 0, vn);
    if (vnul != NULL) {
        vn = (size_t)(vnul - vstart);
    }
    char *pattern = malloc(pn + 1), *value = malloc(vn + 1);
    CHECK(pattern != NULL && value != NULL);
    memcpy(pattern, data, pn);
    pattern[pn] = '\0';
    memcpy(value, vstart, vn);
    value[vn] = '\0';

    bool cs = policy_match(pattern, value, false);
    bool ci = policy_match(pattern, value, true);
    CHECK(!cs || ci);
    if (pn <= REF_MAX && vn <= REF_MAX) {
        CHECK(cs == reference_match(pattern, pn, value, vn, false));
        CHECK(ci == reference_match(pattern, pn, value, vn, true));
    }
    free(pattern);
    free(value);
}

static void check_reason(policy_decision_t d, const policy_reason_t *why, const policy_t *p)
{
    CHECK(d == POLICY_ALLOW || d == POLICY_DENY_EXPLICIT || d == POLICY_DENY_IMPLICIT);
    if (d == POLICY_DENY_IMPLICIT) {
        CHECK(why->policy == NULL && why->sid == NULL);
    } else {
        CHECK(why->policy == p);
        CHECK(why->statement < policy_statement_count(p));
    }
}

static void fuzz_policy(policy_kind_t kind, const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that ASan sees any read past the document. */
    char *json = malloc(size > 0 ? size : 1);
    CHECK(json != NULL);
    memcpy(json, data, size);

    char err[POLICY_ERR_MAX];
    policy_t *p = (policy_t *)&err; /* must be reset to NULL on failure */
    int rc = policy_parse(kind, json, size, &p, err, sizeof err);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc != 0) {
        CHECK(p == NULL);
        size_t n = strlen(err);
        CHECK(n > 0 && n < sizeof err);
        for (size_t i = 0; i < n; i++) {
            CHECK(err[i] >= 0x20 && err[i] < 0x7f);
        }
        /* the same message, cut to a shorter buffer */
        char small[17];
        size_t cut = 1 + (size > 0 ? (size_t)(data[size / 2] % 16) : 0);
        policy_t *q = NULL;
        CHECK(policy_parse(kind, json, size, &q, small, cut) == -EINVAL && q == NULL);
        CHECK(strlen(small) == (n < cut - 1 ? n : cut - 1));
        CHECK(memcmp(small, err, strlen(small)) == 0);
        free(json);
        return;
    }
    free(json); /* the policy keeps nothing of the document */
    CHECK(p != NULL);
    CHECK(policy_kind(p) == kind);
    size_t count = policy_statement_count(p);
    CHECK(count >= 1 && count <= POLICY_MAX_STATEMENTS);

    for (size_t r = 0; r < sizeof requests / sizeof requests[0]; r++) {
        const policy_request_t *req = &requests[r];
        policy_reason_t why = {(const policy_t *)err, 12345, "x"};
        policy_decision_t d;
        if (kind == POLICY_IDENTITY) {
            const policy_t *list[2] = {p, p};
            d = policy_evaluate(list, 1, NULL, req, &why);
            check_reason(d, &why, p);
            CHECK(policy_evaluate(list, 2, NULL, req, NULL) == d);
            CHECK(policy_evaluate(list, 1, p, req, NULL) == d); /* principal-less statements apply */
        } else {
            d = policy_evaluate(NULL, 0, p, req, &why);
            check_reason(d, &why, p);
            const policy_t *list[1] = {p};
            CHECK(policy_evaluate(list, 1, p, req, NULL) == d);
        }
    }
    policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0];
    if (mode & 2) {
        fuzz_match(data + 1, size - 1);
    } else {
        fuzz_policy((mode & 1) ? POLICY_RESOURCE : POLICY_IDENTITY, data + 1, size - 1);
    }
    return 0;
}
