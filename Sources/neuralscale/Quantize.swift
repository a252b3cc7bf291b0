import ArchDescent
import ArgumentParser
import Autodiff
import Checkpoint
import Datasets
import Export
import Foundation
import Nets
import PythonBridge
import SwiftProtobuf
import Training

extension CalibrationMethod: ExpressibleByArgument {}
extension ActivationType: ExpressibleByArgument {}

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint's net as an int8 QDQ ONNX model, calibrated and verified with ONNX Runtime.",
        discussion: """
        The model (opset 13) is the eval graph with BN folded, in the QDQ form ONNX Runtime fuses \
        into integer kernels: conv and linear weights symmetric int8 per output channel, biases \
        int32 at scale s_x * s_w[c], activations per tensor (uint8 by default), a ReLU or Clip \
        after a conv absorbed, the logits left in float. Activation ranges come from running \
        this tool's own engine on --calibration training images of the checkpoint's dataset, \
        drawn with --seed.

        Verification (unless --no-verify) runs scripts/verify_quantized.py with ONNX Runtime on \
        the whole test set: top-1 and top-5 accuracy of the fp32 and the int8 model, their \
        agreement, batch-1 latency of both, and how many convs ONNX Runtime's optimized graph \
        runs as integer kernels. A top-1 drop above --max-drop points is a warning, and exit \
        status 1 with --strict. ONNX Runtime 1.31's CPU provider fuses convs only with uint8 \
        activations; with --activations int8 they run in float between the quantization nodes \
        (the verification reports it).
        """
    )

    @Option(name: .long, help: "A checkpoint written by `neuralscale train` (or a search's state.h5, quantized after surgery).")
    var checkpoint: String

    @Option(name: .customLong("onnx"), help: "Where to write the int8 model (written atomically).")
    var output: String

    @Option(name: .long, help: "Training images to calibrate activation ranges on.")
    var calibration = 1000

    @Option(name: .long, help: "How activation ranges are taken: 'minmax', 'percentile' (clip at --percentile) or 'entropy' (the clipping threshold of least KL divergence, as TensorRT calibrates).")
    var method: CalibrationMethod = .minmax

    @Option(name: .long, help: "With --method percentile: the upper percentile (and 100 minus it for the lower bound).")
    var percentile = 99.99

    @Option(name: .long, help: "Activation type: 'uint8' (asymmetric; ONNX Runtime's fast path) or 'int8' (symmetric).")
    var activations: ActivationType = .uint8

    @Option(name: .customLong("weight-bits"), help: ArgumentHelp(
        "Bits of the weights: 7 (default; values -63...63) or 8 (-127...127).",
        discussion: "ONNX Runtime's integer convolutions on x86 CPUs without VNNI (AVX2, or AVX-512 without VNNI) add pairs of products in 16 bits, which saturate with 8-bit weights wherever an activation is signed (ONNX Runtime's documented 'reduce range' case): a MobileNetV2 lost its logits' direction there. 7 bits cannot saturate and cost little; 8 bits suit VNNI x86 and ARM targets."))
    var weightBits = QDQExport.defaultWeightBits

    @Option(name: .customLong("keep-fp32"), help: "Comma-separated convs or linear layers to leave in float, by module name (e.g. features.0), or 'auto': measure each layer's sensitivity and keep the most sensitive in float until the top-1 drop is within --max-drop.")
    var keepFP32: String?

    @Option(name: .long, help: "The largest acceptable top-1 drop in percentage points.")
    var maxDrop = 1.0

    @Flag(name: .long, help: "Exit with status 1 when the top-1 drop is above --max-drop.")
    var strict = false

    @Option(name: .long, help: "Seed of the calibration images' draw.")
    var seed: UInt64 = 0

    @Option(name: .long, help: "Use this dataset instead of the checkpoint's (same image shape and classes).")
    var dataset: DatasetKind?

    @Option(name: .long, help: "Dataset root folder (default: the dataset's usual place).")
    var dataDir: String?

    @Flag(name: .long, help: "Skip the verification with ONNX Runtime.")
    var noVerify = false

    @Option(name: .long, help: "Also write into this folder what a comparison needs: fp32.onnx, calibration.npy, test-images.npy, test-labels.npy (scripts/quantize-vs-ort.sh uses them).")
    var saveInputs: String?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard calibration >= 1, calibration <= 100_000 else { throw ValidationError("--calibration must be in 1...100000, got \(calibration)") }
        guard percentile > 50, percentile <= 100 else { throw ValidationError("--percentile must be in (50, 100], got \(percentile)") }
        guard maxDrop.isFinite, maxDrop >= 0 else { throw ValidationError("--max-drop must be >= 0, got \(maxDrop)") }
        guard QDQExport.weightBitChoices.contains(weightBits) else { throw ValidationError("--weight-bits must be 7 or 8, got \(weightBits)") }
        try checkOutputFile(output, flag: "--onnx", createsFolder: false)
        try refuseWritingOverInput(output: output, flag: "--onnx", input: checkpoint, inputFlag: "--checkpoint")
    }

    func run() throws {
        TemporaryFiles.installSignalCleanup()
        TemporaryFiles.removeStale()
        RunFolder.removeStaleTemporaries(in: URL(fileURLWithPath: output).deletingLastPathComponent().path, exclusive: false)
        let loaded = try NetCheckpoint.load(checkpoint)
        let net = try loaded.prunedNetwork()
        let (kind, normalization) = try loaded.inputs(dataset, directory: dataDir)
        let graph = net.inferenceGraph.foldingBatchNorms()
        let auto = keepFP32 == "auto"
        var keep = auto ? [] : Set((keepFP32 ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        let layerList = graph.nodes.compactMap { n -> String? in
            switch n.op { case .conv, .linear: return n.name; default: return nil }
        }
        let layers = Set(layerList)
        if auto && noVerify { throw ValidationError("--keep-fp32 auto measures accuracy with ONNX Runtime; it cannot go with --no-verify") }
        if let unknown = keep.subtracting(layers).sorted().first {
            throw ValidationError("--keep-fp32 \(unknown): no such conv or linear layer (they are \(layers.sorted().prefix(6).joined(separator: ", ")), ...)")
        }
        let data = try DatasetSources.calibrationAndTest(kind, directory: dataDir, normalization: normalization,
                                                         calibration: calibration, seed: seed)
        let ranges = ActivationRanges.calibrate(graph, images: data.calibration, method: method, percentile: percentile,
                                                activations: activations)
        // What every verification compares with, written once: the fp32 model and the test set.
        let fp32 = TemporaryFiles.makePath("fp32", suffix: ".onnx")
        defer { TemporaryFiles.remove(fp32) }
        var inputs: QuantizedVerification.Inputs?
        if !noVerify {
            try ONNXExport.write(net, to: fp32, opset: 13)
            inputs = try QuantizedVerification.Inputs(images: data.test, labels: data.labels)
        }
        var search: FloatLayerSearch.Result?
        if auto, let inputs {
            let int8 = TemporaryFiles.makePath("int8", suffix: ".onnx")
            defer { TemporaryFiles.remove(int8) }
            var fp32Top1: Double?
            func evaluate(_ kept: Set<String>) throws -> Double {
                let (m, _) = try QDQExport.model(graph, net: net.netDescription, ranges: ranges, activations: activations, keepFloat: kept,
                                                 weightBits: weightBits)
                try m.serializedData().write(to: URL(fileURLWithPath: int8))
                let v = try QuantizedVerification.run(fp32: fp32, int8: int8, inputs: inputs, latencyRuns: 0)
                fp32Top1 = v.fp32_top1
                if !json {
                    FileHandle.standardError.write(Data("  \(kept.isEmpty ? "all int8" : "float: " + kept.sorted().joined(separator: ", ")): int8 top-1 \(String(format: "%.2f%%", 100 * v.int8_top1))\n".utf8))
                }
                return v.int8_top1
            }
            let all = try evaluate([])
            search = try FloatLayerSearch.run(layers: layerList, fp32Top1: fp32Top1!, maxDrop: maxDrop) { kept in
                kept.isEmpty ? all : try evaluate(kept)
            }
            keep = Set(search!.keep)
        }
        let (model, summary) = try QDQExport.model(graph, net: net.netDescription, ranges: ranges, activations: activations, keepFloat: keep,
                                                   weightBits: weightBits)
        let bytes = try model.serializedData()
        var verification: QuantizedVerification?
        try AtomicFile.replace(output) { temporary in
            try bytes.write(to: URL(fileURLWithPath: temporary))
            guard let inputs else { return }
            verification = try QuantizedVerification.run(fp32: fp32, int8: temporary, inputs: inputs)
        }
        if let folder = saveInputs {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            func path(_ name: String) -> String { URL(fileURLWithPath: folder).appendingPathComponent(name).path }
            try ONNXExport.write(net, to: path("fp32.onnx"), opset: 13)
            try NPY.write(data.calibration, to: path("calibration.npy"))
            try NPY.write(data.test, to: path("test-images.npy"))
            try NPY.write(Tensor(shape: [data.labels.count], values: data.labels.map(Float.init)), to: path("test-labels.npy"))
        }
        let overBudget = verification.map { $0.top1_drop_pp > maxDrop } ?? false
        if json {
            struct Report: Encodable {
                let onnx: String, checkpoint: String, bytes: Int, calibration: Int, method: String, activations: String, weightBits: Int
                let quantizedLayers: [String], floatLayers: [String], verification: QuantizedVerification?, withinMaxDrop: Bool?
                let keepFP32Search: FloatLayerSearch.Result?
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(Report(
                onnx: output, checkpoint: checkpoint, bytes: bytes.count, calibration: calibration, method: method.rawValue, activations: activations.rawValue, weightBits: weightBits,
                quantizedLayers: summary.quantizedLayers, floatLayers: summary.floatLayers, verification: verification,
                withinMaxDrop: verification.map { _ in !overBudget }, keepFP32Search: search)), as: UTF8.self))
        } else {
            print("wrote \(output) (\(String(format: "%.2f", Double(bytes.count) / 1e6)) MB): \(summary.quantizedLayers.count) layers int8"
                  + (summary.floatLayers.isEmpty ? "" : ", in float: \(summary.floatLayers.joined(separator: ", "))")
                  + "; \(calibration) calibration images (\(method.rawValue)), \(activations.rawValue) activations, \(weightBits)-bit weights")
            if let v = verification {
                func pct(_ x: Double?) -> String { x.map { String(format: "%.2f%%", 100 * $0) } ?? "-" }
                print("test set (\(v.n) images): top-1 fp32 \(pct(v.fp32_top1)), int8 \(pct(v.int8_top1)) "
                      + String(format: "(drop %.2f points)", v.top1_drop_pp) + "; top-5 fp32 \(pct(v.fp32_top5)), int8 \(pct(v.int8_top5)); "
                      + "agreement \(pct(v.top1_agreement))")
                if let l = v.latency {
                    print(String(format: "batch-1 latency (ONNX Runtime): fp32 %.3f ms, int8 %.3f ms (median)", l.fp32.median_ms, l.int8.median_ms))
                }
                print("integer kernels in ONNX Runtime's optimized graph: \(v.kernels.integer_convs) of \(v.kernels.fp32_convs) convs"
                      + (v.kernels.float_conv_nodes.isEmpty ? "" : " (float: \(v.kernels.float_conv_nodes.joined(separator: ", ")))")
                      + ", \(v.kernels.integer_gemms) of \(v.kernels.integer_gemms + v.kernels.float_gemms) linear layers"
                      + (v.checker_ok ? "; onnx.checker ok" : "; onnx.checker: \(v.checker_error ?? "failed")"))
            }
        }
        if let search, !json {
            print(search.keep.isEmpty ? "--keep-fp32 auto: every layer int8 is within --max-drop"
                  : "--keep-fp32 auto: kept in float, most sensitive first: \(search.keep.joined(separator: ", "))"
                    + (search.withinMaxDrop ? "" : " (still above --max-drop with every layer in float)"))
        }
        if overBudget {
            FileHandle.standardError.write(Data(("warning: int8 top-1 is \(String(format: "%.2f", verification!.top1_drop_pp)) points below fp32, "
                + "more than --max-drop \(maxDrop); try \(method == .percentile ? "another --percentile, --method minmax" : "--method percentile") "
                + "or --keep-fp32 the first conv (or auto)\n").utf8))
            if strict { throw ExitCode(1) }
        }
    }
}
