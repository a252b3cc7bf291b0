#include "ns_kernels.h"

static _Thread_local int serial_depth;

int ns_serial_depth(void) { return serial_depth; }

void ns_set_serial_depth(int depth) { serial_depth = depth; }
