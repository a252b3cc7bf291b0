import Autodiff

/// What a net's own forward pass says about its width groups, traced once from an eval pass of
/// one image: the groups each tensor's first two axes run over (what surgery cuts), and each
/// group's channel scale with the trained slices that make its channels (what a pruner zeroes).
///
/// The net's definition declares only the group of each conv's output channels (`Conv2d.group`);
/// the rest follows the data: a value's channels are those of the conv that made it, carried
/// through batch norm, activations, pooling, channel scales and flattening; a residual sum has the
/// channels of its first operand, the residual branch; a channel selection's output has none
/// of its own. A conv's or linear layer's input axis gets the group of its input, a BN's axis
/// the group of what it normalizes.
public struct ChannelWiring {
    /// Groups of the first two axes of every tensor by dotted name, channel scales aside.
    public let axes: [String: ChannelAxes]
    /// One site per group, in group order, for a net built with channel scales; else empty.
    public let sites: [ChannelSite]
    /// A dotted name per group, in group order: the first layer whose output channels the
    /// group counts, or for a residual block's output, the block: the module of the residual
    /// sum's first operand up to its first index (`blocks.3.residual.7` -> `blocks.3`).
    public let groupNames: [String]

    public init(tracing net: Network) {
        let d = net.netDescription
        let x = Tensor.filled([1, d.inChannels, d.imageSize, d.imageSize], with: 0)
        let (_, trace) = Tape.withoutGradients { Trace.record { net.logits(x, training: false) } }
        let state = net.state
        var byID: [ObjectIdentifier: NamedTensor] = [:]
        for t in state { byID[ObjectIdentifier(t.tensor)] = t }
        var groups: [ObjectIdentifier: Int] = [:]  // value -> group of its channels
        var modules: [ObjectIdentifier: String] = [:]  // value -> the module that made it
        var axes: [String: ChannelAxes] = [:]
        var firstLayer: [Int: String] = [:], block: [Int: String] = [:]
        /// `blocks.3.conv1.weight` -> `blocks.3.conv1`.
        func owner(_ name: String) -> String { name.split(separator: ".").dropLast().joined(separator: ".") }
        /// `blocks.3.residual.7` -> `blocks.3`: up to the first index.
        func blockName(_ module: String) -> String {
            let parts = module.split(separator: ".")
            guard let i = parts.firstIndex(where: { $0.allSatisfy(\.isNumber) }) else { return module }
            return parts[...i].joined(separator: ".")
        }
        func tensor(_ id: ObjectIdentifier?) -> NamedTensor {
            guard let id, let t = byID[id] else { preconditionFailure("ChannelWiring: a parameter is not in the net's state") }
            return t
        }
        func group(_ id: ObjectIdentifier?) -> Int? { id.flatMap { groups[$0] } }
        for op in trace.ops {
            let ids = op.operands.all
            let out: Int?
            var module = ids.first.flatMap { $0.flatMap { modules[$0] } }
            switch op.kind {
            case .conv2d:
                let weight = tensor(ids[1])
                out = weight.group
                module = owner(weight.name)
                if let out, firstLayer[out] == nil { firstLayer[out] = module }
                axes[weight.name] = ChannelAxes(rows: out, columns: group(ids[0]))
                if ids.count > 2 { axes[tensor(ids[2]).name] = ChannelAxes(rows: out, columns: nil) }
            case .batchNorm:
                out = group(ids[0])
                module = owner(tensor(ids[1]).name)
                // Its weight, bias and running statistics; a gate operand is a channel scale.
                for id in ids.dropFirst() where tensor(id).kind != .channelScale {
                    axes[tensor(id).name] = ChannelAxes(rows: out, columns: nil)
                }
            case .linear:
                out = nil
                module = owner(tensor(ids[1]).name)
                axes[tensor(ids[1]).name] = ChannelAxes(rows: nil, columns: group(ids[0]))
                if ids.count > 2 { axes[tensor(ids[2]).name] = ChannelAxes(rows: nil, columns: nil) }
            case .add:
                out = group(ids[0])
                module = module.map(blockName)
                if let out, let module { block[out] = module }
            case .channelScale, .relu, .relu6, .maxPool, .avgPool, .globalAvgPool, .reshape:
                out = group(ids[0])
            case .selectChannels:
                out = nil
            case .mul, .matmul, .crossEntropy, .residualSum:
                // (A traced `residualSum` runs as its add, activation and channel scale.)
                preconditionFailure("ChannelWiring: a net's traced forward pass has no \(op.kind.name)")
            }
            if let out { groups[ObjectIdentifier(op.output)] = out }
            if let module { modules[ObjectIdentifier(op.output)] = module }
        }
        self.axes = axes
        groupNames = (0..<d.widths.count).map { g in
            guard let name = block[g] ?? firstLayer[g] else { preconditionFailure("ChannelWiring: no layer makes group \(g)") }
            return name
        }
        // Scales are `gates.<group>`; the slices of group g are every trained tensor whose axis 0
        // runs over g: the filters and bias that make its channels and the BN weight and bias
        // that normalize them.
        let scales = state.filter { $0.kind == .channelScale }
        sites = scales.enumerated().map { g, scale in
            precondition(scale.name.hasSuffix("gates.\(g)"), "ChannelWiring: channel scales must be named gates.<group> in group order")
            return ChannelSite(scale: scale.tensor, slices: state.filter { $0.kind == .parameter && axes[$0.name]?.rows == g }.map(\.tensor))
        }
    }
}

/// A width group's channel scale and the trained tensors whose slice `c` along axis 0 belongs to
/// channel `c` of the group alone.
public struct ChannelSite {
    /// [C]: multiplies the group's channels where the net's definition places it.
    public let scale: Tensor
    /// The filters and bias that make the group's channels and the BN weight and bias that
    /// normalize them (which would turn a zeroed channel into a constant).
    public let slices: [Tensor]
}
