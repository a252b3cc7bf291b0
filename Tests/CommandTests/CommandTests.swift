import ArgumentParser
import Checkpoint
import Foundation
import NeuralScaleCommands
import Nets
import TestSupport
import Training
import XCTest

/// The commands parsed from real argument arrays and run in process, as `neuralscale` runs them:
/// train, eval, export and stats on a tiny Fashion-MNIST, checking what each one writes.
final class CommandTests: XCTestCase {
    /// Parses `arguments` as the tool does and runs the command; returns what it printed.
    @discardableResult
    private func run(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        var command = try NeuralScale.parseAsRoot(arguments)
        return try capturingStandardOutput { try command.run() }
    }

    func testTrainEvalExportAndStatsOnATinyDataset() throws {
        let root = try temporaryFolder("commands")
        let data = root.appendingPathComponent("fashion").path
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeFashionMNIST(in: data, train: 100, test: 16)
        let out = root.appendingPathComponent("run").path

        // train: 64 of the 80 images the 20% validation split leaves.
        try run(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.0625", "--epochs", "2",
                 "--batch-size", "16", "--subset", "64", "--data-dir", data, "--out", out])
        for name in ["last.h5", "best.h5", "metrics.jsonl", "result.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), "train did not write \(name)")
        }
        let result = try JSONDecoder().decode(TrainResult.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/result.json")))
        XCTAssertEqual(result.model, .vgg11)
        XCTAssertEqual(result.dataset, "fashion-mnist")
        XCTAssertEqual(result.epochs, 2)
        XCTAssertEqual(result.subset, 64)
        XCTAssertEqual(result.widths, Architecture.vgg11.uniformWidths(ratio: 0.0625))
        let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.count, 2, "one metrics line per epoch")
        let best = try Checkpoint.load(out + "/best.h5")
        XCTAssertEqual(best.network.parameterCount, result.params)
        XCTAssertEqual(try best.training(as: TrainingState.self)?.config.subset, 64)
        let testAccuracy = try XCTUnwrap(result.testAccuracy), testLoss = try XCTUnwrap(result.testLoss)

        // eval: best.h5 on the 16 test images, as the trainer evaluated it at the end.
        let evalJSON = try run(["eval", "--checkpoint", out + "/best.h5", "--data-dir", data, "--json"])
        let eval = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(evalJSON.utf8)) as? [String: Any], evalJSON)
        XCTAssertEqual(Set(eval.keys), ["checkpoint", "dataset", "images", "test_accuracy", "test_loss"])
        XCTAssertEqual(eval["checkpoint"] as? String, out + "/best.h5")
        XCTAssertEqual(eval["dataset"] as? String, "fashion-mnist")
        XCTAssertEqual(eval["images"] as? Int, 16)
        XCTAssertEqual(try XCTUnwrap(eval["test_accuracy"] as? Double), testAccuracy, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(eval["test_loss"] as? Double), testLoss, accuracy: 1e-4 * max(1, testLoss))
        let evalText = try run(["eval", "--checkpoint", out + "/best.h5", "--data-dir", data])
        XCTAssertTrue(evalText.hasPrefix("\(out)/best.h5 on fashion-mnist test (16 images): accuracy "), evalText)

        // eval on a dataset the net does not fit: a flag error, which `main` shows with the usage (64).
        XCTAssertThrowsError(try run(["eval", "--checkpoint", out + "/best.h5", "--dataset", "cifar10"])) { error in
            guard case let TrainingError.invalidConfig(message)? = error as? TrainingError else {
                return XCTFail("not a configuration error: \(error)")
            }
            XCTAssertTrue(message.contains("1x32x32 images and 10 classes; cifar10 does not fit"), message)
        }

        // export without verification: the model file, its size as reported.
        let plain = root.appendingPathComponent("plain.onnx").path
        let plainJSON = try run(["export", "--checkpoint", out + "/best.h5", "--onnx", plain, "--no-verify", "--json"])
        let plainReport = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(plainJSON.utf8)) as? [String: Any], plainJSON)
        let plainSize = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: plain)[.size] as? Int)
        XCTAssertEqual(plainReport["bytes"] as? Int, plainSize)
        XCTAssertEqual(plainReport["written"] as? Bool, true)
        XCTAssertEqual(plainReport["opset"] as? Int, 13)
        XCTAssertNil(plainReport["verification"])

        // stats: the trained net's params, from the checkpoint and from the flags that made it.
        for arguments in [["stats", "--checkpoint", out + "/best.h5", "--json"],
                          ["stats", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.0625", "--json"]] {
            let text = try run(arguments)
            let stats = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
            XCTAssertEqual(stats["params"] as? Int, result.params, arguments.joined(separator: " "))
            XCTAssertEqual(stats["widths"] as? [Int], result.widths, arguments.joined(separator: " "))
            XCTAssertEqual(stats["in_channels"] as? Int, 1)
            XCTAssertEqual(stats["image_size"] as? Int, 32)  // Fashion-MNIST is padded to 32x32
        }

        // export verified with onnx and ONNX Runtime on the run's own test images.
        try requirePython(modules: ["numpy", "onnx", "onnxruntime"])
        let onnx = root.appendingPathComponent("net.onnx").path
        let exportJSON = try run(["export", "--checkpoint", out + "/best.h5", "--onnx", onnx, "--data-dir", data, "--images", "16",
                                  "--json"])
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(exportJSON.utf8)) as? [String: Any], exportJSON)
        XCTAssertEqual(report["written"] as? Bool, true, exportJSON)
        XCTAssertEqual(report["images"] as? String, "16 fashion-mnist test images")
        let verification = try XCTUnwrap(report["verification"] as? [String: Any], exportJSON)
        XCTAssertEqual(verification["passed"] as? Bool, true, exportJSON)
        XCTAssertEqual(verification["n"] as? Int, 16)
        XCTAssertEqual(verification["top1_agreement"] as? Double, 1)
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: onnx)[.size] as? Int)
        XCTAssertEqual(report["bytes"] as? Int, size)
        XCTAssertEqual(size, plainSize, "the same net, verified or not")
    }
}

/// Runs `body` with the process's standard output going to a file, and returns what it wrote.
func capturingStandardOutput(_ body: () throws -> Void) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ns-stdout-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    fflush(stdout)
    let saved = dup(STDOUT_FILENO)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard saved >= 0, fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
    dup2(fd, STDOUT_FILENO)
    close(fd)
    do {
        try body()
    } catch {
        fflush(stdout)
        dup2(saved, STDOUT_FILENO)
        close(saved)
        throw error
    }
    fflush(stdout)
    dup2(saved, STDOUT_FILENO)
    close(saved)
    return try String(contentsOfFile: path, encoding: .utf8)
}
