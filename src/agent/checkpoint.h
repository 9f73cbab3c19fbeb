/*
 * checkpoint: where each tailed file has been sent up to, in SQLite (the agent's checkpointFile).
 *
 * Two tables, so that the row written every checkpointIntervalMillis for every file is small:
 *   eddy_files (one row per tracked file; written when the file is first seen and when its identity changes)
 *     id          INTEGER  the agent's number for the file, unique over every flow (stable while it is
 *                          tracked; a file that moves to a copy after copytruncate keeps its id)
 *     flow        TEXT     the flow id, "kinesis:<stream>:<filePattern>"
 *     dev, ino    INTEGER  the file's device and inode when last seen
 *     path        TEXT     its path when last seen (for people; never used to find the file)
 *     fingerprint BLOB     its first bytes (up to 1 KiB): tells a file from a later one on a reused inode,
 *                          and finds the copy a copytruncate made
 *   eddy_file_offsets (one row per file of eddy_files)
 *     id          INTEGER  as above
 *     offset      INTEGER  every byte before it is acknowledged by the stream (or was skipped: headers,
 *                          dropped records)
 *     updated     INTEGER  epoch ms of the last change; files not updated for checkpointTimeToLiveDays go
 * The view eddy_file_checkpoints joins them (the one table of the first release, whose rows are moved into
 * the two when an older file is opened).
 * Validity: a row is written only after the records it covers were acknowledged. Recovery: SQLite's own
 * (WAL, synchronous=FULL: a committed checkpoint survives a crash of the process or the machine). A missing
 * or unreadable file is a fresh start (initialPosition); the agent says so.
 *
 * Threads: one (the agent's main thread).
 */
#ifndef EDDY_AGENT_CHECKPOINT_H
#define EDDY_AGENT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FINGERPRINT_MAX 1024

typedef struct ckpt_store ckpt_store_t;

typedef struct ckpt_row {
    uint64_t id;
    uint64_t dev, ino;
    char *path;
    unsigned char *fingerprint;
    size_t fingerprint_len;
    int64_t offset;
    int64_t updated_ms;
} ckpt_row_t;

/* Opens (creating the file, its folder and the table when missing). NULL with the reason in err. */
ckpt_store_t *ckpt_open(const char *path, char *err, size_t errlen);
void ckpt_close(ckpt_store_t *s);

/* Every row of a flow (*rows: owned by the caller, free with ckpt_rows_free). 0 or -1. */
int ckpt_load(ckpt_store_t *s, const char *flow, ckpt_row_t **rows, size_t *n);
void ckpt_rows_free(ckpt_row_t *rows, size_t n);
/* The largest id in use, over every flow (0 when none). */
uint64_t ckpt_max_id(ckpt_store_t *s);

/* Writes go in one transaction: begin, any number of put/delete, commit. 0 or -1 (logged). */
int ckpt_begin(ckpt_store_t *s);
/* The whole row (identity and offset). */
int ckpt_put(ckpt_store_t *s, const char *flow, const ckpt_row_t *row);
/* Only the offset of a file whose identity is written. */
int ckpt_put_offset(ckpt_store_t *s, uint64_t id, int64_t offset, int64_t updated_ms);
int ckpt_delete(ckpt_store_t *s, uint64_t id);
int ckpt_commit(ckpt_store_t *s);
/* Deletes the files not updated since before_ms; returns how many, or -1. */
int ckpt_prune(ckpt_store_t *s, int64_t before_ms);

#endif
