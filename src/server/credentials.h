/*
 * credentials: the access keys eddy accepts, read from the file named by --credentials (or `credentials` in
 * the config file), reloadable on SIGHUP.
 *
 * File format (JSON; the file should be readable by eddy's user only):
 *   {
 *     "keys": [
 *       {
 *         "access_key_id": "AKIAEXAMPLE",              required, 1..128 characters
 *         "secret_access_key": "wJalr...",             required
 *         "session_token": "IQoJb3...",                optional: requests must then carry it in
 *                                                      X-Amz-Security-Token
 *         "account_id": "123456789012",                optional, 12 digits (default: the server's)
 *         "expires": "2027-01-01T00:00:00Z",           optional: after it, ExpiredTokenException
 *         "policies": [ { "Version": "2012-10-17", "Statement": [ ... ] } ]
 *                                                      optional IAM-style identity policies (see
 *                                                      docs/SECURITY.md); none: the key may do anything
 *       }
 *     ]
 *   }
 * A set of credentials is immutable once loaded; a reload builds a new set and swaps it in (credentials_t is
 * reference counted so that requests being checked keep the set they started with).
 */
#ifndef EDDY_SERVER_CREDENTIALS_H
#define EDDY_SERVER_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct credential {
    char *key_id;
    char *secret;
    char *session_token; /* NULL when the key has none */
    char account_id[13];
    int64_t expires_ms; /* 0: never */
    char **policies;     /* identity policy documents (JSON text), as written in the file */
    struct policy **compiled; /* the same, parsed (policy.h) */
    size_t npolicies;
} credential_t;

typedef struct credentials credentials_t;

/* Loads a credentials file. NULL on failure, with the reason in err. default_account is used for keys
 * without account_id. */
credentials_t *credentials_load(const char *path, const char *default_account, char *err, size_t errlen);
/* Parses a file's contents (for tests). */
credentials_t *credentials_parse(const char *text, size_t len, const char *default_account, char *err,
                                 size_t errlen);
void credentials_ref(credentials_t *c);
void credentials_unref(credentials_t *c);
size_t credentials_count(const credentials_t *c);
/* The key with this id, or NULL. Valid while the caller holds a reference to c. */
const credential_t *credentials_find(const credentials_t *c, const char *key_id);

#endif
