// The balancer program and its maps, typed: load (or adopt pinned maps), then the
// writes the reconciler needs and the reads metrics and inspect need. Every map write
// of the agent goes through here, so the ABI encoding lives in one place.
import { join } from 'node:path';
import { addressFamily } from '../../shared/addresses.ts';
import { FulcrumError } from '../../shared/errors.ts';
import { REASONS, GSTATS, type GlobalStat, type Reason } from '../../shared/reasons.ts';
import type { Protocol } from '../../shared/desired-state.ts';
import { BpfObject, type MapSpec } from '../bpf/object.ts';
import type { BpfMap } from '../bpf/map.ts';
import {
  backend as encodeBackend, balancerConfig, counter as encodeCounter, decodeBackend, decodeVip4Key, decodeVip6Key,
  decodeVipMeta, sumCounters, u32, vip4Key, vip6Key, vipAddr4, vipAddr6, vipMeta, IPPROTO_TCP, IPPROTO_UDP,
  RING_CHUNK, type BalancerConfig, type Counter, type VipMeta,
} from '../bpf/abi.ts';
import { addressSlotsFor, type SlotWrite } from './address-table.ts';
import { mapArrayWords } from '../bpf/mmap.ts';
/** A VIP's ring content, as writeRing stores it. */
export type RingContent = { readonly vipId: number; readonly ring: Uint32Array };

export const BALANCER_MAPS = [
  'vips_v4', 'vips_v6', 'vip_state', 'vip_addrs_v4', 'vip_addrs_v6', 'ring', 'backends', 'conn_v4', 'conn_v6',
  'vip_stats', 'backend_stats', 'reason_stats', 'global_stats',
] as const;
export type BalancerMapName = (typeof BALANCER_MAPS)[number];

export type BalancerLimits = {
  readonly maxVips: number;
  readonly maxBackends: number;
  readonly connTableSize: number;
};

export type BalancerLoadOptions = {
  readonly objectPath: string;
  readonly config: BalancerConfig;
  readonly limits: BalancerLimits;
  /** Pin maps here and adopt maps already pinned here (agent restarts and upgrades). */
  readonly pinDir?: string;
};

export const PROTOCOL_NUMBER: Record<Protocol, number> = { TCP: IPPROTO_TCP, UDP: IPPROTO_UDP };

export type VipEntry = { address: string; port: number; protocol: number; id: number; flags: number; gen: number };

/** Every VIP entry of both families' VIP maps (the agent's adoption and `fulcrum inspect`). */
export function readVipMaps(vipsV4: BpfMap, vipsV6: BpfMap): VipEntry[] {
  const out: VipEntry[] = [];
  for (const [map, decodeKey] of [[vipsV4, decodeVip4Key], [vipsV6, decodeVip6Key]] as const) {
    for (const [key, value] of map.entries()) {
      const k = decodeKey(key);
      const meta = decodeVipMeta(value);
      out.push({ address: k.addr, port: k.port, protocol: k.proto, id: meta.vipId, flags: meta.flags, gen: meta.gen });
    }
  }
  return out;
}

/** Backend slots in use, id → address, from one batched read of the backend table. */
export function readBackendMap(map: BpfMap): Map<number, string> {
  const bytes = map.lookupRangeBytes(0, map.maxEntries);
  const out = new Map<number, string>();
  for (let id = 1; id < map.maxEntries; id++) {
    const { addr } = decodeBackend(bytes.subarray(id * map.valueSize, (id + 1) * map.valueSize));
    if (addr !== null) out.set(id, addr);
  }
  return out;
}

const ZERO_COUNTER = encodeCounter({ packets: 0n, bytes: 0n });

/** Sizes the object's maps, writes its .rodata configuration and pin paths: everything before load. */
export function prepareBalancerObject(object: BpfObject, options: BalancerLoadOptions): void {
  const { limits, config } = options;
  const addressSlots = addressSlotsFor(limits.maxVips);
  object.setRodata(balancerConfig({ ...config, addrSlotBits: Math.log2(addressSlots) }));
  object.setMaxEntries('ring', Math.ceil((limits.maxVips * config.ringSize) / RING_CHUNK));
  object.setMaxEntries('vip_stats', limits.maxVips);
  object.setMaxEntries('vip_state', limits.maxVips);
  object.setMaxEntries('vips_v4', limits.maxVips);
  object.setMaxEntries('vips_v6', limits.maxVips);
  object.setMaxEntries('vip_addrs_v4', addressSlots);
  object.setMaxEntries('vip_addrs_v6', addressSlots);
  object.setMaxEntries('backends', limits.maxBackends);
  object.setMaxEntries('backend_stats', limits.maxBackends);
  object.setMaxEntries('conn_v4', limits.connTableSize);
  object.setMaxEntries('conn_v6', limits.connTableSize);
  if (options.pinDir !== undefined) {
    for (const name of BALANCER_MAPS) object.setPinPath(name, join(options.pinDir, name));
  }
}

export class BalancerProgram {
  readonly object: BpfObject;
  readonly progFd: number;
  readonly ringSize: number;
  readonly limits: BalancerLimits;
  readonly addressSlots: number;
  readonly maps: Readonly<Record<BalancerMapName, BpfMap>>;

  private constructor(object: BpfObject, ringSize: number, limits: BalancerLimits) {
    this.object = object;
    this.ringSize = ringSize;
    this.limits = limits;
    this.addressSlots = addressSlotsFor(limits.maxVips);
    this.progFd = object.programFd('balancer');
    this.maps = Object.fromEntries(BALANCER_MAPS.map((name) => [name, object.map(name)])) as Record<BalancerMapName, BpfMap>;
  }

  static load(options: BalancerLoadOptions): BalancerProgram {
    const object = BpfObject.open(options.objectPath);
    try {
      prepareBalancerObject(object, options);
      object.load();
      return new BalancerProgram(object, options.config.ringSize, options.limits);
    } catch (err) {
      object.close();
      throw err;
    }
  }

  /**
   * The map definitions load() would create (type, sizes, flags, max_entries), without
   * loading anything: the loader compares them with maps already pinned, so a pinned
   * map that no longer fits is reported in words before libbpf refuses it.
   */
  static mapSpecs(options: BalancerLoadOptions): Record<BalancerMapName, MapSpec> {
    const object = BpfObject.open(options.objectPath);
    try {
      prepareBalancerObject(object, options);
      return Object.fromEntries(BALANCER_MAPS.map((name) => [name, object.mapSpec(name)])) as Record<BalancerMapName, MapSpec>;
    } finally {
      object.close();
    }
  }

  close(): void {
    this.object.close();
  }

  // ── writes (the reconciler's vocabulary, see plan.ts for the order) ──────────

  writeBackends(entries: readonly { id: number; address: string }[]): void {
    if (entries.length === 0) return;
    this.maps.backends.updateBatch(entries.map((e) => u32(e.id)), entries.map((e) => encodeBackend({ addr: e.address })));
  }

  clearBackends(ids: readonly number[]): void {
    if (ids.length === 0) return;
    this.maps.backends.updateBatch(ids.map(u32), ids.map(() => encodeBackend(null)));
  }

  /** Writes ring slots straight into the mmapped ring map (see bpf/mmap.ts). The
   * mapping lives only for the call, so rings never count in the agent's memory. */
  /** Stores a VIP's ring, writing only the slots that differ from what the map holds
   * (each an atomic aligned store). Returns how many slots changed. */
  writeRing(write: RingContent): number {
    if (write.ring.length !== this.ringSize) {
      throw new FulcrumError('ERR_INTERNAL', `a ring of ${write.ring.length} slots for a program built for ${this.ringSize}`);
    }
    return this.withRingMemory(write.vipId, (slots) => {
      const ring = write.ring;
      let changed = 0;
      for (let i = 0; i < ring.length; i++) {
        if (slots[i] !== ring[i]) {
          slots[i] = ring[i]!;
          changed++;
        }
      }
      return changed;
    });
  }

  readRing(vipId: number): Uint32Array {
    return this.withRingMemory(vipId, (slots) => slots.slice());
  }

  /** fn gets the VIP's ring slots as memory. ring_chunk has no padding, so slot i of
   * the whole ring map is u32 word i. */
  private withRingMemory<T>(vipId: number, fn: (slots: Uint32Array) => T): T {
    const memory = mapArrayWords(this.maps.ring, vipId * this.ringSize, this.ringSize);
    try {
      return fn(memory.u32);
    } finally {
      memory.unmap();
    }
  }

  /** vip_state first, then the lookup entry: a table hit never sees a gen the VIP lacks. */
  writeVip(vip: VipEntry): void {
    const meta = vipMeta({ flags: vip.flags, vipId: vip.id, gen: vip.gen });
    this.maps.vip_state.update(u32(vip.id), meta);
    this.vipMap(vip.address).update(this.vipKey(vip), meta);
  }

  /** The lookup entry first, then vip_state (gen 0: the id's table entries stop matching). */
  deleteVip(vip: VipEntry): void {
    this.vipMap(vip.address).delete(this.vipKey(vip));
    this.maps.vip_state.update(u32(vip.id), vipMeta({ flags: 0, vipId: vip.id, gen: 0 }));
  }

  /** Only the lookup entry (adopt.ts removes entries it cannot adopt; vip_state is its own business). */
  deleteVipEntry(vip: Pick<VipEntry, 'address' | 'port' | 'protocol'>): void {
    this.vipMap(vip.address).delete(this.vipKey(vip));
  }

  /** Only vip_state[id] (adopt.ts repairs it to agree with the VIP entries). */
  writeVipState(meta: VipMeta): void {
    this.maps.vip_state.update(u32(meta.vipId), vipMeta(meta));
  }

  /** Writes VIP address table slots in the order given (address-table.ts orders them). */
  writeAddressSlots(writes: readonly SlotWrite[]): void {
    for (const w of writes) {
      const value = w.entry === null ? null : { addr: w.entry.address, flags: w.entry.flags, addrId: w.entry.id };
      if (w.family === 4) this.maps.vip_addrs_v4.update(u32(w.slot), vipAddr4(value));
      else this.maps.vip_addrs_v6.update(u32(w.slot), vipAddr6(value));
    }
  }

  resetVipCounters(ids: readonly number[]): void {
    for (const id of ids) this.maps.vip_stats.updatePerCpu(u32(id), ZERO_COUNTER);
  }

  resetBackendCounters(ids: readonly number[]): void {
    for (const id of ids) this.maps.backend_stats.updatePerCpu(u32(id), ZERO_COUNTER);
  }

  // ── reads ──────────────────────────────────────────────────────────────────

  reasonCounters(): Record<Reason, Counter> {
    return Object.fromEntries(REASONS.map((r, i) => [r, this.counterAt(this.maps.reason_stats, i)])) as Record<Reason, Counter>;
  }

  globalCounters(): Record<GlobalStat, Counter> {
    return Object.fromEntries(GSTATS.map((g, i) => [g, this.counterAt(this.maps.global_stats, i)])) as Record<GlobalStat, Counter>;
  }

  vipCounter(id: number): Counter {
    return this.counterAt(this.maps.vip_stats, id);
  }

  backendCounter(id: number): Counter {
    return this.counterAt(this.maps.backend_stats, id);
  }

  /** Every VIP and marker entry in the maps, as adopt.ts and inspect read them. */
  readVips(): VipEntry[] {
    return readVipMaps(this.maps.vips_v4, this.maps.vips_v6);
  }

  /** Backend slots in use: id → address. */
  readBackends(): Map<number, string> {
    return readBackendMap(this.maps.backends);
  }

  private counterAt(map: BpfMap, index: number): Counter {
    const perCpu = map.lookupPerCpu(u32(index));
    return perCpu === undefined ? { packets: 0n, bytes: 0n } : sumCounters(perCpu);
  }

  private vipMap(address: string): BpfMap {
    return addressFamily(address) === 4 ? this.maps.vips_v4 : this.maps.vips_v6;
  }

  private vipKey(vip: Pick<VipEntry, 'address' | 'port' | 'protocol'>): Buffer {
    const key = { addr: vip.address, port: vip.port, proto: vip.protocol };
    return addressFamily(vip.address) === 4 ? vip4Key(key) : vip6Key(key);
  }
}
