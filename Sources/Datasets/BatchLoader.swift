import Autodiff
import Dispatch
import Foundation

/// Turns an `ImageSet` into float batches for one epoch, preparing the next batch on a
/// background thread while the caller trains on the current one.
///
/// Randomness is fixed by `(seed, epoch)` alone:
/// - with `shuffle`, the epoch's order is `indices` permuted by Fisher-Yates with
///   `RandomGenerator(seed: mixSeed(seed, UInt64(bitPattern: Int64(epoch))))`;
/// - the augmentation of the sample at position `p` of that order draws from
///   `RandomGenerator(seed: mixSeed(mixSeed(epochSeed, augmentationStream), UInt64(p)))`,
///   where `epochSeed` is the shuffle seed above.
/// So a batch's contents depend neither on thread timing nor on the batch size.
///
/// Iterating is safe to stop early: dropping the iterator cancels and waits for the batch
/// being prepared, so no work outlives it.
public final class BatchLoader: Sequence {
    /// A batch: images `[B, C, H, W]` Float32 and their labels `[B]`.
    public typealias Batch = (images: Tensor, labels: [Int32])

    public let set: ImageSet
    /// This epoch's order: the positions of the samples, batch after batch.
    public let order: [Int]
    public let batchSize: Int
    public let augmentation: Augmentation?
    public let normalization: Normalization
    public let seed: UInt64
    public let epoch: Int
    /// This process's part of every batch in a data-parallel run: part `index` of `count`
    /// contiguous slices of the batch's positions (0 of 1: the whole batch).
    public let part: (index: Int, count: Int)
    /// `[channels, 256]`, see `Normalization.lookupTable`.
    private let table: [Float]
    private let epochSeed: UInt64

    /// Separates the augmentation stream from the shuffle stream of the same epoch.
    private static let augmentationStream: UInt64 = 0x4155_474D  // "AUGM"

    /// - Parameters:
    ///   - indices: the images of `set` to use (e.g. the training split), each in `0..<set.count`.
    ///   - batchSize: images per batch; the last batch keeps the remainder.
    ///   - augmentation: `nil` for evaluation (normalization only).
    ///   - shuffle: whether to permute `indices` for this epoch.
    ///   - part: serve only this slice of every batch (see `part`); the order, and each sample's
    ///     augmentation, are those of the whole batch.
    public init(set: ImageSet, indices: [Int], batchSize: Int, augmentation: Augmentation? = nil,
                normalization: Normalization, shuffle: Bool, seed: UInt64, epoch: Int, part: (index: Int, count: Int) = (0, 1)) {
        precondition(batchSize > 0, "BatchLoader: batchSize must be positive, got \(batchSize)")
        precondition(part.count >= 1 && part.index >= 0 && part.index < part.count, "BatchLoader: part \(part) is not one of its count")
        self.part = part
        precondition(indices.allSatisfy { $0 >= 0 && $0 < set.count }, "BatchLoader: an index is outside 0..<\(set.count)")
        self.set = set
        self.batchSize = batchSize
        self.augmentation = augmentation
        self.normalization = normalization
        self.seed = seed
        self.epoch = epoch
        self.epochSeed = mixSeed(seed, UInt64(bitPattern: Int64(epoch)))
        self.table = normalization.lookupTable(channels: set.channels)
        if shuffle {
            var rng = RandomGenerator(seed: epochSeed)
            order = fisherYatesShuffled(indices, using: &rng)
        } else {
            order = indices
        }
    }

    /// The number of batches in the epoch, the last one possibly partial.
    public var batchCount: Int { (order.count + batchSize - 1) / batchSize }

    /// The random generator for the sample at `position` of this epoch's order.
    func sampleGenerator(position: Int) -> RandomGenerator {
        RandomGenerator(seed: mixSeed(mixSeed(epochSeed, Self.augmentationStream), UInt64(position)))
    }

    /// The number of images in batch `number` as a whole, every part's together.
    public func batchImages(_ number: Int) -> Int { Swift.min(batchSize, order.count - number * batchSize) }

    /// Batch `number` (`0..<batchCount`; this process's part of it), prepared on the calling
    /// thread (its images in parallel). Iterating the loader gives the same batches, prepared
    /// ahead.
    public func batch(_ number: Int) -> Batch {
        makeBatch(number, inParallel: true, isCancelled: { false })
    }

    /// `inParallel`: the images over the cores (`Parallel`), else one after another on this
    /// thread (a prefetch beside the training, whose parallel regions keep the cores).
    fileprivate func makeBatch(_ number: Int, inParallel: Bool, isCancelled: () -> Bool) -> Batch {
        precondition(number >= 0 && number < batchCount, "BatchLoader: batch \(number) is outside 0..<\(batchCount)")
        let start = number * batchSize, end = Swift.min(start + batchSize, order.count)
        // This process's contiguous slice of the batch's positions.
        let positions = (start + (end - start) * part.index / part.count)..<(start + (end - start) * (part.index + 1) / part.count)
        let channels = set.channels, height = set.height, width = set.width
        let imageBytes = set.imageBytes, imageFloats = imageBytes
        let images = Tensor(uninitialized: [positions.count, channels, height, width])
        let labels = positions.map { set.labels[order[$0]] }
        let output = images.data
        set.pixels.withUnsafeBufferPointer { pixels in
            table.withUnsafeBufferPointer { table in
                order.withUnsafeBufferPointer { order in
                    guard let pixelBase = pixels.baseAddress, let tableBase = table.baseAddress else { return }
                    func render(_ i: Int) {
                        if isCancelled() { return }
                        let position = positions.lowerBound + i
                        var draws = AugmentationDraws()
                        if let augmentation = augmentation {
                            var rng = sampleGenerator(position: position)
                            draws = augmentation.draw(height: height, width: width, using: &rng)
                        }
                        renderImage(source: pixelBase + order[position] * imageBytes, channels: channels,
                                    height: height, width: width, padding: augmentation?.padding ?? 0,
                                    draws: draws, table: tableBase, output: output + i * imageFloats)
                    }
                    if inParallel {
                        Parallel.forEach(positions.count, render)
                    } else {
                        for i in 0..<positions.count { render(i) }
                    }
                }
            }
        }
        return (images, labels)
    }

    public func makeIterator() -> Iterator { Iterator(self) }

    /// Yields the batches in order, each prepared while the previous one is in use.
    public final class Iterator: IteratorProtocol {
        private let loader: BatchLoader
        private var nextNumber = 0
        private var pending: Prefetch?

        init(_ loader: BatchLoader) {
            self.loader = loader
            if loader.batchCount > 0 { pending = Prefetch(loader, number: 0) }
        }

        public func next() -> Batch? {
            guard nextNumber < loader.batchCount, let current = pending else { return nil }
            let batch = current.wait()
            nextNumber += 1
            pending = nextNumber < loader.batchCount ? Prefetch(loader, number: nextNumber) : nil
            return batch
        }

        deinit { pending?.cancelAndWait() }
    }
}

/// One batch being prepared on a global queue.
private final class Prefetch: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var cancelled = false
    /// Written by the worker before it signals `finished`, read after waiting on it.
    private var result: BatchLoader.Batch?

    init(_ loader: BatchLoader, number: Int) {
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            result = loader.makeBatch(number, inParallel: false, isCancelled: { self.isCancelled })
            finished.signal()
        }
    }

    private var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }

    func wait() -> BatchLoader.Batch {
        finished.wait()
        guard let batch = result else { preconditionFailure("BatchLoader: a prefetched batch finished without a result") }
        return batch
    }

    func cancelAndWait() {
        lock.lock()
        cancelled = true
        lock.unlock()
        finished.wait()
    }
}
