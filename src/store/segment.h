/*
 * segment: the on-disk format of shard log segments.
 *
 * A shard's records live in append-only segment files named by the index of their first record
 * (00000000000000000000.seg). All integers are little-endian, written byte by byte (no struct copies).
 *
 * File header (24 bytes):
 *   offset size field
 *   0      8    magic "EDDYSEG1"
 *   8      8    first_index: index of the first record in this file
 *   16     4    crc32c of bytes 0..15
 *   20     4    reserved, 0
 *
 * Frame (one record), starting at offset 24 and packed one after the other:
 *   offset size field
 *   0      4    frame_len: total length of this frame in bytes, header included (>= 32)
 *   4      4    crc32c of bytes 8 .. frame_len-1
 *   8      8    index: record index in the shard (previous frame's index + 1)
 *   16     8    arrival_ms: arrival time, epoch milliseconds (never below the previous frame's)
 *   24     2    pk_len: partition key length in bytes (1..1024)
 *   26     2    flags: 0 (reserved for encryption and compression)
 *   28     4    data_len: payload length in bytes
 *   32     ...  partition key bytes, then data bytes
 *
 * Validity rule: a frame is valid when frame_len == 32 + pk_len + data_len, frame_len fits in the file,
 * the crc matches, flags is 0 and index is the expected next index. The header is valid when the magic
 * and crc match and first_index equals the number in the file name.
 *
 * Recovery rule: the log ends at the first invalid frame. A torn tail (a crash during a write) is cut off
 * by truncating the file there; anything after it in this or later segments is not served. With
 * --durability fsync a record is acknowledged only after the bytes up to its frame end were fdatasync'd,
 * so the truncation never removes an acknowledged record.
 */
#ifndef EDDY_STORE_SEGMENT_H
#define EDDY_STORE_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_MAGIC "EDDYSEG1"
#define SEG_HEADER_SIZE 24
#define SEG_FRAME_HEADER 32
#define SEG_MAX_PK 1024

typedef struct seg_record {
    uint64_t index;
    int64_t arrival_ms;
    const char *pk; /* view into the frame */
    uint16_t pk_len;
    const unsigned char *data; /* view into the frame */
    uint32_t data_len;
} seg_record_t;

typedef enum seg_status {
    SEG_OK = 0,
    SEG_INCOMPLETE, /* fewer bytes than the frame needs: torn tail or end of buffer */
    SEG_BAD_LENGTH,
    SEG_BAD_CRC,
    SEG_BAD_INDEX,
    SEG_BAD_FLAGS,
} seg_status_t;

static inline size_t seg_frame_size(size_t pk_len, size_t data_len)
{
    return SEG_FRAME_HEADER + pk_len + data_len;
}

void seg_encode_header(unsigned char out[SEG_HEADER_SIZE], uint64_t first_index);
/* Returns true when the header is valid; sets *first_index. */
bool seg_decode_header(const unsigned char in[SEG_HEADER_SIZE], uint64_t *first_index);

/* Writes one frame into out (seg_frame_size bytes). */
void seg_encode_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, const char *pk, size_t pk_len,
                      const void *data, size_t data_len);
/* Decodes the frame at p (avail bytes available). expected_index is checked unless it is UINT64_MAX.
 * On SEG_OK, *len is the frame length and rec views into p. */
seg_status_t seg_decode_frame(const unsigned char *p, size_t avail, uint64_t expected_index, seg_record_t *rec,
                              size_t *len);
/* Reads only the frame length and index (no crc check): for skipping. Returns false if avail < 16. */
bool seg_peek_frame(const unsigned char *p, size_t avail, uint32_t *frame_len, uint64_t *index);

void seg_file_name(uint64_t first_index, char out[32]);

#endif
