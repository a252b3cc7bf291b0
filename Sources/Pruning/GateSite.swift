import Autodiff
import Nets

/// Where a group's pruning gate sits and what dies with a pruned channel: a width group's channel
/// scale (spec: "Taylor-FO importance with gates") and the slices that make its channels.
public struct GateSite {
    /// [C], 1 for alive channels, 0 for pruned ones.
    public let gate: Tensor
    /// Tensors whose slice `c` along the first axis belongs to channel `c` alone: the conv
    /// filters, conv bias and BN weight and bias that produce it, and the weight and bias of a
    /// BN that consumes it where that BN would turn its zero into a constant. Pruning zeroes
    /// these slices and their momentum, so the channel stays dead.
    public let dead: [Tensor]

    public init(gate: Tensor, dead: [Tensor]) {
        self.gate = gate
        self.dead = dead
    }
}

extension Network {
    /// One gate per width group, in group order, for a net built with `gated: true`; else empty.
    public var gateSites: [GateSite] { wiring.sites.map { GateSite(gate: $0.scale, dead: $0.slices) } }

    /// Whether the net has gates (a search's net, or a search state's).
    public var isGated: Bool { hasChannelScales }
}

/// Builds the net a description names; with `gated`, a pruning gate on every width group (the
/// net's channel scales), as the search trains it.
public func makeNetwork(_ d: NetDescription, initialization: Initialization, gated: Bool) throws -> Network {
    try makeNetwork(d, initialization: initialization, channelScales: gated)
}
