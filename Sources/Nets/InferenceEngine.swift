import Autodiff
import Foundation

/// An inference graph prepared to run many times (`bench infer`'s engine): every convolution is a
/// `FrozenConv2D`, whose transformed or packed kernels are computed once, and a ReLU or ReLU6 that
/// is a convolution's or a residual sum's only reader is applied in that op's output pass (as ONNX
/// Runtime fuses Conv and Relu) instead of as a pass of its own.
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
    /// Per node: the activation a convolution or a sum applies in its own pass (its reader's,
    /// absorbed).
    private let activations: [Activation]
    /// Per node: its work for one image, in multiply-accumulates for convolutions and linear
    /// layers and in elements touched for the others (see `serialWork`).
    private let work: [Int]

    /// Ops with less work than this (for the whole batch) run on the calling thread alone: a
    /// parallel region costs microseconds of hand-off, and an op of a few microseconds gains less
    /// than that from a second thread (`NEURALSCALE_SERIAL_WORK` overrides).
    nonisolated(unsafe) public static var serialWork: Int = {
        if let text = ProcessInfo.processInfo.environment["NEURALSCALE_SERIAL_WORK"], let n = Int(text), n >= 0 { return n }
        return 1 << 20
    }()

    public init(_ graph: InferenceGraph) {
        self.graph = graph
        var readers = [[Int]](repeating: [], count: graph.nodes.count + 1)
        for (i, node) in graph.nodes.enumerated() { for v in node.inputs { readers[v].append(i) } }
        var convs = [FrozenConv2D?](repeating: nil, count: graph.nodes.count)
        var absorbed = [Bool](repeating: false, count: graph.nodes.count)
        var activations = [Activation](repeating: .identity, count: graph.nodes.count)
        for (i, node) in graph.nodes.enumerated() {
            switch node.op {
            case .conv, .add: break
            default: continue
            }
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
            activations[i] = activation
            guard case let .conv(w, b, stride, padding, groups) = node.op else { continue }
            convs[i] = FrozenConv2D(weight: graph.tensors[w]!, bias: b.map { graph.tensors[$0]! }, stride: (stride, stride),
                                    padding: (padding, padding), groups: groups, activation: activation)
        }
        self.convs = convs
        self.absorbed = absorbed
        self.activations = activations
        work = graph.nodes.indices.map { i in
            let node = graph.nodes[i], macs = graph.macs(of: i)
            if case .batchNorm = node.op { return node.shape.reduce(1, *) }
            return macs > 0 ? macs : node.inputs.reduce(node.shape.reduce(1, *)) { $0 + graph.shape(of: $1).reduce(1, *) }
        }
    }

    /// Runs the graph on `x` [N, C, H, W]; `observe` sees every value as `InferenceGraph.run`
    /// reports them (an absorbed activation's value is the output of the op that applied it).
    public func run(_ x: Tensor, observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        Tape.withoutGradients {
            observe?(0, x)
            var values = [x]
            let batch = x.shape[0]
            for (i, node) in graph.nodes.enumerated() {
                let y: Tensor
                if absorbed[i] {
                    y = values[node.inputs[0]]
                } else if work[i] * batch < Self.serialWork {
                    y = Parallel.serially { apply(i, values) }
                } else {
                    y = apply(i, values)
                }
                observe?(values.count, y)
                values.append(y)
            }
            return values[graph.output]
        }
    }

    private func apply(_ i: Int, _ values: [Tensor]) -> Tensor {
        let node = graph.nodes[i]
        if let conv = convs[i] { return conv(values[node.inputs[0]]) }
        if case .add = node.op, activations[i] != .identity {
            return addActivating(values[node.inputs[0]], values[node.inputs[1]], activations[i])
        }
        return graph.apply(node, values)
    }
}
