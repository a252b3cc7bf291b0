import CKernels
import Foundation
import Synchronization

/// The threads `Parallel` runs work on: one fewer than the workers, the calling thread being the
/// last, kept spinning for a moment after each job so that the next one starts at once.
///
/// A net's step is hundreds of parallel regions, many of them tens of microseconds long (an
/// inference of one image, or the small maps of a net's last stages). Waking sleeping threads for
/// each (as `DispatchQueue.concurrentPerform` does) costs several microseconds per region and
/// per thread, a quarter of a MobileNetV2 inference; spinning workers pick a job up in well under
/// one. A worker that sees no job for `spinSeconds` sleeps until the next.
///
/// A job is one word, `claim`: its number, its index count and the next index to hand out. The
/// calling thread publishes a job with one store; every thread takes indices by compare-and-swap
/// on that word, so a worker that comes late to a job finished and replaced meanwhile sees
/// another number and takes nothing. Nothing is allocated or locked per job, and the word the
/// workers spin on is written once per job and by the claims only, on a cache line of its own:
/// a region costs a few transfers of that line between the cores (before, the job was an object
/// of its own published under a mutex beside the spinning workers' word, and every region moved
/// that line between the cores five or six times).
///
/// Which thread runs which index does not matter to the results: every index's work is
/// independent of the others', as `Parallel` requires of its callers.
final class WorkerPool: @unchecked Sendable {
    /// How long an idle worker spins before it sleeps.
    static let spinSeconds = 200e-6

    // Bits of `claim`: the job's number, its index count, the next index.
    private static let indexBits = 20, countBits = 20
    private static let indexMask = (1 << indexBits) - 1, countMask = (1 << countBits) - 1
    private static let numberShift = indexBits + countBits, numberMask = (1 << (64 - numberShift - 1)) - 1
    /// The most indices one job has.
    static let maxCount = indexMask

    // Read by spinning workers: the job word and the job's body, written once per job.
    private let linePadding0 = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private let claim = Atomic<Int>(0)
    /// The address of the running job's body, a `(Int) -> Void` on the publishing thread's stack.
    private let body = Atomic<Int>(0)
    private let linePadding1 = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    /// Indices finished, over all jobs: a job is done when it has grown by the job's count.
    private let finished = Atomic<Int>(0)
    private let linePadding2 = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    // The publishing thread's own state, and the sleepers'.
    /// Held by the thread that runs a job: one job at a time.
    private let busy = Atomic<Bool>(false)
    /// Workers asleep (or about to be) on `wake`.
    private let sleepers = Atomic<Int>(0)
    private var number = 0
    private var finishedTotal = 0
    private var lock = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private(set) var threads = 0

    init() {
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&wake, nil)
    }

    /// Starts workers until there are `count`. Called by the thread that holds `busy`.
    private func ensureThreads(_ count: Int) {
        while threads < count {
            threads += 1
            let thread = Thread { [unowned self] in self.workerLoop() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Takes indices of job `number` from `claim`, starting from the word `word` read last, and
    /// runs them; returns how many it ran.
    @inline(__always)
    private func work(number: Int, from word: Int, _ run: (Int) -> Void) -> Int {
        var word = word, ran = 0
        while word >> Self.numberShift == number {
            let index = word & Self.indexMask
            guard index < (word >> Self.indexBits) & Self.countMask else { break }
            let (exchanged, seen) = claim.compareExchange(expected: word, desired: word + 1, ordering: .acquiring)
            if exchanged {
                run(index)
                ran += 1
                word += 1
            } else {
                word = seen
            }
        }
        return ran
    }

    /// Runs `body(i)` for every `i` in `0..<count` on the calling thread and `workers` workers,
    /// and returns when all have returned. Returns false without running anything when another
    /// job is running (a call from inside a job, or from a second thread): the caller then runs
    /// the indices itself.
    func run(_ count: Int, workers: Int, _ body: (Int) -> Void) -> Bool {
        precondition(count <= Self.maxCount, "WorkerPool: \(count) indices in one job (at most \(Self.maxCount))")
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        ensureThreads(workers)
        withoutActuallyEscaping(body) { escapable in
            var job = escapable
            withUnsafeMutablePointer(to: &job) { address in
                number = (number + 1) & Self.numberMask
                let word = number << Self.numberShift | count << Self.indexBits
                self.body.store(Int(bitPattern: address), ordering: .relaxed)
                claim.store(word, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    pthread_mutex_lock(&lock)
                    pthread_cond_broadcast(&wake)
                    pthread_mutex_unlock(&lock)
                }
                let ran = work(number: number, from: word, address.pointee)
                finishedTotal += count
                if finished.add(ran, ordering: .acquiringAndReleasing).newValue != finishedTotal {
                    while finished.load(ordering: .acquiring) != finishedTotal { ns_cpu_relax() }
                }
            }
        }
        return true
    }

    private func workerLoop() {
        var seen = claim.load(ordering: .acquiring) >> Self.numberShift
        while true {
            // Spin for a while, then sleep, until a job is published.
            var word = claim.load(ordering: .acquiring)
            if word >> Self.numberShift == seen {
                let start = monotonicSeconds()
                var spins = 0
                repeat {
                    ns_cpu_relax()
                    spins += 1
                    if spins & 255 == 0, monotonicSeconds() - start > Self.spinSeconds {
                        pthread_mutex_lock(&lock)
                        sleepers.add(1, ordering: .sequentiallyConsistent)
                        while claim.load(ordering: .sequentiallyConsistent) >> Self.numberShift == seen {
                            pthread_cond_wait(&wake, &lock)
                        }
                        sleepers.subtract(1, ordering: .sequentiallyConsistent)
                        pthread_mutex_unlock(&lock)
                    }
                    word = claim.load(ordering: .acquiring)
                } while word >> Self.numberShift == seen
            }
            seen = word >> Self.numberShift
            // The body is read only after an index is claimed: until then the job may already be
            // over and its body gone.
            let ran = work(number: seen, from: word) { index in
                UnsafePointer<(Int) -> Void>(bitPattern: body.load(ordering: .relaxed))!.pointee(index)
            }
            if ran > 0 { finished.add(ran, ordering: .releasing) }
        }
    }
}
