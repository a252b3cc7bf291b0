import Dispatch
import Foundation

/// tinyImageNet as unzipped from http://cs231n.stanford.edu/tiny-imagenet-200.zip:
///
///     wnids.txt                     the class ids, one per line; the line order is the label
///     train/<wnid>/images/*.JPEG    500 images per class (any count is accepted)
///     val/images/*.JPEG             the validation images, used as our test set
///     val/val_annotations.txt       file name <tab> wnid <tab> bounding box
///
/// Images are told apart by their first bytes, not their names, so a copy converted to PNG
/// loads too; a validation image whose name is not annotated is matched by its name without
/// the extension (`val_0.png` takes `val_0.JPEG`'s label).
private enum Layout {
    static let classList = "wnids.txt"
    static let train = "train"
    static let imagesFolder = "images"
    static let validationImages = "val/images"
    static let annotations = "val/val_annotations.txt"
    static let side = 64
    static let channels = 3
    /// The largest image file read: a 64x64 image takes a few KiB, so a larger file is not one.
    static let maxImageFileBytes = 1 << 26
}

/// Loads tinyImageNet, decoding every image once, in parallel, into bytes. `ImageSet.classes`
/// is the number of wnids listed (200 in the real set, and at most that).
func loadTinyImageNet(directory: String, progress: ((Int, Int) -> Void)?) throws -> Dataset {
    let classListPath = joinPath(directory, Layout.classList)
    if !FileManager.default.fileExists(atPath: classListPath) {
        throw DatasetError.missingClassList(path: classListPath)
    }
    try requireFiles([Layout.train + "/", Layout.validationImages + "/", Layout.annotations],
                     in: directory, kind: .tinyimagenet)
    let wnids = try readClassList(classListPath)
    let classOf = Dictionary(uniqueKeysWithValues: wnids.enumerated().map { ($1, Int32($0)) })

    // Training files: every class folder must be a listed wnid, and every wnid needs a folder.
    let trainPath = joinPath(directory, Layout.train)
    for folder in try listDirectory(trainPath) where isDirectory(joinPath(trainPath, folder)) {
        if classOf[folder] == nil {
            throw DatasetError.unknownClassFolder(path: joinPath(trainPath, folder), wnid: folder, classList: classListPath)
        }
    }
    var trainFiles: [String] = []
    var trainLabels: [Int32] = []
    for (label, wnid) in wnids.enumerated() {
        let imagesPath = joinPath(joinPath(trainPath, wnid), Layout.imagesFolder)
        guard isDirectory(imagesPath) else {
            throw DatasetError.missingFiles(kind: .tinyimagenet, directory: directory,
                                            missing: ["\(Layout.train)/\(wnid)/\(Layout.imagesFolder)/"], nested: nil)
        }
        for name in try listDirectory(imagesPath) {
            trainFiles.append(joinPath(imagesPath, name))
            trainLabels.append(Int32(label))
        }
    }

    guard !trainFiles.isEmpty else {
        throw DatasetError.noImages(path: trainPath, detail: "every \(Layout.train)/<wnid>/\(Layout.imagesFolder)/ folder "
                                    + "is empty; expected JPEG or PNG training images, 500 per class in the real set")
    }

    // Validation files, labelled by the annotations.
    let annotationsPath = joinPath(directory, Layout.annotations)
    let annotations = try readAnnotations(annotationsPath, classOf: classOf, classList: classListPath)
    let validationPath = joinPath(directory, Layout.validationImages)
    var testFiles: [String] = []
    var testLabels: [Int32] = []
    for name in try listDirectory(validationPath) {
        let path = joinPath(validationPath, name)
        guard let label = annotations.byName[name] ?? annotations.byStem[stem(name)] else {
            throw DatasetError.unannotatedImage(path: path, annotations: annotationsPath)
        }
        testFiles.append(path)
        testLabels.append(label)
    }

    guard !testFiles.isEmpty else {
        throw DatasetError.noImages(path: validationPath, detail: "expected the JPEG or PNG validation images listed in "
                                    + "\(annotationsPath), 10000 in the real set")
    }

    let counter = ProgressCounter(total: trainFiles.count + testFiles.count, report: progress)
    func decode(_ files: [String], _ labels: [Int32]) throws -> ImageSet {
        let pixels = try decodeAll(files, side: Layout.side, counter: counter)
        return ImageSet(pixels: pixels, labels: labels, channels: Layout.channels, height: Layout.side,
                        width: Layout.side, classes: wnids.count)
    }
    return Dataset(kind: .tinyimagenet, train: try decode(trainFiles, trainLabels), test: try decode(testFiles, testLabels))
}

/// The wnids, one per non-empty line, in file order.
private func readClassList(_ path: String) throws -> [String] {
    let lines = try readLines(path)
    var seen: [String: Int] = [:]
    var wnids: [String] = []
    for (number, line) in lines.enumerated() {
        let wnid = line.trimmingCharacters(in: .whitespaces)
        if wnid.isEmpty { continue }
        if let first = seen[wnid] {
            throw DatasetError.malformedLine(path: path, line: number + 1, problem: "wnid '\(wnid)' repeats line \(first)")
        }
        seen[wnid] = number + 1
        wnids.append(wnid)
        // A label past the nets' outputs would stop training in the loss, far from this file.
        let classes = DatasetKind.tinyimagenet.classes
        if wnids.count > classes {
            throw DatasetError.malformedLine(path: path, line: number + 1,
                                             problem: "more than \(classes) wnids (tinyImageNet's classes, the nets' outputs)")
        }
    }
    if wnids.isEmpty { throw DatasetError.malformedLine(path: path, line: 1, problem: "no wnids listed") }
    return wnids
}

/// Labels of the validation images, by file name and by file name without its extension.
private func readAnnotations(_ path: String, classOf: [String: Int32],
                             classList: String) throws -> (byName: [String: Int32], byStem: [String: Int32]) {
    var byName: [String: Int32] = [:]
    var byStem: [String: Int32] = [:]
    for (number, line) in try readLines(path).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 2 else {
            throw DatasetError.malformedLine(path: path, line: number + 1,
                                             problem: "expected a file name and a wnid separated by a tab")
        }
        let name = String(fields[0]), wnid = String(fields[1]).trimmingCharacters(in: .whitespaces)
        guard let label = classOf[wnid] else {
            throw DatasetError.unknownAnnotationClass(path: path, line: number + 1, wnid: wnid, classList: classList)
        }
        byName[name] = label
        if byStem[stem(name)] == nil { byStem[stem(name)] = label }
    }
    return (byName, byStem)
}

private func readLines(_ path: String) throws -> [Substring] {
    let text = String(decoding: try readFile(path), as: UTF8.self)
    return text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
}

/// The names in a directory, sorted so the order (and so every index) is deterministic,
/// without hidden files such as `.DS_Store`.
private func listDirectory(_ path: String) throws -> [String] {
    do {
        return try FileManager.default.contentsOfDirectory(atPath: path).filter { !$0.hasPrefix(".") }.sorted()
    } catch {
        throw DatasetError.unreadableFile(path: path, reason: fileErrorReason(error))
    }
}

private func isDirectory(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
}

private func stem(_ name: String) -> String { (name as NSString).deletingPathExtension }

/// Collects the failures of concurrent workers; the one with the lowest index is reported.
private final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var first: (index: Int, error: Error)?

    var hasFailed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return first != nil
    }

    func record(_ index: Int, _ error: Error) {
        lock.lock()
        defer { lock.unlock() }
        if first.map({ index < $0.index }) ?? true { first = (index, error) }
    }

    var error: Error? {
        lock.lock()
        defer { lock.unlock() }
        return first?.error
    }
}

/// Decodes `files` into `[files.count, 3, side, side]` bytes, image `i` at slot `i` whatever
/// thread decoded it. After a failure the remaining files are skipped, and the failure with the
/// lowest index among those seen is thrown.
private func decodeAll(_ files: [String], side: Int, counter: ProgressCounter) throws -> [UInt8] {
    let imageBytes = Layout.channels * side * side
    let failures = FailureLog()
    return try [UInt8](unsafeUninitializedCapacity: files.count * imageBytes) { buffer, initialized in
        if let base = buffer.baseAddress {
            DispatchQueue.concurrentPerform(iterations: files.count) { i in
                if failures.hasFailed { return }
                do {
                    try decodeFile(files[i], side: side, into: base + i * imageBytes)
                    counter.advance()
                } catch {
                    failures.record(i, error)
                }
            }
        }
        if let error = failures.error { throw error }
        initialized = buffer.count
    }
}

/// Decodes one image into `destination`, `[3, side, side]` planar bytes. The size is checked
/// from the header first, so a file declaring a huge image is refused before it is decoded.
private func decodeFile(_ path: String, side: Int, into destination: UnsafeMutablePointer<UInt8>) throws {
    let encoded = try readFile(path, maxBytes: Layout.maxImageFileBytes)
    do {
        let declared = try imageDimensions(encoded)
        guard declared.width == side, declared.height == side else {
            throw DatasetError.wrongImageSize(path: path, width: declared.width, height: declared.height, expected: side)
        }
        try withDecodedRGB(encoded, maxPixels: side * side) { rgb, width, height in
            guard width == side, height == side else {
                throw DatasetError.wrongImageSize(path: path, width: width, height: height, expected: side)
            }
            // Interleaved RGB to three planes.
            let plane = side * side
            for p in 0..<plane {
                destination[p] = rgb[3 * p]
                destination[plane + p] = rgb[3 * p + 1]
                destination[2 * plane + p] = rgb[3 * p + 2]
            }
        }
    } catch let failure as ImageDecodingFailure {
        throw DatasetError.undecodableImage(path: path, reason: failure.reason)
    }
}
