// Control-plane benchmark: the operator at scale against the real control plane (etcd and
// kube-apiserver built from their Go modules, src/lab/control-plane.ts), the operator
// authenticated as its ServiceAccount with RBAC enforced.
//
//   100 nodes (4 of them balancers), 500 LoadBalancerVips from a VipPool, 500 Services
//   with one EndpointSlice each, 10,000 endpoints backed by 10,000 Pods spread over all
//   nodes. Every balancer node carries every VIP (a BalancerNode of ~470 kB); every node
//   has decap duties. Half the changes take an endpoint out (its balancers and its
//   Pod's node are rewritten), half drain one (weight 0: its balancers).
//
//   resync_ms              operator start → every BalancerNode written in full
//   change_to_written_ms   an EndpointSlice update → every BalancerNode it affects seen
//                          rewritten through a watch (p50, p99 over the changes)
//   rss_mb                 the operator process's resident memory (its peak sample)
//
// The operator runs in a child process of its own, so that its memory is its alone;
// etcd and kube-apiserver are processes of their own too, and this driver creates the
// objects, makes the changes and watches BalancerNodes. No kube-controller-manager: the
// driver writes the EndpointSlices itself (managed-by: bench), and the real EndpointSlice
// controller would add slices of its own for the same Services. Requests are counted from
// kube-apiserver's audit log, per identity. Prints a table and writes bench/out/operator.json,
// with the stored size of the largest BalancerNode (managedFields included, as etcd holds
// it) and etcd's database size at the end.
//
// The operator runs with the V8 heap settings its Deployment sets (NODE_OPTIONS): a
// young generation of 8 MB and an old one of 192 MB. Without them V8 sizes both from
// the machine's memory and lets garbage pile up to several hundred MB before collecting.
//
//   npm run bench:operator
//   FULCRUM_BENCH_BALANCERS=10 FULCRUM_BENCH_CHANGES=300 npm run bench:operator
//   FULCRUM_BENCH_OPERATOR_FLAGS= npm run bench:operator      (V8 defaults)
//   FULCRUM_BENCH_PROFILE=operator, FULCRUM_BENCH_ALLOC_PROFILE=1,
//   FULCRUM_BENCH_HEAPSNAPSHOT=1                              (diagnostics, in bench/out/)
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { Session } from 'node:inspector';
import { pino } from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import type { BalancerNode, LoadBalancerVip } from '../src/operator/api.ts';
import { Informer } from '../src/shared/kube/informer.ts';
import { RESOURCES } from '../src/operator/kinds.ts';
import type { EndpointSlice, KubeObject, Pod } from '../src/operator/kinds.ts';
import { KubeClient } from '../src/shared/kube/client.ts';
import { Operator } from '../src/operator/operator.ts';
import { ControlPlane } from '../src/lab/control-plane.ts';
import { FULCRUM_NAMESPACE, installFulcrum } from '../src/lab/install.ts';

const ROOT = join(import.meta.dirname, '..');
const NODES = Number(process.env['FULCRUM_BENCH_NODES'] ?? 100);
const BALANCERS = Number(process.env['FULCRUM_BENCH_BALANCERS'] ?? 4);
const VIPS = Number(process.env['FULCRUM_BENCH_VIPS'] ?? 500);
const ENDPOINTS_PER_VIP = Number(process.env['FULCRUM_BENCH_ENDPOINTS_PER_VIP'] ?? 20);
const CHANGES = Number(process.env['FULCRUM_BENCH_CHANGES'] ?? 250);
const NS = 'bench';
const TARGETS = { change_p99_ms: 1000, resync_ms: 30_000, rss_mb: 300 };
/** What the operator's Deployment puts in NODE_OPTIONS (see the header). */
const OPERATOR_FLAGS = (process.env['FULCRUM_BENCH_OPERATOR_FLAGS'] ?? '--max-old-space-size=192 --max-semi-space-size=8').split(' ').filter((f) => f !== '');

const log = pino({ name: 'bench', level: process.env['FULCRUM_BENCH_LOG_LEVEL'] ?? 'warn' });

type Message = { type: string; [k: string]: unknown };

// ------------------------------------------------------------------ child roles

async function runOperator(kubeconfigPath: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const operator = new Operator({
    kubeConfig: kc, namespace: FULCRUM_NAMESPACE, leaderElect: false, identity: 'bench',
    log: pino({ name: 'operator', level: process.env['FULCRUM_BENCH_OPERATOR_LOG_LEVEL'] ?? 'warn' }),
  });
  // FULCRUM_BENCH_ALLOC_PROFILE=1: every allocation site, garbage included (the sampling
  // heap profiler with collected objects kept), to bench/out/operator.heapprofile.
  const alloc = process.env['FULCRUM_BENCH_ALLOC_PROFILE'] === '1' ? new Session() : undefined;
  alloc?.connect();
  const post = (method: string, params: object = {}): Promise<unknown> => new Promise((resolve, reject) => {
    alloc!.post(method, params, (err, result) => (err ? reject(err) : resolve(result)));
  });
  process.on('message', (m: Message) => {
    if (m.type === 'go') {
      if (alloc !== undefined) void post('HeapProfiler.startSampling', { samplingInterval: 32768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      void operator.start();
    }
    if (m.type === 'allocProfile' && alloc !== undefined) {
      void post('HeapProfiler.stopSampling').then((r) => {
        writeFileSync(join(ROOT, 'bench', 'out', 'operator.heapprofile'), JSON.stringify((r as { profile: unknown }).profile));
        process.send!({ type: 'allocProfile' });
      });
    }
    if (m.type === 'rss') {
      if (m['gc'] === true) (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      process.send!({ type: 'rss', rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, arrayBuffers: mem.arrayBuffers });
    }
    if (m.type === 'stop') {
      // FULCRUM_BENCH_HEAPSNAPSHOT=1: what the operator holds at the end, for a heap viewer.
      if (process.env['FULCRUM_BENCH_HEAPSNAPSHOT'] === '1') writeHeapSnapshot(join(ROOT, 'bench', 'out', 'operator.heapsnapshot'));
      void operator.stop().then(() => process.exit(0));
    }
  });
  process.send!({ type: 'ready' });
}

// ------------------------------------------------------------------ driver helpers

/** FULCRUM_BENCH_PROFILE=operator writes a CPU profile of the operator to bench/out/. */
function child(role: string, args: string[] = []): ChildProcess {
  const profile = process.env['FULCRUM_BENCH_PROFILE'] === role ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench', 'out')}`] : [];
  // --expose-gc: the live-heap sample at the end.
  if (role === 'operator') profile.push('--expose-gc', ...OPERATOR_FLAGS);
  return fork(import.meta.filename, [`--role=${role}`, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, ...profile] });
}

function nextMessage(proc: ChildProcess, type: string): Promise<Message> {
  return new Promise((resolve) => {
    const on = (m: Message): void => {
      if (m.type !== type) return;
      proc.off('message', on);
      resolve(m);
    };
    proc.on('message', on);
  });
}

async function pooled<T>(items: readonly T[], concurrency: number, work: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i]!, i);
    }
  }));
}

const pad = (n: number, w = 3): string => String(n).padStart(w, '0');
const nodeName = (i: number): string => `node-${pad(i)}`;
const podIp = (i: number): string => `10.${128 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, idx)]!;
}

// ------------------------------------------------------------------ driver

async function drive(): Promise<void> {
  const cp = await ControlPlane.start({ controllerManager: false });
  // Ctrl-C: the control plane's processes die with us (PDEATHSIG); remove its files too.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cp.stopSync();
      process.exit(130);
    });
  }
  let operator: ChildProcess | undefined;
  let client: KubeClient | undefined;
  try {
    const identities = await installFulcrum(cp);
    const kc = new KubeConfig();
    kc.loadFromFile(cp.adminKubeconfigPath);
    client = new KubeClient(kc, { userAgent: 'fulcrum-bench' });
    await setUp(client);
    operator = child('operator', [identities.operatorKubeconfig]);
    await nextMessage(operator, 'ready');
    const result = await measure(client, operator, cp, identities.operatorUser);
    report(result);
  } finally {
    if (operator !== undefined) {
      operator.send({ type: 'stop' });
      await new Promise((r) => operator!.once('exit', r));
    }
    client?.close();
    await cp.stop();
  }
}

interface Fixture {
  slices: EndpointSlice[];
}
const fixture: Fixture = { slices: [] };

async function setUp(client: KubeClient): Promise<void> {
  const started = Date.now();
  await client.create(RESOURCES.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  // What kube-controller-manager's ServiceAccount controller would make: Pods need it (admission).
  await client.create({ group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: NS } });
  await pooled(Array.from({ length: NODES }, (_, i) => i), 16, async (i) => {
    await client.create(RESOURCES.nodes, { apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName(i), labels: i < BALANCERS ? { 'fulcrum.dev/balancer': 'true' } : {} } });
  });
  await client.create(RESOURCES.vipPools, { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'VipPool', metadata: { name: 'bench' }, spec: { addresses: ['198.18.0.0/20'] } } as KubeObject);
  const vipIdx = Array.from({ length: VIPS }, (_, i) => i);
  await pooled(vipIdx, 16, async (v) => {
    await client.create(RESOURCES.services, { apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${pad(v)}`, namespace: NS }, spec: { ports: [{ port: 80, protocol: 'TCP' }], selector: { app: `svc-${pad(v)}` } } } as KubeObject);
  });
  const total = VIPS * ENDPOINTS_PER_VIP;
  const uids: string[] = new Array<string>(total);
  await pooled(Array.from({ length: total }, (_, i) => i), 32, async (i) => {
    const v = Math.floor(i / ENDPOINTS_PER_VIP);
    const name = `svc-${pad(v)}-${pad(i % ENDPOINTS_PER_VIP, 2)}`;
    const created = await client.create<Pod>(RESOURCES.pods, {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: NS, labels: { app: `svc-${pad(v)}` }, annotations: i % 10 === 0 ? { 'fulcrum.dev/weight': '2' } : {} },
      spec: { nodeName: nodeName(i % NODES), containers: [{ name: 'c', image: 'app' }] } as Pod['spec'],
    });
    uids[i] = created.metadata.uid!;
    await client.patch(RESOURCES.pods, name, NS, { status: { phase: 'Running', podIP: podIp(i), podIPs: [{ ip: podIp(i) }] } }, { subresource: 'status' });
  });
  fixture.slices = new Array<EndpointSlice>(VIPS);
  await pooled(vipIdx, 16, async (v) => {
    const endpoints = Array.from({ length: ENDPOINTS_PER_VIP }, (_, j) => {
      const i = v * ENDPOINTS_PER_VIP + j;
      return {
        addresses: [podIp(i)], conditions: { ready: true, serving: true, terminating: false }, nodeName: nodeName(i % NODES),
        targetRef: { kind: 'Pod', namespace: NS, name: `svc-${pad(v)}-${pad(j, 2)}`, uid: uids[i]! },
      };
    });
    fixture.slices[v] = await client.create<EndpointSlice>(RESOURCES.endpointSlices, {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `svc-${pad(v)}-abcde`, namespace: NS, labels: { 'kubernetes.io/service-name': `svc-${pad(v)}`, 'endpointslice.kubernetes.io/managed-by': 'bench' } },
      addressType: 'IPv4', endpoints, ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
    });
  });
  await pooled(vipIdx, 16, async (v) => {
    await client.create(RESOURCES.loadBalancerVips, {
      apiVersion: 'fulcrum.dev/v1alpha1', kind: 'LoadBalancerVip', metadata: { name: `vip-${pad(v)}`, namespace: NS },
      spec: { pool: 'bench', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: `svc-${pad(v)}` } },
    } as KubeObject);
  });
  log.warn({ ms: Date.now() - started, nodes: NODES, vips: VIPS, endpoints: total }, 'objects created');
}

interface Result {
  resyncMs: number;
  latencies: number[];
  timeouts: number;
  rssMb: number;
  rssAfterResyncMb: number;
  heapMb: number;
  balancerNodeBytes: number;
  requestsPerChange: Record<string, number>;
  resyncRequests: Record<string, number>;
  largestBalancerNodeBytes: number;
  etcdDbBytes: number;
  etcdDbInUseBytes: number;
}

/** The requests `user` made since the audit log's mark (watches and lists left out), divided by `per`. */
function requestCounts(cp: ControlPlane, user: string, per: number): Record<string, number> {
  const counts = cp.audit.events({ user })
    .filter((e) => e.verb !== 'watch' && e.verb !== 'list')
    .reduce<Record<string, number>>((acc, e) => {
      const k = `${e.verb} ${e.resource ?? e.requestURI}${e.subresource !== undefined ? `/${e.subresource}` : ''}`;
      acc[k] = (acc[k] ?? 0) + 1;
      return acc;
    }, {});
  return Object.fromEntries(Object.entries(counts)
    .map(([k, v]): [string, number] => [k, Math.round((v / per) * 100) / 100])
    .sort((a, b) => b[1] - a[1]));
}

/** What etcd stores: the largest BalancerNode as the API server returns it (managedFields included), and etcd's database size. */
async function storedSizes(cp: ControlPlane): Promise<{ largestBalancerNodeBytes: number; etcdDbBytes: number; etcdDbInUseBytes: number }> {
  const list = await cp.adminRequest('GET', '/apis/fulcrum.dev/v1alpha1/balancernodes');
  const items = (JSON.parse(list.body) as { items: unknown[] }).items;
  const largestBalancerNodeBytes = Math.max(0, ...items.map((o) => JSON.stringify(o).length));
  const res = await fetch(`${cp.etcdUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(10_000) });
  const status = await res.json() as { dbSize?: string; dbSizeInUse?: string };
  return { largestBalancerNodeBytes, etcdDbBytes: Number(status.dbSize ?? 0), etcdDbInUseBytes: Number(status.dbSizeInUse ?? 0) };
}

async function measure(client: KubeClient, operator: ChildProcess, cp: ControlPlane, operatorUser: string): Promise<Result> {
  // Watch BalancerNodes the way an agent would, and check predicates on every event.
  const watcher = new Informer<BalancerNode>({ client, type: RESOURCES.balancerNodes, log, watchTimeoutSeconds: 3600 });
  const waiters = new Set<{ check: (bn: BalancerNode) => boolean; done: () => void }>();
  watcher.on((e) => {
    if (e.type === 'deleted') return;
    for (const w of [...waiters]) if (w.check(e.object)) {
      waiters.delete(w);
      w.done();
    }
  });
  watcher.start();
  await watcher.synced;
  const rssSamples: number[] = [];
  const sampleRss = async (gc = false): Promise<{ rss: number; heapUsed: number }> => {
    const reply = nextMessage(operator, 'rss');
    operator.send({ type: 'rss', gc });
    const m = (await reply) as unknown as { rss: number; heapUsed: number; heapTotal: number; external: number };
    rssSamples.push(m.rss);
    log.info({ rssMb: m.rss >> 20, heapUsedMb: m.heapUsed >> 20, heapTotalMb: m.heapTotal >> 20, externalMb: m.external >> 20 }, 'operator memory');
    return m;
  };

  // ---- resync: start → every node written in full
  const total = VIPS * ENDPOINTS_PER_VIP;
  const complete = (): boolean => {
    if (watcher.size < NODES) return false;
    let decap = 0;
    for (const bn of watcher.values()) {
      decap += bn.spec?.decap.length ?? 0;
      const isBalancer = Number(bn.metadata.name.slice(5)) < BALANCERS;
      if (isBalancer && (bn.spec?.vips.length !== VIPS || bn.spec.vips.some((v) => v.backends.length !== ENDPOINTS_PER_VIP))) return false;
    }
    return decap === total;
  };
  cp.audit.mark();
  const t0 = performance.now();
  const resynced = new Promise<void>((resolve) => {
    const probe = { check: () => complete(), done: resolve };
    waiters.add(probe);
  });
  operator.send({ type: 'go' });
  const sampler = setInterval(() => void sampleRss(), 1000);
  await resynced;
  const resyncMs = performance.now() - t0;
  const afterResync = await sampleRss();
  log.warn({ resyncMs: Math.round(resyncMs) }, 'resynced');
  // Let status writes and pool allocation settle before timing changes.
  await new Promise((r) => setTimeout(r, 2000));

  const resyncRequests = requestCounts(cp, operatorUser, 1);
  // ---- changes: one EndpointSlice update at a time
  cp.audit.mark();
  const latencies: number[] = [];
  let timeouts = 0;
  for (let k = 0; k < CHANGES; k++) {
    const v = (k * 7) % VIPS;
    const j = k % ENDPOINTS_PER_VIP;
    const kind: 'out' | 'drain' = k % 2 === 0 ? 'out' : 'drain';
    const sliceObj = fixture.slices[v]!;
    const ep = sliceObj.endpoints![j]!;
    ep.conditions = kind === 'out' ? { ready: false, serving: false, terminating: false } : { ready: false, serving: true, terminating: true };
    const vipName = `${NS}/vip-${pad(v)}`;
    const address = ep.addresses[0]!;
    const podName = `${NS}/${ep.targetRef!.name}`;
    const affected = new Map<string, (bn: BalancerNode) => boolean>();
    for (let b = 0; b < BALANCERS; b++) {
      affected.set(nodeName(b), (bn) => {
        const entry = bn.spec?.vips.find((x) => x.name === vipName);
        const backend = entry?.backends.find((x) => x.address === address);
        return kind === 'out' ? entry !== undefined && backend === undefined : backend?.weight === 0;
      });
    }
    if (kind === 'out') {
      const host = ep.nodeName!;
      const previous = affected.get(host);
      affected.set(host, (bn) => (previous === undefined || previous(bn)) && !(bn.spec?.decap ?? []).some((d) => d.pod === podName));
    }
    const start = performance.now();
    const pending = [...affected].map(([name, check]) => new Promise<void>((resolve) => {
      const w = { check: (bn: BalancerNode) => bn.metadata.name === name && check(bn), done: resolve };
      waiters.add(w);
    }));
    fixture.slices[v] = await client.replace<EndpointSlice>(RESOURCES.endpointSlices, sliceObj);
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000));
    const outcome = await Promise.race([Promise.all(pending).then(() => 'ok' as const), timer]);
    if (outcome === 'timeout') {
      timeouts++;
      waiters.clear();
    } else {
      latencies.push(performance.now() - start);
    }
  }
  clearInterval(sampler);
  const writesPerChange = requestCounts(cp, operatorUser, CHANGES);
  if (process.env['FULCRUM_BENCH_ALLOC_PROFILE'] === '1') {
    const done = nextMessage(operator, 'allocProfile');
    operator.send({ type: 'allocProfile' });
    await done;
  }
  // The live set: what the operator holds once garbage is collected.
  const end = await sampleRss(true);
  let bytes = 0;
  for (const bn of watcher.values()) bytes = Math.max(bytes, JSON.stringify(bn.spec).length);
  await watcher.stop();
  const stored = await storedSizes(cp);
  return {
    ...stored,
    resyncMs, latencies: latencies.sort((a, b) => a - b), timeouts,
    rssMb: Math.max(...rssSamples) / 2 ** 20, rssAfterResyncMb: afterResync.rss / 2 ** 20, heapMb: end.heapUsed / 2 ** 20,
    balancerNodeBytes: bytes,
    requestsPerChange: writesPerChange,
    resyncRequests,
  };
}

function report(r: Result): void {
  const p50 = percentile(r.latencies, 50);
  const p90 = percentile(r.latencies, 90);
  const p99 = percentile(r.latencies, 99);
  const max = r.latencies[r.latencies.length - 1] ?? NaN;
  const out = {
    config: { nodes: NODES, balancers: BALANCERS, vips: VIPS, endpoints: VIPS * ENDPOINTS_PER_VIP, changes: CHANGES, operator_node_options: OPERATOR_FLAGS.join(' ') },
    resync_ms: Math.round(r.resyncMs),
    change_to_written_ms: { p50: round1(p50), p90: round1(p90), p99: round1(p99), max: round1(max), n: r.latencies.length, timeouts: r.timeouts },
    rss_mb: round1(r.rssMb),
    rss_after_resync_mb: round1(r.rssAfterResyncMb),
    live_heap_mb: round1(r.heapMb),
    largest_balancernode_spec_bytes: r.balancerNodeBytes,
    largest_balancernode_stored_bytes: r.largestBalancerNodeBytes,
    etcd_db_bytes: r.etcdDbBytes,
    etcd_db_in_use_bytes: r.etcdDbInUseBytes,
    requests_per_change: r.requestsPerChange,
    requests_resync: r.resyncRequests,
    targets: TARGETS,
    pass: { change_p99: p99 <= TARGETS.change_p99_ms && r.timeouts === 0, resync: r.resyncMs <= TARGETS.resync_ms, rss: r.rssMb <= TARGETS.rss_mb },
    node: process.version,
    date: new Date().toISOString(),
  };
  const rows: [string, string, string][] = [
    ['resync_ms', String(out.resync_ms), `≤ ${TARGETS.resync_ms}`],
    ['change_to_written_ms p50', String(out.change_to_written_ms.p50), ''],
    ['change_to_written_ms p90', String(out.change_to_written_ms.p90), ''],
    ['change_to_written_ms p99', String(out.change_to_written_ms.p99), `≤ ${TARGETS.change_p99_ms}`],
    ['change_to_written_ms max', String(out.change_to_written_ms.max), ''],
    ['changes measured / timed out', `${out.change_to_written_ms.n} / ${r.timeouts}`, ''],
    ['rss_mb (peak)', String(out.rss_mb), `≤ ${TARGETS.rss_mb}`],
    ['rss_mb after resync', String(out.rss_after_resync_mb), ''],
    ['live heap at the end (MB, after GC)', String(out.live_heap_mb), ''],
    ['largest BalancerNode spec (bytes)', String(out.largest_balancernode_spec_bytes), ''],
    ['largest BalancerNode as stored, managedFields included (bytes)', String(out.largest_balancernode_stored_bytes), '< 1572864 (etcd)'],
    ['etcd database at the end (bytes; in use)', `${out.etcd_db_bytes}; ${out.etcd_db_in_use_bytes}`, ''],
  ];
  console.log(`\noperator benchmark: ${NODES} nodes (${BALANCERS} balancers), ${VIPS} VIPs, ${VIPS * ENDPOINTS_PER_VIP} endpoints, ${CHANGES} EndpointSlice changes; operator NODE_OPTIONS "${OPERATOR_FLAGS.join(' ')}"\n`);
  const w0 = Math.max(...rows.map((r0) => r0[0].length));
  const w1 = Math.max(...rows.map((r0) => r0[1].length));
  console.log(`${'metric'.padEnd(w0)}  ${'value'.padStart(w1)}  target`);
  for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
  mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'out', 'operator.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log(`\nthe operator's API requests per change (watches and lists left out): ${Object.entries(r.requestsPerChange).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log('\nwrote bench/out/operator.json');
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

// ------------------------------------------------------------------ entry

const role = process.argv.find((a) => a.startsWith('--role='))?.slice('--role='.length);
if (role === 'operator') await runOperator(process.argv[process.argv.indexOf('--role=operator') + 1]!);
else await drive();

export type { LoadBalancerVip };
