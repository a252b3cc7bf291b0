import Export
import Foundation

/// `bench infer`'s figures for people and programs: the terminal tables, CSV, and SVG charts of
/// latency and memory against batch size and of per-layer time.
public enum InferenceReport {
    /// One row per measurement.
    public static func table(_ timings: [InferenceTiming]) -> String {
        let names = shortNames(timings.map(\.model))
        let width = max(5, names.map(\.count).max() ?? 5)
        var out = "model".padding(toLength: width + 2, withPad: " ", startingAt: 0)
            + "backend precision  size  batch   mean ms  median ms   p90 ms    images/s  memory MB  MB/M params  budget\n"
        for (t, name) in zip(timings, names) {
            out += name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                + t.backend.padding(toLength: 8, withPad: " ", startingAt: 0) + t.precision.padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: "%4d %6d %9.3f %10.3f %8.3f %11.1f %10.1f", t.input_size, t.batch, t.mean_ms, t.median_ms, t.p90_ms,
                         t.images_per_s, t.memory_mb)
                + (t.memory_mb_per_mparam.map { String(format: " %12.1f", $0) } ?? "            -")
                + String(format: " %6.1f%%", 100 * t.budget_share) + "\n"
        }
        return out
    }

    /// The engine's median latency over ONNX Runtime's (fp32) for every model, input size and
    /// batch size measured on both; empty when there is no such pair. Where the trials ran in
    /// pairs (`paired`), the median of the pairs' ratios and their range.
    public static func ratios(_ timings: [InferenceTiming], paired: [PairedRatio] = [])
        -> [(model: String, inputSize: Int, batch: Int, ratio: Double, range: ClosedRange<Double>?)] {
        timings.filter { $0.backend == "swift" }.compactMap { s in
            if let p = paired.first(where: { $0.model == s.model && $0.input_size == s.input_size && $0.batch == s.batch }),
               let lo = p.ratios.min(), let hi = p.ratios.max() {
                return (s.model, s.input_size, s.batch, p.median_ratio, lo...hi)
            }
            guard let o = timings.first(where: { $0.backend == "ort" && $0.precision == "fp32" && $0.model == s.model
                                                 && $0.input_size == s.input_size && $0.batch == s.batch }) else { return nil }
            return (s.model, s.input_size, s.batch, s.median_ms / o.median_ms, nil)
        }
    }

    public static func ratioTable(_ timings: [InferenceTiming], paired: [PairedRatio] = []) -> String {
        let rows = ratios(timings, paired: paired)
        guard !rows.isEmpty else { return "" }
        let names = shortNames(rows.map(\.model))
        let width = max(5, names.map(\.count).max() ?? 5)
        var out = "engine / ONNX Runtime (fp32), median latency (below 1: the engine is faster)"
            + (paired.isEmpty ? "\n" : "; trials in pairs, one right after the other: the median of the pairs' ratios (range)\n")
        for (r, name) in zip(rows, names) {
            out += name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                + String(format: "size %4d  batch %4d  %6.2fx", r.inputSize, r.batch, r.ratio)
                + (r.range.map { String(format: "  (%.2f-%.2f)", $0.lowerBound, $0.upperBound) } ?? "") + "\n"
        }
        return out
    }

    public static func csv(_ timings: [InferenceTiming]) -> String {
        var out = "model,backend,precision,input_size,batch,threads,params,macs,mean_ms,median_ms,p90_ms,images_per_s,memory_mb,"
            + "memory_mb_per_mparam,memory_in_child,budget_ms,budget_share,warmup,runs,trials\n"
        for t in timings {
            let fields: [String] = [csvField(t.model), t.backend, t.precision, "\(t.input_size)", "\(t.batch)", "\(t.threads)",
                                    t.params.map(String.init) ?? "", t.macs.map(String.init) ?? "", "\(t.mean_ms)", "\(t.median_ms)",
                                    "\(t.p90_ms)", "\(t.images_per_s)", "\(t.memory_mb)", t.memory_mb_per_mparam.map { "\($0)" } ?? "",
                                    "\(t.memory_in_child)", "\(t.budget_ms)", "\(t.budget_share)", "\(t.warmup)", "\(t.runs)",
                                    "\(t.trials.count)"]
            out += fields.joined(separator: ",") + "\n"
        }
        return out
    }

    /// Median latency (log) against batch size (log), one series per model, backend, precision
    /// and input size; the budget as a dashed line.
    public static func latencyChart(_ timings: [InferenceTiming], budget: Double) -> String {
        var series = lineSeries(timings) { ($0.batch, $0.median_ms) }
        if let lo = timings.map(\.batch).min(), let hi = timings.map(\.batch).max() {
            series.append(SVGChart.Series(name: String(format: "budget %.4g ms", budget), points: [(Double(lo), budget), (Double(hi), budget)],
                                          color: "#999", dashed: true, markers: false))
        }
        return SVGChart.lines(title: "Inference latency (median per batch)", xLabel: "batch size", yLabel: "latency (ms)",
                              series: series, logX: true, logY: true, xMargin: 0.03)
    }

    /// Resident-memory increase against batch size.
    public static func memoryChart(_ timings: [InferenceTiming]) -> String {
        SVGChart.lines(title: "Inference memory (RSS increase of preparing and one run)", xLabel: "batch size", yLabel: "memory (MB)",
                       series: lineSeries(timings) { ($0.batch, $0.memory_mb) }, logX: true, xMargin: 0.03)
    }

    public static func profileTable(_ p: InferenceProfile, top: Int = 25) -> String {
        let width = max(5, p.layers.prefix(top).map(\.layer.count).max() ?? 5)
        var out = "\(p.backend) profile of \(shortNames([p.model])[0]), batch \(p.batch), \(p.input_size)x\(p.input_size): "
            + String(format: "%.3f ms per run, %.3f ms in layers\n", p.wall_ms, p.layers_ms)
        out += "layer".padding(toLength: width + 2, withPad: " ", startingAt: 0) + "      ms   share      MMACs  GFLOP/s  ops\n"
        for l in p.layers.prefix(top) {
            out += l.layer.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                + String(format: "%8.4f %6.1f%% %10.2f ", l.ms, 100 * l.share, Double(l.macs) / 1e6)
                + (l.gflops.map { String(format: "%8.1f", $0) } ?? "       -") + "  " + l.ops.joined(separator: ",") + "\n"
        }
        if p.layers.count > top { out += "(\(p.layers.count - top) more layers in the JSON and CSV)\n" }
        return out
    }

    public static func profileCSV(_ profiles: [InferenceProfile]) -> String {
        var out = "model,backend,input_size,batch,layer,ops,ms,share,macs,gflops\n"
        for p in profiles {
            for l in p.layers {
                out += [csvField(p.model), p.backend, "\(p.input_size)", "\(p.batch)", csvField(l.layer), csvField(l.ops.joined(separator: " ")),
                        "\(l.ms)", "\(l.share)", "\(l.macs)", l.gflops.map { "\($0)" } ?? ""].joined(separator: ",") + "\n"
            }
        }
        return out
    }

    /// The per-layer times as horizontal bars, slowest first, with each layer's GFLOP/s.
    public static func profileChart(_ p: InferenceProfile, top: Int = 30) -> String {
        let layers = Array(p.layers.prefix(top))
        return SVGChart.bars(title: "\(p.backend == "ort" ? "ONNX Runtime" : "Engine") per-layer time: \(shortNames([p.model])[0]), batch \(p.batch)",
                             valueLabel: "ms per run", labels: layers.map(\.layer), values: layers.map(\.ms),
                             notes: layers.map { l in l.gflops.map { String(format: "%.3g ms, %.1f GFLOP/s", l.ms, $0) } ?? String(format: "%.3g ms", l.ms) })
    }

    private static func lineSeries(_ timings: [InferenceTiming], _ point: (InferenceTiming) -> (Int, Double)) -> [SVGChart.Series] {
        let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
        // One color per model (and precision and size), dashed for the engine, solid for ONNX Runtime.
        var keys: [String] = [], points: [String: [(x: Double, y: Double)]] = [:], dashed: [String: Bool] = [:]
        var colorKeys: [String] = [], colorOf: [String: Int] = [:]
        let names = Dictionary(zip(timings.map(\.model), shortNames(timings.map(\.model))), uniquingKeysWith: { a, _ in a })
        let sizes = Set(timings.map(\.input_size)).count > 1
        for t in timings {
            let model = "\(names[t.model]!) \(t.precision)" + (sizes ? " \(t.input_size)px" : "")
            let key = model + (t.backend == "ort" ? " ORT" : " engine")
            if points[key] == nil { keys.append(key) }
            if colorOf[model] == nil {
                colorOf[model] = colorKeys.count
                colorKeys.append(model)
            }
            colorOf[key] = colorOf[model]
            let (x, y) = point(t)
            points[key, default: []].append((Double(x), y))
            dashed[key] = t.backend == "swift"
        }
        return keys.map { k in
            SVGChart.Series(name: k, points: points[k]!.sorted { $0.x < $1.x }, color: palette[colorOf[k]! % palette.count], dashed: dashed[k]!)
        }
    }

    /// Paths shortened to what tells them apart: the last two components, or the whole when that
    /// is ambiguous.
    static func shortNames(_ paths: [String]) -> [String] {
        let short = paths.map { p -> String in
            let parts = p.split(separator: "/")
            return parts.suffix(2).joined(separator: "/")
        }
        var owners: [String: Set<String>] = [:]
        for (s, p) in zip(short, paths) { owners[s, default: []].insert(p) }
        return zip(short, paths).map { s, p in owners[s]!.count > 1 ? p : s }
    }

    private static func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
