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
    /// The kernels restricted to the rows and columns that read the image, by the input's plane
    /// (see `KernelWindow`).
    private var restricted: [Pair: Tensor] = [:]
    /// The kernels packed for `PackedGEMMConv`, by layout and by the input's plane when cut to a
    /// window.
    private var packed: [PackKey: Tensor] = [:]
    private struct PackKey: Hashable {
        let window: Pair?
        let narrow: Bool
    }
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

    /// `act(conv2d(x) + bias)`, or with `residual` `act(conv2d(x) + bias + residual)` (a residual
    /// sum and the activation after it): added in the output pass where the weights are packed
    /// (`PackedGEMMConv`), else by a pass after the convolution.
    /// - Parameter x: [N, C, H, W]
    /// - Parameter residual: [N, O, outH, outW], or nil.
    /// - Returns: [N, O, outH, outW]
    public func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil) -> Tensor {
        let geo = validated {
            try Conv2DGeometry.validate(input: x.shape, weight: weight.shape, bias: bias?.shape,
                                        stride: stride, padding: padding, groups: groups)
        }
        let out = Tensor(uninitialized: [geo.batch, geo.outChannels, geo.outH, geo.outW])
        if let residual {
            validated { try require(residual.shape == out.shape, "conv2d", "residual \(residual.shape) must be the output's \(out.shape)") }
        }
        let window = KernelWindow(geo), run = window?.geometry ?? geo
        let kernels = window.map { restrictedKernels($0) } ?? weight
        let winograd = run.isDepthwise ? nil : WinogradConv(run, frozenWeights: true)
        let packed = run.isDepthwise || winograd != nil ? nil : PackedGEMMConv(run)
        // Without the packed path a residual is added after, so the activation waits for it.
        let act = residual == nil || packed != nil ? activation : .identity
        if run.isDepthwise {
            depthwiseForward(run, x.data, kernels.data, bias?.data, out.data, activation: act)
        } else if let winograd {
            winograd.forward(x.data, kernels.data, bias?.data, out.data, transformed: transformedKernels(winograd, kernels),
                             activation: act)
        } else if let gemm = packed {
            let key = PackKey(window: window.map { Pair($0.full.height, $0.full.width) }, narrow: gemm.narrow)
            gemm.forward(x.data, packed: packedKernels(gemm, kernels, key: key).data, bias?.data, adding: residual?.data,
                         out.data, activation: act)
        } else {
            GEMMConv(run).forward(x.data, kernels.data, bias?.data, out.data, activation: act)
        }
        Trace.note(.conv2d(stride: Pair(stride), padding: Pair(padding), groups: groups), Operands(x, weight, bias), out)
        if let residual, packed == nil { return addActivating(out, residual, activation) }
        return out
    }

    /// Winograd's transformed `kernels` for `winograd`'s tile size, transformed on first use.
    private func transformedKernels(_ winograd: WinogradConv, _ kernels: Tensor) -> Tensor {
        lock.lock()
        defer { lock.unlock() }
        if let u = transformed[winograd.tile] { return u }
        let u = winograd.transformedWeights(kernels.data, rotated: false)
        transformed[winograd.tile] = u
        return u
    }

    /// `kernels` packed for `gemm`, packed on first use for `key`.
    private func packedKernels(_ gemm: PackedGEMMConv, _ kernels: Tensor, key: PackKey) -> Tensor {
        lock.lock()
        defer { lock.unlock() }
        if let p = packed[key] { return p }
        let p = gemm.pack(kernels.data)
        packed[key] = p
        return p
    }

    /// The kernels cut to `window`, cut on first use for its input plane.
    private func restrictedKernels(_ window: KernelWindow) -> Tensor {
        lock.lock()
        defer { lock.unlock() }
        let key = Pair(window.full.height, window.full.width)
        if let k = restricted[key] { return k }
        let k = window.slice(weight)
        restricted[key] = k
        return k
    }
}
