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
    /// Whether the weights stay in the caches between calls (a net whose weights fit there):
    /// `.auto` then counts nothing for reading Winograd's larger transformed kernels.
    public let weightsCached: Bool
    /// What the convolution of one input shape runs, decided on the first call with that shape
    /// (and `Conv2DTuning.winograd` and `.portableKernels`): an inference calls it with the same
    /// shape every time, and deciding (the kernel window, the algorithm, the kept kernels,
    /// im2col's tables) cost microseconds per call, as much as an image's small layers compute.
    private var plans: [PlanKey: Plan] = [:]
    private var last: (key: PlanKey, plan: Plan)?
    private struct PlanKey: Hashable {
        let shape: [Int]
        let winograd: Conv2DTuning.Winograd
        let portable: Bool
    }
    private final class Plan {
        /// The call's geometry, validated.
        let geometry: Conv2DGeometry
        /// The geometry run: the call's restricted to its `KernelWindow`.
        let run: Conv2DGeometry
        /// The weights, cut to the window.
        let kernels: Tensor
        let path: Path
        enum Path {
            case depthwise
            /// Planes that fit a vector side by side, with the weights laid out for them
            /// (`depthwisePackedForward`).
            case depthwisePacked(Tensor)
            /// With the transformed kernels, laid out for the products (`WinogradConv.kernelsByInput`).
            case winograd(WinogradConv, Tensor)
            /// With the packed kernels.
            case packed(PackedGEMMConv, Tensor)
            /// With the expanded kernels.
            case dense(DenseMapConv, Tensor)
            case gemm(GEMMConv)

            /// The algorithm the path runs.
            var algorithm: Conv2DAlgorithm {
                switch self {
                case .depthwise, .depthwisePacked: return .depthwise
                case let .winograd(conv, _): return .winograd(tile: conv.tile)
                case .packed: return .packedGEMM
                case .dense: return .denseMap
                case .gemm: return .im2col
                }
            }

            /// Whether the path adds a residual (and then the activation) in its own output pass.
            var addsResidual: Bool {
                switch self {
                case .packed, .dense: return true
                case .depthwise, .depthwisePacked, .winograd, .gemm: return false
                }
            }

            /// Whether a call (`adding` a residual or not, with the convolution's `activation`)
            /// writes a normalization of its output in a pass it makes anyway: the packed kernels'
            /// output tiles (all but the narrow kernel's), or the pass that adds the residual
            /// after the paths that do not add it themselves (and apply no activation after it).
            func normalizesOutput(adding: Bool, activation: Activation) -> Bool {
                if case let .packed(gemm, _) = self { return gemm.normalizesOutput }
                return adding && !addsResidual && activation == .identity
            }
        }

        init(geometry: Conv2DGeometry, run: Conv2DGeometry, kernels: Tensor, path: Path) {
            self.geometry = geometry
            self.run = run
            self.kernels = kernels
            self.path = path
        }
    }
    /// The kernels kept across plans (one per batch size, say): Winograd's transformed ones by
    /// output tile size, the ones restricted to a window by the input's plane, the packed ones
    /// by layout and window.
    private var transformed: [Int: Tensor] = [:]
    private var restricted: [Pair: Tensor] = [:]
    private var packed: [PackKey: Tensor] = [:]
    /// The kernels expanded over a small map (`DenseMapConv`), by the input's plane.
    private var expanded: [Pair: Tensor] = [:]
    /// A depthwise convolution's weights laid out for small planes side by side
    /// (`depthwisePackedWeights`), by the input's plane.
    private var depthwisePacked: [Pair: Tensor] = [:]
    private struct PackKey: Hashable {
        let window: Pair?
        let narrow: Bool
        /// The panels' layout depends on it.
        let portable: Bool
    }
    private let lock = NSLock()

    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), groups: Int = 1,
                activation: Activation = .identity, weightsCached: Bool = false) {
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.activation = activation
        self.weightsCached = weightsCached
    }

    /// `act(conv2d(x) + bias)`, or with `residual` `act(conv2d(x) + bias + residual)` (a residual
    /// sum and the activation after it): added in the output pass where the weights are packed
    /// (`PackedGEMMConv`), else by a pass after the convolution.
    /// - Parameter x: [N, C, H, W]
    /// - Parameter residual: [N, O, outH, outW], or nil.
    /// - Returns: [N, O, outH, outW]
    public func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil) -> Tensor {
        callAsFunction(x, adding: residual, normalizing: nil).output
    }

    /// The same, and `norm` of the output (the result of `batchNorm2d` on it in eval mode) where
    /// the path computes it in the same pass: the packed kernels' output tiles while still in
    /// registers, or the pass that adds the residual after a path that does not add it itself
    /// (Winograd, say); `Plan.Path.normalizesOutput` decides. `normalized` is nil where the path
    /// does not (the caller then runs the batch norm itself).
    public func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil,
                               normalizing norm: OutputNormalization?) -> (output: Tensor, normalized: Tensor?) {
        let plan = self.plan(x.shape), geo = plan.geometry
        let out = Tensor(uninitialized: [geo.batch, geo.outChannels, geo.outH, geo.outW])
        if let residual {
            validated { try require(residual.shape == out.shape, "conv2d", "residual \(residual.shape) must be the output's \(out.shape)") }
        }
        if let norm {
            validated { try require(norm.mean.shape == [geo.outChannels], "conv2d", "normalization of \(norm.mean.shape) channels for \(geo.outChannels)") }
        }
        // Where the path does not add a residual, it is added after, so the activation waits for it.
        let addsResidual = plan.path.addsResidual
        let act = residual == nil || addsResidual ? activation : .identity
        let normalizes = norm != nil && plan.path.normalizesOutput(adding: residual != nil, activation: activation)
        var normalized: Tensor?
        switch plan.path {
        case .depthwise:
            depthwiseForward(plan.run, x.data, plan.kernels.data, bias?.data, out.data, activation: act)
        case let .depthwisePacked(weights):
            depthwisePackedForward(plan.run, x.data, weights.data, out.data, activation: act)
        case let .winograd(winograd, frozen):
            winograd.forward(x.data, plan.kernels.data, bias?.data, out.data, frozen: frozen, activation: act)
        case let .packed(gemm, kernels):
            if let norm, normalizes {
                let second = Tensor(uninitialized: out.shape)
                normalized = second
                norm.writing(into: second) { nz in
                    gemm.forward(x.data, packed: kernels.data, bias?.data, adding: residual?.data, out.data, activation: act,
                                 normalized: nz)
                }
            } else {
                gemm.forward(x.data, packed: kernels.data, bias?.data, adding: residual?.data, out.data, activation: act)
            }
        case let .dense(conv, expanded):
            conv.forward(x.data, expanded: expanded.data, bias?.data, adding: residual?.data, out.data, activation: act)
        case let .gemm(gemm):
            gemm.forward(x.data, plan.kernels.data, bias?.data, out.data, activation: act)
        }
        Trace.note(.conv2d(stride: Pair(stride), padding: Pair(padding), groups: groups), Operands(x, weight, bias), out)
        if let residual, !addsResidual {
            if let norm, normalizes {
                let (sum, second) = addNormalizing(out, residual, norm)
                return (sum, second)
            }
            return (addActivating(out, residual, activation), nil)
        }
        return (out, normalized)
    }

    /// Whether a call on input `shape` (`adding` a residual or not) computes a normalization of
    /// its output in its own pass (`callAsFunction(_:adding:normalizing:)`).
    public func normalizesOutput(for shape: [Int], adding: Bool) -> Bool {
        plan(shape).path.normalizesOutput(adding: adding, activation: activation)
    }

    /// The algorithm a call on input `shape` runs: its plan's (made now if no call has made it).
    public func algorithm(for shape: [Int]) -> Conv2DAlgorithm { plan(shape).path.algorithm }

    /// The plan for input `shape`, made on first use (where the shapes are checked).
    private func plan(_ shape: [Int]) -> Plan {
        let key = PlanKey(shape: shape, winograd: Conv2DTuning.winograd, portable: Conv2DTuning.portableKernels)
        lock.lock()
        defer { lock.unlock() }
        if let last, last.key == key { return last.plan }
        if let plan = plans[key] {
            last = (key, plan)
            return plan
        }
        let geo = validated {
            try Conv2DGeometry.validate(input: shape, weight: weight.shape, bias: bias?.shape,
                                        stride: stride, padding: padding, groups: groups)
        }
        let plan = makePlan(geo)
        plans[key] = plan
        last = (key, plan)
        return plan
    }

    /// Called with `lock` held.
    private func makePlan(_ geo: Conv2DGeometry) -> Plan {
        let window = KernelWindow(geo), run = window?.geometry ?? geo
        let plane = window.map { Pair($0.full.height, $0.full.width) }
        var kernels = weight
        if let window, let plane {
            kernels = restricted[plane] ?? window.slice(weight)
            restricted[plane] = kernels
        }
        let path: Plan.Path
        if run.isDepthwise {
            let key = Pair(geo.height, geo.width)
            let laidOut = depthwisePacked[key] ?? depthwisePackedWeights(run, kernels.data, bias?.data)
            depthwisePacked[key] = laidOut
            path = laidOut.map { .depthwisePacked($0) } ?? .depthwise
        } else if let dense = DenseMapConv(run) {
            let key = Pair(geo.height, geo.width)
            let e = expanded[key] ?? dense.expand(kernels.data)
            expanded[key] = e
            path = .dense(dense, e)
        } else if let winograd = WinogradConv(run, frozenWeights: true, weightsCached: weightsCached) {
            let u = transformed[winograd.tile] ?? winograd.kernelsByInput(kernels.data)
            transformed[winograd.tile] = u
            path = .winograd(winograd, u)
        } else if let gemm = PackedGEMMConv(run) {
            let key = PackKey(window: plane, narrow: gemm.narrow, portable: Conv2DTuning.portableKernels)
            let p = packed[key] ?? gemm.pack(kernels.data)
            packed[key] = p
            path = .packed(gemm, p)
        } else {
            path = .gemm(GEMMConv(run))
        }
        return Plan(geometry: geo, run: run, kernels: kernels, path: path)
    }
}
