import Autodiff
import Foundation

/// Damage as a bad disk, a cut download or a hand edit does it, for fuzzing the JSON readers.
public enum JSONMutation {
    /// Values a damaged or hand-edited file may hold where a number was.
    private static let extremes = ["0", "-1", "1e308", "-1e308", "1e999", "-1e999", "1e-320", "9223372036854775807", "-9223372036854775808",
                                   "18446744073709551616", "1e19", "0.5", "NaN", "null", "\"x\"", "[]", "{}", "true", "2147483648", "16385"]

    /// `text` with one random change: a number replaced by an extreme, a byte flipped, a cut, or
    /// a span deleted or repeated.
    public static func mutate(_ text: String, _ rng: inout RandomGenerator) -> String {
        var bytes = Array(text.utf8)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
        switch pick(5) {
        case 0, 1:
            // Replace the k-th number with an extreme value.
            let numbers = try! NSRegularExpression(pattern: "-?[0-9][0-9.eE+-]*").matches(in: text, range: NSRange(text.startIndex..., in: text))
            guard !numbers.isEmpty else { return text }
            let m = numbers[pick(numbers.count)]
            let r = Range(m.range, in: text)!
            return text.replacingCharacters(in: r, with: extremes[pick(extremes.count)])
        case 2:
            let i = pick(bytes.count)
            bytes[i] ^= UInt8(1 << pick(8))
        case 3:
            bytes = Array(bytes.prefix(pick(bytes.count)))
        default:
            let i = pick(bytes.count), n = min(pick(40) + 1, bytes.count - i)
            if pick(2) == 0 { bytes.removeSubrange(i..<(i + n)) } else { bytes.insert(contentsOf: bytes[i..<(i + n)], at: i) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
