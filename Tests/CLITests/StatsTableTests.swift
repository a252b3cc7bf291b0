import Foundation
import XCTest

/// `neuralscale stats --ratios`: the size table through the binary, and its bad flags.
final class StatsTableTests: XCTestCase {
    func testSizeTableAndItsFlags() throws {
        let r = try CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "0.25,0.5,0.75,1.0", "--json"])
        XCTAssertEqual(r.status, 0, r.text)
        let table = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any])
        let rows = try XCTUnwrap(table["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["ratio"] as? Double }, [0.25, 0.5, 0.75, 1.0])
        XCTAssertEqual(rows.last?["params"] as? Int, 9_231_114)
        let summary = try XCTUnwrap((table["summaries"] as? [[String: Any]])?.first)
        XCTAssertGreaterThan(summary["r2"] as? Double ?? 0, 0.999)
        let csv = try CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "0.25,1.0", "--csv"])
        XCTAssertEqual(csv.output.split(separator: "\n").count, 3, csv.text)
        let text = try CLI.run(["stats", "--model", "resnet50", "--dataset", "cifar10", "--ratios", "0.5,1.0"])
        XCTAssertTrue(text.output.contains("MFLOPs = slope * params + intercept"), text.text)

        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "0,1"], status: 64, mentions: ["--ratios"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "1", "--scalings", "neuralscale"], status: 64,
                      mentions: ["--descent"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "1", "--scalings", "magic"], status: 64,
                      mentions: ["--scalings", "magic"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--csv"], status: 64, mentions: ["--csv goes with --ratios"])
        try CLI.fails(["stats", "--ratios", "1"], status: 64, mentions: ["--model and --dataset"])
    }
}
