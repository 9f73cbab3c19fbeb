/* aead: AES-256-GCM with reused OpenSSL contexts (see aead.h). */
#include "store/aead.h"

#include <errno.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"

struct aead_key {
    uint64_t uid; /* process-unique: what a thread's context remembers, never an address */
    unsigned char bytes[AEAD_KEY_BYTES];
    EVP_CIPHER_CTX *seal; /* keyed once, on first use (the caller serialises aead_seal per key) */
};

static _Atomic uint64_t next_uid = 1;

/* One decryption context per thread, with the uid of the key scheduled in it. */
typedef struct open_ctx {
    EVP_CIPHER_CTX *ctx;
    uint64_t uid;
} open_ctx_t;

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static pthread_key_t tls_key;

static void open_ctx_free(void *p)
{
    open_ctx_t *o = p;
    EVP_CIPHER_CTX_free(o->ctx);
    free(o);
}

static void tls_init(void)
{
    if (pthread_key_create(&tls_key, open_ctx_free) != 0) {
        log_error("aead: cannot create the per-thread key");
        abort();
    }
}

static open_ctx_t *thread_open_ctx(void)
{
    pthread_once(&tls_once, tls_init);
    open_ctx_t *o = pthread_getspecific(tls_key);
    if (o != NULL) {
        return o;
    }
    o = calloc(1, sizeof *o);
    if (o == NULL || (o->ctx = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_DecryptInit_ex(o->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) {
        log_error("aead: out of memory");
        abort();
    }
    pthread_setspecific(tls_key, o);
    return o;
}

aead_key_t *aead_key_new(const unsigned char bytes[AEAD_KEY_BYTES])
{
    aead_key_t *k = calloc(1, sizeof *k);
    if (k == NULL) {
        log_error("aead: out of memory");
        abort();
    }
    k->uid = atomic_fetch_add(&next_uid, 1);
    memcpy(k->bytes, bytes, AEAD_KEY_BYTES);
    return k;
}

void aead_key_free(aead_key_t *k)
{
    if (k == NULL) {
        return;
    }
    EVP_CIPHER_CTX_free(k->seal);
    OPENSSL_cleanse(k->bytes, sizeof k->bytes);
    free(k);
}

int aead_random(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* EVP lengths are ints: feed large inputs in pieces. */
static bool update(EVP_CIPHER_CTX *ctx, bool enc, unsigned char *out, const unsigned char *in, size_t len)
{
    while (len > 0) {
        int n = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len;
        int got = 0;
        int ok = enc ? EVP_EncryptUpdate(ctx, out, &got, in, n) : EVP_DecryptUpdate(ctx, out, &got, in, n);
        if (ok != 1 || (out != NULL && got != n)) {
            return false;
        }
        if (out != NULL) {
            out += n;
        }
        in += n;
        len -= (size_t)n;
    }
    return true;
}

int aead_seal(aead_key_t *k, const unsigned char nonce[AEAD_NONCE_BYTES], const void *aad, size_t aad_len,
              const void *in, size_t len, void *out, unsigned char tag[AEAD_TAG_BYTES])
{
    if (k->seal == NULL) {
        k->seal = EVP_CIPHER_CTX_new();
        if (k->seal == NULL || EVP_EncryptInit_ex(k->seal, EVP_aes_256_gcm(), NULL, k->bytes, NULL) != 1) {
            EVP_CIPHER_CTX_free(k->seal);
            k->seal = NULL;
            return -EIO;
        }
    }
    EVP_CIPHER_CTX *ctx = k->seal;
    int got = 0;
    unsigned char none[AEAD_TAG_BYTES]; /* GCM's final step writes no bytes */
    /* the default GCM IV length is 12 bytes: setting only the IV keeps the key schedule */
    /* the tag through OSSL_PARAMs: OpenSSL 3 turns the older ctrl call into these anyway, more slowly */
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, AEAD_TAG_BYTES),
                           OSSL_PARAM_construct_end()};
    bool ok = EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) == 1 &&
              update(ctx, true, NULL, aad, aad_len) && update(ctx, true, out, in, len) &&
              EVP_EncryptFinal_ex(ctx, none, &got) == 1 && got == 0 &&
              EVP_CIPHER_CTX_get_params(ctx, params) == 1;
    if (!ok) {
        OPENSSL_cleanse(out, len);
        return -EIO;
    }
    return 0;
}

int aead_open(const aead_key_t *k, const unsigned char nonce[AEAD_NONCE_BYTES], const void *aad,
              size_t aad_len, const void *in, size_t len, const unsigned char tag[AEAD_TAG_BYTES], void *out)
{
    open_ctx_t *o = thread_open_ctx();
    const unsigned char *key = NULL;
    if (o->uid != k->uid) {
        key = k->bytes;
    }
    if (EVP_DecryptInit_ex(o->ctx, NULL, NULL, key, nonce) != 1) {
        o->uid = 0;
        return -EIO;
    }
    o->uid = k->uid;
    int got = 0;
    unsigned char none[AEAD_TAG_BYTES];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)tag, AEAD_TAG_BYTES),
        OSSL_PARAM_construct_end()};
    if (!update(o->ctx, false, NULL, aad, aad_len) || !update(o->ctx, false, out, in, len) ||
        EVP_CIPHER_CTX_set_params(o->ctx, params) != 1) {
        OPENSSL_cleanse(out, len);
        return -EIO;
    }
    if (EVP_DecryptFinal_ex(o->ctx, none, &got) != 1) {
        OPENSSL_cleanse(out, len);
        return -EBADMSG;
    }
    return 0;
}
