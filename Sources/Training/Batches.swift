import Autodiff
import Checkpoint

/// A labelled batch: images [B, C, H, W] and B class indices; in a data-parallel run, this
/// process's slice of a global batch of `globalCount` images.
public struct Batch {
    public let images: Tensor
    public let labels: [Int32]
    public let globalCount: Int

    public init(images: Tensor, labels: [Int32], globalCount: Int? = nil) {
        self.images = images
        self.labels = labels
        self.globalCount = globalCount ?? labels.count
    }
}

/// Where a trainer gets its data: a fixed set of samples, served in batches.
public protocol BatchSource {
    var sampleCount: Int { get }
    var batchCount: Int { get }
    /// The batches of epoch `epoch` (0-based), in order. The same epoch must give the same
    /// batches, on every run: that is what makes `--resume` exact.
    func batches(epoch: Int) -> AnyIterator<Batch>
}
