import Autodiff
import Foundation
import Nets

/// How the widths of a trained net were chosen.
public enum Scaling: String, Codable, Sendable, CaseIterable {
    /// Every original width times the ratio (spec: "Uniform scaling").
    case uniform
    /// The widths a NeuralScale fit gives for the uniform net's P at the ratio.
    case neuralscale
}

/// Everything that defines a training run. A resumed run must match the stored one.
public struct TrainConfig: Codable, Equatable, Sendable {
    public var model: Architecture
    public var dataset: String
    public var scaling: Scaling
    public var ratio: Double
    public var epochs: Int
    public var batchSize: Int
    public var learningRate: Float
    public var momentum: Float
    public var weightDecay: Float
    /// Epochs (0-based) at whose start the learning rate is divided by 10.
    public var milestones: [Int]
    public var validationSplit: Double
    public var seed: UInt64
    /// Train on only the first N images of the training split.
    public var subset: Int?
    /// For NeuralScale scaling: the descent.json used and its iteration (nil: the last).
    public var descent: String?
    public var descentIteration: Int?
    /// The resource budget the widths were sized to ("mflops 76.6, multiple 8"; nil: the
    /// ratio's parameter count). `ratio` is then the uniform net's ratio of the same P.
    public var budget: String?

    public init(model: Architecture, dataset: String, scaling: Scaling = .uniform, ratio: Double, epochs: Int = 150,
                batchSize: Int = 128, learningRate: Float = 0.1, momentum: Float = 0.9, weightDecay: Float = 5e-4,
                milestones: [Int]? = nil, validationSplit: Double = 0.2, seed: UInt64 = 0, subset: Int? = nil) {
        self.model = model
        self.dataset = dataset
        self.scaling = scaling
        self.ratio = ratio
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.milestones = milestones ?? TrainConfig.defaultMilestones(epochs: epochs)
        self.validationSplit = validationSplit
        self.seed = seed
        self.subset = subset
    }

    /// 1/3, 2/3 and 5/6 of the epochs (50, 100, 125 for 150: the papers' recipe), without repeats.
    public static func defaultMilestones(epochs: Int) -> [Int] {
        var seen = Set<Int>()
        return [epochs / 3, 2 * epochs / 3, 5 * epochs / 6].filter { $0 > 0 && seen.insert($0).inserted }
    }

    public var schedule: MultiStepLearningRate { .multiStep(base: learningRate, milestones: milestones, gamma: 0.1) }

    /// Checks every field, naming the flag at fault.
    public func validate() throws {
        func fail(_ m: String) -> TrainingError { .invalidConfig(m) }
        guard ratio > 0 && ratio <= 4 else { throw fail("--ratio must be in (0, 4], got \(ratio)") }
        guard epochs >= 1, epochs <= 100_000 else { throw fail("--epochs must be in 1...100000, got \(epochs)") }
        guard batchSize >= 2, batchSize <= 65_536 else {
            throw fail("--batch-size must be in 2...65536 (batch norm needs two images), got \(batchSize)")
        }
        guard learningRate > 0, learningRate.isFinite else { throw fail("--lr must be > 0, got \(learningRate)") }
        guard momentum >= 0, momentum < 1 else { throw fail("--momentum must be in [0, 1), got \(momentum)") }
        guard weightDecay >= 0 else { throw fail("--weight-decay must be >= 0, got \(weightDecay)") }
        guard validationSplit >= 0, validationSplit < 1 else { throw fail("--val-split must be in [0, 1), got \(validationSplit)") }
        guard milestones.allSatisfy({ $0 >= 1 && $0 < epochs }), milestones == milestones.sorted(),
              Set(milestones).count == milestones.count else {
            throw fail("--milestones must be increasing epochs in 1..<\(epochs) (--epochs), got \(milestones)")
        }
        if let subset, subset < 2 { throw fail("--subset must be >= 2, got \(subset)") }
    }

    /// The fields where `other` differs, for resume errors.
    func differences(from other: TrainConfig) -> [String] { settingDifferences(self, stored: other) }
}

/// The stored properties where `given` and `stored` (one settings type) differ, as "name: stored
/// X, given Y", for resume errors that say which setting to change back.
public func settingDifferences<T>(_ given: T, stored: T) -> [String] {
    let a = Mirror(reflecting: given).children, b = Mirror(reflecting: stored).children
    // An optional setting reads as its value, or "none".
    func text(_ value: Any) -> String {
        let m = Mirror(reflecting: value)
        guard m.displayStyle == .optional else { return "\(value)" }
        return m.children.first.map { "\($0.value)" } ?? "none"
    }
    return zip(a, b).compactMap { x, y in
        text(x.value) == text(y.value) ? nil : "\(x.label ?? "?"): stored \(text(y.value)), given \(text(x.value))"
    }
}

extension TrainingError {
    /// An epoch without one batch of `minimum` images (batch norm needs 2, and each of a
    /// data-parallel run's processes one): it would train nothing, every epoch, without end.
    public static func noUsableBatch(_ minimum: Int, processes: Int) -> TrainingError {
        .invalidConfig("no batch of the training set has \(minimum) images (batch norm needs 2"
                       + (processes > 1 ? ", and each of the \(processes) processes one" : "")
                       + "): use a larger --batch-size, or more training images (--subset)")
    }
}

public enum TrainingError: Error, CustomStringConvertible {
    /// A command line that cannot run (a flag's value, flags that do not fit together or do not
    /// fit their files): reported with the usage, exit status 64.
    case invalidConfig(String)
    /// An input file (or dataset) whose contents cannot be used, whatever the flags: reported
    /// naming the file, exit status 1.
    case invalidInput(String)
    /// `tensor`: the parameter or buffer that became non-finite although the loss stayed finite.
    case nonFiniteLoss(epoch: Int, step: Int, lastGood: String?, tensor: String? = nil)
    case interrupted(epoch: Int, step: Int)
    /// Stopped before anything resumable was written (a run's first epoch): it starts over.
    case interruptedBeforeCheckpoint(epoch: Int, step: Int, rerun: String)
    case resume(String)
    case output(String)

    public var description: String {
        switch self {
        case let .invalidConfig(m): return m
        case let .invalidInput(m): return m
        case let .nonFiniteLoss(epoch, step, lastGood, tensor):
            return (tensor.map { "\($0) became NaN or infinite in epoch \(epoch); training stopped. " }
                    ?? "the loss became NaN or infinite at epoch \(epoch), step \(step); training stopped. ")
                + (lastGood.map { "The last good checkpoint is \($0)." } ?? "There is no good checkpoint to go back to (no epoch had finished with finite weights).")
                + " Try a lower --lr in a new run (another --out): --resume keeps the run's own settings, so it would stop the same way."
        case let .interrupted(epoch, step): return "interrupted at epoch \(epoch), step \(step); continue with --resume"
        case let .interruptedBeforeCheckpoint(epoch, step, rerun):
            return "interrupted at epoch \(epoch), step \(step), before anything resumable was written; \(rerun)"
        case let .resume(m): return "cannot resume: \(m)"
        case let .output(m): return m
        }
    }
}
