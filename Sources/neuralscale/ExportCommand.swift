import ArchDescent
import ArgumentParser
import Autodiff
import Checkpoint
import Datasets
import Export
import Foundation
import Nets
import Pruning
import Training

struct ExportONNX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's net as an ONNX model, verified with onnx and ONNX Runtime.",
        discussion: """
        The model is the eval-mode inference graph: a BatchNorm that is the only consumer of a conv \
        is folded into it (other BatchNorms stay BatchNormalization nodes), ReLU6 is \
        Clip(0, 6) and the classifier is Flatten + Gemm. Input `input` is [batch, C, H, W] with a \
        symbolic batch dimension, normalized as in training; output `logits` is [batch, classes]. \
        Weights are initializers under the checkpoint's dotted names. A gated net (a search \
        state) is exported without its pruned channels (surgery).

        Verification (unless --no-verify) runs scripts/verify_onnx.py: onnx.checker.check_model, \
        then ONNX Runtime (CPU) on the first --images test images of the checkpoint's dataset \
        against this tool's own eval outputs: the maximum cosine distance must stay below 1e-4 \
        and top-1 must agree on every image. When that dataset is not on this machine, \
        Fashion-MNIST test images are used, repeated across channels and scaled up to the net's \
        input. A failed verification exits with status 1, prints the figures and leaves --onnx \
        untouched (the model is verified before it is renamed into place).
        """
    )

    @Option(name: .long, help: "A checkpoint written by `neuralscale train` (or a search's state.h5).")
    var checkpoint: String

    @Option(name: .customLong("onnx"), help: "Where to write the ONNX model (written atomically).")
    var output: String

    @Option(name: .long, help: "ONNX opset version, 11...21.")
    var opset = 13

    @Flag(name: .long, help: "Skip the verification with onnx and ONNX Runtime.")
    var noVerify = false

    @Option(name: .long, help: "Verify on this dataset's test images instead of the checkpoint's dataset.")
    var dataset: DatasetKind?

    @Option(name: .long, help: "Dataset root folder (default: the dataset's usual place).")
    var dataDir: String?

    @Option(name: .long, help: "Test images to verify on.")
    var images = 100

    @Flag(name: .long, help: "Print one JSON object (the model path, its size and the verification figures).")
    var json = false

    func validate() throws {
        guard ONNXExport.opsets.contains(opset) else {
            throw ValidationError("--opset must be in \(ONNXExport.opsets.lowerBound)...\(ONNXExport.opsets.upperBound), got \(opset)")
        }
        guard (1...10_000).contains(images) else { throw ValidationError("--images must be in 1...10000, got \(images)") }
        try checkOutputFile(output, flag: "--onnx", createsFolder: false)
        try refuseWritingOverInput(output: output, flag: "--onnx", input: checkpoint, inputFlag: "--checkpoint")
    }

    func run() throws {
        // Ctrl-C or a kill removes this run's temporary files; those of killed runs go now.
        TemporaryFiles.installSignalCleanup()
        TemporaryFiles.removeStale()
        RunFolder.removeStaleTemporaries(in: URL(fileURLWithPath: output).deletingLastPathComponent().path, exclusive: false)
        let loaded = try NetCheckpoint.load(checkpoint)
        let data = try ONNXExport.serialized(loaded.network, opset: opset, checkpoint: checkpoint)
        let images = noVerify ? nil
            : try VerificationImages.choose(for: loaded.network.netDescription, checkpoint: checkpoint, requested: dataset,
                                            trainedOn: loaded.dataset, normalization: loaded.normalization, directory: dataDir,
                                            count: self.images)
        let verification = try ONNXExport.write(data, of: loaded.network, to: output, verifyingOn: images?.images)
        let source = images?.source ?? ""
        if json {
            try printJSON(bytes: data.count, verification: verification, source: source)
        } else if let verification, !verification.passed {
            print("\(verification.summary) [\(source)]\n\(output) was not written")
        } else {
            print("wrote \(output) (\(String(format: "%.1f", Double(data.count) / 1e6)) MB, opset \(opset))")
            if let verification { print("\(verification.summary) [\(source)]") }
        }
        if let verification, !verification.passed { throw ExitCode(1) }
    }

    private func printJSON(bytes: Int, verification: ONNXVerification?, source: String) throws {
        struct Report: Encodable {
            let onnx: String, written: Bool, bytes: Int, opset: Int, images: String?, verification: ONNXVerification?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(Report(onnx: output, written: verification?.passed ?? true, bytes: bytes,
                                                         opset: opset, images: verification == nil ? nil : source,
                                                         verification: verification)), as: UTF8.self))
    }
}
