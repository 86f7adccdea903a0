/* Leaks a known amount, then ends by: return, exit, _exit, _Exit, or exit
 * from a second thread while the main thread is still allocating.
 * Usage: exit_modes return|exit|_exit|_Exit|thread_exit */
#include "common.h"
#include <pthread.h>

static void *exiter(void *arg) {
    (void)arg;
    usleep(20000);
    report_leaks();
    exit(5);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "return";
    for (int i = 0; i < 20; i++) leak(malloc(1000 + i));
    if (strcmp(mode, "thread_exit") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, exiter, NULL);
        for (;;) { /* busy until the other thread exits the process */
            char *volatile q = malloc(64);
            free(q);
        }
    }
    report_leaks();
    if (strcmp(mode, "exit") == 0) exit(3);
    if (strcmp(mode, "_exit") == 0) _exit(4);
    if (strcmp(mode, "_Exit") == 0) _Exit(6);
    return 2;
}
