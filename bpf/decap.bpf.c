// SPDX-License-Identifier: GPL-2.0
/* decap.bpf.c — tc ingress program on a backend pod's interface: strips the IPIP /
 * 6in4 / 4in6 / IP6IP6 / GUE header the balancer added and passes the inner packet up
 * the stack, so the pod (which holds the VIP on its loopback) answers the client
 * directly. It decapsulates only packets whose outer destination is a configured local
 * address and whose inner destination is a configured VIP: no open tunnel endpoint.
 * tc rather than XDP because the host may hand the pod GRO-merged (GSO) tunnel
 * packets, which bpf_skb_adjust_room's decap flags handle and veth XDP does not. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "csum.h"
#include "decap_maps.h"
#include "ecn.h"
#include "reasons.h"

/* Added to the UAPI in Linux 6.3; the build headers may be older than the kernel. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

/* Ethernet + outer IPv6 + UDP + inner IPv6: the most header a tunnel of ours has. */
#define DECAP_PULL_LEN (ETH_HLEN_ + IPV6_HLEN + UDP_HLEN + IPV6_HLEN)

const volatile struct decap_config DECAP_CFG = {
	.gue_port = 0xc017, /* htons(6080) */
};

/* The tunnel found in a frame: how long the outer header is, and what is inside. */
struct tunnel {
	__u32 outer_len;     /* bytes between the Ethernet header and the inner IP header */
	__u32 inner_room;    /* bytes the outer headers say follow them (the inner packet, and
	                      * any Ethernet padding of the client's frame the balancer carried) */
	__u8 outer_family;
	__u8 inner_family;
	__u8 outer_ecn;      /* the outer header's ECN field (RFC 6040) */
	struct addr_key outer_dst;
};

enum tunnel_outcome {
	TUNNEL_FOUND = 0,
	TUNNEL_NONE,         /* not a (well-formed) tunnel packet: leave it alone */
};

/* The balancer carries a client frame's Ethernet padding inside the tunnel: an IP
 * packet shorter than its room is padding only in a minimum-size frame (60 bytes, or 64
 * where NICs pad so), whose IP part is at most this long. */
#define PADDED_L3_MAX (64 - ETH_HLEN_)

/* Does an IP packet of `len` bytes fill its `room` as the balancer sends it? */
static __always_inline int fills_room(__u32 len, __u32 room)
{
	return len == room || (len < room && room <= PADDED_L3_MAX);
}

/* The inner family a GUE payload carries: a whole IPv4 (IHL 5, valid header checksum)
 * or IPv6 packet filling the UDP payload (fills_room); 0 otherwise. What is not one is
 * an ordinary datagram to that port, and is left alone. */
static __always_inline __u8 gue_inner_family(void *inner, void *data_end, __u32 room)
{
	struct iphdr *iph = inner;
	struct ipv6hdr *ip6 = inner;

	if (room >= IPV4_HLEN && (void *)(iph + 1) <= data_end && iph->version == 4) {
		if (iph->ihl != 5 || bpf_ntohs(iph->tot_len) < IPV4_HLEN || !fills_room(bpf_ntohs(iph->tot_len), room) ||
		    ipv4_header_csum(iph) != 0)
			return 0;
		return FAMILY_V4;
	}
	if (room >= IPV6_HLEN && (void *)(ip6 + 1) <= data_end && ip6->version == 6) {
		if (!fills_room(bpf_ntohs(ip6->payload_len) + IPV6_HLEN, room))
			return 0;
		return FAMILY_V6;
	}
	return 0;
}

static __always_inline enum tunnel_outcome find_tunnel(void *data, void *data_end, __u32 frame_len, struct tunnel *t)
{
	struct ethhdr *eth = data;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return TUNNEL_NONE;
	if (eth->h_proto == ETH_P_IP_BE) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return TUNNEL_NONE;
		/* The balancer sends 20-byte headers with DF; anything else is not ours. A bad
		 * header checksum, or a length beyond the frame, is left to the stack, which
		 * drops it and counts it as the IP header error it is. */
		if (iph->version != 4 || iph->ihl != 5 || iph->frag_off != IP_DF_BE)
			return TUNNEL_NONE;
		if (ipv4_header_csum(iph) != 0 || bpf_ntohs(iph->tot_len) < IPV4_HLEN ||
		    bpf_ntohs(iph->tot_len) > frame_len - ETH_HLEN_)
			return TUNNEL_NONE;
		t->inner_room = bpf_ntohs(iph->tot_len) - IPV4_HLEN;
		proto = iph->protocol;
		t->outer_ecn = iph->tos & 3;
		t->outer_family = FAMILY_V4;
		t->outer_dst.addr[0] = iph->daddr;
		t->outer_dst.family = FAMILY_V4;
		t->outer_len = IPV4_HLEN;
	} else if (eth->h_proto == ETH_P_IPV6_BE) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return TUNNEL_NONE;
		if (ip6->version != 6 || bpf_ntohs(ip6->payload_len) + IPV6_HLEN > frame_len - ETH_HLEN_)
			return TUNNEL_NONE;
		t->inner_room = bpf_ntohs(ip6->payload_len);
		proto = ip6->nexthdr;
		t->outer_ecn = (ip6->flow_lbl[0] >> 4) & 3;
		t->outer_family = FAMILY_V6;
		__builtin_memcpy(t->outer_dst.addr, &ip6->daddr, 16);
		t->outer_dst.family = FAMILY_V6;
		t->outer_len = IPV6_HLEN;
	} else {
		return TUNNEL_NONE;
	}

	if (proto == IPPROTO_IPIP) {
		t->inner_family = FAMILY_V4;
	} else if (proto == IPPROTO_IPV6) {
		t->inner_family = FAMILY_V6;
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = data + ETH_HLEN_ + (t->outer_family == FAMILY_V4 ? IPV4_HLEN : IPV6_HLEN);

		if ((void *)(uh + 1) > data_end)
			return TUNNEL_NONE;
		if (uh->dest != DECAP_CFG.gue_port)
			return TUNNEL_NONE;
		if (bpf_ntohs(uh->len) != t->inner_room || t->inner_room < UDP_HLEN)
			return TUNNEL_NONE;
		t->outer_len += UDP_HLEN;
		t->inner_room -= UDP_HLEN;
		t->inner_family = gue_inner_family(uh + 1, data_end, t->inner_room);
		if (!t->inner_family)
			return TUNNEL_NONE;
	} else {
		return TUNNEL_NONE;
	}
	return TUNNEL_FOUND;
}

/* The inner header must be whole and its destination read into vip. inner_len is the
 * room the outer headers declare (checked against the whole packet, which for a
 * GRO-merged packet is longer than its linear part, data_end). */
static __always_inline int read_inner_destination(void *inner, void *data_end, __u32 inner_len, __u8 family,
						  struct addr_key *vip)
{
	if (family == FAMILY_V4) {
		struct iphdr *iph = inner;

		/* Within the room the outer header declares, not merely within the frame: bytes
		 * after the outer packet (padding, a trailer) are not part of it. */
		if (inner_len < IPV4_HLEN || (void *)(iph + 1) > data_end || iph->version != 4 || iph->ihl < 5)
			return -1;
		if (bpf_ntohs(iph->tot_len) > inner_len || iph->ihl * 4 > bpf_ntohs(iph->tot_len))
			return -1;
		vip->addr[0] = iph->daddr;
	} else {
		struct ipv6hdr *ip6 = inner;

		if (inner_len < IPV6_HLEN || (void *)(ip6 + 1) > data_end || ip6->version != 6)
			return -1;
		if (bpf_ntohs(ip6->payload_len) + IPV6_HLEN > inner_len)
			return -1;
		__builtin_memcpy(vip->addr, &ip6->daddr, 16);
	}
	vip->family = family;
	return 0;
}

/* Carries the outer ECN mark into the inner header (ecn.h); the inner header was
 * bounds-checked by read_inner_destination. Returns ECN_DROP for CE over Not-ECT. */
static __always_inline __u8 propagate_ecn(void *inner, void *data_end, __u8 family, __u8 outer_ecn)
{
	__u8 ecn;

	if (family == FAMILY_V4) {
		struct iphdr *iph = inner;
		__u16 old, new;

		if ((void *)(iph + 1) > data_end)
			return ECN_DROP;
		ecn = ecn_decap(outer_ecn, iph->tos & 3);
		if (ecn == ECN_DROP || ecn == (iph->tos & 3))
			return ecn;
		old = *(__u16 *)iph;
		iph->tos = (iph->tos & ~3) | ecn;
		new = *(__u16 *)iph;
		iph->check = csum_replace2(iph->check, old, new);
		return ecn;
	}
	struct ipv6hdr *ip6 = inner;

	if ((void *)(ip6 + 1) > data_end)
		return ECN_DROP;
	ecn = ecn_decap(outer_ecn, (ip6->flow_lbl[0] >> 4) & 3);
	if (ecn != ECN_DROP)
		ip6->flow_lbl[0] = (ip6->flow_lbl[0] & ~0x30) | (ecn << 4);
	return ecn;
}

static __always_inline int verdict(enum reason reason, int action, __u64 bytes)
{
	count(&reason_stats, reason, bytes);
	return action;
}

SEC("tc")
int decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	const __u64 bytes = skb->len;
	struct tunnel t = {};
	struct addr_key vip = {};
	__u64 flags;
	void *inner;

	/* The headers a tunnel of ours can have (outer IPv6, UDP, inner IPv6) must be in the
	 * linear part to be read; on a GRO-merged or paged packet they may not be. */
	if (data + DECAP_PULL_LEN > data_end && skb->len > data_end - data) {
		bpf_skb_pull_data(skb, skb->len < DECAP_PULL_LEN ? skb->len : DECAP_PULL_LEN);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	switch (find_tunnel(data, data_end, skb->len, &t)) {
	case TUNNEL_FOUND:
		break;
	default:
		return verdict(REASON_DECAP_PASS_NOT_TUNNEL, TC_ACT_OK, bytes);
	}
	if (!bpf_map_lookup_elem(&decap_addrs, &t.outer_dst))
		return verdict(REASON_DECAP_DROP_NOT_LOCAL, TC_ACT_SHOT, bytes);

	if (t.outer_len > IPV6_HLEN + UDP_HLEN)
		return verdict(REASON_DECAP_DROP_MALFORMED, TC_ACT_SHOT, bytes);
	inner = data + ETH_HLEN_ + t.outer_len;
	if (read_inner_destination(inner, data_end, t.inner_room, t.inner_family, &vip))
		return verdict(REASON_DECAP_DROP_MALFORMED, TC_ACT_SHOT, bytes);
	if (!bpf_map_lookup_elem(&decap_vips, &vip))
		return verdict(REASON_DECAP_DROP_NOT_VIP, TC_ACT_SHOT, bytes);
	if (propagate_ecn(inner, data_end, t.inner_family, t.outer_ecn) == ECN_DROP)
		return verdict(REASON_DECAP_DROP_CE_NOT_ECT, TC_ACT_SHOT, bytes);

	/* For 4in6 / 6in4 the DECAP_L3 flag makes the kernel switch skb->protocol to the
	 * inner family (Linux 6.3+). Same-family tunnels pass no flag, so IPIP, IP6IP6 and
	 * same-family GUE also work on older kernels. */
	/* FIXED_GSO: the segments of a GRO-merged packet carry as much payload after the
	 * outer header goes as before, so gso_size must stay (without it the kernel grows it
	 * by the removed length and marks the packet for re-checking). */
	flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	if (t.inner_family != t.outer_family)
		flags |= t.inner_family == FAMILY_V4 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV4 : BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
	if (bpf_skb_adjust_room(skb, -(__s32)t.outer_len, BPF_ADJ_ROOM_MAC, flags))
		return verdict(REASON_DECAP_DROP_FAILED, TC_ACT_SHOT, bytes);
	if (t.inner_family != t.outer_family) {
		__be16 proto = t.inner_family == FAMILY_V4 ? ETH_P_IP_BE : ETH_P_IPV6_BE;

		if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0))
			return verdict(REASON_DECAP_DROP_FAILED, TC_ACT_SHOT, bytes);
	}
	count(&global_stats, GSTAT_DECAPPED, bytes);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
