import Autodiff

/// Splits `0..<count` into training and validation indices with a seeded shuffle.
///
/// The indices are permuted by Fisher-Yates with `RandomGenerator(seed: seed)`, the last
/// `Int((Double(count) * validationFraction).rounded())` of the permutation become the
/// validation set and the rest the training set; both are then sorted ascending. A fraction of
/// 0 gives an empty validation set.
/// - Returns: two disjoint sorted lists that together hold every index once.
public func trainValidationSplit(count: Int, validationFraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
    precondition(count >= 0, "trainValidationSplit: negative count \(count)")
    precondition(validationFraction >= 0 && validationFraction <= 1,
                 "trainValidationSplit: validationFraction \(validationFraction) is outside [0, 1]")
    var rng = RandomGenerator(seed: seed)
    let permutation = fisherYatesShuffled(Array(0..<count), using: &rng)
    let validationCount = Int((Double(count) * validationFraction).rounded())
    let cut = count - validationCount
    return (Array(permutation[..<cut]).sorted(), Array(permutation[cut...]).sorted())
}

/// Fisher-Yates: for i from the last position down to 1, swap element i with a uniform one in
/// `0...i`. Uses `uniformInt(below:)`, not the standard library's shuffle, whose algorithm is
/// not promised to stay the same across Swift versions.
public func fisherYatesShuffled(_ values: [Int], using rng: inout RandomGenerator) -> [Int] {
    var values = values
    var i = values.count - 1
    while i > 0 {
        values.swapAt(i, rng.uniformInt(below: i + 1))
        i -= 1
    }
    return values
}

extension RandomGenerator {
    /// Uniform in `0..<bound` by Lemire's multiply-and-reject method ("Fast Random Integer
    /// Generation in an Interval", 2019), exact for any bound.
    mutating func uniformInt(below bound: Int) -> Int {
        precondition(bound > 0, "uniformInt: bound must be positive, got \(bound)")
        let n = UInt64(bound)
        var product = next().multipliedFullWidth(by: n)
        if product.low < n {
            let threshold = (0 &- n) % n
            while product.low < threshold { product = next().multipliedFullWidth(by: n) }
        }
        return Int(product.high)
    }
}

/// Mixes a value into a seed: `splitmix(seed ^ splitmix(value &+ 0x9E3779B97F4A7C15))`, where
/// `splitmix` is SplitMix64's output function (Steele, Lea, Flood, "Fast splittable
/// pseudorandom number generators", 2014). Nearby seeds and values give unrelated results, so
/// `RandomGenerator(seed: mixSeed(seed, epoch))` streams of consecutive epochs are independent.
public func mixSeed(_ seed: UInt64, _ value: UInt64) -> UInt64 {
    splitmix(seed ^ splitmix(value &+ 0x9E37_79B9_7F4A_7C15))
}

private func splitmix(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
