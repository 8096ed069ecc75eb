// LoadBalancerVip → BalancerNodes, end to end against a real kube-apiserver, the
// operator running as its ServiceAccount.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode, LoadBalancerVip } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { Env } from './harness.ts';
import {
  BALANCER, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, agentReport, createPod, condition, events, getOrUndefined, lbvip, node, pod, refuseOperatorWrites, service, settle, slice, startEnv, waitFor, waitForVipCondition,
} from './harness.ts';

const NS = 'default';

describe('operator: LoadBalancerVip → BalancerNode', { timeout: TEST_TIMEOUT_MS * 10 }, () => {
  let env: Env;

  before(async () => {
    env = await startEnv();
    const c = env.client;
    await c.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await c.create(RESOURCES.nodes, node('lb-2', BALANCER));
    await c.create(RESOURCES.nodes, node('worker-1'));
    await c.create(RESOURCES.nodes, node('worker-2'));
    await c.create(RESOURCES.services, service(NS, 'web'));
    await createPod(c, pod(NS, 'web-a', 'worker-1', ['10.1.0.1', 'fd00::1']));
    await createPod(c, pod(NS, 'web-b', 'worker-2', ['10.1.0.2'], { 'fulcrum.dev/weight': '3' }));
    await createPod(c, pod(NS, 'web-c', 'worker-2', ['10.1.0.3']));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'web', 'web-v4', 'IPv4', [
      { ip: '10.1.0.1', node: 'worker-1', pod: { name: 'web-a', uid: 'uid-a' } },
      { ip: '10.1.0.2', node: 'worker-2', pod: { name: 'web-b', uid: 'uid-b' } },
      { ip: '10.1.0.3', node: 'worker-2', pod: { name: 'web-c', uid: 'uid-c' }, ready: false, serving: true, terminating: true },
      { ip: '10.1.0.4', node: 'worker-1', ready: false, serving: false, terminating: true },
    ]));
    await env.startOperator();
  }, { timeout: START_TIMEOUT_MS });
  after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

  it('writes the VIP to every selected node with ready backends, weights and drains, and decap duties to backend nodes', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'web', { address: '192.0.2.10', ports: [{ port: 80, protocol: 'TCP' }, { port: 443, protocol: 'TCP' }], backends: { service: 'web' } }));
    const lb1 = await waitFor(async () => {
      const bn = await getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'lb-1');
      return (bn?.spec?.vips.length ?? 0) === 2 ? bn : undefined;
    }, 'lb-1 programmed with two entries');
    const entry = lb1.spec!.vips[0]!;
    assert.deepEqual(entry, {
      name: 'default/web', address: '192.0.2.10', port: 80, protocol: 'TCP', encapsulation: 'ipip', sourceIpOnly: false, lruBypass: false,
      backends: [{ address: '10.1.0.1', weight: 1 }, { address: '10.1.0.2', weight: 3 }, { address: '10.1.0.3', weight: 0 }],
    });
    assert.equal(lb1.spec!.vips[1]!.port, 443);
    assert.deepEqual(lb1.spec!.decap, []);
    assert.deepEqual(lb1.metadata.ownerReferences?.map((r) => [r.kind, r.name]), [['Node', 'lb-1']]);

    const lb2 = await waitFor(async () => {
      const bn = await getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'lb-2');
      return (bn?.spec?.vips.length ?? 0) === 2 ? bn : undefined;
    }, 'lb-2 programmed with two entries');
    assert.deepEqual(lb2.spec, lb1.spec);

    const w1 = await waitFor(async () => {
      const bn = await getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'worker-1');
      return (bn?.spec?.decap.length ?? 0) > 0 ? bn : undefined;
    }, 'worker-1 decap');
    assert.deepEqual(w1.spec, { vips: [], decap: [{ pod: 'default/web-a', podUID: 'uid-a', addresses: ['10.1.0.1', 'fd00::1'], vips: ['192.0.2.10'], interface: 'eth0' }] });
    const w2 = await waitFor(async () => {
      const bn = await getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'worker-2');
      return (bn?.spec?.decap.length ?? 0) === 2 ? bn : undefined;
    }, 'worker-2 decap');
    assert.deepEqual(w2.spec!.decap.map((d) => d.pod), ['default/web-b', 'default/web-c'], 'draining pods keep their decap duty');

    const vip = await waitForVipCondition(env.client, NS, 'web', 'Accepted', 'True');
    assert.equal(vip.status?.address, '192.0.2.10');
    assert.equal(vip.status?.readyBackends, 2);
    assert.equal(vip.status?.drainingBackends, 1);
    assert.equal(vip.status?.observedGeneration, vip.metadata.generation);
    assert.deepEqual(vip.metadata.finalizers, ['fulcrum.dev/cleanup']);
    assert.equal(condition(vip, 'AddressAssigned')?.status, 'True');
    assert.equal(condition(vip, 'Programmed')?.reason, 'Pending');
    assert.deepEqual(vip.status?.balancerNodes, { selected: 2, programmed: 0 });
  });

  it('reports Programmed once every selected node\'s agent reports the VIP at a generation that carries it', async () => {
    await agentReport(env, 'lb-1');
    await waitFor(async () => {
      const v = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'web', NS);
      return v.status?.balancerNodes?.programmed === 1;
    }, 'one node programmed');
    const pending = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'web', NS);
    assert.equal(condition(pending, 'Programmed')?.status, 'False');
    assert.match(condition(pending, 'Programmed')?.message ?? '', /1 of 2/);

    // An agent behind (older generation) does not count.
    const lb2 = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-2');
    await agentReport(env, 'lb-2', { generation: (lb2.metadata.generation ?? 1) - 1 });
    await settle(1000);
    assert.equal((await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'web', NS)).status?.balancerNodes?.programmed, 1);

    await agentReport(env, 'lb-2');
    const done = await waitForVipCondition(env.client, NS, 'web', 'Programmed', 'True', 'Programmed');
    assert.deepEqual(done.status?.balancerNodes, { selected: 2, programmed: 2 });
    await waitFor(async () => (await events(env.client, NS, 'Programmed')).some((e) => e.regarding.name === 'web'),
      () => `a Programmed Event on web (operator's Event writes: ${JSON.stringify(env.cp.audit.events({ resource: 'events', user: env.ids.operatorUser }).map((e) => [e.verb, e.code]))})`);
  });

  it('follows EndpointSlice changes: a new endpoint, a terminating one drains to weight 0', async () => {
    const s = await env.client.get<ReturnType<typeof slice>>(RESOURCES.endpointSlices, 'web-v4', NS);
    s.endpoints![1]!.conditions = { ready: false, serving: true, terminating: true };
    s.endpoints!.push({ addresses: ['10.1.0.9'], conditions: { ready: true }, nodeName: 'worker-1' });
    await env.client.replace(RESOURCES.endpointSlices, s);
    const bn = await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return b.spec?.vips[0]?.backends.length === 4 ? b : undefined;
    }, 'four backends');
    assert.deepEqual(bn.spec!.vips[0]!.backends, [
      { address: '10.1.0.1', weight: 1 }, { address: '10.1.0.2', weight: 0 }, { address: '10.1.0.3', weight: 0 }, { address: '10.1.0.9', weight: 1 },
    ]);
    // A spec change makes Programmed wait for the agents again.
    await waitForVipCondition(env.client, NS, 'web', 'Programmed', 'False', 'Pending');
  });

  it('follows the Pod weight annotation', async () => {
    const p = await env.client.get<ReturnType<typeof pod>>(RESOURCES.pods, 'web-a', NS);
    p.metadata.annotations = { 'fulcrum.dev/weight': '7' };
    await env.client.replace(RESOURCES.pods, p);
    await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return b.spec?.vips[0]?.backends[0]?.weight === 7;
    }, 'weight 7');
  });

  it('moves the VIP when node labels change: a node leaving the selector is emptied', async () => {
    const n = await env.client.get<ReturnType<typeof node>>(RESOURCES.nodes, 'lb-2');
    n.metadata.labels = {};
    await env.client.replace(RESOURCES.nodes, n);
    await waitFor(async () => (await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-2')).spec?.vips.length === 0, 'lb-2 emptied');
    const v = await waitFor(async () => {
      const x = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'web', NS);
      return x.status?.balancerNodes?.selected === 1 ? x : undefined;
    }, 'selected = 1');
    assert.equal(v.status?.balancerNodes?.selected, 1);
  });

  it('deletes the BalancerNode of a Node that is removed', async () => {
    await env.client.create(RESOURCES.nodes, node('gone', BALANCER));
    await waitFor(() => getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'gone'), 'BalancerNode gone created');
    await env.client.delete(RESOURCES.nodes, 'gone');
    await waitFor(async () => (await getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'gone')) === undefined, 'BalancerNode gone deleted');
  });

  it('removes a deleted VIP from every node before releasing its finalizer', async () => {
    // Nodes that cannot be rewritten hold the VIP (and its address) in Deleting.
    const allow = await refuseOperatorWrites(env, 'lb-1');
    await env.client.delete(RESOURCES.loadBalancerVips, 'web', NS);
    const deleting = await waitForVipCondition(env.client, NS, 'web', 'Programmed', 'False', 'Deleting');
    assert.ok(deleting.metadata.deletionTimestamp !== undefined);
    assert.match(condition(deleting, 'Programmed')!.message, /still on 1 node/);
    await allow();
    await waitFor(async () => (await getOrUndefined(env.client, RESOURCES.loadBalancerVips, 'web', NS)) === undefined, 'VIP gone');
    const lb1 = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
    assert.deepEqual(lb1.spec?.vips, []);
    const w1 = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'worker-1');
    assert.deepEqual(w1.spec?.decap, []);
  });
  it('leaves kubectl apply working: the finalizer is patched in, last-applied-configuration survives, a removed field goes', async () => {
    const manifest = (encapsulation: string | undefined): string => JSON.stringify(lbvip(NS, 'applied', {
      address: '192.0.2.20', ports: [{ port: 8080, protocol: 'TCP' }], backends: { service: 'web' }, ...(encapsulation !== undefined ? { encapsulation } : {}),
    }));
    await env.cp.kubectl(['apply', '-f', '-'], { input: manifest('gue') });
    const withFinalizer = await waitFor(async () => {
      const v = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'applied', NS);
      return v.metadata.finalizers?.includes('fulcrum.dev/cleanup') ? v : undefined;
    }, 'the operator\'s finalizer on applied');
    assert.ok(withFinalizer.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], 'last-applied-configuration kept when the finalizer was added');
    await waitFor(async () => (await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1')).spec?.vips.some((v) => v.name === 'default/applied' && v.encapsulation === 'gue'), 'applied on lb-1 with gue');
    // The edited file leaves encapsulation out: kubectl's three-way merge removes it (the
    // default, ipip, comes back) only if the last-applied annotation is still there.
    await env.cp.kubectl(['apply', '-f', '-'], { input: manifest(undefined) });
    const edited = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'applied', NS);
    assert.equal((edited.spec as { encapsulation?: string } | undefined)?.encapsulation, 'ipip', 'the removed field is gone (defaulted again)');
    assert.ok(edited.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration']);
    assert.deepEqual(edited.metadata.finalizers, ['fulcrum.dev/cleanup']);
    await waitFor(async () => (await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1')).spec?.vips.some((v) => v.name === 'default/applied' && v.encapsulation === 'ipip'), 'the edit on lb-1');
    await env.cp.kubectl(['delete', 'lbvip', 'applied', '-n', NS, '--wait=true', '--timeout=60s']);
  });
});
