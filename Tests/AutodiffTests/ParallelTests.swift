import Autodiff
import Foundation
import Synchronization
import XCTest

/// `Parallel`'s hand-off to its worker threads: every index of every region runs exactly once,
/// on the region's own body, and the region returns only when all have.
final class ParallelTests: XCTestCase {
    /// A count shared between threads.
    private final class Counter: @unchecked Sendable {
        let value = Atomic<Int>(0)
    }

    /// Runs `regions` regions of 1...`maxCount` indices each (some doing a little work, so that
    /// workers come late to some and early to others), checking per region that each index ran
    /// once with that region's body before the region returned.
    private func checkRegions(_ regions: Int, maxCount: Int, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        var rng = RandomGenerator(seed: seed)
        let slots = (0..<maxCount).map { _ in Counter() }
        let wrongBody = Counter()
        var failures = 0
        for region in 0..<regions {
            let count = 1 + Int(rng.next() % UInt64(maxCount))
            let spin = Int(rng.next() % 200)
            for slot in slots { slot.value.store(0, ordering: .relaxed) }
            let current = Counter()
            current.value.store(region, ordering: .relaxed)
            Parallel.forEach(count) { i in
                // A stale body (a previous region's) or an index beyond the count is a failure.
                if current.value.load(ordering: .relaxed) != region || i >= count {
                    wrongBody.value.add(1, ordering: .relaxed)
                    return
                }
                var x = 0
                for k in 0..<(spin * (i + 1)) { x &+= k }
                if x == -1 { print(x) }
                slots[i].value.add(1, ordering: .relaxed)
            }
            for i in 0..<maxCount where slots[i].value.load(ordering: .relaxed) != (i < count ? 1 : 0) {
                failures += 1
            }
        }
        XCTAssertEqual(failures, 0, "indices that did not run exactly once before their region returned", file: file, line: line)
        XCTAssertEqual(wrongBody.value.load(ordering: .relaxed), 0, "indices run on another region's body", file: file, line: line)
    }

    func testEveryIndexRunsOnceBeforeTheRegionReturns() {
        let saved = Parallel.workers
        defer { Parallel.workers = saved }
        // Two threads (this machine's cores), then more workers than cores: several claim at once.
        for workers in [2, 4] {
            Parallel.workers = workers
            checkRegions(20_000, maxCount: workers, seed: UInt64(workers))
        }
    }

    /// A region started inside another's body, or from a second thread while one runs, runs its
    /// indices on the calling thread: both complete, each index once.
    func testNestedAndConcurrentRegions() {
        let saved = Parallel.workers
        Parallel.workers = 2
        defer { Parallel.workers = saved }
        let inner = (0..<4).map { _ in Counter() }
        for _ in 0..<2_000 {
            Parallel.forEach(2) { i in
                Parallel.forEach(2) { j in inner[2 * i + j].value.add(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(inner.map { $0.value.load(ordering: .relaxed) }, [2_000, 2_000, 2_000, 2_000])

        let ran = (0..<2).map { _ in Counter() }
        let done = DispatchGroup()
        for t in 0..<2 {
            DispatchQueue.global().async(group: done) {
                for _ in 0..<5_000 { Parallel.forEach(2) { _ in ran[t].value.add(1, ordering: .relaxed) } }
            }
        }
        done.wait()
        XCTAssertEqual(ran.map { $0.value.load(ordering: .relaxed) }, [10_000, 10_000])
    }
}
