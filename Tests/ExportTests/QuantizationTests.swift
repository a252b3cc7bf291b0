import Autodiff
import Export
import Foundation
import Nets
import ONNX
import PythonBridge
import SwiftProtobuf
import TestSupport
import XCTest

/// int8 QDQ export: onnx's checker accepts it, ONNX Runtime runs it close to the fp32 model and
/// fuses every conv into an integer kernel; calibration is deterministic.
final class QuantizationTests: XCTestCase {
    override func setUpWithError() throws {
        try requirePython(modules: ["onnx", "onnxruntime", "numpy"])
    }

    private let checker = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Reference/check_qdq.py").path

    struct Report: Decodable {
        let checker: String
        let max_cosine_distance: Double
        let max_relative_diff: Double
        let top1_agreement: Double
        let optimized_ops: [String: Int]
    }

    /// A small net of `arch` with random weights and BN statistics, its calibration ranges on
    /// random images, and ONNX Runtime's verdict on its int8 model against its fp32 model.
    private func quantize(_ arch: Architecture, activations: ActivationType = .uint8, method: CalibrationMethod = .minmax,
                          keepFloat: Set<String> = []) throws -> (Report, QuantizationSummary, Network) {
        let d = NetDescription.uniform(arch, ratio: 0.25, inChannels: 3, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 5)))
        var rng = RandomGenerator(seed: 6)
        randomizeNormalization(net, using: &rng)
        let calibration = Tensor.randn([32, 3, 32, 32], using: &rng)
        let ranges = ActivationRanges.calibrate(net.inferenceGraph.foldingBatchNorms(), images: calibration, batchSize: 16, method: method)
        let (model, summary) = try QDQExport.model(net, ranges: ranges, activations: activations, keepFloat: keepFloat)
        let folder = try temporaryFolder("qdq")
        let int8 = folder.appendingPathComponent("int8.onnx").path, fp32 = folder.appendingPathComponent("fp32.onnx").path
        try model.serializedData().write(to: URL(fileURLWithPath: int8))
        try ONNXExport.write(net, to: fp32, opset: 13)
        let inputs = folder.appendingPathComponent("x.npy").path
        try NPY.write(Tensor.randn([16, 3, 32, 32], using: &rng), to: inputs)
        let (status, out, err) = try Python.run([checker, int8, fp32, inputs])
        XCTAssertEqual(status, 0, err)
        return (try JSONDecoder().decode(Report.self, from: Data(out.utf8)), summary, net)
    }

    func testEveryNetQuantizesToIntegerKernelsCloseToFloat() throws {
        for arch in Architecture.allCases {
            let (r, summary, net) = try quantize(arch)
            print("\(arch): \(r)")
            XCTAssertEqual(r.checker, "ok", "\(arch)")
            let convs = net.inferenceGraph.foldingBatchNorms().nodes.filter { if case .conv = $0.op { return true } else { return false } }.count
            // Every conv runs as ONNX Runtime's integer QLinearConv; no float Conv is left.
            XCTAssertEqual(r.optimized_ops["QLinearConv"], convs, "\(arch): \(r.optimized_ops)")
            XCTAssertNil(r.optimized_ops["Conv"], "\(arch): a conv left in float: \(r.optimized_ops)")
            XCTAssertEqual(summary.floatLayers, [])
            XCTAssertEqual(summary.quantizedLayers.count, convs + 1, "\(arch): every conv and the classifier")
            // Random nets on random inputs, so a loose bound: int8 keeps the logits' direction.
            XCTAssertLessThan(r.max_cosine_distance, 0.05, "\(arch)")
        }
    }

    /// Weights of 7 bits unless 8 are asked for (`QDQExport.defaultWeightBits`: ONNX Runtime's x86
    /// kernels without VNNI add pairs of products in 16 bits, which 8-bit weights can saturate; the
    /// MobileNetV2 case of `testEveryNetQuantizesToIntegerKernelsCloseToFloat` did, on an AMD EPYC
    /// Zen 3): every channel's largest weight at exactly 63 or 127 in magnitude, the biases' scales
    /// the input's times the weights'; other bit counts refused.
    func testWeightBits() throws {
        let d = NetDescription.uniform(.vgg11, ratio: 0.25, inChannels: 3, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 5)))
        var rng = RandomGenerator(seed: 6)
        let ranges = ActivationRanges.calibrate(net.inferenceGraph.foldingBatchNorms(), images: Tensor.randn([8, 3, 32, 32], using: &rng),
                                                batchSize: 8, method: .minmax)
        let byDefault = try QDQExport.model(net, ranges: ranges)
        let eight = try QDQExport.model(net, ranges: ranges, weightBits: 8)
        for (m, bits) in [(byDefault, 7), (eight, 8)] {
            XCTAssertEqual(m.summary.weightBits, bits)
            let qmax = (1 << (bits - 1)) - 1
            let weights = m.model.graph.initializer.filter {
                $0.name.hasSuffix("_quantized") && $0.dataType == Int32(Onnx_TensorProto.DataType.int8.rawValue)
            }
            XCTAssertEqual(weights.count, 9, "8 convs and the classifier")
            for w in weights {
                let values = w.rawData.map { Int(Int8(bitPattern: $0)) }, out = Int(w.dims[0]), row = values.count / out
                for o in 0..<out {
                    XCTAssertEqual(values[(o * row)..<((o + 1) * row)].map(abs).max(), qmax, "\(w.name) channel \(o), \(bits) bits")
                }
            }
        }
        XCTAssertThrowsError(try QDQExport.model(net, ranges: ranges, weightBits: 6))
        XCTAssertThrowsError(try QDQExport.model(net, ranges: ranges, weightBits: 9))
    }

    func testKeptFloatLayersStayFloat() throws {
        let (r, summary, _) = try quantize(.vgg11, method: .percentile, keepFloat: ["features.0"])
        XCTAssertEqual(r.checker, "ok")
        XCTAssertEqual(summary.floatLayers, ["features.0"])
        XCTAssertEqual(r.optimized_ops["QLinearConv"], 7, "\(r.optimized_ops)")
        XCTAssertEqual(r.optimized_ops["Conv", default: 0] + r.optimized_ops["FusedConv", default: 0], 1, "\(r.optimized_ops)")
        XCTAssertLessThan(r.max_cosine_distance, 0.05)
    }

    /// Signed activations give a valid model that runs close to float; ONNX Runtime 1.31's CPU
    /// provider does not fuse S8S8 convs on this machine, so they run as float convs between
    /// DequantizeLinear and QuantizeLinear (uint8 is the default for that reason).
    func testInt8ActivationsRun() throws {
        let (r, _, _) = try quantize(.resnet50, activations: .int8)
        XCTAssertEqual(r.checker, "ok")
        XCTAssertLessThan(r.max_cosine_distance, 0.05)
    }

    func testCalibrationIsDeterministic() throws {
        let net = try makeNetwork(.uniform(.resnet50, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10),
                                  initialization: .random(RandomGenerator(seed: 1)))
        var rng = RandomGenerator(seed: 2)
        let x = Tensor.randn([12, 3, 32, 32], using: &rng)
        let graph = net.inferenceGraph.foldingBatchNorms()
        for method in CalibrationMethod.allCases {
            let a = ActivationRanges.calibrate(graph, images: x, batchSize: 5, method: method)
            let again = ActivationRanges.calibrate(graph, images: x, batchSize: 5, method: method)
            XCTAssertEqual(a.lower, again.lower, "\(method): the same images give the same ranges, bit for bit")
            XCTAssertEqual(a.upper, again.upper, "\(method)")
            XCTAssertTrue(zip(a.lower, a.upper).allSatisfy { $0 <= $1 }, "\(method)")
            // Another batch size changes only float rounding (GEMM blocking), and the
            // histogram bin a value falls into.
            let b = ActivationRanges.calibrate(graph, images: x, batchSize: 12, method: method)
            for (u, v) in zip(a.upper + a.lower, b.upper + b.lower) {
                XCTAssertLessThanOrEqual(abs(u - v), 0.01 * max(abs(u), abs(v), 1), "\(method)")
            }
        }
        let minmax = ActivationRanges.calibrate(graph, images: x, method: .minmax)
        let clipped = ActivationRanges.calibrate(graph, images: x, method: .percentile, percentile: 99)
        XCTAssertTrue(zip(clipped.upper, minmax.upper).allSatisfy { $0 <= $1 }, "percentiles clip")
        XCTAssertTrue(zip(clipped.upper, minmax.upper).contains { $0 < $1 })
        let entropy = ActivationRanges.calibrate(graph, images: x, method: .entropy)
        XCTAssertEqual(entropy.lower[0], minmax.lower[0], "the input keeps its range")
        XCTAssertEqual(entropy.upper[0], minmax.upper[0])
        XCTAssertTrue(zip(entropy.upper, minmax.upper).allSatisfy { $0 <= $1 } && zip(entropy.lower, minmax.lower).allSatisfy { $0 >= $1 },
                      "entropy clips within the min-max range")
    }

    /// The KL threshold search on histograms whose answer is known.
    func testEntropyThreshold() {
        // Flat over every bin: clipping only loses mass, so no clipping.
        XCTAssertEqual(ActivationRanges.entropyThreshold([Double](repeating: 10, count: 2048), levels: 128), 2048)
        // A bell in the first 300 bins and one far outlier: merging 2048 bins into 128 levels
        // flattens the bell, so the threshold clips near the bulk, far below the outlier.
        var outlier = [Double](repeating: 0, count: 2048)
        for i in 0..<300 { outlier[i] = (1e5 * exp(-pow(Double(i) / 100, 2))).rounded() }
        outlier[2047] = 1
        let t = ActivationRanges.entropyThreshold(outlier, levels: 128)
        XCTAssertGreaterThanOrEqual(t, 128)
        XCTAssertLessThan(t, 600)
        // A heavy tail (Laplace-like counts): a threshold inside the tail, not at its end.
        let tail = (0..<2048).map { 1e6 * exp(-Double($0) / 60) }.map { $0.rounded() }
        let c = ActivationRanges.entropyThreshold(tail, levels: 128)
        XCTAssertGreaterThan(c, 128)
        XCTAssertLessThan(c, 2048)
        // Fewer bins than levels: the whole range.
        XCTAssertEqual(ActivationRanges.entropyThreshold([1, 2, 3], levels: 128), 3)
    }
}

/// `--keep-fp32 auto`'s search, with a made-up accuracy of each set of float layers.
final class FloatLayerSearchTests: XCTestCase {
    /// Accuracy rises by each float layer's gain: c matters most, then a; b not at all.
    private func accuracy(_ kept: Set<String>) -> Double {
        0.80 + (kept.contains("a") ? 0.005 : 0) + (kept.contains("c") ? 0.012 : 0)
    }

    func testKeepsTheMostSensitiveLayersUntilTheDropIsWithinTheBudget() {
        var calls: [Set<String>] = []
        let r = FloatLayerSearch.run(layers: ["a", "b", "c"], fp32Top1: 0.82, maxDrop: 0.5) { kept in
            calls.append(kept)
            return accuracy(kept)
        }
        // 2 points below fp32: c alone leaves 0.8, c and a 0.3.
        XCTAssertEqual(r.keep, ["c", "a"])
        XCTAssertEqual(r.top1, 0.817, accuracy: 1e-12)
        XCTAssertTrue(r.withinMaxDrop)
        XCTAssertEqual(r.sensitivity.count, 3)
        XCTAssertEqual(calls.first, [], "the full int8 model first")
    }

    func testNothingKeptWhenFullInt8IsWithinTheBudget() {
        let r = FloatLayerSearch.run(layers: ["a", "b", "c"], fp32Top1: 0.802, maxDrop: 0.5) { accuracy($0) }
        XCTAssertEqual(r.keep, [])
        XCTAssertEqual(r.sensitivity, [:])
        XCTAssertTrue(r.withinMaxDrop)
    }

    func testSaysSoWhenEvenEveryLayerInFloatIsNotEnough() {
        let r = FloatLayerSearch.run(layers: ["a", "b", "c"], fp32Top1: 0.9, maxDrop: 0.5) { accuracy($0) }
        XCTAssertEqual(Set(r.keep), ["a", "b", "c"])
        XCTAssertFalse(r.withinMaxDrop)
    }
}
