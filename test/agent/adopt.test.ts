// Programming the real balancer (apply.ts) and taking it over after a restart
// (adopt.ts): what is written is what the planner said, a restarted agent reads the
// same state back, plans nothing for an unchanged desired state, and the connection
// table keeps forwarding established flows to the same backend.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makePinDir } from '../../src/agent/bpf/bpffs.ts';
import { BalancerProgram } from '../../src/agent/dataplane/balancer.ts';
import { applyPlan } from '../../src/agent/dataplane/apply.ts';
import { ADOPTED_SIGNATURE, adoptBalancer, reconcileAdopted } from '../../src/agent/dataplane/adopt.ts';
import { buildRing, isEmptyPlan, plan, type Plan } from '../../src/agent/dataplane/plan.ts';
import { emptyState, type ProgrammedState } from '../../src/agent/dataplane/state.ts';
import { TestRunner, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import { u32, vip4Key, vipAddr4, vipMeta } from '../../src/agent/bpf/abi.ts';
import { candidateSlots } from '../../src/agent/dataplane/address-table.ts';
import { decapsulate } from '../support/packets.ts';
import {
  B4, CONFIG, LIMITS, OBJECT, RING_SIZE, WEB4, DNS6, baseState, buildBpf, desired, pinRoot, rootOnly, tcp4, udp6,
} from './support.ts';

const runner = new TestRunner();
let pins: ReturnType<typeof pinRoot>;
const open: BalancerProgram[] = [];

function load(): BalancerProgram {
  makePinDir(join(pins.root, 'maps'));
  const balancer = BalancerProgram.load({ objectPath: OBJECT, config: CONFIG, limits: LIMITS, pinDir: join(pins.root, 'maps') });
  open.push(balancer);
  return balancer;
}

/** Closes a program the way an exiting agent does: fds go, pins stay. */
function restart(balancer: BalancerProgram): BalancerProgram {
  balancer.close();
  return load();
}

function program(balancer: BalancerProgram, current: ProgrammedState, state = baseState()): Plan {
  const p = plan(current, state, RING_SIZE);
  const result = applyPlan(balancer, p);
  assert.equal(result.outcome, 'applied', result.outcome === 'failed' ? result.error.message : '');
  return p;
}

/** The backend a forwarded frame was sent to (outer destination). */
function outerDestination(frame: Buffer): string {
  const v4 = frame.readUInt16BE(12) === 0x0800;
  return v4 ? Array.from(frame.subarray(30, 34)).join('.') : frame.subarray(38, 54).toString('hex');
}

before(() => buildBpf());
afterEach(() => {
  for (const b of open.splice(0)) b.close();
  pins?.cleanup();
});
after(() => runner.close());

test('apply writes exactly what the plan says, in one pass', rootOnly, () => {
  pins = pinRoot();
  const balancer = load();
  const p = program(balancer, emptyState(LIMITS));
  const vips = balancer.readVips().sort((a, b) => a.id - b.id);
  assert.deepEqual(vips.map((v) => [v.address, v.port, v.protocol, v.id, v.gen]), [['10.10.0.1', 80, 6, 0, 1], ['fd00:10::1', 53, 17, 1, 2]]);
  assert.deepEqual([...balancer.readBackends()].sort((a, b) => a[0] - b[0]).map(([, a]) => a), [...B4, 'fd00:1::1', 'fd00:1::2']);
  for (const write of p.writeRings) assert.deepEqual(balancer.readRing(write.vipId), buildRing(write), `ring of VIP ${write.vipId}`);
});

test('apply reports counts of every kind of operation', rootOnly, () => {
  pins = pinRoot();
  const balancer = load();
  const first = plan(emptyState(LIMITS), baseState(), RING_SIZE);
  const a = applyPlan(balancer, first);
  assert.equal(a.outcome, 'applied');
  assert.deepEqual(a.counts, {
    vipCounterResets: 2, backendCounterResets: 5, addressSlotsCleared: 0, backendsWritten: 5, ringsRebuilt: 2,
    ringSlotsWritten: 2 * RING_SIZE, vipsWritten: 2, addressSlotsWritten: 2, vipsDeleted: 0, backendsCleared: 0,
  });
  // Drop one backend of web4 and the whole IPv6 VIP.
  const webOnly = desired({ generation: 2, vips: [{ ...WEB4, backends: [{ address: B4[0]! }, { address: B4[1]! }] }] });
  const second = plan(first.next, webOnly, RING_SIZE);
  const b = applyPlan(balancer, second);
  assert.equal(b.outcome, 'applied');
  if (b.outcome !== 'applied') return;
  assert.equal(b.counts.ringsRebuilt, 1);
  assert.ok(b.counts.ringSlotsWritten > 0 && b.counts.ringSlotsWritten < RING_SIZE);
  assert.equal(b.counts.vipsDeleted, 1);
  assert.equal(b.counts.backendsCleared, 3);
  assert.equal(b.counts.addressSlotsCleared, 1);
  assert.deepEqual(balancer.readVips().map((v) => v.address), ['10.10.0.1']);
});

test('a failed step stops the apply and says which step', rootOnly, () => {
  pins = pinRoot();
  const balancer = load();
  const p = plan(emptyState(LIMITS), baseState(), RING_SIZE);
  const broken: Plan = { ...p, writeRings: [{ vipId: LIMITS.maxVips + 3, ringSize: RING_SIZE, members: [] }] };
  const result = applyPlan(balancer, broken);
  assert.equal(result.outcome, 'failed');
  if (result.outcome !== 'failed') return;
  assert.equal(result.step, 'writeRings');
  assert.equal(result.error.code, 'ERR_BPF_MAP');
  assert.equal(result.counts.backendsWritten, 5, 'the steps before it ran');
  assert.equal(result.counts.vipsWritten, 0, 'the steps after it did not');
  assert.deepEqual(balancer.readVips(), []);
});

test('after a restart the adopted state plans nothing and the connection table keeps forwarding', rootOnly, () => {
  pins = pinRoot();
  let balancer = load();
  const programmed = program(balancer, emptyState(LIMITS)).next;

  // Open flows: a TCP SYN and a UDP datagram write connection-table entries.
  const syn = runner.run(balancer.progFd, tcp4(WEB4.address, 80, 41000, true));
  assert.equal(syn.retval, XDP_TX);
  const firstBackend = outerDestination(syn.dataOut);
  const dns = runner.run(balancer.progFd, udp6(DNS6.address, 53, 41001));
  assert.equal(dns.retval, XDP_TX);
  assert.equal([...balancer.maps.conn_v4.keys()].length, 1);
  assert.equal([...balancer.maps.conn_v6.keys()].length, 1);
  const connMapId = balancer.maps.conn_v4.id;

  balancer = restart(balancer);
  assert.equal(balancer.maps.conn_v4.id, connMapId, 'the same kernel map was adopted');
  assert.equal([...balancer.maps.conn_v4.keys()].length, 1, 'connection-table entries survive the restart');

  const adopted = adoptBalancer(balancer);
  assert.deepEqual(adopted.findings, []);
  assert.equal(adopted.foundPrevious, true);
  const state = adopted.state;
  assert.deepEqual([...state.vips.keys()].sort(), [...programmed.vips.keys()].sort());
  for (const [key, vip] of programmed.vips) {
    const back = state.vips.get(key)!;
    assert.deepEqual({ ...back, name: vip.name, backendsSignature: vip.backendsSignature, ringDigest: vip.ringDigest }, vip, `VIP ${key} reads back as programmed`);
    assert.equal(back.ringDigest, '', 'the digest is unknown until matched against a desired state');
    assert.equal(back.backendsSignature, ADOPTED_SIGNATURE);
  }
  assert.deepEqual(state.backends, programmed.backends);
  assert.deepEqual(state.addresses.v4.slots, programmed.addresses.v4.slots);
  assert.deepEqual(state.addresses.v6.slots, programmed.addresses.v6.slots);
  assert.equal(state.lastGen, programmed.lastGen);
  assert.deepEqual(state.vipIds, programmed.vipIds);
  assert.deepEqual(state.backendIds, programmed.backendIds);
  assert.deepEqual(state.addressIds, programmed.addressIds);

  // The planner alone rebuilds the adopted rings, and writing them changes no slot ...
  const rebuilt = plan(state, baseState(), RING_SIZE);
  assert.equal(rebuilt.writeRings.length, programmed.vips.size);
  for (const write of rebuilt.writeRings) assert.deepEqual(balancer.readRing(write.vipId), buildRing(write));
  // ... and reconcileAdopted names the VIPs and takes the signatures up front.
  const matched = reconcileAdopted(state, baseState(), RING_SIZE, (id) => balancer.readRing(id));
  assert.deepEqual([...matched.identical].sort(), [...programmed.vips.keys()].sort());
  assert.deepEqual(matched.differing, []);
  assert.deepEqual(matched.unwanted, []);
  for (const [key, vip] of programmed.vips) {
    assert.equal(matched.state.vips.get(key)!.name, vip.name);
    assert.equal(matched.state.vips.get(key)!.backendsSignature, vip.backendsSignature);
  }
  assert.ok(isEmptyPlan(plan(matched.state, baseState(), RING_SIZE)), 'plan(reconciled, S) is empty');

  // The established flow hits the table on the new program and reaches the same backend.
  const hitsBefore = balancer.globalCounters().conn_hit.packets;
  const ack = runner.run(balancer.progFd, tcp4(WEB4.address, 80, 41000, false));
  assert.equal(ack.retval, XDP_TX);
  assert.equal(outerDestination(ack.dataOut), firstBackend);
  assert.equal(balancer.globalCounters().conn_hit.packets - hitsBefore, 1n, 'a connection-table hit after the restart');
  assert.equal(decapsulate(ack.dataOut).length > 0, true);
});

test('after a restart, a changed desired state writes only the ring slots that differ', rootOnly, () => {
  pins = pinRoot();
  let balancer = load();
  const before = program(balancer, emptyState(LIMITS)).next;
  balancer = restart(balancer);
  const { state } = adoptBalancer(balancer);
  const changed = baseState({ web4Backends: [{ address: B4[0]! }, { address: B4[1]! }, { address: B4[2]!, weight: 0 }] });
  const ringBefore = balancer.readRing(0);
  const matched = reconcileAdopted(state, changed, RING_SIZE, (id) => balancer.readRing(id));
  assert.deepEqual(matched.differing, ['TCP/10.10.0.1:80']);
  assert.deepEqual(matched.identical, ['UDP/[fd00:10::1]:53']);
  const p = plan(matched.state, changed, RING_SIZE);
  assert.equal(p.writeRings.length, 1);
  const write = p.writeRings[0]!;
  const drained = before.backends.get(B4[2]!)!;
  const owned = ringBefore.filter((id) => id === drained).length;
  assert.deepEqual(p.writeVips, [], 'the VIP entries stay');
  const applied = applyPlan(balancer, p);
  assert.equal(applied.outcome, 'applied');
  if (applied.outcome === 'applied') assert.ok(applied.counts.ringSlotsWritten >= owned && applied.counts.ringSlotsWritten < RING_SIZE / 2, `${applied.counts.ringSlotsWritten} slots written`);
  assert.deepEqual(balancer.readRing(0), buildRing(write));
  assert.ok(!balancer.readRing(0).includes(drained), 'the drained backend holds no slot');
});

test('adoption repairs what a crash in the middle of a plan leaves behind', rootOnly, () => {
  pins = pinRoot();
  let balancer = load();
  program(balancer, emptyState(LIMITS));
  // A VIP entry whose id is beyond the table, a live vip_state for an unused id, a
  // vip_state that disagrees with its VIP entry, and an address in a slot the data
  // plane never looks at.
  balancer.maps.vips_v4.update(vip4Key({ addr: '10.10.0.99', port: 80, proto: 6 }), vipMeta({ flags: 0, vipId: LIMITS.maxVips + 1, gen: 7 }));
  balancer.maps.vip_state.update(u32(5), vipMeta({ flags: 0, vipId: 5, gen: 9 }));
  balancer.maps.vip_state.update(u32(0), vipMeta({ flags: 2, vipId: 0, gen: 4 }));
  const [s1, s2] = candidateSlots('10.10.0.77', Math.log2(balancer.addressSlots));
  let wrong = 0;
  while (wrong === s1 || wrong === s2 || wrong === candidateSlots('10.10.0.1', Math.log2(balancer.addressSlots))[0] || wrong === candidateSlots('10.10.0.1', Math.log2(balancer.addressSlots))[1]) wrong++;
  balancer.maps.vip_addrs_v4.update(u32(wrong), vipAddr4({ addr: '10.10.0.77', flags: 1, addrId: 40 }));

  balancer = restart(balancer);
  const adopted = adoptBalancer(balancer);
  assert.deepEqual(adopted.findings.map((f) => f.problem).sort(), ['address_misplaced', 'vip_id_out_of_range', 'vip_state_mismatch', 'vip_state_stray']);
  assert.ok(adopted.findings.every((f) => f.repaired));
  assert.equal(adopted.state.lastGen, 9, 'gens seen anywhere are never handed out again soon');
  // The maps are clean now: a second adoption finds nothing, and the plan is empty.
  const again = adoptBalancer(balancer);
  assert.deepEqual(again.findings, []);
  const matched = reconcileAdopted(again.state, baseState(), RING_SIZE, (id) => balancer.readRing(id));
  assert.ok(isEmptyPlan(plan(matched.state, baseState(), RING_SIZE)));
});
