// Reading a node's balancer from its pins, from outside the agent: `fulcrum inspect`,
// and the lab, which checks what a change programmed and that state survives an agent
// restart independently of what the agent reports.
//
// Nothing here changes the data plane. Maps are opened read-only (BPF_F_RDONLY: the
// kernel refuses any write through these fds); links are opened only to read their
// info (the kernel hands out links read-write, so that is a promise of this code, not
// of the fd); interfaces are only queried. Every map is closed again by close(), so an
// inspection keeps no map alive. Pins live on the BPF filesystem, which is per mount
// namespace, not per network namespace: a namespace matters only for the attach mode.
import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FulcrumError } from '../../shared/errors.ts';
import { addressFamily } from '../../shared/addresses.ts';
import type { Protocol } from '../../shared/desired-state.ts';
import { GSTATS, type GlobalStat, type Reason, REASONS } from '../../shared/reasons.ts';
import {
  ABI_SIZES, decodeConnValue, decodeFlow4Key, decodeFlow6Key, decodeVipMeta,
  u32, vip4Key, vip6Key, type AbiStructName, type Counter,
} from '../bpf/abi.ts';
import { ifindexOf, linkInfo, queryXdp } from '../bpf/attach.ts';
import { bpffsState, notMounted, type BpffsState } from '../bpf/bpffs.ts';
import { ENOTSUPP, SIZEOF, bpfFailure, errno, errnoName, libbpf, numPossibleCpus } from '../bpf/libbpf.ts';
import { BpfMap } from '../bpf/map.ts';
import { runInNetns } from '../bpf/netns.ts';
import { bpfFdKind, closeQuietly } from '../bpf/pin.ts';
import { BALANCER_MAPS, PROTOCOL_NUMBER, readBackendMap, readVipMaps, type BalancerMapName } from '../dataplane/balancer.ts';
import { pinLayout } from '../loader.ts';
import { BALANCER_REASONS } from '../metrics.ts';
import {
  attachMode, byId, connTableReport, reasonReports, resolveRingSize, ringShareReport, vipReport,
  type AttachmentReport, type BackendReport, type ConntrackReport, type InspectReport, type RawVip, type Section,
  type VipReport, type XdpIds,
} from './report.ts';

// ─── opening pins read-only ──────────────────────────────────────────────────────

/** linux/bpf.h: open the pinned object for reading only. */
const BPF_F_RDONLY = 1 << 3;

/** The map pinned at `path`, opened read-only: updates and deletes through it fail with EPERM. */
export function openPinnedMapReadOnly(path: string): BpfMap {
  const fd = libbpf.bpf_obj_get_opts(path, { sz: SIZEOF.bpf_obj_get_opts, file_flags: BPF_F_RDONLY });
  if (fd < 0) {
    const hints: Record<string, string> = {
      ENOENT: `nothing is pinned at ${path}`,
      EPERM: 'reading BPF maps needs root (CAP_BPF and CAP_SYS_ADMIN, or CAP_DAC_OVERRIDE for the pin\'s mode)',
      EACCES: 'no read permission on the pinned file: run as root',
    };
    throw bpfFailure('ERR_BPF_MAP', `cannot open the pinned map at ${path}`, fd, { hint: hints[errnoName(fd)], details: { path } });
  }
  const kind = bpfFdKind(fd);
  if (kind !== 'map') {
    closeQuietly(fd);
    throw new FulcrumError('ERR_BPF_MAP', `${path} holds a pinned ${kind}, not a map`, { details: { path, kind } });
  }
  try {
    return BpfMap.fromFd(fd, { owned: true, name: basename(path) });
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

// ─── is anything pinned? ─────────────────────────────────────────────────────────

export type PinPresence =
  | { readonly outcome: 'pinned' }
  | { readonly outcome: 'absent' }
  | { readonly outcome: 'denied'; readonly message: string }
  /** The pin root is not on a BPF filesystem: nothing can be pinned there. */
  | { readonly outcome: 'no-bpffs'; readonly error: FulcrumError };

/**
 * Whether a balancer is pinned under `pinRoot` (its maps at <pinRoot>/maps/). A pin root
 * the caller may not read is told apart from one that is not there, whichever way the BPF
 * filesystem is mounted: systemd mounts it 0700 (a non-root user cannot even look inside),
 * the kernel's default is 1777 with the pins 0600 (the names are listed, the maps do not
 * open). Both are "run as root", never "nothing pinned".
 */
export function pinPresence(pinRoot: string): PinPresence {
  const denied = (path: string): PinPresence => ({
    outcome: 'denied',
    message: `cannot read ${path}: permission denied — the BPF filesystem is readable by root only; run fulcrum inspect as root (sudo)`,
  });
  const isPermission = (code: unknown): boolean => code === 'EACCES' || code === 'EPERM';
  let state: BpffsState;
  try {
    state = bpffsState(pinRoot);
  } catch (err) {
    if (err instanceof FulcrumError && isPermission(err.details['errno'])) return denied(String(err.details['path']));
    throw err;
  }
  if (state.outcome === 'other') return { outcome: 'no-bpffs', error: notMounted(pinRoot, state) };
  const { maps } = pinLayout(pinRoot);
  let names: string[];
  try {
    if (!statSync(pinRoot).isDirectory()) return { outcome: 'absent' };
    names = readdirSync(maps);
  } catch (err) {
    const { code, path } = err as NodeJS.ErrnoException;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { outcome: 'absent' };
    if (isPermission(code)) return denied(path ?? pinRoot);
    throw err;
  }
  const found = BALANCER_MAPS.filter((name) => names.includes(name));
  if (found.length === 0) return { outcome: 'absent' };
  const first = join(maps, found[0]!);
  try {
    accessSync(first, constants.R_OK);
  } catch (err) {
    if (isPermission((err as NodeJS.ErrnoException).code)) return denied(first);
    throw err;
  }
  return { outcome: 'pinned' };
}

// ─── the balancer's maps, read-only ──────────────────────────────────────────────

/** The key and value each map must have for this build to read it (bpf/include/maps.h). */
const LAYOUT: Readonly<Record<BalancerMapName, { key: number; value: AbiStructName }>> = {
  vips_v4: { key: ABI_SIZES.vip4_key, value: 'vip_meta' },
  vips_v6: { key: ABI_SIZES.vip6_key, value: 'vip_meta' },
  vip_state: { key: 4, value: 'vip_meta' },
  vip_addrs_v4: { key: 4, value: 'vip_addr4' },
  vip_addrs_v6: { key: 4, value: 'vip_addr6' },
  ring: { key: 4, value: 'ring_chunk' },
  backends: { key: 4, value: 'backend' },
  conn_v4: { key: ABI_SIZES.flow4_key, value: 'conn_value' },
  conn_v6: { key: ABI_SIZES.flow6_key, value: 'conn_value' },
  vip_stats: { key: 4, value: 'counter' },
  backend_stats: { key: 4, value: 'counter' },
  reason_stats: { key: 4, value: 'counter' },
  global_stats: { key: 4, value: 'counter' },
};

const ZERO: Counter = { packets: 0n, bytes: 0n };
const ENOENT = errno('ENOENT');
const EINVAL = errno('EINVAL');
const EOPNOTSUPP = errno('EOPNOTSUPP');
/** Entries per bpf_map_lookup_batch call when walking a hash map. */
const WALK_BATCH = 4096;

/** A read-only view of the balancer pinned under a pin root. Maps open on first use; close() closes them. */
export class PinnedBalancer {
  readonly pinRoot: string;
  readonly #maps = new Map<BalancerMapName, BpfMap>();

  constructor(pinRoot: string) {
    this.pinRoot = pinRoot;
  }

  /** The pinned map, checked against the layout this build reads. */
  map(name: BalancerMapName): BpfMap {
    const open = this.#maps.get(name);
    if (open !== undefined) return open;
    const path = join(pinLayout(this.pinRoot).maps, name);
    let map: BpfMap;
    try {
      map = openPinnedMapReadOnly(path);
    } catch (err) {
      if (err instanceof FulcrumError && err.details['errnoName'] === 'ENOENT') {
        throw new FulcrumError('ERR_BPF_MAP', `map ${name} is not pinned at ${path}: the data plane at ${this.pinRoot} is incomplete ` +
          '(pinned by another version of the agent, or half uninstalled)', { cause: err, details: { path } });
      }
      throw err;
    }
    const want = LAYOUT[name];
    const valueSize = ABI_SIZES[want.value];
    if (map.keySize !== want.key || map.valueSize !== valueSize) {
      map.close();
      throw new FulcrumError('ERR_BPF_MAP',
        `${path} has ${map.keySize}-byte keys and ${map.valueSize}-byte values; this fulcrum reads ${want.key} and ${valueSize} ` +
          '(the agent that pinned it is another version: inspect with the fulcrum of that agent)', { details: { path } });
    }
    this.#maps.set(name, map);
    return map;
  }

  close(): void {
    for (const map of this.#maps.values()) map.close();
    this.#maps.clear();
  }

  /** maxVips, as vip_stats is sized. */
  get maxVips(): number {
    return this.map('vip_stats').maxEntries;
  }

  /** Every VIP entry of both families. */
  vips(): RawVip[] {
    return readVipMaps(this.map('vips_v4'), this.map('vips_v6'));
  }

  /** The VIP's id, or undefined when it is not programmed. */
  vipId(vip: VipRef): number | undefined {
    const v4 = addressFamily(vip.address) === 4;
    const key = { addr: vip.address, port: vip.port, proto: PROTOCOL_NUMBER[vip.protocol] };
    const value = v4 ? this.map('vips_v4').lookup(vip4Key(key)) : this.map('vips_v6').lookup(vip6Key(key));
    return value === undefined ? undefined : decodeVipMeta(value).vipId;
  }

  /** Backend slots in use: id → address (one batched read of the table). */
  backends(): Map<number, string> {
    return readBackendMap(this.map('backends'));
  }

  /**
   * Ring slots of one VIP as backend ids. The ring is one run of u32 slots however the
   * map groups them into elements (ring_chunk has no padding), so the slots are read as
   * the bytes of the elements covering them.
   */
  ringSlots(vipId: number, ringSize: number): Uint32Array {
    const map = this.map('ring');
    const slotsPerElement = map.valueSize / 4;
    const first = vipId * ringSize;
    const firstElement = Math.floor(first / slotsPerElement);
    const elements = Math.ceil((first + ringSize) / slotsPerElement) - firstElement;
    const all = new Uint32Array(elements * slotsPerElement); // own, 4-byte aligned memory
    new Uint8Array(all.buffer).set(map.lookupRangeBytes(firstElement, elements));
    const offset = first - firstElement * slotsPerElement;
    return all.subarray(offset, offset + ringSize);
  }

  /** A per-CPU counter summed over CPUs (zero when the index holds none). */
  counter(name: 'vip_stats' | 'backend_stats' | 'reason_stats' | 'global_stats', index: number): Counter {
    return this.map(name).counterSum(u32(index)) ?? ZERO;
  }

  reasonCounter(reason: Reason): Counter {
    return this.counter('reason_stats', REASONS.indexOf(reason));
  }

  globalCounter(stat: GlobalStat): Counter {
    return this.counter('global_stats', GSTATS.indexOf(stat));
  }

  /**
   * Visits every entry of a connection table, a batch at a time. Batched lookups walk
   * the hash buckets by index, so entries the LRU evicts meanwhile cannot send the walk
   * back to the start (bpf_map_get_next_key restarts from the first key when the
   * previous one is gone, which on a busy table can count entries twice); kernels
   * without batch support for the map fall back to that walk.
   */
  walkConnTable(name: 'conn_v4' | 'conn_v6', visit: (keys: Buffer, values: Buffer, count: number) => void): void {
    const map = this.map(name);
    const keys = Buffer.alloc(WALK_BATCH * map.keySize);
    const values = Buffer.alloc(WALK_BATCH * map.valueSize);
    // The batch token is the kernel's bucket index (a u32); 8 bytes leave room.
    const token = Buffer.alloc(8);
    let first = true;
    for (;;) {
      const count: [number] = [WALK_BATCH];
      const ret = libbpf.bpf_map_lookup_batch(map.fd, first ? null : Buffer.from(token), token, keys, values, count,
        { sz: SIZEOF.bpf_map_batch_opts, elem_flags: 0, flags: 0 });
      if (ret < 0 && -ret !== ENOENT) {
        if (first && [ENOTSUPP, EOPNOTSUPP, EINVAL].includes(-ret)) return this.#walkByKeys(map, visit);
        throw bpfFailure('ERR_BPF_MAP', `${map.description}: batch lookup failed`, ret);
      }
      if (count[0] > 0) visit(keys, values, count[0]);
      if (ret < 0) return; // ENOENT: the walk reached the last bucket
      first = false;
    }
  }

  #walkByKeys(map: BpfMap, visit: (keys: Buffer, values: Buffer, count: number) => void): void {
    for (const [key, value] of map.entries()) visit(key, value, 1);
  }

  /** Entries of a connection table, and how long counting them took. */
  countConnTable(name: 'conn_v4' | 'conn_v6'): { entries: number; ms: number } {
    this.map(name); // opened before the clock starts
    const start = performance.now();
    let entries = 0;
    this.walkConnTable(name, (_keys, _values, count) => (entries += count));
    return { entries, ms: performance.now() - start };
  }

  /** The XDP links pinned under <pinRoot>/links/, one per interface. */
  links(): { interface: string; pinPath: string; linkId: number; programId: number; ifindex: number }[] {
    const { links } = pinLayout(this.pinRoot);
    let names: string[];
    try {
      names = readdirSync(links).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names.map((name) => {
      const pinPath = join(links, name);
      const info = linkInfo(pinPath);
      return { interface: name, pinPath, linkId: info.id, programId: info.progId, ifindex: info.ifindex };
    });
  }
}

// ─── XDP attach state (in a network namespace) ───────────────────────────────────

/**
 * What each named interface reports about its XDP programs, in the calling thread's
 * network namespace; undefined for a name that is not there. Exported so that it can
 * run inside another namespace (runInNetns calls it by name).
 */
export function xdpIdsHere(names: readonly string[]): (XdpIds | undefined)[] {
  return names.map((name) => {
    let ifindex: number;
    try {
      ifindex = ifindexOf(name);
    } catch {
      return undefined;
    }
    const state = queryXdp(ifindex);
    return { ifindex, native: state.nativeProgId, generic: state.genericProgId, offload: state.offloadProgId };
  });
}

async function xdpIds(names: readonly string[], netns: string | undefined): Promise<(XdpIds | undefined)[]> {
  if (names.length === 0) return [];
  return netns === undefined ? xdpIdsHere(names) : runInNetns(netns, import.meta.url, 'xdpIdsHere', [names]);
}

// ─── the report ──────────────────────────────────────────────────────────────────

export type InspectOptions = {
  readonly sections: readonly Section[];
  /** The ring size, when the map sizes leave more than one possible (maxVips below 16). */
  readonly ringSize?: number;
  /** Network namespace of the balancer's interfaces (default: this process's). */
  readonly netns?: string;
};

/** Reads what the sections need from the maps pinned under `pinRoot`. Throws in words when they cannot be read. */
export async function inspectPinned(pinRoot: string, options: InspectOptions): Promise<InspectReport> {
  const want = new Set(options.sections);
  const balancer = new PinnedBalancer(pinRoot);
  try {
    const possibleCpus = numPossibleCpus();
    const report: { -readonly [K in keyof InspectReport]: InspectReport[K] } = { pinDir: pinRoot, possibleCpus };
    if (want.has('vips') || want.has('backends') || want.has('ring')) {
      const ringSize = ringSizeOf(balancer, options.ringSize);
      const vips = byId(balancer.vips()).map((v) => vipReport(v, balancer.counter('vip_stats', v.id), ringSize));
      report.ringSize = ringSize;
      if (want.has('vips')) report.vips = vips;
      if (want.has('backends') || want.has('ring')) {
        const backends = balancer.backends();
        if (want.has('backends')) report.backends = backendReports(balancer, backends);
        report.ringShares = vips.map((v: VipReport) => ringShareReport(v, balancer.ringSlots(v.id, ringSize), backends));
      }
    }
    if (want.has('conntrack')) report.conntrack = conntrackReport(balancer, possibleCpus);
    if (want.has('counters')) {
      report.notForwarded = reasonReports(BALANCER_REASONS, (r) => balancer.reasonCounter(r));
      report.attachments = await attachmentReports(balancer, options.netns);
    }
    return report;
  } finally {
    balancer.close();
  }
}

function ringSizeOf(balancer: PinnedBalancer, given: number | undefined): number {
  const result = resolveRingSize(balancer.map('ring').maxEntries, balancer.maxVips, given);
  if (result.outcome === 'found') return result.ringSize;
  if (result.outcome === 'mismatch') throw new FulcrumError('ERR_CONFIG', result.message);
  throw new FulcrumError('ERR_CONFIG',
    `the pinned maps fit ring sizes ${result.candidates.join(', ')} (maxVips ${balancer.maxVips} is below 16, so the ring ` +
      'map\'s size does not pin it down): pass the agent\'s balancer.ringSize with --ring-size');
}

function backendReports(balancer: PinnedBalancer, backends: ReadonlyMap<number, string>): BackendReport[] {
  return [...backends].sort((a, b) => a[0] - b[0]).map(([id, address]) => ({ id, address, ...balancer.counter('backend_stats', id) }));
}

function conntrackReport(balancer: PinnedBalancer, possibleCpus: number): ConntrackReport {
  const tables = (['conn_v4', 'conn_v6'] as const).map((name) => {
    const { entries, ms } = balancer.countConnTable(name);
    return connTableReport(name, entries, balancer.map(name).maxEntries, possibleCpus, ms);
  });
  return {
    possibleCpus,
    tables,
    hits: balancer.globalCounter('conn_hit').packets,
    misses: balancer.globalCounter('conn_miss').packets,
    udpExpired: balancer.globalCounter('conn_udp_expired').packets,
  };
}

async function attachmentReports(balancer: PinnedBalancer, netns: string | undefined): Promise<AttachmentReport[]> {
  const links = balancer.links();
  const seen = await xdpIds(links.map((l) => l.interface), netns);
  return links.map((link, i) => ({ ...link, mode: attachMode(link, seen[i]) }));
}

// ─── what the lab asks ───────────────────────────────────────────────────────────

export type VipRef = { readonly address: string; readonly port: number; readonly protocol: Protocol };

function withBalancer<T>(pinRoot: string, read: (balancer: PinnedBalancer) => T): T {
  const balancer = new PinnedBalancer(pinRoot);
  try {
    return read(balancer);
  } finally {
    balancer.close();
  }
}

/**
 * Ring slots per backend address for a VIP (a share of the ring is a share of new
 * flows). Empty when the VIP is not programmed; slots naming no backend count under ''.
 */
export function ringShares(pinRoot: string, ringSize: number, vip: VipRef): Map<string, number> {
  return withBalancer(pinRoot, (balancer) => {
    const vipId = balancer.vipId(vip);
    if (vipId === undefined) return new Map();
    const share = ringShareReport({ key: '', id: vipId }, balancer.ringSlots(vipId, ringSize), balancer.backends());
    const out = new Map<string, number>(share.members.map((m) => [m.address ?? '', m.slots]));
    if (share.emptySlots > 0) out.set('', (out.get('') ?? 0) + share.emptySlots);
    return out;
  });
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
  return withBalancer(pinRoot, (balancer) => {
    const backends = balancer.backends();
    const out: ConnEntry[] = [];
    for (const [name, decodeKey] of [['conn_v4', decodeFlow4Key], ['conn_v6', decodeFlow6Key]] as const) {
      const keySize = name === 'conn_v4' ? ABI_SIZES.flow4_key : ABI_SIZES.flow6_key;
      const valueSize = ABI_SIZES.conn_value;
      balancer.walkConnTable(name, (keys, values, count) => {
        for (let i = 0; i < count; i++) {
          const k = decodeKey(keys.subarray(i * keySize, (i + 1) * keySize));
          const { backendId } = decodeConnValue(values.subarray(i * valueSize, (i + 1) * valueSize));
          out.push({ client: k.src, sourcePort: k.sport, port: k.dport, protocol: k.proto, backendId, backend: backends.get(backendId) ?? '' });
        }
      });
    }
    return out;
  });
}
