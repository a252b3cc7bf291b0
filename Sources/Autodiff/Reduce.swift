/// Reductions over contiguous floats with several SIMD accumulators.
///
/// A plain `s += p[i]` loop is one long dependency chain (Swift does not reassociate float adds),
/// four times slower than memory. These keep 16 partial sums in a fixed lane order, so the result
/// is the same on every run.

@inline(__always)
func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    // Fewer than 16 (a global pool's 2x2 or 3x3 planes): the same adds in the same order as the
    // tail loop below, without the vector accumulators' setup and horizontal sum of zeros.
    if n < 16 {
        var s: Float = 0
        for i in 0..<n { s += p[i] }
        return s
    }
    let raw = UnsafeRawPointer(p)
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    var i = 0
    while i + 16 <= n {
        a0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        a1 += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
        i += 16
    }
    var s = (a0 + a1).sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// `sum(a[i] * (b[i] - center))`.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int, center: Float = 0) -> Float {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    let c = SIMD8<Float>(repeating: center)
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    var i = 0
    while i + 16 <= n {
        a0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            * (rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - c)
        a1 += ra.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            * (rb.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) - c)
        i += 16
    }
    var s = (a0 + a1).sum()
    while i < n { s += a[i] * (b[i] - center); i += 1 }
    return s
}
