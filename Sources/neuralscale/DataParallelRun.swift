import Autodiff
import MessagePassing
import Foundation
import Training

/// A `train` or `descend` started by `mpirun`: the processes' group, this host's cores divided
/// among its processes, and the rules every command follows in such a run.
struct DataParallelRun {
    /// nil for a single process.
    let group: MPIGroup?

    /// Starts MPI when launched by `mpirun` (nothing otherwise) and gives each process of this
    /// host its share of the cores, unless NEURALSCALE_THREADS says otherwise.
    static func launch() throws -> DataParallelRun {
        guard let group = try MPIGroup.launch() else { return DataParallelRun(group: nil) }
        // The host's cores shared among its processes, unless a usable NEURALSCALE_THREADS says
        // otherwise (one that is not a count fell back to all the cores in every process).
        if Parallel.requestedWorkers == nil {
            Parallel.workers = max(1, ProcessInfo.processInfo.activeProcessorCount / group.localSize)
        }
        if group.rank == 0 {
            FileHandle.standardError.write(Data(("data-parallel: \(group.size) processes, \(Parallel.workers) threads each, "
                                                 + "\(MPIGroup.libraryVersion)\n").utf8))
        }
        return DataParallelRun(group: group)
    }

    /// Refuses a global batch smaller than the process count: each process takes a part of
    /// every batch, and with fewer images than processes every batch was skipped (a search ran
    /// empty epochs without end; a training trained nothing and reported it; a benchmark
    /// trapped in batch norm on an empty part).
    func requireBatch(_ batchSize: Int) throws {
        guard let group, batchSize < group.size else { return }
        throw TrainingError.invalidConfig("--batch-size \(batchSize) is smaller than the \(group.size) processes: each takes a part "
                                          + "of every batch; use a batch of at least \(group.size)")
    }

    /// Whether this process reports and writes: the only one, or rank 0.
    var leads: Bool { (group?.rank ?? 0) == 0 }

    /// Runs `body`; in a data-parallel run, an error on any process ends every process (with
    /// the error on stderr) instead of leaving the others waiting in a sum. The errors every
    /// process meets at the same step (a stop request, a NaN loss: decided on summed values) end
    /// MPI normally and are reported by process 0 alone, as a single process reports them.
    func run<T>(_ body: () throws -> T) throws -> T {
        guard let group, group.size > 1 else {
            defer { group?.finish() }
            return try body()
        }
        do {
            let result = try body()
            group.finish()
            return result
        } catch let error as TrainingError {
            switch error {
            case .interrupted, .interruptedBeforeCheckpoint, .nonFiniteLoss:
                group.finish()
                if leads { throw error }
                exit(1)
            default:
                group.abort(oneLine(error))
            }
        } catch {
            group.abort(oneLine(error))
        }
    }
}
