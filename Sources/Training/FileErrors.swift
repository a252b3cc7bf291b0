import Foundation

/// One line for an error of a file operation: the POSIX reason ("No such file or directory",
/// "No space left on device") instead of Foundation's `Error Domain=... UserInfo={...}` dump.
public func describeFileError(_ error: Error) -> String {
    let ns = error as NSError
    if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(posix.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if ns.domain == NSCocoaErrorDomain {
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteOutOfSpace: return "no space left on device"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileReadCorruptFile: return "the file is corrupt"
        case .fileReadTooLarge: return "the file is too large"
        default: break
        }
    }
    return ns.localizedDescription
}

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
