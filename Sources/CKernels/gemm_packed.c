#include "ns_kernels.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>
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

/// Rows per panel for a product of M rows: with AVX-512's 32 vector registers, 12 (24
/// accumulators of a 12 x 32 tile), 8 (16 accumulators) or 9 (18), whichever pads M to the
/// fewest rows (on a tie 8, as fast per row, measured, then 12); with AVX2's 16, 6 (12
/// accumulators of a 6 x 16 tile, two registers of B and a broadcast); 4 otherwise. A 16-channel
/// layer on 12-row panels computes 24 rows, a third of them padding; the 27 taps' rows of a first
/// layer's input gradient (`ns_conv_dx_few`) on 8-row panels 32.
static long panel_rows(long M) {
    switch (ns_kernel_set()) {
    case NS_KERNELS_AVX512: {
        const long on8 = (M + 7) / 8 * 8, on9 = (M + 8) / 9 * 9, on12 = (M + 11) / 12 * 12;
        return on8 <= on9 && on8 <= on12 ? 8 : on12 <= on9 ? 12 : 9;
    }
    case NS_KERNELS_AVX2: return 6;
    default: return 4;
    }
}

long ns_pgemm_panel_rows(long M) { return panel_rows(M); }

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

long ns_pgemm_packed_count(long M, long K) { return packed_count(M, K, panel_rows(M)); }

void ns_pgemm_pack(long M, long K, const float *A, long lda, float *ap) { pack_panels(M, K, A, lda, panel_rows(M), ap); }

/// The accumulators stay in registers only when the loops over them are unrolled.
#define UNROLL _Pragma("clang loop unroll(full)")

/// One k of a tile: every row's A value (`arow[r * astride]`) times the V vectors of B's row in `bv`.
#define TILE_STEP(MR, V, arow, astride)                                                                               \
    UNROLL for (int r = 0; r < MR; r++) {                                                                             \
        const float a_r = (arow)[r * (astride)];                                                                      \
        UNROLL for (int v = 0; v < V; v++) acc[r][v] += a_r * bv[v];                                                  \
    }

/// A tile's sums `acc[MR][V]` from zero over K steps: per k, V vectors of B's row k (`b`, rows
/// `ldb` apart) times the rows' A values at `arow` (an expression of k), `astride` apart.
#define TILE_PRODUCTS(MR, V, arow, astride)                                                                           \
    vf acc[MR][V];                                                                                                    \
    UNROLL for (int r = 0; r < MR; r++)                                                                               \
        UNROLL for (int v = 0; v < V; v++) acc[r][v] = (vf){0};                                                       \
    for (long k = 0; k < K; k++) {                                                                                    \
        vf bv[V];                                                                                                     \
        UNROLL for (int v = 0; v < V; v++) bv[v] = LOAD(b + k * ldb + v * NR);                                        \
        TILE_STEP(MR, V, arow, astride)                                                                               \
    }

/// A tile's first `rows` rows plus the bias, through CLAMP (statements on y), stored by OUT.
#define TILE_BIAS_OUT(MR, V, OUT, CLAMP)                                                                              \
    UNROLL for (int r = 0; r < MR; r++) {                                                                             \
        if (r >= rows) break;                                                                                         \
        const float add = bias ? bias[r] : 0;                                                                         \
        UNROLL for (int v = 0; v < V; v++) {                                                                          \
            vf y = acc[r][v] + add;                                                                                   \
            CLAMP                                                                                                     \
            OUT(c + r * ldc + v * NR, v, y);                                                                          \
        }                                                                                                             \
    }

/// A tile's output, its first `rows` rows: the bias, the addend (`ADDEND(p, v)` loads vector v
/// at p; rows `ldr` apart), the clamp to [lo, hi] (comparisons keep a NaN a NaN), then
/// `OUT(p, v, y)` stores vector v at p; with `c2` (not NULL) also the normalized output of the
/// rows' channels (`nz`'s, from channel `m`), `OUT(c2 + ..., v, z)`: both streamed or neither.
#define TILE_OUTPUT(MR, V, ldr, ADDEND, OUT)                                                                          \
    {                                                                                                                 \
        const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;                                                              \
        /* Unclamped (a convolution before its batch norm): the comparisons would keep every value. */                \
        const int clamps = lo != -INFINITY || hi != INFINITY;                                                         \
        const vf vlo2 = (vf){0} + (c2 ? nz->lo : 0), vhi2 = (vf){0} + (c2 ? nz->hi : 0);                              \
        /* The bias alone (a training convolution's output), or clamped (an inference's ReLU): the */               \
        /* other steps' code in the same loop cost an 8 x 32 tile of 27 products a tenth of its */                    \
        /* time (measured), so these have loops of their own. */                                                      \
        if (!addend && !c2 && !clamps)                                                                                \
            TILE_BIAS_OUT(MR, V, OUT, )                                                                               \
        else if (!addend && !c2)                                                                                      \
            TILE_BIAS_OUT(MR, V, OUT, y = SELECT(y < vlo, vlo, y); y = SELECT(y > vhi, vhi, y);)                     \
        else                                                                                                          \
        UNROLL for (int r = 0; r < MR; r++) {                                                                         \
            if (r >= rows) break;                                                                                     \
            const float add = bias ? bias[r] : 0;                                                                     \
            for (int v = 0; v < V; v++) {                                                                             \
                vf y = acc[r][v] + add;                                                                               \
                if (addend) y += ADDEND(addend + r * (ldr) + v * NR, v);                                              \
                if (clamps) {                                                                                         \
                    y = SELECT(y < vlo, vlo, y);                                                                      \
                    y = SELECT(y > vhi, vhi, y);                                                                      \
                }                                                                                                     \
                OUT(c + r * ldc + v * NR, v, y);                                                                      \
                if (c2) {                                                                                             \
                    const float mu = nz->mean[m + r], sc = nz->scale[m + r], of = nz->offset[m + r];                  \
                    vf z = (y - mu) * sc + of;                                                                        \
                    z = SELECT(z < vlo2, vlo2, z);                                                                    \
                    z = SELECT(z > vhi2, vhi2, z);                                                                    \
                    OUT(c2 + r * ldc + v * NR, v, z);                                                                 \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }

#define PLAIN_LOAD(p, v) LOAD(p)
#define PLAIN_OUT(p, v, y)                                                                                            \
    if (stream)                                                                                                       \
        __builtin_nontemporal_store(y, (vf *)(p));                                                                    \
    else                                                                                                              \
        STORE(p, y)

/// One tile: `rows` (<= MR) rows of C from panel `ap` against V vectors of columns of B.
#define TILE(MR, V)                                                                                                   \
    static inline __attribute__((always_inline)) void tile_##MR##_##V(                                                \
        long K, const float *restrict ap, const float *restrict b, long ldb, float *restrict c, long ldc, long rows,  \
        const float *bias, const float *addend, long ldr, float lo, float hi, int stream,                             \
        const ns_normalized_output *nz, long m, float *restrict c2) {                                                 \
        TILE_PRODUCTS(MR, V, ap + k * MR, 1)                                                                          \
        TILE_OUTPUT(MR, V, ldr, PLAIN_LOAD, PLAIN_OUT)                                                                \
    }

TILE(12, 2)
TILE(12, 1)
TILE(9, 2)
TILE(9, 1)
TILE(8, 2)
TILE(8, 1)
TILE(6, 2)
TILE(6, 1)
/// A 6-row panel's first 3 rows alone: the last panel of a product whose rows leave at most 3
/// there (a first layer's 27 taps' rows: 3 of the 30 computed were padding).
static inline __attribute__((always_inline)) void tile_6_first3(long K, const float *restrict ap, const float *restrict b,
                                                                long ldb, float *restrict c, long ldc, long rows,
                                                                const float *bias, const float *addend, long ldr, float lo,
                                                                float hi, int stream, const ns_normalized_output *nz,
                                                                long m, float *restrict c2) {
    TILE_PRODUCTS(3, 1, ap + k * 6, 1)
    TILE_OUTPUT(3, 1, ldr, PLAIN_LOAD, PLAIN_OUT)
}
TILE(4, 2)
TILE(4, 1)

/// Panels [p0, p1) of C against all N columns: blocks of 32 columns, then one of 16, then the
/// last < 16 columns through `scratch` (K * 16 + 2 * MR * 16 floats): B's columns (and R's)
/// copied zero-padded, the tile computed there and its valid columns copied out.
#define BODY(NAME, TARGET, MR, PAIRS, PACKB, SHORT)                                                                   \
    TARGET static void NAME(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,    \
                            const float *bias, const float *R, float lo, float hi, long p0, long p1,                  \
                            float *scratch, int streaming, const ns_normalized_output *nz) {                          \
        /* Streaming stores need 64-byte aligned rows (AVX2's: none, as `pconv_avx2`). */                            \
        const int stream = !PACKB && streaming && ((unsigned long)C % 64 == 0) && (ldc % 16 == 0) &&                  \
                           (!nz || (unsigned long)nz->out % 64 == 0);                                                 \
        long n0 = 0;                                                                                                  \
        for (; PAIRS && n0 + 2 * NR <= N; n0 += 2 * NR)                                                               \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR;                                                                                \
                tile_##MR##_2(K, ap + p * K * MR, B + n0, ldb, C + m * ldc + n0, ldc, M - m, bias ? bias + m : 0,     \
                              R ? R + m * ldc + n0 : 0, ldc, lo, hi, stream, nz, m, nz ? nz->out + m * ldc + n0 : 0); \
            }                                                                                                         \
        for (; n0 + NR <= N; n0 += NR) {                                                                              \
            /* With PACKB, the block's columns of B copied into `scratch` for the panels to share. */                 \
            const float *bb = B + n0;                                                                                 \
            long lb = ldb;                                                                                            \
            if (PACKB && scratch && p1 - p0 > 1) {                                                                    \
                for (long k = 0; k < K; k++) STORE(scratch + k * NR, LOAD(B + k * ldb + n0));                         \
                bb = scratch, lb = NR;                                                                                \
            }                                                                                                         \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR;                                                                                \
                /* SHORT: the tile of a panel's first half, where the rest is padding. */                              \
                if (M - m <= MR / 2)                                                                                  \
                    SHORT(K, ap + p * K * MR, bb, lb, C + m * ldc + n0, ldc, M - m, bias ? bias + m : 0,              \
                          R ? R + m * ldc + n0 : 0, ldc, lo, hi, stream, nz, m, nz ? nz->out + m * ldc + n0 : 0);     \
                else                                                                                                  \
                    tile_##MR##_1(K, ap + p * K * MR, bb, lb, C + m * ldc + n0, ldc, M - m, bias ? bias + m : 0,      \
                                  R ? R + m * ldc + n0 : 0, ldc, lo, hi, stream, nz, m,                               \
                                  nz ? nz->out + m * ldc + n0 : 0);                                                   \
            }                                                                                                         \
        }                                                                                                             \
        if (n0 < N) {                                                                                                 \
            const long w = N - n0;                                                                                    \
            float *b = scratch, *c = scratch + K * NR, *a = c + MR * NR;                                              \
            for (long k = 0; k < K; k++) {                                                                            \
                memcpy(b + k * NR, B + k * ldb + n0, sizeof(float) * w);                                              \
                memset(b + k * NR + w, 0, sizeof(float) * (NR - w));                                                  \
            }                                                                                                         \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR, rows = M - m < MR ? M - m : MR;                                                \
                if (R)                                                                                                \
                    for (long r = 0; r < rows; r++) {                                                                 \
                        memcpy(a + r * NR, R + (m + r) * ldc + n0, sizeof(float) * w);                                \
                        memset(a + r * NR + w, 0, sizeof(float) * (NR - w));                                          \
                    }                                                                                                 \
                tile_##MR##_1(K, ap + p * K * MR, b, NR, c, NR, rows, bias ? bias + m : 0, R ? a : 0, NR, lo, hi, 0,  \
                              0, 0, 0);                                                                               \
                for (long r = 0; r < rows; r++) memcpy(C + (m + r) * ldc + n0, c + r * NR, sizeof(float) * w);        \
                if (nz)                                                                                               \
                    for (long r = 0; r < rows; r++) {                                                                 \
                        const float mu = nz->mean[m + r], sc = nz->scale[m + r], of = nz->offset[m + r];              \
                        for (long j = 0; j < w; j++) {                                                                \
                            float z = (c[r * NR + j] - mu) * sc + of;                                                 \
                            z = z < nz->lo ? nz->lo : z;                                                              \
                            nz->out[(m + r) * ldc + n0 + j] = z > nz->hi ? nz->hi : z;                                \
                        }                                                                                             \
                    }                                                                                                 \
            }                                                                                                         \
        }                                                                                                             \
    }

BODY(pgemm_wide, WIDE_TARGET, 12, 1, 0, tile_12_1)
BODY(pgemm_wide9, WIDE_TARGET, 9, 1, 0, tile_9_1)
BODY(pgemm_wide8, WIDE_TARGET, 8, 1, 0, tile_8_1)
// 16 columns a tile: a 6 x 32 one's 24 accumulators would not fit AVX2's 16 registers. B's
// columns copied for the panels: its rows in place are often 4 KB apart (an image's 32x32
// plane), all in one set of a 32 KB L1, so each panel read them from L2 again.
BODY(pgemm_avx2, NARROW_TARGET, 6, 0, 1, tile_6_first3)
BODY(pgemm_default, , 4, 1, 0, tile_4_1)

/// Enough for the tallest panel (12 rows); on AVX2 always (`pgemm_avx2` copies B's columns there).
long ns_pgemm_scratch_count(long K, long N) {
    return N % NR || ns_kernel_set() == NS_KERNELS_AVX2 ? K * NR + 2 * 12 * NR : 0;
}

void ns_pgemm(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
              const float *bias, const float *addend, float lo, float hi, long p0, long p1, float *scratch,
              int streaming, const ns_normalized_output *normalized) {
#if defined(__x86_64__) && defined(__clang__)
    const long mr = panel_rows(M);
    if (mr == 8) {
        pgemm_wide8(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming, normalized);
    } else if (mr == 9) {
        pgemm_wide9(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming, normalized);
    } else if (mr == 12) {
        pgemm_wide(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming, normalized);
    } else if (mr == 6) {
        pgemm_avx2(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming, normalized);
    } else {
        pgemm_default(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming, normalized);
    }
    // Streaming stores are weakly ordered: done before the caller reports the work finished.
    if (streaming) __builtin_ia32_sfence();
#else
    pgemm_default(M, N, K, ap, B, ldb, C, ldc, bias, addend, lo, hi, p0, p1, scratch, streaming, normalized);
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

/// Panels [p, p + GP) against NC columns: GP * NC accumulators, enough independent sums (about 8)
/// to keep the multiply-adds' latency hidden when NC is 1 or 2 (a 1x1 map's matrix-vector
/// product). Each element still sums its K products in k order in one lane. Column n belongs to
/// image n / P of C (and of the addend), `cstride` floats apart, at column n mod P.
static inline __attribute__((always_inline)) void narrow_panels(long NC, long GP, long M, long K,
                                                                const float *restrict ap, const float *restrict B,
                                                                long ldb, float *C, long ldc, long P, long cstride,
                                                                const float *bias, const float *addend, float lo,
                                                                float hi, long p) {
    vf acc[GP][NC];
    UNROLL for (long g = 0; g < GP; g++)
        UNROLL for (long n = 0; n < NC; n++) acc[g][n] = (vf){0};
    const float *a = ap + p * K * NP;
    for (long k = 0; k < K; k++) {
        vf av[GP];
        UNROLL for (long g = 0; g < GP; g++) av[g] = LOAD(a + (g * K + k) * NP);
        UNROLL for (long n = 0; n < NC; n++) {
            const float b = B[k * ldb + n];
            UNROLL for (long g = 0; g < GP; g++) acc[g][n] += av[g] * b;
        }
    }
    long at[NP];
    for (long n = 0; n < NC; n++) at[n] = n / P * cstride + n % P;
    const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;
    UNROLL for (long g = 0; g < GP; g++) {
        const long m0 = (p + g) * NP;
        if (m0 + NP <= M && ldc == P && (P == 1 || (P == 4 && NC % 4 == 0))) {
            // Whole panels on 1x1 or 2x2 maps, a vector at a time: a 1x1 map's rows of a column
            // lie side by side as the accumulator holds them; a 2x2 map's image (4 columns) is
            // its rows' 4 pixels in turn, the accumulators interleaved. The same operations
            // per element as below.
            const vf bv = bias ? LOAD(bias + m0) : (vf){0};
            if (P == 1) {
                UNROLL for (long n = 0; n < NC; n++) {
                    vf y = acc[g][n] + bv;
                    if (addend) y += LOAD(addend + m0 + at[n]);
                    y = SELECT(y < vlo, vlo, y);
                    STORE(C + m0 + at[n], SELECT(y > vhi, vhi, y));
                }
            } else {
                const vf b4[4] = {__builtin_shufflevector(bv, bv, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                  __builtin_shufflevector(bv, bv, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
                                  __builtin_shufflevector(bv, bv, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
                                  __builtin_shufflevector(bv, bv, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15,
                                                          15, 15)};
                UNROLL for (long i = 0; i < NC / 4; i++) {
                    const vf ac0 = ZIP_LO(acc[g][4 * i], acc[g][4 * i + 2]), ac1 = ZIP_HI(acc[g][4 * i], acc[g][4 * i + 2]);
                    const vf bd0 = ZIP_LO(acc[g][4 * i + 1], acc[g][4 * i + 3]);
                    const vf bd1 = ZIP_HI(acc[g][4 * i + 1], acc[g][4 * i + 3]);
                    const vf rows4[4] = {ZIP_LO(ac0, bd0), ZIP_HI(ac0, bd0), ZIP_LO(ac1, bd1), ZIP_HI(ac1, bd1)};
                    const long at0 = m0 * 4 + at[4 * i];
                    UNROLL for (int k = 0; k < 4; k++) {
                        vf y = rows4[k] + b4[k];
                        if (addend) y += LOAD(addend + at0 + k * NP);
                        y = SELECT(y < vlo, vlo, y);
                        STORE(C + at0 + k * NP, SELECT(y > vhi, vhi, y));
                    }
                }
            }
            continue;
        }
        float t[NP][NP];
        UNROLL for (long n = 0; n < NC; n++) STORE(t[n], acc[g][n]);
        const long rows = M - m0 < NP ? M - m0 : NP;
        for (long r = 0; r < rows; r++) {
            const float add = bias ? bias[m0 + r] : 0;
            for (long n = 0; n < NC; n++) {
                float y = t[n][r] + add;
                if (addend) y += addend[(m0 + r) * ldc + at[n]];
                y = y < lo ? lo : y;
                C[(m0 + r) * ldc + at[n]] = y > hi ? hi : y;
            }
        }
    }
}

/// Panels grouped for about 8 accumulators, the rest one at a time.
#define NARROW_CASE(NC)                                                                                               \
    case NC: {                                                                                                        \
        enum { GP = (8 + NC - 1) / NC };                                                                              \
        long p = p0;                                                                                                  \
        for (; p + GP <= p1; p += GP)                                                                                 \
            narrow_panels(NC, GP, M, K, ap, B, ldb, C, ldc, P, cstride, bias, addend, lo, hi, p);                     \
        for (; p < p1; p++) narrow_panels(NC, 1, M, K, ap, B, ldb, C, ldc, P, cstride, bias, addend, lo, hi, p);      \
        break;                                                                                                        \
    }

NS_CLONES
void ns_pgemm_narrow_images(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
                            long P, long cstride, const float *bias, const float *addend, float lo, float hi, long p0,
                            long p1) {
    switch (N) {
        NARROW_CASE(1) NARROW_CASE(2) NARROW_CASE(3) NARROW_CASE(4) NARROW_CASE(5) NARROW_CASE(6) NARROW_CASE(7)
        NARROW_CASE(8) NARROW_CASE(9) NARROW_CASE(10) NARROW_CASE(11) NARROW_CASE(12) NARROW_CASE(13)
        NARROW_CASE(14) NARROW_CASE(15) NARROW_CASE(16)
    default: break;
    }
}

void ns_pgemm_narrow(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
                     const float *bias, const float *addend, float lo, float hi, long p0, long p1) {
    ns_pgemm_narrow_images(M, N, K, ap, B, ldb, C, ldc, N, 0, bias, addend, lo, hi, p0, p1);
}

// MARK: implicit: a convolution without its patch matrix

// For a stride-1 convolution whose output is the input's size (kernel 2 p + 1, padding p), the
// patch matrix's row for channel c and tap (i, j) at output pixel q is the input plane at
// q + (i - PH) W + (j - PW), or 0 where that tap falls in the padding: 32 consecutive pixels
// read 32 consecutive floats of the plane, masked. At stride 2 the same holds in the plane's four
// phases (pixels of even or odd row and column), each of the output's size: tap (i, j) reads
// phase ((i - PH) mod 2, (j - PW) mod 2) shifted by ((i - PH) div 2, (j - PW) div 2). The tiles
// load B's rows that way instead of from an im2col copy (which costs as much as the product on an
// image's small layers), and compute every element as `ns_pgemm` does: the same products in the
// same order, so the same bits.

#if defined(__x86_64__) && defined(__clang__)
#include "implicit.h"

enum { MAX_TAPS = NS_IMPLICIT_MAX_TAPS };

/// Vector v of a tile whose lanes `store[v]` selects (a last block of pixels may be cut).
#define MASKED_LOAD(p, v) ((vf)_mm512_maskz_loadu_ps(store[v], p))
#define MASKED_OUT(p, v, y)                                                                                           \
    if (store[v] != 0xffff)                                                                                           \
        _mm512_mask_storeu_ps(p, store[v], (__m512)(y));                                                              \
    else if (stream)                                                                                                  \
        __builtin_nontemporal_store(y, (vf *)(p));                                                                    \
    else                                                                                                              \
        STORE(p, y)

/// Floats of the largest zero-padded image `ns_pconv` and `ns_conv_dw_lanes` copy to read without
/// masks (on the stack: 128 KB, the workers' stacks are 1 MB; a first layer's 3 x 34 x 34 is 3468, 16
/// channels of 32 x 32 18496).
enum { NS_PADDED_MAX = 32768 };

/// x [C, H, W] into padded [C, H + 2 PH, W + 2 PW], zeros around (only there).
NS_CLONES static void pad_image(const float *x, long C, long H, long W, long PH, long PW, float *padded) {
    const long Hp = H + 2 * PH, Wp = W + 2 * PW;
    for (long c = 0; c < C; c++) {
        float *plane = padded + c * Hp * Wp;
        memset(plane, 0, sizeof(float) * (size_t)(PH * Wp + PW));
        for (long y = 0; y < H; y++) {
            const float *src = x + (c * H + y) * W;
            float *dst = plane + (y + PH) * Wp + PW;
            long i = 0;
            for (; i + NR <= W; i += NR) STORE(dst + i, LOAD(src + i));
            for (; i < W; i++) dst[i] = src[i];
            // This row's right padding and the next row's left (or the bottom rows).
            for (i = W; i < W + 2 * PW; i++) dst[i] = 0;
        }
        memset(plane + (H + PH) * Wp + PW, 0, sizeof(float) * (size_t)(PH * Wp - PW));
    }
}

/// Whether a convolution reads a zero-padded copy of its image, without masks: stride 1, rows of
/// whole vectors, the copy at most NS_PADDED_MAX floats. On AVX2 the only way it reads the image
/// in place, so `ns_masked_image_reads` (for tests) picks the masks on AVX-512 alone.
static inline int reads_padded(long C, long H, long W, long PH, long PW, long stride) {
    return stride == 1 && W % NR == 0 && C * (H + 2 * PH) * (W + 2 * PW) <= NS_PADDED_MAX
        && (ns_kernel_set() == NS_KERNELS_AVX2 || !ns_masked_image_reads());
}

/// Tap offsets in an image zero-padded to rows of Wp, from a pixel's own position there (its
/// window's top left corner).
static inline void padded_offsets(struct ns_taps *t, long KW, long Wp) {
    for (long k = 0; k < t->count; k++) t->offset[k] = k / KW * Wp + k % KW;
}

/// Where vector v of the block of output pixels from q0 starts in an image padded to rows of Wp
/// (a vector's pixels one row's): past the last pixel (N), the block's first, loaded but not stored.
static inline long padded_start(long q0, long v, long N, long OW, long Wp) {
    const long q = q0 + v * NR < N ? q0 + v * NR : q0;
    return q / OW * Wp + q % OW;
}

/// Vector v of tap k's row of B (its source s): masked at the padding (masks[k ms + v]), or from a
/// zero-padded copy of the image (the vector's pixels from `vb[v]` on), a plain load: on an Intel
/// Xeon (Emerald Rapids) a masked load takes a slot of the FMA ports, a ninth of an 8 x 32 tile's
/// throughput and a fifth of a 4 x 96 one's (measured alone).
#define MASKED_B(v) ((vf)_mm512_maskz_loadu_ps(masks[k * ms + v], s + v * NR))
#define PADDED_B(v) LOAD(s + vb[v])

/// One tile of `rows` (<= MR) output channels against V vectors of pixels (the vectors' lanes
/// cut by `store`): per channel of the source and tap, B's row loaded from the source by
/// LOAD_B (MASKED_B or PADDED_B).
#define ITILE_WITH(NAME, MR, V, LOAD_B)                                                                               \
    WIDE_TARGET static inline __attribute__((always_inline)) void NAME(                                               \
        long C, long ldx, const struct ns_taps *t, const __mmask16 *masks, long ms, const long *vb,                   \
        const float *restrict ap, const float *restrict x, float *restrict c, long ldc, long rows, const float *bias,  \
        const float *addend, float lo, float hi, const __mmask16 *store, int stream, const ns_normalized_output *nz,  \
        long m, float *restrict c2) {                                                                                 \
        vf acc[MR][V];                                                                                                \
        UNROLL for (int r = 0; r < MR; r++)                                                                           \
            UNROLL for (int v = 0; v < V; v++) acc[r][v] = (vf){0};                                                   \
        const long taps = t->count;                                                                                   \
        for (long ch = 0; ch < C; ch++) {                                                                             \
            const float *xc = x + ch * ldx;                                                                           \
            for (long k = 0; k < taps; k++, ap += MR) {                                                               \
                const float *s = xc + t->offset[k];                                                                   \
                vf bv[V];                                                                                             \
                UNROLL for (int v = 0; v < V; v++) bv[v] = LOAD_B(v);                                                 \
                TILE_STEP(MR, V, ap, 1)                                                                               \
            }                                                                                                         \
        }                                                                                                             \
        TILE_OUTPUT(MR, V, ldc, MASKED_LOAD, MASKED_OUT)                                                              \
    }
#define ITILE(MR, V)                                                                                                  \
    ITILE_WITH(itile_##MR##_##V, MR, V, MASKED_B)                                                                     \
    ITILE_WITH(itilep_##MR##_##V, MR, V, PADDED_B)

ITILE(12, 2)
ITILE(12, 1)
ITILE(9, 2)
ITILE(9, 1)
ITILE(8, 2)
ITILE(8, 1)

/// Panels [p0, p1) against every block of 32 output pixels (16 for a last block of at most 16).
/// With Wp > 0, x is the image zero-padded to rows of Wp (stride 1, OW a multiple of 16: a
/// vector's pixels are one row's) and t's offsets are in its coordinates.
#define IBODY(NAME, MR)                                                                                               \
    WIDE_TARGET static void NAME(long M, long C, long OH, long OW, long ldx, long Wp, const struct ns_taps *t,         \
                                 const float *ap, const float *x, float *out, const float *bias, const float *R,      \
                                 float lo, float hi, long p0, long p1, int streaming,                                 \
                                 const ns_normalized_output *nz) {                                                    \
        const long N = OH * OW, K = C * t->count;                                                                     \
        /* Streaming stores need 64-byte aligned rows. */                                                             \
        const int stream = streaming && ((unsigned long)out % 64 == 0) && (N % 16 == 0) &&                            \
                           (!nz || (unsigned long)nz->out % 64 == 0);                                                 \
        __mmask16 masks[MAX_TAPS][2], store[2];                                                                       \
        long vb[2];                                                                                                   \
        for (long q0 = 0; q0 < N; q0 += 2 * NR) {                                                                     \
            const long left = N - q0;                                                                                 \
            for (long v = 0; v < 2; v++) {                                                                            \
                if (Wp) vb[v] = padded_start(q0, v, N, OW, Wp);                                                       \
                else ns_tap_masks(q0 + v * NR, OH, OW, t, &masks[0][v], 2);                                           \
                store[v] = ns_first_lanes(left - v * NR);                                                             \
            }                                                                                                         \
            for (long p = p0; p < p1; p++) {                                                                          \
                const long m = p * MR;                                                                                \
                const float *a = ap + p * K * MR, *b = x + (Wp ? 0 : q0);                                             \
                float *c = out + m * N + q0, *c2 = nz ? nz->out + m * N + q0 : 0;                                     \
                const float *bi = bias ? bias + m : 0, *r = R ? R + m * N + q0 : 0;                                   \
                const __mmask16 *mk = &masks[0][0];                                                                   \
                if (Wp && left > NR)                                                                                  \
                    itilep_##MR##_2(C, ldx, t, mk, 2, vb, a, b, c, N, M - m, bi, r, lo, hi, store, stream, nz, m, c2); \
                else if (Wp)                                                                                          \
                    itilep_##MR##_1(C, ldx, t, mk, 2, vb, a, b, c, N, M - m, bi, r, lo, hi, store, stream, nz, m, c2); \
                else if (left > NR)                                                                                   \
                    itile_##MR##_2(C, ldx, t, mk, 2, vb, a, b, c, N, M - m, bi, r, lo, hi, store, stream, nz, m, c2); \
                else                                                                                                  \
                    itile_##MR##_1(C, ldx, t, mk, 2, vb, a, b, c, N, M - m, bi, r, lo, hi, store, stream, nz, m, c2); \
            }                                                                                                         \
        }                                                                                                             \
    }

IBODY(pconv_wide, 12)
IBODY(pconv_wide9, 9)
IBODY(pconv_wide8, 8)

/// AVX2's implicit tile: `rows` (<= MR) output channels against 16 pixels of a zero-padded image
/// (`vb`: where the pixels start in it), its padded path alone (rows of whole vectors: no cut
/// vector, no masks). A 6 x 16 tile, the packed GEMM's on AVX2; B's rows are the image's, which
/// stays in L1 (a first layer's 3 x 34 x 34 is 14 KB), where an im2col copy's rows, 4 KB apart on
/// a 32x32 map, all fell in one set of L1 and came from L2 on every tile.
NARROW_TARGET static inline __attribute__((always_inline)) void
atile_6(long C, long ldx, const struct ns_taps *t, long vb, const float *restrict ap, const float *restrict x,
        float *restrict c, long ldc, long rows, const float *bias, const float *addend, float lo, float hi, int stream,
        const ns_normalized_output *nz, long m, float *restrict c2) {
    vf acc[6][1];
    UNROLL for (int r = 0; r < 6; r++) acc[r][0] = (vf){0};
    const long taps = t->count;
    for (long ch = 0; ch < C; ch++) {
        const float *xc = x + ch * ldx + vb;
        for (long k = 0; k < taps; k++, ap += 6) {
            vf bv[1];
            bv[0] = LOAD(xc + t->offset[k]);
            TILE_STEP(6, 1, ap, 1)
        }
    }
    TILE_OUTPUT(6, 1, ldc, PLAIN_LOAD, PLAIN_OUT)
}

/// `IBODY` for AVX2: panels [p0, p1) of 6 rows against every block of 16 output pixels, x zero-
/// padded to rows of Wp (stride 1, OW a multiple of 16).
NARROW_TARGET static void pconv_avx2(long M, long C, long OH, long OW, long ldx, long Wp, const struct ns_taps *t,
                                     const float *ap, const float *x, float *out, const float *bias, const float *R,
                                     float lo, float hi, long p0, long p1, int streaming,
                                     const ns_normalized_output *nz) {
    const long N = OH * OW, K = C * t->count;
    // Plain stores: streaming ones made a first layer's forward 3.0 -> 3.8-4.1 ms (batch 128, AMD
    // EPYC VM, Zen 3), where on an Intel Xeon they saved time.
    (void)streaming;
    const int stream = 0;
    // A panel over all the pixels, then the next: each output row a stream, where a block of
    // pixels over all the panels wrote 64 rows 4 KB apart (a 32x32 plane), one L1 set's worth.
    // The image and the panels' weights stay in L1 either way.
    for (long p = p0; p < p1; p++)
        for (long q0 = 0; q0 < N; q0 += NR) {
            const long vb = padded_start(q0, 0, N, OW, Wp);
            const long m = p * 6;
            atile_6(C, ldx, t, vb, ap + p * K * 6, x, out + m * N + q0, N, M - m, bias ? bias + m : 0,
                    R ? R + m * N + q0 : 0, lo, hi, stream, nz, m, nz ? nz->out + m * N + q0 : 0);
        }
}

/// The weight gradient's blocks: 4 rows of dy (NS_FOR_EACH_BLOCK's) by 5 patch rows, 20
/// accumulators. With 6 (24), the padded path's loop over a row of two vectors, unrolled,
/// loaded the second vector's operands early and spilled five accumulators to the stack on
/// every vector: 4 x 5 ran 134 -> 139 GFLOP/s on an Intel Xeon (one thread, 128 images).
enum { DW_ROWS = 4, DW_COLUMNS = 5 };

/// The dy row a block prefetches while it runs (NULL: none): column pass j > 0 of the row group
/// of `group` rows from m0 fetches row j - 1 of the next group, a line per vector, into L2
/// (prefetcht1); the last group fetches the next image's first rows (`next`, when the caller goes
/// on to one).
/// Fetched into L1, the next group's four rows, 4 KB apart like the current group's, took the
/// sets those and the image's rows use (with a 32x32 plane 8 dy lines and about 4 image lines to
/// each of 12 ways) and the first pass of a group stalled on its first dy load anyway (perf
/// annotate: that load and the branch after it 17% of the kernel's samples with prefetcht0, 8%
/// with prefetcht1). VGG-11's first layer's weight gradient at batch 128 on an Intel Xeon VM,
/// 6 alternating runs of 60 passes: best 2.05-2.14 -> 1.97-2.05 ms, medians 2.26-2.81 ->
/// 2.12-2.75 ms; `bench conv --layers 1`, 3 calm pairs: 237-244 -> 247-251 GFLOP/s. The next
/// image's first rows too (each image's first group waited on them): one thread, 4 alternating
/// runs of `bench conv --layers 1`, best of 20, 3.90-3.97 -> 3.78-3.96 ms (two threads within
/// noise). What is left is the dy stream itself: a batch's 32 MB read once from memory, at
/// 8-10 GB/s a core where one core streams 13-15 GB/s with nothing else to do; the same passes
/// over a dy already in the L3 take 3.3 ms.
static inline const float *dw_ahead_pass(long M, long m0, long group, long pass, long HW, const float *dy,
                                         const float *next) {
    const long row = m0 + group + pass - 1;
    if (pass == 0 || pass > group) return 0;
    // The last group (any M) fetches the next image's rows 0, 1, ... in its passes 1, 2, ...
    if (m0 + group >= M) return next && pass - 1 < M ? next + (pass - 1) * HW : 0;
    return row < M ? dy + row * HW : 0;
}

/// `dw_ahead_pass` for the AVX-512 blocks: DW_ROWS rows a group, the pass of column block n0.
static inline const float *dw_ahead(long M, long m0, long n0, long HW, const float *dy, const float *next) {
    return dw_ahead_pass(M, m0, DW_ROWS, n0 / DW_COLUMNS, HW, dy, next);
}

/// A weight-gradient block's start: its patch rows' sources p, its dy rows d (HW apart) and its
/// accumulators as carried in `lanes`.
WIDE_TARGET static inline __attribute__((always_inline)) void
dw_block_start(long R, long NC, long m0, long n0, long N, long HW, const float *dy, const float *const *src,
               const float *lanes, vf acc[DW_ROWS][DW_COLUMNS], const float *p[DW_COLUMNS], const float *d[DW_ROWS]) {
    for (long n = 0; n < NC; n++) p[n] = src[n0 + n];
    for (long r = 0; r < R; r++) d[r] = dy + (m0 + r) * HW;
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) acc[r][n] = LOAD(lanes + ((m0 + r) * N + n0 + n) * NR);
}

/// Its end: the accumulators carried back into `lanes`.
WIDE_TARGET static inline __attribute__((always_inline)) void
dw_block_end(long R, long NC, long m0, long n0, long N, vf acc[DW_ROWS][DW_COLUMNS], float *lanes) {
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) STORE(lanes + ((m0 + r) * N + n0 + n) * NR, acc[r][n]);
}

/// Rows m0 ..< m0 + R of dy (M rows) against patch rows n0 ..< n0 + NC (R <= 4, NC <= 5), each
/// patch row read from its source `src[n]` (16 floats further per vector of pixels) under its
/// masks: 20 accumulators of 16 lanes, carried in `lanes`. Every row's pointer advances alike, so
/// that the loop keeps its nine pointers in registers (with a per-row step, they and the steps were
/// reloaded from the stack on every vector). The row group's first column block reads its dy
/// rows from memory, the later ones from the cache; while those run, the next group's rows are
/// fetched, a line per vector: a batch's dy is far larger than the caches, and the first block
/// otherwise waited on it.
WIDE_TARGET static inline __attribute__((always_inline)) void dw_block(long M, long R, long NC, long m0, long n0,
                                                                       long N, long V, long HW, const float *dy,
                                                                       const float *next, const float *const *src,
                                                                       const __mmask16 *masks, float *lanes) {
    vf acc[DW_ROWS][DW_COLUMNS];
    const float *p[DW_COLUMNS], *d[DW_ROWS];
    dw_block_start(R, NC, m0, n0, N, HW, dy, src, lanes, acc, p, d);
    const __mmask16 *mk = masks + n0;
    // This block's column pass over the group, and the lines of the next group's rows.
    const float *ahead = dw_ahead(M, m0, n0, HW, dy, next);
    for (long v = 0; v < V; v++, mk += N) {
        if (ahead) __builtin_prefetch(ahead + v * NR, 0, 2);
        const __mmask16 inside = ns_first_lanes(HW - v * NR);
        vf a[4];
        for (long r = 0; r < R; r++) a[r] = (vf)_mm512_maskz_loadu_ps(inside, d[r] + v * NR);
        for (long n = 0; n < NC; n++) {
            const vf b = (vf)_mm512_maskz_loadu_ps(mk[n], p[n] + v * NR);
            for (long r = 0; r < R; r++) acc[r][n] += a[r] * b;
        }
    }
    dw_block_end(R, NC, m0, n0, N, acc, lanes);
}

WIDE_TARGET static void dw_lanes(long M, long N, long HW, const float *const *src, const __mmask16 *masks,
                                 const float *dy, const float *next, float *lanes) {
    const long V = (HW + NR - 1) / NR;
#define DW_BLOCK(R, NC, m0, n0) dw_block(M, R, NC, m0, n0, N, V, HW, dy, next, src, masks, lanes)
    NS_FOR_EACH_BLOCK(M, N, DW_COLUMNS, 4, 3, DW_BLOCK)
#undef DW_BLOCK
}

/// `dw_block` on a zero-padded copy of the image (`dw_lanes_padded`): every patch row a plain
/// load, no masks (on an Intel Xeon the masks' moves took a fifth of the weight gradient's
/// time). Each of the H image rows is `vpr` whole vectors; the patch rows' sources (the row of
/// ones too) are laid out in rows of Wp, so that one offset moves them all on a row.
/// The same products in the same order as `dw_block`: a tap over the padding reads a zero
/// where the mask read a zero.
WIDE_TARGET static inline __attribute__((always_inline)) void
dw_block_padded(long M, long R, long NC, long m0, long n0, long N, long H, long vpr, long Wp, const float *dy,
                const float *next, const float *const *src, float *lanes) {
    const long HW = H * vpr * NR;
    vf acc[DW_ROWS][DW_COLUMNS];
    const float *p[DW_COLUMNS], *d[DW_ROWS];
    dw_block_start(R, NC, m0, n0, N, HW, dy, src, lanes, acc, p, d);
    const float *ahead = dw_ahead(M, m0, n0, HW, dy, next);
    // The group's first pass reads its dy rows from L2 (`dw_ahead` put them there): fetched into
    // L1 eight vectors ahead, four rows at once, which the hardware's streams did not keep up
    // with (perf annotate: no load stands out after; best of 60 passes 1.96-2.03 -> 1.94-1.99
    // ms, 6 alternating runs, within noise in `bench conv`).
    const int first = n0 == 0;
    long v = 0;  // dy's vector
    for (long off = 0; off < H * Wp; off += Wp)
        for (long u = 0; u < vpr; u++, v++) {
            if (ahead) __builtin_prefetch(ahead + v * NR, 0, 2);
            else if (first)
                for (long r = 0; r < R; r++) __builtin_prefetch(d[r] + (v + 8) * NR);
            vf a[4];
            for (long r = 0; r < R; r++) a[r] = LOAD(d[r] + v * NR);
            for (long n = 0; n < NC; n++) {
                const vf b = LOAD(p[n] + off + u * NR);
                for (long r = 0; r < R; r++) acc[r][n] += a[r] * b;
            }
        }
    dw_block_end(R, NC, m0, n0, N, acc, lanes);
}

/// Rows of two vectors (32 pixels, CIFAR's first layer) with that count known to the loops.
WIDE_TARGET static void dw_lanes_padded(long M, long N, long H, long vpr, long Wp, const float *const *src,
                                        const float *dy, const float *next, float *lanes) {
#define DW_BLOCK(R, NC, m0, n0) dw_block_padded(M, R, NC, m0, n0, N, H, vpr, Wp, dy, next, src, lanes)
#define DW_BLOCK2(R, NC, m0, n0) dw_block_padded(M, R, NC, m0, n0, N, H, 2, Wp, dy, next, src, lanes)
    if (vpr == 2) NS_FOR_EACH_BLOCK(M, N, DW_COLUMNS, 4, 3, DW_BLOCK2)
    else NS_FOR_EACH_BLOCK(M, N, DW_COLUMNS, 4, 3, DW_BLOCK)
#undef DW_BLOCK
#undef DW_BLOCK2
}
/// `dw_block_padded` for AVX2, one half of the 16 lanes (`h`: lanes 8 h ..< 8 h + 8) over the
/// whole plane: 3 rows of dy by 3 patch rows, 9 accumulators, 3 registers of dy and 3 of the
/// image in AVX2's 16 (`nt_lanes_avx2`'s blocks). Each lane sums the same products in the same
/// order as there and as `dw_block_padded`: the same bits. The group's dy rows are read twice
/// per column block, then from L1 with the zero-padded image (a first layer's 14 KB).
enum { DWH_ROWS = 3, DWH_COLUMNS = 4 };
NARROW_TARGET static inline __attribute__((always_inline)) void
dw_half_padded(long R, long NC, long m0, long n0, long N, long H, long vpr, long Wp, const float *dy,
               const float *const *src, float *lanes, long h, const float *ahead) {
    const long HW = H * vpr * NR;
    vh acc[DWH_ROWS][DWH_COLUMNS];
    const float *p[DWH_COLUMNS], *d[DWH_ROWS];
    for (long n = 0; n < NC; n++) p[n] = src[n0 + n] + h * NS_HALF;
    for (long r = 0; r < R; r++) d[r] = dy + (m0 + r) * HW + h * NS_HALF;
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) acc[r][n] = LOADH(lanes + ((m0 + r) * N + n0 + n) * NR + h * NS_HALF);
    long v = 0;  // dy's vector
    for (long off = 0; off < H * Wp; off += Wp)
        for (long u = 0; u < vpr; u++, v++) {
            if (ahead) __builtin_prefetch(ahead + v * NR, 0, 2);
            vh a[DWH_ROWS];
            for (long r = 0; r < R; r++) a[r] = LOADH(d[r] + v * NR);
            for (long n = 0; n < NC; n++) {
                const vh b = LOADH(p[n] + off + u * NR);
                for (long r = 0; r < R; r++) acc[r][n] += a[r] * b;
            }
        }
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) STOREH(lanes + ((m0 + r) * N + n0 + n) * NR + h * NS_HALF, acc[r][n]);
}

/// While a row group's passes run (a column block's half each), its first passes fetch the next
/// group's dy rows into L2 (`dw_ahead_pass`), as the AVX-512 blocks do.
NARROW_TARGET static void dw_lanes_padded_avx2(long M, long N, long H, long vpr, long Wp, const float *const *src,
                                               const float *dy, const float *next, float *lanes) {
    const long HW = H * vpr * NR;
    for (long m0 = 0; m0 < M; m0 += DWH_ROWS) {
        const long R = M - m0 < DWH_ROWS ? M - m0 : DWH_ROWS;
        long pass = 0;
        for (long n0 = 0; n0 < N; n0 += DWH_COLUMNS) {
            const long NC = N - n0 < DWH_COLUMNS ? N - n0 : DWH_COLUMNS;
            for (long h = 0; h < 2; h++, pass++) {
                const float *ahead = dw_ahead_pass(M, m0, DWH_ROWS, pass, HW, dy, next);
                if (R == DWH_ROWS && NC == DWH_COLUMNS && vpr == 2)
                    dw_half_padded(DWH_ROWS, DWH_COLUMNS, m0, n0, N, H, 2, Wp, dy, src, lanes, h, ahead);
                else
                    dw_half_padded(R, NC, m0, n0, N, H, vpr, Wp, dy, src, lanes, h, ahead);
            }
        }
    }
}
#endif


long ns_conv_dw_masks_count(long C, long H, long W, long KH, long KW, int ones) {
    return (H * W + NR - 1) / NR * (C * KH * KW + (ones ? 1 : 0));
}

void ns_conv_dw_masks(long C, long H, long W, long KH, long KW, long PH, long PW, long stride, int ones,
                      unsigned short *masks) {
#if defined(__x86_64__) && defined(__clang__)
    struct ns_taps t;
    const long OH = H / stride, OW = W / stride;
    ns_tap_table(OH, OW, W, KH, KW, PH, PW, stride, &t);
    const long HW = OH * OW, V = (HW + NR - 1) / NR, N = C * t.count + (ones ? 1 : 0);
    for (long v = 0; v < V; v++) {
        __mmask16 m[MAX_TAPS];
        ns_tap_masks(v * NR, OH, OW, &t, m, 1);
        for (long n = 0; n < C * t.count; n++) masks[v * N + n] = m[n % t.count];
        if (ones) masks[v * N + N - 1] = ns_first_lanes(HW - v * NR);
    }
#else
    (void)C, (void)H, (void)W, (void)KH, (void)KW, (void)PH, (void)PW, (void)stride, (void)ones, (void)masks;
#endif
}

/// The row of ones is as long as the image's rows in whole vectors (the masked path reads it like
/// them), and at least H rows of W + 2 PW (the padded path moves it on a padded row).
long ns_conv_dw_ones_count(long H, long W, long PW) {
    const long whole = (H * W + NR - 1) / NR * NR, padded = H * (W + 2 * PW);
    return whole > padded ? whole : padded;
}

void ns_conv_dw_lanes(long M, long C, long H, long W, long KH, long KW, long PH, long PW, long stride,
                      const float *ones, const unsigned short *masks, const float *dy, const float *next_dy,
                      const float *x, float *lanes) {
#if defined(__x86_64__) && defined(__clang__)
    struct ns_taps t;
    const long OH = H / stride, OW = W / stride, N = C * KH * KW + (ones ? 1 : 0);
    const float *src[NS_CONV_DW_MAX_ROWS];
    if (N > NS_CONV_DW_MAX_ROWS) abort();  // the caller checks
    ns_tap_table(OH, OW, W, KH, KW, PH, PW, stride, &t);
    if (ones) src[N - 1] = ones;
    const long Hp = H + 2 * PH, Wp = W + 2 * PW;
    const int avx2 = ns_kernel_set() == NS_KERNELS_AVX2;
    if (reads_padded(C, H, W, PH, PW, stride)) {
        float padded[NS_PADDED_MAX];
        pad_image(x, C, H, W, PH, PW, padded);
        for (long n = 0; n < C * t.count; n++) {
            const long tap = n % t.count, ky = tap / KW, kx = tap % KW;
            src[n] = padded + (n / t.count) * Hp * Wp + ky * Wp + kx;
        }
        if (avx2) dw_lanes_padded_avx2(M, N, H, W / NR, Wp, src, dy, next_dy, lanes);
        else dw_lanes_padded(M, N, H, W / NR, Wp, src, dy, next_dy, lanes);
        return;
    }
    if (avx2) abort();  // the caller checks (`ns_pconv_padded_available`)
    // Else under the taps' masks, reading the image's planes (stride 1) or its phases (stride 2,
    // [C][4][OH][OW]: every tap reads a phase plane shifted by at most one row and column).
    const long plane = stride == 1 ? H * W : 4 * OH * OW;
    for (long n = 0; n < C * t.count; n++) src[n] = x + (n / t.count) * plane + t.offset[n % t.count];
    dw_lanes(M, N, OH * OW, src, masks, dy, next_dy, lanes);
#else
    (void)M, (void)C, (void)H, (void)W, (void)KH, (void)KW, (void)PH, (void)PW, (void)stride, (void)ones, (void)masks;
    (void)dy, (void)next_dy, (void)x, (void)lanes;
#endif
}

int ns_pconv_padded_available(long C, long H, long W, long KH, long KW, long PH, long PW, long stride) {
#if defined(__x86_64__) && defined(__clang__)
    if (ns_kernel_set() == NS_KERNELS_AVX512) return ns_pconv_available(H, W, KH, KW, PH, PW, stride);
    return ns_kernel_set() == NS_KERNELS_AVX2 && KH == 2 * PH + 1 && KW == 2 * PW + 1 && KH * KW <= MAX_TAPS
        && reads_padded(C, H, W, PH, PW, stride);
#else
    (void)C, (void)H, (void)W, (void)KH, (void)KW, (void)PH, (void)PW, (void)stride;
    return 0;
#endif
}

int ns_pconv_available(long H, long W, long KH, long KW, long PH, long PW, long stride) {
#if defined(__x86_64__) && defined(__clang__)
    if (ns_kernel_set() != NS_KERNELS_AVX512 || KH * KW > MAX_TAPS) return 0;
    if (stride == 1) return KH == 2 * PH + 1 && KW == 2 * PW + 1;
    // Every phase the output's size.
    return stride == 2 && H % 2 == 0 && W % 2 == 0 && (KH == 2 * PH + 1 || KH == 2 * PH + 2) &&
           (KW == 2 * PW + 1 || KW == 2 * PW + 2);
#else
    (void)H, (void)W, (void)KH, (void)KW, (void)PH, (void)PW, (void)stride;
    return 0;
#endif
}

NS_CLONES
void ns_pconv_even_phase(const float *x, long H, long W, long c0, long c1, float *phases) {
    const long OH = H / 2, OW = W / 2;
    for (long c = c0; c < c1; c++)
        for (long y = 0; y < H; y += 2) {
            const float *row = x + (c * H + y) * W;
            float *even = phases + (c * 4 * OH + y / 2) * OW;
            long i = 0;
            for (; i + NS_LANES <= OW; i += NS_LANES) STORE(even + i, EVENS(LOAD(row + 2 * i), LOAD(row + 2 * i + NS_LANES)));
            for (; i < OW; i++) even[i] = row[2 * i];
        }
}

// Cloned: built for the baseline alone it was SSE, 41% of a stride-2 depthwise layer's time
// (MobileNetV2's, 32x32 -> 16x16). The rows of one parity, one after another, split by column
// parity are that row parity's two phases, so a 16-wide plane splits two rows a vector pair.
NS_CLONES
void ns_pconv_phases(const float *x, long H, long W, long c0, long c1, float *phases) {
    const long OH = H / 2, OW = W / 2;
    for (long c = c0; c < c1; c++)
        for (long a = 0; a < 2; a++) {
            const float *rows = x + (c * H + a) * W;  // rows a, a + 2, ...: 2 W apart
            float *even = phases + (c * 4 + a * 2) * OH * OW, *odd = even + OH * OW;
            long y = 0;
            if (W == NS_LANES)
                for (; y + 2 <= OH; y += 2) {
                    const vf r0 = LOAD(rows + 2 * y * W), r1 = LOAD(rows + 2 * (y + 1) * W);
                    STORE(even + y * OW, EVENS(r0, r1));
                    STORE(odd + y * OW, ODDS(r0, r1));
                }
            for (; y < OH; y++) ns_deinterleave(rows + 2 * y * W, OW, even + y * OW, odd + y * OW);
        }
}

void ns_pconv(long M, long C, long H, long W, long KH, long KW, long PH, long PW, long stride, const float *ap,
              const float *x, float *out, const float *bias, const float *addend, float lo, float hi, long p0, long p1,
              int streaming, const ns_normalized_output *normalized) {
#if defined(__x86_64__) && defined(__clang__)
    const long OH = stride == 1 ? H : H / 2, OW = stride == 1 ? W : W / 2;
    struct ns_taps t;
    ns_tap_table(OH, OW, W, KH, KW, PH, PW, stride, &t);
    long ldx = stride == 1 ? H * W : 4 * OH * OW, Wp = 0;
    float padded[NS_PADDED_MAX];
    const long Hp = H + 2 * PH, mr = panel_rows(M);
    if (reads_padded(C, H, W, PH, PW, stride)) {
        Wp = W + 2 * PW;
        ldx = Hp * Wp;
        pad_image(x, C, H, W, PH, PW, padded);
        x = padded;
        padded_offsets(&t, KW, Wp);
    }
    if (mr == 6) {
        if (!Wp) abort();  // the caller checks (`ns_pconv_padded_available`)
        pconv_avx2(M, C, OH, OW, ldx, Wp, &t, ap, x, out, bias, addend, lo, hi, p0, p1, streaming, normalized);
    } else if (mr == 8)
        pconv_wide8(M, C, OH, OW, ldx, Wp, &t, ap, x, out, bias, addend, lo, hi, p0, p1, streaming, normalized);
    else if (mr == 9)
        pconv_wide9(M, C, OH, OW, ldx, Wp, &t, ap, x, out, bias, addend, lo, hi, p0, p1, streaming, normalized);
    else
        pconv_wide(M, C, OH, OW, ldx, Wp, &t, ap, x, out, bias, addend, lo, hi, p0, p1, streaming, normalized);
    if (streaming) __builtin_ia32_sfence();
#else
    (void)M, (void)C, (void)H, (void)W, (void)KH, (void)KW, (void)PH, (void)PW, (void)stride, (void)ap, (void)x;
    (void)out, (void)bias, (void)addend, (void)lo, (void)hi, (void)p0, (void)p1, (void)streaming, (void)normalized;
#endif
}

// MARK: a first layer's input gradient

int ns_conv_dx_few_available(long C, long KH, long KW, long PH, long PW) {
    return C >= 1 && C <= NS_CONV_DX_FEW_CHANNELS && KH == 2 * PH + 1 && KW == 2 * PW + 1 && KH * KW <= 64;
}

long ns_conv_dx_few_scratch_count(long C, long O, long H, long W, long KH, long KW) {
    return KH * KW * C * H * W + ns_pgemm_scratch_count(O, H * W);
}

#if defined(__x86_64__) && defined(__clang__)
/// dx [C, H, W] = the sums over the taps of z's rows shifted by them (`ns_conv_dx_few`), 16
/// columns at a time, the columns outside the plane masked.
WIDE_TARGET static void shift_add_wide(long C, long H, long W, long KH, long KW, long PH, long PW, const float *z,
                                       float *dx) {
    const long HW = H * W;
    for (long x0 = 0; x0 < W; x0 += NR) {
        // Per kernel column j, lane l reads column x0 + l - j + PW: the lanes inside the plane.
        __mmask16 inside[MAX_TAPS];
        for (long j = 0; j < KW; j++) {
            const long xs = x0 - j + PW;
            inside[j] = ns_first_lanes(W - xs) & ns_first_lanes(W - x0) & ~ns_first_lanes(-xs);
        }
        const __mmask16 store = ns_first_lanes(W - x0);
        for (long c = 0; c < C; c++)
            for (long y = 0; y < H; y++) {
                vf acc = (vf){0};
                for (long i = 0; i < KH; i++) {
                    const long ys = y - i + PH;
                    if (ys < 0 || ys >= H) continue;
                    const float *row = z + (i * KW * C + c) * HW + ys * W + x0 + PW;
                    for (long j = 0; j < KW; j++)
                        acc += (vf)_mm512_maskz_loadu_ps(inside[j], row + j * C * HW - j);
                }
                _mm512_mask_storeu_ps(dx + (c * H + y) * W + x0, store, (__m512)acc);
            }
    }
}
#endif

/// The same, a tap at a time: each tap's contribution added to the whole of dx over the pixels
/// it reaches, the taps in order (a pixel it misses would add a zero, which changes no sum that
/// starts at +0), so the same sums as `shift_add_wide`'s. Each tap's rows of z are read as one
/// stream while dx (a few channels: 12 KB for a first layer's on 32x32) stays in L1; row by row,
/// the nine taps' rows, 4 KB apart on a 32x32 plane, fell in one set of L1. The loop over a
/// row's columns is the compiler's to vectorize.
NS_CLONES
static void shift_add(long C, long H, long W, long KH, long KW, long PH, long PW, const float *z, float *dx) {
    const long HW = H * W;
    for (long p = 0; p < C * HW; p++) dx[p] = 0;
    for (long i = 0; i < KH; i++)
        for (long j = 0; j < KW; j++) {
            // Row y reads row y - i + PH; column x column x - j + PW.
            const long y0 = i - PH > 0 ? i - PH : 0, y1 = H + i - PH < H ? H + i - PH : H;
            const long shift = PW - j, lo = shift < 0 ? -shift : 0, hi = shift > 0 ? W - shift : W;
            for (long c = 0; c < C; c++) {
                const float *tap = z + ((i * KW + j) * C + c) * HW + (PH - i) * W + shift;
                for (long y = y0; y < y1; y++) {
                    float *restrict d = dx + (c * H + y) * W;
                    const float *restrict row = tap + y * W;
                    for (long x = lo; x < hi; x++) d[x] += row[x];
                }
            }
        }
}

void ns_conv_dx_few(long C, long O, long H, long W, long KH, long KW, long PH, long PW, const float *ap,
                    const float *dy, float *dx, float *scratch) {
    const long HW = H * W, R = KH * KW * C, mr = panel_rows(R);
    float *z = scratch;
    ns_pgemm(R, HW, O, ap, dy, HW, z, HW, NULL, NULL, -INFINITY, INFINITY, 0, (R + mr - 1) / mr, z + R * HW, 0, NULL);
#if defined(__x86_64__) && defined(__clang__)
    if (ns_kernel_set() == NS_KERNELS_AVX512) {
        shift_add_wide(C, H, W, KH, KW, PH, PW, z, dx);
        return;
    }
#endif
    shift_add(C, H, W, KH, KW, PH, PW, z, dx);
}

// MARK: a halving convolution's input gradient

int ns_conv_dx_s2_available(long H, long W, long KH, long KW, long PH, long PW) {
    return (KH == 1 || KH == 3) && KW == KH && PH == KH / 2 && PW == KW / 2 && H >= 2 && W >= 2 && H % 2 == 0
        && W % 2 == 0;
}

long ns_conv_dx_s2_scratch_count(long C, long O, long H, long W, long K, long images) {
    // Enough for any count of images up to `images`: fewer may leave a cut vector of columns.
    return K * K * C * images * (H / 2) * (W / 2) + ns_pgemm_scratch_count(O, 1);
}

/// The rows of z: tap t and channel c at row t ts + c cs, ldz floats apart.
typedef struct {
    const float *z;
    long ldz, ts, cs;
} s2_rows;

/// The row i of an image's plane in z's row for tap (kh, 0) and channel c (`z` at the image's
/// first column; taps (kh, 1) and (kh, 2) ts rows further each), or NULL where kernel row kh reads
/// no row of dx's row y: x's row y = 2 i + kh - P.
static inline const float *s2_tap_row(s2_rows z, long K, long c, long OH, long OW, long y, long kh) {
    const long P = K / 2, t = y + P - kh;
    if (t < 0 || t % 2 != 0 || t / 2 >= OH) return 0;
    return z.z + (kh * K * z.ts + c * z.cs) * z.ldz + (t / 2) * OW;
}

#if defined(__x86_64__) && defined(__clang__)
/// dx from z (`ns_conv_dx_s2`), 16 columns of a row at a time: the even columns' sums and the odd
/// columns' (8 of each, from columns x0 / 2 on of z's rows) interleaved by one permute.
WIDE_TARGET static void s2_gather_wide(long C, long H, long W, long K, s2_rows z, float *dx, int accumulate) {
    const long OH = H / 2, OW = W / 2;
    const __m512i interleave = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    for (long x0 = 0; x0 < W; x0 += 16) {
        const long j0 = x0 / 2;
        const __mmask8 here = (__mmask8)ns_first_lanes(OW - j0), next = (__mmask8)ns_first_lanes(OW - j0 - 1);
        const __mmask16 store = ns_first_lanes(W - x0);
        for (long c = 0; c < C; c++)
            for (long y = 0; y < H; y++) {
                __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
                for (long kh = 0; kh < K; kh++) {
                    if (K == 1) {
                        const float *r = s2_tap_row(z, K, c, OH, OW, y, kh);
                        if (r) even = _mm256_add_ps(even, _mm256_maskz_loadu_ps(here, r + j0));
                        continue;
                    }
                    const float *r0 = s2_tap_row(z, K, c, OH, OW, y, kh);
                    if (!r0) continue;
                    const float *r1 = r0 + z.ts * z.ldz, *r2 = r1 + z.ts * z.ldz;
                    even = _mm256_add_ps(even, _mm256_maskz_loadu_ps(here, r1 + j0));
                    odd = _mm256_add_ps(odd, _mm256_maskz_loadu_ps(next, r0 + j0 + 1));
                    odd = _mm256_add_ps(odd, _mm256_maskz_loadu_ps(here, r2 + j0));
                }
                const __m512 v = _mm512_permutex2var_ps(_mm512_castps256_ps512(even), interleave,
                                                        _mm512_castps256_ps512(odd));
                float *d = dx + (c * H + y) * W + x0;
                _mm512_mask_storeu_ps(d, store, accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(store, d), v) : v);
            }
    }
}
#endif

/// The same, a pixel at a time, the sums in the same order.
static void s2_gather(long C, long H, long W, long K, s2_rows z, float *dx, int accumulate) {
    const long OH = H / 2, OW = W / 2;
    for (long c = 0; c < C; c++)
        for (long y = 0; y < H; y++)
            for (long x = 0; x < W; x++) {
                float acc = 0;
                for (long kh = 0; kh < K; kh++) {
                    const float *r = s2_tap_row(z, K, c, OH, OW, y, kh);
                    if (!r) continue;
                    if (K == 1) {
                        acc += x % 2 == 0 ? r[x / 2] : 0;
                    } else if (x % 2 == 0) {
                        acc += r[z.ts * z.ldz + x / 2];
                    } else {
                        acc += x / 2 + 1 < OW ? r[x / 2 + 1] : 0;
                        acc += r[2 * z.ts * z.ldz + x / 2];
                    }
                }
                float *d = dx + (c * H + y) * W + x;
                *d = accumulate ? *d + acc : acc;
            }
}

void ns_conv_dx_s2_gather(long C, long H, long W, long K, long images, const float *z, long ldz, int channelMajor,
                          float *dx, int accumulate) {
    const long plane = (H / 2) * (W / 2);
    for (long n = 0; n < images; n++) {
        const s2_rows rows = {z + n * plane, ldz, channelMajor ? 1 : C, channelMajor ? K * K : 1};
        float *d = dx + n * C * H * W;
#if defined(__x86_64__) && defined(__clang__)
        if (ns_kernel_set() == NS_KERNELS_AVX512) {
            s2_gather_wide(C, H, W, K, rows, d, accumulate);
            continue;
        }
#endif
        s2_gather(C, H, W, K, rows, d, accumulate);
    }
}

void ns_conv_dx_s2(long C, long O, long H, long W, long K, long images, const float *ap, const float *dy, long lddy,
                   float *dx, int accumulate, float *scratch) {
    const long cols = images * (H / 2) * (W / 2), R = K * K * C, mr = panel_rows(R);
    ns_pgemm(R, cols, O, ap, dy, lddy, scratch, cols, NULL, NULL, -INFINITY, INFINITY, 0, (R + mr - 1) / mr,
             scratch + R * cols, 0, NULL);
    ns_conv_dx_s2_gather(C, H, W, K, images, scratch, cols, 0, dx, accumulate);
}

// MARK: rows: a product whose left operand is read in place, row by row

/// One tile of C: MR rows of A (row-major, `lda` apart; each element broadcast) against V vectors
/// of columns of B (row-major). Every element sums its K products in k order in one accumulator.
#define RTILE(MR, V)                                                                                                  \
    static inline __attribute__((always_inline)) void rtile_##MR##_##V(long K, const float *restrict ar, long lda,    \
                                                                       const float *restrict b, long ldb,             \
                                                                       float *restrict c, long ldc) {                 \
        TILE_PRODUCTS(MR, V, ar + k, lda)                                                                             \
        UNROLL for (int r = 0; r < MR; r++)                                                                           \
            UNROLL for (int v = 0; v < V; v++) STORE(c + r * ldc + v * NR, acc[r][v]);                                \
    }

RTILE(12, 2)
RTILE(12, 1)
RTILE(8, 2)
RTILE(8, 1)
RTILE(4, 2)
RTILE(4, 1)
RTILE(3, 2)
RTILE(3, 1)
RTILE(2, 2)
RTILE(2, 1)
RTILE(1, 2)
RTILE(1, 1)

/// Rows of C in tiles of 12, then at most one each of 8, 4, 3 or 2, and 1 (each tile reads B's
/// columns once: a few rows, one image's tiles, in as few passes as can be), against the V
/// vectors of columns at n0.
#define RTILE_ROWS(V, n0)                                                                                             \
    do {                                                                                                              \
        long m = 0;                                                                                                   \
        for (; m + 12 <= M; m += 12) rtile_12_##V(K, A + m * lda, lda, B + (n0), ldb, C + m * ldc + (n0), ldc);       \
        if (m + 8 <= M) rtile_8_##V(K, A + m * lda, lda, B + (n0), ldb, C + m * ldc + (n0), ldc), m += 8;             \
        if (m + 4 <= M) rtile_4_##V(K, A + m * lda, lda, B + (n0), ldb, C + m * ldc + (n0), ldc), m += 4;             \
        if (m + 3 <= M) rtile_3_##V(K, A + m * lda, lda, B + (n0), ldb, C + m * ldc + (n0), ldc), m += 3;             \
        if (m + 2 <= M) rtile_2_##V(K, A + m * lda, lda, B + (n0), ldb, C + m * ldc + (n0), ldc), m += 2;             \
        if (m < M) rtile_1_##V(K, A + m * lda, lda, B + (n0), ldb, C + m * ldc + (n0), ldc);                          \
    } while (0)

_Static_assert(NS_GEMM_ROWS_COLUMNS == NR, "ns_gemm_rows' columns come in whole vectors");

NS_CLONES
void ns_gemm_rows(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *C, long ldc) {
    long n0 = 0;
    for (; n0 + 2 * NR <= N; n0 += 2 * NR) RTILE_ROWS(2, n0);
    for (; n0 + NR <= N; n0 += NR) RTILE_ROWS(1, n0);
}

void ns_gather_images(long rows, long plane, long images, const float *src, long stride, float *dst) {
    const long columns = images * plane;
    if (plane == 4) {
        // 16-byte rows (a 2x2 map): one 128-bit copy each.
        for (long r = 0; r < rows; r++)
            for (long i = 0; i < images; i++) memcpy(dst + r * columns + i * 4, src + i * stride + r * 4, 16);
        return;
    }
    for (long r = 0; r < rows; r++)
        for (long i = 0; i < images; i++)
            for (long q = 0; q < plane; q++) dst[r * columns + i * plane + q] = src[i * stride + r * plane + q];
}
