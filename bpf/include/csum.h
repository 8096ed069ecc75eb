/* csum.h — Internet checksum helpers (RFC 1071 / RFC 1624), verifier-friendly. */
#ifndef FULCRUM_CSUM_H
#define FULCRUM_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Checksum of a 20-byte IPv4 header whose checksum field is zero. */
static __always_inline __u16 ipv4_header_csum(const void *iph)
{
	const __u16 *w = iph;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

/* RFC 1624 eqn. 3: the checksum after one 16-bit word changed from old to new. */
static __always_inline __u16 csum_replace2(__u16 check, __u16 old, __u16 new)
{
	__u64 sum = (__u16)~check;

	sum += (__u16)~old;
	sum += new;
	return csum_fold(sum);
}

#endif
