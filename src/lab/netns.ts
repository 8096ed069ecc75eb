// Network namespaces, veth links, addresses and routes for the lab, through
// iproute2. Safety is the point of this module: every namespace is created by the
// lab, named with the lab's unique prefix, and no link ever touches the host
// namespace (veth pairs are created with both ends inside lab namespaces). The
// Registry remembers what was made so that cleanup removes all of it, also after a
// failure, and sweepStale() removes what a killed earlier run left behind.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { FulcrumError } from '../shared/errors.ts';

const run = promisify(execFile);

export const NETNS_DIR = '/run/netns';
/** Every lab namespace name starts with this, then the owning process id. */
export const LAB_PREFIX = 'fl';

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

/** What one lab run created, removed in reverse by cleanup(). */
export class Registry {
  readonly prefix: string;
  private readonly namespaces: string[] = [];

  constructor(tag: string) {
    this.prefix = `${LAB_PREFIX}${process.pid}${tag}`;
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

  /** Deleting a namespace deletes its links; veth peers go with them. */
  async cleanup(): Promise<void> {
    for (const name of this.namespaces.splice(0).reverse()) {
      await killNamespaceProcesses(name);
      await sh('ip', ['netns', 'del', name], { allowFail: true });
    }
  }
}

/** Processes still running inside a namespace would keep it alive after `ip netns del`. */
async function killNamespaceProcesses(name: string): Promise<void> {
  const pids = (await sh('ip', ['netns', 'pids', name], { allowFail: true })).split(/\s+/).filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes namespaces left by lab runs whose process is gone (a crash, a SIGKILL). */
export async function sweepStale(): Promise<string[]> {
  let names: string[] = [];
  try {
    names = readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /^fl(\d+)[a-z0-9]*-/.exec(name);
    if (!m || processAlive(Number(m[1]))) continue;
    await killNamespaceProcesses(name);
    await sh('ip', ['netns', 'del', name], { allowFail: true });
    removed.push(name);
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
