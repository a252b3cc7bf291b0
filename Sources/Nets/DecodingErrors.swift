import Foundation

/// One line for a JSON decoding error: the field at fault and what is wrong with it. `data`, the
/// text decoded, tells a syntax error from a number that does not fit its field, which
/// Foundation on Linux reports alike ("not valid JSON", no field) for -1 in an unsigned field,
/// 16.5 in a whole-number one or 1e30 in either.
public func describeDecodingError(_ error: Error, data: Data? = nil) -> String {
    func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
    switch error {
    case let DecodingError.keyNotFound(key, c):
        let parent = path(c)
        return "field '\(parent.isEmpty ? "" : parent + ".")\(key.stringValue)' is missing"
    case let DecodingError.typeMismatch(_, c), let DecodingError.valueNotFound(_, c):
        return c.codingPath.isEmpty ? "the file's top level has the wrong type (expected an object)" : "field '\(path(c))' has the wrong type"
    case let DecodingError.dataCorrupted(c):
        guard c.codingPath.isEmpty else { return "field '\(path(c))' is invalid: \(c.debugDescription)" }
        if let data, (try? JSONSerialization.jsonObject(with: data)) != nil {
            return "a number does not fit its field (a negative count, a fraction where a whole number belongs, or one too large)"
        }
        return "not valid JSON"
    default: return "\(error)"
    }
}
