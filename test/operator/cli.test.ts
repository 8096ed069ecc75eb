// `fulcrum operator` as the CLI runs it: the operator ServiceAccount's kubeconfig file
// (RBAC enforced), leader election, metrics.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { operatorCommand, operatorNamespace, runOperator } from '../../src/cli/operator.ts';
import { loadKubeConfig } from '../../src/shared/kubeconfig.ts';
import type { BalancerNode } from '../../src/operator/api.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { Lease } from '../../src/operator/kinds.ts';
import type { Env } from './harness.ts';
import { FULCRUM_NAMESPACE } from '../../src/lab/install.ts';
import { BALANCER, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, getOrUndefined, node, startEnv, testLogger, waitFor } from './harness.ts';

describe('fulcrum operator (CLI)', { timeout: TEST_TIMEOUT_MS * 2 }, () => {
  let env: Env;

  before(async () => {
    env = await startEnv();
    await env.client.create(RESOURCES.nodes, node('lb-1', BALANCER));
  }, { timeout: START_TIMEOUT_MS });
  after(() => env?.stop(), { timeout: STOP_TIMEOUT_MS });

  it('runs against a kubeconfig file with leader election until stopped', async () => {
    const abort = new AbortController();
    const running = runOperator({ kubeconfig: env.ids.operatorKubeconfig, namespace: FULCRUM_NAMESPACE, leaderElect: true, identity: 'cli-test', metricsPort: '0' }, abort.signal, testLogger('cli'));
    await waitFor(() => getOrUndefined<BalancerNode>(env.client, RESOURCES.balancerNodes, 'lb-1'), 'BalancerNode written', 60_000);
    const lease = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', FULCRUM_NAMESPACE);
    assert.equal(lease.spec?.holderIdentity, 'cli-test');
    abort.abort();
    await running;
    const released = await env.client.get<Lease>(RESOURCES.leases, 'fulcrum-operator', FULCRUM_NAMESPACE);
    assert.equal(released.spec?.holderIdentity, '');
  });

  it('fails fast on a kubeconfig it cannot use', () => {
    assert.throws(() => loadKubeConfig('/nonexistent/kubeconfig'), (err: Error & { code?: string }) => err.code === 'ERR_CONFIG');
  });

  it('finds its namespace from the flag, then POD_NAMESPACE', () => {
    assert.equal(operatorNamespace('fulcrum-system', {}), 'fulcrum-system');
    assert.equal(operatorNamespace(undefined, { POD_NAMESPACE: 'from-env' }), 'from-env');
  });

  it('registers as a subcommand with its flags', () => {
    const program = new Command('fulcrum');
    operatorCommand.register(program, () => undefined);
    const sub = program.commands.find((c) => c.name() === 'operator');
    assert.ok(sub);
    assert.deepEqual(sub.options.map((o) => o.long).sort(), ['--identity', '--kubeconfig', '--leader-elect', '--log-level', '--metrics-host', '--metrics-port', '--namespace']);
  });
});
