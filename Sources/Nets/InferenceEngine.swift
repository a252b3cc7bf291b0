import Autodiff

/// An inference graph prepared to run many times (`bench infer`'s engine): every convolution is a
/// `FrozenConv2D`, whose transformed kernels are computed once, and a ReLU or ReLU6 that is a
/// convolution's only reader is applied in that convolution's output pass (as ONNX Runtime fuses
/// Conv and Relu) instead of as a pass of its own.
///
/// The graph's tensors must not change while the engine is in use: build it from a graph with
/// batch norms folded (`foldingBatchNorms`), whose conv weights are its own.
public final class InferenceEngine {
    public let graph: InferenceGraph
    /// Per node: its frozen convolution, or nil for other ops.
    private let convs: [FrozenConv2D?]
    /// Per node: an activation already applied by the convolution it reads, so it passes its
    /// input on.
    private let absorbed: [Bool]

    public init(_ graph: InferenceGraph) {
        self.graph = graph
        var readers = [[Int]](repeating: [], count: graph.nodes.count + 1)
        for (i, node) in graph.nodes.enumerated() { for v in node.inputs { readers[v].append(i) } }
        var convs = [FrozenConv2D?](repeating: nil, count: graph.nodes.count)
        var absorbed = [Bool](repeating: false, count: graph.nodes.count)
        for (i, node) in graph.nodes.enumerated() {
            guard case let .conv(w, b, stride, padding, groups) = node.op else { continue }
            var activation = Activation.identity
            if readers[i + 1].count == 1, i + 1 != graph.output {
                let reader = readers[i + 1][0]
                switch graph.nodes[reader].op {
                case .relu: activation = .relu
                case .relu6: activation = .relu6
                default: break
                }
                if activation != .identity { absorbed[reader] = true }
            }
            convs[i] = FrozenConv2D(weight: graph.tensors[w]!, bias: b.map { graph.tensors[$0]! }, stride: (stride, stride),
                                    padding: (padding, padding), groups: groups, activation: activation)
        }
        self.convs = convs
        self.absorbed = absorbed
    }

    /// Runs the graph on `x` [N, C, H, W]; `observe` sees every value as `InferenceGraph.run`
    /// reports them (an absorbed activation's value is its convolution's output).
    public func run(_ x: Tensor, observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        Tape.withoutGradients {
            observe?(0, x)
            var values = [x]
            for (i, node) in graph.nodes.enumerated() {
                let y: Tensor
                if let conv = convs[i] {
                    y = conv(values[node.inputs[0]])
                } else if absorbed[i] {
                    y = values[node.inputs[0]]
                } else {
                    y = graph.apply(node, values)
                }
                observe?(values.count, y)
                values.append(y)
            }
            return values[graph.output]
        }
    }
}
