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

/// Rows m0 ..< m0 + R of C against columns n0 ..< n0 + NC, R and NC at most 4.
static inline __attribute__((always_inline)) void block(long R, long NC, long m0, long n0, long K, const float *A,
                                                        long lda, const float *BT, long ldb, float *C, long ldc) {
    vf acc[4][4];
    for (long r = 0; r < 4; r++)
        for (long n = 0; n < 4; n++) acc[r][n] = (vf){0};
    long k = 0;
    for (; k + L <= K; k += L) {
        vf a[4];
        for (long r = 0; r < R; r++) a[r] = LOAD(A + (m0 + r) * lda + k);
        for (long n = 0; n < NC; n++) {
            const vf b = LOAD(BT + (n0 + n) * ldb + k);
            for (long r = 0; r < R; r++) acc[r][n] += a[r] * b;
        }
    }
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
    for (long m0 = 0; m0 < M; m0 += 4) {
        const long R = M - m0 < 4 ? M - m0 : 4;
        for (long n0 = 0; n0 < N; n0 += 4) {
            const long NC = N - n0 < 4 ? N - n0 : 4;
            // Constant trip counts for the common full blocks, so the accumulators stay in registers.
            if (R == 4 && NC == 4) block(4, 4, m0, n0, K, A, lda, BT, ldb, C, ldc);
            else if (R == 4 && NC == 1) block(4, 1, m0, n0, K, A, lda, BT, ldb, C, ldc);
            else if (R == 4 && NC == 2) block(4, 2, m0, n0, K, A, lda, BT, ldb, C, ldc);
            else block(R, NC, m0, n0, K, A, lda, BT, ldb, C, ldc);
        }
    }
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
    for (; k + L <= K; k += L) {
        vf a[4];
        for (long r = 0; r < R; r++) a[r] = LOAD(A + (m0 + r) * lda + k);
        for (long n = 0; n < NC; n++) {
            const vf b = LOAD(B + (n0 + n) * ldb + k);
            for (long r = 0; r < R; r++) acc[r][n] += a[r] * b;
        }
    }
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
void ns_gemm_nt_lanes(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *lanes) {
    for (long m0 = 0; m0 < M; m0 += 4) {
        const long R = M - m0 < 4 ? M - m0 : 4;
        for (long n0 = 0; n0 < N; n0 += 6) {
            const long NC = N - n0 < 6 ? N - n0 : 6;
            // Constant trip counts for the common blocks, so the accumulators stay in registers.
            if (R == 4 && NC == 6) lane_block(4, 6, m0, n0, N, K, A, lda, B, ldb, lanes);
            else if (R == 4 && NC == 4) lane_block(4, 4, m0, n0, N, K, A, lda, B, ldb, lanes);
            else if (R == 4 && NC == 3) lane_block(4, 3, m0, n0, N, K, A, lda, B, ldb, lanes);
            else lane_block(R, NC, m0, n0, N, K, A, lda, B, ldb, lanes);
        }
    }
}

void ns_lanes_add(long count, const float *lanes, float *out) {
    for (long i = 0; i < count; i++) out[i] += lanes_sum((const vf *)(lanes + i * L));
}
