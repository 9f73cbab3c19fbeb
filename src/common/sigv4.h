/*
 * sigv4: AWS Signature Version 4 (AWS4-HMAC-SHA256): verification (the server), in the Authorization header
 * form and in the pre-signed query-string form (X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date,
 * X-Amz-Expires, X-Amz-SignedHeaders, X-Amz-Signature), and signing in the header form (libeddy's client).
 * Both build the canonical request with the same code, so what the client signs is what the server checks.
 *
 * The algorithm (AWS General Reference, "Signature Version 4 signing process"):
 *   canonical request = METHOD \n canonical URI \n canonical query \n canonical headers \n
 *                       signed headers \n payload hash
 *   string to sign    = "AWS4-HMAC-SHA256" \n amz-date \n scope \n hex(SHA256(canonical request))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 * - canonical URI: the path with dot segments removed, every byte outside A-Z a-z 0-9 - _ . ~ / encoded as
 *   %XX (an already encoded path is encoded again, as for every service but S3);
 * - canonical query: name=value pairs decoded, re-encoded strictly, sorted by name then value (the
 *   signature parameter of the query form left out);
 * - canonical headers: the signed headers, lower-case, values trimmed with inner runs of spaces collapsed,
 *   repeated headers joined with ","; "host" and ":authority" (the JS SDK signs the HTTP/2 pseudo-header)
 *   come from the request's authority, "content-length" from the body when the server kept it apart;
 * - payload hash: hex(SHA256(body)), or x-amz-content-sha256 when present (which must then match the body,
 *   unless it is UNSIGNED-PAYLOAD); the query form uses UNSIGNED-PAYLOAD.
 * Signatures are compared in constant time. Signing keys are cached per thread (keyed by secret, date,
 * region and service).
 *
 * Everything here is pure: requests are described by views, nothing is kept. Any thread. Part of libeddy
 * as well as the server, so nothing here aborts: out of memory is -ENOMEM (or KERR_INTERNAL_FAILURE from
 * the verifier), and buffers only grow through buf_try_reserve.
 */
#ifndef EDDY_COMMON_SIGV4_H
#define EDDY_COMMON_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/kinesis_errors.h"

#define SIGV4_KEY_ID_MAX 128
#define SIGV4_MAX_SIGNED_HEADERS 64
#define SIGV4_CLOCK_SKEW_MS (15 * 60 * 1000)

/* A request header: name in lower case; views. */
typedef struct sigv4_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sigv4_header_t;

/* The request as received (views, borrowed for the call). */
typedef struct sigv4_request {
    const char *method;
    size_t method_len;
    const char *target; /* path and query, as on the request line */
    size_t target_len;
    const sigv4_header_t *headers;
    size_t nheaders;
    const char *authority; /* Host header or HTTP/2 :authority (used when no "host" header is listed) */
    size_t authority_len;
    const void *body;
    size_t body_len;
} sigv4_request_t;

/* What the Authorization header (or the query) says. Views point into the request. */
typedef struct sigv4_auth {
    bool presigned;
    char key_id[SIGV4_KEY_ID_MAX + 1];
    char date[9];       /* scope date, YYYYMMDD */
    char region[64];
    char service[64];
    char amz_date[17];  /* YYYYMMDDTHHMMSSZ */
    int64_t expires_s;  /* query form: X-Amz-Expires */
    const char *signed_headers; /* "host;x-amz-date", as sent */
    size_t signed_headers_len;
    unsigned char signature[32];
} sigv4_auth_t;

/* Finds the signature in the request: KERR_NONE, KERR_MISSING_AUTHENTICATION_TOKEN when there is none,
 * KERR_INCOMPLETE_SIGNATURE (with AWS's message in msg) when it is malformed. */
kerr_t sigv4_parse(const sigv4_request_t *req, sigv4_auth_t *auth, char *msg, size_t msglen);

/* Checks a parsed signature with the key's secret: the scope (region, service, date), the time (within
 * SIGV4_CLOCK_SKEW_MS of now, or before the query form's expiry), the payload hash, then the signature.
 * Returns KERR_NONE or the error AWS would return (message in msg); KERR_INTERNAL_FAILURE when out of
 * memory. Logs nothing: on KERR_INVALID_SIGNATURE the caller may log sigv4_verified_canonical_request. */
kerr_t sigv4_verify(const sigv4_request_t *req, const sigv4_auth_t *auth, const char *secret, const char *region,
                    const char *service, int64_t now_ms, char *msg, size_t msglen);

/* ---- signing ---- */

/* What to sign (all borrowed for the call; strings NUL-terminated). */
typedef struct sigv4_sign_input {
    const char *method;       /* "POST" */
    const char *path;         /* the path as it goes on the request line ("/"); NULL: "/" */
    const char *query;        /* the query string without '?' ("a=1&b=2"), as sent; NULL or "": none */
    const sigv4_header_t *headers; /* the headers to sign, as sent (names in any case; repeated names are
                                    * joined with ','); "host" must be among them */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body (sigv4_payload_hash), or "UNSIGNED-PAYLOAD" */
    const char *key_id;       /* "AKIDEXAMPLE" */
    const char *secret;
    const char *session_token; /* NULL or "": none; otherwise signed as x-amz-security-token unless that header
                                * is already among headers (the request must carry it) */
    const char *region;       /* "us-east-1" */
    const char *service;      /* "kinesis" */
    const char *amz_date;     /* "20150830T123600Z" (sigv4_format_amz_date); signed as x-amz-date unless that
                               * header is already among headers (the request must carry it) */
} sigv4_sign_input_t;

/* Signs a request in the header form: appends the Authorization header's value to authorization
 * ("AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex").
 * Signed headers are the input's (lower-cased, sorted, each once) plus x-amz-date and x-amz-security-token
 * as described above. Returns 0, -EINVAL (a malformed amz_date, a missing field, no host header, more than
 * SIGV4_MAX_SIGNED_HEADERS) or -ENOMEM; on failure authorization is left as it was. */
int sigv4_sign(const sigv4_sign_input_t *in, buf_t *authorization);
/* hex(SHA256(body)) into out; 0, or -ENOMEM (OpenSSL could not allocate). */
int sigv4_payload_hash(const void *body, size_t len, char out[65]);
/* Formats epoch milliseconds as "YYYYMMDDTHHMMSSZ" (UTC). */
void sigv4_format_amz_date(int64_t ms, char out[17]);

/* ---- the pieces, for tests and diagnostics ---- */

/* Each appends to out and returns 0 or -ENOMEM (out then holds a truncated text). */
int sigv4_canonical_request(const sigv4_request_t *req, const sigv4_auth_t *auth, const char *payload_hash,
                            buf_t *out);
int sigv4_string_to_sign(const sigv4_auth_t *auth, const char *canonical_request, size_t len, buf_t *out);
/* The canonical request sigv4_verify computes for req (the same payload hash rule), for a debug log. */
int sigv4_verified_canonical_request(const sigv4_request_t *req, const sigv4_auth_t *auth, buf_t *out);
/* Returns 0 or -ENOMEM (a secret longer than 1 KiB needs a heap copy). */
int sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                      unsigned char key[32]);
/* Parses "YYYYMMDDTHHMMSSZ" into epoch milliseconds; false when malformed. */
bool sigv4_parse_amz_date(const char *s, size_t len, int64_t *ms);

#endif
