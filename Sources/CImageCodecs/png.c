/* PNG through libpng, with errors trapped by setjmp/longjmp (see ns_image_codecs.h). */
#include "ns_image_codecs.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>

typedef struct {
    char *error;
    size_t error_size;
} png_trap;

/* libpng requires an error handler that does not return: record the text, jump back. */
static void trap_error(png_structp png, png_const_charp message) {
    png_trap *trap = png_get_error_ptr(png);
    ns_set_error(trap->error, trap->error_size, "PNG: %s", message);
    png_longjmp(png, 1);
}

static void trap_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

typedef struct {
    const unsigned char *data;
    size_t size, offset;
} memory_source;

static void read_memory(png_structp png, png_bytep out, size_t length) {
    memory_source *source = png_get_io_ptr(png);
    if (length > source->size - source->offset) png_error(png, "file ends early (truncated)");
    memcpy(out, source->data + source->offset, length);
    source->offset += length;
}

/* Results live in the caller's frame, not in the frame that calls setjmp, so their values
 * are well defined after a longjmp. */
typedef struct {
    unsigned char *pixels;
    png_bytep *rows;
    int width, height;
} decoded;

/* Reads the header; with `header_only` stops there, otherwise refuses an image of more than
 * `max_pixels` pixels before anything is allocated for its pixels, then decodes it. */
static int decode_into(decoded *out, const unsigned char *data, size_t size, size_t max_pixels,
                       int header_only, char *error, size_t error_size) {
    png_trap trap = {error, error_size};
    memory_source source = {data, size, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &trap, trap_error, trap_warning);
    if (png == NULL) {
        ns_set_error(error, error_size, "PNG: cannot create a reader");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        ns_set_error(error, error_size, "PNG: cannot create a reader");
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_read_fn(png, &source, read_memory);
    png_read_info(png, info);
    png_uint_32 declared_width = png_get_image_width(png, info);
    png_uint_32 declared_height = png_get_image_height(png, info);
    out->width = (int)declared_width;
    out->height = (int)declared_height;
    if (header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return 0;
    }
    /* libpng's own limit is 1000000 per side; the pixel count is what sizes the buffer. */
    if ((size_t)declared_width * declared_height > max_pixels) {
        ns_set_error(error, error_size, "PNG: declares %ux%u pixels; at most %zu pixels expected",
                     (unsigned)declared_width, (unsigned)declared_height, max_pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    /* Every layout to 8-bit RGB: */
    png_set_scale_16(png);                 /* 16-bit samples to 8, rounded */
    png_set_palette_to_rgb(png);           /* indexed colors to RGB */
    png_set_expand_gray_1_2_4_to_8(png);   /* 1/2/4-bit gray to 8 */
    png_set_gray_to_rgb(png);              /* gray to R = G = B */
    png_set_strip_alpha(png);              /* drop alpha; datasets have none that matters */
    png_set_interlace_handling(png);       /* let png_read_image run the Adam7 passes */
    png_read_update_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    size_t stride = (size_t)width * 3;
    if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row layout after conversion to RGB");
    out->pixels = malloc(stride * height);
    out->rows = malloc(sizeof(png_bytep) * height);
    if (out->pixels == NULL || out->rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) out->rows[y] = out->pixels + (size_t)y * stride;
    png_read_image(png, out->rows);
    png_read_end(png, NULL);
    out->width = (int)width;
    out->height = (int)height;
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

int ns_decode_png(const unsigned char *data, size_t size, size_t max_pixels, unsigned char **pixels,
                  int *width, int *height, char *error, size_t error_size) {
    decoded out = {NULL, NULL, 0, 0};
    *pixels = NULL;
    int failed = decode_into(&out, data, size, max_pixels, 0, error, error_size);
    free(out.rows);
    if (failed) {
        free(out.pixels);
        return 1;
    }
    *pixels = out.pixels;
    *width = out.width;
    *height = out.height;
    return 0;
}

int ns_png_dimensions(const unsigned char *data, size_t size, int *width, int *height,
                      char *error, size_t error_size) {
    decoded out = {NULL, NULL, 0, 0};
    if (decode_into(&out, data, size, 0, 1, error, error_size) != 0) return 1;
    *width = out.width;
    *height = out.height;
    return 0;
}

typedef struct {
    unsigned char *data;
    size_t size, capacity;
} memory_sink;

static void write_memory(png_structp png, png_bytep data, size_t length) {
    memory_sink *sink = png_get_io_ptr(png);
    if (length > sink->capacity - sink->size) {
        size_t capacity = sink->capacity ? sink->capacity : 4096;
        while (length > capacity - sink->size) capacity *= 2;
        unsigned char *grown = realloc(sink->data, capacity);
        if (grown == NULL) png_error(png, "out of memory");
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, data, length);
    sink->size += length;
}

static void flush_memory(png_structp png) { (void)png; }

/* What to write: rows of `stride` bytes in the given PNG color type and depth. */
typedef struct {
    const unsigned char *rows;
    size_t stride;
    int color_type, bit_depth;
    png_color palette[256];
    int palette_size;
} png_plan;

static int encode_into(memory_sink *sink, const png_plan *plan, int width, int height,
                       char *error, size_t error_size) {
    png_trap trap = {error, error_size};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &trap, trap_error, trap_warning);
    if (png == NULL) {
        ns_set_error(error, error_size, "PNG: cannot create a writer");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        ns_set_error(error, error_size, "PNG: cannot create a writer");
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return 1;
    }
    png_set_write_fn(png, sink, write_memory, flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, plan->bit_depth,
                 plan->color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (plan->color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_PLTE(png, info, plan->palette, plan->palette_size);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(plan->rows + (size_t)y * plan->stride));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int ns_encode_png(const unsigned char *pixels, int width, int height, ns_png_layout layout,
                  unsigned char **out, size_t *out_size,
                  char *error, size_t error_size) {
    static const int color_types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                      PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    memory_sink sink = {NULL, 0, 0};
    png_plan plan;
    unsigned char *converted = NULL;
    size_t count = (size_t)width * (size_t)height;
    *out = NULL;
    *out_size = 0;
    memset(&plan, 0, sizeof plan);
    plan.rows = pixels;
    plan.bit_depth = 8;
    switch (layout) {
    case NS_PNG_GRAY: case NS_PNG_GRAY_ALPHA: case NS_PNG_RGB: case NS_PNG_RGBA:
        plan.color_type = color_types[layout];
        plan.stride = (size_t)width * (size_t)layout;
        break;
    case NS_PNG_PALETTE:
        converted = malloc(count ? count : 1);
        if (converted == NULL) { ns_set_error(error, error_size, "PNG: out of memory"); return 1; }
        for (size_t i = 0; i < count; i++) {
            const unsigned char *p = pixels + 3 * i;
            int k = 0;
            while (k < plan.palette_size && !(plan.palette[k].red == p[0] &&
                   plan.palette[k].green == p[1] && plan.palette[k].blue == p[2])) k++;
            if (k == plan.palette_size) {
                if (k == 256) {
                    free(converted);
                    ns_set_error(error, error_size, "PNG: more than 256 colors for a palette");
                    return 1;
                }
                plan.palette[k] = (png_color){p[0], p[1], p[2]};
                plan.palette_size++;
            }
            converted[i] = (unsigned char)k;
        }
        plan.rows = converted;
        plan.stride = (size_t)width;
        plan.color_type = PNG_COLOR_TYPE_PALETTE;
        break;
    case NS_PNG_RGB16:
        /* Big-endian 16-bit samples v * 257, i.e. both bytes v: exact 8-bit round trip. */
        converted = malloc(count ? 6 * count : 1);
        if (converted == NULL) { ns_set_error(error, error_size, "PNG: out of memory"); return 1; }
        for (size_t i = 0; i < 3 * count; i++) converted[2 * i] = converted[2 * i + 1] = pixels[i];
        plan.rows = converted;
        plan.stride = (size_t)width * 6;
        plan.color_type = PNG_COLOR_TYPE_RGB;
        plan.bit_depth = 16;
        break;
    default:
        ns_set_error(error, error_size, "PNG: unknown layout %d", (int)layout);
        return 1;
    }
    int failed = encode_into(&sink, &plan, width, height, error, error_size);
    free(converted);
    if (failed) {
        free(sink.data);
        return 1;
    }
    *out = sink.data;
    *out_size = sink.size;
    return 0;
}
