import Foundation

/// Serves an `ImageSet` to the trainer through `BatchLoader`: shuffled and augmented for
/// training, in file order and plain for evaluation. All randomness comes from (seed, epoch).
public final class LoaderSource: BatchSource {
    let set: ImageSet, indices: [Int], batchSize: Int
    let augmentation: Augmentation?, normalization: Normalization
    let shuffle: Bool, seed: UInt64

    public init(set: ImageSet, indices: [Int], batchSize: Int, augmentation: Augmentation?,
                normalization: Normalization, shuffle: Bool, seed: UInt64) {
        self.set = set
        self.indices = indices
        self.batchSize = batchSize
        self.augmentation = augmentation
        self.normalization = normalization
        self.shuffle = shuffle
        self.seed = seed
    }

    public var sampleCount: Int { indices.count }
    public var batchCount: Int { (indices.count + batchSize - 1) / batchSize }

    public func batches(epoch: Int) -> AnyIterator<Batch> {
        let loader = BatchLoader(set: set, indices: indices, batchSize: batchSize, augmentation: augmentation,
                                 normalization: normalization, shuffle: shuffle, seed: seed, epoch: epoch)
        let iterator = loader.makeIterator()
        return AnyIterator { iterator.next().map { Batch(images: $0.images, labels: $0.labels) } }
    }
}

/// The train, validation and test sources of a dataset, as `neuralscale train` uses them.
public struct DatasetSources {
    public let train: LoaderSource
    public let validation: LoaderSource?
    public let test: LoaderSource
    public let normalization: InputNormalization

    /// Loads `kind`, splits its training set (seeded, `validationSplit` held out), fits the
    /// normalization on the training part, and keeps the first `subset` training images if given.
    public static func load(_ kind: DatasetKind, directory: String?, validationSplit: Double, seed: UInt64,
                            subset: Int?, batchSize: Int, reporter: TrainingReporter?) throws -> DatasetSources {
        let started = Date()
        let data = try loadDataset(kind, directory: directory, progress: reporter.map { r in { r.loading(done: $0, of: $1) } })
        var (trainIdx, valIdx) = trainValidationSplit(count: data.train.count, validationFraction: validationSplit, seed: seed)
        if let subset {
            // A seeded random subset: files may be ordered by class (tinyImageNet is).
            var rng = RandomGenerator(seed: mixSeed(seed, 0x5355_4253))  // "SUBS"
            trainIdx = Array(fisherYatesShuffled(trainIdx, using: &rng).prefix(subset)).sorted()
        }
        let norm = Normalization.fit(data.train, indices: trainIdx)
        reporter?.message("\(kind.rawValue): \(trainIdx.count) training, \(valIdx.count) validation, "
                          + "\(data.test.count) test images, loaded in " + String(format: "%.1fs", Date().timeIntervalSince(started)))
        return DatasetSources(
            train: LoaderSource(set: data.train, indices: trainIdx, batchSize: batchSize,
                                augmentation: .standard(imageSize: kind.imageSize), normalization: norm, shuffle: true, seed: seed),
            validation: valIdx.isEmpty ? nil
                : LoaderSource(set: data.train, indices: valIdx, batchSize: batchSize, augmentation: nil,
                               normalization: norm, shuffle: false, seed: seed),
            test: LoaderSource(set: data.test, indices: Array(0..<data.test.count), batchSize: batchSize, augmentation: nil,
                               normalization: norm, shuffle: false, seed: seed),
            normalization: InputNormalization(mean: norm.mean, std: norm.std))
    }

    /// The test set of `kind` with a stored normalization, for `neuralscale eval`.
    public static func testSource(_ kind: DatasetKind, directory: String?, normalization: InputNormalization,
                                  batchSize: Int, reporter: TrainingReporter?) throws -> LoaderSource {
        let data = try loadDataset(kind, directory: directory, progress: reporter.map { r in { r.loading(done: $0, of: $1) } })
        return LoaderSource(set: data.test, indices: Array(0..<data.test.count), batchSize: batchSize, augmentation: nil,
                            normalization: Normalization(mean: normalization.mean, std: normalization.std),
                            shuffle: false, seed: 0)
    }
}

extension DatasetSources {
    /// The first `count` test images of `kind`, normalized with `normalization` (or with the
    /// statistics of the training set when nil), as one [count, C, H, W] tensor: real inputs
    /// for checking an exported model.
    public static func testImages(_ kind: DatasetKind, directory: String?, normalization: InputNormalization?,
                                  count: Int) throws -> Tensor {
        let data = try loadDataset(kind, directory: directory)
        let n = min(count, data.test.count)
        let norm = normalization.map { Normalization(mean: $0.mean, std: $0.std) }
            ?? Normalization.fit(data.train, indices: Array(0..<data.train.count))
        let source = LoaderSource(set: data.test, indices: Array(0..<n), batchSize: n, augmentation: nil,
                                  normalization: norm, shuffle: false, seed: 0)
        guard n > 0, let batch = source.batches(epoch: 0).next() else {
            throw TrainingError.invalidConfig("the \(kind.rawValue) test set has no images")
        }
        return batch.images
    }
}
