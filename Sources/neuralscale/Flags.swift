import ArgumentParser
import Autodiff
import Foundation

/// The values of a comma-separated flag, each parsed by `parse` (nil: not a valid value).
/// - Throws: `ValidationError` "`flag` must be comma-separated `what`, got '`text`'".
func commaSeparated<T: Hashable>(_ text: String, flag: String, _ what: String, _ parse: (String) -> T?) throws -> [T] {
    // Empty items ("0.25,,0.5", a trailing comma) are refused, as --milestones refuses them.
    let values = text.split(separator: ",", omittingEmptySubsequences: false).map { parse($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("\(flag) must be comma-separated \(what), got '\(text)'") }
    // A value twice would plan (or time) the same thing twice, into the same files.
    var seen = Set<T>()
    for v in values.map({ $0! }) where !seen.insert(v).inserted {
        throw ValidationError("\(flag) lists \(v) twice, got '\(text)'")
    }
    return values.map { $0! }
}

/// `--winograd auto|off|2|4`: which 3x3 stride-1 convolutions use Winograd's algorithm
/// (`Conv2DTuning.winograd`), for the benchmarks' before/after comparisons.
extension Conv2DTuning.Winograd: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "auto": self = .auto
        case "off": self = .off
        case "2": self = .tile(2)
        case "4": self = .tile(4)
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["auto", "off", "2", "4"] }
    public var defaultValueDescription: String {
        switch self {
        case .auto: return "auto"
        case .off: return "off"
        case let .tile(m): return "\(m)"
        }
    }
}

/// The help text of every `--winograd` option.
let winogradHelp = ArgumentHelp("""
    3x3 stride-1 convolutions by Winograd's algorithm: 'auto' where it pays (enough channels, \
    planes of 2x2 and more), 'off' (im2col and GEMM everywhere), or '2' / '4' to force output \
    tiles of that size wherever it applies.
    """)

/// Throws when `output` cannot be the file a command writes: empty or a folder's name, an
/// existing folder, under a file (`best.h5/x.onnx`), or (without `createsFolder`) in a folder
/// that does not exist. Checked before any work: these failed after it, naming a temporary file
/// or saying "unknown write error".
func checkOutputFile(_ output: String, flag: String, createsFolder: Bool) throws {
    guard !output.isEmpty, !output.hasSuffix("/") else { throw ValidationError("\(flag) needs a file name, got '\(output)'") }
    let fm = FileManager.default
    var isFolder: ObjCBool = false
    if fm.fileExists(atPath: output, isDirectory: &isFolder), isFolder.boolValue {
        throw ValidationError("\(flag) \(output) is a folder; give a file name in it")
    }
    var parent = URL(fileURLWithPath: output).deletingLastPathComponent()
    while !fm.fileExists(atPath: parent.path, isDirectory: &isFolder) {
        guard createsFolder else { throw ValidationError("\(flag) \(output): the folder \(parent.path) does not exist") }
        parent = parent.deletingLastPathComponent()
    }
    if !isFolder.boolValue { throw ValidationError("\(flag) \(output): \(parent.path) is a file, not a folder") }
}

/// Throws when the file `output` would be written over is `input` itself (the same path after
/// resolving links, or the same file by device and inode): an export written over its own
/// checkpoint would replace it.
func refuseWritingOverInput(output: String, flag: String, input: String, inputFlag: String) throws {
    let a = URL(fileURLWithPath: output).resolvingSymlinksInPath().path
    let b = URL(fileURLWithPath: input).resolvingSymlinksInPath().path
    var same = a == b
    if !same, let x = try? FileManager.default.attributesOfItem(atPath: a), let y = try? FileManager.default.attributesOfItem(atPath: b) {
        same = (x[.systemNumber] as? NSNumber) == (y[.systemNumber] as? NSNumber)
            && (x[.systemFileNumber] as? NSNumber) == (y[.systemFileNumber] as? NSNumber)
    }
    if same { throw ValidationError("\(flag) \(output) is the \(inputFlag) file itself; write the model elsewhere") }
}

/// The real-time budgets `--budget-ms` takes: 1 us to about 3 hours. Shares of a budget near 0
/// overflow to infinity (which JSON cannot hold), and a huge one stretches the charts' log axes
/// over hundreds of decades.
let budgetRange: ClosedRange<Double> = 0.001...1e7
