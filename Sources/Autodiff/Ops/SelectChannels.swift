/// Channel selection: output channel j is input channel `channels[j]` (a residual shortcut whose
/// two ends kept different channels is one).

/// `y[n, j] = x[n, channels[j]]`, or zeros where `channels[j]` is -1.
/// - Parameters:
///   - x: [N, C, ...]
///   - channels: one entry per output channel, each in `-1..<C`.
/// - Returns: [N, channels.count, ...]
public func selectChannels(_ x: Tensor, _ channels: [Int]) -> Tensor {
    validated {
        try require(x.shape.count >= 2, "selectChannels", "input \(x.shape) has no channel dim 1")
        if let bad = channels.first(where: { $0 < -1 || $0 >= x.shape[1] }) {
            try require(false, "selectChannels", "channel \(bad) is outside -1..<\(x.shape[1]) for input \(x.shape)")
        }
    }
    let n = x.shape[0], c = x.shape[1], k = channels.count
    let inner = x.shape.dropFirst(2).reduce(1, *)
    var shape = x.shape
    shape[1] = k
    let out = Tensor(uninitialized: shape)
    let px = x.data, po = out.data
    channels.withUnsafeBufferPointer { source in
        Parallel.forEach(n * k, grain: max(1, elementwiseGrain / max(inner, 1))) { plane in
            let img = plane / k, from = source[plane % k], dst = po + plane * inner
            if from < 0 {
                dst.update(repeating: 0, count: inner)
            } else {
                dst.update(from: px + (img * c + from) * inner, count: inner)
            }
        }
    }
    Trace.note(.selectChannels(channels), Operands(x), out)
    if Tape.needsRecord(x) {
        // `readers[start[c]..<start[c + 1]]` are the outputs that read channel c, built here once
        // so the backward pass allocates nothing. One backward task per input plane sums a
        // channel read twice on one thread, in a fixed order.
        var start = [Int](repeating: 0, count: c + 1)
        for from in channels where from >= 0 { start[from + 1] += 1 }
        for i in 0..<c { start[i + 1] += start[i] }
        let readers = (0..<k).filter { channels[$0] >= 0 }.sorted { (channels[$0], $0) < (channels[$1], $1) }
        Tape.record(.selectChannels(channels), Operands(x), out) { d in
            let dx = x.gradBuffer().data, pd = d.data
            start.withUnsafeBufferPointer { start in
                readers.withUnsafeBufferPointer { readers in
                    Parallel.forEach(n * c, grain: max(1, elementwiseGrain / max(inner, 1))) { plane in
                        let img = plane / c, ch = plane % c, dst = dx + plane * inner
                        for r in start[ch]..<start[ch + 1] {
                            let src = pd + (img * k + readers[r]) * inner
                            for i in 0..<inner { dst[i] += src[i] }
                        }
                    }
                }
            }
        }
    }
    return out
}
