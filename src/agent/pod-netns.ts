// A backend pod's network namespace, held open while the agent works in it: the
// checks that keep the agent out of the host namespace, and the few things done there
// with iproute2 and sysctl (addresses on lo, the DSR sysctls). BPF attachments go
// through attach.ts's inNetns() with `workerPath`.
//
// Why hold an fd: a namespace path such as /proc/<pid>/ns/net names whatever process
// has that pid now. The agent opens the path once, checks what it got (a network
// namespace, not the host's, the one it recorded earlier), and from then on every
// tool enters the namespace through that fd (the child gets it as fd 3 and nsenter
// opens /proc/self/fd/3; the netns worker opens /proc/self/fd/<fd> of this process).
// A pid reused meanwhile, or a /run/netns bind mount replaced, cannot redirect the
// work to another namespace, least of all the host's.
//
// Why child processes: `nsenter --net` moves a whole short-lived process into the pod
// namespace, so /proc/sys/net and netlink there unambiguously belong to the pod. The
// agent's own threads never change namespace for this (see bpf/netns.ts).
//
// Sysctls are files written by that child, under a configurable procfs sys directory:
// /proc/sys/net shows the namespace of the process that opens it, whichever procfs
// mount the path goes through. So where the container runtime has made the container's
// /proc/sys read-only, a writable mount of the host's /proc (e.g. /host/proc/sys) does
// the same job without a privileged container.
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { z } from 'zod';
import { addressFamily, canonicalAddress } from '../shared/addresses.ts';
import { FulcrumError } from '../shared/errors.ts';

/** Where sysctls are read and written unless the agent is told otherwise (AgentConfig.sysctlRoot). */
export const DEFAULT_SYSCTL_ROOT = '/proc/sys';

/** sh: write each (path, value) pair of its arguments; the first failure ends it. */
const WRITE_FILES = 'while [ "$#" -gt 1 ]; do printf \'%s\\n\' "$2" > "$1" || exit 1; shift 2; done';

/** A namespace's identity: nsfs device and inode (what `ls -L -i` shows for it). */
export type NamespaceId = { readonly dev: number; readonly ino: number };

export function sameNamespace(a: NamespaceId, b: NamespaceId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * The namespaces the agent must never program: its own (the host's, as the agent runs
 * with hostNetwork) and init's. /proc/1 may be unreadable or another pid namespace's
 * init; whichever can be read counts.
 */
function hostNamespaces(): NamespaceId[] {
  const ids: NamespaceId[] = [];
  for (const path of ['/proc/self/ns/net', '/proc/1/ns/net']) {
    try {
      const st = statSync(path);
      ids.push({ dev: st.dev, ino: st.ino });
    } catch {
      // not visible from here
    }
  }
  return ids;
}

/** One address on an interface, as `ip -j addr` reports it (canonical text). */
export type InterfaceAddress = { readonly address: string; readonly prefixLength: number };

export type InterfaceInfo = {
  readonly name: string;
  readonly up: boolean;
  readonly addresses: readonly InterfaceAddress[];
};

const IpAddrJson = z.array(z.looseObject({
  ifname: z.string(),
  flags: z.array(z.string()).default([]),
  addr_info: z.array(z.looseObject({
    family: z.string(),
    local: z.string().optional(),
    prefixlen: z.number(),
  })).default([]),
}));

/** Linux's dev_valid_name(): what the kernel accepts as an interface name. */
export function isValidInterfaceName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && name !== '.' && name !== '..' && !/[/:\s]/.test(name);
}

/** The full-length prefix of an address's family: /32 or /128. */
export function hostPrefix(address: string): number {
  return addressFamily(address) === 4 ? 32 : 128;
}

export type SysctlSetting = { readonly key: string; readonly value: string };

export class PodNetns {
  /** The path the namespace was opened by (for messages). */
  readonly path: string;
  readonly id: NamespaceId;
  readonly #fd: number;
  #closed = false;

  private constructor(path: string, fd: number, id: NamespaceId) {
    this.path = path;
    this.#fd = fd;
    this.id = id;
  }

  /**
   * Open the network namespace at `path`. Null when there is none (the pod is gone:
   * the path is missing, or a /run/netns file outlived its bind mount); throws
   * ERR_NETNS (details.reason 'host-namespace') for the host's namespace.
   */
  static tryOpen(path: string): PodNetns | null {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH') return null;
      throw new FulcrumError('ERR_NETNS', `cannot open network namespace ${path}: ${(cause as Error).message}`,
        { cause, details: { nsPath: path } });
    }
    try {
      const st = fstatSync(fd);
      const id = { dev: st.dev, ino: st.ino };
      const hosts = hostNamespaces();
      // Every namespace file lives on the one nsfs superblock: another device is a
      // plain file (e.g. a /run/netns entry whose bind mount is gone).
      const nsfsDev = hosts[0]?.dev;
      if (nsfsDev !== undefined && st.dev !== nsfsDev) {
        closeSync(fd);
        return null;
      }
      if (hosts.some((host) => sameNamespace(host, id))) {
        throw new FulcrumError('ERR_NETNS',
          `${path} is the host network namespace: decap is only set up inside pod namespaces (hostNetwork pods cannot be decap backends)`,
          { details: { nsPath: path, reason: 'host-namespace' } });
      }
      return new PodNetns(path, fd, id);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** tryOpen(), with a missing namespace as an ERR_NETNS error. */
  static open(path: string, whose: string): PodNetns {
    const ns = PodNetns.tryOpen(path);
    if (ns === null) {
      throw new FulcrumError('ERR_NETNS',
        `there is no network namespace at ${path} for ${whose} (the pod is gone, or not started yet)`,
        { details: { nsPath: path } });
    }
    return ns;
  }

  /** A path to this exact namespace for attach.ts's inNetns(), valid while this is open. */
  get workerPath(): string {
    this.#usable();
    return `/proc/self/fd/${this.#fd}`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }

  /** Every interface with its addresses. */
  async interfaces(): Promise<InterfaceInfo[]> {
    const out = await this.run(['ip', '-j', 'address', 'show']);
    let parsed: z.infer<typeof IpAddrJson>;
    try {
      parsed = IpAddrJson.parse(JSON.parse(out));
    } catch (cause) {
      throw new FulcrumError('ERR_NETNS', `unexpected output from ip -j address show in ${this.path}`,
        { cause, details: { nsPath: this.path } });
    }
    return parsed.map((link) => ({
      name: link.ifname,
      up: link.flags.includes('UP'),
      addresses: link.addr_info
        .filter((a) => (a.family === 'inet' || a.family === 'inet6') && a.local !== undefined)
        .map((a) => ({ address: canonicalAddress(a.local!), prefixLength: a.prefixlen })),
    }));
  }

  /** Add host-prefix addresses to lo (replace: idempotent). IPv6 ones without DAD. */
  async addToLoopback(addresses: readonly string[]): Promise<void> {
    await this.#ipBatch(addresses.map((a) => `address replace ${a}/${hostPrefix(a)} dev lo${addressFamily(a) === 6 ? ' nodad' : ''}`));
  }

  /** Remove host-prefix addresses from lo; each must be there (read interfaces() first). */
  async removeFromLoopback(addresses: readonly string[]): Promise<void> {
    await this.#ipBatch(addresses.map((a) => `address del ${a}/${hostPrefix(a)} dev lo`));
  }

  /**
   * Write sysctls (slash-form keys, so interface names with dots stay whole) as the
   * files <sysctlRoot>/<key>, from a process in this namespace. Stops at the first
   * that fails (ERR_NETNS with the shell's words: read-only file system, no such key).
   */
  async writeSysctls(settings: readonly SysctlSetting[], sysctlRoot = DEFAULT_SYSCTL_ROOT): Promise<void> {
    if (settings.length === 0) return;
    await this.run(['sh', '-c', WRITE_FILES, 'sh', ...settings.flatMap((s) => [`${sysctlRoot}/${s.key}`, String(s.value)])]);
  }

  /** Read sysctls (slash-form keys) as key → value, through <sysctlRoot>. */
  async readSysctls(keys: readonly string[], sysctlRoot = DEFAULT_SYSCTL_ROOT): Promise<Map<string, string>> {
    const out = await this.run(['cat', '--', ...keys.map((key) => `${sysctlRoot}/${key}`)]);
    const values = out.split('\n').slice(0, keys.length);
    return new Map(keys.map((key, i) => [key, (values[i] ?? '').trim()]));
  }

  async #ipBatch(commands: readonly string[]): Promise<void> {
    if (commands.length === 0) return;
    // Addresses are canonical text from the validated desired state or from ip
    // itself: no spaces, no newlines, nothing the batch syntax would read differently.
    await this.run(['ip', '-batch', '-'], `${commands.join('\n')}\n`);
  }

  /**
   * Run argv in this namespace (nsenter --net through the held fd). Resolves to
   * stdout; a non-zero exit is an ERR_NETNS error carrying stderr.
   */
  run(argv: readonly string[], input?: string): Promise<string> {
    this.#usable();
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', ['--net=/proc/self/fd/3', '--', ...argv], {
        stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe', this.#fd],
      });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
      child.once('error', (cause) => reject(new FulcrumError('ERR_NETNS',
        `cannot run ${argv[0]} in network namespace ${this.path}: ${cause.message}`, { cause, details: { nsPath: this.path } })));
      child.once('close', (code, signal) => {
        if (code === 0) {
          resolve(Buffer.concat(stdout).toString('utf8'));
          return;
        }
        const said = Buffer.concat(stderr).toString('utf8').trim();
        reject(new FulcrumError('ERR_NETNS',
          `${argv.join(' ')} failed in network namespace ${this.path} (${signal ?? `exit ${code}`})${said ? `: ${said}` : ''}`,
          { details: { nsPath: this.path, argv: [...argv], ...(input === undefined ? {} : { input }) } }));
      });
      if (input !== undefined) child.stdin!.end(input);
    });
  }

  #usable(): void {
    if (this.#closed) throw new FulcrumError('ERR_INTERNAL', `network namespace ${this.path} used after close()`);
  }
}
