#include "ns_hdf5.h"

hid_t ns_h5_native_float(void) { return H5T_NATIVE_FLOAT; }
hid_t ns_h5_native_int64(void) { return H5T_NATIVE_INT64; }
hid_t ns_h5_native_uint64(void) { return H5T_NATIVE_UINT64; }
hid_t ns_h5_c_s1(void) { return H5T_C_S1; }
hid_t ns_h5p_default(void) { return H5P_DEFAULT; }
hid_t ns_h5s_all(void) { return H5S_ALL; }
hid_t ns_h5p_file_access(void) { return H5P_FILE_ACCESS; }
unsigned ns_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
unsigned ns_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
void ns_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
