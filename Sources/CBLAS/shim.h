#ifndef NEURALSCALE_CBLAS_SHIM_H
#define NEURALSCALE_CBLAS_SHIM_H
#include <cblas.h>
#endif
