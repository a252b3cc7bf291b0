import Autodiff

/// Batch normalization over channels, PyTorch's `BatchNorm2d` (momentum 0.1, eps 1e-5).
///
/// Initialization: weight 1, bias 0, running mean 0, running variance 1.
public final class BatchNorm2d: Module {
    public let weight: Tensor, bias: Tensor
    public let runningMean: Tensor, runningVar: Tensor
    public let momentum: Float = 0.1, eps: Float = 1e-5

    public init(_ channels: Int, _ initializer: Initializer) {
        weight = initializer.constant([channels], 1)
        bias = initializer.constant([channels], 0)
        runningMean = initializer.constant([channels], 0, requiresGrad: false)
        runningVar = initializer.constant([channels], 1, requiresGrad: false)
    }

    /// Normalizes `x` [N, C, H, W] (batch statistics when `training`), multiplies channel `c` by
    /// `gate[c]` when a gate is given, then applies `activation`, all in the same pass.
    public func callAsFunction(_ x: Tensor, training: Bool, activation: Activation = .identity,
                               gate: Tensor? = nil) -> Tensor {
        batchNorm2d(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                    training: training, momentum: momentum, eps: eps, activation: activation, gate: gate)
    }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        state.append(NamedTensor(name: join(prefix, "weight"), kind: .parameter, tensor: weight))
        state.append(NamedTensor(name: join(prefix, "bias"), kind: .parameter, tensor: bias))
        state.append(NamedTensor(name: join(prefix, "running_mean"), kind: .buffer, tensor: runningMean))
        state.append(NamedTensor(name: join(prefix, "running_var"), kind: .buffer, tensor: runningVar))
    }
}
