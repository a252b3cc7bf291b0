import ArchDescent
import ArgumentParser
import Autodiff
import Checkpoint
import Datasets
import Export
import Foundation
import Nets
import Reporting
import Training

/// `neuralscale bench infer`: inference latency and memory of checkpoints, ONNX models or fresh
/// nets, on ONNX Runtime and on this project's engine, the way the studies measured devices.
struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Time inference of checkpoints, ONNX models or fresh nets on ONNX Runtime and on this tool's engine.",
        discussion: """
        Per model, backend, input size and batch size: a random input, --warmup untimed runs, \
        then --runs timed runs, repeated in --trials fresh sessions; the mean, median and p90 per \
        trial and over all runs, images/s, and the share of --budget-ms the mean takes. Memory is \
        the resident-set increase of preparing the model and running it once at that batch size, \
        measured in a child process per model and batch size (scripts/bench_ort.py for ONNX \
        Runtime, this tool itself for the engine), so that models do not share a heap; also per \
        million parameters.

        The engine runs the net's eval graph with BN folded into the convs (what the ONNX export \
        holds) with its own ops. A checkpoint or a fresh net (--model) runs on both backends \
        (exported to ONNX for ONNX Runtime; a search state after surgery); an ONNX model, an int8 \
        model of `quantize` too, runs on ONNX Runtime only.

        --input-sizes runs the same net on other input sizes (32 and more, e.g. the FYP's 112, \
        160, 192, 224): the nets that pool globally before the classifier (MobileNetV2, PreAct \
        ResNet-18, ResNet-50) take any, exported for ONNX Runtime with that input size; VGG-11's \
        classifier reads the flattened map, so it says it cannot and is skipped at other sizes, \
        as is an ONNX model with a fixed input size.

        --profile adds per-layer times at --profile-batch: from ONNX Runtime's profiler for ONNX \
        Runtime and from timing every op of the engine's graph, summed per layer with the layer's \
        multiply-accumulates and achieved GFLOP/s, sorted, as a table (and with --out: JSON, CSV \
        and SVG bars).

        --out DIR writes bench-infer.json (every measurement and profile, with the machine, \
        threads and library versions), bench-infer.csv, latency-vs-batch.svg, \
        memory-vs-batch.svg, and with --profile profile.csv and profile-<k>-<backend>.svg.

        --latency-table FILE --model M builds the per-layer latency table that sizes nets to a \
        latency budget (--target-latency-ms): every kind of layer of M (kernel, stride, input \
        size, depthwise or not) timed alone on ONNX Runtime at batch 1 (a Conv + Relu as the \
        export holds it, or a Gemm) on a grid of input and output channel counts in steps of \
        --channel-multiple up to --table-max-ratio times the net's widths, thinned to \
        --table-points per axis; a net's predicted latency is the sum of its layers' times \
        (bilinear between grid points) plus c0 + c1 * max(0, P - knee): what layers timed alone \
        do not show (a net whose weights outgrow the cache streams them from memory), fitted to \
        the measured latencies of 6 uniform nets and --calibration-random random ones. The \
        prediction is then checked against --table-checks other random width configurations \
        (widths in multiples of the step: other channel counts run on slower paths in ONNX \
        Runtime), and the errors printed and stored in the table. Measure with the --threads \
        the deployment will use.
        """
    )

    @Option(name: .long, parsing: .upToNextOption, help: "Checkpoints of `neuralscale train` (or search states).")
    var checkpoint: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "ONNX models, fp32 or int8 (ONNX Runtime only).")
    var onnx: [String] = []

    @Option(name: .long, help: "Comma-separated nets to time freshly built (random weights; uniform widths at --ratios), e.g. vgg11,resnet50.")
    var model: String?

    @Option(name: .long, help: "With --model: comma-separated width ratios.")
    var ratios = "1.0"

    @Option(name: .long, help: "With --model: the dataset whose image shape and classes the nets are built for.")
    var dataset: DatasetKind = .cifar10

    enum Backend: String, ExpressibleByArgument, CaseIterable { case ort, swift, both }

    @Option(name: .long, help: "'ort' (ONNX Runtime, CPU provider), 'swift' (this tool's engine) or 'both'.")
    var backend: Backend = .both

    @Option(name: .long, help: "Comma-separated batch sizes (1...4096).")
    var batchSizes = "1,8,16,32,64,128"

    @Option(name: .long, help: "Comma-separated input sizes in 32...1024 (default: each model's own).")
    var inputSizes: String?

    @Option(name: .long, help: "Threads of both backends: ONNX Runtime's intra-op threads and the engine's workers (0: every core, or NEURALSCALE_THREADS when set, for both).")
    var threads = 0

    @Option(name: .long, help: "Untimed runs before each trial.")
    var warmup = 20

    @Option(name: .long, help: "Timed runs per trial.")
    var runs = 80

    @Option(name: .long, help: "Trials (fresh sessions) per model, backend and batch size.")
    var trials = 5

    @Option(name: .long, help: "A real-time budget in ms per batch (16.67: 60 frames/s); the share of it each configuration takes is reported.")
    var budgetMs = 16.67

    @Flag(name: .long, inversion: .prefixedNo,
          help: "With both backends on a net: run the engine's trial k and ONNX Runtime's one right after the other (the order swapped every pair, each trial a fresh process), and take the engine/ONNX Runtime ratio per pair (the median of the pairs' ratios and their range), so that both sides of a ratio see the same state of a noisy machine; the figures per backend are then over trials (mean of means, median of medians and of p90s). --no-alternate runs all of the engine's trials, then all of ONNX Runtime's.")
    var alternate = true

    @Flag(name: .long, help: "Also time every layer (ONNX Runtime's profiler; the engine's per-op timing).")
    var profile = false

    @Flag(name: .long, help: ArgumentHelp("Also check the engine's outputs against ONNX Runtime's on the net's exported model, at each --batch-sizes value (at most \(EngineVerification.maxBatch), fewer for large images) on seeded random images: onnx's checker, then per image a cosine distance below 1e-4 and the same top-1 class. A net that fails is reported and the command exits with status 1 after writing its results."))
    var verify = false

    @Option(name: .long, help: "With --profile: the batch size of the profile.")
    var profileBatch = 1

    @Option(name: .long, help: winogradHelp)
    var winograd = Conv2DTuning.Winograd.auto

    @Flag(name: .long, help: "Print one JSON object (every measurement and profile) instead of tables.")
    var json = false

    @Option(name: .long, help: "Write bench-infer.json, bench-infer.csv and the SVG charts into this folder.")
    var out: String?

    @Option(name: .long, help: ArgumentHelp("Build a per-layer latency table of --model on ONNX Runtime here and write it to this JSON file (for --target-latency-ms of train, stats, widths and advise).", valueName: "file"))
    var latencyTable: String?

    @Option(name: .long, help: "With --model: every width rounded to a multiple of K at the uniform net's P (as `stats --ratio R --channel-multiple K`). With --latency-table: the grid's step in channels (default: ONNX Runtime's NCHWc channel block on this CPU, 16 with AVX-512, else 8).")
    var channelMultiple: Int?

    @Option(name: .long, help: "With --latency-table: at most this many channel counts per axis of each layer kind's grid (2...64).")
    var tablePoints = 6

    @Option(name: .long, help: "With --latency-table: the largest width ratio the grid covers (wider nets are extrapolated).")
    var tableMaxRatio = 1.0

    @Option(name: .long, help: "With --latency-table: random width configurations whose measured latency checks the table (besides the uniform nets at 0.25, 0.5 and 0.75 of --table-max-ratio).")
    var tableChecks = 10

    @Option(name: .long, help: "With --latency-table: random width configurations (besides 6 uniform nets) that calibrate the constant and the memory term.")
    var calibrationRandom = 10

    @Option(name: .long, help: "With --latency-table: timed runs per layer and trial (after 5 untimed runs; the best trial's median counts).")
    var layerRuns = 20

    @Option(name: .long, help: "With --latency-table: trials (fresh sessions) per layer.")
    var layerTrials = 3

    /// Set by the parent for its child processes: run one engine measurement in this process and
    /// print it as JSON.
    @Flag(name: .long, help: .hidden)
    var worker = false

    /// What is timed.
    enum Source {
        case checkpoint(String)
        case onnx(String)
        /// A net, its ratio, and the multiple its widths are rounded to (nil: none).
        case fresh(Architecture, Double, Int?)

        var name: String {
            switch self {
            case let .checkpoint(p), let .onnx(p): return p
            case let .fresh(m, r, k): return "\(m.rawValue) x\(r)" + (k.map { " k\($0)" } ?? "")
            }
        }
    }

    func parsedBatchSizes() throws -> [Int] {
        try commaSeparated(batchSizes, flag: "--batch-sizes", "sizes in 1...4096") { Int($0).flatMap { (1...4096).contains($0) ? $0 : nil } }
    }

    func parsedInputSizes() throws -> [Int]? {
        try inputSizes.map {
            try commaSeparated($0, flag: "--input-sizes", "sizes in 32...\(NetDescription.maxImageSize)") {
                Int($0).flatMap { $0 >= 32 && $0 <= NetDescription.maxImageSize ? $0 : nil }
            }
        }
    }

    func sources() throws -> [Source] {
        var s = checkpoint.map(Source.checkpoint) + onnx.map(Source.onnx)
        if let model {
            let models = try commaSeparated(model, flag: "--model", "nets (\(Architecture.allCases.map(\.rawValue).joined(separator: ", ")))") { Architecture(rawValue: $0) }
            let r = try commaSeparated(ratios, flag: "--ratios", "ratios in (0, 4]") { Double($0).flatMap { $0 > 0 && $0 <= 4 ? $0 : nil } }
            for m in models { for ratio in r { s.append(.fresh(m, ratio, channelMultiple)) } }
        }
        return s
    }

    func validate() throws {
        if latencyTable != nil { return try validateLatencyTable() }
        guard !checkpoint.isEmpty || !onnx.isEmpty || model != nil else { throw ValidationError("give --checkpoint, --onnx or --model") }
        if backend == .swift, checkpoint.isEmpty, model == nil {
            throw ValidationError("--backend swift needs --checkpoint or --model (the engine cannot run an ONNX file)")
        }
        if verify, checkpoint.isEmpty, model == nil {
            throw ValidationError("--verify checks the engine on --checkpoint or --model nets (an ONNX file runs on ONNX Runtime alone)")
        }
        if verify, worker { throw ValidationError("--verify is the parent's check, not a --worker's") }
        if let k = channelMultiple {
            guard model != nil else { throw ValidationError("--channel-multiple rounds the widths of --model's nets") }
            guard (1...512).contains(k) else { throw ValidationError("--channel-multiple must be in 1...512, got \(k)") }
        }
        _ = try parsedBatchSizes()
        _ = try parsedInputSizes()
        // Every fresh net's widths before anything is timed (a ratio too small for a net, or a
        // multiple no uniform net comes near, once stopped the run after the nets before it).
        for case let .fresh(m, ratio, multiple) in try sources() {
            do { _ = try freshDescription(m, ratio: ratio, multiple: multiple) } catch { throw ValidationError("\(error)") }
        }
        guard runs >= 1, runs <= 100_000, trials >= 1, trials <= 1000, warmup >= 0, warmup <= 100_000 else {
            throw ValidationError("--runs and --trials must be >= 1 and --warmup >= 0, got \(runs), \(trials) and \(warmup)")
        }
        guard threads >= 0, threads <= 1024 else { throw ValidationError("--threads must be in 0...1024, got \(threads)") }
        guard budgetRange.contains(budgetMs) else { throw ValidationError("--budget-ms must be in 0.001...1e7 (1 us to about 3 hours), got \(budgetMs)") }
        guard (1...4096).contains(profileBatch) else { throw ValidationError("--profile-batch must be in 1...4096, got \(profileBatch)") }
        if worker {
            guard try sources().count == 1, try parsedBatchSizes().count == 1, try parsedInputSizes()?.count ?? 1 == 1 else {
                throw ValidationError("--worker measures one net at one batch and input size")
            }
        }
    }

    /// A fresh net's description: uniform widths at `ratio`, rounded to multiples of `multiple`.
    func freshDescription(_ m: Architecture, ratio: Double, multiple: Int?) throws -> NetDescription {
        var d = try ScaledNet.make(m, dataset, ratio: ratio, descent: nil, iteration: nil, flag: "--ratios").description
        if let k = multiple {
            var template = d
            template.widths = m.originalWidths
            d.widths = try BudgetSolver.uniform(template: template, budget: .params(d.parameterCount), multiple: k).widths
        }
        return d
    }

    /// The net of `source`.
    func network(_ source: Source) throws -> Network {
        switch source {
        case let .checkpoint(path): return try NetCheckpoint.load(path).prunedNetwork()
        case let .fresh(m, ratio, multiple):
            return try makeNetwork(freshDescription(m, ratio: ratio, multiple: multiple), initialization: .random(RandomGenerator(seed: 0)))
        case let .onnx(path): throw ValidationError("\(path): the engine cannot run an ONNX file")
        }
    }

    func run() throws {
        if threads > 0 { Parallel.workers = threads }
        Conv2DTuning.winograd = winograd
        if worker { return try runWorker() }
        if let latencyTable { return try runLatencyTable(latencyTable) }
        // The folder before the measurements, so that a bad --out does not cost them.
        if let out {
            do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
                throw ValidationError("--out \(out): cannot make a folder there (\(error.localizedDescription))")
            }
        }
        TemporaryFiles.installSignalCleanup()
        TemporaryFiles.removeStale()
        let batches = try parsedBatchSizes(), sizes = try parsedInputSizes(), all = try sources()
        var timings: [InferenceTiming] = [], profiles: [InferenceProfile] = [], skipped: [String] = [], ortVersion: String?
        var paired: [PairedRatio] = [], verifications: [EngineVerification] = []
        let executable = Self.executableForChildren()
        let backends = all.map { s -> [String] in
            if case .onnx = s { return ["ort"] }
            return backend == .both ? ["swift", "ort"] : [backend.rawValue]
        }
        let total = zip(all, backends).reduce(0) { $0 + $1.1.count } * (sizes?.count ?? 1) * batches.count
        let started = monotonicSeconds()
        var done = 0
        func progress(_ t: InferenceTiming) {
            done += 1
            let elapsed = monotonicSeconds() - started, left = elapsed / Double(done) * Double(total - done)
            if !json {
                FileHandle.standardError.write(Data(String(format: "[%d/%d] %@ %@ %@ %dpx batch %d: median %.3f ms, %.1f MB  (%@ elapsed, ETA %@)\n",
                                                           done, total, t.model, t.backend, t.precision, t.input_size, t.batch, t.median_ms,
                                                           t.memory_mb, duration(elapsed), duration(left)).utf8))
            }
        }
        func skip(_ message: String, configurations: Int) {
            skipped.append(message)
            done += configurations
            FileHandle.standardError.write(Data("skipped: \(message)\n".utf8))
        }
        for (source, sourceBackends) in zip(all, backends) {
            for size in sizes.map({ $0.map(Optional.some) }) ?? [nil] {
                if case let .onnx(path) = source {
                    let info = try ONNXModelInfo(path)
                    if let size, info.inputShape.count == 3, let h = info.inputShape[1], h != size {
                        skip("\(path) has a fixed \(h)x\(h) input; it cannot take \(size)x\(size)", configurations: batches.count)
                        continue
                    }
                    for b in batches {
                        let (t, version) = try ORTInference.measure(path, name: path, batch: b, warmup: warmup, runs: runs, trials: trials,
                                                                    threads: threads, budget: budgetMs)
                        ortVersion = version
                        timings.append(t)
                        progress(t)
                    }
                    if profile {
                        profiles.append(try ORTInference.profile(path, name: path, batch: profileBatch, warmup: warmup, runs: runs, threads: threads))
                    }
                    continue
                }
                let net = try network(source)
                let inputSize = size ?? net.netDescription.imageSize
                do {
                    try ONNXExport.checkInputSize(net.inferenceGraph, net: net.netDescription, size: inputSize)
                } catch {
                    skip("\(source.name): \(error)", configurations: batches.count * sourceBackends.count)
                    continue
                }
                // The net exported once for ONNX Runtime, for its timings, its profile and the
                // check of the engine's outputs.
                let exported = sourceBackends.contains("ort") || verify ? TemporaryFiles.makePath("bench", suffix: ".onnx") : nil
                defer { if let exported { TemporaryFiles.remove(exported) } }
                if let exported { try ONNXExport.write(net, to: exported, opset: 13, inputSize: inputSize) }
                let model = sourceBackends.contains("ort") ? exported : nil
                if verify, let exported {
                    let v = try EngineVerification.run(source.name, net: net, onnx: exported, inputSize: inputSize, batchSizes: batches)
                    verifications.append(v)
                    if !json { FileHandle.standardError.write(Data("\(v.summary)\n".utf8)) }
                }
                func ortTiming(_ model: String, batch: Int, trials: Int) throws -> InferenceTiming {
                    let (t, version) = try ORTInference.measure(model, name: source.name, batch: batch, warmup: warmup, runs: runs,
                                                                trials: trials, threads: threads, budget: budgetMs)
                    ortVersion = version
                    return t
                }
                if alternate, sourceBackends.contains("swift"), let model {
                    for b in batches {
                        var engine: [InferenceTiming] = [], ort: [InferenceTiming] = []
                        for k in 0..<trials {
                            for onEngine in k % 2 == 0 ? [true, false] : [false, true] {
                                if onEngine {
                                    engine.append(try engineTiming(source, size: inputSize, batch: b, trials: 1, executable: executable))
                                } else {
                                    ort.append(try ortTiming(model, batch: b, trials: 1))
                                }
                            }
                        }
                        let e = InferenceTiming.merging(engine), o = InferenceTiming.merging(ort)
                        timings += [e, o]
                        paired.append(PairedRatio(engine: engine, ort: ort))
                        progress(e)
                        progress(o)
                    }
                } else {
                    if sourceBackends.contains("swift") {
                        for b in batches {
                            let t = try engineTiming(source, size: inputSize, batch: b, trials: trials, executable: executable)
                            timings.append(t)
                            progress(t)
                        }
                    }
                    if let model {
                        for b in batches {
                            let t = try ortTiming(model, batch: b, trials: trials)
                            timings.append(t)
                            progress(t)
                        }
                    }
                }
                if profile {
                    if sourceBackends.contains("swift") {
                        profiles.append(try EngineInference.profile(source.name, net: net, inputSize: inputSize, batch: profileBatch,
                                                                    warmup: warmup, runs: runs))
                    }
                    if let model {
                        profiles.append(try ORTInference.profile(model, name: source.name, batch: profileBatch, warmup: warmup, runs: runs,
                                                                 threads: threads))
                    }
                }
            }
        }
        guard !timings.isEmpty else { throw ValidationError("nothing could be measured: \(skipped.joined(separator: "; "))") }
        let report = Report(machine: .current(onnxruntime: ortVersion), budget_ms: budgetMs, timings: timings, paired: paired,
                            profiles: profiles, skipped: skipped, verifications: verify ? verifications : nil)
        if let out { try write(report, to: out) }
        // After the results are written and printed: a net whose engine outputs disagree with
        // ONNX Runtime's fails the command.
        let failed = verifications.filter { !$0.passed }
        defer {
            if !failed.isEmpty {
                FileHandle.standardError.write(Data(("error: the engine's outputs differ from ONNX Runtime's on "
                    + failed.map { "\($0.model) at \($0.input_size)px" }.joined(separator: ", ") + "\n").utf8))
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            if !failed.isEmpty { throw ExitCode(1) }
            return
        }
        print(InferenceReport.table(timings), terminator: "")
        let ratios = InferenceReport.ratioTable(timings, paired: paired)
        if !ratios.isEmpty { print("\n" + ratios, terminator: "") }
        for p in profiles { print("\n" + InferenceReport.profileTable(p), terminator: "") }
        if verify {
            print("")
            for v in verifications { print(v.summary) }
        }
        if let out { print("\nwrote \(out)/bench-infer.json, bench-infer.csv, latency-vs-batch.svg, memory-vs-batch.svg" + (profiles.isEmpty ? "" : ", profile.csv, profile-*.svg")) }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// One engine measurement in this process, printed as JSON (the parent's child process).
    func runWorker() throws {
        let source = try sources()[0], batch = try parsedBatchSizes()[0], size = try parsedInputSizes()?.first
        let t = try EngineInference.measure(source.name, build: { try network(source) }, inputSize: size, batch: batch, warmup: warmup,
                                            runs: runs, trials: trials, budget: budgetMs, inChild: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(t), as: UTF8.self))
    }

    /// `trials` trials of the engine on `source`: in a child process (`executable`), or here when
    /// there is no executable to run (the in-process command tests).
    func engineTiming(_ source: Source, size: Int, batch: Int, trials: Int, executable: String?) throws -> InferenceTiming {
        if let executable {
            return try EngineInference.inChild(executable, workerArguments(source, size: size, batch: batch, trials: trials))
        }
        return try EngineInference.measure(source.name, build: { try network(source) }, inputSize: size, batch: batch,
                                           warmup: warmup, runs: runs, trials: trials, budget: budgetMs, inChild: false)
    }

    func workerArguments(_ source: Source, size: Int, batch: Int, trials: Int) -> [String] {
        var a = ["bench", "infer", "--worker", "--backend", "swift", "--batch-sizes", "\(batch)", "--input-sizes", "\(size)",
                 "--warmup", "\(warmup)", "--runs", "\(runs)", "--trials", "\(trials)", "--threads", "\(threads)", "--budget-ms", "\(budgetMs)",
                 "--winograd", winograd.defaultValueDescription]
        switch source {
        case let .checkpoint(p): a += ["--checkpoint", p]
        case let .fresh(m, r, k): a += ["--model", m.rawValue, "--ratios", "\(r)", "--dataset", dataset.rawValue] + (k.map { ["--channel-multiple", "\($0)"] } ?? [])
        case .onnx: break
        }
        return a
    }

    /// This tool's executable, to run the engine's measurements (and a sweep's steps) in child
    /// processes, under whatever name it was installed; when this process is not it (the
    /// in-process command tests), a built `neuralscale` up to three folders above; else nil.
    static func executableForChildren() -> String? {
        var path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        // Replaced on disk while running (a rebuild): the link reads "<path> (deleted)", and the
        // file now at <path> is the new build.
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        let me = URL(fileURLWithPath: path)
        if NeuralScale.isProcessEntry || me.lastPathComponent == "neuralscale" { return me.path }
        var dir = me.deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("neuralscale").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    struct Report: Encodable {
        let machine: MachineInfo
        let budget_ms: Double
        let timings: [InferenceTiming]
        /// The engine/ONNX Runtime ratios of trials run in pairs (`--alternate`).
        let paired: [PairedRatio]
        let profiles: [InferenceProfile]
        let skipped: [String]
        /// With --verify: the engine's outputs against ONNX Runtime's, per net and input size.
        let verifications: [EngineVerification]?
    }

    /// bench-infer.json last: it marks the step done (a sweep skips its bench step on it), so a
    /// kill before it leaves the step to run again rather than done without its charts. What
    /// killed runs left in the folder goes first.
    func write(_ report: Report, to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        RunFolder.removeStaleTemporaries(in: folder, exclusive: false)
        func path(_ name: String) -> String { URL(fileURLWithPath: folder).appendingPathComponent(name).path }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try AtomicFile.write(Data(InferenceReport.csv(report.timings).utf8), to: path("bench-infer.csv"))
        try AtomicFile.write(Data(InferenceReport.latencyChart(report.timings, budget: budgetMs).utf8), to: path("latency-vs-batch.svg"))
        try AtomicFile.write(Data(InferenceReport.memoryChart(report.timings).utf8), to: path("memory-vs-batch.svg"))
        if !report.profiles.isEmpty {
            try AtomicFile.write(Data(InferenceReport.profileCSV(report.profiles).utf8), to: path("profile.csv"))
            for (k, p) in report.profiles.enumerated() {
                try AtomicFile.write(Data(InferenceReport.profileChart(p).utf8), to: path("profile-\(k + 1)-\(p.backend).svg"))
            }
        }
        try AtomicFile.write(try encoder.encode(report), to: path("bench-infer.json"))
    }
}

/// The machine a benchmark ran on, for its JSON.
struct MachineInfo: Encodable {
    let cpu: String
    let cores: Int
    let memory_gb: Double
    let threads: Int
    let openblas: String
    let onnxruntime: String?
    let date: String

    static func current(onnxruntime: String?) -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":", maxSplits: 1).last
        return MachineInfo(cpu: model.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown",
                           cores: ProcessInfo.processInfo.activeProcessorCount,
                           memory_gb: Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824, threads: Parallel.workers,
                           openblas: BLAS.configuration, onnxruntime: onnxruntime, date: ISO8601DateFormatter().string(from: Date()))
    }
}

private func duration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
}
