import Autodiff
import Foundation
import XCTest

// MARK: - PyTorch reference data (Reference/*.json, made by Reference/make_reference.py)

struct ReferenceFile: Decodable {
    let generator: String
    let torch_version: String
    let cases: [ReferenceCase]

    /// Reads `Reference/<name>`; a file without cases is an error, so a truncated or
    /// regenerated-empty reference cannot pass by checking nothing.
    static func load(_ name: String) throws -> ReferenceFile {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Reference").appendingPathComponent(name)
        let file = try JSONDecoder().decode(ReferenceFile.self, from: Data(contentsOf: url))
        guard !file.cases.isEmpty else { throw ShapeError(name, "the reference file has no cases") }
        return file
    }
}

struct ReferenceTensor: Decodable {
    let shape: [Int]
    let data: [Float]
    var tensor: Tensor { Tensor(shape: shape, values: data) }
}

/// An attribute value: a number, a flag or a list of numbers.
enum Attr: Decodable {
    case number(Double), flag(Bool), list([Double]), text(String)

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .flag(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let t = try? c.decode(String.self) { self = .text(t) }
        else { self = .list(try c.decode([Double].self)) }
    }
}

struct ReferenceCase: Decodable {
    let name: String
    let op: String
    let attrs: [String: Attr]
    let tensors: [String: ReferenceTensor]

    func tensor(_ key: String, requiresGrad: Bool = false) throws -> Tensor {
        let t = try XCTUnwrap(tensors[key], "\(name): no tensor '\(key)'").tensor
        t.requiresGrad = requiresGrad
        return t
    }
    func int(_ key: String) throws -> Int {
        guard case let .number(v)? = attrs[key] else { throw ShapeError(name, "attr \(key) is not a number") }
        return Int(v)
    }
    func float(_ key: String) throws -> Float {
        guard case let .number(v)? = attrs[key] else { throw ShapeError(name, "attr \(key) is not a number") }
        return Float(v)
    }
    func flag(_ key: String) throws -> Bool {
        guard case let .flag(v)? = attrs[key] else { throw ShapeError(name, "attr \(key) is not a flag") }
        return v
    }
    func pair(_ key: String) throws -> (Int, Int) {
        guard case let .list(v)? = attrs[key], v.count == 2 else { throw ShapeError(name, "attr \(key) is not a pair") }
        return (Int(v[0]), Int(v[1]))
    }
    func text(_ key: String) throws -> String {
        guard case let .text(v)? = attrs[key] else { throw ShapeError(name, "attr \(key) is not a string") }
        return v
    }
    func list(_ key: String) throws -> [Double] {
        guard case let .list(v)? = attrs[key] else { throw ShapeError(name, "attr \(key) is not a list") }
        return v
    }
}

// MARK: - Comparison

/// Asserts `|actual - expected| <= atol + rtol * |expected|` elementwise and equal shapes,
/// reporting the worst element when it fails.
func assertClose(_ actual: Tensor?, _ expected: Tensor, rtol: Float = 1e-4, atol: Float = 1e-5,
                 _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard let actual else { return XCTFail("\(what): no tensor (gradient never reached it?)", file: file, line: line) }
    XCTAssertEqual(actual.shape, expected.shape, "\(what): shape", file: file, line: line)
    assertClose(actual.values, expected.values, rtol: rtol, atol: atol, what, file: file, line: line)
}

func assertClose(_ actual: [Float], _ expected: [Float], rtol: Float, atol: Float,
                 _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        return XCTFail("\(what): \(actual.count) values, expected \(expected.count)", file: file, line: line)
    }
    var worst = -1, worstExcess: Float = 0, maxDiff: Float = 0
    for i in 0..<actual.count {
        let diff = abs(actual[i] - expected[i])
        maxDiff = max(maxDiff, diff)
        let excess = diff - (atol + rtol * abs(expected[i]))
        if excess > worstExcess || diff.isNaN { worst = i; worstExcess = diff.isNaN ? .infinity : excess }
    }
    if worst >= 0 {
        XCTFail("\(what): element \(worst) is \(actual[worst]), expected \(expected[worst]) "
                + "(max abs diff \(maxDiff), rtol \(rtol), atol \(atol))", file: file, line: line)
    }
}

// MARK: - Finite differences

/// Checks the gradients `backward` gives for every element of `inputs` against central finite
/// differences of `L = sum(f() * R)` with a fixed random projection R.
///
/// The loss is summed in Double, so with `eps = 1e-2` on O(1) inputs the difference quotient is
/// accurate to ~1e-4; the tolerance (`rtol` of each gradient plus `atol` times the largest
/// gradient) is far below the O(1) error of a wrong rule.
func checkGradients(_ what: String, inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 1e-2,
                    atol: Float = 2e-3, file: StaticString = #filePath, line: UInt = #line,
                    _ f: () -> Tensor) {
    var rng = RandomGenerator(seed: 99)
    for t in inputs { t.requiresGrad = true; t.grad = nil }
    let out = f()
    let projection = Tensor.randn(out.shape, using: &rng)
    out.backward(seed: projection)
    let analytic = inputs.map { $0.grad?.values ?? [Float](repeating: 0, count: $0.count) }

    func loss() -> Double {
        Tape.withoutGradients {
            let y = f()
            var s: Double = 0
            for i in 0..<y.count { s += Double(y.data[i]) * Double(projection.data[i]) }
            return s
        }
    }
    for (k, t) in inputs.enumerated() {
        var numeric = [Float](repeating: 0, count: t.count)
        for i in 0..<t.count {
            let saved = t.data[i]
            t.data[i] = saved + eps
            let plus = loss()
            t.data[i] = saved - eps
            let minus = loss()
            t.data[i] = saved
            numeric[i] = Float((plus - minus) / Double(2 * eps))
        }
        let scale = numeric.map(abs).max() ?? 0
        assertClose(analytic[k], numeric, rtol: rtol, atol: atol * max(scale, 1e-3),
                    "\(what): gradient of input \(k) \(t.shape)", file: file, line: line)
    }
    for t in inputs { t.grad = nil }
}

/// Normal draws whose magnitude is at least `margin`, keeping finite differences off the kinks
/// of ReLU-like functions.
func randnAwayFromZero(_ shape: [Int], margin: Float = 0.1, using rng: inout RandomGenerator) -> Tensor {
    let t = Tensor.randn(shape, using: &rng)
    for i in 0..<t.count where abs(t.data[i]) < margin { t.data[i] = t.data[i] < 0 ? -margin - t.data[i] : margin + t.data[i] }
    return t
}

/// The convolution's kernel paths, each forced by its tuning knobs: `body` runs once per
/// combination of the im2col path's block size (whole images per piece, or one image per GEMM),
/// NCHW-direct GEMMs for every plane or none, and the flat / row-by-row / offset-table patch
/// copies (fewer images than pieces: the few-column kernel for every map or none); then with
/// Winograd's F(2, 3) and F(4, 3) forced wherever they apply (3x3, stride 1, padding 1), in
/// blocks of the tuned size and of one tile row. `label` names the combination for failure
/// messages.
func forEachConvPath(_ body: (_ label: String) throws -> Void) rethrows {
    let savedSmall = Conv2DTuning.smallColumns
    defer { Conv2DTuning.smallColumns = savedSmall }
    let saved = (Conv2DTuning.columnBudget, Conv2DTuning.directPlane, Conv2DTuning.shortRow)
    let savedWinograd = (Conv2DTuning.winograd, Conv2DTuning.winogradBudget, Conv2DTuning.winogradMinTiles)
    defer {
        (Conv2DTuning.columnBudget, Conv2DTuning.directPlane, Conv2DTuning.shortRow) = saved
        (Conv2DTuning.winograd, Conv2DTuning.winogradBudget, Conv2DTuning.winogradMinTiles) = savedWinograd
    }
    Conv2DTuning.winograd = .off
    for budget in [saved.0, 1] {
        for direct in [1, Int.max] {
            for shortRow in [1, saved.2, Int.max] {
                (Conv2DTuning.columnBudget, Conv2DTuning.directPlane, Conv2DTuning.shortRow) = (budget, direct, shortRow)
                // The few-column kernel with the direct GEMMs forced everywhere, sgemm otherwise.
                Conv2DTuning.smallColumns = direct == 1 ? Int.max : 0
                try body("budget \(budget), direct plane \(direct), short row \(shortRow), few columns \(direct == 1)")
            }
        }
    }
    (Conv2DTuning.columnBudget, Conv2DTuning.directPlane, Conv2DTuning.shortRow) = saved
    for tile in [2, 4] {
        for (budget, minTiles) in [(savedWinograd.1, savedWinograd.2), (1, 1)] {
            (Conv2DTuning.winograd, Conv2DTuning.winogradBudget, Conv2DTuning.winogradMinTiles) = (.tile(tile), budget, minTiles)
            try body("winograd F(\(tile),3), \(minTiles == 1 ? "one tile row per block" : "tuned blocks")")
        }
    }
}
