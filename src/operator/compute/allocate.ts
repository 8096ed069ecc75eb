// VIP address allocation, derived entirely from objects that exist: the addresses that
// LoadBalancerVips ask for (spec.address) or were given (status.address). Nothing is
// remembered between runs, so an operator restart — or a second operator taking over —
// reaches the same answer.
//
// Precedence is the oldest object first (creationTimestamp, then namespace/name): an
// older VIP never loses its address to a newer one, so a conflict settles the same way
// from both sides and does not flap.
import ipaddr from 'ipaddr.js';
import { canonicalAddress } from '../../shared/addresses.ts';
import type { Family } from '../../shared/addresses.ts';
import { parsePoolEntry } from '../api.ts';
import { addressInfo, canonical } from './canonical.ts';
import type { VipPoolSpec } from '../api.ts';

// ------------------------------------------------------------------ address ranges

export interface AddressRange {
  family: Family;
  first: bigint;
  last: bigint;
  /** As written in the pool. */
  text: string;
}

export type RangesOutcome = { kind: 'ok'; ranges: AddressRange[] } | { kind: 'invalid'; message: string };

export function toBigInt(address: string): bigint {
  let n = 0n;
  for (const byte of ipaddr.parse(address).toByteArray()) n = (n << 8n) | BigInt(byte);
  return n;
}

export function fromBigInt(n: bigint, family: Family): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = new Array<number>(len);
  let v = n;
  for (let i = len - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return canonicalAddress(ipaddr.fromByteArray(bytes).toString());
}

/**
 * Parses VipPool.spec.addresses — CIDRs ("192.0.2.0/28", "2001:db8::/120") and inclusive
 * ranges ("192.0.2.10-192.0.2.20") — with the shared API's rules, so the operator and the
 * CRD agree on what an entry means.
 */
export function parseRanges(addresses: readonly string[]): RangesOutcome {
  const ranges: AddressRange[] = [];
  for (const text of addresses) {
    const parsed = parsePoolEntry(text);
    if (parsed.kind === 'invalid') return { kind: 'invalid', message: `${text}: ${parsed.messages.join('; ')}` };
    ranges.push({ family: parsed.range.family, first: parsed.range.first, last: parsed.range.last, text });
  }
  return { kind: 'ok', ranges };
}

export function rangeContains(range: AddressRange, address: string): boolean {
  const info = addressInfo(address);
  if (info === undefined || info.family !== range.family) return false;
  const n = addressNumber(info.canonical);
  return n >= range.first && n <= range.last;
}

const numbers = new Map<string, bigint>();

/** toBigInt of a canonical address, remembered (claims are compared on every reconcile). */
function addressNumber(canonicalText: string): bigint {
  let n = numbers.get(canonicalText);
  if (n === undefined) {
    if (numbers.size >= 200_000) numbers.clear();
    n = toBigInt(canonicalText);
    numbers.set(canonicalText, n);
  }
  return n;
}

/** MetalLB's avoidBuggyIPs: IPv4 addresses ending in .0 or .255 break some old client stacks. */
function isBuggy(n: bigint, family: Family): boolean {
  if (family !== 4) return false;
  const last = n & 0xffn;
  return last === 0n || last === 255n;
}

/** Usable addresses in a range, after avoidBuggyIPs. */
export function rangeSize(range: AddressRange, avoidBuggyIPs: boolean): bigint {
  const total = range.last - range.first + 1n;
  if (!avoidBuggyIPs || range.family !== 4) return total;
  let buggy = 0n;
  // Count .0 and .255 addresses in [first, last]: whole /24 blocks contribute two each.
  const firstBlock = range.first >> 8n;
  const lastBlock = range.last >> 8n;
  for (const block of firstBlock === lastBlock ? [firstBlock] : [firstBlock, lastBlock]) {
    for (const low of [0n, 255n]) {
      const n = (block << 8n) | low;
      if (n >= range.first && n <= range.last) buggy++;
    }
  }
  if (lastBlock - firstBlock > 1n) buggy += (lastBlock - firstBlock - 1n) * 2n;
  return total - buggy;
}

function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

export interface PoolInput {
  name: string;
  created: string;
  spec: VipPoolSpec;
}

/** Pools whose ranges overlap an older pool's: the older one keeps the addresses. */
export function overlappingPools(pools: readonly PoolInput[]): Map<string, string> {
  const sorted = [...pools].sort(byAge);
  const parsed = sorted.map((p) => ({ name: p.name, ranges: (() => { const r = parseRanges(p.spec.addresses); return r.kind === 'ok' ? r.ranges : []; })() }));
  const out = new Map<string, string>();
  for (let i = 0; i < parsed.length; i++) {
    for (let j = 0; j < i; j++) {
      if (out.has(parsed[j]!.name)) continue;
      if (parsed[i]!.ranges.some((a) => parsed[j]!.ranges.some((b) => rangesOverlap(a, b)))) {
        out.set(parsed[i]!.name, parsed[j]!.name);
        break;
      }
    }
  }
  // A pool can also overlap itself (two entries covering the same addresses).
  for (const p of parsed) {
    if (out.has(p.name)) continue;
    for (let i = 0; i < p.ranges.length; i++) {
      for (let j = 0; j < i; j++) if (rangesOverlap(p.ranges[i]!, p.ranges[j]!)) out.set(p.name, p.name);
    }
  }
  return out;
}

function byAge(a: { created: string; name?: string; key?: string }, b: { created: string; name?: string; key?: string }): number {
  if (a.created !== b.created) return a.created < b.created ? -1 : 1;
  const an = a.key ?? a.name ?? '';
  const bn = b.key ?? b.name ?? '';
  return an < bn ? -1 : an > bn ? 1 : 0;
}

// ------------------------------------------------------------------ claims

/** A port a VIP listens on; port 0 = every port of the protocol. */
export interface PortClaim {
  protocol: 'TCP' | 'UDP';
  port: number;
}

/** What one LoadBalancerVip holds or asks for. */
export interface Claim {
  /** namespace/name */
  key: string;
  /** creationTimestamp (RFC 3339 sorts as text). */
  created: string;
  address: string;
  ports: readonly PortClaim[];
  shareKey?: string | undefined;
}

export function portsCollide(a: readonly PortClaim[], b: readonly PortClaim[]): boolean {
  return a.some((x) => b.some((y) => x.protocol === y.protocol && (x.port === 0 || y.port === 0 || x.port === y.port)));
}

/** Two VIPs may use one address only when both carry the same sharing key and their ports differ. */
export function compatible(a: Claim, b: Claim): boolean {
  return a.shareKey !== undefined && a.shareKey === b.shareKey && !portsCollide(a.ports, b.ports);
}

export type ClaimOutcome =
  | { kind: 'held' }
  | { kind: 'conflict'; reason: 'AddressConflict' | 'PortsCollide'; with: string };

/**
 * Settles every claim, oldest first: a claim is held when it is compatible with every
 * claim already held on its address; otherwise it names the holder it lost to.
 */
export function resolveClaims(claims: readonly Claim[]): Map<string, ClaimOutcome> {
  const out = new Map<string, ClaimOutcome>();
  const holders = new Map<string, Claim[]>();
  for (const claim of [...claims].sort(byAge)) {
    const address = canonical(claim.address);
    const held = holders.get(address) ?? [];
    const blocker = held.find((h) => !compatible(h, claim));
    if (blocker !== undefined) {
      const sameKey = blocker.shareKey !== undefined && blocker.shareKey === claim.shareKey;
      out.set(claim.key, { kind: 'conflict', reason: sameKey ? 'PortsCollide' : 'AddressConflict', with: blocker.key });
      continue;
    }
    held.push(claim);
    holders.set(address, held);
    out.set(claim.key, { kind: 'held' });
  }
  return out;
}

// ------------------------------------------------------------------ allocation

export interface AllocationRequest {
  key: string;
  ports: readonly PortClaim[];
  shareKey?: string | undefined;
  /** Wanted family; undefined = the first family in pool order with room. */
  family?: Family | undefined;
}

export type AllocateOutcome =
  | { kind: 'allocated'; address: string; shared: boolean }
  | { kind: 'exhausted'; pool: string }
  | { kind: 'familyUnavailable'; pool: string; family: Family }
  | { kind: 'invalidPool'; pool: string; message: string };

/**
 * The address for a VIP from `pool`, given the claims already held (by other VIPs):
 * an address of a VIP with the same sharing key whose ports do not collide, else the
 * lowest free address in the pool's order.
 */
export function allocate(request: AllocationRequest, pool: PoolInput, held: readonly Claim[]): AllocateOutcome {
  const parsed = parseRanges(pool.spec.addresses);
  if (parsed.kind === 'invalid') return { kind: 'invalidPool', pool: pool.name, message: parsed.message };
  const ranges = parsed.ranges.filter((r) => request.family === undefined || r.family === request.family);
  if (ranges.length === 0) return { kind: 'familyUnavailable', pool: pool.name, family: request.family ?? 4 };

  const others = held.filter((c) => c.key !== request.key);
  const byAddress = new Map<string, Claim[]>();
  for (const c of others) {
    const a = canonical(c.address);
    const list = byAddress.get(a);
    if (list === undefined) byAddress.set(a, [c]);
    else list.push(c);
  }

  const self: Claim = { key: request.key, created: '', address: '', ports: request.ports, shareKey: request.shareKey };
  if (request.shareKey !== undefined) {
    // Reuse a shared address: the first (in pool order) whose every holder accepts us.
    const candidates: string[] = [];
    for (const [address, list] of byAddress) {
      if (!list.some((c) => c.shareKey === request.shareKey)) continue;
      if (!ranges.some((r) => rangeContains(r, address))) continue;
      if (list.every((c) => compatible(c, self))) candidates.push(address);
    }
    candidates.sort((a, b) => (toBigInt(a) < toBigInt(b) ? -1 : 1));
    if (candidates.length > 0) return { kind: 'allocated', address: candidates[0]!, shared: true };
  }

  for (const range of ranges) {
    const used = new Set<bigint>();
    for (const address of byAddress.keys()) if (rangeContains(range, address)) used.add(addressNumber(address));
    for (let n = range.first; n <= range.last; n++) {
      // Bounded by the addresses in use (plus two per /24 when avoiding buggy ones).
      if (used.has(n) || (pool.spec.avoidBuggyIPs && isBuggy(n, range.family))) continue;
      return { kind: 'allocated', address: fromBigInt(n, range.family), shared: false };
    }
  }
  return { kind: 'exhausted', pool: pool.name };
}

export interface PoolUsage {
  /** Distinct addresses of the pool held by some VIP. */
  assigned: number;
  /** Usable addresses left (capped at Number.MAX_SAFE_INTEGER for huge IPv6 pools). */
  available: number;
}

export function poolUsage(pool: PoolInput, held: readonly Claim[]): PoolUsage | undefined {
  const parsed = parseRanges(pool.spec.addresses);
  if (parsed.kind === 'invalid') return undefined;
  const inPool = new Set<string>();
  for (const c of held) {
    const address = canonical(c.address);
    const n = addressNumber(address);
    if (pool.spec.avoidBuggyIPs && isBuggy(n, addressInfo(address)!.family)) continue;
    if (parsed.ranges.some((r) => rangeContains(r, address))) inPool.add(address);
  }
  let size = 0n;
  for (const r of parsed.ranges) size += rangeSize(r, pool.spec.avoidBuggyIPs);
  const left = size - BigInt(inPool.size);
  return { assigned: inPool.size, available: left > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(left < 0n ? 0n : left) };
}

export function poolContains(pool: PoolInput, address: string): boolean {
  const parsed = parseRanges(pool.spec.addresses);
  return parsed.kind === 'ok' && parsed.ranges.some((r) => rangeContains(r, address));
}
