// An operator restart (or a new leader) derives everything from the objects that exist:
// the same addresses, the same BalancerNodes, the same statuses — and no write at all.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LoadBalancerVip } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { Env } from './harness.ts';
import { BALANCER, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, agentReport, lbService, lbvip, node, pool, service, settle, slice, startEnv, waitFor, waitForVipCondition } from './harness.ts';

const NS = 'default';

/** The operator's writes since the audit mark, other than Events and its Lease. */
function writes(env: Env): string[] {
  return env.cp.audit.events({ user: env.ids.operatorUser, verb: ['create', 'update', 'patch', 'delete'] })
    .filter((e) => e.resource !== 'events' && e.resource !== 'leases')
    .map((e) => `${e.verb} ${e.resource ?? ''}${e.subresource !== undefined ? `/${e.subresource}` : ''} ${e.name ?? ''} → ${e.code ?? ''}`);
}

describe('operator: restart', { timeout: TEST_TIMEOUT_MS * 4 }, () => {
  let env: Env;
  const addresses = new Map<string, string>();

  before(async () => {
    env = await startEnv();
    const c = env.client;
    await c.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await c.create(RESOURCES.nodes, node('lb-2', BALANCER));
    await c.create(RESOURCES.vipPools, pool('p', { addresses: ['192.0.2.0/29'] }));
    await c.create(RESOURCES.services, service(NS, 'app'));
    await c.create(RESOURCES.endpointSlices, slice(NS, 'app', 'app-1', 'IPv4', [{ ip: '10.6.0.1' }, { ip: '10.6.0.2' }]));
    for (const name of ['a', 'b', 'c']) {
      await c.create(RESOURCES.loadBalancerVips, lbvip(NS, name, { pool: 'p', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'app' } }));
    }
    await c.create(RESOURCES.loadBalancerVips, lbvip(NS, 'fixed', { address: '192.0.2.3', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'app' } }));
    await c.create(RESOURCES.services, lbService(NS, 'svc', { annotations: { 'fulcrum.dev/pool': 'p' } }));
  }, { timeout: START_TIMEOUT_MS });
  after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

  it('first run: assigns, places, and reports Programmed', async () => {
    const op = await env.startOperator();
    for (const name of ['a', 'b', 'c', 'fixed', 'svc']) {
      const v = await waitForVipCondition(env.client, NS, name, 'AddressAssigned', 'True');
      addresses.set(name, v.status!.address!);
    }
    assert.equal(new Set(addresses.values()).size, 5, `distinct: ${JSON.stringify([...addresses])}`);
    assert.ok(![...addresses].some(([n, a]) => n !== 'fixed' && a === '192.0.2.3'), 'the fixed address is not handed out');
    await op.idle();
    await waitFor(async () => {
      for (const n of ['lb-1', 'lb-2']) await agentReport(env, n);
      const list = await env.client.list<LoadBalancerVip>(RESOURCES.loadBalancerVips, { namespace: NS });
      return list.items.every((v) => v.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True'));
    }, 'all Programmed');
    await op.idle();
    await op.stop();
  });

  it('a new operator reaches the same state without writing anything', async () => {
    await settle(500);
    env.cp.audit.mark();
    const op = await env.startOperator();
    await settle(1500);
    await op.idle();
    assert.deepEqual(writes(env), []);
    for (const [name, address] of addresses) {
      const v = await env.client.get<LoadBalancerVip>(RESOURCES.loadBalancerVips, name, NS);
      assert.equal(v.status?.address, address, name);
      assert.equal(v.status?.conditions?.find((c) => c.type === 'Programmed')?.status, 'True', name);
    }
    // And it allocates around what exists.
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'd', { pool: 'p', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'app' } }));
    const d = await waitForVipCondition(env.client, NS, 'd', 'AddressAssigned', 'True');
    assert.ok(![...addresses.values()].includes(d.status!.address!), `fresh address ${d.status?.address}`);
  });
});
