import CKernels
import Foundation

/// Splits work across the machine's cores.
///
/// Every kernel that uses it computes each output element (or each per-channel reduction) with
/// the same code path whatever the split, so results are bit-identical for any thread count.
public enum Parallel {
    /// Worker count: the active cores, or `NEURALSCALE_THREADS` when set (a sweep running
    /// several runs at once divides the cores among them). Results do not depend on it.
    nonisolated(unsafe) public static var workers: Int = {
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        guard let text = ProcessInfo.processInfo.environment["NEURALSCALE_THREADS"] else { return cores }
        if let n = requestedWorkers { return n }
        // Set but unusable (0, -1, "abc", 1.5): said, not silently replaced.
        FileHandle.standardError.write(Data("warning: NEURALSCALE_THREADS='\(text)' is not a thread count in 1...1024; ignored (the default: the cores, shared among a data-parallel run's processes)\n".utf8))
        return cores
    }()

    /// `NEURALSCALE_THREADS` when it is a thread count in 1...1024, else nil.
    public static var requestedWorkers: Int? {
        ProcessInfo.processInfo.environment["NEURALSCALE_THREADS"].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            .flatMap { (1...1024).contains($0) ? $0 : nil }
    }

    /// Calls `body` on disjoint sub-ranges covering `0..<count`, concurrently.
    /// `grain` is the smallest range worth a thread of its own.
    @inline(__always)
    public static func forRange(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = min(workers, max(1, count / max(grain, 1)))
        if chunks <= 1 || ns_serial_depth() > 0 { body(0..<count); return }
        func chunk(_ k: Int) {
            let lo = count * k / chunks, hi = count * (k + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
        // Inside another parallel region (or beside one on another thread) the chunks run here.
        if !pool.run(chunks, workers: workers - 1, chunk) { for k in 0..<chunks { chunk(k) } }
    }

    /// Runs `body` with every parallel region it starts (on this thread) run by this thread alone,
    /// as with one worker: the same pieces in order, so the same bits. For work too small to pay
    /// for the hand-off: a job of a few microseconds waits as long for the other threads to join
    /// and finish as it gains, and more when the machine runs them on one core's two hardware
    /// threads.
    @inline(__always)
    public static func serially<T>(_ body: () throws -> T) rethrows -> T {
        let depth = ns_serial_depth()
        ns_set_serial_depth(depth + 1)
        defer { ns_set_serial_depth(depth) }
        return try body()
    }

    /// The threads that run the chunks with the caller.
    static let pool = WorkerPool()

    /// The number of pieces GEMM work is cut into: fixed by the machine, not by `workers`.
    ///
    /// OpenBLAS's result for an element depends (in the last bits) on where the GEMM's column
    /// blocks end, so kernels that split a GEMM cut it into this many pieces whatever the worker
    /// count, and the same inputs give the same bits with one worker or all of them.
    public static let gemmPieces = max(2, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body` on the `pieces` sub-ranges `count*k/pieces ..< count*(k+1)/pieces` of
    /// `0..<count` (empty ones skipped), spread over the workers. The boundaries depend only on
    /// `count` and `pieces`.
    @inline(__always)
    public static func forPieces(_ count: Int, pieces: Int = gemmPieces, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let piece = { (k: Int) -> Range<Int> in (count * k / pieces)..<(count * (k + 1) / pieces) }
        if workers <= 1 || ns_serial_depth() > 0 {
            for k in 0..<pieces where !piece(k).isEmpty { body(piece(k)) }
            return
        }
        forEach(pieces) { k in
            let r = piece(k)
            if !r.isEmpty { body(r) }
        }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, concurrently.
    @inline(__always)
    public static func forEach(_ count: Int, grain: Int = 1, _ body: (Int) -> Void) {
        forRange(count, grain: grain) { r in for i in r { body(i) } }
    }
}
