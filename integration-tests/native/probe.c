/* Uses the shim's detection API the way the agent or CLI would:
 * dlsym(RTLD_DEFAULT, "leakscope_shim_active") and leakscope_shim_status. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(void) {
    int (*active)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "leakscope_shim_active");
    size_t (*status)(char *, size_t) = (size_t (*)(char *, size_t))dlsym(RTLD_DEFAULT, "leakscope_shim_status");
    if (!active || !status) {
        printf("absent\n");
        return 0;
    }
    char buf[512];
    size_t n = status(buf, sizeof buf);
    printf("active=%d status=%s len_ok=%d\n", active(), buf, n < sizeof buf);
    return 0;
}
