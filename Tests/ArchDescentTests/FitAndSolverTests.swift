import ArchDescent
import Autodiff
import Foundation
import Nets
import Pruning
import XCTest

final class FitAndSolverTests: XCTestCase {
    /// Rows from exact power laws with large widths (so rounding is negligible) give back alpha
    /// and beta, with R^2 near 1.
    func testFitRecoversExactPowerLaws() throws {
        let alphas = [3.0, 0.5, 40.0], betas = [0.4, 0.6, 0.25]
        let rows = stride(from: 5.0, through: 8.0, by: 0.25).map { e -> TrajectoryRow in
            let p = pow(10, e)
            return TrajectoryRow(widths: zip(alphas, betas).map { Int(($0 * pow(p, $1)).rounded()) }, params: Int(p))
        }
        let fit = try PowerLawFit.fit(rows)
        XCTAssertFalse(fit.isFallback)
        XCTAssertEqual(fit.rows, 13)
        for (g, f) in fit.groups.enumerated() {
            XCTAssertEqual(f.beta, betas[g], accuracy: 2e-3, "group \(g) beta")
            XCTAssertEqual(f.alpha, alphas[g], accuracy: alphas[g] * 3e-2, "group \(g) alpha")
            XCTAssertGreaterThan(f.rSquared ?? 0, 0.9999, "group \(g) R^2")
        }
        // w = sqrt(P) exactly (P = 4^k, w = 2^k): alpha 1, beta 0.5, so P = 10^6 gives w = 1000.
        let exact = try PowerLawFit.fit((1...6).map { TrajectoryRow(widths: [1 << $0], params: 1 << (2 * $0)) })
        XCTAssertEqual(exact.groups[0].beta, 0.5, accuracy: 1e-12)
        XCTAssertEqual(exact.groups[0].alpha, 1, accuracy: 1e-12)
        XCTAssertEqual(exact.widths(scale: 1e6), [1000])
    }

    func testRSquaredDropsForNoisyData() throws {
        var rng = RandomGenerator(seed: 1)
        let rows = (0..<12).map { k -> TrajectoryRow in
            let p = 1000.0 * pow(1.5, Double(k))
            return TrajectoryRow(widths: [Int(p.squareRoot()), 1 + Int(rng.next() % 50)], params: Int(p))
        }
        let fit = try PowerLawFit.fit(rows)
        XCTAssertGreaterThan(fit.groups[0].rSquared ?? 0, 0.999)
        XCTAssertLessThan(fit.groups[1].rSquared ?? 1, 0.5, "random widths do not follow a power law")
    }

    func testFallbackWithFewRowsOrConstantP() throws {
        let rows = (0..<5).map { TrajectoryRow(widths: [64 - $0, 128 - 2 * $0], params: 10_000 - 100 * $0) }
        let fit = try PowerLawFit.fit(rows)
        XCTAssertTrue(fit.isFallback)
        XCTAssertTrue(fit.fallbackReason?.contains("only 5 trajectory rows") ?? false, fit.fallbackReason ?? "")
        XCTAssertEqual(fit.groups.map(\.alpha), [64, 128], "alpha = the first row's widths")
        XCTAssertEqual(fit.groups.map(\.beta), [0, 0])
        XCTAssertEqual(fit.widths(scale: 0.5), [32, 64], "uniform scaling of the first row")
        let six = (0..<6).map { _ in TrajectoryRow(widths: [8, 9], params: 500) }
        XCTAssertTrue(try PowerLawFit.fit(six).fallbackReason?.contains("same P") ?? false)
        XCTAssertFalse(try PowerLawFit.fit((0..<6).map { TrajectoryRow(widths: [8 + $0, 9], params: 500 + 50 * $0) }).isFallback)
        XCTAssertThrowsError(try PowerLawFit.fit([]))
    }

    /// For every net and ratios 0.1 ... 2.0, the solver's widths have P within 0.5% of the uniform
    /// net's, with fits whose exponents differ per group (so the widths are not uniform).
    func testSolverHitsUniformTargetsForAllNets() throws {
        var rng = RandomGenerator(seed: 7)
        for arch in Architecture.allCases {
            let template = NetDescription.uniform(arch, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
            let p0 = Double(template.parameterCount)
            // A fit that gives the original widths at P0, with exponents between 0.2 and 0.8.
            let groups = arch.originalWidths.map { w -> GroupFit in
                let beta = 0.2 + 0.6 * Double(rng.uniform())
                return GroupFit(alpha: Double(w) / pow(p0, beta), beta: beta, rSquared: 1)
            }
            let fit = PowerLawFit(groups: groups, rows: 10, fallbackReason: nil)
            for ratio in [0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0] {
                let target = WidthSolver.target(ratio: ratio, for: template)
                let solved = try WidthSolver.solve(fit, target: target, template: template)
                XCTAssertLessThanOrEqual(abs(solved.relativeError), WidthSolver.tolerance, "\(arch) ratio \(ratio): P \(solved.params) vs \(target)")
                var d = template
                d.widths = solved.widths
                XCTAssertEqual(d.parameterCount, solved.params)
                XCTAssertTrue(solved.widths.allSatisfy { $0 >= 1 })
                if ratio == 0.5 {
                    XCTAssertNotEqual(solved.widths, arch.uniformWidths(ratio: ratio), "\(arch): per-group exponents must change the shape")
                }
            }
        }
    }

    /// A fallback fit solves to (nearly) the uniform widths.
    func testSolverWithFallbackScalesUniformly() throws {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        let fit = try PowerLawFit.fit([TrajectoryRow(widths: Architecture.vgg11.originalWidths, params: template.parameterCount)])
        let target = WidthSolver.target(ratio: 0.5, for: template)
        let solved = try WidthSolver.solve(fit, target: target, template: template)
        XCTAssertLessThanOrEqual(abs(solved.relativeError), WidthSolver.tolerance)
        for (a, b) in zip(solved.widths, Architecture.vgg11.uniformWidths(ratio: 0.5)) { XCTAssertEqual(Double(a), Double(b), accuracy: 2) }
    }

    /// ResNet-50's P is not monotone in the fit's scale: where a bottleneck's output rounds to
    /// its input's width, the 1x1 projection becomes an identity and P drops by 163 K. This fit
    /// (a made-up 12-row trajectory on Fashion-MNIST's shape, from an audit) has such a drop
    /// near ratio 0.75's target, and the bisection alone ended on its far side at +0.39%; the
    /// configurations around it include one at -0.005% (checked by an independent solver).
    func testSolverFindsTheClosestConfigurationWherePDrops() throws {
        let template = NetDescription.uniform(.resnet50, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        let groups: [(Double, Double)] = [
            (0.0002452963630885481, 0.7168117603005031),
            (0.00011357232868541939, 0.7633698155626713),
            (9.156087939055302e-05, 0.7720667596753964),
            (0.18026831768877272, 0.4163994980823117),
            (0.0004439449343949865, 0.6844198213349582),
            (7.0344519836817e-05, 0.7890575266875833),
            (9.474424982788033e-05, 0.8515964886372558),
            (1.784621760615739e-05, 0.8685119015520057),
            (1.8006657765597757e-05, 0.867666272644097),
            (1.331937384634031, 0.30279572886904726),
            (0.021811821645945337, 0.4990720005775258),
            (0.008197296087739621, 0.5552679587107295),
            (0.00016253448418638138, 0.8609372808797201),
            (0.013896840452446116, 0.5247661245341375),
            (0.09290965977207044, 0.4157625266446364),
            (6.14188524105214, 0.2551298339420115),
            (0.061092180157608866, 0.4402256454218343),
            (0.0001519751379765441, 0.7850707591389955),
            (6.237664185778744, 0.25422634651821757),
            (0.282808230566792, 0.35279406340954594),
            (0.05299286043888787, 0.4482806848789522),
            (0.013240980836155328, 0.6076377478657541),
            (0.04619787828684746, 0.49678538583396403),
            (9.976975137379771e-05, 0.849104508091909),
            (1.3773388994276088, 0.3808246563605844),
            (0.0049726335391216524, 0.6240674274695454),
            (0.00031348968360850956, 0.7833191802432753),
            (0.00021956059697268257, 0.8831027307470116),
            (9.608943938691179e-05, 0.8512452777384312),
            (0.852403996516314, 0.32859524812700036),
            (0.0011287938581291727, 0.7891935278048093),
            (0.0012994727087709183, 0.7003480533328292),
            (0.027528975056896176, 0.5254160741202084),
            (13.326064527783405, 0.24997313512939076),
            (0.5301035107279909, 0.3555768550174303),
            (0.0004909039455771187, 0.7575132164218156),
            (5.549876046362256, 0.30124621272496344),
            (0.10449206071010715, 0.4489037994782366),
            (0.22084297415861942, 0.4052644444935223),
            (0.0019415124485925787, 0.7576282078202395),
            (0.11182421438862818, 0.48447218385498697),
            (3.365470653932448, 0.28841780659341154),
            (0.4273249314699165, 0.4868294041056935),
            (0.18828975930417943, 0.45463342108096794),
            (0.0015458099101911353, 0.7304040840193934),
            (0.7750437994371963, 0.45308805247895445),
            (0.0015734807064318817, 0.7313536280695654),
            (0.01216450201512662, 0.6128294379866358),
            (0.0006976607986484835, 0.8567713222709893)]
        let fit = PowerLawFit(groups: groups.map { GroupFit(alpha: $0.0, beta: $0.1, rSquared: 1) }, rows: 12, fallbackReason: nil)
        let target = WidthSolver.target(ratio: 0.75, for: template)
        XCTAssertEqual(target, 13_245_658)
        let solved = try WidthSolver.solve(fit, target: target, template: template)
        XCTAssertEqual(solved.params, 13_244_989, "P \(solved.params) (\(100 * solved.relativeError)%)")
        var d = template
        d.widths = solved.widths
        XCTAssertEqual(d.parameterCount, solved.params)
        XCTAssertEqual(solved.widths, fit.widths(scale: solved.scale), "the widths of one scale, no nudge needed")
    }

    /// The neighbourhood search never ends farther from the target than the bisection and its
    /// nudges alone (`window: 0`): on 600 random ResNet-50 fits at ratios 0.01-0.21, where P's
    /// drops and the nudges (which start only past `tolerance`) meet, it is as close or closer
    /// every time. (Its first version nudged only its own configuration: a review's port found
    /// targets where that ended at +0.48% against the bisection's nudged +0.005%, and this test
    /// fails on that version, at ratio 0.097.)
    func testNeighbourhoodSearchIsNeverWorse() throws {
        var rng = RandomGenerator(seed: 11)
        let template = NetDescription.uniform(.resnet50, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        let p0 = Double(template.parameterCount)
        var closer = 0
        for _ in 0..<600 {
            let groups = Architecture.resnet50.originalWidths.map { w -> GroupFit in
                let beta = 0.2 + 0.6 * Double(rng.uniform())
                return GroupFit(alpha: Double(w) / pow(p0, beta), beta: beta, rSquared: 1)
            }
            let fit = PowerLawFit(groups: groups, rows: 10, fallbackReason: nil)
            let ratio = 0.01 + 0.2 * Double(rng.uniform())
            let target = WidthSolver.target(ratio: ratio, for: template)
            let searched = try WidthSolver.solve(fit, target: target, template: template)
            let bisected = try WidthSolver.solve(fit, target: target, template: template, window: 0)
            XCTAssertLessThanOrEqual(abs(searched.params - target), abs(bisected.params - target),
                                     "ratio \(ratio): searched \(searched.relativeError), bisection alone \(bisected.relativeError)")
            if abs(searched.params - target) < abs(bisected.params - target) { closer += 1 }
        }
        XCTAssertGreaterThan(closer, 0, "the search finds a closer configuration somewhere (12 of the 600 here)")
    }

    func testTinyTargetsGetTheClosestAchievable() throws {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        let fit = PowerLawFit(groups: Architecture.vgg11.originalWidths.map { GroupFit(alpha: Double($0) / 3000, beta: 0.5, rSquared: 1) },
                              rows: 8, fallbackReason: nil)
        // Every width 1: 8 convs of 1 channel + BN, classifier 1 -> 10.
        var ones = template
        ones.widths = Array(repeating: 1, count: 8)
        let solved = try WidthSolver.solve(fit, target: 10, template: template)
        XCTAssertEqual(solved.widths, ones.widths)
        XCTAssertEqual(solved.params, ones.parameterCount)
        XCTAssertThrowsError(try WidthSolver.solve(fit, target: 1000, template: NetDescription.uniform(.resnet50, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)))
    }
}

/// `descend --couple-residuals`: a coupled fit gives every residual stream one width, through the
/// parameter solver, the budget solver and its nudges, so the nets keep their identity shortcuts.
final class CoupledFitTests: XCTestCase {
    /// A fit of `template`'s net with random exponents per group and one law per stream.
    private func coupledFit(_ template: NetDescription, _ rng: inout RandomGenerator) throws -> PowerLawFit {
        let p0 = Double(template.parameterCount)
        let rows = [0.3, 0.45, 0.6, 0.75, 0.9, 1.0].map { s -> TrajectoryRow in
            TrajectoryRow(widths: template.widths.map { max(1, Int((Double($0) * s).rounded())) }, params: Int(p0 * s * s))
        }
        var fit = try PowerLawFit.fit(rows, coupling: template.identityCoupling)
        // Different exponents per unit, so the widths are not uniform.
        for unit in fit.units {
            let beta = 0.2 + 0.6 * Double(rng.uniform())
            for g in unit { fit.groups[g] = GroupFit(alpha: Double(template.widths[g]) / pow(p0, beta), beta: beta, rSquared: 1) }
        }
        return fit
    }

    /// Every set of `coupling` lies inside one identity-joined set of `widths`' net.
    private func assertStreamsKept(_ template: NetDescription, _ widths: [Int], _ what: String) {
        var d = template
        d.widths = widths
        let kept = d.identityCoupling
        for set in template.identityCoupling {
            XCTAssertTrue(Set(set.map { widths[$0] }).count == 1, "\(what): stream \(set) has widths \(set.map { widths[$0] })")
            XCTAssertTrue(kept.contains { Set($0).isSuperset(of: set) }, "\(what): stream \(set) lost an identity shortcut")
        }
    }

    func testCoupledFitsKeepStreamsTied() throws {
        var rng = RandomGenerator(seed: 21)
        for arch in [Architecture.preactResNet18, .mobilenetv2, .resnet50] {
            let template = NetDescription.uniform(arch, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
            let fit = try coupledFit(template, &rng)
            XCTAssertEqual(fit.coupling, template.identityCoupling)
            XCTAssertNoThrow(try fit.validate(groupNames: arch.groupNames))
            for ratio in [0.1, 0.25, 0.5, 1.0, 1.5] {
                let target = WidthSolver.target(ratio: ratio, for: template)
                let solved = try WidthSolver.solve(fit, target: target, template: template)
                XCTAssertLessThanOrEqual(abs(solved.relativeError), WidthSolver.tolerance, "\(arch) ratio \(ratio): P \(solved.params) vs \(target)")
                assertStreamsKept(template, solved.widths, "\(arch) ratio \(ratio)")
                var uniform = template
                uniform.widths = arch.uniformWidths(ratio: ratio)
                // At 0.1 every width 8 is already more than the budget.
                for multiple in ratio < 0.25 ? [1] : [1, 8] {
                    let budget = Budget.mflops(uniform.mflops)
                    let b = try BudgetSolver.neuralscale(fit, template: template, budget: budget, multiple: multiple)
                    let what = "\(arch) x\(ratio) MFLOPs, multiple \(multiple)"
                    XCTAssertLessThanOrEqual(b.achieved, budget.target, what)
                    if multiple == 1 { XCTAssertLessThanOrEqual(-b.relativeError, 0.01, "\(what): \(b.achieved) of \(budget.target)") }
                    XCTAssertTrue(b.widths.allSatisfy { $0 % multiple == 0 }, what)
                    assertStreamsKept(template, b.widths, what)
                }
            }
        }
    }

    /// The coupling is part of the fit's file: it survives a round trip, an older file without it
    /// reads as uncoupled, and an edited file whose stream members differ is refused by name.
    func testCoupledFitFilesAreChecked() throws {
        var rng = RandomGenerator(seed: 22)
        let template = NetDescription.uniform(.preactResNet18, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        let fit = try coupledFit(template, &rng)
        let data = try JSONEncoder().encode(fit)
        XCTAssertEqual(try JSONDecoder().decode(PowerLawFit.self, from: data), fit)
        var plain = fit
        plain.coupling = nil
        let old = try JSONEncoder().encode(plain)
        XCTAssertFalse(String(decoding: old, as: UTF8.self).contains("coupling"))
        XCTAssertNil(try JSONDecoder().decode(PowerLawFit.self, from: old).coupling)
        let names = Architecture.preactResNet18.groupNames
        var edited = fit
        edited.groups[4].beta += 0.01
        XCTAssertThrowsError(try edited.validate(groupNames: names)) {
            XCTAssertTrue("\($0)".contains("\(names[4]) (group 4) is coupled to \(names[0]) (group 0)"), "\($0)")
        }
        edited = fit
        edited.coupling = [[0, 2], [2, 4]]
        XCTAssertThrowsError(try edited.validate(groupNames: names)) { XCTAssertTrue("\($0)".contains("one set only"), "\($0)") }
        edited.coupling = [[0, 17]]
        XCTAssertThrowsError(try edited.validate(groupNames: names))
        XCTAssertThrowsError(try PowerLawFit.fit([TrajectoryRow(widths: [1, 2], params: 10)], coupling: [[0, 5]]))
    }
}
