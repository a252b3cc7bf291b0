#include "ns_kernels.h"
#include "simd.h"

#include <string.h>

// Winograd's minimal filtering F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", CVPR 2016): an output tile of m x m pixels is A^T [(G g G^T) . (B^T d B)] A,
// with d the (m + 2) x (m + 2) input patch, g the 3 x 3 kernel and `.` the elementwise product.
// F(2, 3) interpolates at 0, 1, -1 and infinity; F(4, 3) at 0, 1, -1, 2, -2 and infinity. Every
// 2-D transform below is the 1-D one applied along rows, then along columns; the constants are
// those matrices' entries, written out (no multiplications by 0 or 1).
//
// The tile transforms work on NS_WINOGRAD_LANES channels at once, one vector lane each: a
// segment of tile rows of one image has the planes of a block of channels interleaved into a
// zero-padded buffer (lane l of pixel p at p * LANES + l), so every patch element is one full
// vector load whatever the plane size, and each frequency of a tile is one vector store into
// the [T][ld] GEMM operand. Tile t of a block is (row - row0) * tiles_x + tx.

enum { L = NS_WINOGRAD_LANES };
_Static_assert(L == NS_LANES, "a block of channels is one vector");

static inline long min_l(long a, long b) { return a < b ? a : b; }
static inline long max_l(long a, long b) { return a > b ? a : b; }

/// B^T d for F(2, 3): 4 vectors read at stride s, written at stride os.
static inline void input_1d_2(const vf *d, long s, vf *o, long os) {
    const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
    o[0] = d0 - d2;
    o[os] = d1 + d2;
    o[2 * os] = d2 - d1;
    o[3 * os] = d1 - d3;
}

/// B^T d for F(4, 3).
static inline void input_1d_4(const vf *d, long s, vf *o, long os) {
    const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    o[0] = 4 * d0 - 5 * d2 + d4;
    o[os] = d3 + d4 - 4 * (d1 + d2);
    o[2 * os] = 4 * (d1 - d2) + d4 - d3;
    o[3 * os] = 2 * (d3 - d1) + d4 - d2;
    o[4 * os] = 2 * (d1 - d3) + d4 - d2;
    o[5 * os] = 4 * d1 - 5 * d3 + d5;
}

/// A^T m: alpha vectors to m outputs.
static inline void output_1d_2(const vf *d, long s, vf *o, long os) {
    const vf m0 = d[0], m1 = d[s], m2 = d[2 * s], m3 = d[3 * s];
    o[0] = m0 + m1 + m2;
    o[os] = m1 - m2 - m3;
}

static inline void output_1d_4(const vf *d, long s, vf *o, long os) {
    const vf m0 = d[0], m1 = d[s], m2 = d[2 * s], m3 = d[3 * s], m4 = d[4 * s], m5 = d[5 * s];
    const vf p12 = m1 + m2, n12 = m1 - m2, p34 = m3 + m4, n34 = m3 - m4;
    o[0] = m0 + p12 + p34;
    o[os] = n12 + 2 * n34;
    o[2 * os] = p12 + 4 * p34;
    o[3 * os] = n12 + 8 * n34 + m5;
}

/// A y: the adjoint of output_1d, m vectors to alpha.
static inline void output_grad_1d_2(const vf *d, long s, vf *o, long os) {
    const vf y0 = d[0], y1 = d[s];
    o[0] = y0;
    o[os] = y0 + y1;
    o[2 * os] = y0 - y1;
    o[3 * os] = -y1;
}

static inline void output_grad_1d_4(const vf *d, long s, vf *o, long os) {
    const vf y0 = d[0], y1 = d[s], y2 = d[2 * s], y3 = d[3 * s];
    const vf e = y0 + y2, f = y0 + 4 * y2, p = y1 + y3, q = 2 * y1 + 8 * y3;
    o[0] = y0;
    o[os] = e + p;
    o[2 * os] = e - p;
    o[3 * os] = f + q;
    o[4 * os] = f - q;
    o[5 * os] = y3;
}

/// The three 2-D tile transforms, each as rows then columns of a row-major n x n array of vectors.
static inline void input_2d(long m, const vf *d, vf *v) {
    vf r[36];
    const long a = m + 2;
    for (long i = 0; i < a; i++) {
        if (m == 2) input_1d_2(d + i * a, 1, r + i * a, 1);
        else input_1d_4(d + i * a, 1, r + i * a, 1);
    }
    for (long u = 0; u < a; u++) {
        if (m == 2) input_1d_2(r + u, a, v + u, a);
        else input_1d_4(r + u, a, v + u, a);
    }
}

static inline void output_2d(long m, const vf *mm, vf *y) {
    vf r[6 * 4];  // r[v][jj]: frequency row v, output column jj
    const long a = m + 2;
    for (long v = 0; v < a; v++) {
        if (m == 2) output_1d_2(mm + v * a, 1, r + v * m, 1);
        else output_1d_4(mm + v * a, 1, r + v * m, 1);
    }
    for (long jj = 0; jj < m; jj++) {
        if (m == 2) output_1d_2(r + jj, m, y + jj, m);
        else output_1d_4(r + jj, m, y + jj, m);
    }
}

static inline void output_grad_2d(long m, const vf *dy, vf *dm) {
    vf r[4 * 6];  // r[ii][u]: output row ii, frequency column u
    const long a = m + 2;
    for (long ii = 0; ii < m; ii++) {
        if (m == 2) output_grad_1d_2(dy + ii * m, 1, r + ii * a, 1);
        else output_grad_1d_4(dy + ii * m, 1, r + ii * a, 1);
    }
    for (long u = 0; u < a; u++) {
        if (m == 2) output_grad_1d_2(r + u, a, dm + u, a);
        else output_grad_1d_4(r + u, a, dm + u, a);
    }
}

/// G g: 3 kernel vectors to alpha (multiplying by the reciprocals, not dividing).
static inline void kernel_1d(long m, const vf *g, long s, vf *o, long os) {
    const vf g0 = g[0], g1 = g[s], g2 = g[2 * s];
    if (m == 2) {
        o[0] = g0;
        o[os] = 0.5f * (g0 + g1 + g2);
        o[2 * os] = 0.5f * (g0 - g1 + g2);
        o[3 * os] = g2;
    } else {
        const float sixth = 1.0f / 6;
        const vf p = g0 + g2, q = (1.0f / 24) * g0 + sixth * g2, r = (1.0f / 12) * g1;
        o[0] = 0.25f * g0;
        o[os] = -sixth * (p + g1);
        o[2 * os] = -sixth * (p - g1);
        o[3 * os] = q + r;
        o[4 * os] = q - r;
        o[5 * os] = g2;
    }
}

/// G^T u: the adjoint of kernel_1d, alpha vectors to 3.
static inline void kernel_grad_1d(long m, const vf *u, long s, vf *o, long os) {
    if (m == 2) {
        const vf u0 = u[0], u1 = u[s], u2 = u[2 * s], u3 = u[3 * s];
        o[0] = u0 + 0.5f * (u1 + u2);
        o[os] = 0.5f * (u1 - u2);
        o[2 * os] = 0.5f * (u1 + u2) + u3;
    } else {
        const vf u0 = u[0], u1 = u[s], u2 = u[2 * s], u3 = u[3 * s], u4 = u[4 * s], u5 = u[5 * s];
        const float sixth = 1.0f / 6;
        const vf p12 = u1 + u2, p34 = u3 + u4;
        o[0] = 0.25f * u0 - sixth * p12 + (1.0f / 24) * p34;
        o[os] = sixth * (u2 - u1) + (1.0f / 12) * (u3 - u4);
        o[2 * os] = sixth * (p34 - p12) + u5;
    }
}

/// Calls body(img, ty0, ty1, t0) for each run of the block's tile rows that lies in one image:
/// tile rows ty0 ..< ty1 of image img, whose first tile is the block's tile t0.
#define FOR_EACH_SEGMENT(g, row0, rows, ...)                                           \
    for (long row = (row0); row < (row0) + (rows);) {                                   \
        const long img = row / (g)->tiles_y, ty0 = row % (g)->tiles_y;                  \
        const long ty1 = min_l((g)->tiles_y, ty0 + (row0) + (rows) - row);             \
        const long t0 = (row - (row0)) * (g)->tiles_x;                                   \
        __VA_ARGS__                                                                      \
        row += ty1 - ty0;                                                                \
    }

long ns_winograd_scratch(const ns_winograd_geometry *g, long rows) {
    const long span = min_l(rows, g->tiles_y);
    return (span * g->m + 2) * (g->tiles_x * g->m + 2) * L;
}

/// Interleaves lanes planes (h x w each, `plane` floats apart) of rows y0 ..< y0 + n into
/// buf[(yy * wp + xx) * L + l] = plane l at (y0 + yy, xx - px), zero outside the image and in
/// lanes >= lanes; wp columns.
static void pack(const float *src, long plane, long lanes, long h, long w, long y0, long n, long px, long wp,
                 float *restrict buf) {
    memset(buf, 0, sizeof(float) * n * wp * L);
    const long ya = max_l(0, -y0), yb = min_l(n, h - y0);
    // Row by row, so that the lanes' passes over a row's interleaved pixels stay in L1.
    for (long yy = ya; yy < yb; yy++) {
        float *d = buf + (yy * wp + px) * L;
        for (long l = 0; l < lanes; l++) {
            const float *row = src + l * plane + (y0 + yy) * w;
            for (long xx = 0; xx < w; xx++) d[xx * L + l] = row[xx];
        }
    }
}

NS_CLONES
void ns_winograd_input(const ns_winograd_geometry *g, long channels, long row0, long rows, const float *x, float *v,
                       long ld, long xs, float *scratch) {
    const long m = g->m, a = m + 2, tx_n = g->tiles_x, plane = g->H * g->W, wp = tx_n * m + 2;
    FOR_EACH_SEGMENT(g, row0, rows, {
        const long n = (ty1 - ty0) * m + 2;
        for (long c0 = 0; c0 < channels; c0 += L) {
            pack(x + (img * channels + c0) * plane, plane, min_l(L, channels - c0), g->H, g->W, ty0 * m - 1, n, 1, wp,
                 scratch);
            for (long ty = ty0; ty < ty1; ty++) {
                for (long tx = 0; tx < tx_n; tx++) {
                    const float *patch = scratch + ((ty - ty0) * m * wp + tx * m) * L;
                    vf d[36], o[36];
                    for (long i = 0; i < a; i++)
                        for (long j = 0; j < a; j++) d[i * a + j] = LOAD(patch + (i * wp + j) * L);
                    input_2d(m, d, o);
                    float *dst = v + (t0 + (ty - ty0) * tx_n + tx) * ld + c0;
                    for (long xi = 0; xi < a * a; xi++) STORE(dst + xi * xs, o[xi]);
                }
            }
        }
    })
}

NS_CLONES
void ns_winograd_output(const ns_winograd_geometry *g, long channels, long row0, long rows, const float *mm,
                        long ld, long xs, const float *bias, float lo, float hi, int accumulate, float *out,
                        float *scratch) {
    const long m = g->m, a = m + 2, tx_n = g->tiles_x, plane = g->H * g->W, wy = tx_n * m;
    FOR_EACH_SEGMENT(g, row0, rows, {
        for (long c0 = 0; c0 < channels; c0 += L) {
            const long lanes = min_l(L, channels - c0);
            for (long ty = ty0; ty < ty1; ty++) {
                for (long tx = 0; tx < tx_n; tx++) {
                    const float *src = mm + (t0 + (ty - ty0) * tx_n + tx) * ld + c0;
                    vf d[36], y[16];
                    for (long xi = 0; xi < a * a; xi++) d[xi] = LOAD(src + xi * xs);
                    output_2d(m, d, y);
                    float *dst = scratch + ((ty - ty0) * m * wy + tx * m) * L;
                    for (long ii = 0; ii < m; ii++)
                        for (long jj = 0; jj < m; jj++) STORE(dst + (ii * wy + jj) * L, y[ii * m + jj]);
                }
            }
            // De-interleave the segment's rows that are inside the plane, row by row (a row's
            // interleaved pixels stay in L1 for the lanes' passes).
            const long y0 = ty0 * m, y1 = min_l(g->H, ty1 * m);
            for (long yy = y0; yy < y1; yy++) {
                const float *s = scratch + ((yy - y0) * wy) * L;
                for (long l = 0; l < lanes; l++) {
                    const float b = bias ? bias[c0 + l] : 0;
                    float *restrict d = out + ((img * channels + c0 + l) * plane) + yy * g->W;
                    if (accumulate) {
                        for (long xx = 0; xx < g->W; xx++) d[xx] += s[xx * L + l] + b;
                    } else {
                        // Clamped by comparisons, so a NaN stays NaN.
                        for (long xx = 0; xx < g->W; xx++) {
                            float v = s[xx * L + l] + b;
                            v = v < lo ? lo : v;
                            d[xx] = v > hi ? hi : v;
                        }
                    }
                }
            }
        }
    })
}

NS_CLONES
void ns_winograd_output_grad(const ns_winograd_geometry *g, long channels, long row0, long rows, const float *dy,
                             float *dm, long ld, long xs, float *scratch) {
    const long m = g->m, a = m + 2, tx_n = g->tiles_x, plane = g->H * g->W, wy = tx_n * m;
    FOR_EACH_SEGMENT(g, row0, rows, {
        const long n = (ty1 - ty0) * m;
        for (long c0 = 0; c0 < channels; c0 += L) {
            pack(dy + (img * channels + c0) * plane, plane, min_l(L, channels - c0), g->H, g->W, ty0 * m, n, 0, wy,
                 scratch);
            for (long ty = ty0; ty < ty1; ty++) {
                for (long tx = 0; tx < tx_n; tx++) {
                    const float *tile = scratch + ((ty - ty0) * m * wy + tx * m) * L;
                    vf d[16], o[36];
                    for (long ii = 0; ii < m; ii++)
                        for (long jj = 0; jj < m; jj++) d[ii * m + jj] = LOAD(tile + (ii * wy + jj) * L);
                    output_grad_2d(m, d, o);
                    float *dst = dm + (t0 + (ty - ty0) * tx_n + tx) * ld + c0;
                    for (long xi = 0; xi < a * a; xi++) STORE(dst + xi * xs, o[xi]);
                }
            }
        }
    })
}

/// u = G g G^T laid out u[xi][k][c] (`byInput` 0, rows k) or u[xi][c][k] (1, rows c), rows `ld`
/// floats apart, the kernels turned by 180 degrees when `turned`.
static inline __attribute__((always_inline)) void winograd_weights(long m, long K, long C, long first, long count,
                                                                   int byInput, int turned, const float *w, float *u,
                                                                   long xs, long ld) {
    // Vectorized along u's rows, L kernels at a time, so every frequency is written as whole
    // vectors: over input channels c for u[xi][k][c], over output channels k for u[xi][c][k].
    const long a = m + 2, inner = byInput ? K : C;
    for (long o = first; o < first + count; o++) {
        for (long i0 = 0; i0 < inner; i0 += L) {
            const long lanes = min_l(L, inner - i0);
            float taps[9 * L];  // taps[q][l]: tap q of the lane's kernel, turned if asked
            for (long l = 0; l < L; l++) {
                const long k = byInput ? i0 + l : o, c = byInput ? o : i0 + l;
                const float *src = w + (k * C + c) * 9;
                for (long q = 0; q < 9; q++) taps[q * L + l] = l < lanes ? src[turned ? 8 - q : q] : 0;
            }
            vf g[9], rows[6 * 3], out[36];
            for (long q = 0; q < 9; q++) g[q] = LOAD(taps + q * L);
            // rows[v][j] = (G g[., j])[v], then U[v][u] = (G rows[v][.])[u].
            for (long j = 0; j < 3; j++) kernel_1d(m, g + j, 3, rows + j, 3);
            for (long v = 0; v < a; v++) kernel_1d(m, rows + v * 3, 1, out + v * a, 1);
            float *dst = u + o * ld + i0;
            for (long xi = 0; xi < a * a; xi++) {
                if (lanes == L) {
                    STORE(dst + xi * xs, out[xi]);
                } else {
                    float lane[L];
                    STORE(lane, out[xi]);
                    for (long l = 0; l < lanes; l++) dst[xi * xs + l] = lane[l];
                }
            }
        }
    }
}

NS_CLONES
void ns_winograd_weights(long m, long K, long C, long first, long count, int rotated, const float *w, float *u,
                         long xs) {
    winograd_weights(m, K, C, first, count, rotated != 0, rotated != 0, w, u, xs, rotated ? K : C);
}

NS_CLONES
void ns_winograd_weights_by_input(long m, long K, long C, long first, long count, const float *w, float *u, long xs,
                                  long ld) {
    winograd_weights(m, K, C, first, count, 1, 0, w, u, xs, ld);
}

NS_CLONES
void ns_winograd_weight_grad(long m, long K, long C, long k0, long count, const float *du, long xs, float *dw) {
    const long a = m + 2;
    for (long k = k0; k < k0 + count; k++) {
        for (long c0 = 0; c0 < C; c0 += L) {
            const long lanes = min_l(L, C - c0);
            const float *src = du + k * C + c0;
            vf d[36], rows[3 * 6], dg[9];
            for (long xi = 0; xi < a * a; xi++) {
                if (lanes == L) {
                    d[xi] = LOAD(src + xi * xs);
                } else {
                    float lane[L];
                    for (long l = 0; l < L; l++) lane[l] = l < lanes ? src[xi * xs + l] : 0;
                    d[xi] = LOAD(lane);
                }
            }
            // rows[i][u] = (G^T du[., u])[i], then dg[i][j] = (G^T rows[i][.])[j].
            for (long uu = 0; uu < a; uu++) kernel_grad_1d(m, d + uu, a, rows + uu, a);
            for (long i = 0; i < 3; i++) kernel_grad_1d(m, rows + i * a, 1, dg + i * 3, 1);
            float taps[9 * L];
            for (long q = 0; q < 9; q++) STORE(taps + q * L, dg[q]);
            for (long l = 0; l < lanes; l++) {
                float *dst = dw + (k * C + c0 + l) * 9;
                for (long q = 0; q < 9; q++) dst[q] += taps[q * L + l];
            }
        }
    }
}
