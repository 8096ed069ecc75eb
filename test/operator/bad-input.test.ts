// Bad input becomes conditions and Events, never a crash: invalid specs, duplicate
// addresses, missing Services, pools that cannot serve, endpoints of the other family,
// unreadable weights. One control plane for the file: first with the project's CRDs,
// then (after the first part's objects are deleted) with permissive stand-ins.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode, LoadBalancerVip, VipPool } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import { isApiError } from '../../src/shared/kube/errors.ts';
import type { Operator } from '../../src/operator/operator.ts';
import type { Env } from './harness.ts';
import {
  BALANCER, REPO_ROOT, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, condition, createPod, events, lbvip, node, pod, pool, service, settle, slice, startEnv, waitFor, waitForVipCondition,
} from './harness.ts';
import { join } from 'node:path';

const NS = 'default';
const port80 = [{ port: 80, protocol: 'TCP' }];

async function hasEvent(env: Env, reason: string, name: string, ns = NS): Promise<boolean> {
  return (await events(env.client, ns, reason)).some((e) => e.regarding.name === name);
}

let env: Env;
before(async () => {
  env = await startEnv();
}, { timeout: START_TIMEOUT_MS });
after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

describe('operator: bad input (project CRDs)', { timeout: TEST_TIMEOUT_MS * 6 }, () => {
  let op: Operator;

  before(async () => {
    const c = env.client;
    await c.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await c.create(RESOURCES.services, service(NS, 'app'));
    await c.create(RESOURCES.services, service(NS, 'six'));
    const app = await createPod(c, pod(NS, 'app-0', 'lb-1', ['10.3.0.1'], { 'fulcrum.dev/weight': 'heavy' }));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'app', 'app-1', 'IPv4', [{ ip: '10.3.0.1', node: 'lb-1', pod: { name: 'app-0', uid: app.metadata.uid! } }]));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'six', 'six-1', 'IPv6', [{ ip: 'fd00::6', node: 'lb-1' }]));
    op = await env.startOperator();
  }, { timeout: START_TIMEOUT_MS });
  // Delete what this part made while its operator still runs (it releases the finalizers).
  after(async () => {
    await env.cp.kubectl(['delete', 'lbvip', '--all', '-n', NS, '--wait=true', '--timeout=60s']);
    await env.cp.kubectl(['delete', 'vippool', '--all', '--wait=true', '--timeout=60s']);
    await env.cp.kubectl(['delete', 'service/app', 'service/six', 'service/later', 'endpointslice/app-1', 'endpointslice/six-1', '-n', NS, '--wait=true', '--timeout=60s']);
    // No kubelet finishes a graceful deletion here.
    await env.cp.kubectl(['delete', 'pod/app-0', '-n', NS, '--grace-period=0', '--force']);
    await waitFor(async () => (await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1')).spec?.vips.length === 0, 'lb-1 emptied');
    await op.stop();
  }, { timeout: STOP_TIMEOUT_MS * 2 });

  it('the API server itself refuses specs the CRD rules out', async () => {
    try {
      await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'both', { address: '192.0.2.1', pool: 'p', ports: port80, backends: { service: 'app' } }));
      assert.fail('expected 422');
    } catch (err) {
      assert.ok(isApiError(err, 422), String(err));
    }
  });

  it('a duplicate address is a condition and an Event on the younger VIP; the older keeps it', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'first', { address: '192.0.2.20', ports: port80, backends: { service: 'app' } }));
    await waitForVipCondition(env.client, NS, 'first', 'AddressAssigned', 'True');
    await settle(1100); // creationTimestamp has second precision
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'second', { address: '192.0.2.20', ports: [{ port: 443, protocol: 'TCP' }], backends: { service: 'app' } }));
    const second = await waitForVipCondition(env.client, NS, 'second', 'AddressAssigned', 'False', 'AddressConflict');
    assert.match(condition(second, 'AddressAssigned')!.message, /held by default\/first/);
    assert.equal(condition(second, 'Programmed')?.reason, 'AddressNotAssigned');
    assert.ok(await waitFor(() => hasEvent(env, 'AddressConflict', 'second'), 'AddressConflict event'));
    const bn = await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return b.spec?.vips.some((v) => v.name === 'default/first') ? b : undefined;
    }, 'first on lb-1');
    assert.ok(!bn.spec!.vips.some((v) => v.name === 'default/second'), 'the loser is not programmed');
    // The older one gone, the younger one gets the address.
    await env.client.delete(RESOURCES.loadBalancerVips, 'first', NS);
    await waitForVipCondition(env.client, NS, 'second', 'AddressAssigned', 'True');
  });

  it('a missing Service is Accepted=False until it appears', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'orphan', { address: '192.0.2.30', ports: port80, backends: { service: 'later' } }));
    const v = await waitForVipCondition(env.client, NS, 'orphan', 'Accepted', 'False', 'ServiceNotFound');
    assert.equal(condition(v, 'Programmed')?.reason, 'NotAccepted');
    assert.ok(await waitFor(() => hasEvent(env, 'ServiceNotFound', 'orphan'), 'ServiceNotFound event'));
    await env.client.create(RESOURCES.services, service(NS, 'later'));
    await waitForVipCondition(env.client, NS, 'orphan', 'Accepted', 'True');
  });

  it('endpoints only of the other family: Accepted=False NoBackendsOfFamily; a VIP of that family works', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'six-on-four', { address: '192.0.2.40', ports: port80, backends: { service: 'six' } }));
    const v = await waitForVipCondition(env.client, NS, 'six-on-four', 'Accepted', 'False', 'NoBackendsOfFamily');
    assert.match(condition(v, 'Accepted')!.message, /only IPv6 endpoints/);
    assert.ok(await waitFor(() => hasEvent(env, 'NoBackendsOfFamily', 'six-on-four'), 'event'));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'six-on-six', { address: '2001:db8::40', ports: port80, backends: { service: 'six' } }));
    await waitForVipCondition(env.client, NS, 'six-on-six', 'Accepted', 'True');
    const bn = await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return b.spec?.vips.find((x) => x.name === 'default/six-on-six');
    }, 'six-on-six on lb-1');
    assert.deepEqual(bn.backends, [{ address: 'fd00::6', weight: 1 }]);
  });

  it('an unreadable weight annotation means weight 1 and a Warning', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'weighted', { address: '192.0.2.50', ports: port80, backends: { service: 'app' } }));
    await waitFor(() => hasEvent(env, 'InvalidWeight', 'weighted'), 'InvalidWeight event');
    const entry = await waitFor(async () => (await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1')).spec?.vips.find((x) => x.name === 'default/weighted'), 'weighted entry');
    assert.deepEqual(entry.backends, [{ address: '10.3.0.1', weight: 1 }]);
  });

  it('pool problems: not found, exhausted, selector mismatch, family unavailable', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'nopool', { pool: 'missing', ports: port80, backends: { service: 'app' } }));
    await waitForVipCondition(env.client, NS, 'nopool', 'AddressAssigned', 'False', 'PoolNotFound');
    await env.client.create(RESOURCES.vipPools, pool('missing', { addresses: ['198.51.100.0/31'] }));
    const got = await waitForVipCondition(env.client, NS, 'nopool', 'AddressAssigned', 'True');
    assert.equal(got.status?.address, '198.51.100.0');

    await env.client.create(RESOURCES.vipPools, pool('picky', { addresses: ['198.51.100.8/29'], namespaceSelector: { matchLabels: { tier: 'gold' } } }));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'unadmitted', { pool: 'picky', ports: port80, backends: { service: 'app' } }));
    await waitForVipCondition(env.client, NS, 'unadmitted', 'AddressAssigned', 'False', 'PoolSelectorMismatch');

    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'wants-six', { pool: 'missing', ports: port80, backends: { service: 'app' } }, { 'fulcrum.dev/ip-family': 'IPv6' }));
    await waitForVipCondition(env.client, NS, 'wants-six', 'AddressAssigned', 'False', 'AddressFamilyUnavailable');

    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'second-of-two', { pool: 'missing', ports: port80, backends: { service: 'app' } }));
    await waitForVipCondition(env.client, NS, 'second-of-two', 'AddressAssigned', 'True');
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'third-of-two', { pool: 'missing', ports: port80, backends: { service: 'app' } }));
    await waitForVipCondition(env.client, NS, 'third-of-two', 'AddressAssigned', 'False', 'PoolExhausted');
    assert.ok(await waitFor(() => hasEvent(env, 'PoolExhausted', 'third-of-two'), 'PoolExhausted event'));
    const p = await waitFor(async () => {
      const x = await env.client.get<VipPool>(RESOURCES.vipPools, 'missing');
      return condition(x, 'Exhausted')?.status === 'True' ? x : undefined;
    }, 'pool exhausted');
    assert.deepEqual([p.status?.assigned, p.status?.available, condition(p, 'Ready')?.status], [2, 0, 'True']);
  });

  it('a range from the higher address to the lower: the API server accepts it, the operator reports Ready=False InvalidAddresses', async () => {
    // The CRD has no O(1) CEL rule for the order of IPv6 addresses (docs/operator.md).
    // Events on cluster-scoped objects go to the namespace default.
    for (const [name, range] of [['backwards4', '198.51.100.20-198.51.100.10'], ['backwards6', '2001:db8:5::20-2001:db8:5::10']] as const) {
      await env.client.create(RESOURCES.vipPools, pool(name, { addresses: [range] }));
      const p = await waitFor(async () => {
        const x = await env.client.get<VipPool>(RESOURCES.vipPools, name);
        return condition(x, 'Ready')?.reason === 'InvalidAddresses' ? x : undefined;
      }, `${name} Ready=False InvalidAddresses`);
      assert.equal(condition(p, 'Ready')?.status, 'False');
      assert.ok(await waitFor(() => hasEvent(env, 'InvalidAddresses', name), `InvalidAddresses event on ${name}`));
      await env.client.delete(RESOURCES.vipPools, name);
    }
  });

  it('overlapping pools: the younger is not Ready', async () => {
    await settle(1100);
    await env.client.create(RESOURCES.vipPools, pool('overlaps', { addresses: ['198.51.100.0/30'] }));
    const p = await waitFor(async () => {
      const x = await env.client.get<VipPool>(RESOURCES.vipPools, 'overlaps');
      return condition(x, 'Ready')?.reason === 'Overlap' ? x : undefined;
    }, 'Overlap');
    assert.match(condition(p, 'Ready')!.message, /VipPool missing/);
    assert.ok(await waitFor(() => hasEvent(env, 'Overlap', 'overlaps'), 'Overlap event'));
  });
});

describe('operator: bad input the API server let through (permissive CRDs)', { timeout: TEST_TIMEOUT_MS * 2 }, () => {
  before(async () => {
    // An older or hand-edited CRD without the project's validation.
    await env.cp.kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=fulcrum-test', '-f', join(REPO_ROOT, 'test', 'operator', 'fixtures', 'crds.yaml')]);
    await env.client.create(RESOURCES.services, service(NS, 'app'));
    // What the API server now lets through (the project's CRD refused it above).
    await waitFor(async () => {
      await env.client.request('POST', '/apis/fulcrum.dev/v1alpha1/namespaces/default/loadbalancervips', { query: { dryRun: 'All' }, body: lbvip(NS, 'probe', { address: '127.0.0.1', ports: port80, backends: { service: 'app' } }) });
      return true;
    }, 'the permissive CRD in force');
    await env.startOperator();
  }, { timeout: START_TIMEOUT_MS });

  it('an invalid spec is Accepted=False InvalidSpec with an Event, and is not programmed', async () => {
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'both', { address: '192.0.2.1', pool: 'p', ports: port80, backends: { service: 'app' } }));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'noports', { address: '192.0.2.2', backends: { service: 'app' } }));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'badaddr', { address: '127.0.0.1', ports: port80, backends: { service: 'app' } }));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'good', { address: '192.0.2.3', ports: port80, backends: { service: 'app' } }));
    for (const name of ['both', 'noports', 'badaddr']) {
      const v = await waitForVipCondition(env.client, NS, name, 'Accepted', 'False', 'InvalidSpec');
      assert.equal(condition(v, 'AddressAssigned')?.status, 'False');
      assert.ok(await waitFor(() => hasEvent(env, 'InvalidSpec', name), `InvalidSpec event for ${name}`));
    }
    const bn = await waitFor(async () => {
      const b = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
      return b.spec?.vips.length ? b : undefined;
    }, 'good programmed');
    assert.deepEqual(bn.spec!.vips.map((v) => v.name), ['default/good']);
    const good = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, 'good', NS);
    assert.equal(condition(good, 'Accepted')?.status, 'True');
  });
});
