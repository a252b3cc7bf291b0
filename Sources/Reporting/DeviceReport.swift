import Checkpoint
import Datasets
import Export
import Foundation
import Nets
import Training

/// `report`'s device section: the `bench infer` and `quantize` results of the runs, the way the
/// studies report devices. Per run and backend/precision: batch-1 latency, memory, MB per
/// million parameters, share of the real-time budget and int8 accuracy; per backend and
/// precision the line of latency and of memory against params with Pearson's r and its p-value
/// (TECS Tables 4 and 5); per ratio the relative speed uniform / NeuralScale.
public struct DeviceReport: Codable, Sendable {
    public struct Run: Codable, Sendable {
        public var result: String
        public var model: String, dataset: String
        public var scaling: String, ratio: Double, seed: UInt64, params: Int
        public var backend: String, precision: String
        public var latency_ms: Double, memory_mb: Double, mb_per_mparam: Double, budget_share: Double
        /// Test top-1 of the fp32 net, and of the int8 model for int8 rows.
        public var top1: Double?
    }
    public struct Fit: Codable, Sendable {
        public var backend: String, precision: String, measure: String
        public var line: LeastSquares?
    }
    public struct Speed: Codable, Sendable {
        public var model: String, dataset: String
        public var ratio: Double, backend: String, precision: String
        public var uniform_ms: Double, neuralscale_ms: Double, relative_speed: Double
    }
    /// Against the unscaled fp32 net (uniform x1.0) on one backend (TECS section 4.5): int8 of
    /// the unscaled net, and each scaling's fp32 net at every other ratio; means over seeds.
    public struct Comparison: Codable, Sendable {
        public var model: String, dataset: String
        public var backend: String, net: String, precision: String, ratio: Double
        public var top1: Double?, latency_ms: Double, speedup: Double, memory_mb: Double, memory_ratio: Double
    }
    public var budget_ms: Double
    public var runs: [Run]
    public var comparison: [Comparison] = []
    public var fits: [Fit]
    public var speeds: [Speed]
    public var notes: [String]

    /// - Parameters:
    ///   - results: the train runs (path and result) the bench files are matched to: a
    ///     timing of `<dir>/best.h5` (or `last.h5`) belongs to `<dir>/result.json`, an int8 model
    ///     to the checkpoint its `quantize.json` names.
    public static func make(results: [(path: String, result: TrainResult)], bench: [String], quantize: [String],
                            budget: Double) throws -> DeviceReport {
        func standard(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.path }
        let byPath = Dictionary(results.map { (standard($0.path), $0) }, uniquingKeysWith: { a, _ in a })
        var checkpointOf: [String: String] = [:], int8Top1: [String: Double] = [:]
        struct Quantized: Decodable {
            struct Verification: Decodable { let int8_top1: Double? }
            let onnx: String, checkpoint: String?, verification: Verification?
        }
        for file in quantize {
            guard let data = FileManager.default.contents(atPath: file) else { throw ReportError(path: file, message: unreadableReason(file)) }
            guard let q = try? JSONDecoder().decode(Quantized.self, from: data) else {
                throw ReportError(path: file, message: "not the JSON of `quantize --json`")
            }
            // The checkpoint it names; a sweep's layout (<entry>/quantize.json, <entry>/train/best.h5) otherwise.
            let checkpoint = q.checkpoint ?? URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("train/best.h5").path
            checkpointOf[standard(q.onnx)] = standard(checkpoint)
            if let t = q.verification?.int8_top1 {
                guard (0...1).contains(t) else {
                    throw ReportError(path: file, message: "verification.int8_top1 is \(t); an accuracy is a fraction in 0...1")
                }
                int8Top1[standard(q.onnx)] = t
            }
        }
        struct Bench: Decodable { let timings: [InferenceTiming] }
        var runs: [Run] = [], notes: [String] = []
        for file in bench {
            guard let data = FileManager.default.contents(atPath: file) else { throw ReportError(path: file, message: unreadableReason(file)) }
            guard let b = try? JSONDecoder().decode(Bench.self, from: data) else {
                throw ReportError(path: file, message: "not the JSON of `bench infer` (bench-infer.json)")
            }
            // Batch 1 where measured (the studies' setting), else the smallest batch.
            let smallest = b.timings.map(\.batch).min() ?? 1
            for t in b.timings where t.batch == smallest {
                // Figures a measurement cannot give (an edited or damaged file) would pass into
                // the fits, shares and charts.
                if let bad = t.implausibleFigure { throw ReportError(path: file, message: "\(t.model): \(bad)") }
                let model = standard(t.model), checkpoint = checkpointOf[model] ?? model
                let result = URL(fileURLWithPath: checkpoint).deletingLastPathComponent().appendingPathComponent("result.json").path
                guard let run = byPath[result] else {
                    notes.append("\(file): \(t.model) belongs to none of the result.json files given; left out")
                    continue
                }
                let params = run.result.params
                runs.append(Run(result: run.path, model: run.result.model.rawValue, dataset: run.result.dataset, scaling: run.result.scaling.rawValue, ratio: run.result.ratio, seed: run.result.seed,
                                params: params, backend: t.backend, precision: t.precision, latency_ms: t.median_ms, memory_mb: t.memory_mb,
                                mb_per_mparam: t.memory_mb / (Double(params) / 1e6), budget_share: t.median_ms / budget,
                                top1: t.precision == "int8" ? int8Top1[model] : run.result.testAccuracy))
            }
        }
        let kinds = Array(Set(runs.map { "\($0.backend)/\($0.precision)" })).sorted()
        var fits: [Fit] = [], speeds: [Speed] = []
        for kind in kinds {
            let mine = runs.filter { "\($0.backend)/\($0.precision)" == kind }
            let (backend, precision) = (mine[0].backend, mine[0].precision)
            let x = mine.map { Double($0.params) }
            fits.append(Fit(backend: backend, precision: precision, measure: "latency", line: LeastSquares(x: x, y: mine.map(\.latency_ms))))
            fits.append(Fit(backend: backend, precision: precision, measure: "memory", line: LeastSquares(x: x, y: mine.map(\.memory_mb))))
            for net in nets(mine) {
                let own = mine.filter { $0.model == net.model && $0.dataset == net.dataset }
                for ratio in Array(Set(own.map(\.ratio))).sorted() {
                    func meanLatency(_ s: String) -> Double? {
                        let v = own.filter { $0.ratio == ratio && $0.scaling == s }.map(\.latency_ms)
                        return v.isEmpty ? nil : v.reduce(0, +) / Double(v.count)
                    }
                    if let u = meanLatency("uniform"), let n = meanLatency("neuralscale") {
                        speeds.append(Speed(model: net.model, dataset: net.dataset, ratio: ratio, backend: backend, precision: precision,
                                            uniform_ms: u, neuralscale_ms: n, relative_speed: u / n))
                        // ONNX Runtime's blocked (NCHWc) kernels take channels in 8s or 16s; a
                        // NeuralScale net's widths are rarely such multiples, and its slower paths
                        // then dominate the comparison.
                        if backend == "ort", u < n,
                           let widths = own.lazy.filter({ $0.ratio == ratio && $0.scaling == "neuralscale" })
                               .compactMap({ byPath[standard($0.result)]?.result.widths }).first(where: { $0.contains { $0 % 8 != 0 } }) {
                            let note = "\(net.model) \(net.dataset) NeuralScale x\(ratio) has widths that are not multiples of 8 (\(widths)): "
                                + "ONNX Runtime runs such layers on slower paths, so its relative speed there says more about the widths "
                                + "than the scaling; train with --channel-multiple 8 (16 on AVX-512) to compare at block-friendly widths"
                            if !notes.contains(note) { notes.append(note) }
                        }
                    }
                }
            }
        }
        var comparison: [Comparison] = []
        func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
        for net in nets(runs) {
        for backend in Array(Set(runs.map(\.backend))).sorted() {
            let mine = runs.filter { $0.backend == backend && $0.model == net.model && $0.dataset == net.dataset }
            let base = mine.filter { $0.scaling == "uniform" && $0.ratio == 1 && $0.precision == "fp32" }
            guard !base.isEmpty else { continue }
            let baseLatency = mean(base.map(\.latency_ms)), baseMemory = mean(base.map(\.memory_mb))
            var groups: [(String, String, Double)] = [("uniform", "int8", 1)]
            for scaling in ["uniform", "neuralscale"] {
                for ratio in Array(Set(mine.filter { $0.scaling == scaling && $0.ratio != 1 }.map(\.ratio))).sorted() { groups.append((scaling, "fp32", ratio)) }
            }
            comparison.append(Comparison(model: net.model, dataset: net.dataset, backend: backend, net: "uniform", precision: "fp32", ratio: 1, top1: base.compactMap(\.top1).isEmpty ? nil : mean(base.compactMap(\.top1)),
                                         latency_ms: baseLatency, speedup: 1, memory_mb: baseMemory, memory_ratio: 1))
            for (scaling, precision, ratio) in groups {
                let g = mine.filter { $0.scaling == scaling && $0.precision == precision && $0.ratio == ratio }
                guard !g.isEmpty else { continue }
                let latency = mean(g.map(\.latency_ms)), memory = mean(g.map(\.memory_mb)), top1 = g.compactMap(\.top1)
                comparison.append(Comparison(model: net.model, dataset: net.dataset, backend: backend, net: scaling, precision: precision, ratio: ratio,
                                             top1: top1.isEmpty ? nil : mean(top1), latency_ms: latency, speedup: baseLatency / latency,
                                             memory_mb: memory, memory_ratio: baseMemory / memory))
            }
        }
        }
        var report = DeviceReport(budget_ms: budget, runs: runs, fits: fits, speeds: speeds, notes: notes)
        report.comparison = comparison
        return report
    }

    /// The (model, dataset) pairs of `runs`, in order of first appearance: the units a report
    /// keeps apart.
    static func nets(_ runs: [Run]) -> [(model: String, dataset: String)] {
        var seen = Set<String>(), out: [(model: String, dataset: String)] = []
        for r in runs where seen.insert("\(r.model)/\(r.dataset)").inserted { out.append((r.model, r.dataset)) }
        return out
    }

    /// Several models or datasets: rows and series are named by them.
    var manyNets: Bool { Self.nets(runs).count > 1 }

    func netName(_ model: String, _ dataset: String) -> String { manyNets ? "\(model) \(dataset) " : "" }

    public func markdown() -> String {
        var lines = ["## Devices", "",
                     String(format: "Batch-1 latency (median) and memory (resident-set increase) of `bench infer`; budget %.4g ms.", budget_ms), "",
                     "| model | dataset | scaling | ratio | seed | backend | precision | params | latency (ms) | budget | memory (MB) | MB / M params | top-1 (%) |",
                     "| --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in runs.sorted(by: { ($0.model + "/" + $0.dataset, $0.backend, $0.precision, $0.scaling, $0.ratio, $0.seed)
                                   < ($1.model + "/" + $1.dataset, $1.backend, $1.precision, $1.scaling, $1.ratio, $1.seed) }) {
            lines.append("| \(r.model) | \(r.dataset) | \(Self.scalingName(r.scaling)) | \(r.ratio) | \(r.seed) | \(r.backend) | \(r.precision) | \(r.params) "
                         + String(format: "| %.3f | %.1f%% | %.1f | %.1f | ", r.latency_ms, 100 * r.budget_share, r.memory_mb, r.mb_per_mparam)
                         + (r.top1.map { String(format: "%.2f", 100 * $0) } ?? "-") + " |")
        }
        lines += ["", "Lines against params over every net measured on the backend (TECS Tables 4 and 5): y = m * P + b, Pearson's r and its p-value.", "",
                  "| backend | precision | measure | m | b | r | p | points |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for f in fits {
            if let l = f.line {
                lines.append("| \(f.backend) | \(f.precision) | \(f.measure) | " + String(format: "%.4g | %.4g | %.3f | ", l.slope, l.intercept, l.r)
                             + (l.p.map { String(format: "%.3g", $0) } ?? "-") + " | \(l.n) |")
            } else {
                lines.append("| \(f.backend) | \(f.precision) | \(f.measure) | - | - | - | - | fewer than two sizes |")
            }
        }
        if !speeds.isEmpty {
            lines += ["", "Relative speed (uniform latency / NeuralScale latency at the same ratio; above 1: NeuralScale is faster).", "",
                      "| model | dataset | ratio | backend | precision | uniform (ms) | NeuralScale (ms) | relative speed |",
                      "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |"]
            for s in speeds {
                lines.append("| \(s.model) | \(s.dataset) | \(s.ratio) | \(s.backend) | \(s.precision) | "
                             + String(format: "%.3f | %.3f | %.2fx |", s.uniform_ms, s.neuralscale_ms, s.relative_speed))
            }
        }
        if !comparison.isEmpty {
            lines += ["", "Against the unscaled fp32 net (uniform x1.0; speedup = its latency / the net's, memory ratio = its memory / the net's).", "",
                      "| model | dataset | backend | net | ratio | precision | top-1 (%) | latency (ms) | speedup | memory (MB) | memory ratio |",
                      "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
            for c in comparison {
                lines.append("| \(c.model) | \(c.dataset) | \(c.backend) | \(Self.scalingName(c.net)) | \(c.ratio) | \(c.precision) | "
                             + (c.top1.map { String(format: "%.2f", 100 * $0) } ?? "-")
                             + String(format: " | %.3f | %.2fx | %.1f | %.2fx |", c.latency_ms, c.speedup, c.memory_mb, c.memory_ratio))
            }
        }
        if !notes.isEmpty { lines += ["", "Notes:", ""] + notes.map { "- \($0)" } }
        return lines.joined(separator: "\n") + "\n"
    }

    static func scalingName(_ s: String) -> String { s == "uniform" ? "uniform" : "NeuralScale" }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]

    /// The runs of one chart series: one (model, dataset, scaling, backend, precision), keyed by
    /// its legend name, in order of first appearance.
    func seriesGroups(_ keep: (Run) -> Bool = { _ in true }) -> [(name: String, runs: [Run])] {
        var names: [String] = [], members: [String: [Run]] = [:]
        for r in runs where keep(r) {
            let name = netName(r.model, r.dataset) + "\(Self.scalingName(r.scaling)) \(r.backend == "ort" ? "ORT" : "engine") \(r.precision)"
            if members[name] == nil { names.append(name) }
            members[name, default: []].append(r)
        }
        return names.map { ($0, members[$0]!) }
    }

    /// Mean and sample std over seeds of `value` at every ratio of `runs`, by increasing ratio.
    static func perRatio(_ runs: [Run], _ value: (Run) -> Double?) -> [(ratio: Double, runs: [Run], mean: Double, std: Double?)] {
        Dictionary(grouping: runs, by: \.ratio).sorted { $0.key < $1.key }.compactMap { ratio, g in
            ResultsReport.meanAndStd(g.compactMap(value)).map { (ratio, g, $0.mean, $0.std) }
        }
    }

    /// Latency (or memory) against params, one series per (model, scaling, backend, precision):
    /// the mean over seeds at every ratio with one std as error bars; the budget as a dashed
    /// line on the latency chart.
    public func chart(_ measure: String) -> String {
        let value = { (r: Run) in measure == "latency" ? r.latency_ms : r.memory_mb }
        var series = seriesGroups().enumerated().map { i, g in
            let points = Self.perRatio(g.runs, value)
            return SVGChart.Series(name: g.name, points: points.map { (Double($0.runs.map(\.params).reduce(0, +)) / Double($0.runs.count), $0.mean) },
                                   color: Self.palette[i % Self.palette.count], dashed: g.runs[0].scaling == "uniform", yErrors: points.map(\.std))
        }
        if measure == "latency", let lo = runs.map(\.params).min(), let hi = runs.map(\.params).max() {
            series.append(SVGChart.Series(name: String(format: "budget %.4g ms", budget_ms), points: [(Double(lo), budget_ms), (Double(hi), budget_ms)],
                                          color: "#999", dashed: true, markers: false))
        }
        return SVGChart.lines(title: measure == "latency" ? "Batch-1 latency against parameters (mean ± std over seeds)"
                                                          : "Memory against parameters (mean ± std over seeds)",
                              xLabel: "parameters", yLabel: measure == "latency" ? "latency (ms)" : "memory (MB)", series: series,
                              logX: true, xMargin: 0.03)
    }

    /// Test top-1 (mean ± std over seeds, fp32 and int8) against batch-1 latency (or memory),
    /// one series per (model, scaling, backend, precision), a point per ratio; the budget as a
    /// vertical dashed line on the latency chart.
    public func accuracyChart(against measure: String) -> String {
        let value = { (r: Run) in measure == "latency" ? r.latency_ms : r.memory_mb }
        var series: [SVGChart.Series] = []
        for (i, g) in seriesGroups({ $0.top1 != nil }).enumerated() {
            let points = Self.perRatio(g.runs) { $0.top1.map { 100 * $0 } }
            series.append(SVGChart.Series(name: g.name, points: points.map { p in (p.runs.map(value).reduce(0, +) / Double(p.runs.count), p.mean) },
                                          color: Self.palette[i % Self.palette.count], dashed: g.runs[0].scaling == "uniform",
                                          yErrors: points.map(\.std), pointLabels: points.map { "r\($0.ratio)" }))
        }
        let ys = series.flatMap { $0.points.map(\.y) }
        if measure == "latency", let lo = ys.min(), let hi = ys.max() {
            series.append(SVGChart.Series(name: String(format: "budget %.4g ms", budget_ms), points: [(budget_ms, lo), (budget_ms, hi)],
                                          color: "#999", dashed: true, markers: false))
        }
        return SVGChart.lines(title: "Test top-1 against batch-1 \(measure == "latency" ? "latency" : "memory") (mean ± std over seeds)",
                              xLabel: measure == "latency" ? "latency (ms, log scale)" : "memory (MB, log scale)", yLabel: "test top-1 (%)",
                              series: series, logX: true, yFromZero: false, xMargin: 0.05)
    }

    /// The chart files `report` writes for the device section, with their contents.
    public func charts() -> [(name: String, svg: String)] {
        [("latency-vs-params.svg", chart("latency")), ("memory-vs-params.svg", chart("memory")),
         ("accuracy-vs-latency.svg", accuracyChart(against: "latency")), ("accuracy-vs-memory.svg", accuracyChart(against: "memory"))]
    }
}
