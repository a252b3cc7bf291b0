import Datasets
import Foundation
import Nets
import Pruning
import Training

/// The net of a model on a dataset at a width ratio: the uniform net, or the NeuralScale net of a
/// search (`descent.json`) with the uniform net's P. What `train` and `stats` build.
public struct ScaledNet {
    public var description: NetDescription
    /// With a search: both nets' widths and P at the ratio.
    public var scaled: ScaledConfig?
    /// The descent.json the widths come from.
    public var descent: String?

    public init(description: NetDescription, scaled: ScaledConfig? = nil, descent: String? = nil) {
        self.description = description
        self.scaled = scaled
        self.descent = descent
    }

    /// - Parameters:
    ///   - descent: a `descent.json`, checked to be a search of the same net and input; nil for
    ///     uniform scaling.
    ///   - iteration: the search iteration whose fit gives the widths (nil: the last).
    ///   - flag: the flag `ratio` came from, for the error (`--ratios` for a list).
    /// - Throws: `TrainingError.invalidConfig` (a flag error) when the uniform net at `ratio` is
    ///   not a valid net or the search was of another net or input; `FitError` naming the file
    ///   when it cannot be read or its fit gives no valid net at `ratio`.
    public static func make(_ arch: Architecture, _ kind: DatasetKind, ratio: Double, descent: String?,
                            iteration: Int?, flag: String = "--ratio") throws -> ScaledNet {
        var description = NetDescription.uniform(arch, ratio: ratio, inChannels: kind.channels, imageSize: kind.imageSize,
                                                 classes: kind.classes)
        do {
            try description.validate()
        } catch {
            throw TrainingError.invalidConfig("\(flag) \(ratio): \(error) (is \(flag == "--ratio" ? "--ratio" : "that ratio") too small?)")
        }
        guard let descent else { return ScaledNet(description: description) }
        let result = try searched(descent, for: arch, kind)
        let scaled = try result.scaled(ratio: ratio, iteration: iteration, file: descent)
        description.widths = scaled.neuralscaleWidths
        return ScaledNet(description: description, scaled: scaled, descent: descent)
    }

    /// `descent` (a descent.json) read and checked to be a search of `arch` on `kind`'s images.
    public static func searched(_ descent: String, for arch: Architecture, _ kind: DatasetKind) throws -> DescentResult {
        let result = try DescentResult.load(descent)
        guard result.template.architecture == arch, result.template.inChannels == kind.channels,
              result.template.imageSize == kind.imageSize, result.template.classes == kind.classes else {
            throw TrainingError.invalidConfig("\(descent) was searched for \(result.template.architecture.rawValue) on \(result.config.dataset), not \(arch.rawValue) on \(kind.rawValue)")
        }
        return result
    }

    /// The warning when the fit gives some groups less than half a channel (nil when none).
    /// Also when the net misses the target P (`ScaledConfig.paramsWarning`).
    public var clampWarning: String? {
        guard let scaled, let descent else { return nil }
        let clamped = scaled.clampedGroups.map {
            "warning: at ratio \(scaled.ratio) the fit of \(descent) gives less than half a channel to "
                + "\($0.joined(separator: ", ")); they get width 1. Check the search, or use a larger --ratio"
        }
        let lines = [clamped, scaled.paramsWarning].compactMap { $0 }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }

    /// One line with the NeuralScale widths and both P (nil for a uniform net).
    public var summary: String? {
        scaled.map { "NeuralScale widths at ratio \($0.ratio): \($0.neuralscaleWidths), P \($0.neuralscaleParams) (uniform: \($0.uniformParams))" }
    }
}

extension DescentResult {
    /// `scaled(ratio:iteration:)`, with an error naming the file it was read from.
    /// - Throws: `FitError` "`file`: reason".
    public func scaled(ratio: Double, iteration: Int?, file: String) throws -> ScaledConfig {
        do { return try scaled(ratio: ratio, iteration: iteration) } catch { throw FitError("\(file): \(error)") }
    }
}

/// Settings of `neuralscale descend` for a purpose; explicit flags override them.
public enum DescentPreset: String, CaseIterable, Sendable {
    /// A demonstration in minutes: base ratio 0.25, 1 warm-up epoch, pruning every 10
    /// minibatches, 3 iterations, on 5000 images.
    case quick
}

extension DescentConfig {
    /// The search of `model` on `dataset`: the papers' settings (15 iterations, 10 warm-up
    /// epochs, lr 0.1, batch 128, 10 channels pruned every `defaultPruneEvery(dataset)`
    /// minibatches up to 95%, the full net), or those of `preset`.
    public static func preset(_ preset: DescentPreset?, model: Architecture, dataset: DatasetKind,
                              seed: UInt64 = 0) -> DescentConfig {
        var config = DescentConfig(model: model, dataset: dataset.rawValue, iterations: 15, warmupEpochs: 10,
                                   learningRate: 0.1, batchSize: 128,
                                   pruning: PruningSettings(frequency: defaultPruneEvery(dataset), count: 10, maxFraction: 0.95),
                                   baseRatio: 1.0, seed: seed, subset: nil)
        switch preset {
        case nil: break
        case .quick?:
            config.iterations = 3
            config.warmupEpochs = 1
            config.pruning.frequency = 10
            config.baseRatio = 0.25
            config.subset = 5000
        }
        return config
    }

    /// Minibatches between pruning steps: 100 on tinyImageNet, 50 elsewhere (spec: "Taylor-FO
    /// importance with gates", step 4).
    public static func defaultPruneEvery(_ dataset: DatasetKind) -> Int {
        dataset == .tinyimagenet ? 100 : 50
    }
}
