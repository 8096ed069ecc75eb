// Helpers for the BPF binding tests: the root check, compiling small BPF and host C
// programs into temporary directories, the floor object, unique names, and network
// namespaces that are always removed again.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BPF_INCLUDE = join(REPO, 'bpf/include');

export const isRoot = process.getuid?.() === 0;

/** node:test `skip` option: run only as root (BPF and network namespaces need it). */
export const rootOnly = isRoot ? {} : { skip: 'needs root: loading BPF programs, pinning and network namespaces require CAP_BPF / CAP_NET_ADMIN / CAP_SYS_ADMIN' };

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'fulcrum-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `fulcrum-test-<pid>-<random>`, cut to `max` characters (interface names: 15). */
export function uniqueName(prefix = 'fulcrum-test', max = 64): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`.slice(0, max);
}

function multiarchInclude(): string[] {
  try {
    const triple = execFileSync('clang', ['-print-multiarch'], { encoding: 'utf8' }).trim();
    if (triple) return ['-idirafter', `/usr/include/${triple}`];
  } catch {
    // Fall through: gcc's triple.
  }
  const triple = execFileSync('gcc', ['-dumpmachine'], { encoding: 'utf8' }).trim();
  return ['-idirafter', `/usr/include/${triple}`];
}

/** Compile BPF C source (the flags bpf/Makefile uses) into `dir`; returns the object path. */
export function compileBpf(source: string, name: string, dir: string): string {
  const src = join(dir, `${name}.bpf.c`);
  const out = join(dir, `${name}.bpf.o`);
  writeFileSync(src, source);
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-mcpu=v3', '-Wall', '-Wno-unused-function',
    '-I', BPF_INCLUDE, ...multiarchInclude(), '-c', src, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  return out;
}

/** Compile and run a host C program; returns its stdout. */
export function compileAndRunC(source: string, dir: string, includeDirs: readonly string[] = [BPF_INCLUDE]): string {
  const src = join(dir, 'probe.c');
  const exe = join(dir, 'probe');
  writeFileSync(src, source);
  execFileSync('clang', ['-Wall', '-Werror', ...includeDirs.flatMap((d) => ['-I', d]), src, '-o', exe],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  return execFileSync(exe, { encoding: 'utf8' });
}

let floorPath: string | undefined;

/** bpf/build/floor.bpf.o, built if missing (make, or clang into a temp dir if make cannot). */
export function floorObject(): string {
  if (floorPath) return floorPath;
  const built = join(REPO, 'bpf/build/floor.bpf.o');
  if (!existsSync(built)) {
    try {
      execFileSync('make', ['-s', '-C', join(REPO, 'bpf'), 'build/floor.bpf.o'], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch {
      // No Makefile yet, or another object of the directory is broken: build ours alone.
    }
  }
  if (existsSync(built)) {
    floorPath = built;
  } else {
    const { dir } = tempDir('fulcrum-floor-');
    floorPath = compileBpf(readFileSync(join(REPO, 'bpf/floor.bpf.c'), 'utf8'), 'floor', dir);
  }
  return floorPath;
}

/** A network namespace made for one test (ip netns add), deleted with everything in it. */
export class TestNetns {
  readonly name: string;
  readonly path: string;

  constructor() {
    this.name = uniqueName('fulcrum-test');
    execFileSync('ip', ['netns', 'add', this.name]);
    this.path = `/run/netns/${this.name}`;
  }

  /** Run `ip <args>` in the namespace (ip -n; fine for links, which need no /sys/fs/bpf). */
  ip(...args: string[]): string {
    return execFileSync('ip', ['-n', this.name, ...args], { encoding: 'utf8' });
  }

  /** A veth pair with both ends inside this namespace, up. Nothing touches the host namespace. */
  vethPair(a: string, b: string): void {
    this.ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    this.ip('link', 'set', a, 'up');
    this.ip('link', 'set', b, 'up');
  }

  delete(): void {
    try {
      execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
}
