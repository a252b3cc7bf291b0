import Foundation
import PythonBridge
import XCTest

/// The Python modules `scripts/install-deps.sh` installs (README: the test command). Under CI
/// they must be there: a test that needs one fails instead of skipping, so a broken install
/// cannot pass as a green run of skipped tests.
///
/// torch is not among them: install-deps.sh does not install it, and the PyTorch checks also
/// need `../shared/reference`, which a CI checkout may not have. Without them those tests skip,
/// under CI too.
public let pythonModulesInstalledByScripts: Set<String> = ["numpy", "onnx", "onnxruntime", "h5py"]

/// Whether the environment variable `CI` is set (as CI services set it).
public var isContinuousIntegration: Bool { ProcessInfo.processInfo.environment["CI"] != nil }

/// A Python module a test needs is missing under CI.
public struct MissingPythonModules: Error, CustomStringConvertible {
    public let modules: [String]
    public let detail: String
    public var description: String {
        let expected = modules.filter(pythonModulesInstalledByScripts.contains)
        return "CI is set, but python3 (\(Python.interpreter)) cannot import \(modules.joined(separator: ", ")) (\(detail)); "
            + "scripts/install-deps.sh installs \(expected.joined(separator: ", "))"
    }
}

/// Returns when `Python.interpreter` imports every module in `modules`. Otherwise throws
/// `XCTSkip`, or, when `CI` is set and a missing module is one install-deps.sh installs,
/// `MissingPythonModules` (which fails the test).
public func requirePython(modules: [String]) throws {
    // Each module imported on its own, so the message names exactly the missing ones.
    let probe = """
    import sys
    missing = []
    for name in sys.argv[1:]:
        try:
            __import__(name)
        except Exception:
            missing.append(name)
    print(" ".join(missing))
    """
    let missing: [String], detail: String
    do {
        let run = try Python.run(["-c", probe] + modules)
        if run.status == 0 {
            missing = run.output.split(whereSeparator: \.isWhitespace).map(String.init)
            detail = "import failed"
        } else {
            missing = modules
            detail = "python3 exited with status \(run.status): \(run.errors)"
        }
    } catch {
        missing = modules
        detail = "cannot run python3: \(error)"
    }
    guard !missing.isEmpty else { return }
    if isContinuousIntegration, missing.contains(where: pythonModulesInstalledByScripts.contains) {
        throw MissingPythonModules(modules: missing, detail: detail)
    }
    throw XCTSkip("python3 cannot import \(missing.joined(separator: ", ")) (\(detail))"
                  + (missing.allSatisfy(pythonModulesInstalledByScripts.contains) ? "; scripts/install-deps.sh installs them" : ""))
}
