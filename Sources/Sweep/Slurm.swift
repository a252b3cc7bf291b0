import Checkpoint
import Foundation

/// A sweep on a Slurm cluster: its entries that are not done, submitted as job arrays
/// (`sbatch --array=0-K%J`), one task per entry, each running `neuralscale sweep --out OUT
/// --entry ID`: the same resumable steps the local runner runs. Entries that wait for a search
/// go in a second array whose tasks start when those searches' tasks have succeeded; a last job
/// writes the report.
/// Submitting again submits only the entries still not done.
public enum SlurmExecutor {
    public struct Options: Equatable, Sendable {
        public var partition: String?
        /// Each task's time limit, HH:MM:SS (or any of sbatch's --time forms).
        public var time: String?
        /// Cores per task; the entry's steps use them all (NEURALSCALE_THREADS).
        public var cpusPerTask: Int
        /// Tasks of an array running at once (the `%J` of `--array`); nil: as many as Slurm allows.
        public var maxRunning: Int?
        /// The `sbatch` to run (a path, for tests and unusual installs).
        public var sbatch: String

        public init(partition: String? = nil, time: String? = nil, cpusPerTask: Int = 1, maxRunning: Int? = nil,
                    sbatch: String = "sbatch") {
            self.partition = partition
            self.time = time
            self.cpusPerTask = cpusPerTask
            self.maxRunning = maxRunning
            self.sbatch = sbatch
        }
    }

    /// One `sbatch` this tool ran.
    public struct Submission: Codable, Sendable {
        public var job: String
        public var script: String
        /// The entries of the array, task i running entries[i]; empty for the report job.
        public var entries: [String]
        public var dependency: String?
        public var submitted: Date
    }

    public struct SubmitError: Error, CustomStringConvertible {
        public let description: String
    }

    /// `<out>/slurm`: scripts, entry lists, the tasks' Slurm logs and `jobs.json`.
    public static func folder(_ out: String) -> String { URL(fileURLWithPath: out).appendingPathComponent("slurm").path }

    /// Submits `plan`'s entries that are not done (nothing when all are) and the report job;
    /// returns the submissions, also appended to `<out>/slurm/jobs.json`.
    /// - Parameter executable: the `neuralscale` the tasks run (a path every node can reach).
    public static func submit(_ plan: SweepPlan, out: String, executable: String, options: Options) throws -> [Submission] {
        let pending = plan.entries.filter { !$0.isDone }
        guard !pending.isEmpty || plan.report != nil else { return [] }
        let dir = folder(out)
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let stamp = String(Int(Date().timeIntervalSince1970))
        var submissions: [Submission] = []
        // First the entries that wait for nothing still pending (searches, uniform entries, ...),
        // then those that wait for an entry of the first array.
        let pendingIDs = Set(pending.map(\.id))
        let first = pending.filter { $0.after.allSatisfy { !pendingIDs.contains($0) } }
        let second = pending.filter { !$0.after.allSatisfy { !pendingIDs.contains($0) } }
        var arrays: [String] = [], firstTasks: [String: String] = [:]
        for (k, entries) in [first, second].enumerated() where !entries.isEmpty {
            let list = "\(dir)/entries-\(stamp)-\(k).txt"
            try AtomicFile.write(Data((entries.map(\.id).joined(separator: "\n") + "\n").utf8), to: list)
            let limit = options.maxRunning.map { "%\($0)" } ?? ""
            let script = "\(dir)/array-\(stamp)-\(k).sh"
            let body = """
                #!/bin/bash
                #SBATCH --job-name=neuralscale-sweep
                #SBATCH --array=0-\(entries.count - 1)\(limit)
                #SBATCH --cpus-per-task=\(options.cpusPerTask)
                #SBATCH --output=\(dir)/logs/%A_%a.out
                \(header(options))
                # One sweep entry per task: task i runs the entry on line i + 1 of the list.
                set -euo pipefail
                id=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" \(quoted(list)))
                export NEURALSCALE_THREADS=${SLURM_CPUS_PER_TASK:-\(options.cpusPerTask)}
                exec \(quoted(executable)) sweep --out \(quoted(out)) --entry "$id"

                """
            try write(script: body, to: script)
            // An entry of the second array waits for the tasks of the entries it needs (its
            // search), not for the whole first array: a failed uniform entry must not cancel it.
            let needed = k == 1 ? Set(entries.flatMap(\.after)).compactMap { id in firstTasks[id] }.sorted() : []
            let dependency = needed.isEmpty ? nil : "afterok:" + needed.joined(separator: ":")
            let job = try sbatch(options.sbatch, script: script, dependency: dependency)
            arrays.append(job)
            if k == 0 { for (i, e) in entries.enumerated() { firstTasks[e.id] = "\(job)_\(i)" } }
            submissions.append(Submission(job: job, script: script, entries: entries.map(\.id), dependency: dependency,
                                          submitted: Date()))
        }
        if plan.report != nil {
            let script = "\(dir)/report-\(stamp).sh"
            let body = """
                #!/bin/bash
                #SBATCH --job-name=neuralscale-sweep-report
                #SBATCH --cpus-per-task=\(options.cpusPerTask)
                #SBATCH --output=\(dir)/logs/report-%j.out
                \(header(options))
                # The report over every entry's results, once the arrays have ended (however they did).
                exec \(quoted(executable)) sweep --out \(quoted(out)) --report-only

                """
            try write(script: body, to: script)
            let dependency = arrays.isEmpty ? nil : "afterany:" + arrays.joined(separator: ":")
            let job = try sbatch(options.sbatch, script: script, dependency: dependency)
            submissions.append(Submission(job: job, script: script, entries: [], dependency: dependency, submitted: Date()))
        }
        var all = (try? loadSubmissions(out)) ?? []
        all += submissions
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(try encoder.encode(all), to: "\(dir)/jobs.json")
        return submissions
    }

    /// Every submission recorded in `<out>/slurm/jobs.json` (none when there is no file).
    public static func loadSubmissions(_ out: String) throws -> [Submission] {
        let path = folder(out) + "/jobs.json"
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode([Submission].self, from: data) } catch {
            throw SubmitError(description: "\(path): not a list of submissions (\(error))")
        }
    }

    /// The #SBATCH lines of the options every job shares.
    private static func header(_ options: Options) -> String {
        var lines: [String] = []
        if let p = options.partition { lines.append("#SBATCH --partition=\(p)") }
        if let t = options.time { lines.append("#SBATCH --time=\(t)") }
        return lines.joined(separator: "\n")
    }

    private static func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    private static func write(script: String, to path: String) throws {
        try AtomicFile.write(Data(script.utf8), to: path)
        chmod(path, 0o755)
    }

    /// Runs `sbatch --parsable [--dependency=D --kill-on-invalid-dep=yes] script`; its job id.
    private static func sbatch(_ sbatch: String, script: String, dependency: String?) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [sbatch, "--parsable"] + (dependency.map { ["--dependency=\($0)", "--kill-on-invalid-dep=yes"] } ?? []) + [script]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw SubmitError(description: "cannot run \(sbatch): \(error)") }
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw SubmitError(description: "\(sbatch) \(script) failed (status \(p.terminationStatus)): "
                              + (errors.isEmpty ? output : errors).trimmingCharacters(in: .whitespacesAndNewlines)
                              + (p.terminationStatus == 127 ? " (is Slurm installed? sbatch was not found)" : ""))
        }
        // --parsable prints "jobid" or "jobid;cluster".
        guard let job = output.split(whereSeparator: { $0 == ";" || $0.isNewline }).first.map(String.init), Int(job) != nil else {
            throw SubmitError(description: "\(sbatch) printed no job id: \(output)")
        }
        return job
    }
}

/// Where each entry of a sweep stands, from the files its runs wrote: done when every step's
/// output exists, else the entry's own record (running, failed, stopped), else queued when the
/// latest Slurm submission that holds it is still in Slurm's queue (`active`: the job and
/// array-task ids `squeue` lists; nil: not known), "not run" when that job has left the queue
/// without the entry starting (cancelled, or the task failed before it), else pending.
public enum SweepProgress {
    public static func status(of plan: SweepPlan, out: String, active: Set<String>? = nil) -> SweepStatus {
        var task: [String: String] = [:]  // entry -> its latest task, "<job>_<index>"
        for submission in (try? SlurmExecutor.loadSubmissions(out)) ?? [] {
            for (i, id) in submission.entries.enumerated() { task[id] = "\(submission.job)_\(i)" }
        }
        return SweepStatus(entries: plan.entries.map { entry in
            if entry.isDone {
                var done = EntryRecord.read(entry) ?? SweepStatus.Entry(id: entry.id, state: "done")
                done.state = "done"
                return done
            }
            if var record = EntryRecord.read(entry), record.state != "done" {
                // "running" with its process gone from this host (a kill) stays that way in the
                // file; say what it is.
                if record.state == "running", record.host == ProcessInfo.processInfo.hostName, let pid = record.pid,
                   !TemporaryFiles.isRunning(pid) {
                    record.state = "interrupted"
                }
                return record
            }
            guard let job = task[entry.id] else { return SweepStatus.Entry(id: entry.id, state: "pending") }
            var e = SweepStatus.Entry(id: entry.id, state: "queued")
            e.job = job
            if let active, !active.contains(job) { e.state = "not run" }
            return e
        })
    }

    /// The jobs and array tasks in Slurm's queue (`squeue -h -r -o %i`), or nil when squeue
    /// cannot be run.
    public static func slurmQueue(squeue: String = "squeue") -> Set<String>? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [squeue, "-h", "-r", "-o", "%i"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return Set(text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) })
    }
}
