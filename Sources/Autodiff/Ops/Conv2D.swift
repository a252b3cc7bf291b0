import CKernels
import Foundation

/// 2-D convolution (PyTorch's `conv2d`: cross-correlation) with stride, zero padding and groups.
///
/// Dense and grouped convolutions run as im2col plus one `cblas_sgemm` per group over a chunk of
/// images, so the GEMMs stay large even for the 2x2 maps at the end of VGG. Depthwise
/// convolutions (one input channel per group) use a direct kernel instead: their GEMMs would be
/// a single row deep.

/// The sizes of one convolution, validated.
public struct Conv2DGeometry: Equatable, Sendable {
    public let batch: Int, inChannels: Int, height: Int, width: Int
    public let outChannels: Int, kernelH: Int, kernelW: Int
    public let strideH: Int, strideW: Int, padH: Int, padW: Int, groups: Int
    public let outH: Int, outW: Int

    public var inPerGroup: Int { inChannels / groups }
    public var outPerGroup: Int { outChannels / groups }
    /// Rows of one group's im2col matrix: input channels x kernel taps.
    public var colRows: Int { inPerGroup * kernelH * kernelW }
    public var outPlane: Int { outH * outW }
    public var inPlane: Int { height * width }
    /// True for depthwise convolutions (one input channel per group) with kernels of at most 64
    /// taps, which use the direct kernel (larger ones go through im2col like any grouped conv).
    public var isDepthwise: Bool { groups > 1 && inPerGroup == 1 && kernelH * kernelW <= 64 }
    /// True when the input is its own patch matrix: 1x1 kernel, stride 1, no padding.
    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0 }
    /// Floating-point operations of the forward pass (a multiply-add counts 2).
    public var forwardFLOPs: Double {
        2 * Double(batch) * Double(outChannels) * Double(colRows) * Double(outPlane)
    }

    /// Checks a convolution's shapes.
    /// - Parameters:
    ///   - input: [N, C, H, W]
    ///   - weight: [O, C / groups, kH, kW]
    ///   - bias: [O] or nil
    public static func validate(input: [Int], weight: [Int], bias: [Int]?,
                                stride: (Int, Int), padding: (Int, Int), groups: Int) throws -> Conv2DGeometry {
        let op = "conv2d"
        try require(input.count == 4, op, "input \(input) must be [N, C, H, W]")
        try require(weight.count == 4, op, "weight \(weight) must be [O, C/groups, kH, kW]")
        try require(groups >= 1, op, "groups \(groups) must be >= 1")
        try require(weight[2] >= 1 && weight[3] >= 1 && weight[0] >= 1, op, "weight \(weight) has an empty kernel or no filters")
        try require(stride.0 >= 1 && stride.1 >= 1, op, "stride \(stride) must be >= 1")
        try require(padding.0 >= 0 && padding.1 >= 0, op, "padding \(padding) must be >= 0")
        try require(input[1] % groups == 0 && weight[0] % groups == 0, op,
                    "input \(input) channels and weight \(weight) output channels must both divide by groups \(groups)")
        try require(weight[1] == input[1] / groups, op,
                    "input \(input) and weight \(weight): weight dim 1 must be C/groups = \(input[1] / groups)")
        if let bias {
            try require(bias == [weight[0]], op, "bias \(bias) does not match weight \(weight): expected [\(weight[0])]")
        }
        let oh = (input[2] + 2 * padding.0 - weight[2]) / stride.0 + 1
        let ow = (input[3] + 2 * padding.1 - weight[3]) / stride.1 + 1
        try require(input[2] + 2 * padding.0 >= weight[2] && input[3] + 2 * padding.1 >= weight[3], op,
                    "input \(input) with padding \(padding) is smaller than the kernel of weight \(weight)")
        return Conv2DGeometry(batch: input[0], inChannels: input[1], height: input[2], width: input[3],
                              outChannels: weight[0], kernelH: weight[2], kernelW: weight[3],
                              strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
                              groups: groups, outH: oh, outW: ow)
    }

    /// The range of output columns `ow` whose input column `ow*strideW - padW + j` lies inside
    /// the image, for kernel column `j` (empty when none do).
    @inline(__always) func validColumns(_ j: Int) -> Range<Int> {
        // iw = ow*s - p + j in [0, W)  <=>  ow in [ceil((p-j)/s), floor((W-1+p-j)/s)]
        let lo = max(0, ceilDiv(padW - j, strideW))
        let hi = min(outW, floorDiv(width - 1 + padW - j, strideW) + 1)
        return lo < hi ? lo..<hi : 0..<0
    }

    /// Likewise for output rows and kernel row `i`.
    @inline(__always) func validRows(_ i: Int) -> Range<Int> {
        let lo = max(0, ceilDiv(padH - i, strideH))
        let hi = min(outH, floorDiv(height - 1 + padH - i, strideH) + 1)
        return lo < hi ? lo..<hi : 0..<0
    }

    /// Visits, for every kernel tap `(i, j)` (index `tap = i*kW + j`) and every output row `oh`
    /// it touches inside the image, the offset in the input plane of the element that output
    /// column 0 would read (`(oh*sH - pH + i)*W - pW + j`) and the output columns whose reads
    /// are inside the image. Taps and rows come in a fixed order.
    @inline(__always)
    func forEachTapRow(_ body: (_ tap: Int, _ oh: Int, _ inOffset: Int, _ columns: Range<Int>) -> Void) {
        for i in 0..<kernelH {
            let rows = validRows(i)
            for j in 0..<kernelW {
                let columns = validColumns(j)
                for oh in rows { body(i * kernelW + j, oh, (oh * strideH - padH + i) * width - padW + j, columns) }
            }
        }
    }
}

/// `dst[k] += a * src[k * stride]` for `k` in `columns`: one tap row of a forward convolution.
@inline(__always)
func addStridedRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, stride: Int,
                   scale a: Float, _ columns: Range<Int>) {
    if stride == 1 {
        for k in columns { dst[k] += a * src[k] }
    } else {
        for k in columns { dst[k] += a * src[k * stride] }
    }
}

/// `dst[k * stride] += a * src[k]` for `k` in `columns`: the adjoint of `addStridedRow`.
@inline(__always)
func addRowStrided(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, stride: Int,
                   scale a: Float, _ columns: Range<Int>) {
    if stride == 1 {
        for k in columns { dst[k] += a * src[k] }
    } else {
        for k in columns { dst[k * stride] += a * src[k] }
    }
}

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
@inline(__always) func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }

/// Tuning of the im2col path.
public enum Conv2DTuning {
    /// Floats of im2col scratch per worker: each worker cuts its images into blocks of whole
    /// images this size (at least one image), so a block's patch matrix stays in the core's cache
    /// between im2col and the GEMM that reads it.
    nonisolated(unsafe) public static var columnBudget = 1 << 19
    /// Output planes at least this large (in pixels) are computed one image per GEMM, reading and
    /// writing NCHW in place: no scatter or gather, and no im2col at all for 1x1 stride-1 convs.
    nonisolated(unsafe) public static var directPlane = 256
    /// Output rows shorter than this (in pixels) are written by im2col through a per-tap offset
    /// table instead of row by row.
    nonisolated(unsafe) public static var shortRow = 8
    /// Fewer images than GEMM pieces (inference) on maps of at most this many pixels (2x2, 1x1)
    /// multiply by a kernel that reads the weights once (`ns_gemm_small_n`) instead of sgemm,
    /// which packs them first.
    nonisolated(unsafe) public static var smallColumns = 8
    /// Depthwise outputs of at most this many pixels (one output channel per input channel) are
    /// computed channel-blocked forward rather than plane by plane: a plane's fixed costs (copies
    /// into a padded buffer, one per row) outweigh its few pixels' arithmetic (MobileNetV2's 4x4
    /// and 2x2 maps at batch 32: 0.2 ms a layer instead of 1.0).
    nonisolated(unsafe) public static var depthwiseBlockedPlane = 16
    /// For tests: the kernels take the paths of a machine without AVX-512 where the choice is
    /// made by hand (the packed GEMM's 4-row panels, im2col instead of reading in place, the
    /// depthwise planes through a padded copy), so that those paths are covered on any machine.
    /// Frozen convolutions decide their path on their first call with a shape under the setting
    /// of that time.
    public static var portableKernels: Bool {
        get { ns_portable_kernels() != 0 }
        set { ns_set_portable_kernels(newValue ? 1 : 0) }
    }
    /// Whether this machine runs the kernels that read a convolution's patch rows from the image
    /// under the taps' masks (AVX-512, `portableKernels` off), which `Conv2DAlgorithm.fewChannels`
    /// and the halving convolutions' in-place paths need. Without them (AVX2) only a zero-padded
    /// small image is read in place: a first layer's forward and weight gradient.
    public static var maskedImageKernels: Bool { ns_pconv_available(32, 32, 3, 3, 1, 1, 1) != 0 }
    /// For tests: the convolutions that read the image in place (a shallow one's forward and
    /// weight gradient, a frozen one's packed forward) read it under the taps' masks even where its
    /// rows are whole vectors, which they otherwise read from a zero-padded copy (the same sums in
    /// the same order).
    public static var maskedImageReads: Bool {
        get { ns_masked_image_reads() != 0 }
        set { ns_set_masked_image_reads(newValue ? 1 : 0) }
    }
    /// Training convolutions of few channels (`Conv2DAlgorithm.fewChannels`) on output planes of
    /// at least this many pixels compute their weight gradient as lane sums along the pixels
    /// (`ns_conv_dw_lanes`, the image read in place) rather than by Winograd; below it with 16-pixel
    /// rows the lane sums' blocks are too short. Where Winograd does not apply, always. Batch 128,
    /// backward ms, before / after: 16 -> 16 on 32x32 5.0 / 4.6, 16 -> 24 on 32x32 (with
    /// Winograd's) 8.6 / 7.0, 24 -> 24 on 32x32 12.6 / 10.1, but 24 -> 24 on 16x16 2.6 / 3.3;
    /// sgemm's 8 -> 8 on 32x32 3.1 / 2.6 and 12 -> 12 on 16x16 2.3 / 1.5.
    nonisolated(unsafe) public static var fewChannelsLanesPlane = 1024
    /// Halving convolutions (1x1 or 3x3, stride 2) compute their input gradient as every tap's
    /// contribution (a GEMM on dOut) gathered into the input's even and odd rows and columns
    /// (`ns_conv_dx_s2_gather`), rather than as a patch matrix's gradient scattered by col2im.
    /// Off: col2im everywhere.
    nonisolated(unsafe) public static var halvingInputGradient = true
    /// Where halving convolutions of one group (3x3/2 or 1x1/2, even planes, fewer than
    /// `NS_CONV_DW_MAX_ROWS` patch rows; AVX-512, which has the masked loads) compute their weight
    /// gradient as lane sums along the pixels, each image's phases read in place
    /// (`ns_conv_dw_lanes`), rather than by sgemm on the patch matrix and a copy of dOut:
    /// `.auto` where that pays (`GEMMConv.halvingLanesPay`), `.always` wherever it applies (for
    /// tests), `.off` nowhere.
    public enum HalvingLanes: Sendable { case auto, always, off }
    nonisolated(unsafe) public static var halvingLanes = HalvingLanes.auto
    /// Of those, the ones with at most this many output channels compute the contributions by the
    /// packed GEMM (`ns_conv_dx_s2`: the weights packed tap by tap, dOut read in place), the others
    /// by sgemm (Wᵀ . dOut, the patch matrix's gradient). Input gradients at batch 128, 4
    /// alternating rounds, col2im / packed / sgemm (ms): 16 -> 32 channels on 32x32 4.2 / 1.8 /
    /// 2.2, 32 -> 64 on 16x16 2.9 / 1.8 / 1.7, 64 -> 128 on 8x8 1.6 / 1.8 / 1.4, 1x1 16 -> 32
    /// 0.82 / 0.43 / 0.45 and 32 -> 64 0.54 / 0.28 / 0.34, 128 -> 256 on 16x16 23.3 / 19.9 /
    /// 17.7, 256 -> 512 on 8x8 19.6 / 26.5 / 18.5 (the packed GEMM is made for short products).
    nonisolated(unsafe) public static var halvingPackedDepth = 64
    /// Frozen convolutions on planes too small for 16-column tiles (4x4 and smaller) run on the
    /// narrow kernel (`ns_pgemm_narrow`, images side by side up to 16 columns) also for a batch
    /// when their weights are at most this many floats (16 MB). Larger ones go through sgemm with
    /// the images side by side, which reads them once per batch. ResNet-50 x0.25's last nine
    /// blocks at batch 32: 1.55 -> 1.22 ms (image by image, at 1 MB); 4 MB rather than 1 MB,
    /// profiled at batch 32, alternating: MobileNetV2 x1.0 13.2 -> 12.6 ms, ResNet-50 x1.0
    /// 29.6-30.2 -> 28.8-29.2 ms; 16 MB then no better. With the images side by side (1x1 maps
    /// 16 a call), 16 MB rather than 4: ResNet-50 x1.0's last stride-2 shortcut (2 M weights)
    /// 1.47-1.58 -> 1.12-1.18 ms at batch 32 (3 alternating rounds).
    nonisolated(unsafe) public static var narrowBatchWeights = 1 << 22
    /// Outputs of frozen convolutions (`PackedGEMMConv`, a batch) of at least this many bytes are
    /// written with streaming stores, past the caches: their lines are not read first, which for
    /// MobileNetV2's 1x1 expansions at batch 32 (12 MB each) took 40% of the layer's time. 2 MB
    /// rather than 8 (engine profile at batch 32, 3-4 alternating rounds): MobileNetV2 x1.0's
    /// first block's 4 MB 1x1 outputs 0.66-0.82 -> 0.51-0.55 ms and 0.36-0.49 -> 0.20-0.24 ms,
    /// the net 12.7-14.1 -> 12.4-13.1 ms; PreAct ResNet-18 x0.25's 2 MB 16-channel layers no
    /// slower (3.8-7.0 -> 3.9-4.4 ms together, a noisy sitting). Later, with the consumers of
    /// those outputs faster (a depthwise layer reading its input in place), streaming past the
    /// cache cost the next layer more than it saved: it then reads the whole output back from
    /// memory (MobileNetV2 x1.0's stride-2 depthwise layer on a streamed 12 MB input 1.14 ms
    /// against ONNX Runtime's 0.44). 32 MB rather than 2 (alternating whole-net runs at batch 32,
    /// 10 pairs each): MobileNetV2 x1.0 median 0.95x (faster in 9 of 10), PreAct ResNet-18 x0.25
    /// 0.92x (8 of 10); ResNet-50 x1.0, VGG-11 x1.0 and PreAct ResNet-18 x1.0 within noise
    /// (4 pairs each). Outputs of 32 MB or more outgrow a Zen 4 core complex's L3 anyway.
    nonisolated(unsafe) public static var streamingBytes = 32 << 20
    /// Frozen convolutions on maps of fewer pixels than their kernel window has taps run as one
    /// GEMM of the batch with expanded kernels (`DenseMapConv`) from this many images on, when
    /// the expanded kernels have at most `denseMapMaxWeights` values. Batch 32, alternating
    /// builds: 3x3 convolutions on ResNet-50 x0.25's 2x2 maps (64 channels, 65 K expanded
    /// values) 0.062 -> 0.040 ms, the net 2.29-2.40 -> 2.18-2.22 ms; VGG-11 x1.0's 512-channel ones
    /// (4.2 M) slower than Winograd's F(2,3) (the net 30.7-31.1 -> 32.2-32.5 ms), ResNet-50
    /// x1.0's 256-channel ones (1 M) too (29.5 -> 30.2 ms).
    nonisolated(unsafe) public static var denseMapMinBatch = 8
    nonisolated(unsafe) public static var denseMapMaxWeights = 1 << 19
    /// Training convolutions whose products are at most this deep (input channels times kernel
    /// taps) run forward on the packed-weight tiles (`PackedGEMMConv`) instead of sgemm, and
    /// their weight gradient as dot products along the pixels (`ns_gemm_nt_lanes`).
    nonisolated(unsafe) public static var packedMaxDepth = 32
    /// Channels the depthwise kernels process together (one output channel per input channel).
    public static let depthwiseLanes = Int(NS_DEPTHWISE_LANES)

    /// Whether 3x3 stride-1 padding-1 convolutions use Winograd's algorithm (`WinogradConv`).
    public enum Winograd: Hashable, Sendable {
        /// Where it pays: both channel counts at least `winogradMinChannels`, and the tile size
        /// with the fewest multiplies needing at most half the direct convolution's.
        case auto
        /// Never: im2col and GEMM.
        case off
        /// Always where it applies, with output tiles of this size (2 or 4).
        case tile(Int)
    }
    nonisolated(unsafe) public static var winograd = Winograd.auto
    /// Input and output channels below which `.auto` keeps im2col: the GEMMs' inner dimension is
    /// the input channel count, too short below this to beat im2col's 9x longer one.
    nonisolated(unsafe) public static var winogradMinChannels = 16
    /// The same for frozen convolutions (`FrozenConv2D`), whose other path reads the image in
    /// place with the weights packed once: 16-channel layers ran faster there at batch 32
    /// (PreAct ResNet-18 x0.25's 32x32 layers 1.06-1.10 -> 0.81-0.98 ms, ResNet-50 x0.25's first
    /// stage 0.063-0.067 -> 0.048-0.050 ms a layer), 32 channels and more on Winograd's. Frozen
    /// convolutions on maps the narrow kernel takes (`PackedGEMMConv.narrow`) skip Winograd too
    /// (VGG-11 x0.25's 2x2 layers at batch 32: 0.26-0.29 -> 0.22 ms).
    nonisolated(unsafe) public static var frozenWinogradMinChannels = 32
    /// Floats of transformed input and output per block (per worker), which sets the tiles per
    /// block: the block's transforms stay in the core's cache for the GEMMs that read them.
    nonisolated(unsafe) public static var winogradBudget = 1 << 18
    /// The fewest tiles per block, however many channels: the GEMMs' column count.
    nonisolated(unsafe) public static var winogradMinTiles = 128
    /// What reading one weight from memory costs in multiply-adds, in `.auto`'s choice of
    /// algorithm: with few images (inference), a convolution's time goes to streaming its
    /// weights, and Winograd's transformed kernels are (m + 2)^2 / 9 times larger.
    nonisolated(unsafe) public static var weightStreamCost = 10
    /// Bytes of weights up to which an inference engine's net keeps them in the caches between
    /// runs (then `weightStreamCost` does not apply to its convolutions): a quarter of the
    /// cache a core reaches quickly (`weightCacheBytes`), room for Winograd's 4x larger
    /// transformed kernels: 8 MB on an AMD EPYC VM (32 MB L3 per core complex), 512 KB on an
    /// Intel Xeon VM (2 MB L2; its 260 MB L3 is the whole socket's). 8 MB where sysfs says nothing.
    nonisolated(unsafe) public static var cachedWeightBytes: Int = weightCacheBytes(cacheSizes()) / 4

    /// The cache that weights kept between runs stay in, from the sizes per level
    /// (`cacheSizes`): the last level where it is at most 128 MB, as a core complex's own L3 is
    /// (an AMD EPYC's 32 MB, with V-Cache 96) or a client CPU's; a larger one is a whole server
    /// socket's, shared over a mesh with cores outside this machine (an Intel Xeon VM reports
    /// 260 MB) and slow to read from, so the level below it counts. There, taking weights that fit
    /// in a quarter of that L3 as free made Winograd win where the direct kernels were faster:
    /// with this rule, alternating whole-net runs at batch 1 on that VM (6 pairs each) took VGG-11
    /// x0.25 0.73x the time, PreAct ResNet-18 x0.25 0.88x, VGG-11 x1.0 0.76x, PreAct ResNet-18
    /// x1.0 0.76x, ResNet-50 x0.25 1.02x. 32 MB where sysfs says nothing.
    public static func weightCacheBytes(_ sizes: [Int: Int]) -> Int {
        let levels = sizes.keys.sorted(by: >)
        guard let last = levels.first else { return 32 << 20 }
        if sizes[last]! <= 128 << 20 || levels.count == 1 { return sizes[last]! }
        return sizes[levels[1]]!
    }

    /// The data (or unified) caches of CPU 0 as Linux's sysfs describes them: bytes of one
    /// instance (what a core reaches) per level; empty without a readable directory. Not glibc's
    /// `_SC_LEVEL3_CACHE_SIZE`, which on AMD CPUs reports the L3 of every core complex of the
    /// host together (320 MB on an AMD EPYC VM whose cores each reach 32 MB).
    public static func cacheSizes(sysfs: String = "/sys/devices/system/cpu/cpu0/cache") -> [Int: Int] {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var sizes: [Int: Int] = [:]
        for index in (try? FileManager.default.contentsOfDirectory(atPath: sysfs)) ?? [] where index.hasPrefix("index") {
            func read(_ name: String) -> String? {
                (try? String(contentsOfFile: "\(sysfs)/\(index)/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard let level = read("level").flatMap({ Int($0) }), let text = read("size"), read("type") != "Instruction" else { continue }
            let scale = text.last.flatMap { units[$0] } ?? 1
            guard let number = Int(scale == 1 ? text : String(text.dropLast())), number > 0 else { continue }
            sizes[level] = max(sizes[level] ?? 0, number * scale)
        }
        return sizes
    }

    /// The fewest multiply-accumulates (direct) of a call for which cached weights count as free
    /// in `.auto`'s choice: below it Winograd's transforms and sixteen small GEMMs cost more than
    /// they save (ResNet-50 x0.25's 32-channel 3x3 layers on 4x4 maps at batch 1, 147 K: 0.0033 ms
    /// direct, 0.0052 ms by F(2,3); PreAct ResNet-18 x0.25's 64-channel layers on 8x8, 2.4 M: 0.025
    /// ms direct, 0.019-0.021 ms by F(4,3)).
    nonisolated(unsafe) public static var cachedWinogradMinMACs = 1 << 20
}

/// How a convolution is computed.
public enum Conv2DAlgorithm: Equatable, Sendable, CustomStringConvertible {
    /// The direct depthwise kernels (`CKernels`).
    case depthwise
    /// im2col and GEMM (`GEMMConv`); in training, a halving stride-2 convolution's forward runs
    /// on the packed tiles reading the image's phases (`PackedGEMMConv.takesTrainingForward`), and
    /// its input gradient is gathered from the taps' contributions (`ns_conv_dx_s2_gather`).
    case im2col
    /// im2col and a GEMM with the weights packed once (`PackedGEMMConv`): frozen weights only.
    case packedGEMM
    /// Winograd's F(tile x tile, 3 x 3) (`WinogradConv`).
    case winograd(tile: Int)
    /// One GEMM of a batch with the kernels expanded over a map smaller than their window
    /// (`DenseMapConv`): frozen weights only.
    case denseMap
    /// A training convolution at most `Conv2DTuning.packedMaxDepth` deep (a first layer): forward
    /// on the packed tiles (with at least an image per piece), the weight gradient as lane sums
    /// along the pixels (both reading the image in place where they can), and a fresh input
    /// gradient of a few channels as every tap's contribution to every pixel (one GEMM), shifted and summed.
    case shallow
    /// A "same" stride-1 training convolution of fewer than 32 input channels
    /// (`PackedGEMMConv.sameStrideOne`): forward on the packed tiles reading the image; a fresh
    /// input gradient as the packed forward of the output gradient with the flipped kernels
    /// (where that one has fewer than 32 input channels too); the weight gradient as lane sums
    /// along the pixels, or by Winograd's on maps below `Conv2DTuning.fewChannelsLanesPlane`.
    case fewChannels

    public var description: String {
        switch self {
        case .depthwise: return "depthwise"
        case .im2col: return "im2col"
        case .packedGEMM: return "packed GEMM"
        case let .winograd(tile): return "winograd F(\(tile),3)"
        case .shallow: return "shallow"
        case .fewChannels: return "few channels"
        case .denseMap: return "dense map"
        }
    }
}

extension Conv2DGeometry {
    /// The algorithm `conv2d` uses for this geometry under the current `Conv2DTuning`.
    public var algorithm: Conv2DAlgorithm { algorithm(frozenWeights: false) }

    /// The algorithm `conv2d` (or, with `frozenWeights`, `FrozenConv2D`, whose weights stay in
    /// the caches between calls with `weightsCached`) uses for this geometry under the current
    /// `Conv2DTuning`.
    public func algorithm(frozenWeights: Bool, weightsCached: Bool = false) -> Conv2DAlgorithm {
        let run = KernelWindow(self)?.geometry ?? self
        if run.isDepthwise { return .depthwise }
        if frozenWeights, DenseMapConv.takes(run) { return .denseMap }
        if !frozenWeights, PackedGEMMConv.sameStrideOne(run), PackedGEMMConv.takesTrainingForward(run) { return .fewChannels }
        if let winograd = WinogradConv(run, frozenWeights: frozenWeights, weightsCached: weightsCached) {
            return .winograd(tile: winograd.tile)
        }
        if frozenWeights, PackedGEMMConv.takes(run) { return .packedGEMM }
        if !frozenWeights, run.colRows <= Conv2DTuning.packedMaxDepth { return .shallow }
        return .im2col
    }
}

/// Calls `body(piece, first, count)` for consecutive blocks of at most `block` items of each of
/// the `Parallel.gemmPieces` contiguous ranges that cut `0..<count`: pieces run concurrently, a
/// piece's blocks in order. The blocks depend only on `count`, `block` and the machine.
func forEachPieceBlock(count: Int, block: Int, _ body: (_ piece: Int, _ first: Int, _ count: Int) -> Void) {
    let pieces = Parallel.gemmPieces
    Parallel.forEach(pieces) { k in
        let hi = count * (k + 1) / pieces
        var first = count * k / pieces
        while first < hi {
            let n = min(block, hi - first)
            body(k, first, n)
            first += n
        }
    }
}

/// The part of a kernel that reads the image: on small maps whole kernel rows or columns read
/// only padding, for every output (a 3x3 kernel with padding 1 on a 1x1 map reads only its
/// centre). The convolution restricted to them, its padding cut by as much, computes the same
/// output with that many fewer multiplies and weights to read.
struct KernelWindow {
    let rows: Range<Int>, columns: Range<Int>
    /// The full geometry and the restricted one.
    let full: Conv2DGeometry, geometry: Conv2DGeometry

    /// nil when every kernel row and column reads the image somewhere (or none does).
    init?(_ g: Conv2DGeometry) {
        let rows = (0..<g.kernelH).filter { !g.validRows($0).isEmpty }
        let columns = (0..<g.kernelW).filter { !g.validColumns($0).isEmpty }
        guard let r0 = rows.first, let r1 = rows.last, let c0 = columns.first, let c1 = columns.last,
              r1 - r0 + 1 < g.kernelH || c1 - c0 + 1 < g.kernelW else { return nil }
        let kh = r1 - r0 + 1, kw = c1 - c0 + 1, ph = g.padH - r0, pw = g.padW - c0
        // Output (oh, ow) reads input (oh*s - ph + i', ...) = (oh*s - padH + i, ...) for i = i' + r0:
        // the same pixels, provided the padding (the same on both sides) gives the same output size.
        guard ph >= 0, pw >= 0, g.height + 2 * ph >= kh, g.width + 2 * pw >= kw,
              (g.height + 2 * ph - kh) / g.strideH + 1 == g.outH,
              (g.width + 2 * pw - kw) / g.strideW + 1 == g.outW else { return nil }
        self.rows = r0..<(r1 + 1)
        self.columns = c0..<(c1 + 1)
        full = g
        geometry = Conv2DGeometry(batch: g.batch, inChannels: g.inChannels, height: g.height, width: g.width,
                                  outChannels: g.outChannels, kernelH: kh, kernelW: kw, strideH: g.strideH, strideW: g.strideW,
                                  padH: ph, padW: pw, groups: g.groups, outH: g.outH, outW: g.outW)
    }

    /// The restricted kernels [O, C/groups, rows, columns] of the full ones.
    func slice(_ weight: Tensor) -> Tensor {
        let out = Tensor(uninitialized: [full.outChannels, full.inPerGroup, rows.count, columns.count])
        let src = weight.data, dst = out.data, kernels = full.outChannels * full.inPerGroup
        for q in 0..<kernels {
            for (i, r) in rows.enumerated() {
                for (j, c) in columns.enumerated() {
                    dst[(q * rows.count + i) * columns.count + j] = src[(q * full.kernelH + r) * full.kernelW + c]
                }
            }
        }
        return out
    }

    /// Adds the restricted kernels' gradient into the full kernels' (zero elsewhere).
    func addGradient(_ restricted: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>) {
        let kernels = self.full.outChannels * self.full.inPerGroup, kh = self.full.kernelH, kw = self.full.kernelW
        for q in 0..<kernels {
            for (i, r) in rows.enumerated() {
                for (j, c) in columns.enumerated() {
                    full[(q * kh + r) * kw + c] += restricted[(q * rows.count + i) * columns.count + j]
                }
            }
        }
    }
}

/// 2-D convolution.
/// - Parameters:
///   - x: [N, C, H, W]
///   - weight: [O, C / groups, kH, kW] (OIHW)
///   - bias: [O], optional
/// - Returns: [N, O, outH, outW], `outH = (H + 2*padH - kH) / strideH + 1`
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                   stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), groups: Int = 1) -> Tensor {
    let geo = validated {
        try Conv2DGeometry.validate(input: x.shape, weight: weight.shape, bias: bias?.shape,
                                    stride: stride, padding: padding, groups: groups)
    }
    let out = Tensor(uninitialized: [geo.batch, geo.outChannels, geo.outH, geo.outW])
    // Kernel rows and columns that read only padding are left out (`KernelWindow`).
    let window = KernelWindow(geo), run = window?.geometry ?? geo
    let kernels = window?.slice(weight) ?? weight
    if run.isDepthwise {
        depthwiseForward(run, x.data, kernels.data, bias?.data, out.data)
    } else if let winograd = WinogradConv(run), !PackedGEMMConv.sameStrideOne(run) || !PackedGEMMConv.takesTrainingForward(run) {
        winograd.forward(x.data, kernels.data, bias?.data, out.data)
    } else if PackedGEMMConv.takesTrainingForward(run), let gemm = PackedGEMMConv(run) {
        // Few input channels (a first layer): sgemm's blocking is made for deep products, the
        // packed tiles are not; a stride-2 layer: the tiles read the image's phases, no patch
        // matrix. Packing the weights costs little beside the product.
        let packed = gemm.pack(kernels.data)
        gemm.forward(x.data, packed: packed.data, bias?.data, out.data, activation: .identity)
    } else {
        GEMMConv(run).forward(x.data, kernels.data, bias?.data, out.data)
    }
    let kind = OpKind.conv2d(stride: Pair(stride), padding: Pair(padding), groups: groups)
    Trace.note(kind, Operands(x, weight, bias), out)
    if Tape.needsRecord(x, weight, bias) {
        Tape.record(kind, Operands(x, weight, bias), out) { d in
            // A fresh input gradient is written by the paths that set every element once, and
            // zeroed for those that add (the depthwise kernels, col2im).
            let (dxTensor, dxFresh) = x.requiresGrad ? x.gradDestination() : (nil, false)
            let dx = dxTensor?.data
            // A restricted kernel's gradient goes through a buffer of its own into the full one's.
            let dKernels = weight.requiresGrad ? (window == nil ? weight.gradBuffer() : Tensor.zeros(kernels.shape)) : nil
            let dw = dKernels?.data
            let db = bias?.requiresGrad == true ? bias?.gradBuffer().data : nil
            if run.isDepthwise {
                if dxFresh { dxTensor?.zero() }
                depthwiseBackward(run, x.data, kernels.data, d.data, dx, dw)
                if let db { addBiasGradient(geo, d.data, db) }
            } else if let winograd = WinogradConv(run) {
                // Few channels whose transposed convolution has few too (`Conv2DAlgorithm
                // .fewChannels`): a fresh input gradient as the packed forward of dOut with the
                // flipped kernels, and on large maps the weights' and bias's as lane sums along the
                // pixels. Winograd computes the rest.
                let transposed = PackedGEMMConv.transposedForward(run)
                let lanes = transposed != nil && run.outPlane >= Conv2DTuning.fewChannelsLanesPlane
                let packedDx = dxFresh ? transposed : nil
                if let dx, let packedDx { packedDx.flippedForward(d.data, kernels: kernels.data, into: dx) }
                let winogradDx = packedDx == nil ? dx : nil
                if winogradDx != nil || !lanes {
                    winograd.backward(x.data, kernels.data, d.data, winogradDx, lanes ? nil : dw, overwritingDx: dxFresh)
                }
                if lanes {
                    GEMMConv(run).backward(x.data, kernels.data, d.data, nil, dw, db, lanesWeightGradient: true)
                } else if let db {
                    addBiasGradient(geo, d.data, db)
                }
            } else if let dx, dxFresh, let transposed = PackedGEMMConv.transposedForward(run) {
                // Few channels without Winograd: the same input gradient, the weights' by lane sums.
                transposed.flippedForward(d.data, kernels: kernels.data, into: dx)
                GEMMConv(run).backward(x.data, kernels.data, d.data, nil, dw, db, lanesWeightGradient: true)
            } else {
                GEMMConv(run).backward(x.data, kernels.data, d.data, dx, dw, db, overwritingDx: dxFresh,
                                       lanesWeightGradient: PackedGEMMConv.sameStrideOne(run))
            }
            if let window, let dw { window.addGradient(dw, into: weight.gradBuffer().data) }
        }
    }
    return out
}

/// `db[o] += ` the sum of `d` [N, O, outH, outW] over its images and pixels: a bias's gradient.
func addBiasGradient(_ g: Conv2DGeometry, _ d: UnsafePointer<Float>, _ db: UnsafeMutablePointer<Float>) {
    let o = g.outChannels, plane = g.outPlane
    Parallel.forEach(o) { ch in
        var s: Float = 0
        for n in 0..<g.batch { s += sum(d + (n * o + ch) * plane, plane) }
        db[ch] += s
    }
}

/// `dst[i] = act(src[i] + v)` for `i` in `0..<count` (`src` may be `dst`): a convolution's output
/// pass with its bias and the activation fused into it.
@inline(__always)
func addBiasActivating(_ activation: Activation, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                       _ count: Int, _ v: Float) {
    struct Pass: ActivationKernel {
        let src: UnsafePointer<Float>, dst: UnsafeMutablePointer<Float>, count: Int, v: Float
        func run<A: ActivationRule>(_ rule: A.Type) {
            for i in 0..<count { dst[i] = A.apply(src[i] + v) }
        }
    }
    activation.dispatch(Pass(src: src, dst: dst, count: count, v: v))
}

// MARK: - im2col + GEMM

/// The im2col/GEMM convolution of one geometry.
///
/// The batch is cut into `Parallel.gemmPieces` contiguous ranges of images, one per piece, and
/// every piece runs its images on its own, block by block: im2col, one single-threaded GEMM per
/// group, and the NCHW scatter. A block's patch matrix is consumed by the core that wrote it,
/// while it is still in that core's cache, and no thread waits for another between blocks.
/// (OpenBLAS's own threads would spin in `sched_yield` during the non-GEMM phases, stealing the
/// cores.) Large planes go one image per block and GEMM straight into NCHW; 1x1 stride-1
/// convolutions then skip im2col too, their input being its own patch matrix.
///
/// The weight gradient sums over every image: each piece accumulates its own partial sum, and the
/// partials are added in piece order. The pieces and blocks depend only on the geometry and the
/// machine, so each output element is computed by the same GEMM calls for any number of workers.
struct GEMMConv {
    let g: Conv2DGeometry
    /// Images per block.
    let block: Int
    /// For short output rows: per kernel tap and output pixel, the offset in the input plane it
    /// reads, or -1 for padding (see `im2col`).
    let tapOffsets: [Int32]?
    /// Per kernel tap, for geometries where every output row is as wide as an input row and both
    /// strides are 1 (3x3 with padding 1, say): a tap's patch row for one image is the input
    /// plane shifted by a constant offset, with the entries that read padding zeroed.
    let flatTaps: [FlatTap]?

    struct FlatTap {
        /// Input offset of the element output pixel `p` reads: `p + delta`.
        let delta: Int
        /// Output rows and columns that read inside the image.
        let rows: Range<Int>, columns: Range<Int>
        /// Output pixels copied in one run (clamped so the reads stay inside the plane).
        let copy: Range<Int>
    }

    init(_ g: Conv2DGeometry) {
        self.g = g
        BLAS.useCallerThreadsOnly()
        let perImage = max(1, g.groups * g.colRows * g.outPlane)
        let perPiece = (g.batch + Parallel.gemmPieces - 1) / Parallel.gemmPieces
        block = g.outPlane >= Conv2DTuning.directPlane
            ? 1 : max(1, min(perPiece, Conv2DTuning.columnBudget / perImage))
        let flat = g.strideH == 1 && g.strideW == 1 && g.outW == g.width && g.outW >= Conv2DTuning.shortRow
        flatTaps = flat ? Self.flatTaps(g) : nil
        tapOffsets = !flat && g.outW < Conv2DTuning.shortRow ? Self.tapOffsets(g) : nil
    }

    private static func flatTaps(_ g: Conv2DGeometry) -> [FlatTap] {
        (0..<(g.kernelH * g.kernelW)).map { tap in
            let i = tap / g.kernelW, j = tap % g.kernelW
            let rows = g.validRows(i), columns = g.validColumns(j)
            let delta = (i - g.padH) * g.width + (j - g.padW)
            let p0 = rows.lowerBound * g.outW, p1 = rows.upperBound * g.outW
            let c0 = min(p1, max(p0, -delta)), c1 = max(c0, min(p1, g.inPlane - delta))
            return FlatTap(delta: delta, rows: rows, columns: columns, copy: c0..<c1)
        }
    }

    private static func tapOffsets(_ g: Conv2DGeometry) -> [Int32] {
        var table = [Int32](repeating: -1, count: g.kernelH * g.kernelW * g.outPlane)
        g.forEachTapRow { tap, oh, inOffset, columns in
            for ow in columns { table[tap * g.outPlane + oh * g.outW + ow] = Int32(inOffset + ow * g.strideW) }
        }
        return table
    }

    private var isPointwise: Bool { g.isPointwise }

    /// Floats of one block's patch matrix, all groups.
    private var colCount: Int { g.groups * g.colRows * block * g.outPlane }
    /// Floats of one block's [O, cols] GEMM output (only blocks of several images need it).
    private var tmpCount: Int { block > 1 ? g.outChannels * block * g.outPlane : 0 }

    /// Calls `body(piece, first, count)` for every block of every piece: `count` images from
    /// image `first`.
    private func forEachBlock(_ body: (_ piece: Int, _ first: Int, _ count: Int) -> Void) {
        forEachPieceBlock(count: g.batch, block: block, body)
    }

    /// Forward: per block, im2col (unless pointwise with one image) and one GEMM per group, into
    /// NCHW directly for single images, else into [O, cols] and scattered (adding the bias there).
    /// Fewer images than pieces (inference) are split by output channels instead. `activation`
    /// is applied in the same pass as the bias.
    func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                 _ out: UnsafeMutablePointer<Float>, activation: Activation = .identity) {
        if g.batch < Parallel.gemmPieces { return forwardSplittingChannels(x, w, bias, out, activation) }
        let pieces = Parallel.gemmPieces
        let colPer = colCount, tmpPer = tmpCount
        let col = Tensor(uninitialized: [pieces * colPer]), tmp = Tensor(uninitialized: [pieces * tmpPer])
        let og = g.outPerGroup, rows = g.colRows, plane = g.outPlane, direct = isPointwise
        let pcol = col.data, ptmp = tmp.data
        defer { withExtendedLifetime((col, tmp)) {} }  // the blocks below use them only by pointer
        forEachBlock { k, first, nb in
            let cols = nb * plane, kcol = pcol + k * colPer, ktmp = ptmp + k * tmpPer
            for grp in 0..<g.groups {
                let b: UnsafePointer<Float>, ldb: Int
                if direct && nb == 1 {
                    b = x + (first * g.inChannels + grp * g.inPerGroup) * g.inPlane
                    ldb = plane
                } else {
                    im2col(x, group: grp, start: first, images: 0..<nb, cols: cols, into: kcol + grp * rows * cols)
                    b = UnsafePointer(kcol + grp * rows * cols)
                    ldb = cols
                }
                let c = nb == 1 ? out + (first * g.outChannels + grp * og) * plane : ktmp + grp * og * cols
                BLAS.gemm(transA: false, transB: false, m: og, n: cols, k: rows,
                          a: w + grp * og * rows, lda: rows, b: b, ldb: ldb, beta: 0, c: c, ldc: cols)
            }
            if nb > 1 {
                scatter(ktmp, start: first, images: 0..<nb, cols: cols, bias: bias, activation: activation, into: out)
            } else if bias != nil || activation != .identity {
                let img = out + first * g.outChannels * plane
                for ch in 0..<g.outChannels {
                    let dst = img + ch * plane
                    addBiasActivating(activation, dst, dst, plane, bias?[ch] ?? 0)
                }
            }
        }
    }

    /// Forward for fewer images than pieces: the whole batch's patch matrix (its rows cut over
    /// the pieces), then every piece computes its range of output channels for all the images,
    /// reading only its rows of the weights (a batch of one is bound by reading them).
    private func forwardSplittingChannels(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                          _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                                          _ activation: Activation) {
        let nb = g.batch, plane = g.outPlane, cols = nb * plane, rows = g.colRows, og = g.outPerGroup
        let inPlace = isPointwise && nb == 1
        // With few columns (a 2x2 or 1x1 map) the GEMM is `ns_gemm_small_n`, which takes the
        // patch matrix transposed.
        let small = cols <= Conv2DTuning.smallColumns
        let col = Tensor(uninitialized: [inPlace ? 0 : g.groups * rows * cols])
        let colT = Tensor(uninitialized: [small ? g.groups * rows * cols : 0])
        let tmp = Tensor(uninitialized: [nb > 1 ? g.outChannels * cols : 0])
        let pcol = col.data, pcolT = colT.data, ptmp = tmp.data
        defer { withExtendedLifetime((col, colT, tmp)) {} }  // the pieces below use them only by pointer
        if !inPlace || small {
            Parallel.forPieces(g.groups * rows) { r in
                for grp in (r.lowerBound / rows)...((r.upperBound - 1) / rows) {
                    let lo = max(r.lowerBound - grp * rows, 0), hi = min(r.upperBound - grp * rows, rows)
                    let gcol: UnsafePointer<Float>
                    if inPlace {
                        gcol = x + grp * g.inPerGroup * g.inPlane
                    } else {
                        im2col(x, group: grp, start: 0, images: 0..<nb, cols: cols, into: pcol + grp * rows * cols,
                               patchRows: lo..<hi)
                        gcol = UnsafePointer(pcol + grp * rows * cols)
                    }
                    if small {
                        let t = pcolT + grp * rows * cols
                        for q in lo..<hi { for n in 0..<cols { t[n * rows + q] = gcol[q * cols + n] } }
                    }
                }
            }
        }
        Parallel.forPieces(g.outChannels) { channels in
            for grp in (channels.lowerBound / og)...((channels.upperBound - 1) / og) {
                let lo = max(channels.lowerBound, grp * og), hi = min(channels.upperBound, (grp + 1) * og)
                let c = nb == 1 ? out + lo * plane : ptmp + lo * cols
                if small {
                    ns_gemm_small_n(hi - lo, cols, rows, w + lo * rows, rows, pcolT + grp * rows * cols, rows, c, cols)
                } else {
                    let b: UnsafePointer<Float> = inPlace ? x + grp * g.inPerGroup * g.inPlane : UnsafePointer(pcol + grp * rows * cols)
                    BLAS.gemm(transA: false, transB: false, m: hi - lo, n: cols, k: rows, a: w + lo * rows, lda: rows,
                              b: b, ldb: cols, beta: 0, c: c, ldc: cols)
                }
            }
            if nb > 1 {
                for img in 0..<nb {
                    for ch in channels {
                        let src = ptmp + ch * cols + img * plane, dst = out + (img * g.outChannels + ch) * plane
                        addBiasActivating(activation, src, dst, plane, bias?[ch] ?? 0)
                    }
                }
            } else if bias != nil || activation != .identity {
                for ch in channels {
                    let dst = out + ch * plane
                    addBiasActivating(activation, dst, dst, plane, bias?[ch] ?? 0)
                }
            }
        }
    }

    /// Backward, per block: dOut as [O, cols] (read in place for single images), the patch
    /// matrix, this piece's partial `dW (+)= dOut . col^T`, then `dCol = W^T . dOut` folded back
    /// with col2im (or, pointwise with one image, `dX += W^T . dOut` in place). The partial weight
    /// gradients are added to `dw` in piece order at the end. With `overwritingDx`, `dx` holds
    /// no values yet: the in-place GEMMs write it, and otherwise it is zeroed before col2im adds.
    /// `db` (the bias's gradient) gets the sums of `dOut` added.
    ///
    /// Shallow convolutions (at most `packedMaxDepth` patch rows: a first layer) take their weight
    /// gradient as dot products along the pixels at full vector width (`ns_gemm_nt_lanes`), where
    /// sgemm's blocking leaves a 27-wide product at a third of its speed: 16 lanes per element
    /// summed over all the images of a piece, with a row of ones under the patch rows for the
    /// bias's sums in the same pass over `dOut`.
    func backward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dOut: UnsafePointer<Float>,
                  _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?,
                  _ db: UnsafeMutablePointer<Float>? = nil, overwritingDx: Bool = false, lanesWeightGradient: Bool = false) {
        // The weight gradient as lane sums (`ns_gemm_nt_lanes`, or `ns_conv_dw_lanes` reading the
        // image in place): a shallow convolution's, or one of few channels (`lanesWeightGradient`).
        let halvingLaneSums = dw != nil && halvingLanes
        let shallow = dw != nil && (g.colRows <= Conv2DTuning.packedMaxDepth || halvingLaneSums
                                    || (lanesWeightGradient && g.colRows < Int(NS_CONV_DW_MAX_ROWS)))
        if let db, !shallow { addBiasGradient(g, dOut, db) }
        guard dx != nil || dw != nil else { return }
        // A fresh input gradient of a few channels (a first layer's), or any halving convolution's,
        // as every tap's contribution (a GEMM on dOut), shifted and summed (`ns_conv_dx_few`,
        // `ns_conv_dx_s2`): no col2im. A halving one's contributions by the packed GEMM (few output
        // channels: a short product) or by sgemm (Wᵀ . dOut, the patch matrix's gradient).
        let halving = dx != nil && halvesInput
        let packedHalving = halving && g.outChannels <= Conv2DTuning.halvingPackedDepth
        let tapWeights = dx != nil && (halving ? packedHalving : overwritingDx) ? tapKernels(w) : nil
        let dxBeta: Float = overwritingDx && isPointwise && block == 1 ? 0 : 1
        if let dx, overwritingDx, dxBeta == 1, tapWeights == nil, !halving {
            dx.update(repeating: 0, count: g.batch * g.inChannels * g.inPlane)
        }
        let pieces = Parallel.gemmPieces, lanes = Int(NS_GEMM_LANES)
        let og = g.outPerGroup, rows = g.colRows, plane = g.outPlane, direct = isPointwise
        // Rows of a group's block of the patch matrix: a shallow one's bias takes a row of ones.
        let groupRows = shallow && db != nil ? rows + 1 : rows
        let ones: Int32 = groupRows > rows ? 1 : 0
        // A shallow "same" stride-1 convolution's weight gradient reads the patch rows from the
        // image in place (`ns_conv_dw_lanes`), where the masked loads exist (on AVX2 from a
        // zero-padded copy where it is small and its rows whole vectors): no im2col; a halving
        // one's from the image's phases (one group).
        let dwStride = g.strideH == 1 && g.strideW == 1 ? 1 : halvingLaneSums ? 2 : 0
        // On AVX2 only a stride-1 one whose zero-padded image is small, which needs no masks.
        let masked = ns_pconv_available(g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW, dwStride) != 0
        let dwMasks: [UInt16]? = !shallow || dwStride == 0 ? nil
            : masked ? {
                var m = [UInt16](repeating: 0, count: ns_conv_dw_masks_count(g.inPerGroup, g.outH, g.outW, g.kernelH, g.kernelW, ones))
                ns_conv_dw_masks(g.inPerGroup, g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW, dwStride, ones, &m)
                return m
            }()
            : dwStride == 1 && ns_pconv_padded_available(g.inPerGroup, g.height, g.width, g.kernelH, g.kernelW,
                                                          g.padH, g.padW, 1) != 0 ? [] : nil
        // Its bias's row of ones, read like the output's rows (or a zero-padded copy's).
        let dwOnes = Tensor.filled([dwMasks != nil && ones != 0 ? ns_conv_dw_ones_count(g.outH, g.outW, g.padW) : 0], with: 1)
        // A halving one's phases of an image, per piece.
        let phasePer = dwMasks != nil && dwStride == 2 ? g.inChannels * g.inPlane : 0
        let phases = Tensor(uninitialized: [pieces * phasePer])
        // The patch matrix, and dOut gathered as [O, cols], only for the paths that use them.
        let usesPatches = (dw != nil && dwMasks == nil) || (dx != nil && tapWeights == nil)
        let colPer = usesPatches ? g.groups * groupRows * block * plane : 0, tmpPer = usesPatches ? tmpCount : 0
        let wCount = g.outChannels * rows, lanePer = g.outChannels * groupRows * lanes
        let col = Tensor(uninitialized: [pieces * colPer]), dtmp = Tensor(uninitialized: [pieces * tmpPer])
        let partial = Tensor(uninitialized: [dw != nil && !shallow ? pieces * wCount : 0])
        let laneSums = Tensor.zeros([shallow ? pieces * lanePer : 0])
        // `ns_conv_dx_few`'s taps' contributions, per piece.
        let fewPer = tapWeights == nil ? 0
            : packedHalving ? ns_conv_dx_s2_scratch_count(g.inChannels, g.outChannels, g.height, g.width, g.kernelH,
                                                    usesPatches ? block : 1)
            : ns_conv_dx_few_scratch_count(g.inChannels, g.outChannels, g.height, g.width, g.kernelH, g.kernelW)
        let fewScratch = Tensor(uninitialized: [pieces * fewPer])
        let pcol = col.data, pdtmp = dtmp.data, ppart = partial.data, psums = laneSums.data, pfew = fewScratch.data
        let pphases = phases.data
        defer { withExtendedLifetime((col, dtmp, partial, laneSums, dwOnes, fewScratch, phases)) {} }  // the blocks below use them only by pointer
        var started = [Bool](repeating: false, count: pieces)
        started.withUnsafeMutableBufferPointer { started in
            forEachBlock { k, first, nb in
                let cols = nb * plane, kcol = pcol + k * colPer
                let d: UnsafePointer<Float>, ldd: Int
                if nb == 1 || !usesPatches {
                    d = dOut + first * g.outChannels * plane
                    ldd = plane
                } else {
                    gather(dOut, start: first, images: 0..<nb, cols: cols, into: pdtmp + k * tmpPer)
                    d = UnsafePointer(pdtmp + k * tmpPer)
                    ldd = cols
                }
                let inPlace = direct && nb == 1
                for grp in 0..<g.groups {
                    let dg = d + grp * og * ldd, wg = w + grp * og * rows
                    let gcol = kcol + grp * groupRows * cols
                    if dw != nil, let dwMasks {
                        for i in 0..<nb {
                            var image = x + ((first + i) * g.inChannels + grp * g.inPerGroup) * g.inPlane
                            if phasePer > 0 {
                                let split = g.kernelH == 1 && g.kernelW == 1 ? ns_pconv_even_phase : ns_pconv_phases
                                split(image, g.height, g.width, 0, g.inChannels, pphases + k * phasePer)
                                image = UnsafePointer(pphases + k * phasePer)
                            }
                            // The next image's rows are fetched ahead: a batch's dOut is far larger
                            // than the caches, and each image's first row group otherwise waited on it.
                            // With one group the next call is the next image (the next block's first,
                            // but at the piece's end); with several, the next group of this image.
                            let nextFollows = i + 1 < nb || (g.groups == 1 && first + i + 1 < g.batch)
                            let dyImage = dOut + ((first + i) * g.outChannels + grp * og) * plane
                            ns_conv_dw_lanes(og, g.inPerGroup, g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW,
                                             dwStride, dwOnes.count > 0 ? dwOnes.data : nil, dwMasks, dyImage,
                                             nextFollows ? dyImage + g.outChannels * plane : nil, image,
                                             psums + k * lanePer + grp * og * groupRows * lanes)
                        }
                    } else if dw != nil {
                        // In place unless the row of ones must follow the patch rows.
                        let readsX = inPlace && groupRows == rows
                        let b: UnsafePointer<Float> = readsX ? x + (first * g.inChannels + grp * g.inPerGroup) * g.inPlane
                                                             : UnsafePointer(gcol)
                        if !readsX { im2col(x, group: grp, start: first, images: 0..<nb, cols: cols, into: gcol) }
                        if shallow {
                            if groupRows > rows { (gcol + rows * cols).update(repeating: 1, count: cols) }
                            ns_gemm_nt_lanes(og, groupRows, cols, dg, ldd, b, cols, psums + k * lanePer + grp * og * groupRows * lanes)
                        } else {
                            BLAS.gemm(transA: false, transB: true, m: og, n: rows, k: cols,
                                      a: dg, lda: ldd, b: b, ldb: cols, beta: started[k] ? 1 : 0,
                                      c: ppart + k * wCount + grp * og * rows, ldc: rows)
                        }
                    }
                    if let dx, let tapWeights, packedHalving {
                        // All the block's images at once where dOut is [O, cols], else one by one in place.
                        for i in (ldd == cols ? 0..<1 : 0..<nb) {
                            ns_conv_dx_s2(g.inChannels, g.outChannels, g.height, g.width, g.kernelH, ldd == cols ? nb : 1,
                                          tapWeights.data, ldd == cols ? d : dOut + (first + i) * g.outChannels * plane, ldd,
                                          dx + (first + i) * g.inChannels * g.inPlane, overwritingDx ? 0 : 1, pfew + k * fewPer)
                        }
                    } else if let dx, let tapWeights {
                        for i in 0..<nb {
                            ns_conv_dx_few(g.inChannels, g.outChannels, g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW,
                                           tapWeights.data, dOut + (first + i) * g.outChannels * plane,
                                           dx + (first + i) * g.inChannels * g.inPlane, pfew + k * fewPer)
                        }
                    } else if let dx {
                        if inPlace {
                            BLAS.gemm(transA: true, transB: false, m: rows, n: cols, k: og,
                                      a: wg, lda: rows, b: dg, ldb: ldd,
                                      beta: dxBeta, c: dx + (first * g.inChannels + grp * g.inPerGroup) * g.inPlane, ldc: cols)
                        } else {
                            // The patch matrix is spent: its buffer takes dCol.
                            BLAS.gemm(transA: true, transB: false, m: rows, n: cols, k: og,
                                      a: wg, lda: rows, b: dg, ldb: ldd, beta: 0, c: gcol, ldc: cols)
                            if halving {
                                ns_conv_dx_s2_gather(g.inChannels, g.height, g.width, g.kernelH, nb, gcol, cols, 1,
                                                     dx + first * g.inChannels * g.inPlane, overwritingDx ? 0 : 1)
                            } else {
                                col2im(gcol, group: grp, start: first, images: 0..<nb, cols: cols, into: dx)
                            }
                        }
                    }
                }
                started[k] = true
            }
            if shallow, let dw {
                // Each element's lanes, piece by piece in order.
                for k in 0..<pieces where started[k] {
                    for o in 0..<g.outChannels {
                        let s = psums + k * lanePer + o * groupRows * lanes
                        ns_lanes_add(rows, s, dw + o * rows)
                        if let db { ns_lanes_add(1, s + rows * lanes, db + o) }
                    }
                }
            } else if let dw {
                Parallel.forRange(wCount, grain: 4096) { r in
                    for k in 0..<pieces where started[k] {
                        let p = ppart + k * wCount
                        for i in r { dw[i] += p[i] }
                    }
                }
            }
        }
    }

    /// A halving convolution whose weight gradient is lane sums on its input's phases
    /// (`Conv2DTuning.halvingLanes`; at most `NS_CONV_DW_MAX_ROWS` rows, the kernel's).
    private var halvingLanes: Bool {
        guard g.groups == 1, g.strideH == 2, g.strideW == 2, Conv2DTuning.halvingLanes != .off,
              g.colRows < Int(NS_CONV_DW_MAX_ROWS),
              ns_pconv_available(g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW, 2) != 0
        else { return false }
        return Conv2DTuning.halvingLanes == .always || Self.halvingLanesPay(rows: g.colRows, outChannels: g.outChannels, plane: g.outPlane)
    }

    /// Whether lane sums beat sgemm for a halving convolution's weight gradient: sgemm's product
    /// is short in rows (output channels) and columns (patch rows), the lane sums' blocks short on
    /// small planes. Batch 128, weight gradient ms, sgemm / lane sums (best of 9 alternating
    /// rounds, Intel Xeon VM): 3x3/2 on 32x32 inputs, 16 -> 32 3.1-3.2 / 2.1, 8 -> 16 0.86 / 0.62,
    /// 24 -> 48 5.1 / 4.6, 32 -> 64 8.0 / 8.0; on 16x16, 16 -> 32 0.90 / 0.73, 24 -> 48 1.5 / 1.6,
    /// 32 -> 64 2.2 / 2.8; on 8x8, 16 -> 32 0.28 / 0.57. 1x1/2 (sgemm's side: the lane sums on
    /// the patch matrix, these being shallow) on 32x32, 16 -> 32 0.9-1.4 / 0.40-0.49, 64 -> 128
    /// 6.0 / 4.0, 96 -> 192 10.8 / 9.4, 256 -> 512 44 / 61; on 16x16, 32 -> 64 0.65 / 0.41,
    /// 48 -> 96 1.03 / 0.83, 64 -> 128 1.54 / 1.42, 128 -> 256 4.2 / 6.5; on 8x8, 64 -> 128 0.30
    /// / 0.97.
    static func halvingLanesPay(rows: Int, outChannels: Int, plane: Int) -> Bool {
        (plane >= 64 && rows <= 144 && outChannels <= 128) || (plane >= 256 && rows <= 216)
    }

    /// A halving convolution of one group (1x1 or 3x3, stride 2, padding half the kernel, even
    /// planes) whose input gradient `ns_conv_dx_s2` computes.
    private var halvesInput: Bool {
        g.groups == 1 && g.strideH == 2 && g.strideW == 2 && Conv2DTuning.halvingInputGradient
            && ns_conv_dx_s2_available(g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW) != 0
    }

    /// The weights of `ns_conv_dx_few`'s input gradient, where it applies (a shallow convolution
    /// of one group, at most `NS_CONV_DX_FEW_CHANNELS` input channels, stride 1, output the
    /// input's size), or of `ns_conv_dx_s2`'s (`halvesInput`): row `t C + c`, column o =
    /// w[o][c][t] for tap t, packed by `ns_pgemm_pack`.
    private func tapKernels(_ w: UnsafePointer<Float>) -> Tensor? {
        guard halvesInput || (g.groups == 1 && g.strideH == 1 && g.strideW == 1 && g.colRows <= Conv2DTuning.packedMaxDepth
              && ns_conv_dx_few_available(g.inChannels, g.kernelH, g.kernelW, g.padH, g.padW) != 0)
        else { return nil }
        let taps = g.kernelH * g.kernelW, c = g.inChannels, o = g.outChannels
        let a = Tensor(uninitialized: [taps * c * o])
        for oc in 0..<o {
            for ch in 0..<c {
                for t in 0..<taps { a.data[(t * c + ch) * o + oc] = w[(oc * c + ch) * taps + t] }
            }
        }
        let packed = Tensor(uninitialized: [ns_pgemm_packed_count(taps * c, o)])
        ns_pgemm_pack(taps * c, o, a.data, o, packed.data)
        return packed
    }

    /// Writes columns of images `images` (relative to `start`) of one group's [colRows, cols]
    /// patch matrix: row `(c*kH + i)*kW + j`, column `n*outPlane + oh*outW + ow`; only the rows
    /// `patchRows` when given.
    func im2col(_ x: UnsafePointer<Float>, group: Int, start: Int, images: Range<Int>, cols: Int,
                into col: UnsafeMutablePointer<Float>, patchRows: Range<Int>? = nil) {
        let g = self.g, taps = g.kernelH * g.kernelW, plane = g.outPlane, patchRows = patchRows ?? 0..<g.colRows
        let channel0 = x + (start * g.inChannels + group * g.inPerGroup) * g.inPlane
        let imageStride = g.inChannels * g.inPlane
        if let flatTaps {
            flatTaps.withUnsafeBufferPointer { flat in
                for r in patchRows {
                    let t = flat[r % taps], channel = channel0 + (r / taps) * g.inPlane, dst = col + r * cols
                    for b in images { flatTap(t, from: channel + b * imageStride, to: dst + b * plane) }
                }
            }
            return
        }
        if let tapOffsets {
            // Short rows: one table lookup per element, no per-row bookkeeping.
            tapOffsets.withUnsafeBufferPointer { table in
                if images.count == 1, cols == plane {
                    // One image: a channel's rows are one run of the table.
                    ns_im2col_table(channel0 + images.lowerBound * imageStride, g.inPlane, table.baseAddress, taps, plane,
                                    patchRows.lowerBound, patchRows.upperBound, col + images.lowerBound * plane)
                    return
                }
                for r in patchRows {
                    let offsets = table.baseAddress! + (r % taps) * plane
                    let channel = channel0 + (r / taps) * g.inPlane, dst = col + r * cols
                    for b in images {
                        let src = channel + b * imageStride, d = dst + b * plane
                        for p in 0..<plane {
                            let o = Int(offsets[p])
                            let v = src[max(o, 0)]
                            d[p] = o >= 0 ? v : 0
                        }
                    }
                }
            }
            return
        }
        if g.strideH == 2 && g.strideW == 2 {
            // Stride 2: each channel split once into the phases of its padded plane, where every
            // patch row is runs of contiguous pixels.
            let count = ns_im2col_s2_scratch(g.height, g.width, g.padH, g.padW)
            withUnsafeTemporaryAllocation(of: Float.self, capacity: count) { scratch in
                for b in images {
                    ns_im2col_s2(channel0 + b * imageStride, g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW,
                                 g.outH, g.outW, patchRows.lowerBound, patchRows.upperBound, col + b * plane, cols,
                                 scratch.baseAddress!)
                }
            }
            return
        }
        for r in patchRows {
            let i = (r % taps) / g.kernelW, j = r % g.kernelW
            let rowsOK = g.validRows(i), colsOK = g.validColumns(j)
            let lo = colsOK.lowerBound, hi = colsOK.upperBound, outW = g.outW
            let channel = channel0 + (r / taps) * g.inPlane, dst = col + r * cols
            for b in images {
                let d = dst + b * plane
                let src = channel + b * imageStride
                d.update(repeating: 0, count: rowsOK.lowerBound * outW)
                for oh in rowsOK {
                    let dRow = d + oh * outW
                    let sRow = src + (oh * g.strideH - g.padH + i) * g.width - g.padW + j
                    for ow in 0..<lo { dRow[ow] = 0 }
                    if g.strideW == 1 {
                        for ow in lo..<hi { dRow[ow] = sRow[ow] }
                    } else {
                        for ow in lo..<hi { dRow[ow] = sRow[ow * g.strideW] }
                    }
                    for ow in hi..<outW { dRow[ow] = 0 }
                }
                (d + rowsOK.upperBound * outW).update(repeating: 0, count: (g.outH - rowsOK.upperBound) * outW)
            }
        }
    }


    /// The patch row of one kernel tap for one image and channel (`isFlat` geometries): one
    /// contiguous copy, then zeros over the padding.
    @inline(__always)
    private func flatTap(_ t: FlatTap, from src: UnsafePointer<Float>, to d: UnsafeMutablePointer<Float>) {
        for p in 0..<t.copy.lowerBound { d[p] = 0 }
        (d + t.copy.lowerBound).update(from: src + t.copy.lowerBound + t.delta, count: t.copy.count)
        for p in t.copy.upperBound..<g.outPlane { d[p] = 0 }
        zeroPaddingColumns(d, rows: t.rows, columns: t.columns)
    }

    /// Zeros the entries of a flat patch row whose output column reads padding.
    @inline(__always)
    private func zeroPaddingColumns(_ d: UnsafeMutablePointer<Float>, rows: Range<Int>, columns: Range<Int>) {
        let w = g.outW
        guard columns.lowerBound > 0 || columns.upperBound < w else { return }
        for oh in rows {
            let row = d + oh * w
            for ow in 0..<columns.lowerBound { row[ow] = 0 }
            for ow in columns.upperBound..<w { row[ow] = 0 }
        }
    }

    /// Adds the patch-matrix gradient of images `images` back onto the input gradient: the
    /// adjoint of `im2col`. Taps are summed in a fixed order. `col` is scratch: entries that
    /// belong to padding may be overwritten.
    func col2im(_ col: UnsafeMutablePointer<Float>, group: Int, start: Int, images: Range<Int>, cols: Int,
                into dx: UnsafeMutablePointer<Float>) {
        let g = self.g, cpg = g.inPerGroup, taps = g.kernelH * g.kernelW, plane = g.outPlane
        if let flatTaps {
            // Zero the padding entries, then add each tap's row as one shifted run.
            flatTaps.withUnsafeBufferPointer { flat in
                for b in images {
                    for cl in 0..<cpg {
                        let dPlane = dx + ((start + b) * g.inChannels + group * cpg + cl) * g.inPlane
                        let src = col + cl * taps * cols + b * plane
                        for tap in 0..<taps {
                            let t = flat[tap], s = src + tap * cols, d = dPlane + t.delta
                            zeroPaddingColumns(s, rows: t.rows, columns: t.columns)
                            for p in t.copy { d[p] += s[p] }
                        }
                    }
                }
            }
            return
        }
        if let tapOffsets {
            tapOffsets.withUnsafeBufferPointer { table in
                for b in images {
                    for cl in 0..<cpg {
                        let dPlane = dx + ((start + b) * g.inChannels + group * cpg + cl) * g.inPlane
                        let src = col + cl * taps * cols + b * plane
                        for tap in 0..<taps {
                            let offsets = table.baseAddress! + tap * plane, s = src + tap * cols
                            for p in 0..<plane {
                                let o = Int(offsets[p])
                                if o >= 0 { dPlane[o] += s[p] }
                            }
                        }
                    }
                }
            }
            return
        }
        for b in images {
            for cl in 0..<cpg {
                let plane = dx + ((start + b) * g.inChannels + group * cpg + cl) * g.inPlane
                let src = col + cl * taps * cols + b * g.outPlane
                g.forEachTapRow { tap, oh, inOffset, columns in
                    addRowStrided(plane + inOffset, src + tap * cols + oh * g.outW, stride: g.strideW, scale: 1, columns)
                }
            }
        }
    }

    /// [O, cols] -> NCHW for images `images` (relative to `start`), adding the bias.
    func scatter(_ tmp: UnsafePointer<Float>, start: Int, images: Range<Int>, cols: Int,
                 bias: UnsafePointer<Float>?, activation: Activation, into out: UnsafeMutablePointer<Float>) {
        let o = g.outChannels, plane = g.outPlane
        for b in images {
            for ch in 0..<o {
                let src = tmp + ch * cols + b * plane, dst = out + ((start + b) * o + ch) * plane
                if bias != nil || activation != .identity {
                    addBiasActivating(activation, src, dst, plane, bias?[ch] ?? 0)
                } else {
                    dst.update(from: src, count: plane)
                }
            }
        }
    }

    /// NCHW -> [O, cols] for images `images`: the adjoint of `scatter`.
    func gather(_ dOut: UnsafePointer<Float>, start: Int, images: Range<Int>, cols: Int,
                into tmp: UnsafeMutablePointer<Float>) {
        let o = g.outChannels, plane = g.outPlane
        for b in images {
            for ch in 0..<o {
                (tmp + ch * cols + b * plane).update(from: dOut + ((start + b) * o + ch) * plane, count: plane)
            }
        }
    }
}

// MARK: - Depthwise

extension Conv2DGeometry {
    /// The sizes the C kernels take.
    var depthwise: ns_depthwise_geometry {
        ns_depthwise_geometry(H: height, W: width, KH: kernelH, KW: kernelW, SH: strideH, SW: strideW,
                              PH: padH, PW: padW, OH: outH, OW: outW, IC: inChannels, OC: outChannels)
    }
}

/// Direct depthwise convolution: output channel `o` reads input channel `o / multiplier`. The
/// loops are C, vectorized for the machine (`CKernels`): with one output channel per input
/// channel, across blocks of channels (each worker owns (image, block) items forward and whole
/// blocks backward); otherwise per plane, each worker owning whole planes.
func depthwiseForward(_ g: Conv2DGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                      _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, activation: Activation = .identity) {
    var geometry = g.depthwise
    let (lo, hi) = activation.bounds
    withUnsafePointer(to: &geometry) { geometry in
        if g.outChannels == g.inChannels && g.strideH == g.strideW && g.strideH <= 2
            && g.outPlane > Conv2DTuning.depthwiseBlockedPlane {
            // Plane by plane: each tap a masked load from the plane (or its phases) where the
            // machine has them, else each plane copied into a padded buffer, every tap a shifted run.
            let implicit = ns_depthwise_implicit_available(geometry) != 0
            let scratch = implicit ? ns_depthwise_implicit_scratch(geometry) : ns_depthwise_plane_scratch(geometry)
            let planes = g.batch * g.outChannels
            let chunks = min(Parallel.workers, planes)
            let buffer = Tensor(uninitialized: [chunks * scratch])
            let pb = buffer.data
            withExtendedLifetime(buffer) {
                Parallel.forEach(chunks) { k in
                    let lo0 = planes * k / chunks, hi0 = planes * (k + 1) / chunks
                    if implicit {
                        ns_depthwise_forward_implicit(geometry, lo0, hi0 - lo0, x, w, bias, lo, hi, out, pb + k * scratch)
                    } else {
                        ns_depthwise_forward_planes(geometry, lo0, hi0 - lo0, x, w, bias, lo, hi, out, pb + k * scratch)
                    }
                }
            }
            return
        }
        if g.outChannels == g.inChannels {
            let blocks = (g.outChannels + Conv2DTuning.depthwiseLanes - 1) / Conv2DTuning.depthwiseLanes
            Parallel.forRange(g.batch * blocks) { r in
                ns_depthwise_forward_blocked(geometry, g.batch, r.lowerBound, r.count, x, w, bias, lo, hi, out)
            }
            return
        }
        Parallel.forRange(g.batch * g.outChannels, grain: max(1, 4096 / max(g.outPlane, 1))) { r in
            ns_depthwise_forward(geometry, r.lowerBound, r.count, x, w, bias, lo, hi, out)
        }
    }
}

/// The weights and bias of a depthwise convolution laid out for `depthwisePackedForward`, or nil
/// where that kernel does not apply (`ns_depthwise_packed_available`: AVX-512, stride 1 or 2,
/// output planes of a size dividing the vector width). For frozen weights: computed once, used
/// every call.
func depthwisePackedWeights(_ g: Conv2DGeometry, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?) -> Tensor? {
    var geometry = g.depthwise
    return withUnsafePointer(to: &geometry) { geometry in
        guard ns_depthwise_packed_available(geometry) != 0 else { return nil }
        let packed = Tensor(uninitialized: [ns_depthwise_packed_weights(geometry)])
        ns_depthwise_pack_weights(geometry, w, bias, packed.data)
        return packed
    }
}

/// A depthwise convolution onto small planes (a 4x4 or 2x2 map) as NCHW holds them, several
/// channels' planes per vector, each tap a permutation of the lanes of their input (one vector,
/// four at stride 2) (`ns_depthwise_forward_packed`), with weights from
/// `depthwisePackedWeights`: no plane is transposed into channel-interleaved form and back, as
/// `ns_depthwise_forward_blocked` does. MobileNetV2's 960-channel 2x2 layers at batch 32 on one
/// thread 0.21 -> 0.04 ms (a C benchmark, best of 200), its 576- and 384-channel 4x4 ones
/// 1.1-1.4x faster; in the net on two threads (engine profile) 0.13-0.28 -> 0.035-0.066 ms and
/// 0.10-0.24 -> 0.07-0.14 ms a layer, the 576-channel stride-2 layer onto 2x2 0.18-0.20 ->
/// 0.05-0.06 ms. The same sums in the same order as the blocked kernel: the same bits.
func depthwisePackedForward(_ g: Conv2DGeometry, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                            _ out: UnsafeMutablePointer<Float>, activation: Activation) {
    var geometry = g.depthwise
    let (lo, hi) = activation.bounds
    // Items: one vector of 16 / plane channels of one image each, grouped by channels.
    let items = g.batch * g.outChannels * g.outPlane / Conv2DTuning.depthwiseLanes
    withUnsafePointer(to: &geometry) { geometry in
        Parallel.forRange(items, grain: 64) { r in
            ns_depthwise_forward_packed(geometry, g.batch, r.lowerBound, r.count, x, weights, lo, hi, out)
        }
    }
}

func depthwiseBackward(_ g: Conv2DGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                       _ dOut: UnsafePointer<Float>,
                       _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?) {
    var geometry = g.depthwise
    withUnsafePointer(to: &geometry) { geometry in
        if g.outChannels == g.inChannels {
            // Per block of channels, over the whole batch: both gradients in one pass.
            let blocks = (g.outChannels + Conv2DTuning.depthwiseLanes - 1) / Conv2DTuning.depthwiseLanes
            Parallel.forRange(blocks) { r in
                ns_depthwise_backward_blocked(geometry, g.batch, r.lowerBound, r.count, x, dOut, w, dx, dw)
            }
            return
        }
        if let dx {
            // Per (image, input channel) plane: every tap of its output channels.
            Parallel.forRange(g.batch * g.inChannels, grain: max(1, 4096 / max(g.inPlane, 1))) { r in
                ns_depthwise_backward_input(geometry, r.lowerBound, r.count, dOut, w, dx)
            }
        }
        if let dw {
            // Per output channel: each tap's correlation of dOut with the input over the batch.
            Parallel.forRange(g.outChannels) { r in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: g.kernelH * g.kernelW * g.outW) { scratch in
                    ns_depthwise_backward_weight(geometry, g.batch, r.lowerBound, r.count, x, dOut, scratch.baseAddress!, dw)
                }
            }
        }
    }
}
