/*
 * api/policies: PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy on streams and consumers. The
 * policy is checked with the policy engine (policy.h: a resource policy, at most 20 KiB) and stored as
 * sent; protocol.c evaluates it with the caller's key policies on every authenticated request.
 */
#include <string.h>

#include "server/api/policies.h"
#include "server/api/tags.h"
#include "server/policy.h"

void op_put_resource_policy(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_resource(c, &con);
    if (s == NULL) {
        return;
    }
    const char *doc = api_str(c, "Policy");
    policy_t *parsed = NULL;
    char why[POLICY_ERR_MAX];
    if (policy_parse(POLICY_RESOURCE, doc, strlen(doc), &parsed, why, sizeof why) != 0) {
        api_error(c, KERR_INVALID_ARGUMENT, "Invalid policy: %s", why);
        return;
    }
    policy_free(parsed);
    if (catalog_set_policy(c->srv->catalog, s, con, doc) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
        return;
    }
    api_ok_empty(c);
}

void op_get_resource_policy(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_resource(c, &con);
    if (s == NULL) {
        return;
    }
    const char *doc = con != NULL ? con->policy : s->policy;
    jsonw_key(&c->w, "Policy");
    jsonw_str(&c->w, doc != NULL ? doc : "{}");
    api_ok(c);
}

void op_delete_resource_policy(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_resource(c, &con);
    if (s == NULL) {
        return;
    }
    if ((con != NULL ? con->policy : s->policy) == NULL) {
        api_error(c, KERR_RESOURCE_NOT_FOUND, "No resource policy found for resource: %s.", api_str(c, "ResourceARN"));
        return;
    }
    if (catalog_set_policy(c->srv->catalog, s, con, NULL) != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
        return;
    }
    api_ok_empty(c);
}
