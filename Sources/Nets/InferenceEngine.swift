import Autodiff
import Foundation

/// An inference graph prepared to run many times (`bench infer`'s engine): every convolution is a
/// `FrozenConv2D`, whose transformed or packed kernels are computed once; a residual sum that is a
/// convolution's only reader is added in that convolution's output pass, and a ReLU or ReLU6 that
/// is a convolution's or a sum's only reader is applied there too (as ONNX Runtime fuses Conv, Add
/// and Relu), instead of as passes of their own. A batch norm of a convolution's output (or of the
/// sum it added), which folding cannot put into a convolution's weights (a pre-activation block's),
/// is written by that output pass too, as a second output, where the convolution's path can.
///
/// The graph's tensors must not change while the engine is in use: build it from a graph with
/// batch norms folded (`foldingBatchNorms`), whose conv weights are its own.
public final class InferenceEngine {
    public let graph: InferenceGraph
    /// Per node: its frozen convolution, or nil for other ops.
    private let convs: [FrozenConv2D?]
    /// Per node: the value it passes on unchanged when an op before it has done its work (a
    /// convolution that added the residual and applied the activation), else nil.
    private let forwarded: [Int?]
    /// Per node: for a convolution that absorbs the sum after it, the value it adds (the sum's
    /// other operand).
    private let residuals: [Int?]
    /// Per node: the activation a convolution, a sum or a batch norm applies in its own pass (its
    /// reader's, absorbed).
    private let activations: [Activation]
    /// Per node: its work for one image, in multiply-accumulates for dense convolutions and linear
    /// layers, and 16 per element read or written for the others (see `serialWork`).
    private let work: [Int]
    /// Per node: the values no later node reads, dropped once it has run, so that their buffers
    /// go back to the pool while still in cache and the next op of that size reuses them (a
    /// batch's activations would otherwise all stay allocated to the end: ResNet-50's 260 MB at
    /// batch 32, each op writing memory no other op has touched for a whole run).
    private let dropAfter: [[Int]]

    /// Per node: for a convolution whose output a pre-activation block's batch norm reads, that
    /// batch norm's node, and the norm with its activation, computed in the convolution's output
    /// pass where the convolution's path can (`FrozenConv2D`'s `normalizing`).
    private let normalizations: [(node: Int, norm: OutputNormalization)?]
    /// How many batch norms the convolutions before them compute in their output passes.
    public var outputPassNormalizations: Int { normalizations.lazy.filter { $0 != nil }.count }

    /// Ops with less work than this (for the whole batch) run on the calling thread alone: a
    /// parallel region costs a microsecond or more of hand-off, and an op of a few microseconds
    /// gains less than that from a second thread (`NEURALSCALE_SERIAL_WORK` overrides). 128 K
    /// multiply-accumulates (8 K elements moved): measured against 1 M, 64 K and 30 K at batch 1,
    /// alternating, when both threads run freely MobileNetV2 x1.0 0.66 -> 0.45 ms, ResNet-50
    /// x0.25 0.19 -> 0.175 ms, VGG-11 x0.25 0.148 -> 0.14 ms (smaller thresholds cost MobileNetV2
    /// x0.25 more than they gain elsewhere); when the machine preempts one of the two, every
    /// threshold is about as slow.
    nonisolated(unsafe) public static var serialWork: Int = {
        if let text = ProcessInfo.processInfo.environment["NEURALSCALE_SERIAL_WORK"], let n = Int(text), n >= 0 { return n }
        return 1 << 17
    }()

    /// - Parameter normalizingInOutputPasses: compute a batch norm that reads a convolution's output
    ///   (a pre-activation block's) in that convolution's output pass where it can (default); false
    ///   runs it as a pass of its own. The results are the same bits either way.
    public init(_ graph: InferenceGraph, normalizingInOutputPasses: Bool = true) {
        self.graph = graph
        let count = graph.nodes.count
        var readers = [[Int]](repeating: [], count: count + 1)
        for (i, node) in graph.nodes.enumerated() { for v in node.inputs { readers[v].append(i) } }
        /// The node that alone reads value `v` (not the graph's output), if any.
        func soleReader(_ v: Int) -> Int? { readers[v].count == 1 && v != graph.output ? readers[v][0] : nil }
        var forwarded = [Int?](repeating: nil, count: count)
        var residuals = [Int?](repeating: nil, count: count)
        var activations = [Activation](repeating: .identity, count: count)
        for (i, node) in graph.nodes.enumerated() where forwarded[i] == nil {
            var last = i  // the node whose value the fused op's output stands for
            switch node.op {
            case .conv:
                if let k = soleReader(i + 1), case .add = graph.nodes[k].op, graph.nodes[k].inputs.count == 2,
                   let other = graph.nodes[k].inputs.first(where: { $0 != i + 1 }), other < i + 1 {
                    residuals[i] = other
                    forwarded[k] = i + 1
                    last = k
                }
            case .add, .batchNorm: break
            default: continue
            }
            if let reader = soleReader(last + 1) {
                switch graph.nodes[reader].op {
                case .relu: activations[i] = .relu
                case .relu6: activations[i] = .relu6
                default: break
                }
                if activations[i] != .identity { forwarded[reader] = i + 1 }
            }
        }
        // A batch norm that reads a convolution's output (the sum a pre-activation block ends
        // with, read by the next block's batch norm and often its identity shortcut too), which
        // folding could not put into a convolution's weights: computed in the convolution's
        // output pass, while the output is in registers or cache.
        var normalizations = [(node: Int, norm: OutputNormalization)?](repeating: nil, count: count)
        for (i, node) in graph.nodes.enumerated() where normalizingInOutputPasses && forwarded[i] == nil {
            guard case .conv = node.op else { continue }
            // The value the output pass stands for: the convolution's, or that of a sum or an
            // activation it absorbed.
            let value = (graph.nodes.indices.last { forwarded[$0] == i + 1 } ?? i) + 1
            let norms = readers[value].filter { j in
                if case .batchNorm = graph.nodes[j].op { return forwarded[j] == nil && graph.nodes[j].inputs == [value] }
                return false
            }
            guard value != graph.output, norms.count == 1, let b = norms.first,
                  case let .batchNorm(p, eps) = graph.nodes[b].op else { continue }
            func t(_ name: String) -> Tensor { graph.tensors[p + "." + name]! }
            let norm = OutputNormalization(weight: t("weight"), bias: t("bias"), runningMean: t("running_mean"),
                                           runningVar: t("running_var"), eps: eps, activation: activations[b])
            normalizations[i] = (b, norm)
        }
        self.normalizations = normalizations
        // Weights that fit in the caches stay there from one run to the next.
        let weightBytes = graph.nodes.reduce(0) { total, node in
            guard case let .conv(w, _, _, _, _) = node.op else { return total }
            return total + graph.tensors[w]!.count * MemoryLayout<Float>.size
        }
        let cached = weightBytes <= Conv2DTuning.cachedWeightBytes
        convs = graph.nodes.indices.map { i in
            guard case let .conv(w, b, stride, padding, groups) = graph.nodes[i].op else { return nil }
            return FrozenConv2D(weight: graph.tensors[w]!, bias: b.map { graph.tensors[$0]! }, stride: (stride, stride),
                                padding: (padding, padding), groups: groups, activation: activations[i], weightsCached: cached)
        }
        var lastReader = [Int](repeating: -1, count: count + 1)
        for (i, node) in graph.nodes.enumerated() {
            for v in node.inputs + [residuals[i], forwarded[i]].compactMap({ $0 }) { lastReader[v] = i }
        }
        var dropAfter = [[Int]](repeating: [], count: count)
        for (v, i) in lastReader.enumerated() where i >= 0 && v != graph.output { dropAfter[i].append(v) }
        self.dropAfter = dropAfter
        self.forwarded = forwarded
        self.residuals = residuals
        self.activations = activations
        work = graph.nodes.indices.map { i in
            let node = graph.nodes[i]
            // Elements moved weigh as a 16th of a dense multiply-accumulate does not: a depthwise
            // convolution or an elementwise pass is bound by memory.
            let elements = 16 * node.inputs.reduce(node.shape.reduce(1, *)) { $0 + graph.shape(of: $1).reduce(1, *) }
            switch node.op {
            case let .conv(_, _, _, _, groups) where groups > 1: return max(graph.macs(of: i), elements)
            case .conv, .linear: return graph.macs(of: i)
            default: return elements
            }
        }
    }

    /// For a batch norm that the convolution before it computes in its output pass at batch
    /// `batch`, that convolution's node; else nil.
    public func outputPassNormalization(node i: Int, batch: Int) -> Int? {
        guard let c = normalizations.firstIndex(where: { $0?.node == i }), let conv = convs[c] else { return nil }
        let shape = [batch] + graph.shape(of: graph.nodes[c].inputs[0])
        return conv.normalizesOutput(for: shape, adding: residuals[c] != nil) ? c : nil
    }

    /// The algorithm node `i`'s convolution runs on a batch of `batch` images (nil for other ops).
    public func convolutionAlgorithm(node i: Int, batch: Int) -> Conv2DAlgorithm? {
        guard let conv = convs[i] else { return nil }
        return conv.algorithm(for: [batch] + graph.shape(of: graph.nodes[i].inputs[0]))
    }

    /// What a dropped value's slot holds.
    private static let dropped = Tensor(uninitialized: [0])

    /// Runs the graph on `x` [N, C, H, W]; `observe` sees every value as `InferenceGraph.run`
    /// reports them (a sum or an activation done by an op before it has that op's output as its value).
    public func run(_ x: Tensor, observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        Tape.withoutGradients {
            observe?(0, x)
            var values = [x]
            // Per batch norm: its output, where the convolution before it wrote it.
            var normalized = [Tensor?](repeating: nil, count: graph.nodes.count)
            let batch = x.shape[0]
            for i in graph.nodes.indices {
                let y: Tensor
                if let v = forwarded[i] {
                    y = values[v]
                } else if let z = normalized[i] {
                    y = z
                    normalized[i] = nil
                } else if work[i] * batch < Self.serialWork {
                    y = Parallel.serially { apply(i, values, normalized: &normalized) }
                } else {
                    y = apply(i, values, normalized: &normalized)
                }
                observe?(values.count, y)
                values.append(y)
                for v in dropAfter[i] { values[v] = Self.dropped }
            }
            return values[graph.output]
        }
    }

    /// Runs node `i`; a convolution that computes a batch norm of its output leaves it in
    /// `normalized` at the batch norm's index.
    private func apply(_ i: Int, _ values: [Tensor], normalized: inout [Tensor?]) -> Tensor {
        let node = graph.nodes[i]
        if let conv = convs[i] {
            let x = values[node.inputs[0]], residual = residuals[i].map { values[$0] }
            guard let (b, norm) = normalizations[i] else { return conv(x, adding: residual) }
            let (y, z) = conv(x, adding: residual, normalizing: norm)
            normalized[b] = z
            return y
        }
        // A sum or a batch norm (a pre-activation block's, which no convolution absorbs) applies
        // its sole-reader ReLU in the same pass.
        return graph.apply(node, values, activation: activations[i])
    }
}
