import ArgumentParser
import Autodiff
import Foundation

/// The values of a comma-separated flag, each parsed by `parse` (nil: not a valid value).
/// - Throws: `ValidationError` "`flag` must be comma-separated `what`, got '`text`'".
func commaSeparated<T>(_ text: String, flag: String, _ what: String, _ parse: (String) -> T?) throws -> [T] {
    let values = text.split(separator: ",").map { parse($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("\(flag) must be comma-separated \(what), got '\(text)'") }
    return values.map { $0! }
}

/// `--winograd auto|off|2|4`: which 3x3 stride-1 convolutions use Winograd's algorithm
/// (`Conv2DTuning.winograd`), for the benchmarks' before/after comparisons.
extension Conv2DTuning.Winograd: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "auto": self = .auto
        case "off": self = .off
        case "2": self = .tile(2)
        case "4": self = .tile(4)
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["auto", "off", "2", "4"] }
    public var defaultValueDescription: String {
        switch self {
        case .auto: return "auto"
        case .off: return "off"
        case let .tile(m): return "\(m)"
        }
    }
}

/// The help text of every `--winograd` option.
let winogradHelp = ArgumentHelp("""
    3x3 stride-1 convolutions by Winograd's algorithm: 'auto' where it pays (enough channels, \
    planes of 2x2 and more), 'off' (im2col and GEMM everywhere), or '2' / '4' to force output \
    tiles of that size wherever it applies.
    """)
