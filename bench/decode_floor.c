/*
 * decode_floor.c - the floor for pe-ingest on image folders: the same files,
 * read and decoded by pe's own decoders with the same DCT-scaling hint,
 * converted to the same channels and resized with the same bilinear filter,
 * on the same number of threads, but with no store, no keys, no ordering and
 * no output. pe-ingest's overhead is its time over this program's time.
 *
 *   decode_floor [-j N] [--size WxH] [--channels 1|3] [PATH...]
 *
 * PATH: image file or folder (walked recursively, sorted, symbolic links
 * skipped, only the file extensions pe-ingest takes); '-' or none: paths on
 * stdin, one a line. Prints one summary line. Exit 1 if any file failed.
 *
 * Built by bench/ingest.sh against build/libpe.a:
 *   cc -O2 -D_GNU_SOURCE -Ilib -Iformats bench/decode_floor.c build/libpe.a \
 *      -llmdb -lxxhash -ljpeg -lpng -ltiff -ldeflate -lz -lpthread -lm
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "image.h"
#include "pe.h"

static char **files;
static size_t nfiles, capfiles;
static atomic_size_t next_file;
static atomic_size_t n_ok, n_bad;
static uint32_t size_w = 64, size_h = 64, channels = 3;

static void die(const char *msg) {
    fprintf(stderr, "decode_floor: %s\n", msg);
    exit(2);
}

static int image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || strchr(dot, '/')) return 0;
    static const char *const ext[] = {"jpg", "jpeg", "jpe", "jfif", "png", "tif",
                                      "tiff", "pnm", "pgm", "ppm", "pbm", "bmp"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

static void add_file(const char *path) {
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 1024;
        if (!(files = realloc(files, capfiles * sizeof *files))) die("out of memory");
    }
    if (!(files[nfiles++] = strdup(path))) die("out of memory");
}

static int cmpstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0 || S_ISLNK(sb.st_mode)) return;
    if (S_ISREG(sb.st_mode)) {
        if (image_ext(path)) add_file(path);
        return;
    }
    if (!S_ISDIR(sb.st_mode)) return;
    DIR *d = opendir(path);
    if (!d) return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            if (!(names = realloc(names, cap * sizeof *names))) die("out of memory");
        }
        if (!(names[n++] = strdup(e->d_name))) die("out of memory");
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmpstr);
    for (size_t i = 0; i < n; i++) {
        size_t lp = strlen(path), ln = strlen(names[i]);
        char *p = malloc(lp + ln + 2);
        if (!p) die("out of memory");
        memcpy(p, path, lp);
        size_t o = lp;
        if (lp && path[lp - 1] != '/') p[o++] = '/';
        memcpy(p + o, names[i], ln + 1);
        walk(p);
        free(p);
        free(names[i]);
    }
    free(names);
}

static int read_file(const char *path, uint8_t **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return errno;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return ENOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

static int one(const char *path) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len);
    if (rc) return rc;
    pe_decode_opts d = {0};
    d.min_w = size_w; /* the DCT-scaling hint pe-ingest gives for --size */
    d.min_h = size_h;
    pe_image im = {0};
    pe_decode_info info;
    rc = pe_decode(buf, len, &d, &im, &info);
    free(buf);
    if (rc) return rc;
    if (channels && im.c != channels && (rc = pe_image_to_channels(&im, channels))) {
        pe_image_free(&im);
        return rc;
    }
    if (im.w != size_w || im.h != size_h) {
        pe_image r = {0};
        rc = pe_image_resize_bilinear(&im, &r, size_w, size_h);
        pe_image_free(&im);
        im = r;
    }
    pe_image_free(&im);
    return rc;
}

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        size_t i = atomic_fetch_add(&next_file, 1);
        if (i >= nfiles) return NULL;
        int rc = one(files[i]);
        if (rc) {
            atomic_fetch_add(&n_bad, 1);
            fprintf(stderr, "decode_floor: %s: %s\n", files[i],
                    pe_errmsg()[0] ? pe_errmsg() : pe_strerror(rc));
        } else {
            atomic_fetch_add(&n_ok, 1);
        }
    }
}

int main(int argc, char **argv) {
    int threads = 0, npaths = 0;
    double t0 = pe_now();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-j") || !strcmp(a, "--threads")) && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strncmp(a, "-j", 2) && a[2]) {
            threads = atoi(a + 2);
        } else if (!strcmp(a, "--size") && i + 1 < argc) {
            if (sscanf(argv[++i], "%ux%u", &size_w, &size_h) != 2 || !size_w || !size_h)
                die("--size WxH");
        } else if (!strcmp(a, "--channels") && i + 1 < argc) {
            channels = (uint32_t)atoi(argv[++i]);
            if (channels != 1 && channels != 3) die("--channels 1|3");
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: decode_floor [-j N] [--size WxH] [--channels 1|3] [PATH...]");
            return 0;
        } else if (a[0] == '-' && a[1]) {
            die("unknown option (see --help)");
        } else if (strcmp(a, "-")) {
            walk(a);
            npaths++;
        }
    }
    if (npaths == 0) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) > 0) {
            while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            if (n) add_file(line);
        }
        free(line);
    }
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t th[64];
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, worker, NULL)) break;
    if (started == 0) worker(NULL);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    double dt = pe_now() - t0;
    size_t ok = atomic_load(&n_ok), bad = atomic_load(&n_bad);
    printf("decode_floor: %zu images, %zu failed, %.2fs, %.0f images/s, %d threads\n",
           ok, bad, dt, dt > 0 ? (double)ok / dt : 0.0, started ? started : 1);
    for (size_t i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    return bad ? 1 : 0;
}
