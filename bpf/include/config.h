/* config.h — the balancer's load-time configuration, one const volatile struct in
 * .rodata. The agent writes it before load, so the verifier sees constants and prunes
 * the branches a node does not use (FIB lookup, for instance). Included only by
 * balancer.bpf.c; the defaults below are what a load without configuration gets. */
#ifndef FULCRUM_CONFIG_H
#define FULCRUM_CONFIG_H

#include "consts.h"

const volatile struct balancer_config CFG = {
	.ring_size = 65537,
	.mtu = 1500,
	.udp_timeout_ns = DEFAULT_UDP_TIMEOUT_NS,
	.tunnel_src4 = 0x000010ac,          /* 172.16.0.0 */
	.tunnel_src6 = { 0x00000001, 0, 0, 0 }, /* 100:: */
	.gue_port = 0xc017,                 /* htons(6080) */
	.tunnel_ttl = 64,
	.addr_slot_bits = 11,
};

#endif
