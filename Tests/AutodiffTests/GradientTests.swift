import Autodiff
import XCTest

/// Every op's gradient against central finite differences, on small odd shapes.
final class GradientTests: XCTestCase {
    var rng = RandomGenerator(seed: 7)

    func testAddSameShapeAndPerChannel() {
        let a = Tensor.randn([2, 3, 4, 5], using: &rng), b = Tensor.randn([2, 3, 4, 5], using: &rng)
        checkGradients("add", inputs: [a, b]) { add(a, b) }
        let c = Tensor.randn([3], using: &rng)
        checkGradients("add per-channel", inputs: [a, c]) { add(a, c) }
        let flat = Tensor.randn([4, 3], using: &rng)
        checkGradients("add per-channel on [N, C]", inputs: [flat, c]) { add(flat, c) }
    }

    func testMulSameShapeAndPerChannel() {
        let a = Tensor.randn([3, 2, 3, 5], using: &rng), b = Tensor.randn([3, 2, 3, 5], using: &rng)
        checkGradients("mul", inputs: [a, b]) { mul(a, b) }
        let c = Tensor.randn([2], using: &rng)
        checkGradients("mul per-channel", inputs: [a, c]) { mul(a, c) }
    }

    func testGateGivesDLossDGate() {
        let x = Tensor.randn([2, 4, 3, 3], using: &rng)
        let g = Tensor(shape: [4], values: [1, 0, 1, 0.5])
        checkGradients("channelScale", inputs: [x, g]) { channelScale(x, g) }
    }

    /// The fused residual sum (add, activation, per-channel gate) against central differences on
    /// planes of 1, 4 and 20 pixels (its three loops), every activation, with and without a
    /// scale; and against the three separate ops: the same output bits, the same gradients.
    func testResidualSum() {
        for shape in [[3, 5, 1, 1], [2, 3, 2, 2], [2, 3, 4, 5]] {
            // a + b at least 0.1 from the ReLU's kink, farther than the differences' step.
            let b = Tensor.randn(shape, using: &rng)
            let z = Tensor.randn(shape, using: &rng).values.map { $0 + ($0 < 0 ? -0.1 : 0.1) }
            let a = Tensor(shape: shape, values: zip(z, b.values).map { $0 - $1 })
            // Gates as the search has them (1, 0 for a pruned channel) and others.
            let s = Tensor(shape: [shape[1]], values: (0..<shape[1]).map { [1, 0, 0.5, -0.7, 2][$0 % 5] })
            for act in Activation.allCases {
                checkGradients("residualSum \(act) \(shape)", inputs: [a, b]) { residualSum(a, b, activation: act) }
                checkGradients("residualSum \(act) scaled \(shape)", inputs: [a, b, s]) {
                    residualSum(a, b, activation: act, scale: s)
                }
                var results: [[[Float]]] = []
                for fused in [true, false] {
                    for t in [a, b, s] { t.requiresGrad = true; t.grad = nil }
                    let y: Tensor
                    if fused {
                        y = residualSum(a, b, activation: act, scale: s)
                    } else {
                        let z = add(a, b)
                        y = channelScale(act == .identity ? z : act == .relu ? relu(z) : relu6(z), s)
                    }
                    y.backward(seed: Tensor.filled(shape, with: 0.3))
                    results.append([y.values, a.grad!.values, b.grad!.values, s.grad!.values])
                }
                XCTAssertEqual(results[0][0], results[1][0], "residualSum \(act) \(shape): output bits")
                for (k, what) in ["a", "b", "scale"].enumerated() {
                    assertClose(results[0][k + 1], results[1][k + 1], rtol: 1e-5, atol: 1e-5, "residualSum \(act) \(shape): \(what)'s gradient")
                }
            }
        }
        // An input added to itself takes the gradient twice.
        let x = Tensor.randn([2, 3, 2, 2], using: &rng)
        checkGradients("residualSum x + x", inputs: [x]) { residualSum(x, x, activation: .relu) }
    }

    /// While a trace is active the residual sum runs as the ops an exported graph knows.
    func testResidualSumTracesAsItsOps() {
        let a = Tensor.randn([2, 3, 2, 2], using: &rng), b = Tensor.randn([2, 3, 2, 2], using: &rng)
        let s = Tensor.filled([3], with: 1)
        let (y, trace) = Tape.withoutGradients { Trace.record { residualSum(a, b, activation: .relu6, scale: s) } }
        XCTAssertEqual(trace.ops.map(\.kind), [.add, .relu6, .channelScale])
        XCTAssertEqual(y.values, Tape.withoutGradients { residualSum(a, b, activation: .relu6, scale: s) }.values)
    }

    func testSelectChannels() {
        let x = Tensor.randn([2, 5, 3, 4], using: &rng)
        checkGradients("select channels", inputs: [x]) { selectChannels(x, [4, -1, 0, 0, 2, -1]) }
        let flat = Tensor.randn([3, 4], using: &rng)
        checkGradients("select channels on [N, C]", inputs: [flat]) { selectChannels(flat, [3, 1]) }
    }

    func testMatmulAndLinear() {
        let a = Tensor.randn([3, 4], using: &rng), b = Tensor.randn([4, 5], using: &rng)
        checkGradients("matmul", inputs: [a, b]) { matmul(a, b) }
        let x = Tensor.randn([3, 7], using: &rng), w = Tensor.randn([5, 7], using: &rng)
        let bias = Tensor.randn([5], using: &rng)
        checkGradients("linear", inputs: [x, w, bias]) { linear(x, weight: w, bias: bias) }
        checkGradients("linear without bias", inputs: [x, w]) { linear(x, weight: w, bias: nil) }
    }

    func testConv2dDense() {
        let x = Tensor.randn([2, 3, 7, 5], using: &rng), w = Tensor.randn([4, 3, 3, 3], using: &rng)
        let b = Tensor.randn([4], using: &rng)
        let w2 = Tensor.randn([3, 3, 2, 3], using: &rng)
        let w1 = Tensor.randn([5, 3, 1, 1], using: &rng), b1 = Tensor.randn([5], using: &rng)
        forEachConvPath { path in
            checkGradients("conv 3x3 s1 p1, \(path)", inputs: [x, w, b]) { conv2d(x, weight: w, bias: b, padding: (1, 1)) }
            checkGradients("conv 3x3 s2 p1, \(path)", inputs: [x, w]) { conv2d(x, weight: w, stride: (2, 2), padding: (1, 1)) }
            checkGradients("conv 2x3 s(2,1) p(0,2) no pad rows, \(path)", inputs: [x, w2]) {
                conv2d(x, weight: w2, stride: (2, 1), padding: (0, 2))
            }
            checkGradients("conv 1x1 s1, \(path)", inputs: [x, w1, b1]) { conv2d(x, weight: w1, bias: b1) }
            checkGradients("conv 1x1 s2, \(path)", inputs: [x, w1]) { conv2d(x, weight: w1, stride: (2, 2)) }
        }
    }

    func testConv2dOverSeveralBlocks() {
        // An odd batch over `gemmPieces` pieces: pieces of different sizes, blocks of one image or
        // several, and (with a tiny budget) dW accumulating across a piece's blocks before the
        // pieces' partial sums are added.
        let batch = 2 * Parallel.gemmPieces + 1
        let x = Tensor.randn([batch, 2, 9, 8], using: &rng), w = Tensor.randn([3, 2, 3, 3], using: &rng)
        let w1 = Tensor.randn([4, 2, 1, 1], using: &rng)
        let b = Tensor.randn([3], using: &rng)
        forEachConvPath { path in
            checkGradients("conv s2 over blocks, \(path)", inputs: [x, w, b]) {
                conv2d(x, weight: w, bias: b, stride: (2, 2), padding: (1, 1))
            }
            checkGradients("conv s1 p1 over blocks, \(path)", inputs: [x, w]) { conv2d(x, weight: w, padding: (1, 1)) }
            checkGradients("conv 1x1 over blocks, \(path)", inputs: [x, w1]) { conv2d(x, weight: w1) }
        }
    }

    /// Fewer images than GEMM pieces: the forward pass splits output channels over the pieces
    /// (one shared patch matrix), the backward pass is the usual one. Each image of a batch must
    /// also come out as it does alone.
    func testConv2dSingleImage() {
        let x = Tensor.randn([1, 4, 7, 6], using: &rng), w = Tensor.randn([5, 4, 3, 3], using: &rng)
        let b = Tensor.randn([5], using: &rng), w1 = Tensor.randn([7, 4, 1, 1], using: &rng)
        let wg = Tensor.randn([6, 2, 3, 3], using: &rng)
        forEachConvPath { path in
            checkGradients("one image, 3x3 s1 p1, \(path)", inputs: [x, w, b]) { conv2d(x, weight: w, bias: b, padding: (1, 1)) }
            checkGradients("one image, 3x3 s2, \(path)", inputs: [x, w]) { conv2d(x, weight: w, stride: (2, 2), padding: (1, 1)) }
            checkGradients("one image, 1x1, \(path)", inputs: [x, w1]) { conv2d(x, weight: w1) }
            checkGradients("one image, groups 2, \(path)", inputs: [x, wg]) { conv2d(x, weight: wg, padding: (1, 1), groups: 2) }
        }
        let pair = Tensor.randn([2, 4, 7, 6], using: &rng)
        let both = Tape.withoutGradients { conv2d(pair, weight: w, bias: b, stride: (2, 1), padding: (1, 1)) }
        for img in 0..<2 {
            let alone = Tensor(shape: [1, 4, 7, 6], values: Array(pair.values[(img * 168)..<((img + 1) * 168)]))
            let y = Tape.withoutGradients { conv2d(alone, weight: w, bias: b, stride: (2, 1), padding: (1, 1)) }
            let part = Array(both.values[(img * y.count)..<((img + 1) * y.count)])
            assertClose(y.values, part, rtol: 1e-5, atol: 1e-5, "image \(img) alone and in a batch of two")
        }
    }

    /// Maps so small that whole kernel rows or columns read only padding: the convolution runs on
    /// the kernel part that reads the image (the centre of a 3x3 kernel on a 1x1 map; the middle
    /// rows of one on a 1-pixel-high map; 3x3 of a 5x5 on a 2x2 map), and the left-out weights get
    /// a gradient of exactly zero.
    func testConv2dKernelReadingPadding() {
        let cases: [(x: [Int], w: [Int], stride: Int, padding: Int, outside: [(Int, Int)])] = [
            ([2, 3, 1, 1], [4, 3, 3, 3], 1, 1, [(0, 0), (0, 1), (2, 2), (1, 0)]),
            ([2, 3, 1, 4], [4, 3, 3, 3], 1, 1, [(0, 1), (2, 0)]),
            ([2, 3, 2, 2], [4, 3, 5, 5], 1, 2, [(0, 0), (4, 2), (2, 4)]),
            ([1, 3, 1, 1], [4, 3, 3, 3], 2, 1, [(0, 0), (2, 2)]),
        ]
        forEachConvPath { path in
            for c in cases {
                let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn(c.w, using: &rng), b = Tensor.randn([c.w[0]], using: &rng)
                checkGradients("\(c.x) * \(c.w) s\(c.stride) p\(c.padding), \(path)", inputs: [x, w, b]) {
                    conv2d(x, weight: w, bias: b, stride: (c.stride, c.stride), padding: (c.padding, c.padding))
                }
                w.requiresGrad = true
                conv2d(x, weight: w, stride: (c.stride, c.stride), padding: (c.padding, c.padding)).backward(
                    seed: Tensor.randn([c.x[0], c.w[0]] + [(c.x[2] + 2 * c.padding - c.w[2]) / c.stride + 1,
                                                            (c.x[3] + 2 * c.padding - c.w[3]) / c.stride + 1], using: &rng))
                for (i, j) in c.outside {
                    for q in 0..<(c.w[0] * c.w[1]) {
                        XCTAssertEqual(w.grad!.data[(q * c.w[2] + i) * c.w[3] + j], 0, "\(c.x) * \(c.w): tap (\(i), \(j)) reads only padding")
                    }
                }
                w.grad = nil
            }
        }
    }

    func testConv2dGrouped() {
        let x = Tensor.randn([2, 4, 6, 5], using: &rng), w = Tensor.randn([6, 2, 3, 2], using: &rng)
        let b = Tensor.randn([6], using: &rng)
        checkGradients("conv groups 2", inputs: [x, w, b]) {
            conv2d(x, weight: w, bias: b, stride: (2, 1), padding: (1, 0), groups: 2)
        }
    }

    /// Shallow convolutions (a first layer: products at most `packedMaxDepth` deep) run forward on
    /// the packed tiles, their weight and bias gradients as lane sums along the pixels of several
    /// images per piece, and a fresh input gradient of at most 4 channels as
    /// every tap's contribution, shifted and summed: all against the sgemm path. Planes large
    /// enough for one image per block (17x16) and smaller ones, several per block, whose pixel
    /// counts leave a tail of lanes (15x13); 1 to 4 input channels (4 in a 1x1 convolution); a 5x5
    /// kernel.
    func testShallowConvolutionMatchesTheSgemmPath() {
        let cases: [(x: [Int], w: [Int], pad: Int)] = [
            ([7, 3, 17, 16], [5, 3, 3, 3], 1), ([5, 1, 15, 13], [6, 1, 3, 3], 1),
            ([3, 2, 16, 17], [9, 2, 3, 3], 1), ([3, 1, 17, 16], [4, 1, 5, 5], 2), ([2, 4, 16, 17], [6, 4, 1, 1], 0),
        ]
        let saved = Conv2DTuning.packedMaxDepth
        defer { Conv2DTuning.packedMaxDepth = saved; Conv2DTuning.portableKernels = false }
        for c in cases {
            let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn(c.w, using: &rng)
            let b = Tensor.randn([c.w[0]], using: &rng), seed = Tensor.randn([c.x[0], c.w[0], c.x[2], c.x[3]], using: &rng)
            // The in-place kernels (AVX-512), the patch-matrix lane sums (any machine), sgemm.
            var results: [[[Float]]] = []
            for (depth, portable) in [(saved, false), (saved, true), (0, false)] {
                Conv2DTuning.packedMaxDepth = depth
                Conv2DTuning.portableKernels = portable
                for t in [x, w, b] { t.requiresGrad = true; t.grad = nil }
                let y = conv2d(x, weight: w, bias: b, padding: (c.pad, c.pad))
                y.backward(seed: seed)
                results.append([y.values, x.grad!.values, w.grad!.values, b.grad!.values])
            }
            for path in 0..<2 {
                for (k, what) in ["output", "input gradient", "weight gradient", "bias gradient"].enumerated() {
                    assertClose(results[path][k], results[2][k], rtol: 1e-5, atol: 1e-4,
                                "shallow convolution \(c.x) * \(c.w), \(path == 0 ? "in place" : "portable"): \(what)")
                }
            }
        }
    }

    /// A halving convolution's input gradient (`ns_conv_dx_s2`: every tap's contribution gathered
    /// into the even and odd rows and columns) against the adjoint summed out by hand: 3x3/2 on
    /// planes of whole vectors (32x32), with a cut vector (36 = 16 + 16 + 4 columns), 8x8 and the
    /// smallest, 2x2; 1x1/2 (odd rows and columns get nothing); written fresh and added to an
    /// input gradient another convolution of the same input wrote first; the wide kernel and the
    /// portable one; the contributions by the packed GEMM and by sgemm, the images one at a time
    /// and side by side. Also by central differences on a small even plane.
    func testHalvingInputGradientMatchesTheAdjoint() {
        let cases: [(x: [Int], o: Int, k: Int)] = [
            ([2, 16, 32, 32], 8, 3), ([1, 3, 36, 36], 5, 3), ([3, 9, 8, 8], 20, 3), ([5, 5, 2, 2], 4, 3),
            ([3, 7, 10, 34], 6, 1), ([1, 4, 6, 6], 3, 1),
        ]
        let saved = Conv2DTuning.halvingPackedDepth
        defer { Conv2DTuning.portableKernels = false; Conv2DTuning.halvingPackedDepth = saved }
        for c in cases {
            let (n, ch, h, wd) = (c.x[0], c.x[1], c.x[2], c.x[3]), pad = c.k / 2, oh = h / 2, ow = wd / 2
            let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn([c.o, ch, c.k, c.k], using: &rng)
            let w2 = Tensor.randn([c.o, ch, 1, 1], using: &rng)
            let seed = Tensor.randn([n, c.o, oh, ow], using: &rng)
            // dx[n][c][ih][iw] = sum over o and the output pixels (y, x) and taps (i, j) that read it.
            var expected = [Float](repeating: 0, count: x.count)
            for b in 0..<n {
                for o in 0..<c.o {
                    for y in 0..<oh {
                        for xo in 0..<ow {
                            let d = seed.data[((b * c.o + o) * oh + y) * ow + xo]
                            for cc in 0..<ch {
                                for i in 0..<c.k {
                                    for j in 0..<c.k {
                                        let ih = 2 * y - pad + i, iw = 2 * xo - pad + j
                                        guard (0..<h).contains(ih), (0..<wd).contains(iw) else { continue }
                                        expected[((b * ch + cc) * h + ih) * wd + iw] += w.data[((o * ch + cc) * c.k + i) * c.k + j] * d
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // The second convolution (1x1/2 of the same input) with the same upstream gradient.
            var withShortcut = expected
            for b in 0..<n {
                for o in 0..<c.o {
                    for y in 0..<oh {
                        for xo in 0..<ow {
                            let d = seed.data[((b * c.o + o) * oh + y) * ow + xo]
                            for cc in 0..<ch { withShortcut[((b * ch + cc) * h + 2 * y) * wd + 2 * xo] += w2.data[o * ch + cc] * d }
                        }
                    }
                }
            }
            // Portable or not; the contributions by the packed GEMM or by sgemm; with the weight
            // gradient (dOut then gathered for its GEMM, the images side by side) or without.
            for portable in [false, true] {
                for packedDepth in [0, Int.max] {
                    for weightGradient in [false, true] {
                        Conv2DTuning.portableKernels = portable
                        Conv2DTuning.halvingPackedDepth = packedDepth
                        let what = "\(c.x) \(c.k)x\(c.k)/2\(portable ? " portable" : "")\(packedDepth > 0 ? " packed" : " sgemm")"
                            + (weightGradient ? " with dW" : "")
                        for t in [w, w2] { t.requiresGrad = weightGradient; t.grad = nil }
                        x.requiresGrad = true
                        x.grad = nil
                        conv2d(x, weight: w, stride: (2, 2), padding: (pad, pad)).backward(seed: seed)
                        assertClose(x.grad!.values, expected, rtol: 1e-4, atol: 1e-4, "\(what): input gradient")
                        x.grad = nil
                        let both = add(conv2d(x, weight: w, stride: (2, 2), padding: (pad, pad)), conv2d(x, weight: w2, stride: (2, 2)))
                        both.backward(seed: seed)
                        assertClose(x.grad!.values, withShortcut, rtol: 1e-4, atol: 1e-4, "\(what): added to another's")
                    }
                }
            }
        }
        let x = Tensor.randn([2, 3, 6, 4], using: &rng), w = Tensor.randn([4, 3, 3, 3], using: &rng)
        let w1 = Tensor.randn([5, 3, 1, 1], using: &rng)
        forEachConvPath { path in
            checkGradients("conv 3x3 s2 p1 even plane, \(path)", inputs: [x, w]) { conv2d(x, weight: w, stride: (2, 2), padding: (1, 1)) }
            checkGradients("conv 1x1 s2 even plane, \(path)", inputs: [x, w1]) { conv2d(x, weight: w1, stride: (2, 2)) }
        }
    }

    /// A residual sum's gradient goes to both summands without a copy (`shareGrad`), and each
    /// copy of it is made before anything adds into it: two leaves summed share their gradient
    /// until one is written; the shortcut's gradient added to by a rule recorded after the
    /// branch's last op (so run before that op reads its gradient), with the sum itself shared on
    /// by another sum (`add` and `residualSum`); a shared gradient passed on by a sum with a
    /// constant (no longer shared with its partner's, still with another's); batch norm adding
    /// its input gradient in place once the branch's gradient is released (a pre-activation
    /// block), or into a new buffer with the shared one as its addend while the branch's is still
    /// to be read; planes of whole vectors and of fewer pixels than a vector; all by central
    /// differences.
    func testSharedResidualGradientsStayApart() {
        let p = Tensor.randn([2, 3], using: &rng), q = Tensor.randn([2, 3], using: &rng)
        p.requiresGrad = true
        q.requiresGrad = true
        let seed = Tensor.randn([2, 3], using: &rng)
        add(p, q).backward(seed: seed)
        XCTAssertEqual(p.grad?.values, seed.values)
        XCTAssertEqual(q.grad?.values, seed.values)
        XCTAssertEqual(p.grad?.data, q.grad?.data, "a sum's two gradients share one buffer")
        q.gradBuffer().data[0] += 100
        XCTAssertNotEqual(p.grad?.data, q.grad?.data, "written, a gradient has a buffer of its own")
        XCTAssertEqual(p.grad?.values, seed.values, "adding into one summand's gradient changed the other's")
        XCTAssertEqual(q.grad?.data[0], seed.data[0] + 100)

        let x = Tensor.randn([2, 3, 4, 4], using: &rng), y = Tensor.randn([2, 3, 4, 4], using: &rng)
        let w = Tensor.randn([3, 3, 3, 3], std: 0.3, using: &rng)
        checkGradients("shortcut added to before the branch is read", inputs: [x, y, w]) {
            let b = relu(x)
            let a = conv2d(y, weight: w, padding: (1, 1))
            let c = mul(b, b)
            return add(add(a, b), c)
        }
        checkGradients("residual sum with an activation, shared on", inputs: [x, y, w]) {
            let b = relu(x)
            let a = conv2d(y, weight: w, padding: (1, 1))
            let c = mul(b, b)
            return add(residualSum(a, b, activation: .identity), c)
        }
        // A shared gradient passed on whole (to a summand whose partner takes none) stays shared.
        let k = Tensor.randn([2, 3, 4, 4], using: &rng)
        checkGradients("shared gradient passed on", inputs: [x, y]) {
            let a = mul(y, y)
            let c = mul(x, x)
            let e = mul(a, a)
            return add(add(add(a, k), c), e)
        }
        for shape in [[4, 3, 4, 4], [5, 3, 2, 2]] {
            let input = Tensor.randn(shape, using: &rng)
            let gamma = Tensor.uniform([3], low: 0.5, high: 1.5, using: &rng), beta = Tensor.randn([3], using: &rng)
            let rm = Tensor.zeros([3]), rv = Tensor.filled([3], with: 1)
            checkGradients("pre-activation block \(shape)", inputs: [input, w, gamma, beta]) {
                // No activation: central differences across ReLU's kink would not hold.
                let h = batchNorm2d(input, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true)
                let block = add(conv2d(h, weight: w, padding: (1, 1)), input)
                return batchNorm2d(block, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true)
            }
            // Batch norm of the shortcut recorded after the branch: its input gradient is written
            // while the branch's (the same storage) is still to be read, so into a new buffer.
            let z = Tensor.randn(shape, using: &rng)
            checkGradients("batch norm beside a shared gradient \(shape)", inputs: [input, z, gamma, beta]) {
                let a = mul(z, z)
                let h = batchNorm2d(input, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true)
                return add(add(a, input), h)
            }
        }
    }

    /// A halving convolution's weight and bias gradients as lane sums on each image's phases
    /// (`Conv2DTuning.halvingLanes`) against sgemm's on the patch matrix: 3x3/2 on 32x32 (a 16x16
    /// output, one vector a row), 32 input channels (288 patch rows, the most), a cut vector (36x36:
    /// rows of 18), a small plane (8x8: a vector four rows), 1x1/2 (the even phase alone); with and
    /// without a bias and an input gradient.
    func testHalvingWeightGradientAsLaneSumsMatchesTheSgemmPath() {
        let cases: [(x: [Int], o: Int, k: Int)] = [([3, 16, 32, 32], 32, 3), ([2, 32, 32, 32], 20, 3), ([2, 5, 36, 36], 7, 3),
                                                   ([3, 9, 8, 8], 6, 3), ([2, 24, 32, 32], 12, 1)]
        let saved = Conv2DTuning.halvingLanes
        defer { Conv2DTuning.halvingLanes = saved }
        for c in cases {
            let pad = c.k / 2
            let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn([c.o, c.x[1], c.k, c.k], using: &rng)
            let b = Tensor.randn([c.o], using: &rng)
            let seed = Tensor.randn([c.x[0], c.o, c.x[2] / 2, c.x[3] / 2], using: &rng)
            for (withBias, inputGradient) in [(true, true), (false, false), (true, false)] {
                var results: [[[Float]]] = []
                for lanes in [Conv2DTuning.HalvingLanes.always, .off] {
                    Conv2DTuning.halvingLanes = lanes
                    x.requiresGrad = inputGradient
                    w.requiresGrad = true
                    b.requiresGrad = withBias
                    x.grad = nil; w.grad = nil; b.grad = nil
                    conv2d(x, weight: w, bias: withBias ? b : nil, stride: (2, 2), padding: (pad, pad)).backward(seed: seed)
                    results.append([w.grad!.values, b.grad?.values ?? [], x.grad?.values ?? []])
                }
                let what = "\(c.x) -> \(c.o) \(c.k)x\(c.k)/2\(withBias ? " with bias" : "")\(inputGradient ? " and dX" : "")"
                for (k, name) in ["weight gradient", "bias gradient", "input gradient"].enumerated() {
                    XCTAssertEqual(results[0][k].count, results[1][k].count, "\(what): \(name)")
                    assertClose(results[0][k], results[1][k], rtol: 1e-5, atol: 1e-4, "\(what): \(name)")
                }
            }
        }
    }

    /// "Same" stride-1 convolutions of fewer than 32 input channels run forward on the packed tiles
    /// in training (under Winograd's `auto`), and where Winograd takes their backward, a fresh
    /// input gradient is the packed forward of dOut with the flipped kernels: all against the
    /// sgemm path (`winograd` off); their weight gradients as lane sums on 32x32 maps and where
    /// Winograd does not apply. 16 channels on 32x32 (lane sums beside the packed input gradient),
    /// 8 -> 12 on 16x16 (no Winograd: the same two), 24 -> 20 on 16x32 (Winograd's weight gradient), a
    /// 1x1 (left to sgemm); the input used by two convolutions (the second input gradient added to
    /// the first).
    func testFewChannelConvolutionsOnPackedTilesMatchTheSgemmPath() throws {
        // `auto` takes the packed tiles only where they read the image under masks (AVX-512).
        guard Conv2DTuning.maskedImageKernels else { throw XCTSkip("no AVX-512 here: `auto` does not take the packed tiles") }
        let cases: [(x: [Int], o: Int, k: Int)] = [([3, 16, 32, 32], 16, 3), ([2, 8, 16, 16], 12, 3), ([3, 24, 16, 32], 20, 3),
                                                   ([2, 16, 16, 16], 24, 1)]
        let saved = Conv2DTuning.winograd
        defer { Conv2DTuning.winograd = saved }
        for c in cases {
            let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn([c.o, c.x[1], c.k, c.k], using: &rng)
            let b = Tensor.randn([c.o], using: &rng), w2 = Tensor.randn([c.o, c.x[1], c.k, c.k], using: &rng)
            let seed = Tensor.randn([c.x[0], c.o, c.x[2], c.x[3]], using: &rng)
            for twice in [false, true] {
                var results: [[[Float]]] = []
                for mode in [Conv2DTuning.Winograd.auto, .off, .tile(4)] {
                    Conv2DTuning.winograd = mode
                    for t in [x, w, b, w2] { t.requiresGrad = true; t.grad = nil }
                    var y = conv2d(x, weight: w, bias: b, padding: (c.k / 2, c.k / 2))
                    if twice { y = add(y, conv2d(x, weight: w2, padding: (c.k / 2, c.k / 2))) }
                    y.backward(seed: seed)
                    results.append([y.values, x.grad!.values, w.grad!.values, b.grad!.values])
                }
                // What Winograd computes (the weight gradient of its 3x3 sizes below the lane sums'
                // plane, an input gradient added to another) against Winograd forced, the rest
                // against sgemm.
                let winograd = c.k == 3 && c.x[1] >= 16 && c.o >= 16
                let lanes = c.x[2] * c.x[3] >= Conv2DTuning.fewChannelsLanesPlane
                for (k, what) in ["output", "input gradient", "weight gradient", "bias gradient"].enumerated() {
                    let byWinograd = winograd && ((k == 2 && !lanes) || (k == 1 && twice))
                    assertClose(results[0][k], results[byWinograd ? 2 : 1][k], rtol: 1e-4, atol: 1e-4,
                                "\(c.x) -> \(c.o) \(c.k)x\(c.k)\(twice ? " used twice" : ""): \(what)")
                }
            }
        }
    }

    /// A shallow convolution whose rows are whole vectors (16, 32 pixels) reads the image for its
    /// weight and bias gradients from a zero-padded copy without masks; the same bits as under
    /// the masks: 3 channels and 3x3 (a first layer, two vectors a row), 1 channel and 5x5
    /// (padding 2), no bias (no row of ones), an infinite output gradient.
    func testShallowWeightGradientFromPaddedCopySameBitsAsMasked() {
        let cases: [(x: [Int], w: [Int], pad: Int, bias: Bool)] = [
            ([3, 3, 8, 32], [7, 3, 3, 3], 1, true), ([2, 1, 5, 16], [5, 1, 5, 5], 2, true), ([2, 2, 4, 16], [6, 2, 3, 3], 1, false),
        ]
        defer { Conv2DTuning.maskedImageReads = false }
        for c in cases {
            let x = Tensor.randn(c.x, using: &rng), w = Tensor.randn(c.w, using: &rng)
            let b = c.bias ? Tensor.randn([c.w[0]], using: &rng) : nil
            let seed = Tensor.randn([c.x[0], c.w[0], c.x[2], c.x[3]], using: &rng)
            seed.data[3 * c.x[3] + 5] = .infinity
            var results: [[[Float]]] = []
            for masked in [false, true] {
                Conv2DTuning.maskedImageReads = masked
                for t in [x, w] + (b.map { [$0] } ?? []) { t.requiresGrad = true; t.grad = nil }
                let y = conv2d(x, weight: w, bias: b, padding: (c.pad, c.pad))
                y.backward(seed: seed)
                results.append([w.grad!.values] + (b.map { [$0.grad!.values] } ?? []))
            }
            for (k, what) in ["weight gradient", "bias gradient"].prefix(results[0].count).enumerated() {
                let a = results[0][k], m = results[1][k]
                let differ = a.indices.filter { a[$0].bitPattern != m[$0].bitPattern }
                XCTAssert(differ.isEmpty, "\(c.x) * \(c.w) \(what): \(differ.count) of \(a.count) values differ from the masked reads")
                XCTAssert(a.contains { !$0.isFinite }, "\(c.x) * \(c.w) \(what): the infinite gradient reached it")
            }
        }
    }

    func testConv2dDepthwise() {
        let x = Tensor.randn([2, 3, 7, 6], using: &rng), w = Tensor.randn([3, 1, 3, 3], using: &rng)
        let b = Tensor.randn([3], using: &rng)
        checkGradients("depthwise s1 p1", inputs: [x, w, b]) { conv2d(x, weight: w, bias: b, padding: (1, 1), groups: 3) }
        checkGradients("depthwise s2 p1", inputs: [x, w]) { conv2d(x, weight: w, stride: (2, 2), padding: (1, 1), groups: 3) }
        let w2 = Tensor.randn([6, 1, 3, 3], using: &rng)
        checkGradients("depthwise multiplier 2", inputs: [x, w2]) {
            conv2d(x, weight: w2, stride: (2, 2), padding: (1, 1), groups: 3)
        }
        // More channels than one block of vector lanes, the last block partial; a 5x3 kernel
        // with unequal padding; planes smaller than the kernel's reach.
        let lanes = Conv2DTuning.depthwiseLanes
        let xs = Tensor.randn([2, lanes + 3, 4, 5], using: &rng), ws = Tensor.randn([lanes + 3, 1, 5, 3], using: &rng)
        let bs = Tensor.randn([lanes + 3], using: &rng)
        checkGradients("depthwise over channel blocks", inputs: [xs, ws, bs]) {
            conv2d(xs, weight: ws, bias: bs, padding: (2, 1), groups: lanes + 3)
        }
        checkGradients("depthwise over channel blocks, stride (2, 1)", inputs: [xs, ws]) {
            conv2d(xs, weight: ws, stride: (2, 1), padding: (1, 0), groups: lanes + 3)
        }
    }

    func testBatchNormTrainAndEval() {
        let x = Tensor.randn([3, 2, 4, 5], using: &rng)
        let gamma = Tensor.randn([2], using: &rng), beta = Tensor.randn([2], using: &rng)
        let rm = Tensor.randn([2], using: &rng), rv = Tensor.uniform([2], low: 0.5, high: 1.5, using: &rng)
        // Planes of a vector and a tail (4x5), and smaller than a vector (2x2, 1x1: run along
        // the flat channel-major index).
        let small = Tensor.randn([3, 2, 2, 2], using: &rng), single = Tensor.randn([5, 2, 1, 1], using: &rng)
        for act in Activation.allCases {
            for input in [x, small, single] {
                checkGradients("batchnorm train \(act) \(input.shape)", inputs: [input, gamma, beta]) {
                    batchNorm2d(input, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true, activation: act)
                }
                checkGradients("batchnorm eval \(act) \(input.shape)", inputs: [input, gamma, beta]) {
                    batchNorm2d(input, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: false, activation: act)
                }
            }
        }
    }

    /// The batch statistics come from one pass of sums shifted by a value of the channel: a mean
    /// 10^4 times the spread must not cancel away the variance (plain sums of squares in float
    /// would leave nothing of it). Checked against the statistics in double precision, over
    /// planes of whole vectors, of vectors plus a tail and of less than a vector; the normalized
    /// values within the float mean's rounding (10^2 * 2^-24 / 10^-2, 6e-4).
    func testBatchNormStatisticsOfDataFarFromZero() {
        for inner in [16 * 3, 37, 5] {
            let n = 5, c = 3
            let x = Tensor.randn([n, c, 1, inner], using: &rng)
            for i in 0..<x.count { x.data[i] = 100 + Float((i / inner) % c) + 0.01 * x.data[i] }
            let rm = Tensor.zeros([c]), rv = Tensor.filled([c], with: 1)
            let y = Tape.withoutGradients {
                batchNorm2d(x, weight: Tensor.filled([c], with: 1), bias: Tensor.zeros([c]), runningMean: rm, runningVar: rv,
                            training: true, momentum: 1)
            }
            for ch in 0..<c {
                let values = (0..<n).flatMap { img in (0..<inner).map { Double(x.data[(img * c + ch) * inner + $0]) } }
                let mean = values.reduce(0, +) / Double(values.count)
                let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
                XCTAssertEqual(Double(rm.data[ch]), mean, accuracy: 1e-4, "inner \(inner) channel \(ch): running mean")
                XCTAssertEqual(Double(rv.data[ch]), variance * Double(values.count) / Double(values.count - 1),
                               accuracy: 1e-3 * variance, "inner \(inner) channel \(ch): running variance")
                for (k, v) in values.enumerated() {
                    let img = k / inner, i = k % inner
                    let expected = (v - mean) / (variance + 1e-5).squareRoot()
                    XCTAssertEqual(Double(y.data[(img * c + ch) * inner + i]), expected, accuracy: 1e-3,
                                   "inner \(inner) channel \(ch): normalized value \(k)")
                }
            }
        }
    }

    /// In training (one process) batch norm runs its passes a chunk of channels at a time, each
    /// chunk's sums, statistics and output (backward: gradient sums and input gradient) one right
    /// after the other: the same bits as each pass over all channels before the next, with a
    /// chunk of one channel, of a few and of all; output, running statistics, and the gradients
    /// of the input (fresh and added to), the weights and the gate.
    func testBatchNormByChunksOfChannelsSameBits() {
        let saved = BatchNormTuning.fusedBytes
        defer { BatchNormTuning.fusedBytes = saved }
        for shape in [[5, 7, 4, 5], [3, 9, 16, 16]] {
            let c = shape[1], perChannel = shape[0] * shape[2] * shape[3] * 4
            let x = Tensor.randn(shape, using: &rng), seed = Tensor.randn(shape, using: &rng)
            let gamma = Tensor.randn([c], using: &rng), beta = Tensor.randn([c], using: &rng)
            let gate = Tensor(shape: [c], values: (0..<c).map { $0 == 1 ? 0 : 0.5 + Float($0) / 10 })
            var results: [[[Float]]] = []
            for bytes in [0, 1, 3 * perChannel, saved] {
                BatchNormTuning.fusedBytes = bytes
                let rm = Tensor.zeros([c]), rv = Tensor.filled([c], with: 1)
                for t in [x, gamma, beta, gate] { t.requiresGrad = true; t.grad = nil }
                var run: [[Float]] = []
                for pass in 0..<2 {  // the second adds to the first's gradients
                    let y = batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true,
                                        activation: .relu6, gate: gate)
                    y.backward(seed: seed)
                    if pass == 0 { run.append(y.values) }
                }
                run += [rm.values, rv.values] + [x, gamma, beta, gate].map { $0.grad!.values }
                results.append(run)
            }
            let names = ["output", "running mean", "running variance", "dx", "dgamma", "dbeta", "dgate"]
            for (k, r) in results.enumerated().dropFirst() {
                for (i, name) in names.enumerated() {
                    let differ = r[i].indices.filter { r[i][$0].bitPattern != results[0][i][$0].bitPattern }
                    XCTAssert(differ.isEmpty, "\(shape) setting \(k): \(name) differs from the unchunked passes in \(differ.count) of \(r[i].count) values")
                }
            }
        }
    }

    func testGatedBatchNormMatchesItsUnfusedOps() {
        // act(gate * bn(x)) in one op: values and gradients against batch norm, channelScale and
        // the activation run as three ops, and (without activation: a zero gate puts every value
        // of its channel on ReLU's kink) gradients against finite differences. The gate has a zero
        // (a pruned channel) and a fraction.
        let x = Tensor.randn([3, 3, 4, 5], using: &rng)
        let gamma = Tensor.randn([3], using: &rng), beta = Tensor.randn([3], using: &rng)
        let gate = Tensor(shape: [3], values: [1, 0, 0.6])
        let rm = Tensor.randn([3], using: &rng), rv = Tensor.uniform([3], low: 0.5, high: 1.5, using: &rng)
        let inputs = [x, gamma, beta, gate]
        for training in [true, false] {
            for act in Activation.allCases {
                let fused = {
                    batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: training,
                                activation: act, gate: gate)
                }
                if act == .identity { checkGradients("gated batchnorm training \(training)", inputs: inputs, fused) }
                let unfused = { () -> Tensor in
                    let s = channelScale(batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv,
                                                     training: training), gate)
                    switch act {
                    case .identity: return s
                    case .relu: return relu(s)
                    case .relu6: return relu6(s)
                    }
                }
                var seedRNG = RandomGenerator(seed: 3)
                let seed = Tensor.randn(x.shape, using: &seedRNG)
                for t in inputs { t.requiresGrad = true; t.grad = nil }
                let y = unfused()
                y.backward(seed: seed)
                let expected = inputs.map { $0.grad!.values }
                for t in inputs { t.grad = nil }
                let z = fused()
                assertClose(z.values, y.values, rtol: 1e-5, atol: 1e-6, "gated batchnorm \(act): values")
                z.backward(seed: seed)
                for (k, t) in inputs.enumerated() {
                    assertClose(t.grad!.values, expected[k], rtol: 1e-4, atol: 1e-5, "gated batchnorm \(act): gradient \(k)")
                    t.grad = nil
                }
            }
        }
    }

    func testMaxPoolPaddingIsMinusInfinity() {
        // All inputs negative: a padded border read as 0 would win every edge window.
        let x = Tensor(shape: [1, 1, 4, 4], values: (1...16).map { -Float($0) })
        let y = maxPool2d(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.values, [-1, -2, -5, -6])
        checkGradients("maxpool negative padded", inputs: [x]) { maxPool2d(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
    }

    /// The general path runs across blocks of channels: more channels than one block (the last
    /// partial), planes larger than a transpose's 16 pixels and not a multiple of it, every
    /// window's maximum checked against the window read by hand; an infinity makes its windows NaN.
    func testMaxPoolAcrossChannelBlocks() {
        let c = Conv2DTuning.depthwiseLanes + 3, h = 7, w = 5
        let x = Tensor.randn([2, c, h, w], using: &rng)
        x.data[(1 * c + 17) * h * w + 2 * w + 3] = .infinity
        let y = maxPool2d(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        XCTAssertEqual(y.shape, [2, c, 4, 3])
        for plane in 0..<(2 * c) {
            for oh in 0..<4 {
                for ow in 0..<3 {
                    var best = -Float.infinity, finite = true
                    for ih in max(0, 2 * oh - 1)..<min(h, 2 * oh + 2) {
                        for iw in max(0, 2 * ow - 1)..<min(w, 2 * ow + 2) {
                            let v = x.data[plane * h * w + ih * w + iw]
                            best = max(best, v)
                            finite = finite && v.isFinite
                        }
                    }
                    let got = y.data[(plane * 4 + oh) * 3 + ow]
                    if finite { XCTAssertEqual(got, best, "plane \(plane) (\(oh), \(ow))") } else { XCTAssertTrue(got.isNaN) }
                }
            }
        }
    }

    /// 2x2/2 pooling's gradient on rows wide enough for the vector path (16 windows at a time,
    /// then a tail), on rows of 16 (two output rows a vector, then an odd last row) and on planes
    /// 8, 4 and 2 wide (all planes' windows as one stream, 16 a vector, then a tail): each
    /// window's gradient goes to its first element equal to the maximum, ties included, and to its
    /// first element in a NaN window; checked window by window.
    func testMaxPool2x2GradientPicksTheFirstMaximum() {
        for (channels, h, w) in [(3, 4, 36), (3, 6, 16), (5, 4, 8), (7, 6, 4), (11, 2, 2), (3, 4, 2)] {
            let oh = h / 2, ow = w / 2
            let x = Tensor.randn([2, channels, h, w], using: &rng)
            // Ties: windows whose maximum appears twice or four times; a NaN window.
            for (plane, r, c) in [(0, 0, 0), (1, 1 % oh, 5 % ow), (5, 1 % oh, ow - 1), (3, 0, max(ow - 2, 0)),
                                  (2, oh - 1, 3 % ow)] {
                let at = plane * h * w + 2 * r * w + 2 * c
                x.data[at + 1] = 9
                x.data[at + w] = 9
                if c == 0 { x.data[at] = 9; x.data[at + w + 1] = 9 }
            }
            x.data[4 * h * w + 2 * (1 % oh) * w + 2 * (7 % ow) + 1] = .nan  // plane 4, window (1, 7)
            x.requiresGrad = true
            let y = maxPool2d(x, kernel: (2, 2))
            let seed = Tensor.randn(y.shape, using: &rng)
            y.backward(seed: seed)
            var expected = [Float](repeating: 0, count: x.count)
            for plane in 0..<2 * channels {
                for r in 0..<oh {
                    for c in 0..<ow {
                        let at = plane * h * w + 2 * r * w + 2 * c, out = (plane * oh + r) * ow + c
                        let window = [at, at + 1, at + w, at + w + 1], m = y.data[out]
                        expected[window.first { x.data[$0] == m } ?? at] = seed.data[out]
                    }
                }
            }
            XCTAssertEqual(x.grad!.values.map { $0.bitPattern }, expected.map { $0.bitPattern }, "\(channels)x\(h)x\(w)")
        }
    }

    /// 2x2/2 pooling forward (the C kernel) window by window: rows of 16 (two output rows a
    /// vector), wide rows (16 windows a vector, then a tail), odd sizes (the last row and column
    /// dropped, rows of 3 windows), planes 8, 4 and 2 wide (all planes' windows as one stream, 16
    /// a vector, then a tail); an infinity or a NaN makes its window NaN.
    func testMaxPool2x2Forward() {
        for (c, h, w) in [(3, 6, 16), (3, 4, 36), (3, 7, 33), (3, 5, 7), (5, 4, 8), (3, 8, 8), (7, 6, 4), (11, 2, 2),
                          (3, 4, 2), (3, 3, 4)] {
            let oh = h / 2, ow = w / 2
            let x = Tensor.randn([2, c, h, w], using: &rng)
            x.data[1 * h * w + 2 * w + 3] = .infinity
            x.data[4 * h * w + 1] = .nan
            x.data[5 * h * w + w] = -.infinity
            let y = maxPool2d(x, kernel: (2, 2))
            XCTAssertEqual(y.shape, [2, c, oh, ow])
            for plane in 0..<2 * c {
                for r in 0..<oh {
                    for c in 0..<ow {
                        let at = plane * h * w + 2 * r * w + 2 * c
                        let window = [x.data[at], x.data[at + 1], x.data[at + w], x.data[at + w + 1]]
                        let got = y.data[(plane * oh + r) * ow + c]
                        if window.allSatisfy(\.isFinite) {
                            XCTAssertEqual(got, window.max()!, "\(h)x\(w) plane \(plane) (\(r), \(c))")
                        } else {
                            XCTAssertTrue(got.isNaN, "\(h)x\(w) plane \(plane) (\(r), \(c)): \(window) gave \(got)")
                        }
                    }
                }
            }
        }
    }

    /// Global average pooling adds each plane's pixels one after another, in order, whatever the
    /// plane size (16 planes a vector on planes of 16, 64 and 256 pixels, then a tail of planes;
    /// other sizes plane by plane): the same bits as that plain loop.
    func testGlobalAvgPoolAddsPixelsInOrder() {
        for shape in [[3, 7, 4, 4], [2, 9, 8, 8], [1, 17, 16, 16], [2, 5, 3, 3], [1, 3, 7, 5]] {
            let x = Tensor.randn(shape, using: &rng)
            let plane = shape[2] * shape[3], scale = 1 / Float(plane)
            let expected = (0..<shape[0] * shape[1]).map { p -> Float in
                var s: Float = 0
                for i in 0..<plane { s += x.data[p * plane + i] }
                return s * scale
            }
            let y = globalAvgPool(x)
            XCTAssertEqual(y.shape, [shape[0], shape[1], 1, 1])
            if plane % 16 == 0 {
                XCTAssertEqual(y.values.map(\.bitPattern), expected.map(\.bitPattern), "\(shape)")
            } else {
                assertClose(y.values, expected, rtol: 1e-6, atol: 1e-6, "\(shape)")
            }
        }
    }

    func testMaxPoolPropagatesNaN() {
        let x = Tensor(shape: [1, 1, 4, 4], values: (1...16).map { Float($0) })
        x.data[5] = .nan
        XCTAssertTrue(maxPool2d(x, kernel: (2, 2)).data[0].isNaN, "2x2 fast path")
        XCTAssertTrue(maxPool2d(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1)).data[0].isNaN, "general path")
        XCTAssertFalse(maxPool2d(x, kernel: (2, 2)).data[3].isNaN)
    }

    /// Backward rules add into existing gradients: two backward passes without zeroing give
    /// twice one pass. (Every other check starts from empty gradients, where `=` and `+=` agree.)
    func testBackwardAccumulatesIntoExistingGradients() {
        let x = Tensor.randn([5, 4, 6, 5], using: &rng)
        let w = Tensor.randn([6, 4, 3, 3], using: &rng), b = Tensor.randn([6], using: &rng)
        let dw = Tensor.randn([4, 1, 3, 3], using: &rng), c = Tensor.randn([4], using: &rng)
        let w1 = Tensor.randn([3, 4, 1, 1], using: &rng), x2 = Tensor.randn([5, 4, 6, 5], using: &rng)
        let gamma = Tensor.randn([4], using: &rng), beta = Tensor.randn([4], using: &rng)
        let rm = Tensor.zeros([4]), rv = Tensor.filled([4], with: 1)
        let m2 = Tensor.randn([20, 7], using: &rng), lw = Tensor.randn([3, 7], using: &rng), lb = Tensor.randn([3], using: &rng)
        let cases: [(String, [Tensor], () -> Tensor)] = [
            ("conv", [x, w, b], { conv2d(x, weight: w, bias: b, stride: (2, 1), padding: (1, 1)) }),
            // The paths that write a fresh input gradient instead of adding into a zeroed one:
            // Winograd's output transform and the in-place GEMM of a 1x1 convolution.
            ("conv winograd", [x, w, b], {
                let saved = Conv2DTuning.winograd
                Conv2DTuning.winograd = .tile(4)
                defer { Conv2DTuning.winograd = saved }
                return conv2d(x, weight: w, bias: b, padding: (1, 1))
            }),
            ("conv 1x1 in place", [x, w1], {
                let saved = Conv2DTuning.directPlane
                Conv2DTuning.directPlane = 1
                defer { Conv2DTuning.directPlane = saved }
                return conv2d(x, weight: w1)
            }),
            // add passes its gradient on by sharing it: twice into one tensor must still double.
            ("add to itself", [x], { add(x, x) }),
            ("add same shape", [x, x2], { add(x, x2) }),
            ("reshape", [x], { reshape(x, [5, 120]) }),
            ("relu", [x], { relu(x) }),
            ("depthwise", [x, dw, c], { conv2d(x, weight: dw, bias: c, padding: (1, 1), groups: 4) }),
            ("add per-channel", [x, c], { add(x, c) }),
            ("mul per-channel", [x, c], { mul(x, c) }),
            ("channelScale", [x, c], { channelScale(x, c) }),
            ("batchnorm", [x, gamma, beta], {
                batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true, activation: .relu)
            }),
            ("maxpool", [x], { maxPool2d(x, kernel: (2, 2)) }),
            ("avgpool", [x], { avgPool2d(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }),
            ("global avgpool", [x], { globalAvgPool(x) }),
            ("matmul", [m2, lw], { matmul(m2, reshape(lw, [7, 3])) }),
            ("linear", [m2, lw, lb], { linear(m2, weight: lw, bias: lb) }),
            ("cross entropy", [m2], { crossEntropy(m2, labels: (0..<20).map { Int32($0 % 7) }) }),
        ]
        let saved = Conv2DTuning.columnBudget
        Conv2DTuning.columnBudget = 1  // conv: several chunks, so dW also accumulates across them
        defer { Conv2DTuning.columnBudget = saved }
        for (name, inputs, f) in cases {
            for t in inputs { t.requiresGrad = true; t.grad = nil }
            var seedRNG = RandomGenerator(seed: 11)
            let y1 = f()
            let seed = Tensor.randn(y1.shape, using: &seedRNG)
            y1.backward(seed: seed)
            let once = inputs.map { $0.grad!.values }
            f().backward(seed: seed)
            for (k, t) in inputs.enumerated() {
                assertClose(t.grad!.values, once[k].map { 2 * $0 }, rtol: 1e-5, atol: 1e-6, "\(name): input \(k) after two passes")
                t.grad = nil
            }
        }
    }

    func testReluAndRelu6() {
        let x = randnAwayFromZero([2, 3, 4, 5], using: &rng)
        for i in 0..<x.count { x.data[i] *= 4 }
        for i in 0..<x.count where abs(x.data[i] - 6) < 0.1 { x.data[i] += 0.2 }
        checkGradients("relu", inputs: [x]) { relu(x) }
        checkGradients("relu6", inputs: [x]) { relu6(x) }
    }

    func testPooling() {
        // Distinct values 0.1 apart, so no perturbation changes which element is the max.
        var order = Array(0..<(2 * 3 * 7 * 9))
        order.shuffle(using: &rng)
        let x = Tensor(shape: [2, 3, 7, 9], values: order.map { Float($0) * 0.1 })
        checkGradients("maxpool k3 s2 p1", inputs: [x]) { maxPool2d(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        checkGradients("maxpool k2", inputs: [x]) { maxPool2d(x, kernel: (2, 2)) }
        checkGradients("maxpool k(3,2) s(1,2)", inputs: [x]) { maxPool2d(x, kernel: (3, 2), stride: (1, 2)) }
        // Even planes: 2x2/2 windows tile them, and a fresh gradient is written window by window.
        var evenOrder = Array(0..<(2 * 3 * 6 * 8))
        evenOrder.shuffle(using: &rng)
        let even = Tensor(shape: [2, 3, 6, 8], values: evenOrder.map { Float($0) * 0.1 })
        checkGradients("maxpool k2 on even planes", inputs: [even]) { maxPool2d(even, kernel: (2, 2)) }
        // Ties go to the first element of the window in row-major order, as in PyTorch.
        let ties = Tensor(shape: [1, 1, 2, 2], values: [1, 3, 3, 3], requiresGrad: true)
        maxPool2d(ties, kernel: (2, 2)).backward(seed: Tensor(shape: [1, 1, 1, 1], values: [5]))
        XCTAssertEqual(ties.grad?.values, [0, 5, 0, 0])
        let y = Tensor.randn([2, 3, 7, 9], using: &rng)
        checkGradients("avgpool k3 s2 p1", inputs: [y]) { avgPool2d(y, kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        checkGradients("avgpool k2", inputs: [y]) { avgPool2d(y, kernel: (2, 2)) }
        checkGradients("global avgpool", inputs: [y]) { globalAvgPool(y) }
    }

    func testReshapeAndFlatten() {
        let x = Tensor.randn([2, 3, 2, 2], using: &rng), w = Tensor.randn([4, 12], using: &rng)
        checkGradients("flatten", inputs: [x, w]) { linear(flatten(x), weight: w, bias: nil) }
        checkGradients("reshape", inputs: [x]) { mul(reshape(x, [4, 6]), reshape(x, [4, 6])) }
    }

    func testCrossEntropy() {
        let logits = Tensor.randn([5, 7], using: &rng)
        let labels: [Int32] = [0, 6, 3, 3, 1]
        checkGradients("cross entropy", inputs: [logits]) { crossEntropy(logits, labels: labels) }
        for i in 0..<logits.count { logits.data[i] *= 30 }
        checkGradients("cross entropy, large logits", inputs: [logits]) { crossEntropy(logits, labels: labels) }
    }

    /// A small net with every kind of op, a residual add and a tensor used twice: the tape must
    /// sum both paths' gradients.
    func testComposedNet() {
        let x = Tensor.randn([2, 2, 6, 6], using: &rng)
        let w1 = Tensor.randn([4, 2, 3, 3], std: 0.5, using: &rng), b1 = Tensor.randn([4], using: &rng)
        let g1 = Tensor.randn([4], using: &rng), be1 = Tensor.randn([4], using: &rng)
        let rm = Tensor.zeros([4]), rv = Tensor.filled([4], with: 1)
        let dw = Tensor.randn([4, 1, 3, 3], std: 0.5, using: &rng)
        let gateValues = Tensor(shape: [4], values: [1, 1, 0, 1])
        let fc = Tensor.randn([3, 4], using: &rng), fcb = Tensor.randn([3], using: &rng)
        let labels: [Int32] = [2, 0]
        // The conv bias feeds a training-mode batch norm, which subtracts it again: its gradient is
        // exactly zero, where finite differences see only rounding, so it is checked for zero.
        let net = { () -> Tensor in
            let h = conv2d(x, weight: w1, bias: b1, padding: (1, 1))
            let n = channelScale(batchNorm2d(h, weight: g1, bias: be1, runningMean: rm, runningVar: rv, training: true), gateValues)
            let p = avgPool2d(n, kernel: (2, 2))
            let r = add(p, conv2d(p, weight: dw, stride: (1, 1), padding: (1, 1), groups: 4))
            let logits = linear(flatten(globalAvgPool(r)), weight: fc, bias: fcb)
            return crossEntropy(logits, labels: labels)
        }
        checkGradients("composed net", inputs: [x, w1, g1, be1, dw, fc, fcb], net)
        b1.requiresGrad = true
        net().backward()
        let scale = w1.grad!.values.map(abs).max()!
        XCTAssertLessThanOrEqual(b1.grad!.values.map(abs).max()!, 1e-5 * scale, "composed net: bias before a batch norm")
    }
}
