/* Anonymous mappings: whole and partial munmap, mremap grow/move, MAP_FIXED
 * over a tracked range, and a file mapping (not counted). The surviving
 * anonymous bytes are reported; mapping_leak() must be their site. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PG 4096L

__attribute__((noinline)) void *mapping_leak(size_t len) {
    return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

int main(void) {
    long live = 0;
    char *a = mapping_leak(64 * PG);           /* 64 pages */
    live += 64 * PG;
    munmap(a + 10 * PG, 4 * PG);                /* hole: -4 */
    live -= 4 * PG;
    munmap(a + 60 * PG, 4 * PG);                /* tail: -4 */
    live -= 4 * PG;
    char *b = mapping_leak(8 * PG);
    b = mremap(b, 8 * PG, 32 * PG, MREMAP_MAYMOVE); /* grow: +24 */
    live += 32 * PG;
    char *c = mapping_leak(16 * PG);
    munmap(c, 16 * PG);                         /* gone */
    char *d = mapping_leak(4 * PG);
    mmap(d, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); /* decommitted */
    char *e = mmap(NULL, 12 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* reservation: not counted */
    int fd = open("/proc/self/exe", O_RDONLY);
    void *f = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);   /* file: not counted */
    (void)e; (void)f;
    expect("MMAP_BYTES", live);
    return 0;
}
