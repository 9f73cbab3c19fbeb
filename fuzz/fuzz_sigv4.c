/*
 * fuzz_sigv4: the SigV4 parser and canonicalisation on arbitrary input. The input is split at the first two
 * '\n' into an Authorization header value, a request target (path and query) and a body; the request also
 * carries x-amz-date and host headers. Whatever parses is verified with a fixed secret, which builds the
 * canonical request from the fuzzed target and signed-header list.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl1 = memchr(p, '\n', size);
    const char *auth = p, *target = "/", *body = "";
    size_t auth_len = size, target_len = 1, body_len = 0;
    if (nl1 != NULL) {
        auth_len = (size_t)(nl1 - p);
        target = nl1 + 1;
        target_len = size - auth_len - 1;
        const char *nl2 = memchr(target, '\n', target_len);
        if (nl2 != NULL) {
            body = nl2 + 1;
            body_len = (size_t)(p + size - body);
            target_len = (size_t)(nl2 - target);
        }
    }
    sigv4_header_t headers[4] = {
        {"authorization", 13, auth, auth_len},
        {"x-amz-date", 10, "20150830T123600Z", 16},
        {"host", 4, "example.amazonaws.com", 21},
        {"my-header", 9, body, body_len < 64 ? body_len : 64},
    };
    sigv4_request_t req = {"POST", 4, target, target_len, headers, 4, "example.amazonaws.com", 21, body, body_len};
    sigv4_auth_t parsed;
    char msg[512];
    if (sigv4_parse(&req, &parsed, msg, sizeof msg) == KERR_NONE) {
        int64_t now;
        sigv4_parse_amz_date("20150830T123600Z", 16, &now);
        sigv4_verify(&req, &parsed, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "service", now, msg,
                     sizeof msg);
    }
    /* the query form too, with the input as the whole target */
    sigv4_header_t host[1] = {{"host", 4, "example.amazonaws.com", 21}};
    sigv4_request_t q = {"GET", 3, p, size, host, 1, NULL, 0, "", 0};
    if (sigv4_parse(&q, &parsed, msg, sizeof msg) == KERR_NONE) {
        sigv4_verify(&q, &parsed, "secret", "us-east-1", "kinesis", 1440936960000, msg, sizeof msg);
    }
    return 0;
}
