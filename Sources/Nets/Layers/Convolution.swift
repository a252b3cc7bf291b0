import Autodiff

/// A 2-D convolution layer: `weight` [O, C/groups, k, k] (OIHW) and an optional `bias` [O].
///
/// Initialization: Kaiming normal in fan-out mode, `std = sqrt(2 / (O * k * k))` (PyTorch's
/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`), bias 0.
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int, padding: Int, groups: Int
    /// The width group of the output channels (what the net's definition says of this layer),
    /// or nil for channels that are never pruned (MobileNetV2's expansions, a classifier).
    public let group: Int?

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                groups: Int = 1, bias: Bool, group: Int? = nil, _ initializer: Initializer) {
        precondition(inChannels >= 1 && outChannels >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: \(inChannels) -> \(outChannels) channels do not divide into \(groups) groups")
        let std = (2 / Float(outChannels * kernel * kernel)).squareRoot()
        self.weight = initializer.normal([outChannels, inChannels / groups, kernel, kernel], std: std)
        self.bias = bias ? initializer.constant([outChannels], 0) : nil
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.group = group
    }

    public var outChannels: Int { weight.shape[0] }

    /// - Parameter x: [N, C, H, W]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding), groups: groups)
    }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        state.append(NamedTensor(name: join(prefix, "weight"), kind: .parameter, tensor: weight, group: group))
        if let bias { state.append(NamedTensor(name: join(prefix, "bias"), kind: .parameter, tensor: bias, group: group)) }
    }
}
