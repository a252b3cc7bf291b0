import Autodiff
import Checkpoint
import Datasets
import Foundation
import Nets
import ONNX
import PythonBridge
import SwiftProtobuf

/// One inference measurement the way the studies measured devices: one model on one backend at
/// one input size and batch size. A random input, `warmup` untimed runs, then `runs` timed runs,
/// repeated in `trials.count` fresh sessions; memory is the resident-set increase of preparing
/// the model and running it once, in a process of its own (`memory_in_child`).
public struct InferenceTiming: Codable, Sendable {
    public struct Trial: Codable, Sendable {
        public let mean_ms: Double, median_ms: Double, p90_ms: Double

        init(mean_ms: Double, median_ms: Double, p90_ms: Double) {
            self.mean_ms = mean_ms
            self.median_ms = median_ms
            self.p90_ms = p90_ms
        }

        /// The mean, median and p90 (lower-rank quantiles, as `bench_ort.py` takes them) of `ms`.
        init(_ ms: [Double]) {
            mean_ms = ms.reduce(0, +) / Double(max(ms.count, 1))
            let s = ms.sorted()
            median_ms = s.isEmpty ? .nan : s[Int(0.5 * Double(s.count - 1))]
            p90_ms = s.isEmpty ? .nan : s[Int(0.9 * Double(s.count - 1))]
        }
    }
    public var model: String
    /// "ort" (ONNX Runtime, CPU provider) or "swift" (this project's engine).
    public var backend: String
    /// "fp32", or "int8" for a QDQ model.
    public var precision: String
    public var input_size: Int
    public var batch: Int
    public var threads: Int
    /// The net's parameters and multiply-accumulates per image (counted as `stats` counts them,
    /// before BN folding), when known: a checkpoint, a fresh net, or an ONNX model this tool wrote.
    public var params: Int?
    public var macs: Int?
    public var memory_mb: Double
    public var memory_mb_per_mparam: Double?
    public var memory_in_child: Bool
    public var warmup: Int, runs: Int
    public var trials: [Trial]
    public var mean_ms: Double, median_ms: Double, p90_ms: Double, images_per_s: Double
    /// The real-time budget (ms per batch) and the share of it the mean latency takes.
    public var budget_ms: Double, budget_share: Double

    /// The figures of one measurement; `trials` and the mean, median and p90 over all runs.
    init(model: String, backend: String, precision: String, inputSize: Int, batch: Int, threads: Int, memory: Double,
         inChild: Bool, warmup: Int, runs: Int, trials: [Trial], overall: Trial, budget: Double) {
        self.model = model
        self.backend = backend
        self.precision = precision
        input_size = inputSize
        self.batch = batch
        self.threads = threads
        memory_mb = memory
        memory_in_child = inChild
        self.warmup = warmup
        self.runs = runs
        self.trials = trials
        mean_ms = overall.mean_ms
        median_ms = overall.median_ms
        p90_ms = overall.p90_ms
        images_per_s = 1e3 * Double(batch) / overall.mean_ms
        budget_ms = budget
        budget_share = overall.mean_ms / budget
    }

    /// What no measurement gives, read back from an edited or damaged file ("median_ms is -1.0;
    /// ..."), or nil: the figures the device report and `advise --fit` build lines and charts on.
    public var implausibleFigure: String? {
        for (field, value) in [("median_ms", median_ms), ("memory_mb", memory_mb)] where !(value.isFinite && value > 0 && value < 1e9) {
            return "\(field) is \(value); a measured time or size is > 0 and below 1e9"
        }
        return nil
    }

    /// Sets what the net says about itself (params, MACs, MB per million parameters).
    mutating func describe(params: Int?, macs: Int?) {
        self.params = params
        self.macs = macs
        memory_mb_per_mparam = params.map { memory_mb / (Double($0) / 1e6) }
    }
}

extension InferenceTiming {
    /// Measurements of one trial each (one process each), as one measurement of all their
    /// trials: the mean of the trials' means (each has the same runs), the median of their
    /// medians, the median of their p90s, and the median of their memory figures.
    public static func merging(_ parts: [InferenceTiming]) -> InferenceTiming {
        precondition(!parts.isEmpty, "nothing to merge")
        let trials = parts.flatMap(\.trials)
        func median(_ v: [Double]) -> Double { InferenceTiming.Trial(v).median_ms }
        var t = parts[0]
        t.trials = trials
        t.mean_ms = trials.map(\.mean_ms).reduce(0, +) / Double(trials.count)
        t.median_ms = median(trials.map(\.median_ms))
        t.p90_ms = median(trials.map(\.p90_ms))
        t.images_per_s = 1e3 * Double(t.batch) / t.mean_ms
        t.budget_share = t.mean_ms / t.budget_ms
        t.memory_mb = median(parts.map(\.memory_mb))
        t.describe(params: t.params, macs: t.macs)
        return t
    }
}

/// The engine's latency over ONNX Runtime's for one net, input size and batch size, from trials
/// run in pairs (the engine's trial k and ONNX Runtime's one right after the other, the order
/// swapped every pair), so that both sides of a ratio saw the same state of a noisy machine.
public struct PairedRatio: Codable, Sendable, Equatable {
    public var model: String
    public var input_size: Int
    public var batch: Int
    /// Per pair, in order: the engine trial's median latency over ONNX Runtime's.
    public var ratios: [Double]
    /// The median of `ratios` (the mean of the middle two for an even count).
    public var median_ratio: Double

    public init(model: String, inputSize: Int, batch: Int, ratios: [Double]) {
        self.model = model
        input_size = inputSize
        self.batch = batch
        self.ratios = ratios
        let s = ratios.sorted(), n = s.count
        median_ratio = n == 0 ? .nan : n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// The pairs of `engine` (trials of the engine) and `ort` (ONNX Runtime's), trial by trial.
    public init(engine: [InferenceTiming], ort: [InferenceTiming]) {
        precondition(engine.count == ort.count && !engine.isEmpty, "one ONNX Runtime trial per engine trial")
        self.init(model: engine[0].model, inputSize: engine[0].input_size, batch: engine[0].batch,
                  ratios: zip(engine, ort).map { $0.median_ms / $1.median_ms })
    }
}

/// Per-layer inference time: one layer (a module of the net: its conv, BN, activation, ...
/// share its name) with the kernels that ran for it, its multiply-accumulates for the batch and
/// the GFLOP/s it achieved (2 * MACs / time).
public struct LayerTime: Codable, Sendable {
    public var layer: String
    public var ops: [String]
    /// Mean ms per run.
    public var ms: Double
    /// Share of the summed layer times.
    public var share: Double
    public var macs: Int
    public var gflops: Double?
}

/// A per-layer profile of one model on one backend, at one input and batch size, sorted by time.
public struct InferenceProfile: Codable, Sendable {
    public var model: String
    public var backend: String
    public var input_size: Int
    public var batch: Int
    public var runs: Int
    /// Mean wall time of a whole run, and the sum of the layer times (ONNX Runtime's profiler
    /// does not time what runs between kernels).
    public var wall_ms: Double
    public var layers_ms: Double
    public var layers: [LayerTime]
}

/// The Swift engine's inference: the net's eval graph with BN folded into the convs (what the
/// ONNX export holds), run with the engine's own ops (`InferenceEngine`: frozen convolutions,
/// activations fused into them).
public enum EngineInference {
    /// Times `build()`'s net at batch `batch` on `inputSize` x `inputSize` inputs (nil: the
    /// net's own). Memory: the resident-set increase from before `build` (which loads or makes
    /// the net) to after the first run.
    public static func measure(_ name: String, build: () throws -> Network, inputSize: Int?, batch: Int, warmup: Int, runs: Int,
                               trials: Int, budget: Double, inChild: Bool) throws -> InferenceTiming {
        let before = ProcessMemory.residentMB
        let net = try build()
        let d = net.netDescription, size = inputSize ?? d.imageSize
        let traced = try tracedGraph(net, size: size), graph = InferenceEngine(traced.foldingBatchNorms())
        var rng = RandomGenerator(seed: 0)
        let x = Tensor.randn([batch, d.inChannels, size, size], using: &rng)
        _ = graph.run(x)
        let memory = ProcessMemory.residentMB - before
        var times: [[Double]] = []
        for _ in 0..<trials {
            for _ in 0..<warmup { _ = graph.run(x) }
            var t: [Double] = []
            for _ in 0..<runs {
                let t0 = monotonicSeconds()
                _ = graph.run(x)
                t.append(1e3 * (monotonicSeconds() - t0))
            }
            times.append(t)
        }
        var timing = InferenceTiming(model: name, backend: "swift", precision: "fp32", inputSize: size, batch: batch,
                                     threads: Parallel.workers, memory: memory, inChild: inChild, warmup: warmup, runs: runs,
                                     trials: times.map(InferenceTiming.Trial.init), overall: .init(times.flatMap { $0 }), budget: budget)
        timing.describe(params: net.parameterCount, macs: traced.macs)
        return timing
    }

    /// Per-layer times of `net`'s folded eval graph: every node timed on each of `runs` runs
    /// (after `warmup`), summed per layer (node name); a convolution's op names its algorithm.
    public static func profile(_ name: String, net: Network, inputSize: Int?, batch: Int, warmup: Int, runs: Int) throws -> InferenceProfile {
        let d = net.netDescription, size = inputSize ?? d.imageSize
        let engine = InferenceEngine(try tracedGraph(net, size: size).foldingBatchNorms()), graph = engine.graph
        var rng = RandomGenerator(seed: 0)
        let x = Tensor.randn([batch, d.inChannels, size, size], using: &rng)
        for _ in 0..<warmup { _ = engine.run(x) }
        var seconds = [Double](repeating: 0, count: graph.nodes.count)
        var wall = 0.0
        for _ in 0..<runs {
            let start = monotonicSeconds()
            var last = start
            // Ops run one after another, so a node's time is the time since the previous value.
            _ = engine.run(x) { v, _ in
                let now = monotonicSeconds()
                if v > 0 { seconds[v - 1] += now - last }
                last = now
            }
            wall += monotonicSeconds() - start
        }
        var order: [String] = [], ms: [String: Double] = [:], ops: [String: [String]] = [:], macs: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            if ms[node.name] == nil { order.append(node.name) }
            ms[node.name, default: 0] += 1e3 * seconds[i] / Double(runs)
            // A convolution with the algorithm the engine runs it with ("Conv (winograd F(4,3))").
            // A batch norm computed by the convolution before it says so ("BatchNormalization (in
            // layers.1.conv2's output pass)"): its own time is only the hand-over, its work the
            // convolution's.
            let inPass = engine.outputPassNormalization(node: i, batch: batch)
            let op = engine.convolutionAlgorithm(node: i, batch: batch).map { "\(node.op.name) (\($0))" }
                ?? inPass.map { "\(node.op.name) (in \(graph.nodes[$0].name)'s output pass)" } ?? node.op.name
            if !(ops[node.name] ?? []).contains(op) { ops[node.name, default: []].append(op) }
            macs[node.name, default: 0] += inPass == nil ? batch * graph.macs(of: i) : 0
        }
        return InferenceProfile(model: name, backend: "swift", input_size: size, batch: batch, runs: runs,
                                wall_ms: 1e3 * wall / Double(runs), layers_ms: ms.values.reduce(0, +),
                                layers: layerTimes(order.map { ($0, ops[$0]!, ms[$0]!, macs[$0]!) }))
    }

    /// The net's inference graph traced at `size` x `size` inputs, refused when the net cannot
    /// take that size.
    static func tracedGraph(_ net: Network, size: Int) throws -> InferenceGraph {
        let own = net.inferenceGraph
        if size == net.netDescription.imageSize { return own }
        try ONNXExport.checkInputSize(own, net: net.netDescription, size: size)
        return InferenceGraph(tracing: net, inputSize: size)
    }

    /// Runs the measurement in a child process (`executable arguments...`, which prints one
    /// `InferenceTiming` as JSON), so that every model and batch size has a heap of its own.
    public static func inChild(_ executable: String, _ arguments: [String]) throws -> InferenceTiming {
        let (status, out, err) = try ChildProcess.run(executable, arguments)
        guard status == 0 else {
            throw ExportError(err.split(separator: "\n").first(where: { $0.hasPrefix("Error: ") }).map { String($0.dropFirst(7)) }
                              ?? "the engine's benchmark process (\(executable)) exited with status \(status): \(err)")
        }
        guard let timing = try? JSONDecoder().decode(InferenceTiming.self, from: Data(out.utf8)) else {
            throw ExportError("the engine's benchmark process (\(executable)) printed no measurement: \(out.prefix(200))")
        }
        return timing
    }
}

/// ONNX Runtime's inference, in a child process per model and batch size (`scripts/bench_ort.py`).
public enum ORTInference {
    private struct Report: Decodable {
        struct Result: Decodable { let trials: [InferenceTiming.Trial]; let mean_ms: Double, median_ms: Double, p90_ms: Double }
        let onnxruntime_version: String, threads: Int, input_shape: [Int], memory_mb: Double, results: [Result]
    }

    /// ONNX Runtime's intra-op threads for a `--threads` value: 0 means the engine's workers (the
    /// cores, or `NEURALSCALE_THREADS`, or a sweep job's share), so that both backends, and a
    /// latency measured for a prune or a table, run on the threads every command is given.
    public static func intraOpThreads(_ requested: Int) -> Int { requested > 0 ? requested : Parallel.workers }

    /// Times the ONNX model at `path` at batch `batch`; `name` is the model named in the figures.
    /// - Returns: the timing and ONNX Runtime's version.
    public static func measure(_ path: String, name: String, batch: Int, warmup: Int, runs: Int, trials: Int, threads: Int,
                               budget: Double) throws -> (timing: InferenceTiming, version: String) {
        let script = try Python.script("bench_ort.py")
        let (status, out, err) = try Python.run([script, path, "--batch-sizes", String(batch), "--warmup", String(warmup),
                                                 "--runs", String(runs), "--trials", String(trials), "--threads", String(intraOpThreads(threads)),
                                                 "--json"])
        guard status == 0, let r = try? JSONDecoder().decode(Report.self, from: Data(out.utf8)), let result = r.results.first else {
            throw ExportError("ONNX Runtime's benchmark (\(script)) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        let info = try ONNXModelInfo(path)
        var timing = InferenceTiming(model: name, backend: "ort", precision: info.quantized ? "int8" : "fp32",
                                     inputSize: r.input_shape.last ?? 0, batch: batch, threads: r.threads, memory: r.memory_mb,
                                     inChild: true, warmup: warmup, runs: runs, trials: result.trials,
                                     overall: .init(mean_ms: result.mean_ms, median_ms: result.median_ms, p90_ms: result.p90_ms),
                                     budget: budget)
        timing.describe(params: info.params, macs: info.macs)
        return (timing, r.onnxruntime_version)
    }

    /// Per-layer times from ONNX Runtime's profiler over `runs` runs at batch `batch`.
    public static func profile(_ path: String, name: String, batch: Int, warmup: Int, runs: Int, threads: Int) throws -> InferenceProfile {
        struct Profile: Decodable {
            struct Layer: Decodable { let layer: String; let ops: [String]; let ms: Double; let macs: Int }
            let input_shape: [Int], wall_ms: Double, kernel_ms: Double, layers: [Layer]
        }
        let script = try Python.script("bench_ort.py")
        let (status, out, err) = try Python.run([script, path, "--profile", "--batch-sizes", String(batch), "--warmup", String(warmup),
                                                 "--runs", String(runs), "--threads", String(intraOpThreads(threads)), "--json"])
        guard status == 0, let p = try? JSONDecoder().decode(Profile.self, from: Data(out.utf8)) else {
            throw ExportError("ONNX Runtime's profile (\(script)) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        return InferenceProfile(model: name, backend: "ort", input_size: p.input_shape.last ?? 0, batch: batch, runs: runs,
                                wall_ms: p.wall_ms, layers_ms: p.kernel_ms, layers: layerTimes(p.layers.map { ($0.layer, $0.ops, $0.ms, $0.macs) }))
    }
}

/// What this tool needs to know of an ONNX model without running it.
public struct ONNXModelInfo {
    /// The input's [C, H, W], nil where a dimension is symbolic.
    public var inputShape: [Int?]
    /// Whether it has QuantizeLinear nodes (an int8 QDQ model).
    public var quantized: Bool
    /// The net this tool exported it from (its `neuralscale.net` metadata), if any.
    public var net: NetDescription?
    public var params: Int? { net.flatMap { try? makeNetwork($0, initialization: .none).parameterCount } }
    /// Multiply-accumulates per image at the model's input size.
    public var macs: Int? {
        net.flatMap { d in
            (try? makeNetwork(d, initialization: .none)).flatMap { try? EngineInference.tracedGraph($0, size: (inputShape.last ?? nil) ?? d.imageSize).macs }
        }
    }

    /// - Throws: `ExportError` naming the file when it is missing or not an ONNX model.
    public init(_ path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw ExportError("\(path): \(unreadableReason(path))") }
        let model: Onnx_ModelProto
        do { model = try Onnx_ModelProto(serializedBytes: data) } catch { throw ExportError("\(path): not an ONNX model (\(error))") }
        guard model.hasGraph, let input = model.graph.input.first else { throw ExportError("\(path): not an ONNX model (no graph input)") }
        inputShape = input.type.tensorType.shape.dim.dropFirst().map { d -> Int? in
            if case let .dimValue(v)? = d.value { return Int(v) }
            return nil
        }
        quantized = model.graph.node.contains { $0.opType == "QuantizeLinear" }
        net = model.metadataProps.first { $0.key == "neuralscale.net" }
            .flatMap { try? JSONDecoder().decode(NetDescription.self, from: Data($0.value.utf8)) }
    }
}

/// Rows sorted by time with their shares and GFLOP/s.
private func layerTimes(_ rows: [(String, [String], Double, Int)]) -> [LayerTime] {
    let total = rows.reduce(0) { $0 + $1.2 }
    return rows.map { layer, ops, ms, macs in
        LayerTime(layer: layer, ops: ops, ms: ms, share: total > 0 ? ms / total : 0, macs: macs,
                  gflops: macs > 0 && ms > 0 ? 2 * Double(macs) / (ms * 1e6) : nil)
    }.sorted { ($0.ms, $1.layer) > ($1.ms, $0.layer) }
}
