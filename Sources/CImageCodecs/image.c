/* Format detection and the shared free function (see ns_image_codecs.h). */
#include "ns_image_codecs.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int ns_decode_image(const unsigned char *data, size_t size,
                    unsigned char **pixels, int *width, int *height,
                    char *error, size_t error_size) {
    /* Signatures: JPEG starts with an SOI marker (FF D8) and another marker (FF); PNG with the
     * fixed 8-byte signature of the PNG specification, section 5.2. */
    static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    *pixels = NULL;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return ns_decode_jpeg(data, size, pixels, width, height, error, error_size);
    if (size >= 8 && memcmp(data, png_signature, 8) == 0)
        return ns_decode_png(data, size, pixels, width, height, error, error_size);
    ns_set_error(error, error_size, "neither a JPEG nor a PNG (unrecognized first bytes)");
    return 1;
}

void ns_image_free(void *buffer) { free(buffer); }
