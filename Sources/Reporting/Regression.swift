import Foundation

/// The least-squares line y = slope * x + intercept with its R^2, and Pearson's r with its
/// two-sided p-value (Student's t with n - 2 degrees of freedom); nil with fewer than two
/// distinct x.
public struct LeastSquares: Codable, Sendable {
    public let slope: Double, intercept: Double, r2: Double
    /// Pearson's correlation of x and y, and the p-value of r = 0 (nil with two points).
    public let r: Double, p: Double?
    public let n: Int

    public init?(x: [Double], y: [Double]) {
        let count = Double(x.count)
        guard x.count == y.count, x.count >= 2 else { return nil }
        let mx = x.reduce(0, +) / count, my = y.reduce(0, +) / count
        let sxx = x.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }, syy = y.reduce(0) { $0 + ($1 - my) * ($1 - my) }
        let sxy = zip(x, y).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
        guard sxx > 0 else { return nil }
        let m = sxy / sxx, b = my - m * mx
        let residual = zip(x, y).reduce(0) { $0 + pow($1.1 - (m * $1.0 + b), 2) }
        slope = m
        intercept = b
        r2 = syy > 0 ? 1 - residual / syy : 1
        n = x.count
        // Rounding can carry |r| past 1 (two points: about one fit in seven).
        let rr = syy > 0 ? min(1, max(-1, sxy / (sxx * syy).squareRoot())) : 1
        r = rr
        if x.count > 2 {
            let df = count - 2
            p = abs(rr) >= 1 ? 0 : studentTwoSidedP(t: rr * (df / (1 - rr * rr)).squareRoot(), df: df)
        } else {
            p = nil
        }
    }
}

extension LeastSquares {
    /// P(|T| >= |t|) for Student's t with `df` degrees of freedom.
    public static func twoSidedP(t: Double, df: Double) -> Double { studentTwoSidedP(t: t, df: df) }
}

/// P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2).
func studentTwoSidedP(t: Double, df: Double) -> Double {
    regularizedIncompleteBeta(df / (df + t * t), a: df / 2, b: 0.5)
}

/// I_x(a, b) by its continued fraction (Lentz's method), with the symmetry
/// I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
    if x <= 0 { return 0 }
    if x >= 1 { return 1 }
    if x > (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(1 - x, a: b, b: a) }
    let logGammas: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
    let logPowers: Double = a * log(x) + b * log(1 - x)
    let front = exp(logGammas + logPowers)
    let tiny = 1e-300
    var c = 1.0, d = 1 - (a + b) * x / (a + 1)
    if abs(d) < tiny { d = tiny }
    d = 1 / d
    var f = d
    for i in 1...300 {
        let m = Double(i)
        var numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 + numerator * d
        if abs(d) < tiny { d = tiny }
        c = 1 + numerator / c
        if abs(c) < tiny { c = tiny }
        d = 1 / d
        f *= d * c
        numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + numerator * d
        if abs(d) < tiny { d = tiny }
        c = 1 + numerator / c
        if abs(c) < tiny { c = tiny }
        d = 1 / d
        let delta = d * c
        f *= delta
        if abs(delta - 1) < 1e-15 { break }
    }
    return front * f / a
}
