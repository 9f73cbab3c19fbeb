/* Unit tests for the Kinesis error table. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/kinesis_errors.h"

Test(kinesis_errors, every_row_is_complete_and_in_place)
{
    for (int i = 1; i < KERR_COUNT_; i++) {
        const kerr_info_t *info = kerr_info((kerr_t)i);
        cr_assert_eq(info->code, (kerr_t)i, "row %d is out of place", i);
        cr_assert(info->type != NULL && strlen(info->type) > 0, "row %d has no type", i);
        cr_assert(info->http_status >= 400 && info->http_status < 600);
        cr_assert_eq(kerr_by_type(info->type, strlen(info->type)), info);
    }
}

Test(kinesis_errors, statuses_and_retry_policy)
{
    cr_assert_eq(kerr_info(KERR_RESOURCE_NOT_FOUND)->http_status, 400);
    cr_assert_not(kerr_info(KERR_RESOURCE_NOT_FOUND)->retriable);
    cr_assert_eq(kerr_info(KERR_INTERNAL_FAILURE)->http_status, 500);
    cr_assert(kerr_info(KERR_INTERNAL_FAILURE)->retriable);
    cr_assert(kerr_info(KERR_PROVISIONED_THROUGHPUT_EXCEEDED)->retriable);
    cr_assert(kerr_info(KERR_LIMIT_EXCEEDED)->retriable);
    cr_assert_eq(kerr_info(KERR_MISSING_AUTHENTICATION_TOKEN)->http_status, 403);
}

Test(kinesis_errors, lookup_accepts_namespaced_types)
{
    const char *t = "com.amazonaws.kinesis.v20131202#ResourceInUseException";
    cr_assert_eq(kerr_by_type(t, strlen(t))->code, KERR_RESOURCE_IN_USE);
    cr_assert_null(kerr_by_type("NoSuchThing", 11));
}
