import Foundation

/// Wall time per op, forward and backward, over steps that run the same ops in the same order
/// (training steps of one net): what `bench train --profile` prints.
///
/// An op's forward time is the time since the previous op finished (or since the step began),
/// so the glue between ops is charged to the op it leads to and the entries add up to the step's
/// forward pass. Its backward time is that of its backward rule. When no profile is active an op
/// pays one load and one branch.
public final class OpProfile {
    /// One op of the step, by its position in it.
    public struct Entry: Sendable {
        /// The op's kind (`OpKind.name`), grouped convolutions (depthwise ones among them) as
        /// `conv2d grouped`.
        public let kind: String
        /// Its output shape.
        public let outputShape: [Int]
        /// Seconds summed over the profiled steps.
        public var forward = 0.0, backward = 0.0
    }

    /// The ops of the step, in forward order, with their times summed over `steps`.
    public private(set) var entries: [Entry] = []
    /// Steps profiled.
    public private(set) var steps = 0

    nonisolated(unsafe) static var active: OpProfile?
    private var position = 0
    private var lastMark = 0.0
    private var positionOf: [ObjectIdentifier: Int] = [:]

    public init() {}

    /// Runs one step under the profile. Every step must run the same ops in the same order.
    public func step<T>(_ body: () throws -> T) rethrows -> T {
        precondition(OpProfile.active == nil, "OpProfile.step does not nest")
        position = 0
        positionOf.removeAll(keepingCapacity: true)
        OpProfile.active = self
        defer {
            OpProfile.active = nil
            precondition(steps == 0 || position == entries.count,
                         "OpProfile: step \(steps + 1) ran \(position) ops, the first ran \(entries.count)")
            steps += 1
        }
        lastMark = monotonicSeconds()
        return try body()
    }

    /// Called by `Trace.note` when an op has computed `output`.
    func forward(_ kind: OpKind, _ output: Tensor) {
        let now = monotonicSeconds()
        let name: String
        if case let .conv2d(_, _, groups) = kind, groups > 1 { name = "conv2d grouped" } else { name = kind.name }
        if steps == 0 {
            entries.append(Entry(kind: name, outputShape: output.shape))
        } else {
            precondition(position < entries.count && entries[position].kind == name,
                         "OpProfile: op \(position) of step \(steps + 1) is \(name), not what the first step ran")
        }
        entries[position].forward += now - lastMark
        positionOf[ObjectIdentifier(output)] = position
        position += 1
        lastMark = monotonicSeconds()
    }

    /// Called by `Tape.backward` after the backward rule of the op that wrote `output`.
    func backward(_ output: Tensor, seconds: Double) {
        if let p = positionOf[ObjectIdentifier(output)] { entries[p].backward += seconds }
    }

    /// Forward and backward seconds per step summed by op kind, largest total first.
    public var byKind: [(kind: String, count: Int, forward: Double, backward: Double)] {
        var order: [String] = [], totals: [String: (Int, Double, Double)] = [:]
        let n = Double(max(steps, 1))
        for e in entries {
            if totals[e.kind] == nil { order.append(e.kind) }
            let t = totals[e.kind] ?? (0, 0, 0)
            totals[e.kind] = (t.0 + 1, t.1 + e.forward / n, t.2 + e.backward / n)
        }
        return order.map { (kind: $0, count: totals[$0]!.0, forward: totals[$0]!.1, backward: totals[$0]!.2) }
            .sorted { $0.forward + $0.backward > $1.forward + $1.backward }
    }
}
