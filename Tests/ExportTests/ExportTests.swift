import Autodiff
import Export
import Foundation
import Nets
import ONNX
import Pruning
import TestSupport
import XCTest

/// ONNX export, verified by its real consumers: onnx's checker and ONNX Runtime must agree with
/// the Swift nets (max cosine distance < 1e-4, 100% top-1), for every net at small widths:
/// uniform, non-uniform (as NeuralScale gives) and a pruned net after surgery.
final class ExportTests: XCTestCase {
    override func setUpWithError() throws {
        try requirePython(modules: ["onnx", "onnxruntime", "numpy"])
    }

    func testExportsOfEveryNetPassVerification() throws {
        for arch in Architecture.allCases {
            let uniform = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10)
            var skewed = uniform
            // Widths as a NeuralScale config has them: not a multiple of the original ones.
            skewed.widths = uniform.widths.enumerated().map { k, w in max(1, w + (k % 3 == 0 ? 3 : -1)) }
            var large = NetDescription.uniform(arch, ratio: 0.0625, inChannels: 1, imageSize: 64, classes: 7)
            large.widths = large.widths.map { max($0, 2) }
            for (what, d, gated) in [("uniform", uniform, false), ("skewed", skewed, false), ("64x64 pruned", large, true)] {
                var rng = RandomGenerator(seed: 21)
                let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 20)), gated: gated)
                randomizeNormalization(net, using: &rng)
                if gated {
                    let pruner = Pruner(net, settings: PruningSettings())
                    for (k, w) in d.widths.enumerated() where w > 1 && k % 2 == 0 { pruner.prune(group: k, channel: k % w, optimizer: nil) }
                }
                let model = try ONNXExport.model(net, opset: 13)
                try checkStructure(model, net: net, arch: arch, what)

                let path = try temporaryFolder("export").appendingPathComponent("\(arch.rawValue).onnx").path
                try ONNXExport.write(net, to: path, opset: 13)
                let x = Tensor.randn([6, d.inChannels, d.imageSize, d.imageSize], using: &rng)
                let logits = Tape.withoutGradients { net.logits(x, training: false) }
                let report = try ONNXVerification.run(model: path, inputs: x, logits: logits)
                XCTAssertTrue(report.passed, "\(arch) \(what): \(report.summary)")
                XCTAssertTrue(report.dynamicBatch, "\(arch) \(what)")
                XCTAssertLessThan(report.maxCosineDistance ?? 1, 1e-4, "\(arch) \(what)")
                XCTAssertEqual(report.top1Agreement, 1, "\(arch) \(what)")
            }
        }
    }

    /// The critical datapath length of our exported graphs equals that of PyTorch's own eval-mode
    /// ONNX export of the reference nets (`Reference/cdl.json`, made by
    /// `Reference/make_cdl_reference.py`). CDL does not depend on the ratio; the ratio-1.0
    /// entries are left out to keep the debug build's export fast.
    func testCriticalPathLengthMatchesPyTorchExport() throws {
        struct Entry: Decodable { let model: String, ratio: Double, in_ch: Int, image_size: Int, classes: Int, cdl: Int }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Reference/cdl.json")
        let entries = try JSONDecoder().decode([Entry].self, from: Data(contentsOf: url))
        XCTAssertEqual(entries.count, 16)
        XCTAssertEqual(entries.filter { $0.ratio == 0.25 }.count, 8, "the ratio-0.25 entries checked below")
        for e in entries where e.ratio == 0.25 {
            let arch = try XCTUnwrap(Architecture(rawValue: e.model))
            let d = NetDescription.uniform(arch, ratio: e.ratio, inChannels: e.in_ch, imageSize: e.image_size, classes: e.classes)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)))
            let what = "\(e.model) \(e.image_size)x\(e.image_size)"
            // The exported model has one node per node of the folded graph, wired the same way.
            let folded = net.inferenceGraph.foldingBatchNorms()
            XCTAssertEqual(folded.criticalPathLength, e.cdl, what)
            XCTAssertEqual(try ONNXExport.model(net).graph.node.count, folded.nodes.count, "\(what): one ONNX node per graph node")
        }
    }

    /// A broken export fails verification with the figures: the verifier is not a rubber stamp.
    func testAWrongModelFailsVerification() throws {
        let d = NetDescription.uniform(.vgg11, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)))
        var rng = RandomGenerator(seed: 2)
        let path = try temporaryFolder("export-wrong").appendingPathComponent("model.onnx").path
        try ONNXExport.write(net, to: path)
        let x = Tensor.randn([5, 3, 32, 32], using: &rng)
        let other = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 9)))
        let wrong = Tape.withoutGradients { other.logits(x, training: false) }
        let report = try ONNXVerification.run(model: path, inputs: x, logits: wrong)
        XCTAssertFalse(report.passed)
        XCTAssertGreaterThan(report.maxCosineDistance ?? 0, 1e-4)
        XCTAssertThrowsError(try ONNXExport.model(net, opset: 9), "opsets before 11 are refused")
    }

    /// `bench infer --verify`: the engine's outputs (the folded graph on its own ops, at batch
    /// sizes that take its different paths) agree with ONNX Runtime's for every net with trained-
    /// looking batch norms, at its own input size and, for a net pooling globally, a larger one;
    /// and the same check fails on another net's model.
    func testEngineOutputsMatchONNXRuntime() throws {
        let folder = try temporaryFolder("engine-verify")
        for arch in Architecture.allCases {
            let d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)))
            var rng = RandomGenerator(seed: 4)
            randomizeNormalization(net, using: &rng)
            for size in arch == .vgg11 ? [32] : [32, 40] {
                let path = folder.appendingPathComponent("\(arch.rawValue)-\(size).onnx").path
                try ONNXExport.write(net, to: path, opset: 13, inputSize: size)
                let v = try EngineVerification.run("\(arch)", net: net, onnx: path, inputSize: size, batchSizes: [3, 1, 200, 3])
                XCTAssertTrue(v.passed, v.summary)
                XCTAssertEqual(v.batches, [1, 3, EngineVerification.maxBatch], "sorted, once each, capped")
                XCTAssertEqual(v.result.n, 1 + 3 + EngineVerification.maxBatch)
                XCTAssertEqual(v.input_size, size)
                XCTAssertLessThan(v.result.maxCosineDistance ?? 1, 1e-6, v.summary)
            }
        }
        let d = NetDescription.uniform(.resnet50, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)))
        let other = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 5)))
        let path = folder.appendingPathComponent("other.onnx").path
        try ONNXExport.write(other, to: path, opset: 13)
        let v = try EngineVerification.run("resnet50", net: net, onnx: path, inputSize: nil, batchSizes: [2])
        XCTAssertFalse(v.passed, v.summary)
        XCTAssertGreaterThan(v.result.maxCosineDistance ?? 0, 1e-4)
        // A verifier that cannot run (here: no model in the file) is a failed check with its
        // error, not an error that would end a benchmark and lose the other nets' timings.
        let junk = folder.appendingPathComponent("junk.onnx").path
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: junk))
        let broken = try EngineVerification.run("resnet50", net: net, onnx: junk, inputSize: nil, batchSizes: [1])
        XCTAssertFalse(broken.passed)
        XCTAssertTrue(broken.result.errors.contains { $0.contains("junk.onnx") }, broken.summary)
        // Large images verify at smaller batches: at most 128 images and 32 MB of them.
        XCTAssertEqual(EngineVerification.verifiedBatches([300, 1, 8, 128, 8], imageFloats: 3 * 32 * 32), [1, 8, 128])
        XCTAssertEqual(EngineVerification.verifiedBatches([1, 8, 64, 128], imageFloats: 3 * 224 * 224), [1, 8, 55])
        XCTAssertEqual(EngineVerification.verifiedBatches([1, 8, 32], imageFloats: 3 * 1024 * 1024), [1, 2])
        XCTAssertEqual(EngineVerification.verifiedBatches([4], imageFloats: 3 * 4096 * 4096), [1])
    }

    /// Nodes and initializers: BNs after convs folded, Flatten + Gemm at the end, initializers
    /// under dotted names, ReLU6 as Clip.
    private func checkStructure(_ m: Onnx_ModelProto, net: Network, arch: Architecture, _ what: String) throws {
        let ops = m.graph.node.map(\.opType)
        XCTAssertEqual(Array(ops.suffix(2)), ["Flatten", "Gemm"], "\(arch) \(what): classifier")
        XCTAssertEqual(ops.filter { $0 == "BatchNormalization" }.isEmpty, arch != .preactResNet18, "\(arch) \(what): BN folding")
        XCTAssertEqual(ops.contains("Clip"), arch == .mobilenetv2, "\(arch) \(what): ReLU6 is Clip")
        let names = Set(m.graph.initializer.map(\.name))
        let stateNames = Set(net.state.filter { $0.kind != .channelScale }.map(\.name))
        for name in names where !name.hasPrefix("relu6.") && !name.hasSuffix(".shortcut.select") {
            // A conv without bias gains one when a BN folds into it.
            let folded = name.hasSuffix(".bias") && stateNames.contains(String(name.dropLast(5)) + ".weight")
            XCTAssertTrue(stateNames.contains(name) || folded, "\(arch) \(what): initializer \(name) is a dotted name of the net")
        }
        XCTAssertEqual(m.graph.output.map(\.name), ["logits"])
        XCTAssertEqual(m.graph.input.first?.type.tensorType.shape.dim.first?.dimParam, "batch")
    }
}
