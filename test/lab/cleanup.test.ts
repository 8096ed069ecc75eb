// The lab's own safety: it never touches the host namespace's links, it removes
// everything it made (namespaces, processes, BPF pins, files), a second run works,
// and what a SIGKILLed run left behind is swept by its guardian or the next run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Lab, sweepStaleLabs } from '../../src/lab/lab.ts';
import { RUN_DIR_PREFIX } from '../../src/lab/sweep.ts';
import { listNamespaces, processAlive, sh } from '../../src/lab/netns.ts';
import { assertAllAnswered, sleep } from './support.ts';

/** The host namespace's interfaces (read through netlink; nothing is sent anywhere). */
async function hostLinks(): Promise<string[]> {
  const links = JSON.parse(await sh('ip', ['-j', 'link', 'show'])) as { ifname: string }[];
  return links.map((l) => l.ifname).sort();
}

function labNamespaces(prefix: string): string[] {
  return listNamespaces().filter((name) => name.startsWith(`${prefix}-`));
}

describe('lab hygiene', () => {
  test('a lab leaves the host namespace alone and removes everything it made; a second lab starts after it', async (t) => {
    const linksBefore = await hostLinks();
    for (const run of [1, 2]) {
      // No warm-up: the traffic below is the check that this run works.
      const lab = await Lab.start({ warmUp: false });
      let pids: number[] = [];
      try {
        assert.deepEqual(await hostLinks(), linksBefore, 'the lab added or removed interfaces in the host namespace');
        assert.equal(labNamespaces(lab.topology.prefix).length, 9, 'nine namespaces: two clients, router, two balancers, three pods, the backend node');
        assertAllAnswered(await lab.client().http(lab.topology.vip4, { count: 10 }), `run ${run}: TCP`);
        assertAllAnswered(await lab.client().udp(lab.topology.vip6, { count: 10 }), `run ${run}: UDP`);
        pids = (['lb1', 'lb2', 'node'] as const).map((role) => lab.agentPid(role)!);
        assert.ok(existsSync(lab.topology.pinRoot) && existsSync(lab.dir));
      } finally {
        await lab.teardown();
      }
      assert.deepEqual(labNamespaces(lab.topology.prefix), [], `run ${run}: namespaces left behind`);
      assert.equal(existsSync(lab.topology.pinRoot), false, `run ${run}: ${lab.topology.pinRoot} left behind`);
      assert.equal(existsSync(lab.dir), false, `run ${run}: ${lab.dir} left behind`);
      assert.deepEqual(pids.filter(processAlive), [], `run ${run}: agent processes left running`);
      t.diagnostic(`run ${run} (${lab.topology.prefix}): started, carried traffic, removed without a trace`);
    }
    assert.deepEqual(await hostLinks(), linksBefore);
  });

  test('a SIGKILLed lab run is swept by its guardian, or else by the next run', async (t) => {
    // The guardian watches the lab's process and sweeps the moment it is gone. This one
    // is the README's lab: a real control plane, the operator and the agents in
    // Kubernetes mode.
    const guarded = await startLabProcess('kubernetes');
    assert.equal(guarded.controlPlane.length, 3, 'etcd, kube-apiserver, kube-controller-manager');
    assert.deepEqual(guarded.controlPlane.filter((pid) => !processAlive(pid)), [], 'the control plane runs');
    killQuietly(guarded.pid);
    await waitFor(() => labNamespaces(guarded.prefix).length === 0 && !existsSync(guarded.pinRoot) && !existsSync(guarded.dir), 30_000,
      `the guardian did not sweep ${guarded.prefix}`);
    assert.equal(guarded.agents.length, 4, 'three agents and the operator');
    assert.deepEqual(guarded.agents.filter(processAlive), [], 'its agents and operator were stopped with their namespaces');
    await waitFor(() => guarded.controlPlane.every((pid) => !processAlive(pid)), 15_000, 'the control plane did not die with its lab');
    t.diagnostic(`${guarded.prefix}: SIGKILLed (Kubernetes mode); its control plane died with it, its guardian removed everything`);

    // With the guardian killed too, the leftovers stay until the next run sweeps.
    const orphan = await startLabProcess();
    killQuietly(orphan.guardian);
    killQuietly(orphan.pid);
    await waitFor(() => !processAlive(orphan.pid), 5000, 'the lab process did not die');
    assert.equal(labNamespaces(orphan.prefix).length, 9, 'the killed run left its namespaces');
    assert.ok(existsSync(orphan.pinRoot) && existsSync(orphan.dir), 'the killed run left its pins and files');
    const removed = await sweepStaleLabs();
    assert.deepEqual(labNamespaces(orphan.prefix), [], 'namespaces swept');
    assert.equal(existsSync(orphan.pinRoot), false, 'pins swept');
    assert.equal(existsSync(orphan.dir), false, 'run directory swept');
    assert.deepEqual(orphan.agents.filter(processAlive), [], 'its agents were stopped with their namespaces');
    t.diagnostic(`${orphan.prefix}: SIGKILLed with its guardian; the next sweep removed ${removed.length} leftovers`);
  });

  test('the sweep kills processes still running from a dead run\'s directory (a control plane that outlived its lab)', async () => {
    // A run directory named after a process that is gone, and a process that names it on
    // its command line as etcd and kube-apiserver name their data and certificates.
    const dead = spawn('true');
    await once(dead, 'exit');
    const dir = join(tmpdir(), `${RUN_DIR_PREFIX}fl${dead.pid}zz-sweep`);
    mkdirSync(join(dir, 'control-plane'), { recursive: true });
    const straggler = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120_000)', `--data-dir=${join(dir, 'control-plane', 'etcd')}`], { stdio: 'ignore' });
    const exited = once(straggler, 'exit');
    try {
      const removed = await sweepStaleLabs();
      assert.ok(removed.includes(`process ${straggler.pid}`), `the sweep names the process it killed: ${JSON.stringify(removed)}`);
      assert.deepEqual((await exited).slice(1), ['SIGKILL']);
      assert.equal(existsSync(dir), false, 'the run directory is gone');
    } finally {
      straggler.kill('SIGKILL');
    }
  });
});

type LabProcess = { pid: number; prefix: string; pinRoot: string; dir: string; agents: number[]; controlPlane: number[]; guardian: number };

/** A lab in a process of its own (fixtures/lab-process.ts), up and described. */
async function startLabProcess(mode: 'standalone' | 'kubernetes' = 'standalone'): Promise<LabProcess> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/lab-process.ts', import.meta.url)), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = once(child, 'exit');
  let timer: NodeJS.Timeout | undefined;
  try {
    const line = await Promise.race([
      once(createInterface({ input: child.stdout! }), 'line').then(([l]) => l as string),
      exited.then(([code]) => { throw new Error(`the lab process exited (${code}) before it was up: ${stderr}`); }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the lab process was not up after 180 s: ${stderr}`)), 180_000);
      }),
    ]);
    const described = JSON.parse(line) as Omit<LabProcess, 'pid' | 'agents'> & { pids: number[] };
    // Reap it when it dies, so it is not left a zombie.
    exited.catch(() => undefined);
    return { pid: child.pid!, prefix: described.prefix, pinRoot: described.pinRoot, dir: described.dir, agents: described.pids, controlPlane: described.controlPlane, guardian: described.guardian };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `${what} within ${timeoutMs} ms`);
    await sleep(100);
  }
}
