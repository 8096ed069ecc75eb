// What the agent believes is programmed in the balancer's maps. Built by the planner
// as it plans, or read back from pinned maps when a restarted agent adopts them
// (adopt.ts). Pure data.
import type { Family } from '../../shared/addresses.ts';
import type { Protocol } from '../../shared/desired-state.ts';
import { AddressTable, addressSlotsFor } from './address-table.ts';

export const VIP_FLAGS = {
  srcIpOnly: 1 << 0,
  lruBypass: 1 << 1,
  encapGue: 1 << 2,
} as const; // keep in sync with VIP_F_* in bpf/include/consts.h

export const ADDRESS_FLAGS = {
  usesTable: 1 << 0,
  hasBypass: 1 << 1,
} as const; // keep in sync with ADDR_F_* in bpf/include/consts.h

export type ProgrammedVip = {
  readonly key: string;        // vipKey(): protocol/address:port
  readonly name: string;
  readonly address: string;
  readonly family: Family;
  readonly port: number;
  readonly protocol: Protocol;
  readonly id: number;         // vip_id: ring base and vip_stats index
  readonly flags: number;      // VIP_FLAGS
  readonly gen: number;        // changes when the id gets a new VIP: stale table entries stop matching
  /** ringKeyDigest of the ring (comparable across nodes); '' until known after adoption.
   * The ring itself is not kept: the ring map is the truth, and holding every ring
   * here would double the agent's memory (134 MB for 512 VIPs × 65537 slots). */
  readonly ringDigest: string;
  /** The (address, weight) set the ring was built from, to skip unchanged rings. */
  readonly backendsSignature: string;
};

/** Ids handed out so far, and the order freed ids are reused in (oldest first). */
export type IdPool = {
  readonly first: number;      // lowest valid id (0 for VIPs, 1 for backends: 0 = none)
  readonly limit: number;      // one past the highest valid id (the map's max_entries)
  readonly highWater: number;  // every id below this has been handed out at some time
  readonly freed: readonly number[];
};

export type ProgrammedState = {
  readonly vips: ReadonlyMap<string, ProgrammedVip>;
  readonly backends: ReadonlyMap<string, number>; // canonical address → backend id
  /**
   * How many VIPs name each backend (the keys are those of `backends`). Lets a plan
   * touch only the VIPs that changed; absent after adoption (the signatures are not
   * known yet), when the next plan counts them from the whole desired state.
   */
  readonly backendRefs?: ReadonlyMap<string, number>;
  /** The VIP address tables as programmed (treated as immutable: the planner clones). */
  readonly addresses: { readonly v4: AddressTable; readonly v6: AddressTable };
  readonly vipIds: IdPool;
  readonly backendIds: IdPool;
  readonly addressIds: IdPool;
  /** The last VIP gen handed out (1..65535, wrapping; 0 means a free id). */
  readonly lastGen: number;
};

export function emptyState(limits: { maxVips: number; maxBackends: number }): ProgrammedState {
  const slots = addressSlotsFor(limits.maxVips);
  return {
    vips: new Map(),
    backends: new Map(),
    backendRefs: new Map(),
    addresses: { v4: new AddressTable(4, slots), v6: new AddressTable(6, slots) },
    vipIds: { first: 0, limit: limits.maxVips, highWater: 0, freed: [] },
    backendIds: { first: 1, limit: limits.maxBackends, highWater: 1, freed: [] },
    addressIds: { first: 1, limit: ADDRESS_ID_LIMIT, highWater: 1, freed: [] },
    lastGen: 0,
  };
}

/** addr_id is a u16 and 0 is never used. */
export const ADDRESS_ID_LIMIT = 0x10000;

export function nextGen(gen: number): number {
  return (gen % 0xffff) + 1;
}

/** Rebuilds a pool from the ids in use, as after a restart: gaps become free ids. */
export function poolFromUsed(first: number, limit: number, used: Iterable<number>): IdPool {
  const inUse = new Set(used);
  let highWater = first;
  for (const id of inUse) highWater = Math.max(highWater, id + 1);
  const freed: number[] = [];
  for (let id = first; id < highWater; id++) if (!inUse.has(id)) freed.push(id);
  return { first, limit, highWater, freed };
}
