/// Stochastic gradient descent with momentum and weight decay, with `torch.optim.SGD`'s rules
/// (dampening 0):
///
///     d = g + weightDecay * w
///     buf = momentum * buf + d          (buf = d on the first step)
///     w -= lr * buf                     (nesterov: w -= lr * (d + momentum * buf))
public final class SGD {
    public let parameters: [Tensor]
    public let momentum: Float
    public let weightDecay: Float
    public let nesterov: Bool
    /// The learning-rate schedule, by epoch.
    public let schedule: any LearningRateSchedule
    /// The learning rate of the current epoch.
    public private(set) var learningRate: Float
    /// The current epoch (the schedule's position).
    public private(set) var epoch: Int = 0
    /// Steps taken so far.
    public private(set) var stepCount: Int = 0

    /// Per parameter: the momentum buffer, created on its first update.
    private var buffers: [Tensor?]

    /// - Parameters:
    ///   - parameters: every tensor the optimizer may update, in a fixed order (checkpoints
    ///     store momentum buffers by position).
    public init(parameters: [Tensor], schedule: some LearningRateSchedule, momentum: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        precondition(!nesterov || momentum > 0, "SGD: nesterov momentum needs momentum > 0")
        self.parameters = parameters
        self.buffers = Array(repeating: nil, count: parameters.count)
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.schedule = schedule
        self.learningRate = schedule.learningRate(epoch: 0)
    }

    /// Moves the schedule to `epoch` and sets its learning rate.
    public func beginEpoch(_ epoch: Int) {
        self.epoch = epoch
        learningRate = schedule.learningRate(epoch: epoch)
    }

    /// Overrides the learning rate until the next `beginEpoch`.
    public func setLearningRate(_ lr: Float) { learningRate = lr }

    /// Updates every parameter that has a gradient.
    public func step() {
        let lr = learningRate, m = momentum, wd = weightDecay, nesterov = nesterov
        for (i, w) in parameters.enumerated() {
            guard let g = w.grad else { continue }
            let pw = w.data, pg = g.data
            if m == 0 {
                Parallel.forRange(w.count, grain: elementwiseGrain) { r in
                    for j in r { pw[j] -= lr * (pg[j] + wd * pw[j]) }
                }
                continue
            }
            let first = buffers[i] == nil
            let buf = buffers[i] ?? Tensor(uninitialized: w.shape)
            buffers[i] = buf
            let pb = buf.data
            Parallel.forRange(w.count, grain: elementwiseGrain) { r in
                for j in r {
                    let d = pg[j] + wd * pw[j]
                    let b = first ? d : m * pb[j] + d
                    pb[j] = b
                    pw[j] -= lr * (nesterov ? d + m * b : b)
                }
            }
        }
        stepCount += 1
    }

    /// Drops every parameter's gradient.
    public func zeroGrad() {
        for p in parameters { p.grad = nil }
    }

    /// The momentum buffer of parameter `index`, if it has one yet; callers may edit it (zero
    /// rows of it, for instance).
    public func momentumBuffer(_ index: Int) -> Tensor? { buffers[index] }

    /// Everything needed to continue exactly: position and momentum buffers.
    public var state: SGDState {
        SGDState(epoch: epoch, stepCount: stepCount, learningRate: learningRate,
                 momentumBuffers: buffers.map { $0?.values })
    }

    /// Restores a saved state; buffer sizes must match the parameters.
    public func load(_ state: SGDState) throws {
        guard state.momentumBuffers.count == parameters.count else {
            throw ShapeError("SGD.load", "state has \(state.momentumBuffers.count) momentum buffers for \(parameters.count) parameters")
        }
        for (i, values) in state.momentumBuffers.enumerated() {
            guard let values else { buffers[i] = nil; continue }
            guard values.count == parameters[i].count else {
                throw ShapeError("SGD.load", "momentum buffer \(i) has \(values.count) values, parameter \(i) is \(parameters[i].shape)")
            }
            buffers[i] = Tensor(shape: parameters[i].shape, values: values)
        }
        epoch = state.epoch
        stepCount = state.stepCount
        learningRate = state.learningRate
    }
}

/// A snapshot of an `SGD`'s mutable state.
public struct SGDState: Codable, Equatable, Sendable {
    public var epoch: Int
    public var stepCount: Int
    public var learningRate: Float
    /// Per parameter, in the optimizer's order: the momentum buffer, or nil before its first step.
    public var momentumBuffers: [[Float]?]

    public init(epoch: Int, stepCount: Int, learningRate: Float, momentumBuffers: [[Float]?]) {
        self.epoch = epoch
        self.stepCount = stepCount
        self.learningRate = learningRate
        self.momentumBuffers = momentumBuffers
    }
}

/// Learning rate as a function of the (0-based) epoch. Autodiff provides the two schedules of
/// plain training; a caller with its own rule conforms its own type.
public protocol LearningRateSchedule: Sendable {
    func learningRate(epoch: Int) -> Float
}

/// The same learning rate every epoch.
public struct ConstantLearningRate: LearningRateSchedule, Equatable {
    public var learningRate: Float

    public init(_ learningRate: Float) { self.learningRate = learningRate }

    public func learningRate(epoch: Int) -> Float { learningRate }
}

/// `base * gamma^k`, k = the number of milestones <= epoch (PyTorch's `MultiStepLR`).
public struct MultiStepLearningRate: LearningRateSchedule, Equatable {
    public var base: Float
    public var milestones: [Int]
    public var gamma: Float

    public init(base: Float, milestones: [Int], gamma: Float) {
        self.base = base
        self.milestones = milestones
        self.gamma = gamma
    }

    public func learningRate(epoch: Int) -> Float {
        var lr = base
        for m in milestones where epoch >= m { lr *= gamma }
        return lr
    }
}

extension LearningRateSchedule where Self == ConstantLearningRate {
    /// `.constant(lr)` where a schedule is expected.
    public static func constant(_ learningRate: Float) -> ConstantLearningRate { ConstantLearningRate(learningRate) }
}

extension LearningRateSchedule where Self == MultiStepLearningRate {
    /// `.multiStep(base:milestones:gamma:)` where a schedule is expected.
    public static func multiStep(base: Float, milestones: [Int], gamma: Float) -> MultiStepLearningRate {
        MultiStepLearningRate(base: base, milestones: milestones, gamma: gamma)
    }
}
