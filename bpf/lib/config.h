/* The runtime config (struct zm_config) each program reads, set by userspace in rodata. */
#ifndef ZMESH_LIB_CONFIG_H
#define ZMESH_LIB_CONFIG_H

#include "zmesh_maps.h"

const volatile struct zm_config zm_cfg = {};

#endif
