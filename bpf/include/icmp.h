/* icmp.h — ICMP the balancer answers itself (echo to a VIP, frag-needed /
 * packet-too-big when encapsulation would exceed the MTU) and the parsing of ICMP
 * errors about a VIP flow, which are forwarded to the backend owning that flow.
 * Formats: docs/dataplane.md "ICMP replies from the balancer". */
#ifndef FULCRUM_ICMP_H
#define FULCRUM_ICMP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/icmpv6.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "parse.h"

#define ICMP_REPLY_TTL 64

/* <linux/icmp.h> pulls in libc's socket headers, which do not build for -target bpf,
 * so the ICMPv4 header and the numbers used are spelled out here. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		struct {
			__be16 __unused;
			__be16 mtu;
		} frag;
	} un;
};

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_ECHO 8

enum icmp_outcome {
	ICMP_SENT = 0,    /* reply written in place, ready for XDP_TX */
	ICMP_FAILED,      /* frame too short or an adjust helper refused */
};

static __always_inline void swap_macs(struct ethhdr *eth)
{
	/* As 4 + 2 byte words held in registers: no stack round trip. */
	__u32 *w = (__u32 *)eth;
	__u16 *h = (__u16 *)eth;
	__u32 dst_hi = w[0];
	__u16 dst_lo = h[2];
	__u16 src_hi = h[3];
	__u32 src_lo = *(__u32 *)(h + 4);

	h[3] = (__u16)dst_hi;
	*(__u32 *)(h + 4) = (dst_hi >> 16) | ((__u32)dst_lo << 16);
	w[0] = src_hi | (src_lo << 16);
	h[2] = src_lo >> 16;
}

/* Echo request → echo reply, in place. The caller has checked bounds up to the
 * ICMP header. */
static __always_inline void echo_reply_v4(struct ethhdr *eth, struct iphdr *iph, struct icmphdr *icmp)
{
	__be32 addr = iph->saddr;
	__u16 old_word, new_word;

	swap_macs(eth);
	iph->saddr = iph->daddr;
	iph->daddr = addr;
	/* Recomputed, not adjusted: a request with a corrupt header checksum must not get a
	 * reply with one (found by the fuzz test). Options never reach here: 20 bytes. */
	iph->ttl = ICMP_REPLY_TTL;
	iph->check = 0;
	iph->check = ipv4_header_csum(iph);

	old_word = *(__u16 *)icmp;
	icmp->type = ICMP_ECHOREPLY;
	new_word = *(__u16 *)icmp;
	icmp->checksum = csum_replace2(icmp->checksum, old_word, new_word);
}

static __always_inline void echo_reply_v6(struct ethhdr *eth, struct ipv6hdr *ip6, struct icmp6hdr *icmp6)
{
	struct in6_addr addr = ip6->saddr;
	__u16 old_word, new_word;

	swap_macs(eth);
	ip6->saddr = ip6->daddr;
	ip6->daddr = addr;
	ip6->hop_limit = ICMP_REPLY_TTL;

	/* Swapping the addresses leaves the pseudo-header sum unchanged. */
	old_word = *(__u16 *)icmp6;
	icmp6->icmp6_type = ICMPV6_ECHO_REPLY;
	new_word = *(__u16 *)icmp6;
	icmp6->icmp6_cksum = csum_replace2(icmp6->icmp6_cksum, old_word, new_word);
}

/* The packet at ctx (IPv4, no options) is too big once encapsulated: turn it into an
 * ICMP frag-needed to the client quoting its first ICMP4_TOOBIG_QUOTE bytes. */
static __always_inline enum icmp_outcome too_big_v4(struct xdp_md *ctx, __u16 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const int kept = ETH_HLEN_ + ICMP4_TOOBIG_QUOTE;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct icmphdr *icmp;
	__u8 client_mac[ETH_ALEN], our_mac[ETH_ALEN];
	__be32 client, vip;

	if (data + kept > data_end)
		return ICMP_FAILED;
	iph = data + ETH_HLEN_;
	__builtin_memcpy(client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);
	client = iph->saddr;
	vip = iph->daddr;

	if (bpf_xdp_adjust_tail(ctx, kept - (int)(data_end - data)))
		return ICMP_FAILED;
	if (bpf_xdp_adjust_head(ctx, -(IPV4_HLEN + ICMP_HLEN)))
		return ICMP_FAILED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN_ + IPV4_HLEN + ICMP_HLEN + ICMP4_TOOBIG_QUOTE > data_end)
		return ICMP_FAILED;

	eth = data;
	__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	eth->h_proto = ETH_P_IP_BE;

	iph = data + ETH_HLEN_;
	iph->version = 4;
	iph->ihl = 5;
	iph->tos = 0;
	iph->tot_len = bpf_htons(IPV4_HLEN + ICMP_HLEN + ICMP4_TOOBIG_QUOTE);
	iph->id = 0;
	iph->frag_off = 0;
	iph->ttl = ICMP_REPLY_TTL;
	iph->protocol = IPPROTO_ICMP;
	iph->check = 0;
	iph->saddr = vip;
	iph->daddr = client;
	iph->check = ipv4_header_csum(iph);

	icmp = (void *)(iph + 1);
	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->un.frag.__unused = 0;
	icmp->un.frag.mtu = bpf_htons(mtu);
	icmp->checksum = csum_fold(bpf_csum_diff(0, 0, (void *)icmp, ICMP_HLEN + ICMP4_TOOBIG_QUOTE, 0));
	return ICMP_SENT;
}

/* IPv6 twin of too_big_v4: ICMPv6 packet-too-big quoting ICMP6_TOOBIG_QUOTE bytes. */
static __always_inline enum icmp_outcome too_big_v6(struct xdp_md *ctx, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const int kept = ETH_HLEN_ + ICMP6_TOOBIG_QUOTE;
	const __u32 icmp_len = ICMP_HLEN + ICMP6_TOOBIG_QUOTE;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6;
	struct icmp6hdr *icmp6;
	__u8 client_mac[ETH_ALEN], our_mac[ETH_ALEN];
	struct in6_addr client, vip;
	__u64 sum;

	if (data + kept > data_end)
		return ICMP_FAILED;
	ip6 = data + ETH_HLEN_;
	__builtin_memcpy(client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);
	client = ip6->saddr;
	vip = ip6->daddr;

	if (bpf_xdp_adjust_tail(ctx, kept - (int)(data_end - data)))
		return ICMP_FAILED;
	if (bpf_xdp_adjust_head(ctx, -(IPV6_HLEN + ICMP_HLEN)))
		return ICMP_FAILED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN_ + IPV6_HLEN + ICMP_HLEN + ICMP6_TOOBIG_QUOTE > data_end)
		return ICMP_FAILED;

	eth = data;
	__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	eth->h_proto = ETH_P_IPV6_BE;

	ip6 = data + ETH_HLEN_;
	ip6->version = 6;
	ip6->priority = 0;
	ip6->flow_lbl[0] = 0;
	ip6->flow_lbl[1] = 0;
	ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(icmp_len);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = ICMP_REPLY_TTL;
	ip6->saddr = vip;
	ip6->daddr = client;

	icmp6 = (void *)(ip6 + 1);
	icmp6->icmp6_type = ICMPV6_PKT_TOOBIG;
	icmp6->icmp6_code = 0;
	icmp6->icmp6_cksum = 0;
	icmp6->icmp6_mtu = bpf_htonl(mtu);

	/* Pseudo-header: both addresses, the upper-layer length and next header. */
	sum = bpf_csum_diff(0, 0, (void *)&ip6->saddr, 32, 0);
	sum = bpf_csum_diff(0, 0, (void *)icmp6, ICMP_HLEN + ICMP6_TOOBIG_QUOTE, sum);
	sum += bpf_htons(icmp_len) + bpf_htons(IPPROTO_ICMPV6);
	icmp6->icmp6_cksum = csum_fold(sum);
	return ICMP_SENT;
}

/* An ICMP error quotes the header of a packet a backend sent (VIP → client). Fill
 * pkt with that flow turned round to client → VIP, so it hashes like the flow did.
 * Returns PARSE_OTHER_L4 when the quote is not a TCP / UDP header we can use. */
static __always_inline enum parse_outcome parse_quoted_v4(void *quote, void *data_end, struct packet *pkt)
{
	struct iphdr *inner = quote;
	__be16 *ports = (void *)(inner + 1);

	if ((void *)(ports + 2) > data_end)
		return PARSE_OTHER_L4;
	if (inner->version != 4 || inner->ihl != 5)
		return PARSE_OTHER_L4;
	/* A non-first fragment carries no transport header: what follows is payload. */
	if (inner->frag_off & IP_FRAG_OFFSET_BE)
		return PARSE_OTHER_L4;
	if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
		return PARSE_OTHER_L4;
	pkt->src[0] = inner->daddr;
	pkt->dst[0] = inner->saddr;
	pkt->sport = ports[1];
	pkt->dport = ports[0];
	pkt->proto = inner->protocol;
	pkt->syn = 0;
	pkt->ends_flow = 0;
	return PARSE_OK;
}

static __always_inline enum parse_outcome parse_quoted_v6(void *quote, void *data_end, struct packet *pkt)
{
	struct ipv6hdr *inner = quote;
	__be16 *ports = (void *)(inner + 1);

	if ((void *)(ports + 2) > data_end)
		return PARSE_OTHER_L4;
	if (inner->version != 6)
		return PARSE_OTHER_L4;
	if (inner->nexthdr != IPPROTO_TCP && inner->nexthdr != IPPROTO_UDP)
		return PARSE_OTHER_L4;
	__builtin_memcpy(pkt->src, &inner->daddr, 16);
	__builtin_memcpy(pkt->dst, &inner->saddr, 16);
	pkt->sport = ports[1];
	pkt->dport = ports[0];
	pkt->proto = inner->nexthdr;
	pkt->syn = 0;
	pkt->ends_flow = 0;
	return PARSE_OK;
}

#endif
