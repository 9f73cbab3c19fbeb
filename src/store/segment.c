/* segment: encode and decode segment headers and frames (format in segment.h). */
#include "store/segment.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32c.h"

_Static_assert(SEG_HEADER_SIZE == 24, "segment header size is part of the format");
_Static_assert(SEG_FRAME_HEADER == 32, "frame header size is part of the format");

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

void seg_encode_header(unsigned char out[SEG_HEADER_SIZE], uint64_t first_index)
{
    memcpy(out, SEG_MAGIC, 8);
    put64(out + 8, first_index);
    put32(out + 16, crc32c(out, 16));
    put32(out + 20, 0);
}

bool seg_decode_header(const unsigned char in[SEG_HEADER_SIZE], uint64_t *first_index)
{
    if (memcmp(in, SEG_MAGIC, 8) != 0 || get32(in + 16) != crc32c(in, 16)) {
        return false;
    }
    *first_index = get64(in + 8);
    return true;
}

void seg_encode_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, const char *pk, size_t pk_len,
                      const void *data, size_t data_len)
{
    size_t len = seg_frame_size(pk_len, data_len);
    put32(out, (uint32_t)len);
    put64(out + 8, index);
    put64(out + 16, (uint64_t)arrival_ms);
    put16(out + 24, (uint16_t)pk_len);
    put16(out + 26, 0);
    put32(out + 28, (uint32_t)data_len);
    memcpy(out + 32, pk, pk_len);
    if (data_len > 0) {
        memcpy(out + 32 + pk_len, data, data_len);
    }
    put32(out + 4, crc32c(out + 8, len - 8));
}

bool seg_peek_frame(const unsigned char *p, size_t avail, uint32_t *frame_len, uint64_t *index)
{
    if (avail < 16) {
        return false;
    }
    *frame_len = get32(p);
    *index = get64(p + 8);
    return true;
}

seg_status_t seg_decode_frame(const unsigned char *p, size_t avail, uint64_t expected_index, seg_record_t *rec,
                              size_t *len)
{
    if (avail < SEG_FRAME_HEADER) {
        return SEG_INCOMPLETE;
    }
    uint32_t frame_len = get32(p);
    uint16_t pk_len = get16(p + 24);
    uint32_t data_len = get32(p + 28);
    if (frame_len < SEG_FRAME_HEADER || pk_len == 0 || pk_len > SEG_MAX_PK ||
        (uint64_t)frame_len != (uint64_t)SEG_FRAME_HEADER + pk_len + data_len) {
        return SEG_BAD_LENGTH;
    }
    if (frame_len > avail) {
        return SEG_INCOMPLETE;
    }
    if (get32(p + 4) != crc32c(p + 8, frame_len - 8)) {
        return SEG_BAD_CRC;
    }
    if (get16(p + 26) != 0) {
        return SEG_BAD_FLAGS;
    }
    uint64_t index = get64(p + 8);
    if (expected_index != UINT64_MAX && index != expected_index) {
        return SEG_BAD_INDEX;
    }
    rec->index = index;
    rec->arrival_ms = (int64_t)get64(p + 16);
    rec->pk = (const char *)p + 32;
    rec->pk_len = pk_len;
    rec->data = p + 32 + pk_len;
    rec->data_len = data_len;
    *len = frame_len;
    return SEG_OK;
}

void seg_file_name(uint64_t first_index, char out[32])
{
    snprintf(out, 32, "%020" PRIu64 ".seg", first_index);
}
