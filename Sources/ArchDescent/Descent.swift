import Autodiff
import Checkpoint
import Datasets
import Foundation
import Nets
import Pruning
import Training

/// Settings of an architecture descent (spec: "Architecture descent").
public struct DescentConfig: Codable, Equatable, Sendable {
    public var model: Architecture
    public var dataset: String
    public var iterations: Int
    /// Epochs of training before pruning starts, at `learningRate`.
    public var warmupEpochs: Int
    /// The warm-up learning rate; after warm-up 0.01, divided by 1.5 every 10 epochs.
    public var learningRate: Float
    public var batchSize: Int
    public var pruning: PruningSettings
    /// Iteration 0 starts from the uniform net at this ratio, and every iteration's config has
    /// that net's P (1.0: the original net, as in the papers).
    public var baseRatio: Double
    public var seed: UInt64
    public var subset: Int?
    public var momentum: Float = 0.9
    public var weightDecay: Float = 5e-4
    /// `--couple-residuals`: the groups joined by identity shortcuts are pruned, fitted and sized
    /// as one (`NetDescription.identityCoupling`), so those shortcuts stay identities. Nil (not
    /// false) when off, so files written before the option still read as equal.
    public var coupleResiduals: Bool?

    public var couplesResiduals: Bool { coupleResiduals ?? false }

    public init(model: Architecture, dataset: String, iterations: Int = 15, warmupEpochs: Int = 10,
                learningRate: Float = 0.1, batchSize: Int = 128, pruning: PruningSettings = PruningSettings(),
                baseRatio: Double = 1.0, seed: UInt64 = 0, subset: Int? = nil) {
        self.model = model
        self.dataset = dataset
        self.iterations = iterations
        self.warmupEpochs = warmupEpochs
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.pruning = pruning
        self.baseRatio = baseRatio
        self.seed = seed
        self.subset = subset
    }

    public func validate() throws {
        func fail(_ m: String) -> TrainingError { .invalidConfig(m) }
        guard iterations >= 1, iterations <= 100 else { throw fail("--iterations must be in 1...100, got \(iterations)") }
        guard warmupEpochs >= 0, warmupEpochs <= 1000 else { throw fail("--warmup must be in 0...1000, got \(warmupEpochs)") }
        guard learningRate > 0, learningRate.isFinite else { throw fail("--lr must be > 0, got \(learningRate)") }
        guard batchSize >= 2, batchSize <= 65_536 else { throw fail("--batch-size must be in 2...65536, got \(batchSize)") }
        guard pruning.frequency >= 1 else { throw fail("--prune-every must be >= 1, got \(pruning.frequency)") }
        guard pruning.count >= 1 else { throw fail("--prune-count must be >= 1, got \(pruning.count)") }
        guard pruning.maxFraction > 0, pruning.maxFraction < 1 else { throw fail("--prune-max must be in (0, 1), got \(pruning.maxFraction)") }
        guard baseRatio > 0, baseRatio <= 4 else { throw fail("--base-ratio must be in (0, 4], got \(baseRatio)") }
        if let subset, subset < 2 { throw fail("--subset must be >= 2, got \(subset)") }
    }
}

/// One finished pruning run of the descent.
public struct DescentIteration: Codable, Equatable, Sendable {
    public var index: Int
    /// The widths the iteration's fresh net started from, and their P.
    public var startWidths: [Int]
    public var startParams: Int
    public var trajectory: [TrajectoryRow]
    public var fit: PowerLawFit
    public var stop: PruningStop?
    public var epochs: Int

    public init(index: Int, startWidths: [Int], startParams: Int, trajectory: [TrajectoryRow], fit: PowerLawFit,
                stop: PruningStop?, epochs: Int) {
        self.index = index
        self.startWidths = startWidths
        self.startParams = startParams
        self.trajectory = trajectory
        self.fit = fit
        self.stop = stop
        self.epochs = epochs
    }
}

/// The position inside an unfinished iteration, saved after every pruning step.
public struct DescentProgress: Codable, Equatable, Sendable {
    public var iteration: Int
    public var startWidths: [Int]
    public var epoch: Int
    /// Minibatches of `epoch` already trained.
    public var batch: Int
    public var pruner: PrunerState
    public var seconds: Double
}

/// Everything a killed descent needs to continue (the `training` attribute of `state.h5`).
public struct DescentState: Codable, Equatable, Sendable {
    public var config: DescentConfig
    public var template: NetDescription
    public var completed: [DescentIteration]
    /// Wall time of each completed iteration (kept out of `descent.json`, which must not depend
    /// on timing so that a resumed search reproduces it exactly).
    public var seconds: [Double]
    public var current: DescentProgress?
    /// `DatasetSources.checksum` of the data the search started on (nil in states written
    /// before it was recorded).
    public var dataChecksum: String?
}

/// The search's wall time, `timing.json` beside `descent.json` (rewritten after every
/// iteration; kept apart so that `descent.json` does not depend on timing).
public struct SearchTiming: Codable, Equatable, Sendable {
    public var model: Architecture
    public var dataset: String
    /// Wall seconds of each finished iteration, a resumed one counted from its saved progress.
    public var secondsPerIteration: [Double]
    public var totalSeconds: Double
    /// Training epochs of each finished iteration (warm-up and pruning).
    public var epochsPerIteration: [Int]

    public init(model: Architecture, dataset: String, secondsPerIteration: [Double], epochsPerIteration: [Int]) {
        self.model = model
        self.dataset = dataset
        self.secondsPerIteration = secondsPerIteration
        self.totalSeconds = secondsPerIteration.reduce(0, +)
        self.epochsPerIteration = epochsPerIteration
    }

    /// The file name, in the search's folder.
    public static let fileName = "timing.json"
}

/// Widths and P at one ratio, NeuralScale against uniform.
public struct ScaledConfig: Codable, Equatable, Sendable {
    public var ratio: Double
    public var uniformWidths: [Int]
    public var uniformParams: Int
    public var neuralscaleWidths: [Int]
    public var neuralscaleParams: Int
    /// Groups the fit gives less than half a channel at this P, raised to width 1 (nil: none).
    public var clampedGroups: [String]?

    /// The warning when the NeuralScale net misses the uniform net's P by more than 1% (the
    /// solver meets it within 0.5% for a sound fit; a fit that gives most groups one channel and
    /// one group thousands cannot be sized to it), nil otherwise.
    public var paramsWarning: String? {
        let miss = Double(neuralscaleParams - uniformParams) / Double(max(uniformParams, 1))
        guard abs(miss) > 0.01 else { return nil }
        return String(format: "warning: at ratio %g the NeuralScale net has P %d, %+.1f%% from the uniform net's %d: the fit cannot "
                      + "size it to that target (check the search)", ratio, neuralscaleParams, 100 * miss, uniformParams)
    }
}

/// The search's result file, `descent.json`: what `train --scaling neuralscale` reads.
public struct DescentResult: Codable, Equatable, Sendable {
    public var config: DescentConfig
    public var template: NetDescription
    public var groupNames: [String]
    public var iterations: [DescentIteration]
    /// From the last iteration's fit, at ratios 0.25, 0.5, 0.75 and 1.0.
    public var ratios: [ScaledConfig]

    public init(config: DescentConfig, template: NetDescription, groupNames: [String], iterations: [DescentIteration],
                ratios: [ScaledConfig]) {
        self.config = config
        self.template = template
        self.groupNames = groupNames
        self.iterations = iterations
        self.ratios = ratios
    }

    /// The fit of iteration `index` (default: the last).
    public func fit(iteration index: Int? = nil) throws -> PowerLawFit {
        guard let last = iterations.last else { throw FitError("the descent has no finished iteration") }
        guard let index else { return last.fit }
        guard let it = iterations.first(where: { $0.index == index }) else {
            throw FitError("iteration \(index) is not in the descent (it has 0...\(last.index))")
        }
        return it.fit
    }

    /// NeuralScale and uniform widths at `ratio`.
    /// - Throws: `FitError` when the uniform net at `ratio` is not a valid net, or the fit's
    ///   widths at that P are not (a group wider than `NetDescription.maxWidth`).
    public func scaled(ratio: Double, iteration: Int? = nil) throws -> ScaledConfig {
        var uniform = template
        uniform.widths = template.architecture.uniformWidths(ratio: ratio)
        do { try uniform.validate() } catch { throw FitError("ratio \(ratio): \(error)") }
        let target = WidthSolver.target(ratio: ratio, for: template)
        let fit = try fit(iteration: iteration)
        let solved = try WidthSolver.solve(fit, target: target, template: template)
        var scaled = template
        scaled.widths = solved.widths
        do { try scaled.validate() } catch { throw FitError("the fit's widths at ratio \(ratio): \(error)") }
        let raw = fit.rawWidths(scale: solved.scale)
        let clamped = zip(groupNames, zip(raw, solved.widths)).filter { $1.0 < 0.5 && $1.1 == 1 }.map(\.0)
        return ScaledConfig(ratio: ratio, uniformWidths: uniform.widths, uniformParams: target,
                            neuralscaleWidths: solved.widths, neuralscaleParams: solved.params,
                            clampedGroups: clamped.isEmpty ? nil : clamped)
    }

    /// Reads and checks a `descent.json`: its net, its group names and every fit's numbers.
    /// - Throws: `FitError` naming the file and what is wrong.
    public static func load(_ path: String) throws -> DescentResult {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw FitError("\(path): \(unreadableReason(path, error)) (run `neuralscale descend` first; it writes descent.json)")
        }
        let result: DescentResult
        do {
            result = try JSONDecoder().decode(DescentResult.self, from: data)
        } catch {
            throw FitError("\(path) is not a descent.json: \(describeDecodingError(error, data: data))")
        }
        do {
            try result.template.validate()
            guard result.groupNames == result.template.architecture.groupNames else {
                throw FitError("its group names \(result.groupNames) are not \(result.template.architecture.rawValue)'s")
            }
            for it in result.iterations {
                do { try it.fit.validate(groupNames: result.groupNames) } catch { throw FitError("iteration \(it.index): \(error)") }
                if let coupling = it.fit.coupling, coupling != result.template.identityCoupling {
                    throw FitError("iteration \(it.index): coupled groups \(coupling) are not the net's residual streams \(result.template.identityCoupling)")
                }
            }
        } catch {
            throw FitError("\(path): \(error)")
        }
        return result
    }
}

/// Receives descent progress.
public protocol DescentReporter: AnyObject {
    /// `resumedAt`: the 1-based epoch a resumed iteration continues in, nil for a fresh net.
    func iterationStarted(_ index: Int, of total: Int, widths: [Int], params: Int, resumedAt epoch: Int?)
    func pruned(iteration: Int, epoch: Int, channels: Int, of total: Int, params: Int, etaSeconds: Double?)
    /// After every epoch (warm-up epochs included): the epoch (1-based) and the alive channels.
    func epochFinished(iteration: Int, epoch: Int, warmup: Bool, channels: Int, of total: Int, params: Int, seconds: Double)
    func iterationFinished(_ it: DescentIteration, of total: Int)
    func message(_ text: String)
}

/// Runs the architecture descent: `iterations` pruning runs, each from a fresh net whose widths
/// the previous run's fit gives for the target P, keeping `state.h5` after every pruning step
/// so `--resume` continues from there.
///
/// Data-parallel (`group`): every process trains on its part of every batch with
/// `TrainingStep`'s sums, the channel scales' gradients included, so the Taylor-FO scores (and
/// the channels pruned) are the same on every process; process 0 alone locks the folder and
/// writes the state and results, and a stop request on any process stops all at the same step.
public final class Descent {
    public let config: DescentConfig
    public let template: NetDescription
    public let outputDirectory: String
    let train: BatchSource
    let reporter: DescentReporter?
    let group: ProcessGroup?
    /// Whether this process writes the search's files: the only one, or rank 0.
    var writes: Bool { (group?.rank ?? 0) == 0 }
    /// Checked before every minibatch; true stops the run (the CLI's Ctrl-C, tests' kills).
    public var shouldStop: (_ iteration: Int, _ epoch: Int, _ batch: Int) -> Bool = { _, _, _ in false }
    /// `DatasetSources.checksum` of the data given: recorded by a new search, compared on resume.
    public var dataChecksum: String?
    /// Called with the result just before `descent.json` is written (the CLI's charts), so that
    /// the file, which marks the search done (a sweep skips its step on it), comes last.
    public var beforeResult: ((DescentResult) throws -> Void)?

    public var statePath: String { path("state.h5") }
    public var resultPath: String { path("descent.json") }

    /// - Parameter template: architecture, input channels, image size, classes (widths ignored).
    public init(config: DescentConfig, template: NetDescription, train: BatchSource, outputDirectory: String,
                reporter: DescentReporter?, group: ProcessGroup? = nil) {
        self.config = config
        self.group = group
        var t = template
        t.widths = template.architecture.uniformWidths(ratio: config.baseRatio)
        self.template = t
        self.train = train
        self.outputDirectory = outputDirectory
        self.reporter = reporter
    }

    /// A file in the output folder.
    public func path(_ name: String) -> String { URL(fileURLWithPath: outputDirectory).appendingPathComponent(name).path }

    /// P every iteration's config is solved for.
    public var targetParams: Int { template.parameterCount }

    /// The groups pruned and fitted as one: the base net's identity-joined sets with
    /// `--couple-residuals`, else none.
    public var coupling: [[Int]] { config.couplesResiduals ? template.identityCoupling : [] }

    /// Checks settings, net and output folder before any data is loaded.
    public static func preflight(config: DescentConfig, template: NetDescription, outputDirectory: String, resume: Bool) throws {
        try config.validate()
        var t = template
        t.widths = template.architecture.uniformWidths(ratio: config.baseRatio)
        do { try t.validate() } catch { throw TrainingError.invalidConfig("\(error) (is --base-ratio too small?)") }
        // A step must leave channels to prune at the next: else the run ends at once with no trajectory.
        let channels = t.widths.reduce(0, +)
        guard config.pruning.count < channels else {
            throw TrainingError.invalidConfig("--prune-count \(config.pruning.count) is not below the \(channels) channels of \(t.architecture.rawValue) at --base-ratio \(config.baseRatio)")
        }
        try RunFolder.checkResume(outputDirectory, file: "state.h5", resume: resume, what: "search", state: DescentState.self) { saved, state in
            guard saved.config.couplesResiduals == config.couplesResiduals else {
                let with = { (on: Bool) in on ? "with --couple-residuals" : "without --couple-residuals" }
                throw TrainingError.resume("\(state) was made \(with(saved.config.couplesResiduals)); resume it \(with(saved.config.couplesResiduals)), or start a new search in another --out")
            }
            var given = config
            given.coupleResiduals = saved.config.coupleResiduals  // nil and false alike
            guard saved.config == given else {
                let differing = settingDifferences(given, stored: saved.config)
                throw TrainingError.resume("\(state) was made with other settings: "
                                           + (differing.isEmpty ? "\(saved.config), given \(config)" : differing.joined(separator: "; ")))
            }
        }
    }

    static func storedState(_ path: String) throws -> DescentState {
        guard let state = try Checkpoint.load(path).training(as: DescentState.self) else {
            throw TrainingError.resume("\(path) holds no descent state")
        }
        // The iterations' wall times go into timing.json and the progress's ETA.
        if let bad = state.seconds.first(where: { !($0.isFinite && (0...1e12).contains($0)) }) {
            throw TrainingError.resume("\(path): its search state's seconds hold \(bad), expected 0...1e12 seconds each")
        }
        return state
    }

    /// Runs (or, with `resume`, continues) the descent and writes `descent.json`.
    public func run(resume: Bool) throws -> DescentResult {
        try config.validate()
        // The lock first: a second search into this folder stops here, before it reads or writes.
        let folder = writes ? try RunFolder.acquire(outputDirectory) : nil
        defer { folder?.release() }
        try Descent.preflight(config: config, template: template, outputDirectory: outputDirectory, resume: resume)
        // Every process past its checks before process 0 writes state.h5: a late one found the
        // file process 0 had just written and stopped the job as "already exists".
        group?.barrier()
        var state = DescentState(config: config, template: template, completed: [], seconds: [], current: nil, dataChecksum: dataChecksum)
        var resumed: LoadedCheckpoint?
        if resume {
            let loaded = try Checkpoint.load(statePath)
            state = try Descent.storedState(statePath)
            state.dataChecksum = try DatasetSources.sameData(stored: state.dataChecksum, given: dataChecksum, path: statePath, made: "searched")
            if state.current != nil { resumed = loaded }
        }
        while state.completed.count < config.iterations {
            let (it, seconds) = try runIteration(&state, resuming: resumed)
            resumed = nil
            state.completed.append(it)
            state.seconds.append(seconds)
            state.current = nil
            if writes { try writeIterationFiles(it) }
            try saveState(state, net: nil, optimizer: nil)
            if writes { try writeTiming(state) }
            reporter?.iterationFinished(it, of: config.iterations)
        }
        // Again from the state: a kill after the state's save and before the timing's lost the
        // last iteration's time, and a resumed finished search runs no iteration to rewrite it.
        if writes { try writeTiming(state) }
        let result = try makeResult(state)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if writes {
            try beforeResult?(result)
            try AtomicFile.write(try encoder.encode(result), to: resultPath)
        }
        reporter?.message("search done in \(formatDuration(state.seconds.reduce(0, +))); results in \(resultPath)")
        return result
    }

    /// The widths iteration `index` starts from: the base net, then the previous fit's solution.
    func startWidths(_ state: DescentState, index: Int) throws -> [Int] {
        guard index > 0, let previous = state.completed.last else { return template.widths }
        return try WidthSolver.solve(previous.fit, target: targetParams, template: template).widths
    }

    private func runIteration(_ state: inout DescentState, resuming: LoadedCheckpoint?) throws -> (DescentIteration, Double) {
        let index = state.completed.count
        let net: Network, opt: SGD, pruner: Pruner
        var progress: DescentProgress
        let schedule = SearchLearningRate.reference(warmupLR: config.learningRate, warmupEpochs: config.warmupEpochs)
        if let resuming, let saved = state.current, let optState = resuming.optimizer {
            net = resuming.network
            opt = SGD(parameters: net.parameters, schedule: schedule, momentum: config.momentum, weightDecay: config.weightDecay)
            try opt.load(optState)
            do {
                pruner = try Pruner(net, settings: config.pruning, coupling: coupling)
                try pruner.restore(saved.pruner)
            } catch {
                throw TrainingError.resume("\(statePath): \(error)")
            }
            progress = saved
        } else {
            // Every iteration has new widths, so the previous net's activation sizes never recur:
            // hand their pooled buffers back instead of keeping them for the whole search.
            BufferPool.shared.drain()
            var d = template
            d.widths = try startWidths(state, index: index)
            net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: mixSeed(config.seed, UInt64(index)))), gated: true)
            opt = SGD(parameters: net.parameters, schedule: schedule, momentum: config.momentum, weightDecay: config.weightDecay)
            pruner = try Pruner(net, settings: config.pruning, coupling: coupling)
            progress = DescentProgress(iteration: index, startWidths: d.widths, epoch: 0, batch: 0, pruner: pruner.state, seconds: 0)
            state.current = progress
            try saveState(state, net: net, optimizer: opt)  // a kill during warm-up resumes here
        }
        var d = template
        d.widths = progress.startWidths
        reporter?.iterationStarted(index, of: config.iterations, widths: d.widths, params: d.parameterCount,
                                   resumedAt: resuming == nil ? nil : progress.epoch + 1)
        let started = Date().timeIntervalSince1970 - progress.seconds
        let step = TrainingStep(net: net, optimizer: opt, group: group)
        while pruner.stop == nil {
            let epoch = progress.epoch
            opt.beginEpoch(epoch)
            let pruning = epoch >= config.warmupEpochs
            var b = 0, usable = 0
            let minimum = max(2, group?.size ?? 1)
            for batch in train.batches(epoch: epoch) {
                defer { b += 1 }
                if batch.globalCount >= minimum { usable += 1 }
                if b < progress.batch { continue }  // trained before the resume point
                if stopRequested(index, epoch, b) { throw TrainingError.interrupted(epoch: epoch + 1, step: b) }
                guard batch.globalCount >= minimum else { continue }
                // Taylor-FO scores come from the gate gradients of this step's backward pass.
                let scored = step(batch.images, labels: batch.labels, globalCount: batch.globalCount) {
                    if pruning { pruner.accumulate() } else { pruner.discardGradients() }
                }
                guard scored != nil else {
                    throw TrainingError.nonFiniteLoss(epoch: epoch + 1, step: b + 1, lastGood: FileManager.default.fileExists(atPath: statePath) ? statePath : nil)
                }
                guard pruning else { continue }
                let killed = pruner.step(optimizer: opt)
                if !killed.isEmpty { try checkAgreement(group, on: net.state.filter { $0.kind == .channelScale }.map(\.tensor), what: "gates") }
                if !killed.isEmpty || pruner.stop != nil {
                    progress.batch = b + 1
                    progress.epoch = epoch
                    progress.pruner = pruner.state
                    progress.seconds = max(0, Date().timeIntervalSince1970 - started)
                    state.current = progress
                    try saveState(state, net: net, optimizer: opt)
                    reporter?.pruned(iteration: index, epoch: epoch + 1, channels: pruner.totalChannels - pruner.prunedChannels,
                                     of: pruner.totalChannels, params: pruner.params, etaSeconds: eta(state, pruner: pruner, elapsed: progress.seconds))
                }
                if pruner.stop != nil { break }
            }
            if pruner.stop != nil { break }
            // Epochs without a batch to train on would go on without end (the stop rules count
            // pruned channels).
            if usable == 0 { throw TrainingError.noUsableBatch(minimum, processes: group?.size ?? 1) }
            progress.epoch = epoch + 1
            progress.batch = 0
            progress.pruner = pruner.state
            progress.seconds = max(0, Date().timeIntervalSince1970 - started)
            state.current = progress
            try saveState(state, net: net, optimizer: opt)
            reporter?.epochFinished(iteration: index, epoch: epoch + 1, warmup: !pruning,
                                    channels: pruner.totalChannels - pruner.prunedChannels, of: pruner.totalChannels,
                                    params: pruner.params, seconds: progress.seconds)
        }
        var fit = try PowerLawFit.fit(pruner.trajectory.isEmpty ? [TrajectoryRow(widths: progress.startWidths, params: d.parameterCount)] : pruner.trajectory,
                                      coupling: coupling.isEmpty ? nil : coupling)
        if pruner.trajectory.isEmpty {
            // No row to fit: the start widths scaled uniformly, said as such (not "1 row").
            fit.rows = 0
            let why = pruner.steps == 0
                ? "pruning stopped before its first step: \(pruner.stop?.explanation ?? "no step was taken")"
                : "a row is recorded once every group has lost a channel, and after \(pruner.steps) pruning step\(pruner.steps == 1 ? "" : "s") some had not"
                    + (pruner.stop.map { " when \($0.explanation)" } ?? "")
            fit.fallbackReason = "no trajectory rows (\(why)): uniform scaling of the iteration's start widths"
        }
        if let reason = fit.fallbackReason { reporter?.message("iteration \(index): \(reason)") }
        return (DescentIteration(index: index, startWidths: progress.startWidths, startParams: d.parameterCount,
                                 trajectory: pruner.trajectory, fit: fit, stop: pruner.stop, epochs: progress.epoch + 1),
                max(0, Date().timeIntervalSince1970 - started))
    }

    /// `shouldStop`, on every process at once: true when it is true on any.
    private func stopRequested(_ iteration: Int, _ epoch: Int, _ batch: Int) -> Bool {
        var stop: Double = shouldStop(iteration, epoch, batch) ? 1 : 0
        group?.sum(&stop, count: 1)
        return stop > 0
    }

    /// Remaining time: this iteration from the fraction of channels pruned, later ones from the
    /// finished iterations (or this one) at the same pace.
    func eta(_ state: DescentState, pruner: Pruner, elapsed: Double) -> Double? {
        let goal = config.pruning.maxFraction * Double(pruner.totalChannels)
        let done = Double(pruner.prunedChannels)
        guard done > 0 else { return nil }
        let warm = Double(config.warmupEpochs * train.batchCount)
        // Channels a step removes: --prune-count, or more when a step takes channels of coupled
        // streams (one per group of the stream): the mean of the steps so far.
        let perStep = pruner.steps > 0 ? done / Double(pruner.steps) : Double(config.pruning.count)
        let pruneBatches = goal / perStep * Double(config.pruning.frequency)
        let fraction = (warm + done / perStep * Double(config.pruning.frequency)) / (warm + pruneBatches)
        let thisTotal = elapsed / max(min(fraction, 1), 1e-6)
        let perIteration = state.seconds.isEmpty ? thisTotal : state.seconds.reduce(0, +) / Double(state.seconds.count)
        return max(0, thisTotal - elapsed) + perIteration * Double(config.iterations - state.completed.count - 1)
    }

    /// Saves `state.h5` (process 0 of a data-parallel run); a net with a NaN or infinite tensor
    /// is never saved (the state saved before it is named as the one to go back to), and stops
    /// every process alike.
    private func saveState(_ state: DescentState, net: Network?, optimizer: SGD?) throws {
        if let net, let bad = Checkpoint.nonFiniteTensor(in: net) {
            let epoch = state.current.map { $0.epoch + 1 } ?? 0, step = state.current?.batch ?? 0
            throw TrainingError.nonFiniteLoss(epoch: epoch, step: step,
                                              lastGood: FileManager.default.fileExists(atPath: statePath) ? statePath : nil, tensor: bad)
        }
        guard writes else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(state), as: UTF8.self)
        // Between iterations there is no live net: store the base net's shape with no weights of
        // interest, so the file still loads.
        let holder = try net ?? makeNetwork(template, initialization: .none)
        if net == nil { for t in holder.state { t.tensor.zero() } }
        try Checkpoint.save(holder, optimizer: optimizer, training: json, to: statePath)
    }

    /// `iteration-<i>-trajectory.csv` (one column per group, named by its layer, then P) and
    /// `iteration-<i>-fit.json`.
    private func writeIterationFiles(_ it: DescentIteration) throws {
        let names = template.architecture.groupNames
        var csv = names.joined(separator: ",") + ",params\n"
        for row in it.trajectory { csv += row.widths.map(String.init).joined(separator: ",") + ",\(row.params)\n" }
        try AtomicFile.write(Data(csv.utf8), to: path("iteration-\(it.index)-trajectory.csv"))
        struct GroupReport: Encodable { let group: String; let alpha, beta: Double; let rSquared: Double? }
        struct FitReport: Encodable { let iteration, rows: Int; let fallbackReason: String?; let coupling: [[String]]?; let groups: [GroupReport] }
        let report = FitReport(iteration: it.index, rows: it.fit.rows, fallbackReason: it.fit.fallbackReason,
                               coupling: it.fit.coupling.map { $0.map { $0.map { names[$0] } } },
                               groups: zip(names, it.fit.groups).map { GroupReport(group: $0, alpha: $1.alpha, beta: $1.beta, rSquared: $1.rSquared) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(report), to: path("iteration-\(it.index)-fit.json"))
    }

    private func writeTiming(_ state: DescentState) throws {
        let timing = SearchTiming(model: config.model, dataset: config.dataset, secondsPerIteration: state.seconds,
                                  epochsPerIteration: state.completed.map(\.epochs))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(timing), to: path(SearchTiming.fileName))
    }

    private func makeResult(_ state: DescentState) throws -> DescentResult {
        var result = DescentResult(config: config, template: template, groupNames: template.architecture.groupNames,
                                   iterations: state.completed, ratios: [])
        result.ratios = try [0.25, 0.5, 0.75, 1.0].map { try result.scaled(ratio: $0) }
        return result
    }
}

extension DescentConfig {
    /// The data a search trains on: `kind` in `directory` without a validation split, on the
    /// search's seeded subset (`subsetting`: false, the whole training set), the normalization
    /// fitted on it. `descend` trains on it, and a search state's users (which the state does
    /// not record the normalization for) fit it again from it.
    public func trainingData(_ kind: DatasetKind, directory: String?, subsetting: Bool = true,
                             reporter: TrainingReporter?) throws -> DatasetSources {
        try DatasetSources.load(kind, directory: directory, validationSplit: 0, seed: seed, subset: subsetting ? subset : nil,
                                batchSize: batchSize, reporter: reporter)
    }
}
