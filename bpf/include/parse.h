/* parse.h — Ethernet / IPv4 / IPv6 / TCP / UDP parsing into struct packet.
 * Every read is bounds-checked against data_end first. Parsers return a named
 * outcome; the entry point turns outcomes into verdicts. */
#ifndef FULCRUM_PARSE_H
#define FULCRUM_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

/* What the balancer knows about a packet once parsed: the client→VIP flow. */
struct packet {
	__be32 src[4];    /* IPv4 in src[0] */
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u32 l3_len;     /* bytes after the Ethernet header, as on the wire */
	__u8 family;      /* FAMILY_V4 / FAMILY_V6 */
	__u8 proto;       /* IPPROTO_TCP / IPPROTO_UDP (of the flow, also for ICMP errors) */
	__u8 tos;         /* DSCP + ECN (IPv4 TOS, IPv6 traffic class) */
	__u8 syn;         /* TCP SYN without ACK: a new connection */
	__u8 ends_flow;   /* TCP RST or FIN: never creates a connection-table entry */
	__u16 addr_id;    /* the destination's id in the VIP address table, once looked up */
};

enum parse_outcome {
	PARSE_OK = 0,
	PARSE_MALFORMED,
	PARSE_OPTIONS,     /* IPv4 header with options */
	PARSE_FRAGMENT,
	PARSE_EXT_HEADER,  /* IPv6 extension header */
	PARSE_OTHER_L4,    /* not TCP, UDP or ICMP */
	PARSE_ICMP,
};

#define IP_FRAG_MASK_BE 0xff3f /* htons(0x3fff): MF flag and fragment offset */
#define IP_FRAG_OFFSET_BE 0xff1f /* htons(0x1fff): fragment offset alone (non-first fragments) */

/* IPv4 header at data + ETH_HLEN_. Sets family, addresses, proto, tos, l3_len. */
static __always_inline enum parse_outcome parse_ipv4(void *data, void *data_end, struct packet *pkt)
{
	struct iphdr *iph = data + ETH_HLEN_;
	__u32 l3_len = data_end - (void *)iph;
	__u32 tot_len;

	if ((void *)(iph + 1) > data_end)
		return PARSE_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return PARSE_MALFORMED;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < (__u32)iph->ihl * 4 || tot_len > l3_len)
		return PARSE_MALFORMED;

	pkt->family = FAMILY_V4;
	pkt->src[0] = iph->saddr;
	pkt->dst[0] = iph->daddr;
	pkt->proto = iph->protocol;
	pkt->tos = iph->tos;
	pkt->l3_len = l3_len;

	if (iph->ihl != 5)
		return PARSE_OPTIONS;
	if (iph->frag_off & IP_FRAG_MASK_BE)
		return PARSE_FRAGMENT;
	if (iph->protocol == IPPROTO_ICMP)
		return PARSE_ICMP;
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return PARSE_OTHER_L4;
	return PARSE_OK;
}

static __always_inline int ipv6_is_ext_header(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case 135: /* Mobility */
	case 139: /* HIP */
	case 140: /* Shim6 */
	case 253: /* experimental */
	case 254:
		return 1;
	}
	return 0;
}

/* IPv6 header at data + ETH_HLEN_. Extension headers are not walked (see
 * docs/dataplane.md): the caller decides what a packet carrying one gets. */
static __always_inline enum parse_outcome parse_ipv6(void *data, void *data_end, struct packet *pkt)
{
	struct ipv6hdr *ip6 = data + ETH_HLEN_;
	__u32 l3_len = data_end - (void *)ip6;

	if ((void *)(ip6 + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip6->version != 6 || bpf_ntohs(ip6->payload_len) + IPV6_HLEN > l3_len)
		return PARSE_MALFORMED;

	pkt->family = FAMILY_V6;
	__builtin_memcpy(pkt->src, &ip6->saddr, 16);
	__builtin_memcpy(pkt->dst, &ip6->daddr, 16);
	pkt->proto = ip6->nexthdr;
	pkt->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	pkt->l3_len = l3_len;

	switch (ip6->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		return PARSE_OK;
	case IPPROTO_ICMPV6:
		return PARSE_ICMP;
	case IPPROTO_FRAGMENT:
		return PARSE_FRAGMENT;
	}
	return ipv6_is_ext_header(ip6->nexthdr) ? PARSE_EXT_HEADER : PARSE_OTHER_L4;
}

/* TCP or UDP ports (and TCP flags) of the header at l4. */
static __always_inline enum parse_outcome parse_ports(void *l4, void *data_end, struct packet *pkt)
{
	if (pkt->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || th->doff < 5)
			return PARSE_MALFORMED;
		pkt->sport = th->source;
		pkt->dport = th->dest;
		pkt->syn = th->syn && !th->ack;
		pkt->ends_flow = th->rst | th->fin;
		return PARSE_OK;
	}
	struct udphdr *uh = l4;

	if ((void *)(uh + 1) > data_end || bpf_ntohs(uh->len) < UDP_HLEN)
		return PARSE_MALFORMED;
	pkt->sport = uh->source;
	pkt->dport = uh->dest;
	pkt->syn = 0;
	pkt->ends_flow = 0;
	return PARSE_OK;
}

#endif
