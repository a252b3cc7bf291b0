import Autodiff

/// Whether a named tensor is trained or only carried along.
public enum StateKind: String, Codable, Sendable {
    /// Trained by the optimizer, counted in P(config): conv/linear weights and biases, BN
    /// weight and bias.
    case parameter
    /// Saved and restored but not trained: BN running statistics.
    case buffer
    /// A pruning gate (spec: "Taylor-FO importance with gates"): saved, never trained, not in P.
    case gate
}

/// A tensor of a net under its PyTorch-style dotted name (`layer1.0.conv1.weight`), the name
/// checkpoints, ONNX initializers and logs all use.
public struct NamedTensor {
    public let name: String
    public let kind: StateKind
    public let tensor: Tensor
    /// The width group that axis 0 runs over, where the layer declares one: a conv's filters
    /// and bias (see `Conv2d.group`). Everything else about groups is traced (`ChannelWiring`).
    public let group: Int?

    public init(name: String, kind: StateKind, tensor: Tensor, group: Int? = nil) {
        self.name = name
        self.kind = kind
        self.tensor = tensor
        self.group = group
    }
}

/// Something that owns named tensors: a layer, a block or a whole net.
public protocol Module: AnyObject {
    /// Appends this module's tensors, in a fixed order, with names under `prefix`.
    func collectState(prefix: String, into state: inout [NamedTensor])
}

extension Module {
    /// Every tensor, in the module's fixed order.
    public var state: [NamedTensor] {
        var s: [NamedTensor] = []
        collectState(prefix: "", into: &s)
        return s
    }

    /// The trainable tensors, in order (the order optimizers and checkpoints use).
    public var parameters: [Tensor] { state.filter { $0.kind == .parameter }.map(\.tensor) }

    /// The number of trainable values: P(config) of the spec.
    public var parameterCount: Int { state.filter { $0.kind == .parameter }.reduce(0) { $0 + $1.tensor.count } }
}

/// `prefix.name`, or `name` at the root.
@inline(__always) func join(_ prefix: String, _ name: String) -> String {
    prefix.isEmpty ? name : prefix + "." + name
}

/// How new parameters are filled. `.none` allocates only, e.g. to count parameters.
public enum Initialization {
    case none
    /// The documented initialization (see each layer) from this generator.
    case random(RandomGenerator)
}

/// Threads the generator through layer construction, so a net's initial weights depend only
/// on the seed and the order its layers are built in.
public final class Initializer {
    private var rng: RandomGenerator?
    /// Whether the net gets a pruning gate on every width group.
    public let gated: Bool

    public init(_ initialization: Initialization, gated: Bool = false) {
        if case let .random(g) = initialization { rng = g }
        self.gated = gated
    }

    /// A gate of ones for a group of `width` channels, or nil for an ungated net. Gates take
    /// gradients (for Taylor-FO) but no optimizer step.
    func gate(_ width: Int) -> Tensor? {
        gated ? Tensor.filled([width], with: 1, requiresGrad: true) : nil
    }

    /// A tensor of normal draws with standard deviation `std` (uninitialized for `.none`).
    func normal(_ shape: [Int], std: Float) -> Tensor {
        guard rng != nil else { return Tensor(uninitialized: shape, requiresGrad: true) }
        return Tensor.randn(shape, std: std, using: &rng!, requiresGrad: true)
    }

    func constant(_ shape: [Int], _ value: Float, requiresGrad: Bool = true) -> Tensor {
        Tensor.filled(shape, with: value, requiresGrad: requiresGrad)
    }
}

/// Where a group's gate sits and what dies with a pruned channel.
public struct GateSite {
    /// [C], 1 for alive channels, 0 for pruned ones.
    public let gate: Tensor
    /// Tensors whose slice `c` along the first axis belongs to channel `c` alone: the conv
    /// filters, conv bias and BN weight and bias that produce it, and the weight and bias of a
    /// BN that consumes it where that BN would turn its zero into a constant. Pruning zeroes
    /// these slices and their momentum, so the channel stays dead.
    public let dead: [Tensor]

    public init(gate: Tensor, dead: [Tensor]) {
        self.gate = gate
        self.dead = dead
    }
}

/// `act(gate * x)` when the gate exists, else `act(x)`; the gated path keeps the gate separate so
/// `dL/dg` is available.
@inline(__always) func gated(_ x: Tensor, _ g: Tensor?, _ act: Activation) -> Tensor {
    guard let g else {
        switch act {
        case .identity: return x
        case .relu: return relu(x)
        case .relu6: return relu6(x)
        }
    }
    let y = channelScale(x, g)
    switch act {
    case .identity: return y
    case .relu: return relu(y)
    case .relu6: return relu6(y)
    }
}

extension Module {
    /// Appends gate tensors under `gates.<i>`.
    func collectGates(_ gates: [Tensor?], prefix: String, into state: inout [NamedTensor]) {
        for (i, g) in gates.enumerated() {
            if let g { state.append(NamedTensor(name: join(prefix, "gates.\(i)"), kind: .gate, tensor: g)) }
        }
    }
}

extension BatchNorm2d {
    /// `act(gate * bn(x))`: fused into one pass when there is no gate.
    func callAsFunction(_ x: Tensor, training: Bool, gate g: Tensor?, activation: Activation) -> Tensor {
        guard let g else { return self(x, training: training, activation: activation) }
        return gated(self(x, training: training), g, activation)
    }

}


/// Which width groups a tensor's first two axes run over: what pruning surgery needs to cut a
/// gated net's tensors down to its alive channels. `nil` keeps the axis whole.
public struct ChannelAxes: Equatable, Sendable {
    /// The group of axis 0 (a conv's or linear's output channels; a BN's or bias's channels).
    public let rows: Int?
    /// The group of axis 1 (a conv's or linear's input channels). A linear layer on flattened
    /// `C x H x W` features has `H * W` columns per channel.
    public let columns: Int?

    public init(rows: Int?, columns: Int?) {
        self.rows = rows
        self.columns = columns
    }
}
