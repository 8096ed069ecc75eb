// Leader election: one writer at a time; losing the lease stops the controllers at once;
// the process campaigns again and recovers; a clean stop hands over without waiting.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BalancerNode } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { EndpointSlice, Lease } from '../../src/operator/kinds.ts';
import type { Env } from './harness.ts';
import { FULCRUM_NAMESPACE } from '../../src/lab/install.ts';
import { BALANCER, REPO_ROOT, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, lbvip, node, operatorWrites, service, settle, slice, startEnv, waitFor } from './harness.ts';

const NS = 'default';
// A lease long enough that a successor leading before it runs out proves the release,
// on a machine slow enough that short renew deadlines would be missed.
const LEASE = { leaderElect: true, leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 500 };

async function backends(env: Env): Promise<number> {
  const bn = await env.client.get<BalancerNode>(RESOURCES.balancerNodes, 'lb-1');
  return bn.spec?.vips[0]?.backends.length ?? 0;
}

async function addEndpoint(env: Env, ip: string): Promise<void> {
  const s = await env.client.get<EndpointSlice>(RESOURCES.endpointSlices, 'web-1', NS);
  s.endpoints = [...(s.endpoints ?? []), { addresses: [ip], conditions: { ready: true } }];
  await env.client.replace(RESOURCES.endpointSlices, s);
}

describe('operator: leader election', { timeout: TEST_TIMEOUT_MS * 4 }, () => {
  let env: Env;

  before(async () => {
    env = await startEnv();
    await env.client.create(RESOURCES.nodes, node('lb-1', BALANCER));
    await env.client.create(RESOURCES.services, service(NS, 'web'));
    await env.client.create(RESOURCES.endpointSlices, slice(NS, 'web', 'web-1', 'IPv4', [{ ip: '10.5.0.1' }]));
    await env.client.create(RESOURCES.loadBalancerVips, lbvip(NS, 'web', { address: '192.0.2.70', ports: [{ port: 80, protocol: 'TCP' }], backends: { service: 'web' } }));
  }, { timeout: START_TIMEOUT_MS });
  after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

  it('lets exactly one of two operators lead, and hands over on a clean stop', async () => {
    const a = await env.startOperator(LEASE);
    await a.leadingAndSynced(60_000);
    const b = await env.startOperator(LEASE);
    await waitFor(async () => (await backends(env)) === 1, 'programmed by the leader');
    await settle(1000);
    assert.equal(a.isLeading, true);
    assert.equal(b.isLeading, false);
    const lease = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', FULCRUM_NAMESPACE);
    assert.equal(lease.spec?.holderIdentity, a.election!.identity);

    const stoppedAt = Date.now();
    await a.stop();
    const released = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', FULCRUM_NAMESPACE);
    assert.equal(released.spec?.holderIdentity, '', 'released on stop');
    await b.leadingAndSynced(60_000);
    assert.ok(Date.now() - stoppedAt < LEASE.leaseDurationMs, 'the successor did not wait out the lease');
    await addEndpoint(env, '10.5.0.2');
    await waitFor(async () => (await backends(env)) === 2, 'the new leader writes');
    await b.stop();
  });

  it('stops writing when the lease is lost, and recovers when it can lead again', async () => {
    const op = await env.startOperator(LEASE);
    await op.leadingAndSynced(60_000);
    await addEndpoint(env, '10.5.0.3');
    await waitFor(async () => (await backends(env)) === 3, 'leader writes');

    // An intruder takes the lease and keeps renewing it.
    let stealing = true;
    const steal = (async () => {
      while (stealing) {
        try {
          const lease = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', FULCRUM_NAMESPACE);
          lease.spec = { ...lease.spec, holderIdentity: 'intruder', renewTime: new Date().toISOString().replace('Z', '000Z'), leaseDurationSeconds: 1 };
          await env.client.replace(RESOURCES.leases, lease);
        } catch {
          // a race with the operator's renewal: try again
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await waitFor(() => !op.isLeading, 'leadership lost', 30_000);
    env.cp.audit.mark();
    await addEndpoint(env, '10.5.0.4');
    await settle(2000);
    assert.equal(await backends(env), 3, 'no write without the lease');
    assert.equal(operatorWrites(env, { resource: 'balancernodes' }), 0);

    stealing = false;
    await steal;
    await op.leadingAndSynced(60_000);
    await waitFor(async () => (await backends(env)) === 4, 'caught up after re-acquiring');
    assert.ok(op.leadershipTransitions >= 3, 'started, stopped, started');
    await op.stop();
  });

  it('a leader stopped mid-term (SIGSTOP) and resumed after a successor took over writes nothing: never two writers', async () => {
    // Two operator processes (`fulcrum operator`), each its own ServiceAccount bound to the
    // operator's roles, so the audit log tells their writes apart.
    await env.cp.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1', kind: 'List', items: [
          { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'fulcrum-operator-b', namespace: FULCRUM_NAMESPACE } },
          { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'fulcrum-operator-b' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'fulcrum-operator' }, subjects: [{ kind: 'ServiceAccount', name: 'fulcrum-operator-b', namespace: FULCRUM_NAMESPACE }] },
          { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'fulcrum-operator-b', namespace: FULCRUM_NAMESPACE }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'fulcrum-operator-leader-election' }, subjects: [{ kind: 'ServiceAccount', name: 'fulcrum-operator-b', namespace: FULCRUM_NAMESPACE }] },
        ],
      }),
    });
    const kubeconfigB = join(env.cp.dir, 'operator-b.kubeconfig');
    writeFileSync(kubeconfigB, await env.cp.serviceAccountKubeconfig(FULCRUM_NAMESPACE, 'fulcrum-operator-b'), { mode: 0o600 });
    const userA = env.ids.operatorUser;
    const userB = `system:serviceaccount:${FULCRUM_NAMESPACE}:fulcrum-operator-b`;
    const logs = new Map<string, string>();
    const run = (identity: string, kubeconfig: string): ChildProcess => {
      const child = spawn(process.execPath, [join(REPO_ROOT, 'src', 'cli.ts'), 'operator', '--kubeconfig', kubeconfig, '--namespace', FULCRUM_NAMESPACE,
        '--leader-elect', '--identity', identity, '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
      logs.set(identity, '');
      const keep = (d: Buffer): void => { logs.set(identity, (logs.get(identity)! + d.toString()).slice(-20_000)); };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      return child;
    };
    const holder = async (): Promise<string | undefined> => (await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', FULCRUM_NAMESPACE)).spec?.holderIdentity ?? undefined;
    const writesBy = (user: string): string[] => env.cp.audit.events({ user, verb: ['create', 'update', 'patch', 'delete'] })
      .filter((e) => e.resource !== 'leases' && e.resource !== 'events').map((e) => `${e.verb} ${e.resource ?? ''} ${e.name ?? ''} → ${e.code ?? ''}`);
    const a = run('operator-a', env.ids.operatorKubeconfig);
    let b: ChildProcess | undefined;
    try {
      await waitFor(async () => (await holder()) === 'operator-a', () => `operator-a to lead; its log:\n${logs.get('operator-a')}`, 60_000);
      await addEndpoint(env, '10.5.0.10');
      const count = (await env.client.get<EndpointSlice>(RESOURCES.endpointSlices, 'web-1', NS)).endpoints!.length;
      await waitFor(async () => (await backends(env)) === count, 'operator-a writes');
      b = run('operator-b', kubeconfigB);
      await settle(3000);
      assert.equal(await holder(), 'operator-a', 'operator-b waits while operator-a renews');

      // Stop the leader mid-term, then change something: its watch holds the change
      // unread until it resumes, and operator-b writes it once it has taken over.
      env.cp.audit.mark();
      a.kill('SIGSTOP');
      await addEndpoint(env, '10.5.0.11');
      await waitFor(async () => (await holder()) === 'operator-b', () => `operator-b to take over; its log:\n${logs.get('operator-b')}`, 90_000);
      await waitFor(async () => (await backends(env)) === count + 1, () => `operator-b writes the change; its log:\n${logs.get('operator-b')}`, 60_000);
      assert.deepEqual(writesBy(userA), [], 'operator-a wrote while stopped');

      // Resume the old leader: its lease ran out while it was stopped, so it writes
      // nothing, not even the change it reads now, and goes back to waiting.
      a.kill('SIGCONT');
      await waitFor(() => /leadership lost/.test(logs.get('operator-a') ?? ''), () => `operator-a to notice it lost the lease; its log:\n${logs.get('operator-a')}`, 60_000);
      await addEndpoint(env, '10.5.0.12');
      await waitFor(async () => (await backends(env)) === count + 2, 'operator-b writes the next change', 60_000);
      await settle(3000);
      assert.deepEqual(writesBy(userA), [], 'operator-a wrote after it was resumed');
      assert.ok(writesBy(userB).length > 0, 'operator-b wrote');
      assert.equal(await holder(), 'operator-b');
    } finally {
      a.kill('SIGCONT');
      for (const child of [a, b]) {
        if (child === undefined || child.exitCode !== null) continue;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, settle(15_000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    }
  });

  it('steps down within the renew deadline while the API server hangs (frozen), and leads again once it answers', async () => {
    const op = await env.startOperator(LEASE);
    try {
      await op.leadingAndSynced(60_000);
      const frozenAt = Date.now();
      env.cp.freeze('kube-apiserver');
      try {
        // Renewals hang; each gives up when the lease stops being ours, so the process
        // steps down before anyone else could take the lease (leaseDuration after it last
        // saw a renewal), however long the API server stays silent.
        await waitFor(() => !op.isLeading, 'the leader to step down while the API server hangs', 60_000);
        assert.ok(Date.now() - frozenAt < LEASE.leaseDurationMs, `stepped down after ${Date.now() - frozenAt} ms, not within the lease duration`);
      } finally {
        env.cp.thaw('kube-apiserver');
      }
      await op.leadingAndSynced(60_000);
      const count = (await env.client.get<EndpointSlice>(RESOURCES.endpointSlices, 'web-1', NS)).endpoints!.length;
      await addEndpoint(env, '10.5.0.20');
      await waitFor(async () => (await backends(env)) === count + 1, 'the leader writes again after the API server came back', 60_000);
    } finally {
      await op.stop();
    }
  });
});
