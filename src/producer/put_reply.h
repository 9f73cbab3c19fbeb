/*
 * put_reply: a fast, allocation-free reader of the PutRecords reply in which every record succeeded, the
 * producer's most common reply (cJSON built and freed seven nodes per record for it).
 *
 * It accepts only that shape: an object whose members are FailedRecordCount (0), EncryptionType (a
 * string), and Records, an array of exactly count objects each with exactly a SequenceNumber and a ShardId,
 * both non-empty strings without escapes. Anything else (a failed record, an unknown member, an escape)
 * returns false and the caller parses the reply in full. Views point into the body.
 */
#ifndef EDDY_PRODUCER_PUT_REPLY_H
#define EDDY_PRODUCER_PUT_REPLY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct put_reply_entry {
    const char *seq, *shard_id;
    size_t seq_len, shard_id_len;
} put_reply_entry_t;

bool put_reply_fast(const char *body, size_t len, put_reply_entry_t *entries, size_t count);

#endif
