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
    /// Starts replacing `values` by their sum over the processes, as `sum` does (the same bits),
    /// while the caller goes on computing; `values` must stay untouched until the returned sum's
    /// `finish()`. `slot` names the buffers the exchange uses: sums in flight at once need
    /// different slots, and a slot is reused by the next sum given it.
    func startSum(_ values: UnsafeMutablePointer<Float>, count: Int, slot: Int) -> PendingSum
}

/// A sum over the processes in flight (`ProcessGroup.startSum`).
public protocol PendingSum: AnyObject {
    /// Moves the exchange on as far as the network allows, without waiting.
    func poll()
    /// Whether the sum is complete (the values hold it).
    var isDone: Bool { get }
    /// Waits for the exchange to complete; then the values hold the sum.
    func finish()
}

extension ProcessGroup {
    /// A group that cannot overlap its sums computes them at once.
    public func startSum(_ values: UnsafeMutablePointer<Float>, count: Int, slot: Int) -> PendingSum {
        sum(values, count: count)
        return FinishedSum()
    }
}

/// A sum computed when it was started.
public final class FinishedSum: PendingSum {
    public init() {}
    public var isDone: Bool { true }
    public func poll() {}
    public func finish() {}
}

/// The engine's part in data parallelism: batch norm's statistics.
public enum DataParallel {
    /// The processes that batch norm sums its statistics over in training mode (PyTorch's
    /// SyncBatchNorm): each process normalizes its slice of the global batch with the global
    /// batch's mean and variance, and its backward pass uses the global batch's sums, as one
    /// process holding the whole batch would. nil: this process's images alone.
    nonisolated(unsafe) public static var group: ProcessGroup?
}
