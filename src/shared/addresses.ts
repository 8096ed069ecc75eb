// IP address helpers shared by the schemas, the agent and the operator. ipaddr.js
// does the parsing; this module fixes one canonical text form so that the same
// address written two ways ("2001:DB8::1", "2001:db8:0::1") is one identity
// everywhere: ring permutations, map keys, status.
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

/**
 * A dotted quad already in canonical form: four decimal octets, no leading zeros. Most
 * addresses in a node's state are this (tens of thousands of backends), and matching it
 * costs a fraction of an ipaddr.js parse, so the helpers below answer it first.
 */
const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** IPv6 texts seen before → their canonical form (bounded: a node names a few thousand). */
const canonicalV6 = new Map<string, string>();
const CANONICAL_V6_CACHE = 1 << 16;

export function isIpAddress(text: string): boolean {
  if (CANONICAL_V4.test(text) || canonicalV6.has(text)) return true;
  return ipaddr.isValid(text) && (ipaddr.IPv4.isValidFourPartDecimal(text) || text.includes(':'));
}

/** The canonical text of an address: dotted quad, or RFC 5952 IPv6. */
export function canonicalAddress(text: string): string {
  if (CANONICAL_V4.test(text)) return text;
  const known = canonicalV6.get(text);
  if (known !== undefined) return known;
  const parsed = ipaddr.parse(text);
  if (parsed.kind() !== 'ipv6') return parsed.toString();
  const canonical = (parsed as ipaddr.IPv6).toRFC5952String();
  if (canonicalV6.size >= CANONICAL_V6_CACHE) canonicalV6.clear();
  canonicalV6.set(text, canonical);
  return canonical;
}

export function addressFamily(text: string): Family {
  if (CANONICAL_V4.test(text)) return 4;
  if (canonicalV6.has(text)) return 6;
  return ipaddr.parse(text).kind() === 'ipv4' ? 4 : 6;
}

/** Network-order bytes: 4 for IPv4, 16 for IPv6. */
export function addressBytes(text: string): Buffer {
  return Buffer.from(ipaddr.parse(text).toByteArray());
}

export function addressFromBytes(bytes: Uint8Array, family: Family): string {
  return family === 4
    ? ipaddr.fromByteArray(Array.from(bytes.subarray(0, 4))).toString()
    : (ipaddr.fromByteArray(Array.from(bytes.subarray(0, 16))) as ipaddr.IPv6).toRFC5952String();
}
