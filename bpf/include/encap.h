/* encap.h — wraps the packet for its backend: IPIP (4in4), 6in4, 4in6, IP6IP6, or GUE
 * (UDP, variant 1) over either family. The inner packet is every byte after the
 * incoming Ethernet header, unchanged. Formats: docs/dataplane.md "Encapsulation". */
#ifndef FULCRUM_ENCAP_H
#define FULCRUM_ENCAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "config.h"
#include "csum.h"
#include "parse.h"
#include "structs.h"

enum encap_outcome {
	ENCAP_OK = 0,
	ENCAP_FAILED,  /* bpf_xdp_adjust_head refused, or the frame is not what it was */
};

static __always_inline __u32 encap_overhead(const struct backend *be, int gue)
{
	return (be->family == FAMILY_V4 ? IPV4_HLEN : IPV6_HLEN) + (gue ? UDP_HLEN : 0);
}

/* The inner family's number as an outer protocol / next header. */
static __always_inline __u8 inner_ipproto(const struct packet *pkt, int gue)
{
	if (gue)
		return IPPROTO_UDP;
	return pkt->family == FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
}

static __always_inline void write_outer_eth(struct ethhdr *new_eth, const struct ethhdr *old_eth, __be16 proto)
{
	/* new_eth and old_eth never overlap: the outer headers are at least 20 bytes. */
	__builtin_memcpy(new_eth->h_source, old_eth->h_dest, ETH_ALEN);
	/* Byte by byte through the volatile lvalue: a memcpy from a cast would let the
	 * compiler fold in the initializer's value instead of the one set at load. */
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		new_eth->h_dest[i] = CFG.nexthop_mac[i];
	new_eth->h_proto = proto;
}

static __always_inline void write_gue(struct udphdr *uh, __u32 entropy, __u32 inner_len)
{
	uh->source = bpf_htons(0x8000 | (entropy & 0x7fff));
	uh->dest = CFG.gue_port;
	uh->len = bpf_htons(UDP_HLEN + inner_len);
	uh->check = 0; /* RFC 6935 zero-checksum tunnel; the decap program accepts it */
}

/* gue is a compile-time constant at every call site, so each variant has constant
 * offsets and the verifier sees fixed-size packet ranges. */
static __always_inline enum encap_outcome encap_v4(struct xdp_md *ctx, const struct packet *pkt,
						   const struct backend *be, __u32 entropy, const int gue)
{
	const int outer = IPV4_HLEN + (gue ? UDP_HLEN : 0);
	void *data, *data_end;
	struct ethhdr *new_eth, *old_eth;
	struct iphdr *iph;

	if (bpf_xdp_adjust_head(ctx, -outer))
		return ENCAP_FAILED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	new_eth = data;
	old_eth = data + outer;
	iph = data + ETH_HLEN_;
	if ((void *)(old_eth + 1) > data_end)
		return ENCAP_FAILED;

	/* The header is written field by field from registers and its checksum summed
	 * from the same registers (16-bit words as they lie in memory), rather than
	 * written and read back: this is the hottest write in the program. */
	const __u8 proto = inner_ipproto(pkt, gue);
	const __be16 tot_len = bpf_htons(outer + pkt->l3_len);
	const __be32 saddr = gue ? CFG.node_addr4
				 : (CFG.tunnel_src4 & bpf_htonl(0xffff0000)) | bpf_htonl(entropy & 0xffff);
	const __be32 daddr = be->addr[0];
	const __u8 ttl = CFG.tunnel_ttl;
	__u64 sum = (0x45 | ((__u32)pkt->tos << 8)) + tot_len + IP_DF_BE + (ttl | ((__u32)proto << 8)) +
		    (saddr & 0xffff) + (saddr >> 16) + (daddr & 0xffff) + (daddr >> 16);

	write_outer_eth(new_eth, old_eth, ETH_P_IP_BE);
	*(__u8 *)iph = 0x45; /* version 4, IHL 5 */
	iph->tos = pkt->tos;
	iph->tot_len = tot_len;
	iph->id = 0;
	iph->frag_off = IP_DF_BE;
	iph->ttl = ttl;
	iph->protocol = proto;
	iph->check = csum_fold(sum);
	iph->saddr = saddr;
	iph->daddr = daddr;
	if (gue)
		write_gue((void *)(iph + 1), entropy, pkt->l3_len);
	return ENCAP_OK;
}

static __always_inline enum encap_outcome encap_v6(struct xdp_md *ctx, const struct packet *pkt,
						   const struct backend *be, __u32 entropy, const int gue)
{
	const int outer = IPV6_HLEN + (gue ? UDP_HLEN : 0);
	void *data, *data_end;
	struct ethhdr *new_eth, *old_eth;
	struct ipv6hdr *ip6;
	__u32 flow_label = entropy & 0xfffff;

	if (bpf_xdp_adjust_head(ctx, -outer))
		return ENCAP_FAILED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	new_eth = data;
	old_eth = data + outer;
	ip6 = data + ETH_HLEN_;
	if ((void *)(old_eth + 1) > data_end)
		return ENCAP_FAILED;

	write_outer_eth(new_eth, old_eth, ETH_P_IPV6_BE);
	ip6->version = 6;
	ip6->priority = pkt->tos >> 4;
	ip6->flow_lbl[0] = (pkt->tos << 4) | (flow_label >> 16);
	ip6->flow_lbl[1] = flow_label >> 8;
	ip6->flow_lbl[2] = flow_label;
	ip6->payload_len = bpf_htons((gue ? UDP_HLEN : 0) + pkt->l3_len);
	ip6->nexthdr = inner_ipproto(pkt, gue);
	ip6->hop_limit = CFG.tunnel_ttl;
	if (gue) {
		__be32 *src = (__be32 *)&ip6->saddr;

		src[0] = CFG.node_addr6[0];
		src[1] = CFG.node_addr6[1];
		src[2] = CFG.node_addr6[2];
		src[3] = CFG.node_addr6[3];
		write_gue((void *)(ip6 + 1), entropy, pkt->l3_len);
	} else {
		__be32 *src = (__be32 *)&ip6->saddr;

		src[0] = CFG.tunnel_src6[0];
		src[1] = CFG.tunnel_src6[1];
		src[2] = CFG.tunnel_src6[2];
		src[3] = bpf_htonl(entropy);
	}
	__builtin_memcpy(&ip6->daddr, be->addr, 16);
	return ENCAP_OK;
}

static __always_inline enum encap_outcome encapsulate(struct xdp_md *ctx, const struct packet *pkt,
						      const struct backend *be, __u32 entropy, int gue)
{
	if (be->family == FAMILY_V4)
		return gue ? encap_v4(ctx, pkt, be, entropy, 1) : encap_v4(ctx, pkt, be, entropy, 0);
	return gue ? encap_v6(ctx, pkt, be, entropy, 1) : encap_v6(ctx, pkt, be, entropy, 0);
}

#endif
