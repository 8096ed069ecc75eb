// What `fulcrum inspect` reports about a node's pinned data plane, and the pure compute
// that turns raw map contents into it: ring size from the map sizes, VIP flags in words,
// each backend's share of a Maglev ring, connection-table fill, counters by reason.
// No I/O here: pinned.ts reads the maps and calls these; the CLI formats the result.
//
// The report is also `fulcrum inspect --json`. Its field names are a contract with
// scripts (docs/agent.md#inspecting-a-node lists them): add fields, never rename them.
import { vipKey, type Protocol } from '../../shared/desired-state.ts';
import { reasonAction, type Reason, type ReasonAction } from '../../shared/reasons.ts';
import {
  IPPROTO_TCP, IPPROTO_UDP, RING_CHUNK, VIP_F_ENCAP_GUE, VIP_F_LRU_BYPASS, VIP_F_SRC_IP_ONLY, type Counter,
} from '../bpf/abi.ts';
import { isPrime } from '../dataplane/maglev.ts';

/** The parts of the report, in the order they are printed. */
export const SECTIONS = ['vips', 'backends', 'ring', 'conntrack', 'counters'] as const;
export type Section = (typeof SECTIONS)[number];

// ─── ring size ───────────────────────────────────────────────────────────────────

export type RingSizeResult =
  | { readonly outcome: 'found'; readonly ringSize: number }
  | { readonly outcome: 'ambiguous'; readonly candidates: readonly number[] }
  | { readonly outcome: 'mismatch'; readonly message: string };

/**
 * The ring size is load-time configuration, not stored in any map; but the agent sizes
 * the ring map as ceil(maxVips × ringSize / RING_CHUNK) elements and vip_stats as
 * maxVips entries (balancer.ts prepareBalancerObject), and ring sizes are prime. With
 * maxVips ≥ RING_CHUNK that pins the size down; smaller maxVips can leave a few primes
 * to choose from, and then the operator says which (--ring-size).
 */
export function resolveRingSize(ringElements: number, maxVips: number, given?: number): RingSizeResult {
  const elementsFor = (ringSize: number): number => Math.ceil((maxVips * ringSize) / RING_CHUNK);
  if (given !== undefined) {
    return elementsFor(given) === ringElements
      ? { outcome: 'found', ringSize: given }
      : {
        outcome: 'mismatch',
        message: `ring size ${given} does not fit the pinned ring map: ${maxVips} VIPs × ${given} slots would take ` +
          `${elementsFor(given)} ring elements, the map has ${ringElements}`,
      };
  }
  const low = Math.max(2, Math.floor(((ringElements - 1) * RING_CHUNK) / maxVips));
  const high = Math.ceil((ringElements * RING_CHUNK) / maxVips);
  const candidates: number[] = [];
  for (let n = low; n <= high; n++) if (elementsFor(n) === ringElements && isPrime(n)) candidates.push(n);
  if (candidates.length === 1) return { outcome: 'found', ringSize: candidates[0]! };
  if (candidates.length === 0) {
    return { outcome: 'mismatch', message: `no prime ring size gives a ring map of ${ringElements} elements for ${maxVips} VIPs` };
  }
  return { outcome: 'ambiguous', candidates };
}

// ─── VIPs ────────────────────────────────────────────────────────────────────────

/** A VIP entry as the maps hold it (vips_v4 / vips_v6 key and value). */
export type RawVip = {
  readonly address: string;
  readonly port: number;
  /** IP protocol number. */
  readonly protocol: number;
  readonly id: number;
  readonly flags: number;
  readonly gen: number;
};

export type VipFlag = 'src-ip-only' | 'lru-bypass';
export type Encapsulation = 'ipip' | 'gue';

export type VipReport = {
  /** "TCP/10.0.0.1:80", "UDP/[2001:db8::1]:53": the metrics' vip label for adopted VIPs. */
  readonly key: string;
  readonly id: number;
  readonly address: string;
  /** 0: every port. */
  readonly port: number;
  /** "TCP", "UDP"; another protocol number as "proto <n>" (the agent writes none). */
  readonly protocol: string;
  readonly flags: readonly VipFlag[];
  /** ipip: IPIP / IP6IP6 / 4in6 / 6in4 by the families; gue: GUE (UDP). */
  readonly encapsulation: Encapsulation;
  /** Bumped whenever the id is given to a new VIP; connection-table entries of an older gen are ignored. */
  readonly gen: number;
  readonly ringSize: number;
  /** Forwarded packets and their bytes before encapsulation, summed over CPUs. */
  readonly packets: bigint;
  readonly bytes: bigint;
};

const PROTOCOL_NAMES: Readonly<Record<number, Protocol>> = { [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP' };

export function protocolName(protocol: number): string {
  return PROTOCOL_NAMES[protocol] ?? `proto ${protocol}`;
}

export function vipFlags(flags: number): VipFlag[] {
  const out: VipFlag[] = [];
  if ((flags & VIP_F_SRC_IP_ONLY) !== 0) out.push('src-ip-only');
  if ((flags & VIP_F_LRU_BYPASS) !== 0) out.push('lru-bypass');
  return out;
}

export function vipReport(vip: RawVip, counter: Counter, ringSize: number): VipReport {
  const protocol = protocolName(vip.protocol);
  return {
    key: vipKey({ address: vip.address, port: vip.port, protocol: protocol as Protocol }),
    id: vip.id,
    address: vip.address,
    port: vip.port,
    protocol,
    flags: vipFlags(vip.flags),
    encapsulation: (vip.flags & VIP_F_ENCAP_GUE) !== 0 ? 'gue' : 'ipip',
    gen: vip.gen,
    ringSize,
    packets: counter.packets,
    bytes: counter.bytes,
  };
}

/** VIPs in id order: the order the agent hands ids out, stable between runs. */
export function byId<T extends { readonly id: number }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => a.id - b.id);
}

// ─── backends and ring shares ────────────────────────────────────────────────────

export type BackendReport = {
  readonly id: number;
  readonly address: string;
  readonly packets: bigint;
  readonly bytes: bigint;
};

export type RingMember = {
  readonly backendId: number;
  /** null: the slot names an id the backends table does not hold (drop_no_backend). */
  readonly address: string | null;
  readonly slots: number;
  /** slots / ringSize × 100: the share of new flows this backend gets. */
  readonly percent: number;
};

export type RingShareReport = {
  readonly vip: string;
  readonly vipId: number;
  readonly ringSize: number;
  /** Backends holding slots, most slots first (a draining backend, weight 0, holds none). */
  readonly members: readonly RingMember[];
  /** Slots holding no backend (id 0): a VIP whose backends all drain, or one not written yet. */
  readonly emptySlots: number;
};

/** Who holds how many slots of one VIP's ring. */
export function ringShareReport(vip: Pick<VipReport, 'key' | 'id'>, slots: Uint32Array, backends: ReadonlyMap<number, string>): RingShareReport {
  const counts = new Map<number, number>();
  for (const id of slots) counts.set(id, (counts.get(id) ?? 0) + 1);
  const members: RingMember[] = [];
  for (const [backendId, n] of counts) {
    if (backendId === 0) continue;
    members.push({ backendId, address: backends.get(backendId) ?? null, slots: n, percent: percentOf(n, slots.length) });
  }
  members.sort((a, b) => b.slots - a.slots || a.backendId - b.backendId);
  return { vip: vip.key, vipId: vip.id, ringSize: slots.length, members, emptySlots: counts.get(0) ?? 0 };
}

/** A percentage with two decimals (enough to see a weight take effect on a 65537-slot ring). */
export function percentOf(part: number, whole: number): number {
  return whole === 0 ? 0 : Math.round((part / whole) * 10_000) / 100;
}

// ─── connection table ────────────────────────────────────────────────────────────

export type ConnTableReport = {
  readonly map: 'conn_v4' | 'conn_v6';
  readonly family: 4 | 6;
  readonly entries: number;
  /** max_entries: the whole table, shared out among the possible CPUs. */
  readonly capacity: number;
  /** capacity / possible CPUs: what one CPU's LRU list holds before it evicts. */
  readonly perCpuCapacity: number;
  /** entries / capacity × 100. */
  readonly fillPercent: number;
  /** entries / possible CPUs: the fill of an average CPU (which CPU holds an entry is not visible from user space). */
  readonly meanPerCpu: number;
  /** How long counting took (milliseconds). */
  readonly countMs: number;
};

export type ConntrackReport = {
  readonly possibleCpus: number;
  readonly tables: readonly ConnTableReport[];
  /** Packets of established flows that found their backend in the table. */
  readonly hits: bigint;
  /** Packets for which the ring was consulted (new flows, SYNs, unknown mid-flow packets). */
  readonly misses: bigint;
  /** UDP entries found expired (placed by the ring again). */
  readonly udpExpired: bigint;
};

/**
 * BPF_F_NO_COMMON_LRU gives every possible CPU its own LRU list of max_entries /
 * possible CPUs nodes (the kernel rounds max_entries up to a multiple of the CPU count).
 */
export function connTableReport(map: 'conn_v4' | 'conn_v6', entries: number, capacity: number, possibleCpus: number, countMs: number): ConnTableReport {
  return {
    map,
    family: map === 'conn_v4' ? 4 : 6,
    entries,
    capacity,
    perCpuCapacity: Math.floor(capacity / possibleCpus),
    fillPercent: percentOf(entries, capacity),
    meanPerCpu: Math.round((entries / possibleCpus) * 10) / 10,
    countMs: Math.round(countMs * 100) / 100,
  };
}

// ─── counters and attachments ────────────────────────────────────────────────────

export type ReasonReport = {
  readonly reason: Reason;
  readonly action: ReasonAction;
  readonly packets: bigint;
  readonly bytes: bigint;
};

/** Every reason the balancer counts, in enum order, zeros included (a zero is an answer too). */
export function reasonReports(reasons: readonly Reason[], counters: (reason: Reason) => Counter): ReasonReport[] {
  return reasons.map((reason) => ({ reason, action: reasonAction(reason), ...counters(reason) }));
}

/**
 * How a pinned XDP link runs: native (driver), generic (skb), offload (NIC);
 * detached: its interface is gone (the kernel reports ifindex 0); unknown: no
 * interface of that name and index in the namespace asked (--netns).
 */
export type AttachMode = 'native' | 'generic' | 'offload' | 'detached' | 'unknown';

export type AttachmentReport = {
  /** The interface the link was pinned for (<pinDir>/links/<interface>). */
  readonly interface: string;
  readonly pinPath: string;
  readonly linkId: number;
  readonly programId: number;
  readonly ifindex: number;
  readonly mode: AttachMode;
};

/** The interface's XDP program ids by mode (bpf_xdp_query), seen from some namespace. */
export type XdpIds = { readonly ifindex: number; readonly native: number; readonly generic: number; readonly offload: number };

/** Which hook runs the link's program, given what the interface of that name reports (undefined: no such interface). */
export function attachMode(link: { readonly ifindex: number; readonly programId: number }, seen: XdpIds | undefined): AttachMode {
  if (link.ifindex === 0) return 'detached';
  if (seen === undefined || seen.ifindex !== link.ifindex) return 'unknown';
  if (seen.native === link.programId) return 'native';
  if (seen.generic === link.programId) return 'generic';
  if (seen.offload === link.programId) return 'offload';
  return 'unknown';
}

// ─── the whole report ────────────────────────────────────────────────────────────

/** `fulcrum inspect --json`: a key is present when its section was asked for. */
export type InspectReport = {
  readonly pinDir: string;
  readonly possibleCpus: number;
  /** With vips, backends or ring. */
  readonly ringSize?: number;
  readonly vips?: readonly VipReport[];
  readonly backends?: readonly BackendReport[];
  readonly ringShares?: readonly RingShareReport[];
  readonly conntrack?: ConntrackReport;
  readonly notForwarded?: readonly ReasonReport[];
  readonly attachments?: readonly AttachmentReport[];
};
