/* credentials: access keys from a JSON file (see credentials.h). */
#include "server/credentials.h"

#include "common/fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/policy.h"
#include "common/sigv4.h"

#define CREDENTIALS_FILE_MAX (4u << 20)
#define KEYS_MAX 10000

struct credentials {
    _Atomic int refs;
    credential_t *keys; /* sorted by key_id */
    size_t count;
};

static char *dup_str(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) {
        abort();
    }
    return d;
}

static void free_key(credential_t *k)
{
    free(k->key_id);
    free(k->secret);
    free(k->session_token);
    for (size_t i = 0; i < k->npolicies; i++) {
        free(k->policies[i]);
        if (k->compiled != NULL) {
            policy_free(k->compiled[i]);
        }
    }
    free(k->policies);
    free(k->compiled);
}

static void free_all(credentials_t *c)
{
    for (size_t i = 0; i < c->count; i++) {
        free_key(&c->keys[i]);
    }
    free(c->keys);
    free(c);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(((const credential_t *)a)->key_id, ((const credential_t *)b)->key_id);
}

/* "2027-01-01T00:00:00Z" -> epoch ms */
static bool parse_time(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec;
    char z;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &sec, &z) != 7 || z != 'Z' || strlen(s) != 20) {
        return false;
    }
    char compact[17];
    snprintf(compact, sizeof compact, "%04d%02d%02dT%02d%02d%02dZ", y, mo, d, h, mi, sec);
    return sigv4_parse_amz_date(compact, 16, ms);
}

static const char *string_member(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

credentials_t *credentials_parse(const char *text, size_t len, const char *default_account, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
    if (root == NULL || !cJSON_IsObject(root) || !cJSON_IsArray(keys)) {
        snprintf(err, errlen, "expected a JSON object with a \"keys\" array");
        cJSON_Delete(root);
        return NULL;
    }
    credentials_t *c = calloc(1, sizeof *c);
    size_t n = (size_t)cJSON_GetArraySize(keys);
    if (c == NULL || n > KEYS_MAX) {
        snprintf(err, errlen, "at most %d keys", KEYS_MAX);
        free(c);
        cJSON_Delete(root);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->keys = calloc(n ? n : 1, sizeof *c->keys);
    if (c->keys == NULL) {
        abort();
    }
    size_t i = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, keys)
    {
        const char *id = string_member(k, "access_key_id");
        const char *secret = string_member(k, "secret_access_key");
        const char *token = string_member(k, "session_token");
        const char *account = string_member(k, "account_id");
        const char *expires = string_member(k, "expires");
        const cJSON *policies = cJSON_GetObjectItemCaseSensitive(k, "policies");
        if (!cJSON_IsObject(k) || id == NULL || secret == NULL || id[0] == '\0' || strlen(id) > SIGV4_KEY_ID_MAX ||
            secret[0] == '\0' || strpbrk(id, "/ ") != NULL) {
            snprintf(err, errlen, "key %zu: access_key_id (1..%d characters, no '/') and secret_access_key are required",
                     i + 1, SIGV4_KEY_ID_MAX);
            goto fail;
        }
        if (account != NULL && (strlen(account) != 12 || strspn(account, "0123456789") != 12)) {
            snprintf(err, errlen, "key %s: account_id must be 12 digits", id);
            goto fail;
        }
        credential_t *out = &c->keys[c->count];
        if (expires != NULL && !parse_time(expires, &out->expires_ms)) {
            snprintf(err, errlen, "key %s: expires must look like 2027-01-01T00:00:00Z", id);
            goto fail;
        }
        if (policies != NULL && !cJSON_IsArray(policies)) {
            snprintf(err, errlen, "key %s: policies must be an array of policy documents", id);
            goto fail;
        }
        out->key_id = dup_str(id);
        out->secret = dup_str(secret);
        out->session_token = token != NULL ? dup_str(token) : NULL;
        snprintf(out->account_id, sizeof out->account_id, "%s", account != NULL ? account : default_account);
        size_t np = policies ? (size_t)cJSON_GetArraySize(policies) : 0;
        out->policies = calloc(np ? np : 1, sizeof *out->policies);
        if (out->policies == NULL) {
            abort();
        }
        out->compiled = calloc(np ? np : 1, sizeof *out->compiled);
        if (out->compiled == NULL) {
            abort();
        }
        c->count++; /* from here on free_all releases this key */
        const cJSON *p;
        cJSON_ArrayForEach(p, policies)
        {
            char *doc = cJSON_PrintUnformatted(p);
            if (doc == NULL) {
                abort();
            }
            char why[POLICY_ERR_MAX];
            policy_t *compiled = NULL;
            if (policy_parse(POLICY_IDENTITY, doc, strlen(doc), &compiled, why, sizeof why) != 0) {
                snprintf(err, errlen, "key %s: policy %zu: %s", id, out->npolicies + 1, why);
                free(doc);
                goto fail;
            }
            out->policies[out->npolicies] = doc;
            out->compiled[out->npolicies++] = compiled;
        }
        i++;
    }
    qsort(c->keys, c->count, sizeof *c->keys, key_cmp);
    for (size_t j = 1; j < c->count; j++) {
        if (strcmp(c->keys[j - 1].key_id, c->keys[j].key_id) == 0) {
            snprintf(err, errlen, "key %s is listed twice", c->keys[j].key_id);
            goto fail;
        }
    }
    cJSON_Delete(root);
    return c;
fail:
    cJSON_Delete(root);
    free_all(c);
    return NULL;
}

credentials_t *credentials_load(const char *path, const char *default_account, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = read_file(path, CREDENTIALS_FILE_MAX, &text, &len);
    if (rc == -EFBIG) {
        snprintf(err, errlen, "cannot read %s (at most %u bytes)", path, CREDENTIALS_FILE_MAX);
        return NULL;
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
        return NULL;
    }
    char why[256];
    credentials_t *c = credentials_parse(text, len, default_account, why, sizeof why);
    free(text);
    if (c == NULL) {
        snprintf(err, errlen, "%s: %s", path, why);
    }
    return c;
}

void credentials_ref(credentials_t *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void credentials_unref(credentials_t *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1) {
        free_all(c);
    }
}

size_t credentials_count(const credentials_t *c)
{
    return c->count;
}

const credential_t *credentials_find(const credentials_t *c, const char *key_id)
{
    size_t lo = 0, hi = c->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(c->keys[mid].key_id, key_id);
        if (cmp == 0) {
            return &c->keys[mid];
        }
        if (cmp < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}
