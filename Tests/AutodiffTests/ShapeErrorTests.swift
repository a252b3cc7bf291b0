import Autodiff
import XCTest

/// Bad shapes are rejected with a message naming the op and both shapes.
final class ShapeErrorTests: XCTestCase {
    private func assertMessage(_ body: () throws -> Void, contains parts: [String], line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            let text = "\(error)"
            for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", line: line) }
        }
    }

    func testConvMismatch() {
        assertMessage({ _ = try Conv2DGeometry.validate(input: [2, 3, 8, 8], weight: [4, 5, 3, 3], bias: nil,
                                                        stride: (1, 1), padding: (1, 1), groups: 1) },
                      contains: ["conv2d", "[2, 3, 8, 8]", "[4, 5, 3, 3]"])
        assertMessage({ _ = try Conv2DGeometry.validate(input: [2, 6, 8, 8], weight: [6, 2, 3, 3], bias: [5],
                                                        stride: (1, 1), padding: (1, 1), groups: 3) },
                      contains: ["conv2d", "[5]", "[6, 2, 3, 3]"])
        assertMessage({ _ = try Conv2DGeometry.validate(input: [1, 3, 2, 2], weight: [4, 3, 5, 5], bias: nil,
                                                        stride: (1, 1), padding: (0, 0), groups: 1) },
                      contains: ["conv2d", "smaller than the kernel"])
    }

    func testBinaryAndOtherMismatches() {
        assertMessage({ _ = try Broadcast.resolve("add", [2, 3, 4, 4], [2, 3, 4, 5]) },
                      contains: ["add", "[2, 3, 4, 4]", "[2, 3, 4, 5]"])
        assertMessage({ _ = try Broadcast.resolve("mul", [2, 3, 4, 4], [4]) }, contains: ["mul", "[4]"])
        XCTAssertEqual(try Broadcast.resolve("add", [2, 3, 4, 4], [3]), .perChannel(batch: 2, channels: 3, inner: 16))
        assertMessage({ try validateBatchNorm(input: [2, 3, 4, 4], weight: [3], bias: [4], runningMean: [3], runningVar: [3]) },
                      contains: ["batchnorm2d", "bias [4]", "[2, 3, 4, 4]"])
        assertMessage({ _ = try Pool2DGeometry.validate("maxpool2d", input: [2, 3, 4], kernel: (2, 2), stride: (2, 2), padding: (0, 0)) },
                      contains: ["maxpool2d", "[2, 3, 4]"])
    }
}
