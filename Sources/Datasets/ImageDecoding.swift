import CImageCodecs

/// Why the C decoder rejected an image, in its words.
struct ImageDecodingFailure: Error {
    let reason: String
}

/// The most pixels (width x height) an image may declare before it is refused from its
/// header: 4096 x 4096 (`NS_IMAGE_MAX_PIXELS`), far above tinyImageNet's 64 x 64.
let maxImagePixels = Int(NS_IMAGE_MAX_PIXELS)

/// Decodes a JPEG or PNG (told apart by their first bytes) to interleaved 8-bit RGB and passes
/// the pixels, `[height, width, 3]`, to `body` without copying them. An image whose header
/// declares more than `maxPixels` pixels is refused before anything is allocated for it.
func withDecodedRGB<R>(_ encoded: [UInt8], maxPixels: Int = maxImagePixels,
                       _ body: (_ rgb: UnsafeBufferPointer<UInt8>, _ width: Int, _ height: Int) throws -> R) throws -> R {
    precondition(maxPixels > 0, "withDecodedRGB: maxPixels must be positive, got \(maxPixels)")
    var message = [CChar](repeating: 0, count: messageCapacity)
    var pixels: UnsafeMutablePointer<UInt8>?
    var width: Int32 = 0
    var height: Int32 = 0
    let status = encoded.withUnsafeBufferPointer { data in
        ns_decode_image(data.baseAddress, data.count, maxPixels, &pixels, &width, &height, &message, messageCapacity)
    }
    defer { ns_image_free(pixels) }
    guard status == 0, let rgb = pixels else { throw ImageDecodingFailure(reason: decoderMessage(message)) }
    let count = Int(width) * Int(height) * 3
    return try body(UnsafeBufferPointer(start: rgb, count: count), Int(width), Int(height))
}

/// The width and height a JPEG or PNG header declares, read without decoding the pixels.
func imageDimensions(_ encoded: [UInt8]) throws -> (width: Int, height: Int) {
    var message = [CChar](repeating: 0, count: messageCapacity)
    var width: Int32 = 0
    var height: Int32 = 0
    let status = encoded.withUnsafeBufferPointer { data in
        ns_image_dimensions(data.baseAddress, data.count, &width, &height, &message, messageCapacity)
    }
    guard status == 0 else { throw ImageDecodingFailure(reason: decoderMessage(message)) }
    return (Int(width), Int(height))
}

/// Decodes a JPEG or PNG to `[height, width, 3]` interleaved RGB bytes (a copy).
func decodeRGB(_ encoded: [UInt8], maxPixels: Int = maxImagePixels) throws -> (pixels: [UInt8], width: Int, height: Int) {
    try withDecodedRGB(encoded, maxPixels: maxPixels) { rgb, width, height in (Array(rgb), width, height) }
}

private let messageCapacity = 256

private func decoderMessage(_ message: [CChar]) -> String {
    let reason = message.withUnsafeBufferPointer { buffer in
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    return reason.isEmpty ? "unknown decoder error" : reason
}
