// Network namespaces, veth links, addresses and routes for the lab, through
// iproute2. Safety is the point of this module: every namespace is created by the
// lab, named with the lab's unique prefix, and no link ever touches the host
// namespace (veth pairs are created with both ends inside lab namespaces). The
// Registry remembers what was made so that cleanup removes all of it, also after a
// failure, and sweepStale() removes what a killed earlier run left behind.
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FulcrumError } from '../shared/errors.ts';

const run = promisify(execFile);

export const NETNS_DIR = '/run/netns';
/** Every lab namespace name and BPF pin directory starts with this, then the owning process id. */
export const LAB_PREFIX = 'fl';
/** Lab runs pin under BPFFS_ROOT/<prefix>/, never under the product's default /sys/fs/bpf/fulcrum. */
export const BPFFS_ROOT = '/sys/fs/bpf';
/** `fl<pid><tag>` followed by `-role` (namespaces) or nothing (pin directories). */
const LAB_NAME = /^fl(\d+)[a-z0-9]*(?:-|$)/;

export async function sh(cmd: string, args: readonly string[], options: { allowFail?: boolean } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    if (options.allowFail) return '';
    const e = err as { stderr?: string; message: string };
    throw new FulcrumError('ERR_NETNS', `${cmd} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

/** argv prefix that runs a command inside a namespace without remounting /sys (so
 * /sys/fs/bpf stays visible, unlike `ip netns exec`). */
export function inNetns(name: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=${netnsPath(name)}`, '--', ...argv];
}

export async function nsExec(name: string, argv: readonly string[], options: { allowFail?: boolean } = {}): Promise<string> {
  const [cmd, ...args] = inNetns(name, argv);
  return sh(cmd!, args, options);
}

export function nsSpawn(name: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [cmd, ...args] = inNetns(name, argv);
  return spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

export type Veth = { readonly a: { ns: string; name: string }; readonly b: { ns: string; name: string } };

/** Sets sysctls inside a namespace (`sysctl -w` through nsenter writes the entered
 * namespace's /proc/sys/net, which is per network namespace). */
export async function nsSysctl(name: string, settings: Readonly<Record<string, string | number>>): Promise<void> {
  const args = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
  if (args.length > 0) await nsExec(name, ['sysctl', '-q', '-w', ...args]);
}

/** What one lab run created, removed in reverse by cleanup(). */
export class Registry {
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly pinDirs: string[] = [];

  constructor(tag: string) {
    this.prefix = `${LAB_PREFIX}${process.pid}${tag}`;
  }

  /** The run's own directory on the BPF filesystem (agents pin below it); removed by cleanup(). */
  pinDir(): string {
    const dir = join(BPFFS_ROOT, this.prefix);
    if (!this.pinDirs.includes(dir)) this.pinDirs.push(dir);
    return dir;
  }

  /** Namespace names are short: interface-safe and under the 15-byte link limit. */
  async addNamespace(role: string): Promise<string> {
    const name = `${this.prefix}-${role}`;
    await sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await nsExec(name, ['ip', 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair with each end created directly inside its namespace. */
  async addVeth(a: { ns: string; name: string }, b: { ns: string; name: string }): Promise<Veth> {
    await sh('ip', ['link', 'add', a.name, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns]);
    await nsExec(a.ns, ['ip', 'link', 'set', a.name, 'up']);
    await nsExec(b.ns, ['ip', 'link', 'set', b.name, 'up']);
    return { a, b };
  }

  /** Deleting a namespace deletes its links; veth peers go with them. Processes go
   * first (they would keep the namespace alive), pins last (unpinning a link detaches
   * its program; with the interfaces gone there is nothing left to detach from). */
  async cleanup(): Promise<void> {
    // Each name leaves the list only once it is gone, so cleanupSync() (a process
    // exit in the middle of this) still finds the rest.
    for (const name of [...this.namespaces].reverse()) {
      await killNamespaceProcesses(name);
      await sh('ip', ['netns', 'del', name], { allowFail: true });
      this.namespaces.splice(this.namespaces.indexOf(name), 1);
    }
    for (const dir of this.pinDirs.splice(0)) removePinDir(dir);
  }

  /** The same, synchronously: for process 'exit' handlers, where nothing async runs. */
  cleanupSync(): void {
    for (const name of this.namespaces.splice(0).reverse()) {
      let pids: string[] = [];
      try {
        pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(/\s+/).filter(Boolean);
      } catch {
        pids = [];
      }
      for (const pid of pids) killQuietly(Number(pid));
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    for (const dir of this.pinDirs.splice(0)) removePinDir(dir);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** bpffs allows unlink and rmdir, so a recursive rm removes pinned maps, programs and links. */
function removePinDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Processes still running inside a namespace would keep it alive after `ip netns del`. */
async function killNamespaceProcesses(name: string): Promise<void> {
  const pids = (await sh('ip', ['netns', 'pids', name], { allowFail: true })).split(/\s+/).filter(Boolean);
  for (const pid of pids) killQuietly(Number(pid));
}

/** Whether a process runs. A zombie (killed, not yet reaped by its parent) does not:
 * a SIGKILLed lab run is a zombie until the test runner that started it reaps it. */
export function processAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The pid in a lab name, or null for names the lab did not make. */
function labOwner(name: string): number | null {
  const m = LAB_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

/** A name made by a lab run (`fl<pid><tag>...`) whose process is gone. */
export function isStaleLabName(name: string): boolean {
  const owner = labOwner(name);
  return owner !== null && !processAlive(owner);
}

/** Removes namespaces and BPF pin directories left by lab runs whose process is gone
 * (a crash, a SIGKILL). Returns what was removed. */
export async function sweepStale(): Promise<string[]> {
  const removed: string[] = [];
  for (const name of listNamespaces()) {
    if (!isStaleLabName(name)) continue;
    await killNamespaceProcesses(name);
    await sh('ip', ['netns', 'del', name], { allowFail: true });
    removed.push(name);
  }
  let pinned: string[] = [];
  try {
    pinned = readdirSync(BPFFS_ROOT);
  } catch {
    pinned = [];
  }
  for (const name of pinned) {
    if (!isStaleLabName(name)) continue;
    removePinDir(join(BPFFS_ROOT, name));
    removed.push(join(BPFFS_ROOT, name));
  }
  return removed;
}

type IpLink = { address: string; ifindex: number; stats64?: { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } };

/** Link facts through netlink (`ip -n`): /sys/class/net under nsenter would show the
 * namespace that mounted sysfs, not the one entered. */
async function ipLink(ns: string, link: string): Promise<IpLink> {
  const parsed = JSON.parse(await sh('ip', ['-n', ns, '-j', '-s', 'link', 'show', 'dev', link])) as IpLink[];
  if (!parsed[0]) throw new FulcrumError('ERR_NETNS', `no link ${link} in namespace ${ns}`);
  return parsed[0];
}

export async function linkMac(ns: string, link: string): Promise<string> {
  return (await ipLink(ns, link)).address;
}

export async function linkIndex(ns: string, link: string): Promise<number> {
  return (await ipLink(ns, link)).ifindex;
}

export async function linkStats(ns: string, link: string): Promise<{ rxPackets: number; rxBytes: number; txPackets: number; txBytes: number }> {
  const s = (await ipLink(ns, link)).stats64;
  return { rxPackets: s?.rx.packets ?? 0, rxBytes: s?.rx.bytes ?? 0, txPackets: s?.tx.packets ?? 0, txBytes: s?.tx.bytes ?? 0 };
}

export function listNamespaces(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}
