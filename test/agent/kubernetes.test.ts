// Kubernetes mode end to end: a real control plane (etcd + kube-apiserver, built from
// their Go modules; src/lab/control-plane.ts) with Fulcrum installed as a user installs it
// (CRDs, deploy/rbac), and the agent (runKubernetesAgent, in this process) on real BPF,
// authenticated as the agents' ServiceAccount so RBAC is enforced on it as on a cluster.
// The BalancerNode is written by the cluster admin, standing in for the operator.
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
// later; kube-apiserver restarted (every watch cut) and a 410 after etcd compaction; a
// real 409 from another writer; status written only on change (and restored after a
// foreign edit), status alone (the audit log's request bodies: no spec, no
// managedFields); no managedFields kept; no BalancerNode; a failed start reported; what
// the agent's identity may and may not do.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ApiException, ApiextensionsV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { inNetns } from '../../src/agent/bpf/attach.ts';
import { TestRunner, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import type { AgentConfig } from '../../src/agent/config.ts';
import { FIELD_MANAGER, runKubernetesAgent, type KubernetesAgent, type KubernetesAgentOptions, type SyncReport } from '../../src/agent/kubernetes.ts';
import { ControlPlane } from '../../src/lab/control-plane.ts';
import { installFulcrum, type FulcrumIdentities } from '../../src/lab/install.ts';
import type { BalancerNodeSpecInput, BalancerNodeStatus } from '../../src/shared/api/balancer-node.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { B4, NEXTHOP_MAC, OBJECT_DIR, RING_SIZE, TestNetns, buildBpf, eventually, memoryLogger, pinRoot, rootOnly, tcp4, tempDir, uniqueName } from './support.ts';

const NODE = 'node-a';
const API = { group: 'fulcrum.dev', version: 'v1alpha1', plural: 'balancernodes' } as const;
const NODE_PATH = `/apis/fulcrum.dev/v1alpha1/balancernodes/${NODE}`;
const WEB = { name: 'shop/web', address: '10.10.0.1', port: 80, protocol: 'TCP' as const };
const runner = new TestRunner();
/** The real API server is shared by four people on two cores: waits are long, never timed assertions. */
const WAIT_MS = 60_000;
const TEST = { ...rootOnly, timeout: 240_000 };

let cp: ControlPlane | undefined;
let ids: FulcrumIdentities;
let auditDir: ReturnType<typeof tempDir> | undefined;
/** The cluster admin (standing in for the operator, which writes BalancerNode specs). */
let admin: CustomObjectsApi;
let adminKc: KubeConfig;

before(async () => {
  buildBpf();
  // The audit log keeps the request bodies of BalancerNode status writes (the rest as
  // metadata): what the agent sends, as the API server received it.
  auditDir = tempDir('fulcrum-k8s-audit-');
  const policy = join(auditDir.dir, 'audit-policy.yaml');
  writeFileSync(policy, stringify({
    apiVersion: 'audit.k8s.io/v1', kind: 'Policy', omitStages: ['RequestReceived', 'ResponseStarted'],
    rules: [
      { level: 'Request', verbs: ['update', 'patch'], resources: [{ group: 'fulcrum.dev', resources: ['balancernodes/status'] }] },
      { level: 'Metadata' },
    ],
  }));
  cp = await ControlPlane.start({ controllerManager: false, apiserverFlags: [`--audit-policy-file=${policy}`] });
  ids = await installFulcrum(cp);
  adminKc = new KubeConfig();
  adminKc.loadFromString(cp.adminKubeconfig());
  admin = adminKc.makeApiClient(CustomObjectsApi);
}, { timeout: 180_000 });

after(async () => {
  await cp?.stop();
  auditDir?.cleanup();
}, { timeout: 60_000 });

type Env = {
  /** The agents' ServiceAccount (RBAC of deploy/rbac/agent.yaml). */
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

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  // Each test starts without a BalancerNode.
  if (cp !== undefined) {
    await admin.deleteClusterCustomObject({ ...API, name: NODE }).catch((err: unknown) => {
      if (!(err instanceof ApiException && err.code === 404)) throw err;
    });
    await eventually(async () => {
      await assert.rejects(admin.getClusterCustomObject({ ...API, name: NODE }), (err: unknown) => err instanceof ApiException && err.code === 404);
    }, WAIT_MS, 'the BalancerNode deleted');
  }
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
}, { timeout: 120_000 });

function namedNetns(name: string): void {
  execFileSync('ip', ['netns', 'add', name]);
  named.push(name);
}

function agentKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(ids.agentKubeconfig);
  return kc;
}

function setup(): Env {
  const ns = new TestNetns();
  ns.vethPair('fx0', 'fx1');
  env = { kc: agentKubeConfig(), custom: admin, ns, pins: pinRoot(), logs: [] };
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
async function statusWhen(e: Env, check: (s: BalancerNodeStatus) => void, what: string, timeoutMs = WAIT_MS): Promise<BalancerNodeStatus> {
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

/** Where the audit log ends now: statusWrites(from) reads what follows. */
function auditEnd(): number {
  return readFileSync(cp!.audit.path).length;
}

type StatusWrite = { verb: string; user: string; code: number | undefined; body: Record<string, unknown> };

/** Status writes on BalancerNode/<NODE> logged since `from`, with the request bodies the API server received. */
function statusWrites(from: number): StatusWrite[] {
  const text = readFileSync(cp!.audit.path).subarray(from).toString('utf8');
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as {
    verb: string; stage: string; user: { username: string }; responseStatus?: { code?: number };
    objectRef?: { resource?: string; subresource?: string; name?: string }; requestObject?: Record<string, unknown>;
  }).filter((e) => e.stage === 'ResponseComplete' && e.objectRef?.resource === 'balancernodes' && e.objectRef.subresource === 'status' && e.objectRef.name === NODE)
    .map((e) => ({ verb: e.verb, user: e.user.username, code: e.responseStatus?.code, body: e.requestObject ?? {} }));
}

/** A status write as the agent must send it: its status and the preconditions, nothing else. */
function assertStatusOnly(write: StatusWrite): void {
  assert.equal(write.user, ids.agentUser);
  assert.equal(write.verb, 'update');
  assert.deepEqual(Object.keys(write.body).sort(), ['apiVersion', 'kind', 'metadata', 'status'], 'no spec');
  assert.deepEqual(Object.keys(write.body.metadata as object).sort(), ['name', 'resourceVersion', 'uid'], 'no managedFields, labels or annotations');
}

/**
 * The agents' kubeconfig, holding back the agent's next status write (PUT …/status) until
 * released: the real API server then answers it after whatever another writer did meanwhile.
 */
class HeldStatusWrite extends KubeConfig {
  #armed: { held: () => void; release: Promise<void> } | undefined;

  /** Resolves once the next status write is held; calling `release` sends it. */
  holdNext(): { held: Promise<void>; release: () => void } {
    let held!: () => void;
    let release!: () => void;
    const heldPromise = new Promise<void>((resolve) => (held = resolve));
    this.#armed = { held, release: new Promise<void>((resolve) => (release = resolve)) };
    return { held: heldPromise, release };
  }

  // The agent's client asks for credentials with the request's method and path in hand.
  override async applyToHTTPSOptions(opts: Parameters<KubeConfig['applyToHTTPSOptions']>[0]): Promise<void> {
    const armed = this.#armed;
    const request = opts as { method?: string; path?: string };
    if (armed !== undefined && request.method === 'PUT' && (request.path ?? '').split('?')[0]!.endsWith('/status')) {
      this.#armed = undefined;
      armed.held();
      await armed.release;
    }
    await super.applyToHTTPSOptions(opts);
  }
}

/** One request as the agents' ServiceAccount (its token), answered by the real API server. */
function asAgent(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: string }> {
  const token = agentKubeConfig().getCurrentUser()?.token;
  assert.ok(token !== undefined, 'the agent kubeconfig has a token');
  return new Promise((resolve, reject) => {
    const req = https.request(`${cp!.url}${path}`, {
      method, ca: cp!.caPem, timeout: 30_000,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/**
 * Runs `body` with a BalancerNode CRD whose spec schema accepts anything — an older or
 * hand-edited CRD — so that the agent's own validation is what stands between a wrong
 * spec and the data plane; the project's CRD is put back after.
 */
async function withPermissiveSpec(body: () => Promise<void>): Promise<void> {
  const extensions = adminKc.makeApiClient(ApiextensionsV1Api);
  const name = 'balancernodes.fulcrum.dev';
  const original = await extensions.readCustomResourceDefinition({ name });
  const schema = structuredClone(original.spec.versions[0]!.schema!);
  const setSchema = async (s: typeof schema): Promise<void> => {
    const current = await extensions.readCustomResourceDefinition({ name });
    current.spec.versions[0]!.schema = s;
    await extensions.replaceCustomResourceDefinition({ name, body: current });
  };
  const permissive = structuredClone(schema);
  permissive.openAPIV3Schema!.properties!['spec'] = { type: 'object', x_kubernetes_preserve_unknown_fields: true };
  await setSchema(permissive);
  try {
    await body();
  } finally {
    await setSchema(schema);
    // The API server serves the restored schema once it refuses what only the permissive one took.
    await eventually(async () => {
      await assert.rejects(admin.createClusterCustomObject({
        ...API, dryRun: 'All',
        body: { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: 'schema-probe' }, spec: { vips: [{ name: 'a/b', address: '10.0.0.300', port: 80, protocol: 'SCTP', backends: [] }] } },
      }), (err: unknown) => err instanceof ApiException && err.code === 422);
    }, WAIT_MS, 'the project\'s CRD schema served again');
  }
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
function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
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
  await eventually(async () => assert.equal((await resync(a)).status.outcome, 'unchanged'), WAIT_MS, 'status settled');
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

test('a BalancerNode is programmed and its status written: generation, ring digests, attach mode, decap outcomes', TEST, async () => {
  const e = setup();
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

test('a spec change is reprogrammed and reported; an invalid spec changes nothing and says InvalidSpec', TEST, async () => {
  const e = setup();
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

test('a spec only a permissive CRD lets through is InvalidSpec, one line per field, and changes nothing', TEST, async () => {
  const e = setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  await programmedAt(e, 1);
  const before = snapshot(a);
  await withPermissiveSpec(async () => {
    // The API server takes a while to serve the new schema: until then it refuses the spec.
    await eventually(() => setSpec(e, { vips: [{ name: 'shop/web', address: '10.10.0.300', port: 80, protocol: 'SCTP', backends: [] }] } as unknown as BalancerNodeSpecInput),
      WAIT_MS, 'the permissive CRD served');
    const rejected = await statusWhen(e, (s) => assert.equal(condition(s, 'Programmed')?.reason, 'InvalidSpec'), 'InvalidSpec');
    assert.deepEqual(rejected.errors, [
      'InvalidSpec: spec.vips[0].address: must be an IPv4 or IPv6 address',
      'InvalidSpec: spec.vips[0].protocol: Invalid option: expected one of "TCP"|"UDP"',
    ]);
    assert.equal(rejected.observedGeneration, 1);
    assert.deepEqual(snapshot(a), before);
  });
});

test('a pending decap duty is programmed once the pod\'s namespace appears, without a spec change', TEST, async () => {
  const e = setup();
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

test('kube-apiserver restarted (every watch cut) and an expired resourceVersion (410): the agent recovers and applies the next change', TEST, async () => {
  const e = setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  await programmedAt(e, 1);
  await settled(a);

  // A restart ends every watch: the agent backs off, reconnects from the resourceVersion it
  // saw, and misses nothing.
  const restarts = a.stats.restartsAfterError;
  await cp!.restart('kube-apiserver');
  await eventually(() => assert.ok(a.stats.restartsAfterError > restarts), WAIT_MS, 'the watch restart counted');
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4.slice(0, 2)) }] });
  await programmedAt(e, 2);
  assert.deepEqual([...a.agent.balancer!.readBackends().values()].sort(), B4.slice(0, 2));
  await settled(a);

  // History the agent has not seen (another object's write), compacted away, and a
  // restart that empties the watch cache: the agent's resourceVersion is gone, the watch
  // answers 410, and the agent lists again.
  const lists = a.stats.lists;
  const expired = a.stats.relistsAfterExpired;
  await cp!.kubectl(['create', 'configmap', uniqueName('fulcrum-rv', 40), '-n', 'default']);
  await cp!.compactEtcd();
  await cp!.restart('kube-apiserver');
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4.slice(1)) }] });
  await programmedAt(e, 3);
  await eventually(() => {
    assert.ok(a.stats.relistsAfterExpired > expired, 'relisted after 410');
    assert.ok(a.stats.lists > lists);
  }, WAIT_MS, 'the relist after 410 counted');
  assert.ok(e.logs.some((l) => l.msg === 'the watch\'s resourceVersion expired (410); listing again'));
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  await programmedAt(e, 4);
  assert.deepEqual([...a.agent.balancer!.readBackends().values()].sort(), B4);
});

test('a status write that meets another writer\'s change gets a real 409, is re-read and retried', TEST, async () => {
  const e = setup();
  const kc = new HeldStatusWrite();
  kc.loadFromFile(ids.agentKubeconfig);
  e.kc = kc;
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const a = await startAgent(e);
  await programmedAt(e, 1);
  await settled(a);

  const from = auditEnd();
  cp!.audit.mark();
  const hold = kc.holdNext();
  const report = nextSync(a, (r) => r.status.outcome === 'written');
  await setSpec(e, { vips: [{ ...WEB, backends: backends(B4.slice(0, 1)) }] });
  await within(hold.held, 'the agent\'s status write for generation 2');
  // Meanwhile another writer changes the object (a label, as a user might add one).
  const current = await readNode(e) as NodeObject & { metadata: { labels?: Record<string, string> } };
  await admin.replaceClusterCustomObject({ ...API, name: NODE, body: { ...current, metadata: { ...current.metadata, labels: { rack: 'r1' } } } });
  hold.release();

  const written = await report;
  assert.deepEqual(written.status, { outcome: 'written', attempts: 2 });
  const status = await programmedAt(e, 2);
  assert.equal(status.vips?.[0]?.backends, 1);
  assert.equal(a.stats.statusConflicts, 1);
  assert.equal((await readNode(e) as { metadata: { labels?: Record<string, string> } }).metadata.labels?.['rack'], 'r1', 'the other writer\'s change stands');
  const writes = statusWrites(from).filter((w) => w.user === ids.agentUser);
  assert.deepEqual(writes.map((w) => w.code), [409, 200], 'one refused by the API server, one written');
  for (const w of writes) assertStatusOnly(w);
  assert.ok(cp!.audit.count({ verb: 'get', resource: 'balancernodes', name: NODE, user: ids.agentUser }) >= 1, 're-read after the conflict');
});

test('status is written only when it changes, alone, and a foreign edit of it is put right', TEST, async () => {
  const e = setup();
  await createNode(e, { vips: [{ ...WEB, backends: backends(B4) }] });
  const from = auditEnd();
  const a = await startAgent(e);
  const good = await programmedAt(e, 1);
  await settled(a);
  // What the agent sent: its status alone, under its own field manager.
  const first = statusWrites(from);
  assert.ok(first.length >= 1);
  for (const w of first) assertStatusOnly(w);
  const stored = await readNode(e) as NodeObject & { metadata: { managedFields?: { manager: string; subresource?: string; fieldsV1: Record<string, unknown> }[] } };
  const mine = stored.metadata.managedFields?.filter((m) => m.manager === FIELD_MANAGER) ?? [];
  assert.deepEqual(mine.map((m) => [m.subresource, Object.keys(m.fieldsV1)]), [['status', ['f:status']]]);

  cp!.audit.mark();
  for (let i = 0; i < 3; i++) {
    const report = await resync(a);
    assert.equal(report.programming?.outcome, 'programmed');
    assert.deepEqual(report.status, { outcome: 'unchanged' });
  }
  assert.equal(cp!.audit.count({ verb: ['create', 'update', 'patch', 'delete'], resource: 'balancernodes', user: ids.agentUser }), 0, 'resyncs that change nothing write nothing');

  // Someone overwrites status: the agent restores its own, once, without reprogramming.
  const repair = nextSync(a, (r) => r.status.outcome === 'written');
  const current = await readNode(e);
  await admin.replaceClusterCustomObjectStatus({ ...API, name: NODE, body: { ...current, status: { ...good, vipCount: 99, errors: ['edited by hand'] } } });
  const repaired = await repair;
  assert.deepEqual(repaired.triggers, ['status']);
  assert.equal(repaired.programming, undefined, 'a status event compares; it does not reprogram');
  await statusWhen(e, (s) => {
    assert.equal(s.vipCount, 1);
    assert.deepEqual(s.errors, []);
  }, 'status restored');
  await settled(a);
  assert.equal(cp!.audit.count({ verb: 'update', resource: 'balancernodes', subresource: 'status' }), 2, 'the edit and the one repair');
  assert.equal(cp!.audit.count({ verb: 'update', resource: 'balancernodes', subresource: 'status', user: ids.agentUser }), 1, 'one repair');
  assert.deepEqual(condition((await readNode(e)).status!, 'Programmed')?.lastTransitionTime, condition(good, 'Programmed')?.lastTransitionTime);

  // The server sends managedFields with every object; the agent keeps none of them.
  assert.ok((stored.metadata.managedFields?.length ?? 0) > 0, 'the API server sends managedFields');
  assert.ok(a.balancerNode !== undefined);
  assert.equal('managedFields' in a.balancerNode.metadata, false);
});

test('without a BalancerNode the agent keeps the data plane and reports nothing; it programs the object once it exists', TEST, async () => {
  const e = setup();
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
  await eventually(() => assert.equal(a.balancerNode, undefined), WAIT_MS, 'the deletion seen');
  const after = await resync(a);
  assert.deepEqual(after.programming, { outcome: 'absent' });
  assert.deepEqual(snapshot(a), programmed);
});

test('a data plane that cannot start is reported on the BalancerNode (Ready=False, AttachFailed)', TEST, async () => {
  const e = setup();
  await createNode(e, { vips: [] });
  const from = auditEnd();
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
  const writes = statusWrites(from);
  assert.deepEqual(writes.map((w) => w.code), [200]);
  assertStatusOnly(writes[0]!);

  // A configuration naming another node is refused before anything starts.
  await assert.rejects(
    runKubernetesAgent({ kubeConfig: e.kc, nodeName: NODE, agentConfig: { ...agentConfig(e.pins.root), nodeName: 'node-b' } }),
    (err: unknown) => isFulcrumError(err, 'ERR_CONFIG') && /names node "node-b"/.test(err.message),
  );
});

test('the agents\' identity may read BalancerNodes and write their status, and nothing else', { timeout: 120_000 }, async () => {
  await admin.createClusterCustomObject({ ...API, body: { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: NODE }, spec: { vips: [] } } });
  const node = await admin.getClusterCustomObject({ ...API, name: NODE }) as { metadata: { uid: string; resourceVersion: string }; spec: unknown };
  const denied = async (what: string, method: string, path: string, body?: unknown, contentType?: string): Promise<void> => {
    const res = await asAgent(method, path, body, contentType);
    assert.equal(res.status, 403, `${what}: HTTP ${res.status} ${res.body.slice(0, 300)}`);
    assert.ok((JSON.parse(res.body) as { message: string }).message.includes(`User "${ids.agentUser}" cannot`), `${what}: ${res.body}`);
  };
  const allowed = async (what: string, method: string, path: string, body?: unknown): Promise<void> => {
    const res = await asAgent(method, path, body);
    assert.equal(res.status, 200, `${what}: HTTP ${res.status} ${res.body.slice(0, 300)}`);
  };

  // What Kubernetes mode does: get, list and watch its BalancerNode; PUT its status.
  await allowed('get', 'GET', NODE_PATH);
  await allowed('list', 'GET', `/apis/fulcrum.dev/v1alpha1/balancernodes?fieldSelector=metadata.name%3D${NODE}`);
  await allowed('watch', 'GET', `/apis/fulcrum.dev/v1alpha1/balancernodes?watch=true&fieldSelector=metadata.name%3D${NODE}&timeoutSeconds=1`);
  await allowed('update status', 'PUT', `${NODE_PATH}/status`, {
    apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: NODE, uid: node.metadata.uid, resourceVersion: node.metadata.resourceVersion }, status: { agentVersion: '0.0.0' },
  });

  // Everything else is refused: the spec is the operator's.
  const bnode = { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: 'node-z' }, spec: { vips: [] } };
  await denied('update a spec', 'PUT', NODE_PATH, { ...bnode, metadata: { name: NODE, resourceVersion: node.metadata.resourceVersion } });
  await denied('patch a spec', 'PATCH', NODE_PATH, { spec: { vips: [] } }, 'application/merge-patch+json');
  await denied('patch status (only update is granted)', 'PATCH', `${NODE_PATH}/status`, { status: { agentVersion: '0.0.1' } }, 'application/merge-patch+json');
  await denied('create a BalancerNode', 'POST', '/apis/fulcrum.dev/v1alpha1/balancernodes', bnode);
  await denied('delete a BalancerNode', 'DELETE', NODE_PATH);
  await denied('delete all BalancerNodes', 'DELETE', '/apis/fulcrum.dev/v1alpha1/balancernodes');
  await denied('list Secrets in its namespace', 'GET', '/api/v1/namespaces/fulcrum-system/secrets');
  await denied('get a Secret', 'GET', '/api/v1/namespaces/kube-system/secrets/anything');
  await denied('list Secrets cluster-wide', 'GET', '/api/v1/secrets');
  await denied('list Pods', 'GET', '/api/v1/pods');
  await denied('create an Event', 'POST', '/api/v1/namespaces/fulcrum-system/events', { apiVersion: 'v1', kind: 'Event', metadata: { name: 'e' } });
  const vip = { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'LoadBalancerVip', metadata: { name: 'web', namespace: 'default' }, spec: {} };
  await denied('create a LoadBalancerVip', 'POST', '/apis/fulcrum.dev/v1alpha1/namespaces/default/loadbalancervips', vip);
  await denied('update a LoadBalancerVip', 'PUT', '/apis/fulcrum.dev/v1alpha1/namespaces/default/loadbalancervips/web', vip);
  await denied('write a LoadBalancerVip\'s status', 'PUT', '/apis/fulcrum.dev/v1alpha1/namespaces/default/loadbalancervips/web/status', vip);
  await denied('read LoadBalancerVips', 'GET', '/apis/fulcrum.dev/v1alpha1/loadbalancervips');
  await denied('write a VipPool', 'POST', '/apis/fulcrum.dev/v1alpha1/vippools', { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'VipPool', metadata: { name: 'p' }, spec: {} });
  await denied('write RBAC', 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'x' } });
  const spec = (await admin.getClusterCustomObject({ ...API, name: NODE }) as { spec: unknown }).spec;
  assert.deepEqual(spec, node.spec, 'the spec is as the admin wrote it');
});
