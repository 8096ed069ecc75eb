/* consts.h — protocol numbers, per-VIP and per-backend flags, limits, and the
 * load-time configuration block. Every value here that crosses into user space is
 * mirrored in src/agent/bpf/abi.ts; keep the two in sync. */
#ifndef FULCRUM_CONSTS_H
#define FULCRUM_CONSTS_H

#include <linux/types.h>

#define ETH_P_IP_BE    0x0008 /* htons(0x0800) on little-endian hosts */
#define ETH_P_IPV6_BE  0xDD86 /* htons(0x86DD) */
#define ETH_P_8021Q_BE 0x0081 /* htons(0x8100) */
#define ETH_P_8021AD_BE 0xA888 /* htons(0x88A8) */

#define FAMILY_V4 4
#define FAMILY_V6 6

/* Per-VIP flags (struct vip_meta.flags). */
#define VIP_F_SRC_IP_ONLY  (1u << 0) /* hash the client address only: one client, one backend */
#define VIP_F_LRU_BYPASS   (1u << 1) /* never read or write the connection table */
#define VIP_F_ENCAP_GUE    (1u << 2) /* GUE (UDP) instead of IPIP / IP6IP6 / IPv4-in-IPv6 */

/* VIP address flags (struct vip_addr4/6.flags). */
#define ADDR_F_USES_TABLE  (1u << 0) /* some VIP on this address uses the connection table */
#define ADDR_F_HAS_BYPASS  (1u << 1) /* some VIP on this address bypasses it: look the VIP up first */

/* Load-time configuration flags (struct balancer_config.flags). */
#define CFG_F_FIB_LOOKUP   (1u << 0) /* next-hop MAC from the kernel FIB instead of nexthop_mac */

/* Connection-table entries for UDP expire after this long without a packet unless
 * the configuration says otherwise. TCP entries live until the LRU evicts them. */
#define DEFAULT_UDP_TIMEOUT_NS (30ULL * 1000 * 1000 * 1000)

/* Fixed header sizes. IPv4 with options is never forwarded, so 20 is exact. */
#define ETH_HLEN_ 14
#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define UDP_HLEN 8
#define ICMP_HLEN 8

/* How much of the offending packet an ICMP frag-needed / packet-too-big quotes. */
#define ICMP4_TOOBIG_QUOTE 64
#define ICMP6_TOOBIG_QUOTE 128
#define IPV6_MIN_MTU 1280

/* Outer IPv4 header: DF set, the balancer never fragments. */
#define IP_DF_BE 0x0040 /* htons(0x4000) */

/* Load-time configuration: one struct in .rodata, written by the agent before load
 * so the verifier sees constants. Addresses and ports are in network byte order. */
struct balancer_config {
	__u32 ring_size;          /* Maglev slots per VIP, a prime (default 65537) */
	__u32 mtu;                /* egress MTU the encapsulated packet must fit */
	__u64 udp_timeout_ns;     /* UDP connection-table entry lifetime */
	__be32 tunnel_src4;       /* IPIP outer source: upper 16 bits kept, lower 16 from the flow hash */
	__be32 tunnel_src6[4];    /* IP6IP6 outer source: first 96 bits kept, last 32 from the flow hash */
	__be32 node_addr4;        /* GUE outer source over IPv4 (the node's own address) */
	__be32 node_addr6[4];     /* GUE outer source over IPv6 */
	__be16 gue_port;          /* GUE destination port */
	__u8 nexthop_mac[6];      /* outer destination MAC unless CFG_F_FIB_LOOKUP */
	__u8 tunnel_ttl;          /* outer TTL / hop limit */
	__u8 flags;               /* CFG_F_* */
	__u8 pad[2];
	__u32 addr_slot_bits;     /* log2 of the VIP address table's slots (1..16) */
};

/* Decap program configuration. */
struct decap_config {
	__be16 gue_port;          /* GUE destination port accepted */
	__u8 pad[6];
};

#endif
