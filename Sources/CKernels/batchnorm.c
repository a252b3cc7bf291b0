#include "ns_kernels.h"
#include "simd.h"

#include <stdlib.h>

// Batch norm's passes over memory, channel by channel: channel ch of image img is the run
// x[(img * c + ch) * inner ..< + inner]. Sums go into 16 lanes in a fixed order (whole vectors,
// then the tail), so every result is the same on every run, and a channel's per-image sums are
// added in double precision.
//
// Planes smaller than a vector (inner < L: the last stages of the nets at 32x32) run along the
// flat index j = ch * inner + i of a whole image instead, with each channel's parameters
// repeated per element and per-element sums over the images, then added per channel.

enum { L = NS_LANES };

/// The lanes of *v added in order (by pointer: a 64-byte vector passed by value would change
/// the calling convention between the AVX-512 and the narrower clones).
static inline float lanes_sum(const vf *v) {
    float s = 0;
    for (int l = 0; l < L; l++) s += (*v)[l];
    return s;
}

/// A channel's parameter repeated for each of its `inner` elements, for channels
/// first ..< first + count: out[(ch - first) * inner + i] = v[ch].
static float *repeated(const float *v, long first, long count, long inner) {
    float *out = malloc(sizeof(float) * count * inner);
    for (long ch = 0; ch < count; ch++)
        for (long i = 0; i < inner; i++) out[ch * inner + i] = v[first + ch];
    return out;
}

/// Per channel, the double sum of its `inner` per-element sums.
static void channel_sums(const float *per_element, long count, long inner, double *out) {
    for (long ch = 0; ch < count; ch++) {
        double s = 0;
        for (long i = 0; i < inner; i++) s += per_element[ch * inner + i];
        out[ch] = s;
    }
}

// The flat kernels are inlined into each clone of their caller, so compiled for its machine.
#define FLAT static inline __attribute__((always_inline)) void

FLAT shifted_sums_flat(long n, long c, long inner, long first, long count, const float *x, const float *shift,
                       double *sum, double *sum_squares) {
    const long len = count * inner, j0 = first * inner;
    float *k = malloc(sizeof(float) * len), *s = calloc(len, sizeof(float)), *q = calloc(len, sizeof(float));
    for (long j = 0; j < len; j++) k[j] = shift ? shift[first + j / inner] : 0;
    for (long img = 0; img < n; img++) {
        const float *p = x + img * c * inner + j0;
        for (long j = 0; j < len; j++) {
            const float d = p[j] - k[j];
            s[j] += d;
            q[j] += d * d;
        }
    }
    channel_sums(s, count, inner, sum + first);
    channel_sums(q, count, inner, sum_squares + first);
    free(k);
    free(s);
    free(q);
}

NS_CLONES
void ns_bn_shifted_sums(long n, long c, long inner, long first, long count, const float *x, const float *shift,
                        double *sum, double *sum_squares) {
    if (inner < L) return shifted_sums_flat(n, c, inner, first, count, x, shift, sum, sum_squares);
    for (long ch = first; ch < first + count; ch++) {
        const float k = shift ? shift[ch] : 0;
        const vf kv = (vf){0} + k;
        double s = 0, q = 0;
        for (long img = 0; img < n; img++) {
            const float *p = x + (img * c + ch) * inner;
            vf a = {0}, b = {0};
            long i = 0;
            for (; i + L <= inner; i += L) {
                const vf d = LOAD(p + i) - kv;
                a += d;
                b += d * d;
            }
            float sa = lanes_sum(&a), sb = lanes_sum(&b);
            for (; i < inner; i++) {
                const float d = p[i] - k;
                sa += d;
                sb += d * d;
            }
            s += sa;
            q += sb;
        }
        sum[ch] = s;
        sum_squares[ch] = q;
    }
}

FLAT forward_flat(long n, long c, long inner, long first, long count, const float *x, const float *mean,
                  const float *scale, const float *offset, float lo, float hi, float *y) {
    const long len = count * inner, j0 = first * inner;
    float *mu = repeated(mean, first, count, inner), *a = repeated(scale, first, count, inner);
    float *b = repeated(offset, first, count, inner);
    for (long img = 0; img < n; img++) {
        const float *p = x + img * c * inner + j0;
        float *q = y + img * c * inner + j0;
        for (long j = 0; j < len; j++) {
            float v = (p[j] - mu[j]) * a[j] + b[j];
            v = v < lo ? lo : v;
            q[j] = v > hi ? hi : v;
        }
    }
    free(mu);
    free(a);
    free(b);
}

NS_CLONES
void ns_bn_forward(long n, long c, long inner, long first, long count, const float *x, const float *mean,
                   const float *scale, const float *offset, float lo, float hi, float *y) {
    if (inner < L) return forward_flat(n, c, inner, first, count, x, mean, scale, offset, lo, hi, y);
    const vf lov = (vf){0} + lo, hiv = (vf){0} + hi;
    for (long ch = first; ch < first + count; ch++) {
        const float mu = mean[ch], a = scale[ch], b = offset[ch];
        for (long img = 0; img < n; img++) {
            const long o = (img * c + ch) * inner;
            const float *p = x + o;
            float *q = y + o;
            long i = 0;
            for (; i + L <= inner; i += L) {
                // Clamped by comparisons, so that a NaN stays NaN.
                vf v = (LOAD(p + i) - mu) * a + b;
                v = SELECT(v < lov, lov, v);
                STORE(q + i, SELECT(v > hiv, hiv, v));
            }
            for (; i < inner; i++) {
                float v = (p[i] - mu) * a + b;
                v = v < lo ? lo : v;
                q[i] = v > hi ? hi : v;
            }
        }
    }
}

FLAT backward_sums_flat(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                        const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                        float *sg, float *sgx) {
    const long len = count * inner, j0 = first * inner;
    float *mu = repeated(mean, first, count, inner), *a = repeated(scale, first, count, inner);
    float *b = repeated(offset, first, count, inner);
    float *s = calloc(len, sizeof(float)), *t = calloc(len, sizeof(float));
    for (long img = 0; img < n; img++) {
        const float *p = x + img * c * inner + j0, *d = dy + img * c * inner + j0;
        for (long j = 0; j < len; j++) {
            const float z = (p[j] - mu[j]) * a[j] + b[j], g = !clamped || (z > lo && z < hi) ? d[j] : 0;
            s[j] += g;
            t[j] += g * (p[j] - mu[j]);
        }
    }
    double *ss = malloc(sizeof(double) * 2 * count), *ts = ss + count;
    channel_sums(s, count, inner, ss);
    channel_sums(t, count, inner, ts);
    for (long ch = 0; ch < count; ch++) {
        sg[first + ch] = (float)ss[ch];
        sgx[first + ch] = (float)ts[ch];
    }
    free(mu);
    free(a);
    free(b);
    free(s);
    free(t);
    free(ss);
}

NS_CLONES
void ns_bn_backward_sums(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                         const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                         float *sg, float *sgx) {
    if (inner < L)
        return backward_sums_flat(n, c, inner, first, count, x, dy, mean, scale, offset, clamped, lo, hi, sg, sgx);
    const vf lov = (vf){0} + lo, hiv = (vf){0} + hi, zero = {0};
    for (long ch = first; ch < first + count; ch++) {
        const float a = scale[ch], b = offset[ch], mu = mean[ch];
        double s = 0, t = 0;
        for (long img = 0; img < n; img++) {
            const long o = (img * c + ch) * inner;
            const float *p = x + o, *d = dy + o;
            vf va = {0}, vb = {0};
            long i = 0;
            for (; i + L <= inner; i += L) {
                const vf xv = LOAD(p + i), z = (xv - mu) * a + b;
                const vf g = clamped ? SELECT((z > lov) & (z < hiv), LOAD(d + i), zero) : LOAD(d + i);
                va += g;
                vb += g * (xv - mu);
            }
            float sa = lanes_sum(&va), sb = lanes_sum(&vb);
            for (; i < inner; i++) {
                const float z = (p[i] - mu) * a + b, g = !clamped || (z > lo && z < hi) ? d[i] : 0;
                sa += g;
                sb += g * (p[i] - mu);
            }
            s += sa;
            t += sb;
        }
        sg[ch] = (float)s;
        sgx[ch] = (float)t;
    }
}

FLAT backward_input_flat(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                         const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                         const float *ga, const float *gb, const float *gc, const float *addend, float *dx) {
    const long len = count * inner, j0 = first * inner;
    float *mu = repeated(mean, first, count, inner), *a = repeated(scale, first, count, inner);
    float *b = repeated(offset, first, count, inner), *A = repeated(ga, first, count, inner);
    float *B = repeated(gb, first, count, inner), *C = repeated(gc, first, count, inner);
    for (long img = 0; img < n; img++) {
        const long o = img * c * inner + j0;
        const float *p = x + o, *d = dy + o, *e = addend ? addend + o : 0;
        float *q = dx + o;
        for (long j = 0; j < len; j++) {
            const float z = (p[j] - mu[j]) * a[j] + b[j], g = !clamped || (z > lo && z < hi) ? d[j] : 0;
            const float v = A[j] * g + B[j] * (p[j] - mu[j]) + C[j];
            q[j] = e ? e[j] + v : v;
        }
    }
    free(mu);
    free(a);
    free(b);
    free(A);
    free(B);
    free(C);
}

NS_CLONES
void ns_bn_backward_input(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                          const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                          const float *ga, const float *gb, const float *gc, const float *addend, float *dx) {
    if (inner < L)
        return backward_input_flat(n, c, inner, first, count, x, dy, mean, scale, offset, clamped, lo, hi, ga, gb, gc,
                                   addend, dx);
    const vf lov = (vf){0} + lo, hiv = (vf){0} + hi, zero = {0};
    for (long ch = first; ch < first + count; ch++) {
        const float a = scale[ch], b = offset[ch], mu = mean[ch], A = ga[ch], B = gb[ch], C = gc[ch];
        for (long img = 0; img < n; img++) {
            const long o = (img * c + ch) * inner;
            const float *p = x + o, *d = dy + o, *e = addend ? addend + o : 0;
            float *q = dx + o;
            long i = 0;
            for (; i + L <= inner; i += L) {
                const vf xv = LOAD(p + i), z = (xv - mu) * a + b;
                const vf g = clamped ? SELECT((z > lov) & (z < hiv), LOAD(d + i), zero) : LOAD(d + i);
                const vf v = A * g + B * (xv - mu) + C;
                STORE(q + i, e ? LOAD(e + i) + v : v);
            }
            for (; i < inner; i++) {
                const float z = (p[i] - mu) * a + b, g = !clamped || (z > lo && z < hi) ? d[i] : 0;
                const float v = A * g + B * (p[i] - mu) + C;
                q[i] = e ? e[i] + v : v;
            }
        }
    }
}

NS_CLONES
void ns_add_normalize(long n, long c, long inner, long first, long count, const float *x, const float *r,
                      float *sum, const float *mean, const float *scale, const float *offset, float lo, float hi,
                      float *normalized) {
    const vf lov = (vf){0} + lo, hiv = (vf){0} + hi;
    for (long ch = first; ch < first + count; ch++) {
        const float mu = mean[ch], a = scale[ch], b = offset[ch];
        for (long img = 0; img < n; img++) {
            const long o = (img * c + ch) * inner;
            long i = 0;
            for (; i + L <= inner; i += L) {
                const vf s = LOAD(x + o + i) + LOAD(r + o + i);
                STORE(sum + o + i, s);
                vf v = (s - mu) * a + b;
                v = SELECT(v < lov, lov, v);
                STORE(normalized + o + i, SELECT(v > hiv, hiv, v));
            }
            for (; i < inner; i++) {
                const float s = x[o + i] + r[o + i];
                sum[o + i] = s;
                float v = (s - mu) * a + b;
                v = v < lo ? lo : v;
                normalized[o + i] = v > hi ? hi : v;
            }
        }
    }
}
