// What the agent believes is programmed in the balancer's maps. Built by the planner
// as it plans, or read back from pinned maps when a restarted agent adopts them
// (adopt.ts). Pure data.
import type { Family } from '../../shared/addresses.ts';
import type { Protocol } from '../../shared/desired-state.ts';

export const VIP_FLAGS = {
  srcIpOnly: 1 << 0,
  lruBypass: 1 << 1,
  encapGue: 1 << 2,
  addressMarker: 1 << 3,
} as const; // keep in sync with VIP_F_* in bpf/include/consts.h

export type ProgrammedVip = {
  readonly key: string;        // vipKey(): protocol/address:port
  readonly name: string;
  readonly address: string;
  readonly family: Family;
  readonly port: number;
  readonly protocol: Protocol;
  readonly id: number;         // vip_id: ring base and vip_stats index
  readonly flags: number;      // VIP_FLAGS
  readonly ring: Uint32Array;  // what the ring map holds for this VIP
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
  readonly markers: ReadonlySet<string>;          // VIP addresses with an (address, 0, ICMP) entry
  readonly vipIds: IdPool;
  readonly backendIds: IdPool;
};

export function emptyState(limits: { maxVips: number; maxBackends: number }): ProgrammedState {
  return {
    vips: new Map(),
    backends: new Map(),
    markers: new Set(),
    vipIds: { first: 0, limit: limits.maxVips, highWater: 0, freed: [] },
    backendIds: { first: 1, limit: limits.maxBackends, highWater: 1, freed: [] },
  };
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
