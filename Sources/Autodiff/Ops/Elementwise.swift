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
            // The upstream gradient passes to a unchanged: a takes it without a copy when it can,
            // and b shares it (`shareGrad`), copied only if something adds into it.
            let taken = a.requiresGrad && a.receiveGrad(d)
            guard b.requiresGrad else { return }
            let pd = d.data
            switch bc {
            case .none:
                if !(taken && b.shareGrad(d, with: a)) { b.receiveGrad(d, mayTake: !taken) }
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

/// `act(a + b)` times `scale[c]` per channel when a scale is given: a residual sum with its
/// activation and the search's gate on it (ResNet-50's block output), in one pass each way
/// where separately they take three. Exactly the values of `channelScale(act(add(a, b)), scale)`;
/// while a `Trace` is active it runs as those ops, so traces (exported graphs, channel wiring)
/// see the ops they know. `a` and `b` have one shape [N, C, ...]; `scale` is [C].
public func residualSum(_ a: Tensor, _ b: Tensor, activation act: Activation, scale: Tensor? = nil) -> Tensor {
    if Trace.active != nil {
        let z = add(a, b)
        let y = act == .identity ? z : activate(z, act, op: act == .relu ? .relu : .relu6)
        return scale.map { channelScale(y, $0) } ?? y
    }
    validated {
        try require(a.shape == b.shape, "add", "shapes \(a.shape) and \(b.shape) differ")
        if let scale {
            try require(scale.shape.count == 1 && a.shape.count >= 2 && a.shape[1] == scale.shape[0], "channel_scale",
                        "scale \(scale.shape) must be a [C] vector matching channel dim 1 of input \(a.shape)")
        }
    }
    let recording = Tape.needsRecord(a, b, scale)
    let out = Tensor(uninitialized: a.shape)
    // Scaled, the activation's output is kept for backward (unscaled, it is the output).
    let y = scale != nil && recording ? Tensor(uninitialized: a.shape) : out
    let n = a.shape.first ?? 1, channels = scale?.count ?? 1, inner = a.count / max(n * channels, 1)
    act.dispatch(ResidualPass(a: a.data, b: b.data, y: y.data, scale: scale?.data, out: out.data,
                              batch: n, channels: channels, inner: inner))
    let kind = OpKind.residualSum(activation: act, scaled: scale != nil)
    Trace.note(kind, Operands(a, b, scale), out)
    guard recording else { return out }
    Tape.record(kind, Operands(a, b, scale), out) { d in
        // dz = act'(y) * d * scale, passed to both summands as `add` passes its gradient.
        let dz = Tensor(uninitialized: a.shape)
        let planeSums = Tensor(uninitialized: [scale?.requiresGrad == true ? n * channels : 0])
        act.dispatch(ResidualGradientPass(y: y.data, scale: scale?.data, d: d.data, dz: dz.data,
                                          planeSums: planeSums.count > 0 ? planeSums.data : nil,
                                          batch: n, channels: channels, inner: inner))
        if let scale, planeSums.count > 0 {
            // Per channel in image order, the channels side by side.
            let ds = scale.gradBuffer().data, sums = planeSums.data
            withUnsafeTemporaryAllocation(of: Float.self, capacity: channels) { t in
                let t = t.baseAddress!
                t.initialize(repeating: 0, count: channels)
                for img in 0..<n {
                    let row = sums + img * channels
                    for c in 0..<channels { t[c] += row[c] }
                }
                for c in 0..<channels { ds[c] += t[c] }
            }
        }
        let taken = a.requiresGrad && a.receiveGrad(dz)
        if b.requiresGrad, !(taken && b.shareGrad(dz, with: a)) { b.receiveGrad(dz, mayTake: !taken) }
    }
    return out
}

/// `residualSum` forward: y = act(a + b), out = y * scale[c] (`y` may be `out` when unscaled).
private struct ResidualPass: ActivationKernel {
    let a: UnsafePointer<Float>, b: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    let scale: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>
    let batch: Int, channels: Int, inner: Int

    func run<A: ActivationRule>(_ rule: A.Type) {
        let a = self.a, b = self.b, y = self.y, out = self.out, inner = self.inner, channels = self.channels
        guard let scale else {
            Parallel.forRange(batch * channels * inner, grain: elementwiseGrain) { r in
                for i in r { out[i] = A.apply(a[i] + b[i]) }
            }
            return
        }
        let keep = y != out
        Parallel.forRange(batch, grain: max(1, elementwiseGrain / max(channels * inner, 1))) { images in
            for img in images {
                let base = img * channels * inner
                let pa = a + base, pb = b + base, py = y + base, po = out + base
                if inner == 1 {
                    // 1x1 maps: along the channels, a vector of scales at a time.
                    for c in 0..<channels {
                        let t = A.apply(pa[c] + pb[c])
                        if keep { py[c] = t }
                        po[c] = t * scale[c]
                    }
                    continue
                }
                for c in 0..<channels {
                    let v = scale[c], p = c * inner
                    for i in p..<(p + inner) {
                        let t = A.apply(pa[i] + pb[i])
                        if keep { py[i] = t }
                        po[i] = t * v
                    }
                }
            }
        }
    }
}

/// `residualSum` backward: dz = act'(y) * d * scale[c]; with `planeSums` (one per image and
/// channel) also the sum of d * y over each plane, which the caller adds up per channel in image
/// order (so the split over threads does not change it).
private struct ResidualGradientPass: ActivationKernel {
    let y: UnsafePointer<Float>, scale: UnsafePointer<Float>?, d: UnsafePointer<Float>
    let dz: UnsafeMutablePointer<Float>, planeSums: UnsafeMutablePointer<Float>?
    let batch: Int, channels: Int, inner: Int

    func run<A: ActivationRule>(_ rule: A.Type) {
        let y = self.y, d = self.d, dz = self.dz, inner = self.inner, channels = self.channels
        guard let scale else {
            Parallel.forRange(batch * channels * inner, grain: elementwiseGrain) { r in
                for i in r { dz[i] = A.gradient(y[i], d[i]) }
            }
            return
        }
        let planeSums = self.planeSums
        Parallel.forRange(batch, grain: max(1, elementwiseGrain / max(channels * inner, 1))) { images in
            for img in images {
                let base = img * channels * inner
                let py = y + base, pd = d + base, pz = dz + base, sums = planeSums.map { $0 + img * channels }
                if inner == 1 {
                    // 1x1 maps: along the channels.
                    for c in 0..<channels { pz[c] = A.gradient(py[c], pd[c] * scale[c]) }
                    if let sums { for c in 0..<channels { sums[c] = pd[c] * py[c] } }
                    continue
                }
                for c in 0..<channels {
                    let v = scale[c], p = c * inner
                    for i in p..<(p + inner) { pz[i] = A.gradient(py[i], pd[i] * v) }
                    guard let sums else { continue }
                    if inner >= 16 {
                        sums[c] = dot(pd + p, py + p, inner)
                    } else {
                        var t: Float = 0
                        for i in p..<(p + inner) { t += pd[i] * py[i] }
                        sums[c] = t
                    }
                }
            }
        }
    }
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
            x.receiveGrad(d)
        }
    }
    return out
}

/// [N, d1, d2, ...] -> [N, d1*d2*...].
public func flatten(_ x: Tensor) -> Tensor {
    validated { try require(x.shape.count >= 1, "flatten", "input \(x.shape) has no batch dimension") }
    return reshape(x, [x.shape[0], x.count / max(x.shape[0], 1)])
}
