/* realloc/calloc/aligned edge cases; every surviving block is reported. */
#include "common.h"
#include <errno.h>
#include <stdint.h>

int main(void) {
    int fails = 0;
    volatile size_t huge = SIZE_MAX / 2; /* runtime values: no compile-time overflow warnings */
    /* realloc(NULL, n) == malloc(n) */
    void *a = realloc(NULL, 100);
    /* grow in place / move, shrink */
    a = realloc(a, 5000);
    a = realloc(a, 50);
    leak(a);
    /* realloc(p, 0): glibc frees p and returns NULL */
    void *b = malloc(300);
    void *b2 = realloc(b, 0);
    if (b2) leak(b2);
    /* failing realloc leaves the block alive */
    void *c = malloc(400);
    errno = 0;
    void *c2 = realloc(c, huge);
    if (c2 != NULL || errno != ENOMEM) fails++;
    leak(c);
    /* calloc overflow */
    errno = 0;
    void *d = calloc(huge / 2, 16);
    if (d != NULL || errno != ENOMEM) fails++;
    /* calloc(0, n), malloc(0): unique pointers that must be freed */
    leak(calloc(0, 10));
    leak(malloc(0));
    free(NULL);
    /* reallocarray: overflow and normal */
    errno = 0;
    void *e = malloc(64);
    if (reallocarray(e, huge, 4) != NULL || errno != ENOMEM) fails++;
    e = reallocarray(e, 10, 100);
    leak(e);
    /* aligned family */
    void *f = NULL;
    if (posix_memalign(&f, 3, 64) != EINVAL) fails++;
    if (posix_memalign(&f, 4096, 10000) != 0 || ((uintptr_t)f & 4095)) fails++;
    leak(f);
    void *g = aligned_alloc(64, 640);
    if ((uintptr_t)g & 63) fails++;
    leak(g);
    leak(memalign(256, 1000));
    leak(valloc(5000));
    leak(pvalloc(5000));
    /* big blocks (mmapped by glibc) */
    void *h = malloc(10 << 20);
    h = realloc(h, 20 << 20);
    leak(h);
    free(malloc(30 << 20));
    expect("FAILS", fails);
    report_leaks();
    return 0;
}
