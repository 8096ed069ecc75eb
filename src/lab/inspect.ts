// Reads a balancer node's pinned maps from outside the agent: what the Maglev ring
// of a VIP holds and which flows the connection table remembers. The lab uses this to
// know when a change is programmed and to show that state survives an agent restart,
// independently of what the agent itself reports. Pins are on the BPF filesystem,
// which is not per network namespace, so this runs in the test process. Every map is
// opened for one read and closed again, so nothing here keeps a map alive.
import { join } from 'node:path';
import { addressFamily } from '../shared/addresses.ts';
import type { Protocol } from '../shared/desired-state.ts';
import {
  decodeBackend, decodeConnValue, decodeFlow4Key, decodeFlow6Key, decodeVipMeta, u32, vip4Key, vip6Key, IPPROTO_TCP, IPPROTO_UDP,
} from '../agent/bpf/abi.ts';
import { BpfMap } from '../agent/bpf/map.ts';

/** The agent pins its balancer maps at <pinRoot>/maps/<name> (src/agent/loader.ts). */
export function balancerMapPin(pinRoot: string, map: string): string {
  return join(pinRoot, 'maps', map);
}

function withMap<T>(pinRoot: string, name: string, read: (map: BpfMap) => T): T {
  const map = BpfMap.openPinned(balancerMapPin(pinRoot, name));
  try {
    return read(map);
  } finally {
    map.close();
  }
}

const PROTO: Record<Protocol, number> = { TCP: IPPROTO_TCP, UDP: IPPROTO_UDP };

export type VipRef = { readonly address: string; readonly port: number; readonly protocol: Protocol };

/** The VIP's id in the maps, or undefined when it is not programmed. */
export function programmedVipId(pinRoot: string, vip: VipRef): number | undefined {
  const v4 = addressFamily(vip.address) === 4;
  const key = v4
    ? vip4Key({ addr: vip.address, port: vip.port, proto: PROTO[vip.protocol] })
    : vip6Key({ addr: vip.address, port: vip.port, proto: PROTO[vip.protocol] });
  const value = withMap(pinRoot, v4 ? 'vips_v4' : 'vips_v6', (m) => m.lookup(key));
  return value === undefined ? undefined : decodeVipMeta(value).vipId;
}

/** Backend id → address, for the ids asked about. */
function backendAddresses(pinRoot: string, ids: Iterable<number>): Map<number, string> {
  return withMap(pinRoot, 'backends', (m) => {
    const out = new Map<number, string>();
    for (const id of ids) {
      const value = m.lookup(u32(id));
      const decoded = value === undefined ? undefined : decodeBackend(value);
      if (decoded?.addr) out.set(id, decoded.addr);
    }
    return out;
  });
}

/**
 * Ring slots first … first + count - 1 as backend ids. The ring is one run of u32
 * slots however the map groups them into elements (one slot, or a chunk of several
 * without padding), so the slots are read as the bytes of the elements covering them.
 */
function readRingSlots(map: BpfMap, first: number, count: number): Uint32Array {
  const slotsPerElement = map.valueSize / 4;
  const firstElement = Math.floor(first / slotsPerElement);
  const elements = Math.ceil((first + count) / slotsPerElement) - firstElement;
  const bytes = map.lookupRangeBytes(firstElement, elements);
  const all = new Uint32Array(elements * slotsPerElement); // own, 4-byte aligned memory
  new Uint8Array(all.buffer).set(bytes);
  const offset = first - firstElement * slotsPerElement;
  return all.subarray(offset, offset + count);
}

/**
 * Ring slots per backend address for a VIP (a share of the ring is a share of new
 * flows). Empty when the VIP is not programmed; slots naming no backend count under ''.
 */
export function ringShares(pinRoot: string, ringSize: number, vip: VipRef): Map<string, number> {
  const vipId = programmedVipId(pinRoot, vip);
  if (vipId === undefined) return new Map();
  const ring = withMap(pinRoot, 'ring', (m) => readRingSlots(m, vipId * ringSize, ringSize));
  const slotsById = new Map<number, number>();
  for (const id of ring) slotsById.set(id, (slotsById.get(id) ?? 0) + 1);
  const addresses = backendAddresses(pinRoot, [...slotsById.keys()].filter((id) => id !== 0));
  const out = new Map<string, number>();
  for (const [id, slots] of slotsById) {
    const address = addresses.get(id) ?? '';
    out.set(address, (out.get(address) ?? 0) + slots);
  }
  return out;
}

export type ConnEntry = {
  readonly client: string;
  readonly sourcePort: number;
  readonly port: number;
  readonly protocol: number;
  readonly backendId: number;
  /** The backend the entry sends the flow to ('' if that id is no longer in use). */
  readonly backend: string;
};

/** Every flow in the node's connection tables (both families). */
export function connTable(pinRoot: string): ConnEntry[] {
  const raw: Omit<ConnEntry, 'backend'>[] = [];
  for (const [name, decodeKey] of [['conn_v4', decodeFlow4Key], ['conn_v6', decodeFlow6Key]] as const) {
    withMap(pinRoot, name, (m) => {
      for (const key of m.keys()) {
        const value = m.lookup(key);
        if (value === undefined) continue; // evicted while we walked
        const k = decodeKey(key);
        raw.push({ client: k.src, sourcePort: k.sport, port: k.dport, protocol: k.proto, backendId: decodeConnValue(value).backendId });
      }
    });
  }
  const addresses = backendAddresses(pinRoot, new Set(raw.map((e) => e.backendId)));
  return raw.map((e) => ({ ...e, backend: addresses.get(e.backendId) ?? '' }));
}
