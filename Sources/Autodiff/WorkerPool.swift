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
/// Which thread runs which index does not matter to the results: every index's work is
/// independent of the others', as `Parallel` requires of its callers.
final class WorkerPool: @unchecked Sendable {
    /// One job: `count` indices handed out in order to whichever thread asks first.
    private final class Job {
        /// Cleared once every index has run: a worker that joins late may still hold the job.
        var body: ((Int) -> Void)?
        let count: Int
        let next = Atomic<Int>(0)
        let remaining: Atomic<Int>
        init(_ body: @escaping (Int) -> Void, count: Int) {
            self.body = body
            self.count = count
            remaining = Atomic(count)
        }

        /// Runs indices until none is left.
        func work() {
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < count else { return }
                body!(i)
                remaining.subtract(1, ordering: .releasing)
            }
        }
    }

    /// How long an idle worker spins before it sleeps.
    static let spinSeconds = 200e-6

    /// Bumped once per job; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// Workers asleep (or about to be) on `wake`.
    private let sleepers = Atomic<Int>(0)
    /// Held by the thread that runs a job: one job at a time.
    private let busy = Atomic<Bool>(false)
    private var current: Job?
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

    /// Runs `body(i)` for every `i` in `0..<count` on the calling thread and `workers` workers,
    /// and returns when all have returned. Returns false without running anything when another
    /// job is running (a call from inside a job, or from a second thread): the caller then runs
    /// the indices itself.
    func run(_ count: Int, workers: Int, _ body: (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        ensureThreads(workers)
        withoutActuallyEscaping(body) { body in
            let job = Job(body, count: count)
            pthread_mutex_lock(&lock)
            current = job
            pthread_mutex_unlock(&lock)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(&lock)
                pthread_cond_broadcast(&wake)
                pthread_mutex_unlock(&lock)
            }
            job.work()
            while job.remaining.load(ordering: .acquiring) > 0 { ns_cpu_relax() }
            // A worker that joins late finds every index taken and never calls `body`.
            pthread_mutex_lock(&lock)
            current = nil
            job.body = nil
            pthread_mutex_unlock(&lock)
        }
        return true
    }

    private func workerLoop() {
        var seen = generation.load(ordering: .acquiring)
        while true {
            // Spin for a while, then sleep, until a job is published.
            let start = monotonicSeconds()
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                ns_cpu_relax()
                spins += 1
                if spins & 255 == 0, monotonicSeconds() - start > Self.spinSeconds {
                    pthread_mutex_lock(&lock)
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen { pthread_cond_wait(&wake, &lock) }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(&lock)
                }
            }
            seen = generation.load(ordering: .acquiring)
            pthread_mutex_lock(&lock)
            let job = current
            pthread_mutex_unlock(&lock)
            job?.work()
        }
    }
}
