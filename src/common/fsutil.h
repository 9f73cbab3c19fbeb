/* fsutil: small file-system helpers. */
#ifndef EDDY_COMMON_FSUTIL_H
#define EDDY_COMMON_FSUTIL_H

/* Creates dir and its missing parents (mode 0750). Returns 0 or -errno. */
int mkdir_p(const char *dir);

#endif
