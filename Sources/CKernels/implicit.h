// What the kernels that read a convolution's patch rows from the image itself share (no im2col
// copy): per kernel tap, where it reads and which output pixels it reads inside the image.
// AVX-512 only (masked loads); included by x86-64 clang builds.
#ifndef NS_IMPLICIT_H
#define NS_IMPLICIT_H

#include <immintrin.h>

enum { NS_IMPLICIT_MAX_TAPS = 64 };

/// Per tap: where it reads (from the output pixel's own position in its channel's source) and
/// its shift in rows and columns of the output, by which it falls in the padding.
///
/// At stride 1 (output the input's size) the source is the plane itself. At stride 2 (the
/// output half the input's even size) it is the plane's four phases, [2 a + b][OH][OW] holding
/// pixel (2 y + a, 2 x + b): tap (i, j) reads phase ((i - PH) mod 2, (j - PW) mod 2) shifted by
/// ((i - PH) div 2, (j - PW) div 2).
struct ns_taps {
    long count, offset[NS_IMPLICIT_MAX_TAPS];
    int dy[NS_IMPLICIT_MAX_TAPS], dx[NS_IMPLICIT_MAX_TAPS];
};

static inline void ns_tap_table(long OH, long OW, long W, long KH, long KW, long PH, long PW, long stride,
                                struct ns_taps *t) {
    t->count = KH * KW;
    for (long i = 0; i < KH; i++)
        for (long j = 0; j < KW; j++) {
            const long k = i * KW + j, u = i - PH, v = j - PW;
            if (stride == 1) {
                t->dy[k] = (int)u, t->dx[k] = (int)v;
                t->offset[k] = u * W + v;
            } else {
                const long a = u & 1, b = v & 1;  // the phase; (u - a) / 2 rounds down
                t->dy[k] = (int)((u - a) / 2), t->dx[k] = (int)((v - b) / 2);
                t->offset[k] = (a * 2 + b) * OH * OW + t->dy[k] * OW + t->dx[k];
            }
        }
}

/// The mask of a vector's first `n` lanes: all 16 from n = 16 on, none for n <= 0 (a last,
/// partial vector of pixels).
static inline __mmask16 ns_first_lanes(long n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/// The masks of the 16 output pixels from `first`, per tap (at masks[k * step]): lane set where
/// the tap reads the image and the pixel is below OH OW.
__attribute__((target("avx512f"))) static inline void ns_tap_masks(long first, long OH, long OW,
                                                                   const struct ns_taps *t, __mmask16 *masks,
                                                                   long step) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i w = _mm512_set1_epi32((int)OW), h = _mm512_set1_epi32((int)OH);
    __m512i ox = _mm512_add_epi32(_mm512_set1_epi32((int)(first % OW)), lane);
    __m512i oy = _mm512_set1_epi32((int)(first / OW));
    for (__mmask16 wrap; (wrap = _mm512_cmpge_epi32_mask(ox, w));) {
        ox = _mm512_mask_sub_epi32(ox, wrap, ox, w);
        oy = _mm512_mask_add_epi32(oy, wrap, oy, _mm512_set1_epi32(1));
    }
    const __mmask16 inside = _mm512_cmplt_epi32_mask(_mm512_add_epi32(_mm512_set1_epi32((int)first), lane),
                                                     _mm512_set1_epi32((int)(OH * OW)));
    for (long k = 0; k < t->count; k++) {
        const __mmask16 row = _mm512_cmplt_epu32_mask(_mm512_add_epi32(oy, _mm512_set1_epi32(t->dy[k])), h);
        const __mmask16 col = _mm512_cmplt_epu32_mask(_mm512_add_epi32(ox, _mm512_set1_epi32(t->dx[k])), w);
        masks[k * step] = inside & row & col;
    }
}

#endif
