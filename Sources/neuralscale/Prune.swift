import ArchDescent
import ArgumentParser
import Checkpoint
import Datasets
import Export
import MessagePassing
import Foundation
import Nets
import Pruning
import Training

/// `neuralscale prune`: a trained net pruned down to a target, physically smaller.
struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune a trained net down to an MFLOPs, parameter or channel target, then fine-tune it.",
        discussion: """
        Taylor-FO importance of every channel (the square of gate times its gradient, summed over \
        minibatches, as the search scores channels), or with --importance magnitude the mean |w| \
        of the weights producing it, ranked over all width groups; the lowest \
        channels are pruned every --prune-every minibatches of training (SGD at --lr on the \
        checkpoint's own training split and input normalization), which both recovers the \
        accuracy lost and scores the next step, until the net that surgery makes meets the \
        target. The channels per step are the channels the target is estimated to remove, over \
        --step-count steps. Then surgery to a physically smaller net (identity shortcuts whose \
        ends lost different channels become channel selections, 0/1 1x1 convs in the exported graph; \
        with --couple-residuals the groups joined by identity shortcuts are pruned together and \
        the shortcuts stay identities), --fine-tune-epochs epochs of \
        SGD at --lr, and a normal checkpoint that eval, export, quantize, stats and bench infer \
        accept.

        Writes <out>/pruned.h5 and <out>/prune.json: params, MFLOPs, widths and ONNX Runtime's \
        batch-1 latency (unless --no-latency) before and after, the test accuracy before, after \
        pruning and after fine-tuning (default out: <checkpoint's folder>/pruned).
        """
    )

    @Option(name: .long, help: "A checkpoint of `neuralscale train` (best.h5 or last.h5).")
    var checkpoint: String

    @Option(name: .long, help: "Prune until the net has at most this many MFLOPs per image.")
    var targetMflops: Double?

    @Option(name: .long, help: "Prune until the net has at most this many parameters.")
    var targetParams: Int?

    @Option(name: .long, help: "Prune until at most this share of the channels (all groups together) is left, in (0, 1).")
    var keep: Double?

    @Option(name: .long, help: "How channels are ranked: 'taylor' (Taylor-FO gate scores over the minibatches since the last step) or 'magnitude' (mean |w| of the weights producing the channel).")
    var importance: PruneImportance = .taylor

    @Option(name: .long, help: "Pruning steps the channels to remove are spread over (the run goes on until the target is met).")
    var stepCount = 10

    @Option(name: .long, help: "Minibatches of recovery training (and scoring) between pruning steps.")
    var pruneEvery = 20

    @Option(name: .long, help: "Learning rate of recovery training and fine-tuning (constant).")
    var lr: Float = 0.01

    @Option(name: .long, help: "Once the target is met, prune every group down to a multiple of K (the lowest-scored channels; a group narrower than K stays): widths ONNX Runtime runs on its fast paths.")
    var channelMultiple = 1

    @Flag(name: .long, help: "Prune the width groups joined by identity shortcuts (a residual stream) as one group: a channel goes from all of them or none, so those shortcuts stay identities (no new channel selections in the exported graph; selections a pruned checkpoint already has stay). A stream's channel is scored as one gate on all its groups and ranked per filter it removes. VGG-11 has no shortcuts: no effect.")
    var coupleResiduals = false

    @Option(name: .long, help: "Epochs of fine-tuning after surgery.")
    var fineTuneEpochs = 1

    @Option(name: .long, help: "Images per SGD step.")
    var batchSize = 64

    @Option(name: .long, help: "Dataset root folder (default: the dataset's usual place).")
    var dataDir: String?

    @Option(name: .long, help: "Train on a seeded subset of N training images (default: the checkpoint's run's).")
    var subset: Int?

    @Option(name: .long, help: "Output folder (default: <checkpoint's folder>/pruned).")
    var out: String?

    @Flag(name: .long, help: "Print prune.json's object instead of the summary.")
    var json = false

    @Flag(name: .long, help: "Do not time the net before and after on ONNX Runtime (batch 1).")
    var noLatency = false

    var target: PruneTarget? {
        if let targetMflops { return .mflops(targetMflops) }
        if let targetParams { return .params(targetParams) }
        return keep.map(PruneTarget.keep)
    }

    func validate() throws {
        guard [targetMflops != nil, targetParams != nil, keep != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give one target: --target-mflops, --target-params or --keep")
        }
        if let targetMflops, !(targetMflops.isFinite && targetMflops > 0) { throw ValidationError("--target-mflops must be > 0, got \(targetMflops)") }
        if let targetParams, targetParams <= 0 { throw ValidationError("--target-params must be > 0, got \(targetParams)") }
        if let keep, !(keep > 0 && keep < 1) { throw ValidationError("--keep must be in (0, 1), got \(keep)") }
        guard (1...512).contains(channelMultiple) else { throw ValidationError("--channel-multiple must be in 1...512, got \(channelMultiple)") }
        guard (1...10_000).contains(stepCount) else { throw ValidationError("--step-count must be in 1...10000, got \(stepCount)") }
        guard (1...100_000).contains(pruneEvery) else { throw ValidationError("--prune-every must be in 1...100000, got \(pruneEvery)") }
        guard lr.isFinite, lr > 0 else { throw ValidationError("--lr must be > 0, got \(lr)") }
        guard (0...10_000).contains(fineTuneEpochs) else { throw ValidationError("--fine-tune-epochs must be in 0...10000, got \(fineTuneEpochs)") }
        guard (2...65_536).contains(batchSize) else { throw ValidationError("--batch-size must be in 2...65536, got \(batchSize)") }
        if let subset, subset < 2 { throw ValidationError("--subset must be >= 2, got \(subset)") }
    }

    func run() throws {
        let source = try NetCheckpoint.load(checkpoint)
        guard case let .trained(state) = CheckpointContents(source.loaded) else {
            throw CheckpointUseError("\(checkpoint) is not a checkpoint of `neuralscale train`: prune needs its trained net, dataset and normalization")
        }
        let (kind, normalization) = try source.inputs(nil)
        let trained = source.network
        guard !trained.isGated else { throw CheckpointUseError("\(checkpoint) holds a gated net; prune takes a trained net") }
        let output = out ?? URL(fileURLWithPath: checkpoint).deletingLastPathComponent().appendingPathComponent("pruned").path
        // pruned.h5 is removed before the new one is written: never the checkpoint being pruned.
        let checkpointPath = output + "/pruned.h5"
        try refuseWritingOverInput(output: checkpointPath, flag: "--out", input: checkpoint, inputFlag: "--checkpoint")
        // One prune per folder: two into one --out (or one per process under mpirun, which prune
        // is not made for) could leave one's pruned.h5 beside the other's prune.json. The lock
        // also removes what killed prunes left there.
        if let size = MPIGroup.launchedProcesses, size > 1 {
            throw TrainingError.invalidConfig("prune runs in one process, not under mpirun or srun (\(size) processes would each prune into \(output))")
        }
        let folder = try RunFolder.acquire(output)
        defer { folder.release() }
        let config = state.config
        let data = try DatasetSources.load(kind, directory: dataDir, validationSplit: config.validationSplit, seed: config.seed,
                                           subset: subset ?? config.subset, batchSize: batchSize, reporter: nil,
                                           normalization: normalization)
        let settings = TargetPruning.Settings(target: target!, stepCount: stepCount, recoveryBatches: pruneEvery, learningRate: lr,
                                              fineTuneEpochs: fineTuneEpochs, multiple: channelMultiple,
                                              importance: importance, coupleResiduals: coupleResiduals)
        if coupleResiduals && trained.netDescription.identityCoupling.isEmpty {
            FileHandle.standardError.write(Data("note: \(checkpoint)'s net has no identity shortcuts; --couple-residuals changes nothing\n".utf8))
        }
        installInterruptHandler()
        var (net, report) = try TargetPruning.run(trained, data: data, settings: settings, checkpoint: checkpoint,
                                                  stopRequested: { stopRequested(at: []) }) { line in
            if !json { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        if !noLatency {
            let timing = LatencyTableMeasurement.Settings(multiple: 1, points: 2, maxRatio: 1, threads: 0, warmup: 20, runs: 80, trials: 3)
            report.latencyMsBefore = try LatencyTableMeasurement.endToEndMs(trained.netDescription, timing, name: "before")
            report.latencyMsAfter = try LatencyTableMeasurement.endToEndMs(net.netDescription, timing, name: "after")
        }
        // A checkpoint of the pruned net with the run's state, so every command reads it as trained.
        var pruned = state
        pruned.widths = net.netDescription.widths
        pruned.config.budget = "pruned from \(checkpoint) to \(report.target)"
        pruned.history = []
        pruned.bestValidationAccuracy = nil
        pruned.bestEpoch = nil
        pruned.completedEpochs = state.completedEpochs + fineTuneEpochs
        // pruned.h5 last, each atomically: its presence means the run finished and prune.json
        // beside it is this run's (a kill between the two left a checkpoint without its report).
        if FileManager.default.fileExists(atPath: checkpointPath) { try FileManager.default.removeItem(atPath: checkpointPath) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data2 = try encoder.encode(report)
        try AtomicFile.write(data2, to: output + "/prune.json")
        encoder.outputFormatting = [.sortedKeys]
        try Checkpoint.save(net, training: String(decoding: try encoder.encode(pruned), as: UTF8.self), to: checkpointPath)
        if json {
            print(String(decoding: data2, as: UTF8.self))
            return
        }
        print("pruned \(checkpoint) to \(report.target) in \(report.pruningSteps) steps of \(report.channelsPerStep) channels -> \(output)/pruned.h5")
        print(String(format: "  params %d -> %d, MFLOPs %.3f -> %.3f", report.before.params, report.after.params, report.before.mflops,
                     report.after.mflops))
        print("  widths \(report.before.widths) -> \(report.after.widths)")
        if !net.netDescription.residualBlocks.isEmpty {
            print("  shortcuts \(trained.netDescription.shortcutCounts) -> \(net.netDescription.shortcutCounts)")
        }
        if let a = report.latencyMsBefore, let b = report.latencyMsAfter {
            let t = ORTInference.intraOpThreads(0)
            print(String(format: "  latency (ONNX Runtime, batch 1, %d thread%@) %.3f -> %.3f ms", t, t == 1 ? "" : "s", a, b))
        }
        print(String(format: "  test accuracy %.2f%% before, %.2f%% pruned%@", 100 * report.testAccuracyBefore, 100 * report.testAccuracyPruned,
                     report.testAccuracyFineTuned.map { String(format: ", %.2f%% after %d fine-tune epochs", 100 * $0, fineTuneEpochs) } ?? ""))
    }
}

extension PruneImportance: ExpressibleByArgument {}
