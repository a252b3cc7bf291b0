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
