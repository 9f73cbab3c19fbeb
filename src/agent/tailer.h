/*
 * tailer: finds the files of each flow, follows them through rotations, and cuts them into records.
 *
 * Identity. A tracked file (a source) is known by its (device, inode) while the tailer holds it open, and
 * by its fingerprint, its first bytes (up to CKPT_FINGERPRINT_MAX), across restarts and copies. Rotations:
 *   rename + create  the open file is followed by inode under its new name (or, once no matching name
 *                    leads to it, read to its end and closed after ROTATE_GRACE_MS without growth); the
 *                    new file is a new source, read from its start.
 *   copytruncate     the copy is a new inode whose first bytes are the fingerprint of a tracked source: it
 *                    is held unread as that source's copy. When the source's file shrinks below the read
 *                    offset or its first bytes change, the source moves to the copy at the same offset
 *                    (nothing lost, nothing read twice) and the truncated file becomes a new source.
 *   truncate         as copytruncate without a copy: what had not been read before the truncation is gone
 *                    (logged with the byte count); the file's new content is a new source.
 * A new file whose first bytes are a prefix of a tracked source's fingerprint, but shorter, is held until it
 * holds the whole fingerprint (a copy being written) or stops growing (a new file after all, then read).
 *
 * Records. A record is a line (with its "\n"), or with multiLineStartPattern a start line and the lines up
 * to the next one. An unterminated last line, and a multi-line record with no start line after it, wait
 * for more until the file has not grown for partialLineTimeoutMillis. Records longer than
 * maxRecordSizeBytes are cut there (truncatedRecordTerminator appended) and the rest of the line skipped.
 * Reading is by pread from the source's offset into one shared buffer: the only per-file memory is the
 * fingerprint and a pending multi-line record.
 *
 * Back-pressure: before each record the tailer asks has_room(); when there is none it stops, leaving the
 * offset at that record, and reads on when told (tailer_kick_all) there is room again.
 *
 * Threads: everything here runs on the agent's main thread.
 */
#ifndef EDDY_AGENT_TAILER_H
#define EDDY_AGENT_TAILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/checkpoint.h"
#include "agent/config.h"
#include "common/buf.h"

#define ROTATE_GRACE_MS 5000
#define TAIL_BACK_CHECK 32

typedef struct tailer tailer_t;
typedef struct tail_flow tail_flow_t;
typedef struct tail_source tail_source_t;

typedef enum source_state {
    SRC_LIVE,     /* under a matching name: read as it grows */
    SRC_DETACHED, /* no matching name leads to it any more: read to its end, then closed */
    SRC_UNSURE,   /* new, and its first bytes so far are a prefix of another source's: not read yet */
    SRC_COPY,     /* a copy of copy_of (copytruncate): not read unless copy_of is truncated */
    SRC_RETIRED,  /* its file is gone (truncated without a copy): waits for its records in flight */
} source_state_t;

/* Counters of a flow (main thread only). */
typedef struct tail_flow_stats {
    uint64_t records_parsed, bytes_parsed;   /* records cut from files */
    uint64_t records_skipped;                /* header lines, footer, dropped by dataProcessingOptions */
    uint64_t records_truncated;              /* cut at maxRecordSizeBytes */
    uint64_t records_sent, bytes_sent;       /* acknowledged by the stream */
    uint64_t record_send_errors;             /* failed attempts (retried) */
    uint64_t records_dropped;                /* refused for good (too large, invalid) */
    uint64_t bytes_lost;                     /* truncated before they could be read */
    uint64_t rotations;                      /* truncations and copies followed */
} tail_flow_stats_t;

struct tail_source {
    uint64_t id; /* the checkpoint row's id */
    tail_flow_t *flow;
    source_state_t state;
    char *path; /* the name it was last seen under */
    const char *name; /* its last component (into path) */
    uint64_t dev, ino;
    int fd; /* -1 once retired */
    unsigned char fp[CKPT_FINGERPRINT_MAX];
    size_t fp_len;
    tail_source_t *copy_of; /* SRC_COPY */

    int64_t offset;     /* the next byte to read: everything before it is cut into records, or pending */
    int64_t size;       /* at the last look */
    int64_t changed_ms; /* when the size last changed */
    int64_t created_ms;
    int64_t renamed_ms; /* when a listing last found it under a new name (0: never) */
    uint64_t seq;       /* the order sources were made in (oldest file first within a listing) */
    int header_left;   /* skipHeaderLines still to skip */
    bool runaway;      /* skipping the rest of a line that was cut */
    bool footer_seen;  /* fileFooterPattern matched: nothing more is read */
    buf_t pending;     /* a multi-line record being gathered */
    int64_t pending_start;
    bool pending_cut;

    /* scheduling */
    bool scheduled;
    int64_t due_ms;
    int64_t last_read_ms;
    int64_t read_interval_ms; /* at least this long between reads: minTimeBetweenFilePollsMillis, doubled
                               * (up to READ_INTERVAL_CAP) while each read finds only a trickle */
    int wd;                  /* its file's inotify watch while armed (idle, waiting for a write), else -1 */
    tail_source_t *wd_next;  /* chain of the tailer's armed sources */
    bool seen;               /* in the current scan */
    int64_t unseen_since_ms; /* first scan that did not list it (0: listed) */

    /* the TAIL_BACK_CHECK bytes before offset back_at, as last read (back_at 0: none): a read that starts
     * there takes them too and compares, which tells a file rewritten under the offset without an fstat
     * and a pread of the first bytes at every read */
    unsigned char back[TAIL_BACK_CHECK];
    int64_t back_at;

    /* checkpoints: what was last written, and whether it changed */
    int64_t ckpt_written;
    bool ckpt_row_written;

    /* owned by the sender: records in flight, in file order */
    struct inflight *q_head, *q_tail;
    size_t q_count;
    size_t q_waiting;     /* of them, waiting to be put again: the later ones wait behind them (file order) */
    size_t q_sent;        /* of them, in a producer (put, not yet completed) */
    int64_t acked_offset; /* the end of the acknowledged prefix */

    tail_source_t *next, *prev;           /* the flow's list */
    tail_source_t *inode_next, *name_next; /* index chains */
};

struct tail_flow {
    const agent_flow_config_t *cfg;
    size_t index;
    tail_source_t *head, *tail;
    size_t count;
    tail_source_t **by_inode, **by_name; /* hash tables (chained) */
    size_t buckets;
    void *start_re, *footer_re, *start_md, *footer_md; /* compiled patterns (pcre2) */
    int64_t next_scan_ms;
    bool scan_wanted;
    bool dir_missing_logged;
    /* the directory as it was at the last listing (inode, mtime and ctime in ns, and when it was
     * listed, wall clock ms); a directory unchanged since is not listed again */
    uint64_t dir_ino;
    int64_t dir_mtime_ns, dir_ctime_ns, listed_wall_ms;
    int watch; /* inotify watch descriptor, -1 when polled */
    tail_flow_stats_t stats;
};

/* What the tailer asks of its owner. */
typedef struct tailer_ops {
    /* Room for another record? */
    bool (*has_room)(void *arg);
    /* A record of s (data, len: a view valid during the call) ending at byte end_offset. Returns 0 (taken or
     * dropped), or -EAGAIN (no room: the tailer stops and offers it again later). */
    int (*record)(void *arg, tail_source_t *s, const char *data, size_t len, int64_t end_offset);
    /* s is about to be freed (its records are all completed). */
    void (*forget)(void *arg, tail_source_t *s);
    void *arg;
} tailer_ops_t;

/* Makes the tailer for cfg's flows (borrowed: must outlive it) and finds their files. store: checkpoints
 * to resume from and to write (borrowed, may be NULL). use_inotify false: polling only. now: monotonic ms.
 * NULL with the reason in err. */
tailer_t *tailer_new(const agent_config_t *cfg, ckpt_store_t *store, bool use_inotify, const tailer_ops_t *ops,
                     int64_t now, char *err, size_t errlen);
void tailer_free(tailer_t *t);

/* The inotify descriptor to poll for POLLIN, or -1 when polling. */
int tailer_fd(const tailer_t *t);
bool tailer_uses_inotify(const tailer_t *t);
/* Does what is due at now_ms: reads inotify events, scans, reads files. Returns the next time it wants to
 * run (monotonic ms). */
int64_t tailer_run(tailer_t *t, int64_t now_ms);
/* Asks that every source with unread bytes be read at the next run (room came back). */
void tailer_kick_all(tailer_t *t);
/* Stops reading (shutdown): tailer_run does nothing more. */
void tailer_stop_reading(tailer_t *t);

size_t tailer_flow_count(const tailer_t *t);
tail_flow_t *tailer_flow(tailer_t *t, size_t i);
/* The offset up to which s may be checkpointed: all records before it are acknowledged. */
int64_t tailer_safe_offset(const tail_source_t *s);

/* Writes every changed checkpoint in one transaction (store as given to tailer_new). */
int tailer_write_checkpoints(tailer_t *t, int64_t wall_ms);
/* The store was pruned (ckpt_prune): the next write writes every tracked file's whole row again. */
void tailer_checkpoints_pruned(tailer_t *t);

#endif
