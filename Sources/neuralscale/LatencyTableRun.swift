import ArgumentParser
import Autodiff
import Checkpoint
import Datasets
import Export
import Foundation
import Nets
import Training

/// `bench infer --latency-table FILE --model M`: the per-layer latency table of a net on this
/// machine, checked against end-to-end latencies.
extension BenchInfer {
    func validateLatencyTable() throws {
        guard checkpoint.isEmpty, onnx.isEmpty else { throw ValidationError("--latency-table measures --model's layers; leave out --checkpoint and --onnx") }
        guard let model, Architecture(rawValue: model) != nil else {
            throw ValidationError("--latency-table needs --model with one net (\(Architecture.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard backend != .swift else { throw ValidationError("--latency-table measures ONNX Runtime; leave out --backend swift") }
        guard !verify else { throw ValidationError("--verify checks the engine on --checkpoint and --model nets; --latency-table times layers on ONNX Runtime alone") }
        guard (1...512).contains(step) else { throw ValidationError("--channel-multiple must be in 1...512, got \(step)") }
        guard (2...64).contains(tablePoints) else { throw ValidationError("--table-points must be in 2...64, got \(tablePoints)") }
        guard tableMaxRatio.isFinite, tableMaxRatio > 0, tableMaxRatio <= 4 else {
            throw ValidationError("--table-max-ratio must be in (0, 4], got \(tableMaxRatio)")
        }
        guard (0...1000).contains(calibrationRandom) else { throw ValidationError("--calibration-random must be in 0...1000, got \(calibrationRandom)") }
        guard (0...1000).contains(tableChecks) else { throw ValidationError("--table-checks must be in 0...1000, got \(tableChecks)") }
        guard (1...1000).contains(layerTrials) else { throw ValidationError("--layer-trials must be in 1...1000, got \(layerTrials)") }
        guard (1...10_000).contains(layerRuns) else { throw ValidationError("--layer-runs must be in 1...10000, got \(layerRuns)") }
        guard runs >= 1, trials >= 1, warmup >= 0, threads >= 0 else {
            throw ValidationError("--runs and --trials must be >= 1, --warmup and --threads >= 0")
        }
    }

    /// The grid's step: --channel-multiple, by default ONNX Runtime's NCHWc block on this CPU
    /// (16 with AVX-512, else 8).
    var step: Int { channelMultiple ?? LatencyTableMeasurement.defaultStep }

    func runLatencyTable(_ file: String) throws {
        TemporaryFiles.installSignalCleanup()
        TemporaryFiles.removeStale()
        let arch = Architecture(rawValue: model!)!
        let template = NetDescription.uniform(arch, ratio: tableMaxRatio, inChannels: dataset.channels, imageSize: dataset.imageSize,
                                              classes: dataset.classes)
        try template.validate()
        // Fail on an unwritable destination before the measurements.
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: file).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        try AtomicFile.write(Data(), to: file)
        let started = monotonicSeconds()
        func say(_ line: String) { if !json { FileHandle.standardError.write(Data((line + "\n").utf8)) } }
        let layerSettings = LatencyTableMeasurement.Settings(multiple: step, points: tablePoints, maxRatio: tableMaxRatio,
                                                             threads: threads, warmup: 5, runs: layerRuns, trials: layerTrials)
        let netSettings = LatencyTableMeasurement.Settings(multiple: step, points: tablePoints, maxRatio: tableMaxRatio,
                                                           threads: threads, warmup: warmup, runs: runs, trials: trials)
        // The nets that calibrate the constant and memory term, and the nets that check the table.
        let calibrationNets = LatencyTableMeasurement.calibrationNets(template, maxRatio: tableMaxRatio, multiple: step)
            + LatencyTableMeasurement.randomNets(template, maxRatio: tableMaxRatio, multiple: step, count: calibrationRandom,
                                                 seed: 2).map { ("calibration " + $0.0, $0.1) }
        let checkNets = LatencyTableMeasurement.randomNets(template, maxRatio: tableMaxRatio, multiple: step, count: tableChecks)
        let nets = calibrationNets + checkNets
        let paths = try nets.map { try LatencyTableMeasurement.exportNet($0.1) }
        defer { paths.forEach(TemporaryFiles.remove) }
        // Every net is timed in rounds between the kinds of layer (then more rounds up to
        // --trials), and its latency is its best round: nets and layers meet the same machine,
        // whose speed drifts by tens of percent within an hour.
        var rounds = [[Double]](repeating: [], count: nets.count)
        func round() throws {
            for (i, ms) in try LatencyTableMeasurement.netRound(paths, netSettings).enumerated() { rounds[i].append(ms) }
        }
        let (entries, version) = try LatencyTableMeasurement.measureLayers(template, layerSettings, between: round) { done, total in
            let elapsed = monotonicSeconds() - started
            say(String(format: "layers %d/%d and %d nets (%@ elapsed, ETA %@)", done, total, nets.count, formatDuration(elapsed),
                       formatDuration(elapsed / Double(done) * Double(total - done))))
        }
        while (rounds.first?.count ?? trials) < trials { try round() }
        let measured = rounds.map { $0.min() ?? .nan }
        let t = ORTInference.intraOpThreads(threads)
        let device = "onnxruntime \(version), \(t) thread\(t == 1 ? "" : "s"), batch 1, "
            + "\(ProcessInfo.processInfo.hostName) (\(ProcessInfo.processInfo.activeProcessorCount) cores)"
        var table = LatencyTable(model: arch, inChannels: template.inChannels, imageSize: template.imageSize, classes: template.classes,
                                 device: device, multiple: step, entries: entries)
        // The constant and per-parameter term, fitted to the calibration nets' measured latencies.
        let calibration = try calibrationNets.enumerated().map { k, net in (net.0, net.1, measured[k], try table.layersMs(net.1)) }
        (table.constantMs, table.perMParamMs, table.kneeParams) = LatencyTableMeasurement.calibrate(
            params: calibration.map { $0.1.parameterCount }, layersMs: calibration.map(\.3), measuredMs: calibration.map(\.2))
        // The measured times first: they set the floor every prediction of the saved table has
        // (`LatencyTable.floorMs`), so the predictions stored are the ones it will make.
        table.calibration = try calibration.map { name, d, measured, _ in
            LatencyTable.Check(name: name, widths: d.widths, params: d.parameterCount, layersMs: try table.layersMs(d),
                               predictedMs: .nan, measuredMs: measured)
        }
        for (k, net) in calibration.enumerated() { table.calibration[k].predictedMs = try table.predictMs(net.1) }
        say(String(format: "calibrated on %d nets: constant %.3f ms, %.4f ms per million parameters beyond %d", calibration.count,
                   table.constantMs, table.perMParamMs, table.kneeParams))
        for (k, (name, d)) in checkNets.enumerated() {
            let check = LatencyTable.Check(name: name, widths: d.widths, params: d.parameterCount, layersMs: try table.layersMs(d),
                                           predictedMs: try table.predictMs(d), measuredMs: measured[calibrationNets.count + k])
            table.checks.append(check)
            say(String(format: "check %d/%d %@: predicted %.3f ms, measured %.3f ms (%+.1f%%)", k + 1, checkNets.count, name,
                       check.predictedMs, check.measuredMs, 100 * check.error))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(table)
        try AtomicFile.write(data, to: file)
        if json {
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let layers = entries.reduce(0) { $0 + $1.inChannels.count * $1.outChannels.count }
        print("latency table of \(arch.rawValue) (\(template.inChannels)x\(template.imageSize)x\(template.imageSize), \(template.classes) classes) -> \(file)")
        print("  \(device)")
        print("  \(entries.count) kinds of layer, \(layers) layers timed; channel step \(step), up to x\(tableMaxRatio)")
        print(String(format: "  constant %.3f ms, %.4f ms per million parameters beyond %d (fitted to the calibration nets)", table.constantMs,
                     table.perMParamMs, table.kneeParams))
        print("  net                      params   layers ms   predicted ms   measured ms   error")
        for c in table.calibration + table.checks {
            print("  " + c.name.padding(toLength: 18, withPad: " ", startingAt: 0)
                + String(format: " %12d  %10.3f  %13.3f  %12.3f  %+6.1f%%", c.params, c.layersMs, c.predictedMs, c.measuredMs, 100 * c.error))
        }
        if !table.checks.isEmpty {
            let errors = table.checks.map { abs($0.error) }
            print(String(format: "  random nets: mean |error| %.1f%%, max |error| %.1f%%, within 15%%: %d of %d", 100 * errors.reduce(0, +) / Double(errors.count),
                         100 * errors.max()!, errors.filter { $0 <= 0.15 }.count, errors.count))
        }
    }
}
