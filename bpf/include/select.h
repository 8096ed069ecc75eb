/* select.h — VIP lookup and backend selection: connection table first, Maglev ring on
 * a miss. The TCP SYN policy lives here: a SYN never reads the table (a new
 * connection follows the current ring, even when a client reuses a port) but always
 * writes it. */
#ifndef FULCRUM_SELECT_H
#define FULCRUM_SELECT_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "config.h"
#include "hash.h"
#include "maps.h"
#include "parse.h"

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

/* Is the destination a VIP address at all? The agent keeps an (address, 0, ICMP)
 * marker for every VIP address; it also answers echo requests. */
static __always_inline struct vip_meta *lookup_vip_address(const struct packet *pkt)
{
	if (pkt->family == FAMILY_V4)
		return lookup_vip4(pkt->dst[0], 0, IPPROTO_ICMP);
	return lookup_vip6(pkt->dst, 0, IPPROTO_ICMPV6);
}

/* The flow hash's first word: the client address (IPv6 folded by XOR). */
static __always_inline __u32 source_word(const struct packet *pkt)
{
	if (pkt->family == FAMILY_V4)
		return pkt->src[0];
	return pkt->src[0] ^ pkt->src[1] ^ pkt->src[2] ^ pkt->src[3];
}

static __always_inline __u32 ports_word(const struct packet *pkt)
{
	return (__u32)pkt->sport | ((__u32)pkt->dport << 16);
}

/* A backend slot in use, or 0. Ids outside the table also give 0: callers that must
 * tell the two apart use backend_slot(). */
static __always_inline struct backend *backend_slot(__u32 id)
{
	return bpf_map_lookup_elem(&backends, &id);
}

static __always_inline const struct backend *live_backend(__u32 id)
{
	struct backend *be = backend_slot(id);

	return be && be->family ? be : 0;
}

/* Connection-table lookup. Returns the live backend the flow is pinned to, or 0 when
 * the flow must be (re)placed from the ring: unknown, UDP entry expired, or its
 * backend has been removed since. */
static __always_inline const struct backend *conn_lookup(const struct packet *pkt, __u32 *id)
{
	struct conn_value *conn;

	if (pkt->family == FAMILY_V4) {
		struct flow4_key key = {
			.src = pkt->src[0], .dst = pkt->dst[0],
			.sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto,
		};
		conn = bpf_map_lookup_elem(&conn_v4, &key);
	} else {
		struct flow6_key key = { .sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto };

		__builtin_memcpy(key.src, pkt->src, 16);
		__builtin_memcpy(key.dst, pkt->dst, 16);
		conn = bpf_map_lookup_elem(&conn_v6, &key);
	}
	if (!conn)
		return 0;
	if (pkt->proto == IPPROTO_UDP) {
		__u64 now = bpf_ktime_get_ns();

		if (now - conn->atime_ns > CFG.udp_timeout_ns) {
			count(&global_stats, GSTAT_CONN_UDP_EXPIRED, 0);
			return 0;
		}
		conn->atime_ns = now;
	}
	*id = conn->backend_id;
	return live_backend(conn->backend_id);
}

static __always_inline void conn_store(const struct packet *pkt, __u32 id)
{
	struct conn_value value = {
		.backend_id = id,
		.atime_ns = pkt->proto == IPPROTO_UDP ? bpf_ktime_get_ns() : 0,
	};

	if (pkt->family == FAMILY_V4) {
		struct flow4_key key = {
			.src = pkt->src[0], .dst = pkt->dst[0],
			.sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto,
		};
		bpf_map_update_elem(&conn_v4, &key, &value, BPF_ANY);
	} else {
		struct flow6_key key = { .sport = pkt->sport, .dport = pkt->dport, .proto = pkt->proto };

		__builtin_memcpy(key.src, pkt->src, 16);
		__builtin_memcpy(key.dst, pkt->dst, 16);
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

/* Picks the backend for pkt; ring_hash selects the ring slot on a miss. */
static __always_inline enum select_outcome select_backend(const struct packet *pkt, const struct vip_meta *vip,
							  __u32 ring_hash, enum select_mode mode,
							  const struct backend **out, __u32 *id)
{
	const int use_table = !(vip->flags & VIP_F_LRU_BYPASS);
	const struct backend *be;
	__u32 slot, *ring_id;

	if (use_table && !pkt->syn) {
		be = conn_lookup(pkt, id);
		if (be) {
			count(&global_stats, GSTAT_CONN_HIT, 0);
			*out = be;
			return SELECTED;
		}
	}
	if (use_table)
		count(&global_stats, GSTAT_CONN_MISS, 0);

	slot = vip->vip_id * CFG.ring_size + ring_hash % CFG.ring_size;
	ring_id = bpf_map_lookup_elem(&ring, &slot);
	if (!ring_id)
		return SELECT_BAD_VIP_ID;
	if (!*ring_id)
		return SELECT_NO_BACKEND;
	*id = *ring_id;
	be = backend_slot(*ring_id);
	if (!be)
		return SELECT_BAD_BACKEND;
	if (!be->family)
		return SELECT_NO_BACKEND;
	if (use_table && mode == SELECT_NEW_OR_KNOWN)
		conn_store(pkt, *ring_id);
	*out = be;
	return SELECTED;
}

#endif
