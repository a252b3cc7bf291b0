import CZlib
import Foundation

/// The four files of Fashion-MNIST, as published and as the Debian package installs them.
enum FashionMNISTFile: CaseIterable {
    case trainImages, trainLabels, testImages, testLabels

    var fileName: String {
        switch self {
        case .trainImages: return "train-images-idx3-ubyte.gz"
        case .trainLabels: return "train-labels-idx1-ubyte.gz"
        case .testImages: return "t10k-images-idx3-ubyte.gz"
        case .testLabels: return "t10k-labels-idx1-ubyte.gz"
        }
    }
}

/// IDX magic numbers (http://yann.lecun.com/exdb/mnist/, "file formats"): two zero bytes, the
/// element type (0x08, unsigned byte), then the number of dimensions.
private enum IDXMagic {
    static let images: UInt32 = 0x0000_0803
    static let labels: UInt32 = 0x0000_0801
}

private let sourceSide = 28
private let paddedSide = 32
/// The most samples an IDX file may declare: Fashion-MNIST has 60000 and 10000, so a larger
/// count is a corrupt header, refused before anything is read or allocated for it.
let maxIDXCount = 1 << 24

extension FashionMNISTFile {
    /// The name without ".gz": the file un-gzipped, as many copies of the dataset hold it.
    var uncompressedName: String { String(fileName.dropLast(3)) }

    /// Its path in `directory`: the gzipped file as published, or where only that is absent the
    /// un-gzipped one (zlib's gz* reads both).
    func path(in directory: String) -> String {
        let gz = joinPath(directory, fileName), plain = joinPath(directory, uncompressedName)
        return !FileManager.default.fileExists(atPath: gz) && FileManager.default.fileExists(atPath: plain) ? plain : gz
    }
}

/// Loads Fashion-MNIST, un-gzipping the IDX files (or reading them as they are, un-gzipped
/// without ".gz"), and zero-pads each 28x28 image to 32x32 (2 pixels on every side), the size
/// the CIFAR nets take.
func loadFashionMNIST(directory: String, progress: ((Int, Int) -> Void)?) throws -> Dataset {
    let paths = FashionMNISTFile.allCases.map { $0.path(in: directory) }
    try requireFiles(paths.map { ($0 as NSString).lastPathComponent }, in: directory, kind: .fashionMNIST,
                     named: FashionMNISTFile.allCases.map(\.fileName))
    let counter = ProgressCounter(total: 4, report: progress)
    func load(_ images: FashionMNISTFile, _ labels: FashionMNISTFile) throws -> ImageSet {
        let imagesPath = images.path(in: directory)
        let labelsPath = labels.path(in: directory)
        let pixels = try readIDXImages(imagesPath)
        counter.advance()
        let labelValues = try readIDXLabels(labelsPath, classes: DatasetKind.fashionMNIST.classes)
        counter.advance()
        let imageCount = pixels.count / (paddedSide * paddedSide)
        guard imageCount == labelValues.count else {
            throw DatasetError.countMismatch(images: imagesPath, imageCount: imageCount,
                                             labels: labelsPath, labelCount: labelValues.count)
        }
        return ImageSet(pixels: pixels, labels: labelValues, channels: 1, height: paddedSide, width: paddedSide,
                        classes: DatasetKind.fashionMNIST.classes)
    }
    let train = try load(.trainImages, .trainLabels)
    let test = try load(.testImages, .testLabels)
    return Dataset(kind: .fashionMNIST, train: train, test: test)
}

/// Reads an IDX image file (dims N, 28, 28) into `[N, 32, 32]` bytes, zero-padded.
private func readIDXImages(_ path: String) throws -> [UInt8] {
    let file = try GzipFile(path)
    let dims = try file.readIDXHeader(magic: IDXMagic.images, dimensions: 3)
    guard dims[1] == sourceSide, dims[2] == sourceSide else {
        throw DatasetError.unexpectedDimensions(path: path, found: dims, expected: "N x 28 x 28")
    }
    let count = try checkedIDXCount(dims[0], path: path)
    let raw = try file.readExactly(count * sourceSide * sourceSide)
    let margin = (paddedSide - sourceSide) / 2
    return [UInt8](unsafeUninitializedCapacity: count * paddedSide * paddedSide) { out, initialized in
        out.initialize(repeating: 0)
        raw.withUnsafeBufferPointer { source in
            guard let src = source.baseAddress, let dst = out.baseAddress else { return }
            for i in 0..<count {
                for y in 0..<sourceSide {
                    let from = src + (i * sourceSide + y) * sourceSide
                    let to = dst + (i * paddedSide + y + margin) * paddedSide + margin
                    to.update(from: from, count: sourceSide)
                }
            }
        }
        initialized = out.count
    }
}

/// Reads an IDX label file (dim N), checking each label is below `classes`.
private func readIDXLabels(_ path: String, classes: Int) throws -> [Int32] {
    let file = try GzipFile(path)
    let count = try checkedIDXCount(try file.readIDXHeader(magic: IDXMagic.labels, dimensions: 1)[0], path: path)
    let raw = try file.readExactly(count)
    return try raw.enumerated().map { record, label in
        guard Int(label) < classes else {
            throw DatasetError.labelOutOfRange(path: path, record: record, label: Int(label), classes: classes)
        }
        return Int32(label)
    }
}

/// The sample count of an IDX header, if it is plausible: at least 1 and at most `maxIDXCount`.
private func checkedIDXCount(_ count: Int, path: String) throws -> Int {
    guard count > 0 else { throw DatasetError.noImages(path: path, detail: "the IDX header declares 0 samples; expected at least 1") }
    guard count <= maxIDXCount else { throw DatasetError.implausibleCount(path: path, count: count, limit: maxIDXCount) }
    return count
}

/// A gzip file read through zlib's gz* API, which also reads a file that is not compressed.
private final class GzipFile {
    let path: String
    private let handle: gzFile

    init(_ path: String) throws {
        guard let handle = gzopen(path, "rb") else {
            throw DatasetError.unreadableFile(path: path, reason: String(cString: strerror(errno)))
        }
        self.path = path
        self.handle = handle
        gzbuffer(handle, 1 << 17)
    }

    deinit { gzclose(handle) }

    /// Reads the big-endian magic number and dimension sizes (IDX), checking the magic.
    func readIDXHeader(magic: UInt32, dimensions: Int) throws -> [Int] {
        let header = try readUpTo(4 * (1 + dimensions))
        guard header.count == 4 * (1 + dimensions) else {
            throw DatasetError.lengthMismatch(path: path, expectedBytes: 4 * (1 + dimensions), actualBytes: header.count)
        }
        let words = (0...dimensions).map { k in
            header[(4 * k)..<(4 * k + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        }
        guard words[0] == magic else { throw DatasetError.badMagic(path: path, found: words[0], expected: magic) }
        return words.dropFirst().map { Int($0) }
    }

    /// Reads `count` bytes, which must be all the rest of the file.
    func readExactly(_ count: Int) throws -> [UInt8] {
        let data = try readUpTo(count)
        var extra = 0
        if data.count == count {
            // Reading past the end also makes zlib check the gzip trailer's CRC.
            while case let more = try readUpTo(1 << 16), !more.isEmpty { extra += more.count }
        }
        guard data.count == count, extra == 0 else {
            throw DatasetError.lengthMismatch(path: path, expectedBytes: count, actualBytes: data.count + extra)
        }
        return data
    }

    /// Reads up to `count` bytes; fewer only at the end of the file. Reads in 1 MiB chunks and
    /// grows the result as data arrives, so a corrupt header declaring a huge size costs no
    /// more memory than the file really holds.
    private func readUpTo(_ count: Int) throws -> [UInt8] {
        var data: [UInt8] = []
        data.reserveCapacity(min(count, 1 << 20))
        var chunk = [UInt8](repeating: 0, count: min(count, 1 << 20))
        while data.count < count {
            let want = min(count - data.count, chunk.count)
            let got = chunk.withUnsafeMutableBytes { gzread(handle, $0.baseAddress, UInt32(want)) }
            if got == 0 {
                // zlib reports a gzip stream cut short only as an error state at the end.
                var code: Int32 = Z_OK
                _ = gzerror(handle, &code)
                if code == Z_BUF_ERROR {
                    throw DatasetError.unreadableFile(path: path, reason: "gzip: unexpected end of file (truncated)")
                }
                break
            }
            if got < 0 {
                var code: Int32 = 0
                let message = gzerror(handle, &code).map { String(cString: $0) } ?? "read error"
                throw DatasetError.unreadableFile(path: path, reason: "gzip: \(message)")
            }
            data.append(contentsOf: chunk[0..<Int(got)])
        }
        return data
    }
}
