import ArchDescent
import Checkpoint
import Datasets
import Foundation
import Nets
import Training

/// Everything `neuralscale report` writes: the training table of every (model, dataset) in the
/// inputs (kept apart, never averaged together), the searches' wall time, and the device section
/// when bench files are given.
public struct StudyReport: Codable, Sendable {
    /// One NeuralScale search: its iterations and, from the `timing.json` beside its
    /// `descent.json`, the wall time of each.
    public struct Search: Codable, Equatable, Sendable {
        public var file: String
        public var model: String
        public var dataset: String
        public var iterations: Int
        public var epochsPerIteration: [Int]
        /// Nil when the folder has no `timing.json` (a search written before it existed).
        public var secondsPerIteration: [Double]?
        public var meanSecondsPerIteration: Double?
        public var totalSeconds: Double?
    }

    /// One per (model, dataset), in order of first appearance in the inputs.
    public var reports: [ResultsReport]
    public var searches: [Search]
    public var device: DeviceReport?

    public init(reports: [ResultsReport], searches: [Search], device: DeviceReport?) {
        self.reports = reports
        self.searches = searches
        self.device = device
    }

    /// Reads the inputs: `result.json` files of `neuralscale train`, `descent.json` files of
    /// `neuralscale descend`, and `bench infer` / `quantize --json` outputs for the device section.
    /// - Throws: `ReportError` naming the file that is missing or malformed.
    public static func load(results: [String], descents: [String] = [], bench: [String] = [], quantize: [String] = [],
                            budget: Double = 16.67) throws -> StudyReport {
        let runs = try results.map { (path: $0, result: try ResultsReport.readResult($0)) }
        var keys: [String] = [], groups: [String: [(path: String, result: TrainResult)]] = [:]
        for run in runs {
            let key = "\(run.result.model.rawValue)/\(run.result.dataset)"
            if groups[key] == nil { keys.append(key) }
            groups[key, default: []].append(run)
        }
        let reports = try keys.map { try ResultsReport.make(groups[$0]!) }
        let searches = try descents.map(readSearch)
        let device = bench.isEmpty ? nil : try DeviceReport.make(results: runs, bench: bench, quantize: quantize, budget: budget)
        return StudyReport(reports: reports, searches: searches, device: device)
    }

    /// A `descent.json` and the `timing.json` beside it.
    public static func readSearch(_ path: String) throws -> Search {
        let result: DescentResult
        do { result = try DescentResult.load(path) } catch { throw ReportError(path: nil, message: "\(error)") }
        let model = result.config.model.rawValue, dataset = result.config.dataset
        let timingPath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(SearchTiming.fileName).path
        var search = Search(file: path, model: model, dataset: dataset, iterations: result.iterations.count,
                            epochsPerIteration: result.iterations.map(\.epochs))
        guard let data = FileManager.default.contents(atPath: timingPath) else { return search }
        let timing: SearchTiming
        do { timing = try JSONDecoder().decode(SearchTiming.self, from: data) } catch {
            throw ReportError(path: timingPath, message: "not the timing.json of `neuralscale descend`: \(describeDecodingError(error, data: data))")
        }
        guard timing.model.rawValue == model, timing.dataset == dataset, timing.secondsPerIteration.count == result.iterations.count else {
            throw ReportError(path: timingPath, message: "is \(timing.model.rawValue) on \(timing.dataset) with \(timing.secondsPerIteration.count) iterations, "
                              + "but \(path) is \(model) on \(dataset) with \(result.iterations.count); it belongs to another search")
        }
        let plausible = { (s: Double) in s.isFinite && (0...1e12).contains(s) }
        guard timing.secondsPerIteration.allSatisfy(plausible), plausible(timing.totalSeconds) else {
            throw ReportError(path: timingPath, message: "holds seconds outside 0...1e12 (secondsPerIteration \(timing.secondsPerIteration), "
                              + "totalSeconds \(timing.totalSeconds))")
        }
        search.secondsPerIteration = timing.secondsPerIteration
        search.totalSeconds = timing.totalSeconds
        search.meanSecondsPerIteration = timing.secondsPerIteration.isEmpty ? nil : timing.totalSeconds / Double(timing.secondsPerIteration.count)
        return search
    }

    /// The input files of every report, in order.
    public var files: [String] { reports.flatMap(\.files) }

    // MARK: - Outputs

    /// The file names `write(to:)` produces for these inputs.
    public var outputFiles: [String] {
        var names = ["report.md", "report.json", "accuracy-vs-params.svg", "accuracy-vs-mflops.svg"]
        names += reports.count == 1 ? ["widths.svg"] : reports.map { "widths-\($0.model.rawValue)-\($0.dataset).svg" }
        if searches.contains(where: { $0.secondsPerIteration != nil }) { names.append("search-time.svg") }
        if let device { names += ["device.json"] + device.charts().map(\.name) }
        return names
    }

    /// Writes every output file into `directory` (created if needed), each atomically, and
    /// returns their paths in the order of `outputFiles`.
    @discardableResult
    public func write(to directory: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ReportError(path: directory, message: "cannot create the folder: \(fileErrorReason(error))")
        }
        var contents: [Data] = [Data(markdown().utf8), try json() + Data("\n".utf8),
                                Data(ResultsReport.accuracyChart(reports, against: .params).utf8),
                                Data(ResultsReport.accuracyChart(reports, against: .mflops).utf8)]
        contents += reports.map { Data($0.widthsChart().utf8) }
        if searches.contains(where: { $0.secondsPerIteration != nil }) { contents.append(Data(searchChart().utf8)) }
        if let device { contents += [try Self.encoder.encode(device)] + device.charts().map { Data($0.svg.utf8) } }
        var written: [String] = []
        for (name, data) in zip(outputFiles, contents) {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
            try AtomicFile.write(data, to: path)
            written.append(path)
        }
        return written
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data { try Self.encoder.encode(self) }

    /// One report's markdown as is; several under one title, each a section of its own.
    public func markdown() -> String {
        var text: String
        if reports.count == 1 {
            text = reports[0].markdown()
        } else {
            text = "# \(reports.count) nets, \(files.count) runs\n\nEach (model, dataset) has its own table; nothing is averaged across them.\n"
            for report in reports {
                let demoted = report.markdown().split(separator: "\n", omittingEmptySubsequences: false)
                    .map { $0.hasPrefix("#") ? "#" + $0 : String($0) }.joined(separator: "\n")
                text += "\n" + demoted
            }
        }
        if !searches.isEmpty {
            text += "\n## Search time\n\nWall time of every iteration of each NeuralScale search (from the timing.json beside its descent.json).\n\n"
                + "| model | dataset | iterations | epochs / iteration | mean s / iteration | total | seconds per iteration | descent.json |\n"
                + "| --- | --- | ---: | --- | ---: | ---: | --- | --- |\n"
            for s in searches {
                let epochs = Set(s.epochsPerIteration).count == 1 ? "\(s.epochsPerIteration[0])" : s.epochsPerIteration.map(String.init).joined(separator: ", ")
                let seconds = s.secondsPerIteration.map { $0.map { String(format: "%.0f", $0) }.joined(separator: ", ") } ?? "no timing.json"
                text += "| \(s.model) | \(s.dataset) | \(s.iterations) | \(epochs) | \(s.meanSecondsPerIteration.map { String(format: "%.1f", $0) } ?? "-") | "
                    + "\(s.totalSeconds.map { formatDuration($0) } ?? "-") | \(seconds) | `\(s.file)` |\n"
            }
        }
        if let device { text += "\n" + device.markdown() }
        return text
    }

    /// Seconds of every search iteration as bars.
    public func searchChart() -> String {
        var labels: [String] = [], values: [Double] = [], notes: [String] = []
        for s in searches {
            guard let seconds = s.secondsPerIteration else { continue }
            for (i, v) in seconds.enumerated() {
                labels.append("\(s.model) \(s.dataset) it \(i)")
                values.append(v)
                notes.append(formatDuration(v) + (i < s.epochsPerIteration.count ? ", \(s.epochsPerIteration[i]) epochs" : ""))
            }
        }
        return SVGChart.bars(title: "Wall time per search iteration", valueLabel: "seconds", labels: labels, values: values, notes: notes)
    }
}
