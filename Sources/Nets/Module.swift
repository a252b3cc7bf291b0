@_exported import Autodiff

/// Whether a named tensor is trained or only carried along.
public enum StateKind: String, Codable, Sendable {
    /// Trained by the optimizer, counted in P(config): conv/linear weights and biases, BN
    /// weight and bias.
    case parameter
    /// Saved and restored but not trained: BN running statistics.
    case buffer
}

/// A tensor of a net under its PyTorch-style dotted name (`layer1.0.conv1.weight`), the name
/// checkpoints, ONNX initializers and logs all use.
public struct NamedTensor {
    public let name: String
    public let kind: StateKind
    public let tensor: Tensor
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

    public init(_ initialization: Initialization) {
        if case let .random(g) = initialization { rng = g }
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
