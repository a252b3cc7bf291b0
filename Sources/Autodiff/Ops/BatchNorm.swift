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
    if training {
        var variance = [Double](repeating: 0, count: c)
        variance.withUnsafeMutableBufferPointer { v in
            let pv = v.baseAddress!
            Parallel.forRange(c, grain: grain) { r in
                ns_bn_statistics(n, c, inner, r.lowerBound, r.count, px, eps, mean, invStd, pv)
            }
        }
        let m = Double(n * inner)
        for ch in 0..<c {
            runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * mean[ch]
            runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * Float(variance[ch] * m / (m - 1))
        }
    } else {
        for ch in 0..<c {
            mean[ch] = runningMean.data[ch]
            invStd[ch] = 1 / (runningVar.data[ch] + eps).squareRoot()
        }
    }
    // y = act((x - mean) * scale + offset), scale = gate * gamma / std, offset = gate * beta.
    for ch in 0..<c {
        let g = gate?.data[ch] ?? 1
        scale[ch] = g * weight.data[ch] * invStd[ch]
        offset[ch] = g * bias.data[ch]
    }
    let (lo, hi) = activation.bounds, py = out.data
    Parallel.forRange(c, grain: grain) { r in
        ns_bn_forward(n, c, inner, r.lowerBound, r.count, px, mean, scale, offset, lo, hi, py)
    }

    let kind = OpKind.batchNorm(eps: eps, momentum: momentum, training: training, activation: activation)
    let operands = Operands(x, weight, bias, runningMean, runningVar, gate)
    Trace.note(kind, operands, out)
    if Tape.needsRecord(x, weight, bias, gate) {
        Tape.record(kind, operands, out) { d in
            withExtendedLifetime(stats) {
                batchNormBackward(n: n, c: c, inner: inner, training: training, activation: activation, x: x, dy: d,
                                  weight: weight, bias: bias, gate: gate, stats: stats.data, grain: grain)
            }
        }
    }
    return out
}

/// With `g = act'(y) * dy` (the activation's linear range found again from x, scale and offset),
/// `xhat = (x - mean) / std` and the gate `s`, over the channel's m values:
/// `dBeta += s * sum(g)`, `dGamma += s * sum(g * xhat)`,
/// `dGate += gamma * sum(g * xhat) + beta * sum(g)` (that is, `sum(g * bn(x))`),
/// `dx += s * gamma / std * (g - sum(g)/m - xhat * sum(g * xhat)/m)` in training (the batch
/// statistics depend on x), `dx += s * gamma / std * g` in eval; `=` into a fresh dx.
private func batchNormBackward(n: Int, c: Int, inner: Int, training: Bool, activation: Activation, x: Tensor, dy: Tensor,
                               weight: Tensor, bias: Tensor, gate: Tensor?, stats: UnsafeMutablePointer<Float>, grain: Int) {
    let mean = stats, invStd = stats + c, scale = stats + 2 * c, offset = stats + 3 * c
    let (lo, hi) = activation.bounds, clamped: Int32 = activation == .identity ? 0 : 1
    // Per channel: sum(g) and sum(g * (x - mean)), then the three coefficients of dx.
    let sums = Tensor(uninitialized: [5, c])
    let sg = sums.data, sgx = sums.data + c, ga = sums.data + 2 * c, gb = sums.data + 3 * c, gc = sums.data + 4 * c
    let px = x.data, pd = dy.data
    Parallel.forRange(c, grain: grain) { r in
        ns_bn_backward_sums(n, c, inner, r.lowerBound, r.count, px, pd, mean, scale, offset, clamped, lo, hi, sg, sgx)
    }
    let dGamma = weight.requiresGrad ? weight.gradBuffer().data : nil
    let dBeta = bias.requiresGrad ? bias.gradBuffer().data : nil
    let dGate = gate.flatMap { $0.requiresGrad ? $0.gradBuffer().data : nil }
    let m = Float(n * inner)
    for ch in 0..<c {
        let istd = invStd[ch], sumGX = sgx[ch] * istd  // sum(g * xhat)
        let s = gate?.data[ch] ?? 1
        dGate?[ch] += weight.data[ch] * sumGX + bias.data[ch] * sg[ch]
        dGamma?[ch] += s * sumGX
        dBeta?[ch] += s * sg[ch]
        let a = s * weight.data[ch] * istd
        let meanG = training ? sg[ch] / m : 0, meanGX = training ? sumGX / m : 0
        ga[ch] = a
        gb[ch] = -a * istd * meanGX
        gc[ch] = -a * meanG
    }
    guard x.requiresGrad else { return }
    let (dx, fresh) = x.gradDestination()
    let pdx = dx.data
    Parallel.forRange(c, grain: grain) { r in
        ns_bn_backward_input(n, c, inner, r.lowerBound, r.count, px, pd, mean, scale, offset, clamped, lo, hi, ga, gb, gc,
                             fresh ? 0 : 1, pdx)
    }
}
