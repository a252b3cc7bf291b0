#ifndef NS_KERNELS_H
#define NS_KERNELS_H

/// Inner loops that need the machine's vector width, compiled for AVX-512, AVX2 and baseline
/// x86-64 and chosen at load time (clang's target_clones); one plain build elsewhere. Swift code
/// is compiled for the baseline only, so these are the loops where that costs a multiple.

/// One depthwise convolution: input planes H x W, kernel KH x KW, stride SH x SW, zero padding
/// PH x PW, output planes OH x OW; IC input and OC output channels, output channel o reading input
/// channel o / (OC / IC). KH * KW is at most 64.
typedef struct {
    long H, W, KH, KW, SH, SW, PH, PW, OH, OW, IC, OC;
} ns_depthwise_geometry;

/// Output planes q in [first, first + count) (q = image * OC + o): bias[o] (0 without bias) plus
/// the sum over taps, in row-major tap order, of w[o * KH * KW + tap] times the input tap reads.
void ns_depthwise_forward(const ns_depthwise_geometry *g, long first, long count, const float *in,
                          const float *w, const float *bias, float *out);

/// Input-gradient planes q in [first, first + count) (q = image * IC + c): dx += the adjoint of
/// the forward pass for each of channel c's output channels in order.
void ns_depthwise_backward_input(const ns_depthwise_geometry *g, long first, long count, const float *dout,
                                 const float *w, float *dx);

/// dw[o * KH * KW + tap] += sum over the `n` images of dout . (the input tap `tap` reads), for the
/// output channels o in [first, first + count). Products are summed per output column over the
/// images, then over the columns, in a fixed order. `scratch` holds KH * KW * OW floats.
void ns_depthwise_backward_weight(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                  const float *dout, float *scratch, float *dw);

/// Lanes of the channel-blocked kernels: channels processed together, one vector register wide
/// with AVX-512.
enum { NS_DEPTHWISE_LANES = 16 };

/// The forward pass for one output channel per input channel (OC == IC), vectorized across
/// blocks of NS_DEPTHWISE_LANES channels: a block's planes are interleaved into a zero-padded
/// buffer, every output pixel sums its taps for all the block's channels at once, and the result
/// is written back as planes. Work item `item` in [first, first + count) is block
/// item % blocks of image item / blocks (blocks = ceil(OC / lanes)). Same sums, in the same order,
/// as `ns_depthwise_forward`.
void ns_depthwise_forward_blocked(const ns_depthwise_geometry *g, long first, long count, const float *in,
                                  const float *w, const float *bias, float *out);

/// Both gradients for OC == IC, channel blocks [first, first + count) over all `n` images:
/// dx += the adjoint of the forward pass (when dx is not NULL) and dw += the weight gradient
/// (when dw is not NULL, summed over images in order).
void ns_depthwise_backward_blocked(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                   const float *dout, const float *w, float *dx, float *dw);

#endif
