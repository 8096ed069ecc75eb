// SPDX-License-Identifier: GPL-2.0
/* balancer.bpf.c — the XDP load balancer's entry point: parse → VIP lookup → select
 * (connection table, Maglev ring) → encapsulate → verdict. Every verdict other than a
 * forward is counted in reason_stats under a reason from reasons.h. The packet path
 * and formats are documented in docs/dataplane.md. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/icmpv6.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "config.h"
#include "consts.h"
#include "encap.h"
#include "hash.h"
#include "icmp.h"
#include "maps.h"
#include "parse.h"
#include "reasons.h"
#include "select.h"

#define AF_INET_ 2
#define AF_INET6_ 10

static __always_inline int verdict(enum reason reason, int action, __u64 bytes)
{
	count(&reason_stats, reason, bytes);
	return action;
}

/* Outer next hop: the configured MAC (already written by encap) or the kernel FIB. */
static __always_inline int next_hop(struct xdp_md *ctx, __u8 outer_family, __u64 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;

	if (!(CFG.flags & CFG_F_FIB_LOOKUP))
		return XDP_TX;

	if (outer_family == FAMILY_V4) {
		struct iphdr *iph = data + ETH_HLEN_;

		if ((void *)(iph + 1) > data_end)
			return verdict(REASON_DROP_ADJUST_FAILED, XDP_DROP, bytes);
		fib.family = AF_INET_;
		fib.tos = iph->tos;
		fib.l4_protocol = iph->protocol;
		fib.tot_len = bpf_ntohs(iph->tot_len);
		fib.ipv4_src = iph->saddr;
		fib.ipv4_dst = iph->daddr;
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN_;

		if ((void *)(ip6 + 1) > data_end)
			return verdict(REASON_DROP_ADJUST_FAILED, XDP_DROP, bytes);
		fib.family = AF_INET6_;
		fib.l4_protocol = ip6->nexthdr;
		fib.tot_len = bpf_ntohs(ip6->payload_len) + IPV6_HLEN;
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	}
	fib.ifindex = ctx->ingress_ifindex;

	if ((void *)(eth + 1) > data_end)
		return verdict(REASON_DROP_ADJUST_FAILED, XDP_DROP, bytes);
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
		/* No route or no neighbour yet: the stack routes the encapsulated packet and
		 * resolves the neighbour, so later packets take the fast path. It only takes
		 * frames addressed to this host: the outer source MAC is ours (encap wrote the
		 * incoming destination there), so address the frame to it. */
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		return verdict(REASON_PASS_FIB_MISS, XDP_PASS, bytes);
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib.ifindex, 0);
}

static __always_inline int send_too_big(struct xdp_md *ctx, const struct packet *pkt, __u32 overhead, __u64 bytes)
{
	__u32 room = CFG.mtu - overhead;
	enum icmp_outcome sent;

	if (pkt->family == FAMILY_V4)
		sent = too_big_v4(ctx, room);
	else
		sent = too_big_v6(ctx, room < IPV6_MIN_MTU ? IPV6_MIN_MTU : room);
	if (sent != ICMP_SENT)
		return verdict(REASON_DROP_ADJUST_FAILED, XDP_DROP, bytes);
	return verdict(REASON_TX_ICMP_TOO_BIG, XDP_TX, bytes);
}

/* The backend is chosen: MTU check, encapsulate, count, next hop. */
static __always_inline int forward(struct xdp_md *ctx, const struct packet *pkt, const struct selection *sel,
				   __u32 entropy, enum select_mode mode, __u64 bytes)
{
	const struct backend *be = sel->backend;
	const int gue = !!(sel->vip_flags & VIP_F_ENCAP_GUE);
	const __u32 overhead = encap_overhead(be, gue);
	const __u8 outer_family = be->family;

	if (pkt->l3_len + overhead > CFG.mtu) {
		if (mode == SELECT_NEW_OR_KNOWN)
			return send_too_big(ctx, pkt, overhead, bytes);
		/* An ICMP error: legitimate ones are at most 576 (IPv4) / 1280 (IPv6) bytes and
		 * fit any allowed MTU; a bigger one is forged, and no ICMP error is ever sent
		 * about an ICMP error. */
		return verdict(REASON_DROP_ERROR_TOO_BIG, XDP_DROP, bytes);
	}
	if (encapsulate(ctx, pkt, be, entropy, gue) != ENCAP_OK)
		return verdict(REASON_DROP_ADJUST_FAILED, XDP_DROP, bytes);
	count(&vip_stats, sel->vip_id, bytes);
	count(&backend_stats, sel->backend_id, bytes);
	return next_hop(ctx, outer_family, bytes);
}

/* Steps 3 and on for a known VIP (see select.h). */
static __always_inline int balance(struct xdp_md *ctx, const struct packet *pkt, const struct vip_meta *vip,
				   __u32 src_word, __u32 entropy, enum select_mode mode, int table_read, __u64 bytes)
{
	const __u32 ring_hash = vip->flags & VIP_F_SRC_IP_ONLY ? jhash_2words(src_word, 0, 0) : entropy;
	struct selection sel = {};

	switch (select_for_vip(pkt, vip, ring_hash, mode, table_read, &sel)) {
	case SELECTED:
		return forward(ctx, pkt, &sel, entropy, mode, bytes);
	case SELECT_BAD_BACKEND:
		return verdict(REASON_DROP_BAD_BACKEND, XDP_DROP, bytes);
	case SELECT_BAD_VIP_ID:
		return verdict(REASON_DROP_UNKNOWN_VIP_ID, XDP_DROP, bytes);
	default:
		return verdict(REASON_DROP_NO_BACKEND, XDP_DROP, bytes);
	}
}

/* A packet that cannot be balanced: dropped if it was aimed at a VIP address (it
 * would otherwise reach the stack of a host that does not serve it), else passed. */
static __always_inline int refuse(struct packet *pkt, enum reason drop_reason, __u64 bytes)
{
	if (lookup_vip_address(pkt) != NOT_A_VIP_ADDRESS)
		return verdict(drop_reason, XDP_DROP, bytes);
	return verdict(REASON_PASS_NOT_VIP, XDP_PASS, bytes);
}

/* An ICMP error quoting a VIP flow: forwarded like that flow, never creating state. */
static __always_inline int forward_icmp_error(struct xdp_md *ctx, struct packet *pkt, __u64 bytes)
{
	struct vip_meta *vip;
	__u32 src_word;

	if (lookup_vip_address(pkt) == NOT_A_VIP_ADDRESS)
		return verdict(REASON_PASS_ICMP_OTHER, XDP_PASS, bytes);
	vip = lookup_vip(pkt);
	if (!vip)
		return verdict(REASON_PASS_ICMP_OTHER, XDP_PASS, bytes);
	src_word = source_word(pkt);
	return balance(ctx, pkt, vip, src_word, jhash_2words(src_word, ports_word(pkt), 0), SELECT_READ_ONLY, 0, bytes);
}

static __always_inline int process_icmp4(struct xdp_md *ctx, struct packet *pkt, __u64 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + ETH_HLEN_;
	struct icmphdr *icmp = (void *)(iph + 1);

	if ((void *)(icmp + 1) > data_end)
		return refuse(pkt, REASON_DROP_MALFORMED, bytes);
	if (icmp->type == ICMP_ECHO) {
		if (lookup_vip_address(pkt) == NOT_A_VIP_ADDRESS)
			return verdict(REASON_PASS_NOT_VIP, XDP_PASS, bytes);
		echo_reply_v4(data, iph, icmp);
		return verdict(REASON_TX_ICMP_ECHO, XDP_TX, bytes);
	}
	if (icmp->type != ICMP_DEST_UNREACH || parse_quoted_v4(icmp + 1, data_end, pkt) != PARSE_OK)
		return verdict(REASON_PASS_ICMP_OTHER, XDP_PASS, bytes);
	return forward_icmp_error(ctx, pkt, bytes);
}

static __always_inline int process_icmp6(struct xdp_md *ctx, struct packet *pkt, __u64 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN_;
	struct icmp6hdr *icmp6 = (void *)(ip6 + 1);

	if ((void *)(icmp6 + 1) > data_end)
		return refuse(pkt, REASON_DROP_MALFORMED, bytes);
	if (icmp6->icmp6_type == ICMPV6_ECHO_REQUEST) {
		if (lookup_vip_address(pkt) == NOT_A_VIP_ADDRESS)
			return verdict(REASON_PASS_NOT_VIP, XDP_PASS, bytes);
		echo_reply_v6(data, ip6, icmp6);
		return verdict(REASON_TX_ICMP_ECHO, XDP_TX, bytes);
	}
	if ((icmp6->icmp6_type != ICMPV6_DEST_UNREACH && icmp6->icmp6_type != ICMPV6_PKT_TOOBIG) ||
	    parse_quoted_v6(icmp6 + 1, data_end, pkt) != PARSE_OK)
		return verdict(REASON_PASS_ICMP_OTHER, XDP_PASS, bytes);
	return forward_icmp_error(ctx, pkt, bytes);
}

/* TCP / UDP after a successful IP parse: VIP address, ports, table, VIP, forward. */
static __always_inline int process_l4(struct xdp_md *ctx, struct packet *pkt, __u32 l4_offset, __u64 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const int addr_flags = lookup_vip_address(pkt);
	struct vip_meta *vip;
	__u32 src_word, entropy;
	int table_read = 0;

	if (addr_flags == NOT_A_VIP_ADDRESS)
		return verdict(REASON_PASS_NOT_VIP, XDP_PASS, bytes);
	if (parse_ports(data + l4_offset, data_end, pkt) != PARSE_OK)
		return verdict(REASON_DROP_MALFORMED, XDP_DROP, bytes);

	src_word = source_word(pkt);
	entropy = jhash_2words(src_word, ports_word(pkt), 0);
	/* Table first only where every VIP of the address uses the table: on an address
	 * that also has LRU-bypass VIPs, the VIP lookup decides first, so bypass traffic
	 * never pays for a table miss. */
	if ((addr_flags & (ADDR_F_USES_TABLE | ADDR_F_HAS_BYPASS)) == ADDR_F_USES_TABLE && !pkt->syn) {
		struct selection sel = {};

		table_read = 1;
		if (select_established(pkt, &sel))
			return forward(ctx, pkt, &sel, entropy, SELECT_NEW_OR_KNOWN, bytes);
	}
	vip = lookup_vip(pkt);
	/* A VIP address on a port or protocol no VIP serves: the node does not own the
	 * address, so its stack would route the packet back where it came from. */
	if (!vip)
		return verdict(REASON_DROP_NOT_SERVED, XDP_DROP, bytes);
	return balance(ctx, pkt, vip, src_word, entropy, SELECT_NEW_OR_KNOWN, table_read, bytes);
}

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const __u64 bytes = data_end - data;
	struct ethhdr *eth = data;
	/* Not zeroed: every field a path reads is written first by the parser for that
	 * path (the verifier would refuse the program otherwise). */
	struct packet pkt;
	enum parse_outcome parsed;

	if ((void *)(eth + 1) > data_end)
		return verdict(REASON_DROP_MALFORMED, XDP_DROP, bytes);

	if (eth->h_proto == ETH_P_IP_BE) {
		parsed = parse_ipv4(data, data_end, &pkt);
		if (parsed == PARSE_OK)
			return process_l4(ctx, &pkt, ETH_HLEN_ + IPV4_HLEN, bytes);
		if (parsed == PARSE_ICMP)
			return process_icmp4(ctx, &pkt, bytes);
	} else if (eth->h_proto == ETH_P_IPV6_BE) {
		parsed = parse_ipv6(data, data_end, &pkt);
		if (parsed == PARSE_OK)
			return process_l4(ctx, &pkt, ETH_HLEN_ + IPV6_HLEN, bytes);
		if (parsed == PARSE_ICMP)
			return process_icmp6(ctx, &pkt, bytes);
	} else if (eth->h_proto == ETH_P_8021Q_BE || eth->h_proto == ETH_P_8021AD_BE) {
		return verdict(REASON_PASS_VLAN, XDP_PASS, bytes);
	} else {
		return verdict(REASON_PASS_NOT_IP, XDP_PASS, bytes);
	}

	switch (parsed) {
	case PARSE_MALFORMED:
		return verdict(REASON_DROP_MALFORMED, XDP_DROP, bytes);
	case PARSE_OPTIONS:
		return refuse(&pkt, REASON_DROP_IP_OPTIONS, bytes);
	case PARSE_FRAGMENT:
		return refuse(&pkt, REASON_DROP_FRAGMENT, bytes);
	case PARSE_EXT_HEADER:
		return refuse(&pkt, REASON_DROP_IPV6_EXT, bytes);
	default: /* another transport: no VIP serves it (dropped on a VIP address, as above) */
		return refuse(&pkt, REASON_DROP_NOT_SERVED, bytes);
	}
}

char LICENSE[] SEC("license") = "GPL";
