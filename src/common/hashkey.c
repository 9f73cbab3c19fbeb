/* hashkey: MD5 partition-key hashing (see hashkey.h). The digest object is fetched once: fetching it on
 * every call halves the throughput. */
#include "common/hashkey.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MD *md5;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

static void fetch_md5(void)
{
    md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    if (md5 == NULL) {
        abort();
    }
}

u128 hashkey_of_partition_key(const char *pk, size_t len)
{
    pthread_once(&md5_once, fetch_md5);
    unsigned char digest[16];
    EVP_Digest(pk, len, digest, NULL, md5, NULL);
    return u128_from_be_bytes(digest);
}
