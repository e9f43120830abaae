/*
 * An LD_PRELOAD shim that makes fsync(2) and fdatasync(2) fail with EIO on one file after a
 * number of successful calls, for the station-journal fault test (no dm-flakey or FUSE here).
 *
 * FLASHGATE_FSYNC_FAIL_PATH: a substring of the file's path (/proc/self/fd/N) whose syncs fail;
 * FLASHGATE_FSYNC_FAIL_AFTER: how many of its syncs succeed first. Other files sync normally.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fail_path;
static long left;

__attribute__((constructor)) static void setup(void)
{
    fail_path = getenv("FLASHGATE_FSYNC_FAIL_PATH");
    const char *after = getenv("FLASHGATE_FSYNC_FAIL_AFTER");
    left = after ? strtol(after, NULL, 10) : 0;
}

/* True when this sync of `fd` must fail. */
static int failing(int fd)
{
    if (fail_path == NULL)
        return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    if (strstr(path, fail_path) == NULL)
        return 0;
    return __atomic_fetch_sub(&left, 1, __ATOMIC_SEQ_CST) <= 0;
}

int fsync(int fd)
{
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd)
{
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
