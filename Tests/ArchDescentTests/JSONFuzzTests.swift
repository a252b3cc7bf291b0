import ArchDescent
import Autodiff
import Foundation
import Nets
import Pruning
import TestSupport
import XCTest

/// Random and mutated `descent.json` files fed to their reader and to what runs on what it
/// returns: each either loads into something usable or is refused with an error naming the
/// file; never a trap, and in bounded time. (ReportingTests fuzz `result.json` the same way.)
final class JSONFuzzTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("jsonfuzz") }

    /// A valid descent.json: a VGG-11 search with a real power-law fit of a synthetic trajectory.
    private func descentJSON() throws -> String {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        var rows: [TrajectoryRow] = []
        for k in 0..<12 {
            var d = template
            d.widths = template.widths.enumerated().map { g, w in max(1, Int(Double(w) * pow(0.85, Double(k) * (0.5 + 0.1 * Double(g))))) }
            rows.append(TrajectoryRow(widths: d.widths, params: d.parameterCount))
        }
        let fit = try PowerLawFit.fit(rows)
        let it = DescentIteration(index: 0, startWidths: template.widths, startParams: template.parameterCount, trajectory: rows,
                                  fit: fit, stop: .reachedMaxFraction, epochs: 2)
        var result = DescentResult(config: DescentConfig(model: .vgg11, dataset: "fashion-mnist"), template: template,
                                   groupNames: Architecture.vgg11.groupNames, iterations: [it], ratios: [])
        result.ratios = try [0.25, 1.0].map { try result.scaled(ratio: $0) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(result), as: UTF8.self)
    }

    func testMutatedDescentFilesAreLoadedOrRefused() throws {
        let valid = try descentJSON()
        var rng = RandomGenerator(seed: 7)
        let started = Date()
        var loaded = 0, refused = 0
        for k in 0..<400 {
            let text = k == 0 ? valid : JSONMutation.mutate(JSONMutation.mutate(valid, &rng), &rng)
            let path = folder.appendingPathComponent("descent-\(k).json").path
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            do {
                let result = try DescentResult.load(path)
                // What `widths`, `stats` and `train` then do with it.
                for ratio in [0.05, 0.25, 1.0, 4.0] {
                    if let s = try? result.scaled(ratio: ratio) {
                        var d = result.template
                        d.widths = s.neuralscaleWidths
                        XCTAssertNoThrow(try d.validate(), "descent-\(k): scaled widths \(s.neuralscaleWidths) at \(ratio)")
                    }
                }
                loaded += 1
            } catch let error as FitError {
                XCTAssertTrue(error.description.contains(path), "descent-\(k): the error does not name the file: \(error)")
                refused += 1
            }
        }
        XCTAssertGreaterThan(loaded, 10)
        XCTAssertGreaterThan(refused, 100)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60, "bounded time")
    }
}
