// The Agent end to end on real BPF, attached to a veth inside a namespace the test
// creates; its HTTP server listens on 127.0.0.1 (loopback only). Reconcile results,
// serialization, failures that leave the maps alone, restarts that write nothing,
// cross-node ring digests, metrics after real packets, and the probes.
import { afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { inNetns } from '../../src/agent/bpf/attach.ts';
import { TestRunner, XDP_PASS, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import { Agent, type ReconcileResult } from '../../src/agent/agent.ts';
import type { AgentConfig } from '../../src/agent/config.ts';
import { BALANCER_REASONS } from '../../src/agent/metrics.ts';
import {
  B4, NEXTHOP_MAC, OBJECT_DIR, RING_SIZE, TestNetns, WEB4, baseState, buildBpf, desired, memoryLogger, pinRoot, rootOnly, tcp4,
} from './support.ts';

let ns: TestNetns | undefined;
const pinRoots: ReturnType<typeof pinRoot>[] = [];
const agents: Agent[] = [];
const runner = new TestRunner();

before(() => buildBpf());
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  for (const p of pinRoots.splice(0)) p.cleanup();
  ns?.delete();
  ns = undefined;
});

function agentConfig(root: string, iface = 'fx0'): AgentConfig {
  return {
    nodeName: 'node-a',
    pinRoot: root,
    mountBpffs: false, // setup mounted it; tests never mount on the host
    bpfObjectDir: OBJECT_DIR,
    sysctlRoot: '/proc/sys',
    balancer: {
      interfaces: [{ name: iface, attachMode: 'auto' }],
      nextHop: { mac: NEXTHOP_MAC },
      ringSize: RING_SIZE, maxVips: 8, maxBackends: 64, connTableSize: 4096, mtu: 1500, udpTimeoutSeconds: 30, tunnelTtl: 64,
      tunnelSource4: '172.16.0.0', tunnelSource6: 'fd00:7::', guePort: 6080,
    },
    metrics: { host: '127.0.0.1', port: 0 },
  };
}

async function startAgent(options: { iface?: string; root?: string } = {}): Promise<{ agent: Agent; root: string }> {
  if (ns === undefined) {
    ns = new TestNetns();
    ns.vethPair('fx0', 'fx1');
    ns.vethPair('fy0', 'fy1');
  }
  let root = options.root;
  if (root === undefined) {
    const pins = pinRoot();
    pinRoots.push(pins);
    root = pins.root;
  }
  const agent = await Agent.start(agentConfig(root, options.iface), { netns: ns.path, log: memoryLogger().log });
  agents.push(agent);
  return { agent, root };
}

async function get(agent: Agent, path: string): Promise<{ status: number; text: string }> {
  const { port } = agent.httpAddress!;
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, text: await res.text() };
}

function programmed(result: ReconcileResult): Extract<ReconcileResult, { outcome: 'programmed' }> {
  assert.equal(result.outcome, 'programmed', JSON.stringify(result));
  return result as Extract<ReconcileResult, { outcome: 'programmed' }>;
}

test('reconcile programs the state and reports generation, ring digests and counts', rootOnly, async () => {
  const { agent } = await startAgent();
  const result = programmed(await agent.reconcile(baseState()));
  assert.equal(result.generation, 1);
  assert.deepEqual(result.vips.map((v) => [v.name, v.key, v.backends]), [['default/web', 'TCP/10.10.0.1:80', 3], ['default/dns', 'UDP/[fd00:10::1]:53', 2]]);
  for (const v of result.vips) assert.match(v.ringDigest, /^[0-9a-f]{16}$/);
  assert.equal(result.counts.ringSlotsWritten, 2 * RING_SIZE);
  assert.deepEqual(result.decap.pods, []);
  assert.equal(agent.balancer!.readVips().length, 2);

  const again = programmed(await agent.reconcile(baseState()));
  assert.ok(Object.values(again.counts).every((n) => n === 0), 'the same state twice writes nothing');
  assert.deepEqual(again.vips, result.vips);
  assert.equal(agent.status().programmedGeneration, 1);
});

test('ring digests agree across nodes whatever backend ids they allocated', rootOnly, async () => {
  const a = await startAgent({ iface: 'fx0' });
  const b = await startAgent({ iface: 'fy0' });
  // Node b has a history: other backends took the low ids first.
  programmed(await b.agent.reconcile(desired({ vips: [{ ...WEB4, backends: [{ address: '10.9.9.9' }, { address: '10.9.9.8' }] }] })));
  const onA = programmed(await a.agent.reconcile(baseState()));
  const onB = programmed(await b.agent.reconcile(baseState()));
  assert.notDeepEqual(a.agent.programmed!.backends, b.agent.programmed!.backends, 'the ids differ');
  assert.deepEqual(onB.vips.map((v) => v.ringDigest), onA.vips.map((v) => v.ringDigest));
});

test('reconciles run one at a time and a newer state supersedes a waiting one', rootOnly, async () => {
  const { agent } = await startAgent();
  const first = agent.reconcile({ ...baseState(), generation: 1 });
  const second = agent.reconcile({ ...baseState(), generation: 2 });
  const third = agent.reconcile({ ...baseState(), generation: 3 });
  const results = await Promise.all([first, second, third]);
  assert.deepEqual(results.map((r) => r.outcome), ['programmed', 'superseded', 'programmed']);
  assert.deepEqual(results[1], { outcome: 'superseded', generation: 2, supersededBy: 3 });
  assert.equal(agent.status().programmedGeneration, 3);
});

test('a state that cannot be programmed fails in words and leaves the maps as they were', rootOnly, async () => {
  const { agent } = await startAgent();
  programmed(await agent.reconcile(baseState()));
  const tooMany = desired({
    generation: 2,
    vips: Array.from({ length: 9 }, (_, i) => ({ name: `ns/v${i}`, address: `10.20.0.${i + 1}`, port: 80, protocol: 'TCP' as const, backends: [{ address: B4[0]! }] })),
  });
  const result = await agent.reconcile(tooMany);
  assert.equal(result.outcome, 'failed');
  if (result.outcome !== 'failed') return;
  assert.equal(result.errors[0]?.code, 'ERR_DESIRED_STATE');
  assert.match(result.errors[0]!.message, /no free VIP id/);
  assert.equal(result.programmedGeneration, 1);
  assert.deepEqual(agent.balancer!.readVips().map((v) => v.address).sort(), ['10.10.0.1', 'fd00:10::1']);
  const ready = await get(agent, '/readyz');
  assert.equal(ready.status, 503);
  assert.match(ready.text, /no free VIP id/);
  // The next good state programs again.
  programmed(await agent.reconcile({ ...baseState(), generation: 3 }));
  assert.equal((await get(agent, '/readyz')).status, 200);
});

test('a restarted agent adopts the data plane: forwarding went on, and the same state writes nothing', rootOnly, async () => {
  const { agent, root } = await startAgent();
  const before = programmed(await agent.reconcile(baseState()));
  const progBefore = agent.balancer!.object.program('balancer').id;
  await agent.stop();
  agents.splice(agents.indexOf(agent), 1);
  assert.equal(await inNetns(ns!.path, 'xdpProgramId', 'fx0'), progBefore, 'stop() leaves the program attached');

  const { agent: next } = await startAgent({ root });
  assert.equal(next.status().attachments[0]?.action, 'replaced');
  assert.equal(next.programmed!.vips.size, 2, 'adopted from the maps');
  const after = programmed(await next.reconcile(baseState()));
  assert.ok(Object.values(after.counts).every((n) => n === 0), `nothing written: ${JSON.stringify(after.counts)}`);
  assert.deepEqual(after.vips, before.vips, 'same names and ring digests');
});

test('metrics show the data plane counters after real packets, and the probes answer', rootOnly, async () => {
  const { agent } = await startAgent();
  assert.equal((await get(agent, '/healthz')).status, 200);
  const notYet = await get(agent, '/readyz');
  assert.equal(notYet.status, 503);
  assert.match(notYet.text, /no desired state programmed yet/);

  programmed(await agent.reconcile(baseState()));
  const progFd = agent.balancer!.progFd;
  const forwarded = runner.run(progFd, tcp4(WEB4.address, 80, 42000, true));
  assert.equal(forwarded.retval, XDP_TX);
  const backend = Array.from(forwarded.dataOut.subarray(30, 34)).join('.');
  assert.equal(runner.run(progFd, tcp4('192.0.2.200', 80, 42001, true)).retval, XDP_PASS);

  const { status, text } = await get(agent, '/metrics');
  assert.equal(status, 200);
  const expectLine = (line: string) => assert.ok(text.split('\n').includes(line), `metrics lack: ${line}`);
  expectLine('fulcrum_agent_vip_packets_total{vip="default/web",address="10.10.0.1",port="80",protocol="TCP"} 1');
  expectLine(`fulcrum_agent_vip_bytes_total{vip="default/web",address="10.10.0.1",port="80",protocol="TCP"} ${tcp4(WEB4.address, 80, 42000, true).length}`);
  expectLine('fulcrum_agent_vip_packets_total{vip="default/dns",address="fd00:10::1",port="53",protocol="UDP"} 0');
  expectLine(`fulcrum_agent_backend_packets_total{backend="${backend}"} 1`);
  // At least our packet: the kernel's own IPv6 chatter on the new veth (MLD, router
  // solicitations) meets the attached program too.
  const passed = /^fulcrum_agent_not_forwarded_packets_total\{reason="pass_not_vip",action="pass"\} (\d+)$/m.exec(text);
  assert.ok(passed !== null && Number(passed[1]) >= 1, 'pass_not_vip counted');
  for (const reason of BALANCER_REASONS) assert.match(text, new RegExp(`fulcrum_agent_not_forwarded_packets_total\\{reason="${reason}",`));
  assert.doesNotMatch(text, /not_forwarded_packets_total\{reason="decap_/);
  expectLine('fulcrum_agent_conn_table_misses_total 1');
  expectLine('fulcrum_agent_conn_table_hits_total 0');
  expectLine('fulcrum_agent_conn_table_udp_expired_total 0');
  expectLine(`fulcrum_agent_ring_slots_written_total ${2 * RING_SIZE}`);
  expectLine('fulcrum_agent_vips 2');
  expectLine('fulcrum_agent_backends 5');
  expectLine('fulcrum_agent_programming_duration_seconds_count{outcome="programmed"} 1');
  expectLine('fulcrum_agent_reconciles_total{outcome="programmed"} 1');
  assert.match(text, /fulcrum_agent_build_info\{version="[^"]+",node="node-a",nodejs="[^"]+"\} 1/);
  assert.match(text, /# TYPE fulcrum_agent_programming_errors_total counter/);
  assert.match(text, /fulcrum_agent_process_cpu_seconds_total/);

  const ready = await get(agent, '/readyz');
  assert.equal(ready.status, 200, ready.text);
  assert.deepEqual(JSON.parse(ready.text).checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok]),
    [['dataplane', true], ['attached:fx0', true], ['reconciled', true]]);
  assert.equal((await get(agent, '/nope')).status, 404);
});

test('readiness notices a link that was removed behind the agent\'s back', rootOnly, async () => {
  const { agent } = await startAgent();
  programmed(await agent.reconcile(baseState()));
  // Someone deletes the interface: the link goes defunct.
  ns!.ip('link', 'del', 'fx0');
  const ready = await get(agent, '/readyz');
  assert.equal(ready.status, 503);
  assert.match(ready.text, /fx0 is gone/);
});
