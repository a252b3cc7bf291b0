import Autodiff
import XCTest

/// A frozen convolution computes `act(conv2d(x, w, b))` on every path (im2col with one image or
/// several, Winograd with its kept kernels, depthwise), run after run.
final class FrozenConv2DTests: XCTestCase {
    private var rng = RandomGenerator(seed: 21)

    func testMatchesConvolutionThenActivation() {
        // (input [N, C, H, W], weight [O, C/g, k, k], stride, padding, groups)
        let cases: [([Int], [Int], Int, Int, Int)] = [
            ([1, 16, 8, 8], [24, 16, 3, 3], 1, 1, 1),   // Winograd when forced, im2col split by channels
            ([3, 16, 8, 8], [24, 16, 3, 3], 1, 1, 1),
            ([2, 8, 9, 7], [5, 8, 3, 3], 2, 1, 1),      // im2col, stride 2
            ([1, 8, 5, 5], [6, 8, 1, 1], 1, 0, 1),      // 1x1 in place
            ([3, 8, 5, 5], [6, 8, 1, 1], 1, 0, 1),
            ([2, 20, 6, 6], [20, 1, 3, 3], 1, 1, 20),   // depthwise
            ([2, 4, 6, 6], [8, 1, 3, 3], 2, 1, 4),      // depthwise with multiplier 2
            ([3, 5, 12, 12], [30, 5, 3, 3], 1, 1, 1),   // packed weights: 4 panels of 8 (the last cut), 32+32+32+32+16 columns
            ([1, 7, 9, 9], [13, 7, 3, 3], 1, 1, 1),     // packed weights, one image: 81 columns (a tail of 1), panels split
            ([1, 7, 9, 9], [35, 7, 3, 3], 1, 1, 1),     // the same on 3 panels of 12 (fewer rows than 5 of 8), the last cut
            ([2, 5, 6, 6], [12, 5, 3, 3], 1, 1, 1),     // one panel of 12, 32+4 columns
            ([2, 5, 6, 6], [27, 5, 3, 3], 1, 1, 1),     // 3 panels of 9 (none padded), 32+4 columns
            ([1, 3, 8, 16], [18, 3, 3, 3], 1, 1, 1),    // 2 panels of 9, read from a zero-padded copy of the image
            ([2, 40, 4, 4], [26, 40, 1, 1], 1, 0, 1),   // packed weights, in place: 16 columns
            ([1, 3, 7, 9], [11, 3, 5, 5], 1, 2, 1),     // read from the image (no patch matrix), 5x5 taps, 32+31 pixels
            ([1, 6, 10, 8], [20, 6, 3, 3], 2, 1, 1),    // stride 2 from the image's phases, one image (20 pixels)
            ([3, 4, 12, 12], [9, 4, 1, 1], 2, 0, 1),    // a 1x1 stride-2 shortcut from the phases, a batch
            ([3, 40, 12, 12], [9, 40, 1, 1], 2, 0, 1),  // the same, deeper than conv2d's own packed path takes
            ([2, 3, 8, 8], [10, 3, 4, 4], 2, 1, 1),     // an even kernel at stride 2 (kernel 2 p + 2)
            ([1, 6, 3, 3], [5, 6, 3, 3], 1, 1, 1),      // one image on a 3x3 map: the narrow kernel (9 columns)
            ([1, 40, 2, 2], [37, 40, 1, 1], 1, 0, 1),   // narrow, in place, 3 panels (the last cut), 4 columns
            ([1, 20, 2, 2], [18, 20, 3, 3], 1, 1, 1),   // narrow on a 2x2 map (its kernel cut to the window)
            ([9, 6, 2, 2], [5, 6, 3, 3], 1, 1, 1),      // a batch on a 2x2 map: one GEMM, kernels expanded
            ([13, 6, 2, 2], [24, 6, 3, 3], 1, 1, 1),    // the same, 48 columns a piece: read in place (12 + 1 rows)
            ([8, 4, 2, 3], [7, 4, 3, 3], 1, 1, 1),      // the same on a 2x3 map
            ([1, 8, 2, 2], [150, 8, 1, 1], 2, 0, 1),    // narrow on a 1x1 map: 8 panels together, then 2 alone
            ([2, 6, 3, 3], [5, 6, 3, 3], 1, 1, 1),      // small maps of a batch, few weights: narrow, image by image
            ([3, 40, 2, 2], [37, 40, 1, 1], 1, 0, 1),   // the same in place, 3 panels (the last cut)
            // Winograd's products of a few tiles (one tile row per thread): 3 tiles of F(2,3) a block,
            // 11 (8 + 3) with 48 output channels (32 + 16 columns), 7 (4 + 3) of F(4,3).
            ([1, 16, 4, 6], [20, 16, 3, 3], 1, 1, 1),
            ([1, 16, 4, 22], [40, 16, 3, 3], 1, 1, 1),
            ([1, 16, 8, 28], [20, 16, 3, 3], 1, 1, 1),
            // Small maps of a batch, several images a call (`ns_pgemm_narrow_images`):
            ([11, 12, 2, 2], [37, 12, 1, 1], 1, 0, 1),  // 1x1 in place: calls of 4, 4 and 3 images (16, 16, 12 columns)
            ([9, 10, 4, 4], [20, 10, 1, 1], 2, 0, 1),   // a 1x1 stride-2 shortcut onto 2x2: patch matrices side by side
            ([5, 6, 2, 2], [9, 6, 3, 3], 1, 1, 1),      // 3x3 on 2x2 below the dense map's batch: calls of 4 and 1
            ([19, 6, 1, 1], [21, 6, 1, 1], 1, 0, 1),    // 1x1 maps: calls of 16 and 3 images
            // The same deeper than conv2d's own packed path takes (an independent reference), whole
            // panels written a vector at a time (1x1 and 2x2 maps) and a last panel cut.
            ([19, 40, 1, 1], [37, 40, 1, 1], 1, 0, 1),
            ([7, 40, 2, 2], [37, 40, 1, 1], 1, 0, 1),
        ]
        // The weight-packing GEMM takes the planes of at least 16 pixels of ungrouped convolutions.
        let geometry = { (xs: [Int], ws: [Int], s: Int, p: Int, g: Int) in
            try Conv2DGeometry.validate(input: xs, weight: ws, bias: nil, stride: (s, s), padding: (p, p), groups: g)
        }
        let saved0 = Conv2DTuning.winograd
        Conv2DTuning.winograd = .off
        XCTAssertEqual(try geometry([3, 5, 12, 12], [30, 5, 3, 3], 1, 1, 1).algorithm(frozenWeights: true), .packedGEMM)
        XCTAssertEqual(try geometry([9, 6, 2, 2], [5, 6, 3, 3], 1, 1, 1).algorithm(frozenWeights: true), .denseMap)
        XCTAssertEqual(try geometry([9, 6, 2, 2], [5, 6, 3, 3], 1, 1, 1).algorithm(frozenWeights: false), .im2col)
        XCTAssertEqual(try geometry([2, 40, 4, 4], [26, 40, 1, 1], 1, 0, 1).algorithm(frozenWeights: true), .packedGEMM)
        XCTAssertEqual(try geometry([3, 5, 12, 12], [30, 5, 3, 3], 1, 1, 1).algorithm(frozenWeights: false), .im2col)
        XCTAssertEqual(try geometry([64, 3, 12, 12], [30, 3, 3, 3], 1, 1, 1).algorithm(frozenWeights: false), .shallow)
        XCTAssertEqual(try geometry([1, 6, 3, 3], [5, 6, 3, 3], 1, 1, 1).algorithm(frozenWeights: true), .packedGEMM)
        XCTAssertEqual(try geometry([2, 6, 3, 3], [5, 6, 3, 3], 1, 1, 1).algorithm(frozenWeights: true), .packedGEMM)
        let savedWeights = Conv2DTuning.narrowBatchWeights
        Conv2DTuning.narrowBatchWeights = 5 * 54 - 1
        XCTAssertEqual(try geometry([2, 6, 3, 3], [5, 6, 3, 3], 1, 1, 1).algorithm(frozenWeights: true), .im2col)
        XCTAssertEqual(try geometry([1, 6, 3, 3], [5, 6, 3, 3], 1, 1, 1).algorithm(frozenWeights: true), .packedGEMM)
        Conv2DTuning.narrowBatchWeights = savedWeights
        Conv2DTuning.winograd = saved0
        let saved = Conv2DTuning.winograd, savedStreaming = Conv2DTuning.streamingBytes
        defer { Conv2DTuning.winograd = saved; Conv2DTuning.streamingBytes = savedStreaming }
        // Once more with every output written by streaming stores (a batch's large outputs are).
        for ((xs, ws, stride, padding, groups), streaming) in cases.map({ ($0, false) }) + cases.map({ ($0, true) }) {
            Conv2DTuning.streamingBytes = streaming ? 0 : savedStreaming
            let x = Tensor.randn(xs, using: &rng), w = Tensor.randn(ws, using: &rng), b = Tensor.randn([ws[0]], using: &rng)
            let g = try! geometry(xs, ws, stride, padding, groups)
            for choice in [Conv2DTuning.Winograd.off, .tile(2), .tile(4)] {
                Conv2DTuning.winograd = choice
                let plain = Tape.withoutGradients {
                    conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (padding, padding), groups: groups)
                }
                // Winograd's products round differently from one GEMM to another (OpenBLAS's kernels
                // on some CPUs sum a block's even and odd k apart), and its output transform
                // amplifies that: each path is checked against the exact convolution within F(m,3)'s
                // error bound instead of against the other.
                let trained = g.algorithm(frozenWeights: false), kept = g.algorithm(frozenWeights: true)
                let byWinograd = [trained, kept].contains { if case .winograd = $0 { true } else { false } }
                let reference = byWinograd ? ConvolutionErrorBound(x, w, b) : nil
                let keptBound = reference?.bounds(kept) ?? []
                if let reference {
                    reference.check(plain.values, within: reference.bounds(trained), "\(xs) * \(ws), \(choice): conv2d by \(trained)")
                }
                for activation in Activation.allCases {
                    let expected: Tensor = Tape.withoutGradients {
                        switch activation {
                        case .identity: return plain
                        case .relu: return relu(plain)
                        case .relu6: return relu6(plain)
                        }
                    }
                    let frozen = FrozenConv2D(weight: w, bias: b, stride: (stride, stride), padding: (padding, padding),
                                              groups: groups, activation: activation)
                    let what = "\(xs) * \(ws) s\(stride) p\(padding) g\(groups), \(choice), \(activation)"
                    for run in 1...2 {
                        if let reference {
                            reference.check(frozen(x).values, within: keptBound, activation: activation, "\(what), run \(run) by \(kept)")
                        } else {
                            assertClose(frozen(x), expected, rtol: 1e-5, atol: 1e-5, "\(what), run \(run)")
                        }
                    }
                    // A residual sum before the activation: in the output pass or after it.
                    let residual = Tensor.randn(plain.shape, using: &rng)
                    if let reference {
                        reference.check(frozen(x, adding: residual).values, within: keptBound, activation: activation, adding: residual.values,
                                        "\(what), with a residual, by \(kept)")
                        continue
                    }
                    let summed = (0..<plain.count).map { i -> Float in
                        let v = plain.data[i] + residual.data[i]
                        switch activation {
                        case .identity: return v
                        case .relu: return max(v, 0)
                        case .relu6: return min(max(v, 0), 6)
                        }
                    }
                    assertClose(frozen(x, adding: residual).values, summed, rtol: 1e-5, atol: 1e-5, "\(what), with a residual")
                }
            }
        }
    }

    /// The same cases on the paths a machine without AVX-512 takes (4-row panels, im2col, the
    /// depthwise planes through a padded copy), which this machine would otherwise never run.
    func testPortablePaths() {
        Conv2DTuning.portableKernels = true
        defer { Conv2DTuning.portableKernels = false }
        testMatchesConvolutionThenActivation()
        testDepthwiseMatchesDirectSum()
        testShapesInTurnKeepTheirPlans()
        testSmallMapsOfABatchWithManyWeights()
    }

    /// One convolution called with inputs of several shapes in turn (batch sizes, planes that cut
    /// the kernel to a window, a plane for the narrow kernel): each shape keeps its own plan.
    func testShapesInTurnKeepTheirPlans() {
        let w = Tensor.randn([20, 6, 3, 3], using: &rng), b = Tensor.randn([20], using: &rng)
        let frozen = FrozenConv2D(weight: w, bias: b, stride: (1, 1), padding: (1, 1), activation: .relu)
        let inputs = [[1, 6, 8, 8], [3, 6, 8, 8], [1, 6, 1, 1], [1, 6, 3, 3], [2, 6, 12, 10]].map { Tensor.randn($0, using: &rng) }
        for round in 1...2 {
            for x in inputs {
                let expected = Tape.withoutGradients { relu(conv2d(x, weight: w, bias: b, stride: (1, 1), padding: (1, 1))) }
                assertClose(frozen(x), expected, rtol: 1e-5, atol: 1e-5, "\(x.shape), round \(round)")
            }
        }
    }

    /// Small maps of a batch whose weights are too many for the narrow kernel's image-by-image
    /// pass: sgemm with the images side by side, the activation and a residual after it.
    func testSmallMapsOfABatchWithManyWeights() {
        let saved = Conv2DTuning.narrowBatchWeights
        Conv2DTuning.narrowBatchWeights = 0
        defer { Conv2DTuning.narrowBatchWeights = saved }
        let x = Tensor.randn([3, 6, 3, 3], using: &rng), w = Tensor.randn([5, 6, 3, 3], using: &rng), b = Tensor.randn([5], using: &rng)
        let geometry = try! Conv2DGeometry.validate(input: x.shape, weight: w.shape, bias: b.shape, stride: (1, 1), padding: (1, 1), groups: 1)
        XCTAssertEqual(geometry.algorithm(frozenWeights: true), .im2col)
        let frozen = FrozenConv2D(weight: w, bias: b, stride: (1, 1), padding: (1, 1), activation: .relu6)
        let plain = Tape.withoutGradients { conv2d(x, weight: w, bias: b, stride: (1, 1), padding: (1, 1)) }
        assertClose(frozen(x), Tape.withoutGradients { relu6(plain) }, rtol: 1e-5, atol: 1e-5, "sgemm path")
        let residual = Tensor.randn(plain.shape, using: &rng)
        let summed = (0..<plain.count).map { min(max(plain.data[$0] + residual.data[$0], 0), 6) }
        assertClose(frozen(x, adding: residual).values, summed, rtol: 1e-5, atol: 1e-5, "sgemm path with a residual")
    }

    /// Small planes packed side by side in vectors (`depthwisePackedForward`: output planes of
    /// 16, 8, 4, 2 or 1 pixels, several channels a vector, at stride 1 and 2): the direct sum, and
    /// the same bits as the training path's channel-blocked kernel (the same sums in the same
    /// order). Batches of 1, 3 and 6 images (runs of a group's images cut short of four, items of
    /// several groups together), channel counts whose planes fill whole vectors and ones whose do
    /// not (which take the blocked kernel), a 3x3 kernel cut to the 1x1 map it can reach.
    func testDepthwisePackedPlanesMatchDirectSumAndTrainingPath() {
        let shapes = [(2, 2, 1), (4, 4, 1), (4, 2, 1), (2, 4, 1), (1, 2, 1), (1, 1, 1), (2, 8, 1),
                      (4, 4, 2), (8, 8, 2), (4, 8, 2), (2, 4, 2), (2, 2, 2), (8, 4, 2)]
        for (h, w, stride) in shapes {
            for c in [8, 12, 40, 64] {
                // One frozen convolution for the three batch sizes: their plans share the laid-out weights.
                let k = Tensor.randn([c, 1, 3, 3], using: &rng), b = Tensor.randn([c], using: &rng)
                let frozen = FrozenConv2D(weight: k, bias: b, stride: (stride, stride), padding: (1, 1), groups: c,
                                          activation: .relu6)
                for n in [1, 3, 6] {
                    let x = Tensor.randn([n, c, h, w], using: &rng)
                    let expected = depthwiseDirectSums(x, k, b, stride: stride, padding: 1).map { min(max($0, 0), 6) }
                    let label = "\(h)x\(w) stride \(stride), \(c) channels, batch \(n)"
                    for run in 1...2 {
                        let got = frozen(x).values
                        assertClose(got, expected, rtol: 1e-5, atol: 1e-5, "\(label), run \(run)")
                        let training = Tape.withoutGradients {
                            relu6(conv2d(x, weight: k, bias: b, stride: (stride, stride), padding: (1, 1), groups: c))
                        }
                        XCTAssertEqual(got, training.values, "\(label): the training path's bits")
                    }
                }
            }
        }
    }

    /// A normalization of the output (`normalizing:`) is returned exactly where
    /// `normalizesOutput(for:adding:)` says, and is then the bits of `batchNorm2d` in eval mode on
    /// the output: packed kernels (implicit and on a 2x2 map's narrow kernel, which does not),
    /// Winograd, depthwise, each with and without a residual.
    func testNormalizedOutputWhereSaidAndEqualToBatchNorm() {
        let cases: [(c: Int, o: Int, size: Int, kernel: Int, groups: Int)] =
            [(16, 16, 8, 3, 1), (48, 48, 8, 3, 1), (24, 24, 6, 3, 24), (32, 48, 2, 1, 1)]
        var said = Set<String>()
        for (c, o, size, kernel, groups) in cases {
            let w = Tensor.randn([o, c / groups, kernel, kernel], using: &rng), b = Tensor.randn([o], using: &rng)
            let conv = FrozenConv2D(weight: w, bias: b, padding: (kernel / 2, kernel / 2), groups: groups)
            let gamma = Tensor.randn([o], using: &rng), beta = Tensor.randn([o], using: &rng)
            let mean = Tensor.randn([o], using: &rng), variance = Tensor.filled([o], with: 0.7)
            let norm = OutputNormalization(weight: gamma, bias: beta, runningMean: mean, runningVar: variance, eps: 1e-5,
                                           activation: .relu)
            let x = Tensor.randn([2, c, size, size], using: &rng)
            for residual in [nil, Tensor.randn([2, o, size, size], using: &rng)] {
                let label = "\(conv.algorithm(for: x.shape)) \(c)->\(o) on \(size)x\(size), residual \(residual != nil)"
                let (y, z) = conv(x, adding: residual, normalizing: norm)
                XCTAssertEqual(z != nil, conv.normalizesOutput(for: x.shape, adding: residual != nil), label)
                XCTAssertEqual(y.values, conv(x, adding: residual).values, label)
                guard let z else { continue }
                said.insert(label)
                let expected = batchNorm2d(y, weight: gamma, bias: beta, runningMean: mean, runningVar: variance,
                                           training: false, eps: 1e-5, activation: .relu)
                XCTAssertEqual(z.values, expected.values, label)
            }
        }
        // Packed with and without a residual, Winograd and depthwise with one; not the narrow kernel.
        XCTAssertEqual(said.count, 4, "\(said.sorted())")
    }

    /// One frozen depthwise convolution on planes of several sizes (an engine run at other input
    /// sizes): each plane its own laid-out weights, the same bits as a fresh convolution's.
    func testDepthwisePackedWeightsKeptPerPlane() {
        let k = Tensor.randn([16, 1, 3, 3], using: &rng), b = Tensor.randn([16], using: &rng)
        let frozen = FrozenConv2D(weight: k, bias: b, padding: (1, 1), groups: 16, activation: .relu)
        for size in [2, 4, 2, 1, 4] {
            let x = Tensor.randn([3, 16, size, size], using: &rng)
            let fresh = FrozenConv2D(weight: k, bias: b, padding: (1, 1), groups: 16, activation: .relu)
            XCTAssertEqual(frozen(x).values, fresh(x).values, "\(size)x\(size) after other planes")
        }
    }

    /// A depthwise 3x3 convolution summed directly: per output pixel the bias, then the taps that
    /// fall inside the image in row-major order. x [N, C, H, W], k [C, 1, 3, 3], b [C].
    private func depthwiseDirectSums(_ x: Tensor, _ k: Tensor, _ b: Tensor, stride: Int, padding: Int) -> [Float] {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h + 2 * padding - 3) / stride + 1, ow = (w + 2 * padding - 3) / stride + 1
        var sums = [Float](repeating: 0, count: n * c * oh * ow)
        for img in 0..<n {
            for ch in 0..<c {
                for y in 0..<oh {
                    for xw in 0..<ow {
                        var sum = b.data[ch]
                        for i in 0..<3 {
                            for j in 0..<3 {
                                let iy = y * stride - padding + i, ix = xw * stride - padding + j
                                guard (0..<h).contains(iy), (0..<w).contains(ix) else { continue }
                                sum += k.data[ch * 9 + i * 3 + j] * x.data[((img * c + ch) * h + iy) * w + ix]
                            }
                        }
                        sums[((img * c + ch) * oh + y) * ow + xw] = sum
                    }
                }
            }
        }
        return sums
    }

    /// Depthwise convolutions against the convolution summed out by hand (`conv2d` runs the same
    /// kernels): small planes run channel-blocked (MobileNetV2's 4x4 and 2x2 maps; a frozen one's
    /// 4x4 planes packed side by side, 53 channels filling whole vectors of them), larger ones
    /// plane by plane, at stride 2 through the padded plane's phases (odd and even widths and
    /// paddings), or with AVX-512 read in place (a "same" stride-1 plane, 14x14: 13 vectors, the
    /// last cut; an even plane halved at stride 2; from 8 output columns at 3x3 stride 2 an
    /// output row's columns a vector, 22 of them in two, the second cut).
    func testDepthwiseMatchesDirectSum() {
        let lanes = Conv2DTuning.depthwiseLanes
        for (size, stride, pad) in [(4, 1, 1), (4, 2, 1), (2, 1, 1), (3, 2, 1), (9, 2, 1), (12, 2, 0), (11, 2, 2), (33, 2, 1), (10, 1, 1),
                                    (14, 1, 1), (16, 2, 1), (32, 2, 1), (44, 2, 1)] {
            // Four blocks of channels (the last cut): every thread runs more than one block's images.
            let c = 3 * lanes + 5
            let x = Tensor.randn([2, c, size, size], using: &rng), w = Tensor.randn([c, 1, 3, 3], using: &rng)
            let b = Tensor.randn([c], using: &rng)
            let expected = depthwiseDirectSums(x, w, b, stride: stride, padding: pad).map { max($0, 0) }
            let frozen = FrozenConv2D(weight: w, bias: b, stride: (stride, stride), padding: (pad, pad), groups: c, activation: .relu)
            assertClose(frozen(x).values, expected, rtol: 1e-5, atol: 1e-5, "\(size)x\(size) stride \(stride) padding \(pad)")
        }
    }

    /// A 3x3 depthwise layer with padding 1 whose output rows are wide enough (`depthwise3x3_rows`:
    /// 16 columns at stride 1, 8 at stride 2) splits each input row into its taps' columns in
    /// registers, two output rows at a time; it gives the bits of the path through the padded
    /// plane that machines without AVX-512 take: the same sums in the same order. Stride 1 at 16
    /// and 45 columns (three vectors, the last cut; an odd row left over), stride 2 at 8 (half a
    /// vector), 16 and 23 (two vectors; an odd row left over); 31 channels of 2 images, ReLU6, an
    /// infinite and a NaN input; on the training op's path too.
    func testDepthwiseRowsSameBitsAsPaddedPlanes() {
        for (size, stride) in [(16, 1), (45, 1), (16, 2), (32, 2), (46, 2)] {
            let c = 31
            let x = Tensor.randn([2, c, size, size], using: &rng), w = Tensor.randn([c, 1, 3, 3], using: &rng)
            let b = Tensor.randn([c], using: &rng)
            x.data[5 * size * size + 2 * size + 7] = .infinity
            x.data[40 * size * size + size + size - 2] = .nan
            let conv = { FrozenConv2D(weight: w, bias: b, stride: (stride, stride), padding: (1, 1), groups: c, activation: .relu6)(x).values }
            let train = { Tape.withoutGradients { conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (1, 1), groups: c) }.values }
            let rows = conv(), trained = train()
            Conv2DTuning.portableKernels = true
            defer { Conv2DTuning.portableKernels = false }
            let planes = conv(), trainedPlanes = train()
            let name = "\(size)x\(size) stride \(stride)"
            for (path, a, b) in [("frozen", rows, planes), ("conv2d", trained, trainedPlanes)] {
                let differ = a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
                XCTAssertEqual(a.count, b.count)
                XCTAssert(differ.isEmpty, "\(name) \(path): \(differ.count) of \(a.count) values differ, the first at \(differ.first ?? 0)")
            }
            // The NaN's windows: 3x3 outputs at stride 1, 2x1 at stride 2.
            XCTAssertEqual(rows.filter(\.isNaN).count, stride == 1 ? 9 : 2, "\(name): the outputs whose windows hold the NaN")
        }
    }

    /// Convolutions that read the image in place read it from a zero-padded copy where its rows
    /// are whole vectors (16, 32 pixels), without masks: the same bits as under the masks, frozen
    /// (with a residual and ReLU6) and training, on 8-, 9- and 12-row panels, a 5x5 kernel, an
    /// infinite and a NaN input.
    func testPaddedCopySameBitsAsMaskedReads() {
        let cases: [(x: [Int], w: [Int], pad: Int)] = [
            ([2, 3, 8, 32], [16, 3, 3, 3], 1), ([1, 3, 5, 16], [27, 3, 3, 3], 1), ([2, 2, 6, 16], [12, 2, 5, 5], 2),
            ([1, 16, 32, 32], [16, 16, 3, 3], 1),  // 16 x 34 x 34 floats copied (PreAct ResNet-18 x0.25's first stage)
        ]
        defer { Conv2DTuning.maskedImageReads = false }
        for c in cases {
            let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn(c.w, using: &rng), b = Tensor.randn([c.w[0]], using: &rng)
            let residual = Tensor.randn([c.x[0], c.w[0], c.x[2], c.x[3]], using: &rng)
            x.data[c.x[3] + 3] = .infinity
            x.data[c.x[2] * c.x[3] + 2 * c.x[3] + 5] = .nan  // channel 1, row 2
            var results: [[[Float]]] = []
            for masked in [false, true] {
                Conv2DTuning.maskedImageReads = masked
                let frozen = FrozenConv2D(weight: w, bias: b, stride: (1, 1), padding: (c.pad, c.pad), activation: .relu6)
                let trained = Tape.withoutGradients { conv2d(x, weight: w, bias: b, padding: (c.pad, c.pad)) }
                results.append([frozen(x, adding: residual).values, trained.values])
            }
            for (k, path) in ["frozen", "conv2d"].enumerated() {
                let a = results[0][k], m = results[1][k]
                let differ = a.indices.filter { a[$0].bitPattern != m[$0].bitPattern }
                XCTAssert(differ.isEmpty, "\(c.x) * \(c.w) \(path): \(differ.count) of \(a.count) values differ from the masked reads")
                XCTAssert(a.contains(where: \.isNaN), "\(c.x) * \(c.w) \(path): the NaN reached the output")
            }
        }
    }

    /// Stride-2 patch rows are copied 16 at a time (a 7x7/2 stem, a 3x3/2 downsampling), or read
    /// from the image's phases: checked against the convolution summed out by hand, on the
    /// training path and the frozen one.
    func testStrideTwoMatchesDirectSum() {
        // A 7x7/2 stem, an odd plane (im2col), and a batch's 3x3/2 and 1x1/2 layers deeper than
        // a first layer, whose training forward reads the image's phases (`ns_pconv`).
        for (xs, k, pad) in [([2, 3, 36, 34], 7, 3), ([1, 4, 33, 40], 3, 1), ([2, 16, 16, 32], 3, 1), ([3, 40, 8, 16], 1, 0)] {
            let x = Tensor.randn(xs, using: &rng), w = Tensor.randn([5, xs[1], k, k], using: &rng)
            let oh = (xs[2] + 2 * pad - k) / 2 + 1, ow = (xs[3] + 2 * pad - k) / 2 + 1
            var expected = [Float](repeating: 0, count: xs[0] * 5 * oh * ow)
            for n in 0..<xs[0] {
                for o in 0..<5 {
                    for y in 0..<oh {
                        for xo in 0..<ow {
                            var sum: Float = 0
                            for c in 0..<xs[1] {
                                for i in 0..<k {
                                    for j in 0..<k {
                                        let ih = 2 * y - pad + i, iw = 2 * xo - pad + j
                                        guard (0..<xs[2]).contains(ih), (0..<xs[3]).contains(iw) else { continue }
                                        sum += w.data[((o * xs[1] + c) * k + i) * k + j] * x.data[((n * xs[1] + c) * xs[2] + ih) * xs[3] + iw]
                                    }
                                }
                            }
                            expected[((n * 5 + o) * oh + y) * ow + xo] = sum
                        }
                    }
                }
            }
            let plain = Tape.withoutGradients { conv2d(x, weight: w, stride: (2, 2), padding: (pad, pad)) }
            assertClose(plain.values, expected, rtol: 1e-4, atol: 1e-4, "\(xs) \(k)x\(k)/2 conv2d")
            let frozen = FrozenConv2D(weight: w, bias: nil, stride: (2, 2), padding: (pad, pad))
            assertClose(frozen(x).values, expected, rtol: 1e-4, atol: 1e-4, "\(xs) \(k)x\(k)/2 frozen")
        }
    }
}

/// A 3x3 "same" convolution of one group computed exactly (in double), and per output a bound on
/// a float algorithm's rounding error, first order (Higham's gamma_n = n u / (1 - n u), u = 2^-24):
/// - direct (a dot product of K = 9 C terms, then the bias): gamma_(K+1) (|b| + sum |w| |x|);
/// - Winograd's F(m, 3), m 2 or 4 (Lavin & Gray's matrices, as `winograd.c` writes them out):
///   gamma_(C+24) S, n counting the roundings of the input transform (8), the kernel's (6), the
///   product's C terms, the output transform (8) and the bias; S = |b| plus, over the channels, the
///   3x3 taps and the tile's (m+2)^2 input patch, |w| |x| weighted by P_i[a][p] P_j[b][q], where
///   P_i[a][p] = sum over the frequencies of |A^T| |G| |B^T| (what one input value times one tap can
///   reach output i of its tile through, in magnitude).
/// A wrong coefficient or a missing term is an error of the outputs' own size, far above it.
struct ConvolutionErrorBound {
    let exact: [Double]
    /// Per output |b| + the sum of |w| |x| over its products: a direct convolution's error scale.
    let magnitudes: [Double]
    let n: Int, c: Int, o: Int, h: Int, w: Int
    let xs: [Float], ws: [Float], bs: [Float]

    init(_ x: Tensor, _ weight: Tensor, _ bias: Tensor) {
        precondition(weight.shape[2] == 3 && weight.shape[3] == 3 && weight.shape[1] == x.shape[1])
        (n, c, h, w, o) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], weight.shape[0])
        (xs, ws, bs) = (x.values, weight.values, bias.values)
        var exact = [Double](repeating: 0, count: n * o * h * w), magnitudes = exact
        for img in 0..<n {
            for k in 0..<o {
                for y in 0..<h {
                    for xo in 0..<w {
                        var sum = Double(bs[k]), magnitude = Double(abs(bs[k]))
                        for ch in 0..<c {
                            for a in 0..<3 {
                                for bb in 0..<3 {
                                    let iy = y + a - 1, ix = xo + bb - 1
                                    guard (0..<h).contains(iy), (0..<w).contains(ix) else { continue }
                                    let product = Double(ws[((k * c + ch) * 3 + a) * 3 + bb]) * Double(xs[((img * c + ch) * h + iy) * w + ix])
                                    sum += product
                                    magnitude += abs(product)
                                }
                            }
                        }
                        exact[((img * o + k) * h + y) * w + xo] = sum
                        magnitudes[((img * o + k) * h + y) * w + xo] = magnitude
                    }
                }
            }
        }
        self.exact = exact
        self.magnitudes = magnitudes
    }

    private func x(_ img: Int, _ ch: Int, _ iy: Int, _ ix: Int) -> Double {
        (0..<h).contains(iy) && (0..<w).contains(ix) ? Double(abs(xs[((img * c + ch) * h + iy) * w + ix])) : 0
    }

    private static func gamma(_ count: Int) -> Double {
        let u = pow(2.0, -24.0)
        return Double(count) * u / (1 - Double(count) * u)
    }

    /// |A^T| |G| |B^T| per output i of a tile, tap a and patch element p.
    private static func amplification(_ m: Int) -> [[[Double]]] {
        let at: [[Double]], g: [[Double]], bt: [[Double]]
        if m == 2 {
            at = [[1, 1, 1, 0], [0, 1, -1, -1]]
            g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
            bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        } else {
            at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
            g = [[0.25, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6], [1.0 / 24, 1.0 / 12, 1.0 / 6],
                 [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]
            bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]]
        }
        let alpha = m + 2
        var out = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: alpha), count: 3), count: m)
        for i in 0..<m {
            for a in 0..<3 {
                for p in 0..<alpha {
                    var sum = 0.0
                    for f in 0..<alpha {
                        let reach: Double = abs(at[i][f]) * abs(g[f][a])
                        sum += reach * abs(bt[f][p])
                    }
                    out[i][a][p] = sum
                }
            }
        }
        return out
    }

    /// The bound on each output of `algorithm`'s float result.
    func bounds(_ algorithm: Conv2DAlgorithm) -> [Double] {
        if case let .winograd(m) = algorithm {
            var out = [Double](repeating: 0, count: exact.count)
            let p = Self.amplification(m), gamma = Self.gamma(c + 24)
            // t[i][j][a][b]: what tap (a, b) of one channel reaches output (i, j) of a tile
            // through, summed over the patch: the same for every output channel.
            var t = [Double](repeating: 0, count: m * m * 9)
            for img in 0..<n {
                for ch in 0..<c {
                    for ty in stride(from: 0, to: h, by: m) {
                        for tx in stride(from: 0, to: w, by: m) {
                            for q in 0..<t.count { t[q] = 0 }
                            for py in 0..<(m + 2) {
                                for qx in 0..<(m + 2) {
                                    let v = x(img, ch, ty - 1 + py, tx - 1 + qx)
                                    if v == 0 { continue }
                                    for i in 0..<m {
                                        for a in 0..<3 {
                                            let rows = p[i][a][py] * v
                                            if rows == 0 { continue }
                                            for j in 0..<m {
                                                for bb in 0..<3 { t[((i * m + j) * 3 + a) * 3 + bb] += rows * p[j][bb][qx] }
                                            }
                                        }
                                    }
                                }
                            }
                            for k in 0..<o {
                                let wk = ((k * c + ch) * 9)
                                for i in 0..<m where ty + i < h {
                                    for j in 0..<m where tx + j < w {
                                        var s = 0.0
                                        let base: Int = (i * m + j) * 9
                                        for tap in 0..<9 {
                                            let weight = Double(abs(ws[wk + tap]))
                                            s += weight * t[base + tap]
                                        }
                                        let index: Int = ((img * o + k) * h + ty + i) * w + tx + j
                                        out[index] += s
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for img in 0..<n {
                for k in 0..<o {
                    for q in 0..<(h * w) {
                        let i = (img * o + k) * h * w + q
                        out[i] = gamma * (out[i] + Double(abs(bs[k])))
                    }
                }
            }
            return out
        }
        let gamma = Self.gamma(9 * c + 1)
        return magnitudes.map { gamma * $0 }
    }

    /// `values` (with `addend` summed before `activation`) within `bound` (`bounds`) of the
    /// exact result (one more rounding for the sum; the activations move no value farther).
    func check(_ values: [Float], within bound: [Double], activation: Activation = .identity, adding addend: [Float]? = nil,
               _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let u = pow(2.0, -24.0)
        XCTAssertEqual(values.count, exact.count, what, file: file, line: line)
        var worst = (excess: 0.0, index: -1)
        for i in 0..<min(values.count, exact.count) {
            var e = exact[i], allowed = bound[i]
            if let addend {
                e += Double(addend[i])
                allowed += u * (abs(exact[i]) + abs(Double(addend[i])) + bound[i])
            }
            switch activation {
            case .identity: break
            case .relu: e = max(e, 0)
            case .relu6: e = min(max(e, 0), 6)
            }
            let excess = abs(Double(values[i]) - e) - allowed
            if excess > worst.excess || (excess.isNaN && !worst.excess.isNaN) { worst = (excess, i) }
        }
        if worst.index >= 0 {
            let i = worst.index
            XCTFail("\(what): element \(i) is \(values[i]), exact \(exact[i]) (bound \(bound[i]))", file: file, line: line)
        }
    }
}
