#include "ns_kernels.h"
#include "simd.h"

#include <string.h>

// A GEMM whose left operand (a frozen convolution's weights) is packed once and reused for every
// call: C = act(A . B + bias [+ R]) with B read in place (an image's patch matrix, or the image itself
// for a 1x1 convolution) and C written in place (the output image), the bias and activation
// applied while the tile is still in registers. sgemm packs both operands on every call, which
// for the small GEMMs of an inference of one image costs as much as the multiplication.
//
// A tile is `mr` rows of C against 16 or 32 columns: per k, one or two vectors of B's row k and a
// broadcast of each row's A value. Every element of C sums its K products in k order in one
// accumulator, then adds the bias: the result does not depend on how the rows, columns or images
// are split over threads.

enum { NR = NS_LANES };

#if defined(__x86_64__) && defined(__clang__)
#define WIDE_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define NARROW_TARGET __attribute__((target("avx2,fma")))
#else
#define WIDE_TARGET
#define NARROW_TARGET
#endif

/// Rows per panel: 12 with 32 vector registers (24 accumulators of a 12 x 32 tile), 4 otherwise.
static long panel_rows(void) {
#if defined(__x86_64__) && defined(__clang__)
    static long rows = 0;
    if (rows == 0) rows = __builtin_cpu_supports("avx512f") ? 12 : 4;
    return rows;
#else
    return 4;
#endif
}

long ns_pgemm_panel_rows(void) { return panel_rows(); }

/// Floats of A [M x K] in panels of `mr` rows.
static long packed_count(long M, long K, long mr) { return (M + mr - 1) / mr * mr * K; }

/// A in panels of `mr` rows, k-major: ap[(p K + k) mr + r] = A[p mr + r][k], zero past row M.
static void pack_panels(long M, long K, const float *A, long lda, long mr, float *ap) {
    for (long p = 0; p < (M + mr - 1) / mr; p++)
        for (long k = 0; k < K; k++)
            for (long r = 0; r < mr; r++) {
                const long m = p * mr + r;
                ap[(p * K + k) * mr + r] = m < M ? A[m * lda + k] : 0;
            }
}

long ns_pgemm_packed_count(long M, long K) { return packed_count(M, K, panel_rows()); }

void ns_pgemm_pack(long M, long K, const float *A, long lda, float *ap) { pack_panels(M, K, A, lda, panel_rows(), ap); }

/// The accumulators stay in registers only when the loops over them are unrolled.
#define UNROLL _Pragma("clang loop unroll(full)")

/// One tile: `rows` (<= MR) rows of C from panel `ap` against V vectors of columns of B.
#define TILE(MR, V)                                                                                                   \
    static inline __attribute__((always_inline)) void tile_##MR##_##V(                                                \
        long K, const float *restrict ap, const float *restrict b, long ldb, float *restrict c, long ldc, long rows,  \
        const float *bias, const float *addend, long ldr, float lo, float hi, int stream) {                           \
        vf acc[MR][V];                                                                                                \
        UNROLL for (int r = 0; r < MR; r++)                                                                           \
            UNROLL for (int v = 0; v < V; v++) acc[r][v] = (vf){0};                                                   \
        for (long k = 0; k < K; k++) {                                                                                \
            vf bv[V];                                                                                                 \
            UNROLL for (int v = 0; v < V; v++) bv[v] = LOAD(b + k * ldb + v * NR);                                    \
            UNROLL for (int r = 0; r < MR; r++) {                                                                     \
                const float a = ap[k * MR + r];                                                                       \
                UNROLL for (int v = 0; v < V; v++) acc[r][v] += a * bv[v];                                            \
            }                                                                                                         \
        }                                                                                                             \
        const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;                                                              \
        UNROLL for (int r = 0; r < MR; r++) {                                                                         \
            if (r >= rows) break;                                                                                     \
            const float add = bias ? bias[r] : 0;                                                                     \
            for (int v = 0; v < V; v++) {                                                                             \
                vf y = acc[r][v] + add;                                                                               \
                if (addend) y += LOAD(addend + r * ldr + v * NR);                                                     \
                y = SELECT(y < vlo, vlo, y); /* comparisons keep a NaN a NaN */                                       \
                y = SELECT(y > vhi, vhi, y);                                                                          \
                if (stream)                                                                                           \
                    __builtin_nontemporal_store(y, (vf *)(c + r * ldc + v * NR));                                     \
                else                                                                                                  \
                    STORE(c + r * ldc + v * NR, y);                                                                   \
            }                                                                                                         \
        }                                                                                                             \
    }

TILE(12, 2)
TILE(12, 1)
TILE(4, 2)
TILE(4, 1)

/// Panels [p0, p1) of C against all N columns: blocks of 32 columns, then one of 16, then the
/// last < 16 columns through `scratch` (K * 16 + 2 * MR * 16 floats): B's columns (and R's)
/// copied zero-padded, the tile computed there and its valid columns copied out.
#define BODY(NAME, TARGET, MR)                                                                                        \
    TARGET static void NAME(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,   \
                            const float *bias, const float *R, float lo, float hi, long p0, long p1,                  \
                            float *scratch, int streaming) {                                                          \
        /* Streaming stores need 64-byte aligned rows. */                                                             \
        const int stream = streaming && ((unsigned long)C % 64 == 0) && (ldc % 16 == 0);                              \
        long n0 = 0;                                                                                                  \
        for (; n0 + 2 * NR <= N; n0 += 2 * NR)                                                                        \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR;                                                                                \
                tile_##MR##_2(K, ap + p * K * MR, B + n0, ldb, C + m * ldc + n0, ldc, M - m, bias ? bias + m : 0,     \
                              R ? R + m * ldc + n0 : 0, ldc, lo, hi, stream);                                         \
            }                                                                                                         \
        for (; n0 + NR <= N; n0 += NR)                                                                                \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR;                                                                                \
                tile_##MR##_1(K, ap + p * K * MR, B + n0, ldb, C + m * ldc + n0, ldc, M - m, bias ? bias + m : 0,     \
                              R ? R + m * ldc + n0 : 0, ldc, lo, hi, stream);                                         \
            }                                                                                                         \
        if (n0 < N) {                                                                                                 \
            const long w = N - n0;                                                                                    \
            float *b = scratch, *c = scratch + K * NR, *a = c + MR * NR;                                              \
            for (long k = 0; k < K; k++) {                                                                            \
                memcpy(b + k * NR, B + k * ldb + n0, sizeof(float) * w);                                              \
                memset(b + k * NR + w, 0, sizeof(float) * (NR - w));                                                 \
            }                                                                                                         \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR, rows = M - m < MR ? M - m : MR;                                                \
                if (R)                                                                                                \
                    for (long r = 0; r < rows; r++) {                                                                 \
                        memcpy(a + r * NR, R + (m + r) * ldc + n0, sizeof(float) * w);                                \
                        memset(a + r * NR + w, 0, sizeof(float) * (NR - w));                                         \
                    }                                                                                                 \
                tile_##MR##_1(K, ap + p * K * MR, b, NR, c, NR, rows, bias ? bias + m : 0, R ? a : 0, NR, lo, hi, 0); \
                for (long r = 0; r < rows; r++) memcpy(C + (m + r) * ldc + n0, c + r * NR, sizeof(float) * w);        \
            }                                                                                                         \
        }                                                                                                             \
    }

BODY(pgemm_wide, WIDE_TARGET, 12)
BODY(pgemm_narrow, NARROW_TARGET, 4)
BODY(pgemm_default, , 4)

long ns_pgemm_scratch_count(long K, long N) { return N % NR ? K * NR + 2 * panel_rows() * NR : 0; }

void ns_pgemm(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
              const float *bias, const float *addend, float lo, float hi, long p0, long p1, float *scratch,
              int streaming) {
#if defined(__x86_64__) && defined(__clang__)
    if (panel_rows() == 12) {
        pgemm_wide(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming);
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        pgemm_narrow(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming);
    } else {
        pgemm_default(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming);
    }
    // Streaming stores are weakly ordered: done before the caller reports the work finished.
    if (streaming) __builtin_ia32_sfence();
#else
    pgemm_default(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming);
#endif
}

// MARK: narrow: a handful of columns (an image's 3x3, 2x2 or 1x1 map)

// With N < 16 columns a tile of 16 columns wastes most of its lanes. Here the lanes run over 16
// rows of C instead: A is packed in panels of 16 rows, k-major (ap[(p K + k) 16 + r]), and per k
// one vector of A multiplies each column's B[k][n], broadcast. A is read once, as a GEMM this
// small is bound by reading it. Each element sums its K products in k order in one lane, then
// adds the bias (and the addend).

enum { NP = NS_PGEMM_NARROW_ROWS };
_Static_assert(NP == NS_LANES, "a narrow panel's rows are one vector");

long ns_pgemm_narrow_packed_count(long M, long K) { return packed_count(M, K, NP); }

void ns_pgemm_narrow_pack(long M, long K, const float *A, long lda, float *ap) { pack_panels(M, K, A, lda, NP, ap); }

static inline __attribute__((always_inline)) void narrow_panel(long NC, long M, long K, const float *restrict ap,
                                                               const float *restrict B, long ldb, float *C, long ldc,
                                                               const float *bias, const float *addend, float lo,
                                                               float hi, long p) {
    vf acc[NP];
    UNROLL for (long n = 0; n < NC; n++) acc[n] = (vf){0};
    const float *a = ap + p * K * NP;
    for (long k = 0; k < K; k++) {
        const vf av = LOAD(a + k * NP);
        UNROLL for (long n = 0; n < NC; n++) acc[n] += av * B[k * ldb + n];
    }
    float t[NP][NP];
    UNROLL for (long n = 0; n < NC; n++) STORE(t[n], acc[n]);
    const long m0 = p * NP, rows = M - m0 < NP ? M - m0 : NP;
    for (long r = 0; r < rows; r++) {
        const float add = bias ? bias[m0 + r] : 0;
        for (long n = 0; n < NC; n++) {
            float y = t[n][r] + add;
            if (addend) y += addend[(m0 + r) * ldc + n];
            y = y < lo ? lo : y;
            C[(m0 + r) * ldc + n] = y > hi ? hi : y;
        }
    }
}

#define NARROW_CASE(NC)                                                                                               \
    case NC:                                                                                                          \
        for (long p = p0; p < p1; p++) narrow_panel(NC, M, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p);           \
        break;

NS_CLONES
void ns_pgemm_narrow(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
                     const float *bias, const float *addend, float lo, float hi, long p0, long p1) {
    switch (N) {
        NARROW_CASE(1) NARROW_CASE(2) NARROW_CASE(3) NARROW_CASE(4) NARROW_CASE(5) NARROW_CASE(6) NARROW_CASE(7)
        NARROW_CASE(8) NARROW_CASE(9) NARROW_CASE(10) NARROW_CASE(11) NARROW_CASE(12) NARROW_CASE(13)
        NARROW_CASE(14) NARROW_CASE(15)
    default: break;
    }
}
