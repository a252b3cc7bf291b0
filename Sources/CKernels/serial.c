#include "ns_kernels.h"

static _Thread_local int serial_depth;

int ns_serial_depth(void) { return serial_depth; }

void ns_set_serial_depth(int depth) { serial_depth = depth; }

static int portable;

int ns_portable_kernels(void) { return portable; }

void ns_set_portable_kernels(int on) { portable = on; }

static int masked_image_reads;

int ns_masked_image_reads(void) { return masked_image_reads; }

void ns_set_masked_image_reads(int on) { masked_image_reads = on; }
