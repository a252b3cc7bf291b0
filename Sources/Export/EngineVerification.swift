import Autodiff
import Foundation
import Nets

/// `bench infer --verify`: the engine's outputs, the ones `bench infer` times, checked against
/// ONNX Runtime's on the net's exported model.
///
/// The engine chooses its algorithms by batch size (convolutions split by channels below the
/// GEMM's piece count, Winograd or im2col by shape and batch), so the net runs at each of the
/// batch sizes given (at most `maxBatch` images each, fewer for large images: larger batches
/// take the same paths), on
/// seeded random images, and the logits of all of them are compared with ONNX Runtime's on the
/// same images by `scripts/verify_onnx.py` (onnx's checker, then per image a cosine distance
/// below 1e-4 and the same top-1 class).
public struct EngineVerification: Codable, Sendable {
    public let model: String
    public let input_size: Int
    /// The batch sizes the engine ran (each on its own images).
    public let batches: [Int]
    public let result: ONNXVerification

    /// The largest batch verified; a larger one is verified at this size.
    public static let maxBatch = 128
    /// The most floats of images one verified batch holds (32 MB): larger images verify at
    /// smaller batches (224x224: at most 55 images; 1024x1024: 2), so that the check does not
    /// need more memory than the timings.
    public static let maxBatchFloats = 1 << 23

    public var passed: Bool { result.passed }

    /// The batch sizes verified for `batchSizes` of images of `imageFloats` floats: each capped
    /// at `maxBatch` and at `maxBatchFloats` of images (at least 1), once each, ascending.
    public static func verifiedBatches(_ batchSizes: [Int], imageFloats: Int) -> [Int] {
        let cap = max(1, min(maxBatch, maxBatchFloats / max(1, imageFloats)))
        return Array(Set(batchSizes.map { min(max($0, 1), cap) })).sorted()
    }

    /// One line: the net, its input size and batches, and the verifier's figures.
    public var summary: String {
        "engine vs ONNX Runtime, \(model) at \(input_size)px, batches \(batches.map(String.init).joined(separator: ",")): \(result.summary)"
    }

    /// Runs `net`'s folded eval graph (at `inputSize`, nil: the net's own) with the engine at
    /// each of `batchSizes` (capped at `maxBatch` and `maxBatchFloats`) and checks the logits
    /// with ONNX Runtime on `onnx`, the net exported at that input size. A verifier that cannot
    /// run (a missing script, a crash) gives a failed verification with its error, so that a
    /// benchmark keeps the other nets' results.
    public static func run(_ name: String, net: Network, onnx: String, inputSize: Int?, batchSizes: [Int]) throws -> EngineVerification {
        let d = net.netDescription, size = inputSize ?? d.imageSize
        let engine = InferenceEngine(try EngineInference.tracedGraph(net, size: size).foldingBatchNorms())
        let imageCount = d.inChannels * size * size
        let batches = verifiedBatches(batchSizes, imageFloats: imageCount)
        let total = batches.reduce(0, +)
        var rng = RandomGenerator(seed: 1)
        let inputs = Tensor.randn([total, d.inChannels, size, size], using: &rng)
        var logits: Tensor?
        var row = 0
        for b in batches {
            let x = Tensor(uninitialized: [b, d.inChannels, size, size])
            x.data.update(from: inputs.data + row * imageCount, count: b * imageCount)
            let y = engine.run(x)
            let classes = y.shape[1]
            if logits == nil { logits = Tensor(uninitialized: [total, classes]) }
            guard let all = logits, all.shape[1] == classes, y.shape[0] == b else {
                throw ExportError("\(name): the engine gave logits of shape \(y.shape) at batch \(b)")
            }
            (all.data + row * classes).update(from: y.data, count: b * classes)
            row += b
        }
        guard let logits else { throw ExportError("\(name): no batch size to verify") }
        let result: ONNXVerification
        do {
            result = try ONNXVerification.run(model: onnx, inputs: inputs, logits: logits, skipping: nil)
        } catch {
            result = ONNXVerification(passed: false, checkerOK: false, dynamicBatch: false, maxCosineDistance: nil, top1Agreement: nil,
                                      maxAbsDiff: nil, n: nil, onnxruntimeVersion: nil, onnxVersion: nil,
                                      errors: ["the verifier did not run: \(error)"])
        }
        return EngineVerification(model: name, input_size: size, batches: batches, result: result)
    }
}
