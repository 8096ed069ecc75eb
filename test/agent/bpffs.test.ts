// The BPF filesystem check (src/agent/bpf/bpffs.ts) and the fresh-machine path: a host
// where nothing is mounted at /sys/fs/bpf. Those cases run in a private mount namespace
// (unshare --mount, propagation private) where /sys/fs/bpf is unmounted, and a private
// network namespace with one veth pair (nothing connected to the host): the
// setup step mounts bpffs and a standalone agent starts; the agent mounts it itself;
// and where mounting is impossible (CAP_SYS_ADMIN dropped) it exits at once in words.
// Everything the agent pins dies with those namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { BPF_FS_MAGIC, BPFFS_MOUNT_COMMAND, bpffsState, ensureBpffs, makePinDir } from '../../src/agent/bpf/bpffs.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { NEXTHOP_MAC, OBJECT_DIR, REPO, buildBpf, rootOnly, tempDir, uniqueName } from './support.ts';

const CLI = join(REPO, 'src/cli.ts');

test('bpffsState: the pin root, or its nearest existing parent, and which filesystem that is', rootOnly, () => {
  assert.equal(BPF_FS_MAGIC, 0xcafe4a11);
  const bpf = bpffsState(`/sys/fs/bpf/${uniqueName('fulcrum-absent')}/maps`);
  assert.deepEqual(bpf, { outcome: 'bpffs', checked: '/sys/fs/bpf' });
  const tmp = tempDir('fulcrum-bpffs-');
  try {
    assert.deepEqual(bpffsState(join(tmp.dir, 'a/b/c')).checked, tmp.dir);
    assert.equal(bpffsState(join(tmp.dir, 'a/b/c')).outcome, 'other');
  } finally {
    tmp.cleanup();
  }
});

test('a pin directory on sysfs is refused in words at once, never a loop', { ...rootOnly, timeout: 10_000 }, () => {
  // The case that used to spin: mkdir -p under sysfs (what an unmounted /sys/fs/bpf is).
  const dir = `/sys/kernel/${uniqueName('fulcrum-notbpf')}/maps`;
  const started = performance.now();
  assert.throws(() => makePinDir(dir), (err: unknown) => {
    assert.ok(isFulcrumError(err, 'ERR_BPFFS'));
    assert.equal(err.message, `${dir} is not on a BPF filesystem (/sys/kernel is on sysfs): mount one with '${BPFFS_MOUNT_COMMAND}' as root`);
    return true;
  });
  assert.throws(() => ensureBpffs(dir, { mount: true }), /not below it/);
  assert.throws(() => ensureBpffs(dir, { mount: false }), /mounting it is turned off \(mountBpffs: false\)/);
  assert.ok(performance.now() - started < 1000);
});

test('on bpffs, makePinDir creates the directories', rootOnly, () => {
  const root = `/sys/fs/bpf/${uniqueName('fulcrum-test')}`;
  try {
    assert.equal(ensureBpffs(root, { mount: false }), 'already-mounted');
    makePinDir(join(root, 'a/b'));
    assert.equal(bpffsState(join(root, 'a/b')).checked, join(root, 'a/b'));
  } finally {
    for (const dir of [join(root, 'a/b'), join(root, 'a'), root]) {
      try {
        rmdirSync(dir);
      } catch {
        // not made
      }
    }
  }
});

// ─── the fresh-machine path ─────────────────────────────────────────────────────────

type Run = { code: number | null; stdout: string; stderr: string; ms: number; started: boolean };

/**
 * Runs `steps` (bash) in a private mount and network namespace whose /sys/fs/bpf is
 * unmounted first, then `exec`s the standalone agent as the script's last word. Resolves
 * when the agent has logged "agent started" (then stops it) or has exited.
 */
function freshMachine(steps: string, agentPrefix: string, configFile: string): Promise<Run> {
  const script = [
    'set -euo pipefail',
    // A mount namespace starts with the host's mounts: take bpffs away, as on a fresh machine.
    'for _ in 1 2 3 4; do [[ $(stat -f -c %T /sys/fs/bpf) == bpf_fs ]] && umount /sys/fs/bpf || break; done',
    '[[ $(stat -f -c %T /sys/fs/bpf) != bpf_fs ]] || { echo "test: /sys/fs/bpf is still bpffs" >&2; exit 90; }',
    'ip link set lo up && ip link add fx0 type veth peer name fx1 && ip link set fx0 up && ip link set fx1 up',
    steps,
    `exec ${agentPrefix} "$NODE" "$CLI" agent --config "$CONFIG"`,
  ].join('\n');
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('unshare', ['--mount', '--net', '--propagation', 'private', '--', 'bash', '-c', script], {
      cwd: REPO, env: { ...process.env, NODE: process.execPath, CLI, CONFIG: configFile }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let agentStarted = false;
    const limit = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!agentStarted && stdout.includes('"msg":"agent started"')) {
        agentStarted = true;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(limit);
      resolve({ code, stdout, stderr, ms: performance.now() - started, started: agentStarted });
    });
  });
}

function agentFile(dir: string, mountBpffs: boolean): string {
  const file = join(dir, 'fulcrum.yaml');
  writeFileSync(file, stringify({
    agent: {
      nodeName: 'fresh',
      pinRoot: '/sys/fs/bpf/fulcrum',
      mountBpffs,
      bpfObjectDir: OBJECT_DIR,
      balancer: { interfaces: [{ name: 'fx0', attachMode: 'generic' }], nextHop: { mac: NEXTHOP_MAC }, ringSize: 13, maxVips: 4, maxBackends: 16, connTableSize: 4096 },
      metrics: { host: '127.0.0.1', port: 0 },
    },
    state: { vips: [{ name: 'default/web', address: '10.10.0.1', port: 80, protocol: 'TCP', backends: [{ address: '10.1.0.1' }] }] },
  }));
  return file;
}

function withDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = tempDir('fulcrum-fresh-');
  return body(dir.dir).finally(() => dir.cleanup());
}

test('fresh machine: the setup step mounts bpffs, and a standalone agent starts', { ...rootOnly, timeout: 60_000 }, async () => {
  buildBpf();
  const run = await withDir((dir) => freshMachine('bash scripts/mount-bpffs.sh', '', agentFile(dir, false)));
  assert.ok(run.started, `the agent did not start (exit ${run.code}):\n${run.stderr}\n${run.stdout}`);
  assert.match(run.stderr, /^setup: mounted the BPF filesystem at \/sys\/fs\/bpf \(it was not mounted\)$/m);
  assert.match(run.stdout, /"msg":"loaded the balancer"/);
});

test('fresh machine: the agent mounts bpffs itself (mountBpffs, the default)', { ...rootOnly, timeout: 60_000 }, async () => {
  buildBpf();
  const run = await withDir((dir) => freshMachine('', '', agentFile(dir, true)));
  assert.ok(run.started, `the agent did not start (exit ${run.code}):\n${run.stderr}\n${run.stdout}`);
  assert.match(run.stdout, /"msg":"mounted the BPF filesystem \(it was not mounted\)"/);
});

test('fresh machine, mounting impossible: the agent exits at once with the fix in words', { ...rootOnly, timeout: 60_000 }, async () => {
  buildBpf();
  // Without CAP_SYS_ADMIN mount(2) fails with EPERM, as in a container that may not mount.
  const run = await withDir((dir) => freshMachine('', 'setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin', agentFile(dir, true)));
  assert.equal(run.started, false, run.stdout);
  assert.equal(run.code, 1, `${run.stderr}\n${run.stdout}`);
  assert.equal(run.stderr,
    "fulcrum: ERR_BPFFS: /sys/fs/bpf/fulcrum is not on a BPF filesystem (/sys/fs/bpf is on sysfs), and mounting it failed: mounting needs CAP_SYS_ADMIN in the host's mount namespace: " +
    "mount one with 'mount -t bpf bpf /sys/fs/bpf' as root\n");
  // Node's own start-up (loading the CLI and koffi) is most of this; the check itself is a statfs and a mount.
  assert.ok(run.ms < 3000, `took ${Math.round(run.ms)} ms`);
});
