// Backend changes under traffic: draining a backend (weight 0) and removing one. The
// balancers here find their next hop in the kernel FIB (the other lab files use a
// configured MAC), so both next-hop modes carry real traffic.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { podBySourcePort } from '../../src/lab/traffic.ts';
import { assertAllAnswered, assertCompleted, assertSpread, transfersOnEveryPod, useLab } from './support.ts';

describe('backend changes under traffic (next hop from the kernel FIB)', () => {
  const lab = useLab({ nextHop: 'fib' });

  test('weight 0 drains: established transfers finish without a reset, new flows avoid the backend', async (t) => {
    const l = lab();
    const client = l.client('client1');
    // Long paced downloads, at least one on every pod (on pod2 above all).
    const transfers = await transfersOnEveryPod(client, l.topology.vip4, ['pod1', 'pod2', 'pod3'], { bytes: 24_000_000, durationMs: 4000 });
    t.diagnostic(`transfers running on: ${transfers.map((tr) => tr.pod()).join(', ')}`);
    try {
      await l.setWeights({ pod2: 0 });
      const onPod2 = transfers.filter((tr) => tr.pod() === 'pod2');
      const progressAtDrain = onPod2.map((tr) => tr.bytes());

      const fresh = [...await client.http(l.topology.vip4, { count: 300, concurrency: 64 }), ...await client.http(l.topology.vip6, { count: 300, concurrency: 64 })];
      t.diagnostic(`new flows while pod2 drains: ${assertSpread(fresh, { pod1: 1, pod3: 1 }, 0.15, 'new flows while pod2 drains')}`);

      for (const [i, tr] of transfers.entries()) {
        const result = await tr.result();
        assertCompleted(result, `transfer ${i} on ${result.pod}`);
      }
      for (const [i, tr] of onPod2.entries()) {
        assert.ok(tr.bytes() > progressAtDrain[i]!, 'the transfer on pod2 kept going after the drain started');
      }
      t.diagnostic(`${onPod2.length} transfer(s) on pod2 finished after the drain: ${onPod2.map((tr) => `${progressAtDrain[onPod2.indexOf(tr)]} → ${tr.bytes()} bytes`).join(', ')}`);
    } finally {
      await l.setWeights({ pod2: 1 });
    }
  });

  test('removing a backend moves only the flows that were on it', async (t) => {
    const l = lab();
    const client = l.client('client2');
    // Short flows: placed by the ring before and after (a SYN never reads the table).
    const ports = client.takePorts(600);
    const before = podBySourcePort(await client.http(l.topology.vip4, { sourcePorts: ports, concurrency: 64 }));
    assert.equal(before.size, ports.length);
    // Established connections: placed by the connection table once established.
    const held = await client.hold(l.topology.vip4, { count: 60 });
    try {
      assertAllAnswered(held.opened, 'held connections');
      await l.removeBackend('pod3');

      const again = await held.again();
      let heldKept = 0;
      for (const [i, opened] of held.opened.entries()) {
        if (opened.pod === 'pod3') continue;
        assert.equal(again[i]!.pod, opened.pod, `held connection from port ${opened.sourcePort} on ${opened.pod}: ${again[i]!.error ?? again[i]!.pod}`);
        heldKept++;
      }
      const heldOnPod3 = held.opened.length - heldKept;
      const heldOnPod3Broken = again.filter((r, i) => held.opened[i]!.pod === 'pod3' && r.pod !== 'pod3').length;
      t.diagnostic(`held connections: ${heldKept} on pod1/pod2 all kept their pod; ${heldOnPod3} were on pod3 (${heldOnPod3Broken} of them now fail or answer elsewhere)`);

      const after = podBySourcePort(await client.http(l.topology.vip4, { sourcePorts: ports, concurrency: 64 }));
      assert.equal(after.size, ports.length, 'every flow is answered after the removal');
      let kept = 0;
      let moved = 0;
      let wasOnPod3 = 0;
      for (const port of ports) {
        const was = before.get(port)!;
        const now = after.get(port)!;
        assert.notEqual(now, 'pod3', `port ${port} still reaches the removed pod`);
        if (was === 'pod3') wasOnPod3++;
        else if (now === was) kept++;
        else moved++;
      }
      t.diagnostic(`${ports.length} flows repeated after removing pod3: ${wasOnPod3} were on pod3 and moved; of the other ${kept + moved}, ${kept} kept their pod and ${moved} moved`);
      // Maglev moves only the removed backend's slots, up to a small disruption of
      // the others' (well under 1 % with a 65537-slot ring and three backends).
      assert.ok(moved <= (kept + moved) * 0.02, `${moved} of ${kept + moved} flows that were not on pod3 moved`);
    } finally {
      await held.close();
      await l.addBackend('pod3');
    }
  });

  test('a next hop the kernel has not resolved yet: the stack forwards the first packets and resolves it', async (t) => {
    // FIB mode on a balancer that has forgotten its neighbours (as after a reboot):
    // the FIB lookup finds the route but no neighbour, the program passes the
    // encapsulated packet to the stack (pass_fib_miss), which must route it and
    // resolve the router, so later packets take the fast path again.
    const l = lab();
    for (const role of ['lb1', 'lb2'] as const) await l.topology.flushNeighbours(role);
    const missesBefore = await l.metric('lb1', 'fulcrum_agent_not_forwarded_packets_total', { reason: 'pass_fib_miss' })
      + await l.metric('lb2', 'fulcrum_agent_not_forwarded_packets_total', { reason: 'pass_fib_miss' });
    for (const [name, target] of [['IPv4', l.topology.vip4], ['IPv6', l.topology.vip6]] as const) {
      const results = await l.client('client1').http(target, { count: 20, timeoutMs: 4000 });
      assertAllAnswered(results, `HTTP ${name} right after the balancers forgot their neighbours`);
    }
    const misses = await l.metric('lb1', 'fulcrum_agent_not_forwarded_packets_total', { reason: 'pass_fib_miss' })
      + await l.metric('lb2', 'fulcrum_agent_not_forwarded_packets_total', { reason: 'pass_fib_miss' }) - missesBefore;
    t.diagnostic(`packets passed to the stack for want of a neighbour: ${misses}`);
    assert.ok(misses > 0, 'the flush left no FIB miss to exercise');
  });
});
