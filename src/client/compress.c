/* compress: zstd and gzip helpers of libeddy (see include/eddy/compress.h). */
#include "eddy/compress.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

int eddy_zstd_compress(const void *in, size_t len, int level, void **out, size_t *out_len)
{
    size_t cap = ZSTD_compressBound(len);
    void *buf = malloc(cap ? cap : 1);
    if (buf == NULL) {
        return EDDY_ERR_NOMEM;
    }
    size_t n = ZSTD_compress(buf, cap, in, len, level > 0 ? level : 3);
    if (ZSTD_isError(n)) {
        free(buf);
        return EDDY_ERR_INVALID;
    }
    *out = buf;
    *out_len = n;
    return EDDY_OK;
}

int eddy_zstd_decompress(const void *in, size_t len, size_t max_out, void **out, size_t *out_len)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (ds == NULL) {
        return EDDY_ERR_NOMEM;
    }
    size_t cap = len * 4 < max_out ? (len * 4 > 64 ? len * 4 : 64) : max_out;
    char *buf = malloc(cap ? cap : 1);
    int rc = buf == NULL ? EDDY_ERR_NOMEM : EDDY_OK;
    ZSTD_inBuffer ib = {in, len, 0};
    ZSTD_outBuffer ob = {buf, cap, 0};
    size_t ret = 1;
    while (rc == EDDY_OK) {
        ret = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(ret)) {
            rc = EDDY_ERR_INVALID;
            break;
        }
        if (ret == 0 && ib.pos == ib.size) {
            break; /* a whole frame, all input used */
        }
        if (ob.pos == ob.size) {
            if (cap >= max_out) {
                rc = EDDY_ERR_INVALID;
                break;
            }
            size_t grown_cap = cap * 2 < max_out ? cap * 2 : max_out;
            char *grown = realloc(buf, grown_cap);
            if (grown == NULL) {
                rc = EDDY_ERR_NOMEM;
                break;
            }
            buf = grown;
            cap = grown_cap;
            ob.dst = buf;
            ob.size = cap;
        } else if (ib.pos == ib.size) {
            rc = EDDY_ERR_INVALID; /* truncated frame */
        }
    }
    ZSTD_freeDStream(ds);
    if (rc != EDDY_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = ob.pos;
    return EDDY_OK;
}

int eddy_gzip_compress(const void *in, size_t len, int level, void **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level > 0 ? level : 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return EDDY_ERR_NOMEM;
    }
    size_t cap = deflateBound(&zs, (uLong)len);
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        deflateEnd(&zs);
        return EDDY_ERR_NOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int zrc = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return EDDY_ERR_INVALID;
    }
    *out = buf;
    *out_len = n;
    return EDDY_OK;
}

int eddy_gzip_decompress(const void *in, size_t len, size_t max_out, void **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        return EDDY_ERR_NOMEM;
    }
    size_t cap = len * 4 < max_out ? (len * 4 > 64 ? len * 4 : 64) : max_out;
    unsigned char *buf = malloc(cap ? cap : 1);
    int rc = buf == NULL ? EDDY_ERR_NOMEM : EDDY_OK;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    while (rc == EDDY_OK) {
        zs.next_out = buf + zs.total_out;
        zs.avail_out = (uInt)(cap - zs.total_out);
        int zrc = inflate(&zs, Z_NO_FLUSH);
        if (zrc == Z_STREAM_END) {
            break;
        }
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = EDDY_ERR_INVALID;
        } else if (zs.avail_out == 0) {
            if (cap >= max_out) {
                rc = EDDY_ERR_INVALID;
                break;
            }
            size_t grown_cap = cap * 2 < max_out ? cap * 2 : max_out;
            unsigned char *grown = realloc(buf, grown_cap);
            if (grown == NULL) {
                rc = EDDY_ERR_NOMEM;
                break;
            }
            buf = grown;
            cap = grown_cap;
        } else if (zs.avail_in == 0) {
            rc = EDDY_ERR_INVALID; /* truncated */
        }
    }
    size_t n = zs.total_out;
    inflateEnd(&zs);
    if (rc != EDDY_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = n;
    return EDDY_OK;
}
