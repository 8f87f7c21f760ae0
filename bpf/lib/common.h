/* Constants from uapi and libc headers that vmlinux.h cannot carry (they are macros). */
#ifndef ZMESH_LIB_COMMON_H
#define ZMESH_LIB_COMMON_H

#define EINVAL 22
#define ENOSPC 28
#define ENOENT 2
#define E2BIG 7
#define EBUSY 16

#define AF_INET 2
#define AF_INET6 10

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#endif
