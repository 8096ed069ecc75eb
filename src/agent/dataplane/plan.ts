// The planner: desired state + what is programmed → the smallest set of map
// operations, and the state once they are applied. Pure compute; apply.ts does the
// I/O in the order that keeps every packet consistent:
//   reset counters of new ids → addresses that go → backends → rings → VIP entries
//   → addresses that come → VIPs that go → backends that go.
// A packet therefore never finds a VIP whose ring or backends are not written yet,
// nor a ring slot naming a backend that is gone; an address is a VIP address only
// while a VIP entry for it exists.
import { addressFamily } from '../../shared/addresses.ts';
import { FulcrumError } from '../../shared/errors.ts';
import { vipKey, type NodeDesiredState, type Vip } from '../../shared/desired-state.ts';
import { buildMaglevRing, ringInputsDigest, type MaglevBackend } from './maglev.ts';
import { ADDRESS_FLAGS, VIP_FLAGS, nextGen, type IdPool, type ProgrammedState, type ProgrammedVip } from './state.ts';
import type { SlotWrite } from './address-table.ts';

export type BackendWrite = { readonly id: number; readonly address: string };

/** A VIP's ring to (re)build: its members. The ring itself is built when it is
 * written (apply.ts), one at a time, so programming 512 rings never holds 512 rings in
 * memory; writing compares it with what the ring map holds and stores only the slots
 * that differ, so a one-backend change writes ~1/N of it. */
export type RingWrite = { readonly vipId: number; readonly ringSize: number; readonly members: readonly MaglevBackend[] };

export function buildRing(write: RingWrite): Uint32Array {
  return buildMaglevRing(write.members, write.ringSize);
}

export type VipWrite = Pick<ProgrammedVip, 'key' | 'address' | 'family' | 'port' | 'protocol' | 'id' | 'flags' | 'gen'>;

export type Plan = {
  readonly resetVipCounters: readonly number[];
  readonly resetBackendCounters: readonly number[];
  readonly writeBackends: readonly BackendWrite[];
  readonly writeRings: readonly RingWrite[];
  readonly writeVips: readonly VipWrite[];
  /** Address-table slot writes for addresses that go (applied early) and come (late). */
  readonly removeAddresses: readonly SlotWrite[];
  readonly addAddresses: readonly SlotWrite[];
  readonly deleteVips: readonly VipWrite[];
  readonly clearBackends: readonly BackendWrite[];
  /** The programmed state once the plan is applied. */
  readonly next: ProgrammedState;
};

export function isEmptyPlan(plan: Plan): boolean {
  return (
    plan.resetVipCounters.length + plan.resetBackendCounters.length + plan.writeBackends.length + plan.writeRings.length +
      plan.writeVips.length + plan.removeAddresses.length + plan.addAddresses.length + plan.deleteVips.length + plan.clearBackends.length ===
    0
  );
}

/** Fresh ids first (never used since start), then the longest-freed: an id reused soon
 * after its backend went could inherit that backend's connection-table entries. */
class IdAllocator {
  private highWater: number;
  private readonly freed: number[];
  private readonly pool: IdPool;

  constructor(pool: IdPool) {
    this.pool = pool;
    this.highWater = pool.highWater;
    this.freed = [...pool.freed];
  }

  allocate(what: string): number {
    if (this.highWater < this.pool.limit) return this.highWater++;
    const id = this.freed.shift();
    if (id === undefined) {
      throw new FulcrumError('ERR_DESIRED_STATE', `no free ${what} id: the table holds ${this.pool.limit - this.pool.first}; raise the limit in the agent configuration`, {
        details: { what, limit: this.pool.limit },
      });
    }
    return id;
  }

  release(id: number): void {
    this.freed.push(id);
  }

  snapshot(): IdPool {
    return { first: this.pool.first, limit: this.pool.limit, highWater: this.highWater, freed: [...this.freed] };
  }
}

export function vipFlags(vip: Vip): number {
  return (vip.sourceIpOnly ? VIP_FLAGS.srcIpOnly : 0) | (vip.lruBypass ? VIP_FLAGS.lruBypass : 0) | (vip.encapsulation === 'gue' ? VIP_FLAGS.encapGue : 0);
}

/** The (address, weight) set as one string, independent of order. The operator sends
 * backends sorted, so the sort is skipped when they already are (a plan for 512 VIPs ×
 * 100 backends must take milliseconds, not tens of them). */
function backendsSignature(vip: Vip): string {
  const parts = vip.backends.map((b) => `${b.address}=${b.weight}`);
  for (let i = 1; i < parts.length; i++) {
    if (parts[i - 1]! > parts[i]!) {
      parts.sort();
      break;
    }
  }
  return parts.join(',');
}

/**
 * Whether the VIP's backends, in their order, spell `signature` exactly. Allocates
 * nothing, so a large node's unchanged VIPs (the common case) keep their signature
 * without rebuilding it. Addresses hold neither '=' nor ','; a false answer only means
 * "build the signature and compare" (backends in another order, say).
 */
function spells(signature: string, vip: Vip): boolean {
  let pos = 0;
  const list = vip.backends;
  for (let i = 0; i < list.length; i++) {
    if (i > 0) {
      if (signature.charCodeAt(pos) !== 44 /* , */) return false;
      pos++;
    }
    const { address, weight } = list[i]!;
    if (!signature.startsWith(address, pos)) return false;
    pos += address.length;
    if (signature.charCodeAt(pos) !== 61 /* = */) return false;
    pos++;
    const w = String(weight);
    if (!signature.startsWith(w, pos)) return false;
    pos += w.length;
  }
  return pos === signature.length;
}

/** The addresses of a signature (backendsSignature's format: address=weight,...). */
function signatureMembers(signature: string): string[] {
  if (signature === '') return [];
  return signature.split(',').map((part) => part.slice(0, part.lastIndexOf('=')));
}

type BackendPlan = {
  backends: Map<string, number>;
  refs: Map<string, number>;
  writeBackends: BackendWrite[];
  clearBackends: BackendWrite[];
};

/**
 * Backends from the whole desired state: every address any VIP names (draining ones
 * included: their established flows still need the entry), with its reference count.
 * Desired order (the operator's is deterministic) decides which new backend gets which
 * fresh id; no need to sort tens of thousands of addresses.
 */
function planAllBackends(current: ProgrammedState, desired: NodeDesiredState, backendIds: IdAllocator): BackendPlan {
  const refs = new Map<string, number>();
  for (const vip of desired.vips) for (const b of vip.backends) refs.set(b.address, (refs.get(b.address) ?? 0) + 1);
  const backends = new Map<string, number>();
  const writeBackends: BackendWrite[] = [];
  for (const address of refs.keys()) {
    const existing = current.backends.get(address);
    if (existing !== undefined) {
      backends.set(address, existing);
    } else {
      const id = backendIds.allocate('backend');
      backends.set(address, id);
      writeBackends.push({ id, address });
    }
  }
  const clearBackends: BackendWrite[] = [];
  for (const [address, id] of current.backends) {
    if (!refs.has(address)) {
      clearBackends.push({ id, address });
      backendIds.release(id);
    }
  }
  return { backends, refs, writeBackends, clearBackends };
}

/**
 * Backends from the VIPs that changed alone: their old members lose a reference, their
 * new ones gain one; an address left with none goes, a new one gets an id. The same
 * result as planAllBackends (test/unit/plan.test.ts holds them equal) in time that
 * follows the change, not the node: one changed VIP of 512 × 100 touches 100 entries,
 * not 51,200. New ids are handed out before freed ones are released, as there.
 */
function planChangedBackends(current: ProgrammedState, refsBefore: ReadonlyMap<string, number>, desired: NodeDesiredState,
  keys: readonly string[], signatures: readonly string[], backendIds: IdAllocator): BackendPlan {
  const refs = new Map(refsBefore);
  const backends = new Map(current.backends);
  const touched = new Set<string>();
  const changed: Vip[] = [];
  const desiredKeys = new Set(keys);
  for (const [i, vip] of desired.vips.entries()) {
    const previous = current.vips.get(keys[i]!);
    if (previous !== undefined && previous.backendsSignature === signatures[i]) continue;
    changed.push(vip);
    for (const b of vip.backends) refs.set(b.address, (refs.get(b.address) ?? 0) + 1);
    if (previous !== undefined) {
      for (const address of signatureMembers(previous.backendsSignature)) {
        refs.set(address, refs.get(address)! - 1);
        touched.add(address);
      }
    }
  }
  for (const [key, vip] of current.vips) {
    if (desiredKeys.has(key)) continue;
    for (const address of signatureMembers(vip.backendsSignature)) {
      refs.set(address, refs.get(address)! - 1);
      touched.add(address);
    }
  }
  const writeBackends: BackendWrite[] = [];
  for (const vip of changed) {
    for (const b of vip.backends) {
      if (backends.has(b.address)) continue;
      const id = backendIds.allocate('backend');
      backends.set(b.address, id);
      writeBackends.push({ id, address: b.address });
    }
  }
  const clearBackends: BackendWrite[] = [];
  for (const address of touched) {
    if (refs.get(address) !== 0) continue;
    refs.delete(address);
    const id = current.backends.get(address)!;
    backends.delete(address);
    clearBackends.push({ id, address });
    backendIds.release(id);
  }
  return { backends, refs, writeBackends, clearBackends };
}

export function plan(current: ProgrammedState, desired: NodeDesiredState, ringSize: number): Plan {
  const backendIds = new IdAllocator(current.backendIds);
  const vipIds = new IdAllocator(current.vipIds);
  const addressIds = new IdAllocator(current.addressIds);

  const keys = desired.vips.map(vipKey);
  const signatures = desired.vips.map((vip, i) => {
    const previous = current.vips.get(keys[i]!)?.backendsSignature;
    return previous !== undefined && spells(previous, vip) ? previous : backendsSignature(vip);
  });
  const { backends, refs, writeBackends, clearBackends } = current.backendRefs !== undefined
    ? planChangedBackends(current, current.backendRefs, desired, keys, signatures, backendIds)
    : planAllBackends(current, desired, backendIds);

  // VIPs and their rings.
  const vips = new Map<string, ProgrammedVip>();
  let lastGen = current.lastGen;
  const writeRings: RingWrite[] = [];
  const writeVips: VipWrite[] = [];
  const resetVipCounters: number[] = [];
  for (const [i, vip] of desired.vips.entries()) {
    const key = keys[i]!;
    const previous = current.vips.get(key);
    const signature = signatures[i]!;
    const flags = vipFlags(vip);
    const id = previous?.id ?? vipIds.allocate('VIP');
    // A new gen orphans the id's old connection-table entries: for a new VIP, and when
    // the VIP stops (or starts) using the table.
    const tableUseChanged = previous !== undefined && (previous.flags & VIP_FLAGS.lruBypass) !== (flags & VIP_FLAGS.lruBypass);
    const gen = previous === undefined || tableUseChanged ? (lastGen = nextGen(lastGen)) : previous.gen;
    let ringDigest = previous?.ringDigest ?? '';
    if (previous === undefined || previous.backendsSignature !== signature) {
      const members = vip.backends.map((b) => ({ id: backends.get(b.address)!, key: b.address, weight: b.weight }));
      ringDigest = ringInputsDigest(members, ringSize);
      writeRings.push({ vipId: id, ringSize, members });
    }
    const programmed: ProgrammedVip = {
      key,
      name: vip.name,
      address: vip.address,
      family: addressFamily(vip.address),
      port: vip.port,
      protocol: vip.protocol,
      id,
      flags,
      gen,
      ringDigest,
      backendsSignature: signature,
    };
    vips.set(key, programmed);
    if (previous === undefined) resetVipCounters.push(id);
    if (previous === undefined || previous.flags !== flags || previous.gen !== gen) writeVips.push(programmed);
  }
  const deleteVips: VipWrite[] = [];
  for (const [key, vip] of current.vips) {
    if (!vips.has(key)) {
      deleteVips.push(vip);
      vipIds.release(vip.id);
    }
  }

  // Address flags: "uses the table" when any VIP on the address does, "has bypass"
  // when any bypasses it (the data plane then looks the VIP up before the table).
  const wantedAddresses = new Map<string, number>();
  for (const vip of desired.vips) {
    const flag = vip.lruBypass ? ADDRESS_FLAGS.hasBypass : ADDRESS_FLAGS.usesTable;
    wantedAddresses.set(vip.address, (wantedAddresses.get(vip.address) ?? 0) | flag);
  }
  const addresses = { v4: current.addresses.v4.clone(), v6: current.addresses.v6.clone() };
  const removeAddresses: SlotWrite[] = [];
  const addAddresses: SlotWrite[] = [];
  const freedAddressIds: number[] = [];
  for (const table of [addresses.v4, addresses.v6]) {
    for (const [address, entry] of [...table.addresses()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (wantedAddresses.has(address)) continue;
      removeAddresses.push(...table.remove(address));
      freedAddressIds.push(entry.id);
    }
  }
  const present = new Map([...addresses.v4.addresses(), ...addresses.v6.addresses()]);
  for (const [address, flags] of [...wantedAddresses].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const table = address.includes(':') ? addresses.v6 : addresses.v4;
    const id = present.get(address)?.id ?? addressIds.allocate('VIP address');
    addAddresses.push(...table.upsert(address, flags, id));
  }
  for (const id of freedAddressIds) addressIds.release(id);

  return {
    resetVipCounters,
    resetBackendCounters: writeBackends.map((b) => b.id),
    writeBackends,
    writeRings,
    writeVips,
    removeAddresses,
    addAddresses,
    deleteVips,
    clearBackends,
    next: { vips, backends, backendRefs: refs, addresses, vipIds: vipIds.snapshot(), backendIds: backendIds.snapshot(), addressIds: addressIds.snapshot(), lastGen },
  };
}
