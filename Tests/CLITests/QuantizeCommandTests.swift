import Foundation
import XCTest

/// `neuralscale quantize` run as a user runs it: a tiny trained net to a verified int8 model, and
/// the bad inputs refused by name.
final class QuantizeCommandTests: XCTestCase {
    var root: String!
    var data: String!

    override func setUpWithError() throws {
        (root, data) = try CLI.trainedRun("quantize")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    func testATrainedNetBecomesAVerifiedInt8Model() throws {
        let model = root + "/int8.onnx"
        let r = try CLI.run(["quantize", "--checkpoint", root + "/run/best.h5", "--onnx", model, "--data-dir", data,
                             "--calibration", "20", "--json", "--save-inputs", root + "/inputs"])
        XCTAssertEqual(r.status, 0, r.text)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any])
        let verification = try XCTUnwrap(report["verification"] as? [String: Any])
        let kernels = try XCTUnwrap(verification["kernels"] as? [String: Any])
        XCTAssertEqual(kernels["integer_convs"] as? Int, 8, "every conv of VGG-11 an integer kernel")
        XCTAssertEqual(kernels["fp32_convs"] as? Int, 8)
        XCTAssertEqual(verification["checker_ok"] as? Bool, true)
        XCTAssertEqual(verification["n"] as? Int, 12, "the whole test set")
        XCTAssertGreaterThanOrEqual(verification["top1_agreement"] as? Double ?? 0, 0.75)
        XCTAssertTrue(FileManager.default.fileExists(atPath: model))
        for name in ["fp32.onnx", "calibration.npy", "test-images.npy", "test-labels.npy"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/inputs/" + name), name)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.contains("tmp-") }, [])
    }

    /// A NEURALSCALE_PYTHON that is not there is named by its variable, not by Foundation's
    /// "the file doesn't exist".
    func testAMissingPythonIsNamed() throws {
        let r = try CLI.run(["export", "--checkpoint", root + "/run/best.h5", "--onnx", root + "/x.onnx", "--data-dir", data],
                            environment: ["NEURALSCALE_PYTHON": "/nonexistent/python"])
        XCTAssertEqual(r.status, 1, r.text)
        XCTAssertTrue(r.errors.contains("NEURALSCALE_PYTHON=/nonexistent/python is not an executable file"), r.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/x.onnx"))
    }

    func testKeepFP32AutoReportsItsSearch() throws {
        let r = try CLI.run(["quantize", "--checkpoint", root + "/run/best.h5", "--onnx", root + "/auto.onnx", "--data-dir", data,
                             "--calibration", "20", "--keep-fp32", "auto", "--max-drop", "0", "--json"])
        XCTAssertEqual(r.status, 0, r.text)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any])
        let search = try XCTUnwrap(report["keepFP32Search"] as? [String: Any], r.output)
        let kept = try XCTUnwrap(search["keep"] as? [String])
        XCTAssertEqual(Set(kept), Set(report["floatLayers"] as? [String] ?? []), "the model keeps what the search chose")
        XCTAssertNotNil(search["withinMaxDrop"] as? Bool)
        try CLI.fails(["quantize", "--checkpoint", root + "/run/best.h5", "--onnx", root + "/x.onnx", "--data-dir", data,
                       "--keep-fp32", "auto", "--no-verify"], status: 64, mentions: ["--keep-fp32 auto"])
    }

    func testBadInputsAreRefused() throws {
        let best = root + "/run/best.h5"
        try CLI.fails(["quantize", "--checkpoint", best, "--onnx", root + "/x.onnx", "--calibration", "0"], status: 64, mentions: ["--calibration"])
        try CLI.fails(["quantize", "--checkpoint", best, "--onnx", root + "/x.onnx", "--data-dir", data, "--calibration", "5000"],
                      status: 64, mentions: ["--calibration 5000", "training images"])
        try CLI.fails(["quantize", "--checkpoint", root + "/missing.h5", "--onnx", root + "/x.onnx"], mentions: [root + "/missing.h5"])
        try CLI.fails(["quantize", "--checkpoint", best, "--onnx", root + "/x.onnx", "--data-dir", data, "--keep-fp32", "features.99"],
                      status: 64, mentions: ["--keep-fp32 features.99"])
        try CLI.fails(["quantize", "--checkpoint", best, "--onnx", root + "/x.onnx", "--percentile", "nan"], status: 64, mentions: ["--percentile"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/x.onnx"))
    }
}
