import Autodiff
import Nets

/// When and how much to prune (spec: "Taylor-FO importance with gates").
public struct PruningSettings: Codable, Equatable, Sendable {
    /// Minibatches between pruning steps (50; 100 for tinyImageNet).
    public var frequency: Int
    /// Channels removed per pruning step.
    public var count: Int
    /// Stop once this fraction of all channels is pruned.
    public var maxFraction: Double

    public init(frequency: Int = 50, count: Int = 10, maxFraction: Double = 0.95) {
        self.frequency = frequency
        self.count = count
        self.maxFraction = maxFraction
    }
}

/// Why a pruning run ended.
public enum PruningStop: String, Codable, Equatable, Sendable {
    /// `maxFraction` of all channels are pruned.
    case reachedMaxFraction
    /// The next step would have removed the last channel of a group.
    case wouldEmptyGroup

    /// In words, for messages.
    public var explanation: String {
        switch self {
        case .reachedMaxFraction: return "the most channels a run may prune are pruned"
        case .wouldEmptyGroup: return "the next step would have emptied a group"
        }
    }
}

/// Taylor-FO gate pruning over a gated net (Molchanov et al. 2019, as NeuralScale uses it).
///
/// After every backward pass `accumulate()` adds `(g_c * dL/dg_c)^2` to each channel's score.
/// Every `frequency` minibatches `step` averages the scores over those minibatches, ranks the
/// alive channels of all groups together, and prunes the `count` lowest: their gates, the slices
/// that produce them and those slices' momentum are set to zero, so they stay dead. Once every
/// group has lost a channel, each step appends (widths, P) to the trajectory.
///
/// With a coupling (`descend --couple-residuals`), the groups of each coupled set are one unit:
/// channel `c` of the unit is channel `c` of every group in it, scored as one gate shared by all
/// of them would be (the square of the summed `g * dL/dg` of its groups: the first-order change of
/// the loss when the channel goes in all of them at once), and pruned in all of them together.
/// It is ranked by that score per filter it removes (divided by the unit's size), against single
/// groups' channels, which remove one: ranked by the whole score, a stream through the stem
/// (PreAct ResNet-18's first stage) outscores every other channel until some small group would
/// empty, which ends the run before it ever loses a channel, and the run has no trajectory.
/// Identity shortcuts between the groups then join equal channel sets, and stay identities.
public final class Pruner {
    public let settings: PruningSettings
    let sites: [GateSite]
    /// P of a net with the given alive widths.
    let parameterCount: ([Int]) -> Int
    /// Every group in exactly one unit, units ordered by their first group: the coupled sets, and
    /// every other group alone.
    public let units: [[Int]]
    /// Per unit (per group when nothing is coupled), per channel: the summed squared Taylor terms
    /// since the last pruning step.
    public private(set) var scores: [[Double]]
    public private(set) var batchesSinceStep = 0
    public private(set) var trajectory: [TrajectoryRow] = []
    public private(set) var stop: PruningStop?
    /// Pruning steps taken.
    public private(set) var steps = 0

    /// Prunes the gates of `net`, which must be built with `gated: true`.
    public convenience init(_ net: Network, settings: PruningSettings) {
        precondition(net.isGated, "Pruner: the net has no gates; build it with makeNetwork(..., gated: true)")
        let template = net.netDescription
        self.init(sites: net.gateSites, settings: settings) { widths in
            var d = template
            d.widths = widths
            return d.parameterCount
        }
    }

    /// Prunes the gates of `net` with the groups of every set of `coupling` (e.g. the net's
    /// `identityCoupling`) as one unit.
    /// - Throws: `NetError.invalid` when a set names a group twice or one outside the net, or its
    ///   groups differ in width or in which channels are alive.
    public convenience init(_ net: Network, settings: PruningSettings, coupling: [[Int]]) throws {
        precondition(net.isGated, "Pruner: the net has no gates; build it with makeNetwork(..., gated: true)")
        let template = net.netDescription
        try self.init(sites: net.gateSites, settings: settings, coupling: coupling) { widths in
            var d = template
            d.widths = widths
            return d.parameterCount
        }
    }

    /// Prunes arbitrary gate sites; `parameterCount` gives P for alive widths.
    public init(sites: [GateSite], settings: PruningSettings, parameterCount: @escaping ([Int]) -> Int) {
        self.settings = settings
        self.sites = sites
        self.parameterCount = parameterCount
        units = couplingUnits([], groups: sites.count)
        self.scores = sites.map { [Double](repeating: 0, count: $0.gate.count) }
    }

    /// Prunes arbitrary gate sites, each set of `coupling` as one unit.
    public init(sites: [GateSite], settings: PruningSettings, coupling: [[Int]], parameterCount: @escaping ([Int]) -> Int) throws {
        var seen = Set<Int>()
        for set in coupling {
            guard let first = set.first, Set(set).count == set.count, set.allSatisfy({ sites.indices.contains($0) && !seen.contains($0) }) else {
                throw NetError.invalid("coupled groups \(set): every group must be one of 0..<\(sites.count), in one set only")
            }
            seen.formUnion(set)
            let lead = sites[first].gate
            for g in set.dropFirst() {
                let gate = sites[g].gate
                guard gate.count == lead.count else {
                    throw NetError.invalid("coupled groups \(first) and \(g) differ in width (\(lead.count) and \(gate.count) channels)")
                }
                guard (0..<lead.count).allSatisfy({ (gate.data[$0] != 0) == (lead.data[$0] != 0) }) else {
                    throw NetError.invalid("coupled groups \(first) and \(g) differ in which channels are alive")
                }
            }
        }
        self.settings = settings
        self.sites = sites
        self.parameterCount = parameterCount
        units = couplingUnits(coupling, groups: sites.count)
        self.scores = units.map { [Double](repeating: 0, count: sites[$0[0]].gate.count) }
    }

    /// Alive channels per group.
    public var widths: [Int] { sites.map { site in (0..<site.gate.count).filter { site.gate.data[$0] != 0 }.count } }
    public var totalChannels: Int { sites.reduce(0) { $0 + $1.gate.count } }
    public var prunedChannels: Int { totalChannels - widths.reduce(0, +) }
    /// P of the net with only the alive channels.
    public var params: Int { parameterCount(widths) }

    /// Clears the gate gradients without scoring them (warm-up epochs).
    public func discardGradients() {
        for site in sites { site.gate.grad = nil }
    }

    /// Adds this minibatch's `(g * dL/dg)^2` to the scores and clears the gate gradients.
    /// Call after `backward()`.
    public func accumulate() {
        for (u, unit) in units.enumerated() {
            let gated = unit.map { sites[$0] }.filter { $0.gate.grad != nil }
            guard !gated.isEmpty else { continue }
            for c in 0..<scores[u].count {
                var t = 0.0
                for site in gated { t += Double(site.gate.data[c]) * Double(site.gate.grad!.data[c]) }
                scores[u][c] += t * t
            }
        }
        discardGradients()
        batchesSinceStep += 1
    }

    /// Prunes when `frequency` minibatches have been accumulated. Returns the pruned
    /// (group, channel) pairs, empty when it did not prune; sets `stop` when the run is over.
    @discardableResult
    public func step(optimizer: SGD?) -> [(group: Int, channel: Int)] {
        guard stop == nil, batchesSinceStep >= settings.frequency else { return [] }
        if Double(prunedChannels) >= settings.maxFraction * Double(totalChannels) {
            stop = .reachedMaxFraction
            return []
        }
        // Rank every alive channel of every unit by its mean score per filter removed; ties break
        // by (the unit's first group, channel) so the order is the same on every run.
        var ranked: [(score: Double, group: Int, unit: Int, channel: Int)] = []
        for (u, unit) in units.enumerated() {
            let gate = sites[unit[0]].gate
            for c in 0..<gate.count where gate.data[c] != 0 {
                ranked.append((scores[u][c] / Double(batchesSinceStep * unit.count), unit[0], u, c))
            }
        }
        ranked.sort { ($0.score, $0.group, $0.channel) < ($1.score, $1.group, $1.channel) }
        let chosen = ranked.prefix(settings.count).flatMap { v in units[v.unit].map { (group: $0, channel: v.channel) } }
        var alive = widths
        for victim in chosen { alive[victim.group] -= 1 }
        if alive.contains(where: { $0 < 1 }) {
            stop = .wouldEmptyGroup
            return []
        }
        for victim in chosen { prune(group: victim.group, channel: victim.channel, optimizer: optimizer) }
        steps += 1
        scores = scores.map { [Double](repeating: 0, count: $0.count) }
        batchesSinceStep = 0
        let w = widths
        if zip(w, sites).allSatisfy({ $0 < $1.gate.count }) {
            trajectory.append(TrajectoryRow(widths: w, params: params))
        }
        if Double(prunedChannels) >= settings.maxFraction * Double(totalChannels) { stop = .reachedMaxFraction }
        return chosen
    }

    /// Zeroes channel `c` of every group of unit `u` (see `units`).
    public func prune(unit u: Int, channel c: Int, optimizer: SGD?) {
        for g in units[u] { prune(group: g, channel: c, optimizer: optimizer) }
    }

    /// Zeroes channel `c` of group `k`: its gate, the slices producing it, and their momentum.
    public func prune(group k: Int, channel c: Int, optimizer: SGD?) {
        let site = sites[k]
        site.gate.data[c] = 0
        for t in site.dead {
            zeroSlice(t, c)
            if let optimizer, let i = optimizer.parameters.firstIndex(where: { $0 === t }),
               let buffer = optimizer.momentumBuffer(i) {
                zeroSlice(buffer, c)
            }
        }
    }

    /// Restores the state of a saved run (see `state`).
    public func restore(_ s: PrunerState) throws {
        guard s.scores.count == scores.count, zip(s.scores, scores).allSatisfy({ $0.count == $1.count }) else {
            throw NetError.invalid("pruner state does not match the net's groups (\(s.scores.count) scored units, the pruner has \(scores.count))")
        }
        scores = s.scores
        batchesSinceStep = s.batchesSinceStep
        trajectory = s.trajectory
        stop = s.stop
        steps = s.steps
    }

    /// Everything but the gates (which live in the net) needed to continue exactly.
    public var state: PrunerState {
        PrunerState(scores: scores, batchesSinceStep: batchesSinceStep, trajectory: trajectory, stop: stop, steps: steps)
    }
}

/// A pruner's saved state.
public struct PrunerState: Codable, Equatable, Sendable {
    public var scores: [[Double]]
    public var batchesSinceStep: Int
    public var trajectory: [TrajectoryRow]
    public var stop: PruningStop?
    public var steps: Int
}

/// Zeroes slice `c` along the first axis of `t`.
private func zeroSlice(_ t: Tensor, _ c: Int) {
    let row = t.count / t.shape[0]
    (t.data + c * row).update(repeating: 0, count: row)
}
