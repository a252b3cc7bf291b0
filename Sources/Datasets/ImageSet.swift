import CZlib
import Foundation

/// Images and labels held in memory as bytes, as read from disk: one byte per pixel and channel.
///
/// Pixels are planar per image, NCHW: image `i`, channel `c`, row `y`, column `x` is at
/// `((i * channels + c) * height + y) * width + x`. Keeping bytes (not floats) costs a quarter
/// of the memory; the `BatchLoader` converts a batch at a time.
public struct ImageSet: Sendable {
    /// `[count, channels, height, width]` bytes.
    public let pixels: [UInt8]
    /// `[count]`, each in `0..<classes`.
    public let labels: [Int32]
    public let channels: Int
    public let height: Int
    public let width: Int
    /// The number of classes the labels index (which may exceed the largest label present).
    public let classes: Int

    /// The number of images.
    public var count: Int { labels.count }
    /// Bytes per image, `channels * height * width`.
    public var imageBytes: Int { channels * height * width }

    /// - Parameters:
    ///   - pixels: `[labels.count, channels, height, width]` bytes, NCHW.
    ///   - labels: `[N]`, each in `0..<classes`.
    public init(pixels: [UInt8], labels: [Int32], channels: Int, height: Int, width: Int, classes: Int) {
        precondition(channels > 0 && height > 0 && width > 0 && classes > 0,
                     "ImageSet: channels, height, width and classes must be positive")
        precondition(pixels.count == labels.count * channels * height * width,
                     "ImageSet: \(pixels.count) pixel bytes do not hold \(labels.count) images of \(channels)x\(height)x\(width)")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < classes }, "ImageSet: a label is outside 0..<\(classes)")
        self.pixels = pixels
        self.labels = labels
        self.channels = channels
        self.height = height
        self.width = width
        self.classes = classes
    }

    /// The bytes of image `index`: `[channels, height, width]`.
    public func image(_ index: Int) -> ArraySlice<UInt8> {
        pixels[index * imageBytes ..< (index + 1) * imageBytes]
    }
}

/// A dataset's training and test sets. For tinyImageNet the test set is the official
/// validation set, since the test labels are not published.
public struct Dataset: Sendable {
    public let kind: DatasetKind
    public let train: ImageSet
    public let test: ImageSet

    public init(kind: DatasetKind, train: ImageSet, test: ImageSet) {
        self.kind = kind
        self.train = train
        self.test = test
    }
}

/// Loads a dataset in full into memory.
///
/// - Parameters:
///   - directory: where the files are; `nil` means `kind.defaultDirectory`.
///   - progress: called with the files (tinyImageNet: images) done so far and the total, from
///     the loading threads but never two calls at once, with `done` increasing to `total`.
/// - Throws: `DatasetError`, naming the file and the problem.
public func loadDataset(_ kind: DatasetKind, directory: String?,
                        progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> Dataset {
    let directory = directory ?? kind.defaultDirectory
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw DatasetError.directoryNotFound(kind: kind, directory: directory)
    }
    switch kind {
    case .cifar10, .cifar100:
        return try loadCIFAR(kind, directory: directory, progress: progress)
    case .fashionMNIST:
        return try loadFashionMNIST(directory: directory, progress: progress)
    case .tinyimagenet:
        return try loadTinyImageNet(directory: directory, progress: progress)
    }
}

// MARK: - File helpers shared by the loaders

/// `directory/name`, without doubling a trailing slash.
func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

/// Throws `missingFiles` unless every one of `names` exists in `directory`. A name ending in
/// "/" must be a directory.
/// `named`: how the missing files are named in the error (default `names`).
func requireFiles(_ names: [String], in directory: String, kind: DatasetKind, named: [String]? = nil) throws {
    let manager = FileManager.default
    let missing = zip(names, named ?? names).filter { name, _ in
        var isDirectory: ObjCBool = false
        let exists = manager.fileExists(atPath: joinPath(directory, name), isDirectory: &isDirectory)
        return !exists || isDirectory.boolValue != name.hasSuffix("/")
    }.map(\.1)
    guard !missing.isEmpty else { return }
    // Pointing at the folder that holds the unpacked archive is the usual mistake.
    let ownName = (kind.defaultDirectory as NSString).lastPathComponent
    var isDirectory: ObjCBool = false
    let nested = manager.fileExists(atPath: joinPath(directory, ownName), isDirectory: &isDirectory)
        && isDirectory.boolValue ? ownName : nil
    throw DatasetError.missingFiles(kind: kind, directory: directory, missing: missing, nested: nested)
}

/// The whole file as bytes. Errors carry the system's reason ("No such file or directory",
/// "Is a directory", "Permission denied"). A file larger than `maxBytes` is refused from its
/// size, before anything is allocated.
func readFile(_ path: String, maxBytes: Int = .max) throws -> [UInt8] {
    func failure(_ code: Int32) -> DatasetError {
        DatasetError.unreadableFile(path: path, reason: String(cString: strerror(code)))
    }
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { throw failure(errno) }
    defer { close(descriptor) }
    var info = stat()
    guard fstat(descriptor, &info) == 0 else { throw failure(errno) }
    guard info.st_mode & S_IFMT != S_IFDIR else { throw failure(EISDIR) }
    guard Int(info.st_size) <= maxBytes else {
        throw DatasetError.oversizedFile(path: path, size: Int(info.st_size), limit: maxBytes)
    }
    var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
    var filled = 0
    try bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }  // an empty file
        while filled < buffer.count {
            let got = read(descriptor, base + filled, buffer.count - filled)
            if got < 0 {
                if errno == EINTR { continue }
                throw failure(errno)
            }
            if got == 0 { break }  // the file shrank while we read it
            filled += got
        }
    }
    bytes.removeLast(bytes.count - filled)
    return bytes
}

/// Serializes progress reports from concurrent workers and keeps `done` increasing.
final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private let total: Int
    private let report: ((Int, Int) -> Void)?
    /// Report every `step` items, so a per-image callback does not serialize the decoders.
    private let step: Int

    init(total: Int, report: ((Int, Int) -> Void)?) {
        self.total = total
        self.report = report
        self.step = max(1, total / 200)
    }

    func advance(by items: Int = 1) {
        guard let report = report else { return }
        lock.lock()
        defer { lock.unlock() }
        let before = done
        done += items
        if done == total || done / step != before / step { report(done, total) }
    }
}

extension ImageSet {
    /// zlib's CRC-32 of the pixels, then the labels: what tells the data a run started on from
    /// other data given to its resumption (another --data-dir, relabeled files).
    public var checksum: UInt32 {
        var crc = crc32_z(0, nil, 0)
        pixels.withUnsafeBufferPointer { crc = crc32_z(crc, $0.baseAddress, $0.count) }
        labels.withUnsafeBytes { crc = crc32_z(crc, $0.bindMemory(to: UInt8.self).baseAddress, $0.count) }
        return UInt32(truncatingIfNeeded: crc)
    }
}
