/*
 * sigv4 tests: AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite: credentials
 * AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service "service", time
 * 20150830T123600Z) and the signing-key example of the AWS General Reference, then the checks eddy adds:
 * time window, scope, payload hash, query form, malformed headers.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "server/sigv4.h"

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
