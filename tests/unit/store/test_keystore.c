/*
 * Unit tests for store/keystore (the key file, KeyId resolution, wrapping data keys) and store/aead
 * (AES-256-GCM with reused contexts), which the key store and the shard log build on.
 *
 * Invariants checked: a key file is created only when needed, with mode 0600, and reloads to the same keys;
 * every KeyId form Kinesis accepts resolves, nothing else does (an ARN of another region or account
 * included); a key file that is too open, malformed or damaged is refused with a message saying why;
 * unauthenticated bytes are never handed out (a failed open wipes its output).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "store/aead.h"
#include "store/keystore.h"

static char tmp[64];
static char path[128];

static void setup(void)
{
    log_set_level(LOG_ERROR + 1);
    snprintf(tmp, sizeof tmp, "/tmp/eddy-keystore-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(path, sizeof path, "%s/%s", tmp, KEYSTORE_FILE);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(aead);
TestSuite(keystore, .init = setup, .fini = teardown);

/* ---- aead ---- */

static void unhex(const char *s, unsigned char *out)
{
    for (size_t i = 0; s[2 * i] != '\0'; i++) {
        unsigned v;
        cr_assert_eq(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
}

/* The GCM specification's test cases 13 and 14 (AES-256, zero key and nonce): our calls are plain GCM. */
Test(aead, known_answers)
{
    unsigned char zero[32] = {0}, nonce[12] = {0}, out[16], tag[16], want[16];
    aead_key_t *k = aead_key_new(zero);
    cr_assert_eq(aead_seal(k, nonce, NULL, 0, NULL, 0, out, tag), 0);
    unhex("530f8afbc74536b9a963b4f1c4cb738b", want);
    cr_assert_eq(memcmp(tag, want, 16), 0, "test case 13");
    cr_assert_eq(aead_seal(k, nonce, NULL, 0, zero, 16, out, tag), 0);
    unhex("cea7403d4d606b6e074ec5d3baf39d18", want);
    cr_assert_eq(memcmp(out, want, 16), 0, "test case 14 ciphertext");
    unhex("d0d1c8a799996bf0265b98b5d48ab919", want);
    cr_assert_eq(memcmp(tag, want, 16), 0, "test case 14 tag");
    unsigned char back[16];
    cr_assert_eq(aead_open(k, nonce, NULL, 0, out, 16, tag, back), 0);
    cr_assert_eq(memcmp(back, zero, 16), 0);
    aead_key_free(k);
}

Test(aead, round_trip_in_place_and_every_bit_matters)
{
    unsigned char key[32], nonce[12], aad[20], msg[100], buf[100], tag[16];
    cr_assert_eq(aead_random(key, sizeof key), 0);
    cr_assert_eq(aead_random(nonce, sizeof nonce), 0);
    memset(aad, 0xA5, sizeof aad);
    for (size_t i = 0; i < sizeof msg; i++) {
        msg[i] = (unsigned char)i;
    }
    aead_key_t *k = aead_key_new(key);
    memcpy(buf, msg, sizeof msg);
    cr_assert_eq(aead_seal(k, nonce, aad, sizeof aad, buf, sizeof buf, buf, tag), 0);
    cr_assert_neq(memcmp(buf, msg, sizeof msg), 0);
    unsigned char sealed[100];
    memcpy(sealed, buf, sizeof buf);
    cr_assert_eq(aead_open(k, nonce, aad, sizeof aad, buf, sizeof buf, tag, buf), 0);
    cr_assert_eq(memcmp(buf, msg, sizeof msg), 0);

    unsigned char out[100];
    for (size_t bit = 0; bit < 8 * (sizeof sealed + sizeof tag + sizeof aad + sizeof nonce); bit++) {
        unsigned char c[100], t[16], a[20], n[12];
        memcpy(c, sealed, sizeof c);
        memcpy(t, tag, sizeof t);
        memcpy(a, aad, sizeof a);
        memcpy(n, nonce, sizeof n);
        size_t byte = bit / 8;
        unsigned char mask = (unsigned char)(1u << (bit % 8));
        if (byte < sizeof c) {
            c[byte] ^= mask;
        } else if ((byte -= sizeof c) < sizeof t) {
            t[byte] ^= mask;
        } else if ((byte -= sizeof t) < sizeof a) {
            a[byte] ^= mask;
        } else {
            n[byte - sizeof a] ^= mask;
        }
        memset(out, 0x77, sizeof out);
        cr_assert_eq(aead_open(k, n, a, sizeof a, c, sizeof c, t, out), -EBADMSG, "bit %zu", bit);
        for (size_t i = 0; i < sizeof out; i++) {
            cr_assert_eq(out[i], 0, "bit %zu: output wiped", bit);
        }
    }
    unsigned char other_key[32];
    memcpy(other_key, key, sizeof key);
    other_key[31] ^= 1;
    aead_key_t *other = aead_key_new(other_key);
    cr_assert_eq(aead_open(other, nonce, aad, sizeof aad, sealed, sizeof sealed, tag, out), -EBADMSG);
    aead_key_free(other);
    aead_key_free(k);
}

typedef struct opener {
    aead_key_t *keys[3];
    unsigned char sealed[3][64], tags[3][16];
    int failures;
} opener_t;

static void *open_many(void *arg)
{
    opener_t *o = arg;
    unsigned char nonce[12] = {1}, out[64];
    for (int i = 0; i < 3000; i++) {
        int k = (i * 7) % 3; /* keys alternate: each thread's context reloads its schedule */
        if (aead_open(o->keys[k], nonce, NULL, 0, o->sealed[k], 64, o->tags[k], out) != 0 ||
            out[0] != 'a' + k) {
            __atomic_add_fetch(&o->failures, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

Test(aead, concurrent_opens_with_alternating_keys)
{
    opener_t o = {0};
    unsigned char nonce[12] = {1}, msg[64];
    for (int k = 0; k < 3; k++) {
        unsigned char key[32];
        cr_assert_eq(aead_random(key, sizeof key), 0);
        o.keys[k] = aead_key_new(key);
        memset(msg, 'a' + k, sizeof msg);
        cr_assert_eq(aead_seal(o.keys[k], nonce, NULL, 0, msg, sizeof msg, o.sealed[k], o.tags[k]), 0);
    }
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, open_many, &o), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert_eq(o.failures, 0);
    for (int k = 0; k < 3; k++) {
        aead_key_free(o.keys[k]);
    }
}

/* ---- keystore ---- */

static keystore_t *open_store(void)
{
    char err[512] = "";
    keystore_t *ks = NULL;
    int rc = keystore_open(path, &ks, err, sizeof err);
    cr_assert_eq(rc, 0, "keystore_open: %d %s", rc, err);
    return ks;
}

/* Opens a store that must be refused; returns the errno and copies the message. */
static int refuse(char *err, size_t len)
{
    keystore_t *ks = NULL;
    err[0] = '\0';
    int rc = keystore_open(path, &ks, err, len);
    cr_assert_neq(rc, 0, "the key file was accepted");
    cr_assert_null(ks);
    cr_assert_neq(err[0], '\0', "a refusal says why");
    return rc;
}

static void write_file(const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

static char *read_file(void)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(keystore, created_only_when_the_default_alias_is_first_needed)
{
    keystore_t *ks = open_store();
    struct stat st;
    cr_assert_neq(stat(path, &st), 0, "opening creates no file");
    char id[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_resolve(ks, "alias/other", NULL, NULL, true, id), -ENOENT);
    cr_assert_neq(stat(path, &st), 0, "an unknown alias creates no file");
    cr_assert_eq(keystore_resolve(ks, KEYSTORE_DEFAULT_ALIAS, NULL, NULL, false, id), -ENOENT);
    cr_assert_neq(stat(path, &st), 0, "nor the default alias without create");
    cr_assert_eq(keystore_resolve(ks, KEYSTORE_DEFAULT_ALIAS, NULL, NULL, true, id), 0);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(strlen(id), 36, "a UUID: %s", id);
    cr_assert(keystore_has(ks, id));
    char again[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_resolve(ks, KEYSTORE_DEFAULT_ALIAS, NULL, NULL, true, again), 0);
    cr_assert_str_eq(again, id, "created once");
    const char *text = read_file();
    cr_assert_not_null(strstr(text, "\"format\": \"eddy-keys-1\""));
    cr_assert_not_null(strstr(text, id));
    cr_assert_not_null(strstr(text, "\"check\""));
    keystore_free(ks);

    /* reloaded: the same key (it unwraps what the first store wrapped) */
    ks = open_store();
    cr_assert_eq(keystore_resolve(ks, KEYSTORE_DEFAULT_ALIAS, NULL, NULL, true, again), 0);
    cr_assert_str_eq(again, id);
    keystore_free(ks);
}

Test(keystore, every_key_id_form_resolves_and_nothing_else)
{
    keystore_t *ks = open_store();
    char id[KEYSTORE_ID_MAX + 1], got[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_create_key(ks, "alias/team/a_b-c", id), 0);
    char forms[6][256];
    snprintf(forms[0], 256, "%s", id);
    snprintf(forms[1], 256, "arn:aws:kms:eu-west-1:123456789012:key/%s", id);
    snprintf(forms[2], 256, "alias/team/a_b-c");
    snprintf(forms[3], 256, "arn:aws:kms:eu-west-1:123456789012:alias/team/a_b-c");
    snprintf(forms[4], 256, "arn:aws-cn:kms:eu-west-1:123456789012:key/%s", id);
    snprintf(forms[5], 256, "arn:aws:kms:eu-west-1:123456789012:key/%s", id);
    for (int i = 0; i < 6; i++) {
        memset(got, 0, sizeof got);
        cr_assert_eq(keystore_resolve(ks, forms[i], "eu-west-1", "123456789012", true, got), 0, "%s", forms[i]);
        cr_assert_str_eq(got, id, "%s", forms[i]);
    }
    cr_assert_eq(keystore_resolve(ks, forms[1], NULL, NULL, true, got), 0, "NULL region and account: any");
    char bad[12][256];
    snprintf(bad[0], 256, "arn:aws:kms:us-east-1:123456789012:key/%s", id);     /* another region */
    snprintf(bad[1], 256, "arn:aws:kms:eu-west-1:000000000000:key/%s", id);     /* another account */
    snprintf(bad[2], 256, "arn:aws:kinesis:eu-west-1:123456789012:key/%s", id); /* not kms */
    snprintf(bad[3], 256, "arn::kms:eu-west-1:123456789012:key/%s", id);        /* no partition */
    snprintf(bad[4], 256, "arn:aws:kms:eu-west-1:123456789012:%s", id);         /* no key/ */
    snprintf(bad[5], 256, "arn:aws:kms:eu-west-1:123456789012:alias/team");     /* no such alias */
    snprintf(bad[6], 256, "key/%s", id);                                        /* not a KeyId form */
    snprintf(bad[7], 256, "team/a_b-c");                                        /* alias without alias/ */
    snprintf(bad[8], 256, "%s", "arn:aws:kms");
    snprintf(bad[9], 256, "%s", "");
    snprintf(bad[10], 256, "%.35s", id); /* a prefix of the id */
    snprintf(bad[11], 256, "ALIAS/team/a_b-c");
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(keystore_resolve(ks, bad[i], "eu-west-1", "123456789012", true, got), -ENOENT, "%s", bad[i]);
    }
    keystore_free(ks);
}

Test(keystore, create_key_rules)
{
    keystore_t *ks = open_store();
    char a[KEYSTORE_ID_MAX + 1], b[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_create_key(ks, "alias/x", a), 0);
    cr_assert_eq(keystore_create_key(ks, "alias/x", b), -EEXIST);
    cr_assert_eq(keystore_create_key(ks, "x", b), -EINVAL);
    cr_assert_eq(keystore_create_key(ks, "alias/", b), -EINVAL);
    cr_assert_eq(keystore_create_key(ks, "alias/sp ace", b), -EINVAL);
    cr_assert_eq(keystore_create_key(ks, NULL, b), 0, "a key without an alias");
    cr_assert_str_neq(a, b);
    keystore_free(ks);
    ks = open_store();
    cr_assert(keystore_has(ks, a) && keystore_has(ks, b), "both written");
    keystore_free(ks);
}

Test(keystore, wrap_and_unwrap)
{
    keystore_t *ks = open_store();
    char id[KEYSTORE_ID_MAX + 1], other[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_create_key(ks, NULL, id), 0);
    cr_assert_eq(keystore_create_key(ks, NULL, other), 0);
    unsigned char dk[32], nonce[12], wrapped[32], tag[16], back[32];
    cr_assert_eq(aead_random(dk, sizeof dk), 0);
    const char aad[] = "context";
    cr_assert_eq(keystore_wrap(ks, id, dk, aad, 7, nonce, wrapped, tag), 0);
    cr_assert_neq(memcmp(wrapped, dk, 32), 0);
    cr_assert_eq(keystore_unwrap(ks, id, nonce, wrapped, tag, aad, 7, back), 0);
    cr_assert_eq(memcmp(back, dk, 32), 0);
    cr_assert_eq(keystore_unwrap(ks, id, nonce, wrapped, tag, "contexT", 7, back), -EBADMSG);
    cr_assert_eq(keystore_unwrap(ks, other, nonce, wrapped, tag, aad, 7, back), -EBADMSG,
                 "another master key");
    cr_assert_eq(keystore_unwrap(ks, "no-such-key", nonce, wrapped, tag, aad, 7, back), -ENOKEY);
    unsigned char kept[12];
    memcpy(kept, nonce, sizeof kept);
    cr_assert_eq(keystore_wrap(ks, "no-such-key", dk, aad, 7, nonce, wrapped, tag), -ENOKEY);
    cr_assert_eq(memcmp(kept, nonce, sizeof kept), 0, "a failed wrap writes nothing");
    /* two wraps of one data key use different nonces */
    unsigned char nonce2[12], wrapped2[32], tag2[16];
    cr_assert_eq(keystore_wrap(ks, id, dk, aad, 7, nonce2, wrapped2, tag2), 0);
    cr_assert_neq(memcmp(nonce, nonce2, 12), 0);
    keystore_free(ks);

    /* after a reload, the same master key unwraps */
    ks = open_store();
    cr_assert_eq(keystore_unwrap(ks, id, nonce, wrapped, tag, aad, 7, back), 0);
    cr_assert_eq(memcmp(back, dk, 32), 0);
    keystore_free(ks);
}

Test(keystore, refuses_a_file_others_may_read)
{
    keystore_t *ks = open_store();
    char id[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_resolve(ks, KEYSTORE_DEFAULT_ALIAS, NULL, NULL, true, id), 0);
    keystore_free(ks);
    const mode_t modes[] = {0640, 0604, 0660, 0644, 0601};
    char err[512];
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        cr_assert_eq(chmod(path, modes[i]), 0);
        cr_assert_eq(refuse(err, sizeof err), -EPERM, "mode %o", modes[i]);
        cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
    }
    cr_assert_eq(chmod(path, 0400), 0);
    keystore_free(open_store());
}

Test(keystore, hand_made_files)
{
    char err[512];
    /* a key added by hand: no check value, no created date */
    write_file("{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"my-key-1\", \"material\": "
               "\"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\"}], "
               "\"aliases\": [{\"name\": \"alias/mine\", \"target\": \"my-key-1\"}]}",
               0600);
    keystore_t *ks = open_store();
    char id[KEYSTORE_ID_MAX + 1], def[KEYSTORE_ID_MAX + 1];
    cr_assert_eq(keystore_resolve(ks, "alias/mine", NULL, NULL, true, id), 0);
    cr_assert_str_eq(id, "my-key-1");
    /* the default alias is added to the file, next to the hand-made key */
    cr_assert_eq(keystore_resolve(ks, KEYSTORE_DEFAULT_ALIAS, NULL, NULL, true, def), 0);
    keystore_free(ks);
    ks = open_store();
    cr_assert(keystore_has(ks, "my-key-1") && keystore_has(ks, def));
    cr_assert_eq(keystore_resolve(ks, "alias/mine", NULL, NULL, true, id), 0);
    keystore_free(ks);

    const char *bad[] = {
        "not json",
        "{\"format\": \"eddy-keys-2\", \"keys\": []}",
        "{\"format\": \"eddy-keys-1\"}",
        "{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"k\", \"material\": \"0011\"}]}",
        "{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"k k\", \"material\": "
        "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}]}",
        "{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"k\", \"material\": "
        "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg\"}]}",
        "{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"k\", \"material\": "
        "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}, {\"id\": \"k\", "
        "\"material\": "
        "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}]}",
        "{\"format\": \"eddy-keys-1\", \"keys\": [], \"aliases\": [{\"name\": \"alias/a\", \"target\": "
        "\"nope\"}]}",
        "{\"format\": \"eddy-keys-1\", \"keys\": [], \"aliases\": [{\"name\": \"a\", \"target\": \"nope\"}]}",
        /* a check value that does not match: the material was damaged */
        "{\"format\": \"eddy-keys-1\", \"keys\": [{\"id\": \"k\", \"check\": \"0000000000000000\", "
        "\"material\": "
        "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(bad[i], 0600);
        cr_assert_eq(refuse(err, sizeof err), -EINVAL, "file %zu", i);
        cr_assert_not_null(strstr(err, path), "the message names the file: %s", err);
    }
    write_file(bad[9], 0600);
    refuse(err, sizeof err);
    cr_assert_not_null(strstr(err, "check value"), "%s", err);
}
