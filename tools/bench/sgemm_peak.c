/* The machine's OpenBLAS sgemm peak, the yardstick of bench_eval.py.
 *
 *   gcc -O2 sgemm_peak.c $(pkg-config --cflags --libs openblas) -o sgemm_peak
 *   ./sgemm_peak [THREADS [REPS [N ...]]]     (defaults: OpenBLAS's threads, 5, 2048 4096)
 *
 * Times C = A·B (row-major, square N×N, f32, values in [-1, 1)) with cblas_sgemm, REPS
 * times per size after one untimed warm-up call; prints one line per size:
 *   n=4096 threads=2 best_gflops=... median_gflops=... best_seconds=...
 * FLOPs are 2·N³ per call. THREADS 0 keeps OpenBLAS's default (every core).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (threads > 0) openblas_set_num_threads(threads);
    if (reps < 1) reps = 1;
    int defaults[] = {2048, 4096};
    int count = argc > 3 ? argc - 3 : 2;
    for (int s = 0; s < count; s++) {
        int n = argc > 3 ? atoi(argv[3 + s]) : defaults[s];
        size_t elements = (size_t)n * n;
        float *a = malloc(elements * sizeof *a), *b = malloc(elements * sizeof *b), *c = malloc(elements * sizeof *c);
        if (!a || !b || !c) { fprintf(stderr, "out of memory for n=%d\n", n); return 1; }
        srand(1);
        for (size_t i = 0; i < elements; i++) {
            a[i] = (float)rand() / RAND_MAX * 2 - 1;
            b[i] = (float)rand() / RAND_MAX * 2 - 1;
            c[i] = 0;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double *seconds = malloc(reps * sizeof *seconds);
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
            seconds[r] = now() - t0;
        }
        qsort(seconds, reps, sizeof *seconds, compare);
        double flops = 2.0 * n * (double)n * n;
        printf("n=%d threads=%d best_gflops=%.2f median_gflops=%.2f best_seconds=%.4f checksum=%g\n", n,
               openblas_get_num_threads(), flops / seconds[0] / 1e9, flops / seconds[reps / 2] / 1e9, seconds[0],
               (double)c[elements / 2]);
        fflush(stdout);
        free(seconds);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
