import ArchDescent
import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import MessagePassing
import Nets
import Training

/// Set by the first SIGINT; the trainer stops at its next check and the last checkpoint stays
/// valid. `sig_atomic_t` is the type a signal handler may write.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

/// The first Ctrl-C (or SIGTERM) asks the run to stop cleanly; the handler then restores the
/// default, so a second one ends the process at once (the next run in that folder removes the
/// temporary files it may leave).
func installInterruptHandler() {
    for sig in [SIGINT, SIGTERM] {
        signal(sig) { s in
            interruptRequested = 1
            signal(s, SIG_DFL)
        }
    }
}

/// The position NEURALSCALE_STOP_AT names ("E:S" for `train`, "I:E:B" for `descend`: the
/// arguments of the trainer's or the search's `shouldStop`), at which the run stops as after a
/// Ctrl-C: the tests' way to interrupt a run (under `mpirun` too) at a chosen step.
let stopPosition: [Int]? = ProcessInfo.processInfo.environment["NEURALSCALE_STOP_AT"].map {
    $0.split(separator: ":").compactMap { Int($0) }
}

/// Whether the run should stop at `position`: a Ctrl-C or SIGTERM came, or NEURALSCALE_STOP_AT
/// names this position.
func stopRequested(at position: [Int]) -> Bool { interruptRequested != 0 || stopPosition == position }

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a scaled net from scratch with SGD, keeping resumable checkpoints.",
        discussion: """
        Writes to --out (default checkpoints/<model>-<dataset>-<scaling>-r<R>-s<seed>/, with a \
        budget's and --channel-multiple's tags before -s): last.h5 after every epoch, best.h5 \
        whenever validation accuracy improves, metrics.jsonl (one JSON line per \
        epoch), and result.json with the test accuracy of best.h5 at the end. Checkpoints are \
        written atomically; Ctrl-C stops after the current step and --resume continues exactly \
        (bit-identical to an uninterrupted run). A NaN or infinite loss stops the run and keeps \
        the last good checkpoint.

        Data-parallel: `mpirun -np N neuralscale train ...` trains the one net on N processes (one \
        host or many, --out and the data on a shared file system), each on its slice of every \
        --batch-size batch with batch norm's statistics and the gradients summed over all: what \
        one process computes, to rounding. Process 0 writes the files; --resume works with any N.
        """
    )

    @Option(name: .long, help: "The net.")
    var model: Architecture

    @Option(name: .long, help: "The dataset.")
    var dataset: DatasetKind

    @Option(name: .long, help: "Width ratio R: uniform scaling makes every width Int(width * R); NeuralScale scaling matches that net's P. Required unless a --target-... is given.")
    var ratio: Double?

    @OptionGroup(title: "Resource budgets (instead of --ratio's parameter count)")
    var budget: BudgetFlags

    var budgeted: Bool { budget.given || budget.channelMultiple != nil }

    @Option(name: .long, help: "How widths are scaled: 'uniform' (every width times R) or 'neuralscale' (the widths of a search's fit with the uniform net's P at R; needs --descent).")
    var scaling = "uniform"

    @Option(name: .long, help: "With --scaling neuralscale: the descent.json written by `neuralscale descend`.")
    var descent: String?

    @Option(name: .long, help: "With --scaling neuralscale: use this iteration's fit (default: the last).")
    var iteration: Int?

    @Option(name: .long, help: "Dataset root folder (default: the dataset's usual place; see the README).")
    var dataDir: String?

    @Option(name: .long, help: "Epochs to train.")
    var epochs = 150

    @Option(name: .long, help: "Images per SGD step.")
    var batchSize = 128

    @Option(name: .long, help: "Initial learning rate.")
    var lr: Float = 0.1

    @Option(name: .long, help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(name: .long, help: "Weight decay (L2), applied to every parameter.")
    var weightDecay: Float = 5e-4

    @Option(name: .long, help: "Comma-separated epochs where the learning rate is divided by 10 (default: 1/3, 2/3 and 5/6 of --epochs).")
    var milestones: String?

    @Option(name: .long, help: "Fraction of the training set held out for validation (selects best.h5).")
    var valSplit = 0.2

    @Option(name: .long, help: "Seed of initialization, split, shuffling and augmentation.")
    var seed: UInt64 = 0

    @Option(name: .long, help: "Train on a seeded random subset of N images of the training part (what --val-split leaves; validation and test sets stay whole), for quick runs. 2 <= N <= that part's size; result.json records it.")
    var subset: Int?

    @Option(name: .long, help: "Output folder.")
    var out: String?

    @Flag(name: .long, help: "Continue the run in --out from its last.h5.")
    var resume = false

    func validate() throws {
        guard let scale = Scaling(rawValue: scaling) else {
            throw ValidationError("--scaling \(scaling) is not one of \(Scaling.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try validateScaling(scale, descent: descent, iteration: iteration)
        if budget.given {
            guard ratio == nil else { throw ValidationError("give --ratio or a --target-..., not both") }
        } else {
            guard let ratio else { throw ValidationError("give --ratio R or a --target-mflops, --target-latency-ms or --target-memory-mb") }
            guard ratio > 0, ratio <= 4 else { throw ValidationError("--ratio must be in (0, 4], got \(ratio)") }
        }
        // Bounds first: the default milestones are computed from --epochs.
        guard epochs >= 1, epochs <= 100_000 else { throw ValidationError("--epochs must be in 1...100000, got \(epochs)") }
        guard batchSize >= 2, batchSize <= 65_536 else {
            throw ValidationError("--batch-size must be in 2...65536 (batch norm needs two images), got \(batchSize)")
        }
        // Every setting, before anything is computed from it (a NaN --ratio would trap in a width).
        // (With a budget the ratio comes from the solved widths at run time; 1 stands in here.)
        do { try makeConfig(ratio: ratio ?? 1, solved: nil).validate() } catch { throw ValidationError("\(error)") }
    }

    /// The net to train: the scaled net at --ratio, or the one sized to the budget, whose ratio
    /// is the uniform net's of the same P (`sqrt(P / P0)`, the studies' S).
    func scaledNet() throws -> (net: ScaledNet, ratio: Double, budget: BudgetedWidths?) {
        guard budgeted else {
            return (try ScaledNet.make(model, dataset, ratio: ratio!, descent: descent, iteration: iteration), ratio!, nil)
        }
        var template = NetDescription.uniform(model, ratio: 1, inChannels: dataset.channels, imageSize: dataset.imageSize,
                                              classes: dataset.classes)
        let p0 = Double(template.parameterCount)
        let neuralscale = Scaling(rawValue: scaling) == .neuralscale
        let fit = try neuralscale ? DescentResult.load(descent!).fit(iteration: iteration) : nil
        let solved = try budget.solve(ratio: ratio ?? 1, template: template, fit: fit)
        let chosen = neuralscale ? solved.neuralscale! : solved.uniform
        template.widths = chosen.widths
        do { try template.validate() } catch { throw ValidationError("the budget's widths: \(error)") }
        let r = ratio ?? (Double(chosen.params) / p0).squareRoot()
        return (ScaledNet(description: template, descent: neuralscale ? descent : nil), (r * 1e4).rounded() / 1e4, chosen)
    }

    /// The run's settings, with the net's ratio and the budget it was sized to.
    func makeConfig(ratio: Double, solved: BudgetedWidths?) throws -> TrainConfig {
        var config = TrainConfig(model: model, dataset: dataset.rawValue, scaling: Scaling(rawValue: scaling) ?? .uniform, ratio: ratio,
                                 epochs: epochs, batchSize: batchSize, learningRate: lr, momentum: momentum,
                                 weightDecay: weightDecay, milestones: try parsedMilestones(), validationSplit: valSplit,
                                 seed: seed, subset: subset)
        config.descent = descent
        config.descentIteration = iteration
        if let solved, budget.given || solved.multiple > 1 {
            config.budget = String(format: "%@ %.6g%@", solved.measure.rawValue, solved.target, solved.multiple > 1 ? ", multiple \(solved.multiple)" : "")
        }
        return config
    }

    func parsedMilestones() throws -> [Int]? {
        guard let milestones else { return nil }
        let parts = milestones.split(separator: ",", omittingEmptySubsequences: false)
            .map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--milestones must be comma-separated epochs like 50,100,125, got '\(milestones)'")
        }
        return parts.map { $0! }
    }

    func run() throws {
        let kind = dataset
        // Reading --descent (and a latency table) here, not in validate: a bad file is a file
        // error (exit status 1), not a usage error.
        let (scaled, ratio, solved) = try scaledNet()
        let config = try makeConfig(ratio: ratio, solved: solved)
        let budgetTag = [budget.targetMflops.map { "-mflops\($0)" }, budget.targetLatencyMs.map { "-ms\($0)" },
                         budget.targetMemoryMb.map { "-mb\($0)" }, budget.channelMultiple.map { "-k\($0)" }].compactMap { $0 }.joined()
        let output = out ?? "checkpoints/\(model.rawValue)-\(dataset.rawValue)-\(scaling)-r\(config.ratio)\(budgetTag)-s\(seed)"
        // Under `mpirun`: one net trained by every process, each on its part of every batch.
        let parallel = try DataParallelRun.launch()
        try parallel.run {
            try parallel.requireBatch(batchSize)
            if parallel.leads {
                for line in [scaled.clampWarning, scaled.summary, solved.map { "budget: " + $0.summary }].compactMap({ $0 }) {
                    FileHandle.standardError.write(Data((line + "\n").utf8))
                }
            }
            let description = scaled.description
            // The folder is locked from here to the end (a second run into --out stops at once),
            // and settings, net and folder are checked before the (possibly long) data loading.
            let folder = parallel.leads ? try RunFolder.acquire(output) : nil
            defer { folder?.release() }
            try Trainer.preflight(config: config, netDescription: description, outputDirectory: output, resume: resume)
            let reporter = parallel.leads ? ConsoleReporter() : nil
            installInterruptHandler()
            var data = try DatasetSources.load(kind, directory: dataDir, validationSplit: valSplit, seed: seed,
                                               subset: subset, batchSize: batchSize, reporter: reporter)
            if let group = parallel.group { data = data.part(group.rank, of: group.size) }
            let trainer = Trainer(config: config, netDescription: description, train: data.train,
                                  validation: data.validation, test: data.test, outputDirectory: output,
                                  inputNormalization: data.normalization, reporter: reporter, group: parallel.group)
            trainer.shouldStop = { epoch, step in stopRequested(at: [epoch, step]) }
            trainer.dataChecksum = data.checksum
            _ = try trainer.run(resume: resume)
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the test accuracy of a checkpoint.",
        discussion: "The net, its input normalization and (unless --dataset is given) its dataset come from the checkpoint itself."
    )

    @Option(name: .long, help: "A checkpoint written by `neuralscale train` (last.h5 or best.h5).")
    var checkpoint: String

    @Option(name: .long, help: "Evaluate on this dataset's test set instead of the one the net was trained on.")
    var dataset: DatasetKind?

    @Option(name: .long, help: "Dataset root folder (default: the dataset's usual place).")
    var dataDir: String?

    @Option(name: .long, help: "Images per evaluation batch.")
    var batchSize = 256

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard batchSize >= 1, batchSize <= 65_536 else { throw ValidationError("--batch-size must be in 1...65536, got \(batchSize)") }
    }

    func run() throws {
        let result = try CheckpointEvaluation.run(checkpoint: checkpoint, dataset: dataset?.rawValue, directory: dataDir, batchSize: batchSize,
                                                  reporter: ConsoleReporter())
        // Finite weights can still overflow on the way (a huge weight, times a batch norm's scale):
        // no accuracy of such a net means anything.
        guard result.testLoss.isFinite else {
            throw CheckpointError(path: checkpoint, message: "its net's test loss is \(result.testLoss) (its weights overflow float32 on the way), so no accuracy is reported")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            print("\(checkpoint) on \(result.dataset) test (\(result.images) images): "
                  + String(format: "accuracy %.2f%%, loss %.4f", 100 * result.testAccuracy, result.testLoss))
        }
    }
}
