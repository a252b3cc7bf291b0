import Autodiff

/// A net's inference computation as a graph of layer-level ops: what ONNX export writes and what
/// `stats` measures (FLOPs, critical datapath length). Weights are referenced by dotted name.
public struct InferenceGraph {
    public enum Op: Equatable {
        case conv(weight: String, bias: String?, stride: Int, padding: Int, groups: Int)
        /// BN in eval mode; `prefix` names its weight, bias, running_mean and running_var.
        case batchNorm(prefix: String, eps: Float)
        case relu, relu6
        case add
        case maxPool(kernel: Int, stride: Int, padding: Int)
        case globalAvgPool
        /// [N, C, H, W] -> [N, C*H*W].
        case flatten
        /// `x W^T + b` on [N, F].
        case linear(weight: String, bias: String)
        /// `Shortcut.select`: output channel j is input channel `channels[j]`, or zero for -1.
        case select([Int])
    }

    /// One op. Values are numbered: 0 is the graph input, node `i` writes value `i + 1`.
    public struct Node {
        public var op: Op
        public var inputs: [Int]
        /// Dotted name of the module the node comes from (`features.0`, `blocks.3.residual.6`).
        public var name: String
        /// The shape of the node's output, batch dimension left out: [C, H, W] or [F].
        public var shape: [Int]
    }

    /// [C, H, W] of the input.
    public let inputShape: [Int]

    init(inputShape: [Int]) { self.inputShape = inputShape }
    public internal(set) var nodes: [Node] = []
    /// Every tensor a node names, by dotted name.
    public internal(set) var tensors: [String: Tensor] = [:]

    /// The value the graph returns: the last node's.
    public var output: Int { nodes.count }

    public func shape(of value: Int) -> [Int] { value == 0 ? inputShape : nodes[value - 1].shape }

    /// The number of nodes on the longest path from the input to the output.
    public var criticalPathLength: Int {
        var depth = [0] + [Int](repeating: 0, count: nodes.count)
        for (i, node) in nodes.enumerated() { depth[i + 1] = 1 + (node.inputs.map { depth[$0] }.max() ?? 0) }
        return depth[output]
    }
}

extension InferenceGraph {
    /// The graph of `net`'s eval computation, traced from one eval-mode forward pass of a
    /// one-image input: every op that ran becomes a node, parameters are named by the net's
    /// state, and channel scales (which multiply by one unless a pruner zeroed channels) are left
    /// out.
    /// A 1x1 conv with bias on a 1x1 map followed by flattening (MobileNetV2's classifier)
    /// becomes flattening followed by a linear layer.
    /// - Parameter inputSize: trace on `inputSize` x `inputSize` inputs instead of the net's own
    ///   size (a net that pools globally before its classifier takes any size of 32 or more;
    ///   see `takesOtherInputSizes`): node shapes and MACs are then those at that size.
    public init(tracing net: Network, inputSize: Int? = nil) {
        let d = net.netDescription, size = inputSize ?? d.imageSize
        self.init(inputShape: [d.inChannels, size, size])
        let x = Tensor.filled([1, d.inChannels, size, size], with: 0)
        let (y, trace) = Tape.withoutGradients { Trace.record { net.logits(x, training: false) } }
        var names: [ObjectIdentifier: String] = [:], scales = Set<ObjectIdentifier>()
        for t in net.state {
            if t.kind == .channelScale {
                scales.insert(ObjectIdentifier(t.tensor))
            } else {
                names[ObjectIdentifier(t.tensor)] = t.name
                tensors[t.name] = t.tensor
            }
        }
        var values: [ObjectIdentifier: Int] = [ObjectIdentifier(x): 0]
        /// The module of the last op with parameters: it names the ops without.
        var module = ""
        func value(_ id: ObjectIdentifier?) -> Int {
            guard let id, let v = values[id] else { preconditionFailure("InferenceGraph: an op reads a tensor the trace did not produce") }
            return v
        }
        func name(_ id: ObjectIdentifier?) -> String {
            guard let id, let n = names[id] else { preconditionFailure("InferenceGraph: a parameter is not in the net's state") }
            return n
        }
        /// `features.0.weight` -> `features.0`.
        func owner(_ parameter: String) -> String {
            parameter.split(separator: ".").dropLast().joined(separator: ".")
        }
        /// `blocks.3.bn3` -> `blocks.3`.
        func parent(_ m: String) -> String { m.split(separator: ".").dropLast().joined(separator: ".") }
        for op in trace.ops {
            let ids = op.operands.all
            let shape = Array(op.output.shape.dropFirst())
            func append(_ kind: Op, _ inputs: [Int], _ name: String) {
                nodes.append(Node(op: kind, inputs: inputs, name: name, shape: shape))
            }
            switch op.kind {
            case let .conv2d(stride, padding, groups):
                precondition(stride.h == stride.w && padding.h == padding.w, "InferenceGraph: non-square conv")
                let weight = name(ids[1]), bias = ids.count > 2 ? name(ids[2]) : nil
                module = owner(weight)
                append(.conv(weight: weight, bias: bias, stride: stride.h, padding: padding.h, groups: groups), [value(ids[0])], module)
            case let .batchNorm(eps, _, _, activation):
                module = owner(name(ids[1]))
                append(.batchNorm(prefix: module, eps: eps), [value(ids[0])], module)
                switch activation {
                case .identity: break
                case .relu: nodes.append(Node(op: .relu, inputs: [nodes.count], name: module, shape: shape))
                case .relu6: nodes.append(Node(op: .relu6, inputs: [nodes.count], name: module, shape: shape))
                }
            case .channelScale:
                precondition(ids.count == 2 && scales.contains(ids[1]!), "InferenceGraph: a channel scale that is not the net's")
                values[ObjectIdentifier(op.output)] = value(ids[0])
                continue
            case .relu:
                append(.relu, [value(ids[0])], nodes.isEmpty ? module : nodes[value(ids[0]) - 1].name)
            case .relu6:
                append(.relu6, [value(ids[0])], nodes.isEmpty ? module : nodes[value(ids[0]) - 1].name)
            case .add:
                // Named by the block of its first input, the residual branch.
                let first = value(ids[0])
                append(.add, [first, value(ids[1])], parent(first == 0 ? module : nodes[first - 1].name))
            case let .maxPool(kernel, stride, padding):
                precondition(kernel.h == kernel.w && stride.h == stride.w && padding.h == padding.w, "InferenceGraph: non-square pool")
                append(.maxPool(kernel: kernel.h, stride: stride.h, padding: padding.h), [value(ids[0])], "maxpool")
            case .globalAvgPool:
                append(.globalAvgPool, [value(ids[0])], "pool")
            case .reshape:
                precondition(op.output.shape.count == 2, "InferenceGraph: a reshape that is not a flattening")
                append(.flatten, [value(ids[0])], "flatten")
            case .linear:
                let weight = name(ids[1])
                module = owner(weight)
                append(.linear(weight: weight, bias: name(ids[2])), [value(ids[0])], module)
            case let .selectChannels(channels):
                append(.select(channels), [value(ids[0])], parent(module) + ".shortcut")
            case .mul, .avgPool, .matmul, .crossEntropy, .residualSum:
                // (A traced `residualSum` runs as its add, activation and channel scale.)
                preconditionFailure("InferenceGraph: the nets' traced graphs have no \(op.kind.name)")
            }
            values[ObjectIdentifier(op.output)] = nodes.count
        }
        precondition(value(ObjectIdentifier(y)) == nodes.count, "InferenceGraph: the net's output is not the last op's")
        linearizePointwiseClassifier()
    }

    /// A 1x1 conv with bias on a [C, 1, 1] map whose only consumer is a flattening, at the end
    /// of the graph, as a flattening followed by a linear layer (weight registered [out, in]
    /// under the conv's weight name): what the reference exports for MobileNetV2.
    private mutating func linearizePointwiseClassifier() {
        let n = nodes.count
        guard n >= 2, case .flatten = nodes[n - 1].op, nodes[n - 1].inputs == [n - 1],
              case let .conv(w, b?, 1, 0, 1) = nodes[n - 2].op, let weight = tensors[w],
              weight.shape.count == 4, weight.shape[2] == 1, weight.shape[3] == 1,
              shape(of: nodes[n - 2].inputs[0]).dropFirst().allSatisfy({ $0 == 1 }) else { return }
        let conv = nodes[n - 2], input = conv.inputs[0]
        tensors[w] = Tensor(shape: [weight.shape[0], weight.shape[1]], values: weight.values)
        nodes[n - 2] = Node(op: .flatten, inputs: [input], name: "flatten", shape: [shape(of: input).reduce(1, *)])
        nodes[n - 1] = Node(op: .linear(weight: w, bias: b), inputs: [n - 1], name: conv.name, shape: [weight.shape[0]])
    }
}

extension InferenceGraph {
    /// Runs the graph on `x` [N, C, H, W] with the engine's own ops, as `logits(x, training:
    /// false)` would: the check that a graph (folded or not) computes what its net computes.
    /// - Parameter observe: called with every value as it is computed (0: the input, `i + 1`:
    ///   node `i`'s output), e.g. to calibrate activation ranges.
    public func run(_ x: Tensor, observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        Tape.withoutGradients {
            observe?(0, x)
            var values = [x]
            for node in nodes {
                let y = apply(node, values)
                observe?(values.count, y)
                values.append(y)
            }
            return values[output]
        }
    }

    /// `node`'s op on the values computed so far (`values[0]` the input, `values[i + 1]` node i's
    /// output), with the graph's tensors. `activation`: a ReLU or ReLU6 applied in the op's own
    /// pass, for a batch norm or a sum whose only reader it is (`InferenceEngine`); other ops take
    /// none.
    func apply(_ node: Node, _ values: [Tensor], activation: Activation = .identity) -> Tensor {
        func t(_ name: String) -> Tensor { tensors[name]! }
        let a = values[node.inputs[0]]
        switch node.op {
        case .batchNorm, .add: break
        default: precondition(activation == .identity, "InferenceGraph.apply: \(node.op.name) applies no activation")
        }
        switch node.op {
        case let .conv(w, b, stride, padding, groups):
            return conv2d(a, weight: t(w), bias: b.map(t), stride: (stride, stride), padding: (padding, padding), groups: groups)
        case let .batchNorm(p, eps):
            return batchNorm2d(a, weight: t(p + ".weight"), bias: t(p + ".bias"), runningMean: t(p + ".running_mean"),
                               runningVar: t(p + ".running_var"), training: false, eps: eps, activation: activation)
        case .relu: return relu(a)
        case .relu6: return relu6(a)
        case .add: return activation == .identity ? add(a, values[node.inputs[1]]) : addActivating(a, values[node.inputs[1]], activation)
        case let .maxPool(k, s, p): return maxPool2d(a, kernel: (k, k), stride: (s, s), padding: (p, p))
        case .globalAvgPool: return globalAvgPool(a)
        case .flatten: return flatten(a)
        case let .linear(w, b): return linear(a, weight: t(w), bias: t(b))
        case let .select(channels): return selectChannels(a, channels)
        }
    }

    /// The graph with every BN that directly follows a conv (and is that conv's only consumer)
    /// folded into the conv, as PyTorch's exporter does in eval mode: `W' = W * s`,
    /// `b' = (b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`, computed in double
    /// precision. The folded conv keeps its name (and gains a bias if it had none); BNs with no
    /// conv before them stay.
    public func foldingBatchNorms() -> InferenceGraph {
        var users = [Int](repeating: 0, count: nodes.count + 1)
        for node in nodes { for i in node.inputs { users[i] += 1 } }
        var folded = InferenceGraph(inputShape: inputShape)
        folded.tensors = tensors
        var remap = Array(0...nodes.count)  // old value -> new value
        for (i, node) in nodes.enumerated() {
            if case let .batchNorm(p, eps) = node.op, node.inputs[0] > 0, users[node.inputs[0]] == 1,
               case let .conv(w, b, stride, padding, groups) = nodes[node.inputs[0] - 1].op {
                let conv = remap[node.inputs[0]]
                let bias = b ?? String(w.dropLast(7)) + ".bias"
                let (weight, shift) = foldedParameters(conv: tensors[w]!, bias: b.map { tensors[$0]! },
                                                       gamma: tensors[p + ".weight"]!, beta: tensors[p + ".bias"]!,
                                                       mean: tensors[p + ".running_mean"]!, variance: tensors[p + ".running_var"]!, eps: eps)
                folded.tensors[w] = weight
                folded.tensors[bias] = shift
                folded.nodes[conv - 1].op = .conv(weight: w, bias: bias, stride: stride, padding: padding, groups: groups)
                remap[i + 1] = conv
                continue
            }
            var n = node
            n.inputs = node.inputs.map { remap[$0] }
            folded.nodes.append(n)
            remap[i + 1] = folded.nodes.count
        }
        // Drop the folded BNs' own tensors.
        let used = Set(folded.nodes.flatMap { n -> [String] in
            switch n.op {
            case let .conv(w, b, _, _, _): return [w] + (b.map { [$0] } ?? [])
            case let .batchNorm(p, _): return ["weight", "bias", "running_mean", "running_var"].map { p + "." + $0 }
            case let .linear(w, b): return [w, b]
            default: return []
            }
        })
        folded.tensors = folded.tensors.filter { used.contains($0.key) }
        return folded
    }
}

private func foldedParameters(conv w: Tensor, bias b: Tensor?, gamma: Tensor, beta: Tensor, mean: Tensor, variance: Tensor,
                              eps: Float) -> (Tensor, Tensor) {
    let out = w.shape[0], row = w.count / out
    let weight = Tensor(uninitialized: w.shape), shift = Tensor(uninitialized: [out])
    for o in 0..<out {
        let s = Double(gamma.data[o]) / (Double(variance.data[o]) + Double(eps)).squareRoot()
        for i in 0..<row { weight.data[o * row + i] = Float(Double(w.data[o * row + i]) * s) }
        shift.data[o] = Float((Double(b?.data[o] ?? 0) - Double(mean.data[o])) * s + Double(beta.data[o]))
    }
    return (weight, shift)
}

extension InferenceGraph {
    /// Multiply-accumulates for one image, counted as PyTorch-OpCounter (thop 0.1.1) counts the
    /// reference nets' layers: a conv `C_out * H_out * W_out * (C_in / groups) * k * k` (bias
    /// free), a linear layer `in * out` (bias free), an affine BN 4 per element; activations,
    /// pools, additions, flattening and channel selection nothing (the reference nets pool with
    /// `F.adaptive_avg_pool2d`, which thop does not see). MFLOPs are `2 * macs / 1e6`.
    public var macs: Int { nodes.indices.reduce(0) { $0 + macs(of: $1) } }

    /// Whether the graph runs on other input sizes than the one it was traced at: the nets that
    /// pool globally before the classifier (VGG-11's classifier reads the flattened map, whose
    /// size follows the input's).
    public var takesOtherInputSizes: Bool { nodes.contains { if case .globalAvgPool = $0.op { return true } else { return false } } }

    /// The multiply-accumulates of node `i` for one image, counted as `macs` counts them.
    public func macs(of i: Int) -> Int {
        let node = nodes[i]
        switch node.op {
        case let .conv(w, _, _, _, _):
            let k = tensors[w]!.shape  // [C_out, C_in / groups, kh, kw]
            return node.shape.reduce(1, *) * k[1] * k[2] * k[3]
        case .batchNorm:
            return 4 * node.shape.reduce(1, *)
        case let .linear(w, _):
            return tensors[w]!.count
        case .relu, .relu6, .add, .maxPool, .globalAvgPool, .flatten, .select:
            return 0
        }
    }
}

extension InferenceGraph.Op {
    /// The op's name, as ONNX calls it where it has one.
    public var name: String {
        switch self {
        case .conv: return "Conv"
        case .batchNorm: return "BatchNormalization"
        case .relu: return "Relu"
        case .relu6: return "Clip"
        case .add: return "Add"
        case .maxPool: return "MaxPool"
        case .globalAvgPool: return "GlobalAveragePool"
        case .flatten: return "Flatten"
        case .linear: return "Gemm"
        case .select: return "Select"
        }
    }
}
