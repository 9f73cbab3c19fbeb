/* ui: serving the embedded dashboard assets (see ui.h). */
#include "server/ui/ui.h"

#include <string.h>

#include "common/buf.h"

#define UI_PREFIX "/ui/"
#define INDEX "index.html"

/* The page loads only its own scripts, styles and images and talks only to its own origin. */
static const char CSP[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                          "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                          "frame-ancestors 'none'";

static const ui_asset_t *find(const char *name, size_t len)
{
    for (size_t i = 0; i < ui_asset_count; i++) {
        if (strlen(ui_assets[i].name) == len && memcmp(ui_assets[i].name, name, len) == 0) {
            return &ui_assets[i];
        }
    }
    return NULL;
}

const ui_asset_t *ui_asset_for_path(const char *path, size_t path_len)
{
    const char *query = memchr(path, '?', path_len);
    if (query != NULL) {
        path_len = (size_t)(query - path);
    }
    if ((path_len == 1 && path[0] == '/') || (path_len == 3 && memcmp(path, "/ui", 3) == 0) ||
        (path_len == strlen(UI_PREFIX) && memcmp(path, UI_PREFIX, path_len) == 0)) {
        return find(INDEX, strlen(INDEX));
    }
    size_t plen = strlen(UI_PREFIX);
    if (path_len > plen && memcmp(path, UI_PREFIX, plen) == 0) {
        return find(path + plen, path_len - plen);
    }
    return NULL;
}

const char *ui_content_type(const char *name)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(dot, types[i].ext) == 0) {
            return types[i].type;
        }
    }
    return "application/octet-stream";
}

static void add_header(http_request_t *req, const char *name, const char *value)
{
    http_add_header(req, name, value, strlen(value));
}

bool ui_serve(http_request_t *req, const char *path, size_t path_len)
{
    const ui_asset_t *asset = ui_asset_for_path(path, path_len);
    if (asset == NULL) {
        return false;
    }
    /* no-cache: the browser revalidates every time, so a new binary's page is never mixed with old assets. */
    add_header(req, "cache-control", "no-cache");
    add_header(req, "content-security-policy", CSP);
    add_header(req, "x-content-type-options", "nosniff");
    add_header(req, "referrer-policy", "no-referrer");
    buf_t body = BUF_INIT;
    buf_append(&body, asset->bytes, asset->len);
    http_reply(req, 200, ui_content_type(asset->name), &body);
    return true;
}
