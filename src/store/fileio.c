/* fileio: the POSIX implementation of the I/O table and retry helpers (see fileio.h). */
#include "store/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static int posix_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags | O_CLOEXEC, mode);
}

const fileio_t fileio_posix = {
    .open = posix_open,
    .pwrite = pwrite,
    .pread = pread,
    .fdatasync = fdatasync,
    .ftruncate = ftruncate,
    .close = close,
    .unlink = unlink,
    .rename = rename,
};

int fileio_write_all(const fileio_t *io, int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = io->pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (w == 0) {
            return -EIO;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

ssize_t fileio_read_full(const fileio_t *io, int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = io->pread(fd, p + got, n - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int fileio_sync_dir(const fileio_t *io, const char *dir)
{
    int fd = io->open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        return -errno;
    }
    int rc = io->fdatasync(fd) == 0 ? 0 : -errno;
    io->close(fd);
    return rc;
}
