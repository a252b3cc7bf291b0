import CImageCodecs
@testable import Datasets
import XCTest

/// The C decoders, through the Swift wrapper the tinyImageNet loader uses.
final class CodecTests: XCTestCase {
    private let side = 8

    func testPNGLayoutsDecodeExactly() throws {
        let rgb = patternRGB(side: side, salt: 1)
        let gray = (0..<side * side).map { UInt8(truncatingIfNeeded: $0 * 37 + 3) }
        let alpha = (0..<side * side).map { UInt8(truncatingIfNeeded: 255 - $0) }
        let grayAlpha = zip(gray, alpha).flatMap { [$0, $1] }
        let rgba = (0..<side * side).flatMap { (p: Int) -> [UInt8] in
            [rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2], alpha[p]]
        }
        // Grayscale becomes R = G = B; alpha is dropped.
        let grayAsRGB = gray.flatMap { [$0, $0, $0] }
        // A palette image needs at most 256 colors: 16 distinct ones.
        let fewColors = (0..<side * side).flatMap { (p: Int) -> [UInt8] in
            let red = UInt8(p % 4 * 60), green = UInt8(p % 16 / 4 * 70)
            return [red, green, 200]
        }
        let cases: [(String, [UInt8], ns_png_layout, [UInt8])] = [
            ("gray", gray, NS_PNG_GRAY, grayAsRGB),
            ("gray+alpha", grayAlpha, NS_PNG_GRAY_ALPHA, grayAsRGB),
            ("rgb", rgb, NS_PNG_RGB, rgb),
            ("rgba", rgba, NS_PNG_RGBA, rgb),
            ("palette", fewColors, NS_PNG_PALETTE, fewColors),
            ("rgb16", rgb, NS_PNG_RGB16, rgb),
        ]
        for (name, input, layout, expected) in cases {
            let png = try encodePNG(input, width: side, height: side, layout: layout)
            let decoded = try decodeRGB(png)
            XCTAssertEqual(decoded.width, side, name)
            XCTAssertEqual(decoded.height, side, name)
            XCTAssertEqual(decoded.pixels, expected, "\(name): largest difference \(maxDifference(decoded.pixels, expected))")
        }
    }

    func testPNGKeepsNonSquareOrientation() throws {
        let width = 5, height = 3
        let rgb = (0..<width * height * 3).map { UInt8($0) }
        let decoded = try decodeRGB(try encodePNG(rgb, width: width, height: height, layout: NS_PNG_RGB))
        XCTAssertEqual(decoded.width, width)
        XCTAssertEqual(decoded.height, height)
        XCTAssertEqual(decoded.pixels, rgb)
    }

    func testJPEGFlatColorsDecodeWithinTolerance() throws {
        let colors: [(UInt8, UInt8, UInt8)] = [(200, 30, 90), (0, 0, 0), (255, 255, 255), (12, 250, 128)]
        for (r, g, b) in colors {
            let expected = flatRGB(r, g, b, side: 16)
            let decoded = try decodeRGB(try encodeJPEG(expected, width: 16, height: 16, channels: 3))
            XCTAssertEqual(decoded.width, 16)
            XCTAssertEqual(decoded.height, 16)
            XCTAssertLessThanOrEqual(maxDifference(decoded.pixels, expected), 3, "color \((r, g, b))")
        }
    }

    func testGrayscaleJPEGBecomesRGB() throws {
        let gray = [UInt8](repeating: 77, count: 16 * 16)
        let decoded = try decodeRGB(try encodeJPEG(gray, width: 16, height: 16, channels: 1))
        XCTAssertEqual(decoded.pixels.count, 16 * 16 * 3)
        XCTAssertLessThanOrEqual(maxDifference(decoded.pixels, [UInt8](repeating: 77, count: 16 * 16 * 3)), 3)
    }

    func testGarbageIsRejectedWithAReason() {
        XCTAssertThrowsError(try decodeRGB(Array("not an image at all".utf8))) { error in
            XCTAssertTrue(String(describing: (error as? ImageDecodingFailure)?.reason).contains("neither a JPEG nor a PNG"), "\(error)")
        }
        XCTAssertThrowsError(try decodeRGB([])) { error in
            XCTAssertNotNil(error as? ImageDecodingFailure)
        }
    }

    func testTruncatedFilesAreErrorsNotCrashes() throws {
        let jpeg = try encodeJPEG(patternRGB(side: 16, salt: 2), width: 16, height: 16, channels: 3)
        let png = try encodePNG(patternRGB(side: 16, salt: 2), width: 16, height: 16, layout: NS_PNG_RGB)
        // A JPEG cut in its entropy-coded data: libjpeg would pad it with gray; we refuse it.
        XCTAssertThrowsError(try decodeRGB(Array(jpeg.prefix(jpeg.count / 2)))) { error in
            XCTAssertTrue(String(describing: (error as? ImageDecodingFailure)?.reason).contains("JPEG"), "\(error)")
        }
        // A JPEG with only its header start, and a PNG cut anywhere.
        XCTAssertThrowsError(try decodeRGB(Array(jpeg.prefix(20))))
        for cut in [8, 30, png.count / 2, png.count - 5] {
            XCTAssertThrowsError(try decodeRGB(Array(png.prefix(cut))), "PNG cut at \(cut)") { error in
                XCTAssertTrue(String(describing: (error as? ImageDecodingFailure)?.reason).contains("PNG"), "\(error)")
            }
        }
        // A PNG whose data is corrupted fails its CRC check.
        var corrupt = png
        corrupt[png.count / 2] ^= 0xFF
        XCTAssertThrowsError(try decodeRGB(corrupt))
    }
}
