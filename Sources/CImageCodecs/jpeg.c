/* JPEG through libjpeg-turbo, with errors trapped by setjmp/longjmp (see ns_image_codecs.h). */
#include "ns_image_codecs.h"
#include "internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

/* libjpeg's error manager extended with where to jump and where to write the message. */
typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *error;
    size_t error_size;
} jpeg_trap;

static void trap_error_exit(j_common_ptr cinfo) {
    jpeg_trap *trap = (jpeg_trap *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    ns_set_error(trap->error, trap->error_size, "JPEG: %s", text);
    longjmp(trap->jump, 1);
}

/* Warnings are not printed. A file that ends early is the one warning treated as fatal:
 * libjpeg would fill the missing rows with gray, silently training on a broken download. */
static void trap_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) cinfo->err->error_exit(cinfo);
}

static void trap_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void install_trap(jpeg_trap *trap, char *error, size_t error_size) {
    jpeg_std_error(&trap->base);
    trap->base.error_exit = trap_error_exit;
    trap->base.emit_message = trap_emit_message;
    trap->base.output_message = trap_output_message;
    trap->error = error;
    trap->error_size = error_size;
}

/* Results live in the caller's frame, not in the frame that calls setjmp, so their values
 * are well defined after a longjmp. */
typedef struct {
    unsigned char *pixels;
    int width, height;
} decoded;

/* Reads the header; with `header_only` stops there, otherwise refuses an image of more than
 * `max_pixels` pixels before anything is allocated for its pixels, then decodes it. */
static int decode_into(decoded *out, const unsigned char *data, size_t size, size_t max_pixels,
                       int header_only, char *error, size_t error_size) {
    struct jpeg_decompress_struct cinfo;
    jpeg_trap trap;
    memset(&cinfo, 0, sizeof cinfo);
    install_trap(&trap, error, error_size);
    cinfo.err = &trap.base;
    if (setjmp(trap.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    out->width = (int)cinfo.image_width;
    out->height = (int)cinfo.image_height;
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    /* The header's size alone decides: jpeg_start_decompress would allocate row (and, for a
     * progressive file, whole-image coefficient) buffers for whatever the header claims. */
    if ((size_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        ns_set_error(error, error_size, "JPEG: declares %ux%u pixels; at most %zu pixels expected",
                     cinfo.image_width, cinfo.image_height, max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    cinfo.out_color_space = JCS_RGB; /* libjpeg-turbo converts grayscale and YCbCr to RGB */
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * 3;
    out->pixels = malloc(stride * cinfo.output_height);
    if (out->pixels == NULL) {
        ns_set_error(error, error_size, "JPEG: out of memory for %u x %u pixels",
                     cinfo.output_width, cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out->pixels + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    out->width = (int)cinfo.output_width;
    out->height = (int)cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

int ns_decode_jpeg(const unsigned char *data, size_t size, size_t max_pixels, unsigned char **pixels,
                   int *width, int *height, char *error, size_t error_size) {
    decoded out = {NULL, 0, 0};
    *pixels = NULL;
    if (decode_into(&out, data, size, max_pixels, 0, error, error_size) != 0) {
        free(out.pixels);
        return 1;
    }
    *pixels = out.pixels;
    *width = out.width;
    *height = out.height;
    return 0;
}

int ns_jpeg_dimensions(const unsigned char *data, size_t size, int *width, int *height,
                       char *error, size_t error_size) {
    decoded out = {NULL, 0, 0};
    if (decode_into(&out, data, size, 0, 1, error, error_size) != 0) return 1;
    *width = out.width;
    *height = out.height;
    return 0;
}

typedef struct {
    unsigned char *buffer; /* grown with malloc by jpeg_mem_dest */
    unsigned long size;
} encoded;

static int encode_into(encoded *out, const unsigned char *pixels, int width, int height,
                       int channels, int quality, char *error, size_t error_size) {
    struct jpeg_compress_struct cinfo;
    jpeg_trap trap;
    memset(&cinfo, 0, sizeof cinfo);
    install_trap(&trap, error, error_size);
    cinfo.err = &trap.base;
    if (setjmp(trap.jump)) {
        jpeg_destroy_compress(&cinfo);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out->buffer, &out->size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}

int ns_encode_jpeg(const unsigned char *pixels, int width, int height, int channels,
                   int quality, unsigned char **out, size_t *out_size,
                   char *error, size_t error_size) {
    encoded result = {NULL, 0};
    *out = NULL;
    *out_size = 0;
    if (channels != 1 && channels != 3) {
        ns_set_error(error, error_size, "JPEG: cannot encode %d channels (1 or 3)", channels);
        return 1;
    }
    if (encode_into(&result, pixels, width, height, channels, quality, error, error_size) != 0) {
        free(result.buffer);
        return 1;
    }
    *out = result.buffer;
    *out_size = (size_t)result.size;
    return 0;
}
