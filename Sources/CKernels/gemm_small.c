#include "ns_kernels.h"
#include "simd.h"

// A GEMM with a handful of columns: a convolution of one image on a 2x2 or 1x1 map, whose time
// is reading its weights. sgemm copies the whole weight matrix into its packed layout first, which
// doubles that traffic; here each row of A is read once, four rows at a time, and multiplied with
// up to four columns of B at once (B, a few kilobytes, stays in L1).

enum { L = NS_LANES };

/// The lanes of *v added in order (by pointer: a 64-byte vector passed by value would change
/// the calling convention between the AVX-512 and the narrower clones).
static inline float lanes_sum(const vf *v) {
    float s = 0;
    for (int l = 0; l < L; l++) s += (*v)[l];
    return s;
}

/// acc[r][n] += rows m0 + r of A times rows n0 + n of B (lane by lane) over the whole vectors
/// of k from k on, leaving k at the first that does not fill one.
#define DOT_VECTORS(R, NC, A, lda, B, ldb)                                                                            \
    for (; k + L <= K; k += L) {                                                                                      \
        vf a[4];                                                                                                      \
        for (long r = 0; r < (R); r++) a[r] = LOAD((A) + (m0 + r) * (lda) + k);                                       \
        for (long n = 0; n < (NC); n++) {                                                                             \
            const vf b = LOAD((B) + (n0 + n) * (ldb) + k);                                                            \
            for (long r = 0; r < (R); r++) acc[r][n] += a[r] * b;                                                     \
        }                                                                                                             \
    }

/// Rows m0 ..< m0 + R of C against columns n0 ..< n0 + NC, R and NC at most 4.
static inline __attribute__((always_inline)) void block(long R, long NC, long m0, long n0, long K, const float *A,
                                                        long lda, const float *BT, long ldb, float *C, long ldc) {
    vf acc[4][4];
    for (long r = 0; r < 4; r++)
        for (long n = 0; n < 4; n++) acc[r][n] = (vf){0};
    long k = 0;
    DOT_VECTORS(R, NC, A, lda, BT, ldb)
    for (long r = 0; r < R; r++) {
        for (long n = 0; n < NC; n++) {
            float s = lanes_sum(&acc[r][n]);
            const float *a = A + (m0 + r) * lda, *b = BT + (n0 + n) * ldb;
            for (long kk = k; kk < K; kk++) s += a[kk] * b[kk];
            C[(m0 + r) * ldc + n0 + n] = s;
        }
    }
}

NS_CLONES
void ns_gemm_small_n(long M, long N, long K, const float *A, long lda, const float *BT, long ldb, float *C, long ldc) {
#define SMALL_BLOCK(R, NC, m0, n0) block(R, NC, m0, n0, K, A, lda, BT, ldb, C, ldc)
    NS_FOR_EACH_BLOCK(M, N, 4, 1, 2, SMALL_BLOCK)
#undef SMALL_BLOCK
}

// MARK: lane sums: the weight gradient of a shallow convolution

_Static_assert(NS_GEMM_LANES == L, "the lanes of ns_gemm_nt_lanes are one vector");

/// Rows m0 ..< m0 + R of A against rows n0 ..< n0 + NC of B (R <= 4, NC <= 6): 24 accumulators
/// of 16 lanes, carried in `lanes` from call to call. The last K % 16 products go to the first
/// lanes, as if the rows were padded with zeros.
static inline __attribute__((always_inline)) void lane_block(long R, long NC, long m0, long n0, long N, long K,
                                                             const float *A, long lda, const float *B, long ldb,
                                                             float *lanes) {
    vf acc[4][6];
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) acc[r][n] = LOAD(lanes + ((m0 + r) * N + n0 + n) * L);
    long k = 0;
    DOT_VECTORS(R, NC, A, lda, B, ldb)
    if (k < K) {
        vf a[4], b[6];
        for (long r = 0; r < R; r++) {
            a[r] = (vf){0};
            for (long i = 0; k + i < K; i++) a[r][i] = A[(m0 + r) * lda + k + i];
        }
        for (long n = 0; n < NC; n++) {
            b[n] = (vf){0};
            for (long i = 0; k + i < K; i++) b[n][i] = B[(n0 + n) * ldb + k + i];
        }
        for (long n = 0; n < NC; n++)
            for (long r = 0; r < R; r++) acc[r][n] += a[r] * b[n];
    }
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) STORE(lanes + ((m0 + r) * N + n0 + n) * L, acc[r][n]);
}

NS_CLONES
static void nt_lanes(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *lanes) {
#define LANE_BLOCK(R, NC, m0, n0) lane_block(R, NC, m0, n0, N, K, A, lda, B, ldb, lanes)
    NS_FOR_EACH_BLOCK(M, N, 6, 4, 3, LANE_BLOCK)
#undef LANE_BLOCK
}

#if defined(__x86_64__) && defined(__clang__)
enum { HALF_ROWS = 3, HALF_COLUMNS = 3 };

/// `lane_block` for AVX2, one half of the 16 lanes (`h`: lanes 8 h ..< 8 h + 8) over all of K:
/// 9 accumulators, 3 registers of A and 3 of B in AVX2's 16 (the 4 x 6 block's 24 16-lane
/// accumulators are 48 of its registers: spilled on every product). Every lane sums the same
/// products in the same order as there (a tail's missing elements multiply zeros in, as there),
/// so the same bits. A block's rows are read twice, the second time from L1.
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
lane_half(long R, long NC, long m0, long n0, long N, long K, const float *A, long lda, const float *B, long ldb,
          float *lanes, long h) {
    vh acc[HALF_ROWS][HALF_COLUMNS];
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) acc[r][n] = LOADH(lanes + ((m0 + r) * N + n0 + n) * L + h * NS_HALF);
    const float *a0 = A + m0 * lda + h * NS_HALF, *b0 = B + n0 * ldb + h * NS_HALF;
    long k = 0;
    for (; k + L <= K; k += L) {
        vh a[HALF_ROWS];
        for (long r = 0; r < R; r++) a[r] = LOADH(a0 + r * lda + k);
        for (long n = 0; n < NC; n++) {
            const vh b = LOADH(b0 + n * ldb + k);
            for (long r = 0; r < R; r++) acc[r][n] += a[r] * b;
        }
    }
    if (k < K) {
        vh a[HALF_ROWS], b[HALF_COLUMNS];
        for (long r = 0; r < R; r++) {
            a[r] = (vh){0};
            for (long i = 0; i < NS_HALF && k + h * NS_HALF + i < K; i++) a[r][i] = a0[r * lda + k + i];
        }
        for (long n = 0; n < NC; n++) {
            b[n] = (vh){0};
            for (long i = 0; i < NS_HALF && k + h * NS_HALF + i < K; i++) b[n][i] = b0[n * ldb + k + i];
        }
        for (long n = 0; n < NC; n++)
            for (long r = 0; r < R; r++) acc[r][n] += a[r] * b[n];
    }
    for (long r = 0; r < R; r++)
        for (long n = 0; n < NC; n++) STOREH(lanes + ((m0 + r) * N + n0 + n) * L + h * NS_HALF, acc[r][n]);
}

__attribute__((target("avx2,fma"))) static void nt_lanes_avx2(long M, long N, long K, const float *A, long lda,
                                                              const float *B, long ldb, float *lanes) {
    for (long m0 = 0; m0 < M; m0 += HALF_ROWS) {
        const long R = M - m0 < HALF_ROWS ? M - m0 : HALF_ROWS;
        for (long n0 = 0; n0 < N; n0 += HALF_COLUMNS) {
            const long NC = N - n0 < HALF_COLUMNS ? N - n0 : HALF_COLUMNS;
            for (long h = 0; h < 2; h++) {
                if (R == HALF_ROWS && NC == HALF_COLUMNS)
                    lane_half(HALF_ROWS, HALF_COLUMNS, m0, n0, N, K, A, lda, B, ldb, lanes, h);
                else
                    lane_half(R, NC, m0, n0, N, K, A, lda, B, ldb, lanes, h);
            }
        }
    }
}
#endif

void ns_gemm_nt_lanes(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *lanes) {
#if defined(__x86_64__) && defined(__clang__)
    if (ns_kernel_set() == NS_KERNELS_AVX2) {
        nt_lanes_avx2(M, N, K, A, lda, B, ldb, lanes);
        return;
    }
#endif
    nt_lanes(M, N, K, A, lda, B, ldb, lanes);
}

void ns_lanes_add(long count, const float *lanes, float *out) {
    for (long i = 0; i < count; i++) out[i] += lanes_sum((const vf *)(lanes + i * L));
}
