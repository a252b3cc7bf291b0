import Autodiff

/// The search's learning-rate schedule, from the spec ("Taylor-FO importance with gates"):
/// `warmupLR` for epochs `0..<warmupEpochs`, then `afterWarmup` divided by `factor` every
/// `every` epochs while pruning goes on.
public struct SearchLearningRate: LearningRateSchedule, Equatable {
    public var warmupLR: Float
    public var warmupEpochs: Int
    public var afterWarmup: Float
    public var factor: Float
    public var every: Int

    public init(warmupLR: Float, warmupEpochs: Int, afterWarmup: Float, factor: Float, every: Int) {
        self.warmupLR = warmupLR
        self.warmupEpochs = warmupEpochs
        self.afterWarmup = afterWarmup
        self.factor = factor
        self.every = every
    }

    /// The reference search schedule: 0.1 for 10 warm-up epochs, then 0.01 / 1.5 every 10 epochs.
    public static func reference(warmupLR: Float = 0.1, warmupEpochs: Int = 10) -> SearchLearningRate {
        SearchLearningRate(warmupLR: warmupLR, warmupEpochs: warmupEpochs, afterWarmup: 0.01, factor: 1.5, every: 10)
    }

    public func learningRate(epoch: Int) -> Float {
        if epoch < warmupEpochs { return warmupLR }
        var lr = afterWarmup
        for _ in 0..<((epoch - warmupEpochs) / max(every, 1)) { lr /= factor }
        return lr
    }
}
