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

/* The value of a VIP entry, and of vip_state[vip_id]. gen changes whenever vip_id is
 * given to a new VIP (or its table use changes), so connection-table entries made for
 * an earlier holder of the id stop matching. gen 0 marks a free id. */
struct vip_meta {
	__u32 flags;   /* VIP_F_* */
	__u16 vip_id;  /* index into the ring (vip_id * ring_size), vip_state and vip_stats */
	__u16 gen;
};

/* The VIP address table: a two-choice cuckoo table in an array map, so "is this a VIP
 * address?" costs two inlined array reads instead of a hash-map lookup. All-zero
 * addresses mark empty slots (0.0.0.0 and :: are never VIPs). */
struct vip_addr4 {
	__be32 addr;
	__u16 flags;   /* ADDR_F_* */
	__u16 addr_id; /* stable while the address is a VIP address: the flow keys' dst */
};

struct vip_addr6 {
	__be32 addr[4];
	__u16 flags;
	__u16 addr_id;
};

/* Connection-table keys: the client-to-VIP 5-tuple, with the VIP address replaced by
 * its addr_id from the address table. Shorter keys hash faster (the kernel's jhash
 * over 3 words instead of 4 for IPv4, 6 instead of 10 for IPv6) and take less memory
 * per entry; the id is as unique as the address while the address is a VIP. */
struct flow4_key {
	__be32 src;
	__u16 addr_id;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad;
};

struct flow6_key {
	__be32 src[4];
	__u16 addr_id;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad;
};

struct conn_value {
	__u32 backend_id;
	__u16 vip_id;    /* the VIP the flow belongs to, and its gen when the entry was made */
	__u16 vip_gen;
	__u64 atime_ns;  /* last packet, for UDP expiry (bpf_ktime_get_coarse_ns); 0 for TCP */
};

/* A backend (tunnel endpoint). family 0 marks an unused slot; id 0 is never used. */
struct backend {
	__be32 addr[4];  /* IPv4 in addr[0] */
	__u8 family;     /* FAMILY_V4 or FAMILY_V6 */
	__u8 flags;      /* reserved, 0 */
	__u16 pad;
};

/* The Maglev rings are stored RING_CHUNK slots to an array element: an element of a
 * BPF array takes round_up(value_size, 8) bytes, so one u32 per element would double
 * the rings' memory (268 MB instead of 134 MB for 512 VIPs × 65537 slots). */
#define RING_CHUNK 16

struct ring_chunk {
	__u32 backend_id[RING_CHUNK];
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
