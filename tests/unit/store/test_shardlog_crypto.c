/*
 * Unit tests for the encryption of store/shardlog (format in segment.h, keys in keystore.h): records
 * appended after shard_log_set_encryption are sealed on disk and read back in clear with SEG_FLAG_SEALED;
 * records before and after stay in clear; a reopened log reads them all.
 *
 * The nonce rule is checked from the outside: an I/O table that sees every buffer the log writes (also
 * the ones whose write fails) notes the (data key, index) pair of every sealed frame, a data key being
 * known by the random nonce that wrapped it in its KEY frame. No pair may ever repeat: not after a failed
 * write, not after a failed sync that gives indexes out again, not after a torn tail cut off at reopen.
 *
 * And the failure modes: a master key missing or different at open refuses to open the log (naming the
 * key) without touching its files; an altered ciphertext byte with a fixed-up crc is an error on read,
 * never data; a master key the store does not hold makes appends fail, never store in clear.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "store/keystore.h"
#include "store/shardlog.h"

static char tmp[64];
static char logdir[128];
static char keypath[128];
static keystore_t *keys;
static char master[KEYSTORE_ID_MAX + 1];

/* ---- an I/O table that watches what is written ---- */

typedef struct pair {
    unsigned char key[AEAD_NONCE_BYTES]; /* the KEY frame's wrap nonce: names the data key */
    uint64_t index;
} pair_t;

static struct watch {
    struct {
        int fd;
        uint32_t serial;
        unsigned char id[AEAD_NONCE_BYTES];
    } keys[256];
    size_t nkeys;
    pair_t *pairs;
    size_t npairs, cap;
    size_t key_frames;
    int fail_pwrite_at, pwrite_calls; /* 1-based; 0: never */
    int fail_fdatasync_at, fdatasync_calls;
} W;

static void note_pair(const unsigned char id[AEAD_NONCE_BYTES], uint64_t index)
{
    for (size_t i = 0; i < W.npairs; i++) {
        if (W.pairs[i].index == index && memcmp(W.pairs[i].key, id, AEAD_NONCE_BYTES) == 0) {
            cr_assert_fail("index %" PRIu64 " sealed twice under one data key", index);
        }
    }
    if (W.npairs == W.cap) {
        W.cap = W.cap ? W.cap * 2 : 256;
        W.pairs = realloc(W.pairs, W.cap * sizeof *W.pairs);
        cr_assert_not_null(W.pairs);
    }
    memcpy(W.pairs[W.npairs].key, id, AEAD_NONCE_BYTES);
    W.pairs[W.npairs++].index = index;
}

/* Notes the sealed frames of a buffer written at off (frames only: headers are skipped). */
static void watch_buffer(int fd, const unsigned char *buf, size_t n, off_t off)
{
    size_t pos = off == 0 ? SEG_HEADER_SIZE : 0;
    while (pos + SEG_FRAME_HEADER <= n) {
        seg_record_t rec;
        size_t len;
        if (seg_decode_frame(buf + pos, n - pos, UINT64_MAX, &rec, &len) != SEG_OK) {
            return;
        }
        if (rec.flags == SEG_FLAG_KEY) {
            const unsigned char *aad, *nonce, *wrapped, *tag;
            size_t aad_len;
            seg_key_frame_parts(&rec, &aad, &aad_len, &nonce, &wrapped, &tag);
            cr_assert_lt(W.nkeys, 256u);
            W.keys[W.nkeys].fd = fd;
            W.keys[W.nkeys].serial = rec.key_serial;
            memcpy(W.keys[W.nkeys++].id, nonce, AEAD_NONCE_BYTES);
            W.key_frames++;
        } else if (rec.flags == SEG_FLAG_SEALED) {
            const unsigned char *id = NULL;
            for (size_t i = W.nkeys; i > 0 && id == NULL; i--) {
                if (W.keys[i - 1].fd == fd && W.keys[i - 1].serial == rec.key_serial) {
                    id = W.keys[i - 1].id;
                }
            }
            cr_assert_not_null(id, "a sealed frame without its KEY frame written before");
            note_pair(id, rec.index);
        }
        pos += len;
    }
}

static ssize_t watch_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    watch_buffer(fd, buf, n, off);
    if (++W.pwrite_calls == W.fail_pwrite_at) {
        /* half of it reaches the file, as in a torn write */
        cr_assert_eq(fileio_posix.pwrite(fd, buf, n / 2, off), (ssize_t)(n / 2));
        errno = EIO;
        return -1;
    }
    return fileio_posix.pwrite(fd, buf, n, off);
}

static int watch_fdatasync(int fd)
{
    (void)fd;
    if (++W.fdatasync_calls == W.fail_fdatasync_at) {
        errno = EIO;
        return -1;
    }
    return 0;
}

static fileio_t watch_io;

/* ---- setup ---- */

static void setup(void)
{
    log_set_level(LOG_ERROR + 1);
    snprintf(tmp, sizeof tmp, "/tmp/eddy-shardlog-crypto-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(logdir, sizeof logdir, "%s/log", tmp);
    snprintf(keypath, sizeof keypath, "%s/%s", tmp, KEYSTORE_FILE);
    char err[256];
    cr_assert_eq(keystore_open(keypath, &keys, err, sizeof err), 0, "%s", err);
    cr_assert_eq(keystore_create_key(keys, "alias/test", master), 0);
    memset(&W, 0, sizeof W);
    watch_io = fileio_posix;
    watch_io.pwrite = watch_pwrite;
    watch_io.fdatasync = watch_fdatasync;
}

static void teardown(void)
{
    keystore_free(keys);
    free(W.pairs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(shardlog_crypto, .init = setup, .fini = teardown);

static shard_log_options_t options(size_t segment_bytes, bool visible_after_sync, keystore_t *ks)
{
    shard_log_options_t o;
    shard_log_default_options(&o);
    o.io = &watch_io;
    o.segment_bytes = segment_bytes;
    o.index_interval = 256;
    o.visible_after_sync = visible_after_sync;
    o.keys = ks;
    return o;
}

static shard_log_t *open_log(const shard_log_options_t *o)
{
    char err[1024] = "";
    shard_log_t *log = NULL;
    int rc = shard_log_open(logdir, o, 0, &log, err, sizeof err);
    cr_assert_eq(rc, 0, "shard_log_open: %d %s", rc, err);
    return log;
}

/* Payload of record i: recognisable, and different for every attempt (gen). */
static size_t payload(uint64_t i, int gen, char *out)
{
    return (size_t)sprintf(out, "payload-%06" PRIu64 "-gen%d-%s", i, gen, "0123456789abcdefghij");
}

static int append_one(shard_log_t *log, uint64_t i, int gen, uint64_t *first)
{
    char data[128], pk[32];
    size_t n = payload(i, gen, data);
    size_t pk_len = (size_t)sprintf(pk, "pk-%06" PRIu64, i);
    log_entry_t e = {pk, pk_len, data, n};
    int64_t arrival;
    return shard_log_append(log, &e, 1, 1000 + (int64_t)i, first, &arrival);
}

static void append_n(shard_log_t *log, uint64_t from, uint64_t n, int gen)
{
    for (uint64_t i = from; i < from + n; i++) {
        uint64_t first;
        cr_assert_eq(append_one(log, i, gen, &first), 0, "append %" PRIu64, i);
        cr_assert_eq(first, i);
    }
    cr_assert_eq(shard_log_sync(log, NULL), 0);
}

typedef struct seen {
    uint64_t next;
    int gens[4096];    /* generation expected per index */
    bool sealed[4096]; /* expected SEG_FLAG_SEALED */
    int bad;
} seen_t;

static bool check(void *arg, const seg_record_t *r)
{
    seen_t *s = arg;
    char want[128], pk[32];
    size_t n = payload(r->index, s->gens[r->index], want);
    size_t pk_len = (size_t)sprintf(pk, "pk-%06" PRIu64, r->index);
    if (r->index != s->next || r->data_len != n || memcmp(r->data, want, n) != 0 || r->pk_len != pk_len ||
        memcmp(r->pk, pk, pk_len) != 0 || ((r->flags & SEG_FLAG_SEALED) != 0) != s->sealed[r->index]) {
        s->bad++;
    }
    s->next = r->index + 1;
    return true;
}

/* Reads [0, end) and checks every record. */
static void read_all(shard_log_t *log, seen_t *s, uint64_t end)
{
    s->next = 0;
    s->bad = 0;
    uint64_t next = 0;
    while (next < end) {
        uint64_t from = next;
        cr_assert_eq(shard_log_read(log, from, 7, SIZE_MAX, check, s, &next), 0);
        cr_assert_gt(next, from);
    }
    cr_assert_eq(s->bad, 0, "%d records differ", s->bad);
    cr_assert_eq(s->next, end);
}

/* Whether any file in the log folder contains needle. */
static bool on_disk(const char *needle)
{
    DIR *d = opendir(logdir);
    cr_assert_not_null(d);
    struct dirent *e;
    bool found = false;
    size_t m = strlen(needle);
    while (!found && (e = readdir(d)) != NULL) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", logdir, e->d_name);
        FILE *f = fopen(p, "rb");
        if (f == NULL) {
            continue;
        }
        static unsigned char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        for (size_t i = 0; !found && i + m <= n; i++) {
            found = memcmp(buf + i, needle, m) == 0;
        }
    }
    closedir(d);
    return found;
}

static size_t count_segments(void)
{
    DIR *d = opendir(logdir);
    cr_assert_not_null(d);
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".seg") == 0;
    }
    closedir(d);
    return n;
}

/* ---- tests ---- */

Test(shardlog_crypto, sealed_between_set_and_clear_and_read_back)
{
    shard_log_options_t o = options(2048, true, keys);
    shard_log_t *log = open_log(&o);
    seen_t *s = calloc(1, sizeof *s);
    append_n(log, 0, 10, 0);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 10, 100, 0); /* across several 2 KiB segments, each with a KEY frame of its own */
    cr_assert_eq(shard_log_set_encryption(log, NULL), 0);
    append_n(log, 110, 10, 0);
    for (int i = 10; i < 110; i++) {
        s->sealed[i] = true;
    }
    read_all(log, s, 120);
    char p[128];
    payload(5, 0, p);
    cr_assert(on_disk(p), "before: in clear");
    payload(115, 0, p);
    cr_assert(on_disk(p), "after: in clear");
    cr_assert(on_disk("pk-000115"));
    for (uint64_t i = 10; i < 110; i++) {
        payload(i, 0, p);
        cr_assert_not(on_disk(p), "record %" PRIu64 " is on disk in clear", i);
    }
    cr_assert_not(on_disk("pk-000050"), "partition keys are sealed too");
    cr_assert_geq(count_segments(), 4u);
    cr_assert_geq(W.key_frames, count_segments() - 1, "one KEY frame per segment with sealed records");

    /* seeking by time reads arrival times without opening anything */
    uint64_t at;
    cr_assert_eq(shard_log_seek_time(log, 1000 + 50, &at), 0);
    cr_assert_eq(at, 50u);

    shard_log_unref(log);
    log = open_log(&o);
    read_all(log, s, 120);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, a_restart_makes_a_new_data_key)
{
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 5, 0);
    cr_assert_eq(W.key_frames, 1u);
    append_n(log, 5, 5, 0);
    cr_assert_eq(W.key_frames, 1u, "one data key for the whole run");
    shard_log_unref(log);
    log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 10, 5, 0);
    cr_assert_eq(W.key_frames, 2u, "a reopened log never seals with a key read back from disk");
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 15; i++) {
        s->sealed[i] = true;
    }
    read_all(log, s, 15);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, no_nonce_twice_after_a_failed_write)
{
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 5, 0);
    W.fail_pwrite_at = W.pwrite_calls + 1;
    uint64_t first;
    cr_assert_eq(append_one(log, 5, 1, &first), -EIO, "half written, then failed");
    append_n(log, 5, 5, 2); /* index 5 again, other bytes: under another data key (note_pair checks) */
    cr_assert_eq(W.key_frames, 2u);
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 10; i++) {
        s->sealed[i] = true;
        s->gens[i] = i < 5 ? 0 : 2;
    }
    read_all(log, s, 10);
    shard_log_unref(log);
    log = open_log(&o);
    read_all(log, s, 10);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, no_nonce_twice_after_a_discarded_sync)
{
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 5, 0);
    uint64_t first;
    cr_assert_eq(append_one(log, 5, 1, &first), 0);
    cr_assert_eq(append_one(log, 6, 1, &first), 0);
    W.fail_fdatasync_at = W.fdatasync_calls + 1;
    cr_assert_eq(shard_log_sync(log, NULL), -EIO, "records 5 and 6 are discarded");
    append_n(log, 5, 5, 2); /* their indexes are given out again */
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 10; i++) {
        s->sealed[i] = true;
        s->gens[i] = i < 5 ? 0 : 2;
    }
    read_all(log, s, 10);
    shard_log_unref(log);
    log = open_log(&o);
    read_all(log, s, 10);
    shard_log_unref(log);
    free(s);
}

static void segment_path(uint64_t first, char *out, size_t len)
{
    char name[32];
    seg_file_name(first, name);
    snprintf(out, len, "%s/%s", logdir, name);
}

static off_t file_size(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0, "%s", p);
    return st.st_size;
}

Test(shardlog_crypto, no_nonce_twice_after_a_torn_tail_is_cut_off)
{
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 10, 0);
    shard_log_unref(log);
    /* a crash tore the last frame: recovery cuts it off and index 9 is given out again */
    char p[256];
    segment_path(0, p, sizeof p);
    cr_assert_eq(truncate(p, file_size(p) - 5), 0);
    log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 9, 3, 2);
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 12; i++) {
        s->sealed[i] = true;
        s->gens[i] = i < 9 ? 0 : 2;
    }
    read_all(log, s, 12);
    shard_log_unref(log);
    free(s);
}

/* Opens a log that must be refused; returns the code and the message. */
static int refused(const shard_log_options_t *o, char *err, size_t len)
{
    shard_log_t *log = NULL;
    err[0] = '\0';
    int rc = shard_log_open(logdir, o, 0, &log, err, len);
    cr_assert_neq(rc, 0, "the log opened");
    cr_assert_null(log);
    return rc;
}

Test(shardlog_crypto, a_missing_or_different_master_key_refuses_to_open)
{
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 10, 0);
    shard_log_unref(log);
    char p[256];
    segment_path(0, p, sizeof p);
    off_t size = file_size(p);
    char err[1024];

    shard_log_options_t none = options(1 << 20, true, NULL);
    cr_assert_eq(refused(&none, err, sizeof err), -ENOKEY);
    cr_assert_not_null(strstr(err, master), "the message names the key: %s", err);

    /* another key file: no such key */
    char other_path[160];
    snprintf(other_path, sizeof other_path, "%s/other.json", tmp);
    keystore_t *other;
    cr_assert_eq(keystore_open(other_path, &other, err, sizeof err), 0);
    char unused[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_create_key(other, NULL, unused), 0);
    shard_log_options_t wrong = options(1 << 20, true, other);
    cr_assert_eq(refused(&wrong, err, sizeof err), -ENOKEY);
    cr_assert_not_null(strstr(err, master), "%s", err);
    cr_assert_not_null(strstr(err, "backup"), "%s", err);
    keystore_free(other);

    /* the same id with other material (a hand edit gone wrong) */
    FILE *f = fopen(other_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"%s\", \"material\": \"%064d\"}]}", master,
            7);
    fclose(f);
    cr_assert_eq(keystore_open(other_path, &other, err, sizeof err), 0, "%s", err);
    wrong.keys = other;
    cr_assert_eq(refused(&wrong, err, sizeof err), -EBADMSG);
    cr_assert_not_null(strstr(err, master), "%s", err);
    cr_assert_not_null(strstr(err, "does not unwrap"), "%s", err);
    keystore_free(other);

    cr_assert_eq(file_size(p), size, "a refused open cuts nothing off");
    log = open_log(&o);
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 10; i++) {
        s->sealed[i] = true;
    }
    read_all(log, s, 10);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, altered_ciphertext_is_an_error_never_data)
{
    shard_log_options_t o = options(1 << 20, false, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 3, 0);
    shard_log_unref(log);

    /* find record 1's frame, change one ciphertext byte and fix the crc up */
    char p[256];
    segment_path(0, p, sizeof p);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    cr_assert_gt(n, SEG_HEADER_SIZE);
    size_t pos = SEG_HEADER_SIZE;
    seg_record_t rec;
    size_t len = 0;
    while (true) {
        cr_assert_eq(seg_decode_frame(buf + pos, (size_t)n - pos, UINT64_MAX, &rec, &len), SEG_OK);
        if (rec.flags == SEG_FLAG_SEALED && rec.index == 1) {
            break;
        }
        pos += len;
    }
    buf[pos + 36 + 12] ^= 0x40;
    uint32_t crc = crc32c(buf + pos + 8, len - 8);
    for (int i = 0; i < 4; i++) {
        buf[pos + 4 + i] = (unsigned char)(crc >> (8 * i));
    }
    cr_assert_eq(pwrite(fd, buf + pos, len, (off_t)pos), (ssize_t)len);
    close(fd);

    log = open_log(&o); /* the crc is right: recovery keeps the frame */
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 3; i++) {
        s->sealed[i] = true;
    }
    uint64_t next = 0;
    cr_assert_eq(shard_log_read(log, 0, 10, SIZE_MAX, check, s, &next), -EBADMSG);
    cr_assert_eq(s->bad, 0, "what was served is intact");
    cr_assert_eq(s->next, 1u, "only record 0 was served");
    cr_assert_eq(shard_log_read(log, 2, 10, SIZE_MAX, check, s, &next), 0, "records after it are fine");
    cr_assert_eq(next, 3u);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, an_unknown_master_key_fails_appends_never_stores_in_clear)
{
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    append_n(log, 0, 2, 0);
    char p[256];
    segment_path(0, p, sizeof p);
    off_t size = file_size(p);
    cr_assert_eq(shard_log_set_encryption(log, "no-such-key"), -ENOKEY);
    uint64_t first;
    cr_assert_eq(append_one(log, 2, 0, &first), -ENOKEY);
    cr_assert_eq(file_size(p), size, "nothing written");
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 2, 2, 0);
    shard_log_unref(log);
    seen_t *s = calloc(1, sizeof *s);
    s->sealed[2] = s->sealed[3] = true;
    log = open_log(&o);
    read_all(log, s, 4);
    shard_log_unref(log);
    free(s);
}

/* A version 1 segment (from an older eddy) with records in clear. */
static void write_v1_segment(uint64_t first, uint64_t count)
{
    cr_assert_eq(mkdir(logdir, 0750), 0);
    char p[256];
    segment_path(first, p, sizeof p);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0640);
    cr_assert_geq(fd, 0);
    unsigned char h[SEG_HEADER_SIZE];
    seg_encode_header(h, first);
    memcpy(h, SEG_MAGIC_V1, 8);
    uint32_t crc = crc32c(h, 16);
    for (int i = 0; i < 4; i++) {
        h[16 + i] = (unsigned char)(crc >> (8 * i));
    }
    cr_assert_eq(write(fd, h, sizeof h), (ssize_t)sizeof h);
    for (uint64_t i = first; i < first + count; i++) {
        char data[128], pk[32];
        size_t n = payload(i, 0, data);
        size_t pk_len = (size_t)sprintf(pk, "pk-%06" PRIu64, i);
        unsigned char f[256];
        seg_encode_frame(f, i, 1000 + (int64_t)i, pk, pk_len, data, n);
        cr_assert_eq(write(fd, f, seg_frame_size(pk_len, n)), (ssize_t)seg_frame_size(pk_len, n));
    }
    close(fd);
}

static int header_version(uint64_t first)
{
    char p[256];
    segment_path(first, p, sizeof p);
    unsigned char h[SEG_HEADER_SIZE];
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(read(fd, h, sizeof h), (ssize_t)sizeof h);
    close(fd);
    return seg_header_version(h);
}

Test(shardlog_crypto, a_version_1_segment_is_rolled_before_sealing)
{
    write_v1_segment(0, 3);
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    append_n(log, 3, 1, 0); /* in clear: still into the version 1 file */
    cr_assert_eq(count_segments(), 1u);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 4, 3, 0);
    cr_assert_eq(count_segments(), 2u, "sealed records start a version 2 segment");
    cr_assert_eq(header_version(0), 1);
    cr_assert_eq(header_version(4), 2);
    seen_t *s = calloc(1, sizeof *s);
    s->sealed[4] = s->sealed[5] = s->sealed[6] = true;
    read_all(log, s, 7);
    shard_log_unref(log);
    log = open_log(&o);
    read_all(log, s, 7);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, an_empty_version_1_segment_is_replaced)
{
    write_v1_segment(0, 0);
    shard_log_options_t o = options(1 << 20, true, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 3, 0);
    cr_assert_eq(count_segments(), 1u);
    cr_assert_eq(header_version(0), 2, "the empty file was replaced by a version 2 one");
    char p[300];
    segment_path(0, p, sizeof p);
    strcat(p, ".new");
    cr_assert_neq(access(p, F_OK), 0, "no temporary file left");
    seen_t *s = calloc(1, sizeof *s);
    s->sealed[0] = s->sealed[1] = s->sealed[2] = true;
    read_all(log, s, 3);
    shard_log_unref(log);
    log = open_log(&o);
    read_all(log, s, 3);
    shard_log_unref(log);
    free(s);
}

Test(shardlog_crypto, trimming_sealed_segments)
{
    shard_log_options_t o = options(2048, false, keys);
    shard_log_t *log = open_log(&o);
    cr_assert_eq(shard_log_set_encryption(log, master), 0);
    append_n(log, 0, 60, 0);
    size_t before = count_segments();
    cr_assert_gt(shard_log_trim(log, 1000 + 30), 0);
    cr_assert_lt(count_segments(), before);
    uint64_t first, end;
    shard_log_bounds(log, &first, &end, NULL);
    seen_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 60; i++) {
        s->sealed[i] = true;
    }
    s->next = first;
    s->bad = 0;
    uint64_t next = first;
    cr_assert_eq(shard_log_read(log, first, 100, SIZE_MAX, check, s, &next), 0);
    cr_assert_eq(s->bad, 0);
    cr_assert_eq(next, 60u);
    shard_log_unref(log);
    free(s);
}
