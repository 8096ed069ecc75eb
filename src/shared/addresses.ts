// IP address helpers shared by the schemas, the agent and the operator. ipaddr.js
// does the parsing; this module fixes one canonical text form so that the same
// address written two ways ("2001:DB8::1", "2001:db8:0::1") is one identity
// everywhere: ring permutations, map keys, status.
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export function isIpAddress(text: string): boolean {
  return ipaddr.isValid(text) && (ipaddr.IPv4.isValidFourPartDecimal(text) || text.includes(':'));
}

/** The canonical text of an address: dotted quad, or RFC 5952 IPv6. */
export function canonicalAddress(text: string): string {
  const parsed = ipaddr.parse(text);
  return parsed.kind() === 'ipv6' ? (parsed as ipaddr.IPv6).toRFC5952String() : parsed.toString();
}

export function addressFamily(text: string): Family {
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
