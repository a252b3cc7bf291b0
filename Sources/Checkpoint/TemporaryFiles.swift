import CProcess
import Foundation

/// The temporary files and folders this process has open, removed on every way out: by their
/// owners on success and on errors, and by `removeAll` when a signal ends the process
/// (`installSignalCleanup`). Names carry the PID (`.NAME.tmp-PID`, `neuralscale-*-PID-*`), so
/// what a killed process left is recognised and removed by the next run (`removeStale`).
/// The first signal `installSignalCleanup` caught (0: none yet).
nonisolated(unsafe) private var pendingSignal: sig_atomic_t = 0

public enum TemporaryFiles {
    /// The lock file a run folder is held by (`RunFolder`), `flock`ed by the run in it.
    public static let runFolderLock = ".neuralscale.lock"
    nonisolated(unsafe) private static var paths: Set<String> = []
    private static let lock = NSLock()

    public static func register(_ path: String) {
        lock.lock()
        paths.insert(path)
        lock.unlock()
    }

    public static func unregister(_ path: String) {
        lock.lock()
        paths.remove(path)
        lock.unlock()
    }

    nonisolated(unsafe) private static var children: Set<Int32> = []

    /// Child processes that a signal ending this process is passed on to (a sweep's steps), so
    /// that none goes on running, holding its run folder's lock, after its parent died.
    public static func registerChild(_ pid: Int32) {
        lock.lock()
        children.insert(pid)
        lock.unlock()
    }

    public static func unregisterChild(_ pid: Int32) {
        lock.lock()
        children.remove(pid)
        lock.unlock()
    }

    /// The variable a parent sets to its PID for the children it starts (`childEnvironment`).
    public static let parentVariable = "NEURALSCALE_PARENT_PID"

    /// `environment` with this process named as the parent: a child started with it ends (as on
    /// SIGTERM, its checkpoints kept) when this process dies, even by SIGKILL, which no handler
    /// here can pass on; it then no longer holds its run folder when the parent is re-run.
    public static func childEnvironment(_ environment: [String: String]) -> [String: String] {
        var env = environment
        env[parentVariable] = String(getpid())
        return env
    }

    /// In a child started with `childEnvironment`: SIGTERM when that parent dies (Linux).
    public static func terminateWithParent() {
        guard let text = ProcessInfo.processInfo.environment[parentVariable] else { return }
        // Not passed on: this process's own children (bench infer's workers, say) have it as parent.
        unsetenv(parentVariable)
        if let parent = Int32(text) { _ = ns_terminate_with_parent(parent) }
    }

    /// Whether a signal asked this process to stop (`installSignalCleanup`): what starts child
    /// processes checks it and starts no more.
    public static var stopRequested: Bool { pendingSignal != 0 }

    /// Sends `sig` to every registered child, waits up to 10 s for them to end (a training run
    /// stops at its next step), then kills the rest (their last checkpoints stay valid).
    static func stopChildren(_ sig: Int32) {
        lock.lock()
        let all = children
        lock.unlock()
        for pid in all { kill(pid, sig) }
        for _ in 0..<500 where all.contains(where: { kill($0, 0) == 0 }) { usleep(20_000) }
        for pid in all where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        usleep(100_000)
    }

    /// Removes every registered path (files or folders).
    public static func removeAll() {
        lock.lock()
        let all = paths
        paths.removeAll()
        lock.unlock()
        for p in all { try? FileManager.default.removeItem(atPath: p) }
    }

    /// On SIGINT, SIGTERM or SIGHUP: remove the registered temporaries, then end the process as
    /// that signal would have. For commands without a graceful stop of their own (`export`).
    ///
    /// The handler only records the signal (all a signal handler may safely do); a watcher
    /// thread does the removal. (libdispatch's signal sources miss signals on Linux unless they
    /// are blocked in every thread.)
    public static func installSignalCleanup() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { s in
                if pendingSignal == 0 { pendingSignal = s }
            }
        }
        let watcher = Thread {
            while pendingSignal == 0 { usleep(20_000) }
            let sig = pendingSignal
            stopChildren(sig)
            removeAll()
            signal(sig, SIG_DFL)
            kill(getpid(), sig)
        }
        watcher.start()
    }

    /// A temporary folder `neuralscale-<what>-<pid>-<uuid>` in the system temp folder, created
    /// and registered; the caller removes it (and unregisters it) when done.
    public static func makeFolder(_ what: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("neuralscale-\(what)-\(getpid())-\(UUID().uuidString)")
        register(url.path)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A path `neuralscale-<what>-<pid>-<uuid><suffix>` in the system temp folder, registered.
    public static func makePath(_ what: String, suffix: String = "") -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("neuralscale-\(what)-\(getpid())-\(UUID().uuidString)\(suffix)").path
        register(path)
        return path
    }

    /// Removes `path` and forgets it.
    public static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
        unregister(path)
    }

    /// Removes what killed processes left in the system temp folder (`neuralscale-<what>-<pid>-*`
    /// of a PID that no longer runs). Returns the names removed.
    @discardableResult
    public static func removeStale() -> [String] {
        let folder = FileManager.default.temporaryDirectory
        var removed: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix("neuralscale-") {
            let parts = name.split(separator: "-")
            guard parts.count >= 4, let pid = Int32(parts[2]), !isRunning(pid) else { continue }
            if (try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))) != nil { removed.append(name) }
        }
        return removed
    }

    /// Whether process `pid` exists (this process counts as running).
    public static func isRunning(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        return pid == getpid() || kill(pid, 0) == 0 || errno == EPERM
    }
}
