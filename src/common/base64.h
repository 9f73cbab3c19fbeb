/*
 * base64: standard base64 (RFC 4648, with padding) over OpenSSL's block codec.
 */
#ifndef EDDY_COMMON_BASE64_H
#define EDDY_COMMON_BASE64_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define BASE64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)

/* Appends the encoding of n bytes to out. */
void base64_encode_into(buf_t *out, const void *data, size_t n);
/* Decodes exactly n characters of strict base64 (length a multiple of 4, '=' only as final padding, no
 * whitespace) into out (at least n / 4 * 3 bytes). Returns the decoded length, or -1 when malformed. */
long base64_decode(const char *s, size_t n, unsigned char *out);

#endif
