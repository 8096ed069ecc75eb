// Failures the operator must ride out on a real kube-apiserver: watches cut by an API
// server restart, expired history (410 after an etcd compaction and a restart), write
// conflicts (409) from a real concurrent writer, writes the API server refuses (an
// admission policy) — and the promise to write only on change, counted in the API
// server's audit log.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode, LoadBalancerVip } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { EndpointSlice, Node, Pod } from '../../src/operator/kinds.ts';
import type { Operator } from '../../src/operator/operator.ts';
import type { Env } from './harness.ts';
import {
  BALANCER, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, agentReport, createPod, lbvip, node, operatorWrites, pod, refuseOperatorWrites,
  service, settle, slice, startEnv, waitFor, waitForVipCondition,
} from './harness.ts';

const NS = 'default';

async function backendsOn(env: Env, nodeName: string, vip: string): Promise<string[]> {
  const bn = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, nodeName);
  return (bn.spec?.vips.find((v) => v.name === vip)?.backends ?? []).map((b) => `${b.address}=${b.weight}`);
}

async function setEndpoints(env: Env, name: string, ips: string[]): Promise<void> {
  const s = await env.client.get<EndpointSlice>(RESOURCES.endpointSlices, name, NS);
  s.endpoints = ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: 'w-1' }));
  await env.client.replace(RESOURCES.endpointSlices, s);
}

describe('operator: failures and write discipline', { timeout: TEST_TIMEOUT_MS * 10 }, () => {
  let env: Env;
  let op: Operator;

  before(async () => {
    env = await startEnv();
    const c = env.client;
    await c.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await c.create(RESOURCES.nodes, node('lb-2', BALANCER));
    await c.create(RESOURCES.nodes, node('w-1'));
    await c.create(RESOURCES.services, service(NS, 'api'));
    const apiPod = await createPod(c, pod(NS, 'api-0', 'w-1', ['10.4.0.1']));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'api', 'api-1', 'IPv4', [{ ip: '10.4.0.1', node: 'w-1', pod: { name: 'api-0', uid: apiPod.metadata.uid! } }]));
    await c.create(RESOURCES.loadBalancerVips, lbvip(NS, 'api', { address: '192.0.2.60', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'api' } }));
    // Watch restarts back off from 1 s: an API server restart leaves the informers
    // waiting a moment after it serves again, so writes made then are missed by the
    // watches and only a relist can find them.
    op = await env.startOperator({ backoff: { initialMs: 1000, maxMs: 3000 } });
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).length === 1, 'initial state');
  }, { timeout: START_TIMEOUT_MS });
  after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

  it('writes nothing when nothing that matters changed', async () => {
    await op.idle();
    await waitForVipCondition(env.client, NS, 'api', 'Accepted', 'True');
    await settle(1000);
    await op.idle();
    env.cp.audit.mark();
    // A node heartbeat-like change, a pod status change, a slice label: none changes placement.
    const n = await env.client.get<Node>(RESOURCES.nodes, 'w-1');
    n.metadata.annotations = { heartbeat: String(Date.now()) };
    await env.client.replace(RESOURCES.nodes, n);
    await env.client.patch<Pod>(RESOURCES.pods, 'api-0', NS, { status: { phase: 'Running' } }, { subresource: 'status' });
    await env.client.patch(RESOURCES.endpointSlices, 'api-1', NS, { metadata: { labels: { extra: 'yes' } } });
    await settle(1500);
    await op.idle();
    assert.equal(operatorWrites(env, { resource: 'balancernodes' }), 0, 'no BalancerNode write');
    assert.equal(operatorWrites(env, { resource: 'loadbalancervips' }), 0, 'no LoadBalancerVip write');

    // One real change: exactly one write per affected node (two balancers + the backend node).
    await setEndpoints(env, 'api-1', ['10.4.0.1', '10.4.0.2']);
    await waitFor(async () => (await backendsOn(env, 'lb-2', 'default/api')).length === 2, 'two backends');
    await op.idle();
    await settle(500);
    await op.idle();
    assert.equal(operatorWrites(env, { verb: 'update', resource: 'balancernodes', name: 'lb-1' }), 1);
    assert.equal(operatorWrites(env, { verb: 'update', resource: 'balancernodes', name: 'lb-2' }), 1);
    // The rewritten slice no longer names api-0 as the Pod: w-1 loses its decap duty, once.
    assert.equal(operatorWrites(env, { verb: 'update', resource: 'balancernodes', name: 'w-1' }), 1);
    assert.equal(operatorWrites(env, { resource: 'balancernodes' }), 3);
  });

  it('recovers from watches broken by kube-apiserver restarts', async () => {
    const before = op.cluster.endpointSlices.stats.restartsAfterError;
    await env.cp.restart('kube-apiserver');
    await setEndpoints(env, 'api-1', ['10.4.0.1', '10.4.0.3']);
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).includes('10.4.0.3=1'), 'change after a cut watch', 60_000);
    assert.ok(op.cluster.endpointSlices.stats.restartsAfterError > before, 'the watch failed and was restarted');
    // Again, right after the watches came back.
    await waitFor(() => op.cluster.endpointSlices.stats.watches > 1, 'a new watch');
    await env.cp.restart('kube-apiserver');
    await setEndpoints(env, 'api-1', ['10.4.0.4']);
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).join() === '10.4.0.4=1', 'change after repeated restarts', 60_000);
  });

  it('relists after 410 Gone (etcd compacted, API server restarted) and sees what changed meanwhile', async () => {
    const slicesBefore = op.cluster.endpointSlices.stats.relistsAfterGone;
    const vipsBefore = op.cluster.lbvips.stats.relistsAfterGone;
    // A write no informer of the operator sees moves etcd's revision past everything it
    // watched; compaction forgets the history; a restarted API server's watch cache
    // starts at the current revision. Every watch the operator resumes is then too old.
    await env.cp.kubectl(['create', 'configmap', 'revision-bump', '-n', NS]);
    await env.cp.compactEtcd();
    await env.cp.restart('kube-apiserver');
    // Meanwhile (the informers are backing off): a new slice, a deleted one, a new VIP.
    await env.client.create(RESOURCES.endpointSlices, slice(NS, 'api', 'api-2', 'IPv4', [{ ip: '10.4.0.5', node: 'w-1' }]));
    await env.client.delete(RESOURCES.endpointSlices, 'api-1', NS);
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'api2', { address: '192.0.2.61', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'api' } }));
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).join() === '10.4.0.5=1', 'relisted state', 60_000);
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api2')).length === 1, 'new VIP after 410', 60_000);
    assert.ok(op.cluster.endpointSlices.stats.relistsAfterGone > slicesBefore, 'EndpointSlices relisted after 410');
    assert.ok(op.cluster.lbvips.stats.relistsAfterGone > vipsBefore, 'LoadBalancerVips relisted after 410');
  });

  it('re-reads and retries a BalancerNode update that conflicts with a concurrent writer', async () => {
    // The agent's identity reports status on lb-1 without pause: the operator's copy is
    // often a version behind when it writes the spec, which the API server answers 409.
    let writing = true;
    let ip = '';
    const agent = (async () => {
      while (writing) {
        try {
          await agentReport(env, 'lb-1');
        } catch {
          // the API server is busy: keep going
        }
      }
    })();
    try {
      env.cp.audit.mark();
      let n = 10;
      const conflicts = (): number => operatorWrites(env, { verb: 'update', resource: 'balancernodes', name: 'lb-1', code: 409 });
      await waitFor(async () => {
        if (conflicts() > 0) return true;
        // Another spec change for lb-1, until one of its writes has met a conflict.
        ip = `10.4.1.${n++}`;
        const s = await env.client.get<EndpointSlice>(RESOURCES.endpointSlices, 'api-2', NS);
        s.endpoints = [{ addresses: [ip], conditions: { ready: true }, nodeName: 'w-1' }];
        await env.client.replace(RESOURCES.endpointSlices, s);
        await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).join() === `${ip}=1`, `${ip} written to lb-1`);
        return false;
      }, 'an update of lb-1 by the operator that met 409 Conflict', 90_000);
    } finally {
      writing = false;
      await agent;
    }
    const events = env.cp.audit.events({ user: env.ids.operatorUser, resource: 'balancernodes', name: 'lb-1' });
    const first = events.findIndex((e) => e.verb === 'update' && e.code === 409);
    assert.ok(events.slice(first + 1).some((e) => e.verb === 'get' && e.code === 200), 're-read after the conflict');
    assert.ok(events.slice(first + 1).some((e) => e.verb === 'update' && e.code === 200), 'written after the conflict');
    await op.idle();
    assert.deepEqual(await backendsOn(env, 'lb-1', 'default/api'), [`${ip}=1`], 'the last change is what lb-1 holds');
  });

  it('backs off and retries while the API server refuses its writes, and succeeds once allowed', async () => {
    const allow = await refuseOperatorWrites(env, 'lb-2');
    try {
      env.cp.audit.mark();
      await setEndpoints(env, 'api-2', ['10.4.0.7']);
      await waitFor(() => operatorWrites(env, { verb: 'update', resource: 'balancernodes', name: 'lb-2', code: 422 }) >= 3, 'three refused writes to lb-2');
      assert.notEqual((await backendsOn(env, 'lb-2', 'default/api')).join(), '10.4.0.7=1', 'not written while refused');
      assert.equal((await backendsOn(env, 'lb-1', 'default/api')).join(), '10.4.0.7=1', 'other nodes are written meanwhile');
    } finally {
      await allow();
    }
    await waitFor(async () => (await backendsOn(env, 'lb-2', 'default/api')).join() === '10.4.0.7=1', 'written once allowed');
    const errors = await op.metrics.registry.getSingleMetricAsString('fulcrum_operator_reconcile_errors_total');
    assert.match(errors, /controller="balancernode"} ([3-9]|\d\d+)/);
  });

  it('repairs a BalancerNode someone else changed or deleted', async () => {
    const bn = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-2');
    bn.spec = { vips: [], decap: [] };
    await env.client.replace(RESOURCES.balancerNodes, bn);
    await waitFor(async () => (await backendsOn(env, 'lb-2', 'default/api')).length === 1, 'repaired');
    await env.client.delete(RESOURCES.balancerNodes, 'lb-2');
    await waitFor(async () => {
      try {
        return (await backendsOn(env, 'lb-2', 'default/api')).length === 1;
      } catch {
        return false;
      }
    }, 'recreated');
  });

  it('serves metrics, health and readiness', async () => {
    const op2 = await env.startOperator({ httpPort: 0, httpHost: '127.0.0.1' });
    const url = op2.httpUrl!;
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, 'ready');
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const name of ['fulcrum_operator_reconcile_total', 'fulcrum_operator_reconcile_duration_seconds', 'fulcrum_operator_queue_depth', 'fulcrum_operator_balancernode_writes_total', 'fulcrum_operator_watch_restarts']) {
      assert.ok(text.includes(name), name);
    }
    await op2.stop();
    const vip = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'api', NS);
    assert.equal(vip.status?.address, '192.0.2.60');
  });

  it('keeps no managedFields in its caches or its memory of its own writes', async () => {
    const cached = [...op.cluster.balancerNodes.values(), ...op.cluster.lbvips.values(), ...op.cluster.endpointSlices.values()];
    assert.ok(cached.length > 0);
    for (const o of cached) assert.equal(o.metadata.managedFields, undefined, `${o.kind ?? ''} ${o.metadata.name} cached with managedFields`);
    for (const name of ['lb-1', 'lb-2', 'w-1']) {
      const latest = op.writer.latest(name);
      assert.ok(latest !== undefined, name);
      assert.equal(latest.metadata.managedFields, undefined, `${name}: the writer's copy has managedFields`);
    }
    // The server does keep them, for the operator's and the agents' fields.
    const raw = await env.cp.kubectl(['get', 'balancernode', 'lb-1', '-o', 'json', '--show-managed-fields']);
    const managers = (JSON.parse(raw) as { metadata: { managedFields: { manager: string }[] } }).metadata.managedFields.map((m) => m.manager);
    assert.ok(managers.length > 0, 'the server records field managers');
  });
});
