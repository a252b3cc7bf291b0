#ifndef NS_CPNG_SHIM_H
#define NS_CPNG_SHIM_H
#include <png.h>
#endif
