import Foundation
import XCTest

/// `neuralscale bench infer` on a tiny checkpoint and its int8 model: figures for both backends,
/// and bad inputs refused.
final class BenchInferTests: XCTestCase {
    var root: String!
    var data: String!

    override func setUpWithError() throws {
        (root, data) = try CLI.trainedRun("infer")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    func testBothBackendsGiveFiguresForEveryBatchSize() throws {
        let best = root + "/run/best.h5", int8 = root + "/int8.onnx"
        XCTAssertEqual(try CLI.run(["quantize", "--checkpoint", best, "--onnx", int8, "--data-dir", data, "--calibration", "10", "--no-verify"]).status, 0)
        let r = try CLI.run(["bench", "infer", "--checkpoint", best, "--onnx", int8, "--batch-sizes", "1,4", "--warmup", "1",
                             "--runs", "3", "--trials", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.text)
        let reports = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [[String: Any]])
        XCTAssertEqual(reports.map { $0["backend"] as? String }, ["swift", "ort", "ort"])
        XCTAssertEqual(reports.map { $0["model"] as? String }, [best, best, int8])
        for report in reports {
            let results = try XCTUnwrap(report["results"] as? [[String: Any]])
            XCTAssertEqual(results.map { $0["batch"] as? Int }, [1, 4])
            for result in results {
                XCTAssertEqual((result["trials"] as? [Any])?.count, 2)
                let mean = result["mean_ms"] as? Double ?? -1, p90 = result["p90_ms"] as? Double ?? -1
                XCTAssertGreaterThan(mean, 0)
                XCTAssertGreaterThanOrEqual(p90, result["median_ms"] as? Double ?? .infinity)
                XCTAssertEqual(result["images_per_s"] as? Double ?? 0, 1000 * Double(result["batch"] as! Int) / mean, accuracy: 1e-6 * mean)
            }
            XCTAssertNotNil(report["memory_mb"] as? Double)
        }
    }

    func testBadInputsAreRefused() throws {
        let best = root + "/run/best.h5"
        try CLI.fails(["bench", "infer", "--checkpoint", best, "--batch-sizes", "0"], status: 64, mentions: ["--batch-sizes"])
        try CLI.fails(["bench", "infer", "--onnx", root + "/x.onnx", "--backend", "swift"], status: 64, mentions: ["--backend swift"])
        try CLI.fails(["bench", "infer"], status: 64, mentions: ["--checkpoint or --onnx"])
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: root + "/bad.onnx"))
        try CLI.fails(["bench", "infer", "--onnx", root + "/bad.onnx", "--runs", "1", "--trials", "1"], mentions: [root + "/bad.onnx"])
        try CLI.fails(["bench", "infer", "--checkpoint", root + "/missing.h5"], mentions: [root + "/missing.h5"])
    }
}
