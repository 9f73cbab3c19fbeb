/*
 * fileio: every file operation of the shard log goes through this table, so that tests can inject EIO,
 * ENOSPC, short and torn writes, and crashes at chosen points (SQLite's VFS idea, much smaller).
 *
 * The functions have POSIX semantics: they return -1 and set errno on failure.
 */
#ifndef EDDY_STORE_FILEIO_H
#define EDDY_STORE_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

typedef struct fileio {
    int (*open)(const char *path, int flags, mode_t mode);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*close)(int fd);
    int (*unlink)(const char *path);
    int (*rename)(const char *from, const char *to);
} fileio_t;

/* The real thing. */
extern const fileio_t fileio_posix;

/* Writes all n bytes (retrying short writes). Returns 0 or -errno. */
int fileio_write_all(const fileio_t *io, int fd, const void *buf, size_t n, off_t off);
/* Reads up to n bytes at off (retrying short reads until EOF). Returns bytes read or -errno. */
ssize_t fileio_read_full(const fileio_t *io, int fd, void *buf, size_t n, off_t off);
/* fsyncs a directory so that a created, renamed or removed entry is durable. Returns 0 or -errno. */
int fileio_sync_dir(const fileio_t *io, const char *dir);

#endif
