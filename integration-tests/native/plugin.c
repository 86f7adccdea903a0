/* Built as libplugin.so and dlopen'ed by dlopen.c. */
#include <stdlib.h>
#include <malloc.h>

__attribute__((noinline)) long plugin_leak(int n, size_t size) {
    long bytes = 0;
    for (int i = 0; i < n; i++) bytes += (long)malloc_usable_size(malloc(size));
    return bytes;
}

void plugin_churn(int n) {
    for (int i = 0; i < n; i++) {
        char *volatile p = malloc(64 + (size_t)i % 4096); /* volatile: keep the pair */
        free(p);
    }
}
