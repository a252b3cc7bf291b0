import Foundation
import Nets
import XCTest

/// Params and MACs (thop's counting) of the four nets against `Reference/stats.json`, which
/// `Reference/make_stats_reference.py` computed with thop on the PyTorch reference nets.
final class StatsTests: XCTestCase {
    struct Entry: Decodable {
        let model: String, ratio: Double, in_ch: Int, image_size: Int, classes: Int
        let params: Int, macs: Int, mflops: Double, widths: [Int]
    }

    func testParamsAndMACsMatchThop() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Reference/stats.json")
        let entries = try JSONDecoder().decode([Entry].self, from: Data(contentsOf: url))
        XCTAssertEqual(entries.count, 24)
        for e in entries {
            let arch = try XCTUnwrap(Architecture(rawValue: e.model))
            let d = NetDescription.uniform(arch, ratio: e.ratio, inChannels: e.in_ch, imageSize: e.image_size, classes: e.classes)
            let what = "\(e.model) r\(e.ratio) \(e.in_ch)x\(e.image_size) \(e.classes) classes"
            XCTAssertEqual(d.widths, e.widths, what)
            let net = try makeNetwork(d, initialization: .none)
            XCTAssertEqual(net.parameterCount, e.params, "\(what): params")
            XCTAssertEqual(d.parameterCount, e.params, "\(what): analytic params")
            let macs = net.inferenceGraph.macs
            XCTAssertEqual(macs, e.macs, "\(what): thop MACs")
            XCTAssertEqual(d.macs, e.macs, "\(what): analytic MACs")
            XCTAssertEqual(2 * Double(macs) / 1e6, e.mflops, accuracy: 1e-9, "\(what): MFLOPs")
        }
    }
}
