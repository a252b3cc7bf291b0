import Checkpoint
import Datasets
import Foundation
import Nets
import Training

/// `neuralscale report`: the `result.json` files of several training runs of one model on one
/// dataset, grouped by (scaling, ratio), with the mean and spread over seeds of test accuracy,
/// parameters and MFLOPs, as a markdown table, JSON and SVG charts.
public struct ResultsReport: Codable, Equatable, Sendable {
    /// The runs of one (scaling, ratio).
    public struct Row: Codable, Equatable, Sendable {
        public var scaling: Scaling
        public var ratio: Double
        public var runs: Int
        /// In increasing order.
        public var seeds: [UInt64]
        /// Mean and sample standard deviation (n - 1) of the test accuracy (a fraction, as in
        /// `result.json`) over the runs that have one; the std is nil for fewer than two runs.
        public var testAccuracyMean: Double?
        public var testAccuracyStd: Double?
        public var paramsMean: Double
        public var paramsStd: Double?
        /// 2 x multiply-accumulates of one image / 1e6, counted as `neuralscale stats` (thop) does.
        public var mflopsMean: Double
        public var mflopsStd: Double?
        /// The widths of the run with the smallest seed (a note says so when the runs' widths differ).
        public var widths: [Int]
        /// The distinct epoch counts of the runs.
        public var epochs: [Int]
        /// The runs' files, in seed order.
        public var files: [String]
        /// The best test accuracy over the seeds (the studies' charts plot the maximum).
        public var testAccuracyMax: Double? = nil
        /// Mean training wall time per epoch, seconds (`wallSeconds / epochs` of each run).
        public var secondsPerEpochMean: Double? = nil
    }

    public var model: Architecture
    public var dataset: String
    /// The name of every width group (`Architecture.groupNames`).
    public var groups: [String]
    /// Sorted by scaling (uniform first), then ratio.
    public var rows: [Row]
    /// Every input file, in the order given.
    public var files: [String]
    /// What the reader should know about the inputs (differing widths or epochs in a row, ...).
    public var notes: [String]

    /// Reads every `result.json` and aggregates them.
    /// - Throws: `ReportError` naming the file that is missing, unreadable or of another model
    ///   or dataset.
    public static func load(_ paths: [String]) throws -> ResultsReport {
        try make(paths.map { path in (path, try readResult(path)) })
    }

    /// One `result.json` written by `neuralscale train`.
    public static func readResult(_ path: String) throws -> TrainResult {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ReportError(path: path, message: unreadableReason(path, error))
        }
        let result: TrainResult
        do {
            result = try JSONDecoder().decode(TrainResult.self, from: data)
        } catch {
            throw ReportError(path: path, message: "not a result.json of `neuralscale train`: \(describeDecodingError(error, data: data))")
        }
        do { try result.validate() } catch { throw ReportError(path: path, message: "\(error)") }
        return result
    }

    /// Params and MFLOPs of `model` with `widths` on `dataset`'s inputs.
    public static func measure(_ model: Architecture, _ dataset: DatasetKind, widths: [Int]) throws -> (params: Int, mflops: Double) {
        let d = NetDescription(architecture: model, inChannels: dataset.channels, imageSize: dataset.imageSize,
                               classes: dataset.classes, widths: widths)
        let net = try makeNetwork(d, initialization: .none)
        return (net.parameterCount, 2 * Double(net.inferenceGraph.macs) / 1e6)
    }

    /// Aggregates runs given with the files they came from.
    public static func make(_ runs: [(path: String, result: TrainResult)]) throws -> ResultsReport {
        guard let first = runs.first else { throw ReportError(path: nil, message: "no result.json given") }
        let model = first.result.model, dataset = first.result.dataset
        for (path, r) in runs where r.model != model || r.dataset != dataset {
            throw ReportError(path: path, message: "is \(r.model.rawValue) on \(r.dataset), but \(first.path) is \(model.rawValue) on \(dataset); "
                              + "a report compares runs of one model on one dataset")
        }
        guard let kind = DatasetKind(rawValue: dataset) else {
            throw ReportError(path: first.path, message: "unknown dataset '\(dataset)' (expected one of \(DatasetKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var notes: [String] = []
        // Runs of the same net share its measurements.
        var measured: [[Int]: (params: Int, mflops: Double)] = [:]
        var keys: [(scaling: Scaling, ratio: Double)] = []
        var members: [String: [(path: String, result: TrainResult, mflops: Double)]] = [:]
        for (path, r) in runs {
            if measured[r.widths] == nil {
                do {
                    measured[r.widths] = try measure(model, kind, widths: r.widths)
                } catch {
                    throw ReportError(path: path, message: "its widths \(r.widths) do not make a \(model.rawValue): \(error)")
                }
            }
            let m = measured[r.widths]!
            if m.params != r.params {
                notes.append("\(path) reports \(r.params) parameters, but its widths give \(m.params); the table uses the reported figure")
            }
            let key = "\(r.scaling.rawValue)/\(r.ratio)"
            if members[key] == nil { keys.append((r.scaling, r.ratio)) }
            if let twin = members[key]?.first(where: { $0.result.seed == r.seed }) {
                if twin.path == path { throw ReportError(path: path, message: "is given twice") }
                throw ReportError(path: path, message: "is \(r.scaling.rawValue) ratio \(r.ratio) seed \(r.seed), as \(twin.path) is; "
                                  + "give each (scaling, ratio, seed) once, or the spread over seeds is wrong")
            }
            members[key, default: []].append((path, r, m.mflops))
        }
        let order = Scaling.allCases
        keys.sort { a, b in
            a.scaling == b.scaling ? a.ratio < b.ratio : order.firstIndex(of: a.scaling)! < order.firstIndex(of: b.scaling)!
        }
        var rows: [Row] = []
        for key in keys {
            let group = members["\(key.scaling.rawValue)/\(key.ratio)"]!.sorted { $0.result.seed < $1.result.seed }
            let accuracy = meanAndStd(group.compactMap(\.result.testAccuracy))
            let params = meanAndStd(group.map { Double($0.result.params) })!
            let mflops = meanAndStd(group.map(\.mflops))!
            let label = "\(key.scaling.rawValue) ratio \(key.ratio)"
            if Set(group.map(\.result.widths)).count > 1 {
                notes.append("\(label): the runs have different widths (\(group.map { "seed \($0.result.seed): \($0.result.widths)" }.joined(separator: "; "))); "
                             + "params and MFLOPs are averaged, the widths chart shows seed \(group[0].result.seed)'s")
            }
            let missing = group.filter { $0.result.testAccuracy == nil }
            if !missing.isEmpty {
                notes.append("\(label): no test accuracy in \(missing.map(\.path).joined(separator: ", ")); the accuracy is over the other runs")
            }
            let epochs = Array(Set(group.map(\.result.epochs))).sorted()
            if epochs.count > 1 { notes.append("\(label): the runs trained for different epochs (\(epochs.map(String.init).joined(separator: ", ")))") }
            rows.append(Row(scaling: key.scaling, ratio: key.ratio, runs: group.count, seeds: group.map(\.result.seed),
                            testAccuracyMean: accuracy?.mean, testAccuracyStd: accuracy?.std,
                            paramsMean: params.mean, paramsStd: params.std, mflopsMean: mflops.mean, mflopsStd: mflops.std,
                            widths: group[0].result.widths, epochs: epochs, files: group.map(\.path),
                            testAccuracyMax: group.compactMap(\.result.testAccuracy).max(),
                            secondsPerEpochMean: meanAndStd(group.map { $0.result.wallSeconds / Double(max($0.result.epochs, 1)) })?.mean))
        }
        return ResultsReport(model: model, dataset: dataset, groups: model.groupNames, rows: rows,
                             files: runs.map(\.path), notes: notes)
    }

    /// Mean and sample standard deviation (n - 1; nil for one value); nil for no values.
    public static func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double?)? {
        guard !values.isEmpty else { return nil }
        let n = Double(values.count), mean = values.reduce(0, +) / n
        guard values.count > 1 else { return (mean, nil) }
        guard values.contains(where: { $0 != values[0] }) else { return (values[0], 0) }  // exactly 0, not rounding noise
        let squares = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (mean, (squares / (n - 1)).squareRoot())
    }

    // MARK: - Outputs

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// The markdown report: the table, the widths of every row, notes and the input files.
    public func markdown() -> String {
        var lines = ["# \(model.rawValue) on \(dataset): \(files.count) runs", "",
                     "Test accuracy: mean and sample standard deviation over the seeds (\"-\" for a single run), and the best seed's. "
                     + "Params and MFLOPs (2 x multiply-accumulates of one image, counted as `neuralscale stats` does): mean over the runs.", "",
                     "| scaling | ratio | runs (seeds) | test accuracy (%) | std (%) | max (%) | params | MFLOPs | s / epoch |",
                     "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows {
            let accuracy = r.testAccuracyMean.map { String(format: "%.2f", 100 * $0) } ?? "-"
            let std = r.testAccuracyStd.map { String(format: "%.2f", 100 * $0) } ?? "-"
            let params = String(format: "%.0f", r.paramsMean) + (r.paramsStd.map { $0 > 0 ? String(format: " ± %.0f", $0) : "" } ?? "")
            let mflops = String(format: "%.3f", r.mflopsMean) + (r.mflopsStd.map { $0 > 0 ? String(format: " ± %.3f", $0) : "" } ?? "")
            let best = r.testAccuracyMax.map { String(format: "%.2f", 100 * $0) } ?? "-"
            let perEpoch = r.secondsPerEpochMean.map { String(format: "%.1f", $0) } ?? "-"
            lines.append("| \(Self.displayName(r.scaling)) | \(r.ratio) | \(r.runs) (\(r.seeds.map(String.init).joined(separator: ", "))) "
                         + "| \(accuracy) | \(std) | \(best) | \(params) | \(mflops) | \(perEpoch) |")
        }
        lines += ["", "## Widths", "", "| scaling | ratio | " + groups.joined(separator: " | ") + " |",
                  "| --- | ---: | " + groups.map { _ in "---:" }.joined(separator: " | ") + " |"]
        for r in rows {
            lines.append("| \(Self.displayName(r.scaling)) | \(r.ratio) | " + r.widths.map(String.init).joined(separator: " | ") + " |")
        }
        if !notes.isEmpty { lines += ["", "## Notes", ""] + notes.map { "- \($0)" } }
        lines += ["", "## Input files", ""] + files.map { "- `\($0)`" }
        return lines.joined(separator: "\n") + "\n"
    }

    public enum Measure: String, Sendable {
        case params
        case mflops

        var label: String { self == .params ? "parameters" : "MFLOPs" }
    }

    /// Mean test accuracy (%) against the mean params or MFLOPs of every (scaling, ratio), one
    /// series per scaling, with error bars of one standard deviation where there are several
    /// seeds; log x axis.
    public func accuracyChart(against measure: Measure) -> String { Self.accuracyChart([self], against: measure) }

    /// The same over several reports (models or datasets): one series per (model, dataset,
    /// scaling), a colour per (model, dataset), uniform dashed; never averaged across reports.
    public static func accuracyChart(_ reports: [ResultsReport], against measure: Measure) -> String {
        var series: [SVGChart.Series] = []
        let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        for (i, report) in reports.enumerated() {
            for scaling in Scaling.allCases {
                let points = report.rows.filter { $0.scaling == scaling && $0.testAccuracyMean != nil }
                    .sorted { report.x(of: $0, measure) < report.x(of: $1, measure) }
                guard !points.isEmpty else { continue }
                let style = reports.count == 1 ? Self.style(scaling, shade: 0, of: 1) : (palette[i % palette.count], scaling == .uniform)
                let name = (reports.count == 1 ? "" : "\(report.model.rawValue) \(report.dataset) ") + Self.displayName(scaling)
                series.append(SVGChart.Series(name: name, points: points.map { (report.x(of: $0, measure), 100 * $0.testAccuracyMean!) },
                                              color: style.color, dashed: style.dashed,
                                              yErrors: points.map { $0.testAccuracyStd.map { 100 * $0 } },
                                              pointLabels: points.map { "r\($0.ratio)" }))
            }
        }
        let subject = reports.count == 1 ? "\(reports[0].model.rawValue) on \(reports[0].dataset)" : "\(reports.count) nets"
        return SVGChart.lines(title: "\(subject): test accuracy against \(measure.label) (mean ± std over seeds)",
                              xLabel: "\(measure.label) (log scale)", yLabel: "test accuracy (%)", series: series,
                              logX: true, yFromZero: false, xMargin: 0.08)
    }

    /// The widths of every group across the depth of the net, one series per (scaling, ratio).
    public func widthsChart() -> String {
        var series: [SVGChart.Series] = []
        for scaling in Scaling.allCases {
            let own = rows.filter { $0.scaling == scaling }
            for (k, r) in own.enumerated() {
                let style = Self.style(scaling, shade: k, of: own.count)
                series.append(SVGChart.Series(name: "\(Self.displayName(scaling)) r\(r.ratio)",
                                              points: r.widths.enumerated().map { (Double($0), Double($1)) },
                                              color: style.color, dashed: style.dashed))
            }
        }
        return SVGChart.lines(title: "\(model.rawValue) on \(dataset): layer widths", xLabel: "width group (input to output)",
                              yLabel: "filters", series: series, xTickLabels: groups)
    }

    private func x(of row: Row, _ measure: Measure) -> Double { measure == .params ? row.paramsMean : row.mflopsMean }

    static func displayName(_ scaling: Scaling) -> String { scaling == .uniform ? "uniform" : "NeuralScale" }

    /// Uniform grey and dashed, NeuralScale red, as the descent's widths chart; several ratios
    /// of one scaling go from dark (smallest ratio) to light.
    static func style(_ scaling: Scaling, shade k: Int, of n: Int) -> (color: String, dashed: Bool) {
        let t = n > 1 ? Double(k) / Double(n - 1) : 0
        func mix(_ a: [Double], _ b: [Double]) -> String {
            "#" + zip(a, b).map { String(format: "%02x", Int(($0 + ($1 - $0) * t).rounded())) }.joined()
        }
        switch scaling {
        case .uniform: return (n > 1 ? mix([0x44, 0x44, 0x44], [0xb0, 0xb0, 0xb0]) : "#888888", true)
        case .neuralscale: return (n > 1 ? mix([0x7b, 0x1a, 0x12], [0xf0, 0x80, 0x70]) : "#c0392b", false)
        }
    }
}

/// A report input or output problem, naming the file.
public struct ReportError: Error, CustomStringConvertible, Equatable {
    public let path: String?
    public let message: String

    public init(path: String?, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.map { "\($0): \(message)" } ?? message }
}
