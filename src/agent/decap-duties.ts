// The backend role: make every local backend pod able to take tunnelled traffic and
// answer clients directly (DSR). For each decap duty (one pod) the agent
//
//   1. records what it is about to program (netns, interface, tc handle) in a pinned
//      map, so that an agent restarted after the duty is gone can still undo it;
//   2. loads a decap program whose maps are pinned under <pinRoot>/decap/<pod key>/
//      (a restarted agent adopts them: addresses, VIPs and counters survive);
//   3. sets the DSR sysctls inside the pod's namespace;
//   4. puts each VIP on the pod's lo (a /32 or /128);
//   5. attaches the program at tc ingress of the pod's interface.
//
// Steps 3 and 4 come before 5 so that the pod decapsulates only once it can answer
// correctly. apply() is level-triggered: each call makes the node match exactly the
// duties given, repairs drift (a filter or address removed by someone else), undoes
// duties that are gone (also those a previous agent left behind, found through their
// pins), and reports a typed outcome per pod; one pod's failure never stops another.
// docs/decap.md explains the choices.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import PQueue from 'p-queue';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { canonicalAddress } from '../shared/addresses.ts';
import type { DecapDuty } from '../shared/desired-state.ts';
import { FulcrumError, isFulcrumError } from '../shared/errors.ts';
import { REASONS, type Reason } from '../shared/reasons.ts';
import { ABI_SIZES, decodeAddrKey, u32, type Counter } from './bpf/abi.ts';
import { inNetns } from './bpf/attach.ts';
import { makePinDir } from './bpf/bpffs.ts';
import { BPF_MAP_TYPE, BpfMap, createMap } from './bpf/map.ts';
import { BpfObject, type MapSpec } from './bpf/object.ts';
import { DECAP_MAPS, DECAP_PROGRAM, DecapProgram, type DecapMapName } from './dataplane/decap.ts';
import {
  DEFAULT_SYSCTL_ROOT, PodNetns, hostPrefix, isValidInterfaceName, sameNamespace, type InterfaceAddress, type NamespaceId, type SysctlSetting,
} from './pod-netns.ts';

/**
 * The tc filter Fulcrum owns on a pod's interface: priority 1 so it runs before any
 * other ingress filter (a direct-action filter that returns OK ends classification,
 * and tunnel packets must be decapsulated first), and a handle of its own ('FLCR')
 * so that replacing or removing it never touches another tool's filter.
 */
export const DECAP_TC_HANDLE = 0x464c4352;
export const DECAP_TC_PRIORITY = 1;

/** The pin directory of one pod's duty holds the decap maps and this record. */
export const DUTY_RECORD_PIN = 'duty';
/** One page: a netns path, an interface and a pod name fit many times over. */
const DUTY_RECORD_SIZE = 4096;
const DEFAULT_CONCURRENCY = 8;

export type DecapDutiesOptions = {
  /** bpf/build/decap.bpf.o */
  readonly objectPath: string;
  /** The GUE port the balancers send to (BalancerSettings.guePort). */
  readonly guePort: number;
  /** The agent's BPF pin root, e.g. /sys/fs/bpf/fulcrum; duties pin under <pinRoot>/decap/. */
  readonly pinRoot: string;
  /** The procfs sys directory the DSR sysctls are written through (AgentConfig.sysctlRoot). */
  readonly sysctlRoot?: string;
  readonly logger?: Logger;
  /** Pods worked on at once (each namespace visit costs a worker thread and a few processes). */
  readonly concurrency?: number;
};

export type DecapOutcome = 'programmed' | 'removed' | 'failed';

export type DecapPodResult =
  | {
    readonly pod: string;
    readonly outcome: 'programmed';
    /** The decap program attached at the pod's interface. */
    readonly progId: number;
    /** Whether this apply (re)attached the filter; false when it was already in place. */
    readonly attached: boolean;
  }
  | { readonly pod: string; readonly outcome: 'removed' }
  | {
    readonly pod: string;
    readonly outcome: 'failed';
    /** What was being done: programming a duty, or undoing one that is gone. */
    readonly action: 'program' | 'remove';
    readonly error: FulcrumError;
  };

export type DecapResult = {
  /** Undone duties first, then one entry per duty given, in the order given. */
  readonly pods: readonly DecapPodResult[];
};

export type DecapPodStatus = {
  readonly pod: string;
  readonly netns: string;
  readonly interface: string;
  readonly progId: number;
  /** Whether the last apply programmed this pod completely (false: it failed part-way). */
  readonly programmed: boolean;
  readonly addresses: readonly string[];
  readonly vips: readonly string[];
  readonly decapped: Counter;
  /** The decap_* reason counters of this pod's program. */
  readonly reasons: Readonly<Partial<Record<Reason, Counter>>>;
};

// ── pure parts ─────────────────────────────────────────────────────────────────

/**
 * The pin directory name of a pod: readable (namespace_name, characters outside
 * [A-Za-z0-9.-] as '_') and unique (a hash of the exact pod string), never '.' or
 * '..', well under the 255-byte name limit.
 */
export function podKey(pod: string): string {
  const readable = pod.replace(/[^A-Za-z0-9.-]/g, '_').replace(/^\./, '_').slice(0, 200);
  const digest = createHash('sha256').update(pod).digest('hex').slice(0, 12);
  return `${readable}-${digest}`;
}

/** What changes on lo: `previous` are the VIPs Fulcrum put there (the pinned decap_vips). */
export function planLoopback(input: {
  readonly onLoopback: readonly InterfaceAddress[];
  readonly previous: readonly string[];
  readonly wanted: readonly string[];
}): { add: string[]; remove: string[] } {
  const present = new Set(input.onLoopback.filter((a) => a.prefixLength === hostPrefix(a.address)).map((a) => a.address));
  const wanted = new Set(input.wanted.map(canonicalAddress));
  return {
    add: [...wanted].filter((a) => !present.has(a)),
    // Only what Fulcrum added and is still there: an address someone else put on lo
    // is never removed, and deleting an absent one would fail the batch.
    remove: [...new Set(input.previous.map(canonicalAddress))].filter((a) => !wanted.has(a) && present.has(a)),
  };
}

/**
 * The sysctls a DSR backend needs, set inside the pod's namespace. Keys are in slash
 * form so an interface name with dots (eth0.100) stays one path component.
 */
export function dsrSysctls(iface: string): SysctlSetting[] {
  const conf = (dev: string, name: string, value: string): SysctlSetting => ({ key: `net/ipv4/conf/${dev}/${name}`, value });
  return [
    // arp_ignore=1: answer ARP only for addresses of the interface the request came in
    // on. The VIP is on lo, so the pod never claims it on its own network; if it did,
    // a neighbour (the node) would send the VIP's traffic to this one pod instead of to
    // the balancers. The kernel applies max(all, <dev>): 'all' also covers interfaces
    // added later (a second network); <iface> and lo are set too so that each reads
    // right on its own (the LVS-DR recipe operators know).
    conf('all', 'arp_ignore', '1'), conf('lo', 'arp_ignore', '1'), conf(iface, 'arp_ignore', '1'),
    // arp_announce=2: when the pod ARPs for its next hop while sending a reply from the
    // VIP, the request carries the interface's own address as sender, never the VIP;
    // otherwise every neighbour would learn "VIP is at this pod's MAC" from the request
    // itself. Same max(all, <dev>) rule.
    conf('all', 'arp_announce', '2'), conf('lo', 'arp_announce', '2'), conf(iface, 'arp_announce', '2'),
    // rp_filter=0 on all and <iface> (the kernel applies max(all, <iface>), so both):
    // a decapsulated packet carries the client's address as source. A pod whose route
    // back to that client leaves through another interface (a second network, policy
    // routing) would drop it under strict reverse-path filtering. In a single-homed
    // pod it changes nothing, as every route leaves through <iface> anyway.
    conf('all', 'rp_filter', '0'), conf(iface, 'rp_filter', '0'),
  ];
}

// ── the duty record (what a restarted agent needs to undo a duty) ─────────────────

export const DutyRecord = z.strictObject({
  version: z.literal(1),
  pod: z.string(),
  netns: z.string(),
  /** The namespace's identity when programmed: a reused /proc/<pid> path is not it. */
  netnsDev: z.number(),
  netnsIno: z.number(),
  interface: z.string(),
  tcHandle: z.number(),
  tcPriority: z.number(),
});
export type DutyRecord = z.infer<typeof DutyRecord>;

export function encodeDutyRecord(record: DutyRecord): Buffer {
  const json = Buffer.from(JSON.stringify(record), 'utf8');
  if (json.length >= DUTY_RECORD_SIZE) {
    throw new FulcrumError('ERR_DESIRED_STATE',
      `decap duty of pod ${record.pod}: netns path and names take ${json.length} bytes, the record holds ${DUTY_RECORD_SIZE - 1}`,
      { details: { pod: record.pod, netns: record.netns } });
  }
  const value = Buffer.alloc(DUTY_RECORD_SIZE);
  json.copy(value);
  return value;
}

export function decodeDutyRecord(value: Uint8Array): DutyRecord {
  const end = value.indexOf(0);
  const text = Buffer.from(value.subarray(0, end < 0 ? value.length : end)).toString('utf8');
  return DutyRecord.parse(JSON.parse(text));
}

function recordNamespace(record: DutyRecord): NamespaceId {
  return { dev: record.netnsDev, ino: record.netnsIno };
}

function sameRecord(a: DutyRecord, b: DutyRecord): boolean {
  return (Object.keys(DutyRecord.shape) as (keyof DutyRecord)[]).every((field) => a[field] === b[field]);
}

/** A record map: one array element of DUTY_RECORD_SIZE bytes, pinned beside the decap maps. */
function readRecord(pinDir: string): DutyRecord | null {
  const path = join(pinDir, DUTY_RECORD_PIN);
  if (!existsSync(path)) return null;
  const map = BpfMap.openPinned(path);
  try {
    const value = map.lookup(u32(0));
    return value === undefined ? null : decodeDutyRecord(value);
  } finally {
    map.close();
  }
}

function writeRecord(pinDir: string, record: DutyRecord): void {
  const value = encodeDutyRecord(record);
  const path = join(pinDir, DUTY_RECORD_PIN);
  makePinDir(pinDir);
  if (existsSync(path)) {
    const pinned = BpfMap.openPinned(path);
    try {
      if (pinned.valueSize === DUTY_RECORD_SIZE) {
        pinned.update(u32(0), value);
        return;
      }
      pinned.unpin(); // another layout (an older agent): replaced below
    } finally {
      pinned.close();
    }
  }
  const map = createMap(BPF_MAP_TYPE.ARRAY, 4, DUTY_RECORD_SIZE, 1, 0, 'fulcrum_duty');
  try {
    map.update(u32(0), value);
    map.pin(path);
  } finally {
    map.close();
  }
}

/** The VIPs in a pinned decap_vips map: the ones Fulcrum put on the pod's lo. */
function readPinnedVips(pinDir: string): string[] {
  const path = join(pinDir, 'decap_vips');
  if (!existsSync(path)) return [];
  const map = BpfMap.openPinned(path);
  try {
    // A key layout from another version cannot be read (an upgrade changed the ABI).
    if (map.keySize !== ABI_SIZES.addr_key) return [];
    return [...map.keys()].map((key) => canonicalAddress(decodeAddrKey(key).addr));
  } finally {
    map.close();
  }
}

function asFulcrumError(err: unknown, what: string): FulcrumError {
  if (isFulcrumError(err)) return err;
  return new FulcrumError('ERR_INTERNAL', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

// ── the reconciler ─────────────────────────────────────────────────────────────

type PodState = {
  readonly key: string;
  readonly program: DecapProgram;
  readonly progId: number;
  record: DutyRecord;
  addresses: readonly string[];
  programmed: boolean;
};

export class DecapDuties {
  readonly #objectPath: string;
  readonly #guePort: number;
  readonly #sysctlRoot: string;
  readonly #dutyRoot: string;
  readonly #log: Logger;
  readonly #concurrency: number;
  /** Programs loaded by this agent process, by pod key. */
  readonly #pods = new Map<string, PodState>();
  #mapSpecs: Map<DecapMapName, MapSpec> | undefined;
  /** apply() calls run one after another. */
  #serial: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: DecapDutiesOptions) {
    this.#objectPath = options.objectPath;
    this.#guePort = options.guePort;
    this.#sysctlRoot = options.sysctlRoot ?? DEFAULT_SYSCTL_ROOT;
    this.#dutyRoot = join(options.pinRoot, 'decap');
    this.#log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'decap' });
    this.#concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  }

  /** Make the node's decap exactly `duties`. Throws only for input that is invalid as a whole. */
  apply(duties: readonly DecapDuty[]): Promise<DecapResult> {
    if (this.#closed) return Promise.reject(new FulcrumError('ERR_INTERNAL', 'DecapDuties.apply after close()'));
    const run = this.#serial.then(() => this.#apply(duties));
    this.#serial = run.catch(() => undefined);
    return run;
  }

  /** What this agent process has programmed, with counters (for metrics and status). */
  status(): DecapPodStatus[] {
    return [...this.#pods.values()].map((state) => {
      const reasons = state.program.reasonCounters();
      return {
        pod: state.record.pod,
        netns: state.record.netns,
        interface: state.record.interface,
        progId: state.progId,
        programmed: state.programmed,
        addresses: state.addresses,
        vips: state.program.vips(),
        decapped: state.program.decappedCounter(),
        reasons: Object.fromEntries(REASONS.filter((r) => r.startsWith('decap_')).map((r) => [r, reasons[r]])),
      };
    });
  }

  /**
   * Release this process's program and map handles. The data plane stays as it is
   * (filters attached, maps pinned, VIPs on lo): the next agent adopts it.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#serial;
    for (const state of this.#pods.values()) state.program.close();
    this.#pods.clear();
  }

  async #apply(duties: readonly DecapDuty[]): Promise<DecapResult> {
    const wanted = new Map<string, DecapDuty>();
    for (const duty of duties) {
      const key = podKey(duty.pod);
      if (wanted.has(key)) {
        throw new FulcrumError('ERR_DESIRED_STATE', `two decap duties for pod ${duty.pod}`, { details: { pod: duty.pod } });
      }
      wanted.set(key, duty);
    }
    const queue = new PQueue({ concurrency: this.#concurrency });

    // Undo first: when a removed duty and a new one name the same namespace (a pod
    // renamed in place), undoing afterwards would take down the new duty's filter.
    const gone = [...new Set([...this.#pods.keys(), ...this.#pinnedKeys()])].filter((key) => !wanted.has(key));
    const removed = await Promise.all(gone.map((key) => queue.add(() => this.#remove(key))));

    const conflicts = sharedAttachments(duties);
    const programmed = await Promise.all(duties.map((duty) => {
      const conflict = conflicts.get(duty.pod);
      if (conflict !== undefined) {
        return { pod: duty.pod, outcome: 'failed', action: 'program', error: conflict } satisfies DecapPodResult;
      }
      return queue.add(() => this.#program(podKey(duty.pod), duty));
    }));
    return { pods: [...removed, ...programmed] };
  }

  #pinnedKeys(): string[] {
    try {
      return readdirSync(this.#dutyRoot, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  #pinDir(key: string): string {
    return join(this.#dutyRoot, key);
  }

  // ── one pod: program ─────────────────────────────────────────────────────────

  async #program(key: string, duty: DecapDuty): Promise<DecapPodResult> {
    const log = this.#log.child({ pod: duty.pod });
    try {
      const result = await this.#programPod(key, duty, log);
      log.debug({ progId: result.progId, attached: result.attached }, 'decap programmed');
      return result;
    } catch (err) {
      const error = asFulcrumError(err, `decap for pod ${duty.pod}`);
      log.warn({ err: error, code: error.code }, 'decap duty failed');
      return { pod: duty.pod, outcome: 'failed', action: 'program', error };
    }
  }

  async #programPod(key: string, duty: DecapDuty, log: Logger): Promise<DecapPodResult & { outcome: 'programmed' }> {
    if (!isValidInterfaceName(duty.interface) || duty.interface === 'lo') {
      throw new FulcrumError('ERR_DESIRED_STATE', `pod ${duty.pod}: ${JSON.stringify(duty.interface)} is not an interface tunnelled traffic can arrive on`,
        { details: { pod: duty.pod, interface: duty.interface } });
    }
    if (!isAbsolute(duty.netns)) {
      throw new FulcrumError('ERR_DESIRED_STATE', `pod ${duty.pod}: the network namespace path ${JSON.stringify(duty.netns)} is not absolute`,
        { details: { pod: duty.pod, netns: duty.netns } });
    }
    const wantedVips = [...new Set(duty.vips)];
    const ns = PodNetns.open(duty.netns, `pod ${duty.pod}`);
    try {
      const pinDir = this.#pinDir(key);
      const record: DutyRecord = {
        version: 1, pod: duty.pod, netns: duty.netns, netnsDev: ns.id.dev, netnsIno: ns.id.ino,
        interface: duty.interface, tcHandle: DECAP_TC_HANDLE, tcPriority: DECAP_TC_PRIORITY,
      };
      let state = this.#pods.get(key);
      const previous = state?.record ?? this.#readRecordOrNull(pinDir, log);
      const moved = previous !== null && !sameNamespace(recordNamespace(previous), ns.id);
      if (previous !== null && (moved || previous.interface !== record.interface ||
        previous.tcHandle !== record.tcHandle || previous.tcPriority !== record.tcPriority)) {
        // The pod got a new sandbox (namespace), or its filter is to be elsewhere: take
        // the old attachment down before recording the new one. (Another spelling of
        // the same namespace's path only updates the record: no undo, no gap.)
        const vips = state?.program.vips() ?? readPinnedVips(pinDir);
        log.info({ from: { netns: previous.netns, interface: previous.interface }, to: { netns: record.netns, interface: record.interface } },
          'decap duty moved: undoing the old attachment');
        await this.#undo(previous, vips, { loopback: moved }, log);
      }
      if (previous === null || !sameRecord(previous, record)) writeRecord(pinDir, record);

      if (state === undefined) {
        const program = this.#load(pinDir, log);
        state = { key, program, progId: program.object.program(DECAP_PROGRAM).id, record, addresses: [], programmed: false };
        this.#pods.set(key, state);
      }
      state.record = record;
      state.programmed = false;
      const { program } = state;
      if (wantedVips.length > program.maps.decap_vips.maxEntries) {
        throw new FulcrumError('ERR_DESIRED_STATE',
          `pod ${duty.pod} serves ${wantedVips.length} VIPs, the decap program holds at most ${program.maps.decap_vips.maxEntries}`,
          { details: { pod: duty.pod } });
      }

      const links = await ns.interfaces();
      if (!links.some((l) => l.name === duty.interface)) {
        throw new FulcrumError('ERR_NETNS', `pod ${duty.pod} has no interface ${duty.interface} in ${duty.netns} (it has: ${links.map((l) => l.name).join(', ')})`,
          { details: { pod: duty.pod, interface: duty.interface, nsPath: duty.netns } });
      }
      const lo = links.find((l) => l.name === 'lo');
      if (lo === undefined || !lo.up) {
        throw new FulcrumError('ERR_NETNS', `lo is down in the network namespace of pod ${duty.pod}: VIPs on it would not be local`,
          { details: { pod: duty.pod, nsPath: duty.netns } });
      }

      program.setLocalAddresses(duty.addresses);
      state.addresses = [...duty.addresses];
      // Before the VIPs go on lo: with arp_ignore still 0 the pod would answer ARP
      // for a VIP the moment it is added.
      await ns.writeSysctls(dsrSysctls(duty.interface), this.#sysctlRoot);
      await this.#syncVips(program, ns, lo.addresses, wantedVips);

      // Attach last: the pod decapsulates only once it can answer from the VIP.
      const tc = { handle: DECAP_TC_HANDLE, priority: DECAP_TC_PRIORITY };
      const current = await inNetns(ns.workerPath, 'queryTcIngress', duty.interface, tc);
      const attached = current !== state.progId;
      if (attached) {
        // Replace: an older program of this pod (a previous agent's) is swapped out
        // atomically, so tunnelled packets never meet an interface without decap.
        const attachment = await inNetns(ns.workerPath, 'attachTcIngress', duty.interface, program.progFd, { ...tc, replace: true });
        log.info({ progId: attachment.progId, replaced: current, interface: duty.interface, netns: duty.netns }, 'decap attached');
      }
      state.programmed = true;
      return { pod: duty.pod, outcome: 'programmed', progId: state.progId, attached };
    } finally {
      ns.close();
    }
  }

  /**
   * Make lo hold exactly the wanted VIPs among those Fulcrum manages, keeping this
   * true at every step, so an agent killed half-way can finish the job later: every
   * VIP Fulcrum put on lo is in decap_vips. So decap_vips grows before lo does and
   * shrinks after; if old and new sets together do not fit the map, the removals go
   * first instead.
   */
  async #syncVips(program: DecapProgram, ns: PodNetns, onLoopback: readonly InterfaceAddress[], wanted: readonly string[]): Promise<void> {
    const previous = program.vips();
    const plan = planLoopback({ onLoopback, previous, wanted });
    const staged = [...new Set([...previous, ...wanted])];
    const fits = staged.length <= program.maps.decap_vips.maxEntries;
    if (fits) program.setVips(staged);
    await ns.removeFromLoopback(plan.remove);
    if (!fits) program.setVips(wanted);
    await ns.addToLoopback(plan.add);
    program.setVips(wanted);
  }

  /**
   * Load the pod's program, adopting its pinned maps. A pinned map whose layout no
   * longer matches the object (an upgrade changed it) cannot be adopted; it is
   * unpinned and created afresh (it holds only what the next steps rewrite, and
   * counters), carrying over the VIPs Fulcrum put on lo.
   */
  #load(pinDir: string, log: Logger): DecapProgram {
    const specs = this.#specs();
    let carried: string[] = [];
    for (const name of DECAP_MAPS) {
      const path = join(pinDir, name);
      if (!existsSync(path)) continue;
      const pinned = BpfMap.openPinned(path);
      try {
        const spec = specs.get(name)!;
        if (pinned.type === spec.type && pinned.keySize === spec.keySize && pinned.valueSize === spec.valueSize &&
          pinned.maxEntries === spec.maxEntries && pinned.flags === spec.flags) continue;
        log.warn({ map: name, pinned: { keySize: pinned.keySize, valueSize: pinned.valueSize, maxEntries: pinned.maxEntries },
          object: { keySize: spec.keySize, valueSize: spec.valueSize, maxEntries: spec.maxEntries } },
        'pinned decap map does not match the program: creating it afresh');
        if (name === 'decap_vips' && pinned.keySize === spec.keySize) carried = readPinnedVips(pinDir);
        pinned.unpin();
      } finally {
        pinned.close();
      }
    }
    const program = DecapProgram.load({ objectPath: this.#objectPath, guePort: this.#guePort, pinDir });
    try {
      if (carried.length > 0) program.setVips(carried.slice(0, program.maps.decap_vips.maxEntries));
      return program;
    } catch (err) {
      program.close();
      throw err;
    }
  }

  /** The object's map definitions, read once (opening parses the ELF; nothing is loaded). */
  #specs(): Map<DecapMapName, MapSpec> {
    if (this.#mapSpecs === undefined) {
      const object = BpfObject.open(this.#objectPath);
      try {
        this.#mapSpecs = new Map(DECAP_MAPS.map((name) => [name, object.mapSpec(name)]));
      } finally {
        object.close();
      }
    }
    return this.#mapSpecs;
  }

  #readRecordOrNull(pinDir: string, log: Logger): DutyRecord | null {
    try {
      return readRecord(pinDir);
    } catch (err) {
      // A record this agent cannot read (damaged, or from an unknown version) cannot
      // be acted on; the new duty's record replaces it.
      log.warn({ err, pinDir }, 'unreadable decap duty record: ignored');
      return null;
    }
  }

  // ── one pod: remove ──────────────────────────────────────────────────────────

  async #remove(key: string): Promise<DecapPodResult> {
    const pinDir = this.#pinDir(key);
    const state = this.#pods.get(key);
    const record = state?.record ?? this.#readRecordOrNull(pinDir, this.#log);
    const pod = record?.pod ?? key;
    const log = this.#log.child({ pod });
    try {
      if (record !== null) {
        const vips = state?.program.vips() ?? readPinnedVips(pinDir);
        await this.#undo(record, vips, { loopback: true }, log);
      }
      state?.program.close();
      this.#pods.delete(key);
      // The maps go once the program holding them is detached and this was the last pin.
      rmSync(pinDir, { recursive: true, force: true });
      log.info({ netns: record?.netns }, 'decap removed');
      return { pod, outcome: 'removed' };
    } catch (err) {
      // Pins stay: the next apply finds the duty again and retries.
      const error = asFulcrumError(err, `removing decap of pod ${pod}`);
      log.warn({ err: error, code: error.code }, 'removing decap failed');
      return { pod, outcome: 'failed', action: 'remove', error };
    }
  }

  /**
   * Take down what a record says was programmed: the tc filter, and (loopback) the
   * VIPs Fulcrum put on lo. Nothing to do when the namespace is gone (the kernel
   * removed the filter and lo with it), also when its path now names another one.
   *
   * The sysctls stay as they are. They describe the pod, not a VIP: with no VIP on lo
   * arp_ignore / arp_announce change nothing (every address is the interface's own),
   * and rp_filter=0 changes nothing in a single-homed pod. Restoring "the value from
   * before" would need a per-pod memory that can be wrong (the pod or another tool may
   * set them meanwhile), and the pod would flip back and forth as VIPs come and go.
   * The clsact qdisc stays too: it may hold other tools' filters, and empty it costs
   * nothing.
   */
  async #undo(record: DutyRecord, vips: readonly string[], options: { loopback: boolean }, log: Logger): Promise<void> {
    let ns: PodNetns | null;
    try {
      ns = PodNetns.tryOpen(record.netns);
    } catch (err) {
      // The recorded path now leads to the host namespace (/proc/<pid> of a reused
      // pid): never act there. The pod's own namespace is gone.
      if (isFulcrumError(err, 'ERR_NETNS') && err.details['reason'] === 'host-namespace') ns = null;
      else throw err;
    }
    if (ns === null) {
      log.debug({ netns: record.netns }, 'the pod namespace is gone: nothing to undo in it');
      return;
    }
    try {
      if (!sameNamespace(ns.id, recordNamespace(record))) {
        log.debug({ netns: record.netns }, 'the recorded namespace path now names another namespace: nothing to undo');
        return;
      }
      const links = await ns.interfaces();
      if (links.some((l) => l.name === record.interface)) {
        await inNetns(ns.workerPath, 'detachTcIngress', record.interface, { handle: record.tcHandle, priority: record.tcPriority });
      }
      if (options.loopback) {
        const lo = links.find((l) => l.name === 'lo');
        const plan = planLoopback({ onLoopback: lo?.addresses ?? [], previous: vips, wanted: [] });
        await ns.removeFromLoopback(plan.remove);
      }
    } finally {
      ns.close();
    }
  }
}

/**
 * Duties that would share one interface of one namespace: each would replace the
 * other's filter and remove the other's VIPs on every apply. All of them fail.
 */
function sharedAttachments(duties: readonly DecapDuty[]): Map<string, FulcrumError> {
  const byTarget = new Map<string, string[]>();
  for (const duty of duties) {
    let target: string;
    try {
      const st = statSync(duty.netns);
      target = `${st.dev}:${st.ino}/${duty.interface}`;
    } catch {
      continue; // programming it reports the missing namespace
    }
    byTarget.set(target, [...(byTarget.get(target) ?? []), duty.pod]);
  }
  const conflicts = new Map<string, FulcrumError>();
  for (const pods of byTarget.values()) {
    if (pods.length < 2) continue;
    for (const pod of pods) {
      conflicts.set(pod, new FulcrumError('ERR_DESIRED_STATE',
        `decap duties of pods ${pods.join(', ')} name the same network namespace and interface`, { details: { pods } }));
    }
  }
  return conflicts;
}
