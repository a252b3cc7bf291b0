import ArchDescent
import Datasets
import Export
import Foundation
import Nets

/// A device's linear models of latency (ms) and memory (MB) against parameters, y = m * P + b.
public struct DeviceProfile: Codable, Sendable {
    public struct Line: Codable, Sendable {
        public var m: Double, b: Double
        /// Pearson's r of the fit, its p-value and the number of points, where known.
        public var r: Double?, p: Double?, n: Int?

        public init(m: Double, b: Double, r: Double?, p: Double? = nil, n: Int? = nil) {
            self.m = m
            self.b = b
            self.r = r
            self.p = p
            self.n = n
        }
    }
    public var name: String
    public var description: String
    public var latency: Line?
    public var memory: Line?

    /// The coefficients the TECS study published (Table 4, latency in ms; Table 5, memory in MB;
    /// x = parameters; r over the study's nets).
    public static let builtIn: [DeviceProfile] = [
        DeviceProfile(name: "cortex-a72-fp32", description: "Raspberry Pi 4 (Cortex-A72), ONNX Runtime, fp32",
                      latency: Line(m: 5.7e-6, b: 17.9, r: 0.786), memory: Line(m: 4.2e-6, b: 9.3, r: 0.999)),
        DeviceProfile(name: "cortex-a72-int8", description: "Raspberry Pi 4 (Cortex-A72), ONNX Runtime, int8",
                      latency: Line(m: 2.2e-6, b: 9.7, r: 0.648), memory: Line(m: 1.8e-6, b: 9.9, r: 0.991)),
        DeviceProfile(name: "agx-xavier-fp32", description: "Jetson AGX Xavier, TensorRT, fp32",
                      latency: Line(m: 1.6e-7, b: 0.96, r: 0.850), memory: Line(m: 4.0e-6, b: 62.5, r: 0.391)),
        DeviceProfile(name: "agx-xavier-int8", description: "Jetson AGX Xavier, TensorRT, int8",
                      latency: Line(m: 2.8e-8, b: 0.51, r: 0.546), memory: Line(m: 1.0e-6, b: 1.3, r: 0.994)),
        DeviceProfile(name: "zcu104-int8", description: "ZCU104, Vitis AI DPU, int8",
                      latency: Line(m: 1.7e-7, b: 0.69, r: 0.924), memory: nil),
    ]

    /// A built-in profile by name, or a profile JSON file (as `advise --save-profile` writes).
    /// - Throws: `AdviceError` naming the file or listing the built-in names.
    /// - Parameter using: "latency" or "memory": that line's slope must be > 0 (the other line may
    ///   be a fit of noisy readings that does not grow, which the caller does not use).
    public static func named(_ nameOrPath: String, using: String? = nil) throws -> DeviceProfile {
        if let p = builtIn.first(where: { $0.name == nameOrPath }) { return p }
        guard FileManager.default.fileExists(atPath: nameOrPath) else {
            throw AdviceError("--profile \(nameOrPath): neither a built-in profile (\(builtIn.map(\.name).joined(separator: ", "))) nor a file")
        }
        guard let data = FileManager.default.contents(atPath: nameOrPath) else {
            throw AdviceError("--profile \(nameOrPath): \(unreadableReason(nameOrPath))")
        }
        do {
            let p = try JSONDecoder().decode(DeviceProfile.self, from: data)
            for (what, line) in [("latency", p.latency), ("memory", p.memory)] {
                guard let line else { continue }
                if !(line.m.isFinite && line.b.isFinite) {
                    throw AdviceError("\(nameOrPath): the \(what) line is not finite (m \(line.m), b \(line.b))")
                }
                // A line that does not grow with parameters cannot size a net.
                guard line.m > 0 || what != using else { throw AdviceError("\(nameOrPath): the \(what) line's slope m is \(line.m), expected > 0 (it must grow with parameters)") }
                if let r = line.r, !(r.isFinite && abs(r) <= 1 + 1e-9) { throw AdviceError("\(nameOrPath): the \(what) line's Pearson r is \(r), expected -1...1") }
                if let pv = line.p, !(pv.isFinite && (0...1).contains(pv)) { throw AdviceError("\(nameOrPath): the \(what) line's p-value is \(pv), expected 0...1") }
                if let n = line.n, n < 2 { throw AdviceError("\(nameOrPath): the \(what) line's point count is \(n), expected >= 2") }
            }
            return p
        } catch let error as AdviceError {
            throw error
        } catch {
            throw AdviceError("\(nameOrPath): not a device profile (\(describeDecodingError(error)))")
        }
    }

    /// A profile fitted to `bench infer` results (`bench-infer.json` or `--json` output): the
    /// median latency and the memory of every measurement at `batch` (of one backend and
    /// precision, which must be told apart when the files hold several) against its params.
    public static func fit(_ files: [String], batch: Int, backend: String?, precision: String?) throws -> DeviceProfile {
        struct Bench: Decodable { let timings: [InferenceTiming] }
        var points: [InferenceTiming] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw AdviceError("--fit \(file): \(unreadableReason(file))") }
            let timings: [InferenceTiming]
            do { timings = try JSONDecoder().decode(Bench.self, from: data).timings } catch {
                throw AdviceError("--fit \(file): not the JSON of `bench infer` (\(describeDecodingError(error, data: data)))")
            }
            // Figures no measurement gives would make the line (a NaN slope from 1e308 ms).
            for t in timings {
                if let bad = t.implausibleFigure { throw AdviceError("--fit \(file): \(t.model): \(bad)") }
                if let p = t.params, p < 1 { throw AdviceError("--fit \(file): \(t.model): params is \(p); expected >= 1") }
            }
            points += timings
        }
        points = points.filter { $0.batch == batch && (backend == nil || $0.backend == backend) && (precision == nil || $0.precision == precision) }
        let kinds = Set(points.map { "\($0.backend)/\($0.precision)" })
        guard kinds.count <= 1 else {
            throw AdviceError("--fit: the files hold several backends and precisions (\(kinds.sorted().joined(separator: ", "))); choose with --backend and --precision")
        }
        let known = points.filter { $0.params != nil }
        guard Set(known.map { $0.params! }).count >= 2 else {
            throw AdviceError("--fit: \(known.count) measurements at batch \(batch) with known params; a line needs nets of two sizes or more")
        }
        let x = known.map { Double($0.params!) }
        func line(_ y: [Double]) -> Line? {
            LeastSquares(x: x, y: y).map { Line(m: $0.slope, b: $0.intercept, r: $0.r, p: $0.p, n: $0.n) }
        }
        let kind = kinds.first ?? "?"
        return DeviceProfile(name: "fit", description: "fitted to \(known.count) `bench infer` measurements (\(kind), batch \(batch)) in \(files.joined(separator: ", "))",
                             latency: line(known.map(\.median_ms)), memory: line(known.map(\.memory_mb)))
    }
}

public struct AdviceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The studies' ratio advisor (TECS Eq. 1): from a linear model y = m * P + b and a target y, the
/// parameter budget P_t = (y - b) / m and the width ratio S = sqrt(P_t / P_o), P_o the unscaled
/// net's parameters (at 32x32 inputs).
public struct Advice: Encodable {
    public struct Net: Encodable {
        public let widths: [Int], params: Int, predicted: Double
    }
    public let model: String, dataset: String, profile: String, profile_description: String
    /// "latency" (ms) or "memory" (MB).
    public let measure: String, unit: String
    public let target: Double
    public let m: Double, b: Double, r: Double?, p: Double?
    /// |r| below 0.7: the line explains little of the variation, so the advice is rough.
    public let weak_fit: Bool
    public let unscaled_params: Int
    public let params_budget: Double?
    /// S = sqrt(P_t / P_o), nil when the target is at or below b.
    public let ratio: Double?
    /// "scale" (the net at `ratio`), "fits" (the unscaled net meets the target), "unreachable".
    public let verdict: String
    public let uniform: Net?
    public let neuralscale: Net?
    public let message: String

    public static func make(_ model: Architecture, _ dataset: DatasetKind, profile: DeviceProfile, latency: Double?, memory: Double?,
                            descent: String?) throws -> Advice {
        let measure = latency != nil ? "latency" : "memory", unit = latency != nil ? "ms" : "MB", target = latency ?? memory!
        guard let line = latency != nil ? profile.latency : profile.memory else {
            throw AdviceError("the profile \(profile.name) has no \(measure) model (\(profile.description))")
        }
        guard line.m > 0 else {
            throw AdviceError("the profile \(profile.name)'s \(measure) does not grow with parameters (m = \(line.m)): it cannot size a net")
        }
        // P_o at 32x32 inputs, with the dataset's channels and classes.
        let original = NetDescription.uniform(model, ratio: 1, inChannels: dataset.channels, imageSize: 32, classes: dataset.classes)
        let po = original.parameterCount
        let weak = (line.r.map { abs($0) < 0.7 }) ?? false
        var fitNote = line.r.map { String(format: "r = %.3f%@", $0, weak ? ": a weak fit, so a rough prediction" : "") } ?? "r unknown"
        // A line below zero for small nets (a fit of large ones) says nothing true about them.
        if line.b < 0 {
            fitNote += String(format: "; the intercept b = %.4g %@ is negative, so nets under %.0f parameters are predicted below zero: "
                              + "the line holds only near the nets it was fitted on", line.b, unit, -line.b / line.m)
        }
        func predicted(_ params: Int) -> Double { line.m * Double(params) + line.b }
        func nets(ratio: Double) throws -> (Net, Net?) {
            let scaled = try ScaledNet.make(model, dataset, ratio: ratio, descent: descent, iteration: nil)
            let u = NetDescription.uniform(model, ratio: ratio, inChannels: dataset.channels, imageSize: dataset.imageSize, classes: dataset.classes)
            let uniform = Net(widths: u.widths, params: u.parameterCount, predicted: predicted(u.parameterCount))
            guard descent != nil else { return (uniform, nil) }
            let n = scaled.description.parameterCount
            return (uniform, Net(widths: scaled.description.widths, params: n, predicted: predicted(n)))
        }
        func advice(_ budget: Double?, _ ratio: Double?, _ verdict: String, _ nets: (Net, Net?)?, _ message: String) -> Advice {
            Advice(model: model.rawValue, dataset: dataset.rawValue, profile: profile.name, profile_description: profile.description,
                   measure: measure, unit: unit, target: target, m: line.m, b: line.b, r: line.r, p: line.p, weak_fit: weak,
                   unscaled_params: po, params_budget: budget, ratio: ratio, verdict: verdict, uniform: nets?.0, neuralscale: nets?.1,
                   message: message)
        }
        guard target > line.b else {
            let int8 = profile.name.hasSuffix("-fp32") ? " Try int8 (profile \(profile.name.dropLast(5))-int8)" : " Try int8"
            return advice(nil, nil, "unreachable", nil, String(format: "a %@ of %.4g %@ is at or below the profile's intercept b = %.4g %@: no net reaches it on %@.%@ or another device.",
                                                                   measure, target, unit, line.b, unit, profile.description, int8))
        }
        let budget = (target - line.b) / line.m
        // S = sqrt(P_t / P_o), lowered in steps of 0.1% while rounding the widths down leaves the
        // net above the budget (uniform widths are floor(w * S), so P jumps in steps).
        var ratio = (budget / Double(po)).squareRoot()
        for _ in 0..<50 where ratio < 1 {
            let p = NetDescription.uniform(model, ratio: ratio, inChannels: dataset.channels, imageSize: dataset.imageSize,
                                           classes: dataset.classes).parameterCount
            if Double(p) <= budget { break }
            ratio *= 0.999
        }
        if ratio >= 1 {
            let full = try nets(ratio: 1)
            return advice(budget, ratio, "fits", full, String(format: "the unscaled net (%d params, predicted %.4g %@) already meets %.4g %@ (S = %.4g > 1; %@).",
                                                              po, full.0.predicted, unit, target, unit, ratio, fitNote))
        }
        let scaled: (Net, Net?)
        do { scaled = try nets(ratio: ratio) } catch {
            return advice(budget, ratio, "unreachable", nil, String(format: "S = %.4f gives no valid net (%@): the target is too small for %@.",
                                                                    ratio, "\(error)", model.rawValue))
        }
        return advice(budget, ratio, "scale", scaled, String(format: "scale to S = %.3f: P_t = %.0f parameters (P_o = %d), uniform net %d params, predicted %.4g %@ (%@).",
                                                             ratio, budget, po, scaled.0.params, scaled.0.predicted, unit, fitNote))
    }

    public var text: String {
        var out = "\(model) on \(dataset), \(profile) (\(profile_description))\n"
        out += String(format: "%@ model: y = %.4g * P + %.4g %@", measure, m, b, unit)
            + (r.map { String(format: ", r = %.3f", $0) } ?? "") + (p.map { String(format: ", p = %.3g", $0) } ?? "")
            + (weak_fit ? "  (weak fit: a rough prediction)" : "") + "\n"
        out += String(format: "target: %.4g %@\n", target, unit)
        out += message + "\n"
        func row(_ name: String, _ n: Net) -> String {
            // Padded in Swift: Foundation's %-12@ ignores the width on Linux.
            "  " + name.padding(toLength: max(12, name.count), withPad: " ", startingAt: 0)
                + String(format: " params %9d  predicted %8.4g %@  widths %@\n", n.params, n.predicted, unit,
                         n.widths.map(String.init).joined(separator: ","))
        }
        if let uniform { out += row("uniform", uniform) }
        if let neuralscale { out += row("NeuralScale", neuralscale) }
        return out
    }
}
