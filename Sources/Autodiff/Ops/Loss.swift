import Foundation

/// Softmax cross-entropy.

/// Mean softmax cross-entropy over the batch, PyTorch's `cross_entropy` with mean reduction.
/// Log-sum-exp subtracts each row's maximum first, so large logits do not overflow.
/// - Parameters:
///   - logits: [N, K]
///   - labels: N class indices in `0..<K`
/// - Returns: a scalar tensor (shape [])
public func crossEntropy(_ logits: Tensor, labels: [Int32]) -> Tensor {
    validated {
        try require(logits.shape.count == 2 && logits.shape[0] == labels.count && logits.shape[0] > 0, "cross_entropy",
                    "logits \(logits.shape) and labels [\(labels.count)]: expected [N, K] and N labels, N > 0")
        let k = logits.shape[1]
        if let bad = labels.first(where: { $0 < 0 || Int($0) >= k }) {
            throw ShapeError("cross_entropy", "label \(bad) is outside 0..<\(k) for logits \(logits.shape)")
        }
    }
    let n = logits.shape[0], k = logits.shape[1]
    let pl = logits.data
    // Per row: softmax probabilities (kept for backward) and the row's loss.
    let probs = Tensor(uninitialized: [n, k])
    let pp = probs.data
    var total: Double = 0
    for i in 0..<n {
        let row = pl + i * k, prob = pp + i * k
        var mx = -Float.infinity
        for j in 0..<k { mx = max(mx, row[j]) }
        var s: Float = 0
        for j in 0..<k { let e = expf(row[j] - mx); prob[j] = e; s += e }
        let inv = 1 / s
        for j in 0..<k { prob[j] *= inv }
        // -log softmax[label] = log(sum exp(z - max)) - (z_label - max)
        total += Double(logf(s) - (row[Int(labels[i])] - mx))
    }
    let out = Tensor(shape: [], values: [Float(total / Double(n))])
    Trace.note(.crossEntropy, Operands(logits), out)
    if Tape.needsRecord(logits) {
        Tape.record(.crossEntropy, Operands(logits), out) { d in
            let dl = logits.gradBuffer().data, scale = d.data[0] / Float(n), pp = probs.data
            for i in 0..<n {
                for j in 0..<k {
                    let onehot: Float = j == Int(labels[i]) ? 1 : 0
                    dl[i * k + j] += (pp[i * k + j] - onehot) * scale
                }
            }
        }
    }
    return out
}

/// The number of rows whose largest logit is at the label's index.
/// - Parameter logits: [N, K]
public func correctPredictions(_ logits: Tensor, labels: [Int32]) -> Int {
    validated {
        try require(logits.shape.count == 2 && logits.shape[0] == labels.count, "correct_predictions",
                    "logits \(logits.shape) and labels [\(labels.count)]: expected [N, K] and N labels")
    }
    let n = logits.shape[0], k = logits.shape[1], pl = logits.data
    var correct = 0
    for i in 0..<n {
        var best = 0
        for j in 1..<max(k, 1) where pl[i * k + j] > pl[i * k + best] { best = j }
        if best == Int(labels[i]) { correct += 1 }
    }
    return correct
}
