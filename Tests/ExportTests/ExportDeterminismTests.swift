import Autodiff
import Export
import Foundation
import Nets
import ONNX
import XCTest

/// The same net exports to the same bytes in every process: nothing in the model depends on a
/// process's hash seed (a dictionary's order, a JSONEncoder's default key order).
final class ExportDeterminismTests: XCTestCase {
    func testMetadataIsWrittenWithSortedKeys() throws {
        let d = NetDescription.uniform(.vgg11, ratio: 0.125, inChannels: 1, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)))
        let model = try ONNXExport.model(net, opset: 13)
        XCTAssertEqual(model.metadataProps.map(\.key), model.metadataProps.map(\.key).sorted())
        let description = try XCTUnwrap(model.metadataProps.first { $0.key == "neuralscale.net" })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        XCTAssertEqual(description.value, String(decoding: try encoder.encode(d), as: UTF8.self))
    }
}
