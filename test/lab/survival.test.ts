// The data plane outlives its agent: a balancer agent killed with SIGKILL in the
// middle of a long transfer, then started again; and the BPF object replaced with a
// freshly built one through the agent's upgrade path. Neither may reset the
// transfer or lose its connection-table entry.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BALANCER_ROLES } from '../../src/lab/topology.ts';
import type { Lab } from '../../src/lab/lab.ts';
import type { Transfer } from '../../src/lab/traffic.ts';
import { assertAllAnswered, assertCompleted, sleep, useLab } from './support.ts';

/** A paced download long enough to span a kill and a restart (about 1.5 s each). */
const TRANSFER = { direction: 'download', bytes: 48_000_000, durationMs: 6000 } as const;

/** The transfer's flow as lb1's connection table keys it. */
function flowOf(lab: Lab, transfer: Transfer) {
  return { client: lab.topology.clients.client1.local.ipv4, sourcePort: transfer.sourcePort, port: 80, protocol: 'TCP' as const };
}

describe('the data plane outlives the agent (lb1 carries every flow)', () => {
  const lab = useLab({ nextHop: 'mac' });

  test('SIGKILL and restart of the agent during a long transfer: no reset, the transfer completes, the table entry survives', async (t) => {
    const l = lab();
    await l.routeVipsVia(['lb1']);
    try {
      const client = l.client('client1');
      const transfer = await client.startTransfer(l.topology.vip4, TRANSFER);
      const held = await client.hold(l.topology.vip6, { count: 30 });
      assertAllAnswered(held.opened, 'held IPv6 connections');
      await transfer.waitForBytes(4_000_000);
      const entry = l.connEntry('lb1', flowOf(l, transfer));
      assert.ok(entry, 'lb1 has a connection-table entry for the transfer');
      assert.equal(entry.pod, transfer.pod());

      const agentPid = l.agentPid('lb1');
      await l.killAgent('lb1');
      assert.equal(l.agentPid('lb1'), undefined, 'the agent is dead');
      const atKill = transfer.bytes();
      await sleep(1000);
      const whileDead = transfer.bytes();
      assert.ok(whileDead > atKill, `the transfer moved on while no agent ran (${atKill} → ${whileDead} bytes)`);

      await l.startAgent('lb1');
      t.diagnostic(`agent ${agentPid} killed at ${atKill} bytes; ${whileDead} bytes 1 s later with no agent; restarted as ${l.agentPid('lb1')} at ${transfer.bytes()} bytes`);
      const after = l.connEntry('lb1', flowOf(l, transfer));
      assert.deepEqual(after && { backend: after.backend, backendId: after.backendId }, { backend: entry.backend, backendId: entry.backendId },
        'the entry survived with the same backend');

      const result = await transfer.result();
      assertCompleted(result, 'transfer across the kill');
      t.diagnostic(`transfer: ${result.bytes} bytes from ${result.pod} in ${result.durationMs} ms, longest stall ${result.maxGapMs} ms`);
      const again = await held.again();
      assert.deepEqual(again.map((r) => r.pod ?? r.error), held.opened.map((r) => r.pod), 'held connections kept their pods');
      await held.close();
    } finally {
      await l.routeVipsVia(BALANCER_ROLES);
    }
  });

  test('a rebuilt BPF object swapped in by the agent during a long transfer: no reset, the table entry survives', async (t) => {
    const l = lab();
    const objectDir = await l.buildBpfObjects();
    await l.routeVipsVia(['lb1']);
    try {
      const transfer = await l.client('client1').startTransfer(l.topology.vip4, TRANSFER);
      await transfer.waitForBytes(4_000_000);
      const entry = l.connEntry('lb1', flowOf(l, transfer));
      assert.ok(entry, 'lb1 has a connection-table entry for the transfer');

      const { before, after } = await l.upgradeBalancer('lb1', objectDir);
      assert.notEqual(after, before, 'the pinned link runs the new program');
      t.diagnostic(`lb1's link switched from program ${before} to ${after} (${objectDir}) at ${transfer.bytes()} bytes`);
      const survived = l.connEntry('lb1', flowOf(l, transfer));
      assert.equal(survived?.backendId, entry.backendId, 'the entry survived with the same backend');

      const result = await transfer.result();
      assertCompleted(result, 'transfer across the upgrade');
      t.diagnostic(`transfer: ${result.bytes} bytes from ${result.pod} in ${result.durationMs} ms, longest stall ${result.maxGapMs} ms`);
      // New flows work on the new program.
      assertAllAnswered(await l.client('client2').http(l.topology.vip4, { count: 30 }), 'new flows after the upgrade');
    } finally {
      await l.routeVipsVia(BALANCER_ROLES);
    }
  });
});
