import ArchDescent
import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import Nets

/// `neuralscale fit`: trajectories recorded elsewhere fitted into a descent.json.
struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit pruning trajectories recorded elsewhere into a descent.json.",
        discussion: """
        Each --trajectory file is one iteration's trajectory, in the order given (the last one's \
        fit is the one `train --scaling neuralscale` and `widths` use): this tool's own \
        iteration-<i>-trajectory.csv (a header of the group names, then params), or the NeuralScale \
        reference implementation's headerless prune records, one row per pruning step with every \
        group's width in the spec's group order (commas or spaces), with or without a trailing P \
        column. P is recomputed for the net on --dataset's input; a given P must agree within 1%. \
        Fits w = alpha * P^beta per group by least squares on the log-log rows (fewer than 6 rows: \
        the uniform fallback of the reference), and writes descent.json atomically.
        """
    )

    @Option(name: .long, help: "The net the trajectories are of.")
    var model: Architecture

    @Option(name: .long, help: "The dataset they were recorded on (input channels, image size, classes).")
    var dataset: DatasetKind

    @Option(name: .long, parsing: .upToNextOption, help: "Trajectory files, one per iteration, in order.")
    var trajectory: [String] = []

    @Option(name: .long, help: "Where to write the descent.json.")
    var out: String

    @Flag(name: .long, help: "The trajectories are of a `descend --couple-residuals` search: fit and size each residual stream as one group (every row must give a stream's groups one width).")
    var coupleResiduals = false

    @Flag(name: .long, help: "Print the fits as one JSON object (the descent.json written).")
    var json = false

    func validate() throws {
        guard !trajectory.isEmpty else { throw ValidationError("give --trajectory files") }
        try checkOutputFile(out, flag: "--out", createsFolder: true)
    }

    func run() throws {
        let result = try TrajectoryImport.descent(model, dataset, files: trajectory, coupleResiduals: coupleResiduals)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(result)
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: out).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        try AtomicFile.write(data, to: out)
        if json {
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let last = result.iterations.last!
        print("\(model.rawValue) on \(dataset.rawValue): \(result.iterations.count) trajectories, the last with \(last.trajectory.count) rows"
              + (last.fit.fallbackReason.map { " (uniform fallback: \($0))" } ?? ""))
        let width = result.groupNames.map(\.count).max() ?? 0
        print("group".padding(toLength: width + 2, withPad: " ", startingAt: 0) + "     alpha      beta     R^2")
        for (name, g) in zip(result.groupNames, last.fit.groups) {
            print(name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                  + String(format: "%10.4g %9.4f  ", g.alpha, g.beta) + (g.rSquared.map { String(format: "%6.4f", $0) } ?? "     -"))
        }
        for s in result.ratios {
            print(String(format: "ratio %.2f: NeuralScale P %d (uniform %d), widths ", s.ratio, s.neuralscaleParams, s.uniformParams)
                  + s.neuralscaleWidths.map(String.init).joined(separator: ","))
        }
        print("wrote \(out)")
    }
}
