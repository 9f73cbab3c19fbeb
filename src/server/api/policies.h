/* api/policies: the resource-policy operations (see policies.c). */
#ifndef EDDY_SERVER_API_POLICIES_H
#define EDDY_SERVER_API_POLICIES_H

#include "server/api/api.h"

void op_put_resource_policy(api_call_t *c);
void op_get_resource_policy(api_call_t *c);
void op_delete_resource_policy(api_call_t *c);

#endif
