#ifndef NS_CHDF5_SHIM_H
#define NS_CHDF5_SHIM_H
#include <hdf5.h>
#endif
