// applyPlan's order, without BPF: a recording stand-in for the balancer shows that
// every kind of operation reaches the maps in the order plan.ts prescribes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { APPLY_STEPS, applyPlan } from '../../src/agent/dataplane/apply.ts';
import type { BalancerProgram } from '../../src/agent/dataplane/balancer.ts';
import { plan } from '../../src/agent/dataplane/plan.ts';
import { emptyState } from '../../src/agent/dataplane/state.ts';
import { desired } from './support.ts';

function recorder(): { balancer: BalancerProgram; calls: string[] } {
  const calls: string[] = [];
  const balancer = new Proxy({}, {
    get: (_target, name) => (...args: unknown[]) => {
      const first = args[0];
      // Empty batches are no-ops in BalancerProgram; leave them out of the record.
      if (!(Array.isArray(first) && first.length === 0)) calls.push(String(name));
    },
  }) as BalancerProgram;
  return { balancer, calls };
}

const limits = { maxVips: 8, maxBackends: 16 };
const vip = (name: string, address: string, backends: string[]) =>
  ({ name, address, port: 80, protocol: 'TCP' as const, backends: backends.map((a) => ({ address: a })) });

test('apply runs every kind of operation in the planner\'s order', () => {
  const first = plan(emptyState(limits), desired({ vips: [vip('a', '192.0.2.1', ['10.0.0.1', '10.0.0.2'])] }), 13);
  // The second state touches everything: a new VIP on a new address (counters, backend,
  // full ring, VIP entry, address in), a changed ring (delta), a VIP and its address and
  // a backend gone.
  const second = plan(first.next, desired({ vips: [vip('b', '192.0.2.2', ['10.0.0.1', '10.0.0.3'])] }), 13);
  const { balancer, calls } = recorder();
  const result = applyPlan(balancer, second);
  assert.equal(result.outcome, 'applied');
  assert.deepEqual(calls, [
    'resetVipCounters', 'resetBackendCounters', // counters of new ids
    'writeAddressSlots',                        // the address that goes
    'writeBackends',
    'writeRing',
    'writeVip',
    'writeAddressSlots',                        // the address that comes
    'deleteVip',
    'clearBackends',
  ]);
  assert.deepEqual(APPLY_STEPS, ['resetCounters', 'removeAddresses', 'writeBackends', 'writeRings', 'writeVips', 'addAddresses', 'deleteVips', 'clearBackends']);
});

test('a throwing step is reported with the step, and nothing after it runs', () => {
  const p = plan(emptyState(limits), desired({ vips: [vip('a', '192.0.2.1', ['10.0.0.1'])] }), 13);
  const calls: string[] = [];
  const balancer = new Proxy({}, {
    get: (_t, name) => () => {
      calls.push(String(name));
      if (name === 'writeRing') throw new Error('boom');
    },
  }) as BalancerProgram;
  const result = applyPlan(balancer, p);
  assert.equal(result.outcome, 'failed');
  if (result.outcome !== 'failed') return;
  assert.equal(result.step, 'writeRings');
  assert.equal(result.error.code, 'ERR_BPF_MAP');
  assert.match(result.error.message, /programming step writeRings failed: Error: boom/);
  assert.equal(calls.at(-1), 'writeRing');
  assert.ok(!calls.includes('writeVip'));
});
