/* Helpers shared by the shim's hazard programs (integration-tests/tests/shim.rs).
 * Programs report what they leaked as `EXPECT_<KEY>=<value>` lines on stdout,
 * written with write(2) so that stdio never allocates a buffer. Sizes are
 * malloc_usable_size(), which is what the shim counts. */
#ifndef LEAKSCOPE_TEST_COMMON_H
#define LEAKSCOPE_TEST_COMMON_H
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((unused)) static void say(const char *s) {
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

static void expect(const char *key, long long v) {
    char buf[128];
    int n = snprintf(buf, sizeof buf, "EXPECT_%s=%lld\n", key, v);
    ssize_t r = write(1, buf, (size_t)n);
    (void)r;
}

/* Leaked bytes/blocks, in the shim's unit (usable size). */
static long long leaked_bytes, leaked_allocs;

static void *leak(void *p) {
    if (p) {
        leaked_bytes += (long long)malloc_usable_size(p);
        leaked_allocs += 1;
    }
    return p;
}

static void report_leaks(void) {
    expect("LIVE_BYTES", leaked_bytes);
    expect("LIVE_ALLOCS", leaked_allocs);
}

/* xorshift, deterministic per seed */
static unsigned long long rnd_state = 88172645463325252ULL;
__attribute__((unused)) static unsigned long long rnd(void) {
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}
#endif
