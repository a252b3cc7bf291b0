/// Elementwise ops: add and mul (same shape, or per-channel broadcast), the per-channel scale,
/// ReLU and ReLU6, and reshape.

/// How the second operand of a binary op lines up with the first.
public enum Broadcast: Equatable {
    /// Same shape.
    case none
    /// `b` has shape [C] and `a` is [N, C, ...]: `b[c]` applies to every element of channel c.
    case perChannel(batch: Int, channels: Int, inner: Int)

    /// Validates `a op b` for `op`, returning how `b` broadcasts.
    public static func resolve(_ op: String, _ a: [Int], _ b: [Int]) throws -> Broadcast {
        if a == b { return .none }
        try require(b.count == 1 && a.count >= 2 && a[1] == b[0], op,
                    "shapes \(a) and \(b) differ, and \(b) is not a per-channel [C] vector for \(a) (channel dim 1)")
        return .perChannel(batch: a[0], channels: a[1], inner: a.dropFirst(2).reduce(1, *))
    }
}

/// Elements per thread below which elementwise work stays on one core.
let elementwiseGrain = 1 << 15

/// `dst[i] += src[i]` over `count` elements, in parallel.
@inline(__always)
func accumulate(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    Parallel.forRange(count, grain: elementwiseGrain) { r in
        for i in r { dst[i] += src[i] }
    }
}

/// `a + b`, with `b` either the same shape or a per-channel [C] vector.
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    let bc = validated { try Broadcast.resolve("add", a.shape, b.shape) }
    let out = Tensor(uninitialized: a.shape)
    let pa = a.data, pb = b.data, po = out.data
    switch bc {
    case .none:
        Parallel.forRange(a.count, grain: elementwiseGrain) { r in for i in r { po[i] = pa[i] + pb[i] } }
    case let .perChannel(n, c, inner):
        Parallel.forEach(n * c, grain: max(1, elementwiseGrain / max(inner, 1))) { plane in
            let v = pb[plane % c], base = plane * inner
            for i in base..<(base + inner) { po[i] = pa[i] + v }
        }
    }
    Trace.note(.add, Operands(a, b), out)
    if Tape.needsRecord(a, b) {
        Tape.record(.add, Operands(a, b), out) { d in
            // The upstream gradient passes to a unchanged: a takes it without a copy when it can.
            var taken = false
            if a.requiresGrad {
                taken = a.adoptGrad(d)
                if !taken { accumulate(a.grad!.data, d.data, d.count) }
            }
            guard b.requiresGrad else { return }
            let pd = d.data
            switch bc {
            case .none:
                if !taken && b.adoptGrad(d) { return }
                let (db, fresh) = b.gradDestination()
                if fresh { db.copy(from: d) } else { accumulate(db.data, pd, d.count) }
            case let .perChannel(n, c, inner):
                let db = b.gradBuffer().data
                Parallel.forEach(c) { ch in
                    var s: Float = 0
                    for img in 0..<n { s += sum(pd + (img * c + ch) * inner, inner) }
                    db[ch] += s
                }
            }
        }
    }
    return out
}

/// `a * b`, with `b` either the same shape or a per-channel [C] vector.
public func mul(_ a: Tensor, _ b: Tensor) -> Tensor {
    let bc = validated { try Broadcast.resolve("mul", a.shape, b.shape) }
    return multiply(.mul, a, b, bc)
}

/// A per-channel scale `y[n, c, ...] = x[n, c, ...] * s[c]`.
///
/// `s.grad[c]` after backward is `dL/ds_c`, the sensitivity of the loss to channel `c`.
/// - Parameters:
///   - x: [N, C, ...]
///   - s: [C]
public func channelScale(_ x: Tensor, _ s: Tensor) -> Tensor {
    let bc = validated { () throws -> Broadcast in
        try require(s.shape.count == 1 && x.shape.count >= 2 && x.shape[1] == s.shape[0], "channel_scale",
                    "scale \(s.shape) must be a [C] vector matching channel dim 1 of input \(x.shape)")
        return try Broadcast.resolve("channel_scale", x.shape, s.shape)
    }
    return multiply(.channelScale, x, s, bc)
}

private func multiply(_ op: OpKind, _ a: Tensor, _ b: Tensor, _ bc: Broadcast) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    let pa = a.data, pb = b.data, po = out.data
    switch bc {
    case .none:
        Parallel.forRange(a.count, grain: elementwiseGrain) { r in for i in r { po[i] = pa[i] * pb[i] } }
    case let .perChannel(n, c, inner):
        Parallel.forEach(n * c, grain: max(1, elementwiseGrain / max(inner, 1))) { plane in
            let v = pb[plane % c], base = plane * inner
            for i in base..<(base + inner) { po[i] = pa[i] * v }
        }
    }
    Trace.note(op, Operands(a, b), out)
    if Tape.needsRecord(a, b) {
        Tape.record(op, Operands(a, b), out) { d in
            let pd = d.data
            switch bc {
            case .none:
                for (t, other) in [(a, pb), (b, pa)] where t.requiresGrad {
                    let (g, fresh) = t.gradDestination()
                    let pg = g.data
                    Parallel.forRange(d.count, grain: elementwiseGrain) { r in
                        if fresh { for i in r { pg[i] = pd[i] * other[i] } } else { for i in r { pg[i] += pd[i] * other[i] } }
                    }
                }
            case let .perChannel(n, c, inner):
                // One pass per channel over its planes: da = d * b[c] (written when fresh) and
                // db[c] += sum(d * a), summed over the images in order.
                let da = a.requiresGrad ? a.gradDestination() : nil
                let db = b.requiresGrad ? b.gradBuffer().data : nil
                let pda = da?.grad.data, fresh = da?.fresh ?? false
                Parallel.forEach(c) { ch in
                    let v = pb[ch]
                    var s: Float = 0
                    for img in 0..<n {
                        let base = (img * c + ch) * inner
                        if let pda {
                            if fresh {
                                for i in base..<(base + inner) { pda[i] = pd[i] * v }
                            } else {
                                for i in base..<(base + inner) { pda[i] += pd[i] * v }
                            }
                        }
                        if db != nil { s += dot(pd + base, pa + base, inner) }
                    }
                    db?[ch] += s
                }
            }
        }
    }
    return out
}

/// The clamping activations.
public enum Activation: String, Sendable, CaseIterable {
    case identity, relu, relu6

    /// The activation as a clamp to [lo, hi], for the C kernels.
    var bounds: (lo: Float, hi: Float) {
        switch self {
        case .identity: return (-.infinity, .infinity)
        case .relu: return (0, .infinity)
        case .relu6: return (0, 6)
        }
    }

    /// Runs `kernel` specialized for this activation, so its inner loops are branch-free.
    @inline(__always) func dispatch<Result>(_ kernel: some ActivationKernel<Result>) -> Result {
        switch self {
        case .identity: return kernel.run(IdentityRule.self)
        case .relu: return kernel.run(ReLURule.self)
        case .relu6: return kernel.run(ReLU6Rule.self)
        }
    }
}

/// An activation's forward value and its derivative, as static functions so kernels generic over
/// the rule are specialized with straight-line inner loops.
protocol ActivationRule {
    static func apply(_ v: Float) -> Float
    /// The upstream gradient `d` where the activation's output `y` lies in its linear range, else
    /// 0 (PyTorch's convention at the kinks).
    static func gradient(_ y: Float, _ d: Float) -> Float
}

enum IdentityRule: ActivationRule {
    @inline(__always) static func apply(_ v: Float) -> Float { v }
    @inline(__always) static func gradient(_ y: Float, _ d: Float) -> Float { d }
}

enum ReLURule: ActivationRule {
    @inline(__always) static func apply(_ v: Float) -> Float { max(v, 0) }
    @inline(__always) static func gradient(_ y: Float, _ d: Float) -> Float { y > 0 ? d : 0 }
}

enum ReLU6Rule: ActivationRule {
    @inline(__always) static func apply(_ v: Float) -> Float { min(max(v, 0), 6) }
    @inline(__always) static func gradient(_ y: Float, _ d: Float) -> Float { y > 0 && y < 6 ? d : 0 }
}

/// A kernel with a body generic over the activation rule; see `Activation.dispatch`.
protocol ActivationKernel<Result> {
    associatedtype Result
    func run<A: ActivationRule>(_ rule: A.Type) -> Result
}

/// `max(x, 0)`.
public func relu(_ x: Tensor) -> Tensor { activate(x, .relu, op: .relu) }

/// `min(max(x, 0), 6)`, MobileNetV2's activation.
public func relu6(_ x: Tensor) -> Tensor { activate(x, .relu6, op: .relu6) }

/// Elementwise activation forward (`dst = act(src)`) or backward (`dx += act'(y) * d`, or `=`
/// into a fresh gradient).
private struct ActivationPass: ActivationKernel {
    let count: Int
    let src: UnsafePointer<Float>, dst: UnsafeMutablePointer<Float>
    /// For backward: the upstream gradient; `src` is then the activation's output.
    let upstream: UnsafePointer<Float>?
    /// For backward: `dst` holds no gradient yet, so it is written, not added into.
    var fresh = false

    func run<A: ActivationRule>(_ rule: A.Type) {
        let src = self.src, dst = self.dst
        if let d = upstream {
            if fresh {
                Parallel.forRange(count, grain: elementwiseGrain) { r in
                    for i in r { dst[i] = A.gradient(src[i], d[i]) }
                }
            } else {
                Parallel.forRange(count, grain: elementwiseGrain) { r in
                    for i in r { dst[i] += A.gradient(src[i], d[i]) }
                }
            }
        } else {
            Parallel.forRange(count, grain: elementwiseGrain) { r in
                for i in r { dst[i] = A.apply(src[i]) }
            }
        }
    }
}

private func activate(_ x: Tensor, _ act: Activation, op: OpKind) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    act.dispatch(ActivationPass(count: x.count, src: x.data, dst: out.data, upstream: nil))
    Trace.note(op, Operands(x), out)
    if Tape.needsRecord(x) {
        Tape.record(op, Operands(x), out) { d in
            let (dx, fresh) = x.gradDestination()
            act.dispatch(ActivationPass(count: d.count, src: out.data, dst: dx.data, upstream: d.data, fresh: fresh))
        }
    }
    return out
}

/// `act(a + b)` for tensors of one shape in one pass, for inference (an engine's residual sum
/// and the ReLU after it): records nothing for backward.
public func addActivating(_ a: Tensor, _ b: Tensor, _ act: Activation) -> Tensor {
    validated { try require(a.shape == b.shape, "add", "shapes \(a.shape) and \(b.shape) differ") }
    struct Pass: ActivationKernel {
        let a: UnsafePointer<Float>, b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int
        func run<A: ActivationRule>(_ rule: A.Type) {
            let a = self.a, b = self.b, out = self.out
            Parallel.forRange(count, grain: elementwiseGrain) { r in for i in r { out[i] = A.apply(a[i] + b[i]) } }
        }
    }
    let out = Tensor(uninitialized: a.shape)
    act.dispatch(Pass(a: a.data, b: b.data, out: out.data, count: a.count))
    Trace.note(.add, Operands(a, b), out)
    return out
}

/// The same elements under a new shape with as many elements. Shares storage with `x`.
public func reshape(_ x: Tensor, _ shape: [Int]) -> Tensor {
    validated {
        try require(shape.reduce(1, *) == x.count, "reshape",
                    "cannot view input \(x.shape) (\(x.count) elements) as \(shape)")
    }
    let out = Tensor(shape: shape, storage: x.storage, requiresGrad: false)
    Trace.note(.reshape, Operands(x), out)
    if Tape.needsRecord(x) {
        Tape.record(.reshape, Operands(x), out) { d in
            if !x.adoptGrad(d) { accumulate(x.grad!.data, d.data, d.count) }
        }
    }
    return out
}

/// [N, d1, d2, ...] -> [N, d1*d2*...].
public func flatten(_ x: Tensor) -> Tensor {
    validated { try require(x.shape.count >= 1, "flatten", "input \(x.shape) has no batch dimension") }
    return reshape(x, [x.shape[0], x.count / max(x.shape[0], 1)])
}
