/*
 * sigv4 tests: AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite: credentials
 * AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service "service", time
 * 20150830T123600Z) and the signing-key example of the AWS General Reference, then the checks eddy adds:
 * time window, scope, payload hash, query form, malformed headers. Then signing: sigv4_sign must produce the
 * suite's exact Authorization headers, and what it signs must verify (and stop verifying when changed).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "common/sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define WHEN "20150830T123600Z"

typedef struct vector {
    const char *name;
    const char *method;
    const char *target;
    const char *headers[8][2]; /* lower-case names; NULL-terminated */
    const char *body;
    const char *signed_headers;
    const char *signature;
} vector_t;

/* From the AWS SigV4 test suite (the .sreq requests and their .authz signatures). */
static const vector_t suite[] = {
    {"get-vanilla", "GET", "/", {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}}, "", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"post-vanilla", "POST", "/", {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}}, "", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1",
     {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}}, "", "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"post-x-www-form-urlencoded", "POST", "/",
     {{"content-type", "application/x-www-form-urlencoded"}, {"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}},
     "Param1=value1", "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"get-slash-dot-slash (normalize-path)", "GET", "/./", {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}},
     "", "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-relative (normalize-path)", "GET", "/example/..", {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}},
     "", "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-space (normalize-path)", "GET", "/example space/", {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}},
     "", "host;x-amz-date", "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}}, "", "host;x-amz-date",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8", "GET", "/\xe1\x88\xb4", {{"host", "example.amazonaws.com"}, {"x-amz-date", WHEN}}, "",
     "host;x-amz-date", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-header-value-trim", "GET", "/",
     {{"host", "example.amazonaws.com"}, {"my-header1", " value1"}, {"my-header2", " \"a   b   c\""},
      {"x-amz-date", WHEN}},
     "", "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
};

typedef struct built {
    sigv4_header_t headers[10];
    char authorization[512];
    sigv4_request_t req;
} built_t;

static void build(built_t *b, const vector_t *v, const char *signature)
{
    memset(b, 0, sizeof *b);
    size_t n = 0;
    for (; n < 8 && v->headers[n][0] != NULL; n++) {
        b->headers[n] = (sigv4_header_t){v->headers[n][0], strlen(v->headers[n][0]), v->headers[n][1],
                                         strlen(v->headers[n][1])};
    }
    snprintf(b->authorization, sizeof b->authorization,
             "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             v->signed_headers, signature);
    b->headers[n++] = (sigv4_header_t){"authorization", 13, b->authorization, strlen(b->authorization)};
    b->req = (sigv4_request_t){v->method, strlen(v->method), v->target, strlen(v->target), b->headers, n,
                               NULL,     0,                 v->body,   strlen(v->body)};
}

static int64_t when_ms(void)
{
    int64_t ms;
    cr_assert(sigv4_parse_amz_date(WHEN, 16, &ms));
    return ms;
}

Test(sigv4, signing_key_example_from_the_general_reference)
{
    unsigned char key[32];
    char hex[65];
    sigv4_signing_key(SECRET, "20150830", "us-east-1", "iam", key);
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    }
    cr_assert_str_eq(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

Test(sigv4, the_aws_test_suite_verifies)
{
    for (size_t i = 0; i < sizeof suite / sizeof suite[0]; i++) {
        built_t b;
        build(&b, &suite[i], suite[i].signature);
        sigv4_auth_t auth;
        char msg[512];
        cr_assert_eq(sigv4_parse(&b.req, &auth, msg, sizeof msg), KERR_NONE, "%s: %s", suite[i].name, msg);
        kerr_t e = sigv4_verify(&b.req, &auth, SECRET, "us-east-1", "service", when_ms(), msg, sizeof msg);
        if (e != KERR_NONE) {
            buf_t creq = BUF_INIT;
            sigv4_canonical_request(&b.req, &auth, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                    &creq);
            cr_assert_fail("%s: %s\n%s", suite[i].name, msg, buf_cstr(&creq));
        }
    }
}

Test(sigv4, canonical_request_of_get_vanilla_query_order)
{
    built_t b;
    build(&b, &suite[2], suite[2].signature);
    sigv4_auth_t auth;
    char msg[256];
    cr_assert_eq(sigv4_parse(&b.req, &auth, msg, sizeof msg), KERR_NONE);
    buf_t out = BUF_INIT;
    sigv4_canonical_request(&b.req, &auth, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &out);
    cr_assert_str_eq(buf_cstr(&out), "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
                                     "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    buf_dispose(&out);
}

static kerr_t verify_vanilla(const char *secret, const char *region, int64_t now_ms, const char *signature,
                             char *msg, size_t msglen)
{
    built_t b;
    build(&b, &suite[1], signature);
    sigv4_auth_t auth;
    kerr_t e = sigv4_parse(&b.req, &auth, msg, msglen);
    return e != KERR_NONE ? e : sigv4_verify(&b.req, &auth, secret, region, "service", now_ms, msg, msglen);
}

Test(sigv4, wrong_secret_region_service_or_signature)
{
    char msg[512];
    cr_assert_eq(verify_vanilla("wrong", "us-east-1", when_ms(), suite[1].signature, msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
    cr_assert(strstr(msg, "does not match") != NULL);
    cr_assert_eq(verify_vanilla(SECRET, "eu-west-1", when_ms(), suite[1].signature, msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
    cr_assert(strstr(msg, "valid region") != NULL);
    char flipped[65];
    snprintf(flipped, sizeof flipped, "%s", suite[1].signature);
    flipped[10] = flipped[10] == '0' ? '1' : '0';
    cr_assert_eq(verify_vanilla(SECRET, "us-east-1", when_ms(), flipped, msg, sizeof msg), KERR_INVALID_SIGNATURE);
}

Test(sigv4, fifteen_minutes_either_way)
{
    char msg[512];
    int64_t t = when_ms();
    cr_assert_eq(verify_vanilla(SECRET, "us-east-1", t + 15 * 60 * 1000, suite[1].signature, msg, sizeof msg),
                 KERR_NONE);
    cr_assert_eq(verify_vanilla(SECRET, "us-east-1", t + 15 * 60 * 1000 + 1, suite[1].signature, msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
    cr_assert(strstr(msg, "Signature expired: 20150830T123600Z is now earlier than") != NULL, "%s", msg);
    cr_assert_eq(verify_vanilla(SECRET, "us-east-1", t - 16 * 60 * 1000, suite[1].signature, msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
    cr_assert(strstr(msg, "not yet current") != NULL, "%s", msg);
}

Test(sigv4, payload_hash_header_must_match_the_body)
{
    vector_t v = suite[3];
    v.headers[3][0] = "x-amz-content-sha256";
    v.headers[3][1] = "0000000000000000000000000000000000000000000000000000000000000000";
    built_t b;
    build(&b, &v, v.signature);
    sigv4_auth_t auth;
    char msg[512];
    cr_assert_eq(sigv4_parse(&b.req, &auth, msg, sizeof msg), KERR_NONE);
    cr_assert_eq(sigv4_verify(&b.req, &auth, SECRET, "us-east-1", "service", when_ms(), msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
    cr_assert(strstr(msg, "x-amz-content-sha256") != NULL);
}

Test(sigv4, malformed_and_missing_authorization)
{
    const char *bad[] = {
        "",
        "AWS4-HMAC-SHA1 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host, "
        "Signature=00",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015083/us-east-1/service/aws4_request, SignedHeaders=host, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws5_request, SignedHeaders=host, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf3z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sigv4_header_t h[2] = {{"x-amz-date", 10, WHEN, 16}, {"authorization", 13, bad[i], strlen(bad[i])}};
        sigv4_request_t req = {"GET", 3, "/", 1, h, 2, NULL, 0, "", 0};
        sigv4_auth_t auth;
        char msg[512];
        cr_assert_eq(sigv4_parse(&req, &auth, msg, sizeof msg), KERR_INCOMPLETE_SIGNATURE, "case %zu", i);
        cr_assert(msg[0] != '\0');
    }
    sigv4_header_t none[1] = {{"x-amz-date", 10, WHEN, 16}};
    sigv4_request_t req = {"GET", 3, "/", 1, none, 1, NULL, 0, "", 0};
    sigv4_auth_t auth;
    char msg[512];
    cr_assert_eq(sigv4_parse(&req, &auth, msg, sizeof msg), KERR_MISSING_AUTHENTICATION_TOKEN);
    /* no date header at all */
    const char *ok = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                     "SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    sigv4_header_t only_auth[1] = {{"authorization", 13, ok, strlen(ok)}};
    sigv4_request_t req2 = {"GET", 3, "/", 1, only_auth, 1, NULL, 0, "", 0};
    cr_assert_eq(sigv4_parse(&req2, &auth, msg, sizeof msg), KERR_INCOMPLETE_SIGNATURE);
    cr_assert(strstr(msg, "'X-Amz-Date' or a 'Date' header") != NULL);
}

/* The pre-signed form: the signature over the query parameters (UNSIGNED-PAYLOAD) is computed here with
 * OpenSSL from the module's canonical request, then the request verifies, expires after X-Amz-Expires and
 * fails when a parameter is changed. */
static void presigned_target(const char *base, const char *signature, char *out, size_t len)
{
    snprintf(out, len, "%s&X-Amz-Signature=%s", base, signature);
}

Test(sigv4, presigned_query_form)
{
    const char *base = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2F"
                       "service%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host";
    sigv4_header_t h[1] = {{"host", 4, "example.amazonaws.com", 21}};
    char target[1024];
    presigned_target(base, "0000000000000000000000000000000000000000000000000000000000000000", target, sizeof target);
    sigv4_request_t req = {"GET", 3, target, strlen(target), h, 1, NULL, 0, "", 0};
    sigv4_auth_t auth;
    char msg[512];
    cr_assert_eq(sigv4_parse(&req, &auth, msg, sizeof msg), KERR_NONE, "%s", msg);
    cr_assert(auth.presigned);
    buf_t creq = BUF_INIT, sts = BUF_INIT;
    sigv4_canonical_request(&req, &auth, "UNSIGNED-PAYLOAD", &creq);
    cr_assert(strstr(buf_cstr(&creq), "X-Amz-Signature") == NULL, "the signature is not signed");
    sigv4_string_to_sign(&auth, creq.data, creq.len, &sts);
    unsigned char key[32], sig[32];
    unsigned int sig_len = 32;
    sigv4_signing_key(SECRET, "20150830", "us-east-1", "service", key);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)sts.data, sts.len, sig, &sig_len);
    char hex[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", sig[i]);
    }
    buf_dispose(&creq);
    buf_dispose(&sts);
    presigned_target(base, hex, target, sizeof target);
    req.target_len = strlen(target);
    cr_assert_eq(sigv4_parse(&req, &auth, msg, sizeof msg), KERR_NONE);
    cr_assert_eq(sigv4_verify(&req, &auth, SECRET, "us-east-1", "service", when_ms() + 30 * 1000, msg, sizeof msg),
                 KERR_NONE, "%s", msg);
    cr_assert_eq(sigv4_verify(&req, &auth, SECRET, "us-east-1", "service", when_ms() + 61 * 1000, msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
    cr_assert(strstr(msg, "expired") != NULL, "%s", msg);
    /* another value for a signed parameter: the signature no longer matches */
    char *expires = strstr(target, "X-Amz-Expires=60");
    expires[15] = '9';
    cr_assert_eq(sigv4_parse(&req, &auth, msg, sizeof msg), KERR_NONE);
    cr_assert_eq(sigv4_verify(&req, &auth, SECRET, "us-east-1", "service", when_ms() + 30 * 1000, msg, sizeof msg),
                 KERR_INVALID_SIGNATURE);
}

/* ---- signing ---- */

#define SUITE_AUTHZ "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
#define STS_TOKEN                                                                                                  \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUu" \
    "wthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQc" \
    "HNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/o" \
    "LxBA=="

typedef struct sign_vector {
    const char *name;
    const char *method;
    const char *path;
    const char *query;
    const char *headers[6][2]; /* as the suite's .req sends them (names in their case); NULL-terminated */
    const char *body;
    const char *token;         /* signed as x-amz-security-token by sigv4_sign */
    const char *authorization; /* the suite's .authz */
} sign_vector_t;

#define HOST {"Host", "example.amazonaws.com"}
#define DATE {"X-Amz-Date", WHEN}

/* The suite's requests (.req) and Authorization headers (.authz); the multi-line header case is left out
 * (obsolete line folding is the HTTP parser's business, not the signer's). */
static const sign_vector_t sign_suite[] = {
    {"get-vanilla", "GET", "/", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-empty-query-key", "GET", "/", "Param1=value1", {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-order-key", "GET", "/", "Param1=value2&Param1=Value1", {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
    {"get-vanilla-query-order-value", "GET", "/", "Param1=value2&Param1=value1", {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
    {"get-vanilla-query-order-encoded", "GET", "/", "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", {HOST, DATE}, "",
     NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
    {"get-vanilla-query-unreserved", "GET", "/",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query", "GET", "/", "\xe1\x88\xb4=bar", {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-vanilla-with-session-token", "GET", "/", NULL, {HOST, DATE}, "",
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                 "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
    {"get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", NULL,
     {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8", "GET", "/\xe1\x88\xb4", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-header-key-duplicate", "GET", "/", NULL,
     {HOST, {"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;my-header1;x-amz-date, "
                 "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order", "GET", "/", NULL,
     {HOST, {"My-Header1", "value4"}, {"My-Header1", "value1"}, {"My-Header1", "value3"}, {"My-Header1", "value2"},
      DATE},
     "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;my-header1;x-amz-date, "
                 "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-trim", "GET", "/", NULL,
     {HOST, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
                 "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"post-vanilla", "POST", "/", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query", "POST", "/", "Param1=value1", {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-header-key-sort", "POST", "/", NULL, {HOST, {"My-Header1", "value1"}, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;my-header1;x-amz-date, "
                 "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case", "POST", "/", NULL, {HOST, {"My-Header1", "VALUE1"}, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;my-header1;x-amz-date, "
                 "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    {"post-x-www-form-urlencoded", "POST", "/", NULL,
     {{"Content-Type", "application/x-www-form-urlencoded"}, HOST, DATE}, "Param1=value1", NULL,
     SUITE_AUTHZ "SignedHeaders=content-type;host;x-amz-date, "
                 "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"post-x-www-form-urlencoded-parameters", "POST", "/", NULL,
     {{"Content-Type", "application/x-www-form-urlencoded; charset=utf8"}, HOST, DATE}, "Param1=value1", NULL,
     SUITE_AUTHZ "SignedHeaders=content-type;host;x-amz-date, "
                 "Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
    {"post-sts-header-before", "POST", "/", NULL, {HOST, DATE}, "", STS_TOKEN,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                 "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
    {"get-relative", "GET", "/example/..", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-relative-relative", "GET", "/example1/example2/../..", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slash", "GET", "//", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slash-dot-slash", "GET", "/./", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slash-pointless-dot", "GET", "/./example", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
    {"get-slashes", "GET", "//example//", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
    {"get-space", "GET", "/example space/", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-special-character", "GET", "/example/$delete", NULL, {HOST, DATE}, "", NULL,
     SUITE_AUTHZ "SignedHeaders=host;x-amz-date, Signature=a853c9b21b528b19643d00910d35b83a10c366a10833ceefb45edd6c80e40f27"},
};

typedef struct sign_built {
    sigv4_header_t headers[8];
    size_t nheaders;
    char payload_hash[65];
    sigv4_sign_input_t in;
} sign_built_t;

static void sign_build(sign_built_t *b, const sign_vector_t *v)
{
    memset(b, 0, sizeof *b);
    for (; b->nheaders < 6 && v->headers[b->nheaders][0] != NULL; b->nheaders++) {
        const char *name = v->headers[b->nheaders][0], *value = v->headers[b->nheaders][1];
        b->headers[b->nheaders] = (sigv4_header_t){name, strlen(name), value, strlen(value)};
    }
    cr_assert_eq(sigv4_payload_hash(v->body, strlen(v->body), b->payload_hash), 0);
    b->in = (sigv4_sign_input_t){.method = v->method,
                                 .path = v->path,
                                 .query = v->query,
                                 .headers = b->headers,
                                 .nheaders = b->nheaders,
                                 .payload_hash = b->payload_hash,
                                 .key_id = "AKIDEXAMPLE",
                                 .secret = SECRET,
                                 .session_token = v->token,
                                 .region = "us-east-1",
                                 .service = "service",
                                 .amz_date = WHEN};
}

Test(sigv4_sign, produces_the_aws_test_suite_authorization_headers)
{
    for (size_t i = 0; i < sizeof sign_suite / sizeof sign_suite[0]; i++) {
        sign_built_t b;
        sign_build(&b, &sign_suite[i]);
        buf_t authz = BUF_INIT;
        cr_assert_eq(sigv4_sign(&b.in, &authz), 0, "%s", sign_suite[i].name);
        cr_expect_str_eq(buf_cstr(&authz), sign_suite[i].authorization, "%s", sign_suite[i].name);
        buf_dispose(&authz);
    }
}

Test(sigv4_sign, adds_x_amz_date_when_the_headers_lack_it)
{
    sign_built_t b;
    sign_build(&b, &sign_suite[0]);
    b.in.nheaders = 1; /* Host only: the signer signs x-amz-date from amz_date */
    buf_t authz = BUF_INIT;
    cr_assert_eq(sigv4_sign(&b.in, &authz), 0);
    cr_assert_str_eq(buf_cstr(&authz), sign_suite[0].authorization);
    buf_dispose(&authz);
}

Test(sigv4_sign, appends_to_what_the_buffer_holds)
{
    sign_built_t b;
    sign_build(&b, &sign_suite[0]);
    buf_t authz = BUF_INIT;
    buf_puts(&authz, "Authorization: ");
    cr_assert_eq(sigv4_sign(&b.in, &authz), 0);
    cr_assert(strncmp(buf_cstr(&authz), "Authorization: AWS4-HMAC-SHA256 ", 32) == 0);
    cr_assert_str_eq(authz.data + 15, sign_suite[0].authorization);
    buf_dispose(&authz);
}

Test(sigv4_sign, rejects_bad_input_and_leaves_the_buffer_alone)
{
    sign_built_t b;
    buf_t authz = BUF_INIT;
    sign_build(&b, &sign_suite[0]);
    b.in.amz_date = "2015-08-30T12:36:00Z";
    cr_assert_eq(sigv4_sign(&b.in, &authz), -EINVAL);
    sign_build(&b, &sign_suite[0]);
    b.in.headers = b.headers + 1; /* X-Amz-Date only: no host */
    b.in.nheaders = 1;
    cr_assert_eq(sigv4_sign(&b.in, &authz), -EINVAL);
    sign_build(&b, &sign_suite[0]);
    b.in.key_id = "";
    cr_assert_eq(sigv4_sign(&b.in, &authz), -EINVAL);
    sign_build(&b, &sign_suite[0]);
    b.headers[0].name = "Ho;st";
    b.headers[0].name_len = 5;
    cr_assert_eq(sigv4_sign(&b.in, &authz), -EINVAL);
    cr_assert_eq(authz.len, 0);
    buf_dispose(&authz);
}

/* Sign, then hand the request to the verifier as the server would see it (lower-case names, the
 * Authorization header added): every suite request verifies, and a changed byte anywhere does not. */
static kerr_t verify_signed(const sign_built_t *b, const char *authorization, const char *body, const char *secret,
                            char *msg, size_t msglen)
{
    sigv4_header_t h[10];
    char names[10][64];
    size_t n = 0;
    for (size_t i = 0; i < b->in.nheaders; i++, n++) {
        size_t len = b->in.headers[i].name_len;
        for (size_t k = 0; k < len; k++) {
            char c = b->in.headers[i].name[k];
            names[n][k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        h[n] = (sigv4_header_t){names[n], len, b->in.headers[i].value, b->in.headers[i].value_len};
    }
    if (b->in.session_token != NULL) {
        h[n++] = (sigv4_header_t){"x-amz-security-token", 20, b->in.session_token, strlen(b->in.session_token)};
    }
    h[n++] = (sigv4_header_t){"authorization", 13, authorization, strlen(authorization)};
    char target[512];
    snprintf(target, sizeof target, "%s%s%s", b->in.path, b->in.query ? "?" : "", b->in.query ? b->in.query : "");
    sigv4_request_t req = {b->in.method, strlen(b->in.method), target, strlen(target), h, n, NULL, 0, body,
                           strlen(body)};
    sigv4_auth_t auth;
    kerr_t e = sigv4_parse(&req, &auth, msg, msglen);
    return e != KERR_NONE ? e : sigv4_verify(&req, &auth, secret, "us-east-1", "service", when_ms(), msg, msglen);
}

Test(sigv4_sign, sign_then_verify_round_trip)
{
    for (size_t i = 0; i < sizeof sign_suite / sizeof sign_suite[0]; i++) {
        sign_built_t b;
        sign_build(&b, &sign_suite[i]);
        buf_t authz = BUF_INIT;
        cr_assert_eq(sigv4_sign(&b.in, &authz), 0);
        char msg[512];
        cr_expect_eq(verify_signed(&b, buf_cstr(&authz), sign_suite[i].body, SECRET, msg, sizeof msg), KERR_NONE,
                     "%s: %s", sign_suite[i].name, msg);
        cr_expect_eq(verify_signed(&b, buf_cstr(&authz), sign_suite[i].body, "not the secret", msg, sizeof msg),
                     KERR_INVALID_SIGNATURE, "%s", sign_suite[i].name);
        cr_expect_eq(verify_signed(&b, buf_cstr(&authz), "tampered body", SECRET, msg, sizeof msg),
                     KERR_INVALID_SIGNATURE, "%s", sign_suite[i].name);
        buf_dispose(&authz);
    }
}

/* What libeddy's client sends: a Kinesis JSON request to a host with a port, with a session token. */
Test(sigv4_sign, a_kinesis_request_round_trip)
{
    const char *body = "{\"StreamName\":\"s\",\"Data\":\"AAEC\",\"PartitionKey\":\"k\"}";
    sigv4_header_t h[4] = {
        {"Content-Type", 12, "application/x-amz-json-1.1", 26},
        {"Host", 4, "127.0.0.1:4567", 14},
        {"X-Amz-Date", 10, WHEN, 16},
        {"X-Amz-Target", 12, "Kinesis_20131202.PutRecord", 26},
    };
    sign_built_t b;
    memset(&b, 0, sizeof b);
    memcpy(b.headers, h, sizeof h);
    cr_assert_eq(sigv4_payload_hash(body, strlen(body), b.payload_hash), 0);
    b.in = (sigv4_sign_input_t){"POST", "/", NULL, b.headers, 4, b.payload_hash, "AKIDEXAMPLE", SECRET, "tok/en+=",
                                "us-east-1", "service", WHEN};
    buf_t authz = BUF_INIT;
    cr_assert_eq(sigv4_sign(&b.in, &authz), 0);
    cr_assert(strstr(buf_cstr(&authz), "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,") !=
              NULL, "%s", authz.data);
    char msg[512];
    cr_assert_eq(verify_signed(&b, authz.data, body, SECRET, msg, sizeof msg), KERR_NONE, "%s", msg);
    b.in.session_token = "another token"; /* the request carries a token the signature did not cover */
    cr_assert_eq(verify_signed(&b, authz.data, body, SECRET, msg, sizeof msg), KERR_INVALID_SIGNATURE);
    buf_dispose(&authz);
}
