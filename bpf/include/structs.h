/* structs.h — the map keys and values: the ABI between the BPF programs and the agent.
 * Mirrored as koffi structs in src/agent/bpf/abi.ts; test/bpf/abi.test.ts pins every
 * size and offset to this file. Change both together. */
#ifndef FULCRUM_STRUCTS_H
#define FULCRUM_STRUCTS_H

#include <linux/types.h>

/* VIP lookup keys. IPv4 and IPv6 live in separate maps so the common IPv4 case hashes
 * an 8-byte key, not a 20-byte one. port is 0 for all-port VIPs and address markers. */
struct vip4_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct vip6_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct vip_meta {
	__u32 flags;   /* VIP_F_* */
	__u32 vip_id;  /* index into the ring (vip_id * ring_size) and vip_stats */
};

/* Connection-table keys: the client-to-VIP 5-tuple exactly as it arrives. */
struct flow4_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow6_key {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct conn_value {
	__u32 backend_id;
	__u32 pad;
	__u64 atime_ns;  /* last packet, for UDP expiry (bpf_ktime_get_ns) */
};

/* A backend (tunnel endpoint). family 0 marks an unused slot; id 0 is never used. */
struct backend {
	__be32 addr[4];  /* IPv4 in addr[0] */
	__u8 family;     /* FAMILY_V4 or FAMILY_V6 */
	__u8 flags;
	__u16 pad;
};

/* One counter: per-CPU in every stats map, summed by user space. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

/* Decap: addresses whose tunnelled packets this host accepts, and the inner
 * destinations (VIPs) it accepts inside them. Both keyed by a family-tagged address. */
struct addr_key {
	__be32 addr[4];
	__u8 family;
	__u8 pad[3];
};

#endif
