/* hashkey: MD5 partition-key hashing (see hashkey.h). The digest is fetched once and each thread reuses one
 * context: a one-shot EVP_Digest creates and frees a context per call, which costs more than the MD5. */
#include "common/hashkey.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MD *md5;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void init_once(void)
{
    md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    if (md5 == NULL || pthread_key_create(&ctx_key, free_ctx) != 0) {
        abort();
    }
}

u128 hashkey_of_partition_key(const char *pk, size_t len)
{
    pthread_once(&md5_once, init_once);
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL || pthread_setspecific(ctx_key, ctx) != 0) {
            abort();
        }
    }
    unsigned char digest[16];
    unsigned int n = 0;
    if (EVP_DigestInit_ex(ctx, md5, NULL) != 1 || EVP_DigestUpdate(ctx, pk, len) != 1 ||
        EVP_DigestFinal_ex(ctx, digest, &n) != 1) {
        abort();
    }
    return u128_from_be_bytes(digest);
}
