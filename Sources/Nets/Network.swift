import Autodiff
import Foundation

/// The four nets of the spec ("Nets").
public enum Architecture: String, CaseIterable, Codable, Sendable {
    case vgg11
    case mobilenetv2
    case preactResNet18 = "preact_resnet18"
    case resnet50

    /// The original width of every group, in the order the net's file documents.
    public var originalWidths: [Int] {
        switch self {
        case .vgg11: return VGG11.originalWidths
        case .mobilenetv2: return MobileNetV2.originalWidths
        case .preactResNet18: return PreActResNet18.originalWidths
        case .resnet50: return ResNet50.originalWidths
        }
    }

    /// A dotted name per width group, in group order: the layer whose output channels the group
    /// counts (for residual block outputs, the block), as a net's forward pass shows them
    /// (`ChannelWiring.groupNames`, traced once per architecture on a small net).
    public var groupNames: [String] {
        Architecture.namesLock.lock()
        defer { Architecture.namesLock.unlock() }
        if let names = Architecture.names[self] { return names }
        let d = NetDescription(architecture: self, inChannels: 1, imageSize: 32, classes: 2,
                               widths: originalWidths.map { max(1, $0 / 32) })
        guard let net = try? makeNetwork(d, initialization: .none) else { preconditionFailure("groupNames: \(self) cannot be built") }
        let names = ChannelWiring(tracing: net).groupNames
        Architecture.names[self] = names
        return names
    }

    nonisolated(unsafe) private static var names: [Architecture: [String]] = [:]
    private static let namesLock = NSLock()

    /// Uniform scaling: `Int(width * ratio)` for every group (spec: "Uniform scaling").
    /// A ratio that is not finite or not positive gives widths of 0, and a huge one
    /// `NetDescription.maxWidth + 1`, which `NetDescription.validate` refuses: never a trap.
    public func uniformWidths(ratio: Double) -> [Int] {
        originalWidths.map { NetDescription.width(Double($0) * ratio, rounded: false) }
    }
}

/// Everything that fixes a net's shape: (architecture, input channels, image size, classes,
/// width config). A checkpoint stores it so the net can be rebuilt with no other file.
public struct NetDescription: Codable, Equatable, Sendable {
    public var architecture: Architecture
    public var inChannels: Int
    /// Height and width of the (square) input images.
    public var imageSize: Int
    public var classes: Int
    /// One width per group.
    public var widths: [Int]
    /// Shortcut of each residual block, for nets made by pruning surgery; nil for the spec's
    /// rule (see `resolvedShortcuts`).
    public var shortcuts: [Shortcut]?
    /// MobileNetV2's expansion widths, for nets made by pruning surgery; nil when they follow
    /// from the input widths (see `resolvedExpansions`).
    public var expansions: [Int]?

    public init(architecture: Architecture, inChannels: Int, imageSize: Int, classes: Int, widths: [Int],
                shortcuts: [Shortcut]? = nil, expansions: [Int]? = nil) {
        self.architecture = architecture
        self.inChannels = inChannels
        self.imageSize = imageSize
        self.classes = classes
        self.widths = widths
        self.shortcuts = shortcuts
        self.expansions = expansions
    }

    /// The net scaled uniformly by `ratio`.
    public static func uniform(_ architecture: Architecture, ratio: Double, inChannels: Int, imageSize: Int,
                               classes: Int) -> NetDescription {
        NetDescription(architecture: architecture, inChannels: inChannels, imageSize: imageSize, classes: classes,
                       widths: architecture.uniformWidths(ratio: ratio))
    }

    /// The widest group a net may have: 8x the widest original group (ResNet-50's 2048 at
    /// ratio 4 is 8192), so a corrupt file's width of 1e9 is refused before memory is sized.
    public static let maxWidth = 16_384
    /// Input channels, classes and image side a net may have (the datasets have 1-3 channels,
    /// 10-200 classes and 32-64 pixels).
    public static let maxInChannels = 64, maxClasses = 100_000, maxImageSize = 1024
    /// The most parameters a net may have: 2^31 floats are 8 GiB, a third of this machine class.
    public static let maxParameters = 1 << 31

    /// A width computed in floating point as an `Int` without trapping: truncated (uniform
    /// scaling) or rounded (fits), 0 for NaN and negatives, at most `maxWidth + 1` (out of range
    /// for `validate`).
    public static func width(_ w: Double, rounded: Bool) -> Int {
        let v = rounded ? w.rounded() : w.rounded(.towardZero)
        guard v >= 0 else { return 0 }  // also NaN
        return v >= Double(maxWidth + 1) ? maxWidth + 1 : Int(v)
    }

    /// Checks the description, naming the first problem. Every bound is checked before anything
    /// is sized from it, so a description read from a file can never trap or exhaust memory.
    public func validate() throws {
        let groups = architecture.originalWidths.count
        guard widths.count == groups else {
            throw NetError.invalid("\(architecture.rawValue) has \(groups) width groups, got \(widths.count) widths")
        }
        if let i = widths.firstIndex(where: { $0 < 1 || $0 > NetDescription.maxWidth }) {
            throw NetError.invalid("width \(i) of \(architecture.rawValue) is \(widths[i]); every width must be in 1...\(NetDescription.maxWidth)")
        }
        guard (1...NetDescription.maxInChannels).contains(inChannels), (2...NetDescription.maxClasses).contains(classes) else {
            throw NetError.invalid("need 1...\(NetDescription.maxInChannels) input channels and 2...\(NetDescription.maxClasses) classes, got \(inChannels) and \(classes)")
        }
        guard imageSize >= 32, imageSize <= NetDescription.maxImageSize, imageSize % 32 == 0 else {
            throw NetError.invalid("image size \(imageSize) is not a multiple of 32 in 32...\(NetDescription.maxImageSize) (32 for CIFAR, 64 for tinyImageNet)")
        }
        try validateSurgeryFields()
        // Widths and expansions are bounded above, so this count cannot overflow.
        guard parameterCount <= NetDescription.maxParameters else {
            throw NetError.invalid("\(architecture.rawValue) with widths \(widths) has \(parameterCount) parameters; at most \(NetDescription.maxParameters) are supported")
        }
    }

    /// True for 64x64 and larger inputs, which take the extra strides of the spec.
    var largeInput: Bool { imageSize >= 64 }
}

public enum NetError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(m): return "invalid net: \(m)" }
    }
}

/// A net of the spec: a module that maps images to class logits.
public protocol Network: Module {
    var netDescription: NetDescription { get }
    /// - Parameter x: [N, inChannels, imageSize, imageSize]
    /// - Returns: [N, classes]
    func logits(_ x: Tensor, training: Bool) -> Tensor
}

extension Network {
    /// The eval-mode computation as a graph of layer-level ops, traced from the net's own
    /// forward pass (`InferenceGraph(tracing:)`); channel scales are left out (a net with zeroed
    /// channels goes through surgery first).
    public var inferenceGraph: InferenceGraph { InferenceGraph(tracing: self) }

    /// What the forward pass says about the width groups (traced anew on each call).
    public var wiring: ChannelWiring { ChannelWiring(tracing: self) }
    /// The width groups each tensor (by dotted name, channel scales aside) runs over.
    public var channelAxes: [String: ChannelAxes] { wiring.axes }
    /// Whether the net was built with channel scales (as a search builds its nets).
    public var hasChannelScales: Bool { state.contains { $0.kind == .channelScale } }
}

/// Builds the net a description names.
/// - Parameter channelScales: put a channel scale on every width group (`ChannelWiring.sites`;
///   the search's gates).
public func makeNetwork(_ d: NetDescription, initialization: Initialization, channelScales: Bool = false) throws -> Network {
    try d.validate()
    let initializer = Initializer(initialization, channelScales: channelScales)
    switch d.architecture {
    case .vgg11: return VGG11(d, initializer)
    case .mobilenetv2: return MobileNetV2(d, initializer)
    case .preactResNet18: return PreActResNet18(d, initializer)
    case .resnet50: return ResNet50(d, initializer)
    }
}
