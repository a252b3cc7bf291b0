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
