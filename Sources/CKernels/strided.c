#include "ns_kernels.h"
#include "simd.h"

long ns_im2col_s2_scratch(long H, long W, long PH, long PW) {
    return 4 * ((H + 2 * PH + 1) / 2 + 1) * ((W + 2 * PW + 1) / 2 + 1);
}

NS_CLONES
void ns_im2col_s2(const float *x, long H, long W, long KH, long KW, long PH, long PW, long OH, long OW, long r0,
                  long r1, float *col, long ldcol, float *scratch) {
    // Phase (a, b) of the zero-padded plane holds padded pixel (2 y + a, 2 x + b) at y * wp + x;
    // output (oh, ow) of tap (i, j) reads phase (i % 2, j % 2) at (oh + i / 2, ow + j / 2), so
    // every patch row is OH contiguous runs of OW.
    const long taps = KH * KW, hp = (H + 2 * PH + 1) / 2 + 1, wp = (W + 2 * PW + 1) / 2 + 1, phase = hp * wp;
    long channel = -1;
    for (long r = r0; r < r1; r++) {
        const long c = r / taps, t = r % taps, i = t / KW, j = t % KW;
        if (c != channel) {
            channel = c;
            for (long q = 0; q < 4 * phase; q++) scratch[q] = 0;
            const float *plane = x + c * H * W;
            for (long y = 0; y < H; y++) {
                const long py = y + PH;
                float *d0 = scratch + (py % 2) * 2 * phase + (py / 2) * wp, *d1 = d0 + phase;
                const float *row = plane + y * W;
                for (long xx = 0; xx < W; xx++) {
                    const long px = xx + PW;
                    (px % 2 ? d1 : d0)[px / 2] = row[xx];
                }
            }
        }
        const float *src = scratch + ((i % 2) * 2 + j % 2) * phase + (i / 2) * wp + j / 2;
        float *dst = col + r * ldcol;
        for (long oh = 0; oh < OH; oh++) {
            const float *s = src + oh * wp;
            float *d = dst + oh * OW;
            for (long ow = 0; ow < OW; ow++) d[ow] = s[ow];
        }
    }
}

NS_CLONES
void ns_im2col_table(const float *x, long HW, const int *table, long taps, long plane, long r0, long r1, float *col) {
    for (long r = r0; r < r1;) {
        const long c = r / taps, end = (c + 1) * taps < r1 ? (c + 1) * taps : r1, n = (end - r) * plane;
        const float *src = x + c * HW;
        const int *t = table + (r - c * taps) * plane;
        float *d = col + r * plane;
        for (long j = 0; j < n; j++) d[j] = t[j] >= 0 ? src[t[j]] : 0;
        r = end;
    }
}
