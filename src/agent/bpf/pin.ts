// Pins on the BPF filesystem: pinning a map, program or link fd to a path, opening a
// pinned object again (a restarted agent adopts its maps and links this way), and
// telling which kind of BPF object an fd is, so a map path that holds a link is
// reported in words instead of being misread.

import { readlinkSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { makePinDir } from './bpffs.ts';
import { bpfFailure, errno, errnoName, libbpf } from './libbpf.ts';
import { close } from './libc.ts';
import { FulcrumError, type ErrorCode } from '../../shared/errors.ts';

export type BpfFdKind = 'map' | 'prog' | 'link' | 'btf' | 'other';

/** What kind of BPF object `fd` refers to (from /proc/self/fd: anon_inode:bpf-map, ...). */
export function bpfFdKind(fd: number): BpfFdKind {
  let target: string;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return 'other';
  }
  switch (target) {
    case 'anon_inode:bpf-map': return 'map';
    case 'anon_inode:bpf-prog': return 'prog';
    case 'anon_inode:bpf-link':
    case 'anon_inode:bpf_link': return 'link'; // older kernels' spelling
    case 'anon_inode:btf': return 'btf';
    default: return 'other';
  }
}

const PIN_HINTS: Readonly<Record<string, string>> = {
  EEXIST: 'a file already exists at that path (pinned by an earlier run?): open it instead, or remove it first',
  ENOENT: 'the parent directory does not exist',
  EPERM: 'the path is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf), or the process lacks CAP_BPF / root',
  EINVAL: 'the path is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)',
  EACCES: 'no write permission on the directory',
};

/**
 * Pin `fd` at `path` (parent directories are created, on a BPF filesystem only:
 * ERR_BPFFS otherwise). `what` names it in errors.
 */
export function pinFd(fd: number, path: string, what: string, code: ErrorCode): void {
  makePinDir(dirname(path));
  const ret = libbpf.bpf_obj_pin(fd, path);
  if (ret < 0) {
    throw bpfFailure(code, `cannot pin ${what} at ${path}`, ret, { hint: PIN_HINTS[errnoName(ret)], details: { path } });
  }
}

/**
 * Open the object pinned at `path`, checking it is a `kind`. The caller owns the fd.
 * Returns null when nothing is pinned there and `missingOk` is set.
 */
export function openPinnedFd(path: string, kind: BpfFdKind, code: ErrorCode, missingOk?: false): number;
export function openPinnedFd(path: string, kind: BpfFdKind, code: ErrorCode, missingOk: true): number | null;
export function openPinnedFd(path: string, kind: BpfFdKind, code: ErrorCode, missingOk = false): number | null {
  const fd = libbpf.bpf_obj_get(path);
  if (fd < 0) {
    if (missingOk && -fd === errno('ENOENT')) return null;
    const hints: Record<string, string> = {
      ENOENT: `nothing is pinned at ${path}`,
      EPERM: 'the process lacks CAP_BPF / root, or the path is not on a BPF filesystem',
      EACCES: 'no read permission on the pinned file',
    };
    throw bpfFailure(code, `cannot open the pinned ${kind} at ${path}`, fd, { hint: hints[errnoName(fd)], details: { path } });
  }
  const actual = bpfFdKind(fd);
  if (actual !== kind) {
    closeQuietly(fd);
    throw new FulcrumError(code, `${path} holds a pinned ${actual}, not a ${kind}`, { details: { path, kind: actual } });
  }
  return fd;
}

/** Remove a pin. Returns false if nothing was pinned there. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * close(2) for fds libbpf handed out. Through libc, not fs.closeSync: Node warns when
 * fs closes an fd it did not open. An error (already closed) is not interesting.
 */
export function closeQuietly(fd: number): void {
  if (fd >= 0) close(fd);
}
