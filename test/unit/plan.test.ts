import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NodeDesiredState, type NodeDesiredStateInput } from '../../src/shared/desired-state.ts';
import { buildRing, isEmptyPlan, plan, type Plan } from '../../src/agent/dataplane/plan.ts';
import { emptyState, poolFromUsed, type ProgrammedState } from '../../src/agent/dataplane/state.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';

const RING = 1009; // a small prime keeps the tests fast; the planner does not care
const limits = { maxVips: 8, maxBackends: 16 };

const state = (input: NodeDesiredStateInput) => NodeDesiredState.parse(input);
const web = (backends: { address: string; weight?: number }[], extra: Record<string, unknown> = {}) => ({
  name: 'default/web',
  address: '192.0.2.10',
  port: 80,
  protocol: 'TCP' as const,
  backends,
  ...extra,
});
const three = [{ address: '10.0.0.1' }, { address: '10.0.0.2' }, { address: '10.0.0.3' }];

function applyAll(...states: NodeDesiredStateInput[]): { plans: Plan[]; last: ProgrammedState } {
  let current = emptyState(limits);
  const plans: Plan[] = [];
  for (const s of states) {
    const p = plan(current, state(s), RING);
    plans.push(p);
    current = p.next;
  }
  return { plans, last: current };
}

test('a new VIP writes counters, backends, the whole ring, the VIP and its address', () => {
  const { plans } = applyAll({ vips: [web(three)] });
  const p = plans[0]!;
  assert.deepEqual(p.resetVipCounters, [0]);
  assert.deepEqual(p.writeBackends.map((b) => [b.id, b.address]), [[1, '10.0.0.1'], [2, '10.0.0.2'], [3, '10.0.0.3']]);
  assert.deepEqual(p.resetBackendCounters, [1, 2, 3]);
  assert.equal(p.writeRings.length, 1);
  assert.equal(buildRing(p.writeRings[0]!).length, RING);
  assert.match(p.next.vips.get('TCP/192.0.2.10:80')!.ringDigest, /^[0-9a-f]{16}$/);
  assert.deepEqual(p.writeVips.map((v) => [v.key, v.id, v.flags, v.gen]), [['TCP/192.0.2.10:80', 0, 0, 1]]);
  assert.deepEqual(p.addAddresses.map((w) => [w.family, w.entry]), [[4, { address: '192.0.2.10', flags: 1, id: 1 }]]);
  assert.equal(p.deleteVips.length + p.removeAddresses.length + p.clearBackends.length, 0);
});

test('planning the same state twice is a no-op (idempotent)', () => {
  const { plans } = applyAll({ vips: [web(three)] }, { vips: [web([...three].reverse())] });
  assert.ok(isEmptyPlan(plans[1]!), 'second plan must be empty');
});

test('removing a backend rewrites only its slots and clears it after the ring', () => {
  const { plans } = applyAll({ vips: [web(three)] }, { vips: [web(three.slice(0, 2))] });
  const [first, second] = plans as [Plan, Plan];
  const before = buildRing(first.writeRings[0]!);
  const after = buildRing(second.writeRings[0]!);
  // Every slot of the removed backend moves; Maglev may shift a few others (its
  // disruption is minimal, not zero) — the bound is the Maglev unit tests' business.
  const changed = [...before.keys()].filter((i) => before[i] !== after[i]);
  const owned = before.filter((id) => id === 3).length;
  assert.equal(changed.filter((i) => before[i] === 3).length, owned);
  assert.ok(changed.length - owned <= RING * 0.02, `${changed.length - owned} extra slots moved`);
  assert.notEqual(second.next.vips.get('TCP/192.0.2.10:80')!.ringDigest, first.next.vips.get('TCP/192.0.2.10:80')!.ringDigest);
  assert.deepEqual(second.clearBackends, [{ id: 3, address: '10.0.0.3' }]);
  assert.equal(second.writeVips.length, 0, 'the VIP entry itself is unchanged');
});

test('weight 0 drains: the backend leaves the ring but keeps its entry', () => {
  const { plans } = applyAll({ vips: [web(three)] }, { vips: [web([...three.slice(0, 2), { address: '10.0.0.3', weight: 0 }])] });
  const second = plans[1]!;
  assert.equal(second.clearBackends.length, 0);
  assert.equal(second.writeRings.length, 1);
  assert.ok(!buildRing(second.writeRings[0]!).includes(3));
  assert.equal(second.next.backends.get('10.0.0.3'), 3);
});

test('changing only flags rewrites the VIP entry, not the ring, and keeps its gen', () => {
  const { plans } = applyAll({ vips: [web(three)] }, { vips: [web(three, { encapsulation: 'gue', sourceIpOnly: true })] });
  const second = plans[1]!;
  assert.equal(second.writeRings.length, 0);
  assert.deepEqual(second.writeVips.map((v) => [v.flags, v.gen]), [[1 | 4, 1]]);
});

test('switching a VIP to LRU bypass gives it a new gen and clears its address table-use flag', () => {
  const { plans } = applyAll({ vips: [web(three)] }, { vips: [web(three, { lruBypass: true })] });
  const second = plans[1]!;
  assert.deepEqual(second.writeVips.map((v) => [v.flags, v.gen]), [[2, 2]]);
  assert.deepEqual(second.addAddresses.map((w) => w.entry), [{ address: '192.0.2.10', flags: 2, id: 1 }]);
});

test('removing a VIP deletes it and its address, then clears its now unused backends', () => {
  const other = { name: 'default/dns', address: '192.0.2.10', port: 53, protocol: 'UDP' as const, backends: [{ address: '10.0.0.9' }] };
  const { plans } = applyAll({ vips: [web(three), other] }, { vips: [other] }, { vips: [] });
  assert.deepEqual(plans[1]!.deleteVips.map((v) => v.key), ['TCP/192.0.2.10:80']);
  assert.deepEqual(plans[1]!.removeAddresses, [], 'the address still has a VIP');
  assert.deepEqual(plans[1]!.clearBackends.map((b) => b.address), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  assert.deepEqual(plans[2]!.removeAddresses.map((w) => w.entry), [null]);
});

test('freed ids are reused only after fresh ones, oldest first', () => {
  const { plans, last } = applyAll({ vips: [web(three)] }, { vips: [web([{ address: '10.0.0.4' }])] });
  assert.deepEqual(plans[1]!.writeBackends, [{ id: 4, address: '10.0.0.4' }]);
  assert.deepEqual(last.backendIds.freed, [1, 2, 3]);
});

test('capacity is checked before anything is applied', () => {
  const many = Array.from({ length: limits.maxVips + 1 }, (_, i) => ({ ...web(three), name: `v${i}`, port: 1000 + i }));
  assert.throws(() => plan(emptyState(limits), state({ vips: many }), RING), (err) => isFulcrumError(err, 'ERR_DESIRED_STATE') && /no free VIP id/.test(err.message));
});

test('a pool rebuilt after a restart turns gaps into free ids', () => {
  assert.deepEqual(poolFromUsed(1, 16, [1, 4, 5]), { first: 1, limit: 16, highWater: 6, freed: [2, 3] });
});

test('the desired-state schema refuses duplicates and bad addresses with paths', () => {
  const dup = NodeDesiredState.safeParse({ vips: [web(three), web(three)] });
  assert.equal(dup.success, false);
  const bad = NodeDesiredState.safeParse({ vips: [web([{ address: '10.0.0.256' }])] });
  assert.equal(bad.success, false);
  assert.deepEqual(bad.error!.issues[0]!.path, ['vips', 0, 'backends', 0, 'address']);
  const dupBackend = NodeDesiredState.safeParse({ vips: [web([{ address: '10.0.0.1' }, { address: '10.0.0.1' }])] });
  assert.equal(dupBackend.success, false);
});

/** A plan with the order-free parts sorted, and the freed-id pool as a set: what two
 * ways of planning the same change must agree on. */
function normalized(p: Plan) {
  const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;
  return {
    ...p,
    clearBackends: [...p.clearBackends].sort(byId),
    writeBackends: [...p.writeBackends].sort(byId),
    resetBackendCounters: [...p.resetBackendCounters].sort((a, b) => a - b),
    next: {
      ...p.next,
      backends: new Map([...p.next.backends].sort(([a], [b]) => (a < b ? -1 : 1))),
      backendRefs: new Map([...(p.next.backendRefs ?? [])].sort(([a], [b]) => (a < b ? -1 : 1))),
      backendIds: { ...p.next.backendIds, freed: [...p.next.backendIds.freed].sort((a, b) => a - b) },
    },
  };
}

test('planning only the changed VIPs gives the same plan as planning the whole state (random changes)', () => {
  // A seeded generator: the same sequence every run.
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const pool = Array.from({ length: 40 }, (_, i) => (i % 3 === 2 ? `fd00::${i + 1}` : `10.1.0.${i + 1}`));
  const big = { maxVips: 16, maxBackends: 64 };
  let current = emptyState(big);
  let incremental = 0;
  for (let step = 0; step < 300; step++) {
    const vips = Array.from({ length: 1 + rand(6) }, (_, v) => ({
      name: `ns/vip-${v}`,
      address: `192.0.2.${10 + rand(4)}`,
      port: 80 + v,
      protocol: 'TCP' as const,
      // Overlapping backend sets across VIPs, weights that change, sometimes none.
      backends: [...new Set(Array.from({ length: rand(7) }, () => pool[rand(pool.length)]!))].map((address) => ({ address, weight: rand(3) })),
    }));
    const desired = state({ vips });
    const full = plan({ ...current, backendRefs: undefined }, desired, RING);
    const fast = plan(current, desired, RING);
    if (current.backendRefs !== undefined && current.vips.size > 0) incremental++;
    assert.deepEqual(normalized(fast), normalized(full), `step ${step}`);
    // Every backend is referenced, and every reference is a backend.
    assert.deepEqual([...fast.next.backendRefs!.keys()].sort(), [...fast.next.backends.keys()].sort(), `step ${step}: refs and backends agree`);
    current = fast.next;
  }
  assert.ok(incremental > 250, `the incremental path ran (${incremental} times)`);
});
