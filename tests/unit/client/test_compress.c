/* Unit tests for libeddy's compression helpers (include/eddy/compress.h): round trips, the output limit,
 * corrupt and truncated input. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/compress.h"

typedef int (*compress_fn)(const void *, size_t, int, void **, size_t *);
typedef int (*decompress_fn)(const void *, size_t, size_t, void **, size_t *);

static void round_trip(compress_fn c, decompress_fn d)
{
    size_t len = 1 << 20;
    unsigned char *in = malloc(len);
    for (size_t i = 0; i < len; i++) {
        in[i] = (unsigned char)(i % 251 < 200 ? 'a' + i % 7 : i * 31);
    }
    void *z = NULL, *back = NULL;
    size_t zlen = 0, blen = 0;
    cr_assert_eq(c(in, len, 0, &z, &zlen), 0);
    cr_assert_lt(zlen, len);
    cr_assert_eq(d(z, zlen, len, &back, &blen), 0);
    cr_assert_eq(blen, len);
    cr_assert_eq(memcmp(in, back, len), 0);
    free(back);
    /* more than max_out: refused */
    cr_assert_eq(d(z, zlen, len - 1, &back, &blen), EDDY_ERR_INVALID);
    /* truncated and corrupt input */
    cr_assert_eq(d(z, zlen / 2, len, &back, &blen), EDDY_ERR_INVALID);
    ((unsigned char *)z)[zlen / 2] ^= 0xff;
    ((unsigned char *)z)[1] ^= 0xff;
    cr_assert_eq(d(z, zlen, len, &back, &blen), EDDY_ERR_INVALID);
    /* empty input */
    void *e = NULL;
    size_t elen = 0;
    cr_assert_eq(c("", 0, 0, &e, &elen), 0);
    cr_assert_eq(d(e, elen, 16, &back, &blen), 0);
    cr_assert_eq(blen, 0);
    free(back);
    free(e);
    free(z);
    free(in);
}

Test(compress, zstd_round_trip)
{
    round_trip(eddy_zstd_compress, eddy_zstd_decompress);
}

Test(compress, gzip_round_trip)
{
    round_trip(eddy_gzip_compress, eddy_gzip_decompress);
}
