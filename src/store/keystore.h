/*
 * keystore: the local stand-in for AWS KMS: master keys (AES-256) with key ids and aliases, kept in one key
 * file in the data folder (DATA/keys.json), and the wrapping of data keys under them (AES-256-GCM).
 *
 * Key file (format "eddy-keys-1", JSON, written by eddy with mode 0600, atomically: temporary file, fsync,
 * rename, fsync of the folder):
 *
 *   {
 *     "format": "eddy-keys-1",
 *     "keys": [
 *       {"id": "5f0c5a8e-3c1d-4e7b-9a51-2d7f8c4b6e10", "material": "<64 hex digits: the 256-bit key>",
 *        "check": "<16 hex digits>", "created": "2025-01-31T12:00:00Z"}
 *     ],
 *     "aliases": [
 *       {"name": "alias/aws/kinesis", "target": "5f0c5a8e-3c1d-4e7b-9a51-2d7f8c4b6e10"}
 *     ]
 *   }
 *
 * - id: 1..64 characters of [A-Za-z0-9-]; eddy makes random UUIDs. Unique.
 * - material: the key, from getrandom. "check" (optional in hand-made entries) is the first 8 bytes of
 *   HMAC-SHA256(material, "eddy key check"), in hex: a key whose material was damaged or mistyped is refused
 *   when the file is loaded, instead of failing later on every record.
 * - aliases: names "alias/..." (KMS's rule: letters, digits, '/', '_', '-'; at most 256 characters) pointing
 *   at a key id of the file. "alias/aws/kinesis" is always available to StartStreamEncryption: when it is
 *   missing (no key file yet, or a hand-made file without it), looking it up with create set makes a key
 *   for it and writes the file. Nothing else creates keys: not a start of eddy, so that a lost key file is
 *   never silently replaced by one whose keys a restored backup would lack.
 * - Loading refuses a file that group or others may access (like ssh with private keys), that is not valid
 *   JSON of this shape, or that names a missing target.
 *
 * Backup: the data keys that protect records are stored in the segments, wrapped by these master keys; the
 * key file is the only copy of the master keys. Without it (or with a different one) encrypted records cannot
 * be read, and eddy refuses to open a shard that has them. Back it up whenever it changes (after the first
 * StartStreamEncryption, and after every key added by hand), separately from the data it protects.
 *
 * KeyId forms (as StartStreamEncryption takes them): a key id, a key ARN arn:PARTITION:kms:REGION:ACCOUNT:
 * key/ID, an alias name alias/NAME, or an alias ARN arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME. An ARN must
 * name the server's region and account.
 *
 * Concurrency: every function may be called from any thread (one mutex).
 */
#ifndef EDDY_STORE_KEYSTORE_H
#define EDDY_STORE_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "store/aead.h"

#define KEYSTORE_ID_MAX 64
#define KEYSTORE_ALIAS_MAX 256
#define KEYSTORE_DEFAULT_ALIAS "alias/aws/kinesis"
#define KEYSTORE_FILE "keys.json"

typedef struct keystore keystore_t;

/* Loads the key file at path (kept: a copy) when it exists; a missing file is an empty store, created on
 * first need. Returns 0, or -errno with errmsg saying why (bad permissions, unreadable, malformed). */
int keystore_open(const char *path, keystore_t **out, char *errmsg, size_t errmsg_len);
void keystore_free(keystore_t *ks);
/* The key file's path (valid as long as ks). */
const char *keystore_path(const keystore_t *ks);

/* Resolves a KeyId (any of the forms above) to the id of a master key; region and account (NULL: any) are
 * what an ARN must name. With create, a missing alias/aws/kinesis is created (see above). Returns 0,
 * -ENOENT when no such key exists, or -errno when creating the default key failed. */
int keystore_resolve(keystore_t *ks, const char *key_ref, const char *region, const char *account, bool create,
                     char id[KEYSTORE_ID_MAX + 1]);
/* True when the store holds master key id. */
bool keystore_has(keystore_t *ks, const char *id);
/* Creates a master key (and the alias, when not NULL: "alias/NAME", which must not exist yet) and writes
 * the file. Returns 0 or -errno (-EEXIST for an alias taken, -EINVAL for a bad name). */
int keystore_create_key(keystore_t *ks, const char *alias, char id[KEYSTORE_ID_MAX + 1]);

/* Wraps a data key under master key id: a random nonce, the key encrypted, the tag over it and aad.
 * Returns 0, -ENOKEY when there is no such master key (nothing is written then), or -EIO. */
int keystore_wrap(keystore_t *ks, const char *id, const unsigned char data_key[AEAD_KEY_BYTES],
                  const void *aad, size_t aad_len, unsigned char nonce[AEAD_NONCE_BYTES],
                  unsigned char wrapped[AEAD_KEY_BYTES], unsigned char tag[AEAD_TAG_BYTES]);
/* The reverse. Returns 0, -ENOKEY when there is no such master key, -EBADMSG when it does not unwrap this
 * (a different key under the same id, or damage), or -EIO. */
int keystore_unwrap(keystore_t *ks, const char *id, const unsigned char nonce[AEAD_NONCE_BYTES],
                    const unsigned char wrapped[AEAD_KEY_BYTES], const unsigned char tag[AEAD_TAG_BYTES],
                    const void *aad, size_t aad_len, unsigned char data_key[AEAD_KEY_BYTES]);

#endif
