import CHDF5
import CHDF5Macros
import Foundation

/// A failure reading or writing a checkpoint (or another file written atomically: `AtomicFile`),
/// naming the file.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    /// "checkpoint" only for HDF5 files: an ONNX model or a JSON file written atomically is not one.
    public var description: String { path.hasSuffix(".h5") ? "checkpoint \(path): \(message)" : "\(path): \(message)" }
}

/// The few HDF5 operations checkpoints need: float and byte datasets under a name (dots allowed in
/// names; `/` separates groups) and string attributes on the root, with every failure turned into
/// a `CheckpointError` that says why (the OS's reason, a failed checksum).
///
/// Reading trusts nothing in the file: shapes, types and sizes are checked before any buffer is
/// sized from them, so a corrupt or foreign file throws instead of trapping.
final class HDF5File {
    /// The path errors name (a temporary file is reported as the checkpoint it becomes).
    let path: String
    private var id: hid_t
    /// The file's size on disk: an upper bound for anything stored uncompressed in it.
    private let fileSize: Int

    /// Longest string or byte dataset read (a compressed one may exceed the file's size).
    static let maxTextBytes = 1 << 30

    private static let silenced: Void = { ns_h5_silence_errors() }()

    private init(path: String, id: hid_t, fileSize: Int) {
        self.path = path
        self.id = id
        self.fileSize = fileSize
    }

    /// Creates a file in memory (HDF5's core driver, no disk I/O) under the name `name`; errors
    /// name `reportAs`. `image()` then gives its bytes, which the caller writes out: HDF5 never
    /// sees a failed write, which it does not survive (a file that fails to close crashes the
    /// library at exit), and the caller reports the OS's reason ("No space left on device").
    ///
    /// The format is HDF5 1.10's (superblock v3, object header v2, a dataset's single chunk
    /// indexed from its layout message), in which all metadata carries checksums, so a flipped
    /// byte in the file's structure is detected on read (1.8's chunk B-trees have none: a
    /// damaged one reads as missing chunks, i.e. zeros); h5py and any HDF5 >= 1.10 read it.
    /// - Parameter sizeHint: the expected file size: the memory grows in steps of it.
    static func createInMemory(_ name: String, reportAs: String, sizeHint: Int) throws -> HDF5File {
        _ = silenced
        let fapl = H5Pcreate(ns_h5p_file_access())
        guard fapl >= 0 else { throw CheckpointError(path: reportAs, message: "cannot set up HDF5 file access") }
        defer { H5Pclose(fapl) }
        guard H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0,
              H5Pset_fapl_core(fapl, max(1 << 20, min(sizeHint, 1 << 30)), false) >= 0 else {
            throw CheckpointError(path: reportAs, message: "cannot select the HDF5 file format")
        }
        // No creation times in the object headers (HDF5 records them by default): the same
        // contents give the same bytes whenever they are written. The root group's setting is
        // the file creation list's; groups and datasets get theirs as they are made.
        let fcpl = untimedCreationList(ns_h5p_file_create())
        guard fcpl >= 0 else { throw CheckpointError(path: reportAs, message: "cannot set up HDF5 file creation") }
        defer { H5Pclose(fcpl) }
        let id = H5Fcreate(name, ns_h5f_acc_trunc(), fcpl, fapl)
        guard id >= 0 else {
            throw CheckpointError(path: reportAs, message: "cannot create the file in memory: \(reason() ?? "no reason given")")
        }
        return HDF5File(path: reportAs, id: id, fileSize: 0)
    }

    /// The bytes of a file made by `createInMemory`; closes it (its memory is freed before the
    /// caller writes the bytes, so at most two copies exist, briefly).
    func image() throws -> [UInt8] {
        try flush()
        let size = H5Fget_file_image(id, nil, 0)
        guard size > 0 else { throw failed("cannot get the file's bytes") }
        var bytes = try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            guard H5Fget_file_image(id, buffer.baseAddress, size) == size else { throw failed("cannot get the file's bytes") }
            count = size
        }
        // HDF5 1.10 returns the image with a stale superblock checksum (the file it would write
        // itself has the right one): recompute it, or no HDF5 reader opens the file.
        guard bytes.withUnsafeMutableBufferPointer({ ns_h5_superblock_checksum($0.baseAddress, $0.count, 1) }) >= 0 else {
            throw fail("the file's bytes in memory do not start with an HDF5 superblock v2/v3")
        }
        try close()
        return bytes
    }

    static func open(_ path: String) throws -> HDF5File {
        _ = silenced
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw CheckpointError(path: path, message: errno == ENOENT ? "no such file" : "cannot read it: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw CheckpointError(path: path, message: "not a regular file") }
        guard H5Fis_hdf5(path) > 0 else {
            throw CheckpointError(path: path, message: "not an HDF5 file (truncated or corrupt?)")
        }
        errno = 0
        let id = H5Fopen(path, ns_h5f_acc_rdonly(), ns_h5p_default())
        guard id >= 0 else {
            throw CheckpointError(path: path, message: "cannot open the HDF5 file (truncated or corrupt?): \(reason() ?? "no reason given")")
        }
        return HDF5File(path: path, id: id, fileSize: Int(info.st_size))
    }

    deinit { if id >= 0 { H5Fclose(id) } }

    /// Why the HDF5 call that just failed failed: the OS's error text when HDF5 recorded one
    /// (its low-level driver quotes strerror), else errno when the call set it (callers zero it
    /// first), else the innermost message on HDF5's error stack.
    static func reason() -> String? {
        let saved = errno
        var buffer = [CChar](repeating: 0, count: 4096)
        ns_h5_error_text(&buffer, buffer.count)
        let stack = String(cString: buffer)
        if let start = stack.range(of: "error message = '"),
           let end = stack[start.upperBound...].firstIndex(of: "'") {
            return String(stack[start.upperBound..<end])
        }
        if saved != 0 { return String(cString: strerror(saved)) }
        let innermost = stack.components(separatedBy: " | ").first ?? ""
        return innermost.isEmpty ? nil : innermost
    }

    /// The HDF5 error stack of the call that just failed, for classifying the failure.
    private static func stackText() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        ns_h5_error_text(&buffer, buffer.count)
        return String(cString: buffer)
    }

    private func fail(_ message: String) -> CheckpointError { CheckpointError(path: path, message: message) }

    /// A failure of the HDF5 call just made, with its reason.
    private func failed(_ message: String) -> CheckpointError {
        fail(HDF5File.reason().map { "\(message): \($0)" } ?? message)
    }

    /// Writes everything out and closes the file.
    func close() throws {
        guard id >= 0 else { return }
        errno = 0
        let rc = H5Fclose(id)
        id = -1
        guard rc >= 0 else { throw failed("cannot close the file") }
    }

    /// Flushes HDF5's buffers to the operating system.
    func flush() throws {
        errno = 0
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw failed("cannot write the file out") }
    }

    /// A creation property list of `propertyClass` (file, group or dataset) that records no
    /// creation times, or -1 (nothing left open).
    static func untimedCreationList(_ propertyClass: hid_t) -> hid_t {
        let list = H5Pcreate(propertyClass)
        guard list >= 0 else { return -1 }
        guard H5Pset_obj_track_times(list, false) >= 0 else {
            H5Pclose(list)
            return -1
        }
        return list
    }

    func createGroup(_ name: String) throws {
        let gcpl = HDF5File.untimedCreationList(ns_h5p_group_create())
        guard gcpl >= 0 else { throw fail("cannot set up group \(name)") }
        defer { H5Pclose(gcpl) }
        errno = 0
        let g = H5Gcreate2(id, name, ns_h5p_default(), gcpl, ns_h5p_default())
        guard g >= 0 else { throw failed("cannot create group \(name)") }
        H5Gclose(g)
    }

    /// Whether `name` exists; throws when HDF5 cannot tell (a damaged group), so damage never
    /// reads as "absent".
    func exists(_ name: String) throws -> Bool {
        // H5Lexists fails (rather than returning false) when a parent group is missing.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            let found = H5Lexists(id, prefix, ns_h5p_default())
            guard found >= 0 else { throw failed("cannot look up \(prefix) (file corrupt?)") }
            if found == 0 { return false }
        }
        return true
    }

    // MARK: Writing

    /// Creates dataset `name` of `type` and `shape` and writes `data` into it. Non-empty, non-scalar
    /// datasets get HDF5's Fletcher32 checksum (which needs a chunked layout), so a changed byte is
    /// reported on read instead of loading as a wrong weight.
    private func write(_ name: String, type: hid_t, shape: [Int], elementSize: Int, _ data: UnsafeRawPointer?) throws {
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        guard space >= 0 else { throw fail("cannot describe dataset \(name) of shape \(shape)") }
        defer { H5Sclose(space) }
        let dcpl = HDF5File.untimedCreationList(ns_h5p_dataset_create())
        guard dcpl >= 0 else { throw fail("cannot set up dataset \(name)") }
        defer { H5Pclose(dcpl) }
        if !shape.isEmpty, !shape.contains(0) {
            var chunk = HDF5File.chunk(shape, elementSize: elementSize).map { hsize_t($0) }
            guard H5Pset_chunk(dcpl, Int32(chunk.count), &chunk) >= 0, H5Pset_fletcher32(dcpl) >= 0 else {
                throw fail("cannot set up the checksum of dataset \(name)")
            }
        }
        errno = 0
        let ds = H5Dcreate2(id, name, type, space, ns_h5p_default(), dcpl, ns_h5p_default())
        guard ds >= 0 else { throw failed("cannot create dataset \(name)") }
        defer { H5Dclose(ds) }
        guard !shape.contains(0) else { return }
        errno = 0
        guard H5Dwrite(ds, type, ns_h5s_all(), ns_h5s_all(), ns_h5p_default(), data) >= 0 else {
            throw failed("cannot write dataset \(name)")
        }
    }

    /// Chunk dimensions for `shape`: the whole dataset in one chunk, halving the leading dimensions
    /// until a chunk is under HDF5's 4 GB limit.
    static func chunk(_ shape: [Int], elementSize: Int) -> [Int] {
        var chunk = shape
        let limit = (1 << 32) - 1
        while chunk.reduce(elementSize, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }) > limit,
              let axis = chunk.firstIndex(where: { $0 > 1 }) {
            chunk[axis] = (chunk[axis] + 1) / 2
        }
        return chunk
    }

    func writeFloats(_ name: String, shape: [Int], _ data: UnsafePointer<Float>) throws {
        try write(name, type: ns_h5_native_float(), shape: shape, elementSize: 4, data)
    }

    /// Writes `bytes` as a 1-D uint8 dataset (with a checksum, like the floats).
    func writeBytes(_ name: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(name, type: ns_h5_native_uchar(), shape: [bytes.count], elementSize: 1, $0.baseAddress) }
    }

    func writeString(attribute name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let type = H5Tcopy(ns_h5_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, max(bytes.count, 1))
        H5Tset_cset(type, H5T_CSET_UTF8)
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        errno = 0
        let attr = H5Acreate2(id, name, type, space, ns_h5p_default(), ns_h5p_default())
        guard attr >= 0 else { throw failed("cannot create attribute \(name)") }
        defer { H5Aclose(attr) }
        let padded = bytes.isEmpty ? [UInt8(0)] : bytes
        errno = 0
        guard H5Awrite(attr, type, padded) >= 0 else { throw failed("cannot write attribute \(name)") }
    }

    // MARK: Reading

    /// The shape of dataspace `space` of `what`; throws for a null dataspace (no values) and
    /// for dimensions no buffer could hold.
    private func shape(ofSpace space: hid_t, _ what: String) throws -> [Int] {
        guard space >= 0 else { throw fail("cannot read the shape of \(what)") }
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR: return []
        case H5S_SIMPLE: break
        default: throw fail("\(what) holds no values (a null dataspace)")
        }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= 32 else { throw fail("cannot read the shape of \(what)") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        guard H5Sget_simple_extent_dims(space, &dims, nil) >= 0 else { throw fail("cannot read the shape of \(what)") }
        var shape: [Int] = []
        var total = 1
        for d in dims.prefix(rank) {
            guard d <= hsize_t(Int32.max), case let n = Int(d), !total.multipliedReportingOverflow(by: n).overflow,
                  total * n <= Int(Int32.max) * 64 else {
                throw fail("\(what) has an impossible shape \(dims.prefix(rank).map(\.description).joined(separator: "x"))")
            }
            shape.append(n)
            total *= n
        }
        return shape
    }

    /// Opens dataset `name`, or throws naming it.
    private func openDataset(_ name: String) throws -> hid_t {
        guard try exists(name) else { throw fail("missing dataset \(name)") }
        guard H5Oexists_by_name(id, name, ns_h5p_default()) > 0 else { throw fail("dataset \(name) is a dangling link") }
        let ds = H5Dopen2(id, name, ns_h5p_default())
        guard ds >= 0 else { throw fail("cannot open dataset \(name) (not a dataset, or corrupt)") }
        return ds
    }

    /// The shape of dataset `name`.
    func shape(of name: String) throws -> [Int] {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { if space >= 0 { H5Sclose(space) } }
        return try shape(ofSpace: space, "dataset \(name)")
    }

    /// A failed read of dataset `name`: a checksum mismatch is reported as corruption.
    private func readFailure(_ name: String) -> CheckpointError {
        let stack = HDF5File.stackText().lowercased()
        if stack.contains("fletcher32") || stack.contains("checksum") {
            return fail("dataset \(name) is corrupt (checksum mismatch)")
        }
        return failed("cannot read dataset \(name) (file corrupt?)")
    }

    /// Reads dataset `name` into `data`, which must hold `expected`'s element count.
    func readFloats(_ name: String, expected: [Int], into data: UnsafeMutablePointer<Float>) throws {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { if space >= 0 { H5Sclose(space) } }
        let found = try shape(ofSpace: space, "dataset \(name)")
        guard found == expected else { throw fail("dataset \(name) has shape \(found), expected \(expected)") }
        let type = H5Dget_type(ds)
        defer { if type >= 0 { H5Tclose(type) } }
        // HDF5 would convert integers silently; only floats (of any width) are weights.
        guard type >= 0, H5Tget_class(type) == H5T_FLOAT else { throw fail("dataset \(name) does not hold floats") }
        guard !expected.contains(0) else { return }
        // HDF5 reads storage that is missing (a lost chunk) as the fill value, zeros, without error.
        let stored = H5Dget_storage_size(ds)
        let needed = hsize_t(expected.reduce(1, *)) * hsize_t(H5Tget_size(type))
        guard isCompressed(ds) ? stored > 0 : stored >= needed else {
            throw fail("dataset \(name) has \(stored) bytes stored, \(needed) needed (file corrupt?)")
        }
        errno = 0
        guard H5Dread(ds, ns_h5_native_float(), ns_h5s_all(), ns_h5s_all(), ns_h5p_default(), data) >= 0 else {
            throw readFailure(name)
        }
    }

    /// Whether dataset `ds` is stored through a filter that may shrink it (compression), so its
    /// values may outgrow the file.
    private func isCompressed(_ ds: hid_t) -> Bool {
        let dcpl = H5Dget_create_plist(ds)
        guard dcpl >= 0 else { return false }
        defer { H5Pclose(dcpl) }
        let count = H5Pget_nfilters(dcpl)
        guard count > 0 else { return false }
        for i in 0..<UInt32(count) {
            var flags: UInt32 = 0, elements = 0
            var config: UInt32 = 0
            if H5Pget_filter2(dcpl, i, &flags, &elements, nil, 0, nil, &config) != H5Z_FILTER_FLETCHER32 { return true }
        }
        return false
    }

    /// Reads a text from `type`/`space` of `what` through `read(memoryType, buffer)`: a fixed- or
    /// variable-length string (h5py writes variable-length ones by default), or 1-D bytes.
    /// `failure` describes a failed read (called at once, while HDF5's error stack holds the cause).
    private func readText(_ what: String, type: hid_t, space: hid_t, maxBytes: Int,
                          failure: () -> CheckpointError,
                          read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> String {
        guard type >= 0 else { throw fail("cannot read the type of \(what)") }
        let shape = try shape(ofSpace: space, what)
        let count = shape.reduce(1, *)
        switch H5Tget_class(type) {
        case H5T_STRING:
            guard count == 1 else { throw fail("\(what) holds \(count) strings, expected one") }
            let memory = H5Tcopy(type)
            guard memory >= 0 else { throw fail("cannot read \(what)") }
            defer { H5Tclose(memory) }
            if H5Tis_variable_str(type) > 0 {
                var pointer: UnsafeMutablePointer<CChar>?
                errno = 0
                guard read(memory, &pointer) >= 0 else { throw failure() }
                defer { if let pointer { H5free_memory(pointer) } }
                return pointer.map { String(cString: $0) } ?? ""
            }
            let size = H5Tget_size(type)
            guard size > 0, size <= maxBytes else { throw fail("\(what) claims an impossible length \(size)") }
            var buffer = [UInt8](repeating: 0, count: size)
            errno = 0
            guard buffer.withUnsafeMutableBytes({ read(memory, $0.baseAddress!) }) >= 0 else { throw failure() }
            var text = buffer.prefix { $0 != 0 }
            if H5Tget_strpad(type) == H5T_STR_SPACEPAD { while text.last == 0x20 { text = text.dropLast() } }
            return String(decoding: text, as: UTF8.self)
        case H5T_INTEGER where H5Tget_size(type) == 1 && shape.count <= 1:
            guard count <= maxBytes else { throw fail("\(what) claims an impossible length \(count)") }
            guard count > 0 else { return "" }
            var buffer = [UInt8](repeating: 0, count: count)
            errno = 0
            guard buffer.withUnsafeMutableBytes({ read(ns_h5_native_uchar(), $0.baseAddress!) }) >= 0 else { throw failure() }
            return String(decoding: buffer, as: UTF8.self)
        default:
            throw fail("\(what) is not a string")
        }
    }

    /// Reads dataset `name` as UTF-8 text: bytes as `writeBytes` stores them, or a string.
    func readText(dataset name: String) throws -> String {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let type = H5Dget_type(ds), space = H5Dget_space(ds)
        defer {
            if type >= 0 { H5Tclose(type) }
            if space >= 0 { H5Sclose(space) }
        }
        let limit = isCompressed(ds) ? HDF5File.maxTextBytes : min(HDF5File.maxTextBytes, fileSize)
        return try readText("dataset \(name)", type: type, space: space, maxBytes: limit, failure: { readFailure(name) }) {
            H5Dread(ds, $0, ns_h5s_all(), ns_h5s_all(), ns_h5p_default(), $1)
        }
    }

    /// Whether the root has attribute `name`; throws when HDF5 cannot tell.
    func hasAttribute(_ name: String) throws -> Bool {
        let found = H5Aexists(id, name)
        guard found >= 0 else { throw failed("cannot look up attribute \(name) (file corrupt?)") }
        return found > 0
    }

    func readString(attribute name: String) throws -> String {
        guard try hasAttribute(name) else { throw fail("missing attribute \(name) (not a neuralscale checkpoint?)") }
        let attr = H5Aopen(id, name, ns_h5p_default())
        guard attr >= 0 else { throw fail("cannot open attribute \(name)") }
        defer { H5Aclose(attr) }
        let type = H5Aget_type(attr), space = H5Aget_space(attr)
        defer {
            if type >= 0 { H5Tclose(type) }
            if space >= 0 { H5Sclose(space) }
        }
        // Attributes are never compressed: none is longer than the file.
        return try readText("attribute \(name)", type: type, space: space, maxBytes: min(HDF5File.maxTextBytes, fileSize),
                            failure: { failed("cannot read attribute \(name)") }) {
            H5Aread(attr, $0, $1)
        }
    }
}
