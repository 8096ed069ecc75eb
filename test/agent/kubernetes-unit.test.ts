// Kubernetes mode, the parts that need no API server and no BPF: how a pod's network
// namespace is found (cgroup names of both drivers and cgroup versions, /proc stat
// lines, a fake /proc and a fake netns directory whose entries point at a real
// namespace file), the strategy flag, and how reconcile results become status
// (observedGeneration rules, decap outcomes, lastTransitionTime kept while a
// condition's status holds, clipping to the CRD's bounds), and what a status write sends
// and what the agent keeps of an object (no spec, no managedFields).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BalancerNodeStatus } from '../../src/shared/api/balancer-node.ts';
import {
  asBalancerNode, canonicalJson, clip, programmingFacts, sameStatus, startFailureReason, statusFromFacts, statusWriteBody,
  type ProgrammingFacts, type StatusFacts,
} from '../../src/agent/kubernetes.ts';
import {
  PodNetnsResolver, normalizeUid, parseNetnsStrategies, podUidsInCgroup, processStartTime,
} from '../../src/agent/netns-resolver.ts';
import type { ReconcileResult } from '../../src/agent/agent.ts';
import { zeroCounts } from '../../src/agent/dataplane/apply.ts';
import { FulcrumError, isFulcrumError } from '../../src/shared/errors.ts';
import { desired, tempDir } from './support.ts';

const UID = '3f1c2b9e-5a7d-4e21-9c4b-2d8e6f0a1b3c';

test('pod UIDs are read from cgroup v1 and v2 paths of both cgroup drivers', () => {
  const underscored = UID.replaceAll('-', '_');
  const cases: [string, string, string[]][] = [
    ['v2, systemd', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${underscored}.slice/cri-containerd-abc123.scope\n`, [UID]],
    ['v2, systemd, guaranteed', `0::/kubepods.slice/kubepods-pod${underscored}.slice/cri-containerd-abc.scope\n`, [UID]],
    ['v2, cgroupfs', `0::/kubepods/besteffort/pod${UID}/0123456789abcdef\n`, [UID]],
    ['v2, cgroup namespace', `0::/../../kubepods-besteffort-pod${underscored}.slice/crio-1.scope\n`, [UID]],
    ['v1, cgroupfs', `12:memory:/kubepods/burstable/pod${UID}/c1\n11:cpu,cpuacct:/kubepods/burstable/pod${UID}/c1\n1:name=systemd:/kubepods/burstable/pod${UID}/c1\n`, [UID]],
    ['v1, systemd', `4:pids:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${underscored}.slice/docker-1.scope\n`, [UID]],
    ['static pod (hash UID)', '0::/kubepods/burstable/pod6d1e5a3c9b2f4e8a7d0c1b2a3f4e5d6c/c\n', ['6d1e5a3c9b2f4e8a7d0c1b2a3f4e5d6c']],
    ['a host process', '0::/system.slice/containerd.service\n', []],
    ['the QoS slices themselves', '0::/kubepods.slice/kubepods-burstable.slice\n', []],
    ['podman is not a pod', '0::/user.slice/podman-1234.scope\n', []],
    ['no path', 'garbage\n', []],
  ];
  for (const [name, text, uids] of cases) assert.deepEqual(podUidsInCgroup(text), uids, name);
  assert.equal(normalizeUid('AB_cd-EF'), 'ab-cd-ef');
});

test('a process\'s start time is field 22 of its stat line, whatever its name holds', () => {
  const fields = (comm: string) => `4242 (${comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0`;
  assert.equal(processStartTime(fields('pause')), 987654n);
  assert.equal(processStartTime(fields('we ird) (name')), 987654n);
  assert.equal(processStartTime('nonsense'), undefined);
  assert.equal(processStartTime('1 (x) S 1'), undefined);
});

test('--pod-netns strategies parse in order, and mistakes are ERR_CONFIG', () => {
  assert.deepEqual(parseNetnsStrategies('dir=/run/netns,proc'), [{ kind: 'dir', dir: '/run/netns' }, { kind: 'proc', procRoot: '/proc' }]);
  assert.deepEqual(parseNetnsStrategies(' proc=/host/proc , dir=/var/run/netns '), [{ kind: 'proc', procRoot: '/host/proc' }, { kind: 'dir', dir: '/var/run/netns' }]);
  for (const [text, problem] of [['', /at least one/], ['dir', /dir=<directory>/], ['dir=run/netns', /absolute/], ['cri', /unknown strategy "cri"/], ['proc,proc', /given twice/]] as const) {
    assert.throws(() => parseNetnsStrategies(text), (err: unknown) => isFulcrumError(err, 'ERR_CONFIG') && problem.test(err.message), text);
  }
});

test('the dir strategy finds namespaces named by UID, then by namespace_name, and skips stale files', async (t) => {
  const dir = tempDir('fulcrum-netns-dir-');
  t.after(dir.cleanup);
  // /proc/self/ns/net is a namespace file like any /run/netns bind mount; a symlink
  // to it stands for one here (stat follows it), without creating a namespace.
  symlinkSync('/proc/self/ns/net', join(dir.dir, UID));
  symlinkSync('/proc/self/ns/net', join(dir.dir, 'shop_web-2'));
  writeFileSync(join(dir.dir, 'stale-uid'), ''); // an `ip netns` file whose mount is gone
  const resolver = new PodNetnsResolver({ strategies: [{ kind: 'dir', dir: dir.dir }] });
  const snapshot = await resolver.resolve([
    { pod: 'shop/web-1', podUID: UID },
    { pod: 'shop/web-2', podUID: 'other-uid' },
    { pod: 'shop/web-3', podUID: 'stale-uid' },
  ]);
  assert.equal(snapshot.lookup({ pod: 'shop/web-1', podUID: UID }), join(dir.dir, UID));
  assert.equal(snapshot.lookup({ pod: 'shop/web-2', podUID: 'other-uid' }), join(dir.dir, 'shop_web-2'));
  assert.equal(snapshot.lookup({ pod: 'shop/web-3', podUID: 'stale-uid' }), undefined);
  assert.equal(snapshot.found.get(UID)?.via, `dir=${dir.dir}`);
  assert.match(snapshot.notFoundMessage({ pod: 'shop/web-3', podUID: 'stale-uid' }), /no network namespace for pod UID stale-uid on this node yet \(looked for .*<pod UID> or <namespace>_<name>\)/);
});

test('the proc strategy picks the pod\'s oldest live process and skips one that is gone', async (t) => {
  const proc = tempDir('fulcrum-fake-proc-');
  t.after(proc.cleanup);
  const processFor = (pid: number, cgroup: string, start: number, alive = true): void => {
    const dir = join(proc.dir, String(pid));
    mkdirSync(join(dir, 'ns'), { recursive: true });
    writeFileSync(join(dir, 'cgroup'), cgroup);
    writeFileSync(join(dir, 'stat'), `${pid} (p) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 0 0 0`);
    // A process that exited between the scan and the open has no ns/net left.
    if (alive) symlinkSync('/proc/self/ns/net', join(dir, 'ns', 'net'));
  };
  const v2 = (uid: string) => `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-x.scope\n`;
  processFor(300, v2(UID), 5000); // the app container, started after the sandbox
  processFor(120, v2(UID), 4000); // pause: the oldest
  processFor(90, v2('dead-pod'), 100, false); // its only process just exited
  processFor(95, '0::/system.slice/sshd.service\n', 10);
  writeFileSync(join(proc.dir, 'self'), ''); // not a pid: ignored
  const resolver = new PodNetnsResolver({ strategies: [{ kind: 'dir', dir: join(proc.dir, 'no-such-dir') }, { kind: 'proc', procRoot: proc.dir }] });
  const snapshot = await resolver.resolve([{ pod: 'shop/web-1', podUID: UID }, { pod: 'shop/gone', podUID: 'dead-pod' }]);
  assert.equal(snapshot.lookup({ pod: 'shop/web-1', podUID: UID }), join(proc.dir, '120', 'ns', 'net'));
  assert.equal(snapshot.found.get(UID)?.via, `proc=${proc.dir}`);
  assert.equal(snapshot.lookup({ pod: 'shop/gone', podUID: 'dead-pod' }), undefined);
});

// ── status ───────────────────────────────────────────────────────────────────

const NOW = '2026-11-20T10:00:00Z';
const LATER = '2026-11-20T11:00:00Z';

function facts(overrides: Partial<StatusFacts> = {}): StatusFacts {
  return {
    observedGeneration: 3,
    attachments: [{ interface: 'eth0', mode: 'native', progId: 42 }],
    vips: [{ name: 'shop/web', key: 'TCP/192.0.2.10:80', ringDigest: '00112233aabbccdd', backends: 2 }],
    decap: [{ pod: 'shop/web-1', outcome: 'programmed' }],
    ready: { status: 'True', reason: 'AgentReady', message: 'ok' },
    programmed: { status: 'True', reason: 'Programmed', message: 'generation 3', observedGeneration: 3 },
    errors: [],
    agentVersion: '0.1.0',
    ...overrides,
  };
}

test('status from facts: attach mode, counts, and lastTransitionTime kept while a status holds', () => {
  const first = statusFromFacts(facts(), undefined, NOW);
  assert.ok(BalancerNodeStatus.safeParse(first).success);
  assert.equal(first.attachMode, 'native');
  assert.deepEqual(first.interfaces, [{ name: 'eth0', mode: 'native', programId: 42 }]);
  assert.equal(first.vipCount, 1);
  assert.deepEqual(first.conditions?.map((c) => [c.type, c.status, c.lastTransitionTime]), [['Ready', 'True', NOW], ['Programmed', 'True', NOW]]);

  const same = statusFromFacts(facts(), first, LATER);
  assert.ok(sameStatus(first, same), 'nothing changed: identical, so nothing is written');

  const failing = statusFromFacts(facts({ programmed: { status: 'False', reason: 'ApplyFailed', message: 'full', observedGeneration: 4 } }), first, LATER);
  assert.equal(failing.conditions?.find((c) => c.type === 'Programmed')?.lastTransitionTime, LATER);
  assert.equal(failing.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime, NOW);
  assert.ok(!sameStatus(first, failing));

  assert.equal(statusFromFacts(facts({ attachments: [] }), undefined, NOW).attachMode, 'none');
  assert.equal(statusFromFacts(facts({ attachments: [{ interface: 'a', mode: 'native', progId: 1 }, { interface: 'b', mode: 'generic', progId: 1 }] }), undefined, NOW).attachMode, 'generic');

  const long = statusFromFacts(facts({ errors: Array.from({ length: 40 }, () => 'x'.repeat(2000)) }), undefined, NOW);
  assert.equal(long.errors?.length, 32);
  assert.equal([...long.errors![0]!].length, 1024);
  assert.ok(BalancerNodeStatus.safeParse(long).success, 'clipped to what the CRD accepts');
  assert.equal(clip('ab€d', 3), 'ab…');
  assert.equal(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  assert.ok(!sameStatus({ vipCount: 'nonsense' }, first), 'a status that does not parse is rewritten');
});

const STATE = desired({
  generation: 5,
  vips: [{ name: 'shop/web', address: '192.0.2.10', port: 80, protocol: 'TCP', backends: [{ address: '10.1.0.1' }] }],
  decap: [{ pod: 'shop/web-1', netns: '/run/netns/x', addresses: ['10.1.0.1'], vips: ['192.0.2.10'] }],
});
const DUTIES = [{ pod: 'shop/web-1', podUID: 'u1' }, { pod: 'shop/web-2', podUID: 'u2' }];
const PENDING = new Map([['shop/web-2', 'no network namespace for pod UID u2 on this node yet']]);
const BEFORE: ProgrammingFacts = {
  observedGeneration: 4,
  vips: [{ name: 'shop/web', key: 'TCP/192.0.2.10:80', ringDigest: 'aaaa', backends: 2 }],
  decap: [], programmed: undefined, errors: [],
};
const VIP_NOW = [{ name: 'shop/web', key: 'TCP/192.0.2.10:80', ringDigest: 'bbbb', backends: 1 }];

test('a programmed result advances observedGeneration and lists each duty, pending ones included', () => {
  const result: ReconcileResult = {
    outcome: 'programmed', generation: 5, durationMs: 1, counts: zeroCounts(), vips: VIP_NOW,
    decap: { pods: [{ pod: 'shop/old', outcome: 'removed' }, { pod: 'shop/web-1', outcome: 'programmed', progId: 7, attached: true }] },
  };
  const f = programmingFacts({ result, desired: STATE, duties: DUTIES, pending: PENDING, previous: BEFORE, currentVips: () => assert.fail('not needed') });
  assert.equal(f.observedGeneration, 5);
  assert.deepEqual(f.vips, VIP_NOW);
  assert.deepEqual(f.decap, [{ pod: 'shop/web-1', outcome: 'programmed' }, { pod: 'shop/web-2', outcome: 'pending', message: PENDING.get('shop/web-2') }]);
  assert.equal(f.programmed?.status, 'True');
  assert.equal(f.programmed?.reason, 'Programmed');
  assert.match(f.programmed!.message, /1 decap duties pending/);
  assert.deepEqual(f.errors, []);
});

test('a balancer failure keeps observedGeneration and the VIPs; a decap-only failure advances them (DecapFailed)', () => {
  const decapFailure = new FulcrumError('ERR_NETNS', 'eth0 does not exist in the pod');
  const applyFailed: ReconcileResult = {
    outcome: 'failed', generation: 5, durationMs: 1, programmedGeneration: 4,
    errors: [{ code: 'ERR_DESIRED_STATE', message: 'no free VIP id', scope: 'balancer' }],
    decap: { pods: [{ pod: 'shop/web-1', outcome: 'programmed', progId: 7, attached: false }] },
  };
  const a = programmingFacts({ result: applyFailed, desired: STATE, duties: DUTIES, pending: PENDING, previous: BEFORE, currentVips: () => VIP_NOW });
  assert.equal(a.observedGeneration, 4);
  assert.deepEqual(a.vips, BEFORE.vips);
  assert.equal(a.programmed?.reason, 'ApplyFailed');
  assert.equal(a.programmed?.observedGeneration, 5, 'the condition names the generation that failed');
  assert.deepEqual(a.errors, ['ERR_DESIRED_STATE: no free VIP id']);
  assert.equal(a.decap[0]?.outcome, 'programmed', 'decap ran regardless');

  const decapFailed: ReconcileResult = {
    outcome: 'failed', generation: 5, durationMs: 1, programmedGeneration: 4,
    errors: [{ code: 'ERR_NETNS', message: decapFailure.message, scope: 'decap', pod: 'shop/web-1' }],
    decap: { pods: [{ pod: 'shop/web-1', outcome: 'failed', action: 'program', error: decapFailure }] },
  };
  const d = programmingFacts({ result: decapFailed, desired: STATE, duties: DUTIES, pending: new Map(), previous: BEFORE, currentVips: () => VIP_NOW });
  assert.equal(d.observedGeneration, 5);
  assert.deepEqual(d.vips, VIP_NOW);
  assert.equal(d.programmed?.reason, 'DecapFailed');
  assert.deepEqual(d.decap[0], { pod: 'shop/web-1', outcome: 'failed', message: 'ERR_NETNS: eth0 does not exist in the pod' });
  assert.deepEqual(d.errors, ['ERR_NETNS pod shop/web-1: eth0 does not exist in the pod']);
});

test('start failures map to BpffsUnavailable, AttachFailed or LoadFailed', () => {
  assert.equal(startFailureReason(new FulcrumError('ERR_BPFFS', 'x')), 'BpffsUnavailable');
  assert.equal(startFailureReason(new FulcrumError('ERR_BPF_ATTACH', 'x')), 'AttachFailed');
  assert.equal(startFailureReason(new FulcrumError('ERR_BPF_VERIFIER', 'x')), 'LoadFailed');
  assert.equal(startFailureReason(new Error('x')), 'LoadFailed');
});

test('objects are kept without managedFields; a status write carries the status and the preconditions only', () => {
  const managedFields = [{ manager: 'fulcrum-operator', operation: 'Apply', fieldsV1: { 'f:spec': {} } }];
  const raw = {
    apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode',
    metadata: { name: 'node-a', uid: UID, generation: 3, resourceVersion: '812', labels: { rack: 'r1' }, managedFields },
    spec: { vips: [] }, status: { agentVersion: '0.1.0' },
  };
  const kept = asBalancerNode(raw);
  assert.ok(kept !== undefined);
  assert.equal('managedFields' in kept.metadata, false);
  assert.deepEqual(kept, { ...raw, metadata: { name: 'node-a', uid: UID, generation: 3, resourceVersion: '812', labels: { rack: 'r1' } } });
  assert.equal(raw.metadata.managedFields, managedFields, 'what the caller passed is left as it was');
  assert.equal(asBalancerNode({ kind: 'Status' }), undefined);
  assert.equal(asBalancerNode(null), undefined);

  const status: BalancerNodeStatus = { observedGeneration: 3, agentVersion: '0.1.0', errors: [] };
  assert.deepEqual(statusWriteBody(kept, status), {
    apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode',
    metadata: { name: 'node-a', uid: UID, resourceVersion: '812' },
    status,
  });
});
