// Failures the operator must ride out: cut watches, expired history (410), write
// conflicts (409), server errors — and the promise to write only on change.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode, LoadBalancerVip } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { EndpointSlice, Node, Pod } from '../../src/operator/kinds.ts';
import type { Operator } from '../../src/operator/operator.ts';
import type { Env } from './harness.ts';
import { BALANCER, createPod, lbvip, node, pod, service, slice, startEnv, waitFor, waitForVipCondition } from './harness.ts';

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

function writes(env: Env, resource: string): number {
  return env.server.faults.count({ verb: ['create', 'update', 'patch', 'delete'], resource });
}

describe('operator: failures and write discipline', () => {
  let env: Env;
  let op: Operator;

  before(async () => {
    // A short history so that compaction and expiry are easy to reach.
    env = await startEnv({ historyLimit: 50 });
    const c = env.client;
    await c.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await c.create(RESOURCES.nodes, node('lb-2', BALANCER));
    await c.create(RESOURCES.nodes, node('w-1'));
    await c.create(RESOURCES.services, service(NS, 'api'));
    await createPod(c, pod(NS, 'api-0', 'w-1', ['10.4.0.1']));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'api', 'api-1', 'IPv4', [{ ip: '10.4.0.1', node: 'w-1', pod: { name: 'api-0', uid: 'u-api-0' } }]));
    await c.create(RESOURCES.loadBalancerVips, lbvip(NS, 'api', { address: '192.0.2.60', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'api' } }));
    op = await env.startOperator();
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).length === 1, 'initial state');
  });
  after(() => env.stop());

  it('writes nothing when nothing that matters changed', async () => {
    await op.idle();
    await waitForVipCondition(env.client, NS, 'api', 'Accepted', 'True');
    await new Promise((r) => setTimeout(r, 200));
    env.server.faults.resetCounts();
    // A node heartbeat-like change, a pod status change, a slice label: none changes placement.
    const n = await env.client.get<Node>(RESOURCES.nodes, 'w-1');
    n.metadata.annotations = { heartbeat: String(Date.now()) };
    await env.client.replace(RESOURCES.nodes, n);
    await env.client.patch<Pod>(RESOURCES.pods, 'api-0', NS, { status: { phase: 'Running' } }, { subresource: 'status' });
    await env.client.patch(RESOURCES.endpointSlices, 'api-1', NS, { metadata: { labels: { extra: 'yes' } } });
    await new Promise((r) => setTimeout(r, 300));
    await op.idle();
    assert.equal(writes(env, 'balancernodes'), 0, 'no BalancerNode write');
    assert.equal(writes(env, 'loadbalancervips'), 0, 'no LoadBalancerVip write');

    // One real change: exactly one write per affected node (two balancers + the backend node).
    await setEndpoints(env, 'api-1', ['10.4.0.1', '10.4.0.2']);
    await waitFor(async () => (await backendsOn(env, 'lb-2', 'default/api')).length === 2, 'two backends');
    await op.idle();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(env.server.faults.count({ verb: 'update', resource: 'balancernodes', name: 'lb-1' }), 1);
    assert.equal(env.server.faults.count({ verb: 'update', resource: 'balancernodes', name: 'lb-2' }), 1);
    // The rewritten slice no longer names api-0 as the Pod: w-1 loses its decap duty, once.
    assert.equal(env.server.faults.count({ verb: 'update', resource: 'balancernodes', name: 'w-1' }), 1);
    assert.equal(writes(env, 'balancernodes'), 3);
  });

  it('recovers from broken watches', async () => {
    const before = op.cluster.endpointSlices.stats.restartsAfterError;
    assert.ok(env.server.faults.breakWatches() > 0);
    await setEndpoints(env, 'api-1', ['10.4.0.1', '10.4.0.3']);
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).includes('10.4.0.3=1'), 'change after a cut watch');
    assert.ok(op.cluster.endpointSlices.stats.restartsAfterError > before);
    // Again, several times in a row.
    for (let i = 0; i < 3; i++) env.server.faults.breakWatches();
    await setEndpoints(env, 'api-1', ['10.4.0.4']);
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).join() === '10.4.0.4=1', 'change after repeated cuts');
  });

  it('relists after 410 Gone in the watch stream and sees deletions made meanwhile', async () => {
    const before = op.cluster.endpointSlices.stats.relistsAfterGone;
    // Hold new watches back, cut the current ones, change things while nobody watches,
    // then forget the history: the resumed watches get 410 and must relist.
    env.server.faults.setLatency(400, { verb: 'watch' });
    env.server.faults.breakWatches();
    await env.client.create(RESOURCES.endpointSlices, slice(NS, 'api', 'api-2', 'IPv4', [{ ip: '10.4.0.5', node: 'w-1' }]));
    await env.client.delete(RESOURCES.endpointSlices, 'api-1', NS);
    env.server.faults.compactHistory();
    env.server.faults.clearLatency();
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).join() === '10.4.0.5=1', 'relisted state', 8000);
    assert.ok(op.cluster.endpointSlices.stats.relistsAfterGone > before, 'relisted after 410');
  });

  it('relists when the list or watch request itself answers 410', async () => {
    const before = op.cluster.lbvips.stats.relistsAfterGone;
    env.server.faults.expireNext({ verb: 'watch', resource: 'loadbalancervips' });
    env.server.faults.breakWatches();
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'api2', { address: '192.0.2.61', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'api' } }));
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api2')).length === 1, 'new VIP after 410');
    assert.ok(op.cluster.lbvips.stats.relistsAfterGone > before);
  });

  it('re-reads and retries a BalancerNode update that conflicts', async () => {
    env.server.faults.conflictOnNextUpdate({ resource: 'balancernodes', name: 'lb-1' }, 2);
    env.server.faults.resetCounts();
    await setEndpoints(env, 'api-2', ['10.4.0.5', '10.4.0.6']);
    await waitFor(async () => (await backendsOn(env, 'lb-1', 'default/api')).length === 2, 'written despite conflicts');
    assert.ok(env.server.faults.count({ verb: 'update', resource: 'balancernodes', name: 'lb-1' }) >= 3, 'two conflicts, then success');
    assert.ok(env.server.faults.count({ verb: 'get', resource: 'balancernodes', name: 'lb-1' }) >= 1, 're-read after the conflict');
  });

  it('retries with backoff when the API server fails writes', async () => {
    env.server.faults.injectError({ verb: 'update', resource: 'balancernodes', name: 'lb-2' }, { code: 500 }, 3);
    await setEndpoints(env, 'api-2', ['10.4.0.7']);
    await waitFor(async () => (await backendsOn(env, 'lb-2', 'default/api')).join() === '10.4.0.7=1', 'written after errors');
    const errors = await op.metrics.registry.getSingleMetricAsString('fulcrum_operator_reconcile_errors_total');
    assert.match(errors, /controller="balancernode"} [3-9]/);
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
});
