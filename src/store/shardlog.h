/*
 * shardlog: the local storage engine's log of one shard: a folder of append-only segment files (format in
 * segment.h) with an in-memory sparse index (record index -> file offset, with arrival times for seeking
 * by time).
 *
 * Concurrency: any thread may call any function. Appends are serialised by a per-log mutex; readers never
 * wait for appends (they read what is visible: records below shard_log_visible_end()). Records become
 * visible when they are durable as the log's mode promises: after shard_log_sync() when the log was opened
 * with visible_after_sync, right after the append otherwise.
 *
 * Encryption: after shard_log_set_encryption(log, master key id), appended records are sealed (AES-256-GCM)
 * under data keys that the log makes and stores in its segments wrapped by that master key (format and
 * nonce rule in segment.h); reads open them transparently.
 *
 * Lifetime: a log is reference counted; shard_log_open returns one reference.
 */
#ifndef EDDY_STORE_SHARDLOG_H
#define EDDY_STORE_SHARDLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/fileio.h"
#include "store/keystore.h"
#include "store/segment.h"

typedef struct shard_log shard_log_t;

typedef struct shard_log_options {
    const fileio_t *io;     /* borrowed; &fileio_posix unless a test injects faults */
    size_t segment_bytes;   /* a new segment starts once the active one reaches this size */
    size_t index_interval;  /* bytes between sparse index entries */
    bool visible_after_sync; /* records become visible only once synced (--durability fsync) */
    keystore_t *keys;       /* borrowed, may be NULL: the master keys of sealed records (without it, a
                               log that has some cannot be opened, nor its records sealed) */
} shard_log_options_t;

void shard_log_default_options(shard_log_options_t *opt);

/* Opens (and recovers) the log in dir, creating dir when needed. first_index is the index of the first
 * record when the log is new. Returns 0 or -errno; errmsg says why: -ENOKEY when sealed records need a
 * master key that opt->keys does not hold, -EBADMSG when it holds a different key under that id (errmsg
 * names the key). */
int shard_log_open(const char *dir, const shard_log_options_t *opt, uint64_t first_index, shard_log_t **out,
                   char *errmsg, size_t errmsg_len);
void shard_log_ref(shard_log_t *log);
/* Drops a reference; the last one closes the files. */
void shard_log_unref(shard_log_t *log);
/* Removes every file of the log (after which only unref is allowed). */
int shard_log_destroy_files(shard_log_t *log);

typedef struct log_entry {
    const char *pk;
    size_t pk_len;
    const void *data;
    size_t data_len;
} log_entry_t;

/* Appends n entries as consecutive records with one arrival time (>= every earlier arrival). On success
 * *first is the first record's index and *arrival_ms the arrival time. Returns 0 or -errno (-ENOSPC,
 * -EIO, ...), in which case nothing was appended; if cleaning up a partial write fails as well, the next
 * append retries the cleanup first (and fails until it succeeds), and a restart before that may bring the
 * records of the failed append back (they were never acknowledged, and never come back corrupt). */
int shard_log_append(shard_log_t *log, const log_entry_t *e, size_t n, int64_t now_ms, uint64_t *first,
                     int64_t *arrival_ms);
/* The same, also returning the log's discard generation at the time of the append: a failed sync that
 * discards records bumps it, so a waiter whose generation changed knows its records are gone. */
int shard_log_append_gen(shard_log_t *log, const log_entry_t *e, size_t n, int64_t now_ms, uint64_t *first,
                         int64_t *arrival_ms, uint64_t *generation);
/* Records appended from now on are sealed under a data key wrapped by master key master_key_id (NULL: they
 * are stored in clear). Returns 0, or -ENOKEY when the key store does not hold that key: the setting is
 * kept, and appends fail with -ENOKEY until the key is there (records are never stored in clear by
 * mistake). */
int shard_log_set_encryption(shard_log_t *log, const char *master_key_id);

/* Makes every record appended so far durable (fdatasync). Returns 0 or -errno. On failure, a log whose
 * records become visible only once synced discards the records not yet durable (they were never visible
 * nor acknowledged; the kernel may have dropped their pages) and bumps its discard generation; a log whose
 * records are visible at once keeps them (its mode never promised they were on disk) and the next sync
 * tries again. *synced_end (may be NULL) receives the end index that is now durable. */
int shard_log_sync(shard_log_t *log, uint64_t *synced_end);
/* The discard generation now (see shard_log_append_gen). */
uint64_t shard_log_generation(shard_log_t *log);
/* True when records were appended since the last sync. */
bool shard_log_dirty(shard_log_t *log);

/* First index still stored, end index visible to readers (one past the last visible record), and the
 * arrival time of the last visible record (0 when none). */
void shard_log_bounds(shard_log_t *log, uint64_t *first, uint64_t *visible_end, int64_t *last_arrival_ms);
uint64_t shard_log_written_end(shard_log_t *log);

/* Called for each record read; the record views are valid only during the call. Return true to go on.
 * pk and data are in clear; rec->flags is SEG_FLAG_SEALED when the record was stored encrypted. */
typedef bool (*log_visit_fn)(void *arg, const seg_record_t *rec);

/* Visits visible records from index `from`, at most max_records and stopping before the record that would
 * take the total of data + key bytes above max_bytes (the first record is always visited). *next receives
 * the index after the last visited record. Returns 0 or -errno (-EIO on a corrupt frame, -EBADMSG on a
 * sealed record that fails authentication: neither is served, both are logged). */
int shard_log_read(shard_log_t *log, uint64_t from, size_t max_records, size_t max_bytes, log_visit_fn fn,
                   void *arg, uint64_t *next);
/* Index of the first visible record that arrived at or after ts_ms (visible end when none). */
int shard_log_seek_time(shard_log_t *log, int64_t ts_ms, uint64_t *index);
/* Deletes whole segments whose records all arrived before before_ms (never the active segment). Returns
 * the number of segments removed or -errno. */
int shard_log_trim(shard_log_t *log, int64_t before_ms);

#endif
