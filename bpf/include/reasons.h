/* reasons.h — why a packet was not forwarded. One enum, used as the index into
 * reason_stats (balancer) and decap_stats (decap). Mirrored in src/shared/reasons.ts:
 * keep the names, numbers and order in sync; only ever append. */
#ifndef FULCRUM_REASONS_H
#define FULCRUM_REASONS_H

enum reason {
	REASON_PASS_NOT_IP = 0,       /* not IPv4 / IPv6 (ARP, LLDP, ...) */
	REASON_PASS_VLAN,             /* 802.1Q / 802.1ad tagged: left to the stack */
	REASON_PASS_NOT_VIP,          /* destination is not a VIP address */
	REASON_PASS_ICMP_OTHER,       /* ICMP that is neither echo to a VIP nor an error about a VIP flow */
	REASON_DROP_MALFORMED,        /* truncated header, bad IHL / version / length */
	REASON_DROP_IP_OPTIONS,       /* IPv4 options on a packet to a VIP address */
	REASON_DROP_FRAGMENT,         /* IPv4 or IPv6 fragment to a VIP address */
	REASON_DROP_IPV6_EXT,         /* IPv6 extension header on a packet to a VIP address */
	REASON_DROP_NO_BACKEND,       /* ring slot empty or backend slot unused */
	REASON_DROP_BAD_BACKEND,      /* backend id outside the table */
	REASON_TX_ICMP_ECHO,          /* echo request to a VIP answered */
	REASON_TX_ICMP_TOO_BIG,       /* frag-needed / packet-too-big sent to the client */
	REASON_DROP_ADJUST_FAILED,    /* bpf_xdp_adjust_head / _tail refused */
	REASON_PASS_FIB_MISS,         /* FIB lookup gave no neighbour: encapsulated packet left to the stack */
	REASON_DROP_UNKNOWN_VIP_ID,   /* vip_id outside the ring / stats range */
	/* decap program */
	REASON_DECAP_PASS_NOT_TUNNEL, /* not a tunnel packet: untouched */
	REASON_DECAP_DROP_NOT_LOCAL,  /* tunnel packet to an address not configured for decap */
	REASON_DECAP_DROP_NOT_VIP,    /* inner destination is not a VIP served here */
	REASON_DECAP_DROP_MALFORMED,  /* truncated or inconsistent outer / inner headers */
	REASON_DECAP_DROP_FAILED,     /* bpf_skb_adjust_room refused */
	/* balancer, appended */
	REASON_DROP_NOT_SERVED,       /* to a VIP address, but no VIP serves its port / protocol: the
	                               * stack would route it back to the router (a loop) */
	REASON_DROP_ERROR_TOO_BIG,    /* an ICMP error about a VIP flow too big once encapsulated */
	/* decap, appended */
	REASON_DECAP_DROP_CE_NOT_ECT, /* outer header marked CE, inner packet not ECN-capable (RFC 6040) */
	REASON_COUNT,
};

/* Global counters (global_stats index). */
enum gstat {
	GSTAT_CONN_HIT = 0,   /* connection table had the flow */
	GSTAT_CONN_MISS,      /* ring consulted (new flow, SYN, bypass excluded) */
	GSTAT_CONN_UDP_EXPIRED, /* UDP entry found but stale: re-picked */
	GSTAT_DECAPPED,       /* decap: tunnel stripped, inner passed up */
	GSTAT_COUNT,
};

#endif
