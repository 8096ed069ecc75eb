// The BPF filesystem under a pin root. Every component that creates or opens pins (the
// agent in both modes, decap duties, inspect, the lab, the tests) checks it first.
//
// Why a check of its own: a fresh host often has nothing mounted at /sys/fs/bpf, which is
// then an empty sysfs directory. There mkdirSync(…, {recursive: true}) never returns
// (sysfs answers ENOENT for the child and EEXIST for the parent, and Node retries), and
// bpf_obj_pin fails with a bare EPERM. statfs tells the two apart in one call, so every
// pin directory is made through makePinDir below, and a missing bpffs becomes one error
// in words that names the fix.
import { mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import koffi from 'koffi';
import { FulcrumError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logging.ts';
import { errnoName } from './libbpf.ts';
import { mount } from './libc.ts';

/** f_type of a BPF filesystem (BPF_FS_MAGIC, <linux/magic.h>). */
export const BPF_FS_MAGIC = 0xcafe4a11;

/** Where hosts mount the BPF filesystem, and where the agent mounts it when asked to. */
export const BPFFS_MOUNT_POINT = '/sys/fs/bpf';

/** The command a person runs to fix it, quoted the same in every message. */
export const BPFFS_MOUNT_COMMAND = `mount -t bpf bpf ${BPFFS_MOUNT_POINT}`;

/**
 * Mount options: root only (mode 0700), as systemd mounts it. Pinned maps are 0600
 * anyway; this also hides their names from other users.
 */
const MOUNT_OPTIONS = 'mode=0700';

/** Names of the filesystems a pin root is likely to be on instead, for the message. */
const FS_NAMES: ReadonlyMap<number, string> = new Map([
  [0x62656572, 'sysfs'],
  [0x01021994, 'tmpfs'],
  [0xef53, 'ext4'],
  [0x794c7630, 'overlayfs'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x9fa0, 'proc'],
]);

export function fsTypeName(type: number): string {
  return FS_NAMES.get(type) ?? `a filesystem of type 0x${type.toString(16)}`;
}

export type BpffsState =
  /** `checked` (the pin root, or its nearest existing parent) is on a BPF filesystem. */
  | { readonly outcome: 'bpffs'; readonly checked: string }
  /** `checked` is on another filesystem: nothing can be pinned below it. */
  | { readonly outcome: 'other'; readonly checked: string; readonly fsType: string };

/**
 * Which filesystem `pinRoot` is on: statfs of the pin root, or of its nearest existing
 * parent when it does not exist yet (what mkdir would create it on). Never creates
 * anything. Throws ERR_BPFFS when even that cannot be read (permission, I/O).
 */
export function bpffsState(pinRoot: string): BpffsState {
  for (let path = pinRoot; ; path = dirname(path)) {
    try {
      const { type } = statfsSync(path);
      return type === BPF_FS_MAGIC ? { outcome: 'bpffs', checked: path } : { outcome: 'other', checked: path, fsType: fsTypeName(type) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOENT' || code === 'ENOTDIR') && path !== dirname(path)) continue;
      throw new FulcrumError('ERR_BPFFS', `cannot tell which filesystem ${path} is on: ${(err as Error).message}`, { cause: err, details: { path, errno: code } });
    }
  }
}

export type EnsureBpffsOptions = {
  /** Mount a BPF filesystem at /sys/fs/bpf when the pin root is below it and none is there. */
  readonly mount: boolean;
  readonly log?: Logger;
};

/** How the pin root came to be on bpffs: it was already, or this call mounted it. */
export type EnsureBpffsOutcome = 'already-mounted' | 'mounted';

/**
 * Makes sure `pinRoot` is on a BPF filesystem before anything is created or opened under
 * it: checks, mounts /sys/fs/bpf when allowed and needed, checks again. Throws ERR_BPFFS
 * with the fix in words otherwise; never loops.
 */
export function ensureBpffs(pinRoot: string, options: EnsureBpffsOptions): EnsureBpffsOutcome {
  const before = bpffsState(pinRoot);
  if (before.outcome === 'bpffs') return 'already-mounted';
  const underMountPoint = pinRoot === BPFFS_MOUNT_POINT || pinRoot.startsWith(`${BPFFS_MOUNT_POINT}/`);
  if (!options.mount || !underMountPoint) {
    throw notMounted(pinRoot, before, options.mount
      ? `the agent mounts bpffs only at ${BPFFS_MOUNT_POINT}, and ${pinRoot} is not below it`
      : 'mounting it is turned off (mountBpffs: false)');
  }
  if (mount('bpf', BPFFS_MOUNT_POINT, 'bpf', 0, MOUNT_OPTIONS) !== 0) {
    const name = errnoName(koffi.errno());
    const why = name === 'EPERM'
      ? 'mounting needs CAP_SYS_ADMIN in the host\'s mount namespace'
      : name === 'ENOENT' ? `${BPFFS_MOUNT_POINT} does not exist (is /sys mounted?)` : `mount(2) failed with ${name}`;
    throw notMounted(pinRoot, before, `mounting it failed: ${why}`, { errno: name });
  }
  const after = bpffsState(pinRoot);
  if (after.outcome !== 'bpffs') {
    throw notMounted(pinRoot, after, `a BPF filesystem was mounted at ${BPFFS_MOUNT_POINT}, yet ${after.checked} is still on ${after.fsType}`);
  }
  options.log?.info({ mountPoint: BPFFS_MOUNT_POINT, options: MOUNT_OPTIONS }, 'mounted the BPF filesystem (it was not mounted)');
  return 'mounted';
}

/**
 * Creates a pin directory (and its parents), after checking that it lands on a BPF
 * filesystem. The one way pin directories are made: see the header for why.
 */
export function makePinDir(dir: string): void {
  const state = bpffsState(dir);
  if (state.outcome !== 'bpffs') throw notMounted(dir, state);
  mkdirSync(dir, { recursive: true });
}

/** ERR_BPFFS for a pin root on another filesystem, naming the fix. */
export function notMounted(pinRoot: string, state: Extract<BpffsState, { outcome: 'other' }>, why?: string, details: Record<string, unknown> = {}): FulcrumError {
  return new FulcrumError('ERR_BPFFS',
    `${pinRoot} is not on a BPF filesystem (${state.checked} is on ${state.fsType})${why !== undefined ? `, and ${why}` : ''}: ` +
    `mount one with '${BPFFS_MOUNT_COMMAND}' as root`,
    { details: { pinRoot, checked: state.checked, fsType: state.fsType, ...details } });
}
