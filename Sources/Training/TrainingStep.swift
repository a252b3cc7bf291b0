import Autodiff
import Foundation
import Nets

/// One SGD step on a minibatch, the one `train`, `descend` and `bench train` all run: the
/// forward pass in training mode, the cross-entropy loss, the backward pass, a caller's hook
/// (the search scores its gates there), then the update.
///
/// In a data-parallel run (`group`) every process runs it on its slice of the same global batch
/// and computes what one process would on the whole batch: batch norm uses the global batch's
/// statistics (`DataParallel.group`), each process's loss gradient is weighted by its share of
/// the batch, and the gradients of every parameter and channel scale are summed over the
/// processes before the hook and the update, so the weights stay the same everywhere.
///
/// The sum overlaps the backward pass: the gradients go in buckets of about `bucketFloats`
/// floats, in the order the backward pass completes them (the last layers first); a bucket's sum
/// starts as soon as its last gradient is complete and is moved on after every backward rule,
/// and the step waits for the unfinished ones after the pass. Each element is still added in
/// rank order, so the weights are bit for bit those of the sum after the pass.
public final class TrainingStep {
    /// Floats per bucket of the overlapped gradient sum: `NEURALSCALE_GRADIENT_BUCKET_MB`
    /// megabytes (default 4); 0 sums everything after the backward pass instead.
    public static let defaultBucketFloats: Int = {
        let mb = ProcessInfo.processInfo.environment["NEURALSCALE_GRADIENT_BUCKET_MB"].flatMap(Double.init) ?? 4
        return mb.isFinite && mb > 0 ? max(1, Int(mb * 1_048_576 / 4)) : 0
    }()

    public var bucketFloats = TrainingStep.defaultBucketFloats
    public let net: Network
    public let optimizer: SGD
    public let group: ProcessGroup?
    /// When true, the wall time of the three phases is summed into `times` (the backward pass's
    /// including the gradients' sum over the processes, which is also in `sum`).
    public var timed = false
    public private(set) var times = (forward: 0.0, backward: 0.0, update: 0.0, sum: 0.0)
    /// Floats of gradient the last step summed over the processes.
    public private(set) var summedFloats = 0
    /// The tensors whose gradients are summed over the processes, in the net's fixed order.
    private lazy var reduced: [Tensor] = net.state.filter { $0.kind != .buffer }.map(\.tensor)

    public init(net: Network, optimizer: SGD, group: ProcessGroup? = nil) {
        self.net = net
        self.optimizer = optimizer
        self.group = group
    }

    /// Runs the step on `images` [N, C, H, W] with `labels`, this process's slice of a global
    /// batch of `globalCount` images (nil: the images are the whole batch).
    /// - Parameter afterBackward: runs once the gradients are in, before the update.
    /// - Returns: the logits of these images and the mean loss over the global batch, or nil when
    ///   that loss is NaN or infinite; then nothing is updated and the tape is cleared.
    public func callAsFunction(_ images: Tensor, labels: [Int32], globalCount: Int? = nil,
                               afterBackward: () -> Void = {}) -> (logits: Tensor, loss: Float)? {
        let t0 = timed ? monotonicSeconds() : 0
        optimizer.zeroGrad()
        let previous = DataParallel.group
        DataParallel.group = group
        defer { DataParallel.group = previous }
        let logits = net.logits(images, training: true)
        let loss = crossEntropy(logits, labels: labels)
        var value = loss.scalar
        // This process's share of the global batch's mean loss.
        let share = Float(labels.count) / Float(globalCount ?? labels.count)
        if let group {
            var total = value * share
            group.sum(&total, count: 1)
            value = total
        }
        guard value.isFinite else {
            Tape.current.clear()
            return nil
        }
        let t1 = timed ? monotonicSeconds() : 0
        if let group, bucketFloats > 0, group.size > 1 {
            let sum = overlappedBackward(loss, seed: Tensor(shape: [], values: [share]), group: group)
            if timed { times.sum += sum }
        } else if let group {
            loss.backward(seed: Tensor(shape: [], values: [share]))
            let s0 = timed ? monotonicSeconds() : 0
            sumGradients(over: group)
            if timed { times.sum += monotonicSeconds() - s0 }
        } else {
            loss.backward()
        }
        afterBackward()
        let t2 = timed ? monotonicSeconds() : 0
        optimizer.step()
        if timed {
            let t3 = monotonicSeconds()
            times.forward += t1 - t0
            times.backward += t2 - t1
            times.update += t3 - t2
        }
        return (logits, value)
    }

    /// A bucket of the overlapped sum: its tensors, and the record index below which none of them
    /// is used (once the backward pass has run that record, their gradients are complete).
    private struct Bucket {
        var tensors: [Tensor] = []
        var floats = 0
        var ready = Int.max
    }
    /// Each bucket's buffer, kept between steps.
    private var bucketBuffers: [Tensor] = []
    private lazy var reducedIndex: [ObjectIdentifier: Int] =
        Dictionary(uniqueKeysWithValues: reduced.enumerated().map { (ObjectIdentifier($1), $0) })

    /// The backward pass from `loss` with the gradient sum overlapped (see the type's notes).
    /// Returns the seconds spent waiting for the sums after the pass.
    private func overlappedBackward(_ loss: Tensor, seed: Tensor, group: ProcessGroup) -> Double {
        let tape = Tape.current
        // The first record that uses each tensor: its gradient is complete once the pass has run it.
        var firstUse = [Int](repeating: Int.max, count: reduced.count)
        for (i, op) in tape.ops.enumerated() {
            for case let id? in op.operands.all {
                if let k = reducedIndex[id], firstUse[k] == Int.max { firstUse[k] = i }
            }
        }
        // Completion order (later first uses complete first), the net's order among ties: the
        // same on every process, as the graph is.
        let order = reduced.indices.filter { firstUse[$0] != Int.max }.sorted { (firstUse[$1], $0) < (firstUse[$0], $1) }
        var buckets: [Bucket] = []
        var current = Bucket()
        for k in order {
            current.tensors.append(reduced[k])
            current.floats += reduced[k].count
            current.ready = firstUse[k]
            if current.floats >= bucketFloats { buckets.append(current); current = Bucket() }
        }
        if !current.tensors.isEmpty { buckets.append(current) }
        while bucketBuffers.count < buckets.count { bucketBuffers.append(Tensor(uninitialized: [0])) }
        var pending: [PendingSum] = [], packed: [[Tensor]] = []
        summedFloats = 0
        /// Packs bucket `b`'s gradients (those that have one: a tensor no gradient reached keeps
        /// none, on every process alike) and starts their sum.
        func launch(_ b: Int) {
            let tensors = buckets[b].tensors.filter { $0.grad != nil }
            let total = tensors.reduce(0) { $0 + $1.count }
            if bucketBuffers[b].count < total { bucketBuffers[b] = Tensor(uninitialized: [total]) }
            let buffer = bucketBuffers[b].data
            pack(tensors, into: buffer)
            summedFloats += total
            packed.append(tensors)
            pending.append(group.startSum(buffer, count: total, slot: b))
        }
        var oldest = 0  // pending sums before it are complete
        tape.backward(from: loss, seed: seed) { index in
            while pending.count < buckets.count, index <= buckets[pending.count].ready { launch(pending.count) }
            while oldest < pending.count, pending[oldest].isDone { oldest += 1 }
            for p in pending[oldest...] { p.poll() }
        }
        let s0 = monotonicSeconds()
        while pending.count < buckets.count { launch(pending.count) }
        for (b, p) in pending.enumerated() {
            p.finish()
            unpack(packed[b], from: bucketBuffers[b].data)
        }
        return monotonicSeconds() - s0
    }

    /// Sums the gradients over the processes: packed into one buffer in the net's order, summed
    /// (in buckets, `ProcessGroup.sum`), and unpacked.
    private func sumGradients(over group: ProcessGroup) {
        let tensors = reduced.filter { $0.grad != nil }
        let total = tensors.reduce(0) { $0 + $1.count }
        summedFloats = total
        let buffer = Tensor(uninitialized: [total])
        pack(tensors, into: buffer.data)
        group.sum(buffer.data, count: total)
        unpack(tensors, from: buffer.data)
    }

    /// The gradients of `tensors`, one after the other, into `buffer`.
    private func pack(_ tensors: [Tensor], into buffer: UnsafeMutablePointer<Float>) {
        var offset = 0
        for t in tensors {
            (buffer + offset).update(from: t.grad!.data, count: t.count)
            offset += t.count
        }
    }

    /// `pack` undone: `buffer`'s values back into the gradients of `tensors`.
    private func unpack(_ tensors: [Tensor], from buffer: UnsafeMutablePointer<Float>) {
        var offset = 0
        for t in tensors {
            t.gradBuffer().data.update(from: buffer + offset, count: t.count)  // its own storage (`gradBuffer`)
            offset += t.count
        }
    }
}

/// Checks that every process of `group` holds the same values in `tensors` (a data-parallel
/// run's weights, or its gates after a pruning step), as the sums over the processes guarantee:
/// a hash of the bits per process, cut into three 21-bit pieces whose sums over the processes are
/// exact; they are all equal exactly when each piece's sum is size times this process's piece.
/// - Throws: `TrainingError.output` naming `what` on a process whose values differ from the
///   others', so that a run whose processes went apart stops instead of writing one's results.
public func checkAgreement(_ group: ProcessGroup?, on tensors: [Tensor], what: String) throws {
    guard let group, group.size > 1 else { return }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the values' bits
    for t in tensors {
        for i in 0..<t.count {
            hash = (hash ^ UInt64(t.data[i].bitPattern)) &* 0x100_0000_01b3
        }
    }
    let pieces = (0..<3).map { Double((hash >> (21 * UInt64($0))) & 0x1f_ffff) }
    var sums = pieces
    group.sum(&sums, count: 3)
    guard zip(sums, pieces).allSatisfy({ $0 == Double(group.size) * $1 }) else {
        throw TrainingError.output("process \(group.rank) of \(group.size) holds other \(what) than the others "
                                   + "(their sums over the processes differ); the run stops")
    }
}
