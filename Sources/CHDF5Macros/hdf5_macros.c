#include "ns_hdf5.h"
#include <stdio.h>
#include <string.h>

hid_t ns_h5_native_float(void) { return H5T_NATIVE_FLOAT; }
hid_t ns_h5_native_int64(void) { return H5T_NATIVE_INT64; }
hid_t ns_h5_native_uint64(void) { return H5T_NATIVE_UINT64; }
hid_t ns_h5_native_uchar(void) { return H5T_NATIVE_UCHAR; }
hid_t ns_h5_c_s1(void) { return H5T_C_S1; }
hid_t ns_h5p_default(void) { return H5P_DEFAULT; }
hid_t ns_h5s_all(void) { return H5S_ALL; }
hid_t ns_h5p_file_access(void) { return H5P_FILE_ACCESS; }
hid_t ns_h5p_file_create(void) { return H5P_FILE_CREATE; }
hid_t ns_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
hid_t ns_h5p_group_create(void) { return H5P_GROUP_CREATE; }
size_t ns_h5t_variable(void) { return H5T_VARIABLE; }
unsigned ns_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
unsigned ns_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
void ns_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

struct ns_error_text { char *buffer; size_t size, used; int count; };

static herr_t ns_append_error(unsigned n, const H5E_error2_t *error, void *data) {
    struct ns_error_text *text = data;
    (void)n;
    text->count++;
    if (!error->desc || text->used + 1 >= text->size) return 0;
    const char *separator = text->used ? " | " : "";
    int written = snprintf(text->buffer + text->used, text->size - text->used, "%s%s", separator, error->desc);
    if (written > 0) text->used += (size_t)written < text->size - text->used ? (size_t)written : text->size - text->used - 1;
    return 0;
}

int ns_h5_error_text(char *buffer, size_t size) {
    if (!buffer || size == 0) return 0;
    buffer[0] = 0;
    struct ns_error_text text = { buffer, size, 0, 0 };
    /* Upward: from the innermost error (the cause) to the API call that failed. */
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, ns_append_error, &text);
    return text.count;
}

/* Bob Jenkins' lookup3 hashlittle (public domain), byte by byte as HDF5 computes it for metadata
   checksums (H5checksum.c). */
#define NS_ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t ns_lookup3(const unsigned char *k, size_t length, uint32_t initval) {
    uint32_t a, b, c;
    a = b = c = 0xdeadbeef + (uint32_t)length + initval;
    while (length > 12) {
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        a -= c; a ^= NS_ROT(c, 4); c += b;
        b -= a; b ^= NS_ROT(a, 6); a += c;
        c -= b; c ^= NS_ROT(b, 8); b += a;
        a -= c; a ^= NS_ROT(c, 16); c += b;
        b -= a; b ^= NS_ROT(a, 19); a += c;
        c -= b; c ^= NS_ROT(b, 4); b += a;
        length -= 12;
        k += 12;
    }
    switch (length) {
    case 12: c += (uint32_t)k[11] << 24; /* fall through */
    case 11: c += (uint32_t)k[10] << 16; /* fall through */
    case 10: c += (uint32_t)k[9] << 8; /* fall through */
    case 9: c += k[8]; /* fall through */
    case 8: b += (uint32_t)k[7] << 24; /* fall through */
    case 7: b += (uint32_t)k[6] << 16; /* fall through */
    case 6: b += (uint32_t)k[5] << 8; /* fall through */
    case 5: b += k[4]; /* fall through */
    case 4: a += (uint32_t)k[3] << 24; /* fall through */
    case 3: a += (uint32_t)k[2] << 16; /* fall through */
    case 2: a += (uint32_t)k[1] << 8; /* fall through */
    case 1: a += k[0]; break;
    case 0: return c;
    }
    c ^= b; c -= NS_ROT(b, 14);
    a ^= c; a -= NS_ROT(c, 11);
    b ^= a; b -= NS_ROT(a, 25);
    c ^= b; c -= NS_ROT(b, 16);
    a ^= c; a -= NS_ROT(c, 4);
    b ^= a; b -= NS_ROT(a, 14);
    c ^= b; c -= NS_ROT(b, 24);
    return c;
}

int ns_h5_superblock_checksum(unsigned char *image, size_t size, int fix) {
    static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (size < 12 || memcmp(image, signature, 8) != 0 || (image[8] != 2 && image[8] != 3)) return -1;
    /* Superblock v2/v3: signature, version, sizes of offsets and lengths, flags, four
       addresses, then the checksum of all before it (HDF5 file format spec, II.A). */
    size_t offset = 12 + 4 * (size_t)image[9];
    if (image[9] == 0 || offset + 4 > size) return -1;
    uint32_t sum = ns_lookup3(image, offset, 0);
    unsigned char stored[4] = {sum & 0xff, (sum >> 8) & 0xff, (sum >> 16) & 0xff, (sum >> 24) & 0xff};
    if (memcmp(image + offset, stored, 4) == 0) return 0;
    if (!fix) return 1;
    memcpy(image + offset, stored, 4);
    return 1;
}
