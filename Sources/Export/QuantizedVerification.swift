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

    /// Runs the verifier on the two models with `images` [N, C, H, W] (normalized) and `labels`.
    public static func run(fp32: String, int8: String, images: Tensor, labels: [Int32], latencyRuns: Int = 50) throws -> QuantizedVerification {
        let dir = try TemporaryFiles.makeFolder("quantize")
        defer { TemporaryFiles.remove(dir.path) }
        let imagesPath = dir.appendingPathComponent("images.npy").path, labelsPath = dir.appendingPathComponent("labels.npy").path
        try NPY.write(images, to: imagesPath)
        try NPY.write(Tensor(shape: [labels.count], values: labels.map(Float.init)), to: labelsPath)
        let script = try Python.script("verify_quantized.py")
        let (status, out, err) = try Python.run([script, fp32, int8, imagesPath, labelsPath, "--json", "--latency-runs", String(latencyRuns)])
        guard status == 0, let report = try? JSONDecoder().decode(QuantizedVerification.self, from: Data(out.utf8)) else {
            throw ExportError("the int8 verifier (\(script)) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        return report
    }
}
