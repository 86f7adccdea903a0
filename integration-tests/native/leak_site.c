/* Leaks 2000 x 8000-byte blocks (about 16 MB) from leak_from_here(), while
 * churn() allocates and frees far more, and small_leak() leaks a little.
 * leak_from_here must be the top native survivor site. */
#include "common.h"

__attribute__((noinline)) void *leak_from_here(size_t n) { return leak(malloc(n)); }

__attribute__((noinline)) void small_leak(void) { leak(malloc(100)); }

__attribute__((noinline)) void churn(int rounds) {
    void *keep[64] = {0};
    for (int i = 0; i < rounds; i++) {
        int k = (int)(rnd() % 64);
        free(keep[k]);
        keep[k] = malloc(16 + rnd() % 20000);
    }
    for (int k = 0; k < 64; k++) free(keep[k]);
}

int main(void) {
    for (int i = 0; i < 2000; i++) {
        leak_from_here(8000);
        churn(200);
        if (i % 10 == 0) small_leak();
    }
    report_leaks();
    return 0;
}
