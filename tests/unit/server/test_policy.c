/* Unit tests for server/policy: wildcard matching, parsing (every error), and the allow/deny decision. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/policy.h"

#define ACCOUNT "111111111111"
#define OTHER "222222222222"
#define STREAM_ARN "arn:aws:kinesis:us-east-1:" ACCOUNT ":stream/orders"
#define CONSUMER_ARN STREAM_ARN "/consumer/billing:1700000000"

static policy_t *parse_kind(policy_kind_t kind, const char *json)
{
    char err[POLICY_ERR_MAX];
    policy_t *p = NULL;
    int rc = policy_parse(kind, json, strlen(json), &p, err, sizeof err);
    cr_assert_eq(rc, 0, "policy did not parse: %s\n%s", err, json);
    cr_assert_not_null(p);
    return p;
}

static policy_t *identity(const char *json)
{
    return parse_kind(POLICY_IDENTITY, json);
}

static policy_t *resource_policy(const char *json)
{
    return parse_kind(POLICY_RESOURCE, json);
}

/* Asserts that json fails to parse with a message containing want. */
static void parse_fails(policy_kind_t kind, const char *json, const char *want)
{
    char err[POLICY_ERR_MAX];
    policy_t *p = (policy_t *)1;
    int rc = policy_parse(kind, json, strlen(json), &p, err, sizeof err);
    cr_assert_eq(rc, -EINVAL, "expected -EINVAL for %s, got %d", json, rc);
    cr_assert_null(p);
    cr_assert(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\" (document %s)", err, want, json);
}

static policy_request_t request(const char *action, const char *resource)
{
    return (policy_request_t){
        .account_id = ACCOUNT,
        .principal_arn = "arn:aws:iam::" ACCOUNT ":user/alice",
        .action = action,
        .resource = resource,
        .source_ip = "192.0.2.10",
        .secure_transport = true,
    };
}

static policy_decision_t decide1(const policy_t *p, const policy_request_t *req)
{
    return policy_evaluate(&p, 1, NULL, req, NULL);
}

/* ---- policy_match ---- */

Test(policy_match, literals_and_wildcards)
{
    cr_assert(policy_match("abc", "abc", false));
    cr_assert_not(policy_match("abc", "abcd", false));
    cr_assert_not(policy_match("abcd", "abc", false));
    cr_assert(policy_match("", "", false));
    cr_assert_not(policy_match("", "a", false));
    cr_assert(policy_match("*", "", false));
    cr_assert(policy_match("*", "anything:at/all", false));
    cr_assert(policy_match("**", "x", false));
    cr_assert(policy_match("a?c", "abc", false));
    cr_assert_not(policy_match("a?c", "ac", false));
    cr_assert_not(policy_match("?", "", false));
    cr_assert(policy_match("???", "xyz", false));
    /* leading, trailing, middle */
    cr_assert(policy_match("*orders", "stream/orders", false));
    cr_assert(policy_match("stream/*", "stream/orders", false));
    cr_assert(policy_match("stream/*/consumer/*", "stream/orders/consumer/c1:17", false));
    cr_assert_not(policy_match("stream/*/consumer/*", "stream/orders", false));
    cr_assert(policy_match("a*b*c", "a__b__c", false));
    cr_assert(policy_match("a*b*c", "abc", false));
    cr_assert_not(policy_match("a*b*c", "a__c__b", false));
    cr_assert(policy_match("*a?", "bbab", false));
    cr_assert(policy_match("*ab", "aab", false)); /* needs the star to give back */
    cr_assert(policy_match("*?*?", "ab", false));
    cr_assert_not(policy_match("*?*?", "a", false));
    /* '*' crosses ':' and '/' */
    cr_assert(policy_match("arn:aws:kinesis:*:stream/orders", STREAM_ARN, false));
    cr_assert(policy_match("arn:*", CONSUMER_ARN, false));
}

Test(policy_match, case_rules)
{
    cr_assert(policy_match("kinesis:putrecord", "kinesis:PutRecord", true));
    cr_assert(policy_match("KINESIS:Get*", "kinesis:GetRecords", true));
    cr_assert_not(policy_match("kinesis:putrecord", "kinesis:PutRecord", false));
    cr_assert_not(policy_match("stream/Orders", "stream/orders", false));
    /* only ASCII folds */
    cr_assert_not(policy_match("\xc3\xa9", "\xc3\x89", true));
}

Test(policy_match, pathological_patterns_are_fast, .timeout = 10)
{
    size_t n = 10000;
    char *value = malloc(n + 2);
    cr_assert_not_null(value);
    memset(value, 'a', n);
    value[n] = '\0';

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_not(policy_match("a*a*a*a*a*a*a*b", value, false));
    cr_assert_not(policy_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", value, true));
    cr_assert(policy_match("a*a*a*a*a*a*a*a", value, false));

    /* 500 stars against a long string, matching and not */
    char pattern[1100];
    size_t k = 0;
    for (int i = 0; i < 500; i++) {
        pattern[k++] = '*';
        pattern[k++] = 'a';
    }
    pattern[k++] = '*';
    pattern[k] = '\0';
    cr_assert(policy_match(pattern, value, false));
    pattern[k - 1] = 'b';
    cr_assert_not(policy_match(pattern, value, false));

    /* a long literal tail after one star: the O(n * m) worst case stays polynomial */
    char tail[202];
    tail[0] = '*';
    memset(tail + 1, 'a', 199);
    tail[200] = 'b';
    tail[201] = '\0';
    cr_assert_not(policy_match(tail, value, false));
    value[n] = 'b';
    value[n + 1] = '\0';
    cr_assert(policy_match(tail, value, false));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    cr_assert_lt(ms, 2000.0, "wildcard matching took %.1f ms", ms);
    free(value);
}

/* ---- evaluation ---- */

Test(policy_eval, allow_list_and_default_deny)
{
    policy_t *p = identity(
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"Write\",\"Effect\":\"Allow\","
        "\"Action\":[\"kinesis:PutRecord\",\"kinesis:PutRecords\"],\"Resource\":\"" STREAM_ARN "\"}]}");
    policy_request_t req = request("kinesis:PutRecord", STREAM_ARN);
    policy_reason_t why;
    cr_assert_eq(policy_evaluate((const policy_t *const *)&p, 1, NULL, &req, &why), POLICY_ALLOW);
    cr_assert_eq(why.policy, p);
    cr_assert_eq(why.statement, 0);
    cr_assert_str_eq(why.sid, "Write");

    req.action = "kinesis:GetRecords";
    cr_assert_eq(policy_evaluate((const policy_t *const *)&p, 1, NULL, &req, &why), POLICY_DENY_IMPLICIT);
    cr_assert_null(why.policy);
    cr_assert_null(why.sid);

    req = request("kinesis:PutRecord", "arn:aws:kinesis:us-east-1:" ACCOUNT ":stream/other");
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);

    /* no policies at all */
    cr_assert_eq(policy_evaluate(NULL, 0, NULL, &req, NULL), POLICY_DENY_IMPLICIT);
    policy_free(p);
}

Test(policy_eval, explicit_deny_beats_allow)
{
    policy_t *p[2];
    p[0] = identity(
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kinesis:*\",\"Resource\":\"*\"},"
        "{\"Sid\":\"NoDelete\",\"Effect\":\"Deny\",\"Action\":\"kinesis:Delete*\",\"Resource\":\"*\"}]}");
    p[1] = identity("{\"Statement\":{\"Sid\":\"NoOrders\",\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":"
                    "\"arn:aws:kinesis:*:*:stream/orders\"}}");
    const policy_t *const *list = (const policy_t *const *)p;
    policy_reason_t why;

    policy_request_t req = request("kinesis:DeleteStream", "arn:aws:kinesis:us-east-1:" ACCOUNT ":stream/x");
    cr_assert_eq(policy_evaluate(list, 1, NULL, &req, &why), POLICY_DENY_EXPLICIT);
    cr_assert_eq(why.policy, p[0]);
    cr_assert_eq(why.statement, 1);
    cr_assert_str_eq(why.sid, "NoDelete");

    req.action = "kinesis:DescribeStream";
    cr_assert_eq(policy_evaluate(list, 2, NULL, &req, &why), POLICY_ALLOW);
    cr_assert_eq(why.statement, 0);
    cr_assert_null(why.sid);

    /* a deny in a later policy wins over an allow in an earlier one */
    req.resource = STREAM_ARN;
    cr_assert_eq(policy_evaluate(list, 2, NULL, &req, &why), POLICY_DENY_EXPLICIT);
    cr_assert_eq(why.policy, p[1]);
    cr_assert_str_eq(why.sid, "NoOrders");
    /* NULL entries in the identity list are skipped */
    const policy_t *with_null[3] = {NULL, p[0], NULL};
    cr_assert_eq(policy_evaluate(with_null, 3, NULL, &req, NULL), POLICY_ALLOW);
    policy_free(p[0]);
    policy_free(p[1]);
}

Test(policy_eval, not_action_and_not_resource)
{
    policy_t *p =
        identity("{\"Statement\":[{\"Effect\":\"Allow\",\"NotAction\":[\"kinesis:Delete*\","
                 "\"kinesis:*Policy\"],\"Resource\":\"*\"},{\"Effect\":\"Deny\",\"Action\":\"kinesis:Put*\","
                 "\"NotResource\":[\"arn:aws:kinesis:*:*:stream/public-*\"]}]}");
    policy_request_t req = request("kinesis:GetRecords", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.action = "kinesis:DeleteStream";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
    req.action = "kinesis:GetResourcePolicy";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
    req.action = "kinesis:PutRecord";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT); /* not a public-* stream */
    req.resource = "arn:aws:kinesis:us-east-1:" ACCOUNT ":stream/public-clicks";
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    policy_free(p);
}

Test(policy_eval, case_rules)
{
    policy_t *p =
        identity("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"KINESIS:getrecords\",\"Resource\":"
                 "\"arn:aws:kinesis:us-east-1:" ACCOUNT ":stream/Orders\"}}");
    policy_request_t req =
        request("kinesis:GetRecords", "arn:aws:kinesis:us-east-1:" ACCOUNT ":stream/Orders");
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.resource = STREAM_ARN; /* stream/orders: resources are case-sensitive */
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
    policy_free(p);
}

Test(policy_eval, consumer_arns_and_wildcards)
{
    policy_t *p = identity("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":[\"kinesis:SubscribeToShard\","
                           "\"kinesis:Describe?treamConsumer\"],\"Resource\":\"arn:aws:kinesis:*:" ACCOUNT
                           ":stream/orders/consumer/*\"}}");
    policy_request_t req = request("kinesis:SubscribeToShard", CONSUMER_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.action = "kinesis:DescribeStreamConsumer";
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.resource = STREAM_ARN;
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
    policy_free(p);
}

Test(policy_eval, resource_policy_principals)
{
    policy_t *rp = resource_policy(
        "{\"Version\":\"2012-10-17\",\"Statement\":["
        "{\"Sid\":\"Partner\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::" OTHER ":root\"},"
        "\"Action\":[\"kinesis:GetRecords\",\"kinesis:GetShardIterator\"],\"Resource\":\"" STREAM_ARN "\"},"
        "{\"Sid\":\"Self\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"" ACCOUNT "\"]},"
        "\"Action\":\"kinesis:PutRecord\",\"Resource\":\"" STREAM_ARN "\"},"
        "{\"Sid\":\"Bob\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::" OTHER ":user/bob\"},"
        "\"Action\":\"kinesis:PutRecord\",\"Resource\":\"" STREAM_ARN "\"},"
        "{\"Sid\":\"NoMallory\",\"Effect\":\"Deny\",\"Principal\":{\"AWS\":\"arn:aws:iam::" OTHER
        ":user/mallory\"},\"Action\":\"*\",\"Resource\":\"*\"}]}");
    cr_assert_eq(policy_kind(rp), POLICY_RESOURCE);
    cr_assert_eq(policy_statement_count(rp), 4);
    policy_reason_t why;

    /* another account, granted through its root principal */
    policy_request_t req = request("kinesis:GetRecords", STREAM_ARN);
    req.account_id = OTHER;
    req.principal_arn = "arn:aws:iam::" OTHER ":user/carol";
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, &why), POLICY_ALLOW);
    cr_assert_str_eq(why.sid, "Partner");
    cr_assert_eq(why.policy, rp);
    req.action = "kinesis:PutRecord"; /* Self names the owner account only; Bob names bob only */
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_DENY_IMPLICIT);
    req.principal_arn = "arn:aws:iam::" OTHER ":user/bob";
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, &why), POLICY_ALLOW);
    cr_assert_str_eq(why.sid, "Bob");
    req.principal_arn = "arn:aws:iam::" OTHER ":user/Bob"; /* principal ARNs compare exactly */
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_DENY_IMPLICIT);

    /* the same account by bare account id */
    req = request("kinesis:PutRecord", STREAM_ARN);
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, &why), POLICY_ALLOW);
    cr_assert_str_eq(why.sid, "Self");

    /* a third account gets nothing */
    req.account_id = "333333333333";
    req.principal_arn = "arn:aws:iam::333333333333:root";
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_DENY_IMPLICIT);

    /* the resource policy's deny beats an identity allow of the caller */
    policy_t *all = identity("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}");
    req = request("kinesis:GetRecords", STREAM_ARN);
    req.account_id = OTHER;
    req.principal_arn = "arn:aws:iam::" OTHER ":user/mallory";
    cr_assert_eq(policy_evaluate((const policy_t *const *)&all, 1, rp, &req, &why), POLICY_DENY_EXPLICIT);
    cr_assert_str_eq(why.sid, "NoMallory");
    /* and an identity allow alone is enough without a resource policy */
    cr_assert_eq(policy_evaluate((const policy_t *const *)&all, 1, NULL, &req, NULL), POLICY_ALLOW);
    policy_free(all);
    policy_free(rp);
}

Test(policy_eval, principal_star_and_not_principal)
{
    policy_t *rp = resource_policy(
        "{\"Statement\":["
        "{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kinesis:Describe*\",\"Resource\":\"*\"},"
        "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kinesis:ListShards\",\"Resource\":"
        "\"*\"},"
        "{\"Effect\":\"Deny\",\"NotPrincipal\":{\"AWS\":[\"" ACCOUNT "\",\"arn:aws:iam::" OTHER
        ":user/bob\"]},"
        "\"Action\":\"kinesis:Describe*\",\"Resource\":\"*\"}]}");
    policy_request_t req = request("kinesis:DescribeStream", STREAM_ARN);
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_ALLOW);
    req.account_id = OTHER;
    req.principal_arn = "arn:aws:iam::" OTHER ":user/bob";
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_ALLOW);
    req.principal_arn = "arn:aws:iam::" OTHER ":user/eve";
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_DENY_EXPLICIT);
    req.action = "kinesis:ListShards";
    cr_assert_eq(policy_evaluate(NULL, 0, rp, &req, NULL), POLICY_ALLOW);
    policy_free(rp);
}

Test(policy_eval, conditions)
{
    policy_t *p = identity(
        "{\"Statement\":["
        "{\"Sid\":\"Office\",\"Effect\":\"Allow\",\"Action\":\"kinesis:*\",\"Resource\":\"*\",\"Condition\":{"
        "\"IpAddress\":{\"aws:SourceIp\":[\"192.0.2.0/24\",\"2001:db8::/32\"]},"
        "\"StringEquals\":{\"aws:PrincipalAccount\":\"" ACCOUNT "\"}}},"
        "{\"Sid\":\"TlsOnly\",\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\",\"Condition\":{"
        "\"Bool\":{\"aws:securetransport\":false}}},"
        "{\"Sid\":\"NoAdmins\",\"Effect\":\"Deny\",\"Action\":\"kinesis:Delete*\",\"Resource\":\"*\","
        "\"Condition\":{"
        "\"ArnLike\":{\"aws:PrincipalArn\":\"arn:aws:iam::*:user/admin-*\"}}}]}");
    policy_request_t req = request("kinesis:GetRecords", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.source_ip = "198.51.100.7";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
    req.source_ip = "2001:db8:1::5";
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.source_ip = "::ffff:192.0.2.99"; /* IPv4-mapped */
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.source_ip = NULL; /* missing key: IpAddress is false */
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
    req.source_ip = "not an ip";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);

    req = request("kinesis:GetRecords", STREAM_ARN);
    req.account_id = OTHER;
    cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);

    req = request("kinesis:GetRecords", STREAM_ARN);
    req.secure_transport = false;
    policy_reason_t why;
    cr_assert_eq(policy_evaluate((const policy_t *const *)&p, 1, NULL, &req, &why), POLICY_DENY_EXPLICIT);
    cr_assert_str_eq(why.sid, "TlsOnly");

    req = request("kinesis:DeleteStream", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.principal_arn = "arn:aws:iam::" ACCOUNT ":user/admin-root";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT);
    policy_free(p);
}

Test(policy_eval, negated_and_if_exists_conditions)
{
    policy_t *p = identity("{\"Statement\":["
                           "{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"},"
                           "{\"Sid\":\"OutsideNet\",\"Effect\":\"Deny\",\"Action\":\"kinesis:Put*\","
                           "\"Resource\":\"*\",\"Condition\":{"
                           "\"NotIpAddress\":{\"aws:SourceIp\":[\"10.0.0.0/8\",\"192.0.2.10\"]}}},"
                           "{\"Sid\":\"Strangers\",\"Effect\":\"Deny\",\"Action\":\"kinesis:Get*\","
                           "\"Resource\":\"*\",\"Condition\":{"
                           "\"StringNotEqualsIgnoreCase\":{\"aws:PrincipalArn\":[\"ARN:AWS:IAM::" ACCOUNT
                           ":USER/ALICE\"]}}},"
                           "{\"Sid\":\"Ranged\",\"Effect\":\"Deny\",\"Action\":\"kinesis:List*\","
                           "\"Resource\":\"*\",\"Condition\":{"
                           "\"IpAddressIfExists\":{\"aws:SourceIp\":\"203.0.113.0/24\"}}}]}");
    policy_request_t req = request("kinesis:PutRecord", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW); /* 192.0.2.10 listed */
    req.source_ip = "10.1.2.3";
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.source_ip = "11.0.0.1";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT);
    req.source_ip = NULL; /* negated operator, missing key: true */
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT);

    req = request("kinesis:GetRecords", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW); /* alice, compared without case */
    req.principal_arn = "arn:aws:iam::" ACCOUNT ":user/bob";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT);

    req = request("kinesis:ListShards", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    req.source_ip = "203.0.113.200";
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT);
    req.source_ip = NULL; /* IfExists, missing key: true */
    cr_assert_eq(decide1(p, &req), POLICY_DENY_EXPLICIT);
    policy_free(p);
}

Test(policy_eval, statement_as_object_or_array)
{
    const char *forms[] = {
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kinesis:PutRecord\",\"Resource\":\"" STREAM_ARN
        "\"}}",
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"kinesis:PutRecord\"],\"Resource\":[\"" STREAM_ARN
        "\"]}]}",
        "{\"Version\":\"2008-10-17\",\"Id\":\"x\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kinesis:"
        "PutRecord\","
        "\"Resource\":\"" STREAM_ARN "\"}]}",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        policy_t *p = identity(forms[i]);
        cr_assert_eq(policy_statement_count(p), 1);
        cr_assert_eq(policy_kind(p), POLICY_IDENTITY);
        policy_request_t req = request("kinesis:PutRecord", STREAM_ARN);
        cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
        req.action = "kinesis:PutRecords";
        cr_assert_eq(decide1(p, &req), POLICY_DENY_IMPLICIT);
        policy_free(p);
    }
}

Test(policy_eval, decision_names)
{
    cr_assert_str_eq(policy_decision_name(POLICY_ALLOW), "Allow");
    cr_assert_str_eq(policy_decision_name(POLICY_DENY_EXPLICIT), "Deny (explicit)");
    cr_assert_str_eq(policy_decision_name(POLICY_DENY_IMPLICIT), "Deny (implicit)");
}

typedef struct shared {
    const policy_t *p;
    int allowed;
} shared_t;

static void *evaluate_many(void *arg)
{
    shared_t *s = arg;
    for (int i = 0; i < 2000; i++) {
        policy_request_t req = request(i % 2 ? "kinesis:PutRecord" : "kinesis:DeleteStream", STREAM_ARN);
        s->allowed += policy_evaluate(&s->p, 1, NULL, &req, NULL) == POLICY_ALLOW;
    }
    return NULL;
}

Test(policy_eval, shared_across_threads)
{
    policy_t *p =
        identity("{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kinesis:*\",\"Resource\":\"*\"},"
                 "{\"Effect\":\"Deny\",\"Action\":\"kinesis:Delete*\",\"Resource\":\"*\"}]}");
    pthread_t t[4];
    shared_t s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (shared_t){p, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, evaluate_many, &s[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(s[i].allowed, 1000);
    }
    policy_free(p);
}

/* ---- parse errors ---- */

#define STMT_TAIL "\"Action\":\"kinesis:PutRecord\",\"Resource\":\"*\""
#define ALLOW_STMT "{\"Effect\":\"Allow\"," STMT_TAIL "}"
#define PRINCIPAL "\"Principal\":{\"AWS\":\"" ACCOUNT "\"}"

Test(policy_parse, json_syntax)
{
    parse_fails(POLICY_IDENTITY, "", "Syntax errors in policy");
    parse_fails(POLICY_IDENTITY, "{", "Syntax errors in policy");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":[" ALLOW_STMT "}", "Syntax errors in policy");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":" ALLOW_STMT "} x", "unexpected text after the document");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":" ALLOW_STMT "}{}", "unexpected text after the document");
    parse_fails(POLICY_IDENTITY,
                "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kinesis:Put\\u0000\","
                "\"Resource\":\"*\"}}",
                "\\u0000");

    /* trailing whitespace is fine; so is a document without a NUL terminator */
    policy_t *p = identity("{\"Statement\":" ALLOW_STMT "}\n\t ");
    policy_free(p);
    const char doc[] = "{\"Statement\":" ALLOW_STMT "}";
    char exact[sizeof doc - 1];
    memcpy(exact, doc, sizeof exact);
    char err[POLICY_ERR_MAX];
    cr_assert_eq(policy_parse(POLICY_IDENTITY, exact, sizeof exact, &p, err, sizeof err), 0, "%s", err);
    policy_free(p);

    /* an embedded NUL byte */
    const char nul[] = "{\"Statement\":" ALLOW_STMT "}\0 ";
    cr_assert_eq(policy_parse(POLICY_IDENTITY, nul, sizeof nul - 1, &p, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "NUL byte") != NULL, "%s", err);
}

Test(policy_parse, document_shape)
{
    parse_fails(POLICY_IDENTITY, "[]", "must be a JSON object");
    parse_fails(POLICY_IDENTITY, "\"x\"", "must be a JSON object");
    parse_fails(POLICY_IDENTITY, "{}", "Missing required field Statement");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":" ALLOW_STMT ",\"Extra\":1}", "Unknown field \"Extra\"");
    parse_fails(POLICY_IDENTITY, "{\"statement\":" ALLOW_STMT "}", "Unknown field \"statement\"");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":" ALLOW_STMT ",\"Statement\":" ALLOW_STMT "}",
                "Duplicate field \"Statement\"");
    parse_fails(POLICY_IDENTITY, "{\"Version\":\"2012-10-18\",\"Statement\":" ALLOW_STMT "}",
                "Invalid Version");
    parse_fails(POLICY_IDENTITY, "{\"Version\":2012,\"Statement\":" ALLOW_STMT "}",
                "Version must be a string");
    parse_fails(POLICY_IDENTITY, "{\"Id\":[],\"Statement\":" ALLOW_STMT "}", "Id must be a string");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":\"x\"}", "Statement must be an object or an array");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":null}", "Statement must be an object or an array");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":[]}", "Statement must not be empty");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":[" ALLOW_STMT ",7]}",
                "Statement[1]: Statement must be an object");
}

Test(policy_parse, statement_fields)
{
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\"," STMT_TAIL ",\"Foo\":1}}",
                "Statement: Unknown field \"Foo\"");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":[" ALLOW_STMT ",{\"effect\":\"Allow\"," STMT_TAIL "}]}",
                "Statement[1]: Unknown field \"effect\"");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\",\"Effect\":\"Deny\"," STMT_TAIL "}}",
                "Duplicate field \"Effect\"");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{" STMT_TAIL "}}", "Missing required field Effect");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"allow\"," STMT_TAIL "}}",
                "Effect must be \"Allow\" or \"Deny\"");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":true," STMT_TAIL "}}",
                "Effect must be \"Allow\" or \"Deny\"");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Sid\":1,\"Effect\":\"Allow\"," STMT_TAIL "}}",
                "Sid must be a string");
    parse_fails(POLICY_IDENTITY,
                "{\"Statement\":[{\"Sid\":\"A\",\"Effect\":\"Allow\"," STMT_TAIL
                "},{\"Sid\":\"B\",\"Effect\":"
                "\"Allow\"," STMT_TAIL "},{\"Sid\":\"A\",\"Effect\":\"Deny\"," STMT_TAIL "}]}",
                "Statement[2]: Duplicate Sid \"A\"");
}

Test(policy_parse, actions_and_resources)
{
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\",\"Resource\":\"*\"}}",
                "Missing required field Action");
    parse_fails(
        POLICY_IDENTITY,
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"NotAction\":\"*\",\"Resource\":\"*\"}}",
        "Action and NotAction cannot both be present");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":5,\"Resource\":\"*\"}}",
                "Action must be a string or an array of strings");
    parse_fails(
        POLICY_IDENTITY,
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":[\"kinesis:Get*\",null],\"Resource\":\"*\"}}",
        "Action must be a string or an array of strings");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\",\"NotAction\":[],\"Resource\":\"*\"}}",
                "NotAction must not be empty");
    const char *bad_actions[] = {
        "kinesis",           "", ":PutRecord", "kinesis:", "kin*:PutRecord", "kinesis:Put Record",
        "kinesis:Put/Record"};
    for (size_t i = 0; i < sizeof bad_actions / sizeof bad_actions[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"%s\",\"Resource\":\"*\"}}",
                 bad_actions[i]);
        parse_fails(POLICY_IDENTITY, json, "must be \"*\" or a service prefix and an action name");
    }

    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\"}}",
                "Missing required field Resource");
    parse_fails(
        POLICY_IDENTITY,
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\",\"NotResource\":\"*\"}}",
        "Resource and NotResource cannot both be present");
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":{}}}",
                "Resource must be a string or an array of strings");
    parse_fails(POLICY_IDENTITY,
                "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"stream/x\"}}",
                "Resource \"stream/x\" must be in ARN format or \"*\"");
    parse_fails(
        POLICY_IDENTITY,
        "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"NotResource\":[\"arn:aws:kinesis\"]}}",
        "NotResource \"arn:aws:kinesis\" must be in ARN format");
}

Test(policy_parse, principals)
{
    parse_fails(POLICY_IDENTITY, "{\"Statement\":{\"Effect\":\"Allow\"," PRINCIPAL "," STMT_TAIL "}}",
                "Has prohibited field Principal");
    parse_fails(POLICY_IDENTITY,
                "{\"Statement\":{\"Effect\":\"Allow\",\"NotPrincipal\":\"*\"," STMT_TAIL "}}",
                "Has prohibited field NotPrincipal");
    parse_fails(POLICY_RESOURCE, "{\"Statement\":" ALLOW_STMT "}", "Missing required field Principal");
    parse_fails(POLICY_RESOURCE,
                "{\"Statement\":{\"Effect\":\"Allow\"," PRINCIPAL ",\"NotPrincipal\":\"*\"," STMT_TAIL "}}",
                "Principal and NotPrincipal cannot both be present");
    const struct {
        const char *principal, *want;
    } bad[] = {
        {"\"alice\"", "Invalid principal in policy"},
        {"[\"*\"]", "Principal must be \"*\" or an object"},
        {"{}", "Principal must name at least one principal"},
        {"{\"Service\":\"firehose.amazonaws.com\"}", "Principal type \"Service\" is not supported"},
        {"{\"AWS\":\"*\",\"AWS\":\"*\"}", "Duplicate field \"AWS\""},
        {"{\"AWS\":5}", "Principal.AWS must be a string or an array of strings"},
        {"{\"AWS\":[]}", "Principal.AWS must not be empty"},
        {"{\"AWS\":\"12345\"}", "Invalid principal in policy: \"AWS\":\"12345\""},
        {"{\"AWS\":\"arn:aws:iam::1234:root\"}", "Invalid principal in policy"},
        {"{\"AWS\":\"arn:aws:iam::" ACCOUNT ":user/*\"}", "Invalid principal in policy"},
        {"{\"AWS\":\"arn:aws:s3::" ACCOUNT ":root\"}", "Invalid principal in policy"},
        {"{\"AWS\":\"arn:aws:iam:us-east-1:" ACCOUNT ":root\"}", "Invalid principal in policy"},
        {"{\"AWS\":\"arn:aws:iam::" ACCOUNT ":\"}", "Invalid principal in policy"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":%s," STMT_TAIL "}}",
                 bad[i].principal);
        parse_fails(POLICY_RESOURCE, json, bad[i].want);
    }
    /* accepted forms */
    policy_t *p =
        resource_policy("{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"*\",\"" ACCOUNT
                        "\",\"arn:aws:iam::" ACCOUNT ":root\",\"arn:aws-cn:iam::" OTHER
                        ":role/r\",\"arn:aws:sts::" OTHER ":assumed-role/r/s\"]}," STMT_TAIL "}}");
    policy_free(p);
}

Test(policy_parse, conditions)
{
    const struct {
        const char *condition, *want;
    } bad[] = {
        {"[]", "Condition must be an object"},
        {"{\"StringEquals\":\"x\"}", "must map to an object of condition keys"},
        {"{\"StringEquals\":{}}", "must map to an object of condition keys"},
        {"{\"NumericLessThan\":{\"aws:PrincipalAccount\":\"1\"}}",
         "Condition operator \"NumericLessThan\" is not"},
        {"{\"stringequals\":{\"aws:PrincipalAccount\":\"1\"}}", "Condition operator \"stringequals\" is not"},
        {"{\"IfExists\":{\"aws:PrincipalAccount\":\"1\"}}", "Condition operator \"IfExists\" is not"},
        {"{\"ForAnyValue:StringEquals\":{\"aws:PrincipalAccount\":\"1\"}}", "single-valued"},
        {"{\"Null\":{\"aws:SourceIp\":\"true\"}}", "Condition operator \"Null\" is not supported"},
        {"{\"StringEquals\":{\"aws:username\":\"bob\"}}", "Condition key \"aws:username\" is not supported"},
        {"{\"IpAddress\":{\"aws:PrincipalAccount\":\"1\"}}", "cannot be used with key aws:PrincipalAccount"},
        {"{\"ArnLike\":{\"aws:PrincipalAccount\":\"1\"}}", "cannot be used with key aws:PrincipalAccount"},
        {"{\"StringEquals\":{\"aws:SourceIp\":\"1.2.3.4\"}}", "cannot be used with key aws:SourceIp"},
        {"{\"Bool\":{\"aws:PrincipalArn\":\"true\"}}", "cannot be used with key aws:PrincipalArn"},
        {"{\"StringEquals\":{\"aws:PrincipalAccount\":[]}}", "must not be empty"},
        {"{\"StringEquals\":{\"aws:PrincipalAccount\":1}}", "must be a string or an array of strings"},
        {"{\"StringEquals\":{\"aws:PrincipalAccount\":\"1\",\"AWS:PRINCIPALACCOUNT\":\"2\"}}",
         "Duplicate condition key"},
        {"{\"Bool\":{\"aws:SecureTransport\":\"yes\"}}", "values must be \"true\" or \"false\""},
        {"{\"Bool\":{\"aws:SecureTransport\":[true,1]}}", "values must be \"true\" or \"false\""},
        {"{\"Bool\":{\"aws:SecureTransport\":[]}}", "must not be empty"},
        {"{\"IpAddress\":{\"aws:SourceIp\":\"10.0.0.0/33\"}}", "invalid IP address or CIDR \"10.0.0.0/33\""},
        {"{\"IpAddress\":{\"aws:SourceIp\":\"10.0.0/8\"}}", "invalid IP address or CIDR"},
        {"{\"IpAddress\":{\"aws:SourceIp\":\"::1/129\"}}", "invalid IP address or CIDR"},
        {"{\"IpAddress\":{\"aws:SourceIp\":\"10.0.0.0/\"}}", "invalid IP address or CIDR"},
        {"{\"IpAddress\":{\"aws:SourceIp\":\"/8\"}}", "invalid IP address or CIDR"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"Statement\":{\"Effect\":\"Allow\"," STMT_TAIL ",\"Condition\":%s}}",
                 bad[i].condition);
        parse_fails(POLICY_IDENTITY, json, bad[i].want);
    }
    /* an empty Condition is no condition */
    policy_t *p = identity("{\"Statement\":{\"Effect\":\"Allow\"," STMT_TAIL ",\"Condition\":{}}}");
    policy_request_t req = request("kinesis:PutRecord", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    policy_free(p);
}

/* Builds {"Statement":[s, s, ...]} with n copies, or an Action list of n entries. */
static char *repeat_document(size_t statements, size_t actions)
{
    size_t cap = 256 + statements * 128 + actions * 32;
    char *s = malloc(cap);
    cr_assert_not_null(s);
    size_t len = (size_t)snprintf(s, cap, "{\"Statement\":[");
    for (size_t i = 0; i < statements; i++) {
        len += (size_t)snprintf(s + len, cap - len, "%s{\"Effect\":\"Allow\",\"Action\":[", i ? "," : "");
        for (size_t j = 0; j < actions; j++) {
            len += (size_t)snprintf(s + len, cap - len, "%s\"kinesis:Op%zu\"", j ? "," : "", j);
        }
        len += (size_t)snprintf(s + len, cap - len, "],\"Resource\":\"*\"}");
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

Test(policy_parse, limits)
{
    char *doc = repeat_document(POLICY_MAX_STATEMENTS, 1);
    policy_t *p = identity(doc);
    cr_assert_eq(policy_statement_count(p), POLICY_MAX_STATEMENTS);
    policy_free(p);
    free(doc);
    doc = repeat_document(POLICY_MAX_STATEMENTS + 1, 1);
    parse_fails(POLICY_IDENTITY, doc, "more than 100 statements");
    free(doc);

    doc = repeat_document(1, POLICY_MAX_LIST);
    p = identity(doc);
    policy_request_t req = request("kinesis:op99", STREAM_ARN);
    cr_assert_eq(decide1(p, &req), POLICY_ALLOW);
    policy_free(p);
    free(doc);
    doc = repeat_document(1, POLICY_MAX_LIST + 1);
    parse_fails(POLICY_IDENTITY, doc, "Action has more than 100 entries");
    free(doc);

    /* sizes: padded with whitespace, which counts */
    const char *base = "{\"Statement\":" ALLOW_STMT "}";
    size_t sizes[] = {POLICY_MAX_RESOURCE_BYTES, POLICY_MAX_RESOURCE_BYTES + 1, POLICY_MAX_IDENTITY_BYTES,
                      POLICY_MAX_IDENTITY_BYTES + 1};
    for (size_t i = 0; i < 4; i++) {
        char *big = malloc(sizes[i] + 1);
        cr_assert_not_null(big);
        memset(big, ' ', sizes[i]);
        memcpy(big, base, strlen(base));
        big[sizes[i]] = '\0';
        char err[POLICY_ERR_MAX];
        int rc = policy_parse(POLICY_IDENTITY, big, sizes[i], &p, err, sizeof err);
        cr_assert_eq(rc, sizes[i] <= POLICY_MAX_IDENTITY_BYTES ? 0 : -EINVAL, "size %zu: %s", sizes[i], err);
        policy_free(p);
        rc = policy_parse(POLICY_RESOURCE, big, sizes[i], &p, err, sizeof err);
        cr_assert_eq(rc, -EINVAL);
        cr_assert(strstr(err, sizes[i] <= POLICY_MAX_RESOURCE_BYTES ? "Missing required field Principal"
                                                                    : "Policy document is too large") != NULL,
                  "size %zu: %s", sizes[i], err);
        free(big);
    }

    /* a repeated condition operator, then too many condition pairs */
    size_t cap = 8192;
    char *cond = malloc(cap);
    cr_assert_not_null(cond);
    size_t len =
        (size_t)snprintf(cond, cap, "{\"Statement\":{\"Effect\":\"Allow\"," STMT_TAIL ",\"Condition\":{");
    for (int i = 0; i < 101; i++) {
        len += (size_t)snprintf(cond + len, cap - len, "%s\"StringLike%s\":{\"aws:PrincipalArn\":\"%d\"}",
                                i ? "," : "", i % 2 ? "IfExists" : "", i);
    }
    snprintf(cond + len, cap - len, "}}}");
    parse_fails(POLICY_IDENTITY, cond, "Duplicate condition operator");
    len = (size_t)snprintf(cond, cap, "{\"Statement\":{\"Effect\":\"Allow\"," STMT_TAIL ",\"Condition\":{");
    const char *ops[] = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"};
    for (int o = 0; o < 4; o++) {
        len += (size_t)snprintf(cond + len, cap - len, "%s\"%s\":{", o ? "," : "", ops[o]);
        for (int k = 0; k < 26; k++) {
            len += (size_t)snprintf(cond + len, cap - len, "%s\"aws:PrincipalArn%c\":\"x\"", k ? "," : "",
                                    'a' + k);
        }
        len += (size_t)snprintf(cond + len, cap - len, "}");
    }
    snprintf(cond + len, cap - len, "}}}");
    parse_fails(POLICY_IDENTITY, cond, "more than 100 operator/key pairs");
    free(cond);
}

Test(policy_parse, error_buffer_handling)
{
    const char *bad = "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\"}}";
    char small[8];
    policy_t *p = (policy_t *)1;
    cr_assert_eq(policy_parse(POLICY_IDENTITY, bad, strlen(bad), &p, small, sizeof small), -EINVAL);
    cr_assert_null(p);
    cr_assert_eq(strlen(small), sizeof small - 1);
    cr_assert_eq(policy_parse(POLICY_IDENTITY, bad, strlen(bad), &p, NULL, 0), -EINVAL);

    /* long and non-ASCII values are shortened and made printable in messages */
    char json[600];
    char name[300];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    name[0] = '\xc3';
    name[1] = '\xa9';
    snprintf(json, sizeof json, "{\"Statement\":" ALLOW_STMT ",\"%s\":1}", name);
    char err[POLICY_ERR_MAX];
    cr_assert_eq(policy_parse(POLICY_IDENTITY, json, strlen(json), &p, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "Unknown field \"??xxx") != NULL, "%s", err);
    cr_assert(strstr(err, "x...\"") != NULL, "%s", err);
    cr_assert_lt(strlen(err), 100);
}
