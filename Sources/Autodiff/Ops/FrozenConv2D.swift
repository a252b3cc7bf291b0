import Foundation

/// A convolution whose weights stay fixed between calls (an inference engine's, batch norm folded
/// in), and the activation after it: `act(conv2d(x, weight, bias))` with the bias and the
/// activation applied in the convolution's own output pass, and what the convolution derives from
/// the weights alone (Winograd's transformed kernels) computed on first use and kept.
///
/// It records nothing for backward. The weights must not change once it has run.
public final class FrozenConv2D {
    /// [O, C / groups, kH, kW]
    public let weight: Tensor
    /// [O], or nil.
    public let bias: Tensor?
    public let stride: (Int, Int), padding: (Int, Int), groups: Int
    public let activation: Activation
    /// Winograd's transformed kernels, by output tile size.
    private var transformed: [Int: Tensor] = [:]
    private let lock = NSLock()

    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), groups: Int = 1,
                activation: Activation = .identity) {
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.activation = activation
    }

    /// - Parameter x: [N, C, H, W]
    /// - Returns: [N, O, outH, outW]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let geo = validated {
            try Conv2DGeometry.validate(input: x.shape, weight: weight.shape, bias: bias?.shape,
                                        stride: stride, padding: padding, groups: groups)
        }
        let out = Tensor(uninitialized: [geo.batch, geo.outChannels, geo.outH, geo.outW])
        if geo.isDepthwise {
            depthwiseForward(geo, x.data, weight.data, bias?.data, out.data, activation: activation)
        } else if let winograd = WinogradConv(geo, frozenWeights: true) {
            winograd.forward(x.data, weight.data, bias?.data, out.data, transformed: kernels(for: winograd), activation: activation)
        } else {
            GEMMConv(geo).forward(x.data, weight.data, bias?.data, out.data, activation: activation)
        }
        Trace.note(.conv2d(stride: Pair(stride), padding: Pair(padding), groups: groups), Operands(x, weight, bias), out)
        return out
    }

    /// Winograd's transformed kernels for `winograd`'s tile size, transformed on first use.
    private func kernels(for winograd: WinogradConv) -> Tensor {
        lock.lock()
        defer { lock.unlock() }
        if let u = transformed[winograd.tile] { return u }
        let u = winograd.transformedWeights(weight.data, rotated: false)
        transformed[winograd.tile] = u
        return u
    }
}
