/* crc32c: CRC-32C over ISA-L's crc32_iscsi (see crc32c.h). */
#include "common/crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n)
{
    /* crc32_iscsi works on the raw register: invert on the way in and out for the standard value. */
    uint32_t reg = ~crc;
    const unsigned char *p = data;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        reg = crc32_iscsi((unsigned char *)p, chunk, reg);
        p += chunk;
        n -= (size_t)chunk;
    }
    return ~reg;
}

uint32_t crc32c(const void *data, size_t n)
{
    return crc32c_extend(0, data, n);
}
