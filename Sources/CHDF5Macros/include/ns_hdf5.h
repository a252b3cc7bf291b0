#ifndef NS_HDF5_MACROS_H
#define NS_HDF5_MACROS_H
/* HDF5's constants are macros (some expand to function calls that open the library), which Swift
   cannot import. These return them. */
#include <hdf5.h>
#include <stddef.h>

hid_t ns_h5_native_float(void);
hid_t ns_h5_native_int64(void);
hid_t ns_h5_native_uint64(void);
hid_t ns_h5_native_uchar(void);
hid_t ns_h5_c_s1(void);
hid_t ns_h5p_default(void);
hid_t ns_h5s_all(void);
hid_t ns_h5p_file_access(void);
hid_t ns_h5p_file_create(void);
hid_t ns_h5p_dataset_create(void);
hid_t ns_h5p_group_create(void);
size_t ns_h5t_variable(void);
unsigned ns_h5f_acc_trunc(void);
unsigned ns_h5f_acc_rdonly(void);
/* Silences HDF5's own error printing; callers turn failures into Swift errors. */
void ns_h5_silence_errors(void);
/* Writes the descriptions on HDF5's error stack of this thread, innermost (the cause) first and
   separated by " | ", into `buffer` (always NUL-terminated); returns how many entries there were.
   Call it right after a failed HDF5 call: the next call clears the stack. */
int ns_h5_error_text(char *buffer, size_t size);
/* Checks the checksum of a superblock v2/v3 at the start of file `image`: 0 when right, 1 when
   wrong (then, with `fix`, rewritten), -1 when there is no such superblock. H5Fget_file_image
   of HDF5 1.10 returns such images with a wrong superblock checksum. */
int ns_h5_superblock_checksum(unsigned char *image, size_t size, int fix);
#endif
