import Autodiff
import Foundation
#if NEURALSCALE_MPI
import CMPIShim
#endif

/// Why a data-parallel run cannot start.
public struct DistributedError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The processes of a run started by `mpirun` (Open MPI), over MPI_COMM_WORLD.
///
/// Sums are deterministic and identical on every process: each process sends every other its
/// share of the vector (MPI_Alltoall), adds the pieces it receives in rank order, and the sums are
/// gathered back (MPI_Allgather). MPI moves the bytes; no reduction order is left to its
/// algorithms, which may differ with the message size or between processes.
public final class MPIGroup: ProcessGroup {
    public let rank: Int
    public let size: Int
    /// Processes on this host (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE), to divide its cores.
    public let localSize: Int

    /// Floats exchanged per call of the collective: larger sums go in pieces of this size, so the
    /// buffers stay bounded whatever the net.
    public static var bucket = 1 << 22

    /// The sums' send and receive buffers by slot (`startSum`; -1: `sum`'s own), kept between
    /// calls: fresh ones would cost a page fault per 4 KB on every step.
    private var buffers: [Int: (send: UnsafeMutablePointer<Float>, receive: UnsafeMutablePointer<Float>, capacity: Int)] = [:]

    private init(rank: Int, size: Int, localSize: Int) {
        self.rank = rank
        self.size = size
        self.localSize = localSize
    }

    /// True when this process was started by `mpirun` (Open MPI or PMIx set these).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    /// How many processes the launcher started, from its environment, without initializing MPI:
    /// Open MPI's `mpirun` (`OMPI_COMM_WORLD_SIZE`), Slurm's `srun` with PMIx or PMI-2
    /// (`SLURM_STEP_NUM_TASKS` beside `PMIX_RANK` or `PMI_RANK`), or a PMI-1 launcher (`PMI_SIZE`); nil when none says.
    public static var launchedProcesses: Int? {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] { if let n = env[key].flatMap(Int.init) { return n } }
        if env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil, let n = env["SLURM_STEP_NUM_TASKS"].flatMap(Int.init) { return n }
        return nil
    }

    /// Whether this build can run over MPI (Open MPI's headers and library were there when it
    /// was built: `libopenmpi-dev`).
    public static var available: Bool {
        #if NEURALSCALE_MPI
        return true
        #else
        return false
        #endif
    }

    /// The group of this run: MPI initialized when started by `mpirun`, nil otherwise (one
    /// process, no MPI). Call once, before any work.
    /// - Throws: `DistributedError` when started by `mpirun` but built without MPI.
    public static func launch() throws -> MPIGroup? {
        guard launchedByMPI else { return nil }
        #if NEURALSCALE_MPI
        guard ns_mpi_init() == 0 else { throw DistributedError("MPI_Init_thread failed") }
        let env = ProcessInfo.processInfo.environment
        let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        return MPIGroup(rank: Int(ns_mpi_rank()), size: Int(ns_mpi_size()), localSize: max(1, local))
        #else
        throw DistributedError("started by mpirun, but this neuralscale was built without MPI: install libopenmpi-dev "
                               + "(scripts/install-deps.sh does) and build again (if it is installed, SwiftPM reused a manifest "
                               + "evaluated before: build with NEURALSCALE_MPI=1, or remove ~/.cache/org.swift.swiftpm/manifests)")
        #endif
    }

    /// MPI's library version, for logs.
    public static var libraryVersion: String {
        #if NEURALSCALE_MPI
        var buffer = [CChar](repeating: 0, count: 512)
        ns_mpi_library_version(&buffer, buffer.count)
        return String(cString: buffer).split(separator: "\n").first.map(String.init) ?? ""
        #else
        return "none"
        #endif
    }

    public func sum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        var first = 0
        while first < count {
            let n = min(Self.bucket, count - first)
            sumPiece(values + first, count: n)
            first += n
        }
    }

    public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        // Statistics: a few values, each process's all gathered and added in rank order.
        guard size > 1, count > 0 else { return }
        #if NEURALSCALE_MPI
        let all = UnsafeMutablePointer<Double>.allocate(capacity: count * size)
        defer { all.deallocate() }
        check(ns_mpi_allgather_double(values, count, all), "MPI_Allgather")
        for i in 0..<count {
            var s = all[i]
            for r in 1..<size { s += all[r * count + i] }
            values[i] = s
        }
        #endif
    }

    /// One piece, summed at once on MPI_COMM_WORLD (`sum`'s own buffers).
    private func sumPiece(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard size > 1, count > 0 else { return }
        #if NEURALSCALE_MPI
        let share = (count + size - 1) / size
        let (send, receive) = buffers(slot: -1, floats: share * size)
        send.update(from: values, count: count)
        (send + count).update(repeating: 0, count: share * size - count)
        check(ns_mpi_alltoall_float(send, share, receive), "MPI_Alltoall")
        addShares(receive, share: share, into: send)
        check(ns_mpi_allgather_float(send, share, receive), "MPI_Allgather")
        values.update(from: receive, count: count)
        #endif
    }

    /// The send and receive buffers of `slot`, at least `floats` long.
    private func buffers(slot: Int, floats: Int) -> (send: UnsafeMutablePointer<Float>, receive: UnsafeMutablePointer<Float>) {
        if let b = buffers[slot], b.capacity < floats {
            b.send.deallocate()
            b.receive.deallocate()
            buffers[slot] = nil
        }
        if buffers[slot] == nil { buffers[slot] = (.allocate(capacity: floats), .allocate(capacity: floats), floats) }
        let b = buffers[slot]!
        return (b.send, b.receive)
    }

    /// This process's share of the sum: `received[r * share + i]` is element `rank * share + i`
    /// of process r's values; their sum over r, in rank order, into `sums[i]`.
    fileprivate func addShares(_ received: UnsafeMutablePointer<Float>, share: Int, into sums: UnsafeMutablePointer<Float>) {
        for i in 0..<share {
            var s = received[i]
            for r in 1..<size { s += received[r * share + i] }
            sums[i] = s
        }
    }

    /// The sum of `sum`, started: `values` split into `size` shares (padded); each process sends
    /// every other its share (MPI_Ialltoall), adds up the pieces of its own share in rank order,
    /// and the shares' sums are gathered back (MPI_Iallgather). The two exchanges move on when
    /// polled (MPI progresses non-blocking collectives inside its calls), on a communicator of
    /// the slot's own (see `ns_mpi_ialltoall_float`). `slot` >= 0.
    public func startSum(_ values: UnsafeMutablePointer<Float>, count: Int, slot: Int) -> PendingSum {
        precondition(slot >= 0, "startSum: slots are >= 0")
        guard size > 1, count > 0 else { return FinishedSum() }
        #if NEURALSCALE_MPI
        let share = (count + size - 1) / size
        let (send, receive) = buffers(slot: slot, floats: share * size)
        return MPIPendingSum(group: self, values: values, count: count, share: share, slot: slot, send: send, receive: receive)
        #else
        return FinishedSum()
        #endif
    }

    /// Waits until every process has called it.
    public func barrier() {
        #if NEURALSCALE_MPI
        check(ns_mpi_barrier(), "MPI_Barrier")
        #endif
    }

    /// Rank 0's `count` bytes at `buffer` into every process's.
    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int) {
        guard size > 1, count > 0 else { return }
        #if NEURALSCALE_MPI
        check(ns_mpi_broadcast_bytes(buffer, count, 0), "MPI_Bcast")
        #endif
    }

    /// Ends every process of the job (after `message` on stderr): what a process that cannot
    /// go on does, so that the others do not wait for it forever.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("error (rank \(rank) of \(size)): \(message)\n".utf8))
        #if NEURALSCALE_MPI
        ns_mpi_abort(code)
        #endif
        exit(code)
    }

    /// MPI_Finalize: the end of a run that went well.
    public func finish() {
        #if NEURALSCALE_MPI
        if ns_mpi_active() != 0 { _ = ns_mpi_finalize() }
        #endif
    }

    fileprivate func check(_ code: Int32, _ call: String) {
        // With MPI's default error handler a failing call has already ended the job; this is
        // for handlers that return.
        if code != 0 { abort("\(call) failed with MPI error \(code)") }
    }
}

#if NEURALSCALE_MPI
/// A sum of `MPIGroup.startSum` in flight: exchanging shares, then gathering the sums.
final class MPIPendingSum: PendingSum {
    private let group: MPIGroup
    private let values: UnsafeMutablePointer<Float>
    private let count: Int, share: Int, slot: Int32
    private let send: UnsafeMutablePointer<Float>, receive: UnsafeMutablePointer<Float>
    private var request: UnsafeMutableRawPointer?
    private enum Phase { case exchanging, gathering, done }
    private var phase = Phase.exchanging

    init(group: MPIGroup, values: UnsafeMutablePointer<Float>, count: Int, share: Int, slot: Int, send: UnsafeMutablePointer<Float>,
         receive: UnsafeMutablePointer<Float>) {
        self.group = group
        self.values = values
        self.count = count
        self.share = share
        self.slot = Int32(slot)
        self.send = send
        self.receive = receive
        send.update(from: values, count: count)
        (send + count).update(repeating: 0, count: share * group.size - count)
        group.check(ns_mpi_ialltoall_float(send, share, receive, self.slot, &request), "MPI_Ialltoall")
    }

    var isDone: Bool { phase == .done }

    func poll() {
        while phase != .done {
            var done: Int32 = 0
            group.check(ns_mpi_test(&request, &done), "MPI_Test")
            guard done != 0 else { return }
            advance()
        }
    }

    func finish() {
        while phase != .done {
            group.check(ns_mpi_wait(&request), "MPI_Wait")
            advance()
        }
    }

    /// The exchange in flight has completed: add the shares, or take the gathered sums.
    private func advance() {
        switch phase {
        case .exchanging:
            group.addShares(receive, share: share, into: send)
            group.check(ns_mpi_iallgather_float(send, share, receive, slot, &request), "MPI_Iallgather")
            phase = .gathering
        case .gathering:
            values.update(from: receive, count: count)
            phase = .done
        case .done:
            break
        }
    }
}
#endif
