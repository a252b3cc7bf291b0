/// Height and width of a 2-D op's kernel, stride or padding.
public struct Pair: Hashable, Sendable, CustomStringConvertible {
    public let h: Int, w: Int
    public init(_ h: Int, _ w: Int) {
        self.h = h
        self.w = w
    }
    public init(_ hw: (Int, Int)) { self.init(hw.0, hw.1) }
    public var description: String { h == w ? "\(h)" : "\(h)x\(w)" }
}

/// What an op computed: its kind and the attributes that fix its result. Recorded with every
/// tape record and every traced op, so the computation that ran can be walked (`Trace`).
public enum OpKind: Equatable, Sendable {
    /// `a + b`; operands (a, b).
    case add
    /// `a * b`; operands (a, b).
    case mul
    /// `x[n, c, ...] * s[c]`, a per-channel scale; operands (x, s).
    case channelScale
    /// Operands (x).
    case relu, relu6
    /// `act(a + b)`, times `scale[c]` when `scaled`; operands (a, b, scale?). Recorded by training
    /// steps only: while a `Trace` is active `residualSum` runs as `add`, the activation and
    /// `channelScale`.
    case residualSum(activation: Activation, scaled: Bool)
    /// The same elements under the output's shape; operands (x).
    case reshape
    /// Operands (x, weight, bias?).
    case conv2d(stride: Pair, padding: Pair, groups: Int)
    /// Operands (x, weight, bias, running mean, running variance, gate?); the per-channel gate
    /// multiplies the normalized values and `activation` follows, in the same pass.
    case batchNorm(eps: Float, momentum: Float, training: Bool, activation: Activation)
    /// Operands (x).
    case maxPool(kernel: Pair, stride: Pair, padding: Pair)
    case avgPool(kernel: Pair, stride: Pair, padding: Pair)
    case globalAvgPool
    /// Operands (a, b).
    case matmul
    /// `x W^T + b`; operands (x, weight, bias?).
    case linear
    /// Mean cross-entropy of logits against labels; operands (logits).
    case crossEntropy
    /// Output channel j is input channel `channels[j]`, or zero for -1; operands (x).
    case selectChannels([Int])

    /// A short name, for messages and profiles.
    public var name: String {
        switch self {
        case .add: return "add"
        case .mul: return "mul"
        case .channelScale: return "channel_scale"
        case .relu: return "relu"
        case .relu6: return "relu6"
        case .residualSum: return "residual_sum"
        case .reshape: return "reshape"
        case .conv2d: return "conv2d"
        case .batchNorm: return "batchnorm2d"
        case .maxPool: return "maxpool2d"
        case .avgPool: return "avgpool2d"
        case .globalAvgPool: return "global_avgpool"
        case .matmul: return "matmul"
        case .linear: return "linear"
        case .crossEntropy: return "cross_entropy"
        case .selectChannels: return "select_channels"
        }
    }
}

/// The tensors an op read, by identity, in the order its `OpKind` documents; at most five, held
/// inline so that recording them allocates nothing.
public struct Operands {
    private let a, b, c, d, e, f: ObjectIdentifier?

    @inline(__always) public init(_ a: Tensor, _ b: Tensor? = nil, _ c: Tensor? = nil, _ d: Tensor? = nil, _ e: Tensor? = nil,
                                  _ f: Tensor? = nil) {
        self.a = ObjectIdentifier(a)
        self.b = b.map(ObjectIdentifier.init)
        self.c = c.map(ObjectIdentifier.init)
        self.d = d.map(ObjectIdentifier.init)
        self.e = e.map(ObjectIdentifier.init)
        self.f = f.map(ObjectIdentifier.init)
    }

    /// The operands in order; an absent optional one (a conv without bias) is nil.
    public var all: [ObjectIdentifier?] {
        var ids = [a, b, c, d, e, f]
        while let last = ids.last, last == nil { ids.removeLast() }
        return ids
    }
}

/// One op as it ran: what it computed, what it read and what it wrote.
public struct OpRecord {
    public let kind: OpKind
    public let operands: Operands
    public let output: Tensor
}

/// A record of the ops that ran inside `Trace.record { ... }`, whether or not they record for
/// backward (an eval-mode forward pass records nothing on the tape): what derives a net's
/// inference graph. The trace holds every output alive, so tensor identities stay unique.
/// When no trace is active, an op pays one load and one branch.
public final class Trace {
    public private(set) var ops: [OpRecord] = []

    /// The active trace; ops run on one thread at a time, as for the tape.
    nonisolated(unsafe) static var active: Trace?

    /// Runs `body`, tracing every op it runs. Nests: an inner trace sees its own ops only.
    public static func record<T>(_ body: () throws -> T) rethrows -> (result: T, trace: Trace) {
        let trace = Trace(), previous = active
        active = trace
        defer { active = previous }
        return (try body(), trace)
    }

    /// Called by every op after it computed `output`.
    @inline(__always) static func note(_ kind: @autoclosure () -> OpKind, _ operands: @autoclosure () -> Operands, _ output: Tensor) {
        if let profile = OpProfile.active { profile.forward(kind(), output) }
        guard let trace = active else { return }
        trace.ops.append(OpRecord(kind: kind(), operands: operands(), output: output))
    }
}

public final class Tape {
    struct Record {
        /// What the op computed, from what.
        let op: OpRecord
        /// Reads `op.output.grad` and adds into the gradients of the op's inputs.
        let backward: (Tensor) -> Void
    }

    /// The tape that ops record onto. One per process: training is driven from one thread.
    nonisolated(unsafe) public static var current = Tape()
    /// While false, ops record nothing and their outputs never require gradients.
    nonisolated(unsafe) public private(set) static var isRecording = true

    var records: [Record] = []

    public init() {}

    /// The number of recorded ops.
    public var count: Int { records.count }

    /// The recorded ops, in execution order: the training computation as it ran.
    public var ops: [OpRecord] { records.map(\.op) }

    /// Runs `body` without recording, as for evaluation. Nests correctly.
    public static func withoutGradients<T>(_ body: () throws -> T) rethrows -> T {
        let previous = isRecording
        isRecording = false
        defer { isRecording = previous }
        return try body()
    }

    /// Whether an op with these inputs must record itself.
    @inline(__always) static func needsRecord(_ inputs: Tensor?...) -> Bool {
        guard isRecording else { return false }
        for case let t? in inputs where t.requiresGrad { return true }
        return false
    }

    /// Records an op whose output requires a gradient.
    static func record(_ kind: OpKind, _ operands: Operands, _ output: Tensor, backward: @escaping (Tensor) -> Void) {
        output.requiresGrad = true
        current.records.append(Record(op: OpRecord(kind: kind, operands: operands, output: output), backward: backward))
    }

    /// Forgets every record, releasing the intermediate tensors they hold.
    public func clear() { records.removeAll(keepingCapacity: true) }

    /// Back-propagates from `root` (usually a scalar loss) with upstream gradient `seed`
    /// (1 for a scalar when `nil`), accumulating into `grad` of every leaf tensor that requires one
    /// (parameters, inputs), then clears the tape. Gradients of op outputs are released once used.
    /// - Parameter afterEach: called with each record's index (from the last down to 0) once its
    ///   backward rule has run (or been skipped: no gradient reached it); every gradient of a
    ///   tensor that no record below that index uses is then complete.
    /// - Parameter takingSeed: take `seed` itself as the root's gradient instead of adding it into
    ///   a zeroed buffer (two passes over the root's size saved); backward rules may then
    ///   overwrite it, so the caller must not use it afterwards.
    public func backward(from root: Tensor, seed: Tensor? = nil, takingSeed: Bool = false,
                         afterEach: ((Int) -> Void)? = nil) {
        precondition(root.requiresGrad, "backward: the root tensor \(root.shape) does not require a gradient")
        if let seed {
            precondition(seed.shape == root.shape,
                         "backward: seed shape \(seed.shape) does not match root shape \(root.shape)")
            if !(takingSeed && root.adoptGrad(seed)) {
                let g = root.gradBuffer()
                for i in 0..<g.count { g.data[i] += seed.data[i] }
            }
        } else {
            let g = root.gradBuffer()
            precondition(root.count == 1, "backward: root \(root.shape) is not a scalar; pass a seed gradient")
            g.data[0] += 1
        }
        for index in records.indices.reversed() {
            defer { afterEach?(index) }
            let record = records[index]
            guard let dOut = record.op.output.grad else { continue }
            if let profile = OpProfile.active {
                let t0 = monotonicSeconds()
                record.backward(dOut)
                profile.backward(record.op.output, seconds: monotonicSeconds() - t0)
            } else {
                record.backward(dOut)
            }
            // An op output is never a leaf: once its gradient has been passed on it is dead,
            // and releasing it now lets the pool hand the buffer to the next backward rule.
            record.op.output.grad = nil
        }
        clear()
    }
}

extension Tensor {
    /// Back-propagates from this tensor through the current tape; see `Tape.backward`.
    public func backward(seed: Tensor? = nil) {
        Tape.current.backward(from: self, seed: seed)
    }

    /// Back-propagates with `seed` taken as this tensor's gradient, not copied: the backward
    /// rules may overwrite it, so the caller must not use it afterwards (see `Tape.backward`).
    public func backward(takingSeed seed: Tensor) {
        Tape.current.backward(from: self, seed: seed, takingSeed: true)
    }
}
