import Foundation

/// One line for a JSON decoding error: the field at fault and what is wrong with it.
public func describeDecodingError(_ error: Error) -> String {
    func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
    switch error {
    case let DecodingError.keyNotFound(key, c):
        let parent = path(c)
        return "field '\(parent.isEmpty ? "" : parent + ".")\(key.stringValue)' is missing"
    case let DecodingError.typeMismatch(_, c), let DecodingError.valueNotFound(_, c):
        return "field '\(path(c))' has the wrong type"
    case let DecodingError.dataCorrupted(c):
        return c.codingPath.isEmpty ? "not valid JSON" : "field '\(path(c))' is invalid: \(c.debugDescription)"
    default: return "\(error)"
    }
}
