import Autodiff
import Nets
import XCTest

/// `NetDescription.layerShapes` and `macs` (computed without building the net) against the
/// graphs traced from built nets: uniform, random and surgery-made descriptions (explicit
/// shortcuts with channel selections, MobileNetV2's explicit expansions), 32 and 64 pixels.
final class LayerShapeTests: XCTestCase {
    /// The conv and linear nodes of a traced graph as layer shapes.
    func tracedShapes(_ graph: InferenceGraph) -> [LayerShape] {
        graph.nodes.compactMap { node in
            let input = node.inputs[0] == 0 ? graph.inputShape : graph.nodes[node.inputs[0] - 1].shape
            switch node.op {
            case let .conv(w, _, stride, padding, groups):
                let k = graph.tensors[w]!.shape
                XCTAssertEqual(padding, k[2] / 2, node.name)
                XCTAssertEqual(input[1], input[2], node.name)
                return LayerShape(inChannels: input[0], outChannels: node.shape[0], inputSize: input[1], kernel: k[2],
                                  stride: stride, groups: groups)
            case .linear:
                return LayerShape(inChannels: input[0], outChannels: node.shape[0], inputSize: 1, kernel: 1, linear: true)
            default:
                return nil
            }
        }
    }

    func check(_ d: NetDescription, _ what: String) throws {
        let graph = try makeNetwork(d, initialization: .none).inferenceGraph
        let traced = tracedShapes(graph)
        let analytic = d.layerShapes
        XCTAssertEqual(analytic.count, traced.count, what)
        if let k = analytic.indices.first(where: { $0 < traced.count && analytic[$0] != traced[$0] }) {
            XCTFail("\(what): layer \(k) is \(analytic[k]), traced \(traced[k])")
        }
        XCTAssertEqual(d.macs, graph.macs, what)
        // Each conv node's output is the shape's output size.
        let outputs = graph.nodes.filter { if case .conv = $0.op { return true } else { return false } }.map { $0.shape[1] }
        XCTAssertEqual(traced.filter { !$0.linear }.map(\.outputSize), outputs, what)
    }

    func testShapesAndMACsMatchTracedGraphs() throws {
        var rng = RandomGenerator(seed: 5)
        for arch in Architecture.allCases {
            for size in [32, 64] {
                try check(.uniform(arch, ratio: 0.25, inChannels: 3, imageSize: size, classes: 10), "\(arch) x0.25 \(size)")
                for _ in 0..<3 {
                    let widths = arch.originalWidths.map { 1 + Int(rng.next() % UInt64(max(1, $0 / 8))) }
                    let d = NetDescription(architecture: arch, inChannels: 1 + Int(rng.next() % 3), imageSize: size,
                                           classes: 2 + Int(rng.next() % 20), widths: widths)
                    try check(d, "\(arch) \(size) \(widths)")
                }
            }
        }
    }

    /// Surgery keeps shortcuts explicitly: a selection where the rule would give an identity or
    /// a projection has no layer and no MACs; MobileNetV2's expansions are free widths.
    func testSurgeryDescriptions() throws {
        var rng = RandomGenerator(seed: 8)
        for arch in [Architecture.mobilenetv2, .preactResNet18, .resnet50] {
            var d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10)
            d.widths = d.widths.map { max(1, $0 - Int(rng.next() % 3)) }
            d.shortcuts = zip(d.residualBlocks, d.resolvedShortcuts).map { block, rule in
                guard block.stride == 1, rng.next() % 2 == 0 else { return rule }
                // Output channel j from input channel j, or zeros past the input's width.
                return .select((0..<d.widths[block.output]).map { $0 < d.widths[block.input] ? $0 : -1 })
            }
            if arch == .mobilenetv2 { d.expansions = d.resolvedExpansions.map { max(1, $0 - Int(rng.next() % 5)) } }
            try check(d, "\(arch) surgery \(d.widths)")
            let selections = d.resolvedShortcuts.filter { if case .select = $0 { return true } else { return false } }.count
            XCTAssertGreaterThan(selections, 0, "\(arch): the test made no selection shortcut")
        }
    }

    func testLayerArithmetic() {
        let conv = LayerShape(inChannels: 16, outChannels: 32, inputSize: 15, kernel: 3, stride: 2)
        XCTAssertEqual(conv.outputSize, 8)
        XCTAssertEqual(conv.macs, 32 * 8 * 8 * 16 * 9)
        let depthwise = LayerShape(inChannels: 24, outChannels: 24, inputSize: 8, kernel: 3, groups: 24)
        XCTAssertTrue(depthwise.isDepthwise)
        XCTAssertEqual(depthwise.macs, 24 * 8 * 8 * 9)
        XCTAssertEqual(LayerShape(inChannels: 512, outChannels: 10, inputSize: 1, kernel: 1, linear: true).macs, 5120)
    }
}
