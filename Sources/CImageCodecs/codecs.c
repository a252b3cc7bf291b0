#include "ns_image_codecs.h"
int ns_image_codecs_version(void) { return 1; }
