// The backend decap program (tc ingress on a pod's interface) and its maps, typed:
// load (or adopt pinned maps), make the address and VIP sets exactly what the desired
// state says, and read the counters. Every map write for decap goes through here.
import { join } from 'node:path';
import { GSTATS, REASONS, type Reason } from '../../shared/reasons.ts';
import { FulcrumError } from '../../shared/errors.ts';
import { BpfObject } from '../bpf/object.ts';
import type { BpfMap } from '../bpf/map.ts';
import { addrKey, decapConfig, decodeAddrKey, sumCounters, u32, type Counter } from '../bpf/abi.ts';

export const DECAP_MAPS = ['decap_addrs', 'decap_vips', 'reason_stats', 'global_stats'] as const;
export type DecapMapName = (typeof DECAP_MAPS)[number];

export const DECAP_PROGRAM = 'decap';

/** global_stats index of GSTAT_DECAPPED. */
const GSTAT_DECAPPED = GSTATS.indexOf('decapped');

export type DecapLoadOptions = {
  readonly objectPath: string;
  /** The GUE destination port accepted (the balancer's gue_port). */
  readonly guePort: number;
  /** Pin maps here and adopt maps already pinned here (agent restarts and upgrades). */
  readonly pinDir?: string;
};

/** The value of every decap_addrs / decap_vips entry: the key's presence is what counts. */
const PRESENT = u32(1);

export class DecapProgram {
  readonly object: BpfObject;
  readonly progFd: number;
  readonly guePort: number;
  readonly maps: Readonly<Record<DecapMapName, BpfMap>>;

  private constructor(object: BpfObject, guePort: number) {
    this.object = object;
    this.guePort = guePort;
    this.progFd = object.programFd(DECAP_PROGRAM);
    this.maps = Object.fromEntries(DECAP_MAPS.map((name) => [name, object.map(name)])) as Record<DecapMapName, BpfMap>;
  }

  static load(options: DecapLoadOptions): DecapProgram {
    const object = BpfObject.open(options.objectPath);
    try {
      object.setRodata(decapConfig({ guePort: options.guePort }));
      if (options.pinDir !== undefined) {
        for (const name of DECAP_MAPS) object.setPinPath(name, join(options.pinDir, name));
      }
      object.load();
      return new DecapProgram(object, options.guePort);
    } catch (err) {
      object.close();
      throw err;
    }
  }

  close(): void {
    this.object.close();
  }

  // ── writes ─────────────────────────────────────────────────────────────────

  /** The pod's own addresses: outer destinations decapsulated for. Exactly this set afterwards. */
  setLocalAddresses(addresses: readonly string[]): void {
    this.syncSet(this.maps.decap_addrs, addresses, 'local addresses');
  }

  /** The VIPs the pod serves: inner destinations accepted. Exactly this set afterwards. */
  setVips(addresses: readonly string[]): void {
    this.syncSet(this.maps.decap_vips, addresses, 'VIPs');
  }

  // ── reads ──────────────────────────────────────────────────────────────────

  localAddresses(): string[] {
    return this.readSet(this.maps.decap_addrs);
  }

  vips(): string[] {
    return this.readSet(this.maps.decap_vips);
  }

  /** Every reason counter (the decap program moves only the decap_* ones). */
  reasonCounters(): Record<Reason, Counter> {
    return Object.fromEntries(REASONS.map((r, i) => [r, this.counterAt(this.maps.reason_stats, i)])) as Record<Reason, Counter>;
  }

  /** Packets whose tunnel header was stripped and passed up. */
  decappedCounter(): Counter {
    return this.counterAt(this.maps.global_stats, GSTAT_DECAPPED);
  }

  // ── internals ──────────────────────────────────────────────────────────────

  /**
   * Make `map` hold exactly `addresses` (value 1). Every address is encoded before the
   * map is touched, so an invalid one changes nothing. New keys go in before stale ones
   * go out, so an address in both the old and new set never disappears in between; when
   * that would overflow max_entries the stale keys go first.
   */
  private syncSet(map: BpfMap, addresses: readonly string[], what: string): void {
    const wanted = new Map<string, Buffer>();
    for (const address of addresses) {
      const key = addrKey({ addr: address });
      wanted.set(key.toString('hex'), key);
    }
    if (wanted.size > map.maxEntries) {
      throw new FulcrumError('ERR_DESIRED_STATE',
        `decap ${what}: ${wanted.size} addresses, ${map.description} holds at most ${map.maxEntries}`,
        { details: { map: map.name, wanted: wanted.size, maxEntries: map.maxEntries } });
    }
    const present = new Map<string, Buffer>();
    for (const key of map.keys()) present.set(key.toString('hex'), key);

    const missing = [...wanted].filter(([hex]) => !present.has(hex)).map(([, key]) => key);
    const stale = [...present].filter(([hex]) => !wanted.has(hex)).map(([, key]) => key);
    const add = () => { for (const key of missing) map.update(key, PRESENT); };
    const remove = () => { for (const key of stale) map.delete(key); };
    if (present.size + missing.length > map.maxEntries) {
      remove();
      add();
    } else {
      add();
      remove();
    }
  }

  private readSet(map: BpfMap): string[] {
    return [...map.keys()].map((key) => decodeAddrKey(key).addr);
  }

  private counterAt(map: BpfMap, index: number): Counter {
    const perCpu = map.lookupPerCpu(u32(index));
    return perCpu === undefined ? { packets: 0n, bytes: 0n } : sumCounters(perCpu);
  }
}
