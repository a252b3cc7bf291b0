import Autodiff
import Checkpoint
import Foundation
import PythonBridge

/// Checks an exported model with its real consumers: `scripts/verify_onnx.py` runs onnx's
/// checker and ONNX Runtime on the inputs and compares with the Swift net's eval outputs.
public struct ONNXVerification: Codable, Sendable {
    public let passed: Bool
    public let checkerOK: Bool
    public let dynamicBatch: Bool
    public let maxCosineDistance: Double?
    public let top1Agreement: Double?
    public let maxAbsDiff: Double?
    public let n: Int?
    public let onnxruntimeVersion: String?
    public let onnxVersion: String?
    public let errors: [String]

    enum CodingKeys: String, CodingKey {
        case passed, n, errors
        case checkerOK = "checker_ok", dynamicBatch = "dynamic_batch", maxCosineDistance = "max_cosine_distance"
        case top1Agreement = "top1_agreement", maxAbsDiff = "max_abs_diff"
        case onnxruntimeVersion = "onnxruntime_version", onnxVersion = "onnx_version"
    }

    /// One line with the measured figures.
    public var summary: String {
        func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "n/a" }
        let verdict = passed ? "passed" : "FAILED"
        var s = "verification \(verdict): onnx checker \(checkerOK ? "ok" : "failed"), dynamic batch \(dynamicBatch ? "yes" : "no"), "
        s += "max cosine distance \(f(maxCosineDistance, "%.2e")) (< 1e-4), top-1 agreement \(f(top1Agreement.map { $0 * 100 }, "%.1f"))% "
        s += "on \(n.map(String.init) ?? "?") images, max |diff| \(f(maxAbsDiff, "%.2e")) (onnxruntime \(onnxruntimeVersion ?? "?"))"
        if !errors.isEmpty { s += "; " + errors.joined(separator: "; ") }
        return s
    }

    /// Runs the verifier on `model` with `inputs` [N, C, H, W] and the net's own eval `logits`,
    /// ONNX Runtime on the threads every command is given (`ORTInference.intraOpThreads`).
    /// - Parameter skipping: how the caller's user skips the check, named in the error when the
    ///   verifier cannot run (nil: it cannot be skipped).
    public static func run(model: String, inputs: Tensor, logits: Tensor, skipping: String? = "--no-verify") throws -> ONNXVerification {
        let dir = try TemporaryFiles.makeFolder("verify")
        defer { TemporaryFiles.remove(dir.path) }
        let inputPath = dir.appendingPathComponent("inputs.npy").path
        let logitsPath = dir.appendingPathComponent("logits.npy").path
        try NPY.write(inputs, to: inputPath)
        try NPY.write(logits, to: logitsPath)

        let script: String
        do { script = try Python.script("verify_onnx.py") } catch { throw ExportError("\(error)" + (skipping.map { ", or pass \($0)" } ?? "")) }
        let status: Int32, out: String, err: String
        do {
            (status, out, err) = try Python.run([script, model, inputPath, logitsPath, "--json",
                                                 "--threads", String(ORTInference.intraOpThreads(0))])
        } catch { throw ExportError("\(error)") }
        guard status == 0 || status == 1, let data = out.data(using: .utf8),
              let report = try? JSONDecoder().decode(ONNXVerification.self, from: data) else {
            throw ExportError("the ONNX verifier (\(script)) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        return report
    }
}
