import Autodiff

/// MobileNetV2, the CIFAR variant of the NeuralScale reference (spec: "Nets"): a 3x3 stem
/// (stride 1) + BN + ReLU6, 17 linear bottlenecks, a 1x1 conv to 1280 + BN + ReLU6, global
/// average pooling and a 1x1 conv classifier. Every conv has a bias.
///
/// A bottleneck with input width `c`, output width `w`, expansion `t` and stride `s`:
/// expand 1x1 (`t*c`) + BN + ReLU6, depthwise 3x3 stride `s` + BN + ReLU6, project 1x1 (`w`) + BN;
/// plus the shortcut: identity when `s == 1` and `c == w`, else 1x1 conv stride `s` + BN. A net
/// made by pruning surgery may give other expansion widths and shortcuts (a channel selection),
/// listed in its description.
///
/// Width groups (19), in order: the stem, the output of each bottleneck
/// (`16 | 24 24 | 32 32 32 | 64 64 64 64 | 96 96 96 | 160 160 160 | 320`), the 1280 conv.
/// Expansion widths follow from the input widths.
///
/// Names: `pre.0` / `pre.1` (stem conv / BN), `blocks.<b>.residual.{0,1,3,4,6,7}`,
/// `blocks.<b>.shortcut.{0,1}`, `conv1.0` / `conv1.1`, `conv2`.
public final class MobileNetV2: Network {
    public static let originalWidths = [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280]

    /// (expansion, stride) of each of the 17 bottlenecks; `largeStride` for 64x64 inputs.
    static func bottleneckPlan(largeInput: Bool) -> [(t: Int, stride: Int)] {
        // Stages as (expansion, blocks, first stride).
        let stages = [(1, 1, 1), (6, 2, 2), (6, 3, 2), (6, 4, 2), (6, 3, largeInput ? 2 : 1), (6, 3, 2), (6, 1, 1)]
        return stages.flatMap { t, n, s in (0..<n).map { (t: t, stride: $0 == 0 ? s : 1) } }
    }

    final class Bottleneck: Module {
        let expand: Conv2d, bn1: BatchNorm2d
        let depthwise: Conv2d, bn2: BatchNorm2d
        let project: Conv2d, bn3: BatchNorm2d
        let shortcut: (Conv2d, BatchNorm2d)?
        /// The channels a selection shortcut takes from the input (see `Shortcut.select`).
        let selection: [Int]?
        /// Channel scale of the block's output (after the residual sum), where the reference
        /// search gates it.
        let outputScale: Tensor?

        /// `g`: the group of the output (the expansion channels have none: they are never pruned).
        init(_ cin: Int, _ cout: Int, expansion m: Int, stride: Int, shortcut: Shortcut, group g: Int, _ i: Initializer) {
            outputScale = i.channelScale(cout)
            expand = Conv2d(cin, m, kernel: 1, bias: true, i); bn1 = BatchNorm2d(m, i)
            depthwise = Conv2d(m, m, kernel: 3, stride: stride, padding: 1, groups: m, bias: true, i); bn2 = BatchNorm2d(m, i)
            project = Conv2d(m, cout, kernel: 1, bias: true, group: g, i); bn3 = BatchNorm2d(cout, i)
            self.shortcut = shortcut == .projection
                ? (Conv2d(cin, cout, kernel: 1, stride: stride, bias: true, group: g, i), BatchNorm2d(cout, i)) : nil
            if case let .select(channels) = shortcut { selection = channels } else { selection = nil }
        }

        func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
            var r = bn1(expand(x), training: training, activation: .relu6)
            r = bn2(depthwise(r), training: training, activation: .relu6)
            r = bn3(project(r), training: training)
            let s = shortcut.map { conv, bn in bn(conv(x), training: training) } ?? selection.map { selectChannels(x, $0) } ?? x
            return scaled(add(r, s), outputScale, .identity)
        }



        func collectState(prefix: String, into state: inout [NamedTensor]) {
            for (k, m) in [(0, expand), (3, depthwise), (6, project)] as [(Int, Module)] {
                m.collectState(prefix: join(prefix, "residual.\(k)"), into: &state)
                [bn1, bn2, bn3][k / 3].collectState(prefix: join(prefix, "residual.\(k + 1)"), into: &state)
            }
            if let (conv, bn) = shortcut {
                conv.collectState(prefix: join(prefix, "shortcut.0"), into: &state)
                bn.collectState(prefix: join(prefix, "shortcut.1"), into: &state)
            }
        }
    }

    public let netDescription: NetDescription
    let stem: Conv2d, stemBN: BatchNorm2d
    let blocks: [Bottleneck]
    let head: Conv2d, headBN: BatchNorm2d
    let classifier: Conv2d
    let stemScale: Tensor?, headScale: Tensor?

    init(_ d: NetDescription, _ i: Initializer) {
        netDescription = d
        let w = d.widths
        stem = Conv2d(d.inChannels, w[0], kernel: 3, padding: 1, bias: true, group: 0, i)
        stemBN = BatchNorm2d(w[0], i)
        stemScale = i.channelScale(w[0])
        var c = w[0], blocks: [Bottleneck] = []
        for (b, (block, (m, shortcut))) in zip(d.residualBlocks, zip(d.resolvedExpansions, d.resolvedShortcuts)).enumerated() {
            blocks.append(Bottleneck(c, w[b + 1], expansion: m, stride: block.stride, shortcut: shortcut, group: b + 1, i))
            c = w[b + 1]
        }
        self.blocks = blocks
        head = Conv2d(c, w[18], kernel: 1, bias: true, group: 18, i)
        headBN = BatchNorm2d(w[18], i)
        headScale = i.channelScale(w[18])
        classifier = Conv2d(w[18], d.classes, kernel: 1, bias: true, i)
    }

    public func logits(_ x: Tensor, training: Bool) -> Tensor {
        var h = stemBN(stem(x), training: training, scale: stemScale, activation: .relu6)
        for b in blocks { h = b(h, training: training) }
        h = headBN(head(h), training: training, scale: headScale, activation: .relu6)
        return flatten(classifier(globalAvgPool(h)))
    }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        stem.collectState(prefix: join(prefix, "pre.0"), into: &state)
        stemBN.collectState(prefix: join(prefix, "pre.1"), into: &state)
        for (k, b) in blocks.enumerated() { b.collectState(prefix: join(prefix, "blocks.\(k)"), into: &state) }
        head.collectState(prefix: join(prefix, "conv1.0"), into: &state)
        headBN.collectState(prefix: join(prefix, "conv1.1"), into: &state)
        classifier.collectState(prefix: join(prefix, "conv2"), into: &state)
        collectChannelScales([stemScale] + blocks.map(\.outputScale) + [headScale], prefix: prefix, into: &state)
    }


}
