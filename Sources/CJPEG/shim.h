#ifndef NS_CJPEG_SHIM_H
#define NS_CJPEG_SHIM_H
#include <stdio.h>
#include <jpeglib.h>
#endif
