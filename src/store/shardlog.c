/*
 * shardlog: one shard's append-only log (see shardlog.h for the contract and segment.h for the format).
 *
 * Locks: append_lock serialises appends, rolls and the bookkeeping of syncs; segs_lock (rw) protects the
 * segment array and each segment's table of data keys: readers hold it shared for a whole read, rolls,
 * trims and new data keys take it exclusively. The active segment is only written under append_lock. Index
 * entries live in an array allocated once per segment and are published with a release store of
 * idx_count, so readers search them without taking append_lock.
 *
 * Encryption (format and nonce rule in segment.h): each segment has a table of the data keys of its KEY
 * frames (unwrapped when the segment is scanned at open, or added when the log writes a KEY frame). The
 * writing key (wkey) seals only indexes at or above its floor, which moves past every index it sealed
 * before the write is attempted; a log that rewinds (a failed write, a discarded sync) therefore never
 * seals an index twice with it and makes a new data key instead. wkey is forgotten on every roll and
 * discard, and is never one read back from disk, so a restart starts a new key too. Records are sealed
 * only in version 2 segments: a version 1 active segment (from an older eddy) is rolled, or replaced
 * when it is still empty, before the first sealed record.
 */
#include "store/shardlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/fsutil.h"
#include "common/log.h"

#define READ_CHUNK (256 * 1024)
#define MAX_BATCH_OVERSHOOT (16u << 20)

typedef struct index_entry {
    uint64_t index;
    uint64_t offset;
    int64_t arrival_ms;
} index_entry_t;

/* A data key of a segment (the KEY frame at offset). */
typedef struct seg_key {
    uint32_t serial;
    uint64_t offset;
    aead_key_t *key;
} seg_key_t;

typedef struct segment {
    uint64_t first_index;
    int version;                /* of the header: 1 (frames in clear only) or 2 */
    _Atomic uint64_t end_index; /* one past the last written record */
    uint64_t size;              /* bytes written (append_lock) */
    uint64_t synced_size;       /* bytes known durable (append_lock) */
    _Atomic int64_t last_arrival_ms;
    int fd;
    int retired_fd;             /* the fd of the file an empty segment's replacement took the place of */
    seg_key_t *keys;            /* segs_lock */
    size_t nkeys, keys_cap;
    uint32_t next_serial;       /* append_lock */
    index_entry_t *idx;
    size_t idx_cap;
    _Atomic size_t idx_count;
    uint64_t last_indexed_offset; /* append_lock */
} segment_t;

struct shard_log {
    char dir[4096];
    shard_log_options_t opt;
    pthread_mutex_t append_lock;
    pthread_mutex_t sync_lock;
    pthread_rwlock_t segs_lock;
    segment_t **segs;
    size_t nsegs, segs_cap;
    _Atomic uint64_t written_end;
    _Atomic uint64_t durable_end;
    _Atomic uint64_t visible_end;
    int64_t last_arrival;    /* append_lock */
    _Atomic int64_t visible_arrival; /* arrival of the last visible record */
    uint64_t generation;     /* discards so far (append_lock) */
    bool truncate_pending;   /* a failed append's cleanup failed; retry before the next append */
    char master[SEG_KEY_ID_MAX + 1]; /* append_lock: master key for new records; "" = in clear */
    struct {
        segment_t *seg;      /* NULL: none (the next sealed append writes a KEY frame) */
        aead_key_t *key;     /* owned by seg->keys */
        uint32_t serial;
        uint64_t floor;      /* the lowest index this key may still seal */
        char master[SEG_KEY_ID_MAX + 1];
    } wkey;                  /* append_lock */
    _Atomic int refs;
};

void shard_log_default_options(shard_log_options_t *opt)
{
    opt->io = &fileio_posix;
    opt->segment_bytes = 64u << 20;
    opt->index_interval = 16u << 10;
    opt->visible_after_sync = true;
    opt->keys = NULL;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        log_error("out of memory");
        abort();
    }
    return p;
}

static void seg_path(const shard_log_t *log, uint64_t first_index, char *out, size_t len)
{
    char name[32];
    seg_file_name(first_index, name);
    snprintf(out, len, "%s/%s", log->dir, name);
}

static segment_t *segment_new(const shard_log_t *log, uint64_t first_index, int fd)
{
    segment_t *seg = xcalloc(1, sizeof *seg);
    seg->first_index = first_index;
    seg->version = 2;
    atomic_init(&seg->end_index, first_index);
    seg->fd = fd;
    seg->retired_fd = -1;
    seg->idx_cap = (log->opt.segment_bytes + MAX_BATCH_OVERSHOOT) / log->opt.index_interval + 4;
    seg->idx = xcalloc(seg->idx_cap, sizeof *seg->idx);
    atomic_init(&seg->idx_count, 0);
    atomic_init(&seg->last_arrival_ms, 0);
    return seg;
}

static void segment_free(const shard_log_t *log, segment_t *seg)
{
    if (seg->fd >= 0) {
        log->opt.io->close(seg->fd);
    }
    if (seg->retired_fd >= 0) {
        log->opt.io->close(seg->retired_fd);
    }
    for (size_t i = 0; i < seg->nkeys; i++) {
        aead_key_free(seg->keys[i].key);
    }
    free(seg->keys);
    free(seg->idx);
    free(seg);
}

/* The data key with this serial in seg (segs_lock held, or during open). */
static const aead_key_t *find_seg_key(const segment_t *seg, uint32_t serial)
{
    for (size_t i = seg->nkeys; i > 0; i--) {
        if (seg->keys[i - 1].serial == serial) {
            return seg->keys[i - 1].key;
        }
    }
    return NULL;
}

/* Adds a data key to seg's table (segs_lock held exclusively, or during open); keeps key. */
static void push_seg_key(segment_t *seg, uint32_t serial, uint64_t offset, aead_key_t *key)
{
    if (seg->nkeys == seg->keys_cap) {
        size_t cap = seg->keys_cap ? seg->keys_cap * 2 : 4;
        seg_key_t *p = realloc(seg->keys, cap * sizeof *p);
        if (p == NULL) {
            abort();
        }
        seg->keys = p;
        seg->keys_cap = cap;
    }
    seg->keys[seg->nkeys++] = (seg_key_t){serial, offset, key};
    if (serial >= seg->next_serial) {
        seg->next_serial = serial + 1;
    }
}

/* Adds a sparse index entry for a frame at offset (append_lock, or during open). */
static void maybe_index(const shard_log_t *log, segment_t *seg, uint64_t index, uint64_t offset, int64_t arrival)
{
    size_t n = atomic_load_explicit(&seg->idx_count, memory_order_relaxed);
    if (n > 0 && offset - seg->last_indexed_offset < log->opt.index_interval) {
        return;
    }
    if (n == seg->idx_cap) {
        return; /* reads scan a little further; never happens with sane batch sizes */
    }
    seg->idx[n] = (index_entry_t){index, offset, arrival};
    seg->last_indexed_offset = offset;
    atomic_store_explicit(&seg->idx_count, n + 1, memory_order_release);
}

static void push_segment(shard_log_t *log, segment_t *seg)
{
    if (log->nsegs == log->segs_cap) {
        size_t cap = log->segs_cap ? log->segs_cap * 2 : 8;
        segment_t **p = realloc(log->segs, cap * sizeof *p);
        if (p == NULL) {
            abort();
        }
        log->segs = p;
        log->segs_cap = cap;
    }
    log->segs[log->nsegs++] = seg;
}

/* Creates a new empty segment file starting at first_index and makes its name durable. */
static int create_segment(shard_log_t *log, uint64_t first_index, segment_t **out)
{
    const fileio_t *io = log->opt.io;
    char path[4200];
    seg_path(log, first_index, path, sizeof path);
    int fd = io->open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0) {
        return -errno;
    }
    unsigned char header[SEG_HEADER_SIZE];
    seg_encode_header(header, first_index);
    int rc = fileio_write_all(io, fd, header, sizeof header, 0);
    if (rc == 0 && io->fdatasync(fd) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = fileio_sync_dir(io, log->dir);
    }
    if (rc != 0) {
        io->close(fd);
        io->unlink(path);
        return rc;
    }
    segment_t *seg = segment_new(log, first_index, fd);
    seg->size = SEG_HEADER_SIZE;
    seg->synced_size = SEG_HEADER_SIZE;
    *out = seg;
    return 0;
}

/* ---- recovery ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the first indexes of the segment files in dir, sorted. */
static int list_segments(const char *dir, uint64_t **out, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != 24 || strcmp(e->d_name + 20, ".seg") != 0 || strspn(e->d_name, "0123456789") != 20) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(v, cap * sizeof *p);
            if (p == NULL) {
                abort();
            }
            v = p;
        }
        v[n++] = strtoull(e->d_name, NULL, 10);
    }
    closedir(d);
    if (n > 0) {
        qsort(v, n, sizeof *v, cmp_u64);
    }
    *out = v;
    *count = n;
    return 0;
}

/* Moves a damaged segment out of the way (kept for inspection, never served). */
static void quarantine(shard_log_t *log, uint64_t first_index)
{
    char from[4200], to[4220];
    seg_path(log, first_index, from, sizeof from);
    snprintf(to, sizeof to, "%s.corrupt", from);
    log->opt.io->rename(from, to);
    log_error("shard log %s: segment %s is damaged; moved to %s", log->dir, from, to);
}

/* Unwraps the data key of a KEY frame found at offset by the scan of seg and adds it to seg's table.
 * Returns 0, or -ENOKEY / -EBADMSG / -EIO with errmsg naming the master key. */
static int load_key(shard_log_t *log, segment_t *seg, const seg_record_t *rec, uint64_t offset,
                    const char *path, char *errmsg, size_t errmsg_len)
{
    char id[SEG_KEY_ID_MAX + 1];
    memcpy(id, rec->pk, rec->pk_len);
    id[rec->pk_len] = '\0';
    keystore_t *ks = log->opt.keys;
    if (ks == NULL || !keystore_has(ks, id)) {
        snprintf(errmsg, errmsg_len,
                 "%s holds records encrypted under master key %s, which the key file %s does not hold: "
                 "restore the key file from its backup",
                 path, id, ks != NULL ? keystore_path(ks) : "(none)");
        return -ENOKEY;
    }
    const unsigned char *aad, *nonce, *wrapped, *tag;
    size_t aad_len;
    seg_key_frame_parts(rec, &aad, &aad_len, &nonce, &wrapped, &tag);
    unsigned char dk[AEAD_KEY_BYTES];
    int rc = keystore_unwrap(ks, id, nonce, wrapped, tag, aad, aad_len, dk);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len,
                 "%s: master key %s of the key file %s does not unwrap the data key at offset %" PRIu64
                 " (%s): the key file holds a different key under that id, or the segment was altered",
                 path, id, keystore_path(ks), offset,
                 rc == -EBADMSG ? "authentication failed" : strerror(-rc));
        return rc;
    }
    push_seg_key(seg, rec->key_serial, offset, aead_key_new(dk));
    OPENSSL_cleanse(dk, sizeof dk);
    return 0;
}

/* Checks what segment.c cannot: flags allowed by the file's version, key serials that exist and increase.
 * SEG_OK or the reason the frame is invalid. */
static seg_status_t check_in_file(const segment_t *seg, const seg_record_t *rec)
{
    if (rec->flags != 0 && seg->version < 2) {
        return SEG_BAD_FLAGS;
    }
    if (rec->flags == SEG_FLAG_KEY && seg->nkeys > 0 && rec->key_serial <= seg->keys[seg->nkeys - 1].serial) {
        return SEG_BAD_KEY;
    }
    if (rec->flags == SEG_FLAG_SEALED && find_seg_key(seg, rec->key_serial) == NULL) {
        return SEG_BAD_KEY;
    }
    return SEG_OK;
}

/* Scans seg's frames from the header on, building its index and its table of data keys. Returns the
 * offset of the end of the last valid frame; *status is the reason the scan stopped (SEG_INCOMPLETE at a
 * clean end of file). Returns 0, or -errno with errmsg (an I/O error, a master key missing or wrong). */
static int scan_segment(shard_log_t *log, segment_t *seg, const char *path, uint64_t file_size,
                        int64_t previous_arrival, uint64_t *valid_end, seg_status_t *status, char *errmsg,
                        size_t errmsg_len)
{
    const fileio_t *io = log->opt.io;
    size_t cap = READ_CHUNK;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        abort();
    }
    uint64_t off = SEG_HEADER_SIZE;
    uint64_t expected = seg->first_index;
    int64_t last_arrival = previous_arrival;
    *status = SEG_INCOMPLETE;
    int rc = 0;
    while (off < file_size) {
        size_t want = cap;
        if (file_size - off < want) {
            want = (size_t)(file_size - off);
        }
        ssize_t got = fileio_read_full(io, seg->fd, buf, want, (off_t)off);
        if (got < 0) {
            rc = (int)got;
            snprintf(errmsg, errmsg_len, "cannot read %s: %s", path, strerror(-rc));
            break;
        }
        size_t pos = 0;
        seg_status_t st = SEG_OK;
        while (pos < (size_t)got) {
            seg_record_t rec;
            size_t len;
            st = seg_decode_frame(buf + pos, (size_t)got - pos, expected, &rec, &len);
            if (st == SEG_OK) {
                st = check_in_file(seg, &rec);
            }
            if (st != SEG_OK) {
                break;
            }
            if (rec.arrival_ms < last_arrival) {
                st = SEG_BAD_INDEX;
                break;
            }
            if (rec.flags == SEG_FLAG_KEY) {
                /* not a record: its index is the next record's */
                rc = load_key(log, seg, &rec, off + pos, path, errmsg, errmsg_len);
                if (rc != 0) {
                    break;
                }
                pos += len;
                continue;
            }
            maybe_index(log, seg, rec.index, off + pos, rec.arrival_ms);
            last_arrival = rec.arrival_ms;
            expected++;
            pos += len;
        }
        if (rc != 0) {
            break;
        }
        if (st == SEG_INCOMPLETE && pos == 0 && (uint64_t)got == want && off + got < file_size) {
            /* a frame larger than the buffer: grow and retry */
            uint32_t frame_len;
            uint64_t ignored;
            seg_peek_frame(buf, (size_t)got, &frame_len, &ignored);
            if (frame_len > cap && frame_len <= (64u << 20)) {
                unsigned char *p = realloc(buf, frame_len);
                if (p == NULL) {
                    abort();
                }
                buf = p;
                cap = frame_len;
                continue;
            }
        }
        off += pos;
        if (st != SEG_OK && !(st == SEG_INCOMPLETE && pos > 0 && off < file_size)) {
            *status = st;
            break;
        }
        if ((size_t)got < want) {
            break;
        }
    }
    free(buf);
    *valid_end = off;
    atomic_store(&seg->end_index, expected);
    atomic_store(&seg->last_arrival_ms, expected > seg->first_index ? last_arrival : 0);
    seg->size = off;
    seg->synced_size = off;
    return rc;
}

static int recover(shard_log_t *log, uint64_t first_index, char *errmsg, size_t errmsg_len)
{
    const fileio_t *io = log->opt.io;
    uint64_t *firsts = NULL;
    size_t count = 0;
    int rc = list_segments(log->dir, &firsts, &count);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "cannot list %s: %s", log->dir, strerror(-rc));
        return rc;
    }
    uint64_t expected = count > 0 ? firsts[0] : first_index;
    int64_t last_arrival = 0; /* of the last record of the segments accepted so far */
    bool stop = false;
    for (size_t i = 0; i < count; i++) {
        if (stop) {
            quarantine(log, firsts[i]);
            continue;
        }
        char path[4200];
        seg_path(log, firsts[i], path, sizeof path);
        int fd = io->open(path, O_RDWR, 0);
        if (fd < 0) {
            rc = -errno;
            snprintf(errmsg, errmsg_len, "cannot open %s: %s", path, strerror(errno));
            goto out;
        }
        struct stat st;
        fstat(fd, &st);
        unsigned char header[SEG_HEADER_SIZE];
        uint64_t header_first = 0;
        ssize_t got = fileio_read_full(io, fd, header, sizeof header, 0);
        if (got < 0) {
            /* an I/O error is not damage: refuse to open rather than set data aside */
            rc = (int)got;
            snprintf(errmsg, errmsg_len, "cannot read %s: %s", path, strerror(-rc));
            io->close(fd);
            goto out;
        }
        bool header_ok = got == (ssize_t)sizeof header && seg_decode_header(header, &header_first) &&
                         header_first == firsts[i] && firsts[i] == expected;
        if (!header_ok) {
            io->close(fd);
            if (i + 1 == count && (uint64_t)st.st_size < SEG_HEADER_SIZE && firsts[i] == expected) {
                io->unlink(path); /* crashed while creating it: nothing was ever written there */
            } else {
                quarantine(log, firsts[i]);
            }
            stop = true;
            continue;
        }
        segment_t *seg = segment_new(log, firsts[i], fd);
        seg->version = seg_header_version(header);
        uint64_t valid_end = 0;
        seg_status_t why;
        rc = scan_segment(log, seg, path, (uint64_t)st.st_size, last_arrival, &valid_end, &why, errmsg,
                          errmsg_len);
        if (rc != 0) {
            /* an I/O error or a missing or wrong master key: refuse to open, never cut data off */
            segment_free(log, seg);
            goto out;
        }
        if (valid_end < (uint64_t)st.st_size) {
            /* torn tail or damage: the log ends here */
            if (why != SEG_INCOMPLETE || i + 1 < count) {
                log_warn("shard log %s: %s: invalid frame at offset %" PRIu64 " (reason %d); truncating", log->dir,
                         path, valid_end, (int)why);
            }
            if (io->ftruncate(fd, (off_t)valid_end) != 0 || io->fdatasync(fd) != 0) {
                rc = -errno;
                snprintf(errmsg, errmsg_len, "cannot truncate %s: %s", path, strerror(errno));
                segment_free(log, seg);
                goto out;
            }
            stop = i + 1 < count;
        }
        expected = atomic_load(&seg->end_index);
        if (expected > seg->first_index) {
            last_arrival = atomic_load(&seg->last_arrival_ms);
        }
        push_segment(log, seg);
    }
    if (log->nsegs == 0) {
        segment_t *seg;
        rc = create_segment(log, expected, &seg);
        if (rc != 0) {
            snprintf(errmsg, errmsg_len, "cannot create a segment in %s: %s", log->dir, strerror(-rc));
            goto out;
        }
        push_segment(log, seg);
    }
    segment_t *last = log->segs[log->nsegs - 1];
    uint64_t end = atomic_load(&last->end_index);
    atomic_init(&log->written_end, end);
    atomic_init(&log->durable_end, end);
    atomic_init(&log->visible_end, end);
    log->last_arrival = last_arrival;
    atomic_init(&log->visible_arrival, last_arrival);
    rc = 0;
out:
    free(firsts);
    return rc;
}


int shard_log_open(const char *dir, const shard_log_options_t *opt, uint64_t first_index, shard_log_t **out,
                   char *errmsg, size_t errmsg_len)
{
    int rc = mkdir_p(dir);
    if (rc != 0) {
        snprintf(errmsg, errmsg_len, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    shard_log_t *log = xcalloc(1, sizeof *log);
    snprintf(log->dir, sizeof log->dir, "%s", dir);
    log->opt = *opt;
    pthread_mutex_init(&log->append_lock, NULL);
    pthread_mutex_init(&log->sync_lock, NULL);
    pthread_rwlock_init(&log->segs_lock, NULL);
    atomic_init(&log->refs, 1);
    rc = recover(log, first_index, errmsg, errmsg_len);
    if (rc != 0) {
        shard_log_unref(log);
        return rc;
    }
    *out = log;
    return 0;
}

void shard_log_ref(shard_log_t *log)
{
    atomic_fetch_add(&log->refs, 1);
}

void shard_log_unref(shard_log_t *log)
{
    if (log == NULL || atomic_fetch_sub(&log->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < log->nsegs; i++) {
        segment_free(log, log->segs[i]);
    }
    free(log->segs);
    pthread_mutex_destroy(&log->append_lock);
    pthread_mutex_destroy(&log->sync_lock);
    pthread_rwlock_destroy(&log->segs_lock);
    free(log);
}

int shard_log_destroy_files(shard_log_t *log)
{
    pthread_mutex_lock(&log->append_lock);
    pthread_rwlock_wrlock(&log->segs_lock);
    int rc = 0;
    for (size_t i = 0; i < log->nsegs; i++) {
        char path[4200];
        seg_path(log, log->segs[i]->first_index, path, sizeof path);
        if (log->opt.io->unlink(path) != 0 && errno != ENOENT) {
            rc = -errno;
        }
    }
    /* quarantined files and the folder itself */
    DIR *d = opendir(log->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strstr(e->d_name, ".corrupt") != NULL || strstr(e->d_name, ".seg.new") != NULL) {
                char path[4400];
                snprintf(path, sizeof path, "%s/%s", log->dir, e->d_name);
                log->opt.io->unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(log->dir);
    pthread_rwlock_unlock(&log->segs_lock);
    pthread_mutex_unlock(&log->append_lock);
    return rc;
}

/* ---- appending ---- */

/* Cuts the active segment back to its last synced size after a failed fdatasync (append_lock held): the
 * kernel may have dropped the dirty pages, so nothing after the last good sync can be trusted. */
static void discard_unsynced(shard_log_t *log, segment_t *seg, int err)
{
    uint64_t durable = atomic_load(&log->durable_end);
    log_error("shard log %s: fdatasync failed (%s); discarding records %" PRIu64 "..%" PRIu64, log->dir,
              strerror(-err), durable, atomic_load(&log->written_end));
    if (log->opt.io->ftruncate(seg->fd, (off_t)seg->synced_size) != 0) {
        log->truncate_pending = true;
    }
    seg->size = seg->synced_size;
    atomic_store(&seg->end_index, durable);
    atomic_store(&log->written_end, durable);
    size_t count = atomic_load(&seg->idx_count);
    while (count > 0 && seg->idx[count - 1].index >= durable) {
        count--;
    }
    atomic_store(&seg->idx_count, count);
    seg->last_indexed_offset = count > 0 ? seg->idx[count - 1].offset : 0;
    log->last_arrival = atomic_load(&log->visible_arrival);
    atomic_store(&seg->last_arrival_ms, durable > seg->first_index ? log->last_arrival : 0);
    log->generation++;
    /* the data keys of KEY frames cut off go too; the writing key is dropped whatever its floor says */
    log->wkey.seg = NULL;
    log->wkey.key = NULL;
    pthread_rwlock_wrlock(&log->segs_lock);
    while (seg->nkeys > 0 && seg->keys[seg->nkeys - 1].offset >= seg->synced_size) {
        aead_key_free(seg->keys[--seg->nkeys].key);
    }
    pthread_rwlock_unlock(&log->segs_lock);
}

static segment_t *active_segment(shard_log_t *log)
{
    pthread_rwlock_rdlock(&log->segs_lock);
    segment_t *seg = log->segs[log->nsegs - 1];
    pthread_rwlock_unlock(&log->segs_lock);
    return seg;
}

/* Starts a new segment (append_lock held): the old one is synced first so only the active segment ever
 * holds bytes that are not durable. */
static int roll(shard_log_t *log, segment_t *old, segment_t **out)
{
    if (old->synced_size < old->size) {
        if (log->opt.io->fdatasync(old->fd) != 0) {
            int rc = -errno;
            if (log->opt.visible_after_sync) {
                discard_unsynced(log, old, rc);
            }
            return rc;
        }
        old->synced_size = old->size;
    }
    uint64_t end = atomic_load(&log->written_end);
    atomic_store(&log->durable_end, end);
    if (log->opt.visible_after_sync) {
        atomic_store(&log->visible_arrival, log->last_arrival);
        atomic_store_explicit(&log->visible_end, end, memory_order_release);
    }
    segment_t *seg;
    int rc = create_segment(log, end, &seg);
    if (rc != 0) {
        return rc;
    }
    pthread_rwlock_wrlock(&log->segs_lock);
    push_segment(log, seg);
    pthread_rwlock_unlock(&log->segs_lock);
    log->wkey.seg = NULL; /* every segment has data keys of its own */
    log->wkey.key = NULL;
    *out = seg;
    return 0;
}

int shard_log_append(shard_log_t *log, const log_entry_t *e, size_t n, int64_t now_ms, uint64_t *first,
                     int64_t *arrival_ms)
{
    return shard_log_append_gen(log, e, n, now_ms, first, arrival_ms, NULL);
}

/* Replaces the empty active segment seg, of version 1, by an empty version 2 file of the same name
 * (append_lock held): a new file is written and renamed over the old one, so a crash leaves one or the
 * other. The old descriptor stays open until the segment is freed (a sync may be using it). */
static int replace_empty_segment(shard_log_t *log, segment_t *seg)
{
    const fileio_t *io = log->opt.io;
    char path[4200], tmp[4220];
    seg_path(log, seg->first_index, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int fd = io->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0) {
        return -errno;
    }
    unsigned char header[SEG_HEADER_SIZE];
    seg_encode_header(header, seg->first_index);
    int rc = fileio_write_all(io, fd, header, sizeof header, 0);
    if (rc == 0 && io->fdatasync(fd) != 0) {
        rc = -errno;
    }
    if (rc == 0 && io->rename(tmp, path) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = fileio_sync_dir(io, log->dir);
    }
    if (rc != 0) {
        io->close(fd);
        io->unlink(tmp);
        return rc;
    }
    pthread_rwlock_wrlock(&log->segs_lock);
    seg->retired_fd = seg->fd;
    seg->fd = fd;
    seg->version = 2;
    seg->size = SEG_HEADER_SIZE;
    seg->synced_size = SEG_HEADER_SIZE;
    pthread_rwlock_unlock(&log->segs_lock);
    return 0;
}

/* A data key about to be written in a KEY frame (append_lock held). */
typedef struct new_key {
    aead_key_t *key;
    uint32_t serial;
    size_t frame_len;
} new_key_t;

/* Makes a data key for seg under the log's master key and encodes its KEY frame at out (room for
 * seg_key_frame_size(SEG_KEY_ID_MAX) bytes). Returns 0 or -errno (-ENOKEY: no such master key). */
static int make_data_key(shard_log_t *log, segment_t *seg, uint64_t index, int64_t arrival,
                         unsigned char *out, new_key_t *nk)
{
    if (log->opt.keys == NULL) {
        return -ENOKEY;
    }
    unsigned char dk[AEAD_KEY_BYTES], aad[SEG_KEY_ID_MAX + 4], nonce[AEAD_NONCE_BYTES];
    unsigned char wrapped[AEAD_KEY_BYTES], tag[AEAD_TAG_BYTES];
    int rc = aead_random(dk, sizeof dk);
    if (rc != 0) {
        return rc;
    }
    size_t id_len = strlen(log->master);
    uint32_t serial = seg->next_serial;
    size_t aad_len = seg_key_aad(log->master, id_len, serial, aad);
    rc = keystore_wrap(log->opt.keys, log->master, dk, aad, aad_len, nonce, wrapped, tag);
    if (rc == 0) {
        seg_encode_key_frame(out, index, arrival, log->master, id_len, serial, nonce, wrapped, tag);
        *nk = (new_key_t){aead_key_new(dk), serial, seg_key_frame_size(id_len)};
        seg->next_serial = serial + 1; /* never reused in this segment, even if the write fails */
    }
    OPENSSL_cleanse(dk, sizeof dk);
    return rc;
}

int shard_log_set_encryption(shard_log_t *log, const char *master_key_id)
{
    if (master_key_id != NULL && (strlen(master_key_id) == 0 || strlen(master_key_id) > SEG_KEY_ID_MAX)) {
        return -EINVAL;
    }
    pthread_mutex_lock(&log->append_lock);
    snprintf(log->master, sizeof log->master, "%s", master_key_id != NULL ? master_key_id : "");
    pthread_mutex_unlock(&log->append_lock);
    if (master_key_id != NULL && (log->opt.keys == NULL || !keystore_has(log->opt.keys, master_key_id))) {
        return -ENOKEY;
    }
    return 0;
}

int shard_log_append_gen(shard_log_t *log, const log_entry_t *e, size_t n, int64_t now_ms, uint64_t *first,
                         int64_t *arrival_ms, uint64_t *generation)
{
    if (n == 0) {
        return -EINVAL;
    }
    size_t sealed_total = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].pk_len == 0 || e[i].pk_len > SEG_MAX_PK || e[i].data_len > UINT32_MAX - 2048) {
            return -EINVAL;
        }
        sealed_total += seg_sealed_frame_size(e[i].pk_len, e[i].data_len);
    }
    /* room for the larger, sealed form and a KEY frame: whether to seal is known only under the lock */
    unsigned char *frames = malloc(seg_key_frame_size(SEG_KEY_ID_MAX) + sealed_total);
    uint64_t *offsets = malloc(n * sizeof *offsets);
    if (frames == NULL || offsets == NULL) {
        abort();
    }
    new_key_t nk = {0};
    int rc = 0;
    pthread_mutex_lock(&log->append_lock);
    segment_t *seg = active_segment(log);
    bool seal = log->master[0] != '\0';
    if (log->truncate_pending) {
        if (log->opt.io->ftruncate(seg->fd, (off_t)seg->size) != 0) {
            rc = -EIO;
            goto out;
        }
        log->truncate_pending = false;
    }
    bool has_records = atomic_load(&seg->end_index) > seg->first_index;
    if ((seg->size >= log->opt.segment_bytes || (seal && seg->version < 2)) && has_records) {
        rc = roll(log, seg, &seg);
        if (rc != 0) {
            goto out;
        }
    } else if (seal && seg->version < 2) {
        rc = replace_empty_segment(log, seg);
        if (rc != 0) {
            goto out;
        }
    }
    int64_t arrival = now_ms > log->last_arrival ? now_ms : log->last_arrival;
    uint64_t index = atomic_load(&log->written_end);
    size_t pos = 0;
    aead_key_t *key = NULL;
    uint32_t serial = 0;
    if (seal) {
        if (log->wkey.seg == seg && index >= log->wkey.floor && strcmp(log->wkey.master, log->master) == 0) {
            key = log->wkey.key;
            serial = log->wkey.serial;
            /* before the write: what a failed one sealed is never sealed again */
            log->wkey.floor = index + n;
        } else {
            rc = make_data_key(log, seg, index, arrival, frames, &nk);
            if (rc != 0) {
                goto out;
            }
            key = nk.key;
            serial = nk.serial;
            pos = nk.frame_len;
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        offsets[i] = seg->size + pos;
        if (seal) {
            rc = seg_encode_sealed_frame(frames + pos, index + i, arrival, serial, key, e[i].pk, e[i].pk_len,
                                         e[i].data, e[i].data_len);
            pos += seg_sealed_frame_size(e[i].pk_len, e[i].data_len);
        } else {
            seg_encode_frame(frames + pos, index + i, arrival, e[i].pk, e[i].pk_len, e[i].data,
                             e[i].data_len);
            pos += seg_frame_size(e[i].pk_len, e[i].data_len);
        }
    }
    if (rc != 0) {
        goto out;
    }
    size_t total = pos;
    rc = fileio_write_all(log->opt.io, seg->fd, frames, total, (off_t)seg->size);
    if (rc != 0) {
        /* leave no partial frame behind; if that fails too, retry before the next append */
        if (log->opt.io->ftruncate(seg->fd, (off_t)seg->size) != 0) {
            log->truncate_pending = true;
        }
        goto out;
    }
    if (nk.key != NULL) {
        /* readers may meet the new key's records once end_index moves: publish the key first */
        pthread_rwlock_wrlock(&log->segs_lock);
        push_seg_key(seg, nk.serial, seg->size, nk.key);
        pthread_rwlock_unlock(&log->segs_lock);
        log->wkey.seg = seg;
        log->wkey.key = nk.key;
        log->wkey.serial = nk.serial;
        log->wkey.floor = index + n;
        snprintf(log->wkey.master, sizeof log->wkey.master, "%s", log->master);
        nk.key = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        maybe_index(log, seg, index + i, offsets[i], arrival);
    }
    seg->size += total;
    atomic_store(&seg->last_arrival_ms, arrival);
    atomic_store_explicit(&seg->end_index, index + n, memory_order_release);
    log->last_arrival = arrival;
    atomic_store_explicit(&log->written_end, index + n, memory_order_release);
    if (!log->opt.visible_after_sync) {
        atomic_store(&log->visible_arrival, arrival);
        atomic_store_explicit(&log->visible_end, index + n, memory_order_release);
    }
    *first = index;
    *arrival_ms = arrival;
    if (generation != NULL) {
        *generation = log->generation;
    }
out:
    pthread_mutex_unlock(&log->append_lock);
    aead_key_free(nk.key); /* a key whose KEY frame was not written */
    free(frames);
    free(offsets);
    return rc;
}

bool shard_log_dirty(shard_log_t *log)
{
    return atomic_load(&log->durable_end) != atomic_load(&log->written_end);
}

int shard_log_sync(shard_log_t *log, uint64_t *synced_end)
{
    pthread_mutex_lock(&log->sync_lock);
    pthread_mutex_lock(&log->append_lock);
    segment_t *seg = active_segment(log);
    uint64_t end = atomic_load(&log->written_end);
    int64_t arrival = log->last_arrival;
    uint64_t size = seg->size;
    uint64_t generation = log->generation;
    int fd = seg->fd;
    bool needed = seg->synced_size < size;
    pthread_mutex_unlock(&log->append_lock);

    int rc = 0;
    if (needed && log->opt.io->fdatasync(fd) != 0) {
        rc = -errno;
    }
    pthread_mutex_lock(&log->append_lock);
    if (log->generation != generation) {
        /* A failed fdatasync in a roll discarded records while ours ran: the bytes we synced may since
         * have been cut off and rewritten by later appends, so this sync proves nothing. */
        if (rc == 0) {
            rc = -EIO;
        }
    } else if (rc == 0) {
        if (seg->synced_size < size) {
            seg->synced_size = size;
        }
        if (atomic_load(&log->durable_end) < end) {
            atomic_store(&log->durable_end, end);
        }
        if (log->opt.visible_after_sync && atomic_load(&log->visible_end) < end) {
            atomic_store(&log->visible_arrival, arrival);
            atomic_store_explicit(&log->visible_end, end, memory_order_release);
        }
    } else if (!log->opt.visible_after_sync) {
        log_error("shard log %s: fdatasync failed (%s); will retry", log->dir, strerror(-rc));
    } else if (active_segment(log) == seg) {
        discard_unsynced(log, seg, rc);
    }
    if (synced_end != NULL) {
        *synced_end = atomic_load(&log->durable_end);
    }
    pthread_mutex_unlock(&log->append_lock);
    pthread_mutex_unlock(&log->sync_lock);
    return rc;
}

uint64_t shard_log_generation(shard_log_t *log)
{
    pthread_mutex_lock(&log->append_lock);
    uint64_t g = log->generation;
    pthread_mutex_unlock(&log->append_lock);
    return g;
}

/* ---- reading ---- */

void shard_log_bounds(shard_log_t *log, uint64_t *first, uint64_t *visible_end, int64_t *last_arrival_ms)
{
    pthread_rwlock_rdlock(&log->segs_lock);
    uint64_t end = atomic_load_explicit(&log->visible_end, memory_order_acquire);
    if (first != NULL) {
        *first = log->segs[0]->first_index;
    }
    if (visible_end != NULL) {
        *visible_end = end;
    }
    if (last_arrival_ms != NULL) {
        *last_arrival_ms = end > log->segs[0]->first_index ? atomic_load(&log->visible_arrival) : 0;
    }
    pthread_rwlock_unlock(&log->segs_lock);
}

uint64_t shard_log_written_end(shard_log_t *log)
{
    return atomic_load(&log->written_end);
}

/* Offset of the last index entry at or before `index` in seg. */
static uint64_t index_floor(const segment_t *seg, uint64_t index)
{
    size_t n = atomic_load_explicit(&seg->idx_count, memory_order_acquire);
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (seg->idx[mid].index <= index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo == 0 ? SEG_HEADER_SIZE : seg->idx[lo - 1].offset;
}

typedef struct read_state {
    size_t max_records, max_bytes;
    size_t records, bytes;
    uint64_t from, end, next;
    log_visit_fn fn;
    void *arg;
    bool done;
    bool raw;             /* visit sealed records without opening them (only index and arrival are read) */
    unsigned char *plain; /* where sealed records are opened */
    size_t plain_cap;
} read_state_t;

/* Opens a sealed record into rs->plain (segs_lock held). Returns 0, or -EBADMSG / -EIO (logged). */
static int open_record(shard_log_t *log, const segment_t *seg, read_state_t *rs, const seg_record_t *rec,
                       uint64_t offset, seg_record_t *out)
{
    size_t n = (size_t)rec->pk_len + rec->data_len;
    if (n > rs->plain_cap) {
        unsigned char *p = realloc(rs->plain, n);
        if (p == NULL) {
            abort();
        }
        rs->plain = p;
        rs->plain_cap = n;
    }
    const aead_key_t *key = find_seg_key(seg, rec->key_serial);
    int rc = key != NULL ? seg_open_frame(rec, key, rs->plain, out) : -EIO;
    if (rc != 0) {
        log_error("shard log %s: record %" PRIu64 " in segment %" PRIu64 " at offset %" PRIu64
                  " fails authentication (%s): altered or damaged, not served",
                  log->dir, rec->index, seg->first_index, offset,
                  key == NULL ? "no such data key" : "bad tag");
        return rc == -EIO ? -EIO : -EBADMSG;
    }
    return 0;
}

/* Reads frames of one segment starting at offset; visits those in [from, end). */
static int read_segment(shard_log_t *log, segment_t *seg, uint64_t offset, read_state_t *rs)
{
    const fileio_t *io = log->opt.io;
    size_t cap = READ_CHUNK;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        abort();
    }
    int rc = 0;
    uint64_t expected = UINT64_MAX;
    while (!rs->done) {
        ssize_t got = fileio_read_full(io, seg->fd, buf, cap, (off_t)offset);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        if (got == 0) {
            break; /* end of this segment */
        }
        size_t pos = 0;
        seg_status_t st = SEG_OK;
        while (pos < (size_t)got && !rs->done) {
            seg_record_t rec;
            size_t len;
            st = seg_decode_frame(buf + pos, (size_t)got - pos, expected, &rec, &len);
            if (st != SEG_OK) {
                break;
            }
            if (rec.flags == SEG_FLAG_KEY) {
                pos += len; /* its key is in the segment's table already */
                continue;
            }
            expected = rec.index + 1;
            pos += len;
            if (rec.index >= rs->end) {
                rs->done = true;
                break;
            }
            if (rec.index < rs->from) {
                continue;
            }
            size_t size = rec.pk_len + rec.data_len;
            if (rs->records > 0 && (rs->records >= rs->max_records || rs->bytes + size > rs->max_bytes)) {
                rs->done = true;
                break;
            }
            seg_record_t view = rec;
            if (rec.flags == SEG_FLAG_SEALED && !rs->raw) {
                rc = open_record(log, seg, rs, &rec, offset + pos - len, &view);
                if (rc != 0) {
                    rs->done = true;
                    break;
                }
            }
            rs->records++;
            rs->bytes += size;
            rs->next = rec.index + 1;
            if (!rs->fn(rs->arg, &view)) {
                rs->done = true;
            }
            if (rs->records >= rs->max_records) {
                rs->done = true;
            }
        }
        if (rs->done) {
            break;
        }
        if (st != SEG_OK && expected != UINT64_MAX && expected >= rs->end) {
            break; /* past the visible end: a frame may be in the middle of being written */
        }
        if (st == SEG_INCOMPLETE) {
            if ((size_t)got < cap && pos == (size_t)got) {
                break; /* clean end of the file */
            }
            if (pos == 0) {
                uint32_t frame_len = 0;
                uint64_t ignored;
                seg_peek_frame(buf, (size_t)got, &frame_len, &ignored);
                if ((size_t)got < cap || frame_len <= cap || frame_len > (64u << 20)) {
                    /* a partial frame below the visible end cannot happen: damage */
                    rc = (size_t)got < cap ? 0 : -EIO;
                    break;
                }
                unsigned char *p = realloc(buf, frame_len);
                if (p == NULL) {
                    abort();
                }
                buf = p;
                cap = frame_len;
                continue;
            }
            offset += pos;
            continue;
        }
        if (st != SEG_OK) {
            log_error("shard log %s: corrupt frame in segment %" PRIu64 " at offset %" PRIu64 " (reason %d)",
                      log->dir, seg->first_index, offset + pos, (int)st);
            rc = -EIO;
            break;
        }
        offset += pos;
    }
    free(buf);
    return rc;
}

static int read_range(shard_log_t *log, uint64_t from, size_t max_records, size_t max_bytes, log_visit_fn fn,
                      void *arg, uint64_t *next, bool raw)
{
    read_state_t rs = {.max_records = max_records ? max_records : 1, .max_bytes = max_bytes, .from = from,
                       .next = from, .fn = fn, .arg = arg, .raw = raw};
    int rc = 0;
    pthread_rwlock_rdlock(&log->segs_lock);
    rs.end = atomic_load_explicit(&log->visible_end, memory_order_acquire);
    if (rs.from < log->segs[0]->first_index) {
        rs.from = log->segs[0]->first_index;
        rs.next = rs.from;
    }
    size_t i = log->nsegs;
    while (i > 0 && log->segs[i - 1]->first_index > rs.from) {
        i--;
    }
    for (i = i > 0 ? i - 1 : 0; i < log->nsegs && rs.from < rs.end && !rs.done; i++) {
        segment_t *seg = log->segs[i];
        if (atomic_load(&seg->end_index) <= rs.from && i + 1 < log->nsegs) {
            continue;
        }
        uint64_t start = rs.from > seg->first_index ? rs.from : seg->first_index;
        rc = read_segment(log, seg, index_floor(seg, start), &rs);
        if (rc != 0) {
            break;
        }
    }
    pthread_rwlock_unlock(&log->segs_lock);
    if (rs.plain != NULL) {
        OPENSSL_cleanse(rs.plain, rs.plain_cap);
        free(rs.plain);
    }
    *next = rs.next;
    return rc;
}

int shard_log_read(shard_log_t *log, uint64_t from, size_t max_records, size_t max_bytes, log_visit_fn fn,
                   void *arg, uint64_t *next)
{
    return read_range(log, from, max_records, max_bytes, fn, arg, next, false);
}

typedef struct seek_state {
    int64_t ts;
    uint64_t found;
    bool hit;
} seek_state_t;

static bool seek_visit(void *arg, const seg_record_t *rec)
{
    seek_state_t *s = arg;
    if (rec->arrival_ms >= s->ts) {
        s->found = rec->index;
        s->hit = true;
        return false;
    }
    return true;
}

int shard_log_seek_time(shard_log_t *log, int64_t ts_ms, uint64_t *index)
{
    uint64_t start = 0, end = 0;
    pthread_rwlock_rdlock(&log->segs_lock);
    end = atomic_load_explicit(&log->visible_end, memory_order_acquire);
    start = log->segs[0]->first_index;
    /* the first segment whose last arrival reaches ts, then the last index entry before ts in it */
    for (size_t i = 0; i < log->nsegs; i++) {
        segment_t *seg = log->segs[i];
        if (atomic_load(&seg->last_arrival_ms) < ts_ms && i + 1 < log->nsegs) {
            continue;
        }
        start = seg->first_index;
        size_t n = atomic_load_explicit(&seg->idx_count, memory_order_acquire);
        for (size_t k = 0; k < n && seg->idx[k].arrival_ms < ts_ms; k++) {
            start = seg->idx[k].index;
        }
        break;
    }
    /* the common case: nothing is older than ts (the first record's index entry says so) */
    segment_t *head = log->segs[0];
    uint64_t head_first = head->first_index;
    bool all_newer = atomic_load_explicit(&head->idx_count, memory_order_acquire) > 0 &&
                     head->idx[0].index == head_first && head->idx[0].arrival_ms >= ts_ms;
    pthread_rwlock_unlock(&log->segs_lock);
    if (all_newer) {
        *index = head_first < end ? head_first : end;
        return 0;
    }
    seek_state_t s = {ts_ms, end, false};
    while (!s.hit && start < end) {
        uint64_t next = start;
        int rc = read_range(log, start, 10000, SIZE_MAX, seek_visit, &s, &next, true);
        if (rc != 0) {
            return rc;
        }
        if (next == start) {
            break;
        }
        start = next;
    }
    *index = s.hit ? s.found : end;
    return 0;
}

int shard_log_trim(shard_log_t *log, int64_t before_ms)
{
    int removed = 0;
    pthread_mutex_lock(&log->append_lock);
    pthread_rwlock_wrlock(&log->segs_lock);
    uint64_t visible = atomic_load(&log->visible_end);
    while (log->nsegs > 1) {
        segment_t *seg = log->segs[0];
        uint64_t end = atomic_load(&seg->end_index);
        if (atomic_load(&seg->last_arrival_ms) >= before_ms || end > visible) {
            break;
        }
        char path[4200];
        seg_path(log, seg->first_index, path, sizeof path);
        if (log->opt.io->unlink(path) != 0 && errno != ENOENT) {
            log_warn("shard log %s: cannot delete %s: %s", log->dir, path, strerror(errno));
            break;
        }
        segment_free(log, seg);
        memmove(log->segs, log->segs + 1, (log->nsegs - 1) * sizeof *log->segs);
        log->nsegs--;
        removed++;
    }
    pthread_rwlock_unlock(&log->segs_lock);
    pthread_mutex_unlock(&log->append_lock);
    return removed;
}
