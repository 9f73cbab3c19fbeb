/*
 * catalog: the metadata of every stream (configuration, state, shards and their lineage, tags) and the
 * account settings, kept in memory for fast lookups and written through to SQLite (WAL mode, synchronous
 * FULL) so that it survives restarts and kill -9.
 *
 * Concurrency: one reader/writer lock. Control-plane operations take the write lock for the whole
 * operation (catalog_lock); the data plane takes the read lock (catalog_rdlock). Every function below
 * requires the lock unless it says otherwise. Pointers to streams and shards returned by the catalog are
 * borrowed views valid while the lock is held.
 *
 * State transitions (CREATING -> ACTIVE, UPDATING -> ACTIVE, DELETING -> gone) are stored as a target
 * state with a due time and applied by catalog_settle(), which control-plane operations call first. A
 * transition is therefore exact after a restart too: no timers to lose.
 *
 * Mutations write SQLite first, in one transaction, and change memory only when the commit succeeded, so
 * that a failed write leaves both untouched.
 */
#ifndef EDDY_STORE_CATALOG_H
#define EDDY_STORE_CATALOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/u128.h"

#define STREAM_NAME_MAX 128
#define TAG_KEY_MAX 128
#define TAG_VALUE_MAX 256
#define KEY_ID_MAX 2048

typedef enum stream_status {
    STREAM_CREATING,
    STREAM_DELETING,
    STREAM_ACTIVE,
    STREAM_UPDATING,
} stream_status_t;

typedef enum stream_mode {
    STREAM_PROVISIONED,
    STREAM_ON_DEMAND,
} stream_mode_t;

/* Shard-level metric names as a bit set (enhanced monitoring). */
enum shard_metric {
    METRIC_INCOMING_BYTES = 1 << 0,
    METRIC_INCOMING_RECORDS = 1 << 1,
    METRIC_OUTGOING_BYTES = 1 << 2,
    METRIC_OUTGOING_RECORDS = 1 << 3,
    METRIC_WRITE_PROVISIONED_THROUGHPUT_EXCEEDED = 1 << 4,
    METRIC_READ_PROVISIONED_THROUGHPUT_EXCEEDED = 1 << 5,
    METRIC_ITERATOR_AGE_MILLISECONDS = 1 << 6,
    METRIC_ALL_ = (1 << 7) - 1,
};
extern const char *const shard_metric_names[7]; /* in bit order */

struct shard_runtime; /* the server's per-shard state (storage handle, rate limiters); not persisted */

typedef struct shard {
    uint32_t index; /* shardId-%012u */
    u128 start_hash, end_hash;
    int64_t parent;          /* shard index of the parent, -1 when none */
    int64_t adjacent_parent; /* shard index of the adjacent parent (merge), -1 when none */
    int64_t created_ms;
    uint64_t first_seq_index; /* record index of the first sequence number of this shard */
    int64_t closed_ms;        /* 0 while open */
    uint64_t last_seq_index;  /* valid when closed: record index of EndingSequenceNumber */
    struct shard_runtime *rt; /* owned by the server; NULL until attached */
} shard_t;

/* The settable configuration of a stream; copied, changed and handed back to catalog_update_config. */
typedef struct stream_config {
    stream_status_t status;
    stream_status_t target_status; /* status after status_due_ms (when status is transitional) */
    int64_t status_due_ms;
    stream_mode_t mode;
    int32_t retention_hours;
    bool encrypted;
    char key_id[KEY_ID_MAX + 1];
    uint32_t shard_metrics; /* enum shard_metric bits */
    int32_t max_record_kib;
} stream_config_t;

typedef struct tag {
    char *key;
    char *value;
} tag_t;

#define CONSUMER_NAME_MAX 128

/* An enhanced fan-out consumer of a stream. Its ARN is
 * arn:aws:kinesis:REGION:ACCOUNT:stream/STREAM/consumer/NAME:CREATED_SECS. */
typedef struct consumer {
    char name[CONSUMER_NAME_MAX + 1];
    int64_t created_ms;
    stream_status_t status;    /* CREATING, ACTIVE or DELETING (never UPDATING) */
    int64_t status_due_ms;     /* when CREATING becomes ACTIVE, or DELETING removes it */
    tag_t *tags;               /* sorted by key */
    size_t tag_count;
    char *policy;              /* resource policy (JSON text) or NULL */
    _Atomic uint32_t metrics_id; /* the server's metrics series (server/metrics.h); 0 until first used */
} consumer_t;

/* Operations AWS limits per rolling 24 hours, remembered per stream (the newest few of each kind). */
typedef enum stream_event {
    STREAM_EVENT_SCALE,       /* UpdateShardCount */
    STREAM_EVENT_MODE_SWITCH, /* UpdateStreamMode */
    STREAM_EVENT_KINDS_,
} stream_event_t;
#define STREAM_EVENTS_KEPT 16

typedef struct stream {
    char name[STREAM_NAME_MAX + 1];
    int64_t created_ms;
    stream_config_t cfg;
    shard_t *shards; /* ordered by index */
    size_t shard_count;
    uint32_t next_shard_index;
    tag_t *tags; /* sorted by key */
    size_t tag_count;
    int64_t events[STREAM_EVENT_KINDS_][STREAM_EVENTS_KEPT]; /* epoch ms, oldest first; 0 = none */
    consumer_t *consumers; /* in registration order */
    size_t consumer_count;
    char *policy; /* resource policy (JSON text) or NULL */
    _Atomic uint32_t metrics_id; /* the server's metrics series (server/metrics.h); 0 until first used */
} stream_t;

typedef struct catalog catalog_t;

/* Opens (creating if needed) the catalog in dir/catalog.db. Thread: any; no lock needed.
 * Returns NULL on failure, with the reason in errmsg. */
catalog_t *catalog_open(const char *dir, char *errmsg, size_t errmsg_len);
void catalog_close(catalog_t *cat);

void catalog_lock(catalog_t *cat);   /* exclusive */
void catalog_rdlock(catalog_t *cat); /* shared */
void catalog_unlock(catalog_t *cat);

/* Applies every transition due at now_ms. */
void catalog_settle(catalog_t *cat, int64_t now_ms);

stream_t *catalog_find(catalog_t *cat, const char *name);
/* Streams in name order. */
size_t catalog_stream_count(const catalog_t *cat);
stream_t *catalog_stream_at(catalog_t *cat, size_t i);
/* Index of the first stream whose name is > name (for ExclusiveStartStreamName). */
size_t catalog_stream_after(const catalog_t *cat, const char *name);

/* Creates a stream with shard_count shards splitting the hash key space evenly. cfg gives the initial
 * configuration (status CREATING with its due time, mode, retention, ...). tags may be NULL. */
int catalog_create_stream(catalog_t *cat, const char *name, int64_t now_ms, const stream_config_t *cfg,
                          uint32_t shard_count, const tag_t *tags, size_t tag_count, stream_t **out);
/* Replaces the stream's configuration. */
int catalog_update_config(catalog_t *cat, stream_t *s, const stream_config_t *cfg);
/* One resharding step, in one transaction: closes the open shards close[0..nclose) (closed_ms and
 * last_seq_index as given), appends the shards add[0..nadd), whose indexes must be next_shard_index,
 * next_shard_index + 1, ... (their rt is ignored), and stores cfg. Shard pointers into s are invalid
 * afterwards (the array may move). -EINVAL when a shard to close is missing or closed already. */
typedef struct catalog_close {
    uint32_t index;
    int64_t closed_ms;
    uint64_t last_seq_index;
} catalog_close_t;
int catalog_reshard(catalog_t *cat, stream_t *s, const catalog_close_t *close, size_t nclose, const shard_t *add,
                    size_t nadd, const stream_config_t *cfg);
/* Remembers that an operation of this kind happened at at_ms; counts those at or after since_ms (only the
 * newest STREAM_EVENTS_KEPT are remembered). */
int catalog_note_event(catalog_t *cat, stream_t *s, stream_event_t kind, int64_t at_ms);
size_t catalog_count_events(const stream_t *s, stream_event_t kind, int64_t since_ms);
/* Registers a consumer (status and due time as given). */
int catalog_add_consumer(catalog_t *cat, stream_t *s, const consumer_t *c);
/* Changes a consumer's status (DELETING with its due time). */
int catalog_set_consumer_status(catalog_t *cat, stream_t *s, const char *name, stream_status_t status, int64_t due_ms);
consumer_t *catalog_find_consumer(stream_t *s, const char *name);
/* Adds or overwrites tags. */
/* Sets (text) or deletes (NULL) the resource policy of a stream (con NULL) or of one of its consumers. */
int catalog_set_policy(catalog_t *cat, stream_t *s, consumer_t *con, const char *text);
/* How many resource policies exist (thread-safe read, for a quick "none at all" check). */
size_t catalog_policy_count(const catalog_t *cat);
/* Tags belong to a stream (con NULL) or to one of its consumers (con, from catalog_find_consumer). */
int catalog_put_tags(catalog_t *cat, stream_t *s, consumer_t *con, const tag_t *tags, size_t n);
/* Removes the tags with these keys (absent keys are ignored). */
int catalog_remove_tags(catalog_t *cat, stream_t *s, consumer_t *con, const char *const *keys, size_t n);
const tag_t *catalog_find_tag(const stream_t *s, const consumer_t *con, const char *key);
/* Called with each stream that is about to be removed for good (under the write lock), so that its owner
 * can release what it attached to the shards. */
typedef void (*catalog_drop_hook_fn)(void *arg, stream_t *s);
void catalog_set_drop_hook(catalog_t *cat, catalog_drop_hook_fn fn, void *arg);
/* Removes a stream for good. s is invalid afterwards. */
int catalog_drop_stream(catalog_t *cat, stream_t *s);

const shard_t *stream_find_shard(const stream_t *s, uint32_t index);
/* Parses "shardId-000000000007" (also without leading zeros, as Kinesis accepts) into 7. */
bool shard_id_parse(const char *id, uint32_t *index);
void shard_id_format(uint32_t index, char out[32]);

/* Account-wide settings as key/value strings. */
int catalog_get_setting(catalog_t *cat, const char *key, char *value, size_t value_len);
int catalog_set_setting(catalog_t *cat, const char *key, const char *value);

/* The catalog's SQLite connection, for modules that keep their own tables in catalog.db (the DynamoDB
 * subset: server/dynamodb/store.c). Borrowed; valid until catalog_close. The connection is not thread-safe:
 * use it only under catalog_lock (exclusive), and never leave a transaction open when unlocking. */
struct sqlite3;
struct sqlite3 *catalog_sqlite(catalog_t *cat);

const char *stream_status_name(stream_status_t st);
const char *stream_mode_name(stream_mode_t m);

#endif
