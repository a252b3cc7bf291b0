import Autodiff
import Foundation
import Nets
import ONNX
import Pruning

/// How activation ranges are taken from the calibration images.
public enum CalibrationMethod: String, CaseIterable, Sendable {
    /// The smallest and largest value seen.
    case minmax
    /// The `p`-th and `(100 - p)`-th percentiles of the values seen (clips rare outliers).
    case percentile
    /// The clipping threshold whose quantized histogram is closest to the values' own in KL
    /// divergence (TensorRT's entropy calibration), from a 2048-bin histogram, for the
    /// non-negative activations (ReLU's outputs); the others keep their min-max ranges.
    case entropy
}

/// The integer type of quantized activations.
public enum ActivationType: String, CaseIterable, Sendable {
    /// Asymmetric: zero point in 0...255 (what ONNX Runtime's CPU kernels run fastest).
    case uint8
    /// Symmetric: zero point 0.
    case int8
}

/// Per-tensor activation ranges of a folded inference graph, from running the Swift engine on
/// calibration images: one range per graph value (0: the input, `i + 1`: node `i`'s output).
public struct ActivationRanges: Sendable {
    public var lower: [Float]
    public var upper: [Float]

    /// Runs `graph` on `images` [N, C, H, W] in batches of `batchSize` and keeps, per value, the
    /// minimum and maximum (`.minmax`) or the `percentile`-th and `(100 - percentile)`-th
    /// percentiles of its elements (`.percentile`, from a 4096-bin histogram over the min-max
    /// range, a second pass). Deterministic: the same images give the same ranges.
    /// `.entropy`: per non-negative value (other than the input and the ReLU6 outputs that reach
    /// 6, which keep their min-max ranges), a 2048-bin histogram over [0, max] of its non-zero elements (a
    /// second pass), then the threshold `T` (a bin edge) whose histogram, clipped at `T` and
    /// merged into as many bins as the activation type has levels (256 for uint8, 128 for int8),
    /// diverges least from the clipped histogram; the range is [0, T].
    public static func calibrate(_ graph: InferenceGraph, images: Tensor, batchSize: Int = 64,
                                 method: CalibrationMethod, percentile: Double = 99.99,
                                 activations: ActivationType = .uint8) -> ActivationRanges {
        let count = graph.nodes.count + 1
        var lower = [Float](repeating: .infinity, count: count), upper = [Float](repeating: -.infinity, count: count)
        func batches(_ body: (Tensor) -> Void) {
            let n = images.shape[0], image = images.count / max(n, 1)
            var start = 0
            while start < n {
                let m = min(batchSize, n - start)
                let x = Tensor(uninitialized: [m] + Array(images.shape.dropFirst()))
                x.data.update(from: images.data + start * image, count: m * image)
                body(x)
                start += m
            }
        }
        batches { x in
            _ = graph.run(x) { v, t in
                var lo = lower[v], hi = upper[v]
                for i in 0..<t.count { lo = min(lo, t.data[i]); hi = max(hi, t.data[i]) }
                lower[v] = lo
                upper[v] = hi
            }
        }
        if method == .percentile {
            let bins = 4096
            var histograms = [[Int]](repeating: [Int](repeating: 0, count: bins), count: count)
            var totals = [Int](repeating: 0, count: count)
            batches { x in
                _ = graph.run(x) { v, t in
                    let lo = lower[v], width = (upper[v] - lo) / Float(bins)
                    guard width > 0 else { return }
                    for i in 0..<t.count {
                        histograms[v][min(bins - 1, max(0, Int((t.data[i] - lo) / width)))] += 1
                    }
                    totals[v] += t.count
                }
            }
            for v in 0..<count where totals[v] > 0 {
                let width = (upper[v] - lower[v]) / Float(bins)
                let low = Double(totals[v]) * (100 - percentile) / 100, high = Double(totals[v]) * percentile / 100
                var seen = 0, first: Int?, last = bins - 1
                for (b, c) in histograms[v].enumerated() {
                    seen += c
                    if first == nil, Double(seen) > low { first = b }
                    if Double(seen) >= high { last = b; break }
                }
                let lo = lower[v] + Float(first ?? 0) * width, hi = lower[v] + Float(last + 1) * width
                lower[v] = lo
                upper[v] = min(upper[v], hi)
            }
        }
        if method == .entropy {
            let bins = 2048
            var histograms = [[Double]](repeating: [Double](repeating: 0, count: bins), count: count)
            let reach = (0..<count).map { max(abs(lower[$0]), abs(upper[$0])) }
            batches { x in
                _ = graph.run(x) { v, t in
                    let width = reach[v] / Float(bins)
                    guard width > 0 else { return }
                    histograms[v].withUnsafeMutableBufferPointer { h in
                        // Exact zeros (ReLU's) stay exact at any threshold: they are left out,
                        // or their spike in the first bin would decide the divergence.
                        for i in 0..<t.count where t.data[i] != 0 { h[min(bins - 1, Int(abs(t.data[i]) / width))] += 1 }
                    }
                }
            }
            // Only non-negative values are clipped, and not all: the input keeps its min-max
            // range (its histogram is the data's: Fashion-MNIST's background is one value, and
            // clipping it clips the image), so do signed values (a symmetric threshold on |x|
            // clips the longer side of an asymmetric range), and so do ReLU6 outputs that reach 6,
            // whose spike of saturated values carries the signal (MobileNetV2 x0.5 on
            // Fashion-MNIST lost 23 points with them clipped, 0.15 without).
            let relu6 = Set(graph.nodes.indices.filter { if case .relu6 = graph.nodes[$0].op { return true } else { return false } }.map { $0 + 1 })
            for v in 1..<count where reach[v] > 0 && lower[v] >= 0 && !(relu6.contains(v) && upper[v] >= 6) {
                let levels = activations == .int8 ? 128 : 256
                let threshold = Float(entropyThreshold(histograms[v], levels: levels)) * reach[v] / Float(bins)
                upper[v] = min(upper[v], threshold)
            }
        }
        return ActivationRanges(lower: lower, upper: upper)
    }

    /// The number of histogram bins `i` (at least `levels`) that minimizes KL(P || Q), with P the
    /// histogram's first `i` bins plus everything beyond added to the last, and Q those `i` bins
    /// merged into `levels` groups, each group's count spread over its non-empty bins (both
    /// normalized and smoothed: every empty bin gets 1e-4 of the mass, taken evenly from the
    /// others). Candidates are every `step`-th bin count (the whole histogram included), about
    /// 128 of them.
    public static func entropyThreshold(_ histogram: [Double], levels: Int) -> Int {
        let bins = histogram.count
        guard bins > levels else { return bins }
        var suffix = [Double](repeating: 0, count: bins + 1)  // suffix[i] = sum of bins i...
        for i in stride(from: bins - 1, through: 0, by: -1) { suffix[i] = suffix[i + 1] + histogram[i] }
        let step = max(1, (bins - levels) / 128)
        var candidates = Array(stride(from: levels, through: bins, by: step))
        if candidates.last != bins { candidates.append(bins) }
        var best = bins, bestDivergence = Double.infinity
        var p = [Double](repeating: 0, count: bins), q = [Double](repeating: 0, count: bins)
        histogram.withUnsafeBufferPointer { h in
            p.withUnsafeMutableBufferPointer { p in
                q.withUnsafeMutableBufferPointer { q in
                    for i in candidates {
                        for k in 0..<i { p[k] = h[k] }
                        p[i - 1] += suffix[i]
                        for j in 0..<levels {
                            let start = j * i / levels, end = (j + 1) * i / levels
                            var total = 0.0, used = 0
                            for k in start..<end where h[k] != 0 {
                                total += h[k]
                                used += 1
                            }
                            for k in start..<end { q[k] = h[k] != 0 ? total / Double(used) : 0 }
                        }
                        let d = divergence(p, q, count: i)
                        if d < bestDivergence {
                            bestDivergence = d
                            best = i
                        }
                    }
                }
            }
        }
        return best
    }

    /// KL(p || q) over the first `count` entries, both normalized and smoothed.
    private static func divergence(_ p: UnsafeMutableBufferPointer<Double>, _ q: UnsafeMutableBufferPointer<Double>, count: Int) -> Double {
        let eps = 1e-4
        /// (total, empty bins, the mass taken from each non-empty normalized bin)
        func smoothing(_ x: UnsafeMutableBufferPointer<Double>) -> (Double, Double)? {
            var total = 0.0, zeros = 0
            for k in 0..<count {
                total += x[k]
                if x[k] == 0 { zeros += 1 }
            }
            guard total > 0, zeros < count else { return nil }
            return (total, eps * Double(zeros) / Double(count - zeros))
        }
        guard let (tp, takeP) = smoothing(p), let (tq, takeQ) = smoothing(q) else { return .infinity }
        var d = 0.0
        for k in 0..<count {
            let a = p[k] == 0 ? eps : p[k] / tp - takeP, b = q[k] == 0 ? eps : q[k] / tq - takeQ
            if a > 0 && b > 0 { d += a * log(a / b) }
        }
        return d
    }

    /// Scale and zero point of value `v`; the range always includes 0 (so zero padding and
    /// ReLU's zeros are exact).
    func quantization(_ v: Int, _ type: ActivationType) -> (scale: Float, zeroPoint: Int32) {
        let lo = min(lower[v], 0), hi = max(upper[v], 0)
        switch type {
        case .uint8:
            let scale = max((hi - lo) / 255, 1e-8)
            return (scale, Int32(max(0, min(255, (-lo / scale).rounded()))))
        case .int8:
            return (max(max(-lo, hi) / 127, 1e-8), 0)
        }
    }
}

/// What `QDQExport.model` quantized.
public struct QuantizationSummary: Codable, Sendable {
    /// Convs and linear layers with int8 weights, by module name.
    public var quantizedLayers: [String]
    /// Convs and linear layers left in float (asked for with `keepFloat`).
    public var floatLayers: [String]
    /// The weights' bits: 7 (values in -63...63, `QDQExport.defaultWeightBits`) or 8 (-127...127).
    public var weightBits: Int
}

/// The net's eval graph (BN folded) as an int8 QDQ ONNX model, in the pattern ONNX Runtime fuses
/// into integer kernels: every activation is quantized per tensor after the op that makes it
/// (`QuantizeLinear`) and dequantized once for each op that reads it (`DequantizeLinear` feeding
/// one node); conv and linear weights are symmetric int8 per output channel (`axis=0`), biases
/// int32 with scale `s_x * s_w[c]` and zero point 0; a ReLU or Clip right after a conv sits
/// between the conv and its `QuantizeLinear`, where ONNX Runtime absorbs it. Every conv
/// attribute is written explicitly. The model's output, the logits, stays float.
public enum QDQExport {
    /// The weights' bits unless asked otherwise: 7, ONNX Runtime's "reduce range". On x86 CPUs
    /// without VNNI (AVX2, or AVX-512 without it) its U8S8 integer kernels multiply with
    /// VPMADDUBSW, whose 16-bit sums of two products saturate past 32767: with 8-bit weights
    /// (2 x 255 x 127 = 64770) a conv reading a signed activation (a uint8 zero point well above
    /// 0) loses whole quantization steps. A random MobileNetV2's logits, cosine distance from
    /// float's 0.29 with 8-bit weights on an AMD EPYC Zen 3 (the same model without the fused
    /// kernels: 0.005), 0.004 with 7 bits (2 x 255 x 63 = 32130 fits). VNNI and ARM add into 32
    /// bits: 8 bits there (`weightBits: 8`, `quantize --weight-bits 8`) keep a bit more precision.
    public static let defaultWeightBits = 7

    /// The weight bits `QDQExport.model` takes.
    public static let weightBitChoices = 7...8

    /// - Parameters:
    ///   - ranges: from `ActivationRanges.calibrate` on `net.inferenceGraph.foldingBatchNorms()`
    ///     (a gated net: of its surgery net).
    ///   - keepFloat: module names of convs and linear layers to leave in float.
    ///   - weightBits: 7 or 8 (`defaultWeightBits`).
    public static func model(_ net: Network, ranges: ActivationRanges, activations: ActivationType = .uint8,
                             keepFloat: Set<String> = [], weightBits: Int = defaultWeightBits) throws
        -> (model: Onnx_ModelProto, summary: QuantizationSummary) {
        let plain = net.isGated ? try Surgery.prune(net) : net
        return try model(plain.inferenceGraph.foldingBatchNorms(), net: plain.netDescription, ranges: ranges,
                         activations: activations, keepFloat: keepFloat, weightBits: weightBits)
    }

    /// The same from a net's folded inference graph (`graph`) and description (`d`), for a
    /// caller that already traced it (calibration, or `--keep-fp32 auto`'s many exports).
    public static func model(_ graph: InferenceGraph, net d: NetDescription, ranges: ActivationRanges,
                             activations: ActivationType = .uint8,
                             keepFloat: Set<String> = [], weightBits: Int = defaultWeightBits) throws
        -> (model: Onnx_ModelProto, summary: QuantizationSummary) {
        guard weightBitChoices.contains(weightBits) else {
            throw ExportError("weights of \(weightBits) bits: 7 or 8 only")
        }
        guard ranges.lower.count == graph.nodes.count + 1 else {
            throw ExportError("the activation ranges are of another graph (\(ranges.lower.count) values, the graph has \(graph.nodes.count + 1))")
        }
        let output = graph.nodes.count
        // A ReLU/Clip that is the only reader of a conv's output runs between the conv and the
        // quantization of its own output.
        var readers = [Int](repeating: 0, count: output + 1)
        for node in graph.nodes { for i in node.inputs { readers[i] += 1 } }
        var absorbedBy: [Int: Int] = [:]  // conv output value -> the node index of the activation absorbed
        for (j, node) in graph.nodes.enumerated() {
            switch node.op {
            case .relu, .relu6:
                let producer = node.inputs[0] - 1
                if producer >= 0, readers[node.inputs[0]] == 1, case .conv = graph.nodes[producer].op { absorbedBy[node.inputs[0]] = j }
            default: break
            }
        }
        let absorbed = Set(absorbedBy.values)
        var g = Onnx_GraphProto()
        g.name = d.architecture.rawValue + "_int8"
        g.input = [valueInfo("input", ["batch", d.inChannels, d.imageSize, d.imageSize])]
        g.output = [valueInfo("logits", ["batch", d.classes])]
        var initializers: [Onnx_TensorProto] = []
        var floats: [String: Tensor] = [:]
        var summary = QuantizationSummary(quantizedLayers: [], floatLayers: [], weightBits: weightBits)
        // Nodes are named `<layer>/<op>` (made unique), as in the fp32 export, so that ONNX
        // Runtime's profile and optimized graph name the layer each kernel belongs to.
        var layer = "input", nodeNames: [String: Int] = [:]
        func node(_ op: String, _ inputs: [String], _ out: String, _ attributes: [Onnx_AttributeProto] = []) {
            var n = Onnx_NodeProto()
            n.opType = op
            n.input = inputs
            n.output = [out]
            n.attribute = attributes
            let base = layer + "/" + op, k = nodeNames[base, default: 0]
            nodeNames[base] = k + 1
            n.name = k == 0 ? base : "\(base)_\(k)"
            g.node.append(n)
        }
        // Float name of each value, and whether it is quantized (everything but the logits and
        // the conv outputs an absorbed activation reads).
        func floatName(_ v: Int) -> String { v == 0 ? "input" : v == output ? "logits" : "v\(v)" }
        // The logits stay float, and so does a conv output its absorbed activation reads.
        func isQuantized(_ v: Int) -> Bool { v != output && absorbedBy[v] == nil }
        func quantParams(_ v: Int) -> (scale: String, zeroPoint: String, s: Float) {
            let (s, z) = ranges.quantization(v, activations)
            let scale = "v\(v)_scale", zp = "v\(v)_zero_point"
            initializers.append(scalarFloat(scale, s))
            initializers.append(activations == .uint8 ? scalarUInt8(zp, UInt8(z)) : scalarInt8(zp, Int8(z)))
            return (scale, zp, s)
        }
        var params: [Int: (scale: String, zeroPoint: String, s: Float)] = [:]
        func quantize(_ v: Int) {
            let p = quantParams(v)
            params[v] = p
            node("QuantizeLinear", [floatName(v), p.scale, p.zeroPoint], floatName(v) + "_q")
        }
        var dqCount = 0
        /// The float input of a node reading value `v`: its own DequantizeLinear when `v` is
        /// quantized. `quantized`: the node has integer weights and needs its input quantized
        /// (a value left in float, the input or a float layer's output, is quantized here).
        func read(_ v: Int, quantized: Bool = false) -> String {
            if params[v] == nil && quantized { quantize(v) }
            guard let p = params[v] else { return floatName(v) }
            dqCount += 1
            let out = floatName(v) + "_dq\(dqCount)"
            node("DequantizeLinear", [floatName(v) + "_q", p.scale, p.zeroPoint], out)
            return out
        }
        /// Symmetric per-output-channel int8 weights of `weightBits` bits (and an int32 bias at
        /// `s_x * s_w`), dequantized for one node; returns the float names.
        let qmax = Float((1 << (weightBits - 1)) - 1)
        func quantizedWeights(_ w: String, _ weight: Tensor, bias: (String, Tensor)?, inputScale: Float) -> (String, String?) {
            let out = weight.shape[0], row = weight.count / out
            var scales = [Float](repeating: 0, count: out), q = [Int8](repeating: 0, count: weight.count)
            for o in 0..<out {
                var m: Float = 0
                for i in 0..<row { m = max(m, abs(weight.data[o * row + i])) }
                let s = m > 0 ? m / qmax : 1
                scales[o] = s
                for i in 0..<row { q[o * row + i] = Int8(max(-qmax, min(qmax, (weight.data[o * row + i] / s).rounded()))) }
            }
            initializers.append(intTensor(w + "_quantized", weight.shape, q))
            initializers.append(floatTensor(w + "_scale", [out], scales))
            initializers.append(intTensor(w + "_zero_point", [out], [Int8](repeating: 0, count: out)))
            let wf = w + "_dequantized"
            node("DequantizeLinear", [w + "_quantized", w + "_scale", w + "_zero_point"], wf, [int("axis", 0)])
            guard let (b, bias) = bias else { return (wf, nil) }
            let bScales = scales.map { $0 * inputScale }
            let qb = (0..<out).map { Int32(max(-2_147_483_647, min(2_147_483_647, (Double(bias.data[$0]) / Double(bScales[$0])).rounded()))) }
            initializers.append(intTensor(b + "_quantized", [out], qb))
            initializers.append(floatTensor(b + "_scale", [out], bScales))
            initializers.append(intTensor(b + "_zero_point", [out], [Int32](repeating: 0, count: out)))
            let bf = b + "_dequantized"
            node("DequantizeLinear", [b + "_quantized", b + "_scale", b + "_zero_point"], bf, [int("axis", 0)])
            return (wf, bf)
        }

        func activation(_ op: InferenceGraph.Op, _ x: String, _ y: String) {
            if case .relu6 = op {
                floats["relu6.min"] = Tensor(shape: [], values: [0])
                floats["relu6.max"] = Tensor(shape: [], values: [6])
                node("Clip", [x, "relu6.min", "relu6.max"], y)
            } else {
                node("Relu", [x], y)
            }
        }

        // The input is quantized when a quantized layer first reads it; a float first layer
        // reads it as it is, so ONNX Runtime has no DequantizeLinear to fuse its conv with.
        for (i, n) in graph.nodes.enumerated() where !absorbed.contains(i) {
            let out = i + 1
            layer = n.name
            var result = floatName(out)
            switch n.op {
            case let .conv(w, b, stride, padding, groups):
                let weight = graph.tensors[w]!, k = Int64(weight.shape[2])
                let keep = keepFloat.contains(n.name)
                let x = read(n.inputs[0], quantized: !keep)
                let attributes = [ints("kernel_shape", [k, k]), ints("strides", [Int64(stride), Int64(stride)]),
                                  ints("pads", Array(repeating: Int64(padding), count: 4)), ints("dilations", [1, 1]),
                                  int("group", Int64(groups))]
                var inputs = [x]
                if keep {
                    summary.floatLayers.append(n.name)
                    floats[w] = weight
                    inputs.append(w)
                    if let b { floats[b] = graph.tensors[b]!; inputs.append(b) }
                } else {
                    summary.quantizedLayers.append(n.name)
                    let (wf, bf) = quantizedWeights(w, weight, bias: b.map { ($0, graph.tensors[$0]!) }, inputScale: params[n.inputs[0]]!.s)
                    inputs += [wf] + (bf.map { [$0] } ?? [])
                }
                // The activation this conv's output alone feeds runs before the quantization.
                if let j = absorbedBy[out] {
                    node("Conv", inputs, floatName(out), attributes)
                    result = floatName(j + 1)
                    activation(graph.nodes[j].op, floatName(out), result)
                    // A float layer's output stays float (ONNX Runtime would fuse a conv between
                    // DequantizeLinear and QuantizeLinear, float weights or not).
                    if isQuantized(j + 1) && !keep { quantize(j + 1) }
                    continue
                }
                node("Conv", inputs, result, attributes)
                if keep { continue }
            case let .select(channels):
                let cin = graph.shape(of: n.inputs[0])[0]
                var values = [Float](repeating: 0, count: channels.count * cin)
                for (j, c) in channels.enumerated() where c >= 0 { values[j * cin + c] = 1 }
                let name = n.name + ".select"
                floats[name] = Tensor(shape: [channels.count, cin, 1, 1], values: values)
                node("Conv", [read(n.inputs[0]), name], result,
                     [ints("kernel_shape", [1, 1]), ints("strides", [1, 1]), ints("pads", [0, 0, 0, 0]), ints("dilations", [1, 1]),
                      int("group", 1)])
            case let .linear(w, b):
                let weight = graph.tensors[w]!
                let keep = keepFloat.contains(n.name)
                let x = read(n.inputs[0], quantized: !keep)
                if keep {
                    summary.floatLayers.append(n.name)
                    floats[w] = weight
                    floats[b] = graph.tensors[b]!
                    node("Gemm", [x, w, b], result, [int("transB", 1)])
                } else {
                    summary.quantizedLayers.append(n.name)
                    let (wf, bf) = quantizedWeights(w, weight, bias: (b, graph.tensors[b]!), inputScale: params[n.inputs[0]]!.s)
                    node("Gemm", [x, wf, bf!], result, [int("transB", 1)])
                }
            case let .batchNorm(p, eps):
                for suffix in ["weight", "bias", "running_mean", "running_var"] { floats[p + "." + suffix] = graph.tensors[p + "." + suffix]! }
                node("BatchNormalization", [read(n.inputs[0])] + ["weight", "bias", "running_mean", "running_var"].map { p + "." + $0 },
                     result, [float("epsilon", eps)])
            case .relu, .relu6:
                activation(n.op, read(n.inputs[0]), result)
            case .add:
                node("Add", [read(n.inputs[0]), read(n.inputs[1])], result)
            case let .maxPool(k, s, p):
                node("MaxPool", [read(n.inputs[0])], result,
                     [ints("kernel_shape", [Int64(k), Int64(k)]), ints("strides", [Int64(s), Int64(s)]),
                      ints("pads", Array(repeating: Int64(p), count: 4))])
            case .globalAvgPool:
                node("GlobalAveragePool", [read(n.inputs[0])], result)
            case .flatten:
                node("Flatten", [read(n.inputs[0])], result, [int("axis", 1)])
            }
            if isQuantized(out) { quantize(out) }
        }
        g.initializer = initializers + floats.keys.sorted().map { tensorProto($0, floats[$0]!) }

        let m = try ONNXExport.wrap(g, net: d, opset: 13, metadata: [
            "neuralscale.quantization": "int8 weights (\(weightBits) bits) per output channel, \(activations.rawValue) activations per tensor"])
        return (m, summary)
    }
}

private func scalarFloat(_ name: String, _ v: Float) -> Onnx_TensorProto { floatTensor(name, [], [v]) }
private func scalarUInt8(_ name: String, _ v: UInt8) -> Onnx_TensorProto { rawTensor(name, [], .uint8, [v]) }
private func scalarInt8(_ name: String, _ v: Int8) -> Onnx_TensorProto { intTensor(name, [], [v]) }

private func floatTensor(_ name: String, _ shape: [Int], _ values: [Float]) -> Onnx_TensorProto {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(4 * values.count)
    for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    return rawTensor(name, shape, .float, bytes)
}

private func intTensor(_ name: String, _ shape: [Int], _ values: [Int8]) -> Onnx_TensorProto {
    rawTensor(name, shape, .int8, values.map { UInt8(bitPattern: $0) })
}

private func intTensor(_ name: String, _ shape: [Int], _ values: [Int32]) -> Onnx_TensorProto {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(4 * values.count)
    for v in values { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    return rawTensor(name, shape, .int32, bytes)
}

private func rawTensor(_ name: String, _ shape: [Int], _ type: Onnx_TensorProto.DataType, _ bytes: [UInt8]) -> Onnx_TensorProto {
    var p = Onnx_TensorProto()
    p.name = name
    p.dims = shape.map(Int64.init)
    p.dataType = Int32(type.rawValue)
    p.rawData = Data(bytes)
    return p
}

/// `quantize --keep-fp32 auto`: which convs and linear layers to leave in float so that the int8
/// model's top-1 accuracy stays within `maxDrop` points of the fp32 model's.
public enum FloatLayerSearch {
    public struct Result: Codable, Sendable {
        /// The layers left in float, most sensitive first (empty when full int8 is within the drop).
        public var keep: [String]
        /// int8 top-1 with `keep` in float.
        public var top1: Double
        /// int8 top-1 with only that layer in float, per layer (empty when none was needed).
        public var sensitivity: [String: Double]
        /// Whether the drop is within `maxDrop` (false: every layer was tried).
        public var withinMaxDrop: Bool
    }

    /// Per-layer sensitivity (each layer alone in float), then the most sensitive layers kept in
    /// float one by one until the drop is within `maxDrop` percentage points.
    /// - Parameter evaluate: int8 top-1 (a fraction) of the model with these layers in float.
    public static func run(layers: [String], fp32Top1: Double, maxDrop: Double,
                           evaluate: (Set<String>) throws -> Double) rethrows -> Result {
        func within(_ top1: Double) -> Bool { 100 * (fp32Top1 - top1) <= maxDrop }
        let all = try evaluate([])
        if within(all) { return Result(keep: [], top1: all, sensitivity: [:], withinMaxDrop: true) }
        var sensitivity: [String: Double] = [:]
        for layer in layers { sensitivity[layer] = try evaluate([layer]) }
        let order = layers.sorted { (sensitivity[$0]!, $1) > (sensitivity[$1]!, $0) }  // largest gain first; ties by name
        var keep: [String] = [], top1 = all
        for layer in order {
            keep.append(layer)
            top1 = try evaluate(Set(keep))
            if within(top1) { break }
        }
        return Result(keep: keep, top1: top1, sensitivity: sensitivity, withinMaxDrop: within(top1))
    }
}
