/*
 * fileio.h - the two steps every crash-safe file write here needs (the
 * identity file, the bootstrap cache): write all of a buffer, and fsync
 * the directory so a new or renamed name survives a crash.
 */
#ifndef CRUST_FILEIO_H
#define CRUST_FILEIO_H

#include <stddef.h>

/* write() until len bytes are out (retrying EINTR); 0 or -errno. */
int fio_write_all(int fd, const void *buf, size_t len);
/* fsync the directory holding path; 0 or -errno (a file system that cannot sync directories: 0). */
int fio_sync_dir(const char *path);

#endif
