/*
 * eddy/compress.h: payload compression helpers for producers and consumers that agree to compress record
 * data (Kinesis does not know: it stores bytes). zstd (RFC 8878 frames) and gzip (RFC 1952).
 *
 * Each function writes a malloc'd buffer to *out (the caller frees it with free()) and its length to
 * *out_len. Returns 0, EDDY_ERR_INVALID (corrupt input, or decompressed data larger than max_out), or
 * EDDY_ERR_NOMEM. Pure; any thread.
 */
#ifndef EDDY_COMPRESS_H
#define EDDY_COMPRESS_H

#include <stddef.h>

#include "eddy/error.h"
#include "eddy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* level: zstd 1..19 (0: 3), gzip 1..9 (0: 6). */
EDDY_API int eddy_zstd_compress(const void *in, size_t len, int level, void **out, size_t *out_len);
EDDY_API int eddy_zstd_decompress(const void *in, size_t len, size_t max_out, void **out, size_t *out_len);
EDDY_API int eddy_gzip_compress(const void *in, size_t len, int level, void **out, size_t *out_len);
EDDY_API int eddy_gzip_decompress(const void *in, size_t len, size_t max_out, void **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
