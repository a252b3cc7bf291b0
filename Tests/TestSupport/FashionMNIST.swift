import Foundation

/// A tiny Fashion-MNIST in `directory` (the four gzipped IDX files): `train` training and
/// `test` test images of deterministic pixels and labels (label i % 10).
public func writeFashionMNIST(in directory: String, train: Int = 40, test: Int = 12) throws {
    func bigEndian(_ v: [UInt32]) -> [UInt8] { v.flatMap { x in (0..<4).reversed().map { UInt8((x >> (8 * UInt32($0))) & 0xff) } } }
    func images(_ n: Int, _ first: Int) -> [UInt8] {
        bigEndian([0x803, UInt32(n), 28, 28]) + (0..<(n * 784)).map { i in UInt8(truncatingIfNeeded: (i / 784 + first) * 37 + (i % 784) * ((i / 784 + first) % 10 + 1)) }
    }
    func labels(_ n: Int, _ first: Int) -> [UInt8] { bigEndian([0x801, UInt32(n)]) + (0..<n).map { UInt8(($0 + first) % 10) } }
    let files: [(String, [UInt8])] = [("train-images-idx3-ubyte", images(train, 0)), ("train-labels-idx1-ubyte", labels(train, 0)),
                                      ("t10k-images-idx3-ubyte", images(test, 1000)), ("t10k-labels-idx1-ubyte", labels(test, 1000))]
    for (name, bytes) in files {
        let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-nf", path]
        try gzip.run()
        gzip.waitUntilExit()
        guard gzip.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}
