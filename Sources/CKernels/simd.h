// What the C kernels share: their clones per instruction set and their 16-lane vector type.
#ifndef NS_SIMD_H
#define NS_SIMD_H

// Compiled for AVX-512, AVX2 and baseline x86-64, the best one chosen at load time (Swift code is
// built for the baseline).
#if defined(__x86_64__) && defined(__clang__)
#define NS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NS_CLONES
#endif

enum { NS_LANES = 16 };

/// Which hand-tuned kernels run: AVX-512's (32 vector registers) where the CPU has them and
/// `ns_portable_kernels` is off, else AVX2's with FMA (16 registers of 8 lanes: blocks sized for
/// them), else the baseline's. Tests set `ns_portable_kernels` to cover the AVX2 paths on an
/// AVX-512 machine.
enum ns_kernel_set { NS_KERNELS_BASELINE, NS_KERNELS_AVX2, NS_KERNELS_AVX512 };
int ns_portable_kernels(void);
static inline enum ns_kernel_set ns_kernel_set(void) {
#if defined(__x86_64__) && defined(__clang__)
    static int avx512 = -1, avx2 = -1;
    if (avx512 < 0) {
        avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                 && __builtin_cpu_supports("avx512dq");
        avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    if (avx512 && !ns_portable_kernels()) return NS_KERNELS_AVX512;
    return avx2 ? NS_KERNELS_AVX2 : NS_KERNELS_BASELINE;
#else
    return NS_KERNELS_BASELINE;
#endif
}

/// Half a 16-lane vector: one AVX2 register (the AVX2 kernels keep the 16-lane layouts and
/// sum orders of the others, a half at a time, so that they compute the same bits).
enum { NS_HALF = 8 };
typedef float vh __attribute__((vector_size(4 * NS_HALF)));
typedef float vh_unaligned __attribute__((vector_size(4 * NS_HALF), aligned(4)));
#define LOADH(p) (*(const vh_unaligned *)(p))
#define STOREH(p, v) (*(vh_unaligned *)(p) = (v))
typedef float vf __attribute__((vector_size(4 * NS_LANES)));
typedef float vf_unaligned __attribute__((vector_size(4 * NS_LANES), aligned(4)));
typedef int vi __attribute__((vector_size(4 * NS_LANES)));

// Macros, not functions: a 64-byte vector passed by value would change the calling convention
// between the AVX-512 and the narrower clones.
#define LOAD(p) (*(const vf_unaligned *)(p))
#define STORE(p, v) (*(vf_unaligned *)(p) = (v))
/// Lanes of a where mask m is set, else of b (m from a comparison: all ones or zeros per lane).
#define SELECT(m, a, b) ((vf)(((vi)(a) & (m)) | ((vi)(b) & ~(m))))
/// The even and the odd lanes of the 32 lanes a ++ b.
#define EVENS(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODDS(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
/// EVENS and ODDS undone: a[0], b[0], a[1], b[1], ... in two vectors.
#define ZIP_LO(a, b) __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define ZIP_HI(a, b) __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)

/// BLOCK(R, NC, m0, n0) over an M x N result in blocks of 4 rows by NB columns (R, NC: the
/// block's rows and columns), with constant R and NC for full blocks and for 4-row blocks of T1
/// or T2 columns (the accumulators then stay in registers), variable ones otherwise.
#define NS_FOR_EACH_BLOCK(M, N, NB, T1, T2, BLOCK)                                                                    \
    for (long m0 = 0; m0 < (M); m0 += 4) {                                                                            \
        const long R = (M) - m0 < 4 ? (M) - m0 : 4;                                                                   \
        for (long n0 = 0; n0 < (N); n0 += (NB)) {                                                                     \
            const long NC = (N) - n0 < (NB) ? (N) - n0 : (NB);                                                        \
            if (R == 4 && NC == (NB)) BLOCK(4, NB, m0, n0);                                                           \
            else if (R == 4 && NC == (T1)) BLOCK(4, T1, m0, n0);                                                      \
            else if (R == 4 && NC == (T2)) BLOCK(4, T2, m0, n0);                                                      \
            else BLOCK(R, NC, m0, n0);                                                                                \
        }                                                                                                             \
    }

/// ev[i] = src[2 i], od[i] = src[2 i + 1] for i < pairs (a row split by column parity).
static inline void ns_deinterleave(const float *src, long pairs, float *restrict ev, float *restrict od) {
    long i = 0;
    for (; i + NS_LANES <= pairs; i += NS_LANES) {
        const vf a = LOAD(src + 2 * i), b = LOAD(src + 2 * i + NS_LANES);
        STORE(ev + i, EVENS(a, b));
        STORE(od + i, ODDS(a, b));
    }
    for (; i < pairs; i++) {
        ev[i] = src[2 * i];
        od[i] = src[2 * i + 1];
    }
}

#endif
