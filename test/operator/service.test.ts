// Service type=LoadBalancer integration: owned LoadBalancerVip, pool addresses, ingress,
// other classes, class change, shared addresses.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode, LoadBalancerVip, VipPool } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { Service } from '../../src/operator/kinds.ts';
import type { Env } from './harness.ts';
import {
  BALANCER, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, condition, createPod, events, getOrUndefined, lbService, node, operatorWrites, pod, pool, service, settle, slice, startEnv, waitFor, waitForVipCondition,
} from './harness.ts';

const NS = 'shop';

async function ingressOf(env: Env, name: string, ns = NS): Promise<string | undefined> {
  const s = await env.client.get<Service>(RESOURCES.services, name, ns);
  const ing = s.status?.loadBalancer?.ingress ?? [];
  return ing.length === 1 && ing[0]!.ipMode === 'VIP' ? ing[0]!.ip : undefined;
}

describe('operator: Services of type LoadBalancer', { timeout: TEST_TIMEOUT_MS * 8 }, () => {
  let env: Env;

  before(async () => {
    env = await startEnv();
    const c = env.client;
    await env.ensureNamespace(NS, { team: 'shop' });
    await c.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await c.create(RESOURCES.nodes, node('w-1'));
    await c.create(RESOURCES.vipPools, pool('general', { addresses: ['192.0.2.0/30'] }));
    await c.create(RESOURCES.vipPools, pool('tiny', { addresses: ['198.51.100.7/32'], autoAssign: false }));
    const cart = await createPod(c, pod(NS, 'cart-0', 'w-1', ['10.2.0.1']));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'cart', 'cart-1', 'IPv4', [{ ip: '10.2.0.1', node: 'w-1', pod: { name: 'cart-0', uid: cart.metadata.uid! } }]));
    await env.startOperator();
  }, { timeout: START_TIMEOUT_MS });
  after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

  it('gives a Service of our class an owned VIP from a pool and the ingress address', async () => {
    const svc = await env.client.create<Service>(RESOURCES.services, lbService(NS, 'cart', { ports: [{ port: 80 }, { port: 8443 }], sessionAffinity: 'ClientIP' }));
    const ip = await waitFor(() => ingressOf(env, 'cart'), 'ingress of cart');
    assert.equal(ip, '192.0.2.0');
    const vip = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'cart', NS);
    assert.deepEqual(vip.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Service', name: 'cart', uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }]);
    assert.deepEqual((vip.spec as Record<string, unknown>)['pool'], 'general');
    assert.deepEqual((vip.spec as Record<string, unknown>)['hashing'], { sourceIpOnly: true, lruBypass: false });
    const bn = await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return (b.spec?.vips.length ?? 0) === 2 ? b : undefined;
    }, 'lb-1 has cart');
    assert.deepEqual(bn.spec!.vips.map((v) => [v.address, v.port, v.sourceIpOnly, v.backends.length]), [['192.0.2.0', 80, true, 1], ['192.0.2.0', 8443, true, 1]]);
    assert.ok((await events(env.client, NS, 'AddressAssigned')).some((e) => e.regarding.kind === 'Service' && e.regarding.name === 'cart'));
  });

  it('never touches Services of another class (or of no class)', async () => {
    await env.client.create(RESOURCES.services, lbService(NS, 'foreign', { loadBalancerClass: 'other.example/lb' }));
    await env.client.create(RESOURCES.services, service(NS, 'plain'));
    await env.client.create(RESOURCES.services, lbService(NS, 'classless', { loadBalancerClass: undefined }));
    env.cp.audit.mark();
    await settle(1500);
    for (const name of ['foreign', 'plain', 'classless']) {
      assert.equal(await getOrUndefined(env.client, RESOURCES.loadBalancerVips, name, NS), undefined, name);
      assert.equal(operatorWrites(env, { resource: 'services', name }), 0, `${name} written to`);
    }
  });

  it('takes an address from loadBalancerIP, the address annotation or the pool annotation', async () => {
    await env.client.create(RESOURCES.services, lbService(NS, 'fixed', { loadBalancerIP: '203.0.113.10' }));
    await env.client.create(RESOURCES.services, lbService(NS, 'annotated', { annotations: { 'fulcrum.dev/address': '203.0.113.11' } }));
    await env.client.create(RESOURCES.services, lbService(NS, 'pooled', { annotations: { 'fulcrum.dev/pool': 'tiny' } }));
    assert.equal(await waitFor(() => ingressOf(env, 'fixed'), 'fixed'), '203.0.113.10');
    assert.equal(await waitFor(() => ingressOf(env, 'annotated'), 'annotated'), '203.0.113.11');
    assert.equal(await waitFor(() => ingressOf(env, 'pooled'), 'pooled'), '198.51.100.7');
  });

  it('reports an exhausted pool on the VIP, the Service and the pool', async () => {
    await env.client.create(RESOURCES.services, lbService(NS, 'late', { annotations: { 'fulcrum.dev/pool': 'tiny' } }));
    const vip = await waitForVipCondition(env.client, NS, 'late', 'AddressAssigned', 'False', 'PoolExhausted');
    assert.equal(condition(vip, 'Programmed')?.reason, 'AddressNotAssigned');
    assert.ok((await events(env.client, NS, 'PoolExhausted')).some((e) => e.regarding.name === 'late'));
    assert.equal(await ingressOf(env, 'late'), undefined);
    const tiny = await waitFor(async () => {
      const p = await env.client.get<VipPool>(RESOURCES.vipPools, 'tiny');
      return condition(p, 'Exhausted')?.status === 'True' ? p : undefined;
    }, 'tiny exhausted');
    assert.deepEqual([tiny.status?.assigned, tiny.status?.available], [1, 0]);
    // Releasing the address lets the waiting VIP have it.
    await env.client.delete(RESOURCES.services, 'pooled', NS);
    assert.equal(await waitFor(() => ingressOf(env, 'late'), 'late gets the released address'), '198.51.100.7');
  });

  it('shares one address between Services with the same key and disjoint ports', async () => {
    const ann = { 'fulcrum.dev/allow-shared-ip': 'dns', 'fulcrum.dev/pool': 'general' };
    await env.client.create(RESOURCES.services, lbService(NS, 'dns-udp', { ports: [{ port: 53, protocol: 'UDP' }], annotations: ann }));
    const first = await waitFor(() => ingressOf(env, 'dns-udp'), 'dns-udp');
    await env.client.create(RESOURCES.services, lbService(NS, 'dns-tcp', { ports: [{ port: 53, protocol: 'TCP' }], annotations: ann }));
    assert.equal(await waitFor(() => ingressOf(env, 'dns-tcp'), 'dns-tcp'), first);
    await env.client.create(RESOURCES.services, lbService(NS, 'dns-clash', { ports: [{ port: 53, protocol: 'TCP' }], annotations: ann }));
    const clash = await waitFor(() => ingressOf(env, 'dns-clash'), 'dns-clash');
    assert.notEqual(clash, first, 'colliding ports get an address of their own');
    const bn = await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return b.spec!.vips.filter((v) => v.address === first).length === 2 ? b : undefined;
    }, 'both shared entries on lb-1');
    assert.deepEqual(bn.spec!.vips.filter((v) => v.address === first).map((v) => [v.name, v.protocol, v.port]), [[`${NS}/dns-tcp`, 'TCP', 53], [`${NS}/dns-udp`, 'UDP', 53]]);
  });

  it('releases the VIP and the ingress when the Service leaves our class', async () => {
    const s = await env.client.get<Service>(RESOURCES.services, 'fixed', NS);
    const spec = { ...s.spec, type: 'ClusterIP', loadBalancerClass: null } as Record<string, unknown>;
    delete spec['externalTrafficPolicy'];
    delete spec['allocateLoadBalancerNodePorts'];
    spec['ports'] = (s.spec?.ports ?? []).map((p) => ({ ...p, nodePort: undefined }));
    s.spec = spec as Service['spec'];
    await env.client.replace(RESOURCES.services, s);
    await waitFor(async () => (await getOrUndefined(env.client, RESOURCES.loadBalancerVips, 'fixed', NS)) === undefined, 'fixed VIP deleted');
    await waitFor(async () => ((await env.client.get<Service>(RESOURCES.services, 'fixed', NS)).status?.loadBalancer?.ingress ?? []).length === 0, 'ingress cleared');
    await waitFor(async () => !(await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1')).spec!.vips.some((v) => v.address === '203.0.113.10'), 'off lb-1');
    assert.ok((await events(env.client, NS, 'LoadBalancerVipDeleted')).some((e) => e.regarding.name === 'fixed'));
  });

  it('follows a deleted Service: its VIP goes, and the address returns to the pool', async () => {
    await env.client.delete(RESOURCES.services, 'cart', NS);
    await waitFor(async () => (await getOrUndefined(env.client, RESOURCES.loadBalancerVips, 'cart', NS)) === undefined, 'cart VIP gone');
    await env.client.create(RESOURCES.services, lbService(NS, 'cart2'));
    assert.equal(await waitFor(() => ingressOf(env, 'cart2'), 'cart2'), '192.0.2.0');
  });

  it('does not adopt a LoadBalancerVip of the same name it does not own', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'LoadBalancerVip', metadata: { name: 'taken', namespace: NS }, spec: { address: '203.0.113.50', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'taken' } } } as LoadBalancerVip);
    await env.client.create(RESOURCES.services, lbService(NS, 'taken'));
    await waitFor(async () => (await events(env.client, NS, 'LoadBalancerVipConflict')).some((e) => e.regarding.name === 'taken'), 'conflict event');
    const vip = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'taken', NS);
    assert.equal(vip.metadata.ownerReferences, undefined);
  });
});
