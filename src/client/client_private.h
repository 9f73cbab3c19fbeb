/*
 * client_private.h: the pieces of the Kinesis client (client.c) that its unit tests reach: the
 * configuration's fields, credential resolution, endpoint parsing, error replies and the retry policy.
 * Not installed; nothing outside src/client and tests/unit/client includes it.
 *
 * All functions here are pure or touch only their arguments (and, for the credentials, the file they are
 * told to read). None aborts: out of memory is EDDY_ERR_NOMEM.
 */
#ifndef EDDY_CLIENT_CLIENT_PRIVATE_H
#define EDDY_CLIENT_CLIENT_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/client.h"

typedef enum client_http2 {
    CLIENT_HTTP2_ON,              /* "true": HTTP/2 by ALPN on https:, HTTP/1.1 on http: */
    CLIENT_HTTP2_OFF,             /* "false": HTTP/1.1 */
    CLIENT_HTTP2_PRIOR_KNOWLEDGE, /* "prior-knowledge": HTTP/2 from the first byte, also cleartext */
} client_http2_t;

/* Every string is a heap copy owned by the configuration, or NULL when unset. */
typedef enum client_service {
    CLIENT_SERVICE_KINESIS,  /* "kinesis": Kinesis_20131202.*, application/x-amz-json-1.1 */
    CLIENT_SERVICE_DYNAMODB, /* "dynamodb": DynamoDB_20120810.*, application/x-amz-json-1.0 */
} client_service_t;

struct eddy_config {
    client_service_t service;
    char *endpoint;       /* NULL: https://<service>.<region>.amazonaws.com */
    bool endpoint_is_set; /* by eddy_config_set, not from the environment */
    char *region;   /* never NULL */
    /* credentials as set explicitly (eddy_config_set), and as the environment gave them; resolved in that
     * order, then the shared credentials file (client_resolve_credentials) */
    char *access_key_id, *secret_access_key, *session_token;
    char *env_access_key_id, *env_secret_access_key, *env_session_token;
    char *profile;          /* set, else AWS_PROFILE; NULL: "default" */
    char *credentials_file; /* set, else AWS_SHARED_CREDENTIALS_FILE; NULL: $HOME/.aws/credentials */
    client_http2_t http2;
    long max_connections;
    long request_timeout_ms;
    long connect_timeout_ms;
    long max_retries;
    long retry_base_ms;
    long retry_max_ms;
    bool verify_tls;
    char *ca_file;
    char *user_agent_suffix;
};

/* Resolved credentials; heap strings (token NULL when none). */
typedef struct client_credentials {
    char *key_id;
    char *secret;
    char *token;
    char source[320]; /* where they came from, for messages: "configuration", "environment", "FILE [profile]" */
} client_credentials_t;

/* Picks the credentials: explicit (access_key_id + secret_access_key) > environment (AWS_ACCESS_KEY_ID +
 * AWS_SECRET_ACCESS_KEY) > the shared credentials file's profile. Returns 0, EDDY_ERR_CREDENTIALS (why in
 * err: half a key pair, no file, no such profile, ...) or EDDY_ERR_NOMEM. */
int client_resolve_credentials(const eddy_config_t *cfg, client_credentials_t *out, char *err, size_t errlen);
void client_credentials_dispose(client_credentials_t *c);

/* Reads one profile of a shared credentials file (INI: "[name]" sections, "key = value" lines, '#' and ';'
 * comments; aws_access_key_id, aws_secret_access_key, aws_session_token). Returns 0, EDDY_ERR_CREDENTIALS
 * (unreadable file, no such profile, a key missing) or EDDY_ERR_NOMEM. */
int client_read_credentials_file(const char *path, const char *profile, client_credentials_t *out, char *err,
                                 size_t errlen);

/* An endpoint URL taken apart: "https://host:port/path". Strings are heap copies. */
typedef struct client_endpoint {
    bool https;
    char *authority; /* "host:port" as written (the Host header, which is signed) */
    char *path;      /* "/" when none */
    char *url;       /* the normalised URL requests go to ("http://127.0.0.1:4567/") */
    char *display;   /* what eddy_client_endpoint returns ("http://127.0.0.1:4567") */
} client_endpoint_t;

/* Returns 0, EDDY_ERR_INVALID (why in err) or EDDY_ERR_NOMEM. */
int client_parse_endpoint(const char *url, client_endpoint_t *out, char *err, size_t errlen);
void client_endpoint_dispose(client_endpoint_t *e);

/* Reads an error reply: the type from the body's "__type" (a "prefix#Type" keeps Type), else from the
 * x-amzn-ErrorType header value ("Type:http://..." keeps Type; may be NULL); the message from "message" or
 * "Message". Both outputs are NUL-terminated and truncated to their size ("" when absent). */
void client_parse_error(const char *body, size_t len, const char *header_type, char *type, size_t type_len,
                        char *message, size_t message_len);

/* Whether an AWS error reply is worth retrying: the Kinesis error table says so for its type, or the status
 * is 5xx or 429. */
bool client_error_retriable(int http_status, const char *type);

/* The backoff before retry number `retry` (0 for the first retry): uniformly random in
 * [0, min(max_ms, base_ms * 2^retry)] ("full jitter"). rng is a xorshift state (never 0). */
int64_t client_backoff_ms(long base_ms, long max_ms, int retry, uint64_t *rng);

#endif
