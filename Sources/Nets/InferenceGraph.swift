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

/// Builds an `InferenceGraph` from a net's own layers; each net's `inferenceGraph` mirrors its
/// `logits`. Names come from the net's state, so they are the checkpoint's names.
final class GraphBuilder {
    private(set) var graph: InferenceGraph
    private let names: [ObjectIdentifier: String]

    init(_ net: Network) {
        let d = net.netDescription
        graph = InferenceGraph(inputShape: [d.inChannels, d.imageSize, d.imageSize])
        var names: [ObjectIdentifier: String] = [:]
        for t in net.state where t.kind != .gate {
            names[ObjectIdentifier(t.tensor)] = t.name
            graph.tensors[t.name] = t.tensor
        }
        self.names = names
    }

    private func name(_ t: Tensor) -> String {
        guard let n = names[ObjectIdentifier(t)] else { preconditionFailure("GraphBuilder: a layer's tensor is not in the net's state") }
        return n
    }

    /// `weight` is `<module>.weight`: the module's name.
    private func module(_ weight: Tensor) -> String {
        let n = name(weight)
        return n.hasSuffix(".weight") ? String(n.dropLast(7)) : n
    }

    private func add(_ op: InferenceGraph.Op, _ inputs: [Int], name: String, shape: [Int]) -> Int {
        graph.nodes.append(.init(op: op, inputs: inputs, name: name, shape: shape))
        return graph.nodes.count
    }

    func conv(_ x: Int, _ c: Conv2d) -> Int {
        let s = graph.shape(of: x), k = c.weight.shape[2]
        let side = { (n: Int) in (n + 2 * c.padding - k) / c.stride + 1 }
        return add(.conv(weight: name(c.weight), bias: c.bias.map(name), stride: c.stride, padding: c.padding, groups: c.groups),
                   [x], name: module(c.weight), shape: [c.outChannels, side(s[1]), side(s[2])])
    }

    func batchNorm(_ x: Int, _ bn: BatchNorm2d, activation: Activation = .identity) -> Int {
        let y = add(.batchNorm(prefix: module(bn.weight), eps: bn.eps), [x], name: module(bn.weight), shape: graph.shape(of: x))
        return activate(y, activation, name: module(bn.weight))
    }

    func activate(_ x: Int, _ activation: Activation, name: String) -> Int {
        switch activation {
        case .identity: return x
        case .relu: return add(.relu, [x], name: name, shape: graph.shape(of: x))
        case .relu6: return add(.relu6, [x], name: name, shape: graph.shape(of: x))
        }
    }

    func add(_ a: Int, _ b: Int, name: String) -> Int { add(.add, [a, b], name: name, shape: graph.shape(of: a)) }

    func maxPool(_ x: Int, kernel: Int, stride: Int, padding: Int = 0, name: String) -> Int {
        let s = graph.shape(of: x)
        let side = { (n: Int) in (n + 2 * padding - kernel) / stride + 1 }
        return add(.maxPool(kernel: kernel, stride: stride, padding: padding), [x], name: name, shape: [s[0], side(s[1]), side(s[2])])
    }

    func globalAvgPool(_ x: Int, name: String) -> Int {
        add(.globalAvgPool, [x], name: name, shape: [graph.shape(of: x)[0], 1, 1])
    }

    func flatten(_ x: Int, name: String) -> Int {
        add(.flatten, [x], name: name, shape: [graph.shape(of: x).reduce(1, *)])
    }

    func linear(_ x: Int, _ l: Linear) -> Int {
        add(.linear(weight: name(l.weight), bias: name(l.bias)), [x], name: module(l.weight), shape: [l.weight.shape[0]])
    }

    /// A 1x1 conv with bias on flattened [C] features, as a linear layer; its weight is
    /// registered under its own name with shape [out, in].
    func linear(_ x: Int, pointwise c: Conv2d) -> Int {
        precondition(c.weight.shape[2] == 1 && c.weight.shape[3] == 1 && c.groups == 1 && c.bias != nil,
                     "GraphBuilder: only a 1x1 conv with bias is a linear layer")
        let w = name(c.weight)
        graph.tensors[w] = Tensor(shape: [c.weight.shape[0], c.weight.shape[1]], values: c.weight.values)
        return add(.linear(weight: w, bias: name(c.bias!)), [x], name: module(c.weight), shape: [c.outChannels])
    }

    func select(_ x: Int, _ channels: [Int], name: String) -> Int {
        let s = graph.shape(of: x)
        return add(.select(channels), [x], name: name, shape: [channels.count] + s.dropFirst())
    }
}

extension InferenceGraph {
    /// Runs the graph on `x` [N, C, H, W] with the engine's own ops, as `logits(x, training:
    /// false)` would: the check that a graph (folded or not) computes what its net computes.
    public func run(_ x: Tensor) -> Tensor {
        Tape.withoutGradients {
            var values = [x]
            func t(_ name: String) -> Tensor { tensors[name]! }
            for node in nodes {
                let a = values[node.inputs[0]]
                let y: Tensor
                switch node.op {
                case let .conv(w, b, stride, padding, groups):
                    y = conv2d(a, weight: t(w), bias: b.map(t), stride: (stride, stride), padding: (padding, padding), groups: groups)
                case let .batchNorm(p, eps):
                    y = batchNorm2d(a, weight: t(p + ".weight"), bias: t(p + ".bias"), runningMean: t(p + ".running_mean"),
                                    runningVar: t(p + ".running_var"), training: false, eps: eps)
                case .relu: y = relu(a)
                case .relu6: y = relu6(a)
                case .add: y = add(a, values[node.inputs[1]])
                case let .maxPool(k, s, p): y = maxPool2d(a, kernel: (k, k), stride: (s, s), padding: (p, p))
                case .globalAvgPool: y = globalAvgPool(a)
                case .flatten: y = flatten(a)
                case let .linear(w, b): y = linear(a, weight: t(w), bias: t(b))
                case let .select(channels): y = selectChannels(a, channels)
                }
                values.append(y)
            }
            return values[output]
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
    public var macs: Int {
        nodes.reduce(0) { total, node in
            switch node.op {
            case let .conv(w, _, _, _, _):
                let k = tensors[w]!.shape  // [C_out, C_in / groups, kh, kw]
                return total + node.shape.reduce(1, *) * k[1] * k[2] * k[3]
            case .batchNorm:
                return total + 4 * node.shape.reduce(1, *)
            case let .linear(w, _):
                return total + tensors[w]!.count
            case .relu, .relu6, .add, .maxPool, .globalAvgPool, .flatten, .select:
                return total
            }
        }
    }
}
