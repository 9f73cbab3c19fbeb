/*
 * policy: IAM-style policy documents for Kinesis: parsing, wildcard matching, and the allow/deny decision.
 * A pure module: no I/O, no locks, no logging; the server decides where policies come from.
 *
 * Grammar (the subset of the IAM policy language that Kinesis authorisation needs):
 *   { "Version": "2012-10-17" | "2008-10-17",         optional
 *     "Id": string,                                     optional, ignored
 *     "Statement": statement | [statement, ...] }       1 .. POLICY_MAX_STATEMENTS statements
 *   statement:
 *   { "Sid": string,                                    optional; unique within the policy
 *     "Effect": "Allow" | "Deny",                       case-sensitive
 *     "Action" | "NotAction": pattern | [pattern, ...]  exactly one; "*" or "vendor:Name", e.g. kinesis:Get*
 *     "Resource" | "NotResource": ...                   exactly one; "*" or an ARN pattern
 *     "Principal" | "NotPrincipal": principal           resource policies only, and required there
 *     "Condition": { operator: { key: value(s) } } }    optional, the subset below
 *   principal: "*" | { "AWS": id | [id, ...] } where id is "*", a 12-digit account id,
 *              "arn:PARTITION:iam::ACCOUNT:root" (both mean every principal of that account), or an
 *              "arn:PARTITION:iam::ACCOUNT:user/NAME" / role/... / sts assumed-role ARN (that one principal,
 *              compared exactly). Other principal types (Service, Federated, CanonicalUser) are refused.
 *              NotPrincipal matches every caller its list does not match.
 * Element names are case-sensitive; unknown or repeated elements are errors. Every list holds 1 ..
 * POLICY_MAX_LIST entries. Policy variables (${aws:username}) are not expanded: "${" is literal text.
 *
 * Matching: '*' matches any run of bytes (also across ':' and '/'), '?' exactly one byte (stream, consumer
 * and user names are ASCII). Actions compare ASCII case-insensitively, resources and principal ARNs
 * case-sensitively. policy_match runs in O(len(pattern) * len(value)) at worst, no recursion.
 *
 * Conditions (the documented subset; anything else is refused at parse time with a message naming it):
 *   keys (names case-insensitive)   operators
 *   aws:PrincipalAccount            StringEquals StringNotEquals StringEqualsIgnoreCase
 *                                   StringNotEqualsIgnoreCase StringLike StringNotLike
 *   aws:PrincipalArn                the String* operators above, and
 *                                   ArnEquals ArnNotEquals ArnLike ArnNotLike
 *   aws:SourceIp                    IpAddress NotIpAddress (IPv4 / IPv6 address or CIDR)
 *   aws:SecureTransport             Bool ("true" / "false", string or JSON boolean)
 * Every operator may carry the IfExists suffix. ForAnyValue: / ForAllValues: and the Null operator are not
 * supported (all four keys are single-valued). Semantics as IAM: operators, and keys within an operator, are
 * ANDed; several values of one key are ORed (a negated operator is true when no value matches). A key
 * missing from the request (source_ip NULL or unparsable, principal strings NULL or empty) makes the
 * condition false, except for negated and ...IfExists operators, where it is true.
 *
 * Evaluation rule (policy_evaluate):
 *   1. A statement applies to a request when its Action/NotAction, Resource/NotResource and
 *      Principal/NotPrincipal (if present) match and all of its conditions hold.
 *   2. If any applicable statement of any given policy (identity or resource) has Effect Deny, the result
 *      is POLICY_DENY_EXPLICIT.
 *   3. Otherwise, if an applicable Allow statement exists in an identity policy or in the resource policy
 *      (whose Principal names the caller), the result is POLICY_ALLOW.
 *   4. Otherwise POLICY_DENY_IMPLICIT.
 * The order of policies and statements does not change the decision. The reported statement is the first
 * deciding one, looking at the identity policies in the order given, then at the resource policy.
 * Note: unlike AWS's cross-account rule (which needs an allow on both sides), an allow from the resource
 * policy alone is enough here, for any principal it names.
 *
 * Threads: a parsed policy is immutable; any number of threads may evaluate it at once. policy_evaluate and
 * policy_match allocate nothing and take no locks.
 */
#ifndef EDDY_SERVER_POLICY_H
#define EDDY_SERVER_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_MAX_IDENTITY_BYTES 65536 /* size of an identity policy document, whitespace included */
#define POLICY_MAX_RESOURCE_BYTES 20480 /* size of a resource policy document (Kinesis: 20 KiB) */
#define POLICY_MAX_STATEMENTS 100
/* Entries of each Action, Resource, principal and condition value list; also (operator, key) condition
 * pairs per statement. */
#define POLICY_MAX_LIST 100
#define POLICY_ERR_MAX 256 /* an error buffer of this size never truncates a message's essentials */

typedef struct policy policy_t;

typedef enum policy_kind {
    POLICY_IDENTITY, /* attached to an access key: Principal / NotPrincipal are prohibited */
    POLICY_RESOURCE, /* attached to a stream or consumer: every statement needs Principal or NotPrincipal */
} policy_kind_t;

typedef enum policy_decision {
    POLICY_ALLOW,
    POLICY_DENY_EXPLICIT,
    POLICY_DENY_IMPLICIT,
} policy_decision_t;

/* The request being authorised. All strings are borrowed for the duration of the call. */
typedef struct policy_request {
    const char *account_id;    /* the caller's 12-digit account id */
    const char *principal_arn; /* the caller, e.g. arn:aws:iam::123456789012:user/alice (or :root) */
    const char *action;        /* e.g. "kinesis:PutRecord" */
    const char *resource;      /* e.g. "arn:aws:kinesis:us-east-1:123456789012:stream/orders" */
    const char *source_ip;     /* textual IPv4/IPv6 address for aws:SourceIp; NULL when unknown */
    bool secure_transport;     /* aws:SecureTransport: the request came over TLS */
} policy_request_t;

/* Which statement decided (for logs). */
typedef struct policy_reason {
    const policy_t *policy; /* the deciding policy (borrowed from the caller's arguments); NULL for an
                             * implicit deny */
    size_t statement;       /* 0-based index of the statement within that policy */
    const char *sid;        /* its Sid, or NULL; a view valid while that policy lives */
} policy_reason_t;

/* Parses a policy document of len bytes (need not be NUL-terminated; json is borrowed). On success
 * returns 0 and stores a new policy in *out (owned by the caller: policy_free). On failure *out is NULL and
 * the return is -EINVAL with a message for a MalformedPolicyDocument / InvalidArgumentException reply
 * written to err (errlen bytes, always NUL-terminated when errlen > 0), or -ENOMEM ("Out of memory"). */
int policy_parse(policy_kind_t kind, const char *json, size_t len, policy_t **out, char *err, size_t errlen);

/* Frees p (NULL is fine). No evaluation may be running on it. */
void policy_free(policy_t *p);

/* Kind and number of statements of a parsed policy. */
policy_kind_t policy_kind(const policy_t *p);
size_t policy_statement_count(const policy_t *p);

/* Decides req (rule in the top comment). identity: n borrowed policies (may be NULL when n is 0), normally
 * parsed as POLICY_IDENTITY; resource: the stream's or consumer's policy, or NULL. reason may be NULL. */
policy_decision_t policy_evaluate(const policy_t *const *identity, size_t n, const policy_t *resource,
                                  const policy_request_t *req, policy_reason_t *reason);

/* Glob match of the whole value: '*' any run of bytes, '?' one byte, everything else literal; ASCII
 * case-insensitive when case_insensitive. Both strings are borrowed and NUL-terminated. */
bool policy_match(const char *pattern, const char *value, bool case_insensitive);

/* "Allow", "Deny (explicit)", "Deny (implicit)": for logs. */
const char *policy_decision_name(policy_decision_t d);

#endif
