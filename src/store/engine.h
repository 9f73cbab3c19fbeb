/*
 * engine: the storage engine interface the API handlers use for record data. An engine stores the records
 * of shards (append, read from a position, find a position by time, trim old data, drop) and tells when
 * appended records are as durable as the configured mode promises. The local engine (engine_local.c, on
 * shardlog.c) is the first implementation; an engine on a distributed store can be added behind the same
 * table without touching the handlers.
 *
 * Record positions are record indexes within a shard (the ordering key of sequence numbers, seqnum.h).
 *
 * Encryption at rest: an engine holds master keys (the local engine: the key store, keystore.h, in
 * DATA/keys.json). resolve_key maps a KMS KeyId to one of them; set_encryption makes a shard seal the
 * records appended from then on under it. Reads open sealed records transparently and report them with
 * SEG_FLAG_SEALED; one that fails authentication is an error, never data.
 */
#ifndef EDDY_STORE_ENGINE_H
#define EDDY_STORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/histogram.h"
#include "store/shardlog.h"

typedef enum durability {
    DURABILITY_FSYNC,    /* acknowledged only after fdatasync; group commit shares one sync among writers */
    DURABILITY_INTERVAL, /* acknowledged once written; synced every interval_ms */
    DURABILITY_NONE,     /* acknowledged once written; synced by the OS when it likes */
} durability_t;

#define ENGINE_KEY_ID_MAX 64

typedef struct engine engine_t;
typedef struct engine_shard engine_shard_t; /* one shard's storage; opaque */

/* Completion of a durability wait: status 0 or -errno. Called on an engine thread. */
typedef void (*engine_done_fn)(void *arg, int status);

typedef struct engine_ops {
    /* Opens the storage of shard `shard` of `stream` (created when new, starting at first_index). */
    int (*open_shard)(engine_t *e, const char *stream, uint32_t shard, uint64_t first_index, engine_shard_t **out);
    /* Releases a handle from open_shard. */
    void (*close_shard)(engine_t *e, engine_shard_t *s);
    /* Deletes the shard's data and releases the handle. */
    int (*drop_shard)(engine_t *e, engine_shard_t *s);
    /* Removes what is left of a stream's storage (its folder) once all its shards are dropped. */
    void (*drop_stream)(engine_t *e, const char *stream);
    /* Appends n records as consecutive indexes; *ticket identifies the append for when_durable. */
    int (*append)(engine_t *e, engine_shard_t *s, const log_entry_t *entries, size_t n, int64_t now_ms,
                  uint64_t *first, int64_t *arrival_ms, uint64_t *ticket);
    /* Arranges for done(arg, status) once the append with this ticket (and everything before it) is
     * durable per the mode; status is nonzero when those records were lost instead (a failed sync).
     * Returns 1 when they are already durable (done is not called), 0 when done will be called. */
    int (*when_durable)(engine_t *e, engine_shard_t *s, uint64_t ticket, engine_done_fn done, void *arg);
    /* Visits records from index `from` (shard_log_read's contract): in clear, flags SEG_FLAG_SEALED on those
     * stored encrypted. Returns 0 or -errno (-EIO damage, -EBADMSG a sealed record failed authentication). */
    int (*read)(engine_t *e, engine_shard_t *s, uint64_t from, size_t max_records, size_t max_bytes,
                log_visit_fn fn, void *arg, uint64_t *next);
    int (*seek_time)(engine_t *e, engine_shard_t *s, int64_t ts_ms, uint64_t *index);
    void (*bounds)(engine_t *e, engine_shard_t *s, uint64_t *first, uint64_t *visible_end, int64_t *last_arrival);
    /* The index the next append would get: visible_end plus the records appended but not yet durable
     * (fsync mode). Equal to visible_end once nothing is pending. */
    uint64_t (*written_end)(engine_t *e, engine_shard_t *s);
    /* Frees storage whose records all arrived before before_ms. */
    int (*trim)(engine_t *e, engine_shard_t *s, int64_t before_ms);
    /* Resolves a KMS KeyId (key id, key ARN, alias name or alias ARN; an ARN must name region and account,
     * NULL: any) to the id of a master key the engine holds, into key_id. create: the engine may make the
     * key of alias/aws/kinesis if it has none (StartStreamEncryption; never at start). Returns 0, -ENOENT
     * when there is no such key (KMSNotFoundException), or -errno. */
    int (*resolve_key)(engine_t *e, const char *key_ref, const char *region, const char *account, bool create,
                       char key_id[ENGINE_KEY_ID_MAX + 1]);
    /* Records appended to s from now on are encrypted under master key key_id (from resolve_key), or stored
     * in clear when key_id is NULL. Returns 0, or -ENOKEY when the engine does not hold that key: the setting
     * is kept and appends fail with -ENOKEY until it does (never stored in clear instead). */
    int (*set_encryption)(engine_t *e, engine_shard_t *s, const char *key_id);
    /* Bytes the stream's records take on disk (0 when it has none). Any thread. */
    uint64_t (*stream_disk_bytes)(engine_t *e, const char *stream);
    /* Adds the durations of the engine's syncs (fdatasync, one per shard log per group commit) into snap. */
    void (*sync_latency)(engine_t *e, histogram_snapshot_t *snap);
    /* Stops the engine's threads (after syncing) and frees it. */
    void (*close)(engine_t *e);
} engine_ops_t;

struct engine {
    const engine_ops_t *ops;
};

typedef struct engine_local_options {
    const char *data_dir;      /* streams live in data_dir/streams/<stream>/<shard index>; master keys in
                                  data_dir/keys.json (keystore.h) */
    durability_t durability;
    int interval_ms;           /* DURABILITY_INTERVAL period */
    shard_log_options_t log;   /* segment size, index interval, I/O table */
} engine_local_options_t;

/* Starts the local engine (and its sync workers) and loads its key file. Returns NULL with errmsg on failure
 * (the key file too open, or malformed). */
engine_t *engine_local_new(const engine_local_options_t *opt, char *errmsg, size_t errmsg_len);

const char *durability_name(durability_t d);

#endif
