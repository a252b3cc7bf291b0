import Autodiff
import CImageCodecs
import CZlib
@testable import Datasets
import Foundation
import XCTest

/// Random and mutated dataset files fed to every reader: each must throw its error type or
/// give a consistent result, never trap or hang. Seeded, so a failure repeats; the case
/// number and mutation are in the failure message.
final class FuzzTests: XCTestCase {
    /// One random change to `bytes`, described for failure messages.
    private func mutate(_ bytes: [UInt8], _ rng: inout RandomGenerator) -> (bytes: [UInt8], how: String) {
        var out = bytes
        func position() -> Int { out.isEmpty ? 0 : rng.uniformInt(below: out.count) }
        switch rng.uniformInt(below: 7) {
        case 0:
            let flips = 1 + rng.uniformInt(below: 8)
            for _ in 0..<flips where !out.isEmpty { out[position()] ^= UInt8(truncatingIfNeeded: 1 + rng.uniformInt(below: 255)) }
            return (out, "\(flips) bytes flipped")
        case 1:
            let cut = position()
            return (Array(out.prefix(cut)), "cut at \(cut)")
        case 2:
            // A header word (sizes, counts, dimensions sit in the first bytes) set to an extreme.
            let extremes: [UInt32] = [0, 1, 28, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF]
            let value = extremes[rng.uniformInt(below: extremes.count)]
            let at = rng.uniformInt(below: max(1, min(out.count, 40) - 3))
            if out.count >= 4 { out.replaceSubrange(at..<(at + 4), with: bigEndian([value])) }
            return (out, "word at \(at) set to \(value)")
        case 3:
            let at = position(), count = 1 + rng.uniformInt(below: 64)
            out.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
            return (out, "\(count) random bytes inserted at \(at)")
        case 4:
            let at = position(), count = min(out.count - at, 1 + rng.uniformInt(below: 256))
            out.removeSubrange(at..<(at + count))
            return (out, "\(count) bytes removed at \(at)")
        case 5:
            let at = position(), count = min(out.count - at, 1 + rng.uniformInt(below: 512))
            out.append(contentsOf: out[at..<(at + count)])
            return (out, "\(count) bytes from \(at) appended")
        default:
            let keep = min(out.count, rng.uniformInt(below: 16))
            let count = rng.uniformInt(below: 600)
            return (Array(out.prefix(keep)) + (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
                    "first \(keep) bytes then \(count) random ones")
        }
    }

    private func assertBounded(_ started: Date, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let seconds = Date().timeIntervalSince(started)
        XCTAssertLessThan(seconds, 60, "\(what) took \(seconds) s", file: file, line: line)
    }

    func testMutatedImagesDecodeOrFailCleanly() throws {
        let seeds: [[UInt8]] = [
            try encodeJPEG(patternRGB(side: 16, salt: 1), width: 16, height: 16, channels: 3),
            try encodeJPEG([UInt8](repeating: 90, count: 12 * 12), width: 12, height: 12, channels: 1),
            try encodePNG(patternRGB(side: 16, salt: 2), width: 16, height: 16, layout: NS_PNG_RGB),
            try encodePNG(patternRGB(side: 16, salt: 3), width: 16, height: 16, layout: NS_PNG_RGB16),
            try encodePNG(flatRGB(1, 2, 3, side: 16), width: 16, height: 16, layout: NS_PNG_PALETTE),
            try encodePNG([UInt8](repeating: 200, count: 16 * 16 * 2), width: 16, height: 16, layout: NS_PNG_GRAY_ALPHA),
        ]
        var rng = RandomGenerator(seed: 0x1A6E)
        let started = Date()
        var decoded = 0
        for number in 0..<400 {
            let (bytes, how) = mutate(seeds[number % seeds.count], &rng)
            let limit = 1 << 16
            do {
                let image = try decodeRGB(bytes, maxPixels: limit)
                decoded += 1
                XCTAssertTrue(image.width > 0 && image.height > 0 && image.width * image.height <= limit,
                              "case \(number) (\(how)): \(image.width)x\(image.height)")
                XCTAssertEqual(image.pixels.count, image.width * image.height * 3, "case \(number) (\(how))")
                let declared = try imageDimensions(bytes)
                XCTAssertEqual(declared.width, image.width, "case \(number) (\(how))")
                XCTAssertEqual(declared.height, image.height, "case \(number) (\(how))")
            } catch let failure as ImageDecodingFailure {
                XCTAssertFalse(failure.reason.isEmpty, "case \(number) (\(how))")
                _ = try? imageDimensions(bytes)
            }
        }
        XCTAssertGreaterThan(decoded, 0, "no mutated image decoded: the mutations are all fatal")
        XCTAssertLessThan(decoded, 400, "every mutated image decoded: the mutations change nothing")
        print("fuzz: \(decoded) of 400 mutated images decoded, the others refused")
        assertBounded(started, "400 images")
    }

    /// Loads `kind` from `directory` after replacing `name` with a mutation of its bytes: it must
    /// throw a `DatasetError` or give a consistent dataset. The file is restored afterwards.
    private func fuzzFiles(_ kind: DatasetKind, _ directory: String, files: [String], cases: Int, seed: UInt64,
                           transform: ([UInt8]) throws -> [UInt8] = { $0 }) throws {
        let originals = try files.map { try readFile(joinPath(directory, $0)) }
        var rng = RandomGenerator(seed: seed)
        let started = Date()
        var loaded = 0
        for number in 0..<cases {
            let k = rng.uniformInt(below: files.count)
            let path = joinPath(directory, files[k])
            let (bytes, how) = mutate(originals[k], &rng)
            try write(try transform(bytes), to: path)
            do {
                let data = try loadDataset(kind, directory: directory)
                loaded += 1
                for set in [data.train, data.test] {
                    XCTAssertGreaterThan(set.count, 0, "case \(number): \(files[k]) \(how)")
                    XCTAssertEqual(set.pixels.count, set.count * set.imageBytes, "case \(number): \(files[k]) \(how)")
                    XCTAssertTrue(set.labels.allSatisfy { $0 >= 0 && Int($0) < set.classes }, "case \(number): \(files[k]) \(how)")
                }
            } catch let error as DatasetError {
                XCTAssertTrue(error.description.contains(directory), "case \(number): \(files[k]) \(how): \(error)")
            }
            try write(originals[k], to: path)
        }
        print("fuzz: \(loaded) of \(cases) mutated \(kind.rawValue) directories loaded, the others refused")
        assertBounded(started, "\(cases) \(kind.rawValue) cases")
    }

    func testMutatedIDXFilesLoadOrFailCleanly() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        let files = DatasetKind.fashionMNIST.expectedFiles
        // The gzip bytes themselves, then the IDX content under a valid gzip stream.
        try fuzzFiles(.fashionMNIST, directory, files: files, cases: 80, seed: 0x1D8)
        let plainDirectory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: plainDirectory)
        for name in files {
            let path = joinPath(plainDirectory, name)
            try write(try ungzip(path), to: path)  // zlib reads uncompressed files as they are
        }
        try fuzzFiles(.fashionMNIST, plainDirectory, files: files, cases: 120, seed: 0x1D9) { bytes in
            let gz = joinPath(plainDirectory, "scratch.gz")
            try writeGzip(bytes, to: gz)
            return try readFile(gz)
        }
    }

    func testMutatedCIFARFilesLoadOrFailCleanly() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR10(in: directory)
        try fuzzFiles(.cifar10, directory, files: DatasetKind.cifar10.expectedFiles, cases: 80, seed: 0xC1F)
        let directory100 = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR100(in: directory100)
        try fuzzFiles(.cifar100, directory100, files: DatasetKind.cifar100.expectedFiles, cases: 40, seed: 0xC100)
    }

    func testMutatedTinyImageNetFilesLoadOrFailCleanly() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        let files = (Fixtures.tinyTrain + Fixtures.tinyValidation).map(\.path) + ["wnids.txt", "val/val_annotations.txt"]
        try fuzzFiles(.tinyimagenet, directory, files: files, cases: 100, seed: 0x71A)
    }

    /// The un-gzipped bytes of a gzip file, read with zlib as the loader reads it.
    private func ungzip(_ path: String) throws -> [UInt8] {
        guard let file = gzopen(path, "rb") else { throw TestFailure("gzopen \(path)") }
        defer { gzclose(file) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let got = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            guard got > 0 else { break }
            out += chunk[0..<Int(got)]
        }
        return out
    }
}
