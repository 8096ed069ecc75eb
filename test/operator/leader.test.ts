// Leader election: one writer at a time; losing the lease stops the controllers at once;
// the process campaigns again and recovers; a clean stop hands over without waiting.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { EndpointSlice, Lease } from '../../src/operator/kinds.ts';
import type { Env } from './harness.ts';
import { BALANCER, lbvip, node, service, slice, startEnv, waitFor } from './harness.ts';

const NS = 'default';
const LEASE = { leaderElect: true, leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 150 };

async function backends(env: Env): Promise<number> {
  const bn = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
  return bn.spec?.vips[0]?.backends.length ?? 0;
}

async function addEndpoint(env: Env, ip: string): Promise<void> {
  const s = await env.client.get<EndpointSlice>(RESOURCES.endpointSlices, 'web-1', NS);
  s.endpoints = [...(s.endpoints ?? []), { addresses: [ip], conditions: { ready: true } }];
  await env.client.replace(RESOURCES.endpointSlices, s);
}

describe('operator: leader election', () => {
  let env: Env;

  before(async () => {
    env = await startEnv();
    await env.client.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await env.client.create(RESOURCES.services, service(NS, 'web'));
    await env.client.create(RESOURCES.endpointSlices, slice(NS, 'web', 'web-1', 'IPv4', [{ ip: '10.5.0.1' }]));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'web', { address: '192.0.2.70', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'web' } }));
  });
  after(() => env.stop());

  it('lets exactly one of two operators lead, and hands over on a clean stop', async () => {
    const a = await env.startOperator(LEASE);
    await a.leadingAndSynced(5000);
    const b = await env.startOperator(LEASE);
    await waitFor(async () => (await backends(env)) === 1, 'programmed by the leader');
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(a.isLeading, true);
    assert.equal(b.isLeading, false);
    const lease = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', 'kube-system');
    assert.equal(lease.spec?.holderIdentity, a.election!.identity);

    const stoppedAt = Date.now();
    await a.stop();
    const released = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', 'kube-system');
    assert.equal(released.spec?.holderIdentity, '', 'released on stop');
    await b.leadingAndSynced(5000);
    assert.ok(Date.now() - stoppedAt < 900, 'the successor did not wait out the lease');
    await addEndpoint(env, '10.5.0.2');
    await waitFor(async () => (await backends(env)) === 2, 'the new leader writes');
    await b.stop();
  });

  it('stops writing when the lease is lost, and recovers when it can lead again', async () => {
    const op = await env.startOperator(LEASE);
    await op.leadingAndSynced(5000);
    await addEndpoint(env, '10.5.0.3');
    await waitFor(async () => (await backends(env)) === 3, 'leader writes');

    // An intruder takes the lease and keeps renewing it.
    let stealing = true;
    const steal = (async () => {
      while (stealing) {
        try {
          const lease = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', 'kube-system');
          lease.spec = { ...lease.spec, holderIdentity: 'intruder', renewTime: new Date().toISOString().replace('Z', '000Z'), leaseDurationSeconds: 1 };
          await env.client.replace(RESOURCES.leases, lease);
        } catch {
          // a race with the operator's renewal: try again
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await waitFor(() => !op.isLeading, 'leadership lost', 3000);
    const writesBefore = env.server.faults.count({ verb: ['create', 'update'], resource: 'balancernodes' });
    await addEndpoint(env, '10.5.0.4');
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await backends(env), 3, 'no write without the lease');
    assert.equal(env.server.faults.count({ verb: ['create', 'update'], resource: 'balancernodes' }), writesBefore);

    stealing = false;
    await steal;
    await op.leadingAndSynced(5000);
    await waitFor(async () => (await backends(env)) === 4, 'caught up after re-acquiring');
    assert.ok(op.leadershipTransitions >= 3, 'started, stopped, started');
    await op.stop();
  });
});
