import ArchDescent
import ArgumentParser
import Checkpoint
import Export
import Foundation
import Nets
import Pruning
import Training

/// `neuralscale bench infer`: inference latency and memory of checkpoints or ONNX models, on ONNX
/// Runtime and on this project's engine, the way the studies measured devices.
struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Time inference of checkpoints or ONNX models on ONNX Runtime and on this tool's engine.",
        discussion: """
        Per model, backend and batch size: a random input, --warmup untimed runs, then --runs \
        timed runs, repeated in --trials fresh sessions; the mean, median and p90 per trial and \
        over all runs, and images/s. Memory is the resident-set increase of preparing the model \
        and running it once: for ONNX Runtime in a child process per model (scripts/bench_ort.py), \
        for the engine in this process. A checkpoint runs on both backends (exported to ONNX for \
        ONNX Runtime; a search state after surgery); an ONNX model (an int8 model of `quantize` \
        too) only on ONNX Runtime.
        """
    )

    @Option(name: .long, parsing: .upToNextOption, help: "Checkpoints of `neuralscale train` (or search states).")
    var checkpoint: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "ONNX models (ONNX Runtime only).")
    var onnx: [String] = []

    enum Backend: String, ExpressibleByArgument, CaseIterable { case ort, swift, both }

    @Option(name: .long, help: "'ort' (ONNX Runtime, CPU), 'swift' (this tool's engine) or 'both'.")
    var backend: Backend = .both

    @Option(name: .long, help: "Comma-separated batch sizes.")
    var batchSizes = "1,8,32"

    @Option(name: .long, help: "Intra-op threads of ONNX Runtime (0: every core). The engine uses its own workers.")
    var threads = 0

    @Option(name: .long, help: "Untimed runs before each trial.")
    var warmup = 20

    @Option(name: .long, help: "Timed runs per trial.")
    var runs = 80

    @Option(name: .long, help: "Trials (fresh sessions) per batch size.")
    var trials = 5

    @Flag(name: .long, help: "Print one JSON array (every trial's figures).")
    var json = false

    func parsedBatchSizes() throws -> [Int] {
        let sizes = batchSizes.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 1 && ($0 ?? 0) <= 4096 }) else {
            throw ValidationError("--batch-sizes must be comma-separated sizes in 1...4096, got '\(batchSizes)'")
        }
        return sizes.map { $0! }
    }

    func validate() throws {
        guard !checkpoint.isEmpty || !onnx.isEmpty else { throw ValidationError("give --checkpoint or --onnx files") }
        if backend == .swift, checkpoint.isEmpty { throw ValidationError("--backend swift needs --checkpoint (the engine cannot run an ONNX file)") }
        _ = try parsedBatchSizes()
        guard runs >= 1, runs <= 100_000, trials >= 1, trials <= 1000, warmup >= 0, warmup <= 100_000, threads >= 0, threads <= 1024 else {
            throw ValidationError("--runs and --trials must be >= 1, --warmup and --threads >= 0")
        }
    }

    func run() throws {
        TemporaryFiles.installSignalCleanup()
        TemporaryFiles.removeStale()
        let sizes = try parsedBatchSizes()
        var reports: [InferenceBenchmark] = []
        for path in checkpoint {
            let loaded = try NetCheckpoint.load(path)
            if backend != .ort {
                reports.append(try InferenceBenchmark.swift(path, build: { try loaded.prunedNetwork() }, batchSizes: sizes,
                                                            warmup: warmup, runs: runs, trials: trials))
            }
            if backend != .swift {
                let model = TemporaryFiles.makePath("bench", suffix: ".onnx")
                defer { TemporaryFiles.remove(model) }
                try ONNXExport.write(try loaded.prunedNetwork(), to: model, opset: 13)
                reports.append(try InferenceBenchmark.onnxRuntime(model, batchSizes: sizes, warmup: warmup, runs: runs, trials: trials,
                                                                  threads: threads).named(path))
            }
        }
        for path in onnx where backend != .swift {
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("--onnx \(path): no such file") }
            reports.append(try InferenceBenchmark.onnxRuntime(path, batchSizes: sizes, warmup: warmup, runs: runs, trials: trials, threads: threads))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(reports), as: UTF8.self))
            return
        }
        print("model".padding(toLength: 44, withPad: " ", startingAt: 0) + "backend  batch   mean ms  median ms   p90 ms   images/s  memory MB")
        for r in reports {
            for x in r.results {
                let name = r.model.count > 42 ? "..." + r.model.suffix(39) : r.model
                print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + r.backend.padding(toLength: 7, withPad: " ", startingAt: 0)
                      + String(format: "%6d %9.3f %10.3f %8.3f %10.1f %10.1f", x.batch, x.mean_ms, x.median_ms, x.p90_ms, x.images_per_s, r.memory_mb))
            }
        }
    }
}
