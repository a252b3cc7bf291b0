import Foundation

/// The reason a file operation failed, in one line, as the system says it ("No such file or
/// directory", "Permission denied", "Is a directory"), whatever reported it: Foundation's
/// `CocoaError` (whose raw form is "Error Domain=NSCocoaErrorDomain Code=260 ... UserInfo={...}"),
/// a `POSIXError`, or one of this module's `DatasetError`s.
///
/// The POSIX reason underlying a Foundation error is preferred; a Foundation error without one
/// is named by its code; anything else gives its description's first line.
public func fileErrorReason(_ error: Error) -> String {
    if case let .unreadableFile(_, reason)? = error as? DatasetError { return reason }
    if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
    let nsError = error as NSError
    if nsError.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(truncatingIfNeeded: nsError.code))) }
    if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying !== nsError {
        return fileErrorReason(underlying)
    }
    if nsError.domain == NSCocoaErrorDomain, let reason = cocoaReasons[nsError.code] { return reason }
    // A Foundation error's description is the raw dump; its localized text is one sentence.
    let text = nsError.domain == NSCocoaErrorDomain ? nsError.localizedDescription : String(describing: error)
    return text.split(whereSeparator: \.isNewline).first.map(String.init) ?? text
}

/// `"PATH: reason"` for an error of a file operation on `path`, the reason as `fileErrorReason`
/// gives it: one line instead of a raw `NSError` dump.
public func describeFileError(_ error: Error, path: String) -> String {
    "\(path): \(fileErrorReason(error))"
}

/// Foundation's file error codes (`CocoaError.Code`) that come without an underlying POSIX
/// error, in the system's words.
private let cocoaReasons: [Int: String] = [
    CocoaError.fileNoSuchFile.rawValue: String(cString: strerror(ENOENT)),
    CocoaError.fileReadNoSuchFile.rawValue: String(cString: strerror(ENOENT)),
    CocoaError.fileReadNoPermission.rawValue: String(cString: strerror(EACCES)),
    CocoaError.fileWriteNoPermission.rawValue: String(cString: strerror(EACCES)),
    CocoaError.fileReadTooLarge.rawValue: String(cString: strerror(EFBIG)),
    CocoaError.fileWriteOutOfSpace.rawValue: String(cString: strerror(ENOSPC)),
    CocoaError.fileWriteFileExists.rawValue: String(cString: strerror(EEXIST)),
    CocoaError.fileWriteVolumeReadOnly.rawValue: String(cString: strerror(EROFS)),
    CocoaError.fileReadInvalidFileName.rawValue: "invalid file name",
    CocoaError.fileWriteInvalidFileName.rawValue: "invalid file name",
    CocoaError.fileReadCorruptFile.rawValue: "corrupt file",
    CocoaError.fileReadUnknown.rawValue: "unknown read error",
    CocoaError.fileWriteUnknown.rawValue: "unknown write error",
    CocoaError.fileLocking.rawValue: "cannot lock the file",
]

/// Why `path` could not be read, for an error that names it: missing, a folder where a file was
/// expected, or the system's reason for `error`.
public func unreadableReason(_ path: String, _ error: Error? = nil) -> String {
    var folder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &folder) else { return "no such file" }
    if folder.boolValue { return "a folder, not a file" }
    return error.map { "cannot read it (\(fileErrorReason($0)))" } ?? "cannot read it"
}
