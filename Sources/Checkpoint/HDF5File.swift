import CHDF5
import CHDF5Macros
import Foundation

/// A failure reading or writing a checkpoint, naming the file.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public var description: String { "checkpoint \(path): \(message)" }
}

/// The few HDF5 operations checkpoints need: float datasets under a name (dots allowed in
/// names; `/` separates groups) and string attributes on the root, with every failure turned into
/// a `CheckpointError`.
final class HDF5File {
    let path: String
    private var id: hid_t

    private static let silenced: Void = { ns_h5_silence_errors() }()

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    static func create(_ path: String) throws -> HDF5File {
        _ = silenced
        let id = H5Fcreate(path, ns_h5f_acc_trunc(), ns_h5p_default(), ns_h5p_default())
        guard id >= 0 else { throw CheckpointError(path: path, message: "cannot create the file (is the folder writable?)") }
        return HDF5File(path: path, id: id)
    }

    static func open(_ path: String) throws -> HDF5File {
        _ = silenced
        guard FileManager.default.fileExists(atPath: path) else {
            throw CheckpointError(path: path, message: "no such file")
        }
        guard H5Fis_hdf5(path) > 0 else {
            throw CheckpointError(path: path, message: "not an HDF5 file (truncated or corrupt?)")
        }
        let id = H5Fopen(path, ns_h5f_acc_rdonly(), ns_h5p_default())
        guard id >= 0 else { throw CheckpointError(path: path, message: "cannot open the HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    deinit { if id >= 0 { H5Fclose(id) } }

    /// Writes everything out and closes the file.
    func close() throws {
        guard id >= 0 else { return }
        let rc = H5Fclose(id)
        id = -1
        guard rc >= 0 else { throw fail("cannot close (disk full?)") }
    }

    /// Flushes HDF5's buffers to the operating system.
    func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw fail("cannot flush") }
    }

    private func fail(_ message: String) -> CheckpointError { CheckpointError(path: path, message: message) }

    func createGroup(_ name: String) throws {
        let g = H5Gcreate2(id, name, ns_h5p_default(), ns_h5p_default(), ns_h5p_default())
        guard g >= 0 else { throw fail("cannot create group \(name)") }
        H5Gclose(g)
    }

    func exists(_ name: String) -> Bool {
        // H5Lexists fails (rather than returning false) when a parent group is missing.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if H5Lexists(id, prefix, ns_h5p_default()) <= 0 { return false }
        }
        return true
    }

    func writeFloats(_ name: String, shape: [Int], _ data: UnsafePointer<Float>) throws {
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        guard space >= 0 else { throw fail("cannot describe dataset \(name) of shape \(shape)") }
        defer { H5Sclose(space) }
        let ds = H5Dcreate2(id, name, ns_h5_native_float(), space, ns_h5p_default(), ns_h5p_default(), ns_h5p_default())
        guard ds >= 0 else { throw fail("cannot create dataset \(name)") }
        defer { H5Dclose(ds) }
        guard H5Dwrite(ds, ns_h5_native_float(), ns_h5s_all(), ns_h5s_all(), ns_h5p_default(), data) >= 0 else {
            throw fail("cannot write dataset \(name)")
        }
    }

    /// The shape of dataset `name`.
    func shape(of name: String) throws -> [Int] {
        guard exists(name) else { throw fail("missing dataset \(name)") }
        let ds = H5Dopen2(id, name, ns_h5p_default())
        guard ds >= 0 else { throw fail("cannot open dataset \(name)") }
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0 else { throw fail("cannot read the shape of dataset \(name)") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.prefix(rank).map { Int($0) }
    }

    /// Reads dataset `name` into `data`, which must hold `expected`'s element count.
    func readFloats(_ name: String, expected: [Int], into data: UnsafeMutablePointer<Float>) throws {
        let found = try shape(of: name)
        guard found == expected else { throw fail("dataset \(name) has shape \(found), expected \(expected)") }
        let ds = H5Dopen2(id, name, ns_h5p_default())
        defer { H5Dclose(ds) }
        guard H5Dread(ds, ns_h5_native_float(), ns_h5s_all(), ns_h5s_all(), ns_h5p_default(), data) >= 0 else {
            throw fail("cannot read dataset \(name) (file corrupt?)")
        }
    }

    func writeString(attribute name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let type = H5Tcopy(ns_h5_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, max(bytes.count, 1))
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate2(id, name, type, space, ns_h5p_default(), ns_h5p_default())
        guard attr >= 0 else { throw fail("cannot create attribute \(name)") }
        defer { H5Aclose(attr) }
        let padded = bytes.isEmpty ? [UInt8(0)] : bytes
        guard H5Awrite(attr, type, padded) >= 0 else { throw fail("cannot write attribute \(name)") }
    }

    func hasAttribute(_ name: String) -> Bool { H5Aexists(id, name) > 0 }

    func readString(attribute name: String) throws -> String {
        guard H5Aexists(id, name) > 0 else { throw fail("missing attribute \(name) (not a neuralscale checkpoint?)") }
        let attr = H5Aopen(id, name, ns_h5p_default())
        guard attr >= 0 else { throw fail("cannot open attribute \(name)") }
        defer { H5Aclose(attr) }
        let type = H5Aget_type(attr)
        defer { H5Tclose(type) }
        let size = H5Tget_size(type)
        guard size > 0, H5Tget_class(type) == H5T_STRING else { throw fail("attribute \(name) is not a string") }
        var buffer = [UInt8](repeating: 0, count: size)
        guard H5Aread(attr, type, &buffer) >= 0 else { throw fail("cannot read attribute \(name)") }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }
}
