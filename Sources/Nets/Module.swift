import Autodiff

/// Whether a named tensor is trained or only carried along.
public enum StateKind: String, Codable, Sendable {
    /// Trained by the optimizer, counted in P(config): conv/linear weights and biases, BN
    /// weight and bias.
    case parameter
    /// Saved and restored but not trained: BN running statistics.
    case buffer
    /// A per-channel scale of a width group (`Initializer(channelScales: true)`): saved and
    /// restored, given gradients but never an optimizer step, not in P. The search's pruning
    /// gates are these.
    case channelScale
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

extension Module {
    /// Appends the state of every module this one holds in a stored property, named by the
    /// property, in declaration order: a module under its name, an optional one when present, an
    /// array of modules as `name.<i>`, a tuple of modules as `name.<i>`. Nothing else is state
    /// (channel scales are collected apart, in group order). For modules whose reference names
    /// are their layers' names (`blocks.3.conv1`, `layers.0.shortcut`).
    func collectProperties(prefix: String, into state: inout [NamedTensor]) {
        for child in Mirror(reflecting: self).children {
            guard let label = child.label else { continue }
            collect(child.value, prefix: join(prefix, label), into: &state)
        }
    }
}

/// The state of `value` under `prefix` when it is a module, an optional module, or an array or
/// tuple of modules; nothing otherwise.
private func collect(_ value: Any, prefix: String, into state: inout [NamedTensor]) {
    if let module = value as? Module { return module.collectState(prefix: prefix, into: &state) }
    let mirror = Mirror(reflecting: value)
    switch mirror.displayStyle {
    case .optional:
        if let wrapped = mirror.children.first { collect(wrapped.value, prefix: prefix, into: &state) }
    case .collection, .tuple:
        for (i, element) in mirror.children.enumerated() where element.value is Module {
            collect(element.value, prefix: join(prefix, String(i)), into: &state)
        }
    default:
        break
    }
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
    /// Whether the net gets a channel scale on every width group.
    public let channelScales: Bool

    public init(_ initialization: Initialization, channelScales: Bool = false) {
        if case let .random(g) = initialization { rng = g }
        self.channelScales = channelScales
    }

    /// A scale of ones for a group of `width` channels, or nil without channel scales. Scales
    /// take gradients but no optimizer step.
    func channelScale(_ width: Int) -> Tensor? {
        channelScales ? Tensor.filled([width], with: 1, requiresGrad: true) : nil
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

/// `act(scale * x)` when the scale exists, else `act(x)`; the scaled path keeps the scale a
/// separate op so `dL/dscale` is available.
@inline(__always) func scaled(_ x: Tensor, _ g: Tensor?, _ act: Activation) -> Tensor {
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
    /// Appends the channel scale of group `i` as `gates.<i>`: the search's name for them, which
    /// checkpoints of search states carry.
    func collectChannelScales(_ scales: [Tensor?], prefix: String, into state: inout [NamedTensor]) {
        for (i, g) in scales.enumerated() {
            if let g { state.append(NamedTensor(name: join(prefix, "gates.\(i)"), kind: .channelScale, tensor: g)) }
        }
    }
}

extension BatchNorm2d {
    /// `act(scale * bn(x))` in one pass; the scale is the batch norm's gate operand, so
    /// `dL/dscale` comes out of its backward pass.
    func callAsFunction(_ x: Tensor, training: Bool, scale g: Tensor?, activation: Activation) -> Tensor {
        self(x, training: training, activation: activation, gate: g)
    }
}


/// Which width groups a tensor's first two axes run over: what cuts a net's tensors down to a
/// subset of each group's channels (pruning's surgery). `nil` keeps the axis whole.
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
