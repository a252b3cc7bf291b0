/// The record of the ops run since the last backward pass, in execution order.
///
/// Execution order is already a topological order of the graph (an op's inputs exist before it
/// runs), so `backward` simply walks the records from last to first: an iterative, fixed order
/// that gives the same gradient accumulation order on every run and has no recursion depth limit.
public final class Tape {
    struct Record {
        /// The op's name, for error messages and profiling.
        let op: StaticString
        let output: Tensor
        /// Reads `output.grad` and adds into the gradients of the op's inputs.
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
    static func record(_ op: StaticString, _ output: Tensor, backward: @escaping (Tensor) -> Void) {
        output.requiresGrad = true
        current.records.append(Record(op: op, output: output, backward: backward))
    }

    /// Forgets every record, releasing the intermediate tensors they hold.
    public func clear() { records.removeAll(keepingCapacity: true) }

    /// Back-propagates from `root` (usually a scalar loss) with upstream gradient `seed`
    /// (1 for a scalar when `nil`), accumulating into `grad` of every leaf tensor that requires one
    /// (parameters, inputs), then clears the tape. Gradients of op outputs are released once used.
    public func backward(from root: Tensor, seed: Tensor? = nil) {
        precondition(root.requiresGrad, "backward: the root tensor \(root.shape) does not require a gradient")
        let g = root.gradBuffer()
        if let seed {
            precondition(seed.shape == root.shape,
                         "backward: seed shape \(seed.shape) does not match root shape \(root.shape)")
            for i in 0..<g.count { g.data[i] += seed.data[i] }
        } else {
            precondition(root.count == 1, "backward: root \(root.shape) is not a scalar; pass a seed gradient")
            g.data[0] += 1
        }
        for record in records.reversed() {
            guard let dOut = record.output.grad else { continue }
            record.backward(dOut)
            // An op output is never a leaf: once its gradient has been passed on it is dead,
            // and releasing it now lets the pool hand the buffer to the next backward rule.
            record.output.grad = nil
        }
        clear()
    }
}

extension Tensor {
    /// Back-propagates from this tensor through the current tape; see `Tape.backward`.
    public func backward(seed: Tensor? = nil) {
        Tape.current.backward(from: self, seed: seed)
    }
}
