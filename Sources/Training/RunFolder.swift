import Checkpoint
import Datasets
import Foundation

/// The output folder of one run (`train`, `descend`): made sure to exist and be writable, held
/// by an exclusive lock for the whole run, and cleared of the temporary files of killed runs.
///
/// The lock is `flock(2)` on `.neuralscale.lock` in the folder, which holds the holder's PID.
/// The kernel releases it when the process ends however it ends, so a killed run never leaves a
/// lock that blocks its `--resume`; the file itself stays and is reused.
public final class RunFolder {
    public let path: String
    private let fd: Int32
    private var holds = 1

    /// Folders this process holds, so that the CLI and the trainer it starts can both take the
    /// lock of one folder (an `flock` on a second descriptor would refuse its own process).
    nonisolated(unsafe) private static var held: [String: RunFolder] = [:]
    private static let lock = NSLock()

    public static let lockName = TemporaryFiles.runFolderLock

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Creates `path` if needed, checks that files can be created in it, locks it, and removes
    /// what killed runs left in it (`removeStaleTemporaries`).
    /// - Throws: `TrainingError.output` naming the folder and the reason (not writable, disk
    ///   full, or in use by another run, with that run's PID).
    public static func acquire(_ path: String) throws -> RunFolder {
        try ensureWritable(path)
        let key = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        lock.lock()
        defer { lock.unlock() }
        if let mine = held[key] {
            mine.holds += 1
            return mine
        }
        let lockPath = URL(fileURLWithPath: key).appendingPathComponent(lockName).path
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrainingError.output("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard reason == EWOULDBLOCK else {
                throw TrainingError.output("cannot lock \(lockPath): \(String(cString: strerror(reason)))")
            }
            let pid = n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            throw TrainingError.output("\(path) is in use by another run (PID \(pid) holds \(lockPath)); wait for it to finish, stop it, or choose another --out")
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.count, 0)
        let folder = RunFolder(path: key, fd: fd)
        held[key] = folder
        // Any temporary file in a folder this process holds is stale or its own.
        removeStaleTemporaries(in: key, exclusive: true)
        return folder
    }

    /// Gives the lock up (once every `acquire` of this process is matched by a `release`).
    public func release() {
        RunFolder.lock.lock()
        defer { RunFolder.lock.unlock() }
        holds -= 1
        guard holds == 0 else { return }
        RunFolder.held[path] = nil
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// Creates the folder if needed and creates and removes a probe file in it, so an
    /// unwritable folder (permissions, a read-only or full file system) is found before any
    /// work is done rather than at the first checkpoint.
    public static func ensureWritable(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.output("cannot create the output folder \(path): \(fileErrorReason(error))")
        }
        let probe = URL(fileURLWithPath: path).appendingPathComponent(".write-test.tmp-\(getpid())").path
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError.output("the output folder \(path) is not writable: \(String(cString: strerror(errno)))")
        }
        let byte: [UInt8] = [0]
        let wrote = write(fd, byte, 1)
        let reason = errno
        close(fd)
        unlink(probe)
        guard wrote == 1 else {
            throw TrainingError.output("cannot write in the output folder \(path): \(String(cString: strerror(reason)))")
        }
    }

    /// Removes what killed runs left in `folder`: `.NAME.tmp-PID` files (and folders) of
    /// processes that no longer run, and Foundation's `.dat.nosync*` files of interrupted atomic
    /// writes when the caller holds the folder's lock (`exclusive`). Returns the names removed.
    @discardableResult
    public static func removeStaleTemporaries(in folder: String, exclusive: Bool) -> [String] {
        let fm = FileManager.default
        var removed: [String] = []
        for name in (try? fm.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(".") {
            let stale: Bool
            if let r = name.range(of: ".tmp-", options: .backwards), let pid = Int32(name[r.upperBound...]) {
                stale = !TemporaryFiles.isRunning(pid)
            } else {
                stale = exclusive && name.hasPrefix(".dat.nosync")
            }
            if stale, (try? fm.removeItem(atPath: URL(fileURLWithPath: folder).appendingPathComponent(name).path)) != nil {
                removed.append(name)
            }
        }
        return removed
    }

    /// The resume rule of a run folder: without `resume`, `file` (the run's checkpoint,
    /// `last.h5` or `state.h5`) must not exist; with it, it must, and hold a `State` that
    /// `matches` accepts (it throws, naming what differs).
    /// - Parameter what: the kind of run ("run", "search"), for messages.
    public static func checkResume<State: Decodable>(_ folder: String, file: String, resume: Bool, what: String,
                                                     state: State.Type, matches: (State, String) throws -> Void) throws {
        let path = URL(fileURLWithPath: folder).appendingPathComponent(file).path
        let exists = FileManager.default.fileExists(atPath: path)
        guard resume else {
            guard !exists else {
                throw TrainingError.output("\(path) already exists: pass --resume to continue that \(what), or choose another --out")
            }
            return
        }
        guard exists else { throw TrainingError.resume("\(path) does not exist (nothing to resume in \(folder))") }
        guard let stored = try Checkpoint.load(path).training(as: State.self) else {
            throw TrainingError.resume("\(path) holds no \(what) state")
        }
        try matches(stored, path)
    }
}
