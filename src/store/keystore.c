/* keystore: master keys, aliases and the key file (format and rules in keystore.h). */
#include "store/keystore.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "store/fileio.h"

#define FORMAT "eddy-keys-1"
#define CHECK_HEX 16

typedef struct master_key {
    char id[KEYSTORE_ID_MAX + 1];
    unsigned char material[AEAD_KEY_BYTES];
    char created[32];
    aead_key_t *key;
} master_key_t;

typedef struct alias {
    char name[KEYSTORE_ALIAS_MAX + 1];
    char target[KEYSTORE_ID_MAX + 1];
} alias_t;

struct keystore {
    pthread_mutex_t lock;
    char path[4200];
    master_key_t *keys;
    size_t nkeys;
    alias_t *aliases;
    size_t naliases;
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        log_error("out of memory");
        abort();
    }
    return p;
}

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= KEYSTORE_ID_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n;
}

static bool valid_alias(const char *s)
{
    size_t n = strlen(s);
    return n > 6 && n <= KEYSTORE_ALIAS_MAX && strncmp(s, "alias/", 6) == 0 &&
           strspn(s + 6, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-") == n - 6;
}

/* First 8 bytes of HMAC-SHA256(material, "eddy key check"), in hex. */
static void key_check(const unsigned char material[AEAD_KEY_BYTES], char out[CHECK_HEX + 1])
{
    static const char label[] = "eddy key check";
    unsigned char mac[32];
    unsigned int len = sizeof mac;
    HMAC(EVP_sha256(), material, AEAD_KEY_BYTES, (const unsigned char *)label, sizeof label - 1, mac, &len);
    for (int i = 0; i < CHECK_HEX / 2; i++) {
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool parse_hex(const char *s, unsigned char *out, size_t n)
{
    if (strlen(s) != 2 * n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static master_key_t *find_key(keystore_t *ks, const char *id)
{
    for (size_t i = 0; i < ks->nkeys; i++) {
        if (strcmp(ks->keys[i].id, id) == 0) {
            return &ks->keys[i];
        }
    }
    return NULL;
}

static alias_t *find_alias(keystore_t *ks, const char *name)
{
    for (size_t i = 0; i < ks->naliases; i++) {
        if (strcmp(ks->aliases[i].name, name) == 0) {
            return &ks->aliases[i];
        }
    }
    return NULL;
}

static void add_key(keystore_t *ks, const char *id, const unsigned char material[AEAD_KEY_BYTES],
                    const char *created)
{
    ks->keys = xrealloc(ks->keys, (ks->nkeys + 1) * sizeof *ks->keys);
    master_key_t *k = &ks->keys[ks->nkeys++];
    memset(k, 0, sizeof *k);
    snprintf(k->id, sizeof k->id, "%s", id);
    memcpy(k->material, material, AEAD_KEY_BYTES);
    snprintf(k->created, sizeof k->created, "%s", created);
    k->key = aead_key_new(material);
}

static void add_alias(keystore_t *ks, const char *name, const char *target)
{
    ks->aliases = xrealloc(ks->aliases, (ks->naliases + 1) * sizeof *ks->aliases);
    alias_t *a = &ks->aliases[ks->naliases++];
    snprintf(a->name, sizeof a->name, "%s", name);
    snprintf(a->target, sizeof a->target, "%s", target);
}

static const char *member_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Parses the file's text into ks. Returns 0 or -EINVAL with errmsg. */
static int parse(keystore_t *ks, const char *text, char *errmsg, size_t errmsg_len)
{
    int rc = -EINVAL;
    cJSON *root = cJSON_Parse(text);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
    const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(root, "aliases");
    const cJSON *e;
    const char *format = member_str(root, "format");
    if (!cJSON_IsObject(root) || format == NULL || strcmp(format, FORMAT) != 0) {
        snprintf(errmsg, errmsg_len, "%s is not a key file of format \"%s\"", ks->path, FORMAT);
        goto out;
    }
    if (!cJSON_IsArray(keys) || (aliases != NULL && !cJSON_IsArray(aliases))) {
        snprintf(errmsg, errmsg_len, "%s: \"keys\" must be an array (and \"aliases\" too when present)",
                 ks->path);
        goto out;
    }
    cJSON_ArrayForEach(e, keys)
    {
        const char *id = member_str(e, "id"), *hex = member_str(e, "material"),
                   *check = member_str(e, "check");
        const char *created = member_str(e, "created");
        unsigned char material[AEAD_KEY_BYTES];
        if (id == NULL || !valid_id(id)) {
            snprintf(errmsg, errmsg_len, "%s: a key has no valid \"id\" (1..%d of [A-Za-z0-9-])", ks->path,
                     KEYSTORE_ID_MAX);
            goto out;
        }
        if (find_key(ks, id) != NULL) {
            snprintf(errmsg, errmsg_len, "%s: key %s is listed twice", ks->path, id);
            goto out;
        }
        if (hex == NULL || !parse_hex(hex, material, sizeof material)) {
            snprintf(errmsg, errmsg_len, "%s: key %s: \"material\" must be 64 hex digits", ks->path, id);
            goto out;
        }
        if (check != NULL) {
            char want[CHECK_HEX + 1];
            key_check(material, want);
            if (strcmp(check, want) != 0) {
                OPENSSL_cleanse(material, sizeof material);
                snprintf(errmsg, errmsg_len,
                         "%s: key %s: its material does not match its check value (damaged or mistyped)",
                         ks->path, id);
                goto out;
            }
        }
        add_key(ks, id, material, created != NULL ? created : "");
        OPENSSL_cleanse(material, sizeof material);
    }
    cJSON_ArrayForEach(e, aliases)
    {
        const char *name = member_str(e, "name"), *target = member_str(e, "target");
        if (name == NULL || !valid_alias(name)) {
            snprintf(errmsg, errmsg_len, "%s: an alias has no valid \"name\" (alias/NAME)", ks->path);
            goto out;
        }
        if (find_alias(ks, name) != NULL) {
            snprintf(errmsg, errmsg_len, "%s: alias %s is listed twice", ks->path, name);
            goto out;
        }
        if (target == NULL || find_key(ks, target) == NULL) {
            snprintf(errmsg, errmsg_len, "%s: alias %s points at no key of the file", ks->path, name);
            goto out;
        }
        add_alias(ks, name, target);
    }
    rc = 0;
out:
    /* the parsed tree holds the key material as text: wipe it before it is freed */
    cJSON_ArrayForEach(e, keys)
    {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "material");
        if (cJSON_IsString(m)) {
            OPENSSL_cleanse(m->valuestring, strlen(m->valuestring));
        }
    }
    cJSON_Delete(root);
    return rc;
}

static int load(keystore_t *ks, char *errmsg, size_t errmsg_len)
{
    int fd = open(ks->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0; /* created on first need */
        }
        int rc = -errno;
        snprintf(errmsg, errmsg_len, "cannot open the key file %s: %s", ks->path, strerror(errno));
        return rc;
    }
    struct stat st;
    int rc = 0;
    char *text = NULL;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(errmsg, errmsg_len, "cannot stat the key file %s: %s", ks->path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(errmsg, errmsg_len, "the key file %s is not a regular file", ks->path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        rc = -EPERM;
        snprintf(errmsg, errmsg_len,
                 "the key file %s may be accessed by group or others (mode %04o): it holds the master keys; "
                 "chmod 600 it",
                 ks->path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (st.st_size > (16 << 20)) {
        rc = -EFBIG;
        snprintf(errmsg, errmsg_len, "the key file %s is too large", ks->path);
        goto out;
    }
    text = malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        abort();
    }
    ssize_t got = fileio_read_full(&fileio_posix, fd, text, (size_t)st.st_size, 0);
    if (got != (ssize_t)st.st_size) {
        rc = got < 0 ? (int)got : -EIO;
        snprintf(errmsg, errmsg_len, "cannot read the key file %s: %s", ks->path, strerror(-rc));
        goto out;
    }
    text[got] = '\0';
    rc = parse(ks, text, errmsg, errmsg_len);
    OPENSSL_cleanse(text, (size_t)got);
out:
    free(text);
    close(fd);
    return rc;
}

/* Writes the store to its file: temporary file (0600), fsync, rename, fsync of the folder. */
static int save(keystore_t *ks)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "{\n  \"format\": \"%s\",\n  \"keys\": [", FORMAT);
    for (size_t i = 0; i < ks->nkeys; i++) {
        master_key_t *k = &ks->keys[i];
        char hex[2 * AEAD_KEY_BYTES + 1], check[CHECK_HEX + 1];
        for (int j = 0; j < AEAD_KEY_BYTES; j++) {
            snprintf(hex + 2 * j, 3, "%02x", k->material[j]);
        }
        key_check(k->material, check);
        buf_printf(&b,
                   "%s\n    {\"id\": \"%s\", \"material\": \"%s\", \"check\": \"%s\", \"created\": \"%s\"}",
                   i ? "," : "", k->id, hex, check, k->created);
        OPENSSL_cleanse(hex, sizeof hex);
    }
    buf_printf(&b, "\n  ],\n  \"aliases\": [");
    for (size_t i = 0; i < ks->naliases; i++) {
        buf_printf(&b, "%s\n    {\"name\": \"%s\", \"target\": \"%s\"}", i ? "," : "", ks->aliases[i].name,
                   ks->aliases[i].target);
    }
    buf_printf(&b, "\n  ]\n}\n");

    char tmp[4300], dir[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", ks->path);
    snprintf(dir, sizeof dir, "%s", ks->path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || fileio_write_all(&fileio_posix, fd, b.data, b.len, 0) != 0 ||
        fsync(fd) != 0) {
        rc = errno ? -errno : -EIO;
    }
    close(fd);
    if (rc == 0 && rename(tmp, ks->path) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = fileio_sync_dir(&fileio_posix, dir);
    } else {
        unlink(tmp);
    }
out:
    OPENSSL_cleanse(b.data, b.len);
    buf_dispose(&b);
    if (rc != 0) {
        log_error("cannot write the key file %s: %s", ks->path, strerror(-rc));
    }
    return rc;
}

int keystore_open(const char *path, keystore_t **out, char *errmsg, size_t errmsg_len)
{
    keystore_t *ks = calloc(1, sizeof *ks);
    if (ks == NULL) {
        abort();
    }
    pthread_mutex_init(&ks->lock, NULL);
    snprintf(ks->path, sizeof ks->path, "%s", path);
    int rc = load(ks, errmsg, errmsg_len);
    if (rc != 0) {
        keystore_free(ks);
        return rc;
    }
    *out = ks;
    return 0;
}

void keystore_free(keystore_t *ks)
{
    if (ks == NULL) {
        return;
    }
    for (size_t i = 0; i < ks->nkeys; i++) {
        aead_key_free(ks->keys[i].key);
        OPENSSL_cleanse(ks->keys[i].material, AEAD_KEY_BYTES);
    }
    free(ks->keys);
    free(ks->aliases);
    pthread_mutex_destroy(&ks->lock);
    free(ks);
}

const char *keystore_path(const keystore_t *ks)
{
    return ks->path;
}

/* A random (version 4) UUID. */
static int make_uuid(char out[37])
{
    unsigned char r[16];
    int rc = aead_random(r, sizeof r);
    if (rc != 0) {
        return rc;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
    return 0;
}

/* Creates a key (and alias) in memory and in the file (lock held). Nothing changes when writing fails. */
static int create_locked(keystore_t *ks, const char *alias, char id[KEYSTORE_ID_MAX + 1])
{
    if (alias != NULL && !valid_alias(alias)) {
        return -EINVAL;
    }
    if (alias != NULL && find_alias(ks, alias) != NULL) {
        return -EEXIST;
    }
    char uuid[37];
    unsigned char material[AEAD_KEY_BYTES];
    int rc = make_uuid(uuid);
    if (rc == 0) {
        rc = aead_random(material, sizeof material);
    }
    if (rc != 0) {
        return rc;
    }
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    add_key(ks, uuid, material, created);
    OPENSSL_cleanse(material, sizeof material);
    if (alias != NULL) {
        add_alias(ks, alias, uuid);
    }
    rc = save(ks);
    if (rc != 0) {
        if (alias != NULL) {
            ks->naliases--;
        }
        ks->nkeys--;
        aead_key_free(ks->keys[ks->nkeys].key);
        OPENSSL_cleanse(ks->keys[ks->nkeys].material, AEAD_KEY_BYTES);
        return rc;
    }
    log_info("key file %s: created master key %s%s%s", ks->path, uuid, alias ? " for " : "",
             alias ? alias : "");
    snprintf(id, KEYSTORE_ID_MAX + 1, "%s", uuid);
    return 0;
}

int keystore_create_key(keystore_t *ks, const char *alias, char id[KEYSTORE_ID_MAX + 1])
{
    pthread_mutex_lock(&ks->lock);
    int rc = create_locked(ks, alias, id);
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

/* Splits arn:PARTITION:kms:REGION:ACCOUNT:RESOURCE; returns RESOURCE, or NULL when it is not such an ARN
 * or names another region or account. */
static const char *arn_resource(const char *arn, const char *region, const char *account)
{
    const char *f[6];
    const char *p = arn;
    for (int i = 0; i < 5; i++) {
        f[i] = p;
        p = strchr(p, ':');
        if (p == NULL) {
            return NULL;
        }
        p++;
    }
    f[5] = p;
    size_t service_len = (size_t)(f[3] - f[2]) - 1;
    size_t region_len = (size_t)(f[4] - f[3]) - 1;
    size_t account_len = (size_t)(f[5] - f[4]) - 1;
    if (f[2] - f[1] < 2 || service_len != 3 || strncmp(f[2], "kms", 3) != 0) {
        return NULL;
    }
    if (region != NULL && (region_len != strlen(region) || strncmp(f[3], region, region_len) != 0)) {
        return NULL;
    }
    if (account != NULL && (account_len != strlen(account) || strncmp(f[4], account, account_len) != 0)) {
        return NULL;
    }
    return f[5];
}

int keystore_resolve(keystore_t *ks, const char *key_ref, const char *region, const char *account, bool create,
                     char id[KEYSTORE_ID_MAX + 1])
{
    const char *ref = key_ref;
    bool by_alias = false;
    if (strncmp(ref, "arn:", 4) == 0) {
        ref = arn_resource(ref, region, account);
        if (ref == NULL) {
            return -ENOENT;
        }
        if (strncmp(ref, "key/", 4) == 0) {
            ref += 4;
        } else if (strncmp(ref, "alias/", 6) == 0) {
            by_alias = true;
        } else {
            return -ENOENT;
        }
    } else if (strncmp(ref, "alias/", 6) == 0) {
        by_alias = true;
    }
    int rc = -ENOENT;
    pthread_mutex_lock(&ks->lock);
    if (by_alias) {
        alias_t *a = find_alias(ks, ref);
        if (a != NULL) {
            snprintf(id, KEYSTORE_ID_MAX + 1, "%s", a->target);
            rc = 0;
        } else if (create && strcmp(ref, KEYSTORE_DEFAULT_ALIAS) == 0) {
            rc = create_locked(ks, KEYSTORE_DEFAULT_ALIAS, id);
        }
    } else if (valid_id(ref) && find_key(ks, ref) != NULL) {
        snprintf(id, KEYSTORE_ID_MAX + 1, "%s", ref);
        rc = 0;
    }
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

bool keystore_has(keystore_t *ks, const char *id)
{
    pthread_mutex_lock(&ks->lock);
    bool has = find_key(ks, id) != NULL;
    pthread_mutex_unlock(&ks->lock);
    return has;
}

int keystore_wrap(keystore_t *ks, const char *id, const unsigned char data_key[AEAD_KEY_BYTES],
                  const void *aad, size_t aad_len, unsigned char nonce[AEAD_NONCE_BYTES],
                  unsigned char wrapped[AEAD_KEY_BYTES], unsigned char tag[AEAD_TAG_BYTES])
{
    pthread_mutex_lock(&ks->lock);
    master_key_t *k = find_key(ks, id);
    int rc = k == NULL ? -ENOKEY : 0;
    /* random nonces: a master key wraps one data key per segment and restart, far below GCM's 2^32 limit */
    if (rc == 0 && aead_random(nonce, AEAD_NONCE_BYTES) != 0) {
        rc = -EIO;
    }
    if (rc == 0) {
        rc = aead_seal(k->key, nonce, aad, aad_len, data_key, AEAD_KEY_BYTES, wrapped, tag);
    }
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

int keystore_unwrap(keystore_t *ks, const char *id, const unsigned char nonce[AEAD_NONCE_BYTES],
                    const unsigned char wrapped[AEAD_KEY_BYTES], const unsigned char tag[AEAD_TAG_BYTES],
                    const void *aad, size_t aad_len, unsigned char data_key[AEAD_KEY_BYTES])
{
    pthread_mutex_lock(&ks->lock);
    master_key_t *k = find_key(ks, id);
    int rc =
        k == NULL ? -ENOKEY : aead_open(k->key, nonce, aad, aad_len, wrapped, AEAD_KEY_BYTES, tag, data_key);
    pthread_mutex_unlock(&ks->lock);
    return rc;
}
