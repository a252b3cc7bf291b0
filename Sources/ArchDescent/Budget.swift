import Foundation
import Nets

/// What a scaled net must fit: a parameter count (a ratio's: the closest P), or a resource budget
/// (MFLOPs, latency on a device, memory) met from below.
public struct Budget: Sendable {
    public enum Measure: String, Codable, Sendable {
        case params, mflops
        case latency = "latency_ms"
        case memory = "memory_mb"

        public var unit: String {
            switch self {
            case .params: return "params"
            case .mflops: return "MFLOPs"
            case .latency: return "ms"
            case .memory: return "MB"
            }
        }
    }

    public var measure: Measure
    public var target: Double
    /// The net's figure in the measure's unit.
    public var cost: @Sendable (NetDescription) throws -> Double
    /// How the figure is obtained, for reports ("analytic", "latency table FILE (device)", ...).
    public var model: String
    /// The channel multiple the cost model is made for, the default of a solve (a latency
    /// table's step: ONNX Runtime runs other channel counts on slower paths); 1: any width.
    public var defaultMultiple = 1
    /// What bounds the cost from below where the model alone would not (said when no net meets
    /// the target).
    public var limit: String?

    /// Resource budgets are met from below; a parameter count as closely as the integers allow.
    public var fromBelow: Bool { measure != .params }

    public static func params(_ target: Int) -> Budget {
        Budget(measure: .params, target: Double(target), cost: { Double($0.parameterCount) }, model: "analytic")
    }

    public static func mflops(_ target: Double) -> Budget {
        Budget(measure: .mflops, target: target, cost: { $0.mflops }, model: "analytic (thop's counting)")
    }

    /// Memory from a linear model of a device, `m * P + b` MB (`advise`'s profiles).
    public static func memory(_ target: Double, m: Double, b: Double, profile: String) -> Budget {
        Budget(measure: .memory, target: target, cost: { m * Double($0.parameterCount) + b },
               model: "memory = \(m) * P + \(b) MB (profile \(profile))")
    }

    public static func latency(_ target: Double, table: LatencyTable, file: String) -> Budget {
        // The table's errors (a kind of layer it did not measure) name its file.
        var budget = Budget(measure: .latency, target: target, cost: {
                                do { return try table.predictMs($0) } catch { throw LatencyTableError("\(file): \(error)") }
                            },
                            model: "latency table \(file) (\(table.device))", defaultMultiple: table.multiple)
        if table.floorMs > 0 {
            budget.limit = String(format: "the table predicts no less than %.6g ms, the fastest net it measured end to end", table.floorMs)
        }
        return budget
    }

    /// Whether `value` meets the budget (from below), with a relative slack of 1e-12.
    func meets(_ value: Double) -> Bool { value <= target * (1 + 1e-12) }
}

/// Widths found for a budget, and what they achieve.
public struct BudgetedWidths: Codable, Equatable, Sendable {
    public var scaling: String
    public var measure: Budget.Measure
    public var target: Double
    public var achieved: Double
    /// `(achieved - target) / target`.
    public var relativeError: Double
    public var widths: [Int]
    public var params: Int
    public var mflops: Double
    /// Uniform scaling: the ratio; NeuralScale: the fit's scale tau.
    public var knob: Double
    /// The channel multiple every width was rounded to (1: none).
    public var multiple: Int

    /// The net `d` with its figure `achieved` against `budget`.
    init(_ d: NetDescription, achieved: Double, budget: Budget, scaling: String, knob: Double, multiple: Int) {
        self.scaling = scaling
        measure = budget.measure
        target = budget.target
        self.achieved = achieved
        relativeError = (achieved - budget.target) / budget.target
        widths = d.widths
        params = d.parameterCount
        mflops = d.mflops
        self.knob = knob
        self.multiple = multiple
    }
}

public struct BudgetError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Scales a net to a budget (issue: "scale to a FLOPs, latency or memory budget"). Both scalings
/// have one knob that every width grows with (the uniform ratio; the fit's scale tau, one to one
/// with P), so the cost of the rounded widths grows with it too: a bisection on the knob finds the
/// largest setting that meets the budget from below. Then single groups are nudged: while a group
/// can take one more channel (`multiple` more) and the budget still holds, the one that brings the
/// cost closest to the target does. With `multiple` > 1 the bisection runs on the widths rounded
/// to the multiple (still growing with the knob), and the nudges are steps of `multiple`.
public enum BudgetSolver {
    /// Stop nudging once the cost is within this share of the target.
    public static let tolerance = 0.001

    /// Uniform scaling: widths `Int(width * r)`, the largest ratio r in (0, 4] that meets the
    /// budget, then rounding and nudging.
    public static func uniform(template: NetDescription, budget: Budget, multiple: Int = 1) throws -> BudgetedWidths {
        let arch = template.architecture
        let smallest = 1.0001 / Double(arch.originalWidths.min()!)
        return try solve(template: template, budget: budget, multiple: multiple, scaling: "uniform",
                         knobRange: log(smallest)...log(4)) { arch.uniformWidths(ratio: exp($0)) }
    }

    /// The uniform net at `ratio` itself (`Int(width * ratio)`), with its figures against `budget`.
    public static func uniform(template: NetDescription, budget: Budget, exactRatio ratio: Double) throws -> BudgetedWidths {
        var d = template
        d.widths = template.architecture.uniformWidths(ratio: ratio)
        return BudgetedWidths(d, achieved: try budget.cost(d), budget: budget, scaling: "uniform", knob: ratio, multiple: 1)
    }

    /// NeuralScale: the fit's widths at scale tau, the largest tau that meets the budget.
    public static func neuralscale(_ fit: PowerLawFit, template: NetDescription, budget: Budget, multiple: Int = 1) throws -> BudgetedWidths {
        guard fit.groups.count == template.architecture.originalWidths.count else {
            throw FitError("the fit has \(fit.groups.count) groups, \(template.architecture.rawValue) has \(template.architecture.originalWidths.count)")
        }
        // A bracket of ln tau from every group at about one channel to the largest net allowed.
        var lo = fit.isFallback ? log(0.5 / Double(template.architecture.originalWidths.max()!)) : 0.0
        while lo > -200 && fit.widths(scale: exp(lo)).contains(where: { $0 > 1 }) { lo -= 1 }
        var hi = lo
        let uniform4 = NetDescription.uniform(template.architecture, ratio: 4, inChannels: template.inChannels,
                                              imageSize: template.imageSize, classes: template.classes).parameterCount
        var d = template
        while hi < 200 {
            d.widths = fit.widths(scale: exp(hi))
            if d.widths.contains(where: { $0 > NetDescription.maxWidth }) || d.parameterCount > uniform4 { break }
            hi += 1
        }
        return try solve(template: template, budget: budget, multiple: multiple, scaling: "neuralscale", knobRange: lo...hi,
                         units: fit.units) {
            fit.widths(scale: exp($0))
        }
    }

    /// - Parameter units: groups nudged together (a coupled fit's sets); nil: every group alone.
    static func solve(template: NetDescription, budget: Budget, multiple: Int, scaling: String, knobRange: ClosedRange<Double>,
                      units: [[Int]]? = nil, widths unrounded: (Double) -> [Int]) throws -> BudgetedWidths {
        // Rounding to the multiple keeps the widths growing with the knob, so the bisection runs on
        // the rounded widths: the net keeps the scaling's shape.
        func widths(_ knob: Double) -> [Int] {
            let w = unrounded(knob)
            return multiple > 1 ? w.map { max(multiple, Int((Double($0) / Double(multiple)).rounded()) * multiple) } : w
        }
        guard budget.target.isFinite && budget.target > 0 else { throw BudgetError("the target must be > 0, got \(budget.target)") }
        guard multiple >= 1 else { throw BudgetError("the channel multiple must be >= 1, got \(multiple)") }
        var d = template
        func cost(_ w: [Int]) throws -> Double { d.widths = w; return try budget.cost(d) }
        func distance(_ c: Double) -> Double { abs(c - budget.target) }
        var lo = knobRange.lowerBound, hi = knobRange.upperBound
        let smallestWidths = multiple > 1 ? "every width \(multiple), the channel multiple" : "widths of about one channel"
        // Past the largest net the scaling builds (4x the original widths, or as many parameters),
        // the nudges alone would grow single groups toward the widest layer allowed.
        // (For the closest net, as --ratio's parameter count is, only when it is under half the
        // target: a channel multiple's rounding leaves ratio 4 a few percent under its own count.)
        let largest = try cost(widths(hi))
        if budget.fromBelow ? largest < budget.target && distance(largest) > tolerance * budget.target : largest < budget.target / 2 {
            throw BudgetError(String(format: "no %@ net reaches %.6g %@: the largest (up to 4x the original widths) needs %.6g", scaling,
                                     budget.target, budget.measure.unit, largest))
        }
        var best: Double
        if budget.fromBelow {
            let smallest = try cost(widths(lo))
            guard budget.meets(smallest) else {
                throw BudgetError(String(format: "no %@ net meets %.6g %@: the smallest (%@) needs %.6g", scaling, budget.target, budget.measure.unit,
                                         smallestWidths, smallest) + (budget.limit.map { " (\($0))" } ?? ""))
            }
            if try budget.meets(cost(widths(hi))) { lo = hi }
            for _ in 0..<200 where hi - lo > 1e-12 {
                let mid = (lo + hi) / 2
                if try budget.meets(cost(widths(mid))) { lo = mid } else { hi = mid }
            }
            best = lo
        } else {
            // Closest, unless even the smallest net is more than twice the target (a --ratio far
            // below what --channel-multiple allows): that nearest net is no answer to it.
            let smallest = try cost(widths(lo))
            if smallest > 2 * budget.target {
                throw BudgetError(String(format: "no %@ net comes near %.6g %@: the smallest (%@) needs %.6g", scaling, budget.target,
                                         budget.measure.unit, smallestWidths, smallest))
            }
            // The two sides of the crossing.
            for _ in 0..<200 where hi - lo > 1e-12 {
                let mid = (lo + hi) / 2
                if try cost(widths(mid)) < budget.target { lo = mid } else { hi = mid }
            }
            best = try distance(cost(widths(lo))) <= distance(cost(widths(hi))) ? lo : hi
        }
        var w = widths(best)
        // Report the smallest knob with these widths (the uniform ratio 0.5, not 0.50195 that rounds
        // to the same widths).
        var below = knobRange.lowerBound
        for _ in 0..<200 where best - below > 1e-12 {
            let mid = (below + best) / 2
            if widths(mid) == w { best = mid } else { below = mid }
        }
        var current = try cost(w)
        // Nudge: single groups (a unit's groups together) by one step while that brings the cost
        // closer to the target.
        let units = units ?? w.indices.map { [$0] }
        var passes = 0
        while distance(current) > tolerance * budget.target && passes < 5000 {
            passes += 1
            var move: (Int, Int, Double)?
            for (u, unit) in units.enumerated() {
                // A from-below budget only grows: the bisection left the net under it.
                for delta in budget.fromBelow ? [multiple] : [multiple, -multiple]
                where w[unit[0]] + delta >= 1 && w[unit[0]] + delta <= NetDescription.maxWidth {
                    for g in unit { w[g] += delta }
                    let c = try cost(w)
                    for g in unit { w[g] -= delta }
                    guard !budget.fromBelow || budget.meets(c) else { continue }
                    if distance(c) < distance(move?.2 ?? current) { move = (u, delta, c) }
                }
            }
            guard let (u, delta, c) = move else { break }
            for g in units[u] { w[g] += delta }
            current = c
        }
        d.widths = w
        return BudgetedWidths(d, achieved: current, budget: budget, scaling: scaling, knob: exp(best), multiple: multiple)
    }
}
