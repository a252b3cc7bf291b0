/* Format detection and the shared free function (see ns_image_codecs.h). */
#include "ns_image_codecs.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Signatures: JPEG starts with an SOI marker (FF D8) and another marker (FF); PNG with the
 * fixed 8-byte signature of the PNG specification, section 5.2. */
static int is_jpeg(const unsigned char *data, size_t size) {
    return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

static int is_png(const unsigned char *data, size_t size) {
    static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    return size >= 8 && memcmp(data, png_signature, 8) == 0;
}

static const char unrecognized[] = "neither a JPEG nor a PNG (unrecognized first bytes)";

int ns_decode_image(const unsigned char *data, size_t size, size_t max_pixels,
                    unsigned char **pixels, int *width, int *height,
                    char *error, size_t error_size) {
    *pixels = NULL;
    if (max_pixels == 0) max_pixels = NS_IMAGE_MAX_PIXELS;
    if (is_jpeg(data, size)) return ns_decode_jpeg(data, size, max_pixels, pixels, width, height, error, error_size);
    if (is_png(data, size)) return ns_decode_png(data, size, max_pixels, pixels, width, height, error, error_size);
    ns_set_error(error, error_size, unrecognized);
    return 1;
}

int ns_image_dimensions(const unsigned char *data, size_t size, int *width, int *height,
                        char *error, size_t error_size) {
    if (is_jpeg(data, size)) return ns_jpeg_dimensions(data, size, width, height, error, error_size);
    if (is_png(data, size)) return ns_png_dimensions(data, size, width, height, error, error_size);
    ns_set_error(error, error_size, unrecognized);
    return 1;
}

void ns_image_free(void *buffer) { free(buffer); }
