/* kinesis_errors: the error table (see kinesis_errors.h). Statuses are the ones AWS documents. */
#include "common/kinesis_errors.h"

#include <string.h>

static const kerr_info_t table[KERR_COUNT_] = {
    [KERR_NONE] = {KERR_NONE, "", 200, false},
    [KERR_VALIDATION] = {KERR_VALIDATION, "ValidationException", 400, false},
    [KERR_SERIALIZATION] = {KERR_SERIALIZATION, "SerializationException", 400, false},
    [KERR_UNKNOWN_OPERATION] = {KERR_UNKNOWN_OPERATION, "UnknownOperationException", 400, false},
    [KERR_INVALID_ARGUMENT] = {KERR_INVALID_ARGUMENT, "InvalidArgumentException", 400, false},
    [KERR_RESOURCE_NOT_FOUND] = {KERR_RESOURCE_NOT_FOUND, "ResourceNotFoundException", 400, false},
    [KERR_RESOURCE_IN_USE] = {KERR_RESOURCE_IN_USE, "ResourceInUseException", 400, false},
    [KERR_LIMIT_EXCEEDED] = {KERR_LIMIT_EXCEEDED, "LimitExceededException", 400, true},
    [KERR_PROVISIONED_THROUGHPUT_EXCEEDED] = {KERR_PROVISIONED_THROUGHPUT_EXCEEDED,
                                              "ProvisionedThroughputExceededException", 400, true},
    [KERR_EXPIRED_ITERATOR] = {KERR_EXPIRED_ITERATOR, "ExpiredIteratorException", 400, false},
    [KERR_EXPIRED_NEXT_TOKEN] = {KERR_EXPIRED_NEXT_TOKEN, "ExpiredNextTokenException", 400, false},
    [KERR_ACCESS_DENIED] = {KERR_ACCESS_DENIED, "AccessDeniedException", 400, false},
    [KERR_KMS_DISABLED] = {KERR_KMS_DISABLED, "KMSDisabledException", 400, false},
    [KERR_KMS_INVALID_STATE] = {KERR_KMS_INVALID_STATE, "KMSInvalidStateException", 400, false},
    [KERR_KMS_ACCESS_DENIED] = {KERR_KMS_ACCESS_DENIED, "KMSAccessDeniedException", 400, false},
    [KERR_KMS_NOT_FOUND] = {KERR_KMS_NOT_FOUND, "KMSNotFoundException", 400, false},
    [KERR_KMS_OPT_IN_REQUIRED] = {KERR_KMS_OPT_IN_REQUIRED, "KMSOptInRequired", 400, false},
    [KERR_KMS_THROTTLING] = {KERR_KMS_THROTTLING, "KMSThrottlingException", 400, true},
    [KERR_INTERNAL_FAILURE] = {KERR_INTERNAL_FAILURE, "InternalFailure", 500, true},
    [KERR_SERVICE_UNAVAILABLE] = {KERR_SERVICE_UNAVAILABLE, "ServiceUnavailable", 503, true},
    [KERR_MISSING_AUTHENTICATION_TOKEN] = {KERR_MISSING_AUTHENTICATION_TOKEN,
                                           "MissingAuthenticationTokenException", 403, false},
    [KERR_INCOMPLETE_SIGNATURE] = {KERR_INCOMPLETE_SIGNATURE, "IncompleteSignatureException", 400, false},
    [KERR_INVALID_SIGNATURE] = {KERR_INVALID_SIGNATURE, "InvalidSignatureException", 403, false},
    [KERR_UNRECOGNIZED_CLIENT] = {KERR_UNRECOGNIZED_CLIENT, "UnrecognizedClientException", 400, false},
    [KERR_EXPIRED_TOKEN] = {KERR_EXPIRED_TOKEN, "ExpiredTokenException", 403, false},
    [KERR_REQUEST_ENTITY_TOO_LARGE] = {KERR_REQUEST_ENTITY_TOO_LARGE, "RequestEntityTooLarge", 413, false},
};

const kerr_info_t *kerr_info(kerr_t code)
{
    if ((int)code < 0 || code >= KERR_COUNT_) {
        return &table[KERR_INTERNAL_FAILURE];
    }
    return &table[code];
}

const kerr_info_t *kerr_by_type(const char *type, size_t len)
{
    const char *hash = memchr(type, '#', len);
    if (hash != NULL) {
        len -= (size_t)(hash + 1 - type);
        type = hash + 1;
    }
    for (int i = 1; i < KERR_COUNT_; i++) {
        if (strlen(table[i].type) == len && memcmp(table[i].type, type, len) == 0) {
            return &table[i];
        }
    }
    return NULL;
}
