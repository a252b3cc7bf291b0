import Foundation
import Nets

/// Widths found for a parameter budget, and how close they came.
public struct SolvedWidths: Codable, Equatable, Sendable {
    public var widths: [Int]
    /// P of the net with these widths.
    public var params: Int
    public var target: Int
    /// `(params - target) / target`.
    public var relativeError: Double
    /// The fit's scale that gave the widths before any per-group adjustment.
    public var scale: Double
}

/// Finds the widths a fit gives for a target parameter count (spec: "From a fit to a config at a
/// target size").
public enum WidthSolver {
    /// Within this relative error the solver stops refining.
    public static let tolerance = 0.005

    /// The target for `ratio`: P of the uniformly scaled net, so a NeuralScale net and a uniform
    /// net at the same ratio have (almost) the same size.
    public static func target(ratio: Double, for template: NetDescription) -> Int {
        NetDescription.uniform(template.architecture, ratio: ratio, inChannels: template.inChannels,
                               imageSize: template.imageSize, classes: template.classes).parameterCount
    }

    /// Widths of `fit` whose P is as close to `target` as the integers allow.
    ///
    /// P(widths(tau)) grows with tau when the betas are positive, so a bisection on ln tau between
    /// a bracket that straddles the target finds the crossing; rounding makes P a step function,
    /// so the closest step on either side is kept, and every configuration near that tau is tried
    /// too (P can drop as tau grows: see below). If that is still off by more than
    /// `tolerance` (tiny nets, where one channel is a large step), single groups (the groups of a
    /// coupled set together: `PowerLawFit.units`) are nudged by one channel while that brings P
    /// closer (`nudged`).
    /// - Parameters:
    ///   - template: architecture, input channels, image size and classes; its widths are
    ///     ignored.
    ///   - window: the half-width, in ln tau, of the neighbourhood searched after the bisection
    ///     (0: the bisection and its nudges alone, as before the search; for comparisons).
    public static func solve(_ fit: PowerLawFit, target: Int, template: NetDescription,
                             window: Double = searchWindow) throws -> SolvedWidths {
        guard fit.groups.count == template.architecture.originalWidths.count else {
            throw FitError("the fit has \(fit.groups.count) groups, \(template.architecture.rawValue) has \(template.architecture.originalWidths.count)")
        }
        guard target > 0 else { throw FitError("the target parameter count must be > 0, got \(target)") }
        var d = template
        func params(_ w: [Int]) -> Int { d.widths = w; return d.parameterCount }
        func p(_ lnTau: Double) -> Int { params(fit.widths(scale: exp(lnTau))) }

        // Bracket: start where a fallback's ratio is 1 or a fit reproduces widths at P = target.
        var lo = fit.isFallback ? 0.0 : log(Double(target)), hi = lo
        var steps = 0
        while p(lo) > target && steps < 200 { lo -= 1; steps += 1 }
        steps = 0
        while p(hi) < target && steps < 200 { hi += 1; steps += 1 }
        var best = lo
        func consider(_ t: Double) { if abs(p(t) - target) < abs(p(best) - target) { best = t } }
        consider(hi)
        for _ in 0..<100 {
            let mid = (lo + hi) / 2
            consider(mid)
            if p(mid) < target { lo = mid } else { hi = mid }
            if hi - lo < 1e-12 { break }
        }
        // P is not monotone in tau everywhere: where the two ends of a residual block round to the
        // same width, its 1x1 projection becomes an identity and P drops (ResNet-50 without
        // coupling), so the bisection may end at a crossing whose steps are farther from the
        // target than another crossing's nearby. Every width configuration within `window` of
        // the bisection's ln tau is visited (one tau between each two consecutive points where a
        // group's rounded width changes) and the closest kept. Both it and the bisection's are
        // nudged (below), and the closer result wins (the bisection's on a tie), so the search
        // never ends farther from the target than the bisection and its nudges alone.
        let bisected = best
        for t in Self.configurations(of: fit, around: bisected, window: window) { consider(t) }
        var result = nudged(fit.widths(scale: exp(bisected)), scale: exp(bisected), fit: fit, target: target, params: params)
        if best != bisected {
            let searched = nudged(fit.widths(scale: exp(best)), scale: exp(best), fit: fit, target: target, params: params)
            if abs(searched.params - target) < abs(result.params - target) { result = searched }
        }
        return result
    }

    /// `widths` nudged by one channel of a single group (a coupled set's groups together:
    /// `PowerLawFit.units`) at a time while that brings P closer, as long as P is more than
    /// `tolerance` off the target (small nets, where one channel is a large step).
    private static func nudged(_ start: [Int], scale: Double, fit: PowerLawFit, target: Int, params: ([Int]) -> Int) -> SolvedWidths {
        var widths = start
        var achieved = params(widths)
        var improved = Double(abs(achieved - target)) > tolerance * Double(target)
        var passes = 0
        let units = fit.units
        while improved && passes < 1000 {
            improved = false
            passes += 1
            var bestMove: (Int, Int, Int)?
            for (u, unit) in units.enumerated() {
                for delta in [-1, 1] where widths[unit[0]] + delta >= 1 {
                    var w = widths
                    for g in unit { w[g] += delta }
                    let q = params(w)
                    if abs(q - target) < abs((bestMove?.2 ?? achieved) - target) { bestMove = (u, delta, q) }
                }
            }
            if let (u, delta, q) = bestMove {
                for g in units[u] { widths[g] += delta }
                achieved = q
                improved = Double(abs(achieved - target)) > tolerance * Double(target)
            }
        }
        return SolvedWidths(widths: widths, params: achieved, target: target,
                            relativeError: Double(achieved - target) / Double(target), scale: scale)
    }

    /// The half-width, in ln tau, of the neighbourhood `solve` searches after its bisection: tau
    /// within +-10%, widths within about 5% (betas near 0.5), P within about 10%.
    public static let searchWindow = 0.1

    /// One ln tau inside each interval of `center +- window` where every group's rounded
    /// width (`alpha * tau^beta`, `alpha * tau` for a fallback) is constant: the midpoints between
    /// consecutive points where `alpha * tau^beta` crosses `k + 0.5`. At most `limit` of them
    /// (a wider net is sampled evenly instead, `limit + 1` points).
    static func configurations(of fit: PowerLawFit, around center: Double, window: Double, limit: Int = 20_000) -> [Double] {
        guard window > 0 else { return [] }
        let lo = center - window, hi = center + window
        func sampled() -> [Double] { stride(from: lo, through: hi, by: (hi - lo) / Double(limit)).map { $0 } }
        var points = [lo, hi]
        for g in fit.groups {
            let beta = fit.isFallback ? 1 : g.beta
            guard beta > 0, g.alpha > 0 else { continue }
            // alpha * tau^beta = k + 0.5  <=>  ln tau = (ln(k + 0.5) - ln alpha) / beta.
            let r0 = g.alpha * exp(beta * lo), r1 = g.alpha * exp(beta * hi)
            guard r0.isFinite, r1.isFinite, r1 - r0 < Double(limit) else { return sampled() }
            var k = max(0, (r0 - 0.5).rounded(.down))
            while k + 0.5 < r1 {
                if k + 0.5 > r0 { points.append((log(k + 0.5) - log(g.alpha)) / beta) }
                k += 1
            }
            if points.count > limit { return sampled() }
        }
        points.sort()
        return zip(points, points.dropFirst()).compactMap { a, b in b > a ? (a + b) / 2 : nil }
    }
}
