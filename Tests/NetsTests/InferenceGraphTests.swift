import Autodiff
import Foundation
import Nets
import TestSupport
import XCTest

/// The inference graphs compute what the nets compute, before and after BN folding.
final class InferenceGraphTests: XCTestCase {
    func testGraphsAndFoldedGraphsMatchTheNets() throws {
        for arch in Architecture.allCases {
            for size in [32, 64] {
                let d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: size, classes: 5)
                let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)))
                var rng = RandomGenerator(seed: 4)
                randomizeNormalization(net, using: &rng)
                let x = Tensor.randn([2, 3, size, size], using: &rng)
                let expected = Tape.withoutGradients { net.logits(x, training: false) }.values
                let graph = net.inferenceGraph
                let folded = graph.foldingBatchNorms()
                let scale = expected.map(abs).max()!
                for (what, g) in [("graph", graph), ("folded", folded)] {
                    XCTAssertEqual(g.shape(of: g.output), [5], "\(arch) \(size) \(what)")
                    let got = g.run(x).values
                    let diff = zip(expected, got).map { abs($0 - $1) }.max()!
                    XCTAssertLessThanOrEqual(diff, 1e-5 * scale, "\(arch) \(size) \(what): max |diff| \(diff), scale \(scale)")
                }
                let bns = { (g: InferenceGraph) in g.nodes.filter { if case .batchNorm = $0.op { return true } else { return false } }.count }
                // PreAct: every bn2 folds into its conv1; bn1s follow additions, except block 0's,
                // which follows the stem conv and folds when the stem feeds nothing else (64x64:
                // block 0 has a projection shortcut); the final BN stays.
                let kept = arch == .preactResNet18 ? (size == 64 ? 8 : 9) : 0
                XCTAssertEqual(bns(folded), kept, "\(arch) \(size): BNs directly after convs fold")
                XCTAssertLessThan(folded.criticalPathLength, graph.criticalPathLength + (arch == .preactResNet18 ? 1 : 0))
            }
        }
    }

    /// The engine (frozen convolutions, activations fused into them) computes what the folded
    /// graph computes, at batch 1 (output channels split over the cores) and batch 4, at widths
    /// where the convolutions go through Winograd's algorithm, and on a second run with the
    /// transformed kernels it kept from the first. Every ReLU after a conv that is its only
    /// reader is absorbed.
    func testEngineMatchesTheFoldedGraph() throws {
        // The nets that pool globally also at 40 px (traced there): maps of 20, 10, 5 and 3 pixels
        // a side, whose planes leave tails in every kernel's vector blocks (the packed GEMM's
        // columns, the depthwise and pooling layouts); and at 33 px, odd maps (33, 17, 9, 5),
        // which stride-2 layers cannot read in place (their phases differ in size).
        try checkEngine(sizes: [32, 40, 33])
    }

    /// The same with every net's weights taken as cached (`Conv2DTuning.cachedWeightBytes`), so
    /// that one image's 3x3 layers on small maps run through Winograd's F(4,3) and, on 4x4 maps,
    /// F(2,3) (checked: PreAct ResNet-18 x0.5's 128- and 256-channel layers).
    func testEngineWithCachedWeightsMatchesTheFoldedGraph() throws {
        let saved = Conv2DTuning.cachedWeightBytes
        Conv2DTuning.cachedWeightBytes = .max
        defer { Conv2DTuning.cachedWeightBytes = saved }
        func choice(_ c: Int, _ plane: Int) throws -> Conv2DAlgorithm {
            try Conv2DGeometry.validate(input: [1, c, plane, plane], weight: [c, c, 3, 3], bias: nil, stride: (1, 1), padding: (1, 1),
                                        groups: 1).algorithm(frozenWeights: true, weightsCached: true)
        }
        XCTAssertEqual(try choice(128, 8), .winograd(tile: 4))
        XCTAssertEqual(try choice(256, 4), .winograd(tile: 2))
        let d = NetDescription.uniform(.preactResNet18, ratio: 0.5, inChannels: 3, imageSize: 32, classes: 5)
        let engine = InferenceEngine(try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3))).inferenceGraph.foldingBatchNorms())
        let algorithms = engine.graph.nodes.indices.compactMap { engine.convolutionAlgorithm(node: $0, batch: 1) }
        XCTAssertTrue(algorithms.contains(.winograd(tile: 4)) && algorithms.contains(.winograd(tile: 2)), "\(algorithms)")
        try checkEngine(sizes: [32])
    }

    private func checkEngine(sizes: [Int]) throws {
        for arch in Architecture.allCases { for size in sizes {
            let d = NetDescription.uniform(arch, ratio: 0.5, inChannels: 3, imageSize: 32, classes: 5)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)))
            var rng = RandomGenerator(seed: 4)
            randomizeNormalization(net, using: &rng)
            let graph = size == 32 ? net.inferenceGraph : InferenceGraph(tracing: net, inputSize: size)
            guard size == 32 || graph.takesOtherInputSizes else { continue }
            let folded = graph.foldingBatchNorms()
            let engine = InferenceEngine(folded)
            for batch in [1, 4] {
                let x = Tensor.randn([batch, 3, size, size], using: &rng)
                let expected = folded.run(x).values
                let scale = expected.map(abs).max()!
                for pass in 1...2 {
                    var values = 0
                    let got = engine.run(x) { _, _ in values += 1 }.values
                    XCTAssertEqual(values, folded.nodes.count + 1, "\(arch): every value observed")
                    let diff = zip(expected, got).map { abs($0 - $1) }.max()!
                    XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "\(arch) \(size) px batch \(batch) run \(pass): max |diff| \(diff), scale \(scale)")
                }
            }
        } }
    }

    /// The same on the paths a machine without AVX-512 takes (`Conv2DTuning.portableKernels`).
    func testEngineOnPortablePathsMatchesTheFoldedGraph() throws {
        Conv2DTuning.portableKernels = true
        defer { Conv2DTuning.portableKernels = false }
        try testEngineMatchesTheFoldedGraph()
    }

    /// A pre-activation block's batch norm (and ReLU) computed in the output pass of the
    /// convolution before it (`InferenceEngine`'s default) gives the bits of running it as a pass
    /// of its own, for every value of the graph: on the packed kernels (16 channels; on 33x33 maps
    /// with a last block of one column) and after Winograd convolutions, at batch 1 and 3.
    func testBatchNormsInOutputPassesGiveTheSameBits() throws {
        for (ratio, size) in [(0.25, 32), (0.25, 33), (0.5, 40)] {
            let d = NetDescription.uniform(.preactResNet18, ratio: ratio, inChannels: 3, imageSize: 32, classes: 5)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)))
            var rng = RandomGenerator(seed: 4)
            randomizeNormalization(net, using: &rng)
            let graph = (size == 32 ? net.inferenceGraph : InferenceGraph(tracing: net, inputSize: size)).foldingBatchNorms()
            let fused = InferenceEngine(graph), plain = InferenceEngine(graph, normalizingInOutputPasses: false)
            // The batch norms of the stem's output and of the eight blocks' sums.
            XCTAssertEqual(fused.outputPassNormalizations, 9, "x\(ratio)")
            XCTAssertEqual(plain.outputPassNormalizations, 0)
            for batch in [1, 3] {
                // Which of them the convolutions' paths compute (what `bench infer --profile` says).
                let computed = graph.nodes.indices.filter { fused.outputPassNormalization(node: $0, batch: batch) != nil }
                XCTAssertEqual(computed.count, 9, "x\(ratio) \(size) px batch \(batch)")
                XCTAssertTrue(computed.allSatisfy { if case .batchNorm = graph.nodes[$0].op { return true }; return false })
                XCTAssertTrue(graph.nodes.indices.allSatisfy { plain.outputPassNormalization(node: $0, batch: batch) == nil })
                let x = Tensor.randn([batch, 3, size, size], using: &rng)
                var expected: [[Float]] = [], got: [[Float]] = []
                _ = plain.run(x) { _, v in expected.append(v.values) }
                for _ in 1...2 {
                    got = []
                    _ = fused.run(x) { _, v in got.append(v.values) }
                    XCTAssertEqual(got.count, expected.count)
                    let differing = zip(expected, got).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
                    XCTAssertEqual(differing, [], "x\(ratio) \(size) px batch \(batch): values that differ")
                }
            }
        }
    }

    /// The same on the paths a machine without AVX-512 takes.
    func testBatchNormsInOutputPassesOnPortablePaths() throws {
        Conv2DTuning.portableKernels = true
        defer { Conv2DTuning.portableKernels = false }
        try testBatchNormsInOutputPassesGiveTheSameBits()
    }
}
