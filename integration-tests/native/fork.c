/* Parent leaks A, forks; the child allocates/leaks (and, in "exec" mode,
 * execs this program again as "grandchild", which leaks D under its own pid);
 * the parent waits, then leaks C. The parent's report must count A + C only.
 * Usage: fork exit|_exit|exec|grandchild */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "exit";
    if (strcmp(mode, "grandchild") == 0) {
        for (int i = 0; i < 10; i++) leak(malloc(3000));
        expect("GC_LIVE_BYTES", leaked_bytes);
        expect("GC_PID", getpid());
        return 0;
    }
    for (int i = 0; i < 10; i++) leak(malloc(5000));
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 1000; i++) {
            char *volatile q = malloc(100);
            free(q);
        }
        for (int i = 0; i < 10; i++) { void *volatile q = malloc(7000); (void)q; } /* child's leak: not the parent's */
        if (strcmp(mode, "exec") == 0) {
            execl(argv[0], argv[0], "grandchild", (char *)NULL);
            _exit(127);
        }
        if (strcmp(mode, "_exit") == 0) _exit(7);
        exit(7);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    for (int i = 0; i < 10; i++) leak(malloc(6000));
    expect("CHILD_STATUS", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    expect("CHILD_PID", pid);
    report_leaks();
    return 0;
}
