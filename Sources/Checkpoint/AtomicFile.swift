import Foundation

/// Replaces files atomically: write a temporary file in the same folder, fsync it, rename it over
/// the target, fsync the folder. A crash at any moment leaves either the old or the new file.
public enum AtomicFile {
    /// Calls `write` with a temporary path beside `path`, then publishes it as `path`.
    /// On any failure the temporary file is removed and `path` is untouched.
    public static func replace(_ path: String, _ write: (_ temporary: String) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
        // Registered, so a signal that ends the process (export's Ctrl-C) removes it too.
        TemporaryFiles.register(temporary)
        defer { TemporaryFiles.unregister(temporary) }
        do {
            try write(temporary)
            try fsync(path: temporary, directory: false)
            guard rename(temporary, path) == 0 else {
                throw CheckpointError(path: path, message: "cannot rename \(temporary) over it: \(String(cString: strerror(errno)))")
            }
            try fsync(path: folder.isEmpty ? "." : folder, directory: true)
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Writes `data` to `path` atomically.
    /// - Throws: `CheckpointError` naming `path` and saying why (e.g. "No space left on device").
    public static func write(_ data: Data, to path: String) throws {
        try replace(path) { temporary in
            try data.withUnsafeBytes { try writeContents($0, to: temporary, reportAs: path) }
        }
    }

    /// Creates (truncates) `file` holding `bytes`, with write(2) so that a failure says why
    /// (FileManager's only says that it failed); errors name `reportAs`.
    static func writeContents(_ bytes: UnsafeRawBufferPointer, to file: String, reportAs path: String) throws {
        func failure(_ what: String) -> CheckpointError {
            CheckpointError(path: path, message: "cannot \(what) \(file): \(String(cString: strerror(errno)))")
        }
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw failure("create") }
        var closed = false
        defer { if !closed { close(fd) } }
        var offset = 0
        while offset < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                if n == 0 { errno = EIO }
                throw failure("write")
            }
            offset += n
        }
        closed = true
        // close(2) may report a deferred write error (NFS, quotas).
        guard close(fd) == 0 else { throw failure("write") }
    }

    /// fsync(2) on a file or folder, so a rename never publishes unwritten data.
    static func fsync(path: String, directory: Bool) throws {
        let fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY)
        guard fd >= 0 else { throw CheckpointError(path: path, message: "cannot open for fsync: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard Foundation.fsync(fd) == 0 else {
            throw CheckpointError(path: path, message: "fsync failed: \(String(cString: strerror(errno)))")
        }
    }
}
