import Autodiff
@testable import Checkpoint
import Foundation
import Nets
import PythonBridge
import TestSupport
import XCTest

/// Checkpoints that were damaged, edited by other tools or written where the disk is full: every
/// case either loads exactly what was saved or throws a `CheckpointError` naming the file (and the
/// tensor), never traps and never loads wrong values (issue 9).
final class IntegrityTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("integrity") }

    private func file(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// A small net after one SGD step (BN statistics and momentum set).
    private func trainedNet(_ arch: Architecture = .vgg11, ratio: Double = 0.125) throws -> (Network, SGD) {
        let net = try makeNetwork(.uniform(arch, ratio: ratio, inChannels: 3, imageSize: 32, classes: 5),
                                  initialization: .random(RandomGenerator(seed: 5)))
        let opt = SGD(parameters: net.parameters, schedule: .constant(0.1), momentum: 0.9, weightDecay: 5e-4)
        var rng = RandomGenerator(seed: 6)
        crossEntropy(net.logits(Tensor.randn([2, 3, 32, 32], using: &rng), training: true), labels: [0, 1]).backward()
        opt.step()
        return (net, opt)
    }

    /// Runs python code with h5py and numpy (`sys.argv[1:]` are `arguments`); skips the test
    /// when they are missing (fails it under CI: `requirePython`).
    @discardableResult
    private func python(_ code: String, _ arguments: [String]) throws -> String {
        try requirePython(modules: ["h5py", "numpy"])
        let run = try Python.run(["-c", "import sys, h5py, numpy as np\n" + code] + arguments)
        guard run.status == 0 else {
            XCTFail("python failed: \(run.errors)")
            throw CheckpointError(path: arguments.first ?? "", message: "python failed")
        }
        return run.output
    }

    /// Asserts `a` and `b` hold the same net, weights, optimizer and training state, bit for bit.
    private func assertSame(_ a: LoadedCheckpoint, _ b: LoadedCheckpoint, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.network.netDescription, b.network.netDescription, what, file: file, line: line)
        XCTAssertEqual(a.network.state.map(\.name), b.network.state.map(\.name), what, file: file, line: line)
        for (x, y) in zip(a.network.state, b.network.state) {
            XCTAssertEqual(x.tensor.values.map(\.bitPattern), y.tensor.values.map(\.bitPattern), "\(what): \(x.name)", file: file, line: line)
        }
        XCTAssertTrue(a.optimizer == b.optimizer, "\(what): the optimizer state differs", file: file, line: line)
        XCTAssertEqual(a.training, b.training, "\(what): training", file: file, line: line)
    }

    private func assertThrows(_ path: String, containing parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Checkpoint.load(path), file: file, line: line) { error in
            XCTAssertTrue(error is CheckpointError, "not a CheckpointError: \(error)", file: file, line: line)
            for part in [path] + parts {
                XCTAssertTrue("\(error)".contains(part), "'\(error)' does not say '\(part)'", file: file, line: line)
            }
        }
    }

    // MARK: Training state

    /// A training state far over the 64 KB an attribute may hold, with non-ASCII text, and an
    /// empty one, round-trip.
    func testLargeTrainingStateRoundTrips() throws {
        let (net, opt) = try trainedNet()
        let rows = (0..<20_000).map { #"{"row":\#($0),"note":"µ-état ✓"}"# }
        let large = "[" + rows.joined(separator: ",") + "]"
        XCTAssertGreaterThan(large.utf8.count, 512 * 1024)
        for (k, training) in [large, ""].enumerated() {
            let path = file("state-\(k).h5")
            try Checkpoint.save(net, optimizer: opt, training: training, to: path)
            XCTAssertEqual(try Checkpoint.load(path).training, training)
        }
    }

    /// Chunks stay under HDF5's 4 GB limit by halving leading dimensions.
    func testChunksStayUnderFourGigabytes() {
        XCTAssertEqual(HDF5File.chunk([64, 3, 3, 3], elementSize: 4), [64, 3, 3, 3])
        XCTAssertEqual(HDF5File.chunk([2_000_000_000], elementSize: 4), [1_000_000_000])
        let split = HDF5File.chunk([3, 1 << 20, 1 << 10], elementSize: 4)
        XCTAssertLessThan(split.reduce(4, *), 1 << 32)
        XCTAssertEqual(split, [1, 1 << 19, 1 << 10])
    }

    // MARK: Other tools' edits

    /// h5py writes variable-length strings: `net`, `version`, `format`, `optimizer` and the
    /// training state rewritten so still load identically.
    func testVariableLengthStringsFromH5py() throws {
        let (net, opt) = try trainedNet(.mobilenetv2)
        let path = file("ok.h5")
        try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":3,"name":"é"}"#, to: path)
        let original = try Checkpoint.load(path)
        try python("""
            with h5py.File(sys.argv[1], "r+") as f:
                for k in ("net", "version", "format", "optimizer"):
                    v = f.attrs[k]
                    f.attrs[k] = v.decode() if isinstance(v, bytes) else str(v)
                    assert h5py.check_string_dtype(f.attrs.get_id(k).dtype).length is None, k
                t = bytes(f["meta/training"][()]).decode()
                del f["meta/training"]
                f["meta/training"] = t
                assert h5py.check_string_dtype(f["meta/training"].dtype).length is None
            """, [path])
        assertSame(try Checkpoint.load(path), original, "vlen strings")
    }

    /// The layout before checksums: contiguous datasets, no `meta/`, the training state in a
    /// fixed-length root attribute (h5py's oldest file format).
    func testOldLayoutStillLoads() throws {
        let (net, opt) = try trainedNet(.preactResNet18)
        let path = file("new.h5"), old = file("old.h5")
        try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":2}"#, to: path)
        try python("""
            with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w", libver="earliest") as dst:
                for k, v in src.attrs.items():
                    dst.attrs[k] = np.bytes_(v if isinstance(v, bytes) else str(v).encode())
                dst.attrs["training"] = np.bytes_(bytes(src["meta/training"][()]))
                def copy(name, obj):
                    if isinstance(obj, h5py.Dataset) and not name.startswith("meta/"):
                        dst.create_dataset(name, data=obj[()])
                        assert dst[name].chunks is None and not dst[name].fletcher32
                src.visititems(copy)
            """, [path, old])
        assertSame(try Checkpoint.load(old), try Checkpoint.load(path), "old layout")
    }

    /// Edits that make a file unusable are reported naming the file and what is wrong.
    func testForeignEditsAreRejectedByName() throws {
        let (net, opt) = try trainedNet()
        let path = file("ok.h5")
        try Checkpoint.save(net, optimizer: opt, training: "{}", to: path)
        let weight = "features.0.weight"
        let cases: [(String, String, [String])] = [
            ("int-version", "f.attrs['version'] = 1", ["attribute version is not a string"]),
            ("two-nets", "f.attrs['net'] = np.array([b'a', b'b'])", ["attribute net holds 2 strings"]),
            ("net-not-json", "f.attrs['net'] = 'no json'", ["attribute net is not valid"]),
            ("no-format", "del f.attrs['format']", ["missing attribute format"]),
            ("lr-nan", "f.attrs['optimizer'] = '{\"epoch\":0,\"stepCount\":1,\"learningRate\":-1}'", ["attribute optimizer is not valid", "learningRate -1.0", "finite learning rate >= 0"]),
            ("flat", "a = f['\(weight)'][()]; del f['\(weight)']; f['\(weight)'] = a.ravel()", ["dataset \(weight) has shape"]),
            ("huge", "del f['\(weight)']; f.create_dataset('\(weight)', shape=(2**40, 2**20), dtype='f4', chunks=(1, 1024))",
             ["dataset \(weight) has an impossible shape"]),
            ("ints", "a = f['\(weight)'][()]; del f['\(weight)']; f['\(weight)'] = a.astype('i4')", ["dataset \(weight) does not hold floats"]),
            ("group", "del f['\(weight)']; f.create_group('\(weight)')", ["dataset \(weight)"]),
            ("missing", "del f['\(weight)']", ["missing dataset \(weight)"]),
            ("null", "del f['\(weight)']; f.create_dataset('\(weight)', data=h5py.Empty('f4'))", ["dataset \(weight) holds no values"]),
            ("training-ints", "del f['meta/training']; f['meta/training'] = np.arange(4, dtype='i4')", ["dataset meta/training is not a string"]),
        ]
        for (name, edit, parts) in cases {
            let edited = file("\(name).h5")
            try FileManager.default.copyItem(atPath: path, toPath: edited)
            try python("with h5py.File(sys.argv[1], 'r+') as f:\n    " + edit, [edited])
            assertThrows(edited, containing: parts)
        }
    }

    // MARK: Corruption

    /// A flipped byte in the middle of a dataset's stored values fails its checksum.
    func testFlippedBytesAreDetected() throws {
        let (net, opt) = try trainedNet()
        let path = file("ok.h5")
        try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":1}"#, to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        for name in ["features.0.weight", "features.1.running_var", "momentum/classifier.weight", Checkpoint.trainingDataset] {
            let location = try python("""
                with h5py.File(sys.argv[1], "r") as f:
                    info = f[sys.argv[2]].id.get_chunk_info(0)
                    print(info.byte_offset, info.size)
                """, [path, name]).split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            XCTAssertEqual(location.count, 2, name)
            guard location.count == 2 else { continue }
            var bytes = good
            bytes[location[0] + location[1] / 2] ^= 0x10
            let damaged = file("flipped.h5")
            try bytes.write(to: URL(fileURLWithPath: damaged))
            assertThrows(damaged, containing: ["dataset \(name) is corrupt (checksum mismatch)"])
        }
    }

    /// NaN, Inf and negative variances written by another tool (with valid checksums) are refused.
    func testNonFiniteValuesAreRejectedOnLoad() throws {
        let (net, opt) = try trainedNet()
        let path = file("ok.h5")
        try Checkpoint.save(net, optimizer: opt, to: path)
        let cases: [(String, String, String)] = [
            ("features.0.weight", "np.nan", "holds non-finite values (NaN or Inf)"),
            ("features.1.running_var", "np.nan", "holds non-finite values (NaN or Inf)"),
            ("features.1.running_mean", "np.inf", "holds non-finite values (NaN or Inf)"),
            ("momentum/classifier.bias", "-np.inf", "holds non-finite values (NaN or Inf)"),
            ("features.1.running_var", "-0.5", "holds negative values"),
        ]
        for (k, (name, value, message)) in cases.enumerated() {
            let edited = file("bad-\(k).h5")
            try FileManager.default.copyItem(atPath: path, toPath: edited)
            try python("""
                with h5py.File(sys.argv[1], "r+") as f:
                    d = f[sys.argv[2]]
                    a = d[()]
                    a.flat[a.size // 2] = \(value)
                    d[...] = a
                """, [edited, name])
            assertThrows(edited, containing: ["\(name) \(message)"])
        }
    }

    /// A net holding NaN or Inf is never saved: the previous file stays, no temporary is left.
    func testNonFiniteNetIsNotSaved() throws {
        let (net, opt) = try trainedNet()
        let path = file("last.h5")
        try Checkpoint.save(net, optimizer: opt, to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertNil(Checkpoint.nonFiniteTensor(in: net))
        let state = net.state
        for name in ["features.4.weight", "features.1.running_var"] {
            let tensor = try XCTUnwrap(state.first { $0.name == name }?.tensor, name)
            let saved = tensor.data[1]
            tensor.data[1] = name.hasSuffix("var") ? .infinity : .nan
            XCTAssertEqual(Checkpoint.nonFiniteTensor(in: net), name)
            XCTAssertThrowsError(try Checkpoint.save(net, optimizer: opt, training: "{}", to: path)) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("\(name) holds non-finite values"), "\(error)")
            }
            tensor.data[1] = saved
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), good, "previous checkpoint changed")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["last.h5"], "temporary file left")
    }

    // MARK: Writes that fail

    /// A full disk is reported as such (by the OS's words), for checkpoints and other files, and
    /// leaves no temporary file.
    func testDiskFullSaysSo() throws {
        let mount = folder.appendingPathComponent("small").path
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let mounting = Process()
        mounting.executableURL = URL(fileURLWithPath: "/bin/mount")
        mounting.arguments = ["-t", "tmpfs", "-o", "size=200k", "tmpfs", mount]
        mounting.standardError = FileHandle.nullDevice
        guard (try? mounting.run()) != nil, ({ mounting.waitUntilExit(); return mounting.terminationStatus == 0 })() else {
            throw XCTSkip("cannot mount a small tmpfs (needs root)")
        }
        defer {
            let unmounting = Process()
            unmounting.executableURL = URL(fileURLWithPath: "/bin/umount")
            unmounting.arguments = [mount]
            try? unmounting.run()
            unmounting.waitUntilExit()
        }
        let (net, opt) = try trainedNet(.vgg11, ratio: 0.25)  // ~2.3 MB with momentum
        let path = mount + "/last.h5"
        XCTAssertThrowsError(try Checkpoint.save(net, optimizer: opt, to: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("No space left on device"), "\(error)")
        }
        XCTAssertThrowsError(try AtomicFile.write(Data(count: 400_000), to: mount + "/big.json")) { error in
            XCTAssertTrue("\(error)".contains("big.json") && "\(error)".contains("No space left on device"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mount), [], "temporary files left")
    }

    func testMissingFolderSaysSo() throws {
        let (net, _) = try trainedNet()
        let path = file("no/such/folder/last.h5")
        XCTAssertThrowsError(try Checkpoint.save(net, to: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("No such file or directory"), "\(error)")
        }
        XCTAssertThrowsError(try AtomicFile.write(Data("x".utf8), to: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("No such file or directory"), "\(error)")
        }
    }

    // MARK: Random damage

    /// ~200 seeded single-byte changes (a third in the first 8 KB, a third in the last 8 KB where
    /// HDF5 puts most metadata, a third anywhere) and truncations: each load gives exactly the
    /// saved checkpoint or throws a `CheckpointError` naming the file.
    func testMutatedAndTruncatedFilesNeverLoadWrongValues() throws {
        let (net, opt) = try trainedNet(.mobilenetv2, ratio: 0.0625)
        let path = file("ok.h5")
        try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":4,"history":[0.5,0.25]}"#, to: path)
        let original = try Checkpoint.load(path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let damaged = file("damaged.h5")
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {  // splitmix64: the same positions every run
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
        let started = Date()
        var loaded = 0, rejected = 0
        func check(_ bytes: Data, _ what: String) throws {
            try bytes.write(to: URL(fileURLWithPath: damaged))
            do {
                assertSame(try Checkpoint.load(damaged), original, what)
                loaded += 1
            } catch let error as CheckpointError {
                XCTAssertEqual(error.path, damaged, "\(what): \(error)")
                rejected += 1
            }
        }
        let window = min(8192, good.count)
        for k in 0..<200 {
            let position: Int
            switch k % 3 {
            case 0: position = next(window)
            case 1: position = good.count - 1 - next(window)
            default: position = next(good.count)
            }
            var bytes = good
            bytes[position] ^= UInt8(1 + next(255))
            try check(bytes, "byte \(position) changed")
        }
        for length in [0, 1, 8, 100, 511, 2048, good.count / 4, good.count / 2, good.count - 4096, good.count - 1] {
            try check(good.prefix(length), "truncated to \(length) bytes")
        }
        XCTAssertGreaterThan(rejected, 10, "the damage went unnoticed")
        XCTAssertLessThan(Date().timeIntervalSince(started), 120, "loading damaged files took too long")
        print("damaged checkpoints: \(loaded) loaded unchanged, \(rejected) rejected")
    }
}
