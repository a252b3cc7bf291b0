import ArgumentParser
import Checkpoint
import Foundation
import Reporting

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare training runs: accuracy, params and MFLOPs per scaling and ratio, with charts.",
        discussion: """
        Reads the result.json files written by `neuralscale train` (any mix of uniform and \
        NeuralScale runs, ratios and seeds, all of one model on one dataset) and groups them by \
        (scaling, ratio). Per group: the runs and their seeds, the mean and sample standard \
        deviation (n - 1) of the test accuracy over the seeds, and the mean params and MFLOPs \
        (2 x the multiply-accumulates of one image, counted as `neuralscale stats` counts them).

        Writes into --out: report.md (the table, the widths of every group, notes and the input \
        files), report.json (the same, machine-readable), accuracy-vs-params.svg and \
        accuracy-vs-mflops.svg (mean accuracy against the mean size on a log axis, one series \
        per scaling, error bars of one std over seeds) and widths.svg (the filters of every width \
        group, one series per scaling and ratio).
        """
    )

    @Argument(help: ArgumentHelp("The result.json files of the runs to compare.", valueName: "result.json"))
    var results: [String]

    @Option(name: .long, help: ArgumentHelp("Folder to write report.md, report.json and the three SVG charts into (created if needed; files are replaced atomically).",
                                            valueName: "dir"))
    var out: String

    @Flag(name: .long, help: "Print report.json to standard output instead of the table.")
    var json = false

    @Option(name: .long, parsing: .upToNextOption, help: "bench-infer.json files of the runs' checkpoints and int8 models: adds the device section.")
    var bench: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "quantize --json outputs of the runs: their int8 accuracy, and which checkpoint each int8 model is of.")
    var quantize: [String] = []

    @Option(name: .long, help: "The real-time budget of the device section, ms per image (16.67: 60 frames/s).")
    var budgetMs = 16.67

    func validate() throws {
        guard !results.isEmpty else { throw ValidationError("give at least one result.json") }
    }

    func run() throws {
        let report = try ResultsReport.load(results)
        var written = try report.write(to: out)
        var device: DeviceReport?
        if !bench.isEmpty {
            guard budgetMs.isFinite, budgetMs > 0 else { throw ValidationError("--budget-ms must be > 0, got \(budgetMs)") }
            let d = try DeviceReport.make(results: try results.map { ($0, try ResultsReport.readResult($0)) }, bench: bench,
                                          quantize: quantize, budget: budgetMs)
            device = d
            // The device section goes after the training table in report.md, and beside it as JSON and charts.
            let folder = URL(fileURLWithPath: out)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try AtomicFile.write(Data((report.markdown() + "\n" + d.markdown()).utf8), to: folder.appendingPathComponent("report.md").path)
            for (name, data) in [("device.json", try encoder.encode(d)), ("latency-vs-params.svg", Data(d.chart("latency").utf8)),
                                 ("memory-vs-params.svg", Data(d.chart("memory").utf8))] {
                try AtomicFile.write(data, to: folder.appendingPathComponent(name).path)
                written.append(folder.appendingPathComponent(name).path)
            }
        }
        if json {
            print(String(decoding: try report.json(), as: UTF8.self))
        } else {
            print(report.markdown(), terminator: "")
            if let device { print("\n" + device.markdown(), terminator: "") }
            print("\nwritten: \(written.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", ")) in \(out)")
        }
    }
}
