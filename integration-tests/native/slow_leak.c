/* Runs for a while (ROUNDS x 20 ms), leaking 4 KiB per round from
 * slow_leak_here(): used for the socket/reconnect test.
 * Usage: slow_leak ROUNDS */
#include "common.h"

__attribute__((noinline)) void slow_leak_here(void) { leak(malloc(4000)); }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    for (int i = 0; i < rounds; i++) {
        slow_leak_here();
        for (int j = 0; j < 100; j++) {
            char *volatile p = malloc(100 + (size_t)j); /* churn, freed at once */
            free(p);
        }
        usleep(20000);
    }
    report_leaks();
    return 0;
}
