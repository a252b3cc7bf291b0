import ArchDescent
import ArgumentParser
import Foundation
import Nets
import Reporting

/// The resource-budget flags of `stats` and `widths`: one target instead of --ratio, and the
/// channel multiple.
struct BudgetFlags: ParsableArguments {
    @Option(name: .long, help: "Scale to this many MFLOPs per image (thop's counting, as `stats` prints), met from below.")
    var targetMflops: Double?

    @Option(name: .long, help: "Scale to this latency in ms (batch 1) predicted by --latency-table, met from below.")
    var targetLatencyMs: Double?

    @Option(name: .long, help: "With --target-latency-ms: a table of `neuralscale bench infer --latency-table FILE --model M`.")
    var latencyTable: String?

    @Option(name: .long, help: "Scale to this runtime memory in MB, from --memory-profile's line memory = m * P + b, met from below.")
    var targetMemoryMb: Double?

    @Option(name: .long, help: "With --target-memory-mb: a built-in device profile (`advise --list-profiles`) or a profile file of `advise --fit --save-profile`.")
    var memoryProfile = "cortex-a72-fp32"

    @Option(name: .long, help: "Round every width group to a multiple of K, keeping the budget (solve, round, re-balance). Default with --target-latency-ms: the table's step.")
    var channelMultiple: Int?

    var given: Bool { targetMflops != nil || targetLatencyMs != nil || targetMemoryMb != nil }

    func validate() throws {
        let targets = [("--target-mflops", targetMflops), ("--target-latency-ms", targetLatencyMs), ("--target-memory-mb", targetMemoryMb)]
        guard targets.filter({ $0.1 != nil }).count <= 1 else {
            throw ValidationError("give one of --target-mflops, --target-latency-ms and --target-memory-mb")
        }
        for (flag, v) in targets {
            if let v, !(v.isFinite && v > 0) { throw ValidationError("\(flag) must be a number > 0, got \(v)") }
        }
        if targetLatencyMs != nil, latencyTable == nil {
            throw ValidationError("--target-latency-ms needs --latency-table FILE (written by `neuralscale bench infer --latency-table FILE --model M`)")
        }
        if latencyTable != nil, targetLatencyMs == nil { throw ValidationError("--latency-table goes with --target-latency-ms") }
        if let k = channelMultiple, !(1...512).contains(k) { throw ValidationError("--channel-multiple must be in 1...512, got \(k)") }
    }

    /// The budget for `template`'s net: one of the targets, or the parameter count of the uniform
    /// net at `ratio`.
    func budget(ratio: Double, template: NetDescription) throws -> Budget {
        if let x = targetMflops { return .mflops(x) }
        if let x = targetMemoryMb {
            let profile: DeviceProfile
            do { profile = try DeviceProfile.named(memoryProfile, using: "memory") } catch {
                // The lookup's message names advise's flag, --profile.
                throw ValidationError("--memory-profile " + "\(error)".replacingOccurrences(of: "--profile ", with: ""))
            }
            guard let line = profile.memory else { throw ValidationError("--memory-profile \(memoryProfile) has no memory model") }
            guard line.m > 0 else { throw ValidationError("--memory-profile \(memoryProfile): memory does not grow with parameters (m = \(line.m))") }
            return .memory(x, m: line.m, b: line.b, profile: profile.name)
        }
        if let x = targetLatencyMs, let file = latencyTable {
            let table = try LatencyTable.load(file)
            guard table.model == template.architecture, table.inChannels == template.inChannels, table.imageSize == template.imageSize,
                  table.classes == template.classes else {
                throw ValidationError("--latency-table \(file) was measured for \(table.model.rawValue) with \(table.inChannels)x\(table.imageSize)x\(table.imageSize) inputs and \(table.classes) classes, not this net")
            }
            return .latency(x, table: table, file: file)
        }
        return .params(WidthSolver.target(ratio: ratio, for: template))
    }

    /// Both scalings' widths at the budget (NeuralScale's only with a fit).
    func solve(ratio: Double, template: NetDescription, fit: PowerLawFit?) throws -> (budget: Budget, uniform: BudgetedWidths, neuralscale: BudgetedWidths?) {
        let budget = try budget(ratio: ratio, template: template)
        let k = channelMultiple ?? budget.defaultMultiple
        do {
            // A ratio without a multiple keeps its own uniform widths.
            let uniform = !given && k == 1 ? try BudgetSolver.uniform(template: template, budget: budget, exactRatio: ratio)
                : try BudgetSolver.uniform(template: template, budget: budget, multiple: k)
            let neuralscale = try fit.map { try BudgetSolver.neuralscale($0, template: template, budget: budget, multiple: k) }
            return (budget, uniform, neuralscale)
        } catch let error as BudgetError {
            throw ValidationError("\(error)")
        }
    }
}

extension BudgetedWidths {
    /// "target 80 MFLOPs, achieved 79.6 (-0.5%)".
    var summary: String {
        String(format: "%@: target %.6g %@, achieved %.6g (%+.2f%%), P %d, %.3f MFLOPs%@", scaling, target, measure.unit, achieved,
               100 * relativeError, params, mflops, multiple > 1 ? ", widths in multiples of \(multiple)" : "")
    }
}
