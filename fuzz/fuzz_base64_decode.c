/*
 * fuzz_base64_decode: the strict base64 decoder (src/common/base64.c) against the OpenSSL-based decoder it
 * replaced (decode_openssl): for every input, each decoder this CPU runs (AVX-512 VBMI, AVX2, the table
 * alone) must give the same answer (-1 or the decoded length) and write the same bytes, and none may write
 * past n / 4 * 3 bytes. Includes the .c to reach its static decoders.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/base64.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef long (*decoder_fn)(const char *s, size_t n, unsigned char *out);

static long with_table(const char *s, size_t n, unsigned char *out)
{
    return decode_strict(s, n, out, NULL);
}

#ifdef BASE64_AVX2
static long with_avx2(const char *s, size_t n, unsigned char *out)
{
    return decode_strict(s, n, out, decode_avx2);
}

static long with_vbmi(const char *s, size_t n, unsigned char *out)
{
    return decode_strict(s, n, out, decode_vbmi);
}
#endif

static void check(const char *s, size_t n, decoder_fn decode, const unsigned char *want, long w)
{
    size_t cap = n / 4 * 3;
    unsigned char *got = malloc(cap + 1); /* ASan catches a write past cap */
    if (got == NULL) {
        abort();
    }
    long g = decode(s, n, got);
    if (g != w || (w >= 0 && memcmp(got, want, cap) != 0)) {
        abort();
    }
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly the input's bytes on the heap, so that a read past them is caught */
    char *s = malloc(size + 1);
    unsigned char *want = malloc(size / 4 * 3 + 1);
    if (s == NULL || want == NULL) {
        abort();
    }
    if (size > 0) {
        memcpy(s, data, size);
    }
    long w = decode_openssl(s, size, want);
    check(s, size, base64_decode, want, w);
    check(s, size, with_table, want, w);
#ifdef BASE64_AVX2
    if (have_avx2()) {
        check(s, size, with_avx2, want, w);
    }
    if (have_vbmi()) {
        check(s, size, with_vbmi, want, w);
    }
#endif
    free(want);
    free(s);
    return 0;
}
