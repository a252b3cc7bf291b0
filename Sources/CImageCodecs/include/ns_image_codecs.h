#ifndef NS_IMAGE_CODECS_H
#define NS_IMAGE_CODECS_H

/*
 * JPEG (libjpeg-turbo) and PNG (libpng) for the Datasets module, from and to memory.
 *
 * Both libraries report fatal errors through a callback that must not return; the defaults
 * print to stderr and call exit(). Here every error is caught with setjmp/longjmp, its text
 * copied into the caller's `error` buffer, and the function returns non-zero. Warnings are
 * dropped (never printed).
 *
 * Pixel buffers are 8-bit, interleaved, row-major: RGB for the decoder. Buffers these
 * functions return are allocated with malloc; release them with ns_image_free.
 */

#include <stddef.h>

/* The most pixels (width * height) ns_decode_image accepts when passed 0: 4096 x 4096, far
 * above any dataset image here (tinyImageNet's are 64 x 64) and 48 MiB of RGB. */
#define NS_IMAGE_MAX_PIXELS 16777216 /* 1 << 24 */

/* Decodes a JPEG or PNG held in `data` (the format is detected from its magic bytes, not a
 * file name) to 8-bit RGB, `*width` * `*height` * 3 bytes in `*pixels`.
 * An image whose header declares more than `max_pixels` pixels (0: NS_IMAGE_MAX_PIXELS) is
 * refused from the header, before its pixel buffer is allocated, with a message such as
 * "PNG: declares 100000x100000 pixels; at most 16777216 pixels expected".
 * Grayscale becomes R = G = B; palette PNGs are expanded; alpha is dropped (not composited);
 * 16-bit PNG samples are scaled to 8 bits (v * 255 / 65535, rounded).
 * Returns 0 on success. Otherwise returns non-zero, sets `*pixels` to NULL, and writes a
 * NUL-terminated message of at most `error_size` bytes into `error`. */
int ns_decode_image(const unsigned char *data, size_t size, size_t max_pixels,
                    unsigned char **pixels, int *width, int *height,
                    char *error, size_t error_size);

/* Reads only the header of a JPEG or PNG: the width and height it declares. Nothing is
 * decoded or allocated for the pixels, so a loader can refuse an image of the wrong size
 * cheaply. Returns 0 on success, non-zero with a message in `error` otherwise. */
int ns_image_dimensions(const unsigned char *data, size_t size, int *width, int *height,
                        char *error, size_t error_size);

/* Releases a buffer returned by ns_decode_image, ns_encode_jpeg or ns_encode_png. */
void ns_image_free(void *buffer);

/* ---- Encoders, used only by the tests to write real files to decode. ---- */

/* Encodes `pixels` (width * height * channels bytes, channels 1 = gray or 3 = RGB) as a
 * baseline JPEG of the given quality (1...100) into `*out` (`*out_size` bytes).
 * Returns 0 on success, non-zero with a message in `error` otherwise. */
int ns_encode_jpeg(const unsigned char *pixels, int width, int height, int channels,
                   int quality, unsigned char **out, size_t *out_size,
                   char *error, size_t error_size);

/* How ns_encode_png stores the pixels, so the tests can reach every decoder conversion. */
typedef enum {
    NS_PNG_GRAY = 1,       /* input 1 byte per pixel */
    NS_PNG_GRAY_ALPHA = 2, /* input 2 bytes per pixel */
    NS_PNG_RGB = 3,        /* input 3 bytes per pixel */
    NS_PNG_RGBA = 4,       /* input 4 bytes per pixel */
    NS_PNG_PALETTE = 5,    /* input RGB; stored as an indexed image (at most 256 colors) */
    NS_PNG_RGB16 = 6       /* input RGB; stored with 16-bit samples, each v as v * 257 */
} ns_png_layout;

/* Encodes `pixels` as a PNG in the given layout into `*out` (`*out_size` bytes).
 * Returns 0 on success, non-zero with a message in `error` otherwise. */
int ns_encode_png(const unsigned char *pixels, int width, int height, ns_png_layout layout,
                  unsigned char **out, size_t *out_size,
                  char *error, size_t error_size);

#endif
