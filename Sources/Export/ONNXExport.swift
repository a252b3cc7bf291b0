import Autodiff
import Checkpoint
import Foundation
import Nets
import ONNX
import Pruning
import SwiftProtobuf

/// ONNX export of a net's inference graph (issue "Export and measure").
///
/// - Every BN that directly follows a conv whose only consumer it is gets folded into the conv,
///   as PyTorch's exporter does in eval mode; other BNs (PreAct ResNet-18's) are
///   `BatchNormalization` nodes.
/// - ReLU6 is `Clip(0, 6)`, the classifier is `Flatten` + `Gemm`, a selection shortcut of a
///   pruned net is a 1x1 `Conv` with a 0/1 weight named `<block>.shortcut.select`.
/// - The input `input` is `[batch, C, H, W]` and the output `logits` is `[batch, classes]`, with
///   a symbolic batch dimension.
/// - Weights are initializers under their dotted names (folded values for folded convs).
/// - A gated net goes through surgery first, so pruned channels are gone, not zero.
public enum ONNXExport {
    /// Opsets the exporter writes (Clip takes its bounds as inputs from opset 11 on).
    public static let opsets = 11...21

    /// The ONNX model of `net`.
    /// - Parameter inputSize: the input's height and width, for a net that takes other sizes than
    ///   its own (`InferenceGraph.takesOtherInputSizes`); nil: the net's.
    public static func model(_ net: Network, opset: Int = 13, inputSize: Int? = nil) throws -> Onnx_ModelProto {
        guard opsets.contains(opset) else {
            throw ExportError("--opset \(opset) is not supported; choose \(opsets.lowerBound)...\(opsets.upperBound)")
        }
        let plain = net.isGated ? try Surgery.prune(net) : net
        let graph = plain.inferenceGraph.foldingBatchNorms()
        let d = plain.netDescription

        var g = Onnx_GraphProto()
        g.name = d.architecture.rawValue
        let size = inputSize ?? d.imageSize
        try ONNXExport.checkInputSize(graph, net: d, size: size)
        g.input = [valueInfo("input", ["batch", d.inChannels, size, size])]
        g.output = [valueInfo("logits", ["batch", d.classes])]
        var initializers: [String: Tensor] = graph.tensors
        var nodeNames: [String: Int] = [:]
        func uniqueName(_ base: String) -> String {
            let k = nodeNames[base, default: 0]
            nodeNames[base] = k + 1
            return k == 0 ? base : "\(base)_\(k)"
        }
        var valueNames = ["input"]
        for (i, node) in graph.nodes.enumerated() {
            var n = Onnx_NodeProto()
            let inputs = node.inputs.map { valueNames[$0] }
            switch node.op {
            case let .conv(w, b, stride, padding, groups):
                let k = Int64(graph.tensors[w]!.shape[2])
                n.opType = "Conv"
                n.input = inputs + [w] + (b.map { [$0] } ?? [])
                n.attribute = [ints("kernel_shape", [k, k]), ints("strides", [Int64(stride), Int64(stride)]),
                               ints("pads", Array(repeating: Int64(padding), count: 4)), int("group", Int64(groups))]
            case let .batchNorm(p, eps):
                n.opType = "BatchNormalization"
                n.input = inputs + ["weight", "bias", "running_mean", "running_var"].map { p + "." + $0 }
                n.attribute = [float("epsilon", eps)]
            case .relu:
                n.opType = "Relu"
                n.input = inputs
            case .relu6:
                n.opType = "Clip"
                n.input = inputs + ["relu6.min", "relu6.max"]
                initializers["relu6.min"] = Tensor(shape: [], values: [0])
                initializers["relu6.max"] = Tensor(shape: [], values: [6])
            case .add:
                n.opType = "Add"
                n.input = inputs
            case let .maxPool(k, s, p):
                n.opType = "MaxPool"
                n.input = inputs
                n.attribute = [ints("kernel_shape", [Int64(k), Int64(k)]), ints("strides", [Int64(s), Int64(s)]),
                               ints("pads", Array(repeating: Int64(p), count: 4))]
            case .globalAvgPool:
                n.opType = "GlobalAveragePool"
                n.input = inputs
            case .flatten:
                n.opType = "Flatten"
                n.input = inputs
                n.attribute = [int("axis", 1)]
            case let .linear(w, b):
                n.opType = "Gemm"
                n.input = inputs + [w, b]
                n.attribute = [int("transB", 1)]
            case let .select(channels):
                let cin = graph.shape(of: node.inputs[0])[0]
                let weight = Tensor(shape: [channels.count, cin, 1, 1], values: [Float](repeating: 0, count: channels.count * cin))
                for (j, c) in channels.enumerated() where c >= 0 { weight.data[j * cin + c] = 1 }
                // Not `.weight`: in PreAct ResNet-18 `layers.<k>.shortcut.weight` is the reference's
                // learned projection of the pre-activation, which this is not.
                let w = node.name + ".select"
                initializers[w] = weight
                n.opType = "Conv"
                n.input = inputs + [w]
                n.attribute = [ints("kernel_shape", [1, 1])]
            }
            n.name = uniqueName(node.name + "/" + n.opType)
            let out = i == graph.nodes.count - 1 ? "logits" : n.name
            n.output = [out]
            valueNames.append(out)
            g.node.append(n)
        }
        g.initializer = initializers.keys.sorted().map { tensorProto($0, initializers[$0]!) }

        return try wrap(g, net: d, opset: opset)
    }

    /// A model holding `graph`, with the net's description under `neuralscale.net` and `metadata`.
    static func wrap(_ graph: Onnx_GraphProto, net d: NetDescription, opset: Int, metadata: [String: String] = [:]) throws -> Onnx_ModelProto {
        var m = Onnx_ModelProto()
        m.irVersion = irVersion(opset: opset)
        var op = Onnx_OperatorSetIdProto()
        op.domain = ""
        op.version = Int64(opset)
        m.opsetImport = [op]
        m.producerName = "neuralscale"
        m.graph = graph
        // Keys sorted here and in the net's JSON: the same net gives the same bytes in every run
        // (a JSONEncoder's default key order changes from one process to the next).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let entries = ["neuralscale.net": String(decoding: try encoder.encode(d), as: UTF8.self)].merging(metadata) { a, _ in a }
        m.metadataProps = entries.keys.sorted().map { key in
            var e = Onnx_StringStringEntryProto()
            e.key = key
            e.value = entries[key]!
            return e
        }
        return m
    }

    /// The model of `net` as the bytes of an `.onnx` file.
    public static func serialized(_ net: Network, opset: Int = 13, inputSize: Int? = nil) throws -> Data {
        try model(net, opset: opset, inputSize: inputSize).serializedData()
    }

    /// Writes the model of `net` to `path` atomically.
    public static func write(_ net: Network, to path: String, opset: Int = 13, inputSize: Int? = nil) throws {
        try AtomicFile.write(try serialized(net, opset: opset, inputSize: inputSize), to: path)
    }

    /// The IR version that goes with an opset (ONNX's versioning table).
    static func irVersion(opset: Int) -> Int64 {
        switch opset {
        case ...11: return 6
        case 12...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }
}

extension ONNXExport {
    /// Refuses an input size the net of `graph` cannot take (`InferenceGraph.takesOtherInputSizes`).
    /// - Throws: `ExportError` "vgg11 cannot take 64x64 inputs: ...".
    public static func checkInputSize(_ graph: InferenceGraph, net d: NetDescription, size: Int) throws {
        guard size == d.imageSize || graph.takesOtherInputSizes else {
            throw ExportError("\(d.architecture.rawValue) cannot take \(size)x\(size) inputs: its classifier reads the flattened map of "
                              + "\(d.imageSize)x\(d.imageSize) inputs (no global pooling)")
        }
    }
}

public struct ExportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// A float tensor's value info; string dimensions are symbolic.
func valueInfo(_ name: String, _ dims: [Any]) -> Onnx_ValueInfoProto {
    var shape = Onnx_TensorShapeProto()
    shape.dim = dims.map { d in
        var dim = Onnx_TensorShapeProto.Dimension()
        if let s = d as? String { dim.dimParam = s } else { dim.dimValue = Int64(d as! Int) }
        return dim
    }
    var tensor = Onnx_TypeProto.Tensor()
    tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
    tensor.shape = shape
    var type = Onnx_TypeProto()
    type.tensorType = tensor
    var v = Onnx_ValueInfoProto()
    v.name = name
    v.type = type
    return v
}

/// A float32 initializer, little-endian raw data.
func tensorProto(_ name: String, _ t: Tensor) -> Onnx_TensorProto {
    var p = Onnx_TensorProto()
    p.name = name
    p.dims = t.shape.map(Int64.init)
    p.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
    var data = Data(capacity: 4 * t.count)
    for i in 0..<t.count { withUnsafeBytes(of: t.data[i].bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    p.rawData = data
    return p
}

func ints(_ name: String, _ values: [Int64]) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .ints
    a.ints = values
    return a
}

func int(_ name: String, _ value: Int64) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .int
    a.i = value
    return a
}

func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .float
    a.f = value
    return a
}
