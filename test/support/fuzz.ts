// The packet fuzzer's machinery (test/bpf/fuzz.test.ts runs it): a seeded PRNG, mutators
// that turn valid seed frames into near-valid and broken ones, and two reference models
// that say, from docs/dataplane.md alone, what the balancer and the decap program may do
// with a frame. The models read bytes themselves; they share nothing with bpf/ and use
// the packet builder (packets.ts) only to build the exact frames a TX or a decapsulation
// must produce.
//
// Everything a frame gets is a function of (seed, frame index): a failure is replayed by
// running that one frame again (FULCRUM_FUZZ_SEED, FULCRUM_FUZZ_REPLAY).

import { Buffer } from 'node:buffer';
import { addressBytes, flowEntropy, ringHash, ringSlot, type Family } from '../../src/shared/flowhash.ts';
import type { Reason } from '../../src/shared/reasons.ts';
import { internetChecksum, transportChecksum } from './checksum.ts';
import {
  balancerEchoReply, balancerFragNeeded, balancerPacketTooBig, decapEcn, decapsulate, ecnOf, encapOverhead, encapsulate,
  type TunnelConfig,
} from './packets.ts';

// ─── PRNG ────────────────────────────────────────────────────────────────────────────

/** mulberry32: a small, fast 32-bit generator; reseeded per frame from (seed, index). */
export class Rng {
  #s = 0;

  reseed(seed: number, index: number): void {
    // splitmix-style mix so neighbouring indices give unrelated streams.
    let z = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    this.#s = (z ^ (z >>> 16)) >>> 0;
  }

  u32(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }

  chance(p: number): boolean {
    return this.u32() < p * 0x100000000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

// ─── Frame layers (for targeted mutations) ───────────────────────────────────────────

export const L_ETH = 1, L_IP4 = 2, L_IP6 = 3, L_TCP = 4, L_UDP = 5, L_ICMP = 6, L_ICMP6 = 7;

/**
 * The layers of a frame as far as its bytes go: kinds[i] at offsets[i]. Follows IPIP,
 * GUE-looking UDP and ICMP error quotes, so inner and quoted headers are mutated too.
 * Returns the number of layers (at most kinds.length).
 */
export function walkLayers(buf: Buffer, len: number, kinds: Uint8Array, offsets: Int32Array): number {
  let n = 0;
  const push = (kind: number, off: number) => {
    if (n < kinds.length) {
      kinds[n] = kind;
      offsets[n] = off;
      n++;
    }
  };
  push(L_ETH, 0);
  if (len < 14) return n;
  let type = buf.readUInt16BE(12);
  let off = 14;
  while ((type === 0x8100 || type === 0x88a8) && off + 4 <= len) {
    type = buf.readUInt16BE(off + 2);
    off += 4;
  }
  let version = type === 0x0800 ? 4 : type === 0x86dd ? 6 : 0;
  for (let depth = 0; depth < 3 && version !== 0; depth++) {
    let proto: number;
    let l4: number;
    if (version === 4) {
      if (off + 20 > len) return n;
      push(L_IP4, off);
      proto = buf[off + 9]!;
      l4 = off + Math.max(5, buf[off]! & 0x0f) * 4;
    } else {
      if (off + 40 > len) return n;
      push(L_IP6, off);
      proto = buf[off + 6]!;
      l4 = off + 40;
    }
    version = 0;
    if (l4 >= len) return n;
    if (proto === 4 || proto === 41) {
      version = proto === 4 ? 4 : 6;
      off = l4;
    } else if (proto === 6) {
      push(L_TCP, l4);
    } else if (proto === 17) {
      push(L_UDP, l4);
      const v = (buf[l4 + 8] ?? 0) >>> 4;
      if (v === 4 || v === 6) {
        version = v;
        off = l4 + 8;
      }
    } else if (proto === 1 || proto === 58) {
      push(proto === 1 ? L_ICMP : L_ICMP6, l4);
      const v = (buf[l4 + 8] ?? 0) >>> 4;
      if (v === 4 || v === 6) {
        version = v;
        off = l4 + 8;
      }
    }
  }
  return n;
}

// ─── Mutators ────────────────────────────────────────────────────────────────────────

/** Values the mutators steer fields towards: the world's addresses and ports. */
export interface MutationPools {
  readonly addr4: readonly Uint8Array[];
  readonly addr6: readonly Uint8Array[];
  readonly ports: readonly number[];
}

const INTERESTING8 = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x45, 0x46, 0x60, 4, 5, 6, 17, 41, 58, 0x20, 0x3f];
const ETHER_TYPES = [0x0800, 0x86dd, 0x8100, 0x88a8, 0x0806, 0x0000, 0xffff];
const IP4_PROTOS = [1, 4, 6, 17, 41, 47, 58, 0, 44, 132, 50];
const IP6_NEXT = [6, 17, 58, 0, 43, 44, 60, 59, 4, 41, 47, 51, 135, 139, 140, 253, 254, 1, 132];
const IP4_VIHL = [0x45, 0x46, 0x44, 0x40, 0x4f, 0x55, 0x65, 0x35, 0x47];
const FRAG_WORDS = [0x4000, 0x2000, 0x6000, 0x0001, 0x00b9, 0x8000, 0xc000, 0x20b9, 0x0000, 0x4001];
const ICMP4_TYPES = [0, 3, 3, 3, 8, 8, 11, 12, 5, 13, 255];
const ICMP6_TYPES = [1, 1, 2, 2, 3, 4, 128, 128, 129, 133, 135, 136, 255];
const TCP_FLAGS = [0x02, 0x10, 0x12, 0x04, 0x14, 0x01, 0x11, 0x18, 0x00, 0xff, 0x03, 0x06];
const LENGTH_DELTAS = [-1, 1, -2, 2, -4, 4, -8, 8, -20, 20, -40, 40, -0x100, 0x100];

/** Frames never grow past this (XDP test runs take at most a page). */
export const MAX_FRAME = 1800;

/** Recomputes the IPv4 header checksum of the header at `off` (IHL as the header says). */
export function fixIpv4Checksum(buf: Buffer, len: number, off: number): void {
  const hlen = (buf[off]! & 0x0f) * 4;
  if (hlen < 20 || off + hlen > len) return;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  buf.writeUInt16BE(internetChecksum(buf.subarray(off, off + hlen)), off + 10);
}

/**
 * The fuzzer's mutation step: one change to the frame in buf[0, len), returning the new
 * length (never below 14). `layers` is scratch space.
 */
export class Mutator {
  readonly #kinds = new Uint8Array(8);
  readonly #offsets = new Int32Array(8);
  readonly #pools: MutationPools;
  /** Chance of fixing the IPv4 header checksum after a header change (the decap program checks it). */
  readonly #fixChecksum: number;

  constructor(pools: MutationPools, fixChecksum: number) {
    this.#pools = pools;
    this.#fixChecksum = fixChecksum;
  }

  mutate(rng: Rng, buf: Buffer, len: number): number {
    const r = rng.below(100);
    if (r < 45) return this.#field(rng, buf, len);
    if (r < 57) return this.#truncate(rng, buf, len);
    if (r < 67) {
      // Bit flips, clustered in the headers where they matter.
      const flips = 1 + rng.below(4);
      const span = Math.min(len, rng.chance(0.8) ? 120 : len);
      for (let i = 0; i < flips; i++) buf[rng.below(span)]! ^= 1 << rng.below(8);
      return len;
    }
    if (r < 77) {
      const at = rng.below(Math.min(len, rng.chance(0.8) ? 120 : len));
      buf[at] = rng.chance(0.5) ? rng.pick(INTERESTING8) : rng.below(256);
      return len;
    }
    if (r < 84) {
      // Bytes after the packet: Ethernet padding, or junk that no length counts.
      const extra = rng.chance(0.8) ? 1 + rng.below(48) : 1 + rng.below(MAX_FRAME - len + 1);
      const end = Math.min(MAX_FRAME, len + extra);
      if (rng.chance(0.5)) buf.fill(0, len, end);
      else for (let i = len; i < end; i++) buf[i] = rng.below(256);
      return end;
    }
    if (r < 92) return this.#address(rng, buf, len);
    // A swap of two 2-byte words inside the first 80 bytes (ports, lengths, types).
    const a = rng.below(Math.max(1, Math.min(len, 80) - 1));
    const b = rng.below(Math.max(1, Math.min(len, 80) - 1));
    const t = buf.readUInt16BE(a);
    buf.writeUInt16BE(buf.readUInt16BE(b), a);
    buf.writeUInt16BE(t, b);
    return len;
  }

  #truncate(rng: Rng, buf: Buffer, len: number): number {
    const n = walkLayers(buf, len, this.#kinds, this.#offsets);
    let cut: number;
    if (rng.chance(0.7) && n > 0) {
      const i = rng.below(n);
      const off = this.#offsets[i]!;
      const size = [0, 14, 20, 40, 20, 8, 8, 8][this.#kinds[i]!]!;
      cut = off + rng.pick([0, 1, size - 1, size, size + 1, size + 3, size + 4, Math.floor(size / 2)]);
    } else {
      cut = rng.below(len + 1);
    }
    return Math.max(14, Math.min(len, cut));
  }

  #address(rng: Rng, buf: Buffer, len: number): number {
    const n = walkLayers(buf, len, this.#kinds, this.#offsets);
    const ips: number[] = [];
    for (let i = 0; i < n; i++) if (this.#kinds[i] === L_IP4 || this.#kinds[i] === L_IP6) ips.push(i);
    if (ips.length === 0) return len;
    const i = rng.pick(ips);
    const off = this.#offsets[i]!;
    const v4 = this.#kinds[i] === L_IP4;
    const which = rng.chance(0.65) ? 'dst' : 'src';
    const at = off + (v4 ? (which === 'dst' ? 16 : 12) : (which === 'dst' ? 24 : 8));
    const pool = v4 ? this.#pools.addr4 : this.#pools.addr6;
    if (rng.chance(0.15)) {
      // The two addresses swapped (a reply, or a quote turned round).
      const other = off + (v4 ? (which === 'dst' ? 12 : 16) : (which === 'dst' ? 8 : 24));
      const size = v4 ? 4 : 16;
      if (other + size <= len && at + size <= len) {
        const saved = Buffer.from(buf.subarray(at, at + size));
        buf.copy(buf, at, other, other + size);
        saved.copy(buf, other);
      }
    } else {
      const a = rng.pick(pool);
      for (let k = 0; k < a.length && at + k < len; k++) buf[at + k] = a[k]!;
    }
    if (v4 && rng.chance(this.#fixChecksum)) fixIpv4Checksum(buf, len, off);
    return len;
  }

  #field(rng: Rng, buf: Buffer, len: number): number {
    const n = walkLayers(buf, len, this.#kinds, this.#offsets);
    const i = rng.below(n);
    const kind = this.#kinds[i]!;
    const off = this.#offsets[i]!;
    const set16 = (at: number, v: number) => {
      if (at + 2 <= len) buf.writeUInt16BE(v & 0xffff, at);
    };
    const get16 = (at: number) => (at + 2 <= len ? buf.readUInt16BE(at) : 0);
    const set8 = (at: number, v: number) => {
      if (at < len) buf[at] = v & 0xff;
    };
    const lengthLie = (cur: number, actual: number) => {
      const r = rng.below(6);
      if (r === 0) return actual;
      if (r === 1) return rng.pick([0, 1, 7, 8, 19, 20, 39, 40, 0xffff]);
      if (r === 2) return rng.below(0x10000);
      return cur + rng.pick(LENGTH_DELTAS);
    };
    switch (kind) {
      case L_ETH:
        if (rng.chance(0.8)) set16(12, rng.pick(ETHER_TYPES));
        else for (let k = 0; k < 6; k++) buf[k] = rng.below(256);
        return len;
      case L_IP4: {
        const f = rng.below(9);
        if (f === 0) set8(off, rng.pick(IP4_VIHL));
        else if (f === 1) set8(off + 1, rng.below(256));
        else if (f === 2 || f === 3) set16(off + 2, lengthLie(get16(off + 2), len - off));
        else if (f === 4) set16(off + 6, rng.pick(FRAG_WORDS));
        else if (f === 5 || f === 6) set8(off + 9, rng.pick(IP4_PROTOS));
        else if (f === 7) set8(off + 8, rng.pick([0, 1, 64, 255]));
        else set16(off + 10, rng.below(0x10000));
        if (f !== 8 && rng.chance(this.#fixChecksum)) fixIpv4Checksum(buf, len, off);
        return len;
      }
      case L_IP6: {
        const f = rng.below(5);
        if (f === 0) set8(off, ((rng.chance(0.5) ? rng.pick([4, 5, 0, 7]) : 6) << 4) | (buf[off]! & 0x0f));
        else if (f === 1) set16(off, (get16(off) & 0xf00f) | (rng.below(256) << 4)); // traffic class
        else if (f === 2 || f === 3) set16(off + 4, lengthLie(get16(off + 4), len - off - 40));
        else set8(off + 6, rng.pick(IP6_NEXT));
        return len;
      }
      case L_TCP: {
        const f = rng.below(4);
        if (f === 0) set16(off, rng.pick(this.#pools.ports));
        else if (f === 1) set16(off + 2, rng.pick(this.#pools.ports));
        else if (f === 2) set8(off + 12, (rng.below(16) << 4) | ((buf[off + 12] ?? 0) & 0x0f));
        else set8(off + 13, rng.pick(TCP_FLAGS));
        return len;
      }
      case L_UDP: {
        const f = rng.below(4);
        if (f === 0) set16(off, rng.pick(this.#pools.ports));
        else if (f === 1) set16(off + 2, rng.pick(this.#pools.ports));
        else if (f === 2) set16(off + 4, lengthLie(get16(off + 4), len - off));
        else set16(off + 6, rng.chance(0.5) ? 0 : rng.below(0x10000));
        return len;
      }
      default: {
        // ICMP / ICMPv6: type, code, the second word (MTU), checksum.
        const f = rng.below(4);
        if (f === 0) set8(off, rng.pick(kind === L_ICMP ? ICMP4_TYPES : ICMP6_TYPES));
        else if (f === 1) set8(off + 1, rng.pick([0, 1, 3, 4, 13, 255]));
        else if (f === 2) set16(off + 6, rng.pick([0, 68, 576, 1280, 1400, 0xffff]));
        else set16(off + 2, rng.below(0x10000));
        return len;
      }
    }
  }
}

/** A random frame of 14 to 200 bytes, half of them with an IP EtherType and version nibble. */
export function garbageFrame(rng: Rng, buf: Buffer): number {
  const len = 14 + rng.below(187);
  for (let i = 0; i < len; i++) buf[i] = rng.below(256);
  if (rng.chance(0.5)) {
    const v6 = rng.chance(0.5);
    buf.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
    if (len > 14) buf[14] = ((v6 ? 6 : 4) << 4) | (v6 ? buf[14]! & 0x0f : 5);
  }
  return len;
}

// ─── The balancer's reference model (docs/dataplane.md, "Packet path") ───────────────

export type Verdict = 'PASS' | 'DROP' | 'TX';

/** What a frame may get. `tx` says which TX is allowed and what it must be. */
export interface Expectation {
  pass: boolean;
  drop: boolean;
  /** A TX the frame may get: the exact output frame (or null: accept a TX unchecked, see `note`). */
  tx: {
    kind: 'forward' | 'echo' | 'too_big'; vip?: number; build: (() => Buffer) | null; maskChecksumAt?: number;
    /** Also accepted: the built frame with its quote (after `header` bytes of IP + ICMP) taken from the frame's L3 bytes. */
    quoteOf?: { from: number; header: number };
  } | null;
  /** Why the model allows more than one outcome, counted and reported (docs leave it open). */
  note?: string;
  /** The docs/dataplane.md rule that decided (names the failure when the program disagrees). */
  rule?: string;
  /** The reason counters a PASS / a DROP may move (one of them, by one). A TX moves its tx_ reason or, for a forward, the VIP's counter. */
  passReasons?: readonly Reason[];
  dropReasons?: readonly Reason[];
  /** The flow's ICMP error was not addressed to a VIP address (forward allowed by the docs). */
  errorToOtherAddress?: boolean;
}

export interface WorldVipDef {
  readonly id: number;
  readonly address: string;
  readonly port: number;
  readonly protocol: number;
  readonly flags: number;
  /** Backend id per ring slot. */
  readonly ring: readonly number[];
}

export interface BalancerWorld {
  readonly vips: readonly WorldVipDef[];
  readonly backends: ReadonlyMap<number, string>;
  readonly maxBackends: number;
  readonly maxVips: number;
  readonly ringSize: number;
  readonly mtu: number;
  readonly tunnel: TunnelConfig;
  readonly gueFlag: number;
  readonly srcIpOnlyFlag: number;
}

/** IPv6 extension headers other than the fragment header (docs/dataplane.md, Decisions). */
const IPV6_EXT = new Set([0, 43, 60, 51, 135, 139, 140, 253, 254]);

function addrKey(buf: Buffer, at: number, size: number): string {
  return buf.toString('hex', at, at + size);
}

/** Outcomes decided by the model: each a function of the frame bytes only. */
export class BalancerModel {
  readonly #world: BalancerWorld;
  readonly #vipAddrs = new Set<string>();
  readonly #vips = new Map<string, WorldVipDef>();

  constructor(world: BalancerWorld) {
    this.#world = world;
    for (const v of world.vips) {
      const family: Family = v.address.includes(':') ? 6 : 4;
      const key = Buffer.from(addressBytes(v.address, family)).toString('hex');
      this.#vipAddrs.add(key);
      this.#vips.set(`${key}/${v.port}/${v.protocol}`, v);
    }
  }

  #isVipAddress(buf: Buffer, at: number, size: number): boolean {
    return this.#vipAddrs.has(addrKey(buf, at, size)); // 0.0.0.0 / :: are never VIPs
  }

  /** The VIP serving (address, port, protocol), or the all-port one. */
  #vip(buf: Buffer, at: number, size: number, port: number, proto: number): WorldVipDef | undefined {
    const key = addrKey(buf, at, size);
    return this.#vips.get(`${key}/${port}/${proto}`) ?? this.#vips.get(`${key}/0/${proto}`);
  }

  expect(frame: Buffer): Expectation {
    const len = frame.length;
    const type = frame.readUInt16BE(12);
    const only = (v: 'pass' | 'drop', rule: string, ...reasons: Reason[]): Expectation =>
      ({ pass: v === 'pass', drop: v === 'drop', tx: null, rule, [v === 'pass' ? 'passReasons' : 'dropReasons']: reasons });
    if (type === 0x8100 || type === 0x88a8) return only('pass', 'VLAN-tagged frames pass', 'pass_vlan');
    if (type !== 0x0800 && type !== 0x86dd) return only('pass', 'non-IP frames pass', 'pass_not_ip');
    const l3 = 14;
    const l3len = len - l3;

    let v6: boolean, hlen: number, ipEnd: number, proto: number, dstAt: number, asize: number;
    if (type === 0x0800) {
      if (l3len < 20) return only('drop', 'malformed IPv4 header is dropped', 'drop_malformed');
      const ihl = frame[l3]! & 0x0f;
      const totLen = frame.readUInt16BE(l3 + 2);
      if (frame[l3]! >>> 4 !== 4 || ihl < 5 || totLen < ihl * 4 || totLen > l3len) return only('drop', 'malformed IPv4 header is dropped', 'drop_malformed');
      v6 = false;
      hlen = ihl * 4;
      ipEnd = l3 + totLen;
      proto = frame[l3 + 9]!;
      dstAt = l3 + 16;
      asize = 4;
      const toVip = this.#isVipAddress(frame, dstAt, asize);
      if (ihl !== 5) {
        // With options and fragment bits both, the docs do not say which reason counts.
        return toVip ? only('drop', 'IPv4 options: dropped to a VIP address', 'drop_ip_options', ...(frame.readUInt16BE(l3 + 6) & 0x3fff ? ['drop_fragment' as const] : []))
          : only('pass', 'IPv4 options to another address: passed', 'pass_not_vip');
      }
      if ((frame.readUInt16BE(l3 + 6) & 0x3fff) !== 0) {
        return toVip ? only('drop', 'fragments: dropped to a VIP address', 'drop_fragment') : only('pass', 'fragments to another address: passed', 'pass_not_vip');
      }
    } else {
      if (l3len < 40) return only('drop', 'malformed IPv6 header is dropped', 'drop_malformed');
      const payloadLen = frame.readUInt16BE(l3 + 4);
      if (frame[l3]! >>> 4 !== 6 || 40 + payloadLen > l3len) return only('drop', 'malformed IPv6 header is dropped', 'drop_malformed');
      v6 = true;
      hlen = 40;
      ipEnd = l3 + 40 + payloadLen;
      proto = frame[l3 + 6]!;
      dstAt = l3 + 24;
      asize = 16;
    }
    const toVip = this.#isVipAddress(frame, dstAt, asize);
    const l4 = l3 + hlen;
    const icmpProto = v6 ? 58 : 1;

    if (proto === icmpProto) return this.#icmp(frame, v6, l4, ipEnd, toVip);
    if (proto !== 6 && proto !== 17) {
      if (!toVip) return only('pass', 'extension headers, other transports to another address: passed', 'pass_not_vip');
      if (v6 && proto === 44) return only('drop', 'IPv6 fragment header to a VIP address: dropped', 'drop_fragment');
      if (v6 && IPV6_EXT.has(proto)) return only('drop', 'IPv6 extension header to a VIP address: dropped', 'drop_ipv6_ext');
      return only('drop', 'another transport to a VIP address: drop_not_served', 'drop_not_served');
    }
    if (!toVip) return only('pass', 'TCP/UDP to a non-VIP address passes', 'pass_not_vip');

    // TCP / UDP to a VIP address: the transport header, read from the frame.
    const need = proto === 6 ? 20 : 8;
    if (l4 + need > len) return only('drop', 'transport header cut short to a VIP address is dropped', 'drop_malformed');
    const headerBad = proto === 6 ? frame[l4 + 12]! >>> 4 < 5 : frame.readUInt16BE(l4 + 4) < 8;
    if (headerBad) return only('drop', 'TCP doff < 5 / UDP length < 8 to a VIP address is dropped', 'drop_malformed');
    const outcome = this.#balance(frame, v6, l3, ipEnd - l3, frame.readUInt16BE(l4), frame.readUInt16BE(l4 + 2), proto,
      frame.subarray(l3 + (v6 ? 8 : 12), l3 + (v6 ? 24 : 16)), dstAt, asize, 'client');
    if (l4 + need > ipEnd) {
      // The header is in the frame but beyond the IP length (in the padding): docs/dataplane.md
      // says "a transport header cut short is dropped" without saying against which end.
      outcome.drop = true;
      outcome.dropReasons = [...(outcome.dropReasons ?? []), 'drop_malformed'];
      outcome.note = 'transport header beyond the IP length, inside the frame';
    }
    return outcome;
  }

  #icmp(frame: Buffer, v6: boolean, l4: number, ipEnd: number, toVip: boolean): Expectation {
    const len = frame.length;
    if (l4 + 8 > len) return { pass: !toVip, drop: toVip, tx: null, rule: 'ICMP header cut short', passReasons: ['pass_not_vip', 'pass_icmp_other'], dropReasons: ['drop_malformed'] };
    const icmpType = frame[l4]!;
    const shortNote = l4 + 8 > ipEnd ? 'ICMP header beyond the IP length, inside the frame' : undefined;
    if (icmpType === (v6 ? 128 : 8)) {
      if (!toVip) return { pass: true, drop: false, tx: null, rule: 'echo to a non-VIP address passes', passReasons: ['pass_not_vip'] };
      if (shortNote) return { pass: false, drop: true, tx: { kind: 'echo', build: null }, note: shortNote, dropReasons: ['drop_malformed'] };
      // The reply's ICMP checksum is updated, not recomputed: a wrong one in the request stays
      // wrong, where the builder computes a right one. Compare it only when it was right.
      const message = frame.subarray(l4, ipEnd);
      const icmpOk = v6
        ? transportChecksum(6, frame.subarray(22, 38), frame.subarray(38, 54), 58, message) === 0
        : internetChecksum(message) === 0;
      return {
        pass: false, drop: false,
        tx: { kind: 'echo', build: () => balancerEchoReply(frame), ...(icmpOk ? {} : { maskChecksumAt: l4 + 2 }) },
        rule: 'echo request to a VIP address is answered',
      };
    }
    const isError = v6 ? icmpType === 1 || icmpType === 2 : icmpType === 3;
    const passOnly: Expectation = {
      pass: true, drop: false, tx: null, rule: 'ICMP other than an error about a VIP flow passes',
      passReasons: toVip ? ['pass_icmp_other'] : ['pass_icmp_other', 'pass_not_vip'], ...(shortNote ? { note: shortNote } : {}),
    };
    if (!isError) return passOnly;

    // An error about a flow: the quoted header, from the VIP (its source) to the client.
    const q = l4 + 8;
    const qhlen = v6 ? 40 : 20;
    if (q + qhlen + 4 > len) return passOnly;
    if (frame[q]! >>> 4 !== (v6 ? 6 : 4)) return passOnly;
    let note: string | undefined = shortNote;
    if (!v6) {
      if ((frame.readUInt16BE(q + 6) & 0x1fff) !== 0) return passOnly; // a later fragment has no ports
      if ((frame[q]! & 0x0f) !== 5) note = 'quoted IPv4 header with options (docs do not say)';
    }
    const qproto = frame[q + (v6 ? 6 : 9)]!;
    if (qproto !== 6 && qproto !== 17) return passOnly;
    if (!note && q + qhlen + 4 > ipEnd) note = 'quote beyond the IP length, inside the frame';
    const qports = q + qhlen;
    const vipAt = q + (v6 ? 8 : 12);
    const clientAt = q + (v6 ? 24 : 16);
    const asize = v6 ? 16 : 4;
    if (!this.#vip(frame, vipAt, asize, frame.readUInt16BE(qports), qproto)) return passOnly;
    const outcome = this.#balance(frame, v6, 14, ipEnd - 14, frame.readUInt16BE(qports + 2), frame.readUInt16BE(qports), qproto,
      frame.subarray(clientAt, clientAt + asize), vipAt, asize, 'error');
    if (note) {
      outcome.pass = true;
      outcome.passReasons = ['pass_icmp_other'];
      outcome.note = note;
    }
    outcome.errorToOtherAddress = !toVip;
    return outcome;
  }

  /** A flow (client → VIP address, ports, protocol) to a VIP address: the VIP's outcome. */
  #balance(frame: Buffer, v6: boolean, l3: number, ipLen: number, clientPort: number, vipPort: number, proto: number,
    client: Uint8Array, vipAt: number, asize: number, kind: 'client' | 'error'): Expectation {
    const w = this.#world;
    const vip = this.#vip(frame, vipAt, asize, vipPort, proto);
    if (!vip) return { pass: false, drop: true, tx: null, rule: 'VIP address, no VIP on the port/protocol: drop_not_served', dropReasons: ['drop_not_served'] };
    if (vip.id >= w.maxVips) return { pass: false, drop: true, tx: null, rule: 'VIP id outside the ring: dropped', dropReasons: ['drop_unknown_vip_id'] };
    const family: Family = v6 ? 6 : 4;
    const flow = { family, src: client, sport: clientPort, dport: vipPort };
    const slot = ringSlot(ringHash({ ...flow, srcIpOnly: (vip.flags & w.srcIpOnlyFlag) !== 0 }), w.ringSize);
    const backendId = vip.ring[slot % vip.ring.length]!;
    const backend = w.backends.get(backendId);
    if (backendId >= w.maxBackends) return { pass: false, drop: true, tx: null, rule: 'ring names an id outside the backend table', dropReasons: ['drop_bad_backend'] };
    if (backend === undefined) return { pass: false, drop: true, tx: null, rule: 'empty ring slot or unused backend', dropReasons: ['drop_no_backend'] };
    const gue = (vip.flags & w.gueFlag) !== 0;
    const overhead = encapOverhead(backend.includes(':') ? 6 : 4, gue);
    // "Too big when its L3 length + overhead > mtu": the L3 bytes encapsulated, i.e. every byte
    // after the Ethernet header (docs/dataplane.md, Encapsulation), padding included.
    if (frame.length - 14 + overhead > w.mtu) {
      if (kind === 'error') return { pass: false, drop: true, tx: null, rule: 'ICMP error too big once encapsulated: drop_error_too_big', dropReasons: ['drop_error_too_big'] };
      const build = v6
        ? () => balancerPacketTooBig(frame, { mtu: w.mtu, overhead })
        : () => balancerFragNeeded(frame, { mtu: w.mtu, overhead });
      const ipLenOfPacket = v6 ? 40 + frame.readUInt16BE(l3 + 4) : frame.readUInt16BE(l3 + 2);
      if (ipLenOfPacket < frame.length - 14) {
        // Bytes after the IP packet made it too big: whether the quote's "first 64 / 128 bytes
        // of the offending packet" stop at its IP length or take the bytes after is not said.
        return {
          pass: false, drop: false, tx: { kind: 'too_big', build, quoteOf: { from: 14, header: v6 ? 48 : 28 } },
          rule: 'too big once encapsulated: ICMP too-big reply', note: 'too big by bytes after the IP packet: the quote may take them',
        };
      }
      return { pass: false, drop: false, tx: { kind: 'too_big', build }, rule: 'too big once encapsulated: ICMP too-big reply' };
    }
    const build = () => encapsulate({ frame, backend, config: w.tunnel, gue, entropy: flowEntropy(flow) });
    return { pass: false, drop: false, tx: { kind: 'forward', vip: vip.id, build }, rule: `forwarded to VIP ${vip.id}, backend ${backendId}` };
  }
}

// ─── The decap program's reference model (docs/dataplane.md, "Decap contract") ───────

export interface DecapWorld {
  readonly localAddresses: readonly string[];
  readonly vips: readonly string[];
  readonly guePort: number;
}

export interface DecapExpectation {
  /** 'pass': TC_ACT_OK untouched; 'drop': TC_ACT_SHOT untouched; 'decap': TC_ACT_OK with `output`. */
  allowed: Set<'pass' | 'drop' | 'decap'>;
  output?: Buffer;
  /** Byte offset in the output whose 2 bytes (an inner IPv4 checksum that was wrong on input) are not compared. */
  maskChecksumAt?: number;
  note?: string;
  /** The decap contract rule that decided (names the failure when the program disagrees). */
  rule?: string;
  /** The reason counters a drop may move (one of them, by one); a pass moves decap_pass_not_tunnel. */
  dropReasons?: readonly Reason[];
  /** Ethernet + IP bytes the kernel needs to run the frame at all (shorter: EINVAL, not run). */
  unrunnable?: boolean;
}

function ipv4HeaderOk(buf: Buffer, at: number): boolean {
  return internetChecksum(buf.subarray(at, at + (buf[at]! & 0x0f) * 4)) === 0;
}

export class DecapModel {
  readonly #local = new Set<string>();
  readonly #vips = new Set<string>();
  readonly #guePort: number;

  constructor(world: DecapWorld) {
    const key = (a: string) => Buffer.from(addressBytes(a, a.includes(':') ? 6 : 4)).toString('hex');
    for (const a of world.localAddresses) this.#local.add(key(a));
    for (const a of world.vips) this.#vips.add(key(a));
    this.#guePort = world.guePort;
  }

  expect(frame: Buffer): DecapExpectation {
    const len = frame.length;
    const type = frame.readUInt16BE(12);
    const pass: DecapExpectation = { allowed: new Set(['pass']), rule: 'not IPv4/IPv6, or an IPv6 header beyond the frame: not a tunnel' };
    if (type !== 0x0800 && type !== 0x86dd) return pass;
    const l3 = 14;
    if (len - l3 < (type === 0x0800 ? 20 : 40)) return { allowed: new Set(['pass']), unrunnable: true };

    // Is it a tunnel packet "well formed as the balancer sends it"?
    let outerEnd: number, proto: number, dstAt: number, asize: number, payload: number;
    if (type === 0x0800) {
      const totLen = frame.readUInt16BE(l3 + 2);
      const fragWord = frame.readUInt16BE(l3 + 6);
      if (frame[l3] !== 0x45 || totLen < 20 || totLen > len - l3 || !ipv4HeaderOk(frame, l3)) {
        return { allowed: new Set(['pass']), rule: 'outer IPv4: 20 bytes, valid checksum, length within the frame, else not a tunnel' };
      }
      if ((fragWord & 0x3fff) !== 0) return { allowed: new Set(['pass']), rule: 'an outer IPv4 fragment is not a tunnel packet' };
      if ((fragWord & 0x4000) === 0) return { allowed: new Set(['pass']), rule: 'an outer IPv4 header without DF is not a tunnel packet' };
      outerEnd = l3 + totLen;
      proto = frame[l3 + 9]!;
      dstAt = l3 + 16;
      asize = 4;
      payload = l3 + 20;
      if ((fragWord & 0x8000) !== 0) {
        const e = this.#tunnel(frame, outerEnd, proto, dstAt, asize, payload);
        e.allowed.add('pass');
        e.note = 'reserved IPv4 flag set on the outer header (docs do not say)';
        return e;
      }
    } else {
      const payloadLen = frame.readUInt16BE(l3 + 4);
      if (frame[l3]! >>> 4 !== 6 || 40 + payloadLen > len - l3) return pass;
      outerEnd = l3 + 40 + payloadLen;
      proto = frame[l3 + 6]!;
      dstAt = l3 + 24;
      asize = 16;
      payload = l3 + 40;
    }
    return this.#tunnel(frame, outerEnd, proto, dstAt, asize, payload);
  }

  #tunnel(frame: Buffer, outerEnd: number, proto: number, dstAt: number, asize: number, payload: number): DecapExpectation {
    const pass: DecapExpectation = { allowed: new Set(['pass']), rule: 'not IPIP/6in4/4in6/IP6IP6, nor GUE to the port with one whole IP packet: not a tunnel' };
    let inner: number;
    let innerVersion: number;
    if (proto === 4 || proto === 41) {
      inner = payload;
      innerVersion = proto === 4 ? 4 : 6;
    } else if (proto === 17) {
      if (payload + 8 > outerEnd) return pass;
      if (frame.readUInt16BE(payload + 2) !== this.#guePort) return pass;
      if (frame.readUInt16BE(payload + 4) !== outerEnd - payload) return pass;
      inner = payload + 8;
      const room = outerEnd - inner;
      innerVersion = frame[inner]! >>> 4;
      // One whole IP packet filling the payload, shorter only by a minimum frame's padding.
      let innerLen: number;
      if (innerVersion === 4) {
        if (room < 20 || (frame[inner]! & 0x0f) !== 5 || !ipv4HeaderOk(frame, inner)) return pass;
        innerLen = frame.readUInt16BE(inner + 2);
      } else if (innerVersion === 6) {
        if (room < 40) return pass;
        innerLen = 40 + frame.readUInt16BE(inner + 4);
      } else {
        return pass;
      }
      if (innerLen > room) return pass;
      if (innerLen < room) {
        // Padding: the client's frame was shorter than 60 bytes (an L3 of at most 46).
        if (room > 46) return pass;
        const e = this.#afterTunnel(frame, dstAt, asize, inner, innerVersion, outerEnd);
        e.allowed.add('pass');
        e.note = 'GUE payload shorter than its datagram by a minimum frame\'s padding';
        return e;
      }
    } else {
      return pass;
    }
    return this.#afterTunnel(frame, dstAt, asize, inner, innerVersion, outerEnd);
  }

  #afterTunnel(frame: Buffer, dstAt: number, asize: number, inner: number, innerVersion: number, outerEnd: number): DecapExpectation {
    // Every condition first; the docs name the drops but not the order they are checked in,
    // so a packet failing two may count under either (the first in this list is the rule
    // reported). The inner header must fit in the room the outer header declares.
    const notLocal = !this.#local.has(addrKey(frame, dstAt, asize));
    const room = outerEnd - inner;
    let malformed: string | undefined;
    let note: string | undefined;
    let innerDst = -1;
    if (innerVersion === 4) {
      const ihl = frame[inner]! & 0x0f;
      if (room < 20 || frame[inner]! >>> 4 !== 4) malformed = 'inner IPv4 header cut short by the outer length, or wrong version';
      else if (ihl < 5 || frame.readUInt16BE(inner + 2) > room) malformed = 'inner IPv4 IHL < 5 or longer than the outer room';
      else if (ihl * 4 > room) malformed = 'inner IPv4 header (IHL) longer than the outer room';
      if (room >= 20) {
        innerDst = inner + 16;
        if (!malformed && frame.readUInt16BE(inner + 2) < ihl * 4) note = 'inner IPv4 total length below its header length';
        if (!malformed && ihl !== 5) note = 'inner IPv4 header with options';
      }
    } else {
      if (room < 40 || frame[inner]! >>> 4 !== 6) malformed = 'inner IPv6 header cut short by the outer length, or wrong version';
      else if (40 + frame.readUInt16BE(inner + 4) > room) malformed = 'inner IPv6 longer than the outer room';
      if (room >= 40) innerDst = inner + 24;
    }
    const notVip = innerDst >= 0 && !this.#vips.has(addrKey(frame, innerDst, innerVersion === 4 ? 4 : 16));
    const outerFamily: Family = frame.readUInt16BE(12) === 0x0800 ? 4 : 6;
    const innerFamily: Family = innerVersion === 4 ? 4 : 6;
    const ceDrop = innerDst >= 0 && decapEcn(ecnOf(frame.subarray(14), outerFamily), ecnOf(frame.subarray(inner), innerFamily)) === 'drop';

    const drop = (rule: string, ...reasons: Reason[]): DecapExpectation => ({ allowed: new Set(['drop']), rule, dropReasons: reasons });
    if (notLocal) return drop('tunnel to another address: decap_drop_not_local', 'decap_drop_not_local', ...(malformed ? ['decap_drop_malformed' as const] : []));
    if (malformed) return drop(`${malformed}: decap_drop_malformed`, 'decap_drop_malformed', ...(notVip ? ['decap_drop_not_vip' as const] : []));
    // An inner header the docs leave open (note) may count as malformed before the VIP check.
    if (notVip) return drop('inner destination not served: decap_drop_not_vip', 'decap_drop_not_vip', ...(ceDrop ? ['decap_drop_ce_not_ect' as const] : []), ...(note ? ['decap_drop_malformed' as const] : []));
    if (ceDrop) {
      const e = drop('outer CE over a Not-ECT inner packet: decap_drop_ce_not_ect', 'decap_drop_ce_not_ect');
      if (note) {
        e.note = note;
        e.allowed.add('decap');
        e.dropReasons = ['decap_drop_ce_not_ect', 'decap_drop_malformed'];
      }
      return e;
    }
    const output = decapsulate(frame);
    const e: DecapExpectation = { allowed: new Set(['decap']), output, rule: 'tunnel to a local address, inner destination served: decapsulated' };
    // The inner IPv4 checksum is updated incrementally (ECN), never recomputed: a wrong one stays wrong,
    // while the builder recomputes it.
    if (innerVersion === 4 && !ipv4HeaderOk(frame, inner)) e.maskChecksumAt = 14 + 10;
    if (note) {
      e.note = note;
      e.allowed.add('drop');
      e.dropReasons = ['decap_drop_malformed'];
    }
    return e;
  }
}

// ─── Reporting ───────────────────────────────────────────────────────────────────────

/**
 * A too-big reply whose quote runs on past the IP packet into the bytes after it: the
 * builder's frame up to the quote, and a quote of the same length (or longer, up to
 * `max`) taken from the input's L3 bytes; lengths and checksums must still hold.
 */
export function tooBigWithFrameQuote(out: Buffer, want: Buffer, input: Buffer, header: number, max: number): boolean {
  const quoteAt = 14 + header;
  if (out.length < quoteAt || out.length - quoteAt > max) return false;
  const quote = out.subarray(quoteAt);
  if (Buffer.compare(quote, input.subarray(14, 14 + quote.length)) !== 0) return false;
  // Everything before the quote but the lengths and checksums, as the builder has it.
  const v6 = out.readUInt16BE(12) === 0x86dd;
  const skip = v6 ? [14 + 4, 14 + 5, 14 + 40 + 2, 14 + 40 + 3] : [14 + 2, 14 + 3, 14 + 10, 14 + 11, 14 + 20 + 2, 14 + 20 + 3];
  for (let i = 0; i < quoteAt; i++) if (!skip.includes(i) && out[i] !== want[i]) return false;
  const icmp = out.subarray(14 + (v6 ? 40 : 20));
  const ok = v6
    ? out.readUInt16BE(18) === out.length - 54 && transportChecksum(6, out.subarray(22, 38), out.subarray(38, 54), 58, icmp) === 0
    : out.readUInt16BE(16) === out.length - 14 && internetChecksum(icmp) === 0;
  return ok;
}

/** Equal except for a 2-byte field at `maskAt` (when given). */
export function equalMasked(a: Uint8Array, b: Uint8Array, maskAt?: number): boolean {
  if (a.length !== b.length) return false;
  if (maskAt === undefined) return Buffer.compare(a, b) === 0;
  for (let i = 0; i < a.length; i++) if (i !== maskAt && i !== maskAt + 1 && a[i] !== b[i]) return false;
  return true;
}
