/*
 * protocol: the AWS JSON 1.1 protocol. Routes every HTTP request: health endpoints, then
 * POST with X-Amz-Target "Kinesis_20131202.<Op>" and Content-Type application/x-amz-json-1.1 (or
 * application/json) to the operation's handler after parsing and validating the body.
 */
#ifndef EDDY_SERVER_PROTOCOL_H
#define EDDY_SERVER_PROTOCOL_H

#include "server/http.h"

/* The http_handler_fn of the server; arg is the server_t. @thread loop */
void protocol_handle(http_request_t *req, void *arg);

#endif
