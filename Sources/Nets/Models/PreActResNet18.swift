import Autodiff

/// PreAct ResNet-18 (spec: "Nets"): a 3x3 stem conv (no bias), 4 stages of 2 pre-activation
/// basic blocks, a final BN + ReLU, global average pooling and a linear classifier.
///
/// A block with input width `c`, inner width `m`, output width `w` and stride `s`:
/// `a = relu(bn1(x))`, `out = conv2(relu(bn2(conv1(a)))) + shortcut`, with conv1 3x3 stride `s`
/// (`c -> m`), conv2 3x3 (`m -> w`), and the shortcut `x` itself, or a 1x1 conv of `a` (no BN,
/// no bias) when `s != 1` or `c != w` (a net made by pruning surgery may list a channel
/// selection of `x` instead, in its description). The first block of stages 2-4 has stride 2 (of stage 1
/// too for 64x64 inputs).
///
/// Width groups (17), in order: the stem, then per block its inner and output widths:
/// `64 | 64 64, 64 64 | 128 128, 128 128 | 256 256, 256 256 | 512 512, 512 512`.
///
/// Names: `conv1`, `layers.<b>.{bn1,conv1,bn2,conv2,shortcut}`, `bn`, `linear`.
public final class PreActResNet18: Network {
    public static let originalWidths = [64] + [64, 128, 256, 512].flatMap { [$0, $0, $0, $0] }

    final class Block: Module {
        let bn1: BatchNorm2d, conv1: Conv2d, bn2: BatchNorm2d, conv2: Conv2d
        /// The 1x1 projection of the pre-activation `a`, for a projection shortcut.
        let shortcut: Conv2d?
        /// The channels a selection shortcut takes from `x` (see `Shortcut.select`).
        let selection: [Int]?
        /// Channel scales (the search's gates). `inputScale` is the scale of the block's input
        /// group (the stem's or the previous block's output): it sits after bn1, as in the
        /// reference, and also on the identity shortcut that carries the group on, so a channel
        /// scaled to zero is used nowhere. (The reference gates only the BN, which leaves a pruned
        /// channel alive in the identity shortcuts, so no smaller net computes what the gated net
        /// computes; scaling the stream itself instead would put the scale in front of a BN, whose
        /// batch statistics cancel it, and Taylor-FO would see no importance there.)
        /// `innerScale` sits after bn2.
        let inputScale: Tensor?, innerScale: Tensor?

        /// `g`: the group of `inner`; the output is the next group.
        init(_ cin: Int, inner: Int, out: Int, stride: Int, shortcut: Shortcut, inputScale: Tensor?, group g: Int, _ i: Initializer) {
            self.inputScale = inputScale
            innerScale = i.channelScale(inner)
            bn1 = BatchNorm2d(cin, i)
            conv1 = Conv2d(cin, inner, kernel: 3, stride: stride, padding: 1, bias: false, group: g, i)
            bn2 = BatchNorm2d(inner, i)
            conv2 = Conv2d(inner, out, kernel: 3, padding: 1, bias: false, group: g + 1, i)
            self.shortcut = shortcut == .projection ? Conv2d(cin, out, kernel: 1, stride: stride, bias: false, group: g + 1, i) : nil
            if case let .select(channels) = shortcut { selection = channels } else { selection = nil }
        }

        func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
            let a = bn1(x, training: training, scale: inputScale, activation: .relu)
            let s: Tensor
            if let shortcut {
                s = shortcut(a)
            } else {
                let carried = scaled(x, inputScale, .identity)
                s = selection.map { selectChannels(carried, $0) } ?? carried
            }
            let h = conv2(bn2(conv1(a), training: training, scale: innerScale, activation: .relu))
            return add(h, s)
        }

        /// The channel scale and BN that consume this block's output: the next block's bn1, or
        /// the final BN.
        func next(_ net: PreActResNet18) -> (scale: Tensor?, bn: BatchNorm2d) {
            guard let k = net.layers.firstIndex(where: { $0 === self }), k + 1 < net.layers.count else {
                return (net.finalScale, net.bn)
            }
            return (net.layers[k + 1].inputScale, net.layers[k + 1].bn1)
        }

        func collectState(prefix: String, into state: inout [NamedTensor]) { collectProperties(prefix: prefix, into: &state) }
    }

    /// Stride of block `b` (0-based, two per stage): 2 for the first block of stages 2-4, and of
    /// stage 1 too for 64x64 inputs.
    static func stride(block b: Int, largeInput: Bool) -> Int {
        b % 2 == 0 && (b / 2 > 0 || largeInput) ? 2 : 1
    }

    public let netDescription: NetDescription
    /// The stored layers carry the reference's names: the stem `conv1`, the blocks `layers`,
    /// the final BN `bn`, the classifier `linear`.
    let conv1: Conv2d
    let layers: [Block]
    let bn: BatchNorm2d
    let linear: Linear
    /// Channel scale of the last block's output group, after the final BN.
    let finalScale: Tensor?

    init(_ d: NetDescription, _ i: Initializer) {
        netDescription = d
        let w = d.widths
        conv1 = Conv2d(d.inChannels, w[0], kernel: 3, padding: 1, bias: false, group: 0, i)
        var c = w[0], blocks: [Block] = []
        var inputScale = i.channelScale(w[0])
        for (b, (block, shortcut)) in zip(d.residualBlocks, d.resolvedShortcuts).enumerated() {
            blocks.append(Block(c, inner: w[1 + 2 * b], out: w[2 + 2 * b], stride: block.stride, shortcut: shortcut,
                                inputScale: inputScale, group: 1 + 2 * b, i))
            c = w[2 + 2 * b]
            inputScale = i.channelScale(c)
        }
        layers = blocks
        bn = BatchNorm2d(c, i)
        finalScale = inputScale
        linear = Linear(c, d.classes, i)
    }

    public func logits(_ x: Tensor, training: Bool) -> Tensor {
        var h = conv1(x)
        for b in layers { h = b(h, training: training) }
        h = bn(h, training: training, scale: finalScale, activation: .relu)
        return linear(flatten(globalAvgPool(h)))
    }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        collectProperties(prefix: prefix, into: &state)
        collectChannelScales([layers[0].inputScale] + layers.flatMap { [$0.innerScale, $0.next(self).scale] }, prefix: prefix, into: &state)
    }


}
