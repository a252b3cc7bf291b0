import ArgumentParser
import Foundation
import Reporting
import Training

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare training runs: accuracy, params and MFLOPs per scaling and ratio, search time and devices, with charts.",
        discussion: """
        Reads the result.json files written by `neuralscale train` (any mix of models, datasets, \
        uniform and NeuralScale runs, ratios and seeds). Runs of each (model, dataset) get a \
        table of their own, grouped by (scaling, ratio): the runs and their seeds, the mean, \
        sample standard deviation (n - 1) and maximum of the test accuracy over the seeds, the \
        mean params and MFLOPs (2 x the multiply-accumulates of one image, as `neuralscale stats` \
        counts them) and the training seconds per epoch. Different models or datasets are never \
        averaged together: they are separate tables and separate chart series.

        Writes into --out: report.md, report.json (the same, machine-readable), \
        accuracy-vs-params.svg and accuracy-vs-mflops.svg (mean accuracy against the mean size \
        on a log axis, one series per (model, dataset, scaling), error bars of one std over \
        seeds), and widths.svg (widths-<model>-<dataset>.svg for several nets).

        --descent adds the search time per iteration (search-time.svg). --bench (with \
        --quantize for int8 accuracy) adds the device section: batch-1 latency and memory per \
        run, backend and precision, the lines of latency and memory against params with \
        Pearson's r and p, the relative speed uniform / NeuralScale, the comparison against the \
        unscaled fp32 net, device.json, latency-vs-params.svg, memory-vs-params.svg, \
        accuracy-vs-latency.svg and accuracy-vs-memory.svg (the budget drawn as a line).
        """
    )

    @Argument(help: ArgumentHelp("The result.json files of the runs to compare.", valueName: "result.json"))
    var results: [String]

    @Option(name: .long, help: ArgumentHelp("Folder to write report.md, report.json and the SVG charts into (created if needed; files are replaced atomically).",
                                            valueName: "dir"))
    var out: String

    @Flag(name: .long, help: "Print report.json to standard output instead of the tables.")
    var json = false

    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("descent.json files of `neuralscale descend`: the searches' iterations and the wall time of each (from the timing.json beside it).",
                                                                       valueName: "descent.json"))
    var descent: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "bench-infer.json files of the runs' checkpoints and int8 models: adds the device section.")
    var bench: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "quantize --json outputs of the runs: their int8 accuracy, and which checkpoint each int8 model is of.")
    var quantize: [String] = []

    @Option(name: .long, help: "The real-time budget of the device section, ms per image (16.67: 60 frames/s).")
    var budgetMs = 16.67

    func validate() throws {
        guard !results.isEmpty else { throw ValidationError("give at least one result.json") }
        guard budgetRange.contains(budgetMs) else { throw ValidationError("--budget-ms must be in 0.001...1e7 (1 us to about 3 hours), got \(budgetMs)") }
        if !quantize.isEmpty, bench.isEmpty { throw ValidationError("--quantize needs --bench: int8 accuracy goes into the device section") }
    }

    func run() throws {
        let study = try StudyReport.load(results: results, descents: descent, bench: bench, quantize: quantize, budget: budgetMs)
        // What a killed report left (its files' temporaries) goes; the files are rewritten whole.
        RunFolder.removeStaleTemporaries(in: out, exclusive: false)
        let written = try study.write(to: out)
        if json {
            print(String(decoding: try study.json(), as: UTF8.self))
        } else {
            print(study.markdown(), terminator: "")
            print("\nwritten: \(written.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", ")) in \(out)")
        }
    }
}
