/* hashkey: the Kinesis hash key of a partition key: MD5 of its UTF-8 bytes as a big-endian 128-bit integer. */
#ifndef EDDY_COMMON_HASHKEY_H
#define EDDY_COMMON_HASHKEY_H

#include <stddef.h>

#include "common/u128.h"

u128 hashkey_of_partition_key(const char *pk, size_t len);

#endif
