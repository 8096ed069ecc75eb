// The data plane's flow hash, modelled bit for bit (bpf/include/hash.h and the "Flow hash"
// and "Encapsulation" sections of docs/dataplane.md). User space uses it to predict where
// a flow goes — its Maglev ring slot, its outer tunnel source, GUE source port and IPv6
// flow label — without asking the kernel, and the packet fixtures use it to build the
// frames they expect.
//
// All arithmetic is on u32 values kept as non-negative JavaScript numbers: every step that
// can leave the u32 range (add, subtract, shift, xor) is brought back with `>>> 0`.

import ipaddr from 'ipaddr.js';
import { FulcrumError } from './errors.ts';

/** An IP address: text ('10.0.0.1', '2001:db8::1') or its 4 / 16 bytes in network order. */
export type Address = string | Uint8Array;

export type Family = 4 | 6;

/** What the data plane hashes: the client's address and the client→VIP port pair. */
export interface FlowInput {
  readonly family: Family;
  /** The client (source) address. */
  readonly src: Address;
  /** Client port. */
  readonly sport: number;
  /** VIP port. */
  readonly dport: number;
}

export interface RingHashInput extends FlowInput {
  /** The VIP's `src_ip_only` flag: hash the client address alone. */
  readonly srcIpOnly?: boolean;
}

/** The two 32-bit words jhash_2words is fed, exactly as the BPF program loads them. */
export interface HashWords {
  readonly a: number;
  readonly b: number;
}

export const JHASH_INITVAL = 0xdeadbeef;

function rol32(word: number, shift: number): number {
  return ((word << shift) | (word >>> (32 - shift))) >>> 0;
}

/**
 * The Linux kernel's jhash_2words(a, b, initval): three words seeded with
 * JHASH_INITVAL + (2 << 2) + initval, then __jhash_final. Inputs are taken mod 2^32.
 */
export function jhash2words(a: number, b: number, initval: number): number {
  const seed = (initval + JHASH_INITVAL + (2 << 2)) >>> 0;
  a = (a + seed) >>> 0;
  b = (b + seed) >>> 0;
  let c = seed;

  // __jhash_final, line for line.
  c = (c ^ b) >>> 0; c = (c - rol32(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol32(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol32(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol32(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol32(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol32(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol32(b, 24)) >>> 0;
  return c;
}

/**
 * An address as its bytes in network order, checked against the family. Text is parsed
 * strictly: IPv4 only in four-part decimal, so '10.1' is an error rather than 10.0.0.1.
 */
export function addressBytes(address: Address, family: Family): Uint8Array {
  const want = family === 4 ? 4 : 16;
  if (typeof address !== 'string') {
    if (address.length !== want) {
      throw new FulcrumError('ERR_CONFIG', `IPv${family} address must be ${want} bytes, got ${address.length}`, {
        details: { length: address.length, family },
      });
    }
    return address;
  }
  const valid = family === 4 ? ipaddr.IPv4.isValidFourPartDecimal(address) : ipaddr.IPv6.isValid(address);
  if (!valid) {
    throw new FulcrumError('ERR_CONFIG', `not an IPv${family} address: '${address}'`, { details: { address, family } });
  }
  const parsed = family === 4 ? ipaddr.IPv4.parse(address) : ipaddr.IPv6.parse(address);
  return Uint8Array.from(parsed.toByteArray());
}

/** The family of an address: from its byte length, or from its text. */
export function addressFamily(address: Address): Family {
  if (typeof address !== 'string') {
    if (address.length === 4) return 4;
    if (address.length === 16) return 6;
    throw new FulcrumError('ERR_CONFIG', `an address is 4 or 16 bytes, got ${address.length}`, {
      details: { length: address.length },
    });
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(address)) return 4;
  if (ipaddr.IPv6.isValid(address)) return 6;
  throw new FulcrumError('ERR_CONFIG', `not an IP address: '${address}'`, { details: { address } });
}

/** Address bytes as text: dotted quad, or RFC 5952 compressed IPv6. */
export function formatAddress(bytes: Uint8Array): string {
  if (bytes.length !== 4 && bytes.length !== 16) {
    throw new FulcrumError('ERR_CONFIG', `an address is 4 or 16 bytes, got ${bytes.length}`, {
      details: { length: bytes.length },
    });
  }
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

// A u32 load from packet memory on a little-endian host.
function loadLe32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] ?? 0) | ((bytes[offset + 1] ?? 0) << 8) | ((bytes[offset + 2] ?? 0) << 16) |
    ((bytes[offset + 3] ?? 0) << 24)) >>> 0;
}

function checkPort(port: number, name: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new FulcrumError('ERR_CONFIG', `${name} must be an integer port 0..65535, got ${port}`, {
      details: { [name]: port },
    });
  }
}

/**
 * The hash words of a flow. `a` is the source address loaded as little-endian u32 words
 * (IPv6 folded as w0 ^ rol(w1, 8) ^ rol(w2, 16) ^ rol(w3, 24): bpf/include/hash.h
 * fold_ipv6_words); `b` is the wire bytes of source port then destination port loaded as
 * one little-endian u32 — so each port appears byte-swapped in it.
 */
export function hashWords(flow: FlowInput): HashWords {
  const src = addressBytes(flow.src, flow.family);
  checkPort(flow.sport, 'sport');
  checkPort(flow.dport, 'dport');
  const a = flow.family === 4
    ? loadLe32(src, 0)
    : (loadLe32(src, 0) ^ rol32(loadLe32(src, 4), 8) ^ rol32(loadLe32(src, 8), 16) ^ rol32(loadLe32(src, 12), 24)) >>> 0;
  const b = ((flow.sport >>> 8) | ((flow.sport & 0xff) << 8) | ((flow.dport >>> 8) << 16) |
    ((flow.dport & 0xff) << 24)) >>> 0;
  return { a, b };
}

/** A flow's entropy: jhash_2words(a, b, 0). Feeds the outer source, GUE port and flow label. */
export function flowEntropy(flow: FlowInput): number {
  const { a, b } = hashWords(flow);
  return jhash2words(a, b, 0);
}

/** The hash that picks the ring slot: the entropy, or jhash_2words(a, 0, 0) for src_ip_only VIPs. */
export function ringHash(flow: RingHashInput): number {
  const { a, b } = hashWords(flow);
  return flow.srcIpOnly === true ? jhash2words(a, 0, 0) : jhash2words(a, b, 0);
}

/** The slot within the VIP's ring: (ring_hash × ring_size) >> 32, the data plane's
 * division-free range reduction (uniform like a modulo). */
export function ringSlot(hash: number, ringSize: number): number {
  if (!Number.isInteger(ringSize) || ringSize < 1 || ringSize > 0xffffffff) {
    throw new FulcrumError('ERR_CONFIG', `ring size must be a positive u32, got ${ringSize}`, { details: { ringSize } });
  }
  return Number((BigInt(hash >>> 0) * BigInt(ringSize)) >> 32n);
}

/** IPIP outer IPv4 source: the upper 16 bits of tunnel_src4, the low 16 bits of the entropy. */
export function tunnelSource4(prefix: Address, entropy: number): string {
  const bytes = addressBytes(prefix, 4);
  return formatAddress(Uint8Array.of(bytes[0] ?? 0, bytes[1] ?? 0, (entropy >>> 8) & 0xff, entropy & 0xff));
}

/** IP6IP6 / IPv4-in-IPv6 outer source: the first 12 bytes of tunnel_src6, then the entropy big-endian. */
export function tunnelSource6(prefix: Address, entropy: number): string {
  const out = new Uint8Array(16);
  out.set(addressBytes(prefix, 6).subarray(0, 12), 0);
  out[12] = (entropy >>> 24) & 0xff;
  out[13] = (entropy >>> 16) & 0xff;
  out[14] = (entropy >>> 8) & 0xff;
  out[15] = entropy & 0xff;
  return formatAddress(out);
}

/** GUE outer UDP source port: always in the upper half, so it never collides with well-known ports. */
export function gueSourcePort(entropy: number): number {
  return 0x8000 | (entropy & 0x7fff);
}

/** Outer IPv6 flow label: the low 20 bits of the entropy. */
export function flowLabel(entropy: number): number {
  return (entropy & 0xfffff) >>> 0;
}
