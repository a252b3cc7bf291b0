import ArgumentParser
import Foundation

/// The values of a comma-separated flag, each parsed by `parse` (nil: not a valid value).
/// - Throws: `ValidationError` "`flag` must be comma-separated `what`, got '`text`'".
func commaSeparated<T>(_ text: String, flag: String, _ what: String, _ parse: (String) -> T?) throws -> [T] {
    let values = text.split(separator: ",").map { parse($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("\(flag) must be comma-separated \(what), got '\(text)'") }
    return values.map { $0! }
}
