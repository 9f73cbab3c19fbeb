/*
 * ui: the dashboard. A small static web page (src/server/ui/assets: index.html, app.js, style.css,
 * favicon.svg) embedded in the binary at build time by embed.cmake, served on GET/HEAD "/" and "/ui/...".
 * The page polls GET /ui/api/state (protocol.c) once a second and draws everything in the browser; no
 * asset is fetched from anywhere else, and the content-security-policy says so.
 */
#ifndef EDDY_SERVER_UI_H
#define EDDY_SERVER_UI_H

#include <stdbool.h>
#include <stddef.h>

#include "server/http.h"

/* One embedded file. The table is generated (build dir, ui_assets.c); bytes has a NUL after the last one. */
typedef struct ui_asset {
    const char *name;           /* file name in assets/, e.g. "app.js" */
    const unsigned char *bytes; /* static */
    size_t len;
} ui_asset_t;

extern const ui_asset_t ui_assets[];
extern const size_t ui_asset_count;

/* The asset a URL path names ("/", "/ui" and "/ui/" are index.html; "/ui/NAME" is NAME; a query string is
 * ignored), or NULL. The result is static. */
const ui_asset_t *ui_asset_for_path(const char *path, size_t path_len);

/* The Content-Type of an asset, from its file name's extension (a static string). */
const char *ui_content_type(const char *name);

/* Serves an embedded dashboard asset for a GET/HEAD path ("/", "/ui", "/ui/", "/ui/app.js",
 * "/ui/style.css"...). Returns false (having done nothing) when the path is not an asset. @thread loop */
bool ui_serve(http_request_t *req, const char *path, size_t path_len);

#endif
