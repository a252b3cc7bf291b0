/// The processes of a data-parallel run as the engine sees them: ranks `0..<size` and sums over
/// all of them. The MessagePassing module implements it over MPI; a single process has none.
///
/// Sums are deterministic: every process gets the same bits, and a rerun with as many processes
/// gets them again (the contributions are added in rank order, not in whatever order the network
/// delivers them).
public protocol ProcessGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` on every process by their elementwise sum over the processes.
    func sum(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// Replaces `values` on every process by their elementwise sum over the processes.
    func sum(_ values: UnsafeMutablePointer<Double>, count: Int)
    /// Returns once every process has called it.
    func barrier()
}

/// The engine's part in data parallelism: batch norm's statistics.
public enum DataParallel {
    /// The processes that batch norm sums its statistics over in training mode (PyTorch's
    /// SyncBatchNorm): each process normalizes its slice of the global batch with the global
    /// batch's mean and variance, and its backward pass uses the global batch's sums, as one
    /// process holding the whole batch would. nil: this process's images alone.
    nonisolated(unsafe) public static var group: ProcessGroup?
}
