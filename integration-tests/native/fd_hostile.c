/* A host that closes every descriptor above 2 (as daemons do) and then
 * dup2()s its own file onto the numbers the shim had used: the shim must
 * never write into the host's file, and must reopen its own output.
 * Usage: fd_hostile HOST_FILE */
#include "common.h"
#include <fcntl.h>
#include <sys/syscall.h>

__attribute__((noinline)) void keep_leaking(int n) {
    for (int i = 0; i < n; i++) leak(malloc(10000));
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    keep_leaking(10);
    usleep(300000); /* the shim has written a few records by now */
    syscall(SYS_close_range, 3, ~0U, 0);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int n = 3; n < 1024; n++)
        if (n != fd) dup2(fd, n);
    const char msg[] = "host data\n";
    ssize_t r = write(fd, msg, sizeof msg - 1);
    (void)r;
    keep_leaking(10);
    usleep(300000);
    report_leaks();
    return 0;
}
