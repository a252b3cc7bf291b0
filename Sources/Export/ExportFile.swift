import Autodiff
import Checkpoint
import Datasets
import Foundation
import Nets
import Pruning

extension ONNXExport {
    /// The model of `net`, read from `checkpoint`, as the bytes of an `.onnx` file.
    /// - Throws: `ExportError` naming `checkpoint` when surgery of a gated net fails, and
    ///   `model(_:opset:)`'s errors.
    public static func serialized(_ net: Network, opset: Int, checkpoint: String) throws -> Data {
        do { return try serialized(net, opset: opset) } catch let error as SurgeryError { throw ExportError("\(checkpoint): \(error)") }
    }

    /// Writes the model `data` of `net` to `output`, replacing it atomically. With `images`
    /// ([N, C, H, W], normalized as the net's inputs) the model is first verified under its
    /// temporary name against `net`'s own eval logits (`ONNXVerification.run`) and renamed into
    /// place only if it passes: a model that fails never replaces anything.
    /// - Returns: the verification (nil without `images`); when it did not pass, `output` was
    ///   not written.
    /// - Throws: `ExportError` when the file cannot be written or the verifier cannot run.
    public static func write(_ data: Data, of net: Network, to output: String, verifyingOn images: Tensor?) throws -> ONNXVerification? {
        let logits = images.map { x in Tape.withoutGradients { net.logits(x, training: false) } }
        var verification: ONNXVerification?
        struct Failed: Error {}
        do {
            try AtomicFile.replace(output) { temporary in
                do {
                    try data.write(to: URL(fileURLWithPath: temporary))
                } catch {
                    throw ExportError("cannot write \(temporary) (next to --onnx \(output)): \(fileErrorReason(error))")
                }
                if let images, let logits {
                    let report = try ONNXVerification.run(model: temporary, inputs: images, logits: logits)
                    verification = report
                    if !report.passed { throw Failed() }
                }
            }
        } catch is Failed {}
        return verification
    }
}
