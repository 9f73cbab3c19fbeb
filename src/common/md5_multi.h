/*
 * md5_multi: MD5 of several independent messages at once, several times faster than one after the other on
 * CPUs with AVX-512 (sixteen side by side; OpenSSL's MD5 on other CPUs). For the KPL aggregates of a
 * PutRecords request, whose trailing MD5 is most of a producer's hashing.
 */
#ifndef EDDY_COMMON_MD5_MULTI_H
#define EDDY_COMMON_MD5_MULTI_H

#include <stdbool.h>
#include <stddef.h>

#define MD5_MULTI_LEN 16

/* out[i] = MD5 of the len[i] bytes at data[i], for i < n (all borrowed for the call; out may not overlap
 * the data). Any thread. */
void md5_multi(const unsigned char *const *data, const size_t *len, size_t n, unsigned char (*out)[MD5_MULTI_LEN]);
/* The same with OpenSSL's MD5, one message after the other (the fallback; for tests and benchmarks). */
void md5_multi_scalar(const unsigned char *const *data, const size_t *len, size_t n,
                      unsigned char (*out)[MD5_MULTI_LEN]);
/* Whether md5_multi hashes side by side on this CPU. */
bool md5_multi_vector(void);

#endif
