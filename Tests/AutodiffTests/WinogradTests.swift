import Autodiff
import Foundation
import XCTest

/// Winograd's F(2, 3) and F(4, 3) against the im2col convolution, which the PyTorch reference and
/// finite-difference tests pin down (they also run with Winograd forced: `forEachConvPath`).
final class WinogradTests: XCTestCase {
    private var rng = RandomGenerator(seed: 7)

    /// The convolution's output and the gradients of input, weight and bias under `choice`.
    private func run(_ x: Tensor, _ w: Tensor, _ b: Tensor, _ seed: Tensor, _ choice: Conv2DTuning.Winograd) -> [[Float]] {
        let saved = Conv2DTuning.winograd
        Conv2DTuning.winograd = choice
        defer { Conv2DTuning.winograd = saved }
        for t in [x, w, b] { t.requiresGrad = true; t.grad = nil }
        let y = conv2d(x, weight: w, bias: b, padding: (1, 1))
        y.backward(seed: seed)
        defer { for t in [x, w, b] { t.grad = nil } }
        return [y.values, x.grad!.values, w.grad!.values, b.grad!.values]
    }

    /// Shapes (batch, in, out, height, width): planes that tiles of 2 and 4 cut evenly and
    /// unevenly, planes smaller than a tile, one image and several, one channel and many.
    private let shapes: [(Int, Int, Int, Int, Int)] = [
        (3, 5, 7, 7, 9), (1, 16, 8, 2, 2), (2, 3, 4, 1, 1), (5, 4, 4, 4, 4), (2, 6, 5, 13, 6), (1, 1, 1, 5, 5),
        (4, 24, 20, 8, 8),
    ]

    func testMatchesIm2colForwardAndBackward() {
        let savedBudget = (Conv2DTuning.winogradBudget, Conv2DTuning.winogradMinTiles)
        defer { (Conv2DTuning.winogradBudget, Conv2DTuning.winogradMinTiles) = savedBudget }
        for (n, c, k, h, wd) in shapes {
            let x = Tensor.randn([n, c, h, wd], using: &rng), w = Tensor.randn([k, c, 3, 3], using: &rng)
            let b = Tensor.randn([k], using: &rng), seed = Tensor.randn([n, k, h, wd], using: &rng)
            let expected = run(x, w, b, seed, .off)
            for tile in [2, 4] {
                // Tuned blocks, and one tile row per block (dW summed over many blocks per piece).
                for (budget, minTiles) in [savedBudget, (1, 1)] {
                    (Conv2DTuning.winogradBudget, Conv2DTuning.winogradMinTiles) = (budget, minTiles)
                    let got = run(x, w, b, seed, .tile(tile))
                    for (i, name) in ["y", "dx", "dw", "db"].enumerated() {
                        // The transforms round differently from the direct sums: within 1e-5 of
                        // the largest value (F(4, 3)'s interpolation points 2 and -2 scale terms
                        // by up to 8 before they cancel; F(2, 3) is far closer).
                        let scale = expected[i].map(abs).max() ?? 1
                        assertClose(got[i], expected[i], rtol: 1e-5, atol: 1e-5 * max(scale, 1),
                                    "F(\(tile),3) \(n)x\(c)x\(h)x\(wd) -> \(k), blocks of \(minTiles == 1 ? "one row" : "tuned size"): \(name)")
                    }
                }
            }
        }
    }

    /// The same bits with one worker and with all of them: the blocks and the order the pieces'
    /// weight-gradient sums are added in do not depend on the worker count.
    func testBitIdenticalAcrossWorkerCounts() {
        let x = Tensor.randn([5, 16, 12, 10], using: &rng), w = Tensor.randn([20, 16, 3, 3], using: &rng)
        let b = Tensor.randn([20], using: &rng), seed = Tensor.randn([5, 20, 12, 10], using: &rng)
        for tile in [2, 4] {
            let saved = Parallel.workers
            Parallel.workers = 1
            let one = run(x, w, b, seed, .tile(tile))
            Parallel.workers = max(2, saved)
            let all = run(x, w, b, seed, .tile(tile))
            Parallel.workers = saved
            for i in 0..<one.count {
                XCTAssertEqual(one[i].map(\.bitPattern), all[i].map(\.bitPattern), "F(\(tile),3): result \(i) differs")
            }
        }
    }

    /// `.auto` takes Winograd only for 3x3 stride-1 padding-1 ungrouped convolutions with enough
    /// channels, with the tile of fewer multiplies (4 on 32x32, 8x8 and 4x4 planes, 2 on 2x2 ones,
    /// none on a 1x1 plane, where only the kernel's centre reads the image), and only where the
    /// multiply-adds it saves outweigh streaming its larger transformed kernels: at a training
    /// batch always, for one image only on planes with many tiles, and on more planes when the
    /// transformed kernels are kept (frozen), where 16-channel layers and small maps with few
    /// weights keep the packed path.
    func testAutoChoice() throws {
        func algorithm(_ c: Int, _ k: Int, _ plane: Int, batch: Int = 128, kernel: Int = 3, stride: Int = 1, padding: Int = 1,
                       groups: Int = 1, frozen: Bool = false, cached: Bool = false) throws -> Conv2DAlgorithm {
            try Conv2DGeometry.validate(input: [batch, c, plane, plane], weight: [k, c / groups, kernel, kernel], bias: nil,
                                        stride: (stride, stride), padding: (padding, padding), groups: groups)
                .algorithm(frozenWeights: frozen, weightsCached: cached)
        }
        let saved = Conv2DTuning.winograd
        Conv2DTuning.winograd = .auto
        defer { Conv2DTuning.winograd = saved }
        let minimum = Conv2DTuning.winogradMinChannels
        XCTAssertEqual(try algorithm(64, 64, 32), .winograd(tile: 4))
        XCTAssertEqual(try algorithm(64, 64, 8), .winograd(tile: 4))
        XCTAssertEqual(try algorithm(256, 256, 4), .winograd(tile: 4))
        XCTAssertEqual(try algorithm(512, 512, 2), .winograd(tile: 2))
        XCTAssertEqual(try algorithm(512, 512, 1), .im2col)
        XCTAssertEqual(try algorithm(3, 64, 32), .shallow, "too few input channels")
        XCTAssertEqual(try algorithm(32, 32, 32), .winograd(tile: 4))
        // The packed tiles read the image under masks, which AVX2 lacks: Winograd there.
        XCTAssertEqual(try algorithm(minimum, minimum, 32), Conv2DTuning.maskedImageKernels ? .fewChannels : .winograd(tile: 4),
                       "fewer than 32 input channels: the packed tiles")
        XCTAssertEqual(try algorithm(minimum, minimum, 32, batch: 1), .winograd(tile: 4), "fewer images than pieces")
        XCTAssertEqual(try algorithm(minimum, 64, 32, kernel: 1, padding: 0), .shallow, "a 1x1 of 16 channels")
        XCTAssertEqual(try algorithm(48, 64, 32, kernel: 1, padding: 0), .im2col, "a 1x1: sgemm in place")
        XCTAssertEqual(try algorithm(64, 64, 32, stride: 2), .im2col)
        XCTAssertEqual(try algorithm(64, 64, 32, padding: 0), .im2col)
        XCTAssertEqual(try algorithm(64, 64, 32, kernel: 1, padding: 0), .im2col)
        XCTAssertEqual(try algorithm(64, 64, 32, groups: 2), .im2col)
        XCTAssertEqual(try algorithm(64, 64, 32, groups: 64), .depthwise)
        // One image: 64 tiles of a 32x32 plane pay, 4 of an 8x8 one do not.
        XCTAssertEqual(try algorithm(64, 64, 32, batch: 1), .winograd(tile: 4))
        XCTAssertEqual(try algorithm(64, 64, 8, batch: 1), .im2col)
        XCTAssertEqual(try algorithm(512, 512, 2, batch: 10), .im2col, "10 tiles do not repay transforming the kernels")
        XCTAssertEqual(try algorithm(768, 768, 2, batch: 10, frozen: true), .winograd(tile: 2), "they do once kept")
        XCTAssertEqual(try algorithm(512, 512, 2, batch: 10, frozen: true), .packedGEMM,
                       "2.4M weights, at most narrowBatchWeights: the narrow kernel, 4 images a call")
        XCTAssertEqual(try algorithm(512, 512, 2, batch: 1, frozen: true), .packedGEMM, "one image on a 2x2 map: the weights read once")
        // Frozen: the other path reads the image in place, so Winograd needs more channels, and
        // small maps whose weights stay in cache go image by image through the narrow kernel.
        let frozenMinimum = Conv2DTuning.frozenWinogradMinChannels
        XCTAssertGreaterThan(frozenMinimum, minimum)
        XCTAssertEqual(try algorithm(minimum, minimum, 32, batch: 32, frozen: true), .packedGEMM)
        XCTAssertEqual(try algorithm(frozenMinimum, frozenMinimum, 32, batch: 32, frozen: true), .winograd(tile: 4))
        XCTAssertEqual(try algorithm(128, 128, 2, batch: 32, frozen: true), .denseMap, "262k expanded weights: one GEMM")
        XCTAssertEqual(try algorithm(128, 128, 2, batch: 4, frozen: true), .packedGEMM, "a small batch: narrow")
        XCTAssertEqual(try algorithm(512, 512, 2, batch: 32, frozen: true), .packedGEMM, "2.4M weights: narrow, images side by side")
        XCTAssertEqual(try algorithm(768, 768, 2, batch: 32, frozen: true), .winograd(tile: 2), "5.3M weights: sgemm's alternative")
        // Frozen weights that stay cached (an engine's small net) cost nothing to read: one image of
        // an 8x8 map pays for Winograd; not below the size where its passes' fixed costs dominate;
        // on a 4x4 map with F(2,3), whose two tile rows the two pieces split (F(4,3) has one row).
        XCTAssertEqual(try algorithm(64, 64, 8, batch: 1, frozen: true), .packedGEMM)
        XCTAssertEqual(try algorithm(64, 64, 8, batch: 1, frozen: true, cached: true), .winograd(tile: 4))
        XCTAssertEqual(try algorithm(32, 32, 4, batch: 1, frozen: true, cached: true), .packedGEMM, "147K multiply-adds")
        XCTAssertEqual(try algorithm(128, 128, 4, batch: 1, frozen: true, cached: true), .winograd(tile: 2))
        XCTAssertEqual(try algorithm(128, 128, 4, batch: Parallel.gemmPieces, frozen: true, cached: true), .winograd(tile: 4),
                       "an image per piece")
        XCTAssertEqual(try algorithm(64, 64, 8, batch: 1, cached: true), .im2col, "weights that change are not kept")
        Conv2DTuning.winograd = .off
        XCTAssertEqual(try algorithm(64, 64, 32), .im2col)
        Conv2DTuning.winograd = .tile(2)
        XCTAssertEqual(try algorithm(3, 64, 2), .winograd(tile: 2), "forced wherever it applies")
        XCTAssertEqual(try algorithm(3, 64, 1), .shallow, "on a 1x1 map only the kernel's centre reads the image: a 1x1 convolution")
    }

    /// The caches come from sysfs: each level's size of one instance, with K/M suffixes,
    /// instruction caches skipped; none without a readable directory. Weights kept between runs
    /// count as cached in the last level where it is a core complex's own (32 MB), in the level
    /// below it where it is a whole server socket's (260 MB: the 1 MB L2).
    func testCacheSizesFromSysfs() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sysfs-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (index, level, type, size) in [(0, 1, "Data", "32K"), (1, 1, "Instruction", "32K"), (2, 2, "Unified", "1024K"),
                                           (3, 3, "Unified", "32768K"), (4, 4, "Instruction", "64M")] {
            let dir = "\(root)/index\(index)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try "\(level)\n".write(toFile: dir + "/level", atomically: true, encoding: .utf8)
            try "\(type)\n".write(toFile: dir + "/type", atomically: true, encoding: .utf8)
            try "\(size)\n".write(toFile: dir + "/size", atomically: true, encoding: .utf8)
        }
        XCTAssertEqual(Conv2DTuning.cacheSizes(sysfs: root), [1: 32 << 10, 2: 1 << 20, 3: 32 << 20])
        XCTAssertEqual(Conv2DTuning.weightCacheBytes(Conv2DTuning.cacheSizes(sysfs: root)), 32 << 20)
        try "266240K\n".write(toFile: root + "/index3/size", atomically: true, encoding: .utf8)
        XCTAssertEqual(Conv2DTuning.cacheSizes(sysfs: root)[3], 260 << 20)
        XCTAssertEqual(Conv2DTuning.weightCacheBytes(Conv2DTuning.cacheSizes(sysfs: root)), 1 << 20)
        try "128M\n".write(toFile: root + "/index3/size", atomically: true, encoding: .utf8)
        XCTAssertEqual(Conv2DTuning.weightCacheBytes(Conv2DTuning.cacheSizes(sysfs: root)), 128 << 20)
        XCTAssertEqual(Conv2DTuning.cacheSizes(sysfs: root + "/none"), [:])
        XCTAssertEqual(Conv2DTuning.weightCacheBytes([:]), 32 << 20)
        XCTAssertEqual(Conv2DTuning.weightCacheBytes([2: 512 << 10]), 512 << 10, "one level alone counts, however large")
        XCTAssertEqual(Conv2DTuning.weightCacheBytes([3: 256 << 20]), 256 << 20)
    }
}
