/* segment: encode and decode segment headers and frames, in clear, sealed and key frames (format in
 * segment.h). */
#include "store/segment.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32c.h"

_Static_assert(SEG_HEADER_SIZE == 24, "segment header size is part of the format");
_Static_assert(SEG_FRAME_HEADER == 32, "frame header size is part of the format");
_Static_assert(SEG_SEAL_OVERHEAD == 20, "sealed frame overhead is part of the format");
_Static_assert(SEG_KEY_BODY == 64, "key frame body size is part of the format");
_Static_assert(sizeof SEG_MAGIC == 9 && sizeof SEG_MAGIC_V1 == 9, "magic is 8 bytes");

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
    if ((memcmp(in, SEG_MAGIC, 8) != 0 && memcmp(in, SEG_MAGIC_V1, 8) != 0) ||
        get32(in + 16) != crc32c(in, 16)) {
        return false;
    }
    *first_index = get64(in + 8);
    return true;
}

int seg_header_version(const unsigned char in[SEG_HEADER_SIZE])
{
    return memcmp(in, SEG_MAGIC_V1, 8) == 0 ? 1 : 2;
}

/* The head shared by every kind of frame (the crc is written last, by finish). */
static void encode_head(unsigned char *out, size_t len, uint64_t index, int64_t arrival_ms, size_t pk_len,
                        uint16_t flags, size_t data_len)
{
    put32(out, (uint32_t)len);
    put64(out + 8, index);
    put64(out + 16, (uint64_t)arrival_ms);
    put16(out + 24, (uint16_t)pk_len);
    put16(out + 26, flags);
    put32(out + 28, (uint32_t)data_len);
}

static void finish(unsigned char *out, size_t len)
{
    put32(out + 4, crc32c(out + 8, len - 8));
}

/* A sealed record's nonce: index (8 bytes LE) || key serial (4 bytes LE). */
static void record_nonce(uint64_t index, uint32_t key_serial, unsigned char nonce[AEAD_NONCE_BYTES])
{
    put64(nonce, index);
    put32(nonce + 8, key_serial);
}

int seg_encode_sealed_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, uint32_t key_serial,
                            aead_key_t *key, const char *pk, size_t pk_len, const void *data, size_t data_len)
{
    size_t len = seg_sealed_frame_size(pk_len, data_len);
    encode_head(out, len, index, arrival_ms, pk_len, SEG_FLAG_SEALED, data_len);
    put32(out + 32, key_serial);
    unsigned char *body = out + 36;
    memcpy(body, pk, pk_len);
    if (data_len > 0) {
        memcpy(body + pk_len, data, data_len);
    }
    unsigned char nonce[AEAD_NONCE_BYTES];
    record_nonce(index, key_serial, nonce);
    int rc = aead_seal(key, nonce, out + 8, 28, body, pk_len + data_len, body, body + pk_len + data_len);
    if (rc != 0) {
        return rc;
    }
    finish(out, len);
    return 0;
}

int seg_open_frame(const seg_record_t *rec, const aead_key_t *key, unsigned char *plain, seg_record_t *out)
{
    const unsigned char *f = rec->frame;
    size_t n = (size_t)rec->pk_len + rec->data_len;
    unsigned char nonce[AEAD_NONCE_BYTES];
    record_nonce(rec->index, rec->key_serial, nonce);
    int rc = aead_open(key, nonce, f + 8, 28, f + 36, n, f + 36 + n, plain);
    if (rc != 0) {
        return rc;
    }
    *out = *rec;
    out->pk = (const char *)plain;
    out->data = plain + rec->pk_len;
    return 0;
}

size_t seg_key_aad(const char *id, size_t id_len, uint32_t key_serial, unsigned char *out)
{
    memcpy(out, id, id_len);
    put32(out + id_len, key_serial);
    return id_len + 4;
}

void seg_encode_key_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, const char *id,
                          size_t id_len, uint32_t key_serial, const unsigned char nonce[AEAD_NONCE_BYTES],
                          const unsigned char wrapped[AEAD_KEY_BYTES],
                          const unsigned char tag[AEAD_TAG_BYTES])
{
    size_t len = seg_key_frame_size(id_len);
    encode_head(out, len, index, arrival_ms, id_len, SEG_FLAG_KEY, SEG_KEY_BODY);
    unsigned char *p = out + 32;
    p += seg_key_aad(id, id_len, key_serial, p);
    memcpy(p, nonce, AEAD_NONCE_BYTES);
    memcpy(p + AEAD_NONCE_BYTES, wrapped, AEAD_KEY_BYTES);
    memcpy(p + AEAD_NONCE_BYTES + AEAD_KEY_BYTES, tag, AEAD_TAG_BYTES);
    finish(out, len);
}

void seg_key_frame_parts(const seg_record_t *rec, const unsigned char **aad, size_t *aad_len,
                         const unsigned char **nonce, const unsigned char **wrapped,
                         const unsigned char **tag)
{
    const unsigned char *p = rec->frame + 32;
    *aad = p;
    *aad_len = (size_t)rec->pk_len + 4;
    p += *aad_len;
    *nonce = p;
    *wrapped = p + AEAD_NONCE_BYTES;
    *tag = p + AEAD_NONCE_BYTES + AEAD_KEY_BYTES;
}

void seg_encode_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, const char *pk, size_t pk_len,
                      const void *data, size_t data_len)
{
    size_t len = seg_frame_size(pk_len, data_len);
    encode_head(out, len, index, arrival_ms, pk_len, 0, data_len);
    memcpy(out + 32, pk, pk_len);
    if (data_len > 0) {
        memcpy(out + 32 + pk_len, data, data_len);
    }
    finish(out, len);
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
    uint16_t flags = get16(p + 26);
    uint32_t data_len = get32(p + 28);
    /* the length rule depends on the kind; unknown flags are judged as a record in clear, then refused */
    uint64_t want = (uint64_t)SEG_FRAME_HEADER + pk_len + data_len;
    bool lengths_ok = pk_len >= 1 && pk_len <= SEG_MAX_PK;
    if (flags == SEG_FLAG_SEALED) {
        want += SEG_SEAL_OVERHEAD;
    } else if (flags == SEG_FLAG_KEY) {
        lengths_ok = pk_len >= 1 && pk_len <= SEG_KEY_ID_MAX && data_len == SEG_KEY_BODY;
    }
    if (frame_len < SEG_FRAME_HEADER || !lengths_ok || (uint64_t)frame_len != want) {
        return SEG_BAD_LENGTH;
    }
    if (frame_len > avail) {
        return SEG_INCOMPLETE;
    }
    if (get32(p + 4) != crc32c(p + 8, frame_len - 8)) {
        return SEG_BAD_CRC;
    }
    if (flags != 0 && flags != SEG_FLAG_SEALED && flags != SEG_FLAG_KEY) {
        return SEG_BAD_FLAGS;
    }
    uint64_t index = get64(p + 8);
    if (expected_index != UINT64_MAX && index != expected_index) {
        return SEG_BAD_INDEX;
    }
    rec->index = index;
    rec->arrival_ms = (int64_t)get64(p + 16);
    rec->pk_len = pk_len;
    rec->data_len = data_len;
    rec->flags = flags;
    rec->key_serial = 0;
    rec->frame = NULL;
    if (flags == 0) {
        rec->pk = (const char *)p + 32;
        rec->data = p + 32 + pk_len;
    } else if (flags == SEG_FLAG_SEALED) {
        rec->pk = NULL;
        rec->data = NULL;
        rec->key_serial = get32(p + 32);
        rec->frame = p;
    } else {
        rec->pk = (const char *)p + 32; /* the master key id */
        rec->data = NULL;
        rec->data_len = 0;
        rec->key_serial = get32(p + 32 + pk_len);
        rec->frame = p;
    }
    *len = frame_len;
    return SEG_OK;
}

void seg_file_name(uint64_t first_index, char out[32])
{
    snprintf(out, 32, "%020" PRIu64 ".seg", first_index);
}
