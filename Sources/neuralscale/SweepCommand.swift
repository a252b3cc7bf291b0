import ArchDescent
import ArgumentParser
import Autodiff
import Checkpoint
import Datasets
import Foundation
import Nets
import Sweep
import Training

/// `neuralscale sweep`: the whole study, train -> export -> quantize -> bench per entry, resumable.
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run the study: every (model, scaling, ratio, seed) trained, exported, quantized and benchmarked, then reported.",
        discussion: """
        Writes the plan to <out>/sweep.json (every entry's command lines and folder), then runs it: \
        per entry the --steps in order, each a child process of this tool logging to \
        <entry>/logs/<step>.log. A step whose output exists is skipped (every step writes its output \
        atomically, last), and an interrupted training resumes from its last.h5, so re-running the \
        same command resumes the sweep and finishes every entry exactly once. A failed entry is \
        reported with its log and the others go on (exit status 1 at the end). NeuralScale entries \
        need a search per model: given with --descent M=FILE, or run first by the sweep \
        (descend with the --search-preset settings, into <out>/search-<model>). --jobs N runs N entries at \
        once with the cores (or the sweep's own NEURALSCALE_THREADS) divided among them (through \
        the steps' NEURALSCALE_THREADS; results do not depend on it). Ends with `report` over every train result (<out>/report); <out>/sweep-status.json \
        says what became of each entry. --dry-run writes and prints the plan only.

        --executor slurm submits the entries not done yet to a Slurm cluster instead: one job \
        array (sbatch --array=0-K%J, J = --jobs when given) whose task i runs entry i's steps \
        (`neuralscale sweep --out OUT --entry ID`, the same resumable steps), a second array for \
        the entries that wait for a search, started when the searches' tasks have succeeded, and \
        a report job at the end. Scripts, entry lists, job ids (jobs.json) and the tasks' logs go to \
        <out>/slurm; --out and this executable must be on a file system every node sees. \
        Submitting the same command again submits only what is not done. `sweep --out OUT \
        --status` prints every entry's state from the files the runs wrote: done, running, failed \
        (with its log), stopped (by a signal; submitting again resumes it), interrupted (left \
        running by a process on this host that is gone, a killed sweep: running it again resumes \
        it), queued (its task is in Slurm's queue), not run (its job left the queue without \
        starting it: submit again), pending; with the Slurm job and host; --json for one object.
        """
    )

    @Option(name: .long, help: "Comma-separated nets (required to plan a sweep).")
    var models: String?

    @Option(name: .long, help: "The dataset (required to plan a sweep).")
    var dataset: DatasetKind?

    @Option(name: .long, help: "Comma-separated width ratios.")
    var ratios = "0.25,0.5,0.75,1.0"

    @Option(name: .long, help: "Comma-separated scalings: uniform, neuralscale.")
    var scalings = "uniform,neuralscale"

    @Option(name: .long, help: "Seeds: a list (0,1,2) or a range (0-4).")
    var seeds = "0"

    @Option(name: .long, parsing: .singleValue, help: "A search's descent.json for a model, as MODEL=FILE (repeatable).")
    var descent: [String] = []

    @Option(name: .long, help: "Training epochs per entry.")
    var epochs = 150

    @Option(name: .long, help: "Comma-separated steps, of train, export, quantize, bench (in that order).")
    var steps = "train,export,quantize,bench"

    @Option(name: .long, help: "Entries run at once: locally the cores (or NEURALSCALE_THREADS when set) are divided among them (default 1); under Slurm the array's task limit (default: none).")
    var jobs: Int?

    @Option(name: .long, help: "Where the entries run: 'local' (child processes of this command) or 'slurm' (job arrays submitted with sbatch).")
    var executor = Executor.local

    @Option(name: .long, help: "With --executor slurm: the partition to submit to (default: the cluster's).")
    var partition: String?

    @Option(name: .long, help: "With --executor slurm: each task's time limit, HH:MM:SS (default: the partition's).")
    var time: String?

    @Option(name: .long, help: "With --executor slurm: cores per task; the entry's steps use them all.")
    var cpusPerTask = 1

    @Flag(name: .long, help: "Print every entry's state (done, running, failed, stopped, interrupted, queued, not run, pending) from the sweep's files, and nothing else; needs only --out.")
    var status = false

    @Flag(name: .long, help: "With --status: one JSON object.")
    var json = false

    /// A Slurm task's work: run this entry of <out>/sweep.json.
    @Option(name: .long, help: .hidden)
    var entry: String?

    /// The Slurm report job's work: the report over the results there are.
    @Flag(name: .long, help: .hidden)
    var reportOnly = false

    enum Executor: String, ExpressibleByArgument, CaseIterable { case local, slurm }

    @Option(name: .long, help: "The sweep's folder.")
    var out: String

    @Option(name: .long, help: "Dataset root folder, for every step that reads data.")
    var dataDir: String?

    @Option(name: .long, help: "Train on a seeded subset of N training images (quick sweeps).")
    var subset: Int?

    @Option(name: .long, help: "The searches' settings: 'paper' (descend's defaults, the papers' 15 iterations) or 'quick' (`descend --preset quick`).")
    var searchPreset = SearchPreset.paper

    @Option(name: .long, help: "Trials of each entry's `bench infer` (batch 1).")
    var benchTrials = 5

    @Option(name: .long, help: "Training images each `quantize` calibrates on.")
    var calibration = 1000

    @Option(name: .long, help: "Images per SGD step of every training (train's default when not given).")
    var batchSize: Int?

    @Option(name: .long, help: "Initial learning rate of every training (train's default when not given).")
    var lr: Double?

    @Flag(name: .long, help: "Write and print the plan; run nothing.")
    var dryRun = false

    func spec() throws -> SweepSpec {
        guard let modelList = self.models, let dataset else {
            throw ValidationError("--models and --dataset are required to plan a sweep (--status, alone, needs only --out)")
        }
        let models = try commaSeparated(modelList, flag: "--models", "nets (\(Architecture.allCases.map(\.rawValue).joined(separator: ", ")))") {
            Architecture(rawValue: $0)?.rawValue
        }
        let ratios = try commaSeparated(self.ratios, flag: "--ratios", "ratios in (0, 4]") { Double($0).flatMap { $0 > 0 && $0 <= 4 ? $0 : nil } }
        let scalings = try commaSeparated(self.scalings, flag: "--scalings", "'uniform' or 'neuralscale'") { Scaling(rawValue: $0)?.rawValue }
        let seeds: [UInt64]
        if let dash = self.seeds.firstIndex(of: "-"), let a = UInt64(self.seeds[..<dash]), let b = UInt64(self.seeds[self.seeds.index(after: dash)...]), a <= b, b - a < 1000 {
            seeds = Array(a...b)
        } else {
            seeds = try commaSeparated(self.seeds, flag: "--seeds", "seeds or a range like 0-4") { UInt64($0) }
        }
        var descents: [String: String] = [:]
        for d in descent {
            let parts = d.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, Architecture(rawValue: parts[0]) != nil, models.contains(parts[0]) else {
                throw ValidationError("--descent must be MODEL=FILE with MODEL one of --models, got '\(d)'")
            }
            guard FileManager.default.fileExists(atPath: parts[1]) else { throw ValidationError("--descent \(d): \(parts[1]): no such file") }
            // Read as train will read it, so that a file of another kind fails here, not in every entry.
            do { _ = try ScaledNet.searched(parts[1], for: Architecture(rawValue: parts[0])!, dataset) } catch {
                throw ValidationError("--descent \(d): \(error)")
            }
            descents[parts[0]] = URL(fileURLWithPath: parts[1]).path
        }
        let steps = try commaSeparated(self.steps, flag: "--steps", "steps of train, export, quantize, bench") { SweepPlanner.stepOrder.contains($0) ? $0 : nil }
        guard epochs >= 1, epochs <= 100_000 else { throw ValidationError("--epochs must be >= 1, got \(epochs)") }
        if let jobs, !(1...10_000).contains(jobs) { throw ValidationError("--jobs must be in 1...10000, got \(jobs)") }
        guard cpusPerTask >= 1, cpusPerTask <= 1024 else { throw ValidationError("--cpus-per-task must be in 1...1024, got \(cpusPerTask)") }
        if let time, time.isEmpty || time.contains(where: { !($0.isNumber || $0 == ":" || $0 == "-") }) {
            throw ValidationError("--time must be like HH:MM:SS (or D-HH:MM:SS), got '\(time)'")
        }
        if let partition, partition.isEmpty || partition.contains(where: { $0.isWhitespace || $0 == "'" }) {
            throw ValidationError("--partition must be a partition name, got '\(partition)'")
        }
        guard benchTrials >= 1 else { throw ValidationError("--bench-trials must be >= 1") }
        if let subset, subset < 2 { throw ValidationError("--subset must be >= 2, got \(subset)") }
        // train's bounds (batch norm needs two images a batch), so that no entry fails on them later.
        if let batchSize, !(2...65_536).contains(batchSize) { throw ValidationError("--batch-size must be in 2...65536, got \(batchSize)") }
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be > 0, got \(lr)") }
        var spec = SweepSpec(models: models, dataset: dataset.rawValue, ratios: ratios, scalings: scalings, seeds: seeds, descents: descents,
                         epochs: epochs, steps: SweepPlanner.stepOrder.filter(steps.contains), out: URL(fileURLWithPath: out).path,
                         dataDir: dataDir.map { URL(fileURLWithPath: $0).path }, subset: subset, searchPreset: searchPreset.rawValue,
                         benchTrials: benchTrials)
        guard calibration >= 1 else { throw ValidationError("--calibration must be >= 1, got \(calibration)") }
        spec.calibration = calibration
        spec.trainArguments = (batchSize.map { ["--batch-size", "\($0)"] } ?? []) + (lr.map { ["--lr", "\($0)"] } ?? [])
        return spec
    }

    func validate() throws {
        if status || entry != nil || reportOnly { return }
        _ = try spec()
    }

    var planPath: String { URL(fileURLWithPath: out).appendingPathComponent("sweep.json").path }

    /// The plan an earlier `sweep` wrote in --out.
    func writtenPlan() throws -> SweepPlan {
        guard let plan = try existingPlan() else {
            throw ValidationError("\(planPath) does not exist: run the sweep (with --models and --dataset) into --out first")
        }
        return plan
    }

    /// The plan in --out, nil when there is none; one of another format, or damaged, is refused
    /// (by --status and --entry as by a run).
    func existingPlan() throws -> SweepPlan? {
        guard let data = FileManager.default.contents(atPath: planPath) else { return nil }
        let plan: SweepPlan
        do { plan = try JSONDecoder().decode(SweepPlan.self, from: data) } catch {
            throw TrainingError.invalidInput("\(planPath) is not a sweep plan (\(describeDecodingError(error, data: data))); "
                                             + "use another --out, or remove it to start over")
        }
        guard plan.version == SweepPlan.currentVersion else {
            throw TrainingError.invalidInput("\(planPath) is a plan of version \(plan.version); this neuralscale reads version "
                                             + "\(SweepPlan.currentVersion): use another --out, or remove it to start over")
        }
        return plan
    }

    func run() throws {
        if status { return try printStatus() }
        if let entry { return try runEntry(entry) }
        if reportOnly { return try runReportOnly() }
        let spec = try spec()
        let plan = SweepPlanner.plan(spec)
        let folder = try RunFolder.acquire(out)
        defer { folder.release() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        // The same command resumes: a different plan in the folder is another sweep.
        if let previous = try existingPlan(), previous != plan {
            throw ValidationError("\(planPath) holds another plan (other flags?); use another --out, or remove it to start over")
        }
        try AtomicFile.write(try encoder.encode(plan), to: planPath)
        let left = plan.entries.filter { !$0.isDone }
        print("sweep: \(plan.entries.count) entries (\(plan.entries.count - left.count) done before), plan in \(planPath)")
        if dryRun {
            for e in plan.entries {
                print("\(e.id)\(e.isDone ? " (done)" : "")")
                for s in e.steps { print("  \(s.isDone ? "done " : "     ")neuralscale \(s.arguments.joined(separator: " "))") }
            }
            return
        }
        guard let executable = BenchInfer.executableForChildren() else { throw ValidationError("cannot find the neuralscale executable to run the steps") }
        if executor == .slurm { return try submit(plan, executable: executable) }
        TemporaryFiles.installSignalCleanup()
        let jobs = self.jobs ?? 1
        // The threads the steps share: the cores, or NEURALSCALE_THREADS when the sweep was
        // given it (a Slurm task's --cpus-per-task), divided among the jobs.
        let threads = max(1, Parallel.workers / jobs)
        let started = Date()
        var finished = 0
        let status = SweepRunner.run(plan, executable: executable, jobs: jobs, threads: threads,
                                     statusPath: URL(fileURLWithPath: out).appendingPathComponent("sweep-status.json").path) { entry, status in
            finished += 1
            let rest = status.entries.filter { $0.state == "pending" }.count
            let ran = status.entries.filter { $0.state == "done" || $0.state == "failed" }.count
            let elapsed = Date().timeIntervalSince(started)
            let eta = ran > 0 ? elapsed / Double(ran) * Double(rest) / Double(jobs) : 0
            let detail = entry.state == "failed" ? " at \(entry.failedStep ?? "?") (log: \(entry.log ?? "?"))" : ""
            FileHandle.standardError.write(Data(String(format: "[%d done, %d failed, %d left] %@ %@%@  (ETA %.0f s)\n", status.done, status.failed, rest,
                                                       entry.id, entry.state, detail, eta).utf8))
        }
        if TemporaryFiles.stopRequested {
            // The signal's watcher stops the steps, then ends this process as the signal would.
            FileHandle.standardError.write(Data("sweep: stopped by a signal; run the same command again to resume\n".utf8))
            while true { sleep(1) }
        }
        let reportLog = URL(fileURLWithPath: out).appendingPathComponent("logs/report.log").path
        var reportFailed = false
        switch SweepRunner.runReport(plan, executable: executable, threads: Parallel.workers, log: reportLog) {
        case true?: print("report: \(plan.report!.output.replacingOccurrences(of: "report.json", with: "report.md"))")
        case false?: print("report failed: see \(reportLog)"); reportFailed = true
        case nil: break
        }
        print("sweep: \(status.done) of \(status.entries.count) entries done, \(status.failed) failed")
        for e in status.entries where e.state == "failed" || e.state == "blocked" {
            print("  \(e.id): \(e.state)\(e.failedStep.map { " at \($0)" } ?? "")\(e.log.map { ", log \($0)" } ?? "")")
        }
        if status.failed > 0 || reportFailed { throw ExitCode(1) }
    }

    /// --executor slurm: the entries not done as job arrays, and the report job.
    private func submit(_ plan: SweepPlan, executable: String) throws {
        let options = SlurmExecutor.Options(partition: partition, time: time, cpusPerTask: cpusPerTask, maxRunning: jobs)
        let submissions = try SlurmExecutor.submit(plan, out: URL(fileURLWithPath: out).path, executable: executable, options: options)
        for s in submissions {
            let what = s.entries.isEmpty ? "the report" : "\(s.entries.count) entries (array 0-\(s.entries.count - 1))"
            print("submitted job \(s.job): \(what)\(s.dependency.map { ", after \($0)" } ?? "") [\(s.script)]")
        }
        if submissions.allSatisfy(\.entries.isEmpty) { print("every entry is done: only the report was submitted") }
        print("follow with: neuralscale sweep --out \(out) --status")
    }

    /// --entry: one entry's steps, as a Slurm task runs them.
    private func runEntry(_ id: String) throws {
        let plan = try writtenPlan()
        guard let entry = plan.entries.first(where: { $0.id == id }) else {
            throw ValidationError("--entry \(id) is not an entry of \(planPath)")
        }
        guard let executable = BenchInfer.executableForChildren() else { throw ValidationError("cannot find the neuralscale executable to run the steps") }
        TemporaryFiles.installSignalCleanup()
        let threads = Parallel.workers
        guard let result = SweepRunner.runEntry(entry, executable: executable, threads: threads) else {
            FileHandle.standardError.write(Data("sweep: entry \(id) stopped by a signal; submitting again resumes it\n".utf8))
            throw ExitCode(1)
        }
        print("\(id): \(result.state)\(result.failedStep.map { " at \($0) (log: \(result.log ?? "?"))" } ?? "")")
        if result.state == "failed" { throw ExitCode(1) }
    }

    /// --report-only: the report over the results there are.
    private func runReportOnly() throws {
        let plan = try writtenPlan()
        guard let executable = BenchInfer.executableForChildren() else { throw ValidationError("cannot find the neuralscale executable to run the steps") }
        let log = URL(fileURLWithPath: out).appendingPathComponent("logs/report.log").path
        switch SweepRunner.runReport(plan, executable: executable, threads: Parallel.workers, log: log) {
        case true?: print("report: \(plan.report!.output.replacingOccurrences(of: "report.json", with: "report.md"))")
        case false?: print("report failed: see \(log)"); throw ExitCode(1)
        case nil: print("report: no entry has a result yet")
        }
    }

    /// --status: every entry's state from the files.
    private func printStatus() throws {
        let plan = try writtenPlan()
        // Slurm's queue, when this host can ask it, tells queued entries from abandoned ones.
        let submitted = !((try? SlurmExecutor.loadSubmissions(out)) ?? []).isEmpty
        let status = SweepProgress.status(of: plan, out: out, active: submitted ? SweepProgress.slurmQueue() : nil)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
            return
        }
        let width = max(5, plan.entries.map(\.id.count).max() ?? 5) + 2
        print("entry".padding(toLength: width, withPad: " ", startingAt: 0) + "state")
        for e in status.entries {
            var detail = e.state
            if let step = e.failedStep { detail += " at \(step)" }
            if let job = e.job { detail += " (job \(job)\(e.host.map { " on \($0)" } ?? ""))" }
            if let log = e.log, e.state != "done" { detail += ", log \(log)" }
            print(e.id.padding(toLength: width, withPad: " ", startingAt: 0) + detail)
        }
        var counts: [String: Int] = [:]
        for e in status.entries { counts[e.state, default: 0] += 1 }
        print("\(plan.entries.count) entries: " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
    }
}

/// `sweep --search-preset`: the papers' settings (descend without `--preset`) or one of
/// descend's presets.
enum SearchPreset: String, CaseIterable, ExpressibleByArgument {
    case paper
    case quick
}
