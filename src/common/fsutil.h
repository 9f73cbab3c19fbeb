/* fsutil: small file-system helpers. */
#ifndef EDDY_COMMON_FSUTIL_H
#define EDDY_COMMON_FSUTIL_H

/* Creates dir and its missing parents (mode 0750). Returns 0 or -errno. */
#include <stddef.h>

int mkdir_p(const char *dir);
/* Reads a whole (small) file into a malloc'd, NUL-terminated buffer (*text, *len without the NUL). Returns 0,
 * -EFBIG when it is larger than max bytes, or -errno. */
int read_file(const char *path, size_t max, char **text, size_t *len);

#endif
