/*
 * segment: the on-disk format of shard log segments (version 2; version 1 files are still read).
 *
 * A shard's records live in append-only segment files named by the index of their first record
 * (00000000000000000000.seg). All integers are little-endian, written byte by byte (no struct copies).
 *
 * File header (24 bytes):
 *   offset size field
 *   0      8    magic "EDDYSEG2" (version 2, written by this code) or "EDDYSEG1" (version 1: read only)
 *   8      8    first_index: index of the first record in this file
 *   16     4    crc32c of bytes 0..15
 *   20     4    reserved, 0
 *
 * Frames start at offset 24, packed one after the other. Every frame has this 32-byte head:
 *   offset size field
 *   0      4    frame_len: total length of this frame in bytes, head included
 *   4      4    crc32c of bytes 8 .. frame_len-1
 *   8      8    index: record index in the shard (previous record's index + 1)
 *   16     8    arrival_ms: arrival time, epoch milliseconds (never below the previous frame's)
 *   24     2    pk_len: partition key length in bytes (1..1024); key frame: key id length (1..64)
 *   26     2    flags: 0 = record in clear, 1 = SEALED record, 2 = KEY frame (version 2 only; others invalid)
 *   28     4    data_len: payload length in bytes; key frame: 64
 *
 * Record in clear (flags 0), frame_len = 32 + pk_len + data_len:
 *   32     ...  partition key bytes, then data bytes
 *
 * SEALED record (flags 1), frame_len = 32 + 4 + pk_len + data_len + 16; pk_len and data_len are the
 * lengths in clear:
 *   32     4    key_serial: which data key of this segment (a KEY frame earlier in the file) sealed it
 *   36     ...  AES-256-GCM ciphertext of the partition key followed by the data (pk_len + data_len bytes)
 *   end-16 16   GCM tag
 *   nonce = index (8 bytes LE) || key_serial (4 bytes LE); additional data = bytes 8..35 (index, arrival,
 *   lengths, flags, serial), so a sealed record cannot be moved, re-timed or re-keyed without detection.
 *   Both the partition key and the data are encrypted (as Kinesis does); lengths and times are not.
 *
 * KEY frame (flags 2), frame_len = 32 + id_len + 64: a data key for the SEALED records after it in this
 * file, wrapped by a master key of the key store (store/keystore.h). It holds no record: its index is the
 * index of the record that follows it, and the next frame expects that same index.
 *   32     id_len  master key id (ASCII)
 *   +0     4    key_serial: unique in the file, increasing
 *   +4     12   wrap nonce (random)
 *   +16    32   data key, AES-256-GCM encrypted under the master key
 *   +48    16   GCM tag; additional data = the master key id followed by key_serial (the 4 bytes above)
 *
 * Nonce rule (the shard log enforces it, shardlog.c): a data key seals only records of strictly increasing
 * index; the log makes a new data key (a new KEY frame) in each new segment, after every restart, and
 * whenever the next index is not above the last one it sealed (a failed write or sync that rewound the
 * log), so that no (data key, nonce) pair ever seals two records, even across crashes and truncations.
 *
 * Validity rule: a frame is valid when frame_len is the one its flags and lengths give and fits in the
 * file, the crc matches, flags is 0 (version 1) or 0, 1 or 2 (version 2), index is the expected next index
 * and arrival_ms is not below the previous frame's; a SEALED record's key_serial must name a KEY frame
 * earlier in the same file, and a KEY frame's serial must exceed the file's previous ones. The header is
 * valid when the magic and crc match and first_index equals the number in the file name. The crc is the
 * torn-write detector; the GCM tag is the authenticity check, verified on every read (a record that fails
 * it is an error, never served), not during recovery.
 *
 * Recovery rule: the log ends at the first invalid frame. A torn tail (a crash during a write) is cut off
 * by truncating the file there; anything after it in this or later segments is not served. With
 * --durability fsync a record is acknowledged only after the bytes up to its frame end were fdatasync'd,
 * so the truncation never removes an acknowledged record. A KEY frame whose master key the key store
 * does not hold, or that its master key does not unwrap, is not damage: the log refuses to open (naming
 * the key) rather than truncate.
 */
#ifndef EDDY_STORE_SEGMENT_H
#define EDDY_STORE_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/aead.h"

#define SEG_MAGIC "EDDYSEG2"
#define SEG_MAGIC_V1 "EDDYSEG1"
#define SEG_HEADER_SIZE 24
#define SEG_FRAME_HEADER 32
#define SEG_MAX_PK 1024

#define SEG_FLAG_SEALED 0x0001
#define SEG_FLAG_KEY 0x0002
#define SEG_SEAL_OVERHEAD (4 + AEAD_TAG_BYTES)
#define SEG_KEY_BODY (4 + AEAD_NONCE_BYTES + AEAD_KEY_BYTES + AEAD_TAG_BYTES)
#define SEG_KEY_ID_MAX 64

typedef struct seg_record {
    uint64_t index;
    int64_t arrival_ms;
    const char *pk; /* view into the frame (NULL in a SEALED frame until opened; key frame: master key id) */
    uint16_t pk_len;
    const unsigned char *data; /* view into the frame (NULL in SEALED and KEY frames until opened) */
    uint32_t data_len;
    /* 0, SEG_FLAG_SEALED or SEG_FLAG_KEY. Records handed to readers (log_visit_fn) are always in clear;
     * there flags is SEG_FLAG_SEALED when the record was stored encrypted. */
    uint16_t flags;
    uint32_t key_serial;        /* SEALED and KEY frames */
    const unsigned char *frame; /* SEALED and KEY frames: the whole frame, for seg_open_frame and friends */
} seg_record_t;

typedef enum seg_status {
    SEG_OK = 0,
    SEG_INCOMPLETE, /* fewer bytes than the frame needs: torn tail or end of buffer */
    SEG_BAD_LENGTH,
    SEG_BAD_CRC,
    SEG_BAD_INDEX,
    SEG_BAD_FLAGS,
    SEG_BAD_KEY, /* a key serial the file does not define, or that does not increase (checked by the log) */
} seg_status_t;

static inline size_t seg_frame_size(size_t pk_len, size_t data_len)
{
    return SEG_FRAME_HEADER + pk_len + data_len;
}

static inline size_t seg_sealed_frame_size(size_t pk_len, size_t data_len)
{
    return SEG_FRAME_HEADER + SEG_SEAL_OVERHEAD + pk_len + data_len;
}

static inline size_t seg_key_frame_size(size_t id_len)
{
    return SEG_FRAME_HEADER + id_len + SEG_KEY_BODY;
}

/* Writes a version 2 header. */
void seg_encode_header(unsigned char out[SEG_HEADER_SIZE], uint64_t first_index);
/* Returns true when the header is valid (either version); sets *first_index. */
bool seg_decode_header(const unsigned char in[SEG_HEADER_SIZE], uint64_t *first_index);
/* The version of a valid header: 1 or 2. */
int seg_header_version(const unsigned char in[SEG_HEADER_SIZE]);

/* Writes one frame into out (seg_frame_size bytes). */
void seg_encode_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, const char *pk, size_t pk_len,
                      const void *data, size_t data_len);
/* Writes one SEALED frame into out (seg_sealed_frame_size bytes): the partition key and data encrypted with
 * key, whose serial in this segment is key_serial. Returns 0 or -EIO. Calls aead_seal (not concurrently
 * with itself on one key). */
int seg_encode_sealed_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, uint32_t key_serial,
                            aead_key_t *key, const char *pk, size_t pk_len, const void *data,
                            size_t data_len);
/* Decrypts a SEALED frame (rec from seg_decode_frame) into plain (rec->pk_len + rec->data_len bytes) and
 * fills out: rec with pk and data viewing plain. Returns 0, or -EBADMSG when authentication fails (plain is
 * wiped). Any thread. */
int seg_open_frame(const seg_record_t *rec, const aead_key_t *key, unsigned char *plain, seg_record_t *out);

/* The additional data a KEY frame's wrap authenticates: the master key id then the serial (id_len + 4
 * bytes into out). Returns its length. */
size_t seg_key_aad(const char *id, size_t id_len, uint32_t key_serial, unsigned char *out);
/* Writes one KEY frame into out (seg_key_frame_size(id_len) bytes). */
void seg_encode_key_frame(unsigned char *out, uint64_t index, int64_t arrival_ms, const char *id,
                          size_t id_len, uint32_t key_serial, const unsigned char nonce[AEAD_NONCE_BYTES],
                          const unsigned char wrapped[AEAD_KEY_BYTES],
                          const unsigned char tag[AEAD_TAG_BYTES]);
/* The parts of a KEY frame (rec from seg_decode_frame): views into rec->frame. */
void seg_key_frame_parts(const seg_record_t *rec, const unsigned char **aad, size_t *aad_len,
                         const unsigned char **nonce, const unsigned char **wrapped,
                         const unsigned char **tag);

/* Decodes the frame at p (avail bytes available) of any kind. expected_index is checked unless it is
 * UINT64_MAX. On SEG_OK, *len is the frame length and rec views into p. The caller checks what depends on
 * the file: that a version 1 file has no flags, that key serials exist and increase. */
seg_status_t seg_decode_frame(const unsigned char *p, size_t avail, uint64_t expected_index, seg_record_t *rec,
                              size_t *len);
/* Reads only the frame length and index (no crc check): for skipping. Returns false if avail < 16. */
bool seg_peek_frame(const unsigned char *p, size_t avail, uint32_t *frame_len, uint64_t *index);

void seg_file_name(uint64_t first_index, char out[32]);

#endif
