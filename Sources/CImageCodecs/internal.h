#ifndef NS_CODECS_INTERNAL_H
#define NS_CODECS_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

/* The two decoders behind ns_decode_image and ns_image_dimensions, which pick one by the
 * data's signature. */
int ns_decode_jpeg(const unsigned char *data, size_t size, size_t max_pixels, unsigned char **pixels,
                   int *width, int *height, char *error, size_t error_size);
int ns_decode_png(const unsigned char *data, size_t size, size_t max_pixels, unsigned char **pixels,
                  int *width, int *height, char *error, size_t error_size);
int ns_jpeg_dimensions(const unsigned char *data, size_t size, int *width, int *height,
                       char *error, size_t error_size);
int ns_png_dimensions(const unsigned char *data, size_t size, int *width, int *height,
                      char *error, size_t error_size);

/* Writes a message into the caller's error buffer (which may be absent). */
static inline void ns_set_error(char *error, size_t error_size, const char *format, ...) {
    if (error == NULL || error_size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

#endif
