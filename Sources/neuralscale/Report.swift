import ArgumentParser
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

    func validate() throws {
        guard !results.isEmpty else { throw ValidationError("give at least one result.json") }
    }

    func run() throws {
        let report = try ResultsReport.load(results)
        let written = try report.write(to: out)
        if json {
            print(String(decoding: try report.json(), as: UTF8.self))
        } else {
            print(report.markdown(), terminator: "")
            print("\nwritten: \(written.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", ")) in \(out)")
        }
    }
}
