/*
 * api/tags: AddTagsToStream, RemoveTagsFromStream, ListTagsForStream, and the resource-ARN forms
 * TagResource, UntagResource, ListTagsForResource. At most 50 tags per stream; keys and values may hold
 * Unicode letters, digits, white space and _ . : / = + - @ ; keys must not start with "aws:".
 */
#include <ctype.h>
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <wctype.h>
#include <stdlib.h>
#include <string.h>

#include "server/api/tags.h"

#define LIST_TAGS_DEFAULT_LIMIT 10

/* Decodes one UTF-8 sequence; returns its length, or (size_t)-1 when malformed. */
static size_t utf8_decode(wchar_t *out, const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t len = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || len > n || u[0] > 0xF4) {
        return (size_t)-1;
    }
    uint32_t cp = u[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            return (size_t)-1;
        }
        cp = (cp << 6) | (u[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return (size_t)-1;
    }
    *out = (wchar_t)cp;
    return len;
}

/* Unicode classes come from glibc's C.UTF-8 locale, loaded once. */
static locale_t utf8_locale;
static pthread_once_t locale_once = PTHREAD_ONCE_INIT;

static void load_locale(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static bool tag_chars_ok(const char *s)
{
    pthread_once(&locale_once, load_locale);
    size_t n = strlen(s);
    while (n > 0) {
        unsigned char b = (unsigned char)*s;
        if (b < 0x80) {
            if (!(isalnum(b) || isspace(b) || strchr("_.:/=+-@", b) != NULL) || b == 0) {
                return false;
            }
            s++;
            n--;
            continue;
        }
        wchar_t wc;
        size_t used = utf8_locale ? utf8_decode(&wc, s, n) : (size_t)-1;
        if (used == (size_t)-1 || used == (size_t)-2 || used == 0) {
            return false;
        }
        if (!(iswalnum_l((wint_t)wc, utf8_locale) || iswspace_l((wint_t)wc, utf8_locale))) {
            return false;
        }
        s += used;
        n -= used;
    }
    return true;
}

bool tags_from_input(api_call_t *c, const cJSON *map, tag_list_t *out)
{
    out->items = NULL;
    out->count = 0;
    if (map == NULL || cJSON_IsNull(map)) {
        return true;
    }
    size_t n = (size_t)cJSON_GetArraySize(map);
    out->items = calloc(n ? n : 1, sizeof *out->items);
    if (out->items == NULL) {
        abort();
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, map)
    {
        const char *value = cJSON_IsString(e) ? e->valuestring : "";
        if (!tag_chars_ok(e->string) || !tag_chars_ok(value)) {
            tags_dispose(out);
            api_error(c, KERR_INVALID_ARGUMENT,
                      "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white "
                      "space, _ . : / = + - @.");
            return false;
        }
        if (strncmp(e->string, "aws:", 4) == 0) {
            tags_dispose(out);
            api_error(c, KERR_INVALID_ARGUMENT, "Tag keys must not start with the reserved prefix 'aws:'.");
            return false;
        }
        out->items[out->count].key = e->string;
        out->items[out->count].value = (char *)value;
        out->count++;
    }
    return true;
}

void tags_dispose(tag_list_t *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static void add_tags(api_call_t *c, stream_t *s, consumer_t *con, const cJSON *map)
{
    tag_list_t tags;
    if (!tags_from_input(c, map, &tags)) {
        return;
    }
    size_t total = con != NULL ? con->tag_count : s->tag_count;
    for (size_t i = 0; i < tags.count; i++) {
        bool seen = catalog_find_tag(s, con, tags.items[i].key) != NULL;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = strcmp(tags.items[j].key, tags.items[i].key) == 0;
        }
        total += !seen;
    }
    if (total > TAGS_PER_STREAM_MAX) {
        tags_dispose(&tags);
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Failed to add tags to %s %s under account %s because a given %s cannot have more than %d tags "
                  "associated with it.",
                  con != NULL ? "consumer" : "stream", con != NULL ? con->name : s->name, c->srv->cfg.account_id,
                  con != NULL ? "consumer" : "stream", TAGS_PER_STREAM_MAX);
        return;
    }
    int rc = catalog_put_tags(c->srv->catalog, s, con, tags.items, tags.count);
    tags_dispose(&tags);
    if (rc != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot store tags.");
        return;
    }
    api_ok_empty(c);
}

static void remove_tags(api_call_t *c, stream_t *s, consumer_t *con, const cJSON *list)
{
    size_t n = (size_t)cJSON_GetArraySize(list);
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    if (keys == NULL) {
        abort();
    }
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        if (cJSON_IsString(e)) {
            keys[k++] = e->valuestring;
        }
    }
    int rc = catalog_remove_tags(c->srv->catalog, s, con, keys, k);
    free(keys);
    if (rc != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Cannot remove tags.");
        return;
    }
    api_ok_empty(c);
}

void op_add_tags(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s != NULL) {
        add_tags(c, s, NULL, cJSON_GetObjectItemCaseSensitive(c->input, "Tags"));
    }
}

void op_remove_tags(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s != NULL) {
        remove_tags(c, s, NULL, cJSON_GetObjectItemCaseSensitive(c->input, "TagKeys"));
    }
}

static void write_tag(api_call_t *c, const tag_t *t)
{
    jsonw_obj_begin(&c->w);
    jsonw_key(&c->w, "Key");
    jsonw_str(&c->w, t->key);
    jsonw_key(&c->w, "Value");
    jsonw_str(&c->w, t->value);
    jsonw_obj_end(&c->w);
}

void op_list_tags_for_stream(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return;
    }
    int64_t limit = LIST_TAGS_DEFAULT_LIMIT;
    api_int(c, "Limit", &limit);
    const char *start = api_str(c, "ExclusiveStartTagKey");
    size_t i = 0;
    while (start != NULL && i < s->tag_count && strcmp(s->tags[i].key, start) <= 0) {
        i++;
    }
    jsonw_key(&c->w, "Tags");
    jsonw_arr_begin(&c->w);
    int64_t written = 0;
    for (; i < s->tag_count && written < limit; i++, written++) {
        write_tag(c, &s->tags[i]);
    }
    jsonw_arr_end(&c->w);
    jsonw_key(&c->w, "HasMoreTags");
    jsonw_bool(&c->w, i < s->tag_count);
    api_ok(c);
}

stream_t *api_resource(api_call_t *c, consumer_t **con)
{
    const char *arn = api_str(c, "ResourceARN");
    *con = NULL;
    if (strstr(arn, "/consumer/") != NULL) {
        return api_consumer_by_arn(c, arn, con);
    }
    const char *marker = strstr(arn, ":stream/");
    buf_t want = BUF_INIT;
    if (marker != NULL) {
        const char *name = marker + 8;
        if (strchr(name, '/') == NULL && strlen(name) <= STREAM_NAME_MAX) {
            api_stream_arn(c, name, &want);
            if (strcmp(buf_cstr(&want), arn) == 0) {
                stream_t *s = catalog_find(c->srv->catalog, name);
                buf_dispose(&want);
                if (s == NULL) {
                    api_stream_not_found(c, name);
                }
                return s;
            }
        }
    }
    buf_dispose(&want);
    api_error(c, KERR_RESOURCE_NOT_FOUND, "Resource %s not found.", arn);
    return NULL;
}

void op_tag_resource(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_resource(c, &con);
    if (s != NULL) {
        add_tags(c, s, con, cJSON_GetObjectItemCaseSensitive(c->input, "Tags"));
    }
}

void op_untag_resource(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_resource(c, &con);
    if (s != NULL) {
        remove_tags(c, s, con, cJSON_GetObjectItemCaseSensitive(c->input, "TagKeys"));
    }
}

void op_list_tags_for_resource(api_call_t *c)
{
    consumer_t *con;
    stream_t *s = api_resource(c, &con);
    if (s == NULL) {
        return;
    }
    const tag_t *tags = con != NULL ? con->tags : s->tags;
    size_t count = con != NULL ? con->tag_count : s->tag_count;
    jsonw_key(&c->w, "Tags");
    jsonw_arr_begin(&c->w);
    for (size_t i = 0; i < count; i++) {
        write_tag(c, &tags[i]);
    }
    jsonw_arr_end(&c->w);
    api_ok(c);
}
