/* hash.h — the flow hash: the Linux kernel's jhash_2words, so that user space
 * (src/shared/flowhash.ts) can predict a flow's ring slot and outer source. */
#ifndef FULCRUM_HASH_H
#define FULCRUM_HASH_H

#include <linux/types.h>

#define JHASH_INITVAL 0xdeadbeef

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

#define __jhash_final(a, b, c)           \
	{                                \
		c ^= b; c -= rol32(b, 14); \
		a ^= c; a -= rol32(c, 11); \
		b ^= a; b -= rol32(a, 25); \
		c ^= b; c -= rol32(b, 16); \
		a ^= c; a -= rol32(c, 4);  \
		b ^= a; b -= rol32(a, 14); \
		c ^= b; c -= rol32(b, 24); \
	}

/* An IPv6 address (four words as loaded from the packet, little-endian on the hosts we
 * run on) folded into one word for jhash_2words. The rotations put each word's last
 * bytes — where structured plans vary: the subnet in word 1, the host in word 3 — in
 * different bytes of the result. A plain XOR folded 2001:db8:0:1::2 and 2001:db8:0:2::1
 * alike (and every address whose words were permuted); multiplying instead cannot help,
 * as a product's low bits never see the high bits where those bytes land. */
static __always_inline __u32 fold_ipv6_words(__u32 w0, __u32 w1, __u32 w2, __u32 w3)
{
	return w0 ^ rol32(w1, 8) ^ rol32(w2, 16) ^ rol32(w3, 24);
}

static __always_inline __u32 jhash_2words(__u32 a, __u32 b, __u32 initval)
{
	__u32 c = 0;

	initval += JHASH_INITVAL + (2 << 2);
	a += initval;
	b += initval;
	c += initval;
	__jhash_final(a, b, c);
	return c;
}

#endif
