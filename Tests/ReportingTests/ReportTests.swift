import ArchDescent
import Datasets
import Foundation
import Nets
import Pruning
import Reporting
import TestSupport
import Training
import XCTest

final class ReportTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("report") }

    /// VGG-11's widths at `ratio`, as `neuralscale train --scaling uniform` uses them.
    private func uniform(_ ratio: Double) -> [Int] { Architecture.vgg11.uniformWidths(ratio: ratio) }

    /// A `result.json` as `neuralscale train` writes it (TrainResult has no public initializer).
    private func resultJSON(_ scaling: String = "uniform", ratio: Double = 0.25, seed: Int = 0, accuracy: Double? = 0.86,
                            widths: [Int]? = nil, model: String = "vgg11", dataset: String = "fashion-mnist",
                            params: Int? = nil) throws -> Data {
        let w = widths ?? uniform(ratio)
        let p = try params ?? ResultsReport.measure(Architecture(rawValue: model)!, DatasetKind(rawValue: dataset)!, widths: w).params
        var object: [String: Any] = ["model": model, "dataset": dataset, "scaling": scaling, "ratio": ratio, "widths": w,
                                     "params": p, "epochs": 3, "seed": seed, "wallSeconds": 1.5]
        if let accuracy { object["testAccuracy"] = accuracy }
        return try JSONSerialization.data(withJSONObject: object)
    }

    private func result(_ scaling: String = "uniform", ratio: Double = 0.25, seed: Int = 0, accuracy: Double? = 0.86,
                        widths: [Int]? = nil, model: String = "vgg11", dataset: String = "fashion-mnist") throws -> TrainResult {
        try JSONDecoder().decode(TrainResult.self, from: resultJSON(scaling, ratio: ratio, seed: seed, accuracy: accuracy,
                                                                    widths: widths, model: model, dataset: dataset))
    }

    /// A finished search of VGG-11 on Fashion-MNIST with `iterations` identical iterations.
    private func descentFixture(iterations: Int) throws -> DescentResult {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        var rows: [TrajectoryRow] = []
        for k in 0..<8 {
            var d = template
            d.widths = template.widths.map { max(1, Int(Double($0) * pow(0.85, Double(k)))) }
            rows.append(TrajectoryRow(widths: d.widths, params: d.parameterCount))
        }
        let fit = try PowerLawFit.fit(rows)
        let its = (0..<iterations).map { DescentIteration(index: $0, startWidths: template.widths, startParams: template.parameterCount,
                                                          trajectory: rows, fit: fit, stop: .reachedMaxFraction, epochs: 2) }
        return DescentResult(config: DescentConfig(model: .vgg11, dataset: "fashion-mnist"), template: template,
                             groupNames: Architecture.vgg11.groupNames, iterations: its, ratios: [])
    }

    /// Writes a result file into the test folder; returns its path.
    private func file(_ name: String, _ data: Data) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    func testMeanAndSampleStd() throws {
        // 0.86, 0.87, 0.88: mean 0.87, squared deviations 1e-4 + 0 + 1e-4 over n - 1 = 2 -> std 0.01.
        let three = try XCTUnwrap(ResultsReport.meanAndStd([0.86, 0.87, 0.88]))
        XCTAssertEqual(three.mean, 0.87, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(three.std), 0.01, accuracy: 1e-12)
        // 2 and 4: sample std sqrt(((-1)^2 + 1^2) / 1) = sqrt(2) (the population std would be 1).
        XCTAssertEqual(try XCTUnwrap(ResultsReport.meanAndStd([2, 4])?.std), 2.0.squareRoot(), accuracy: 1e-12)
        let one = try XCTUnwrap(ResultsReport.meanAndStd([0.9]))
        XCTAssertEqual(one.mean, 0.9)
        XCTAssertNil(one.std, "one run has no spread")
        XCTAssertEqual(ResultsReport.meanAndStd([171.671, 171.671, 171.671])?.std, 0, "equal values: exactly 0")
        XCTAssertNil(ResultsReport.meanAndStd([]))
    }

    /// MFLOPs as thop counts them: VGG-11 at ratio 0.25 on 3x32x32 inputs is 20.064768 MFLOPs
    /// (thop on the reference net). Fashion-MNIST only changes the first conv's input channels
    /// from 3 to 1: 16 x 32 x 32 outputs x 2 channels x 9 = 294912 MACs fewer, 0.589824 MFLOPs,
    /// so 19.474944; and 16 x 2 x 9 = 288 parameters fewer than CIFAR-10's 579786.
    func testMFLOPsOfKnownNets() throws {
        let cifar = try ResultsReport.measure(.vgg11, .cifar10, widths: uniform(0.25))
        XCTAssertEqual(cifar.mflops, 20.064768, accuracy: 1e-9)
        XCTAssertEqual(cifar.params, 579_786)
        let fashion = try ResultsReport.measure(.vgg11, .fashionMNIST, widths: uniform(0.25))
        XCTAssertEqual(fashion.mflops, 20.064768 - 0.589824, accuracy: 1e-9)
        XCTAssertEqual(fashion.params, 579_498, "the params of checkpoints/vgg11-fashion-mnist-uniform-r0.25-s0/result.json")

        let report = try ResultsReport.make([("a.json", try result(seed: 0)), ("b.json", try result(seed: 1))])
        XCTAssertEqual(report.rows[0].mflopsMean, 19.474944, accuracy: 1e-9)
        XCTAssertEqual(report.rows[0].mflopsStd, 0)
        XCTAssertEqual(report.rows[0].paramsMean, 579_498)
    }

    /// Runs group by (scaling, ratio), rows sort uniform first then by ratio, seeds within a row
    /// sort, and each row's figures come from its own runs only.
    func testGroupsBySchemeAndRatio() throws {
        let ns = [20, 40, 60, 70, 100, 90, 80, 120]
        let runs: [(path: String, result: TrainResult)] = [
            ("ns-s1", try result("neuralscale", seed: 1, accuracy: 0.90, widths: ns)),
            ("u50-s0", try result(ratio: 0.5, seed: 0, accuracy: 0.95)),
            ("u25-s2", try result(seed: 2, accuracy: 0.88)),
            ("ns-s0", try result("neuralscale", seed: 0, accuracy: 0.80, widths: ns)),
            ("u25-s0", try result(seed: 0, accuracy: 0.86)),
            ("u25-s1", try result(seed: 1, accuracy: 0.87)),
        ]
        let report = try ResultsReport.make(runs)
        XCTAssertEqual(report.model, .vgg11)
        XCTAssertEqual(report.dataset, "fashion-mnist")
        XCTAssertEqual(report.rows.map { "\($0.scaling.rawValue) \($0.ratio)" }, ["uniform 0.25", "uniform 0.5", "neuralscale 0.25"])
        XCTAssertEqual(report.rows.map(\.runs), [3, 1, 2])
        XCTAssertEqual(report.rows.map(\.seeds), [[0, 1, 2], [0], [0, 1]])
        XCTAssertEqual(report.rows.map(\.files), [["u25-s0", "u25-s1", "u25-s2"], ["u50-s0"], ["ns-s0", "ns-s1"]])
        XCTAssertEqual(report.files, runs.map(\.path), "input files in the order given")

        XCTAssertEqual(try XCTUnwrap(report.rows[0].testAccuracyMean), 0.87, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(report.rows[0].testAccuracyStd), 0.01, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(report.rows[1].testAccuracyMean), 0.95, accuracy: 1e-12)
        XCTAssertNil(report.rows[1].testAccuracyStd)
        // 0.80 and 0.90: mean 0.85, sample std sqrt(2 x 0.05^2 / 1) = 0.0707...
        XCTAssertEqual(try XCTUnwrap(report.rows[2].testAccuracyMean), 0.85, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(report.rows[2].testAccuracyStd), 0.05 * 2.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(report.rows[2].widths, ns)
        XCTAssertEqual(report.rows[1].paramsMean, Double(try ResultsReport.measure(.vgg11, .fashionMNIST, widths: uniform(0.5)).params))
        XCTAssertTrue(report.notes.isEmpty, "\(report.notes)")

        let md = report.markdown()
        XCTAssertTrue(md.contains("| uniform | 0.25 | 3 (0, 1, 2) | 87.00 | 1.00 | 88.00 | 579498 | 19.475 | 0.5 |"), md)
        // The best seed (the studies plot the maximum) and seconds per epoch (1.5 s over 3 epochs).
        XCTAssertEqual(try XCTUnwrap(report.rows[2].testAccuracyMax), 0.90, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(report.rows[0].secondsPerEpochMean), 0.5, accuracy: 1e-12)
        XCTAssertTrue(md.contains("| uniform | 0.5 | 1 (0) | 95.00 | - |"), md)
        XCTAssertTrue(md.contains("| NeuralScale | 0.25 | 2 (0, 1) | 85.00 | 7.07 |"), md)
        XCTAssertTrue(md.contains("- `u25-s2`"), md)
        let decoded = try JSONDecoder().decode(ResultsReport.self, from: report.json())
        XCTAssertEqual(decoded, report, "report.json round-trips")
    }

    /// Different widths within a row, or a missing test accuracy, are reported as notes.
    func testNotesOnInconsistentRuns() throws {
        let report = try ResultsReport.make([
            ("a", try result("neuralscale", seed: 0, widths: uniform(0.25))),
            ("b", try result("neuralscale", seed: 1, widths: uniform(0.5))),
            ("c", try result(seed: 0, accuracy: nil)),
        ])
        XCTAssertEqual(report.notes.count, 2, "\(report.notes)")
        XCTAssertTrue(report.notes.contains { $0.contains("different widths") })
        XCTAssertTrue(report.notes.contains { $0.contains("no test accuracy in c") })
        let u = try XCTUnwrap(report.rows.first { $0.scaling == .uniform })
        XCTAssertNil(u.testAccuracyMean)
        XCTAssertTrue(report.markdown().contains("| uniform | 0.25 | 1 (0) | - | - |"))
        let ns = try XCTUnwrap(report.rows.first { $0.scaling == .neuralscale })
        XCTAssertGreaterThan(try XCTUnwrap(ns.mflopsStd), 0)
    }

    func testMixedModelsDatasetsAndBadFilesAreRejectedByName() throws {
        let a = try file("a.json", try resultJSON())
        let b = try file("b.json", try resultJSON(seed: 1))
        let other = try file("mobilenet.json", try resultJSON(widths: Architecture.mobilenetv2.uniformWidths(ratio: 0.25), model: "mobilenetv2"))
        let cifar = try file("cifar.json", try resultJSON(seed: 2, dataset: "cifar10"))
        let corrupt = try file("corrupt.json", Data(#"{"model": "vgg11", "#.utf8))
        let noWidths = try file("no-widths.json", Data(#"{"model": "vgg11", "dataset": "fashion-mnist"}"#.utf8))
        let negativeSeed = try file("negative-seed.json", try resultJSON(seed: -1))  // seeds are unsigned
        let array = try file("array.json", Data("[1, 2]".utf8))
        let missing = folder.appendingPathComponent("missing.json").path

        XCTAssertEqual(try ResultsReport.load([a, b]).rows.first?.runs, 2)
        for (paths, culprit, words) in [([a, b, other], other, "mobilenetv2 on fashion-mnist"), ([a, cifar], cifar, "vgg11 on cifar10"),
                                        ([a, corrupt], corrupt, "not valid JSON"), ([a, noWidths], noWidths, "missing"),
                                        ([a, negativeSeed], negativeSeed, "a number does not fit its field"),
                                        ([a, array], array, "top level has the wrong type"),
                                        ([a, missing], missing, "no such file"), ([a, a], a, "twice")] {
            XCTAssertThrowsError(try ResultsReport.load(paths), "\(culprit)") { error in
                XCTAssertEqual((error as? ReportError)?.path, culprit, "\(error)")
                XCTAssertTrue("\(error)".contains(culprit) && "\(error)".contains(words), "\(error)")
            }
        }
        // Two files of the same (scaling, ratio, seed).
        let twin = try file("twin.json", try resultJSON())
        XCTAssertThrowsError(try ResultsReport.load([a, twin])) { XCTAssertTrue("\($0)".contains("seed 0, as \(a)"), "\($0)") }
        XCTAssertThrowsError(try ResultsReport.make([]))
    }

    /// The five files are written, the charts have a series per scaling (and per scaling and
    /// ratio for the widths), error bars where there are several seeds, and the group names.
    func testWritesTableJSONAndCharts() throws {
        let ns = [20, 40, 60, 70, 100, 90, 80, 120]
        let report = try ResultsReport.make([
            ("u25-s0", try result(seed: 0, accuracy: 0.86)), ("u25-s1", try result(seed: 1, accuracy: 0.88)),
            ("u50-s0", try result(ratio: 0.5, accuracy: 0.9)),
            ("ns25-s0", try result("neuralscale", accuracy: 0.89, widths: ns)),
        ])
        let out = folder.appendingPathComponent("out/nested").path
        let study = StudyReport(reports: [report], searches: [], device: nil)
        let written = try study.write(to: out)
        XCTAssertEqual(written.map { URL(fileURLWithPath: $0).lastPathComponent },
                       ["report.md", "report.json", "accuracy-vs-params.svg", "accuracy-vs-mflops.svg", "widths.svg"])
        func read(_ name: String) throws -> String {
            try String(contentsOfFile: URL(fileURLWithPath: out).appendingPathComponent(name).path, encoding: .utf8)
        }
        XCTAssertEqual(try read("report.md"), report.markdown(), "one net: its table as is")
        XCTAssertEqual(try JSONDecoder().decode(StudyReport.self, from: Data(try read("report.json").utf8)).reports, [report])
        for name in ["accuracy-vs-params.svg", "accuracy-vs-mflops.svg"] {
            let svg = try read(name)
            XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"), name)
            XCTAssertTrue(svg.contains(">uniform</text>") && svg.contains(">NeuralScale</text>"), name)
            XCTAssertTrue(svg.contains(">r0.5</text>"), "\(name): points labelled with their ratio")
            // Exactly one error bar: only uniform at 0.25 has two seeds.
            XCTAssertEqual(svg.components(separatedBy: "<path d=").count - 1, 1, name)
        }
        let widths = try read("widths.svg")
        for name in ["uniform r0.25", "uniform r0.5", "NeuralScale r0.25"] + Architecture.vgg11.groupNames {
            XCTAssertTrue(widths.contains(">\(name)</text>"), "widths.svg lacks \(name)")
        }
        XCTAssertFalse(widths.contains("<path d="), "no error bars on widths")
    }

    /// Runs of two models on two datasets: a table each, never pooled; the charts keep a series
    /// per (model, dataset, scaling) and a widths chart per net.
    func testSeveralModelsAndDatasetsStayApart() throws {
        let mobile = Architecture.mobilenetv2.uniformWidths(ratio: 0.25)
        let paths = try [
            file("v-f-0.json", resultJSON(seed: 0, accuracy: 0.80)), file("v-f-1.json", resultJSON(seed: 1, accuracy: 0.90)),
            file("v-c-0.json", resultJSON(seed: 0, accuracy: 0.50, dataset: "cifar10")),
            file("m-f-0.json", resultJSON(seed: 0, accuracy: 0.70, widths: mobile, model: "mobilenetv2")),
            file("m-f-ns.json", resultJSON("neuralscale", seed: 0, accuracy: 0.75, widths: mobile, model: "mobilenetv2")),
        ]
        let study = try StudyReport.load(results: paths)
        XCTAssertEqual(study.reports.map { "\($0.model.rawValue)/\($0.dataset)" }, ["vgg11/fashion-mnist", "vgg11/cifar10", "mobilenetv2/fashion-mnist"])
        XCTAssertEqual(study.reports[0].rows.map(\.runs), [2])
        XCTAssertEqual(try XCTUnwrap(study.reports[0].rows[0].testAccuracyMean), 0.85, accuracy: 1e-12, "the two seeds of VGG on Fashion-MNIST only")
        XCTAssertEqual(study.reports[1].rows[0].testAccuracyMean, 0.5)
        XCTAssertEqual(study.reports[2].rows.map(\.scaling), [.uniform, .neuralscale])
        XCTAssertEqual(study.reports[1].rows[0].mflopsMean, try ResultsReport.measure(.vgg11, .cifar10, widths: uniform(0.25)).mflops,
                       "CIFAR's 32 px inputs, not Fashion-MNIST's 28")
        let out = folder.appendingPathComponent("study").path
        let names = try study.write(to: out).map { URL(fileURLWithPath: $0).lastPathComponent }
        XCTAssertEqual(names, ["report.md", "report.json", "accuracy-vs-params.svg", "accuracy-vs-mflops.svg",
                               "widths-vgg11-fashion-mnist.svg", "widths-vgg11-cifar10.svg", "widths-mobilenetv2-fashion-mnist.svg"])
        let md = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        XCTAssertTrue(md.hasPrefix("# 3 nets, 5 runs"), md)
        for title in ["## vgg11 on fashion-mnist: 2 runs", "## vgg11 on cifar10: 1 runs", "## mobilenetv2 on fashion-mnist: 2 runs"] {
            XCTAssertTrue(md.contains(title), "\(title) in\n\(md)")
        }
        let svg = try String(contentsOfFile: out + "/accuracy-vs-params.svg", encoding: .utf8)
        for name in ["vgg11 fashion-mnist uniform", "vgg11 cifar10 uniform", "mobilenetv2 fashion-mnist uniform", "mobilenetv2 fashion-mnist NeuralScale"] {
            XCTAssertTrue(svg.contains(">\(name)</text>"), name)
        }
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 4, "one line per (model, dataset, scaling)")
    }

    /// `--descent`: the search's iterations and the wall time of each from its timing.json; a
    /// timing.json of another search is refused, naming it.
    func testSearchTimeFromTimingFiles() throws {
        let dir = folder.appendingPathComponent("search")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let descent = try descentFixture(iterations: 2)
        let path = dir.appendingPathComponent("descent.json").path
        try JSONEncoder().encode(descent).write(to: URL(fileURLWithPath: path))
        let bare = try StudyReport.readSearch(path)
        XCTAssertEqual(bare.iterations, 2)
        XCTAssertNil(bare.secondsPerIteration, "no timing.json")
        let timing = SearchTiming(model: .vgg11, dataset: "fashion-mnist", secondsPerIteration: [30, 50], epochsPerIteration: [2, 2])
        try JSONEncoder().encode(timing).write(to: dir.appendingPathComponent("timing.json"))
        let timed = try StudyReport.readSearch(path)
        XCTAssertEqual(timed.secondsPerIteration, [30, 50])
        XCTAssertEqual(timed.meanSecondsPerIteration, 40)
        XCTAssertEqual(timed.totalSeconds, 80)
        let study = try StudyReport.load(results: [try file("r.json", resultJSON())], descents: [path])
        XCTAssertTrue(study.markdown().contains("## Search time") && study.markdown().contains("| 30, 50 |"), study.markdown())
        XCTAssertTrue(study.outputFiles.contains("search-time.svg"))
        XCTAssertTrue(study.searchChart().contains(">vgg11 fashion-mnist it 1</text>"))
        let other = SearchTiming(model: .vgg11, dataset: "fashion-mnist", secondsPerIteration: [30], epochsPerIteration: [2])
        try JSONEncoder().encode(other).write(to: dir.appendingPathComponent("timing.json"))
        XCTAssertThrowsError(try StudyReport.readSearch(path)) { XCTAssertTrue("\($0)".contains("timing.json") && "\($0)".contains("another search"), "\($0)") }
        try Data("{".utf8).write(to: dir.appendingPathComponent("timing.json"))
        XCTAssertThrowsError(try StudyReport.readSearch(path)) { XCTAssertTrue("\($0)".contains("timing.json"), "\($0)") }
    }

    /// Error bars widen the y range; a chart without them is drawn as before (no error paths).
    func testChartErrorBarsFitTheAxes() {
        let plain = SVGChart.Series(name: "a", points: [(1, 10), (2, 20)], color: "#000")
        XCTAssertFalse(SVGChart.lines(title: "t", xLabel: "x", yLabel: "y", series: [plain]).contains("<path"))
        let bars = SVGChart.Series(name: "a", points: [(1, 10), (2, 20)], color: "#000", yErrors: [nil, 15])
        let svg = SVGChart.lines(title: "t", xLabel: "x", yLabel: "y", series: [bars], yFromZero: false)
        XCTAssertEqual(svg.components(separatedBy: "<path d=").count - 1, 1)
        // The bar spans 5...35, so the axis runs from 0 to 40 in steps of 10 (without the bar it
        // would end at 20).
        XCTAssertTrue(svg.contains(">40</text>") && svg.contains(">0</text>") && svg.contains(">30</text>"), svg)
        let without = SVGChart.lines(title: "t", xLabel: "x", yLabel: "y", series: [plain], yFromZero: false)
        XCTAssertTrue(without.contains(">20</text>") && !without.contains(">40</text>"), without)
    }

    /// Ticks at round values: 1-2-5 steps with one number of decimals on a linear axis, decades
    /// (and 2, 5 within short ranges) on a log axis.
    func testTicksAreRound() {
        func linear(_ lo: Double, _ hi: Double) -> [String] { SVGChart.Ticks(low: lo, high: hi, log: false).labels }
        // The accuracy chart of the issue: 86.6...87.3 had labels 86.6, 86.7, 86.9, 87, 87.2, 87.3.
        XCTAssertEqual(linear(86.6, 87.3), ["86.6", "86.8", "87.0", "87.2", "87.4"])
        XCTAssertEqual(linear(18.1, 60.2), ["10", "20", "30", "40", "50", "60", "70"])
        XCTAssertEqual(linear(0, 1), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        XCTAssertEqual(linear(0, 0.037), ["0.00", "0.01", "0.02", "0.03", "0.04"])
        XCTAssertEqual(linear(-3, 7), ["-4", "-2", "0", "2", "4", "6", "8"])
        XCTAssertEqual(linear(0, 580_404), ["0", "200k", "400k", "600k"])
        XCTAssertEqual(linear(0, 12_000_000), ["0", "5M", "10M", "15M"])
        let ticks = SVGChart.Ticks(low: 86.6, high: 87.3, log: false).values
        for (a, b) in zip(ticks, ticks.dropFirst()) { XCTAssertEqual(b - a, 0.2, accuracy: 1e-9) }
        // Log axes: batch sizes 1...128 and latencies 0.06...21.8 ms get decades.
        XCTAssertEqual(SVGChart.Ticks(low: log10(1), high: log10(128), log: true).labels, ["1", "10", "100"])
        XCTAssertEqual(SVGChart.Ticks(low: log10(0.06), high: log10(21.8), log: true).labels, ["0.1", "1", "10"])
        XCTAssertEqual(SVGChart.Ticks(low: log10(3), high: log10(40), log: true).labels, ["5", "10", "20"])
        XCTAssertEqual(SVGChart.Ticks(low: log10(1e3), high: log10(1e7), log: true).labels, ["1000", "10k", "100k", "1M", "10M"])
        XCTAssertEqual(SVGChart.Ticks(low: log10(5.8e5), high: log10(2.3e6), log: true).labels, ["1M", "2M"])
        XCTAssertEqual(SVGChart.Ticks(low: log10(0.03), high: log10(0.4), log: true).labels, ["0.05", "0.1", "0.2"])
    }
}
