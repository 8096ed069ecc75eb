// Finds a backend pod's network namespace on this node, for a BalancerNode decap duty
// (which names the pod by namespace/name and UID, never by a host path: the operator
// cannot know one). Strategies are tried in order, per pod, until one finds it:
//
//   dir    a directory of named network namespaces (bind mounts, as `ip netns add`
//          makes under /run/netns): a file named after the pod UID, else one named
//          <namespace>_<name>. The lab and some CNI setups name them this way.
//   proc   the kubelet's pod cgroup: a process whose /proc/<pid>/cgroup puts it in
//          the cgroup of pod <uid> ("pod<uid>" under cgroupfs, "…-pod<uid with _>.slice"
//          under systemd; cgroup v1 and v2) lives in the pod's network namespace, so its
//          /proc/<pid>/ns/net is the answer. Needs the host's pid namespace (hostPID).
//
// A pod that no strategy finds is not an error: it is starting, or not (yet) scheduled
// here. The caller reports its duty as pending and asks again later.
//
// Why /proc/<pid>/ns/net of the oldest process: every container of a pod shares the
// sandbox's namespace, and the sandbox (pause) process starts first and lives longest,
// so it is the pid least likely to exit (and be reused) before the decap code opens the
// path. DecapDuties opens the path once and pins the namespace's identity in its duty
// record; it refuses the host's namespace (hostNetwork pods) with an error of its own.
import { readFile, readdir, stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { FulcrumError } from '../shared/errors.ts';
import type { NetnsResolver } from '../shared/api/balancer-node.ts';
import type { Logger } from '../shared/logging.ts';

export type NetnsStrategy =
  | { readonly kind: 'dir'; readonly dir: string }
  | { readonly kind: 'proc'; readonly procRoot: string };

export const DEFAULT_NETNS_DIR = '/run/netns';
export const DEFAULT_PROC_ROOT = '/proc';

/** The default order: named namespaces first (cheap, exact), then the /proc scan. */
export const DEFAULT_NETNS_STRATEGIES: readonly NetnsStrategy[] = [
  { kind: 'dir', dir: DEFAULT_NETNS_DIR },
  { kind: 'proc', procRoot: DEFAULT_PROC_ROOT },
];

/** How a strategy is written on the command line: dir=<path>, proc or proc=<path>. */
export function formatNetnsStrategy(s: NetnsStrategy): string {
  if (s.kind === 'dir') return `dir=${s.dir}`;
  return s.procRoot === DEFAULT_PROC_ROOT ? 'proc' : `proc=${s.procRoot}`;
}

/**
 * Parses a comma-separated strategy list ("dir=/run/netns,proc"). Throws ERR_CONFIG
 * naming the entry that is wrong.
 */
export function parseNetnsStrategies(text: string, where = '--pod-netns'): NetnsStrategy[] {
  const entries = text.split(',').map((e) => e.trim()).filter((e) => e !== '');
  if (entries.length === 0) throw new FulcrumError('ERR_CONFIG', `${where}: name at least one strategy (dir=<path>, proc)`);
  const strategies = entries.map((entry): NetnsStrategy => {
    const eq = entry.indexOf('=');
    const kind = eq < 0 ? entry : entry.slice(0, eq);
    const value = eq < 0 ? undefined : entry.slice(eq + 1);
    if (value !== undefined && !value.startsWith('/')) {
      throw new FulcrumError('ERR_CONFIG', `${where}: "${entry}": the path must be absolute`);
    }
    if (kind === 'dir') {
      if (value === undefined) throw new FulcrumError('ERR_CONFIG', `${where}: "${entry}": write dir=<directory>, e.g. dir=${DEFAULT_NETNS_DIR}`);
      return { kind: 'dir', dir: value };
    }
    if (kind === 'proc') return { kind: 'proc', procRoot: value ?? DEFAULT_PROC_ROOT };
    throw new FulcrumError('ERR_CONFIG', `${where}: unknown strategy "${entry}" (dir=<directory> or proc)`);
  });
  const seen = new Set<string>();
  for (const s of strategies) {
    const key = formatNetnsStrategy(s);
    if (seen.has(key)) throw new FulcrumError('ERR_CONFIG', `${where}: "${key}" is given twice`);
    seen.add(key);
  }
  return strategies;
}

export type PodIdentity = { readonly pod: string; readonly podUID: string };

export type NetnsFound = {
  readonly path: string;
  /** The strategy that found it, as formatNetnsStrategy() writes it. */
  readonly via: string;
};

/** One resolution pass: the lookup toNodeDesiredState() calls, and what it was built from. */
export type NetnsSnapshot = {
  readonly lookup: NetnsResolver;
  readonly found: ReadonlyMap<string, NetnsFound>;
  /** Why a pod has no namespace here, for status: where it was looked for. */
  readonly notFoundMessage: (pod: PodIdentity) => string;
};

// ── pure parts ─────────────────────────────────────────────────────────────────

/** cgroupfs driver: the pod's own directory is "pod<uid>", the UID as it is. */
const CGROUPFS_POD = /^pod([0-9A-Za-z][-0-9A-Za-z]*)$/;
/** systemd driver: "kubepods[-<qos>]-pod<uid>.slice", '-' being systemd's nesting mark, so the UID's dashes are '_'. */
const SYSTEMD_POD = /^(?:[^/]*-)?pod([0-9A-Za-z][0-9A-Za-z_]*)\.slice$/;

/**
 * The pod UIDs a /proc/<pid>/cgroup text names (normalised: systemd writes the UID's
 * dashes as underscores). cgroupfs: ".../kubepods/burstable/pod<uid>/<container>";
 * systemd: ".../kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-….scope".
 * A path component is a pod's when it is "pod<uid>" or ends "-pod<uid>.slice".
 */
export function podUidsInCgroup(text: string): string[] {
  const uids = new Set<string>();
  for (const line of text.split('\n')) {
    // hierarchy-ID:controller-list:path; the path may itself contain ':'.
    const second = line.indexOf(':', line.indexOf(':') + 1);
    if (second < 0) continue;
    for (const component of line.slice(second + 1).split('/')) {
      const match = CGROUPFS_POD.exec(component) ?? SYSTEMD_POD.exec(component);
      if (match !== null) uids.add(normalizeUid(match[1]!));
    }
  }
  return [...uids];
}

/** UIDs compared the way the cgroup names spell them: lower case, '_' as '-'. */
export function normalizeUid(uid: string): string {
  return uid.toLowerCase().replaceAll('_', '-');
}

/**
 * The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat),
 * or undefined when the text is not a stat line. The command name (field 2) may hold
 * spaces and parentheses: the fields after it start after the last ')'.
 */
export function processStartTime(statText: string): bigint | undefined {
  const close = statText.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields 3… : state is index 0 here, so field 22 is index 19.
  const rest = statText.slice(close + 1).trim().split(/\s+/);
  const field = rest[19];
  return field !== undefined && /^\d+$/.test(field) ? BigInt(field) : undefined;
}

/** A name we are willing to join onto a directory: one path component, not . or .. */
function isPlainName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

// ── the resolver ───────────────────────────────────────────────────────────────

type ProcCandidate = { readonly pid: number; readonly start: bigint };

export type PodNetnsResolverOptions = {
  readonly strategies?: readonly NetnsStrategy[];
  readonly log?: Logger;
  /** Processes read at once during a /proc scan. */
  readonly concurrency?: number;
};

export class PodNetnsResolver {
  readonly strategies: readonly NetnsStrategy[];
  readonly #log: Logger | undefined;
  readonly #concurrency: number;
  /** nsfs's device: every namespace file is on it; a stale /run/netns file is not. */
  readonly #nsfsDev: number | undefined;

  constructor(options: PodNetnsResolverOptions = {}) {
    this.strategies = options.strategies ?? DEFAULT_NETNS_STRATEGIES;
    if (this.strategies.length === 0) throw new FulcrumError('ERR_CONFIG', 'pod network namespace resolution needs at least one strategy');
    this.#log = options.log;
    this.#concurrency = options.concurrency ?? 64;
    try {
      this.#nsfsDev = statSync('/proc/self/ns/net').dev;
    } catch {
      this.#nsfsDev = undefined;
    }
  }

  /** Where pods are looked for, in words (status messages, logs). */
  describe(): string {
    return this.strategies.map((s) => (s.kind === 'dir' ? `${s.dir}/<pod UID> or <namespace>_<name>` : `pod cgroups in ${s.procRoot}`)).join(', then ');
  }

  /**
   * Looks up every pod once (one /proc scan at most, and only if a pod is still
   * missing when the proc strategy's turn comes) and returns a snapshot to map a spec
   * with. I/O errors of one candidate skip it; nothing here throws for a missing pod.
   */
  async resolve(pods: readonly PodIdentity[]): Promise<NetnsSnapshot> {
    const found = new Map<string, NetnsFound>();
    let missing = pods.filter((p) => isPlainName(p.podUID));
    for (const strategy of this.strategies) {
      if (missing.length === 0) break;
      const via = formatNetnsStrategy(strategy);
      const hits = strategy.kind === 'dir'
        ? await this.#fromDir(strategy.dir, missing)
        : await this.#fromProc(strategy.procRoot, missing);
      for (const [uid, path] of hits) found.set(uid, { path, via });
      missing = missing.filter((p) => !found.has(p.podUID));
    }
    if (missing.length > 0) this.#log?.debug({ pods: missing.map((p) => p.pod) }, 'no network namespace on this node yet');
    const where = this.describe();
    return {
      lookup: (pod) => found.get(pod.podUID)?.path,
      found,
      notFoundMessage: (pod) => `no network namespace for pod UID ${pod.podUID} on this node yet (looked for ${where}): the pod is starting or not scheduled here`,
    };
  }

  async #fromDir(dir: string, pods: readonly PodIdentity[]): Promise<Map<string, string>> {
    const hits = new Map<string, string>();
    for (const pod of pods) {
      const [namespace, name] = pod.pod.split('/', 2) as [string, string | undefined];
      const names = [pod.podUID, ...(name !== undefined ? [`${namespace}_${name}`] : [])].filter(isPlainName);
      for (const candidate of names) {
        const path = join(dir, candidate);
        if (await this.#isNamespace(path)) {
          hits.set(pod.podUID, path);
          break;
        }
      }
    }
    return hits;
  }

  async #fromProc(procRoot: string, pods: readonly PodIdentity[]): Promise<Map<string, string>> {
    const wanted = new Map(pods.map((p) => [normalizeUid(p.podUID), p.podUID]));
    let entries: string[];
    try {
      entries = (await readdir(procRoot)).filter((e) => /^\d+$/.test(e));
    } catch (err) {
      this.#log?.warn({ procRoot, error: (err as Error).message }, 'cannot list processes: the proc strategy finds no pods');
      return new Map();
    }
    // Candidates per pod, oldest first; a process that exits meanwhile is skipped.
    const candidates = new Map<string, ProcCandidate[]>();
    const visit = async (entry: string): Promise<void> => {
      let cgroup: string;
      try {
        cgroup = await readFile(join(procRoot, entry, 'cgroup'), 'utf8');
      } catch {
        return; // gone, or not ours to read
      }
      const uids = podUidsInCgroup(cgroup).filter((u) => wanted.has(u));
      if (uids.length === 0) return;
      let start: bigint | undefined;
      try {
        start = processStartTime(await readFile(join(procRoot, entry, 'stat'), 'utf8'));
      } catch {
        return;
      }
      if (start === undefined) return;
      for (const uid of uids) {
        const list = candidates.get(uid) ?? [];
        list.push({ pid: Number(entry), start });
        candidates.set(uid, list);
      }
    };
    for (let i = 0; i < entries.length; i += this.#concurrency) {
      await Promise.all(entries.slice(i, i + this.#concurrency).map(visit));
    }
    const hits = new Map<string, string>();
    for (const [uid, list] of candidates) {
      list.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.pid - b.pid));
      for (const candidate of list) {
        const path = join(procRoot, String(candidate.pid), 'ns', 'net');
        // A process that exited between the scan and here (a container restarting, the
        // sandbox being torn down) has no namespace to give: try the next one.
        if (await this.#isNamespace(path)) {
          hits.set(wanted.get(uid)!, path);
          break;
        }
      }
    }
    return hits;
  }

  /** The path names a network namespace: it exists and lives on nsfs (not a stale bind-mount target). */
  async #isNamespace(path: string): Promise<boolean> {
    try {
      const st = await stat(path);
      // Without our own namespace to compare with, existence has to do: PodNetns
      // checks what it opens again anyway.
      return this.#nsfsDev === undefined || st.dev === this.#nsfsDev;
    } catch {
      return false;
    }
  }
}
