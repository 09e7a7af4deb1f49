#ifndef PARE_CSYSTEMSHIMS_H
#define PARE_CSYSTEMSHIMS_H

#include <stddef.h>
#include <sys/types.h>

/// copy_file_range(2), which glibc declares only under _GNU_SOURCE (invisible to Swift).
/// Returns bytes copied, or -1 with errno set (ENOSYS where the call does not exist).
ssize_t pare_copy_file_range(int fd_in, long long *off_in, int fd_out, long long *off_out,
                             size_t len, unsigned int flags);

/// renameat2(RENAME_EXCHANGE): atomically swaps two paths. Returns 0, or -1 with errno set
/// (EINVAL or ENOSYS where the filesystem or kernel cannot).
int pare_rename_exchange(const char *a, const char *b);

/// Turns O_DIRECT on or off for an open descriptor (fcntl F_SETFL): writes then bypass
/// the page cache. Returns 0, or -1 with errno set (EINVAL where the filesystem cannot,
/// ENOSYS where the flag does not exist).
int pare_set_direct(int fd, int on);

/// mallopt(M_ARENA_MAX, count) where glibc has it: caps the malloc arenas (each reserves
/// 64 MiB of address space). Returns 1 on success, 0 otherwise.
int pare_limit_malloc_arenas(int count);

#endif
