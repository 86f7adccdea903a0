/* Eight threads churn malloc/free of random sizes, hand blocks to each
 * other through a shared ring (cross-thread frees), and exit; threads are
 * created and joined in waves so counter blocks get recycled. In "leak" mode
 * each thread also leaks a known amount. Usage: threads leak|noleak */
#include "common.h"
#include <pthread.h>

#define RING 1024
static void *ring[RING];
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t leak_lock = PTHREAD_MUTEX_INITIALIZER;
static int do_leak;

static void *worker(void *arg) {
    unsigned long long s = (unsigned long long)(size_t)arg * 2654435761ULL + 1;
    for (int i = 0; i < 200000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t n = 1 + s % 512;
        if (s % 97 == 0) n = 1 + s % 200000;
        void *p = (s & 1) ? malloc(n) : calloc(1, n);
        if (s % 3 == 0) {
            p = realloc(p, n * 2);
        }
        pthread_mutex_lock(&ring_lock);
        size_t k = s % RING;
        void *old = ring[k];
        ring[k] = p;
        pthread_mutex_unlock(&ring_lock);
        free(old);
    }
    if (do_leak) {
        pthread_mutex_lock(&leak_lock);
        for (int i = 0; i < 100; i++) leak(malloc(1000 + (size_t)arg));
        pthread_mutex_unlock(&leak_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    do_leak = argc > 1 && strcmp(argv[1], "leak") == 0;
    for (int wave = 0; wave < 3; wave++) {
        pthread_t t[8];
        for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, (void *)(wave * 8 + i));
        for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    }
    for (int k = 0; k < RING; k++) free(ring[k]);
    report_leaks();
    return 0;
}
