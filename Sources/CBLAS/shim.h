#ifndef NEURALSCALE_CBLAS_SHIM_H
#define NEURALSCALE_CBLAS_SHIM_H
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS built with DYNAMIC_ARCH picks its kernels at load time from the CPU's family and model.
   A release older than the CPU does not know the model and falls back to "Prescott" (SSE3) kernels,
   several times slower than the AVX2/AVX-512 ones the CPU runs (0.3.21, Debian 12's, does this on
   Sapphire and Emerald Rapids). These two entry points of such builds re-run that choice; they are
   weak so that a build without DYNAMIC_ARCH still links, and the shim then leaves OpenBLAS alone. */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

/* When OPENBLAS_CORETYPE is unset and OpenBLAS chose "Prescott" on a CPU that has AVX2 or AVX-512,
   selects the newest kernel family the CPU supports (as OPENBLAS_CORETYPE would) and returns its
   name; otherwise returns NULL and changes nothing. Call once, before any BLAS work. */
static inline const char *neuralscale_openblas_select_core(void) {
    const char *chosen = NULL;
    const char *current;
    if (getenv("OPENBLAS_CORETYPE") != NULL) return NULL;
    if (gotoblas_dynamic_init == NULL || gotoblas_dynamic_quit == NULL) return NULL;
    current = openblas_get_corename();
    if (current == NULL || strcmp(current, "Prescott") != 0) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        chosen = __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        chosen = "Haswell";
    }
    if (chosen == NULL) return NULL;
    setenv("OPENBLAS_CORETYPE", chosen, 0);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE"); /* child processes (Python's own OpenBLAS) choose for themselves */
    return openblas_get_corename();
}
/* OpenBLAS's pool of threads, started when the library loads, spins in sched_yield for a while
   (about 0.1 s) before sleeping, and again after every threaded call. This ends the pool (its
   threads exit; a later threaded call would start it again). Weak, like the two above: a build
   without the symbol links, and this then does nothing. Call with no BLAS call running. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

static inline void neuralscale_openblas_stop_threads(void) {
    if (blas_thread_shutdown_ != NULL) blas_thread_shutdown_();
}
#endif
