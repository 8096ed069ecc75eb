/* ecn.h — RFC 6040 decapsulation: the congestion mark a router put on the outer header
 * must reach the inner packet, or the endpoints never learn of the congestion.
 *
 *   outer \ inner   Not-ECT   ECT(0)   ECT(1)   CE
 *   Not-ECT / ECT(0)  (inner unchanged)
 *   ECT(1)          Not-ECT   ECT(1)   ECT(1)   CE
 *   CE              drop      CE       CE       CE
 *
 * CE over Not-ECT is dropped: the inner transport cannot carry the mark, and a drop is
 * the congestion signal it understands. */
#ifndef FULCRUM_ECN_H
#define FULCRUM_ECN_H

#include <linux/types.h>

#define ECN_NOT_ECT 0
#define ECN_ECT1 1
#define ECN_ECT0 2
#define ECN_CE 3

#define ECN_DROP 0xff

/* The inner ECN field after decapsulation, or ECN_DROP. */
static __always_inline __u8 ecn_decap(__u8 outer, __u8 inner)
{
	if (outer == ECN_CE)
		return inner == ECN_NOT_ECT ? ECN_DROP : ECN_CE;
	if (outer == ECN_ECT1 && inner == ECN_ECT0)
		return ECN_ECT1;
	return inner;
}

#endif
