import Foundation
import XCTest

@testable import Autodiff

/// The pool's large buffers: 2 MB aligned and advised for transparent huge pages.
final class BufferPoolTests: XCTestCase {
    /// The system's THP mode, the bracketed word of `enabled` ("always", "madvise", "never"), or
    /// nil where the file is missing (no THP, or not Linux).
    private func hugePageMode() -> String? {
        guard let text = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8),
              let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close
        else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// `THPeligible` of the mapping of /proc/self/smaps that holds `address`.
    private func hugePageEligible(_ address: UnsafeMutablePointer<Float>) throws -> Bool {
        // Read to the end: /proc's files report a size of 0.
        guard let data = FileHandle(forReadingAtPath: "/proc/self/smaps")?.readDataToEndOfFile() else {
            throw XCTSkip("no /proc/self/smaps")
        }
        let smaps = String(decoding: data, as: UTF8.self)
        let target = UInt(bitPattern: address)
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 1)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= target && target < bounds[1]
            } else if inside, line.hasPrefix("THPeligible:") {
                return line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces) == "1"
            }
        }
        throw XCTSkip("no THPeligible line for the buffer's mapping in /proc/self/smaps")
    }

    func testLargeBuffersAreAlignedAndAdvisedForHugePages() throws {
        guard let mode = hugePageMode(), mode != "never", BufferPool.hugePages else {
            throw XCTSkip("transparent huge pages are off or absent here, or larger than the pool uses")
        }
        // Counts no other test allocates, so that the buffers are fresh, not pooled.
        let large = Tensor.zeros([(BufferPool.hugePageBytes * 3) / 4 + 4099])
        XCTAssertEqual(UInt(bitPattern: large.data) % UInt(BufferPool.hugePageBytes), 0, "a buffer over 2 MB starts on a 2 MB boundary")
        let eligible = try hugePageEligible(large.data)
        XCTAssertTrue(eligible, "a buffer over 2 MB is advised for huge pages (under THP mode '\(mode)')")

        let small = Tensor.zeros([1000 + 3])
        XCTAssertEqual(UInt(bitPattern: small.data) % 64, 0, "every buffer is 64-byte aligned")
    }
}
