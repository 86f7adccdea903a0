/* A host program for the robustness tests: fixed stdout, some allocations,
 * exit code 3. Its output must be byte-identical with and without the shim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    char *buf = malloc(64);
    strcpy(buf, "hello from the host");
    printf("%s argc=%d\n", buf, argc);
    for (int i = 0; i < 100000; i++) free(malloc((size_t)(i % 1000) + 1));
    printf("done\n");
    free(buf);
    return 3;
}
