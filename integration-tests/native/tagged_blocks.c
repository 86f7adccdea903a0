/* Sampled blocks carry a tag in front of the host's pointer (shim/src/tag.rs). Run with every
 * allocation sampled, this checks that the host cannot tell: usable sizes, contents kept by
 * realloc (small, in place, moved, mmapped), zeroed calloc, every alignment asked for, blocks
 * that glibc itself allocates or reallocates (strdup, getline, open_memstream), frees from
 * another thread and from a forked child. Every check that fails adds to FAILS. */
#include "common.h"
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>

static int fails;

static void check(int ok, const char *what) {
    if (!ok) {
        fails++;
        say("FAIL: ");
        say(what);
        say("\n");
    }
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 31);
}

static int same(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31)) return 0;
    return 1;
}

/* Writes the whole usable size (a tag the host could overwrite would show up at free). */
static void *use_all(void *p, size_t asked) {
    size_t u = malloc_usable_size(p);
    check(u >= asked, "usable size below the size asked for");
    memset(p, 0xA5, u);
    return p;
}

static void *from_other_thread(void *arg) {
    void **blocks = arg;
    for (int i = 0; i < 64; i++) free(blocks[i]);
    return NULL;
}

int main(void) {
    /* malloc: every size class from tcache to mmapped, all bytes written, freed. */
    for (size_t n = 0; n < 4096; n += 7) free(use_all(malloc(n), n));
    for (size_t n = 100000; n < (8u << 20); n *= 3) free(use_all(malloc(n), n));

    /* calloc: dirty the heap first, then every calloc must read as zeroes. */
    for (int r = 0; r < 50; r++) free(use_all(malloc(2000), 2000));
    for (size_t n = 1; n < 3000; n += 97) {
        unsigned char *p = calloc(n, 1);
        int zero = 1;
        for (size_t i = 0; i < n; i++) zero &= p[i] == 0;
        check(zero, "calloc returned bytes that are not zero");
        free(p);
    }

    /* realloc: contents survive growing, shrinking, moving, and mmapped sizes. */
    size_t sizes[] = {10, 100, 5000, 40, 300000, 20, 9u << 20, 20u << 20, 64};
    size_t prev = 16;
    unsigned char *r = malloc(prev);
    fill(r, prev, 7);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t keep = prev < sizes[i] ? prev : sizes[i];
        r = realloc(r, sizes[i]);
        check(r != NULL && same(r, keep, 7), "realloc lost the block's contents");
        fill(r, sizes[i], 7);
        check(malloc_usable_size(r) >= sizes[i], "realloc's usable size below the size asked for");
        prev = sizes[i];
    }
    leak(r);
    void *z = malloc(100);
    check(realloc(z, 0) == NULL, "realloc(p, 0) did not free");

    /* Alignments: each honoured, each block fully usable. */
    for (size_t a = 8; a <= 65536; a *= 2) {
        void *p = NULL;
        check(posix_memalign(&p, a, 1000) == 0 && ((uintptr_t)p % a) == 0, "posix_memalign alignment");
        free(use_all(p, 1000));
        void *q = aligned_alloc(a, 4 * a);
        check(q && ((uintptr_t)q % a) == 0, "aligned_alloc alignment");
        free(use_all(q, 4 * a));
        void *m = memalign(a, 333);
        check(m && ((uintptr_t)m % a) == 0, "memalign alignment");
        leak(use_all(m, 333));
    }
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(5000);
    check(v && ((uintptr_t)v % (uintptr_t)page) == 0, "valloc alignment");
    leak(use_all(v, 5000));
    void *pv = pvalloc(5000);
    check(pv && ((uintptr_t)pv % (uintptr_t)page) == 0 && malloc_usable_size(pv) >= 8192, "pvalloc size");
    leak(pv);
    /* An aligned block reallocated keeps its contents (not its alignment: realloc's rule). */
    void *al = memalign(4096, 100);
    fill(al, 100, 3);
    al = realloc(al, 200000);
    check(al && same(al, 100, 3), "realloc of an aligned block lost its contents");
    leak(al);

    /* Blocks glibc allocates and grows itself. */
    char *s = strdup("a string glibc copies with our malloc");
    check(strcmp(s, "a string glibc copies with our malloc") == 0, "strdup");
    free(s);
    char *buf = NULL;
    size_t len = 0;
    FILE *ms = open_memstream(&buf, &len);
    for (int i = 0; i < 2000; i++) fprintf(ms, "line %d of a memory stream\n", i);
    fclose(ms);
    check(len > 40000 && strncmp(buf, "line 0 of", 9) == 0, "open_memstream");
    free(buf);
    FILE *f = fopen("/proc/self/status", "r");
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (f && getline(&line, &cap, f) > 0) lines++;
    check(lines > 5, "getline");
    free(line);
    if (f) fclose(f);

    /* Freed by another thread. */
    void *blocks[64];
    for (int i = 0; i < 64; i++) blocks[i] = use_all(malloc((size_t)(i + 1) * 40), (size_t)(i + 1) * 40);
    pthread_t th;
    pthread_create(&th, NULL, from_other_thread, blocks);
    pthread_join(th, NULL);

    /* Freed (and reallocated) by a forked child, whose shim is pass-through. */
    void *kept[32];
    for (int i = 0; i < 32; i++) kept[i] = leak(use_all(malloc(500 + (size_t)i), 500 + (size_t)i));
    pid_t child = fork();
    if (child == 0) {
        int bad = 0;
        for (int i = 0; i < 16; i++) free(kept[i]);
        for (int i = 16; i < 32; i++) {
            kept[i] = realloc(kept[i], 100000);
            bad |= kept[i] == NULL;
            free(kept[i]);
        }
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child could not free its parent's blocks");

    expect("FAILS", fails);
    report_leaks();
    return 0;
}
