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
    }

    func run() throws {
        // Ctrl-C or a kill removes this run's temporary files; those of killed runs go now.
        TemporaryFiles.installSignalCleanup()
        TemporaryFiles.removeStale()
        let folder = URL(fileURLWithPath: output).deletingLastPathComponent().path
        RunFolder.removeStaleTemporaries(in: folder, exclusive: false)
        let (loaded, state) = try loadNetCheckpoint(checkpoint)
        let net = loaded.network
        let data = try withCheckpointPath(checkpoint) { try ONNXExport.serialized(net, opset: opset) }
        var verification: ONNXVerification?
        var source = ""
        var inputs: (x: Tensor, logits: Tensor)?
        if !noVerify {
            let (x, from) = try verificationImages(loaded, state)
            source = from
            inputs = (x, Tape.withoutGradients { net.logits(x, training: false) })
        }
        // The model is verified under its temporary name and only then renamed into place: a
        // model that fails verification never replaces anything.
        struct Failed: Error {}
        do {
            try AtomicFile.replace(output) { temporary in
                do {
                    try data.write(to: URL(fileURLWithPath: temporary))
                } catch {
                    throw ExportError("cannot write \(temporary) (next to --onnx \(output)): \(fileErrorReason(error))")
                }
                if let inputs {
                    let report = try ONNXVerification.run(model: temporary, inputs: inputs.x, logits: inputs.logits)
                    verification = report
                    if !report.passed { throw Failed() }
                }
            }
        } catch is Failed {
            if json { try printJSON(bytes: data.count, verification: verification, source: source) }
            else { print("\(verification!.summary) [\(source)]\n\(output) was not written") }
            throw ExitCode(1)
        }
        if json {
            try printJSON(bytes: data.count, verification: verification, source: source)
        } else {
            print("wrote \(output) (\(String(format: "%.1f", Double(data.count) / 1e6)) MB, opset \(opset))")
            if let verification { print("\(verification.summary) [\(source)]") }
        }
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

    /// Real test images for the net: its dataset's, else Fashion-MNIST's adapted to its input.
    /// An explicit --dataset must load.
    private func verificationImages(_ loaded: LoadedCheckpoint, _ state: CheckpointState) throws -> (Tensor, String) {
        let d = loaded.network.netDescription
        let kind = dataset ?? state.dataset
        var problem = "the checkpoint does not say which dataset it was trained on"
        if let kind {
            guard kind.channels == d.inChannels, kind.imageSize == d.imageSize else {
                throw ValidationError("\(checkpoint) takes \(d.inChannels)x\(d.imageSize)x\(d.imageSize) images; \(kind.rawValue) has \(kind.channels)x\(kind.imageSize)x\(kind.imageSize)")
            }
            do {
                let x = try DatasetSources.testImages(kind, directory: dataDir, normalization: state.normalization, count: images)
                return (x, "\(x.shape[0]) \(kind.rawValue) test images")
            } catch {
                if dataset != nil { throw ValidationError("--dataset \(kind.rawValue): \(error)") }
                problem = "\(kind.rawValue) is not here: \(error)"
            }
        }
        do {
            let gray = try DatasetSources.testImages(.fashionMNIST, directory: kind == .fashionMNIST ? dataDir : nil,
                                                     normalization: nil, count: images)
            let x = adapt(gray, channels: d.inChannels, size: d.imageSize)
            let adapted = d.inChannels == 1 && d.imageSize == gray.shape[2] ? "" : " adapted to \(d.inChannels)x\(d.imageSize)x\(d.imageSize)"
            return (x, "\(x.shape[0]) Fashion-MNIST test images\(adapted) (\(problem))")
        } catch {
            throw ValidationError("no test images to verify with: \(problem); and Fashion-MNIST: \(error). Install Debian's dataset-fashion-mnist, pass --data-dir, or --no-verify")
        }
    }
}

/// What a checkpoint says about how its net was trained.
struct CheckpointState {
    var dataset: DatasetKind?
    var normalization: InputNormalization?
}

/// Loads a checkpoint of `train` or a search's `state.h5`, refusing a search state between
/// iterations (it holds no trained net, only zeros of the base net's shape).
func loadNetCheckpoint(_ path: String) throws -> (LoadedCheckpoint, CheckpointState) {
    let loaded = try Checkpoint.load(path)
    if let training = try? loaded.training(as: TrainingState.self) {
        if let normalization = training.inputNormalization {
            do { try normalization.validate(channels: loaded.network.netDescription.inChannels) } catch { throw InputError("\(path): \(error)") }
        }
        return (loaded, CheckpointState(dataset: DatasetKind(rawValue: training.config.dataset),
                                        normalization: training.inputNormalization))
    }
    if let search = try? loaded.training(as: DescentState.self) {
        guard search.current != nil else {
            throw ExportError("\(path) is a search's state between iterations (or after the last): it holds no trained net. Use a checkpoint of `neuralscale train`, or a state.h5 saved during an iteration")
        }
        return (loaded, CheckpointState(dataset: DatasetKind(rawValue: search.config.dataset), normalization: nil))
    }
    return (loaded, CheckpointState())
}

/// Runs `body`, naming the checkpoint in a surgery error.
func withCheckpointPath<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as SurgeryError { throw ExportError("\(path): \(error)") }
}

/// [N, 1, s, s] images repeated over `channels` and scaled up by an integer factor to `size`.
private func adapt(_ x: Tensor, channels: Int, size: Int) -> Tensor {
    let n = x.shape[0], side = x.shape[2], factor = max(1, size / side)
    let y = Tensor(uninitialized: [n, channels, size, size])
    for i in 0..<n {
        for c in 0..<channels {
            for r in 0..<size {
                for col in 0..<size {
                    y.data[((i * channels + c) * size + r) * size + col] = x.data[(i * side + min(r / factor, side - 1)) * side + min(col / factor, side - 1)]
                }
            }
        }
    }
    return y
}
