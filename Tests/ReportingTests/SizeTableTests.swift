import ArchDescent
import Datasets
import Foundation
import Nets
import Pruning
import Reporting
import TestSupport
import Training
import XCTest

/// `stats --ratios`: the studies' size table and its least-squares lines.
final class SizeTableTests: XCTestCase {
    func testLeastSquaresRecoversALine() throws {
        let line = try XCTUnwrap(LeastSquares(x: [1, 2, 4, 8], y: [5, 8, 14, 26]))
        XCTAssertEqual(line.slope, 3, accuracy: 1e-12)
        XCTAssertEqual(line.intercept, 2, accuracy: 1e-12)
        XCTAssertEqual(line.r2, 1, accuracy: 1e-12)
        let noisy = try XCTUnwrap(LeastSquares(x: [0, 1, 2, 3], y: [0, 2, 1, 3]))
        XCTAssertEqual(noisy.slope, 0.8, accuracy: 1e-12)
        XCTAssertEqual(noisy.intercept, 0.3, accuracy: 1e-12)
        XCTAssertEqual(noisy.r2, 0.64, accuracy: 1e-12)
        XCTAssertNil(LeastSquares(x: [1], y: [2]))
        XCTAssertNil(LeastSquares(x: [1, 1], y: [2, 3]))
    }

    func testUniformRowsAreTheReferenceNets() throws {
        let table = try SizeTable.make(.vgg11, .cifar10, ratios: [0.25, 1.0], scalings: [.uniform], descent: nil, iteration: nil)
        // shared/reference/param_counts.json: vgg11/3/10/0.25 and vgg11/3/10/1.0.
        XCTAssertEqual(table.rows.map(\.params), [579_786, 9_231_114])
        XCTAssertEqual(table.rows.map(\.widths), [Architecture.vgg11.uniformWidths(ratio: 0.25), Architecture.vgg11.originalWidths])
        XCTAssertEqual(table.rows.map(\.cdl), [23, 23])
        let s = try XCTUnwrap(table.summaries.first)
        XCTAssertEqual(s.mflops_min, table.rows[0].mflops)
        XCTAssertEqual(s.mflops_max, table.rows[1].mflops)
        // Two points: the line goes through both.
        XCTAssertEqual(try XCTUnwrap(s.slope) * 9_231_114 + s.intercept!, table.rows[1].mflops, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(s.r2), 1, accuracy: 1e-12)
        XCTAssertNil(table.slope_ratio)
        XCTAssertTrue(table.csv.hasPrefix("model,dataset,scaling,ratio,params,mflops,cdl,widths\nvgg11,cifar10,uniform,0.25,579786,"))
    }

    /// With a search whose fit widens the late layers, the NeuralScale net spends its parameters
    /// elsewhere than the uniform one: other MFLOPs at the same P, and a slope ratio.
    func testNeuralScaleRowsAndSlopeRatio() throws {
        let folder = try temporaryFolder("sizes")
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        var rows: [TrajectoryRow] = []
        for k in 0..<12 {
            var d = template
            d.widths = template.widths.enumerated().map { g, w in max(1, Int(Double(w) * pow(0.85, Double(k) * (1.2 - 0.1 * Double(g))))) }
            rows.append(TrajectoryRow(widths: d.widths, params: d.parameterCount))
        }
        let it = DescentIteration(index: 0, startWidths: template.widths, startParams: template.parameterCount, trajectory: rows,
                                  fit: try PowerLawFit.fit(rows), stop: .reachedMaxFraction, epochs: 2)
        let result = DescentResult(config: DescentConfig(model: .vgg11, dataset: "cifar10"), template: template,
                                   groupNames: Architecture.vgg11.groupNames, iterations: [it], ratios: [])
        let path = folder.appendingPathComponent("descent.json").path
        try JSONEncoder().encode(result).write(to: URL(fileURLWithPath: path))
        let table = try SizeTable.make(.vgg11, .cifar10, ratios: [0.25, 0.5, 0.75, 1.0], scalings: [.uniform, .neuralscale],
                                       descent: path, iteration: nil)
        XCTAssertEqual(table.rows.count, 8)
        let uniform = table.rows.prefix(4), neuralscale = table.rows.suffix(4)
        for (u, n) in zip(uniform, neuralscale) {
            XCTAssertEqual(Double(n.params), Double(u.params), accuracy: 0.01 * Double(u.params), "the same P at ratio \(u.ratio)")
            if u.ratio < 1 { XCTAssertNotEqual(n.widths, u.widths, "ratio \(u.ratio)") }
        }
        let slopes = table.summaries.map { $0.slope! }
        XCTAssertEqual(try XCTUnwrap(table.slope_ratio), slopes[1] / slopes[0], accuracy: 1e-12)
        XCTAssertNotEqual(table.slope_ratio!, 1, accuracy: 0.01)
        XCTAssertTrue(table.text.contains("slope ratio NeuralScale / uniform"))
    }
}
