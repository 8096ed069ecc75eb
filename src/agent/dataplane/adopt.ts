// Adoption: after an agent restart or upgrade the balancer's maps are still pinned and
// still forwarding. Instead of rewriting them (which would lose nothing but would cost
// writes, and would briefly disturb rings), the agent reads them back into a
// ProgrammedState and plans against that, so a desired state equal to what is
// programmed yields an empty plan.
//
// Two things the maps do not hold:
//   - VIP names: they come from the desired state (reconcileAdopted fills them in; the
//     planner never compares names).
//   - The (address, weight) signature each ring was built from: weights cannot be read
//     back from a ring (a draining backend holds no slot, shares are rounded). An
//     adopted VIP carries ADOPTED_SIGNATURE, which equals no real signature, so the
//     planner rebuilds its ring from the desired state and writes only the slots that
//     differ from what the map holds — none when nothing changed. reconcileAdopted does
//     that comparison up front and adopts the desired signature where the rings match.
//
// The maps are the truth, but a crash in the middle of a plan can leave them
// inconsistent in a few known ways (plan.ts orders writes so that packets never see
// it, but the next plan must start from a clean picture). adoptBalancer repairs those
// in place and reports each one.
import { addressFamily } from '../../shared/addresses.ts';
import { vipKey, type NodeDesiredState, type Protocol } from '../../shared/desired-state.ts';
import { ABI_SIZES, decodeBackend, decodeVipAddr4, decodeVipAddr6, decodeVipMeta, IPPROTO_TCP, IPPROTO_UDP, type VipMeta } from '../bpf/abi.ts';
import { AddressTable, candidateSlots, type AddressEntry } from './address-table.ts';
import { type BalancerProgram, type VipEntry } from './balancer.ts';
import { buildRing, plan } from './plan.ts';
import { ADDRESS_ID_LIMIT, poolFromUsed, type ProgrammedState, type ProgrammedVip } from './state.ts';

/**
 * The backends signature of an adopted VIP: unknown. It matches no signature the
 * planner computes, so the first plan rebuilds the ring and writes only a delta.
 */
export const ADOPTED_SIGNATURE = '\u0000adopted';

export type AdoptProblem =
  | 'vip_unknown_protocol'   // a VIP entry whose protocol is neither TCP nor UDP: deleted
  | 'vip_id_out_of_range'    // a VIP entry whose id is beyond maxVips: deleted
  | 'vip_gen_zero'           // a VIP entry with gen 0 (the free marker): deleted
  | 'vip_id_shared'          // two VIP entries with one id: the one vip_state does not confirm is deleted
  | 'vip_state_mismatch'     // vip_state[id] disagrees with the VIP entry: rewritten from the entry
  | 'vip_state_stray'        // vip_state[id] is live but no VIP entry uses the id: freed (gen 0)
  | 'backend_slot_invalid'   // a backends slot that does not decode: left alone, id treated as free
  | 'backend_duplicate'      // two backend ids with one address: the higher id is treated as free
  | 'address_misplaced'      // an address-table slot the data plane can never find: cleared
  | 'address_duplicate'      // one address in two slots (a cuckoo move cut short): one cleared
  | 'address_id_shared';     // two addresses with one addr_id: the second cleared

export type AdoptFinding = {
  readonly problem: AdoptProblem;
  readonly message: string;
  /** Whether the maps were changed to fix it. */
  readonly repaired: boolean;
};

export type AdoptResult = {
  readonly state: ProgrammedState;
  /** True when the maps held any VIP, backend or address (an agent ran before). */
  readonly foundPrevious: boolean;
  readonly findings: readonly AdoptFinding[];
};

const PROTOCOLS: Readonly<Record<number, Protocol>> = { [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP' };

function describeEntry(e: VipEntry): string {
  return `${e.address} port ${e.port} protocol ${e.protocol} (id ${e.id}, gen ${e.gen})`;
}

function sameMeta(a: VipMeta, b: VipMeta): boolean {
  return a.flags === b.flags && a.vipId === b.vipId && a.gen === b.gen;
}

/** Reads the balancer's maps into a ProgrammedState, repairing crash leftovers (see AdoptProblem). */
export function adoptBalancer(balancer: BalancerProgram): AdoptResult {
  const findings: AdoptFinding[] = [];
  const note = (problem: AdoptProblem, message: string, repaired: boolean) => findings.push({ problem, message, repaired });
  const { maxVips, maxBackends } = balancer.limits;

  // vip_state: one batched read of every id.
  const stateBytes = balancer.maps.vip_state.lookupRangeBytes(0, maxVips);
  const vipState = (id: number): VipMeta => decodeVipMeta(stateBytes.subarray(id * ABI_SIZES.vip_meta, (id + 1) * ABI_SIZES.vip_meta));
  let lastGen = 0;
  for (let id = 0; id < maxVips; id++) lastGen = Math.max(lastGen, vipState(id).gen);

  // VIP entries. Entries that cannot be adopted are deleted: plan() never sees them, so
  // nothing else would ever remove them, and a desired VIP with the same key gets a
  // fresh entry on the first plan.
  const byId = new Map<number, VipEntry[]>();
  const doomed: { entry: VipEntry; problem: AdoptProblem; why: string }[] = [];
  for (const entry of balancer.readVips()) {
    lastGen = Math.max(lastGen, entry.gen);
    if (PROTOCOLS[entry.protocol] === undefined) doomed.push({ entry, problem: 'vip_unknown_protocol', why: 'protocol is neither TCP nor UDP' });
    else if (entry.id >= maxVips) doomed.push({ entry, problem: 'vip_id_out_of_range', why: `id is beyond maxVips ${maxVips}` });
    else if (entry.gen === 0) doomed.push({ entry, problem: 'vip_gen_zero', why: 'gen 0 marks a free id' });
    else byId.set(entry.id, [...(byId.get(entry.id) ?? []), entry]);
  }
  const adoptedEntries = new Map<number, VipEntry>();
  for (const [id, entries] of byId) {
    // Prefer the entry vip_state confirms; otherwise the first one.
    const confirmed = entries.find((e) => sameMeta(vipState(id), { flags: e.flags, vipId: e.id, gen: e.gen })) ?? entries[0]!;
    adoptedEntries.set(id, confirmed);
    for (const other of entries) {
      if (other !== confirmed) doomed.push({ entry: other, problem: 'vip_id_shared', why: `id ${id} also belongs to ${describeEntry(confirmed)}` });
    }
  }
  for (const { entry, problem, why } of doomed) {
    balancer.deleteVipEntry(entry);
    note(problem, `deleted VIP entry ${describeEntry(entry)}: ${why}`, true);
  }

  // vip_state must agree with the adopted entries, and be free (gen 0) everywhere else.
  for (let id = 0; id < maxVips; id++) {
    const entry = adoptedEntries.get(id);
    const have = vipState(id);
    if (entry !== undefined) {
      const want = { flags: entry.flags, vipId: id, gen: entry.gen };
      if (!sameMeta(have, want)) {
        balancer.writeVipState(want);
        note('vip_state_mismatch', `vip_state[${id}] held flags ${have.flags} gen ${have.gen}; rewritten from VIP entry ${describeEntry(entry)}`, true);
      }
    } else if (have.gen !== 0) {
      balancer.writeVipState({ flags: 0, vipId: id, gen: 0 });
      note('vip_state_stray', `vip_state[${id}] held gen ${have.gen} but no VIP entry uses id ${id}; freed`, true);
    }
  }

  // Backends: one batched read of the whole table.
  const backendBytes = balancer.maps.backends.lookupRangeBytes(0, maxBackends);
  const backends = new Map<string, number>();
  for (let id = 1; id < maxBackends; id++) {
    const slot = backendBytes.subarray(id * ABI_SIZES.backend, (id + 1) * ABI_SIZES.backend);
    let decoded;
    try {
      decoded = decodeBackend(slot);
    } catch (err) {
      note('backend_slot_invalid', `backends[${id}] does not decode (${(err as Error).message}); id treated as free`, false);
      continue;
    }
    if (decoded.addr === null) continue;
    const first = backends.get(decoded.addr);
    if (first !== undefined) {
      note('backend_duplicate', `backends[${id}] repeats ${decoded.addr} (id ${first}); id ${id} treated as free`, false);
      continue;
    }
    backends.set(decoded.addr, id);
  }

  // VIP address tables.
  const addressIds = new Map<number, string>();
  const readTable = (family: 4 | 6): AddressTable => {
    const map = family === 4 ? balancer.maps.vip_addrs_v4 : balancer.maps.vip_addrs_v6;
    const size = family === 4 ? ABI_SIZES.vip_addr4 : ABI_SIZES.vip_addr6;
    const decode = family === 4 ? decodeVipAddr4 : decodeVipAddr6;
    const slotCount = balancer.addressSlots;
    const bits = Math.log2(slotCount);
    const bytes = map.lookupRangeBytes(0, slotCount);
    const slots: (AddressEntry | null)[] = new Array(slotCount).fill(null);
    const seen = new Set<string>();
    const clear: number[] = [];
    for (let slot = 0; slot < slotCount; slot++) {
      const value = decode(bytes.subarray(slot * size, (slot + 1) * size));
      if (value === null) continue;
      const where = `IPv${family} address table slot ${slot} (${value.addr}, addr_id ${value.addrId})`;
      if (!candidateSlots(value.addr, bits).includes(slot)) {
        note('address_misplaced', `${where} is not one of the address's two slots; cleared`, true);
        clear.push(slot);
      } else if (seen.has(value.addr)) {
        note('address_duplicate', `${where} repeats an address held in its other slot; cleared`, true);
        clear.push(slot);
      } else if (addressIds.has(value.addrId) || value.addrId === 0) {
        note('address_id_shared', `${where}: addr_id ${value.addrId} is ${value.addrId === 0 ? 'never valid' : `also ${addressIds.get(value.addrId)}'s`}; cleared`, true);
        clear.push(slot);
      } else {
        seen.add(value.addr);
        addressIds.set(value.addrId, value.addr);
        slots[slot] = { address: value.addr, flags: value.flags, id: value.addrId };
      }
    }
    if (clear.length > 0) balancer.writeAddressSlots(clear.map((slot) => ({ family, slot, entry: null })));
    return new AddressTable(family, slotCount, slots);
  };
  const addresses = { v4: readTable(4), v6: readTable(6) };

  // The adopted VIPs, with their rings as the map holds them.
  const vips = new Map<string, ProgrammedVip>();
  for (const entry of adoptedEntries.values()) {
    const protocol = PROTOCOLS[entry.protocol]!;
    const key = vipKey({ address: entry.address, port: entry.port, protocol });
    vips.set(key, {
      key,
      name: key, // until reconcileAdopted names it from the desired state
      address: entry.address,
      family: addressFamily(entry.address),
      port: entry.port,
      protocol,
      id: entry.id,
      flags: entry.flags,
      gen: entry.gen,
      ringDigest: '',
      backendsSignature: ADOPTED_SIGNATURE,
    });
  }

  return {
    state: {
      vips,
      backends,
      addresses,
      vipIds: poolFromUsed(0, maxVips, adoptedEntries.keys()),
      backendIds: poolFromUsed(1, maxBackends, backends.values()),
      addressIds: poolFromUsed(1, ADDRESS_ID_LIMIT, addressIds.keys()),
      lastGen,
    },
    foundPrevious: vips.size > 0 || backends.size > 0 || addressIds.size > 0,
    findings,
  };
}

export type ReconciledAdoption = {
  /** The adopted state with names, and signatures where the ring already matches. */
  readonly state: ProgrammedState;
  /** Keys of adopted VIPs whose ring is exactly what the desired state builds. */
  readonly identical: readonly string[];
  /** Keys of adopted VIPs that are desired but whose ring differs (the plan writes a delta). */
  readonly differing: readonly string[];
  /** Keys of adopted VIPs the desired state does not have (the plan deletes them). */
  readonly unwanted: readonly string[];
};

/**
 * Matches an adopted state against the first desired state: names come from the
 * desired VIPs, and a VIP whose ring in the map equals the ring the planner would
 * build takes the planner's signature, so the next plan leaves it alone. The planner
 * itself is the judge (run on the VIPs both sides share), so the signature and the
 * ring are exactly what a plan would produce. Pure compute.
 */
export function reconcileAdopted(adopted: ProgrammedState, desired: NodeDesiredState, ringSize: number,
  ringInMap: (vipId: number) => Uint32Array): ReconciledAdoption {
  const shared = desired.vips.filter((v) => adopted.vips.has(vipKey(v)));
  const trial = plan(adopted, { ...desired, vips: shared }, ringSize);
  // Adopted VIPs have no signature, so the trial rebuilds every shared ring; those equal
  // to what the map holds are adopted as planned.
  const rewritten = new Set(trial.writeRings.filter((w) => !sameRing(buildRing(w), ringInMap(w.vipId))).map((w) => w.vipId));

  const vips = new Map<string, ProgrammedVip>();
  const identical: string[] = [];
  const differing: string[] = [];
  const unwanted: string[] = [];
  for (const [key, vip] of adopted.vips) {
    const planned = trial.next.vips.get(key);
    if (planned === undefined) {
      unwanted.push(key);
      vips.set(key, vip);
    } else if (!rewritten.has(vip.id)) {
      identical.push(key);
      vips.set(key, { ...vip, name: planned.name, backendsSignature: planned.backendsSignature, ringDigest: planned.ringDigest });
    } else {
      differing.push(key);
      vips.set(key, { ...vip, name: planned.name });
    }
  }
  return { state: { ...adopted, vips }, identical, differing, unwanted };
}

function sameRing(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
