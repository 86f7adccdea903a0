/* malloc-heavy benchmark for the shim (shim/bench/run.sh).
 *
 * THREADS threads each perform OPS allocations: random sizes (90% 16..512
 * bytes, 9% up to 8 KiB, 1% up to 256 KiB), each replacing a random slot of
 * a 4096-entry window (so every allocation but the first few is paired with
 * a free), touching the first byte. Prints the wall time in seconds.
 *
 * Usage: malloc_bench [THREADS] [OPS_PER_THREAD] */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long ops = 5000000;

static void *worker(void *arg) {
    unsigned long long s = 0x9E3779B97F4A7C15ULL * ((unsigned long long)(size_t)arg + 1);
    void **win = calloc(4096, sizeof(void *));
    for (long i = 0; i < ops; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        unsigned r = (unsigned)(s >> 32) % 100;
        size_t n = r < 90 ? 16 + s % 497 : r < 99 ? 16 + s % 8192 : 16 + s % 262144;
        size_t k = (s >> 20) % 4096;
        free(win[k]);
        char *p = malloc(n);
        p[0] = (char)i;
        win[k] = p;
    }
    for (int k = 0; k < 4096; k++) free(win[k]);
    free(win);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2) ops = atol(argv[2]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t t[256];
    if (threads > 256) threads = 256;
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
