/* base64: strict base64 over OpenSSL (see base64.h). */
#include "common/base64.h"

#include <openssl/evp.h>
#include <string.h>

void base64_encode_into(buf_t *out, const void *data, size_t n)
{
    size_t len = BASE64_ENCODED_LEN(n);
    buf_reserve(out, len + 1);
    EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)n);
    out->len += len;
}

long base64_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4 != 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    size_t pad = 0;
    if (s[n - 1] == '=') {
        pad = s[n - 2] == '=' ? 2 : 1;
    }
    /* EVP_DecodeBlock rejects characters outside the alphabet but skips surrounding whitespace and is lax
     * about '='; the service is not: whitespace at either end or '=' before the padding is an error. */
    unsigned char first = (unsigned char)s[0], last = (unsigned char)s[n - 1 - pad];
    if (first <= ' ' || last <= ' ' || memchr(s, '=', n - pad) != NULL) {
        return -1;
    }
    int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (len < 0) {
        return -1;
    }
    return (long)len - (long)pad;
}
