import Checkpoint
import Foundation

/// One command of a sweep entry: this tool run with `arguments`, done when `output` exists (every
/// step writes its output atomically, last). With `stdout`, the step's standard output is its
/// output (written atomically when the step succeeds).
public struct SweepStep: Codable, Equatable, Sendable {
    public var name: String
    public var arguments: [String]
    public var output: String
    public var stdout: Bool
    /// Arguments added when the step restarts after an interruption (train's `--resume`), and
    /// the file whose presence says there is something to resume.
    public var resumeArguments: [String]
    public var resumeFrom: String?

    public init(name: String, arguments: [String], output: String, stdout: Bool = false, resumeArguments: [String] = [],
                resumeFrom: String? = nil) {
        self.name = name
        self.arguments = arguments
        self.output = output
        self.stdout = stdout
        self.resumeArguments = resumeArguments
        self.resumeFrom = resumeFrom
    }

    public var isDone: Bool { FileManager.default.fileExists(atPath: output) }
}

/// One run of the study (a net, scaling, ratio and seed; or a search) and its steps in order.
public struct SweepEntry: Codable, Equatable, Sendable {
    public var id: String
    public var folder: String
    public var steps: [SweepStep]
    /// Entries that must be done first (a NeuralScale entry's search).
    public var after: [String]

    public init(id: String, folder: String, steps: [SweepStep], after: [String] = []) {
        self.id = id
        self.folder = folder
        self.steps = steps
        self.after = after
    }

    public var isDone: Bool { steps.allSatisfy(\.isDone) }
}

/// The plan of a sweep (`sweep.json`): every entry with its command lines and folders.
public struct SweepPlan: Codable, Equatable, Sendable {
    /// The plan format this build writes and reads.
    public static let currentVersion = 1
    public var version = SweepPlan.currentVersion
    public var entries: [SweepEntry]
    /// The last step: `report` over every entry's results.
    public var report: SweepStep?

    public init(entries: [SweepEntry], report: SweepStep?) {
        self.entries = entries
        self.report = report
    }
}

/// What became of each entry.
public struct SweepStatus: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var id: String
        /// "done", "skipped" (done by an earlier run), "failed", "blocked" (its search failed),
        /// "pending", or in an entry's own record "running" or "stopped"; `--status` says
        /// "interrupted" for a record "running" whose process on this host is gone (a kill).
        public var state: String
        public var failedStep: String?
        public var log: String?
        public var seconds: Double?
        /// Where it ran: the host, and the Slurm job (`<array job>_<task>`) when under Slurm.
        public var host: String?
        public var job: String?
        /// The process that wrote the record (the sweep, or a Slurm task's `sweep --entry`).
        public var pid: Int32?

        public init(id: String, state: String, failedStep: String? = nil, log: String? = nil, seconds: Double? = nil) {
            self.id = id
            self.state = state
            self.failedStep = failedStep
            self.log = log
            self.seconds = seconds
        }
    }
    public var entries: [Entry]
    public var done: Int { entries.filter { $0.state == "done" || $0.state == "skipped" }.count }
    public var failed: Int { entries.filter { $0.state == "failed" || $0.state == "blocked" }.count }
}

/// What an entry's runner last wrote about it (`<entry>/sweep-entry.json`): running, done,
/// failed (with the step and its log) or stopped, with the host and Slurm job when there is one.
public enum EntryRecord {
    public static let fileName = "sweep-entry.json"

    static func write(_ entry: SweepStatus.Entry, for plan: SweepEntry) {
        var record = entry
        record.host = ProcessInfo.processInfo.hostName
        record.pid = ProcessInfo.processInfo.processIdentifier
        let env = ProcessInfo.processInfo.environment
        record.job = env["SLURM_ARRAY_JOB_ID"].map { "\($0)_\(env["SLURM_ARRAY_TASK_ID"] ?? "?")" } ?? env["SLURM_JOB_ID"]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try? FileManager.default.createDirectory(atPath: plan.folder, withIntermediateDirectories: true)
        if let data = try? encoder.encode(record) {
            try? AtomicFile.write(data, to: URL(fileURLWithPath: plan.folder).appendingPathComponent(fileName).path)
        }
    }

    /// The record of `entry`, if one was written.
    public static func read(_ entry: SweepEntry) -> SweepStatus.Entry? {
        let path = URL(fileURLWithPath: entry.folder).appendingPathComponent(fileName).path
        return FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(SweepStatus.Entry.self, from: $0) }
    }
}

/// Runs a plan's entries, `jobs` at a time, each step a child process of `executable` with
/// `NEURALSCALE_THREADS` set to `threads`; steps whose output exists are skipped, so running the
/// same plan again resumes it. A failed step stops its entry (and the entries after it), not the
/// others. `progress` is called after every entry.
public enum SweepRunner {
    public static func run(_ plan: SweepPlan, executable: String, jobs: Int, threads: Int, statusPath: String,
                           progress: @escaping (SweepStatus.Entry, SweepStatus) -> Void) -> SweepStatus {
        let lock = NSLock()
        var status = SweepStatus(entries: plan.entries.map { .init(id: $0.id, state: "pending") })
        var started = Set<Int>()
        func save() {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            if let data = try? encoder.encode(status) { try? AtomicFile.write(data, to: statusPath) }
        }
        /// The next entry whose prerequisites are done, or nil when none is left; blocks entries
        /// whose prerequisites failed.
        func next() -> Int?? {
            lock.lock()
            defer { lock.unlock() }
            var waiting = false
            for (i, e) in plan.entries.enumerated() where !started.contains(i) {
                let states = e.after.map { id in status.entries.first { $0.id == id }?.state ?? "done" }
                if states.contains(where: { $0 == "failed" || $0 == "blocked" }) {
                    started.insert(i)
                    status.entries[i].state = "blocked"
                    save()
                    progress(status.entries[i], status)
                    continue
                }
                if states.allSatisfy({ $0 == "done" || $0 == "skipped" }) {
                    started.insert(i)
                    return .some(i)
                }
                waiting = true
            }
            return waiting ? .some(nil) : nil
        }
        DispatchQueue.concurrentPerform(iterations: max(1, jobs)) { _ in
            while !TemporaryFiles.stopRequested, let pick = next() {
                guard let i = pick else { usleep(200_000); continue }  // waiting for a search
                guard let result = runEntry(plan.entries[i], executable: executable, threads: threads) else { return }
                lock.lock()
                status.entries[i] = result
                save()
                let snapshot = status
                lock.unlock()
                progress(result, snapshot)
            }
        }
        return status
    }

    /// Runs `entry`'s steps that are not done, in order, stopping at the first that fails; nil
    /// when a signal stopped it (not a failure: the next run resumes the step). Writes the entry's
    /// state to `<entry>/sweep-entry.json` as it starts ("running") and ends, which `sweep
    /// --status` reads.
    public static func runEntry(_ entry: SweepEntry, executable: String, threads: Int) -> SweepStatus.Entry? {
        let t0 = Date()
        var result = SweepStatus.Entry(id: entry.id, state: entry.isDone ? "skipped" : "done")
        guard !entry.isDone else { return result }
        EntryRecord.write(.init(id: entry.id, state: "running"), for: entry)
        for step in entry.steps where !step.isDone {
            let log = URL(fileURLWithPath: entry.folder).appendingPathComponent("logs/\(step.name).log").path
            if !runStep(step, executable: executable, threads: threads, log: log) {
                if TemporaryFiles.stopRequested {
                    EntryRecord.write(.init(id: entry.id, state: "stopped", failedStep: step.name, log: log), for: entry)
                    return nil
                }
                result.state = "failed"
                result.failedStep = step.name
                result.log = log
                break
            }
        }
        result.seconds = Date().timeIntervalSince(t0)
        EntryRecord.write(result, for: entry)
        return result
    }

    /// Runs the plan's report over the train results that exist (nil: none does), on `threads`
    /// threads; true when it succeeded. It runs every time: the results may have changed since the last report.
    public static func runReport(_ plan: SweepPlan, executable: String, threads: Int, log: String) -> Bool? {
        guard var step = plan.report else { return nil }
        let fm = FileManager.default
        let results = step.arguments.filter { $0.hasSuffix("result.json") && fm.fileExists(atPath: $0) }
        guard !results.isEmpty else { return nil }
        // The results that exist, and the bench and quantize files of those entries that exist.
        var arguments = ["report"] + results, k = 1
        let a = step.arguments
        while k < a.count {
            if ["--bench", "--quantize"].contains(a[k]), k + 1 < a.count {
                if fm.fileExists(atPath: a[k + 1]) { arguments += [a[k], a[k + 1]] }
                k += 2
            } else if a[k] == "--out", k + 1 < a.count {
                arguments += [a[k], a[k + 1]]
                k += 2
            } else {
                k += 1
            }
        }
        step.arguments = arguments
        try? FileManager.default.removeItem(atPath: step.output)
        return runStep(step, executable: executable, threads: threads, log: log)
    }

    /// Seconds a step waits for its folder to be let go by the run holding it.
    nonisolated(unsafe) public static var folderWait: Double = 600

    /// Waits while another process holds `folder` as its run folder (its `flock`), up to
    /// `folderWait`: a sweep killed and run again at once found its step's folder still held by
    /// the step the kill left behind, which stops at its next check (after a validation pass
    /// and a checkpoint, seconds to a minute) and failed the entry. Said in the step's log.
    /// True when it waited.
    @discardableResult
    static func waitForFolder(_ folder: String, log: FileHandle) -> Bool {
        let lockPath = URL(fileURLWithPath: folder).appendingPathComponent(TemporaryFiles.runFolderLock).path
        let fd = open(lockPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let deadline = Date().addingTimeInterval(folderWait)
        var said = false
        while flock(fd, LOCK_SH | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK, Date() < deadline, !TemporaryFiles.stopRequested else { return said }
            if !said {
                let holder = (try? String(contentsOfFile: lockPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                log.write(Data("waiting for the run in \(folder) (PID \(holder)) to end\n".utf8))
                said = true
            }
            usleep(200_000)
        }
        flock(fd, LOCK_UN)
        return said
    }

    /// Runs one step; its standard error (and output, unless the step's output is its stdout)
    /// goes to `log`.
    public static func runStep(_ step: SweepStep, executable: String, threads: Int, log: String) -> Bool {
        try? FileManager.default.createDirectory(atPath: URL(fileURLWithPath: log).deletingLastPathComponent().path,
                                                 withIntermediateDirectories: true)
        try? FileManager.default.createDirectory(atPath: URL(fileURLWithPath: step.output).deletingLastPathComponent().path,
                                                 withIntermediateDirectories: true)
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        let logFile = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        // The wait first: the run waited for may write the checkpoint that makes this step a
        // --resume, or finish the step.
        if waitForFolder(URL(fileURLWithPath: step.output).deletingLastPathComponent().path, log: logFile), step.isDone {
            logFile.write(Data("done by the run waited for\n".utf8))
            return true
        }
        var arguments = step.arguments
        if let from = step.resumeFrom, FileManager.default.fileExists(atPath: from) { arguments += step.resumeArguments }
        logFile.write(Data("$ neuralscale \(arguments.joined(separator: " "))\n".utf8))
        func launch(stdout: FileHandle) -> Bool {
            if TemporaryFiles.stopRequested { return false }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = arguments
            var env = TemporaryFiles.childEnvironment(ProcessInfo.processInfo.environment)
            env["NEURALSCALE_THREADS"] = String(threads)
            p.environment = env
            p.standardOutput = stdout
            p.standardError = logFile
            p.standardInput = FileHandle.nullDevice
            do { try p.run() } catch {
                logFile.write(Data("cannot start \(executable): \(error)\n".utf8))
                return false
            }
            TemporaryFiles.registerChild(p.processIdentifier)
            p.waitUntilExit()
            TemporaryFiles.unregisterChild(p.processIdentifier)
            logFile.write(Data("exit status \(p.terminationStatus)\n".utf8))
            return p.terminationReason == .exit && p.terminationStatus == 0
        }
        guard step.stdout else { return launch(stdout: logFile) }
        var ok = false
        try? AtomicFile.replace(step.output) { temporary in
            let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard out >= 0 else { throw CocoaError(.fileWriteUnknown) }
            let handle = FileHandle(fileDescriptor: out, closeOnDealloc: true)
            ok = launch(stdout: handle)
            try? handle.synchronize()
            if !ok { throw CocoaError(.fileWriteUnknown) }  // keep no output of a failed step
        }
        return ok
    }
}
