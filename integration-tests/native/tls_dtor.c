/* Threads whose TLS destructors free (and allocate) memory while the thread
 * exits: the shim's own TLS must still work then, and totals stay exact.
 * Half of what the destructors allocate is handed to main and leaked. */
#include "common.h"
#include <pthread.h>

static pthread_key_t key_free, key_alloc;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static void *handoff[64];
static int nhand;

static void dtor_free(void *p) {
    free(p);
    for (int i = 0; i < 100; i++) {
        char *volatile q = malloc(32 + (size_t)i); /* volatile: the compiler keeps the pair */
        free(q);
    }
}

static void dtor_alloc(void *p) {
    free(p);
    void *q = malloc(777);
    pthread_mutex_lock(&m);
    handoff[nhand++] = q;
    pthread_mutex_unlock(&m);
}

static void *worker(void *arg) {
    (void)arg;
    pthread_setspecific(key_free, malloc(1234));
    pthread_setspecific(key_alloc, malloc(4321));
    for (int i = 0; i < 10000; i++) {
        char *volatile q = malloc(16 + (size_t)(i % 100));
        free(q);
    }
    return NULL;
}

int main(void) {
    pthread_key_create(&key_free, dtor_free);
    pthread_key_create(&key_alloc, dtor_alloc);
    pthread_t t[16];
    for (int i = 0; i < 16; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 16; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < nhand; i++) {
        if (i % 2) leak(handoff[i]); else free(handoff[i]);
    }
    expect("HANDOFFS", nhand);
    report_leaks();
    return 0;
}
