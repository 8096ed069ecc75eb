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
