#include "ns_kernels.h"
#include "simd.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_TAPS = 64 };

static inline long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline long ceil_div(long a, long b) { return -floor_div(-a, b); }
static inline long max_l(long a, long b) { return a > b ? a : b; }
static inline long min_l(long a, long b) { return a < b ? a : b; }
/// v clamped to [lo, hi] by comparisons, so that a NaN stays NaN.
static inline float clamp(float v, float lo, float hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/// Per kernel tap: the output rows [r0, r1) and columns [c0, c1) whose reads fall inside the
/// image, and the input offset `base` that output (0, 0) would read.
typedef struct { long r0, r1, c0, c1, base; } tap_range;

static void tap_ranges(const ns_depthwise_geometry *g, tap_range *t) {
    for (long i = 0; i < g->KH; i++) {
        long r0 = max_l(0, ceil_div(g->PH - i, g->SH));
        long r1 = max_l(r0, min_l(g->OH, floor_div(g->H - 1 + g->PH - i, g->SH) + 1));
        for (long j = 0; j < g->KW; j++) {
            long c0 = max_l(0, ceil_div(g->PW - j, g->SW));
            long c1 = max_l(c0, min_l(g->OW, floor_div(g->W - 1 + g->PW - j, g->SW) + 1));
            t[i * g->KW + j] = (tap_range){r0, r1, c0, c1, (i - g->PH) * g->W + (j - g->PW)};
        }
    }
}

NS_CLONES
void ns_depthwise_forward(const ns_depthwise_geometry *g, long first, long count, const float *in,
                          const float *w, const float *bias, float lo, float hi, float *out) {
    tap_range t[MAX_TAPS];
    tap_ranges(g, t);
    const long taps = g->KH * g->KW, OW = g->OW, SW = g->SW, SHW = g->SH * g->W;
    const long plane = g->OH * OW, in_plane = g->H * g->W, mult = g->OC / g->IC;
    for (long q = first; q < first + count; q++) {
        const long o = q % g->OC;
        const float *x = in + ((q / g->OC) * g->IC + o / mult) * in_plane, *wo = w + o * taps;
        float *restrict y = out + q * plane;
        const float b = bias ? bias[o] : 0;
        for (long p = 0; p < plane; p++) y[p] = b;
        for (long k = 0; k < taps; k++) {
            const float a = wo[k];
            const long c0 = t[k].c0, c1 = t[k].c1;
            for (long oh = t[k].r0; oh < t[k].r1; oh++) {
                const float *restrict s = x + oh * SHW + t[k].base;
                float *restrict d = y + oh * OW;
                if (SW == 1) {
                    for (long ow = c0; ow < c1; ow++) d[ow] += a * s[ow];
                } else {
                    for (long ow = c0; ow < c1; ow++) d[ow] += a * s[ow * SW];
                }
            }
        }
        for (long p = 0; p < plane; p++) y[p] = clamp(y[p], lo, hi);
    }
}

NS_CLONES
void ns_depthwise_backward_input(const ns_depthwise_geometry *g, long first, long count, const float *dout,
                                 const float *w, float *dx) {
    tap_range t[MAX_TAPS];
    tap_ranges(g, t);
    const long taps = g->KH * g->KW, OW = g->OW, SW = g->SW, SHW = g->SH * g->W;
    const long plane = g->OH * OW, in_plane = g->H * g->W, mult = g->OC / g->IC;
    for (long q = first; q < first + count; q++) {
        const long c = q % g->IC, img = q / g->IC;
        float *restrict x = dx + q * in_plane;
        for (long o = c * mult; o < (c + 1) * mult; o++) {
            const float *dy = dout + (img * g->OC + o) * plane, *wo = w + o * taps;
            for (long k = 0; k < taps; k++) {
                const float a = wo[k];
                const long c0 = t[k].c0, c1 = t[k].c1;
                for (long oh = t[k].r0; oh < t[k].r1; oh++) {
                    float *restrict d = x + oh * SHW + t[k].base;
                    const float *restrict s = dy + oh * OW;
                    if (SW == 1) {
                        for (long ow = c0; ow < c1; ow++) d[ow] += a * s[ow];
                    } else {
                        for (long ow = c0; ow < c1; ow++) d[ow * SW] += a * s[ow];
                    }
                }
            }
        }
    }
}

NS_CLONES
void ns_depthwise_backward_weight(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                  const float *dout, float *scratch, float *dw) {
    tap_range t[MAX_TAPS];
    tap_ranges(g, t);
    const long taps = g->KH * g->KW, OW = g->OW, SW = g->SW, SHW = g->SH * g->W;
    const long plane = g->OH * OW, in_plane = g->H * g->W, mult = g->OC / g->IC;
    for (long o = first; o < first + count; o++) {
        for (long q = 0; q < taps * OW; q++) scratch[q] = 0;
        for (long img = 0; img < n; img++) {
            const float *x = in + (img * g->IC + o / mult) * in_plane, *dy = dout + (img * g->OC + o) * plane;
            for (long k = 0; k < taps; k++) {
                float *restrict acc = scratch + k * OW;
                const long c0 = t[k].c0, c1 = t[k].c1;
                for (long oh = t[k].r0; oh < t[k].r1; oh++) {
                    const float *restrict s = x + oh * SHW + t[k].base;
                    const float *restrict d = dy + oh * OW;
                    if (SW == 1) {
                        for (long ow = c0; ow < c1; ow++) acc[ow] += d[ow] * s[ow];
                    } else {
                        for (long ow = c0; ow < c1; ow++) acc[ow] += d[ow] * s[ow * SW];
                    }
                }
            }
        }
        for (long k = 0; k < taps; k++) {
            float s = 0;
            for (long ow = 0; ow < OW; ow++) s += scratch[k * OW + ow];
            dw[o * taps + k] += s;
        }
    }
}

// MARK: channel-blocked kernels (OC == IC)

enum { L = NS_DEPTHWISE_LANES };
_Static_assert(L == NS_LANES, "a block of channels is one vector");

/// One stage of a 16 x 16 transpose: rows a and b (b's index = a's + m) swap the elements
/// (a, c) and (b, c ^ m) for every column c with bit m set; A_m and B_m are the two shuffles.
#define SWAP(a, b, A, B)                                                                                              \
    do {                                                                                                              \
        const vf t = __builtin_shufflevector(a, b, A);                                                                \
        b = __builtin_shufflevector(a, b, B);                                                                         \
        a = t;                                                                                                        \
    } while (0)
#define A_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define B_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define A_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define B_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define A_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define B_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define A_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define B_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31

/// r[i][j] becomes r[j][i].
static inline __attribute__((always_inline)) void transpose16(vf r[16]) {
    for (int i = 0; i < 16; i += 2) SWAP(r[i], r[i + 1], A_1, B_1);
    for (int i = 0; i < 16; i += 4) {
        SWAP(r[i], r[i + 2], A_2, B_2);
        SWAP(r[i + 1], r[i + 3], A_2, B_2);
    }
    for (int i = 0; i < 16; i += 8)
        for (int k = 0; k < 4; k++) SWAP(r[i + k], r[i + k + 4], A_4, B_4);
    for (int k = 0; k < 8; k++) SWAP(r[k], r[k + 8], A_8, B_8);
}

static inline void fill(float *d, long n, float v) {
    for (long i = 0; i < n; i++) d[i] = v;
}

/// Interleaves `lanes` consecutive planes (h x w each) into buf[((y + py) * wp + x + px) * L + l],
/// `pad` elsewhere (wp = w + 2 px, the buffer (h + 2 py) x wp x L): 16 pixels at a time through a
/// transpose in registers, the last few one by one.
/// The padding of `pack_padding`'s buffer: what it writes outside the planes.
static inline __attribute__((always_inline)) void pad_borders(long h, long w, long py, long px, float pad,
                                                              float *restrict buf) {
    const long wp = w + 2 * px, hp = h + 2 * py;
    fill(buf, py * wp * L, pad);
    fill(buf + (py + h) * wp * L, (hp - py - h) * wp * L, pad);
    for (long y = 0; y < h; y++) {
        float *row = buf + (y + py) * wp * L;
        fill(row, px * L, pad);
        fill(row + (px + w) * L, px * L, pad);
    }
}

/// `pack_padding` inside the borders only (a buffer whose borders `pad_borders` wrote before).
static inline __attribute__((always_inline)) void pack_inside(const float *src, long lanes, long h, long w, long py,
                                                              long px, float *restrict buf) {
    const long wp = w + 2 * px, plane = h * w;
    long p = 0, y = 0, x = 0;  // pixel p = y w + x
    for (; p + L <= plane; p += L) {
        vf r[16];
        for (long l = 0; l < L; l++) r[l] = l < lanes ? LOAD(src + l * plane + p) : (vf){0};
        transpose16(r);
        for (long q = 0; q < L; q++) {
            STORE(buf + ((y + py) * wp + x + px) * L, r[q]);
            if (++x == w) x = 0, y++;
        }
    }
    for (; p < plane; p++) {
        float *d = buf + ((y + py) * wp + x + px) * L;
        for (long l = 0; l < L; l++) d[l] = l < lanes ? src[l * plane + p] : 0;
        if (++x == w) x = 0, y++;
    }
}

static inline __attribute__((always_inline)) void pack_padding(const float *src, long lanes, long h, long w, long py,
                                                               long px, float pad, float *restrict buf) {
    pad_borders(h, w, py, px, pad, buf);
    pack_inside(src, lanes, h, w, py, px, buf);
}

/// `pack_padding` with zeros.
static inline __attribute__((always_inline)) void pack(const float *src, long lanes, long h, long w, long py, long px,
                                                       float *restrict buf) {
    pack_padding(src, lanes, h, w, py, px, 0, buf);
}

/// The adjoint layout move of `pack` without padding: plane l of `dst` (h x w each, `lanes` of
/// them) from buf[p * L + l], clamped to [lo, hi] (a NaN stays NaN).
static inline __attribute__((always_inline)) void unpack(const float *restrict buf, long lanes, long h, long w, float lo,
                                                         float hi, float *dst) {
    const long plane = h * w;
    const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;
    long p = 0;
    for (; p + L <= plane; p += L) {
        vf r[16];
        for (long q = 0; q < L; q++) r[q] = LOAD(buf + (p + q) * L);
        transpose16(r);
        for (long l = 0; l < lanes; l++) {
            vf v = SELECT(r[l] < vlo, vlo, r[l]);
            STORE(dst + l * plane + p, SELECT(v > vhi, vhi, v));
        }
    }
    for (; p < plane; p++)
        for (long l = 0; l < lanes; l++) dst[l * plane + p] = clamp(buf[p * L + l], lo, hi);
}

/// Weights of channels c0 ..< c0 + lanes as wt[tap * L + l], zero for missing lanes.
static void pack_weights(const float *w, long c0, long lanes, long taps, float *restrict wt) {
    for (long t = 0; t < taps; t++)
        for (long l = 0; l < L; l++) wt[t * L + l] = l < lanes ? w[(c0 + l) * taps + t] : 0;
}

NS_CLONES
void ns_depthwise_forward_blocked(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                  const float *w, const float *bias, float lo, float hi, float *out) {
    const long taps = g->KH * g->KW, OW = g->OW, plane = g->OH * OW, in_plane = g->H * g->W;
    const long hp = g->H + 2 * g->PH, wp = g->W + 2 * g->PW;
    float *xb = malloc(sizeof(float) * hp * wp * L), *yb = malloc(sizeof(float) * plane * L);
    float wt[MAX_TAPS * L], b[L];
    pad_borders(g->H, g->W, g->PH, g->PW, 0, xb);
    // Items block by block (the images of a block of channels one after another), so a block's
    // weights and bias are gathered once per run of its images.
    long packed = -1;
    for (long item = first; item < first + count; item++) {
        const long img = item % n, block = item / n, c0 = block * L;
        const long lanes = min_l(L, g->OC - c0);
        pack_inside(in + (img * g->IC + c0) * in_plane, lanes, g->H, g->W, g->PH, g->PW, xb);
        if (block != packed) {
            pack_weights(w, c0, lanes, taps, wt);
            for (long l = 0; l < L; l++) b[l] = bias && l < lanes ? bias[c0 + l] : 0;
            packed = block;
        }
        const vf bv = LOAD(b);
        for (long oh = 0; oh < g->OH; oh++) {
            long ow = 0;
            // Four output pixels at a time: four independent chains of multiply-adds, where one
            // pixel alone would wait on each add's latency.
            for (; ow + 4 <= OW; ow += 4) {
                vf a0 = bv, a1 = bv, a2 = bv, a3 = bv;
                const long step = g->SW * L;
                for (long i = 0; i < g->KH; i++) {
                    const float *row = xb + ((oh * g->SH + i) * wp + ow * g->SW) * L;
                    for (long j = 0; j < g->KW; j++) {
                        const vf wv = LOAD(wt + (i * g->KW + j) * L);
                        const float *xv = row + j * L;
                        a0 += wv * LOAD(xv);
                        a1 += wv * LOAD(xv + step);
                        a2 += wv * LOAD(xv + 2 * step);
                        a3 += wv * LOAD(xv + 3 * step);
                    }
                }
                float *yv = yb + (oh * OW + ow) * L;
                STORE(yv, a0);
                STORE(yv + L, a1);
                STORE(yv + 2 * L, a2);
                STORE(yv + 3 * L, a3);
            }
            for (; ow < OW; ow++) {
                vf acc = bv;
                for (long i = 0; i < g->KH; i++) {
                    const float *row = xb + ((oh * g->SH + i) * wp + ow * g->SW) * L;
                    for (long j = 0; j < g->KW; j++) acc += LOAD(wt + (i * g->KW + j) * L) * LOAD(row + j * L);
                }
                STORE(yb + (oh * OW + ow) * L, acc);
            }
        }
        unpack(yb, lanes, g->OH, OW, lo, hi, out + (img * g->OC + c0) * plane);
    }
    free(xb);
    free(yb);
}

NS_CLONES
void ns_maxpool_blocked(const ns_depthwise_geometry *g, long first, long count, const float *in, float *out) {
    const long OW = g->OW, plane = g->OH * OW, in_plane = g->H * g->W;
    const long wp = g->W + 2 * g->PW, hp = g->H + 2 * g->PH, blocks = (g->OC + L - 1) / L;
    float *xb = malloc(sizeof(float) * hp * wp * L), *yb = malloc(sizeof(float) * plane * L);
    // Padding at the lowest finite value: never above an element, and finite for the probe.
    pad_borders(g->H, g->W, g->PH, g->PW, -__FLT_MAX__, xb);
    for (long item = first; item < first + count; item++) {
        const long img = item / blocks, c0 = (item % blocks) * L, lanes = min_l(L, g->OC - c0);
        pack_inside(in + (img * g->IC + c0) * in_plane, lanes, g->H, g->W, g->PH, g->PW, xb);
        for (long oh = 0; oh < g->OH; oh++) {
            for (long ow = 0; ow < OW; ow++) {
                vf best = (vf){0} - __FLT_MAX__, probe = (vf){0};
                for (long i = 0; i < g->KH; i++) {
                    const float *row = xb + ((oh * g->SH + i) * wp + ow * g->SW) * L;
                    for (long j = 0; j < g->KW; j++) {
                        const vf v = LOAD(row + j * L);
                        best = SELECT(v > best, v, best);
                        probe += 0 * v;
                    }
                }
                STORE(yb + (oh * OW + ow) * L, best + probe);
            }
        }
        unpack(yb, lanes, g->OH, OW, -__builtin_inff(), __builtin_inff(), out + (img * g->OC + c0) * plane);
    }
    free(xb);
    free(yb);
}

NS_CLONES
void ns_depthwise_backward_blocked(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                   const float *dout, const float *w, float *dx, float *dw) {
    const long taps = g->KH * g->KW, OW = g->OW, plane = g->OH * OW, in_plane = g->H * g->W;
    const long hp = g->H + 2 * g->PH, wp = g->W + 2 * g->PW;
    float *xb = dw ? malloc(sizeof(float) * hp * wp * L) : NULL;
    float *dxb = dx ? malloc(sizeof(float) * hp * wp * L) : NULL;
    float *dyb = malloc(sizeof(float) * plane * L);
    float wt[MAX_TAPS * L], acc[MAX_TAPS * L];
    for (long blk = first; blk < first + count; blk++) {
        const long c0 = blk * L, lanes = min_l(L, g->OC - c0);
        pack_weights(w, c0, lanes, taps, wt);
        for (long q = 0; q < taps * L; q++) acc[q] = 0;
        for (long img = 0; img < n; img++) {
            pack(dout + (img * g->OC + c0) * plane, lanes, g->OH, OW, 0, 0, dyb);
            if (xb) pack(in + (img * g->IC + c0) * in_plane, lanes, g->H, g->W, g->PH, g->PW, xb);
            if (dxb) for (long q = 0; q < hp * wp * L; q++) dxb[q] = 0;
            for (long oh = 0; oh < g->OH; oh++) {
                for (long ow = 0; ow < OW; ow++) {
                    const float *dv = dyb + (oh * OW + ow) * L;
                    const long at = ((oh * g->SH) * wp + ow * g->SW) * L;
                    for (long i = 0; i < g->KH; i++) {
                        for (long j = 0; j < g->KW; j++) {
                            const long t = i * g->KW + j, off = at + (i * wp + j) * L;
                            if (dxb) {
                                float *restrict xv = dxb + off;
                                const float *wv = wt + t * L;
                                for (long l = 0; l < L; l++) xv[l] += wv[l] * dv[l];
                            }
                            if (xb) {
                                const float *xv = xb + off;
                                float *restrict av = acc + t * L;
                                for (long l = 0; l < L; l++) av[l] += dv[l] * xv[l];
                            }
                        }
                    }
                }
            }
            if (dxb) {
                float *d = dx + (img * g->IC + c0) * in_plane;
                for (long y = 0; y < g->H; y++) {
                    const float *row = dxb + ((y + g->PH) * wp + g->PW) * L;
                    for (long l = 0; l < lanes; l++)
                        for (long x = 0; x < g->W; x++) d[l * in_plane + y * g->W + x] += row[x * L + l];
                }
            }
        }
        if (dw)
            for (long l = 0; l < lanes; l++)
                for (long t = 0; t < taps; t++) dw[(c0 + l) * taps + t] += acc[t * L + l];
    }
    free(xb);
    free(dxb);
    free(dyb);
}

// MARK: plane kernel (forward, OC == IC, equal strides of 1 or 2)

long ns_depthwise_plane_scratch(const ns_depthwise_geometry *g) {
    const long s = g->SH, hph = (g->H + 2 * g->PH + s - 1) / s, wph = (g->W + 2 * g->PW + s - 1) / s;
    // s * s phase planes, the output on the phase grid, and a vector of slack after each.
    return s * s * (hph * wph + L) + g->OH * wph + L;
}

NS_CLONES
void ns_depthwise_forward_planes(const ns_depthwise_geometry *g, long first, long count, const float *in,
                                 const float *w, const float *bias, float lo, float hi, float *out, float *scratch) {
    const long s = g->SH, H = g->H, W = g->W, OH = g->OH, OW = g->OW, KH = g->KH, KW = g->KW, taps = KH * KW;
    const long hph = (H + 2 * g->PH + s - 1) / s, wph = (W + 2 * g->PW + s - 1) / s, phase = hph * wph + L;
    float *phases = scratch, *acc = scratch + s * s * phase;
    // Output (y, x) sums w[i][j] * phase(i % s, j % s)[(y + i / s) * wph + x + j / s]: on the phase
    // grid (rows wph long) every tap is one shifted run, the columns past OW wasted.
    long offset[MAX_TAPS];
    for (long i = 0; i < KH; i++)
        for (long j = 0; j < KW; j++) offset[i * KW + j] = ((i % s) * s + j % s) * phase + (i / s) * wph + j / s;
    for (long i = 0; i < s * s * phase; i++) phases[i] = 0;
    for (long q = first; q < first + count; q++) {
        const long c = q % g->OC;
        const float *x = in + q * H * W, *wc = w + c * taps;
        // Phase plane (a, b) holds padded pixel (s*y + a, s*x + b) at y * wph + x: input row
        // y - PH, column x - PW. Only the image's pixels are written: the padding stays zero.
        for (long y = 0; y < H; y++) {
            const long py = y + g->PH;
            const float *row = x + y * W;
            if (s == 2) {
                // Padded column x + PW goes to phase (x + PW) % 2 at (x + PW) / 2: the row's even
                // columns all go to one phase and its odd columns to the other, each side by side.
                float *d0 = phases + (py % 2) * 2 * phase + (py / 2) * wph, *d1 = d0 + phase;
                const long odd = g->PW & 1;
                ns_deinterleave(row, W / 2, (odd ? d1 : d0) + g->PW / 2, (odd ? d0 : d1) + (g->PW + 1) / 2);
                if (W & 1) (((W - 1 + g->PW) & 1) ? d1 : d0)[(W - 1 + g->PW) / 2] = row[W - 1];
                continue;
            }
            for (long b = 0; b < s; b++) {
                float *dst = phases + ((py % s) * s + b) * phase + (py / s) * wph;
                // Phase columns x' with input column s*x' + b - PW inside [0, W).
                const long x0 = (g->PW - b + s - 1) / s, x1 = (W - 1 + g->PW - b) / s + 1;
                const float *src = row + s * x0 + b - g->PW;
                if (s == 1) {
                    memcpy(dst + x0, src, sizeof(float) * (x1 - x0));
                } else {
                    for (long xx = 0; xx < x1 - x0; xx++) dst[x0 + xx] = src[s * xx];
                }
            }
        }
        const long n = OH * wph;
        const float b0 = bias ? bias[c] : 0;
        long p = 0;
        // Four vectors at a time: four independent chains of multiply-adds.
        for (; p + 4 * L <= n; p += 4 * L) {
            vf s0 = (vf){0} + b0, s1 = s0, s2 = s0, s3 = s0;
            for (long t = 0; t < taps; t++) {
                const float *x = phases + offset[t] + p, wt = wc[t];
                s0 += wt * LOAD(x);
                s1 += wt * LOAD(x + L);
                s2 += wt * LOAD(x + 2 * L);
                s3 += wt * LOAD(x + 3 * L);
            }
            STORE(acc + p, s0);
            STORE(acc + p + L, s1);
            STORE(acc + p + 2 * L, s2);
            STORE(acc + p + 3 * L, s3);
        }
        for (; p < n; p += L) {
            vf sum = (vf){0} + b0;
            for (long t = 0; t < taps; t++) sum += wc[t] * LOAD(phases + offset[t] + p);
            STORE(acc + p, sum);
        }
        float *y = out + q * OH * OW;
        for (long r = 0; r < OH; r++)
            for (long xx = 0; xx < OW; xx++) y[r * OW + xx] = clamp(acc[r * wph + xx], lo, hi);
    }
}

// MARK: 2x2/2 max pooling backward

/// One window: the gradient to the first element (row-major) equal to the maximum m, or to the
/// first when none is (a NaN window); the others get 0.
static inline void window2x2(float a, float b, float c, float d, float m, float v, float *da, float *db, float *dc,
                             float *dd) {
    const int ea = a == m, eb = !ea && b == m, ec = !ea && !eb && c == m, ed = !ea && !eb && !ec && d == m;
    *da = ea || !(eb || ec || ed) ? v : 0;
    *db = eb ? v : 0;
    *dc = ec ? v : 0;
    *dd = ed ? v : 0;
}

/// 16 windows: their top rows' pixels at pt0 (16) then pt1 (16) and bottom rows' at pu0, pu1
/// (each pair of consecutive pixels one window), maxima at pm, upstream gradients at pv; the
/// gradients written in the same layout to dt0, dt1, du0, du1. (Pointers: a 64-byte vector
/// passed by value would change the calling convention between the clones.)
/// The gradients of 16 windows (their pixels in `pool16`'s layout t0, t1, u0, u1, maxima m,
/// upstream gradients v) into dt0, dt1, du0, du1, in the same layout.
#define GRADIENT_PAIRS(t0, t1, u0, u1, m, v, dt0, dt1, du0, du1)                                                      \
    const vf dt0##_a = EVENS(t0, t1), dt0##_b = ODDS(t0, t1), dt0##_c = EVENS(u0, u1), dt0##_d = ODDS(u0, u1);         \
    const vi dt0##_ea = dt0##_a == (m), dt0##_eb = ~dt0##_ea & (dt0##_b == (m)),                                       \
             dt0##_ec = ~dt0##_ea & ~dt0##_eb & (dt0##_c == (m)),                                                      \
             dt0##_ed = ~dt0##_ea & ~dt0##_eb & ~dt0##_ec & (dt0##_d == (m));                                          \
    const vf dt0##_ga = SELECT(dt0##_ea | ~(dt0##_eb | dt0##_ec | dt0##_ed), v, (vf){0}),                              \
             dt0##_gb = SELECT(dt0##_eb, v, (vf){0}), dt0##_gc = SELECT(dt0##_ec, v, (vf){0}),                         \
             dt0##_gd = SELECT(dt0##_ed, v, (vf){0});                                                                  \
    const vf dt0 = ZIP_LO(dt0##_ga, dt0##_gb), dt1 = ZIP_HI(dt0##_ga, dt0##_gb), du0 = ZIP_LO(dt0##_gc, dt0##_gd),     \
             du1 = ZIP_HI(dt0##_gc, dt0##_gd)

static inline __attribute__((always_inline)) void gradient16(const float *pt0, const float *pt1, const float *pu0,
                                                             const float *pu1, const float *pm, const float *pv,
                                                             float *dt0, float *dt1, float *du0, float *du1) {
    const vf t0 = LOAD(pt0), t1 = LOAD(pt1), u0 = LOAD(pu0), u1 = LOAD(pu1), m = LOAD(pm), v = LOAD(pv);
    GRADIENT_PAIRS(t0, t1, u0, u1, m, v, gt0, gt1, gu0, gu1);
    STORE(dt0, gt0);
    STORE(dt1, gt1);
    STORE(du0, gu0);
    STORE(du1, gu1);
}

// The inverses of `pool16_rowpairs`' gathers (below): the top and bottom rows' pixels t, u of 16
// windows back into the first (A) or second (B) of the two row-pair vectors they came from.
#define ROWPAIRS4_A(t, u) __builtin_shufflevector(t, u, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
#define ROWPAIRS4_B(t, u) __builtin_shufflevector(t, u, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)
#define ROWPAIRS2_A(t, u) __builtin_shufflevector(t, u, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23)
#define ROWPAIRS2_B(t, u) __builtin_shufflevector(t, u, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31)
#define ROWPAIRS1_A(t, u) __builtin_shufflevector(t, u, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23)
#define ROWPAIRS1_B(t, u) __builtin_shufflevector(t, u, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31)
#define TOPS4(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
#define BOTTOMS4(a, b) __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)
#define TOPS2(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
#define BOTTOMS2(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31)
#define TOPS1(a, b) __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29)
#define BOTTOMS1(a, b) __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31)

/// The gradients of the 16 windows of `pool16_rowpairs` (OW = W / 2 a constant 1, 2 or 4 in
/// W, the macros' suffix) from the 64 inputs at x, maxima at y and upstream gradients at dy to
/// the 64 floats at dx.
#define GRADIENT_ROWPAIRS(W, x, y, dy, dx)                                                                             \
    do {                                                                                                               \
        const vf v0 = LOAD(x), v1 = LOAD((x) + 16), v2 = LOAD((x) + 32), v3 = LOAD((x) + 48);                          \
        const vf t0 = TOPS##W(v0, v1), t1 = TOPS##W(v2, v3), u0 = BOTTOMS##W(v0, v1), u1 = BOTTOMS##W(v2, v3);         \
        const vf m = LOAD(y), v = LOAD(dy);                                                                            \
        GRADIENT_PAIRS(t0, t1, u0, u1, m, v, gt0, gt1, gu0, gu1);                                                      \
        STORE(dx, ROWPAIRS##W##_A(gt0, gu0));                                                                          \
        STORE((dx) + 16, ROWPAIRS##W##_B(gt0, gu0));                                                                   \
        STORE((dx) + 32, ROWPAIRS##W##_A(gt1, gu1));                                                                   \
        STORE((dx) + 48, ROWPAIRS##W##_B(gt1, gu1));                                                                   \
    } while (0)

NS_CLONES
void ns_maxpool2x2_backward(long first, long count, long H, long W, const float *x, const float *y, const float *dy,
                            float *dx) {
    const long OH = H / 2, OW = W / 2;
    if (H % 2 == 0 && (W == 2 || W == 4 || W == 8)) {
        // Small planes: all the planes' windows as one stream, as in the forward pass.
        const float *xs = x + first * H * W, *ys = y + first * OH * OW, *gs = dy + first * OH * OW;
        float *ds = dx + first * H * W;
        const long n = count * OH * OW;
        long i = 0;
        if (OW == 4)
            for (; i + L <= n; i += L) GRADIENT_ROWPAIRS(4, xs + 4 * i, ys + i, gs + i, ds + 4 * i);
        else if (OW == 2)
            for (; i + L <= n; i += L) GRADIENT_ROWPAIRS(2, xs + 4 * i, ys + i, gs + i, ds + 4 * i);
        else
            for (; i + L <= n; i += L) GRADIENT_ROWPAIRS(1, xs + 4 * i, ys + i, gs + i, ds + 4 * i);
        for (; i < n; i++) {
            const long at = 4 * OW * (i / OW) + 2 * (i % OW);
            const float *r0 = xs + at, *r1 = r0 + W;
            window2x2(r0[0], r0[1], r1[0], r1[1], ys[i], gs[i], ds + at, ds + at + 1, ds + at + W, ds + at + W + 1);
        }
        return;
    }
    for (long p = first; p < first + count; p++) {
        const float *xp = x + p * H * W, *yp = y + p * OH * OW, *gp = dy + p * OH * OW;
        float *dp = dx + p * H * W;
        long oh = 0;
        if (W == L)
            // Rows of 16 (8 windows): two output rows per vector, from input rows 2 oh and 2 oh + 2
            // (the windows' top rows) and 2 oh + 1 and 2 oh + 3 (their bottom rows).
            for (; oh + 2 <= OH; oh += 2) {
                const float *r = xp + 2 * oh * W;
                float *d = dp + 2 * oh * W;
                gradient16(r, r + 2 * W, r + W, r + 3 * W, yp + oh * OW, gp + oh * OW, d, d + 2 * W, d + W, d + 3 * W);
            }
        for (; oh < OH; oh++) {
            const float *r0 = xp + 2 * oh * W, *r1 = r0 + W, *ym = yp + oh * OW, *gm = gp + oh * OW;
            float *d0 = dp + 2 * oh * W, *d1 = d0 + W;
            long ow = 0;
            for (; ow + L <= OW; ow += L)
                gradient16(r0 + 2 * ow, r0 + 2 * ow + L, r1 + 2 * ow, r1 + 2 * ow + L, ym + ow, gm + ow, d0 + 2 * ow,
                           d0 + 2 * ow + L, d1 + 2 * ow, d1 + 2 * ow + L);
            for (; ow < OW; ow++)
                window2x2(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1], ym[ow], gm[ow], d0 + 2 * ow,
                          d0 + 2 * ow + 1, d1 + 2 * ow, d1 + 2 * ow + 1);
        }
    }
}

/// 2x2/2 max pooling of 16 windows into o: their top rows' 32 inputs at t0 and t1 (16 each),
/// their bottom rows' at u0 and u1. The larger of each pair as `fmaxf` picks it (the first on a
/// tie), then 0 times the window's sum added, which turns the output NaN where an input is NaN
/// or infinite (`fmaxf` alone would drop a NaN). Pointers, not vectors, as arguments (see simd.h).
#define POOL_PAIRS(o, tt0, tt1, uu0, uu1)                                                                            \
    do {                                                                                                               \
        const vf a = EVENS(tt0, tt1), b = ODDS(tt0, tt1), c = EVENS(uu0, uu1), d = ODDS(uu0, uu1);                     \
        const vf ab = SELECT(a >= b, a, b), cd = SELECT(c >= d, c, d);                                                 \
        STORE(o, SELECT(ab >= cd, ab, cd) + 0 * (a + b + c + d));                                                      \
    } while (0)

static inline __attribute__((always_inline)) void pool16(const float *t0, const float *t1, const float *u0,
                                                         const float *u1, float *o) {
    const vf tt0 = LOAD(t0), tt1 = LOAD(t1), uu0 = LOAD(u0), uu1 = LOAD(u1);
    POOL_PAIRS(o, tt0, tt1, uu0, uu1);
}

/// 16 windows of planes 2, 4 or 8 columns wide (OW = 1, 2, 4) with an even number of rows: then
/// every output's window is the 2x2 block at 4 times its index in the planes' row pairs (4·OW
/// floats each: the top row, then the bottom one), whatever plane it belongs to, so 16 outputs
/// read the 64 inputs at x; their top rows' and bottom rows' pixels are gathered into the layout
/// `pool16` reads.
static inline __attribute__((always_inline)) void pool16_rowpairs(const float *x, long OW, float *o) {
    const vf v0 = LOAD(x), v1 = LOAD(x + 16), v2 = LOAD(x + 32), v3 = LOAD(x + 48);
    if (OW == 4) {
        const vf t0 = TOPS4(v0, v1), t1 = TOPS4(v2, v3), u0 = BOTTOMS4(v0, v1), u1 = BOTTOMS4(v2, v3);
        POOL_PAIRS(o, t0, t1, u0, u1);
    } else if (OW == 2) {
        const vf t0 = TOPS2(v0, v1), t1 = TOPS2(v2, v3), u0 = BOTTOMS2(v0, v1), u1 = BOTTOMS2(v2, v3);
        POOL_PAIRS(o, t0, t1, u0, u1);
    } else {
        const vf t0 = TOPS1(v0, v1), t1 = TOPS1(v2, v3), u0 = BOTTOMS1(v0, v1), u1 = BOTTOMS1(v2, v3);
        POOL_PAIRS(o, t0, t1, u0, u1);
    }
}

static inline float pool1(float a, float b, float c, float d) {
    const float ab = a >= b ? a : b, cd = c >= d ? c : d;
    return (ab >= cd ? ab : cd) + 0 * (a + b + c + d);
}

NS_CLONES
void ns_maxpool2x2_forward(long first, long count, long H, long W, const float *x, float *y) {
    const long OH = H / 2, OW = W / 2;
    if (H % 2 == 0 && (W == 2 || W == 4 || W == 8)) {
        // Small planes (VGG's and ResNets' last maps): the windows of all the planes as one
        // stream, 16 at a time (`pool16_rowpairs`), instead of a few scalar windows per plane.
        const float *xs = x + first * H * W;
        float *ys = y + first * OH * OW;
        const long n = count * OH * OW;
        long i = 0;
        if (OW == 4)
            for (; i + L <= n; i += L) pool16_rowpairs(xs + 4 * i, 4, ys + i);
        else if (OW == 2)
            for (; i + L <= n; i += L) pool16_rowpairs(xs + 4 * i, 2, ys + i);
        else
            for (; i + L <= n; i += L) pool16_rowpairs(xs + 4 * i, 1, ys + i);
        for (; i < n; i++) {
            const float *r0 = xs + 4 * OW * (i / OW) + 2 * (i % OW), *r1 = r0 + W;
            ys[i] = pool1(r0[0], r0[1], r1[0], r1[1]);
        }
        return;
    }
    for (long p = first; p < first + count; p++) {
        const float *xp = x + p * H * W;
        float *yp = y + p * OH * OW;
        long oh = 0;
        if (W == L)
            // Rows of 16 (8 windows): two output rows per vector (see the backward pass).
            for (; oh + 2 <= OH; oh += 2) {
                const float *r = xp + 2 * oh * W;
                pool16(r, r + 2 * W, r + W, r + 3 * W, yp + oh * OW);
            }
        for (; oh < OH; oh++) {
            const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
            float *o = yp + oh * OW;
            long ow = 0;
            for (; ow + L <= OW; ow += L)
                pool16(r0 + 2 * ow, r0 + 2 * ow + L, r1 + 2 * ow, r1 + 2 * ow + L, o + ow);
            for (; ow < OW; ow++) o[ow] = pool1(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]);
        }
    }
}

// MARK: read in place (AVX-512)

// The plane kernel without the padded copy: every tap of 16 output pixels is one masked load
// from the plane (or, at stride 2, from its four phases), the padding masked off
// (`implicit.h`). The same sums in the same order as `ns_depthwise_forward_planes`.

#if defined(__x86_64__) && defined(__clang__)
#include "implicit.h"
#endif

int ns_depthwise_implicit_available(const ns_depthwise_geometry *g) {
#if defined(__x86_64__) && defined(__clang__)
    const long s = g->SH;
    if (!__builtin_cpu_supports("avx512f") || ns_portable_kernels() || g->OC != g->IC || g->SW != s || g->KH * g->KW > NS_IMPLICIT_MAX_TAPS)
        return 0;
    if (s == 1) return g->KH == 2 * g->PH + 1 && g->KW == 2 * g->PW + 1;
    return s == 2 && g->H % 2 == 0 && g->W % 2 == 0 && (g->KH == 2 * g->PH + 1 || g->KH == 2 * g->PH + 2) &&
           (g->KW == 2 * g->PW + 1 || g->KW == 2 * g->PW + 2);
#else
    (void)g;
    return 0;
#endif
}

/// Output vectors computed together: four independent chains of multiply-adds.
enum { IV = 4 };
/// Output widths from which a 3x3 layer with padding 1 takes `depthwise3x3_rows`. At stride 2
/// even 8 columns, half of each vector's lanes idle, beat the phases (MobileNetV2's 144-channel
/// 16x16 -> 8x8 layer at batch 32: 0.30-0.33 -> 0.11-0.23 ms on two threads); at stride 1 an
/// 8x8 plane's masked loads, all lanes busy, stay faster (0.023 against 0.025 ms for 192
/// channels of 4 images on one thread), a 16x16 one's do not (0.059 against 0.033 ms).
enum { NS_DEPTHWISE_ROWS_MIN_WIDTH_STRIDE1 = 16, NS_DEPTHWISE_ROWS_MIN_WIDTH_STRIDE2 = 8 };

/// Whether `ns_depthwise_forward_implicit` takes `depthwise3x3_rows` (which needs no scratch).
static int takes_rows(const ns_depthwise_geometry *g) {
    return g->KH == 3 && g->KW == 3 && g->PH == 1 && g->PW == 1 &&
           g->OW >= (g->SH == 1 ? NS_DEPTHWISE_ROWS_MIN_WIDTH_STRIDE1 : NS_DEPTHWISE_ROWS_MIN_WIDTH_STRIDE2);
}

long ns_depthwise_implicit_scratch(const ns_depthwise_geometry *g) {
    if (takes_rows(g)) return 0;
    const long vectors = (g->OH * g->OW + L - 1) / L, padded = (vectors + IV - 1) / IV * IV;
    // The phases of one plane at stride 2, then the masks (16 bits each) per vector and tap.
    return (g->SH == 2 ? g->H * g->W : 0) + (padded * g->KH * g->KW + 1) / 2;
}

#if defined(__x86_64__) && defined(__clang__)
#define ROWS_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))

/// What a 3x3 window's three taps in one kernel row read for 16 output columns from j: column
/// x - 1 (`left`), x (`mid`), x + 1 (`right`) of the input row at stride 1, and 2 x - 1, 2 x,
/// 2 x + 1 at stride 2; zeros outside the image (the padding; a row outside it all zeros).
typedef struct { __m512 left, mid, right; } row_taps;

static const row_taps no_row = {{0}, {0}, {0}};

/// Stride 1: three masked loads of the input row, one column apart.
ROWS_TARGET static inline row_taps split_row1(const float *x, long H, long W, long row, long j) {
    if (row < 0 || row >= H) return no_row;
    const float *r = x + row * W + j;
    const long n = W - j;  // columns from j to the row's end
    const __mmask16 left = ns_first_lanes(n + 1) & (j == 0 ? 0xfffe : 0xffff);
    return (row_taps){_mm512_maskz_loadu_ps(left, r - 1), _mm512_maskz_loadu_ps(ns_first_lanes(n), r),
                      _mm512_maskz_loadu_ps(ns_first_lanes(n - 1), r + 1)};
}

/// Stride 2: the row's columns [2 j, 2 j + 32) in two loads, split into even and odd columns
/// by permutations, the odd ones moved up a lane for column 2 x - 1.
ROWS_TARGET static inline row_taps split_row2(const float *x, long H, long W, long row, long j) {
    if (row < 0 || row >= H) return no_row;
    const float *r = x + row * W + 2 * j;
    const __m512 a = _mm512_maskz_loadu_ps(ns_first_lanes(W - 2 * j), r);
    const __m512 b = _mm512_maskz_loadu_ps(ns_first_lanes(W - 2 * j - 16), r + 16);
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 mid = _mm512_permutex2var_ps(a, evens, b), right = _mm512_permutex2var_ps(a, odds, b);
    // Column 2 j - 1 enters at lane 0: the last odd column of the vector before, or the padding.
    const __m512 before = j > 0 ? _mm512_set1_ps(r[-1]) : _mm512_setzero_ps();
    const __m512 left = (__m512)_mm512_alignr_epi32((__m512i)right, (__m512i)before, 15);
    return (row_taps){left, mid, right};
}

/// One output row's 16 columns from three input rows' taps: the bias, then the nine products in
/// the kernel's row-major order, clamped to [lo, hi], stored where `store` says.
ROWS_TARGET static inline __attribute__((always_inline)) void
window_row(const float *wc, float b0, const row_taps *top, const row_taps *center, const row_taps *bottom, float lo,
           float hi, float *y, __mmask16 store) {
    vf acc = (vf){0} + b0;
    acc += wc[0] * (vf)top->left;
    acc += wc[1] * (vf)top->mid;
    acc += wc[2] * (vf)top->right;
    acc += wc[3] * (vf)center->left;
    acc += wc[4] * (vf)center->mid;
    acc += wc[5] * (vf)center->right;
    acc += wc[6] * (vf)bottom->left;
    acc += wc[7] * (vf)bottom->mid;
    acc += wc[8] * (vf)bottom->right;
    const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;
    vf v = SELECT(acc < vlo, vlo, acc);  // comparisons keep a NaN a NaN
    v = SELECT(v > vhi, vhi, v);
    _mm512_mask_storeu_ps(y, store, (__m512)v);
}

/// Two output rows at once, the first from input rows' taps a0, a1, a2, the second from b0, b1,
/// b2, their chains of multiply-adds interleaved (one row's chain alone left the vector unit
/// idle for the latency of each multiply-add: 16x16 planes at stride 1 0.039 -> 0.033 ms);
/// each row's sums as `window_row` computes them.
ROWS_TARGET static inline __attribute__((always_inline)) void
window_rows2(const float *wc, float b0, const row_taps *a0, const row_taps *a1, const row_taps *a2, const row_taps *b0r,
             const row_taps *b1, const row_taps *b2, float lo, float hi, float *y, long ldy, __mmask16 store) {
    vf a = (vf){0} + b0, b = a;
    a += wc[0] * (vf)a0->left;   b += wc[0] * (vf)b0r->left;
    a += wc[1] * (vf)a0->mid;    b += wc[1] * (vf)b0r->mid;
    a += wc[2] * (vf)a0->right;  b += wc[2] * (vf)b0r->right;
    a += wc[3] * (vf)a1->left;   b += wc[3] * (vf)b1->left;
    a += wc[4] * (vf)a1->mid;    b += wc[4] * (vf)b1->mid;
    a += wc[5] * (vf)a1->right;  b += wc[5] * (vf)b1->right;
    a += wc[6] * (vf)a2->left;   b += wc[6] * (vf)b2->left;
    a += wc[7] * (vf)a2->mid;    b += wc[7] * (vf)b2->mid;
    a += wc[8] * (vf)a2->right;  b += wc[8] * (vf)b2->right;
    const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;
    a = SELECT(a < vlo, vlo, a);  // comparisons keep a NaN a NaN
    a = SELECT(a > vhi, vhi, a);
    b = SELECT(b < vlo, vlo, b);
    b = SELECT(b > vhi, vhi, b);
    _mm512_mask_storeu_ps(y, store, (__m512)a);
    _mm512_mask_storeu_ps(y + ldy, store, (__m512)b);
}

/// Planes [first, first + count) of a 3x3 depthwise convolution with padding 1, at stride 1 or
/// (on even H and W) 2, an output row's 16 columns a vector: each input row read once from the
/// plane and split into the taps' columns in registers, then used by every output row that
/// reads it (three at stride 1, two at stride 2), instead of one masked load per tap and output
/// vector, and at stride 2 instead of copying the plane into its four phases first (which took
/// as long as the products: MobileNetV2's 96-channel 32x32 -> 16x16 layer at batch 32 0.73-0.84
/// -> 0.27 ms on two threads, its input in the caches). The same sums in the same order as
/// `ns_depthwise_forward_planes` and the masked loads: the same bits.
ROWS_TARGET static void depthwise3x3_rows(const ns_depthwise_geometry *g, long first, long count, const float *in,
                                          const float *w, const float *bias, float lo, float hi, float *out) {
    const long H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    for (long q = first; q < first + count; q++) {
        const long c = q % g->OC;
        const float *x = in + q * H * W, *wc = w + c * 9;
        const float b0 = bias ? bias[c] : 0;
        float *y = out + q * OH * OW;
        for (long j = 0; j < OW; j += L) {
            const __mmask16 store = ns_first_lanes(OW - j);
            if (g->SH == 1) {
                row_taps top = no_row, center = split_row1(x, H, W, 0, j);
                long oy = 0;
                for (; oy + 2 <= OH; oy += 2) {
                    const row_taps bottom = split_row1(x, H, W, oy + 1, j), next = split_row1(x, H, W, oy + 2, j);
                    window_rows2(wc, b0, &top, &center, &bottom, &center, &bottom, &next, lo, hi, y + oy * OW + j, OW,
                                 store);
                    top = bottom;
                    center = next;
                }
                for (; oy < OH; oy++) {
                    const row_taps bottom = split_row1(x, H, W, oy + 1, j);
                    window_row(wc, b0, &top, &center, &bottom, lo, hi, y + oy * OW + j, store);
                    top = center;
                    center = bottom;
                }
            } else {
                row_taps top = no_row;
                long oy = 0;
                for (; oy + 2 <= OH; oy += 2) {
                    const row_taps r1 = split_row2(x, H, W, 2 * oy, j), r2 = split_row2(x, H, W, 2 * oy + 1, j);
                    const row_taps r3 = split_row2(x, H, W, 2 * oy + 2, j), r4 = split_row2(x, H, W, 2 * oy + 3, j);
                    window_rows2(wc, b0, &top, &r1, &r2, &r2, &r3, &r4, lo, hi, y + oy * OW + j, OW, store);
                    top = r4;
                }
                for (; oy < OH; oy++) {
                    const row_taps center = split_row2(x, H, W, 2 * oy, j), bottom = split_row2(x, H, W, 2 * oy + 1, j);
                    window_row(wc, b0, &top, &center, &bottom, lo, hi, y + oy * OW + j, store);
                    top = bottom;
                }
            }
        }
    }
}

__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))) void
ns_depthwise_forward_implicit(const ns_depthwise_geometry *g, long first, long count, const float *in, const float *w,
                              const float *bias, float lo, float hi, float *out, float *scratch) {
    const long s = g->SH, H = g->H, W = g->W, OH = g->OH, OW = g->OW, N = OH * OW, taps = g->KH * g->KW;
    if (takes_rows(g)) {
        depthwise3x3_rows(g, first, count, in, w, bias, lo, hi, out);
        return;
    }
    const long vectors = (N + L - 1) / L, padded = (vectors + IV - 1) / IV * IV;
    struct ns_taps t;
    ns_tap_table(OH, OW, W, g->KH, g->KW, g->PH, g->PW, s, &t);
    float *phases = scratch;
    __mmask16 *masks = (__mmask16 *)(scratch + (s == 2 ? H * W : 0));
    for (long v = 0; v < padded; v++) {
        if (v < vectors)
            ns_tap_masks(v * L, OH, OW, &t, masks + v * taps, 1);
        else
            for (long k = 0; k < taps; k++) masks[v * taps + k] = 0;
    }
    const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;
    for (long q = first; q < first + count; q++) {
        const long c = q % g->OC;
        const float *src = in + q * H * W, *wc = w + c * taps;
        if (s == 2) {
            ns_pconv_phases(src, H, W, 0, 1, phases);
            src = phases;
        }
        const float b0 = bias ? bias[c] : 0;
        float *y = out + q * N;
        for (long v0 = 0; v0 < vectors; v0 += IV) {
            vf acc[IV];
            for (int u = 0; u < IV; u++) acc[u] = (vf){0} + b0;
            const __mmask16 *m = masks + v0 * taps;
            for (long k = 0; k < taps; k++) {
                const float wt = wc[k], *x = src + t.offset[k] + v0 * L;
                for (int u = 0; u < IV; u++) acc[u] += wt * (vf)_mm512_maskz_loadu_ps(m[u * taps + k], x + u * L);
            }
            for (int u = 0; u < IV && v0 + u < vectors; u++) {
                vf v = SELECT(acc[u] < vlo, vlo, acc[u]);  // comparisons keep a NaN a NaN
                v = SELECT(v > vhi, vhi, v);
                const long left = N - (v0 + u) * L;
                _mm512_mask_storeu_ps(y + (v0 + u) * L, ns_first_lanes(left), (__m512)v);
            }
        }
    }
}
#else
void ns_depthwise_forward_implicit(const ns_depthwise_geometry *g, long first, long count, const float *in,
                                   const float *w, const float *bias, float lo, float hi, float *out, float *scratch) {
    (void)g, (void)first, (void)count, (void)in, (void)w, (void)bias, (void)lo, (void)hi, (void)out, (void)scratch;
}
#endif

// MARK: planes side by side (AVX-512)

int ns_depthwise_packed_available(const ns_depthwise_geometry *g) {
    const long P = g->OH * g->OW;
    return ns_depthwise_implicit_available(g) && g->H == g->SH * g->OH && g->W == g->SW * g->OW && P >= 1 &&
           L % P == 0 && g->OC * P % L == 0;
}

long ns_depthwise_packed_weights(const ns_depthwise_geometry *g) {
    return (g->OC * g->OH * g->OW / L) * (g->KH * g->KW + 1) * L;
}

void ns_depthwise_pack_weights(const ns_depthwise_geometry *g, const float *w, const float *bias, float *wexp) {
    const long P = g->OH * g->OW, per = L / P, groups = g->OC / per, taps = g->KH * g->KW;
    float *bexp = wexp + groups * taps * L;
    for (long gr = 0; gr < groups; gr++)
        for (long l = 0; l < L; l++) {
            const long c = gr * per + l / P;
            for (long t = 0; t < taps; t++) wexp[(gr * taps + t) * L + l] = w[c * taps + t];
            bexp[gr * L + l] = bias ? bias[c] : 0;
        }
}

#if defined(__x86_64__) && defined(__clang__)
#define PACKED_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))

/// Where each tap of an output vector reads: lane l (pixel l mod P of plane l / P) takes lane
/// index[t] of the item's input vectors (one at stride 1; four at stride 2, the same planes at
/// four times the pixels, indices mod 32 into the first two where `lo` is set and the last two
/// where `hi` is), or zero where the tap falls outside its plane.
struct packed_taps {
    __m512i index[NS_IMPLICIT_MAX_TAPS];
    __mmask16 lo[NS_IMPLICIT_MAX_TAPS], hi[NS_IMPLICIT_MAX_TAPS];
};

PACKED_TARGET static void packed_tap_table(const ns_depthwise_geometry *g, struct packed_taps *t) {
    const long P = g->OH * g->OW, in_plane = g->H * g->W;
    for (long i = 0; i < g->KH; i++)
        for (long j = 0; j < g->KW; j++) {
            const long k = i * g->KW + j;
            int lanes[16];
            unsigned lo = 0, hi = 0;
            for (long l = 0; l < L; l++) {
                const long p = l % P, y = p / g->OW * g->SH + i - g->PH, x = p % g->OW * g->SW + j - g->PW;
                const long from = l / P * in_plane + y * g->W + x;
                const int inside = y >= 0 && y < g->H && x >= 0 && x < g->W;
                lanes[l] = inside ? (int)(from % 32) : 0;
                lo |= (unsigned)(inside && from < 32) << l;
                hi |= (unsigned)(inside && from >= 32) << l;
            }
            t->index[k] = _mm512_loadu_si512(lanes);
            t->lo[k] = (__mmask16)lo;
            t->hi[k] = (__mmask16)hi;
        }
}

/// Tap k of an item whose input vectors are x[0 ..< S * S].
PACKED_TARGET static inline __attribute__((always_inline)) vf packed_tap(const struct packed_taps *t, long k,
                                                                        const __m512 *x, const int S) {
    if (S == 1) return (vf)_mm512_maskz_permutexvar_ps(t->lo[k], t->index[k], x[0]);
    const __m512 first = _mm512_maskz_permutex2var_ps(t->lo[k], x[0], t->index[k], x[1]);
    return (vf)_mm512_mask_blend_ps(t->hi[k], first, _mm512_permutex2var_ps(x[2], t->index[k], x[3]));
}

/// `ns_depthwise_forward_packed` at stride S.
PACKED_TARGET static inline __attribute__((always_inline)) void
packed_forward(const ns_depthwise_geometry *g, long batch, long first, long count, const float *in, const float *wexp,
               float lo, float hi, float *out, const int S) {
    const long P = g->OH * g->OW, groups = g->OC * P / L, taps = g->KH * g->KW, step = S * S * L;
    const float *bexp = wexp + groups * taps * L;
    struct packed_taps t;
    packed_tap_table(g, &t);
    const vf vlo = (vf){0} + lo, vhi = (vf){0} + hi;
    // Items group-major (item = group batch + image, vector image groups + group), so that a
    // group's weights, read once from memory, serve a run of images; IV items at a time,
    // independent chains of multiply-adds: IV images of a group with its weights in registers,
    // else IV items each with its own group's (a batch of one image: IV groups).
    const long end = first + count;
    long item = first;
    while (item < end) {
        const long gr = item / batch, run_end = (gr + 1) * batch < end ? (gr + 1) * batch : end;
        const int shared = item + IV <= run_end;
        const long n = shared || item + IV <= end ? IV : 1;
        vf acc[IV];
        __m512 x[IV][4];
        const float *wg[IV];
        long v[IV];
        for (long u = 0; u < n; u++) {
            const long gu = (item + u) / batch;
            v[u] = (item + u) % batch * groups + gu;
            wg[u] = wexp + gu * taps * L;
            acc[u] = LOAD(bexp + gu * L);
            for (int q = 0; q < S * S; q++) x[u][q] = _mm512_loadu_ps(in + v[u] * step + q * L);
        }
        if (n == IV && shared)
            for (long k = 0; k < taps; k++) {
                const vf wt = LOAD(wg[0] + k * L);
                for (int u = 0; u < IV; u++) acc[u] += wt * packed_tap(&t, k, x[u], S);
            }
        else if (n == IV)
            for (long k = 0; k < taps; k++)
                for (int u = 0; u < IV; u++) acc[u] += LOAD(wg[u] + k * L) * packed_tap(&t, k, x[u], S);
        else
            for (long k = 0; k < taps; k++) acc[0] += LOAD(wg[0] + k * L) * packed_tap(&t, k, x[0], S);
        for (long u = 0; u < n; u++) {
            vf r = SELECT(acc[u] < vlo, vlo, acc[u]);  // comparisons keep a NaN a NaN
            STORE(out + v[u] * L, SELECT(r > vhi, vhi, r));
        }
        item += n;
    }
}

PACKED_TARGET void ns_depthwise_forward_packed(const ns_depthwise_geometry *g, long batch, long first, long count,
                                               const float *in, const float *wexp, float lo, float hi, float *out) {
    if (g->SH == 1)
        packed_forward(g, batch, first, count, in, wexp, lo, hi, out, 1);
    else
        packed_forward(g, batch, first, count, in, wexp, lo, hi, out, 2);
}
#else
void ns_depthwise_forward_packed(const ns_depthwise_geometry *g, long batch, long first, long count, const float *in,
                                 const float *wexp, float lo, float hi, float *out) {
    (void)g, (void)batch, (void)first, (void)count, (void)in, (void)wexp, (void)lo, (void)hi, (void)out;
}
#endif

// MARK: global average pooling

NS_CLONES
void ns_plane_means(long first, long count, long plane, const float *x, float scale, float *y) {
    long p = first;
    if (plane % L == 0)
        // 16 planes at a time: each block of 16 pixels transposed, so that one vector holds
        // pixel q of all 16 planes, then added pixel after pixel.
        for (; p + L <= first + count; p += L) {
            vf s = (vf){0};
            for (long c = 0; c < plane; c += L) {
                vf r[16];
                for (long l = 0; l < L; l++) r[l] = LOAD(x + (p + l) * plane + c);
                transpose16(r);
                for (long q = 0; q < L; q++) s += r[q];
            }
            STORE(y + p, s * scale);
        }
    for (; p < first + count; p++) {
        float s = 0;
        for (long i = 0; i < plane; i++) s += x[p * plane + i];
        y[p] = s * scale;
    }
}
