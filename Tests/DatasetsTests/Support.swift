import CImageCodecs
import CZlib
@testable import Datasets
import Foundation
import XCTest

/// A fresh directory under the system temp directory, removed when the test ends.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "DatasetsTests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func write(_ bytes: [UInt8], to path: String) throws {
    let directory = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func write(_ text: String, to path: String) throws { try write(Array(text.utf8), to: path) }

/// Writes `bytes` gzip-compressed with zlib's gz* API, as the Fashion-MNIST files are.
func writeGzip(_ bytes: [UInt8], to path: String) throws {
    guard let file = gzopen(path, "wb") else { throw TestFailure("gzopen \(path)") }
    let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
    guard gzclose(file) == Z_OK, written == Int32(bytes.count) || bytes.isEmpty else {
        throw TestFailure("gzwrite \(path)")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Big-endian 32-bit words, for IDX headers.
func bigEndian(_ words: [UInt32]) -> [UInt8] {
    words.flatMap { w in [UInt8(w >> 24), UInt8(w >> 16 & 0xFF), UInt8(w >> 8 & 0xFF), UInt8(w & 0xFF)] }
}

// MARK: - Encoders (CImageCodecs test helpers)

func encodeJPEG(_ pixels: [UInt8], width: Int, height: Int, channels: Int, quality: Int = 95) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: 256)
    let capacity = message.count
    let status = ns_encode_jpeg(pixels, Int32(width), Int32(height), Int32(channels), Int32(quality),
                                &out, &size, &message, capacity)
    defer { ns_image_free(out) }
    guard status == 0, let data = out else { throw TestFailure("ns_encode_jpeg: \(String(cString: message))") }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

func encodePNG(_ pixels: [UInt8], width: Int, height: Int, layout: ns_png_layout) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: 256)
    let capacity = message.count
    let status = ns_encode_png(pixels, Int32(width), Int32(height), layout, &out, &size, &message, capacity)
    defer { ns_image_free(out) }
    guard status == 0, let data = out else { throw TestFailure("ns_encode_png: \(String(cString: message))") }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Interleaved `[height, width, 3]` RGB of a flat color.
func flatRGB(_ r: UInt8, _ g: UInt8, _ b: UInt8, side: Int) -> [UInt8] {
    (0..<side * side).flatMap { _ in [r, g, b] }
}

/// Interleaved `[height, width, 3]` RGB with every byte different from its neighbours.
func patternRGB(side: Int, salt: Int) -> [UInt8] {
    (0..<side * side * 3).map { UInt8(truncatingIfNeeded: $0 * 7 + salt * 31 + $0 / 5) }
}

/// `[3, side, side]` planar bytes from `[side, side, 3]` interleaved ones.
func planar(_ rgb: [UInt8]) -> [UInt8] {
    let plane = rgb.count / 3
    return (0..<3).flatMap { c in (0..<plane).map { rgb[3 * $0 + c] } }
}

// MARK: - Assertions

/// Asserts `body` throws a `DatasetError` whose message contains every one of `fragments`.
func assertDatasetError<T>(_ body: @autoclosure () throws -> T, contains fragments: [String],
                           file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a DatasetError containing \(fragments), got no error", file: file, line: line)
    } catch let error as DatasetError {
        let message = error.description
        for fragment in fragments where !message.contains(fragment) {
            XCTFail("error message lacks '\(fragment)': \(message)", file: file, line: line)
        }
    } catch {
        XCTFail("expected a DatasetError, got \(error)", file: file, line: line)
    }
}

/// Largest absolute difference between two byte arrays of the same length (Int.max if not).
func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    guard a.count == b.count else { return Int.max }
    return zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
}
