// Address parsing, remembered: the same few thousand endpoint and VIP addresses are
// checked and canonicalised on every reconcile, and parsing them is the hot part of
// placement. Pure: a cache of a pure function.
import { addressFamily, canonicalAddress, isIpAddress } from '../../shared/addresses.ts';
import type { Family } from '../../shared/addresses.ts';

export interface AddressInfo {
  canonical: string;
  family: Family;
}

const memo = new Map<string, AddressInfo | null>();
const LIMIT = 200_000;

/** The canonical text and family of an address, or undefined when it is not one. */
export function addressInfo(text: string): AddressInfo | undefined {
  let info = memo.get(text);
  if (info === undefined) {
    info = isIpAddress(text) ? { canonical: canonicalAddress(text), family: addressFamily(text) } : null;
    // A bound, not an LRU: past it, start over (addresses churn slowly).
    if (memo.size >= LIMIT) memo.clear();
    memo.set(text, info);
  }
  return info ?? undefined;
}

export function canonical(text: string): string {
  return addressInfo(text)?.canonical ?? canonicalAddress(text);
}
