#ifndef NS_CMPI_SHIM_H
#define NS_CMPI_SHIM_H
#include <mpi.h>
#endif
