/* dlopen/dlclose a plugin repeatedly (allocating and freeing inside it),
 * then keep it loaded and leak from plugin_leak(): that function (in
 * libplugin.so) must be the top site. Usage: dlopen /path/libplugin.so */
#include "common.h"
#include <dlfcn.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (int i = 0; i < 50; i++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { say(dlerror()); return 3; }
        void (*churn)(int) = (void (*)(int))dlsym(h, "plugin_churn");
        churn(1000);
        dlclose(h);
    }
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) return 4;
    long (*leakf)(int, size_t) = (long (*)(int, size_t))dlsym(h, "plugin_leak");
    long bytes = leakf(400, 40000);
    expect("LIVE_BYTES", bytes);
    expect("LIVE_ALLOCS", 400);
    return 0;
}
