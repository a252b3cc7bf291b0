import ArchDescent
import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import MessagePassing
import Nets
import Pruning
import Reporting
import Training

/// Prints descent progress: a line redrawn after every pruning step on a terminal; otherwise a
/// plain line at most every 30 seconds, and one per iteration.
final class ConsoleDescentReporter: DescentReporter {
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastLine = Date.distantPast
    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    func iterationStarted(_ index: Int, of total: Int, widths: [Int], params: Int, resumedAt epoch: Int?) {
        let how = epoch.map { "resumed in epoch \($0) from state.h5" } ?? "fresh net"
        write((isTerminal ? "\r\u{1B}[K" : "") + "iteration \(index + 1)/\(total): \(how), \(params) parameters, widths \(widths)\n")
    }

    func pruned(iteration: Int, epoch: Int, channels: Int, of total: Int, params: Int, etaSeconds: Double?) {
        let line = "iteration \(iteration + 1) epoch \(epoch): \(channels)/\(total) channels left, P \(params)"
            + (etaSeconds.map { ", ETA \(formatDuration($0))" } ?? "")
        if isTerminal {
            write("\r\u{1B}[K" + line)
        } else if Date().timeIntervalSince(lastLine) >= 30 {  // plain lines for logs, not too many
            lastLine = Date()
            write(line + "\n")
        }
    }

    func epochFinished(iteration: Int, epoch: Int, warmup: Bool, channels: Int, of total: Int, params: Int, seconds: Double) {
        write((isTerminal ? "\r\u{1B}[K" : "") + "iteration \(iteration + 1) epoch \(epoch)\(warmup ? " (warm-up)" : ""): "
              + "\(channels)/\(total) channels left, P \(params), \(formatDuration(seconds)) into the iteration\n")
    }

    func iterationFinished(_ it: DescentIteration, of total: Int) {
        let r2 = it.fit.groups.compactMap(\.rSquared)
        let good = r2.filter { $0 >= 0.9 }.count
        write((isTerminal ? "\r\u{1B}[K" : "") + "iteration \(it.index + 1)/\(total) done after \(it.epochs) epochs "
              + "(\(it.stop.map(\.rawValue) ?? "?")): \(it.trajectory.count) trajectory rows, "
              + (it.fit.isFallback ? "fit fell back to uniform scaling" : "R^2 >= 0.9 in \(good)/\(r2.count) groups") + "\n")
    }

    func message(_ text: String) { write((isTerminal ? "\r\u{1B}[K" : "") + text + "\n") }
}

struct Descend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the NeuralScale search: Taylor-FO pruning runs, power-law fits and architecture descent.",
        discussion: """
        Writes under --out (default checkpoints/<model>-<dataset>/descent/): per iteration \
        iteration-<i>-trajectory.csv (filters per group and P after every pruning step) and \
        iteration-<i>-fit.json (alpha, beta, R^2 per group); descent.json (all fits, and the \
        NeuralScale and uniform widths and P at ratios 0.25-1.0); timing.json (wall seconds \
        and epochs of every finished iteration, read by `report --descent`); widths-r1.0.svg and \
        iteration-<i>-trajectory.svg. state.h5 is saved atomically after every pruning step: \
        Ctrl-C, then --resume, continues from there. Use the result with \
        `neuralscale train --scaling neuralscale --descent <out>/descent.json --ratio R`.
        """
    )

    @Option(name: .long, help: "The net.")
    var model: Architecture
    @Option(name: .long, help: "The dataset.")
    var dataset: DatasetKind
    @Option(name: .long, help: "'quick': a demonstration in minutes (base ratio 0.25, 1 warm-up epoch, pruning every 10 minibatches, 3 iterations, 5000 images). Explicit flags override it.")
    var preset: DescentPreset?
    @Option(name: .long, help: "Architecture-descent iterations (pruning runs). (default: 15)")
    var iterations: Int?
    @Option(name: .long, help: "Epochs of training before pruning starts. (default: 10)")
    var warmup: Int?
    @Option(name: .long, help: "Warm-up learning rate; afterwards 0.01, divided by 1.5 every 10 epochs. (default: 0.1)")
    var lr: Float?
    @Option(name: .long, help: "Images per minibatch. (default: 128)")
    var batchSize: Int?
    @Option(name: .long, help: "Minibatches between pruning steps. (default: 50; 100 for tinyimagenet)")
    var pruneEvery: Int?
    @Option(name: .long, help: "Channels pruned per step. (default: 10)")
    var pruneCount: Int?
    @Option(name: .long, help: "Stop a pruning run once this fraction of all channels is pruned. (default: 0.95)")
    var pruneMax: Double?
    @Option(name: .long, help: "Iteration 0 starts from the uniform net at this ratio, and every config keeps its P. (default: 1.0)")
    var baseRatio: Double?
    @Option(name: .long, help: "Seed of initialization, split, shuffling and augmentation.")
    var seed: UInt64 = 0
    @Option(name: .long, help: "Search on a seeded random subset of N training images (a search has no validation split). 2 <= N <= the training set's size.")
    var subset: Int?
    @Option(name: .long, help: "Dataset root folder (default: the dataset's usual place).")
    var dataDir: String?
    @Option(name: .long, help: "Output folder.")
    var out: String?
    @Flag(name: .long, help: "Prune the width groups joined by identity shortcuts (a residual stream: e.g. PreAct ResNet-18's stem and first two block outputs) as one group, so they keep one width and their shortcuts stay identities: no 1x1 projections where the default gives the two ends different widths, no channel gathers after surgery. Each stream gets one power law; descent.json records the coupling and every later use of it (train, widths, stats, advise) keeps it.")
    var coupleResiduals = false
    @Flag(name: .long, help: "Continue the search in --out from its state.h5.")
    var resume = false

    func validate() throws {
        do { try makeConfig().validate() } catch { throw ValidationError("\(error)") }
    }

    /// The preset (or the papers' settings), with the flags given.
    func makeConfig() -> DescentConfig {
        var config = DescentConfig.preset(preset, model: model, dataset: dataset, seed: seed)
        config.iterations = iterations ?? config.iterations
        config.warmupEpochs = warmup ?? config.warmupEpochs
        config.learningRate = lr ?? config.learningRate
        config.batchSize = batchSize ?? config.batchSize
        config.pruning.frequency = pruneEvery ?? config.pruning.frequency
        config.pruning.count = pruneCount ?? config.pruning.count
        config.pruning.maxFraction = pruneMax ?? config.pruning.maxFraction
        config.baseRatio = baseRatio ?? config.baseRatio
        config.subset = subset ?? config.subset
        config.coupleResiduals = coupleResiduals ? true : nil
        return config
    }

    func run() throws {
        let kind = dataset
        let config = makeConfig()
        let output = out ?? "checkpoints/\(model.rawValue)-\(dataset.rawValue)/descent"
        let template = NetDescription.uniform(config.model, ratio: 1, inChannels: kind.channels, imageSize: kind.imageSize,
                                              classes: kind.classes)
        // Under `mpirun`: one search run by every process, each on its part of every batch.
        let parallel = try DataParallelRun.launch()
        try parallel.run {
            try parallel.requireBatch(config.batchSize)
            // Held from before the data is loaded to the end: a second search into --out stops at once.
            let folder = parallel.leads ? try RunFolder.acquire(output) : nil
            defer { folder?.release() }
            try Descent.preflight(config: config, template: template, outputDirectory: output, resume: resume)
            if coupleResiduals && parallel.leads {
                var base = template
                base.widths = model.uniformWidths(ratio: config.baseRatio)
                let streams = base.identityCoupling
                FileHandle.standardError.write(Data((streams.isEmpty
                    ? "note: \(model.rawValue) has no identity shortcuts; --couple-residuals changes nothing\n"
                    : "residual streams pruned as one: " + model.describe(coupling: streams) + "\n").utf8))
            }
            installInterruptHandler()
            var data = try config.trainingData(kind, directory: dataDir, reporter: parallel.leads ? ConsoleReporter() : nil)
            if let group = parallel.group { data = data.part(group.rank, of: group.size) }
            let descent = Descent(config: config, template: template, train: data.train, outputDirectory: output,
                                  reporter: parallel.leads ? ConsoleDescentReporter() : nil, group: parallel.group)
            descent.shouldStop = { iteration, epoch, batch in stopRequested(at: [iteration, epoch, batch]) }
            descent.dataChecksum = data.checksum
            descent.beforeResult = { _ = try $0.writeCharts(in: output) }
            let result = try descent.run(resume: resume)
            guard parallel.leads else { return }
            print(WidthsTable.render(result, ratio: 1.0))
            print("\nwritten: \(descent.resultPath), widths-r1.0.svg, iteration-<i>-trajectory.csv/.svg, iteration-<i>-fit.json, timing.json in \(output)")
        }
    }
}

extension DescentPreset: ExpressibleByArgument {}

struct Widths: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the uniform and NeuralScale widths of every group side by side.")

    @Option(name: .long, help: "A descent.json written by `neuralscale descend`.")
    var descent: String
    @Option(name: .long, help: "Width ratio (the NeuralScale net gets the uniform net's P at this ratio). (default: 1)")
    var ratio: Double?
    private var widthRatio: Double { ratio ?? 1 }
    @Option(name: .long, help: "Use this iteration's fit (default: the last).")
    var iteration: Int?
    @Flag(name: .long, help: "Print one JSON object.")
    var json = false
    @OptionGroup(title: "Resource budgets (instead of --ratio's parameter count)")
    var budget: BudgetFlags

    func validate() throws {
        if let ratio, !(ratio > 0 && ratio <= 4) { throw ValidationError("--ratio must be in (0, 4], got \(ratio)") }
        if budget.given, ratio != nil { throw ValidationError("give --ratio or a --target-..., not both") }
    }

    func run() throws {
        let result = try DescentResult.load(descent)
        if budget.given || budget.channelMultiple != nil { return try runBudget(result) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            struct Report: Encodable { let groups: [String]; let scaled: ScaledConfig; let iteration: Int }
            let report = Report(groups: result.groupNames, scaled: try result.scaled(ratio: widthRatio, iteration: iteration, file: descent),
                                iteration: iteration ?? result.iterations.last?.index ?? 0)
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            let scaled = try result.scaled(ratio: widthRatio, iteration: iteration, file: descent)  // surfaces a bad --iteration
            print(WidthsTable.render(result, ratio: widthRatio, iteration: iteration))
            if let clamped = scaled.clampedGroups {
                print("warning: the fit gives less than half a channel to \(clamped.joined(separator: ", ")); they get width 1")
            }
            if let warning = scaled.paramsWarning { print(warning) }
        }
    }

    /// Both scalings solved to a resource budget (or --ratio's P with a channel multiple).
    func runBudget(_ result: DescentResult) throws {
        let fit = try result.fit(iteration: iteration)
        let (b, uniform, neuralscale) = try budget.solve(ratio: widthRatio, template: result.template, fit: fit)
        let solved = [uniform] + (neuralscale.map { [$0] } ?? [])
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            struct Report: Encodable { let groups: [String]; let measure: String; let target: Double; let model: String; let nets: [BudgetedWidths] }
            print(String(decoding: try encoder.encode(Report(groups: result.groupNames, measure: b.measure.rawValue, target: b.target,
                                                             model: b.model, nets: solved)), as: UTF8.self))
            return
        }
        print("\(result.template.architecture.rawValue) at \(b.target) \(b.measure.unit) (\(b.model))")
        for s in solved { print("  " + s.summary) }
        let width = max(5, result.groupNames.map(\.count).max() ?? 0)
        print("group".padding(toLength: width + 2, withPad: " ", startingAt: 0) + "   uniform  neuralscale")
        for (g, name) in result.groupNames.enumerated() {
            print(name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                + String(format: "%10d  %11@", uniform.widths[g], neuralscale.map { String($0.widths[g]) } ?? "-"))
        }
    }
}
