#include "ns_kernels.h"

#if defined(__x86_64__) && defined(__clang__)
#define NS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NS_CLONES
#endif

// Batch norm's passes over memory, channel by channel: channel ch of image img is the run
// x[(img * c + ch) * inner ..< + inner]. Sums go into 16 lanes in a fixed order (whole vectors,
// then the tail), so every result is the same on every run, and a channel's per-image sums are
// added in double precision.

enum { L = 16 };
typedef float vf __attribute__((vector_size(4 * L)));
typedef float vf_unaligned __attribute__((vector_size(4 * L), aligned(4)));
typedef int vi __attribute__((vector_size(4 * L)));
#define LOAD(p) (*(const vf_unaligned *)(p))
#define STORE(p, v) (*(vf_unaligned *)(p) = (v))
/// Lanes of a where mask m is set, else of b (m from a comparison: all ones or zeros per lane).
#define SELECT(m, a, b) ((vf)(((vi)(a) & (m)) | ((vi)(b) & ~(m))))

/// The lanes of *v added in order (by pointer: a 64-byte vector passed by value would change
/// the calling convention between the AVX-512 and the narrower clones).
static inline float lanes_sum(const vf *v) {
    float s = 0;
    for (int l = 0; l < L; l++) s += (*v)[l];
    return s;
}

NS_CLONES
void ns_bn_statistics(long n, long c, long inner, long first, long count, const float *x, float eps, float *mean,
                      float *inv_std, double *variance) {
    const double m = (double)n * inner;
    for (long ch = first; ch < first + count; ch++) {
        // One pass of shifted sums: sum(x - k) and sum((x - k)^2) with k the channel's first value,
        // so E[(x - k)^2] - E[x - k]^2 cancels little (k lies within the data, near the mean).
        const float k = x[ch * inner];
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
        const double mu = s / m, var = q / m - mu * mu > 0 ? q / m - mu * mu : 0;
        mean[ch] = (float)(mu + k);
        inv_std[ch] = (float)(1 / __builtin_sqrt(var + eps));
        variance[ch] = var;
    }
}

NS_CLONES
void ns_bn_forward(long n, long c, long inner, long first, long count, const float *x, const float *mean,
                   const float *scale, const float *offset, float lo, float hi, float *y) {
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

NS_CLONES
void ns_bn_backward_sums(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                         const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                         float *sg, float *sgx) {
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

NS_CLONES
void ns_bn_backward_input(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                          const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                          const float *ga, const float *gb, const float *gc, int accumulate, float *dx) {
    const vf lov = (vf){0} + lo, hiv = (vf){0} + hi, zero = {0};
    for (long ch = first; ch < first + count; ch++) {
        const float a = scale[ch], b = offset[ch], mu = mean[ch], A = ga[ch], B = gb[ch], C = gc[ch];
        for (long img = 0; img < n; img++) {
            const long o = (img * c + ch) * inner;
            const float *p = x + o, *d = dy + o;
            float *q = dx + o;
            long i = 0;
            for (; i + L <= inner; i += L) {
                const vf xv = LOAD(p + i), z = (xv - mu) * a + b;
                const vf g = clamped ? SELECT((z > lov) & (z < hiv), LOAD(d + i), zero) : LOAD(d + i);
                const vf v = A * g + B * (xv - mu) + C;
                STORE(q + i, accumulate ? LOAD(q + i) + v : v);
            }
            for (; i < inner; i++) {
                const float z = (p[i] - mu) * a + b, g = !clamped || (z > lo && z < hi) ? d[i] : 0;
                const float v = A * g + B * (p[i] - mu) + C;
                q[i] = accumulate ? q[i] + v : v;
            }
        }
    }
}
