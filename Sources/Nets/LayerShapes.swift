/// One convolution or linear layer of a net, as a cost model sees it: what it reads, what it
/// writes, and its kernel. Linear layers are 1x1 convolutions of a 1x1 input.
public struct LayerShape: Hashable, Codable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    /// Height and width of the (square) input.
    public var inputSize: Int
    public var kernel: Int
    public var stride: Int
    /// 1, or `inChannels` for a depthwise convolution.
    public var groups: Int
    /// A fully connected layer (its input flattened).
    public var linear: Bool

    public init(inChannels: Int, outChannels: Int, inputSize: Int, kernel: Int, stride: Int = 1, groups: Int = 1, linear: Bool = false) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.inputSize = inputSize
        self.kernel = kernel
        self.stride = stride
        self.groups = groups
        self.linear = linear
    }

    /// The output's height and width: every layer of the four nets pads by `kernel / 2`, so it is
    /// `ceil(inputSize / stride)`.
    public var outputSize: Int { (inputSize - 1) / stride + 1 }

    public var isDepthwise: Bool { groups > 1 && groups == inChannels && groups == outChannels }

    /// Multiply-accumulates for one image (bias free), as thop counts them.
    public var macs: Int {
        linear ? inChannels * outChannels
            : outChannels * outputSize * outputSize * (inChannels / groups) * kernel * kernel
    }
}

/// The layers and MACs of a description's net without building it: the width solver evaluates
/// them thousands of times per solve. `LayerShapeTests` holds them to the traced graphs.
extension NetDescription {
    /// Every convolution and linear layer, in the order the forward pass runs them (a projection
    /// shortcut after its block's residual branch, before it in PreAct ResNet-18).
    public var layerShapes: [LayerShape] { costs.layers }

    /// Multiply-accumulates for one image, counted as `InferenceGraph.macs` counts them: the
    /// layers', plus 4 per element of every BatchNorm's output.
    public var macs: Int {
        let c = costs
        return c.layers.reduce(0) { $0 + $1.macs } + 4 * c.batchNormElements
    }

    /// MFLOPs for one image: `2 * macs / 1e6`, as `stats` prints them.
    public var mflops: Double { 2 * Double(macs) / 1e6 }

    private var costs: (layers: [LayerShape], batchNormElements: Int) {
        let w = widths
        var layers: [LayerShape] = [], bnElements = 0
        func conv(_ cin: Int, _ cout: Int, _ size: Int, k: Int, stride: Int = 1, groups: Int = 1) -> Int {
            let l = LayerShape(inChannels: cin, outChannels: cout, inputSize: size, kernel: k, stride: stride, groups: groups)
            layers.append(l)
            return l.outputSize
        }
        func bn(_ c: Int, _ size: Int) { bnElements += c * size * size }
        func linear(_ cin: Int, _ cout: Int) { layers.append(LayerShape(inChannels: cin, outChannels: cout, inputSize: 1, kernel: 1, linear: true)) }
        // MobileNetV2's and ResNet-50's bottleneck: 1x1 (c -> a) + BN, 3x3 with the block's stride
        // (a -> b; depthwise when a == b == groups) + BN, 1x1 (b -> out) + BN, and a projection
        // shortcut (1x1 with the stride + BN). Returns the output size.
        func bottleneck(_ c: Int, _ a: Int, _ b: Int, _ out: Int, _ s: Int, _ block: ResidualBlock, groups: Int,
                        _ shortcut: Shortcut) -> Int {
            _ = conv(c, a, s, k: 1)
            bn(a, s)
            let t = conv(a, b, s, k: 3, stride: block.stride, groups: groups)
            bn(b, t)
            _ = conv(b, out, t, k: 1)
            bn(out, t)
            if shortcut == .projection {
                _ = conv(c, out, s, k: 1, stride: block.stride)
                bn(out, t)
            }
            return t
        }
        switch architecture {
        case .vgg11:
            var c = inChannels, s = imageSize
            for (i, width) in w.enumerated() {
                s = conv(c, width, s, k: 3)
                bn(width, s)
                if [0, 1, 3, 5, 7].contains(i) { s /= 2 }
                c = width
            }
            linear(c * s * s, classes)
        case .mobilenetv2:
            var s = conv(inChannels, w[0], imageSize, k: 3), c = w[0]
            bn(c, s)
            for (block, (m, shortcut)) in zip(residualBlocks, zip(resolvedExpansions, resolvedShortcuts)) {
                s = bottleneck(c, m, m, w[block.output], s, block, groups: m, shortcut)
                c = w[block.output]
            }
            _ = conv(c, w[18], s, k: 1)
            bn(w[18], s)
            // The classifier is a 1x1 conv on the pooled 1x1 map: the graph makes it a linear layer.
            linear(w[18], classes)
        case .preactResNet18:
            var s = conv(inChannels, w[0], imageSize, k: 3), c = w[0]
            for (block, shortcut) in zip(residualBlocks, resolvedShortcuts) {
                let inner = w[block.output - 1], out = w[block.output]
                bn(c, s)
                if shortcut == .projection { _ = conv(c, out, s, k: 1, stride: block.stride) }
                let t = conv(c, inner, s, k: 3, stride: block.stride)
                bn(inner, t)
                _ = conv(inner, out, t, k: 3)
                c = out
                s = t
            }
            bn(c, s)
            linear(c, classes)
        case .resnet50:
            var s = conv(inChannels, w[0], imageSize, k: 7, stride: 2), c = w[0]
            bn(c, s)
            s = (s - 1) / 2 + 1  // 3x3 max pool, stride 2, padding 1
            for (block, shortcut) in zip(residualBlocks, resolvedShortcuts) {
                s = bottleneck(c, w[block.output - 2], w[block.output - 1], w[block.output], s, block, groups: 1, shortcut)
                c = w[block.output]
            }
            linear(c, classes)
        }
        return (layers, bnElements)
    }
}
