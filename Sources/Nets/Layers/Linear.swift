import Autodiff

/// A fully connected layer: `weight` [Out, In], `bias` [Out].
///
/// Initialization: weight N(0, 0.01), bias 0.
public final class Linear: Module {
    public let weight: Tensor, bias: Tensor

    public init(_ inFeatures: Int, _ outFeatures: Int, _ initializer: Initializer) {
        weight = initializer.normal([outFeatures, inFeatures], std: 0.01)
        bias = initializer.constant([outFeatures], 0)
    }

    /// - Parameter x: [N, In]
    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        state.append(NamedTensor(name: join(prefix, "weight"), kind: .parameter, tensor: weight))
        state.append(NamedTensor(name: join(prefix, "bias"), kind: .parameter, tensor: bias))
    }
}
