/* base64: strict base64 over OpenSSL (see base64.h). */
#include "common/base64.h"

#include <openssl/evp.h>

void base64_encode_into(buf_t *out, const void *data, size_t n)
{
    size_t len = BASE64_ENCODED_LEN(n);
    buf_reserve(out, len + 1);
    EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)n);
    out->len += len;
}

static bool is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
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
    /* EVP_DecodeBlock skips surrounding whitespace and accepts '=' anywhere near the end; the service
     * does not, so check the alphabet first. */
    for (size_t i = 0; i < n - pad; i++) {
        if (!is_b64((unsigned char)s[i])) {
            return -1;
        }
    }
    int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (len < 0) {
        return -1;
    }
    return (long)len - (long)pad;
}
