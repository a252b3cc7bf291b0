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
/// the sum over taps, in row-major tap order, of w[o * KH * KW + tap] times the input tap reads,
/// clamped to [lo, hi] (an activation; -inf and inf for none).
void ns_depthwise_forward(const ns_depthwise_geometry *g, long first, long count, const float *in,
                          const float *w, const float *bias, float lo, float hi, float *out);

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
/// is written back as planes. Work item `item` in [first, first + count) is image item % n (of the
/// n in the batch) of block item / n (ceil(OC / lanes) blocks): a block's images in a row, so its
/// weights are gathered once. Same sums, in the same order, and the same clamp as
/// `ns_depthwise_forward`.
void ns_depthwise_forward_blocked(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                  const float *w, const float *bias, float lo, float hi, float *out);

/// Global average pooling of planes [first, first + count) of `plane` pixels each:
/// y[p] = (x[p][0] + x[p][1] + ... ) * scale, the pixels added one after another in order (so
/// the same bits however the planes are split), 16 planes a vector where `plane` is a multiple
/// of 16.
void ns_plane_means(long first, long count, long plane, const float *x, float scale, float *y);

/// Max pooling over windows of `g` (OC == IC channels, no weights), blocked as
/// `ns_depthwise_forward_blocked` (but item: block item % blocks of image item / blocks): padding
/// never wins, and an output is NaN when its window holds a NaN or an infinity (a divergence made
/// visible, as `maxPool2d` promises).
void ns_maxpool_blocked(const ns_depthwise_geometry *g, long first, long count, const float *in, float *out);

/// 2x2/2 max pooling of planes [first, first + count) of H x W into y (H/2 x W/2 each, an odd
/// last row or column dropped): the maximum as `fmaxf` picks it, NaN where a window holds a NaN
/// or an infinity.
void ns_maxpool2x2_forward(long first, long count, long H, long W, const float *x, float *y);

/// The gradient of 2x2/2 max pooling on planes [first, first + count) of H x W (both even), for
/// x, its pooled y and y's gradient dy: each window's gradient goes to its first element
/// (row-major) equal to the maximum, as PyTorch's kernel picks, or to its first element when none
/// is (a NaN window); dx is written whole.
void ns_maxpool2x2_backward(long first, long count, long H, long W, const float *x, const float *y, const float *dy,
                            float *dx);

/// Floats of scratch `ns_depthwise_forward_planes` needs per call.
long ns_depthwise_plane_scratch(const ns_depthwise_geometry *g);

/// The forward pass for OC == IC and equal strides of 1 or 2, plane by plane in NCHW (planes q in
/// [first, first + count), q = image * OC + o): the input plane copied once into a zero-padded
/// buffer (split into stride x stride phases for stride 2), where every kernel tap is one shifted
/// run of full vectors over the output's rows. No interleaving of channels, so small maps cost
/// two copies of a plane instead of a transposition each way. Sums taps in row-major order after
/// the bias, clamped to [lo, hi].
void ns_depthwise_forward_planes(const ns_depthwise_geometry *g, long first, long count, const float *in,
                                 const float *w, const float *bias, float lo, float hi, float *out, float *scratch);

/// `ns_depthwise_forward_planes` without the padded copy, where `ns_depthwise_implicit_available`
/// says so (AVX-512; stride 1 with the output the input's size, or stride 2 halving an even
/// plane): every tap of 16 output pixels one masked load from the plane (or its four phases).
/// The same sums in the same order, so the same bits. `scratch`:
/// `ns_depthwise_implicit_scratch` floats per call.
int ns_depthwise_implicit_available(const ns_depthwise_geometry *g);
long ns_depthwise_implicit_scratch(const ns_depthwise_geometry *g);
void ns_depthwise_forward_implicit(const ns_depthwise_geometry *g, long first, long count, const float *in,
                                   const float *w, const float *bias, float lo, float hi, float *out, float *scratch);

/// A depthwise convolution (OC == IC) whose output planes have P pixels, P dividing 16 (a 4x4,
/// 4x2, 2x2, ... map), at stride 1 (the output the input's size) or 2 (half an even input),
/// where `ns_depthwise_packed_available` says so (AVX-512; OC P a multiple of 16): the planes of
/// 16 / P channels side by side in each vector, as NCHW holds them, so that no plane is
/// transposed or padded: every tap of a vector is a masked permutation of the lanes of the same
/// channels' input (one vector, or four at stride 2) times a vector of their weights. Items
/// [first, first + count) of `batch` images' OC P / 16 output vectors each, group-major: item =
/// group * batch + image, vector image * OC P / 16 + group. `wexp`:
/// `ns_depthwise_packed_weights` floats from `ns_depthwise_pack_weights` (per group of 16 / P
/// channels, per tap, each channel's weight P times; then the biases alike). The same sums in
/// the same order as `ns_depthwise_forward_implicit`: bias, then taps in row-major order.
int ns_depthwise_packed_available(const ns_depthwise_geometry *g);
long ns_depthwise_packed_weights(const ns_depthwise_geometry *g);
void ns_depthwise_pack_weights(const ns_depthwise_geometry *g, const float *w, const float *bias, float *wexp);
void ns_depthwise_forward_packed(const ns_depthwise_geometry *g, long batch, long first, long count,
                                 const float *in, const float *wexp, float lo, float hi, float *out);

/// Both gradients for OC == IC, channel blocks [first, first + count) over all `n` images:
/// dx += the adjoint of the forward pass (when dx is not NULL) and dw += the weight gradient
/// (when dw is not NULL, summed over images in order).
void ns_depthwise_backward_blocked(const ns_depthwise_geometry *g, long n, long first, long count, const float *in,
                                   const float *dout, const float *w, float *dx, float *dw);

/// A 3x3 convolution with stride 1 and padding 1 by Winograd's F(m x m, 3 x 3), m = 2 or 4: the
/// transforms around its GEMMs (which the caller runs, one per frequency). Input and output
/// planes are H x W; the output is cut into tiles_y x tiles_x tiles of m x m pixels
/// (tiles_y = ceil(H / m), tiles_x = ceil(W / m)), each reading an (m + 2) x (m + 2) patch.
/// Work is given as `rows` tile rows from global tile row `row0` (global row = image * tiles_y +
/// ty); their T = rows * tiles_x tiles are a block's GEMM rows. Transformed values are laid out
/// per frequency xi = v * alpha + u (alpha = m + 2) as a [T][ld] matrix, tile-major with the
/// channels contiguous (ld >= channels rounded up to NS_WINOGRAD_LANES), frequency xi starting
/// `xs` floats after frequency xi - 1 (an odd number of cache lines keeps the frequencies,
/// written together, in different cache sets).
typedef struct {
    long m, H, W, tiles_y, tiles_x;
} ns_winograd_geometry;

/// Channels the tile transforms process together, one vector lane each.
enum { NS_WINOGRAD_LANES = 16 };

/// Floats of scratch the tile transforms need for blocks of at most `rows` tile rows.
long ns_winograd_scratch(const ns_winograd_geometry *g, long rows);

/// v = B^T d B of every tile's input patch (zero padding), from NCHW `x` with `channels` channels;
/// lanes from `channels` up to the next multiple of NS_WINOGRAD_LANES are written as zeros.
void ns_winograd_input(const ns_winograd_geometry *g, long channels, long row0, long rows, const float *x, float *v,
                       long ld, long xs, float *scratch);

/// out = A^T m A (+ bias[c], when bias is not NULL) for every tile, cut at the plane's edge, into
/// NCHW `out` with `channels` channels: clamped to [lo, hi] (an activation; -inf and inf for
/// none), or, when `accumulate` is nonzero, added to `out` unclamped. Reads the lanes up to the
/// next multiple of NS_WINOGRAD_LANES; those beyond `channels` should be finite.
void ns_winograd_output(const ns_winograd_geometry *g, long channels, long row0, long rows, const float *m,
                        long ld, long xs, const float *bias, float lo, float hi, int accumulate, float *out,
                        float *scratch);

/// dm = A dy A^T for every tile of NCHW `dy` (zero beyond the plane): the adjoint of the output
/// transform. Lanes beyond `channels` are written as zeros.
void ns_winograd_output_grad(const ns_winograd_geometry *g, long channels, long row0, long rows, const float *dy,
                             float *dm, long ld, long xs, float *scratch);

/// u = G g G^T of the 3x3 kernels w[K][C][3][3] (frequencies `xs` floats apart): laid out
/// u[xi][K][C] for output channels
/// first ..< first + count, or, when `rotated` is nonzero, the kernels turned by 180 degrees as
/// u[xi][C][K] (the convolution that gives the input gradient) for input channels
/// first ..< first + count.
void ns_winograd_weights(long m, long K, long C, long first, long count, int rotated, const float *w, float *u,
                         long xs);
/// The same kernels not turned, laid out u[xi][C][ld] (output channels contiguous, rows `ld`
/// floats apart; lanes K ..< ld left as they were), for input channels first ..< first + count:
/// the right operand of `ns_gemm_rows` for the forward products.
void ns_winograd_weights_by_input(long m, long K, long C, long first, long count, const float *w, float *u, long xs,
                                  long ld);

/// dw[k][c] += G^T du[.][k][c] G for output channels k0 ..< k0 + count: the adjoint of the weight
/// transform.
void ns_winograd_weight_grad(long m, long K, long C, long k0, long count, const float *du, long xs, float *dw);

/// Batch norm over NCHW with `c` channels of `inner` values per image, `n` images; each function
/// works on channels first ..< first + count. Sums are taken in a fixed order.
///
/// Per channel, sum[ch] = sum(x - shift[ch]) and sum_squares[ch] = sum((x - shift[ch])^2) (shift
/// NULL: 0): the batch statistics' sums, shifted so that E[(x - k)^2] - E[x - k]^2 cancels little
/// when k is near the mean.
void ns_bn_shifted_sums(long n, long c, long inner, long first, long count, const float *x, const float *shift,
                        double *sum, double *sum_squares);

/// y = clamp((x - mean[ch]) * scale[ch] + offset[ch], lo, hi): the normalization (the gate folded
/// into scale and offset) and the activation (-inf, inf for none), one pass.
void ns_bn_forward(long n, long c, long inner, long first, long count, const float *x, const float *mean,
                   const float *scale, const float *offset, float lo, float hi, float *y);

/// sum = x + r, then normalized = clamp((sum - mean[ch]) * scale[ch] + offset[ch], lo, hi) (as
/// `ns_bn_forward` computes it from the sum): a residual sum and the batch norm that reads it, one
/// pass over channels [first, first + count) of [n, c, inner] tensors.
void ns_add_normalize(long n, long c, long inner, long first, long count, const float *x, const float *r,
                      float *sum, const float *mean, const float *scale, const float *offset, float lo, float hi,
                      float *normalized);

/// The backward pass's sums: sg[ch] = sum(g), sgx[ch] = sum(g * (x - mean[ch])), with g = dy where
/// (x - mean) * scale + offset lies strictly inside (lo, hi) when `clamped` (the activation's
/// linear range, recomputed from x rather than read from the output), else g = dy.
void ns_bn_backward_sums(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                         const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                         float *sg, float *sgx);

/// dx = ga[ch] * g + gb[ch] * (x - mean[ch]) + gc[ch] with g as in ns_bn_backward_sums, written,
/// or added to `addend` (laid out as dx; dx itself to add into it, NULL for none).
void ns_bn_backward_input(long n, long c, long inner, long first, long count, const float *x, const float *dy,
                          const float *mean, const float *scale, const float *offset, int clamped, float lo, float hi,
                          const float *ga, const float *gb, const float *gc, const float *addend, float *dx);

/// A hint to the core that the caller is spinning on a shared variable (x86's `pause`): the
/// waiting loop yields the core's resources to its sibling and leaves it faster when the value
/// changes.
static inline void ns_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// A batch norm and clamp of a convolution's output written beside it in the output pass:
/// out[e] = clamp((y[e] - mean[c]) * scale[c] + offset[c], lo, hi) for every element y[e] of
/// output channel (row) c after the bias, addend and activation, `out` laid out as the output
/// (the formula of `ns_bn_forward`, so the same bits). A pre-activation block's batch norm and
/// ReLU of the sum the block before it wrote.
typedef struct {
    const float *mean, *scale, *offset;
    float lo, hi;
    float *out;
} ns_normalized_output;

/// A GEMM with the left operand packed once (a frozen convolution's weights):
/// C[m][n] = clamp(sum over k in order of A[m][k] * B[k][n] + bias[m] (+ addend[m][n]), lo, hi) (a
/// NaN stays NaN; `addend` [M x N] with leading dimension ldc, or NULL),
/// for the rows of panels [p0, p1) (`ns_pgemm_panel_rows(M)` rows each, the last one cut at M)
/// and all N columns; B [K x N] and C [M x N] row-major with leading dimensions ldb and ldc.
/// `ap` holds `ns_pgemm_packed_count(M, K)` floats written by `ns_pgemm_pack`; `scratch`
/// `ns_pgemm_scratch_count(K, N)` floats (none when N is a multiple of 16). `bias` may be NULL.
/// Each element is computed alike whatever the panels or columns of a call, so splits do not
/// change the result. `streaming`
/// nonzero writes C with non-temporal stores (where its rows are 64-byte aligned), for outputs
/// far larger than the caches, whose lines would otherwise be read before being overwritten.
long ns_pgemm_panel_rows(long M);
long ns_pgemm_packed_count(long M, long K);
long ns_pgemm_scratch_count(long K, long N);
void ns_pgemm_pack(long M, long K, const float *A, long lda, float *ap);
/// `normalized` (may be NULL): its `out` the origin of a second matrix laid out as C.
void ns_pgemm(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
              const float *bias, const float *addend, float lo, float hi, long p0, long p1, float *scratch,
              int streaming, const ns_normalized_output *normalized);

/// `ns_pgemm` for a convolution of one image without its patch matrix: the product of `ap` (M x
/// K, K = C KH KW, packed by `ns_pgemm_pack`) and the image's patch matrix, each row read from
/// the image where the tap falls (masked at the padding), for the output rows of panels [p0, p1).
/// At stride 1 the output is the input's size (kernel 2 PH + 1 by 2 PW + 1) and x is the image
/// [C, H, W]; at stride 2 (H and W even, kernel 2 P + 1 or 2 P + 2) the output is H/2 x W/2 and x
/// the image's phases written by `ns_pconv_phases`. out and addend [M, OH, OW]. The same
/// products in the same order as `ns_pgemm` on the patch matrix: the same bits. Only where
/// `ns_pconv_available` says so (AVX-512, at most 64 taps, such a geometry), or, for an image of
/// C channels, `ns_pconv_padded_available`: that, or on AVX2 a stride-1 one whose rows are whole
/// vectors and whose zero-padded copy is small (the padded path alone, without masks).
int ns_pconv_available(long H, long W, long KH, long KW, long PH, long PW, long stride);
int ns_pconv_padded_available(long C, long H, long W, long KH, long KW, long PH, long PW, long stride);
/// `normalized` (may be NULL): its `out` laid out as `out`.
void ns_pconv(long M, long C, long H, long W, long KH, long KW, long PH, long PW, long stride, const float *ap,
              const float *x, float *out, const float *bias, const float *addend, float lo, float hi, long p0, long p1,
              int streaming, const ns_normalized_output *normalized);
/// The input gradient of a "same" stride-1 convolution with few input channels (a first
/// layer's): dx [C, H, W] from dy [O, H, W] of one image. First z = A . dy by `ns_pgemm` (A [KH KW
/// C x O], row (t C + c) = the weights w[o][c][t] of tap t, packed by `ns_pgemm_pack`): every
/// tap's contribution to every pixel, all loads whole rows of dy, none masked; then dx[c][y][x]
/// = the sum over the taps t = (i, j) in order of z[t C + c][y - i + PH][x - j + PW] where
/// inside the plane. The masked reads of the direct convolution with the flipped kernels
/// (masked loads take a slot of the FMA ports on Intel's cores) fall to one per tap and vector
/// of dx. `scratch`: `ns_conv_dx_few_scratch_count` floats. Where `ns_conv_dx_few_available`
/// (any machine).
enum { NS_CONV_DX_FEW_CHANNELS = 4 };
int ns_conv_dx_few_available(long C, long KH, long KW, long PH, long PW);
long ns_conv_dx_few_scratch_count(long C, long O, long H, long W, long KH, long KW);
void ns_conv_dx_few(long C, long O, long H, long W, long KH, long KW, long PH, long PW, const float *ap,
                    const float *dy, float *dx, float *scratch);
/// The input gradient of a halving convolution (K x K, K = 1 or 3, padding K / 2, stride 2, H and
/// W even) for `images` images: dx [images, C, H, W] from dy [O, images H / 2 W / 2] (the images'
/// planes side by side in rows `lddy` apart; one image's dy in NCHW with lddy its plane), written
/// (`accumulate` zero) or added to (dx + the sum, `accumulate` nonzero). First z = A . dy by
/// `ns_pgemm` (A [K K C x O] as for `ns_conv_dx_few`, packed by `ns_pgemm_pack`; several images
/// side by side read A once, which for deep layers on small planes is most of the traffic), then
/// dx[c][y][x] = the sum over the taps (kh, kw) in order of z[(kh K + kw) C + c][i][j] where
/// y = 2 i + kh - K / 2 and x = 2 j + kw - K / 2 (zero where no tap reaches: a 1x1's odd rows and
/// columns). No patch matrix, no col2im, no zero fill. `scratch`: `ns_conv_dx_s2_scratch_count`
/// floats (for up to that many images). Where `ns_conv_dx_s2_available` (any machine).
int ns_conv_dx_s2_available(long H, long W, long KH, long KW, long PH, long PW);
long ns_conv_dx_s2_scratch_count(long C, long O, long H, long W, long K, long images);
void ns_conv_dx_s2(long C, long O, long H, long W, long K, long images, const float *ap, const float *dy, long lddy,
                   float *dx, int accumulate, float *scratch);
/// Its second step alone, from z [K K C x images H / 2 W / 2] (rows ldz apart) computed elsewhere:
/// rows tap-major as above (`channelMajor` zero) or channel-major (row c K K + tap, the patch
/// matrix's order, as sgemm writes Wᵀ . dy).
void ns_conv_dx_s2_gather(long C, long H, long W, long K, long images, const float *z, long ldz, int channelMajor,
                          float *dx, int accumulate);
/// `ns_gemm_nt_lanes` for a shallow convolution's weight gradient without its patch matrix: for
/// one image, lanes[(m N + n) 16 + l] += the products of dy [M, OH OW] and the patch rows n of x
/// [C, H, W] (n = c KH KW + tap, read in place under their masks; with `ones` not NULL, a last
/// row of ones for the bias's sums, N = C KH KW + 1: `ns_conv_dw_ones_count` ones, read like the
/// image's rows, or like a zero-padded copy's where the patch rows are read from one). Stride 1
/// (output the input's size) or 2 (output H / 2 x W / 2, x then the image's phases from
/// `ns_pconv_phases`, or for a 1x1 kernel `ns_pconv_even_phase`), where `ns_pconv_available` says
/// so, N at most `NS_CONV_DW_MAX_ROWS` (32 channels of 3x3 and the row of ones). `masks`
/// (`ns_conv_dw_masks_count` entries for the output's OH x OW, `ones` nonzero when the row of
/// ones is read) from `ns_conv_dw_masks` with the same stride, and the row of ones (counted for
/// the output's size), once per geometry. `next_dy`: the next image's dy where the caller goes
/// on to it (NULL for none), whose first rows the last row group fetches ahead.
enum { NS_CONV_DW_MAX_ROWS = 32 * 9 + 1 };
long ns_conv_dw_masks_count(long C, long H, long W, long KH, long KW, int ones);
void ns_conv_dw_masks(long C, long H, long W, long KH, long KW, long PH, long PW, long stride, int ones,
                      unsigned short *masks);
long ns_conv_dw_ones_count(long H, long W, long PW);
void ns_conv_dw_lanes(long M, long C, long H, long W, long KH, long KW, long PH, long PW, long stride,
                      const float *ones, const unsigned short *masks, const float *dy, const float *next_dy,
                      const float *x, float *lanes);
/// Channels [c0, c1) of x [C, H, W] (H, W even) split into the four phases of each plane:
/// phases[c][2 a + b][y][x] = x[c][2 y + a][2 x + b].
void ns_pconv_phases(const float *x, long H, long W, long c0, long c1, float *phases);
/// Only the first of those phases (even rows, even columns), all a 1x1 stride-2 convolution reads;
/// the others are left as they were.
void ns_pconv_even_phase(const float *x, long H, long W, long c0, long c1, float *phases);

/// The same product for N < 16 columns (an image's small map), the lanes over 16 rows of C:
/// A packed by `ns_pgemm_narrow_pack` (`ns_pgemm_narrow_packed_count(M, K)` floats) in panels of
/// 16 rows, read once. Panels [p0, p1).
enum { NS_PGEMM_NARROW_ROWS = 16 };
long ns_pgemm_narrow_packed_count(long M, long K);
void ns_pgemm_narrow_pack(long M, long K, const float *A, long lda, float *ap);
void ns_pgemm_narrow(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
                     const float *bias, const float *addend, float lo, float hi, long p0, long p1);
/// Rows [0, rows) of `images` matrices [rows x plane] (`stride` floats apart from src) side by
/// side: dst[r][i * plane + q] = src[i * stride + r * plane + q] (dst rows images * plane long).
void ns_gather_images(long rows, long plane, long images, const float *src, long stride, float *dst);

/// C [M x N] = A [M x K] . B [K x N], all row-major, N a multiple of NS_GEMM_ROWS_COLUMNS, with
/// neither operand packed: A read in place row by row (each element broadcast), B's rows 16 or 32
/// columns at a time. For products too small for sgemm's packing to pay, whose B is laid out once (a frozen
/// Winograd convolution's transformed kernels against a block's tiles). Each element sums its K
/// products in k order.
enum { NS_GEMM_ROWS_COLUMNS = 16 };
void ns_gemm_rows(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *C, long ldc);

/// The same for N <= 16 columns from several images of P columns each (a batch's small maps side
/// by side in B): column n is written to image n / P of C and read from the same of the addend,
/// `cstride` floats apart, at column n mod P. The weights are read once for all of them.
void ns_pgemm_narrow_images(long M, long N, long K, const float *ap, const float *B, long ldb, float *C, long ldc,
                            long P, long cstride, const float *bias, const float *addend, float lo, float hi, long p0,
                            long p1);

/// Rows [r0, r1) of one image's patch matrix (row r at col + r * plane) from a table of input
/// offsets per tap and output pixel (table[t * plane + p], -1 for padding): row c * taps + t,
/// pixel p is x[c * HW + table[t * plane + p]], or 0.
void ns_im2col_table(const float *x, long HW, const int *table, long taps, long plane, long r0, long r1, float *col);

/// Rows [r0, r1) of the patch matrix of a stride-2 convolution of one image (`x` its first
/// channel's plane, H x W; row r = (c * KH + i) * KW + j at col + r * ldcol, OH * OW columns):
/// each channel split once into the four phases of its zero-padded plane, in `scratch`
/// (`ns_im2col_s2_scratch` floats), where every row is OH contiguous runs.
long ns_im2col_s2_scratch(long H, long W, long PH, long PW);
void ns_im2col_s2(const float *x, long H, long W, long KH, long KW, long PH, long PW, long OH, long OW, long r0,
                  long r1, float *col, long ldcol, float *scratch);

/// The calling thread's depth of `Parallel.serially` scopes (0: outside any): work started inside
/// one runs on the calling thread alone.
int ns_serial_depth(void);
void ns_set_serial_depth(int depth);

/// Nonzero: the kernels whose AVX-512 paths are chosen by hand (the packed GEMM's panels, the
/// in-place convolutions) take the paths of a machine without AVX-512, so that tests cover
/// those on any machine. Set before any weights are packed.
int ns_portable_kernels(void);
void ns_set_portable_kernels(int on);
/// For tests: `ns_pconv` and `ns_conv_dw_lanes` read the image under their masks even where they
/// would read a zero-padded copy of it.
int ns_masked_image_reads(void);
void ns_set_masked_image_reads(int on);

/// C[m][n] = sum over k of A[m][k] * BT[n][k] for m < M, n < N: dot products along k, four rows
/// against four columns at a time. For GEMMs with few columns (N up to 8 or so), it reads each row
/// of A once where sgemm would first copy all of A into its packed layout; for a shallow
/// convolution's weight gradient (N up to 32, k over the pixels) it runs at full vector width
/// where sgemm's blocking does not. Each element sums 16 lanes of products in
/// k order, then the lanes, then the remaining k.
void ns_gemm_small_n(long M, long N, long K, const float *A, long lda, const float *BT, long ldb, float *C, long ldc);

/// Partial sums of A . B^T (A [M, K], B [N, K], both row-major) kept in 16 lanes per element and
/// accumulated across calls: lanes[(m N + n) 16 + l] += sum over k = l (mod 16) of A[m][k] B[n][k],
/// the last K % 16 products in the first lanes. For the weight gradient of a shallow
/// convolution (N up to about 32 patch rows, K an image's pixels), summed over the images of a
/// piece without reducing the lanes per image. `ns_lanes_add` then adds each element's 16 lanes,
/// in order, to out[i] for i < count.
enum { NS_GEMM_LANES = 16 };
void ns_gemm_nt_lanes(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *lanes);
void ns_lanes_add(long count, const float *lanes, float *out);

#endif
