import Foundation
import ONNX
import PythonBridge
import SwiftProtobuf
import TestSupport
import XCTest

/// The generated ONNX messages (Sources/ONNX/onnx.pb.swift): they serialize, read back, and make a
/// file that ONNX's own checker accepts.
final class ONNXProtoTests: XCTestCase {
    /// y = Identity(x), x and y float [N, 3] with a symbolic batch dimension `N`; opset 13 (IR 7),
    /// and one float initializer so raw tensor data is covered too.
    static func identityModel(opType: String = "Identity") -> Onnx_ModelProto {
        func floatInfo(_ name: String) -> Onnx_ValueInfoProto {
            var info = Onnx_ValueInfoProto()
            info.name = name
            var tensor = Onnx_TypeProto.Tensor()
            tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            var batch = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "N"
            var channels = Onnx_TensorShapeProto.Dimension()
            channels.dimValue = 3
            tensor.shape.dim = [batch, channels]
            info.type.tensorType = tensor
            return info
        }
        var node = Onnx_NodeProto()
        node.name = "identity"
        node.opType = opType
        node.input = ["x"]
        node.output = ["y"]

        var weight = Onnx_TensorProto()
        weight.name = "unused.weight"
        weight.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        weight.dims = [2]
        weight.rawData = Data([Float(1.5), -2].flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })

        var graph = Onnx_GraphProto()
        graph.name = "identity"
        graph.node = [node]
        graph.input = [floatInfo("x")]
        graph.output = [floatInfo("y")]
        graph.initializer = [weight]

        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = 13
        var model = Onnx_ModelProto()
        model.irVersion = 7
        model.producerName = "neuralscale ONNXTests"
        model.opsetImport = [opset]
        model.graph = graph
        return model
    }

    func testIdentityModelRoundTrips() throws {
        let model = Self.identityModel()
        let bytes: [UInt8] = try model.serializedBytes()
        XCTAssertGreaterThan(bytes.count, 0)
        let decoded = try Onnx_ModelProto(serializedBytes: bytes)
        XCTAssertEqual(decoded, model)
        // Field by field, so a failure says which one was lost.
        XCTAssertEqual(decoded.irVersion, 7)
        XCTAssertEqual(decoded.opsetImport.map(\.version), [13])
        XCTAssertEqual(decoded.graph.node.map(\.opType), ["Identity"])
        XCTAssertEqual(decoded.graph.input.first?.type.tensorType.shape.dim.first?.dimParam, "N")
        XCTAssertEqual(decoded.graph.initializer.first?.rawData.count, 8)
        // A changed message must not compare equal (the comparison above can fail).
        var other = decoded
        other.graph.node[0].opType = "Relu"
        XCTAssertNotEqual(other, model)
    }

    func testOnnxCheckerAcceptsIdentityModelAndRejectsAnUnknownOp() throws {
        try requirePython(modules: ["onnx"])
        let dir = try temporaryFolder("onnx")
        let check = "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True)"

        let good = dir.appendingPathComponent("identity.onnx")
        try Data(try Self.identityModel().serializedBytes() as [UInt8]).write(to: good)
        let accepted = try Self.python(["-c", check, good.path])
        XCTAssertEqual(accepted.status, 0, "onnx.checker rejected the identity model:\n\(accepted.output)")

        // Control: the checker does reject a broken model written the same way.
        let bad = dir.appendingPathComponent("unknown-op.onnx")
        try Data(try Self.identityModel(opType: "NoSuchOp").serializedBytes() as [UInt8]).write(to: bad)
        let rejected = try Self.python(["-c", check, bad.path])
        XCTAssertNotEqual(rejected.status, 0, "onnx.checker accepted an unknown op")
        XCTAssertTrue(rejected.output.contains("NoSuchOp"), rejected.output)
    }

    /// scripts/verify_onnx.py checks itself on a tiny model: a good export passes, perturbed
    /// logits and a fixed batch dimension fail.
    func testVerifyScriptSelfTest() throws {
        try requirePython(modules: ["onnx", "onnxruntime"])
        let run = try Self.python([try Python.script("verify_onnx.py"), "--self-test"])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("self-test: passed"), run.output)
    }

    // MARK: Python

    /// Runs the project's Python (`Python.run`) with `arguments`; returns the exit status and
    /// stdout followed by stderr.
    static func python(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let r = try Python.run(arguments)
        return (r.status, r.output + r.errors)
    }
}
