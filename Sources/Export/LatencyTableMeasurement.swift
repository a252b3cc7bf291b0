import Autodiff
import Checkpoint
import Foundation
import Nets
import PythonBridge

/// Builds a `LatencyTable` on this machine with ONNX Runtime (`bench infer --latency-table`):
/// every grid point of every kind of layer timed alone (scripts/layer_latency.py), the constant
/// from one reference net timed end to end, and the table's predictions checked against other
/// nets timed end to end.
public enum LatencyTableMeasurement {
    public struct Settings: Sendable {
        public var multiple: Int
        public var points: Int
        public var maxRatio: Double
        public var threads: Int
        public var warmup: Int
        public var runs: Int
        public var trials: Int

        public init(multiple: Int, points: Int, maxRatio: Double, threads: Int, warmup: Int, runs: Int, trials: Int) {
            self.multiple = multiple
            self.points = points
            self.maxRatio = maxRatio
            self.threads = threads
            self.warmup = warmup
            self.runs = runs
            self.trials = trials
        }
    }

    /// A table's channel step when none is given: the channel block of ONNX Runtime's NCHWc
    /// convolutions on this CPU, so that every width of the grid and of the nets it sizes runs on
    /// them (a layer of another width falls back to plain NCHW convolutions and reorders its
    /// neighbours' outputs: VGG-11's 200-, 216- and 312-channel layers did on this AVX-512 machine
    /// with a step of 8, and nets with such widths were mispredicted by up to 29%).
    public static var defaultStep: Int {
        nchwcBlock(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
    }

    /// MLAS's NCHWc block for the CPU `/proc/cpuinfo` describes: 16 floats with AVX-512F, else 8
    /// (AVX and AVX2 on x86; other CPUs have no NCHWc kernels, and 8 keeps the widths SIMD-friendly).
    public static func nchwcBlock(cpuinfo: String) -> Int {
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("flags") {
            guard let list = line.split(separator: ":", maxSplits: 1).last else { continue }
            return list.split(separator: " ").contains("avx512f") ? 16 : 8
        }
        return 8
    }

    /// Times every layer of the grid for `template`'s net. `progress` gets (layers done, layers
    /// in all) after each kind of layer, and `between` runs then too (a round of the nets' timings).
    public static func measureLayers(_ template: NetDescription, _ s: Settings, between: () throws -> Void = {},
                                     progress: (Int, Int) -> Void) throws -> (entries: [LatencyTable.Entry], version: String) {
        var entries = LatencyTable.grid(for: template, maxRatio: s.maxRatio, multiple: s.multiple, points: s.points)
        let total = entries.reduce(0) { $0 + $1.inChannels.count * $1.outChannels.count }
        var done = 0, version = "?"
        let script = try Python.script("layer_latency.py")
        for i in entries.indices {
            let e = entries[i]
            var layers: [[String: Any]] = []
            for cin in e.inChannels {
                for cout in e.outChannels {
                    layers.append(["in": cin, "out": e.depthwise ? cin : cout, "size": e.inputSize, "kernel": e.kernel, "stride": e.stride,
                                   "groups": e.depthwise ? cin : 1, "linear": e.linear])
                }
            }
            let path = TemporaryFiles.makePath("layers", suffix: ".json")
            defer { TemporaryFiles.remove(path) }
            try JSONSerialization.data(withJSONObject: layers).write(to: URL(fileURLWithPath: path))
            let (status, out, err) = try Python.run([script, path, "--threads", String(ORTInference.intraOpThreads(s.threads)), "--warmup", String(s.warmup),
                                                     "--runs", String(s.runs), "--trials", String(s.trials)])
            struct Report: Decodable { let onnxruntime_version: String; let overhead_ms: Double; let ms: [Double] }
            guard status == 0, let r = try? JSONDecoder().decode(Report.self, from: Data(out.utf8)), r.ms.count == layers.count else {
                throw ExportError("\(script) exited with status \(status): \(err.isEmpty ? out : err)")
            }
            version = r.onnxruntime_version
            let columns = e.outChannels.count
            // Less the cost of a run itself, which the net pays once (in the constant).
            let ms = r.ms.map { max(0, $0 - r.overhead_ms) }
            entries[i].ms = e.inChannels.indices.map { a in Array(ms[(a * columns)..<((a + 1) * columns)]) }
            done += layers.count
            progress(done, total)
            try between()
        }
        return (entries, version)
    }

    /// `d`'s net (random weights) exported to a temporary ONNX file, for `netRound` and
    /// `endToEndMs`; the caller removes it.
    public static func exportNet(_ d: NetDescription) throws -> String {
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 0)))
        let path = TemporaryFiles.makePath("latency-net", suffix: ".onnx")
        try ONNXExport.write(net, to: path, opset: 13)
        return path
    }

    /// One trial of every net in `paths` on ONNX Runtime at batch 1 (scripts/layer_latency.py
    /// --models, one process): each net's median over `max(runs, 40)` runs after
    /// `max(warmup, 10)`, in order.
    public static func netRound(_ paths: [String], _ s: Settings) throws -> [Double] {
        guard !paths.isEmpty else { return [] }
        let script = try Python.script("layer_latency.py")
        let layers = TemporaryFiles.makePath("no-layers", suffix: ".json")
        defer { TemporaryFiles.remove(layers) }
        try Data("[]".utf8).write(to: URL(fileURLWithPath: layers))
        let (status, out, err) = try Python.run([script, layers, "--threads", String(ORTInference.intraOpThreads(s.threads)), "--trials", "1", "--runs", "1",
                                                 "--model-warmup", String(max(s.warmup, 10)), "--model-runs", String(max(s.runs, 40)),
                                                 "--model-trials", "1", "--models"] + paths)
        struct Report: Decodable { let model_ms: [[Double]] }
        guard status == 0, let r = try? JSONDecoder().decode(Report.self, from: Data(out.utf8)), r.model_ms.count == paths.count,
              r.model_ms.allSatisfy({ $0.count == 1 }) else {
            throw ExportError("\(script) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        return r.model_ms.map { $0[0] }
    }

    /// The latency of `d`'s net (random weights) on ONNX Runtime at batch 1: the lowest of its
    /// trials' medians, as layers are timed (the least disturbed trial).
    public static func endToEndMs(_ d: NetDescription, _ s: Settings, name: String) throws -> Double {
        let path = try exportNet(d)
        defer { TemporaryFiles.remove(path) }
        return try ORTInference.measure(path, name: name, batch: 1, warmup: max(s.warmup, 10), runs: max(s.runs, 40), trials: s.trials,
                                        threads: s.threads, budget: 16.67).timing.trials.map(\.median_ms).min()!
    }

    /// The nets that calibrate a table's constant and memory term: the uniform nets at 0.25, 0.4,
    /// 0.55, 0.7, 0.85 and 1 times `maxRatio`, every width rounded to a multiple of `multiple`
    /// (the widths the table is for).
    public static func calibrationNets(_ template: NetDescription, maxRatio: Double, multiple: Int) -> [(String, NetDescription)] {
        [0.25, 0.4, 0.55, 0.7, 0.85, 1].map { f in
            var d = template
            d.widths = template.architecture.uniformWidths(ratio: f * maxRatio).map { roundedWidth($0, multiple) }
            return (String(format: "uniform x%.4g", f * maxRatio), d)
        }
    }

    /// `width` rounded to the nearest multiple of `multiple`, at least `multiple`.
    static func roundedWidth(_ width: Int, _ multiple: Int) -> Int {
        max(multiple, Int((Double(width) / Double(multiple)).rounded()) * multiple)
    }

    /// `count` nets to check a table with: every width the uniform one at `maxRatio` times a
    /// factor drawn from 0.15...1 (seeded), rounded to a multiple of `multiple` (the widths a
    /// table of that step is for: ONNX Runtime runs other channel counts on slower paths).
    public static func randomNets(_ template: NetDescription, maxRatio: Double, multiple: Int, count: Int,
                                  seed: UInt64 = 1) -> [(String, NetDescription)] {
        var rng = RandomGenerator(seed: seed)
        return (0..<count).map { k in
            var d = template
            d.widths = template.architecture.uniformWidths(ratio: maxRatio).map { w in
                roundedWidth(Int((Double(w) * (0.15 + 0.85 * Double(rng.uniform()))).rounded()), multiple)
            }
            return ("random \(k + 1)", d)
        }
    }

    /// What explains the measured latencies beyond their nets' layer sums:
    /// `residual = c0 + c1 * max(0, P - knee) / 1e6`. Layers timed alone keep their weights in
    /// cache; a whole net does too while its weights fit, and beyond that streams the excess
    /// from memory on every run. Fitted by least squares on relative errors (every net's error
    /// divided by its latency, as the checks judge it), the knee chosen among the nets' P and the
    /// midpoints between them (and 0), with c1 >= 0.
    public static func calibrate(params: [Int], layersMs: [Double], measuredMs: [Double]) -> (constantMs: Double, perMParamMs: Double, kneeParams: Int) {
        let sorted = params.sorted()
        var knees = [0] + sorted
        for (a, b) in zip(sorted, sorted.dropFirst()) { knees.append(Int((Double(a) * Double(b)).squareRoot())) }
        let weights = measuredMs.map { 1 / ($0 * $0) }
        let residuals = zip(measuredMs, layersMs).map { $0 - $1 }
        var best: (sse: Double, c0: Double, c1: Double, knee: Int)?
        for knee in knees {
            let x = params.map { Double(max(0, $0 - knee)) / 1e6 }
            // Weighted least squares of residual = c0 + c1 * x.
            let sw = weights.reduce(0, +)
            let mx = zip(weights, x).reduce(0) { $0 + $1.0 * $1.1 } / sw
            let my = zip(weights, residuals).reduce(0) { $0 + $1.0 * $1.1 } / sw
            var sxx = 0.0, sxy = 0.0
            for i in x.indices {
                sxx += weights[i] * (x[i] - mx) * (x[i] - mx)
                sxy += weights[i] * (x[i] - mx) * (residuals[i] - my)
            }
            let c1 = sxx > 0 ? max(0, sxy / sxx) : 0, c0 = my - c1 * mx
            var sse = 0.0
            for i in x.indices { sse += weights[i] * pow(residuals[i] - c0 - c1 * x[i], 2) }
            if best == nil || sse < best!.sse - 1e-15 { best = (sse, c0, c1, knee) }
        }
        return (best!.c0, best!.c1, best!.c1 > 0 ? best!.knee : 0)
    }
}
