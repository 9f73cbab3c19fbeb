/*
 * aead: AES-256-GCM keys, and sealing and opening of one message at a time (OpenSSL EVP, which uses AES-NI
 * and PCLMULQDQ when the CPU has them).
 *
 * A key is immutable once made. Opening may run on any number of threads at once with one key: each thread
 * keeps one decryption context and loads a key schedule into it only when the key differs from the one it
 * used last (every key carries a process-unique id for this). Sealing uses a context owned by the key and
 * set up once, so that the cost per message is the cipher itself: calls to aead_seal with one key must not
 * overlap (the shard log seals under its append lock, the key store under its mutex).
 *
 * Nonces are the caller's business: one (key, nonce) pair must never seal two different messages.
 */
#ifndef EDDY_STORE_AEAD_H
#define EDDY_STORE_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_BYTES 32
#define AEAD_NONCE_BYTES 12
#define AEAD_TAG_BYTES 16

typedef struct aead_key aead_key_t;

/* A key from AEAD_KEY_BYTES bytes (copied). Aborts when out of memory (server code). */
aead_key_t *aead_key_new(const unsigned char bytes[AEAD_KEY_BYTES]);
/* Wipes and frees the key (NULL is allowed). No call may still be using it. */
void aead_key_free(aead_key_t *k);

/* n bytes from the kernel's random generator (getrandom). Returns 0 or -errno. */
int aead_random(void *out, size_t n);

/* Encrypts len bytes from in to out (in == out is allowed) and authenticates them with aad; writes the
 * tag. Returns 0, or -EIO if OpenSSL fails (out is then wiped). Not concurrently with itself on one key. */
int aead_seal(aead_key_t *k, const unsigned char nonce[AEAD_NONCE_BYTES], const void *aad, size_t aad_len,
              const void *in, size_t len, void *out, unsigned char tag[AEAD_TAG_BYTES]);
/* Decrypts len bytes from in to out (in == out is allowed) and checks the tag over them and aad. Returns
 * 0, or -EBADMSG when the check fails (out is then wiped: unauthenticated bytes are never left behind), or
 * -EIO. Any thread, concurrently. */
int aead_open(const aead_key_t *k, const unsigned char nonce[AEAD_NONCE_BYTES], const void *aad,
              size_t aad_len, const void *in, size_t len, const unsigned char tag[AEAD_TAG_BYTES], void *out);

#endif
