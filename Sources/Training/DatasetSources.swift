import Autodiff
import Datasets
import Foundation

/// Serves an `ImageSet` to the trainer through `BatchLoader`: shuffled and augmented for
/// training, in file order and plain for evaluation. All randomness comes from (seed, epoch).
public final class LoaderSource: BatchSource {
    let set: ImageSet, indices: [Int], batchSize: Int
    let augmentation: Augmentation?, normalization: Normalization
    let shuffle: Bool, seed: UInt64
    let dropsLoneLastImage: Bool
    /// This process's part of every batch (`BatchLoader.part`).
    public private(set) var part: (index: Int, count: Int) = (0, 1)

    public convenience init(set: ImageSet, indices: [Int], batchSize: Int, augmentation: Augmentation?,
                            normalization: Normalization, shuffle: Bool, seed: UInt64) {
        self.init(set: set, indices: indices, batchSize: batchSize, augmentation: augmentation,
                  normalization: normalization, shuffle: shuffle, seed: seed, dropsLoneLastImage: false)
    }

    /// - Parameter dropsLoneLastImage: for training: when the images leave one alone in the
    ///   last batch, leave that batch out (a different image each epoch when shuffled). Batch
    ///   norm cannot train on one image where a layer's output is 1x1.
    public init(set: ImageSet, indices: [Int], batchSize: Int, augmentation: Augmentation?,
                normalization: Normalization, shuffle: Bool, seed: UInt64, dropsLoneLastImage: Bool) {
        self.set = set
        self.indices = indices
        self.batchSize = batchSize
        self.augmentation = augmentation
        self.normalization = normalization
        self.shuffle = shuffle
        self.seed = seed
        self.dropsLoneLastImage = dropsLoneLastImage
    }

    /// The images served, counting one left out of every epoch by `dropsLoneLastImage`.
    public var sampleCount: Int { indices.count }
    public var batchCount: Int {
        let batches = (indices.count + batchSize - 1) / batchSize
        let lone = dropsLoneLastImage && batches > 1 && indices.count % batchSize == 1
        return lone ? batches - 1 : batches
    }

    /// The same source serving part `index` of `count` of every batch: a data-parallel run's
    /// process (`BatchLoader.part`).
    public func part(_ index: Int, of count: Int) -> LoaderSource {
        let source = LoaderSource(set: set, indices: indices, batchSize: batchSize, augmentation: augmentation,
                                  normalization: normalization, shuffle: shuffle, seed: seed, dropsLoneLastImage: dropsLoneLastImage)
        source.part = (index, count)
        return source
    }

    public func batches(epoch: Int) -> AnyIterator<Batch> {
        let loader = BatchLoader(set: set, indices: indices, batchSize: batchSize, augmentation: augmentation,
                                 normalization: normalization, shuffle: shuffle, seed: seed, epoch: epoch, part: part)
        let iterator = loader.makeIterator()
        var remaining = batchCount, number = 0
        return AnyIterator {
            guard remaining > 0 else { return nil }
            remaining -= 1
            defer { number += 1 }
            let whole = loader.batchImages(number)
            return iterator.next().map { Batch(images: $0.images, labels: $0.labels, globalCount: whole) }
        }
    }
}

/// The train, validation and test sources of a dataset, as `neuralscale train` uses them.
public struct DatasetSources {
    /// The same sources serving part `index` of `count` of every batch (a data-parallel run).
    public func part(_ index: Int, of count: Int) -> DatasetSources {
        DatasetSources(train: train.part(index, of: count), validation: validation?.part(index, of: count),
                       test: test.part(index, of: count), normalization: normalization, checksum: checksum)
    }

    public let train: LoaderSource
    public let validation: LoaderSource?
    public let test: LoaderSource
    public let normalization: InputNormalization
    /// The CRC-32s of the dataset's training and test sets as loaded (before any split or
    /// subset), "train-test" in hex: a resumed run checks that it goes on with the same data.
    public let checksum: String

    /// The checksum a resumed run records: the one it started with (`stored`), which `given`
    /// (this run's data) must equal, or `given` for a run recorded before checksums were.
    /// - Throws: `TrainingError.resume` naming `path` (the run's checkpoint or state, `made`:
    ///   "trained" or "searched") and both checksums.
    public static func sameData(stored: String?, given: String?, path: String, made: String) throws -> String? {
        // Another --data-dir (or files changed since) would go on with something else, with
        // nothing in the results to say so.
        if let stored, let given, stored != given {
            throw TrainingError.resume("\(path) was \(made) on other data: its training and test sets' CRC-32s are \(stored), "
                                       + "the data given now \(given); resume with the --data-dir (and files) it started with")
        }
        return stored ?? given
    }

    /// Loads `kind`, splits its training set, fits the normalization on the training part and
    /// checks that every part can be used.
    ///
    /// - Parameters:
    ///   - directory: the dataset folder; `nil` means `kind.defaultDirectory`.
    ///   - validationSplit: the fraction of the training set held out for validation, in
    ///     [0, 1), by a seeded shuffle (`trainValidationSplit`); 0 means no validation set.
    ///   - subset: if given, train on a seeded random subset of this many images of the
    ///     training part, the images left after the validation split (the validation and test
    ///     sets stay whole). It must be at least 2 and at most the size of that training part.
    ///     The normalization is fitted on the subset.
    /// - Throws: `DatasetError` for missing or corrupt files and empty files or folders;
    ///   `TrainingError.invalidConfig`, naming the dataset folder and files, when the split
    ///   leaves no validation image or fewer than 2 training images (batch norm needs 2), or
    ///   when `subset` is larger than the training part; `TrainingError.invalidInput` when the
    ///   files hold fewer than 2 training images.
    /// - Parameter normalization: the inputs' normalization; nil fits it on the training part
    ///   (a trained net's own, when it is trained further, as `prune` does).
    public static func load(_ kind: DatasetKind, directory: String?, validationSplit: Double, seed: UInt64,
                            subset: Int?, batchSize: Int, reporter: TrainingReporter?,
                            normalization: InputNormalization? = nil) throws -> DatasetSources {
        let started = Date()
        let directory = directory ?? kind.defaultDirectory
        guard validationSplit >= 0, validationSplit < 1 else {
            throw TrainingError.invalidConfig("--val-split must be in [0, 1), got \(validationSplit)")
        }
        if let subset, subset < 2 {
            throw TrainingError.invalidConfig("--subset must be at least 2 (batch norm needs 2 images), got \(subset)")
        }
        let data = try loadDataset(kind, directory: directory, progress: reporter.map { r in { r.loading(done: $0, of: $1) } })
        let (trainIdx, valIdx) = try split(data, directory: directory, validationSplit: validationSplit, seed: seed,
                                           subset: subset)
        guard data.test.count > 0 else {
            throw DatasetError.noImages(path: filesDescription(directory, kind.testFiles), detail: "the test set is empty")
        }
        let norm = normalization.map { Normalization(mean: $0.mean, std: $0.std) } ?? Normalization.fit(data.train, indices: trainIdx)
        reporter?.message("\(kind.rawValue): \(trainIdx.count) training, \(valIdx.count) validation, "
                          + "\(data.test.count) test images, loaded in " + String(format: "%.1fs", Date().timeIntervalSince(started)))
        return DatasetSources(
            train: LoaderSource(set: data.train, indices: trainIdx, batchSize: batchSize,
                                augmentation: .standard(imageSize: kind.imageSize), normalization: norm, shuffle: true, seed: seed,
                                dropsLoneLastImage: true),
            validation: valIdx.isEmpty ? nil
                : LoaderSource(set: data.train, indices: valIdx, batchSize: batchSize, augmentation: nil,
                               normalization: norm, shuffle: false, seed: seed),
            test: LoaderSource(set: data.test, indices: Array(0..<data.test.count), batchSize: batchSize, augmentation: nil,
                               normalization: norm, shuffle: false, seed: seed),
            normalization: InputNormalization(mean: norm.mean, std: norm.std),
            checksum: String(format: "%08x-%08x", data.train.checksum, data.test.checksum))
    }

    /// The training and validation indices of `data.train`: the seeded split, then the seeded
    /// subset of the training part. Throws when a part is too small to use.
    static func split(_ data: Dataset, directory: String, validationSplit: Double, seed: UInt64,
                      subset: Int?) throws -> (train: [Int], validation: [Int]) {
        let kind = data.kind, total = data.train.count
        let files = filesDescription(directory, kind.trainingFiles)
        var (trainIdx, valIdx) = trainValidationSplit(count: total, validationFraction: validationSplit, seed: seed)
        let percent = String(format: "%g%%", validationSplit * 100)
        // Too few images whatever the split: the files' fault, not a flag's.
        guard total >= 2 else {
            throw TrainingError.invalidInput(
                "\(files) holds \(total) training image\(total == 1 ? "" : "s"); at least 2 are needed (batch norm needs 2 images)")
        }
        if validationSplit > 0 {
            guard !valIdx.isEmpty else {
                throw TrainingError.invalidConfig(
                    "--val-split \(validationSplit) of the \(total) training images in \(files) leaves 0 validation images; "
                    + "pass a larger --val-split, or 0 for no validation set")
            }
            guard trainIdx.count >= 2 else {
                throw TrainingError.invalidConfig(
                    "--val-split \(validationSplit) of the \(total) training images in \(files) leaves \(trainIdx.count) "
                    + "for training; at least 2 are needed (batch norm needs 2 images), so pass a smaller --val-split")
            }
        }
        if let subset {
            guard subset <= trainIdx.count else {
                let split = validationSplit > 0 ? " (after the \(percent) validation split)" : ""
                throw TrainingError.invalidConfig(
                    "--subset \(subset) is larger than the \(trainIdx.count) training images of \(kind.rawValue) in "
                    + "\(directory)\(split); pass at most \(trainIdx.count), or no --subset to use them all")
            }
            // A seeded random subset: files may be ordered by class (tinyImageNet is).
            var rng = RandomGenerator(seed: mixSeed(seed, 0x5355_4253))  // "SUBS"
            trainIdx = Array(fisherYatesShuffled(trainIdx, using: &rng).prefix(subset)).sorted()
        }
        return (trainIdx, valIdx)
    }

    /// The test set of `kind` with a stored normalization, for `neuralscale eval`.
    /// - Throws: `NormalizationError` if `normalization` does not fit `kind` (see
    ///   `InputNormalization.validate(channels:)`), before the data is loaded; `DatasetError`.
    public static func testSource(_ kind: DatasetKind, directory: String?, normalization: InputNormalization,
                                  batchSize: Int, reporter: TrainingReporter?) throws -> LoaderSource {
        try normalization.validate(channels: kind.channels)
        let directory = directory ?? kind.defaultDirectory
        let data = try loadDataset(kind, directory: directory, progress: reporter.map { r in { r.loading(done: $0, of: $1) } })
        guard data.test.count > 0 else {
            throw DatasetError.noImages(path: filesDescription(directory, kind.testFiles), detail: "the test set is empty")
        }
        return LoaderSource(set: data.test, indices: Array(0..<data.test.count), batchSize: batchSize, augmentation: nil,
                            normalization: Normalization(mean: normalization.mean, std: normalization.std),
                            shuffle: false, seed: 0)
    }
}

/// `directory/name` for one file, `directory (a, b)` for several, for messages.
private func filesDescription(_ directory: String, _ names: [String]) -> String {
    let folder = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
    return names.count == 1 ? folder + "/" + names[0] : folder + " (" + names.joined(separator: ", ") + ")"
}

extension InputNormalization {
    /// Checks a normalization (e.g. one read from a checkpoint) before it normalizes the
    /// inputs of a net taking `channels` channels: one mean and one std per channel, every
    /// mean finite, every std finite and positive.
    /// - Throws: `NormalizationError` naming every wrong value, e.g. "invalid input
    ///   normalization: std[1] = 0.0 is not positive".
    public func validate(channels: Int) throws {
        try Normalization.validate(mean: mean, std: std, channels: channels)
    }
}

extension DatasetSources {
    /// The first `count` test images of `kind`, normalized with `normalization` (or with the
    /// statistics of the training set when nil), as one [count, C, H, W] tensor: real inputs
    /// for checking an exported model.
    public static func testImages(_ kind: DatasetKind, directory: String?, normalization: InputNormalization?,
                                  count: Int) throws -> Tensor {
        try normalization?.validate(channels: kind.channels)
        let data = try loadDataset(kind, directory: directory)
        let n = min(count, data.test.count)
        let norm = normalization.map { Normalization(mean: $0.mean, std: $0.std) }
            ?? Normalization.fit(data.train, indices: Array(0..<data.train.count))
        let source = LoaderSource(set: data.test, indices: Array(0..<n), batchSize: n, augmentation: nil,
                                  normalization: norm, shuffle: false, seed: 0)
        guard n > 0, let batch = source.batches(epoch: 0).next() else {
            throw TrainingError.invalidInput("the \(kind.rawValue) test set in \(directory ?? kind.defaultDirectory) has no images")
        }
        return batch.images
    }

    /// What `quantize` needs of a dataset, loaded once: `count` calibration images drawn (seeded)
    /// from the training set, and the whole test set with its labels, all normalized with the
    /// checkpoint's `normalization`.
    /// - Throws: `TrainingError.invalidConfig` for a count outside 1...the training set's size;
    ///   `TrainingError.invalidInput` for an empty test set; `DatasetError` naming the files.
    public static func calibrationAndTest(_ kind: DatasetKind, directory: String?, normalization: InputNormalization,
                                          calibration count: Int, seed: UInt64) throws -> (calibration: Tensor, test: Tensor, labels: [Int32]) {
        try normalization.validate(channels: kind.channels)
        let data = try loadDataset(kind, directory: directory ?? kind.defaultDirectory)
        guard count >= 1, count <= data.train.count else {
            throw TrainingError.invalidConfig("--calibration \(count): \(kind.rawValue) has \(data.train.count) training images; give 1...\(data.train.count)")
        }
        guard data.test.count > 0 else {
            throw TrainingError.invalidInput("the \(kind.rawValue) test set in \(directory ?? kind.defaultDirectory) has no images")
        }
        var rng = RandomGenerator(seed: seed)
        let picked = Array(fisherYatesShuffled(Array(0..<data.train.count), using: &rng).prefix(count))
        let norm = Normalization(mean: normalization.mean, std: normalization.std)
        func all(_ set: ImageSet, _ indices: [Int]) -> (Tensor, [Int32]) {
            let source = LoaderSource(set: set, indices: indices, batchSize: indices.count, augmentation: nil,
                                      normalization: norm, shuffle: false, seed: 0)
            let batch = source.batches(epoch: 0).next()!
            return (batch.images, batch.labels)
        }
        let (calibration, _) = all(data.train, picked)
        let (test, labels) = all(data.test, Array(0..<data.test.count))
        return (calibration, test, labels)
    }
}
