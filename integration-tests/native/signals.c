/* A 50 us interval timer fires SIGALRM (and SIGPROF) while four threads do
 * heavy malloc/free; the handlers do not allocate (malloc in a handler is
 * UB). No crash, no hang, exact totals.
 * Usage: signals            -- as above
 *        signals exit       -- after 2000 signals the handler calls exit(9),
 *                              possibly while the interrupted thread is inside
 *                              the shim (as SIGTERM handlers that exit do). */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t hits;
static int exit_in_handler;
static void on_signal(int sig) {
    (void)sig;
    hits++;
    if (exit_in_handler && hits >= 2000) exit(9);
}

static void *worker(void *arg) {
    unsigned long long s = (unsigned long long)(size_t)arg + 7;
    void *keep[128] = {0};
    for (int i = 0; i < 400000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        int k = (int)(s % 128);
        free(keep[k]);
        keep[k] = malloc(1 + s % 4096);
    }
    for (int k = 0; k < 128; k++) free(keep[k]);
    return NULL;
}

int main(int argc, char **argv) {
    exit_in_handler = argc > 1 && strcmp(argv[1], "exit") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    setitimer(ITIMER_PROF, &it, NULL);
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    worker((void *)99);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    setitimer(ITIMER_PROF, &off, NULL);
    for (int i = 0; i < 50; i++) leak(malloc(2048));
    expect("SIGNALS_OK", hits > 100);
    report_leaks();
    return 0;
}
