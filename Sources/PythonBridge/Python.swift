import Autodiff
import Checkpoint
import Foundation

// How Swift hands work to the repository's Python scripts: the interpreter and scripts are
// found, run with their output collected, and tensors passed as `.npy` files. Export's ONNX
// verification uses it in production, the tests to run h5py, onnx and PyTorch checks.

/// The Python side of the project (onnx, onnxruntime, numpy, h5py), as `scripts/install-deps.sh`
/// installs it; also what the tests run the repository's Python scripts with.
public enum Python {
    /// The repository's `scripts/` folder: `NEURALSCALE_SCRIPTS`, else the one this source file
    /// was built from.
    public static func script(_ name: String) throws -> String {
        let env = ProcessInfo.processInfo.environment
        let folder = env["NEURALSCALE_SCRIPTS"] ?? URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts").path
        let path = URL(fileURLWithPath: folder).appendingPathComponent(name).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw PythonError("cannot find \(path); set NEURALSCALE_SCRIPTS to the repository's scripts/ folder")
        }
        return path
    }

    /// `NEURALSCALE_PYTHON`, else the repository's `.venv/bin/python3` when it exists, else
    /// `python3` on the PATH.
    public static var interpreter: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["NEURALSCALE_PYTHON"] { return p }
        let venv = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".venv/bin/python3").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "/usr/bin/env"
    }

    /// Runs the interpreter with `arguments`; returns its exit status, stdout and stderr.
    public static func run(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let exe = interpreter
        // A NEURALSCALE_PYTHON that cannot be run is named (Foundation's error said only that
        // "the file doesn't exist").
        if let given = ProcessInfo.processInfo.environment["NEURALSCALE_PYTHON"], !FileManager.default.isExecutableFile(atPath: given) {
            throw PythonError("NEURALSCALE_PYTHON=\(given) is not an executable file; point it at a Python 3 with onnx and onnxruntime, or unset it")
        }
        return try ChildProcess.run(exe, (exe == "/usr/bin/env" ? ["python3"] : []) + arguments)
    }
}

/// Another program run to its end.
public enum ChildProcess {
    /// Runs `executable` with `arguments`; returns its exit status, stdout and stderr.
    public static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        // stdout through a pipe, read to the end while the child runs; stderr into a file, so
        // neither can fill up and block the child.
        let out = Pipe()
        let errPath = TemporaryFiles.makePath("child", suffix: ".err")
        defer { TemporaryFiles.remove(errPath) }
        // open(2), not FileManager.createFile: that writes through a `.dat.nosync*` temporary.
        let fd = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PythonError("cannot create \(errPath): \(String(cString: strerror(errno)))") }
        let errFile = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        p.standardOutput = out
        p.standardError = errFile
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try? errFile.close()
        let e = FileManager.default.contents(atPath: errPath) ?? Data()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

/// A failure to find or start the Python side (not a script's own failure: that is its exit status).
public struct PythonError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// NumPy `.npy` version 1.0, float32 little-endian, C order (what `numpy.save` writes).
public enum NPY {
    public static func write(_ t: Tensor, to path: String) throws {
        let shape = t.shape.count == 1 ? "(\(t.shape[0]),)" : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        // Pad with spaces and end with a newline so the data starts at a multiple of 64.
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.reserveCapacity(data.count + 4 * t.count)
        for i in 0..<t.count { withUnsafeBytes(of: t.data[i].bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        try data.write(to: URL(fileURLWithPath: path))
    }
}
