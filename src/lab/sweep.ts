// Leftovers of lab runs whose process is gone, and the guardian that removes them
// the moment that happens. A lab cleans up after itself on every exit it can see
// (teardown, a signal, process 'exit'); what it cannot see is its own SIGKILL — and
// `node --test` SIGKILLs a test file's process shortly after forwarding a Ctrl-C,
// often before an asynchronous teardown is done. So the first lab of a process also
// starts a guardian: a small detached process (its own session, out of reach of the
// terminal's Ctrl-C and of the test runner) that waits for the lab's process to end
// and then sweeps. Every Lab.start() sweeps first as well, which covers a guardian
// that was itself killed.
//
// A Kubernetes-mode run also leaves a control plane (etcd, kube-apiserver,
// kube-controller-manager) on the host, in its run directory. Those processes die with
// the lab's process (PDEATHSIG, control-plane.ts); should one outlive it all the same,
// the sweep kills every process whose command line names a dead run's directory before
// removing that directory.
//
// The guardian only removes namespaces, processes inside them or started from a dead
// run's directory, BPF pins and files; it never sends a packet.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isStaleLabName, sweepStale } from './netns.ts';

/** Each run keeps its agent files in <tmpdir>/fulcrum-lab-<prefix>-XXXXXX. */
export const RUN_DIR_PREFIX = 'fulcrum-lab-';

const GUARDIAN = fileURLToPath(new URL('./guardian.ts', import.meta.url));

/**
 * Removes what lab runs whose process is gone (a crash, a SIGKILL) left behind:
 * namespaces and the processes in them, processes started from a dead run's directory
 * (its control plane), BPF pin directories, run directories. Returns what was removed.
 */
export async function sweepStaleLabs(): Promise<string[]> {
  const removed = await sweepStale();
  for (const name of readdirSync(tmpdir())) {
    if (name.startsWith(RUN_DIR_PREFIX) && isStaleLabName(name.slice(RUN_DIR_PREFIX.length))) {
      for (const pid of processesNaming(join(tmpdir(), name))) {
        killQuietly(pid);
        removed.push(`process ${pid}`);
      }
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
      removed.push(join(tmpdir(), name));
    }
  }
  return removed;
}

/** Processes whose command line names something inside `dir` (a control plane's data and certificates). */
export function processesNaming(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    if (cmdline.split('\0').some((arg) => arg.includes(`${dir}/`) || arg.endsWith(dir))) pids.push(Number(entry));
  }
  return pids;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

let guardian: number | undefined;

/** Starts this process's guardian (once): it sweeps as soon as this process is gone. */
export function startGuardian(): void {
  if (guardian !== undefined) return;
  const child = spawn(process.execPath, [GUARDIAN, String(process.pid)], { detached: true, stdio: 'ignore' });
  // Not waited for: it outlives us on purpose.
  child.unref();
  guardian = child.pid;
}

/** The guardian's pid, once started. */
export function guardianPid(): number | undefined {
  return guardian;
}
