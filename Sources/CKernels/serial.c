#include "ns_kernels.h"

static _Thread_local int serial_depth;

int ns_serial_depth(void) { return serial_depth; }

void ns_set_serial_depth(int depth) { serial_depth = depth; }

static int portable;

int ns_portable_kernels(void) { return portable; }

void ns_set_portable_kernels(int on) { portable = on; }

static int masked_weight_gradient;

int ns_masked_weight_gradient(void) { return masked_weight_gradient; }

void ns_set_masked_weight_gradient(int on) { masked_weight_gradient = on; }
