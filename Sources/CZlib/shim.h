#ifndef NS_CZLIB_SHIM_H
#define NS_CZLIB_SHIM_H
#include <zlib.h>
#endif
