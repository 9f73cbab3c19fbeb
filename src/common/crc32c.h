/* crc32c: CRC-32C (Castagnoli), the checksum of every frame on disk. Backed by ISA-L (SSE4.2/PCLMUL). */
#ifndef EDDY_COMMON_CRC32C_H
#define EDDY_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Standard CRC-32C of n bytes ("123456789" -> 0xE3069283). Continue a running value with crc32c_extend. */
uint32_t crc32c(const void *data, size_t n);
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n);

#endif
