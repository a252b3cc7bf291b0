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

    /// The sums' send and receive buffers, kept between calls: fresh ones would cost a page
    /// fault per 4 KB on every step.
    private var sendBuffer: UnsafeMutablePointer<Float>?, receiveBuffer: UnsafeMutablePointer<Float>?
    private var bufferCapacity = 0

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
                               + "(scripts/install-deps.sh does) and build again")
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

    /// One piece: split into `size` shares (padded), each process adds up its share of every
    /// process's piece in rank order, and the shares' sums are gathered back.
    private func sumPiece(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard size > 1, count > 0 else { return }
        #if NEURALSCALE_MPI
        let share = (count + size - 1) / size
        if bufferCapacity < share * size {
            sendBuffer?.deallocate()
            receiveBuffer?.deallocate()
            bufferCapacity = share * size
            sendBuffer = .allocate(capacity: bufferCapacity)
            receiveBuffer = .allocate(capacity: bufferCapacity)
        }
        let send = sendBuffer!, receive = receiveBuffer!
        send.update(from: values, count: count)
        (send + count).update(repeating: 0, count: share * size - count)
        check(ns_mpi_alltoall_float(send, share, receive), "MPI_Alltoall")
        // receive[r * share + i]: element rank * share + i of process r's piece.
        for i in 0..<share {
            var s = receive[i]
            for r in 1..<size { s += receive[r * share + i] }
            send[i] = s
        }
        check(ns_mpi_allgather_float(send, share, receive), "MPI_Allgather")
        values.update(from: receive, count: count)
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

    private func check(_ code: Int32, _ call: String) {
        // With MPI's default error handler a failing call has already ended the job; this is
        // for handlers that return.
        if code != 0 { abort("\(call) failed with MPI error \(code)") }
    }
}
