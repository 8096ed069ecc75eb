// Kubernetes mode end to end: the in-process API server with the project's BalancerNode
// CRD, and the agent (runKubernetesAgent, in this process) on real BPF.
//
// Where things run, and why: the agent needs two things that live in different network
// namespaces — the API server, which listens on 127.0.0.1 of this (the host's) namespace,
// and the interface it attaches XDP to, which must be in a namespace the test created
// (no link is ever made in the host namespace). A child agent inside the test namespace
// (nsenter) could not reach the host's loopback, and moving the API server in there too
// would put the test's own client on the wrong side. The Agent already separates the
// two: its `netns` option attaches (and checks links) inside the given namespace from a
// worker thread, while its own sockets stay in the host namespace. So the agent runs
// here, talks to 127.0.0.1 like any client, and attaches to fx0 inside the test
// namespace; backend "pods" are test namespaces too, found by the dir strategy as
// /run/netns/<pod UID> (TestNetns names are valid pod UIDs).
//
// Covered: spec → maps (read back, and a packet through BPF_PROG_TEST_RUN) and status
// (observedGeneration, Programmed, ring digests, attach mode, decap outcomes); a spec
// change; an invalid spec (InvalidSpec, maps untouched); a pending duty that resolves
// later; a cut watch and a 410; a 409 on the status write; status written only on
// change (and restored after a foreign edit); no BalancerNode; a failed start reported.
import { afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiextensionsV1Api, CustomObjectsApi, loadYaml, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { startApiServer, type ApiServer } from '../../src/apiserver/index.ts';
import { inNetns } from '../../src/agent/bpf/attach.ts';
import { TestRunner, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import type { AgentConfig } from '../../src/agent/config.ts';
import { runKubernetesAgent, type KubernetesAgent, type KubernetesAgentOptions, type SyncReport } from '../../src/agent/kubernetes.ts';
import type { BalancerNodeSpecInput, BalancerNodeStatus } from '../../src/shared/api/balancer-node.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { B4, NEXTHOP_MAC, OBJECT_DIR, REPO, RING_SIZE, TestNetns, buildBpf, eventually, memoryLogger, pinRoot, rootOnly, tcp4, uniqueName } from './support.ts';

const NODE = 'node-a';
const API = { group: 'fulcrum.dev', version: 'v1alpha1', plural: 'balancernodes' } as const;
const WEB = { name: 'shop/web', address: '10.10.0.1', port: 80, protocol: 'TCP' as const };
const runner = new TestRunner();

type Env = {
  server: ApiServer;
  kc: KubeConfig;
  custom: CustomObjectsApi;
  ns: TestNetns;
  pins: ReturnType<typeof pinRoot>;
  logs: Record<string, unknown>[];
};

let env: Env | undefined;
let agent: KubernetesAgent | undefined;
const pods: TestNetns[] = [];
/** Namespaces made under a chosen name (a pod UID), deleted like the others. */
const named: string[] = [];

before(() => buildBpf());
afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await env?.server.stop();
  env?.pins.cleanup();
  env?.ns.delete();
  for (const pod of pods.splice(0)) pod.delete();
  for (const name of named.splice(0)) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
  env = undefined;
});

function namedNetns(name: string): void {
  execFileSync('ip', ['netns', 'add', name]);
  named.push(name);
}

/**
 * A server with the BalancerNode CRD. `permissiveSpec`: a CRD whose spec schema accepts
 * anything — an older or hand-edited CRD — so that the agent's own validation is what
 * stands between a wrong spec and the data plane.
 */
async function setup(options: { permissiveSpec?: boolean } = {}): Promise<Env> {
  const server = await startApiServer({ port: 0 });
  const kc = server.kubeConfig();
  const crd = loadYaml<V1CustomResourceDefinition>(readFileSync(join(REPO, 'crds/balancernodes.fulcrum.dev.yaml'), 'utf8'));
  const schema = crd.spec.versions[0]!.schema!.openAPIV3Schema!;
  if (options.permissiveSpec === true) schema.properties!['spec'] = { type: 'object', x_kubernetes_preserve_unknown_fields: true };
  const extensions = kc.makeApiClient(ApiextensionsV1Api);
  await extensions.createCustomResourceDefinition({ body: crd });
  await eventually(async () => {
    const c = await extensions.readCustomResourceDefinition({ name: 'balancernodes.fulcrum.dev' });
    assert.ok(c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True'));
  }, 5000, 'the CRD established');
  const ns = new TestNetns();
  ns.vethPair('fx0', 'fx1');
  env = { server, kc, custom: kc.makeApiClient(CustomObjectsApi), ns, pins: pinRoot(), logs: [] };
  return env;
}

function agentConfig(root: string, iface = 'fx0'): Omit<AgentConfig, 'nodeName'> {
  return {
    pinRoot: root,
    mountBpffs: false, // setup mounted it; tests never mount on the host
    bpfObjectDir: OBJECT_DIR,
    sysctlRoot: '/proc/sys',
    balancer: {
      interfaces: [{ name: iface, attachMode: 'auto' }],
      nextHop: { mac: NEXTHOP_MAC },
      ringSize: RING_SIZE, maxVips: 8, maxBackends: 64, connTableSize: 4096, mtu: 1500, udpTimeoutSeconds: 30, tunnelTtl: 64,
      tunnelSource4: '172.16.0.0', tunnelSource6: 'fd00:7::', guePort: 6080,
    },
    metrics: { host: '127.0.0.1', port: 0 },
  };
}

async function startAgent(e: Env, overrides: Partial<KubernetesAgentOptions> = {}): Promise<KubernetesAgent> {
  const { log, lines } = memoryLogger();
  e.logs = lines;
  agent = await runKubernetesAgent({
    kubeConfig: e.kc,
    nodeName: NODE,
    agentConfig: agentConfig(e.pins.root),
    agentOptions: { netns: e.ns.path },
    log,
    netns: [{ kind: 'dir', dir: '/run/netns' }],
    // Long enough never to fire by itself: tests call resync() when they want one.
    resyncMs: 3_600_000,
    pendingRetryMs: 100,
    backoff: { initialMs: 20, maxMs: 200 },
    ...overrides,
  });
  return agent;
}

/** A backend "pod": a namespace named like a pod UID, with lo up and eth0 for the tunnel. */
function backendPod(): TestNetns {
  const pod = new TestNetns();
  pods.push(pod);
  pod.ip('link', 'set', 'lo', 'up');
  pod.vethPair('eth0', 'peer0');
  return pod;
}

const backends = (addresses: readonly string[]) => addresses.map((address) => ({ address }));

async function createNode(e: Env, spec: BalancerNodeSpecInput): Promise<void> {
  await e.custom.createClusterCustomObject({ ...API, body: { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: NODE }, spec } });
}

type NodeObject = { metadata: { generation: number; resourceVersion: string }; spec: unknown; status?: BalancerNodeStatus };

async function readNode(e: Env): Promise<NodeObject> {
  return await e.custom.getClusterCustomObject({ ...API, name: NODE }) as NodeObject;
}

/** Replaces the spec (GET, then PUT with its resourceVersion); resolves to the new generation. */
async function setSpec(e: Env, spec: BalancerNodeSpecInput): Promise<number> {
  const current = await readNode(e);
  const updated = await e.custom.replaceClusterCustomObject({ ...API, name: NODE, body: { ...current, spec } }) as NodeObject;
  return updated.metadata.generation;
}

/** The status once `check` accepts it. */
async function statusWhen(e: Env, check: (s: BalancerNodeStatus) => void, what: string, timeoutMs = 10_000): Promise<BalancerNodeStatus> {
  return eventually(async () => {
    const status = (await readNode(e)).status;
    assert.ok(status !== undefined, 'no status yet');
    try {
      check(status);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nstatus: ${JSON.stringify(status)}`, { cause: err });
    }
    return status;
  }, timeoutMs, what);
}

const condition = (s: BalancerNodeStatus, type: string) => s.conditions?.find((c) => c.type === type);

async function programmedAt(e: Env, generation: number): Promise<BalancerNodeStatus> {
  return statusWhen(e, (s) => {
    assert.equal(s.observedGeneration, generation);
    assert.equal(condition(s, 'Programmed')?.status, 'True');
    assert.equal(condition(s, 'Programmed')?.observedGeneration, generation);
  }, `generation ${generation} programmed`);
}

/** `promise`, or a failure naming `what` after `ms` (a test must not hang on an event that never comes). */
function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next sync report that `accept` takes. */
function nextSync(a: KubernetesAgent, accept: (r: SyncReport) => boolean = () => true): Promise<SyncReport> {
  let on: ((r: SyncReport) => void) | undefined;
  const next = new Promise<SyncReport>((resolve) => {
    on = (r: SyncReport) => {
      if (!accept(r)) return;
      resolve(r);
    };
    a.on('sync', on);
  });
  return within(next, 'the sync report').finally(() => a.off('sync', on!));
}

const resync = (a: KubernetesAgent): Promise<SyncReport> => within(a.resync(), 'a resync');

/** Waits until the agent is idle: a resync that programs nothing new and writes nothing. */
async function settled(a: KubernetesAgent): Promise<void> {
  await eventually(async () => assert.equal((await resync(a)).status.outcome, 'unchanged'), 5000, 'status settled');
}

function snapshot(a: KubernetesAgent): unknown {
  const b = a.agent.balancer!;
  return { vips: b.readVips(), backends: [...b.readBackends()].sort(), ring: [...b.readRing(b.readVips()[0]!.id)] };
}

function forwardedTo(a: KubernetesAgent, sport: number): string {
  const out = runner.run(a.agent.balancer!.progFd, tcp4(WEB.address, WEB.port, sport, true));
  assert.equal(out.retval, XDP_TX);
  return Array.from(out.dataOut.subarray(30, 34)).join('.');
}

test('a BalancerNode is programmed and its status written: generation, ring digests, attach mode, decap outcomes', rootOnly, async () => {
  const e = await setup();
  const pod = backendPod();
  await createNode(e, {
    vips: [{ ...WEB, backends: backends(B4) }],
    decap: [
      { pod: 'shop/web-1', podUID: pod.name, addresses: ['10.1.0.1'], vips: [WEB.address] },
      { pod: 'shop/web-2', podUID: 'no-such-pod-uid', addresses: ['10.1.0.2'], vips: [WEB.address] },
    ],
  });
  const a = await startAgent(e);
  const status = await programmedAt(e, 1);

  // The maps hold the spec, and the program forwards to its backends.
  assert.deepEqual(a.agent.balancer!.readVips().map((v) => v.address), [WEB.address]);
  assert.deepEqual([...a.agent.balancer!.readBackends().values()].sort(), B4);
  assert.ok(B4.includes(forwardedTo(a, 40000)));

  const last = a.agent.status().lastResult;
  assert.equal(last?.outcome, 'programmed');
  const attachment = a.agent.status().attachments[0]!;
  assert.equal(status.attachMode, attachment.mode);
  assert.deepEqual(status.interfaces, [{ name: 'fx0', mode: attachment.mode, programId: attachment.progId }]);
  assert.equal(status.vipCount, 1);
  assert.deepEqual(status.vips, [{ name: WEB.name, key: 'TCP/10.10.0.1:80', ringDigest: last.outcome === 'programmed' ? last.vips[0]!.ringDigest : '', backends: 3 }]);
  assert.match(status.vips![0]!.ringDigest, /^[0-9a-f]{16}$/);
  assert.deepEqual(status.decap?.map((d) => [d.pod, d.outcome]), [['shop/web-1', 'programmed'], ['shop/web-2', 'pending']]);
  assert.match(status.decap![1]!.message!, /no network namespace for pod UID no-such-pod-uid on this node yet/);
  assert.equal(condition(status, 'Ready')?.status, 'True');
  assert.equal(condition(status, 'Ready')?.reason, 'AgentReady');
  assert.equal(condition(status, 'Programmed')?.reason, 'Programmed');
  assert.match(condition(status, 'Programmed')!.message, /1 decap duties pending/);
  assert.deepEqual(status.errors, []);
  assert.match(status.agentVersion ?? '', /^\d+\.\d+\.\d+/);

  // The real pod got its decap: the VIP on its lo.
  assert.match(pod.ip('-o', 'address', 'show', 'dev', 'lo'), /inet 10\.10\.0\.1\/32/);

  // The agent's metrics include Kubernetes mode's own.
  const { port } = a.agent.httpAddress!;
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(metrics, /^fulcrum_agent_balancernode_status_writes_total\{outcome="written"\} [1-9]/m);
  assert.match(metrics, /^fulcrum_agent_decap_pending_pods 1$/m);

  // Stopping leaves the data plane running: the program stays attached, the maps keep the VIP.
  await a.stop();
  agent = undefined;
  assert.equal(await inNetns(e.ns.path, 'xdpProgramId', 'fx0'), attachment.progId);
  assert.match(pod.ip('-o', 'address', 'show', 'dev', 'lo'), /inet 10\.10\.0\.1\/32/);
});

test('a spec change is reprogrammed and reported; an invalid spec changes nothing and says InvalidSpec', rootOnly, async () => {
  const e = await setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  const first = await programmedAt(e, 1);

  const generation = await setSpec(e, { vips: [{ ...WEB, backends: backends(['10.1.0.7', '10.1.0.8']) }] });
  assert.equal(generation, 2);
  const second = await programmedAt(e, 2);
  assert.equal(second.vips?.[0]?.backends, 2);
  assert.notEqual(second.vips?.[0]?.ringDigest, first.vips?.[0]?.ringDigest, 'new backends, new ring');
  assert.deepEqual([...a.agent.balancer!.readBackends().values()].sort(), ['10.1.0.7', '10.1.0.8']);
  assert.ok(['10.1.0.7', '10.1.0.8'].includes(forwardedTo(a, 40001)));

  // Two spellings of one address pass the API server (it compares text) but break the
  // node contract: nothing of generation 3 may reach the maps.
  const before = snapshot(a);
  const invalid = await setSpec(e, {
    vips: [
      { name: 'shop/v6', address: '2001:db8::1', port: 80, protocol: 'TCP', backends: backends(['2001:db8:1::1']) },
      { name: 'shop/v6b', address: '2001:DB8::1', port: 80, protocol: 'TCP', backends: backends(['2001:db8:1::2']) },
    ],
  });
  const rejected = await statusWhen(e, (s) => assert.equal(condition(s, 'Programmed')?.reason, 'InvalidSpec'), 'InvalidSpec');
  assert.equal(condition(rejected, 'Programmed')?.status, 'False');
  assert.equal(condition(rejected, 'Programmed')?.observedGeneration, invalid);
  assert.match(condition(rejected, 'Programmed')!.message, /generation \d+ is invalid; nothing of it was applied: spec\.vips\[1\]: TCP\/\[2001:db8::1\]:80 is also VIP shop\/v6/);
  assert.deepEqual(rejected.errors, ['InvalidSpec: spec.vips[1]: TCP/[2001:db8::1]:80 is also VIP shop/v6']);
  assert.equal(rejected.observedGeneration, 2, 'the data plane still holds generation 2');
  assert.deepEqual(rejected.vips, second.vips);
  assert.ok(rejected.errors!.length > 0 && rejected.errors!.every((line) => line.startsWith('InvalidSpec: ')));
  assert.deepEqual(snapshot(a), before, 'the maps are untouched');
  assert.equal(condition(rejected, 'Ready')?.status, 'True');

  // Fixed: programmed again.
  const fixed = await setSpec(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const back = await programmedAt(e, fixed);
  assert.deepEqual(back.errors, []);
  assert.equal(back.vips?.[0]?.ringDigest, first.vips?.[0]?.ringDigest, 'the same backends give the same ring as at first');
});

test('a spec only a permissive CRD lets through is InvalidSpec, one line per field, and changes nothing', rootOnly, async () => {
  const e = await setup({ permissiveSpec: true });
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  await programmedAt(e, 1);
  const before = snapshot(a);
  await setSpec(e, { vips: [{ name: 'shop/web', address: '10.10.0.300', port: 80, protocol: 'SCTP', backends: [] }] } as unknown as BalancerNodeSpecInput);
  const rejected = await statusWhen(e, (s) => assert.equal(condition(s, 'Programmed')?.reason, 'InvalidSpec'), 'InvalidSpec');
  assert.deepEqual(rejected.errors, [
    'InvalidSpec: spec.vips[0].address: must be an IPv4 or IPv6 address',
    'InvalidSpec: spec.vips[0].protocol: Invalid option: expected one of "TCP"|"UDP"',
  ]);
  assert.equal(rejected.observedGeneration, 1);
  assert.deepEqual(snapshot(a), before);
});

test('a pending decap duty is programmed once the pod\'s namespace appears, without a spec change', rootOnly, async () => {
  const e = await setup();
  // The pod's UID is known before its namespace exists: a pod that is starting.
  const uid = uniqueName('fulcrum-test');
  await createNode(e, { decap: [{ pod: 'shop/web-1', podUID: uid, addresses: ['10.1.0.1'], vips: [WEB.address] }] });
  const a = await startAgent(e);
  const pending = await statusWhen(e, (s) => assert.equal(s.decap?.[0]?.outcome, 'pending'), 'pending');
  assert.equal(pending.observedGeneration, 1, 'pending duties do not hold the VIPs back');
  assert.equal(condition(pending, 'Programmed')?.status, 'True');

  const reconciles = a.agent.metrics.reconciles;
  const before = (await reconciles.get()).values.find((v) => v.labels.outcome === 'programmed')?.value ?? 0;
  // The pod starts: its namespace appears under the UID's name, with its interface.
  namedNetns(uid);
  execFileSync('ip', ['-n', uid, 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['-n', uid, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
  const done = await statusWhen(e, (s) => assert.equal(s.decap?.[0]?.outcome, 'programmed'), 'the duty programmed');
  assert.equal(done.observedGeneration, 1);
  assert.equal((await readNode(e)).metadata.generation, 1, 'no spec change was needed');
  const after = (await reconciles.get()).values.find((v) => v.labels.outcome === 'programmed')?.value ?? 0;
  assert.equal(after - before, 1, 'the re-checks looked for the namespace without reprogramming; finding it programmed once');
});

test('a cut watch and an expired resourceVersion (410): the agent recovers and applies the next change', rootOnly, async () => {
  const e = await setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  await programmedAt(e, 1);
  await settled(a);

  assert.ok(e.server.faults.breakWatches() >= 1, 'the agent had a watch open');
  await eventually(() => assert.ok(a.stats.restartsAfterError >= 1), 5000, 'the restart counted');
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4.slice(0, 2)) }] });
  await programmedAt(e, 2);
  assert.deepEqual([...a.agent.balancer!.readBackends().values()].sort(), B4.slice(0, 2));

  // The next watch answers 410 in its stream: the agent lists again, and a change made
  // while it was away is picked up by that list.
  const lists = a.stats.lists;
  e.server.faults.expireNext({ resource: 'balancernodes', verb: 'watch' });
  e.server.faults.breakWatches();
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4.slice(1)) }] });
  await programmedAt(e, 3);
  await eventually(() => {
    assert.ok(a.stats.relistsAfterExpired >= 1, 'relisted after 410');
    assert.ok(a.stats.lists > lists);
  }, 5000, 'relist counted');
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  await programmedAt(e, 4);
  assert.deepEqual([...a.agent.balancer!.readBackends().values()].sort(), B4);
});

test('a status write that meets 409 is re-read and retried', rootOnly, async () => {
  const e = await setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  await programmedAt(e, 1);
  await settled(a);

  e.server.faults.resetCounts();
  e.server.faults.conflictOnNextUpdate({ resource: 'balancernodes', group: 'fulcrum.dev', name: NODE, subresource: 'status' });
  const report = nextSync(a, (r) => r.status.outcome === 'written');
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4.slice(0, 1)) }] });
  const written = await report;
  assert.deepEqual(written.status, { outcome: 'written', attempts: 2 });
  await programmedAt(e, 2);
  assert.equal(a.stats.statusConflicts, 1);
  assert.equal(e.server.faults.count({ verb: 'update', resource: 'balancernodes', subresource: 'status' }), 2, 'one refused, one written');
  assert.ok(e.server.faults.count({ verb: 'get', resource: 'balancernodes', name: NODE }) >= 1, 're-read after the conflict');
});

test('status is written only when it changes, and a foreign edit of it is put right', rootOnly, async () => {
  const e = await setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  const good = await programmedAt(e, 1);
  await settled(a);

  e.server.faults.resetCounts();
  for (let i = 0; i < 3; i++) {
    const report = await resync(a);
    assert.equal(report.programming?.outcome, 'programmed');
    assert.deepEqual(report.status, { outcome: 'unchanged' });
  }
  assert.equal(e.server.faults.count({ verb: ['update', 'patch'], resource: 'balancernodes' }), 0, 'resyncs that change nothing write nothing');

  // Someone overwrites status: the agent restores its own, once, without reprogramming.
  const repair = nextSync(a, (r) => r.status.outcome === 'written');
  const current = await readNode(e);
  await e.custom.replaceClusterCustomObjectStatus({ ...API, name: NODE, body: { ...current, status: { ...good, vipCount: 99, errors: ['edited by hand'] } } });
  const repaired = await repair;
  assert.deepEqual(repaired.triggers, ['status']);
  assert.equal(repaired.programming, undefined, 'a status event compares; it does not reprogram');
  await statusWhen(e, (s) => {
    assert.equal(s.vipCount, 1);
    assert.deepEqual(s.errors, []);
  }, 'status restored');
  await settled(a);
  assert.equal(e.server.faults.count({ verb: 'update', resource: 'balancernodes', subresource: 'status' }), 2, 'the edit and the one repair');
  assert.deepEqual(condition((await readNode(e)).status!, 'Programmed')?.lastTransitionTime, condition(good, 'Programmed')?.lastTransitionTime);
});

test('without a BalancerNode the agent keeps the data plane and reports nothing; it programs the object once it exists', rootOnly, async () => {
  const e = await setup();
  const a = await startAgent(e);
  const absent = await resync(a);
  assert.deepEqual(absent.programming, { outcome: 'absent' });
  assert.deepEqual(absent.status, { outcome: 'absent' });
  await resync(a);
  assert.equal(e.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('there is no BalancerNode')).length, 1, 'said once');

  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  await programmedAt(e, 1);
  const programmed = snapshot(a);

  // Deleted: nothing is unprogrammed (the node keeps forwarding what it was given).
  await e.custom.deleteClusterCustomObject({ ...API, name: NODE });
  await eventually(() => assert.equal(a.balancerNode, undefined), 5000, 'the deletion seen');
  const after = await resync(a);
  assert.deepEqual(after.programming, { outcome: 'absent' });
  assert.deepEqual(snapshot(a), programmed);
});

test('a data plane that cannot start is reported on the BalancerNode (Ready=False, AttachFailed)', rootOnly, async () => {
  const e = await setup();
  await createNode(e, { vips: [] });
  await assert.rejects(
    runKubernetesAgent({
      kubeConfig: e.kc, nodeName: NODE, agentConfig: agentConfig(e.pins.root, 'nosuch0'), agentOptions: { netns: e.ns.path, http: false },
      log: memoryLogger().log,
    }),
    (err: unknown) => isFulcrumError(err, 'ERR_BPF_ATTACH'),
  );
  const status = (await readNode(e)).status!;
  assert.equal(condition(status, 'Ready')?.status, 'False');
  assert.equal(condition(status, 'Ready')?.reason, 'AttachFailed');
  assert.match(status.errors?.[0] ?? '', /^AttachFailed: interface nosuch0/);

  // A configuration naming another node is refused before anything starts.
  await assert.rejects(
    runKubernetesAgent({ kubeConfig: e.kc, nodeName: NODE, agentConfig: { ...agentConfig(e.pins.root), nodeName: 'node-b' } }),
    (err: unknown) => isFulcrumError(err, 'ERR_CONFIG') && /names node "node-b"/.test(err.message),
  );
});
