#ifndef NS_IMAGE_CODECS_H
#define NS_IMAGE_CODECS_H
/* JPEG and PNG decoding for the Datasets module (filled in with the datasets issue). */
int ns_image_codecs_version(void);
#endif
