import CKernels
import Foundation

/// 2-D batch normalization, optionally fused with the activation that follows it.
///
/// Training mode normalizes with the batch statistics and updates the running statistics as
/// PyTorch does: `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch
/// variance. Eval mode normalizes with the running statistics. The passes over memory are C
/// (`CKernels`, vectorized for the machine), channel by channel: forward, one pass of shifted
/// sums for the statistics and one that writes the output; backward, one pass of sums and one
/// that writes dx, finding the activation's linear range again from x (so a fused BN + ReLU
/// reads no extra tensor). A per-channel gate (the search's channel scale) between the
/// normalization and the activation costs nothing either: it folds into the channel's scale and
/// offset, and its gradient comes from the two sums the backward pass takes anyway.

/// Checks batch-norm shapes: `x` is [N, C, ...], every per-channel tensor is [C].
public func validateBatchNorm(input: [Int], weight: [Int], bias: [Int],
                              runningMean: [Int], runningVar: [Int]) throws {
    let op = "batchnorm2d"
    try require(input.count >= 2, op, "input \(input) must be [N, C, ...]")
    let c = input[1]
    for (name, shape) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
        try require(shape == [c], op, "\(name) \(shape) does not match input \(input): expected [\(c)]")
    }
}

/// Batch normalization over the channels of `x`, multiplied by `gate` when given, followed by
/// `activation`: `act(gate * bn(x))`, what `channelScale` and the activation would compute after
/// a plain batch norm, in one pass.
/// - Parameters:
///   - x: [N, C, H, W]
///   - weight, bias: [C], the affine parameters (gamma, beta)
///   - runningMean, runningVar: [C] buffers; updated in place when `training`
///   - training: batch statistics (true) or running statistics (false)
///   - gate: [C] per-channel multiplier, or nil; it takes a gradient when it requires one
public func batchNorm2d(_ x: Tensor, weight: Tensor, bias: Tensor,
                        runningMean: Tensor, runningVar: Tensor,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                        activation: Activation = .identity, gate: Tensor? = nil) -> Tensor {
    validated {
        try validateBatchNorm(input: x.shape, weight: weight.shape, bias: bias.shape,
                              runningMean: runningMean.shape, runningVar: runningVar.shape)
        if let gate {
            try require(gate.shape == [x.shape[1]], "batchnorm2d", "gate \(gate.shape) does not match input \(x.shape): expected [\(x.shape[1])]")
        }
        if training {
            try require(x.count / x.shape[1] > 1, "batchnorm2d",
                        "input \(x.shape) has one value per channel; training needs more than one")
        }
    }
    let n = x.shape[0], c = x.shape[1], inner = x.count / max(n * c, 1)
    let out = Tensor(uninitialized: x.shape)
    // Per channel: the mean used, 1/sqrt(var + eps), and the forward pass's scale and offset,
    // saved for backward.
    let stats = Tensor(uninitialized: [4, c])
    let mean = stats.data, invStd = stats.data + c, scale = stats.data + 2 * c, offset = stats.data + 3 * c
    let px = x.data, grain = max(1, elementwiseGrain / max(n * inner, 1))
    // In a data-parallel run, training statistics are the global batch's (`DataParallel.group`).
    let group = training ? DataParallel.group : nil
    // Values per channel the statistics are over (a data-parallel group's: all processes' values).
    var count = Double(n * inner)
    let (lo, hi) = activation.bounds, py = out.data
    let pgate = gate?.data, pweight = weight.data, pbias = bias.data, prm = runningMean.data, prv = runningVar.data
    // A channel's statistics from its mean and biased variance (training) or the running ones,
    // and y = act((x - mean) * scale + offset), scale = gate * gamma / std, offset = gate * beta.
    func setChannel(_ ch: Int, mean mu: Double, variance: Double) {
        mean[ch] = Float(mu)
        invStd[ch] = Float(1 / (variance + Double(eps)).squareRoot())
        prm[ch] = (1 - momentum) * prm[ch] + momentum * mean[ch]
        prv[ch] = (1 - momentum) * prv[ch] + momentum * Float(variance * count / (count - 1))
    }
    func setCoefficients(_ channels: Range<Int>) {
        for ch in channels {
            let g = pgate?[ch] ?? 1
            scale[ch] = g * pweight[ch] * invStd[ch]
            offset[ch] = g * pbias[ch]
        }
    }
    if let chunk = fusedChannels(n: n, inner: inner, training: training, group: group) {
        // One process: each few channels' sums, statistics and output together, their values read
        // from memory once (the output pass finds them in the core's cache).
        Parallel.forRange(c, grain: grain) { r in
            var shift = [Float](repeating: 0, count: c), sums = [Double](repeating: 0, count: 2 * c)
            for first in stride(from: r.lowerBound, to: r.upperBound, by: chunk) {
                let channels = first..<min(first + chunk, r.upperBound)
                for ch in channels { shift[ch] = px[ch * inner] }
                sums.withUnsafeMutableBufferPointer { b in
                    shift.withUnsafeBufferPointer { k in
                        ns_bn_shifted_sums(n, c, inner, first, channels.count, px, k.baseAddress!, b.baseAddress!,
                                           b.baseAddress! + c)
                    }
                }
                for ch in channels {
                    let (mu, variance) = shiftedMoments(sum: sums[ch], squares: sums[c + ch], shift: shift[ch], count: count)
                    setChannel(ch, mean: mu, variance: variance)
                }
                setCoefficients(channels)
                ns_bn_forward(n, c, inner, first, channels.count, px, mean, scale, offset, lo, hi, py)
            }
        }
    } else {
        if training {
            let (moments, batchCount) = batchStatistics(x, n: n, c: c, inner: inner, grain: grain, group: group)
            count = batchCount
            for ch in 0..<c { setChannel(ch, mean: moments.mean[ch], variance: moments.variance[ch]) }
        } else {
            for ch in 0..<c {
                mean[ch] = prm[ch]
                invStd[ch] = 1 / (prv[ch] + eps).squareRoot()
            }
        }
        setCoefficients(0..<c)
        Parallel.forRange(c, grain: grain) { r in
            ns_bn_forward(n, c, inner, r.lowerBound, r.count, px, mean, scale, offset, lo, hi, py)
        }
    }

    let kind = OpKind.batchNorm(eps: eps, momentum: momentum, training: training, activation: activation)
    let operands = Operands(x, weight, bias, runningMean, runningVar, gate)
    Trace.note(kind, operands, out)
    if Tape.needsRecord(x, weight, bias, gate) {
        Tape.record(kind, operands, out) { d in
            withExtendedLifetime(stats) {
                batchNormBackward(n: n, c: c, inner: inner, training: training, activation: activation, x: x, dy: d,
                                  weight: weight, bias: bias, gate: gate, stats: stats.data, grain: grain,
                                  group: group, count: count)
            }
        }
    }
    return out
}

/// Channels per chunk when batch norm's passes run chunk by chunk (each chunk's passes one right
/// after the other, so that the later ones read it from the core's cache): at most
/// `BatchNormTuning.fusedBytes` of values, at least one channel. Nil where the passes run one
/// over all channels after the other: a data-parallel group (the statistics are summed over the
/// processes in between), eval mode, or planes smaller than a vector (the flat kernels).
private func fusedChannels(n: Int, inner: Int, training: Bool, group: ProcessGroup?) -> Int? {
    guard training, group == nil, inner >= 16, BatchNormTuning.fusedBytes > 0 else { return nil }  // 16: a vector of the kernels
    return max(1, BatchNormTuning.fusedBytes / max(1, n * inner * MemoryLayout<Float>.stride))
}

/// Tuning of batch norm's passes.
public enum BatchNormTuning {
    /// Bytes of a chunk of channels whose sums, statistics and output (forward), or gradient sums
    /// and input gradient (backward), run one right after the other in training; 0: each pass
    /// over all channels before the next (as a data-parallel run does).
    nonisolated(unsafe) public static var fusedBytes = 1 << 18
}

/// The mean and biased variance from sums of values shifted by `shift`.
@inline(__always)
private func shiftedMoments(sum: Double, squares: Double, shift: Float, count m: Double) -> (mean: Double, variance: Double) {
    let mu = sum / m
    return (mu + Double(shift), max(squares / m - mu * mu, 0))
}

/// The batch's mean and biased variance per channel, and the number of values per channel they are
/// over. One process: one pass of sums shifted by the channel's first value. A data-parallel
/// group: the sums over every process's slice, in two passes (the mean, then the squared
/// deviations from it), since the processes must shift by the same value.
private func batchStatistics(_ x: Tensor, n: Int, c: Int, inner: Int, grain: Int, group: ProcessGroup?)
    -> (moments: (mean: [Double], variance: [Double]), count: Double) {
    let px = x.data
    var sums = [Double](repeating: 0, count: 2 * c + 1)  // sum, sum of squares, then the count
    func shiftedSums(_ shift: UnsafePointer<Float>?) {
        sums.withUnsafeMutableBufferPointer { b in
            let s = b.baseAddress!, q = s + c
            Parallel.forRange(c, grain: grain) { r in ns_bn_shifted_sums(n, c, inner, r.lowerBound, r.count, px, shift, s, q) }
            s[2 * c] = Double(n * inner)
            group?.sum(s, count: 2 * c + 1)
        }
    }
    var shift = [Float](repeating: 0, count: c)
    if group == nil {
        for ch in 0..<c { shift[ch] = px[ch * inner] }
    } else {
        shiftedSums(nil)
        for ch in 0..<c { shift[ch] = Float(sums[ch] / sums[2 * c]) }
    }
    shift.withUnsafeBufferPointer { shiftedSums($0.baseAddress!) }
    let m = sums[2 * c]
    var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
    for ch in 0..<c { (mean[ch], variance[ch]) = shiftedMoments(sum: sums[ch], squares: sums[c + ch], shift: shift[ch], count: m) }
    return ((mean, variance), m)
}

/// With `g = act'(y) * dy` (the activation's linear range found again from x, scale and offset),
/// `xhat = (x - mean) / std` and the gate `s`, over the channel's m values:
/// `dBeta += s * sum(g)`, `dGamma += s * sum(g * xhat)`,
/// `dGate += gamma * sum(g * xhat) + beta * sum(g)` (that is, `sum(g * bn(x))`),
/// `dx += s * gamma / std * (g - sum(g)/m - xhat * sum(g * xhat)/m)` in training (the batch
/// statistics depend on x), `dx += s * gamma / std * g` in eval; `=` into a fresh dx.
/// In a data-parallel run (`group`), dx takes the global batch's sums of g and g * xhat (over
/// `count` values per channel), while dGamma, dBeta and dGate take this process's, which the
/// gradients' own sum over the processes then adds up.
private func batchNormBackward(n: Int, c: Int, inner: Int, training: Bool, activation: Activation, x: Tensor, dy: Tensor,
                               weight: Tensor, bias: Tensor, gate: Tensor?, stats: UnsafeMutablePointer<Float>, grain: Int,
                               group: ProcessGroup?, count: Double) {
    let mean = stats, invStd = stats + c, scale = stats + 2 * c, offset = stats + 3 * c
    let (lo, hi) = activation.bounds, clamped: Int32 = activation == .identity ? 0 : 1
    // Per channel: sum(g) and sum(g * (x - mean)), then the three coefficients of dx.
    let sums = Tensor(uninitialized: [5, c])
    let sg = sums.data, sgx = sums.data + c, ga = sums.data + 2 * c, gb = sums.data + 3 * c, gc = sums.data + 4 * c
    let px = x.data, pd = dy.data
    let dGamma = weight.requiresGrad ? weight.gradBuffer().data : nil
    let dBeta = bias.requiresGrad ? bias.gradBuffer().data : nil
    let dGate = gate.flatMap { $0.requiresGrad ? $0.gradBuffer().data : nil }
    // A gradient another rule shares (a residual sum's) is the addend of a new one, not copied first.
    let dx: (grad: Tensor, addend: Tensor?)? = x.requiresGrad ? x.gradDestinationAdding() : nil
    let pgate = gate?.data, pweight = weight.data, pbias = bias.data, m = Float(count)
    // The parameters' gradients from a channel's sums (this process's), then dx's coefficients
    // from them (a data-parallel group's, summed over the processes in between).
    func addParameterGradients(_ channels: Range<Int>) {
        for ch in channels {
            let sumGX = sgx[ch] * invStd[ch]  // sum(g * xhat)
            let s = pgate?[ch] ?? 1
            dGate?[ch] += pweight[ch] * sumGX + pbias[ch] * sg[ch]
            dGamma?[ch] += s * sumGX
            dBeta?[ch] += s * sg[ch]
        }
    }
    func setCoefficients(_ channels: Range<Int>) {
        for ch in channels {
            let istd = invStd[ch], sumGX = sgx[ch] * istd
            let a = (pgate?[ch] ?? 1) * pweight[ch] * istd
            let meanG = training ? sg[ch] / m : 0, meanGX = training ? sumGX / m : 0
            ga[ch] = a
            gb[ch] = -a * istd * meanGX
            gc[ch] = -a * meanG
        }
    }
    func gradientSums(_ channels: Range<Int>) {
        ns_bn_backward_sums(n, c, inner, channels.lowerBound, channels.count, px, pd, mean, scale, offset, clamped, lo, hi,
                            sg, sgx)
    }
    func inputGradient(_ channels: Range<Int>) {
        guard let dx else { return }
        ns_bn_backward_input(n, c, inner, channels.lowerBound, channels.count, px, pd, mean, scale, offset, clamped, lo, hi,
                             ga, gb, gc, dx.addend.map { UnsafePointer($0.data) }, dx.grad.data)
    }
    if let chunk = fusedChannels(n: n, inner: inner, training: training, group: group) {
        // One process: each few channels' sums, then their input gradient while they are in cache.
        Parallel.forRange(c, grain: grain) { r in
            for first in stride(from: r.lowerBound, to: r.upperBound, by: chunk) {
                let channels = first..<min(first + chunk, r.upperBound)
                gradientSums(channels)
                addParameterGradients(channels)
                setCoefficients(channels)
                inputGradient(channels)
            }
        }
        return
    }
    Parallel.forRange(c, grain: grain) { r in gradientSums(r) }
    addParameterGradients(0..<c)
    if let group { group.sum(sg, count: 2 * c) }  // sg and sgx, over the global batch
    setCoefficients(0..<c)
    Parallel.forRange(c, grain: grain) { r in inputGradient(r) }
}

/// A batch norm in eval mode and the activation after it, to be computed from a convolution's
/// output in the convolution's own output pass (`FrozenConv2D`'s `normalizing`): a pre-activation
/// block's batch norm and ReLU of the sum the block before it wrote, which cannot be folded into
/// a convolution's weights. Per channel the mean, scale and offset `batchNorm2d` uses in eval mode
/// (without a gate), so the same bits.
public struct OutputNormalization {
    public let mean: Tensor, scale: Tensor, offset: Tensor
    public let activation: Activation

    public init(weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float, activation: Activation) {
        let c = runningMean.count
        precondition([weight.shape, bias.shape, runningVar.shape].allSatisfy { $0 == [c] },
                     "OutputNormalization: per-channel tensors of \(c) values expected")
        mean = Tensor(uninitialized: [c])
        scale = Tensor(uninitialized: [c])
        offset = Tensor(uninitialized: [c])
        for ch in 0..<c {
            let invStd = 1 / (runningVar.data[ch] + eps).squareRoot()
            mean.data[ch] = runningMean.data[ch]
            scale.data[ch] = weight.data[ch] * invStd
            offset.data[ch] = bias.data[ch]
        }
        self.activation = activation
    }

    /// Calls `body` with the kernels' description of this normalization writing into `out`.
    func writing<R>(into out: Tensor, _ body: (ns_normalized_output) -> R) -> R {
        let (lo, hi) = activation.bounds
        return withExtendedLifetime((self, out)) {
            body(ns_normalized_output(mean: mean.data, scale: scale.data, offset: offset.data, lo: lo, hi: hi, out: out.data))
        }
    }
}

/// `a + b` and `norm` of it, in one pass: the sum a residual block ends with and the next block's
/// batch norm (and activation) of it.
func addNormalizing(_ a: Tensor, _ b: Tensor, _ norm: OutputNormalization) -> (sum: Tensor, normalized: Tensor) {
    validated {
        try require(a.shape == b.shape, "add", "shapes \(a.shape) and \(b.shape) differ")
        try require(a.shape.count >= 2 && norm.mean.shape == [a.shape[1]], "batchnorm2d",
                    "normalization of \(norm.mean.shape) channels for input \(a.shape)")
    }
    let n = a.shape[0], c = a.shape[1], inner = a.count / max(n * c, 1)
    let sum = Tensor(uninitialized: a.shape), normalized = Tensor(uninitialized: a.shape)
    let (lo, hi) = norm.activation.bounds
    let (pa, pb, ps, pn) = (a.data, b.data, sum.data, normalized.data)
    let (mean, scale, offset) = (norm.mean.data, norm.scale.data, norm.offset.data)
    withExtendedLifetime(norm) {
        Parallel.forRange(c, grain: max(1, elementwiseGrain / max(n * inner, 1))) { r in
            ns_add_normalize(n, c, inner, r.lowerBound, r.count, pa, pb, ps, mean, scale, offset, lo, hi, pn)
        }
    }
    Trace.note(.add, Operands(a, b), sum)
    return (sum, normalized)
}
