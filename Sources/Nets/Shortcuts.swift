/// How a residual block's input reaches its sum.
///
/// Nets built from widths alone follow the spec's rule (`identity` when the stride is 1 and the
/// input and output widths are equal, else `projection`). A net made by pruning surgery keeps the
/// shortcuts the gated net had, so its description lists them explicitly (`NetDescription.shortcuts`).
public enum Shortcut: Equatable, Sendable {
    /// The input itself.
    case identity
    /// The net's learned 1x1 shortcut (conv + BN, or a bare conv for PreAct ResNet-18).
    case projection
    /// Output channel `j` is input channel `channels[j]`, or zeros where that is -1: an identity
    /// shortcut whose two ends lost different channels. It has no parameters.
    case select([Int])
}

extension Shortcut: Codable {
    // "identity", "projection", or the channel list of a selection.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let name = try? c.decode(String.self) {
            switch name {
            case "identity": self = .identity
            case "projection": self = .projection
            default:
                throw DecodingError.dataCorruptedError(in: c, debugDescription:
                    "unknown shortcut \"\(name)\"; expected \"identity\", \"projection\" or a channel list")
            }
        } else {
            self = .select(try c.decode([Int].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .identity: try c.encode("identity")
        case .projection: try c.encode("projection")
        case let .select(channels): try c.encode(channels)
        }
    }
}

/// Where a residual block sits among the width groups.
public struct ResidualBlock: Equatable, Sendable {
    /// The group the block reads (the stem's or the previous block's output).
    public let input: Int
    /// The group the block writes.
    public let output: Int
    public let stride: Int
}

extension NetDescription {
    /// The residual blocks, in order (none for VGG-11).
    public var residualBlocks: [ResidualBlock] {
        switch architecture {
        case .vgg11:
            return []
        case .mobilenetv2:
            return MobileNetV2.bottleneckPlan(largeInput: largeInput).enumerated().map { b, plan in
                ResidualBlock(input: b, output: b + 1, stride: plan.stride)
            }
        case .preactResNet18:
            return (0..<8).map { b in
                ResidualBlock(input: b == 0 ? 0 : 2 * b, output: 2 + 2 * b,
                              stride: PreActResNet18.stride(block: b, largeInput: largeInput))
            }
        case .resnet50:
            return ResNet50.blockStrides.enumerated().map { b, stride in
                ResidualBlock(input: b == 0 ? 0 : 3 * b, output: 3 + 3 * b, stride: stride)
            }
        }
    }

    /// How many residual blocks take each kind of shortcut.
    public var shortcutCounts: ShortcutCounts {
        var n = ShortcutCounts()
        for s in resolvedShortcuts {
            switch s {
            case .identity: n.identity += 1
            case .projection: n.projection += 1
            case .select: n.selection += 1
            }
        }
        return n
    }

    /// The width groups joined by identity shortcuts: each set (more than one group, in group
    /// order; sets ordered by their first group) is a residual stream whose channels are the same
    /// channels in every group of it (PreAct ResNet-18 on 32x32 images: the stem and the outputs
    /// of blocks 0 and 1, `[0, 2, 4]`, then `[6, 8]`, ...). A group in no set stands alone.
    public var identityCoupling: [[Int]] {
        var parent = Array(widths.indices)
        func root(_ g: Int) -> Int { var g = g; while parent[g] != g { g = parent[g] }; return g }
        for (b, s) in zip(residualBlocks, resolvedShortcuts) where s == .identity {
            let a = root(b.input), c = root(b.output)
            parent[max(a, c)] = min(a, c)
        }
        var sets: [Int: [Int]] = [:]
        for g in widths.indices { sets[root(g), default: []].append(g) }
        return sets.values.filter { $0.count > 1 }.sorted { $0[0] < $1[0] }
    }

    /// Each residual block's shortcut: `shortcuts` when given, else the spec's rule.
    public var resolvedShortcuts: [Shortcut] {
        shortcuts ?? residualBlocks.map { b in
            b.stride == 1 && widths[b.input] == widths[b.output] ? .identity : .projection
        }
    }

    /// MobileNetV2's expansion width per bottleneck: `expansions` when given, else the
    /// expansion factor times the block's input width. Empty for the other nets.
    public var resolvedExpansions: [Int] {
        guard architecture == .mobilenetv2 else { return [] }
        return expansions ?? zip(MobileNetV2.bottleneckPlan(largeInput: largeInput), residualBlocks).map { plan, b in
            plan.t * widths[b.input]
        }
    }

    /// Checks `shortcuts` and `expansions` against the widths.
    func validateSurgeryFields() throws {
        let blocks = residualBlocks
        if let expansions {
            guard architecture == .mobilenetv2 else {
                throw NetError.invalid("only mobilenetv2 has expansion widths; \(architecture.rawValue) got \(expansions.count)")
            }
            guard expansions.count == blocks.count, expansions.allSatisfy({ (1...NetDescription.maxWidth).contains($0) }) else {
                throw NetError.invalid("mobilenetv2 needs \(blocks.count) expansion widths in 1...\(NetDescription.maxWidth), got \(expansions)")
            }
        }
        guard let shortcuts else { return }
        guard shortcuts.count == blocks.count else {
            throw NetError.invalid("\(architecture.rawValue) has \(blocks.count) residual blocks, got \(shortcuts.count) shortcuts")
        }
        for (k, (s, b)) in zip(shortcuts, blocks).enumerated() {
            let cin = widths[b.input], cout = widths[b.output]
            switch s {
            case .projection:
                continue
            case .identity:
                guard b.stride == 1, cin == cout else {
                    throw NetError.invalid("block \(k): an identity shortcut needs stride 1 and equal widths, got stride \(b.stride), \(cin) -> \(cout)")
                }
            case let .select(channels):
                guard b.stride == 1, channels.count == cout, channels.allSatisfy({ (-1..<cin).contains($0) }) else {
                    throw NetError.invalid("block \(k): a selection shortcut needs stride 1 and \(cout) channels in -1..<\(cin), got stride \(b.stride) and \(channels)")
                }
            }
        }
    }
}

extension Architecture {
    /// Coupled sets of groups by their layers' names: `[conv1, layers.0, layers.1] [layers.2, layers.3]`.
    public func describe(coupling: [[Int]]) -> String {
        let names = groupNames
        return coupling.map { "[" + $0.map { names[$0] }.joined(separator: ", ") + "]" }.joined(separator: " ")
    }
}

/// Every one of `groups` width groups in exactly one unit, units ordered by their first group:
/// the sets of `coupling` (each sorted) and every other group alone. What a coupled pruner prunes
/// and a coupled fit's solvers move as one.
public func couplingUnits(_ coupling: [[Int]], groups: Int) -> [[Int]] {
    let coupled = Set(coupling.joined())
    return ((0..<groups).filter { !coupled.contains($0) }.map { [$0] } + coupling.map { $0.sorted() }).sorted { $0[0] < $1[0] }
}

/// Residual blocks by shortcut: identities cost nothing, projections are 1x1 convs, selections
/// are channel gathers (nets made by pruning surgery).
public struct ShortcutCounts: Codable, Equatable, Sendable, CustomStringConvertible {
    public var identity = 0, projection = 0, selection = 0

    public init() {}

    public var description: String {
        "\(identity) identity, \(projection) projection (1x1 conv), \(selection) selection (gather)"
    }
}
