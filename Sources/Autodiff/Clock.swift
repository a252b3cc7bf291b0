import Foundation

/// Seconds on a monotonic clock (unaffected by changes of the wall clock), for timing.
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
