/*
 * auth: who is calling. With credentials configured (--credentials FILE), every API request must carry a
 * valid AWS Signature Version 4 by one of the file's keys (sigv4.h); without them, eddy accepts any
 * well-formed request, which server_start allows only on a loopback address unless --insecure is given.
 *
 * Errors are AWS's: MissingAuthenticationTokenException (no signature), IncompleteSignatureException
 * (malformed), UnrecognizedClientException (unknown key or session token), ExpiredTokenException (the key's
 * expiry passed), InvalidSignatureException (wrong signature, scope, time or payload hash).
 */
#ifndef EDDY_SERVER_AUTH_H
#define EDDY_SERVER_AUTH_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "common/kinesis_errors.h"
#include "server/credentials.h"
#include "server/http.h"
#include "server/server.h"

/* The caller of an authenticated request (key NULL when authentication is off). Holds a reference to the
 * credentials set the key belongs to: release it with auth_principal_dispose. */
typedef struct auth_principal {
    credentials_t *set;
    const credential_t *key;
} auth_principal_t;

/* Sets up authentication from the configuration: loads --credentials, or checks that running without is
 * allowed (loopback address, or --insecure). Returns 0 or -errno with the reason in err. */
int auth_init(server_t *srv, char *err, size_t errlen);
/* Reloads the credentials file (SIGHUP). Keeps the old set when the new file is invalid. */
void auth_reload(server_t *srv);
void auth_dispose(server_t *srv);
bool auth_enabled(const server_t *srv);

/* Checks a request's signature. KERR_NONE (who filled in) or the error to reply with (msg filled in).
 * @thread loop */
kerr_t auth_check(server_t *srv, http_request_t *req, auth_principal_t *who, char *msg, size_t msglen);
void auth_principal_dispose(auth_principal_t *who);

/* Authentication of the observability endpoints (/metrics, the dashboard), which browsers and Prometheus
 * call without SigV4: HTTP Basic with an access key id as user name and its secret access key as password,
 * or a SigV4 signature. The key must also be allowed kinesis:ListStreams (its identity policies). Returns
 * true when the request may proceed (always, with authentication off); otherwise false with the reply's
 * status (401: missing or wrong credentials, send WWW-Authenticate; 403: not allowed) and message. */
bool auth_check_console(server_t *srv, http_request_t *req, int *status, char *msg, size_t msglen);

/* Authorization (after authentication and validation; input is the request object). The key's identity
 * policies (none: the key may do anything) and the resource policy of the stream or consumer the request
 * names are evaluated together (policy.h): an explicit Deny wins, then any Allow. The request's resource is
 * its ConsumerARN, ResourceARN, StreamARN or StreamName (GetRecords: the stream of its iterator), else "*".
 * Returns KERR_NONE or KERR_ACCESS_DENIED with AWS's message. Takes the catalog read lock itself. */
bool auth_needs_authorization(server_t *srv, const auth_principal_t *who);
kerr_t auth_authorize(server_t *srv, const auth_principal_t *who, const char *op, const cJSON *input,
                      bool secure_transport, char *msg, size_t msglen);

#endif
