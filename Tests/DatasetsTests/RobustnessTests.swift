import CImageCodecs
import CZlib
@testable import Datasets
import Foundation
import XCTest

/// Empty sets, headers declaring absurd sizes, file errors and stored normalizations: each is
/// refused with a message naming the file (or the values) and what was expected.
final class RobustnessTests: XCTestCase {
    // MARK: Empty data

    func testIDXDeclaringNoImagesIsRefused() throws {
        for name in ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"] {
            let directory = try makeTemporaryDirectory(self)
            try Fixtures.writeFashionMNIST(in: directory)
            let path = joinPath(directory, name)
            try writeGzip(Fixtures.idxImages(count: 0, first: 0), to: path)
            assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                               contains: [path, "no images", "declares 0 samples; expected at least 1"])
        }
    }

    func testIDXLabelsDeclaringNoneAreRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        let path = joinPath(directory, "t10k-labels-idx1-ubyte.gz")
        try writeGzip(Fixtures.idxLabels([]), to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory), contains: [path, "declares 0 samples"])
    }

    func testEmptyCIFARTestFileIsRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR10(in: directory)
        let path = joinPath(directory, "test_batch.bin")
        try write([UInt8](), to: path)
        assertDatasetError(try loadDataset(.cifar10, directory: directory), contains: [path, "empty; expected records of 3073 bytes"])
    }

    func testTinyImageNetWithoutTrainingImagesIsRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        for wnid in Fixtures.wnids {
            let images = joinPath(directory, "train/\(wnid)/images")
            try FileManager.default.removeItem(atPath: images)
            try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: false)
        }
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [joinPath(directory, "train"), "no images", "train/<wnid>/images/", "is empty"])
    }

    func testTinyImageNetWithoutValidationImagesIsRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        let images = joinPath(directory, "val/images")
        try FileManager.default.removeItem(atPath: images)
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: false)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [images, "no images", "val_annotations.txt"])
    }

    // MARK: Headers declaring absurd sizes

    func testIDXDeclaringTwoToThe31ImagesIsRefusedFromTheHeader() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        let path = joinPath(directory, "train-images-idx3-ubyte.gz")
        var bytes = Fixtures.idxImages(count: 3, first: 0)
        bytes.replaceSubrange(4..<8, with: bigEndian([1 << 31]))
        try writeGzip(bytes, to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "declares 2147483648 samples; at most \(maxIDXCount) expected"])
        // Just under the limit: the data is shorter than declared, found by reading, not by sizing memory.
        bytes.replaceSubrange(4..<8, with: bigEndian([UInt32(maxIDXCount)]))
        try writeGzip(bytes, to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "declares \(maxIDXCount * 784) bytes of data, but the file holds \(3 * 784) (truncated)"])
    }

    func testIDXLabelsDeclaringTooManyAreRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        let path = joinPath(directory, "train-labels-idx1-ubyte.gz")
        try writeGzip(bigEndian([0x0000_0801, 0xFFFF_FFFF]) + [1, 2, 3], to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory), contains: [path, "declares 4294967295 samples"])
    }

    func testIDXWithMismatchedDimensionsIsRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        let path = joinPath(directory, "t10k-images-idx3-ubyte.gz")
        try writeGzip(bigEndian([0x0000_0803, 2, 0xFFFF_FFFF, 28]) + [UInt8](repeating: 0, count: 2 * 784), to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "IDX dimensions 2 x 4294967295 x 28, expected N x 28 x 28"])
    }

    func testPNGDeclaringAHugeImageIsRefusedFromItsHeader() throws {
        let png = withPNGSize(try encodePNG(patternRGB(side: 8, salt: 1), width: 8, height: 8, layout: NS_PNG_RGB),
                              width: 100_000, height: 100_000)
        XCTAssertEqual(try imageDimensions(png).width, 100_000)
        XCTAssertThrowsError(try decodeRGB(png)) { error in
            let reason = (error as? ImageDecodingFailure)?.reason ?? "\(error)"
            XCTAssertTrue(reason.contains("PNG: declares 100000x100000 pixels; at most 16777216 pixels expected"), reason)
        }
        // A smaller limit, as a loader with a known image size passes.
        let normal = try encodePNG(patternRGB(side: 8, salt: 1), width: 8, height: 8, layout: NS_PNG_RGB)
        XCTAssertThrowsError(try decodeRGB(normal, maxPixels: 63)) { error in
            let reason = (error as? ImageDecodingFailure)?.reason ?? "\(error)"
            XCTAssertTrue(reason.contains("declares 8x8 pixels; at most 63 pixels expected"), reason)
        }
        XCTAssertEqual(try decodeRGB(normal, maxPixels: 64).pixels.count, 8 * 8 * 3)
    }

    func testJPEGDeclaringAHugeImageIsRefusedFromItsHeader() throws {
        let jpeg = try withJPEGSize(try encodeJPEG(flatRGB(9, 99, 199, side: 16), width: 16, height: 16, channels: 3),
                                    width: 60_000, height: 60_000)
        XCTAssertEqual(try imageDimensions(jpeg).height, 60_000)
        XCTAssertThrowsError(try decodeRGB(jpeg)) { error in
            let reason = (error as? ImageDecodingFailure)?.reason ?? "\(error)"
            XCTAssertTrue(reason.contains("JPEG: declares 60000x60000 pixels; at most 16777216 pixels expected"), reason)
        }
    }

    func testTinyImageNetRefusesAHugeImageByItsHeaderNamingTheFile() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        let pngPath = joinPath(directory, "val/images/val_1.JPEG")
        try write(withPNGSize(try readFile(pngPath), width: 100_000, height: 100_000), to: pngPath)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [pngPath, "image is 100000x100000, expected 64x64"])
        try Fixtures.writeTinyImageNet(in: directory)
        let jpegPath = joinPath(directory, "train/n03000003/images/n03000003_0.JPEG")
        try write(try withJPEGSize(try readFile(jpegPath), width: 65_000, height: 64), to: jpegPath)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [jpegPath, "image is 65000x64, expected 64x64"])
    }

    func testOversizedFileIsRefusedBeforeReading() throws {
        let directory = try makeTemporaryDirectory(self)
        let path = joinPath(directory, "big.JPEG")
        try write([UInt8](repeating: 7, count: 1000), to: path)
        assertDatasetError(try readFile(path, maxBytes: 999), contains: [path, "1000 bytes; at most 999 expected"])
        XCTAssertEqual(try readFile(path, maxBytes: 1000).count, 1000)
    }

    // MARK: File errors

    func testFileErrorsBecomeOneLineWithThePOSIXReason() throws {
        let missing = try makeTemporaryDirectory(self) + "/absent"
        do {
            _ = try Data(contentsOf: URL(fileURLWithPath: missing))
            XCTFail("read a missing file")
        } catch {
            XCTAssertEqual(describeFileError(error, path: missing), "\(missing): No such file or directory", "\(error)")
        }
        do {
            _ = try FileManager.default.contentsOfDirectory(atPath: missing)
            XCTFail("listed a missing folder")
        } catch {
            XCTAssertEqual(fileErrorReason(error), "No such file or directory", "\(error)")
        }
        XCTAssertEqual(fileErrorReason(POSIXError(.EACCES)), "Permission denied")
        XCTAssertEqual(fileErrorReason(CocoaError(.fileReadNoPermission)), "Permission denied")
        XCTAssertEqual(fileErrorReason(DatasetError.unreadableFile(path: "/x", reason: "Is a directory")), "Is a directory")
        XCTAssertEqual(fileErrorReason(DatasetError.noImages(path: "/x", detail: "d")), "/x: no images (d)")
    }

    // MARK: Stored normalizations

    func testNormalizationValidationNamesEveryWrongValue() throws {
        XCTAssertNoThrow(try Normalization.validate(mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2], channels: 3))
        XCTAssertEqual(try Normalization(validatingMean: [0.5], std: [0.25], channels: 1), Normalization(mean: [0.5], std: [0.25]))
        func problems(_ mean: [Float], _ std: [Float], _ channels: Int) -> [String] {
            do {
                try Normalization.validate(mean: mean, std: std, channels: channels)
                return []
            } catch let error as NormalizationError {
                XCTAssertTrue(error.description.hasPrefix("invalid input normalization: "), error.description)
                return error.problems
            } catch {
                XCTFail("expected a NormalizationError, got \(error)")
                return []
            }
        }
        XCTAssertEqual(problems([0.5, 0.5, 0.5], [0.2, 0, -1], 3), ["std[1] = 0.0 is not positive", "std[2] = -1.0 is not positive"])
        XCTAssertEqual(problems([.nan, .infinity], [.nan, 1], 2),
                       ["mean[0] = nan is not finite", "mean[1] = inf is not finite", "std[0] = nan is not finite"])
        XCTAssertEqual(problems([0.5, 0.5, 0.5], [0.2, 0.2, 0.2], 1), ["3 means and 3 stds for a net of 1 input channel"])
        XCTAssertEqual(problems([0.5], [0.2, 0.2], 2), ["1 means and 2 stds for a net of 2 input channels"])
        XCTAssertEqual(problems([], [], 3), ["0 means and 0 stds for a net of 3 input channels"])
    }
}

// MARK: - Header surgery

/// A PNG with its IHDR width and height replaced (and the chunk's CRC recomputed, so libpng
/// reads the header rather than failing its checksum).
func withPNGSize(_ png: [UInt8], width: UInt32, height: UInt32) -> [UInt8] {
    var bytes = png
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ... (5), CRC (4).
    bytes.replaceSubrange(16..<24, with: bigEndian([width, height]))
    let crc = bytes[12..<29].withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
    bytes.replaceSubrange(29..<33, with: bigEndian([crc]))
    return bytes
}

/// A baseline JPEG with its SOF0 frame's width and height replaced (ITU T.81, B.2.2: marker
/// FF C0, length (2), precision (1), height (2), width (2)).
func withJPEGSize(_ jpeg: [UInt8], width: UInt16, height: UInt16) throws -> [UInt8] {
    guard let sof = (0..<(jpeg.count - 1)).first(where: { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }) else {
        throw TestFailure("no SOF0 marker")
    }
    var bytes = jpeg
    bytes.replaceSubrange((sof + 5)..<(sof + 9),
                          with: [UInt8(height >> 8), UInt8(height & 0xFF), UInt8(width >> 8), UInt8(width & 0xFF)])
    return bytes
}
