import Autodiff
import Foundation
import Nets
import Pruning
import Training

/// What `neuralscale prune` prunes a trained net down to.
public enum PruneTarget: Equatable, Sendable {
    /// MFLOPs per image (thop's counting) at most.
    case mflops(Double)
    /// Parameters at most.
    case params(Int)
    /// This share of the net's channels (all groups together) kept, at most.
    case keep(Double)

    public var text: String {
        switch self {
        case let .mflops(x): return String(format: "%g MFLOPs", x)
        case let .params(p): return "\(p) params"
        case let .keep(f): return String(format: "%g of the channels", f)
        }
    }
}

/// How `prune` ranks channels.
public enum PruneImportance: String, Codable, CaseIterable, Sendable {
    /// Taylor-FO: the gates' `(g * dL/dg)^2`, summed over the minibatches since the last step.
    case taylor
    /// L1 magnitude: the mean |w| of the weights that produce the channel (Li et al. 2017).
    case magnitude
}

/// A net's size, before or after pruning.
public struct NetFigures: Codable, Equatable, Sendable {
    public var widths: [Int]
    public var params: Int
    public var mflops: Double

    public init(_ d: NetDescription) {
        widths = d.widths
        params = d.parameterCount
        mflops = d.mflops
    }
}

/// What `prune` did (`prune.json`).
public struct PruneReport: Codable, Equatable, Sendable {
    public var checkpoint: String
    public var target: String
    public var before: NetFigures
    public var after: NetFigures
    public var pruningSteps: Int
    public var importance: PruneImportance
    public var channelsPerStep: Int
    /// Every group rounded down to a multiple of this at the end (1: none).
    public var multiple: Int
    /// `--couple-residuals`: the groups joined by identity shortcuts were pruned as one (nil: no).
    public var coupledResiduals: Bool?
    public var recoveryBatches: Int
    public var fineTuneEpochs: Int
    public var testAccuracyBefore: Double
    public var testAccuracyPruned: Double
    public var testAccuracyFineTuned: Double?
    /// Batch-1 latency on ONNX Runtime before and after (nil when not measured).
    public var latencyMsBefore: Double?
    public var latencyMsAfter: Double?
    public var seconds: Double
}

/// Prunes a trained net to a target the way pruning tools do (the workflow of the FYP): Taylor-FO
/// importance of every channel (the gates' `(g * dL/dg)^2`, as the search uses) or its weights'
/// L1 magnitude, ranked over all groups; the lowest `channelsPerStep` pruned every `recoveryBatches` minibatches of training
/// (which both recovers accuracy and scores the next step), until the net that surgery would make
/// meets the target; then surgery to a physically smaller net and `fineTuneEpochs` epochs of
/// SGD at a constant learning rate.
public enum TargetPruning {
    public struct Settings: Sendable {
        public var target: PruneTarget
        /// Steps the channels to remove are spread over (an estimate: the run goes on until the
        /// target is met).
        public var stepCount: Int
        public var recoveryBatches: Int
        public var learningRate: Float
        public var fineTuneEpochs: Int
        /// Once the target is met, every group is pruned down to a multiple of this (1: no
        /// rounding; a group narrower than it is left as it is).
        public var multiple: Int
        public var importance: PruneImportance
        /// Prune the groups joined by identity shortcuts as one (`Pruner`'s coupling), so the
        /// pruned net keeps those shortcuts as identities instead of channel selections.
        public var coupleResiduals: Bool

        public init(target: PruneTarget, stepCount: Int, recoveryBatches: Int, learningRate: Float, fineTuneEpochs: Int,
                    multiple: Int = 1, importance: PruneImportance = .taylor, coupleResiduals: Bool = false) {
            self.importance = importance
            self.coupleResiduals = coupleResiduals
            self.target = target
            self.stepCount = stepCount
            self.recoveryBatches = recoveryBatches
            self.learningRate = learningRate
            self.fineTuneEpochs = fineTuneEpochs
            self.multiple = multiple
        }
    }

    /// A gated copy of `trained` (same weights, every gate 1).
    static func gatedCopy(_ trained: Network) throws -> Network {
        let gated = try makeNetwork(trained.netDescription, initialization: .none, gated: true)
        let source = Dictionary(uniqueKeysWithValues: trained.state.map { ($0.name, $0.tensor) })
        for entry in gated.state {
            if entry.kind == .channelScale {
                for i in 0..<entry.tensor.count { entry.tensor.data[i] = 1 }
            } else {
                guard let t = source[entry.name], t.count == entry.tensor.count else {
                    throw TrainingError.invalidInput("the trained net has no \(entry.name) of \(entry.tensor.count) values")
                }
                entry.tensor.data.update(from: t.data, count: t.count)
            }
        }
        return gated
    }

    /// Per unit of `units` (a group, or groups pruned together), per channel: the mean |w| of
    /// the weight slices (rank 2 and more) producing it.
    static func magnitudes(_ net: Network, units: [[Int]]) -> [[Double]] {
        let sites = net.gateSites
        return units.map { unit in
            (0..<sites[unit[0]].gate.count).map { c in
                var sum = 0.0, n = 0
                for t in unit.flatMap({ sites[$0].dead }) where t.shape.count >= 2 {
                    let row = t.count / t.shape[0], p = t.data + c * row
                    for i in 0..<row { sum += Double(abs(p[i])) }
                    n += row
                }
                return n > 0 ? sum / Double(n) : 0
            }
        }
    }

    /// The figure the target limits, of a net.
    static func cost(_ target: PruneTarget, _ d: NetDescription, channels: Int) -> Double {
        switch target {
        case .mflops: return d.mflops
        case .params: return Double(d.parameterCount)
        case .keep: return Double(channels)
        }
    }

    static func limit(_ target: PruneTarget, totalChannels: Int) -> Double {
        switch target {
        case let .mflops(x): return x
        case let .params(p): return Double(p)
        case let .keep(f): return f * Double(totalChannels)
        }
    }

    /// Prunes `trained` (evaluated on `data.test` before, after pruning and after fine-tuning).
    /// - Parameter progress: one line per pruning step and epoch.
    /// - Throws: `TrainingError.invalidConfig` when the net already meets the target or cannot
    ///   reach it (a group would be emptied, or 99% of the channels are gone);
    ///   `TrainingError.nonFiniteLoss` when training diverges.
    /// - Parameter stopRequested: polled after every step (Ctrl-C): true stops with
    ///   `TrainingError.interrupted`, nothing written.
    public static func run(_ trained: Network, data: DatasetSources, settings s: Settings, checkpoint: String,
                           stopRequested: (() -> Bool)? = nil,
                           progress: (String) -> Void) throws -> (net: Network, report: PruneReport) {
        let started = monotonicSeconds()
        let original = trained.netDescription
        let totalChannels = original.widths.reduce(0, +)
        let limit = limit(s.target, totalChannels: totalChannels)
        let startCost = cost(s.target, original, channels: totalChannels)
        guard startCost > limit else {
            throw TrainingError.invalidConfig(String(format: "the net already meets the target (%.6g against %.6g): nothing to prune", startCost, limit))
        }
        let accuracyBefore = try evaluate(trained, on: data.test).accuracy
        progress(String(format: "before: %d params, %.3f MFLOPs, test accuracy %.2f%%", original.parameterCount, original.mflops, 100 * accuracyBefore))

        let gated = try gatedCopy(trained)
        // Channels to remove, estimated from the share of the cost to remove (cost falls about
        // as the square of the widths for MFLOPs and params), spread over the steps.
        let keptShare: Double
        switch s.target {
        case .keep: keptShare = limit / startCost
        case .mflops, .params: keptShare = (limit / startCost).squareRoot()
        }
        let perStep = max(1, Int((Double(totalChannels) * (1 - keptShare) / Double(s.stepCount)).rounded(.up)))
        let pruner = try Pruner(gated, settings: PruningSettings(frequency: s.recoveryBatches, count: perStep, maxFraction: 0.99),
                                coupling: s.coupleResiduals ? original.identityCoupling : [])
        let units = pruner.units
        let optimizer = SGD(parameters: gated.parameters, schedule: .constant(s.learningRate), momentum: 0.9, weightDecay: 5e-4)
        let step = TrainingStep(net: gated, optimizer: optimizer)
        func prunedDescription() throws -> NetDescription {
            Surgery.description(gated.netDescription, keeping: try Surgery.aliveChannels(gated))
        }
        let taylor = s.importance == .taylor
        var magnitudeSteps = 0, sinceStep = 0
        /// A magnitude step: the `perStep` alive channels of least magnitude over all units.
        func magnitudeStep() throws {
            let scores = magnitudes(gated, units: units), sites = gated.gateSites
            var ranked: [(score: Double, unit: Int, channel: Int)] = []
            for (u, unit) in units.enumerated() {
                let gate = sites[unit[0]].gate
                for c in 0..<gate.count where gate.data[c] != 0 { ranked.append((scores[u][c], u, c)) }
            }
            ranked.sort { ($0.score, $0.unit, $0.channel) < ($1.score, $1.unit, $1.channel) }
            let chosen = ranked.prefix(perStep)
            var alive = pruner.widths
            for v in chosen { for g in units[v.unit] { alive[g] -= 1 } }
            guard alive.allSatisfy({ $0 >= 1 }) else {
                throw TrainingError.invalidConfig("the target \(s.target.text) cannot be reached: the next step would empty a group (at \(pruner.widths))")
            }
            for v in chosen { pruner.prune(unit: v.unit, channel: v.channel, optimizer: optimizer) }
            magnitudeSteps += 1
        }
        var steps: Int { taylor ? pruner.steps : magnitudeSteps }
        var met = false, epoch = 0
        while !met {
            optimizer.beginEpoch(epoch)
            for (b, batch) in data.train.batches(epoch: epoch).enumerated() {
                guard step(batch.images, labels: batch.labels, afterBackward: { taylor ? pruner.accumulate() : pruner.discardGradients() }) != nil else {
                    throw TrainingError.nonFiniteLoss(epoch: epoch + 1, step: b + 1, lastGood: nil)
                }
                if let stopped = stopRequested, stopped() {
                    throw TrainingError.interruptedBeforeCheckpoint(epoch: epoch + 1, step: b + 1,
                                                                    rerun: "prune writes its outputs only at the end and starts over when run again")
                }
                if taylor {
                    guard !pruner.step(optimizer: optimizer).isEmpty else {
                        if let stop = pruner.stop {
                            throw TrainingError.invalidConfig("the target \(s.target.text) cannot be reached: pruning stopped (\(stop.explanation)) at \(pruner.widths)")
                        }
                        continue
                    }
                } else {
                    sinceStep += 1
                    guard sinceStep >= s.recoveryBatches else { continue }
                    sinceStep = 0
                    try magnitudeStep()
                }
                let d = try prunedDescription()
                let c = cost(s.target, d, channels: d.widths.reduce(0, +))
                progress(String(format: "step %d: %d channels left, %d params, %.3f MFLOPs (target %@)", steps,
                                d.widths.reduce(0, +), d.parameterCount, d.mflops, s.target.text))
                if c <= limit { met = true; break }
            }
            epoch += 1
        }
        if s.multiple > 1 {
            // One more round of scores (Taylor), then each group's lowest channels beyond a multiple.
            var scored = taylor ? 0 : s.recoveryBatches
            while scored < s.recoveryBatches {
                optimizer.beginEpoch(epoch)
                for batch in data.train.batches(epoch: epoch) where scored < s.recoveryBatches {
                    guard step(batch.images, labels: batch.labels, afterBackward: { pruner.accumulate() }) != nil else {
                        throw TrainingError.nonFiniteLoss(epoch: epoch + 1, step: scored + 1, lastGood: nil)
                    }
                    scored += 1
                }
                epoch += 1
            }
            let sites = gated.gateSites, magnitude = taylor ? [] : magnitudes(gated, units: units)
            for (u, unit) in units.enumerated() {
                let gate = sites[unit[0]].gate
                let alive = (0..<gate.count).filter { gate.data[$0] != 0 }
                guard alive.count > s.multiple else { continue }
                let scores = taylor ? pruner.scores[u] : magnitude[u]
                let ranked = alive.sorted { (scores[$0], $0) < (scores[$1], $1) }
                for c in ranked.prefix(alive.count % s.multiple) { pruner.prune(unit: u, channel: c, optimizer: optimizer) }
            }
            let d = try prunedDescription()
            progress(String(format: "rounded to multiples of %d: %d params, %.3f MFLOPs", s.multiple, d.parameterCount, d.mflops))
        }
        let pruned = try Surgery.prune(gated)
        let accuracyPruned = try evaluate(pruned, on: data.test).accuracy
        progress(String(format: "pruned: test accuracy %.2f%%", 100 * accuracyPruned))
        var accuracyFineTuned: Double?
        if s.fineTuneEpochs > 0 {
            let fineTune = SGD(parameters: pruned.parameters, schedule: .constant(s.learningRate), momentum: 0.9, weightDecay: 5e-4)
            let tune = TrainingStep(net: pruned, optimizer: fineTune)
            for e in 0..<s.fineTuneEpochs {
                fineTune.beginEpoch(e)
                for (b, batch) in data.train.batches(epoch: epoch + e).enumerated() {
                    guard tune(batch.images, labels: batch.labels) != nil else {
                        throw TrainingError.nonFiniteLoss(epoch: e + 1, step: b + 1, lastGood: nil)
                    }
                }
                let accuracy = try evaluate(pruned, on: data.test).accuracy
                accuracyFineTuned = accuracy
                progress(String(format: "fine-tune epoch %d/%d: test accuracy %.2f%%", e + 1, s.fineTuneEpochs, 100 * accuracy))
            }
        }
        let report = PruneReport(checkpoint: checkpoint, target: s.target.text, before: NetFigures(original),
                                 after: NetFigures(pruned.netDescription), pruningSteps: steps, importance: s.importance, channelsPerStep: perStep, multiple: s.multiple,
                                 coupledResiduals: s.coupleResiduals ? true : nil, recoveryBatches: s.recoveryBatches, fineTuneEpochs: s.fineTuneEpochs,
                                 testAccuracyBefore: accuracyBefore, testAccuracyPruned: accuracyPruned,
                                 testAccuracyFineTuned: accuracyFineTuned, latencyMsBefore: nil, latencyMsAfter: nil,
                                 seconds: monotonicSeconds() - started)
        return (pruned, report)
    }
}
