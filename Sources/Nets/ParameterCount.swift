/// P(config) without building the net: the trainable values (conv and linear weights and
/// biases, BN weight and bias) a description's net would have. The architecture search
/// evaluates it thousands of times per solve, where building nets would allocate gigabytes.
/// `NetTests.testAnalyticCountsMatchBuiltNets` holds it to the built nets.
extension NetDescription {
    public var parameterCount: Int {
        let w = widths
        switch architecture {
        case .vgg11:
            var p = 0, c = inChannels
            for width in w {
                p += conv(c, width, k: 3, bias: true) + bn(width)
                c = width
            }
            let side = imageSize / 32
            return p + c * side * side * classes + classes
        case .mobilenetv2:
            var p = conv(inChannels, w[0], k: 3, bias: true) + bn(w[0]), c = w[0]
            for (b, (m, shortcut)) in zip(resolvedExpansions, resolvedShortcuts).enumerated() {
                let out = w[b + 1]
                p += conv(c, m, k: 1, bias: true) + bn(m)
                p += m * 9 + m + bn(m)  // depthwise 3x3 with bias
                p += conv(m, out, k: 1, bias: true) + bn(out)
                if shortcut == .projection { p += conv(c, out, k: 1, bias: true) + bn(out) }
                c = out
            }
            return p + conv(c, w[18], k: 1, bias: true) + bn(w[18]) + conv(w[18], classes, k: 1, bias: true)
        case .preactResNet18:
            var p = conv(inChannels, w[0], k: 3, bias: false), c = w[0]
            for (b, shortcut) in resolvedShortcuts.enumerated() {
                let inner = w[1 + 2 * b], out = w[2 + 2 * b]
                p += bn(c) + conv(c, inner, k: 3, bias: false) + bn(inner) + conv(inner, out, k: 3, bias: false)
                if shortcut == .projection { p += conv(c, out, k: 1, bias: false) }
                c = out
            }
            return p + bn(c) + c * classes + classes
        case .resnet50:
            var p = conv(inChannels, w[0], k: 7, bias: false) + bn(w[0]), c = w[0]
            for (b, shortcut) in resolvedShortcuts.enumerated() {
                let m1 = w[1 + 3 * b], m2 = w[2 + 3 * b], out = w[3 + 3 * b]
                p += conv(c, m1, k: 1, bias: false) + bn(m1) + conv(m1, m2, k: 3, bias: false) + bn(m2)
                p += conv(m2, out, k: 1, bias: false) + bn(out)
                if shortcut == .projection { p += conv(c, out, k: 1, bias: false) + bn(out) }
                c = out
            }
            return p + c * classes + classes
        }
    }
}

@inline(__always) private func conv(_ cin: Int, _ cout: Int, k: Int, bias: Bool) -> Int {
    cin * cout * k * k + (bias ? cout : 0)
}

@inline(__always) private func bn(_ c: Int) -> Int { 2 * c }
