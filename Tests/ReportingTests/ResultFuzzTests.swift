import Autodiff
import Foundation
import Nets
import Reporting
import TestSupport
import XCTest

/// Random and mutated `result.json` files fed to the report: each either loads into a report
/// that renders, or is refused with an error naming the file; never a trap, and in bounded time.
final class ResultFuzzTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("resultfuzz") }

    func testMutatedResultFilesAreLoadedOrRefused() throws {
        let widths = Architecture.vgg11.uniformWidths(ratio: 0.25)
        let object: [String: Any] = ["model": "vgg11", "dataset": "fashion-mnist", "scaling": "uniform", "ratio": 0.25, "widths": widths,
                                     "params": 579_498, "testAccuracy": 0.86, "testLoss": 0.4, "validationAccuracy": 0.85,
                                     "bestEpoch": 3, "epochs": 3, "seed": 0, "wallSeconds": 12.5]
        let valid = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        var rng = RandomGenerator(seed: 8)
        let started = Date()
        var loaded = 0, refused = 0
        for k in 0..<400 {
            let text = k == 0 ? valid : JSONMutation.mutate(valid, &rng)
            let path = folder.appendingPathComponent("result-\(k).json").path
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            do {
                let report = try ResultsReport.load([path])
                XCTAssertTrue(report.rows.allSatisfy { ($0.testAccuracyMean ?? 0) <= 1 && $0.ratio > 0 }, "result-\(k)")
                _ = report.markdown()
                _ = report.accuracyChart(against: .params)
                _ = report.widthsChart()
                loaded += 1
            } catch let error as ReportError {
                XCTAssertEqual(error.path, path, "result-\(k): \(error)")
                refused += 1
            }
        }
        XCTAssertGreaterThan(loaded, 10)
        XCTAssertGreaterThan(refused, 100)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60, "bounded time")
    }
}
