import Autodiff

/// VGG-11 (config A) with batch norm: eight 3x3 convolutions with bias, each followed by
/// BN + ReLU, max pools after convolutions 1, 2, 4, 6 and 8, then one linear classifier on the
/// flattened features (spec: "Nets").
///
/// Width groups (8), in order: the eight convolutions, originally
/// `64, 128, 256, 256, 512, 512, 512, 512`.
///
/// Names follow the reference's layer list: `features.<i>` with conv, BN and ReLU taking three
/// indices and each max pool one (`features.0` conv1, `features.1` its BN, `features.4` conv2,
/// ...), and `classifier`. For inputs larger than 32x32 the classifier sees the flattened
/// `(size/32) x (size/32)` map.
public final class VGG11: Network {
    public static let originalWidths = [64, 128, 256, 256, 512, 512, 512, 512]
    /// Conv indices (0-based) followed by a 2x2 max pool.
    static let poolAfter: Set<Int> = [0, 1, 3, 5, 7]

    public let netDescription: NetDescription
    let convs: [Conv2d], norms: [BatchNorm2d]
    let classifier: Linear
    /// Channel scales after each conv's BN (before its ReLU), when built with them.
    let scales: [Tensor?]
    /// Position of each conv in the reference layer list.
    let featureIndex: [Int]

    init(_ d: NetDescription, _ initializer: Initializer) {
        netDescription = d
        var convs: [Conv2d] = [], norms: [BatchNorm2d] = [], index: [Int] = []
        var c = d.inChannels, position = 0
        for (i, w) in d.widths.enumerated() {
            convs.append(Conv2d(c, w, kernel: 3, padding: 1, bias: true, group: i, initializer))
            norms.append(BatchNorm2d(w, initializer))
            index.append(position)
            position += Self.poolAfter.contains(i) ? 4 : 3
            c = w
        }
        self.convs = convs
        self.norms = norms
        scales = d.widths.map { initializer.channelScale($0) }
        featureIndex = index
        let side = d.imageSize / 32
        classifier = Linear(c * side * side, d.classes, initializer)
    }

    public func logits(_ x: Tensor, training: Bool) -> Tensor {
        var h = x
        for i in convs.indices {
            h = norms[i](convs[i](h), training: training, scale: scales[i], activation: .relu)
            if Self.poolAfter.contains(i) { h = maxPool2d(h, kernel: (2, 2)) }
        }
        return classifier(flatten(h))
    }

    public func collectState(prefix: String, into state: inout [NamedTensor]) {
        for i in convs.indices {
            convs[i].collectState(prefix: join(prefix, "features.\(featureIndex[i])"), into: &state)
            norms[i].collectState(prefix: join(prefix, "features.\(featureIndex[i] + 1)"), into: &state)
        }
        classifier.collectState(prefix: join(prefix, "classifier"), into: &state)
        collectChannelScales(scales, prefix: prefix, into: &state)
    }


}
