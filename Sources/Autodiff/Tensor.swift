import Foundation

/// A contiguous, row-major Float32 tensor.
///
/// Activations are NCHW and convolution filters OIHW, the ONNX layout. A tensor owns (or shares,
/// after `reshaped`) a `Storage` taken from the `BufferPool`, so the buffers of one training step
/// are reused by the next instead of being returned to the system allocator.
public final class Tensor {
    /// The dimensions, outermost first. A scalar has shape `[]` and one element.
    public let shape: [Int]
    /// The number of elements, the product of `shape`.
    public let count: Int
    let storage: Storage

    /// Whether gradients flow into this tensor. Parameters set it; op outputs inherit it from
    /// their inputs while the tape is recording.
    public var requiresGrad: Bool
    /// The accumulated gradient, same shape as the tensor. `nil` until backward reaches it.
    public var grad: Tensor?
    /// Held by every gradient that shares one storage with others (`shareGrad`): while another
    /// holds it too, the gradient is read as it is and copied before anything adds into it; once
    /// the others are released (an op output's gradient is, after its rule has run), it is the
    /// storage's only user again and is added into in place.
    private var shareToken: ShareToken?

    /// Whether this gradient's storage is still shared with another gradient (see `shareToken`).
    var sharesStorage: Bool {
        guard shareToken != nil else { return false }
        if isKnownUniquelyReferenced(&shareToken) {
            shareToken = nil
            return false
        }
        return true
    }

    /// Raw element pointer, for kernels. Valid while the tensor is alive.
    @inline(__always) public var data: UnsafeMutablePointer<Float> { storage.pointer }

    /// A tensor with undefined contents, for op outputs that are fully overwritten.
    public init(uninitialized shape: [Int], requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = Storage(count: count)
        self.requiresGrad = requiresGrad
    }

    init(shape: [Int], storage: Storage, requiresGrad: Bool) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// A tensor filled with zeros.
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape, requiresGrad: requiresGrad)
        t.data.initialize(repeating: 0, count: t.count)
        return t
    }

    /// A tensor filled with `value`.
    public static func filled(_ shape: [Int], with value: Float, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape, requiresGrad: requiresGrad)
        t.data.initialize(repeating: value, count: t.count)
        return t
    }

    /// A tensor holding a copy of `values` (row-major).
    public convenience init(shape: [Int], values: [Float], requiresGrad: Bool = false) {
        self.init(uninitialized: shape, requiresGrad: requiresGrad)
        precondition(values.count == count,
                     "Tensor: \(values.count) values do not fill shape \(shape) (\(count) elements)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A copy of the elements as an array.
    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The single value of a one-element tensor (a loss, say).
    public var scalar: Float {
        precondition(count == 1, "Tensor.scalar: shape \(shape) has \(count) elements, expected 1")
        return data[0]
    }

    /// Copies `other`'s values into this tensor. Shapes must hold the same number of elements.
    public func copy(from other: Tensor) {
        precondition(other.count == count, "Tensor.copy: shapes \(other.shape) and \(shape) differ in size")
        data.update(from: other.data, count: count)
    }

    /// Sets every element to zero.
    public func zero() { data.update(repeating: 0, count: count) }

    /// The gradient buffer, created (zero-filled) on first use. Backward rules add into it.
    public func gradBuffer() -> Tensor {
        unshareGrad()
        if let g = grad { return g }
        let g = Tensor.zeros(shape)
        grad = g
        return g
    }

    /// The gradient buffer for a backward rule that writes every element: when there is no
    /// gradient yet, a new one left uninitialized and `fresh` (the rule writes its values: zeroing
    /// it first and adding would cost two more passes over memory); else the existing one, which
    /// the rule adds into.
    public func gradDestination() -> (grad: Tensor, fresh: Bool) {
        unshareGrad()
        if let g = grad { return (g, false) }
        let g = Tensor(uninitialized: shape)
        grad = g
        return (g, true)
    }

    /// Takes `d`, a gradient with as many elements that its backward rule passes on unchanged,
    /// as this tensor's gradient without copying it, when there is none yet: the gradient then
    /// shares `d`'s storage, which nothing else may read or write afterwards (an op's output
    /// gradient is dead once its rule has run). Returns false, taking nothing, when a gradient
    /// already exists: the caller adds `d` into it.
    func adoptGrad(_ d: Tensor) -> Bool {
        guard grad == nil else { return false }
        precondition(d.count == count, "adoptGrad: \(d.shape) does not match \(shape)")
        let g = Tensor(shape: shape, storage: d.storage, requiresGrad: false)
        g.shareToken = d.shareToken  // a gradient passed on (`add`'s, `reshape`'s) may be shared
        grad = g
        return true
    }

    /// For a backward rule that writes `addend + its values` in one pass: a new gradient left
    /// uninitialized and no addend when there is no gradient yet; a new one and the shared
    /// gradient as the addend when the gradient is shared (`shareGrad`: rather than a copy
    /// first); else the existing gradient, its own addend.
    public func gradDestinationAdding() -> (grad: Tensor, addend: Tensor?) {
        if let g = grad, !g.sharesStorage { return (g, g) }
        let shared = grad
        let g = Tensor(uninitialized: shape)
        grad = g
        return (g, shared)
    }

    /// Takes `d`, which `other` has just taken as its gradient (`adoptGrad`), as this tensor's
    /// gradient too when there is none yet, without a copy: the two share its storage, and while
    /// both hold it each is copied before anything adds into it (`gradBuffer`, `gradDestination`)
    /// or replaced by a new one (`gradDestinationAdding`). A residual sum's gradient goes to both
    /// summands this way: the branch's is only read (by its last op's backward, after which it
    /// is released), and the shortcut's, added to by the first op of the block that reads the
    /// same input, then has the storage to itself. Returns false, taking nothing, when a gradient
    /// already exists.
    func shareGrad(_ d: Tensor, with other: Tensor) -> Bool {
        guard grad == nil, other !== self, other.grad?.storage === d.storage else { return false }
        precondition(d.count == count, "shareGrad: \(d.shape) does not match \(shape)")
        let g = Tensor(shape: shape, storage: d.storage, requiresGrad: false)
        // One token for all the gradients on one storage (`other`'s may share it already).
        let token = other.grad!.shareToken ?? ShareToken()
        other.grad!.shareToken = token
        g.shareToken = token
        grad = g
        return true
    }

    /// A shared gradient (`shareGrad`) replaced by a copy of its own.
    private func unshareGrad() {
        guard let g = grad, g.sharesStorage else { return }
        let copy = Tensor(uninitialized: shape)
        copy.copy(from: g)
        grad = copy
    }

    /// Adds `d` (as many elements) into this tensor's gradient: takes `d` itself when there is no
    /// gradient yet and `mayTake` (see `adoptGrad`), else copies it into a fresh gradient or adds
    /// it into the existing one. Returns whether it took `d`, which nothing may then write.
    @discardableResult
    func receiveGrad(_ d: Tensor, mayTake: Bool = true) -> Bool {
        if mayTake && adoptGrad(d) { return true }
        let (g, fresh) = gradDestination()
        if fresh { g.copy(from: d) } else { accumulate(g.data, d.data, d.count) }
        return false
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = values.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(shown)\(count > 8 ? ", ..." : "")])"
    }
}

/// The mark of gradients sharing one storage (`Tensor.shareGrad`), counted by its references.
final class ShareToken {}

/// A 64-byte aligned Float buffer that returns itself to the `BufferPool` when released.
final class Storage {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        self.pointer = BufferPool.shared.acquire(count)
        #if DEBUG
        // Debug builds (the tests) poison fresh buffers, so a kernel that leaves part of its
        // output unwritten shows NaNs instead of whatever the pool's last user left.
        pointer.initialize(repeating: .nan, count: count)
        #endif
    }

    deinit { BufferPool.shared.release(pointer, count: count) }
}

/// Free lists of Float buffers keyed by element count.
///
/// Training repeats the same shapes every step, so after the first step every activation and
/// gradient buffer comes from here: no page faults from fresh `mmap`s, no allocator traffic.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    private var freeLists: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    /// Buffers of at least this many bytes start on a boundary of it: the size of a transparent
    /// huge page as the kernel reports it (`hpage_pmd_size`), 2 MB on x86-64 and on arm64 with
    /// 4 KB pages (a Raspberry Pi's, a Jetson's), 512 MB on arm64 with 64 KB pages; 2 MB where
    /// the file is missing.
    public static let hugePageBytes: Int = {
        let path = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0
        else { return 2 << 20 }
        return bytes
    }()
    /// Whether buffers of at least `hugePageBytes` are aligned to it and marked for transparent
    /// huge pages (`madvise(MADV_HUGEPAGE)`, before their first touch): Linux then backs them
    /// with huge pages where its THP setting is `madvise` or `always` (Debian's default is
    /// `madvise`, under which nothing else asks for them). A batch's activations and gradients
    /// are tens of MB, 4 KB pages many thousand: on an Intel Xeon VM the weight gradient of
    /// VGG-11's first layer ran at a median 2.3-2.5 ms with them against 2.7-4.3 ms without (30
    /// passes each), the page walks of a VM being two-level. Whole training steps at batch 128,
    /// 5 alternating pairs (ABBA), median images/s with / without: VGG-11 x1.0 1.035x and x0.25
    /// 1.056x, MobileNetV2 x1.0 1.064x (5 of 5 faster), ResNet-50 x1.0 1.027x, PreAct ResNet-18
    /// x0.25 1.026x; peak resident memory +10-27 MB (of 730-1010). Inference at batch 32 (3
    /// rounds): ResNet-50 x1.0 and VGG-11 x1.0 5% less latency. Off by default where huge pages
    /// are larger than 32 MB (64 KB base pages): few buffers would fill one. Set it before the
    /// first allocations (buffers already pooled keep their pages).
    nonisolated(unsafe) public static var hugePages = hugePageBytes <= 32 << 20

    func acquire(_ count: Int) -> UnsafeMutablePointer<Float> {
        pthread_mutex_lock(&lock)
        if let p = freeLists[count]?.popLast() {
            pthread_mutex_unlock(&lock)
            return p
        }
        pthread_mutex_unlock(&lock)
        var raw: UnsafeMutableRawPointer?
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        if overflow { BufferPool.outOfMemory(.max) }
        let huge = BufferPool.hugePages && bytes >= BufferPool.hugePageBytes
        let rc = posix_memalign(&raw, huge ? BufferPool.hugePageBytes : 64, bytes)
        // Out of memory is the input's size, not a bug: one line and a failed exit, no trap's
        // backtrace (checkpoints already written stay as they were).
        if rc != 0 || raw == nil { BufferPool.outOfMemory(bytes) }
        // The buffer's own range (to its last 4 KB page): a huge page backs only the aligned
        // stretches wholly inside it, so the memory after it keeps its pages. A kernel without
        // THP refuses the advice (EINVAL), which leaves plain pages: nothing to report.
        #if os(Linux)
        if huge { _ = madvise(raw, bytes, MADV_HUGEPAGE) }
        #endif
        return raw!.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    static func outOfMemory(_ bytes: Int) -> Never {
        let gib = Double(bytes) / Double(1 << 30)
        FileHandle.standardError.write(Data(("Error: out of memory: a tensor of \(String(format: "%.2f", gib)) GiB could not be "
                                            + "allocated (a smaller --batch-size or net?)\n").utf8))
        exit(1)
    }

    func release(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        pthread_mutex_lock(&lock)
        freeLists[count, default: []].append(pointer)
        pthread_mutex_unlock(&lock)
    }

    /// Returns every pooled buffer to the system, e.g. between models of different shapes.
    public func drain() {
        pthread_mutex_lock(&lock)
        for (_, list) in freeLists { for p in list { free(p) } }
        freeLists.removeAll()
        pthread_mutex_unlock(&lock)
    }
}
