import Foundation
import Nets
import Pruning

/// `w = alpha * P^beta` for one group, and how well it fits (R^2 on the log-log data).
public struct GroupFit: Codable, Equatable, Sendable {
    public var alpha: Double
    public var beta: Double
    /// 1 - SS_res / SS_tot of `ln w` against `ln P`; nil for the fallback. A group whose width
    /// never changed fits exactly: 1.
    public var rSquared: Double?

    public init(alpha: Double, beta: Double, rSquared: Double?) {
        self.alpha = alpha
        self.beta = beta
        self.rSquared = rSquared
    }
}

/// The per-group power laws of one pruning run (spec: "Power-law fit").
public struct PowerLawFit: Codable, Equatable, Sendable {
    /// Fewer rows than this cannot be fitted; the fit falls back to uniform scaling.
    public static let minimumRows = 6

    public var groups: [GroupFit]
    /// How many trajectory rows the fit used.
    public var rows: Int
    /// Why the fit fell back to uniform scaling, or nil when it is a real fit.
    public var fallbackReason: String?
    /// The sets of groups pruned as one (`descend --couple-residuals`): each set's groups share
    /// one power law, so they always get the same width and the identity shortcuts between them
    /// stay identities. Nil: every group on its own.
    public var coupling: [[Int]]?

    public var isFallback: Bool { fallbackReason != nil }

    public init(groups: [GroupFit], rows: Int, fallbackReason: String?, coupling: [[Int]]? = nil) {
        self.groups = groups
        self.rows = rows
        self.fallbackReason = fallbackReason
        self.coupling = coupling
    }

    /// Every group in exactly one unit, ordered by first group: the coupled sets and every other
    /// group alone. A solver moves the widths of a unit together.
    public var units: [[Int]] { couplingUnits(coupling ?? [], groups: groups.count) }

    /// Least squares of `ln w_l = beta_l * ln P + ln alpha_l` for every group; the groups of a
    /// coupled set (whose widths a coupled pruner keeps equal) take their first group's law.
    ///
    /// With fewer than `minimumRows` rows, or rows that all have the same P, it falls back as the
    /// reference does: alpha = the first row's widths, beta = 0; `widths(scale:)` then scales
    /// those widths uniformly.
    public static func fit(_ trajectory: [TrajectoryRow], coupling: [[Int]]? = nil) throws -> PowerLawFit {
        var fit = try fit(trajectory)
        guard let coupling, !coupling.isEmpty else { return fit }
        fit.coupling = coupling
        try fit.validateCoupling(laws: false)
        for set in coupling {
            for g in set { fit.groups[g] = fit.groups[set.min()!] }
        }
        return fit
    }

    private static func fit(_ trajectory: [TrajectoryRow]) throws -> PowerLawFit {
        guard let first = trajectory.first else { throw FitError("the trajectory is empty: nothing to fit") }
        guard trajectory.allSatisfy({ $0.widths.count == first.widths.count }) else {
            throw FitError("trajectory rows have different numbers of groups")
        }
        guard trajectory.allSatisfy({ $0.params > 0 && $0.widths.allSatisfy { $0 >= 1 } }) else {
            throw FitError("trajectory rows need P > 0 and widths >= 1")
        }
        func fallback(_ reason: String) -> PowerLawFit {
            PowerLawFit(groups: first.widths.map { GroupFit(alpha: Double($0), beta: 0, rSquared: nil) },
                        rows: trajectory.count, fallbackReason: reason)
        }
        guard trajectory.count >= minimumRows else {
            return fallback("only \(trajectory.count) trajectory rows (\(minimumRows) needed): uniform scaling of the first row's widths")
        }
        let x = trajectory.map { log(Double($0.params)) }
        let n = Double(x.count), meanX = x.reduce(0, +) / n
        let sxx = x.reduce(0) { $0 + ($1 - meanX) * ($1 - meanX) }
        guard sxx > 1e-12 else { return fallback("every trajectory row has the same P: uniform scaling of the first row's widths") }
        var groups: [GroupFit] = []
        for g in first.widths.indices {
            let y = trajectory.map { log(Double($0.widths[g])) }
            let meanY = y.reduce(0, +) / n
            var sxy = 0.0, syy = 0.0
            for k in x.indices {
                sxy += (x[k] - meanX) * (y[k] - meanY)
                syy += (y[k] - meanY) * (y[k] - meanY)
            }
            let beta = sxy / sxx, lnAlpha = meanY - beta * meanX
            var ssRes = 0.0
            for k in x.indices { let r = y[k] - (beta * x[k] + lnAlpha); ssRes += r * r }
            groups.append(GroupFit(alpha: exp(lnAlpha), beta: beta, rSquared: syy > 1e-12 ? 1 - ssRes / syy : 1))
        }
        return PowerLawFit(groups: groups, rows: trajectory.count, fallbackReason: nil)
    }

    /// The widths at scale `tau`: `max(1, round(alpha * tau^beta))` per group; for a fallback,
    /// `max(1, round(alpha * tau))`, uniform scaling with `tau` as the ratio. A width beyond
    /// `NetDescription.maxWidth` comes out as `maxWidth + 1`, which a net refuses.
    public func widths(scale tau: Double) -> [Int] {
        rawWidths(scale: tau).map { max(1, NetDescription.width($0, rounded: true)) }
    }

    /// `alpha * tau^beta` per group before rounding (`alpha * tau` for a fallback).
    public func rawWidths(scale tau: Double) -> [Double] {
        groups.map { isFallback ? $0.alpha * tau : $0.alpha * pow(tau, $0.beta) }
    }

    /// The largest exponent a fit may have. A real fit's beta is >= 0 (a group's width never grows
    /// while P falls) and near 0.5 (P falls about as the square of the widths); 20 leaves room for
    /// a group pruned away early and still refuses a corrupt file's 1e6.
    public static let maxBeta = 20.0

    /// Checks the fit's numbers (a `descent.json` may have been edited or damaged), naming the
    /// group at fault: every alpha finite and > 0, every beta in 0...`maxBeta`, R^2 finite.
    public func validate(groupNames: [String]) throws {
        guard groups.count == groupNames.count else {
            throw FitError("the fit has \(groups.count) groups, the net \(groupNames.count)")
        }
        guard rows >= 0 else { throw FitError("the fit's row count is \(rows)") }
        for (g, name) in zip(groups, groupNames) {
            guard g.alpha.isFinite, g.alpha > 0 else { throw FitError("group \(name): alpha is \(g.alpha); it must be finite and > 0") }
            guard g.beta.isFinite, g.beta >= 0, g.beta <= PowerLawFit.maxBeta else {
                throw FitError("group \(name): beta is \(g.beta); it must be in 0...\(PowerLawFit.maxBeta)")
            }
            if let r = g.rSquared, !r.isFinite { throw FitError("group \(name): R^2 is \(r)") }
        }
        try validateCoupling(groupNames: groupNames)
    }

    /// Checks that the coupled sets are disjoint sets of the fit's groups, and that the groups of
    /// each set share one law (so their widths are always equal).
    func validateCoupling(groupNames: [String]? = nil, laws: Bool = true) throws {
        guard let coupling else { return }
        func name(_ g: Int) -> String { groupNames.map { "\($0[g]) (group \(g))" } ?? "group \(g)" }
        var seen = Set<Int>()
        for set in coupling {
            guard set.count > 1, set.allSatisfy({ groups.indices.contains($0) && seen.insert($0).inserted }) else {
                throw FitError("coupled groups \(set): a set needs two or more of the groups 0..<\(groups.count), each in one set only")
            }
            let lead = set.min()!
            for g in set where laws && (groups[g].alpha != groups[lead].alpha || groups[g].beta != groups[lead].beta) {
                throw FitError("\(name(g)) is coupled to \(name(lead)) but has another law (alpha \(groups[g].alpha), beta \(groups[g].beta))")
            }
        }
    }
}

public struct FitError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
