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

#endif
