// Internet checksums (RFC 1071) for the packet builder and decoder: the IPv4 header
// checksum and the TCP / UDP / ICMPv6 checksums over their IPv4 or IPv6 pseudo-header.
//
// Convention: a checksum function returns the value to store in the field, computed over
// the bytes as given — so callers zero the field first. Run over a packet whose field is
// already filled in, the same function returns 0 when the checksum is right.

import type { Family } from '../../src/shared/flowhash.ts';

/**
 * The 16-bit one's-complement sum of the concatenation of `chunks`, not yet complemented.
 * An odd-length chunk pairs its last byte with the next chunk's first, exactly as if the
 * chunks were one buffer; a trailing odd byte is padded with a zero.
 */
export function onesComplementSum(...chunks: readonly Uint8Array[]): number {
  let sum = 0;
  let odd = false; // a high byte is waiting for its low byte from the next chunk
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] ?? 0;
      sum += odd ? byte : byte << 8;
      odd = !odd;
    }
    // Fold as we go so the sum stays well inside the exact-integer range of a double.
    // (Division, not >>> 16, which would truncate a huge chunk's sum to 32 bits.)
    sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The Internet checksum: the complement of the one's-complement sum of the chunks. */
export function internetChecksum(...chunks: readonly Uint8Array[]): number {
  return ~onesComplementSum(...chunks) & 0xffff;
}

/** The IPv4 header checksum of `header` (IHL * 4 bytes), ignoring whatever its field holds. */
export function ipv4HeaderChecksum(header: Uint8Array): number {
  const copy = Uint8Array.from(header);
  copy[10] = 0;
  copy[11] = 0;
  return internetChecksum(copy);
}

/** The pseudo-header an upper-layer checksum covers: RFC 793 for IPv4, RFC 8200 §8.1 for IPv6. */
export function pseudoHeader(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number): Uint8Array {
  if (family === 4) {
    const ph = new Uint8Array(12);
    ph.set(src, 0);
    ph.set(dst, 4);
    ph[9] = protocol;
    ph[10] = (length >>> 8) & 0xff;
    ph[11] = length & 0xff;
    return ph;
  }
  const ph = new Uint8Array(40);
  ph.set(src, 0);
  ph.set(dst, 16);
  new DataView(ph.buffer).setUint32(32, length);
  ph[39] = protocol;
  return ph;
}

/**
 * The TCP / UDP / ICMPv6 checksum of `segment` (header and payload, checksum field as
 * given) under the pseudo-header for (src, dst, protocol, segment length).
 */
export function transportChecksum(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, segment: Uint8Array): number {
  return internetChecksum(pseudoHeader(family, src, dst, protocol, segment.length), segment);
}
