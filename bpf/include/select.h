/* select.h — from a parsed flow to a backend: the VIP address table, the VIP lookup,
 * the connection table and the Maglev ring.
 *
 * Order, chosen for speed on the common paths:
 *   1. VIP address table (two inlined array reads): not a VIP address → pass. This is
 *      all non-VIP traffic pays.
 *   2. Established flows on addresses whose VIPs all use the connection table: the table
 *      first; a hit is checked against vip_state[vip_id].gen and skips the VIP lookup.
 *   3. Otherwise (a SYN, a miss, an LRU-bypass VIP): the VIP lookup, then the ring.
 * TCP SYN policy: a SYN never reads the table (a new connection follows the current
 * ring, even when a client reuses a port) but always writes it. */
#ifndef FULCRUM_SELECT_H
#define FULCRUM_SELECT_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "config.h"
#include "hash.h"
#include "maps.h"
#include "parse.h"

#define ADDR_SLOT_MULT1 0x9E3779B1u
#define ADDR_SLOT_MULT2 0x85EBCA77u
#define NOT_A_VIP_ADDRESS (-1)

/* Multiplicative (Fibonacci) hashing: the top bits of the product depend on every bit
 * of the address, so neighbouring VIPs (x.x.x.10, x.x.x.11) land far apart. */
static __always_inline __u32 addr_slot(__u32 word, __u32 mult)
{
	return (word * mult) >> (32 - CFG.addr_slot_bits);
}

static __always_inline int addr6_equal(const struct vip_addr6 *a, const __be32 *addr)
{
	return a->addr[0] == addr[0] && a->addr[1] == addr[1] && a->addr[2] == addr[2] && a->addr[3] == addr[3];
}

/* Is the destination a VIP address? Returns its ADDR_F_* flags and sets pkt->addr_id,
 * or returns NOT_A_VIP_ADDRESS. */
static __always_inline int lookup_vip_address(struct packet *pkt)
{
	if (pkt->family == FAMILY_V4) {
		__u32 slot = addr_slot(pkt->dst[0], ADDR_SLOT_MULT1);
		struct vip_addr4 *a = bpf_map_lookup_elem(&vip_addrs_v4, &slot);

		if (!a || a->addr != pkt->dst[0]) {
			slot = addr_slot(pkt->dst[0], ADDR_SLOT_MULT2);
			a = bpf_map_lookup_elem(&vip_addrs_v4, &slot);
			if (!a || a->addr != pkt->dst[0])
				return NOT_A_VIP_ADDRESS;
		}
		/* An empty slot holds address 0 with addr_id 0 (ids start at 1): 0.0.0.0 would
		 * match it. Paid only by packets that matched a slot. */
		if (!a->addr_id)
			return NOT_A_VIP_ADDRESS;
		pkt->addr_id = a->addr_id;
		return a->flags;
	}
	__u32 fold = pkt->dst[0] ^ pkt->dst[1] ^ pkt->dst[2] ^ pkt->dst[3];
	__u32 slot = addr_slot(fold, ADDR_SLOT_MULT1);
	struct vip_addr6 *a = bpf_map_lookup_elem(&vip_addrs_v6, &slot);

	if (!a || !addr6_equal(a, pkt->dst)) {
		slot = addr_slot(fold, ADDR_SLOT_MULT2);
		a = bpf_map_lookup_elem(&vip_addrs_v6, &slot);
		if (!a || !addr6_equal(a, pkt->dst))
			return NOT_A_VIP_ADDRESS;
	}
	if (!a->addr_id) /* an empty slot: :: */
		return NOT_A_VIP_ADDRESS;
	pkt->addr_id = a->addr_id;
	return a->flags;
}

static __always_inline struct vip_meta *lookup_vip4(__be32 addr, __be16 port, __u8 proto)
{
	struct vip4_key key = { .addr = addr, .port = port, .proto = proto };
	struct vip_meta *vip = bpf_map_lookup_elem(&vips_v4, &key);

	if (vip || !port)
		return vip;
	key.port = 0; /* an all-port VIP */
	return bpf_map_lookup_elem(&vips_v4, &key);
}

static __always_inline struct vip_meta *lookup_vip6(const __be32 *addr, __be16 port, __u8 proto)
{
	struct vip6_key key = { .port = port, .proto = proto };
	struct vip_meta *vip;

	__builtin_memcpy(key.addr, addr, 16);
	vip = bpf_map_lookup_elem(&vips_v6, &key);
	if (vip || !port)
		return vip;
	key.port = 0;
	return bpf_map_lookup_elem(&vips_v6, &key);
}

static __always_inline struct vip_meta *lookup_vip(const struct packet *pkt)
{
	if (pkt->family == FAMILY_V4)
		return lookup_vip4(pkt->dst[0], pkt->dport, pkt->proto);
	return lookup_vip6(pkt->dst, pkt->dport, pkt->proto);
}

/* The flow hash's first word: the client address (IPv6 folded, hash.h). */
static __always_inline __u32 source_word(const struct packet *pkt)
{
	if (pkt->family == FAMILY_V4)
		return pkt->src[0];
	return fold_ipv6_words(pkt->src[0], pkt->src[1], pkt->src[2], pkt->src[3]);
}

static __always_inline __u32 ports_word(const struct packet *pkt)
{
	return (__u32)pkt->sport | ((__u32)pkt->dport << 16);
}

/* The ring slot of a hash: Lemire's multiply-shift range reduction, uniform like a
 * modulo and without the division. */
static __always_inline __u32 ring_slot(__u32 hash)
{
	return ((__u64)hash * CFG.ring_size) >> 32;
}

static __always_inline struct backend *backend_slot(__u32 id)
{
	return bpf_map_lookup_elem(&backends, &id);
}

static __always_inline const struct backend *live_backend(__u32 id)
{
	struct backend *be = backend_slot(id);

	return be && be->family ? be : 0;
}

/* The connection-table entry of pkt's flow, if any. A UDP entry older than the
 * timeout counts as absent; otherwise `refresh` renews its idle time — only for packets
 * of the flow itself: an ICMP error about it is no sign that the flow lives. */
static __always_inline struct conn_value *conn_lookup(const struct packet *pkt, int refresh)
{
	struct conn_value *conn;

	if (pkt->family == FAMILY_V4) {
		struct flow4_key key = {
			.src = pkt->src[0], .addr_id = pkt->addr_id,
			.sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto,
		};
		conn = bpf_map_lookup_elem(&conn_v4, &key);
	} else {
		struct flow6_key key = { .addr_id = pkt->addr_id, .sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto };

		__builtin_memcpy(key.src, pkt->src, 16);
		conn = bpf_map_lookup_elem(&conn_v6, &key);
	}
	if (conn && pkt->proto == IPPROTO_UDP) {
		/* The coarse clock (one tick) is plenty for a timeout of seconds and far
		 * cheaper than bpf_ktime_get_ns; signed, as a user-space writer may be ahead. */
		__u64 now = bpf_ktime_get_coarse_ns();

		if ((__s64)(now - conn->atime_ns) > (__s64)CFG.udp_timeout_ns) {
			count(&global_stats, GSTAT_CONN_UDP_EXPIRED, 0);
			return 0;
		}
		if (refresh)
			conn->atime_ns = now;
	}
	return conn;
}

static __always_inline void conn_store(const struct packet *pkt, const struct vip_meta *vip, __u32 backend_id)
{
	struct conn_value value = {
		.backend_id = backend_id,
		.vip_id = vip->vip_id,
		.vip_gen = vip->gen,
		.atime_ns = pkt->proto == IPPROTO_UDP ? bpf_ktime_get_coarse_ns() : 0,
	};

	if (pkt->family == FAMILY_V4) {
		struct flow4_key key = {
			.src = pkt->src[0], .addr_id = pkt->addr_id,
			.sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto,
		};
		bpf_map_update_elem(&conn_v4, &key, &value, BPF_ANY);
	} else {
		struct flow6_key key = { .addr_id = pkt->addr_id, .sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto };

		__builtin_memcpy(key.src, pkt->src, 16);
		bpf_map_update_elem(&conn_v6, &key, &value, BPF_ANY);
	}
}

enum select_mode {
	SELECT_NEW_OR_KNOWN = 0,  /* ordinary packet: read, and write on a miss */
	SELECT_READ_ONLY,         /* ICMP error about a flow: never create state for it */
};

enum select_outcome {
	SELECTED = 0,
	SELECT_NO_BACKEND,        /* empty ring slot, or the slot's backend is unused */
	SELECT_BAD_BACKEND,       /* the ring names an id outside the backend table */
	SELECT_BAD_VIP_ID,        /* vip_id * ring_size is outside the ring map */
};

struct selection {
	const struct backend *backend;
	__u32 backend_id;
	__u32 vip_id;
	__u32 vip_flags;
};

/* Step 2: an established flow found in the table whose VIP is still the one it was
 * made for, with a live backend. Returns 0 when the VIP lookup must decide. */
static __always_inline int select_established(const struct packet *pkt, struct selection *sel)
{
	struct conn_value *conn = conn_lookup(pkt, 1);
	struct vip_meta *state;
	const struct backend *be;
	__u32 vip_id;

	if (!conn)
		return 0;
	vip_id = conn->vip_id;
	state = bpf_map_lookup_elem(&vip_state, &vip_id);
	if (!state || state->gen != conn->vip_gen || (state->flags & VIP_F_LRU_BYPASS))
		return 0;
	be = live_backend(conn->backend_id);
	if (!be)
		return 0;
	count(&global_stats, GSTAT_CONN_HIT, 0);
	sel->backend = be;
	sel->backend_id = conn->backend_id;
	sel->vip_id = vip_id;
	sel->vip_flags = state->flags;
	return 1;
}

/* Step 3: the VIP is known; the table (unless bypassed, a SYN, or already read in
 * step 2), then the ring. */
static __always_inline enum select_outcome select_for_vip(const struct packet *pkt, const struct vip_meta *vip,
							  __u32 ring_hash, enum select_mode mode, int table_read,
							  struct selection *sel)
{
	const int use_table = !(vip->flags & VIP_F_LRU_BYPASS);
	const struct backend *be;
	struct ring_chunk *chunk;
	__u32 slot, chunk_key, *ring_id;

	sel->vip_id = vip->vip_id;
	sel->vip_flags = vip->flags;
	if (use_table && !pkt->syn && !table_read) {
		struct conn_value *conn = conn_lookup(pkt, mode == SELECT_NEW_OR_KNOWN);

		if (conn && conn->vip_id == vip->vip_id && conn->vip_gen == vip->gen) {
			be = live_backend(conn->backend_id);
			if (be) {
				count(&global_stats, GSTAT_CONN_HIT, 0);
				sel->backend = be;
				sel->backend_id = conn->backend_id;
				return SELECTED;
			}
		}
	}
	if (use_table)
		count(&global_stats, GSTAT_CONN_MISS, 0);

	slot = (__u32)vip->vip_id * CFG.ring_size + ring_slot(ring_hash);
	chunk_key = slot / RING_CHUNK;
	chunk = bpf_map_lookup_elem(&ring, &chunk_key);
	if (!chunk)
		return SELECT_BAD_VIP_ID;
	ring_id = &chunk->backend_id[slot % RING_CHUNK];
	if (!*ring_id)
		return SELECT_NO_BACKEND;
	be = backend_slot(*ring_id);
	if (!be)
		return SELECT_BAD_BACKEND;
	if (!be->family)
		return SELECT_NO_BACKEND;
	/* A RST or FIN of a flow the table does not know (spoofed, or after the entry was
	 * evicted) follows the ring but stores nothing: a flood of them must not push real
	 * flows out of the LRU table. */
	if (use_table && mode == SELECT_NEW_OR_KNOWN && !pkt->ends_flow)
		conn_store(pkt, vip, *ring_id);
	sel->backend = be;
	sel->backend_id = *ring_id;
	return SELECTED;
}

#endif
