import CImageCodecs

/// Why the C decoder rejected an image, in its words.
struct ImageDecodingFailure: Error {
    let reason: String
}

/// Decodes a JPEG or PNG (told apart by their first bytes) to interleaved 8-bit RGB and passes
/// the pixels, `[height, width, 3]`, to `body` without copying them.
func withDecodedRGB<R>(_ encoded: [UInt8],
                       _ body: (_ rgb: UnsafeBufferPointer<UInt8>, _ width: Int, _ height: Int) throws -> R) throws -> R {
    let messageCapacity = 256
    var message = [CChar](repeating: 0, count: messageCapacity)
    var pixels: UnsafeMutablePointer<UInt8>?
    var width: Int32 = 0
    var height: Int32 = 0
    let status = encoded.withUnsafeBufferPointer { data in
        ns_decode_image(data.baseAddress, data.count, &pixels, &width, &height, &message, messageCapacity)
    }
    defer { ns_image_free(pixels) }
    guard status == 0, let rgb = pixels else {
        let reason = message.withUnsafeBufferPointer { buffer in
            String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        throw ImageDecodingFailure(reason: reason.isEmpty ? "unknown decoder error" : reason)
    }
    let count = Int(width) * Int(height) * 3
    return try body(UnsafeBufferPointer(start: rgb, count: count), Int(width), Int(height))
}

/// Decodes a JPEG or PNG to `[height, width, 3]` interleaved RGB bytes (a copy).
func decodeRGB(_ encoded: [UInt8]) throws -> (pixels: [UInt8], width: Int, height: Int) {
    try withDecodedRGB(encoded) { rgb, width, height in (Array(rgb), width, height) }
}
