import Autodiff

/// ResNet-50 as torchvision builds it (spec: "Nets"): a 7x7 stride-2 stem conv (no bias) + BN +
/// ReLU + 3x3 stride-2 max pool, bottleneck stages of 3, 4, 6, 3 blocks, global average pooling
/// and a linear classifier, on the dataset's image size.
///
/// A bottleneck with input width `c`, inner widths `m1`, `m2`, output width `w` and stride `s`:
/// 1x1 (`c -> m1`) + BN + ReLU, 3x3 stride `s` (`m1 -> m2`) + BN + ReLU, 1x1 (`m2 -> w`) + BN,
/// added to the shortcut, then ReLU. The shortcut is `x`, or a 1x1 conv stride `s` + BN when
/// `s != 1` or `c != w`. The first block of stages 2-4 has stride 2. A net made by pruning
/// surgery may list other shortcuts (a channel selection) in its description.
///
/// Width groups (49), in order: the stem, then per block `m1, m2, w`; originally
/// `64 | (64 64 256) x3 | (128 128 512) x4 | (256 256 1024) x6 | (512 512 2048) x3`.
///
/// Names: `stem.0` / `stem.1`, `blocks.<b>.{conv1,bn1,conv2,bn2,conv3,bn3}`,
/// `blocks.<b>.down.{0,1}`, `fc`.
public final class ResNet50: Network {
    static let stageBlocks = [3, 4, 6, 3]
    /// Stride of each of the 16 bottlenecks: 2 for the first block of stages 2-4.
    static let blockStrides = stageBlocks.enumerated().flatMap { stage, n in
        (0..<n).map { j in j == 0 && stage > 0 ? 2 : 1 }
    }
    public static let originalWidths = [64] + zip(stageBlocks, [64, 128, 256, 512]).flatMap { n, p in
        (0..<n).flatMap { _ in [p, p, 4 * p] }
    }

    final class Bottleneck: Module {
        let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d, conv3: Conv2d, bn3: BatchNorm2d
        let down: (Conv2d, BatchNorm2d)?
        /// The channels a selection shortcut takes from the input (see `Shortcut.select`).
        let selection: [Int]?
        /// Channel scales (where the search gates): after bn1, after bn2, and on the block output
        /// (after the final ReLU).
        let scale1: Tensor?, scale2: Tensor?, outputScale: Tensor?

        /// `g`: the group of `m1`; `m2` and the output are the next two.
        init(_ cin: Int, _ m1: Int, _ m2: Int, _ out: Int, stride: Int, shortcut: Shortcut, group g: Int, _ i: Initializer) {
            scale1 = i.channelScale(m1)
            scale2 = i.channelScale(m2)
            outputScale = i.channelScale(out)
            conv1 = Conv2d(cin, m1, kernel: 1, bias: false, group: g, i); bn1 = BatchNorm2d(m1, i)
            conv2 = Conv2d(m1, m2, kernel: 3, stride: stride, padding: 1, bias: false, group: g + 1, i); bn2 = BatchNorm2d(m2, i)
            conv3 = Conv2d(m2, out, kernel: 1, bias: false, group: g + 2, i); bn3 = BatchNorm2d(out, i)
            down = shortcut == .projection
                ? (Conv2d(cin, out, kernel: 1, stride: stride, bias: false, group: g + 2, i), BatchNorm2d(out, i)) : nil
            if case let .select(channels) = shortcut { selection = channels } else { selection = nil }
        }

        func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
            var o = bn1(conv1(x), training: training, scale: scale1, activation: .relu)
            o = bn2(conv2(o), training: training, scale: scale2, activation: .relu)
            o = bn3(conv3(o), training: training)
            let s = down.map { conv, bn in bn(conv(x), training: training) } ?? selection.map { selectChannels(x, $0) } ?? x
            return residualSum(o, s, activation: .relu, scale: outputScale)
        }



        func collectState(prefix: String, into state: inout [NamedTensor]) { collectProperties(prefix: prefix, into: &state) }
    }

    public let netDescription: NetDescription
    /// The stored layers carry the reference's names (`stem.0`, `blocks.3.down.1`, `fc`).
    let stem: (Conv2d, BatchNorm2d)
    let blocks: [Bottleneck]
    let fc: Linear
    let stemScale: Tensor?

    init(_ d: NetDescription, _ i: Initializer) {
        netDescription = d
        let w = d.widths
        stem = (Conv2d(d.inChannels, w[0], kernel: 7, stride: 2, padding: 3, bias: false, group: 0, i), BatchNorm2d(w[0], i))
        stemScale = i.channelScale(w[0])
        var c = w[0], blocks: [Bottleneck] = []
        for (b, (block, shortcut)) in zip(d.residualBlocks, d.resolvedShortcuts).enumerated() {
            let g = 1 + 3 * b
            blocks.append(Bottleneck(c, w[g], w[g + 1], w[g + 2], stride: block.stride, shortcut: shortcut, group: g, i))
            c = w[g + 2]
        }
        self.blocks = blocks
        fc = Linear(c, d.classes, i)
    }

    public func logits(_ x: Tensor, training: Bool) -> Tensor {
        var h = stem.1(stem.0(x), training: training, scale: stemScale, activation: .relu)
        h = maxPool2d(h, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        for b in blocks { h = b(h, training: training) }
        return fc(flatten(globalAvgPool(h)))
    }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        collectProperties(prefix: prefix, into: &state)
        collectChannelScales([stemScale] + blocks.flatMap { [$0.scale1, $0.scale2, $0.outputScale] }, prefix: prefix, into: &state)
    }


}
