import Autodiff
import Nets

/// Pruning surgery: the smaller net that a gated net computes.
///
/// A gated net with pruned channels still carries them, at zero. Surgery builds the net of the
/// alive widths and copies every surviving weight, bias and BN statistic into it, so that its
/// outputs equal the gated net's (in training and in eval mode) at a fraction of the cost.
///
/// Two things of the gated net survive that a net built from the widths alone would not have:
/// - MobileNetV2's expansion widths, which are never pruned: they stay those of the gated net.
/// - Identity shortcuts whose two ends lost different channels become channel selections
///   (`Shortcut.select`): output channel `j` takes the input channel that was alive at the same
///   original index, or zero.
///
/// Both are recorded in the new net's description, so checkpoints rebuild it.
public enum Surgery {
    /// The alive channels of every group, in group order, from the gates of a gated net.
    public static func aliveChannels(_ net: Network) throws -> [[Int]] {
        guard net.isGated else { throw SurgeryError.notGated }
        let sites = net.gateSites
        return try sites.enumerated().map { k, site in
            let g = site.gate.data
            if let c = (0..<site.gate.count).first(where: { g[$0] != 0 && g[$0] != 1 }) {
                throw SurgeryError.gateNotBinary(group: k, channel: c, value: g[c])
            }
            let alive = (0..<site.gate.count).filter { g[$0] == 1 }
            guard !alive.isEmpty else { throw SurgeryError.emptyGroup(k) }
            return alive
        }
    }

    /// The description of the net that keeps only `alive` channels of each group of `d`.
    public static func description(_ d: NetDescription, keeping alive: [[Int]]) -> NetDescription {
        let shortcuts = zip(d.resolvedShortcuts, d.residualBlocks).map { shortcut, block -> Shortcut in
            let source = alive[block.input], kept = alive[block.output]
            // Position of each original input channel in the pruned input, -1 when pruned.
            var position = [Int](repeating: -1, count: d.widths[block.input])
            for (p, c) in source.enumerated() { position[c] = p }
            let channels: [Int]
            switch shortcut {
            case .projection: return .projection
            case .identity: channels = kept.map { position[$0] }
            case let .select(old): channels = kept.map { old[$0] < 0 ? -1 : position[old[$0]] }
            }
            return channels == Array(0..<source.count) ? .identity : .select(channels)
        }
        var e = d
        e.widths = alive.map(\.count)
        e.expansions = d.architecture == .mobilenetv2 ? d.resolvedExpansions : nil
        e.shortcuts = shortcuts
        // Leave out what the widths already imply, so plain nets keep plain descriptions.
        var plain = e
        plain.shortcuts = nil
        plain.expansions = nil
        if plain.resolvedShortcuts == e.shortcuts { e.shortcuts = nil }
        if plain.resolvedExpansions == e.resolvedExpansions { e.expansions = nil }
        return e
    }

    /// The ungated net of `net`'s alive channels, with the surviving weights, biases and BN
    /// statistics of `net` (which must be built with `gated: true`).
    public static func prune(_ net: Network) throws -> Network {
        let alive = try aliveChannels(net)
        let d = description(net.netDescription, keeping: alive)
        let small = try makeNetwork(d, initialization: .none)
        let axes = net.channelAxes
        var old: [String: Tensor] = [:]
        for t in net.state where t.kind != .channelScale { old[t.name] = t.tensor }
        let oldWidths = net.netDescription.widths
        for t in small.state {
            guard let source = old[t.name], let ax = axes[t.name] else { throw SurgeryError.unmatched(t.name) }
            // Source indices along axes 0 and 1; a group's channel spans `block` indices (more
            // than one only for a linear layer on flattened feature maps).
            func indices(_ group: Int?, _ axis: Int) -> [Int] {
                guard let group else { return Array(0..<source.shape[axis]) }
                let block = source.shape[axis] / oldWidths[group]
                return alive[group].flatMap { c in (c * block)..<((c + 1) * block) }
            }
            let rows = indices(ax.rows, 0)
            let columns = source.shape.count >= 2 ? indices(ax.columns, 1) : [0]
            let inner = source.shape.dropFirst(2).reduce(1, *)
            let expected = [rows.count] + (source.shape.count >= 2 ? [columns.count] : []) + source.shape.dropFirst(2)
            guard t.tensor.shape == expected else {
                throw SurgeryError.shapeMismatch(t.name, expected: expected, built: t.tensor.shape)
            }
            let from = source.data, to = t.tensor.data
            let rowSize = source.shape.count >= 2 ? source.shape[1] * inner : 1
            var k = 0
            for r in rows {
                for c in columns {
                    (to + k).update(from: from + r * rowSize + c * inner, count: inner)
                    k += inner
                }
            }
        }
        return small
    }
}

public enum SurgeryError: Error, CustomStringConvertible, Equatable {
    case notGated
    case gateNotBinary(group: Int, channel: Int, value: Float)
    case emptyGroup(Int)
    /// A tensor of the pruned net that the gated net has no counterpart or axes for.
    case unmatched(String)
    case shapeMismatch(String, expected: [Int], built: [Int])

    public var description: String {
        switch self {
        case .notGated:
            return "surgery: the net has no gates; build it with makeNetwork(..., gated: true)"
        case let .gateNotBinary(k, c, v):
            return "surgery: gate \(c) of group \(k) is \(v); gates must be 0 (pruned) or 1 (alive)"
        case let .emptyGroup(k):
            return "surgery: every channel of group \(k) is pruned; a net needs at least one per group"
        case let .unmatched(name):
            return "surgery: no counterpart in the gated net for \(name)"
        case let .shapeMismatch(name, expected, built):
            return "surgery: \(name) cut to \(expected), but the pruned net has \(built)"
        }
    }
}
