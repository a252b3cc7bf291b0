import Autodiff
import Checkpoint
import Foundation
import PythonBridge

/// What `scripts/verify_quantized.py` measures of an int8 model against its fp32 original with
/// ONNX Runtime: accuracy on the given test images, agreement, batch-1 latency, and which convs
/// ONNX Runtime's optimized graph runs as integer kernels.
public struct QuantizedVerification: Codable, Sendable {
    public struct Latency: Codable, Sendable {
        public let mean_ms: Double
        public let median_ms: Double
    }
    public struct Latencies: Codable, Sendable {
        public let fp32: Latency
        public let int8: Latency
    }
    public struct Kernels: Codable, Sendable {
        public let fp32_convs: Int
        public let integer_convs: Int
        public let float_convs: Int
        public let float_conv_nodes: [String]
        public let integer_gemms: Int
        public let float_gemms: Int
    }
    public let n: Int
    public let fp32_top1: Double
    public let fp32_top5: Double?
    public let int8_top1: Double
    public let int8_top5: Double?
    /// fp32 top-1 minus int8 top-1, in percentage points.
    public let top1_drop_pp: Double
    public let top1_agreement: Double
    public let latency: Latencies?
    public let kernels: Kernels
    public let checker_ok: Bool
    public let checker_error: String?
    public let onnxruntime_version: String?

    /// Test images and labels written once as `.npy` files for the verifier, in a temporary
    /// folder that goes with this object; many verifications (`--keep-fp32 auto`) share them.
    public final class Inputs {
        public let images: String, labels: String
        private let folder: URL

        /// - Parameters:
        ///   - images: [N, C, H, W], normalized as the net expects.
        public init(images: Tensor, labels: [Int32]) throws {
            folder = try TemporaryFiles.makeFolder("quantize")
            self.images = folder.appendingPathComponent("images.npy").path
            self.labels = folder.appendingPathComponent("labels.npy").path
            try NPY.write(images, to: self.images)
            try NPY.write(Tensor(shape: [labels.count], values: labels.map(Float.init)), to: self.labels)
        }

        deinit { TemporaryFiles.remove(folder.path) }
    }

    /// Runs the verifier on the two models with `images` [N, C, H, W] (normalized) and `labels`.
    public static func run(fp32: String, int8: String, images: Tensor, labels: [Int32], latencyRuns: Int = 50) throws -> QuantizedVerification {
        try run(fp32: fp32, int8: int8, inputs: Inputs(images: images, labels: labels), latencyRuns: latencyRuns)
    }

    /// Runs the verifier on the two models with the test set in `inputs`.
    public static func run(fp32: String, int8: String, inputs: Inputs, latencyRuns: Int = 50) throws -> QuantizedVerification {
        let script = try Python.script("verify_quantized.py")
        let (status, out, err) = try Python.run([script, fp32, int8, inputs.images, inputs.labels, "--json", "--latency-runs", String(latencyRuns),
                                                 "--threads", String(ORTInference.intraOpThreads(0))])
        guard status == 0, let report = try? JSONDecoder().decode(QuantizedVerification.self, from: Data(out.utf8)) else {
            throw ExportError("the int8 verifier (\(script)) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        return report
    }
}
