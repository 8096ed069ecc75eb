// Agent benchmark: Maglev ring builds, programming a node from empty, applying a
// one-backend change, and the memory the programmed state takes.
//
//   npm run bench:agent            (writes bench/out/agent.json)
//
// program_full_ms and delta_one_backend_ms are the agent's own reconcile path — plan()
// (pure: rings, ids, address table) then applyPlan() (batched map writes) — against a
// real loaded balancer. rss_mb is this process's resident set after programming 512
// VIPs × 100 backends (what the agent holds: the programmed state with every ring).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { NodeDesiredState } from '../src/shared/desired-state.ts';
import { BalancerProgram } from '../src/agent/dataplane/balancer.ts';
import { plan } from '../src/agent/dataplane/plan.ts';
import { applyPlan } from '../src/agent/dataplane/apply.ts';
import { emptyState } from '../src/agent/dataplane/state.ts';
import { benchMaglev } from './maglev.ts';
import { AGENT_NODE_OPTIONS } from '../src/agent/runtime.ts';

const ROOT = join(import.meta.dirname, '..');
const RING_SIZE = 65537;
const VIPS = 512;
const BACKENDS_PER_VIP = 100;
const LIMITS = { maxVips: VIPS, maxBackends: 65536, connTableSize: 65536 };

function desired(vips: number, backendsPerVip: number, drop?: { vip: number; backend: number }) {
  return NodeDesiredState.parse({
    vips: Array.from({ length: vips }, (_, v) => ({
      name: `bench/vip-${v}`,
      address: `10.${100 + (v >> 8)}.${v & 255}.1`,
      port: 80,
      protocol: 'TCP',
      backends: Array.from({ length: backendsPerVip }, (_, b) => ({ address: `172.${16 + (v >> 8)}.${v & 255}.${b + 1}` }))
        .filter((_, b) => !(drop && drop.vip === v && drop.backend === b)),
    })),
  });
}

function ok<T extends { outcome: string }>(result: T): T {
  if (result.outcome !== 'applied') throw new Error(`apply failed: ${JSON.stringify(result)}`);
  return result;
}

function load(): BalancerProgram {
  return BalancerProgram.load({
    objectPath: join(ROOT, 'bpf/build/balancer.bpf.o'),
    config: { ringSize: RING_SIZE, mtu: 1500, tunnelTtl: 64, guePort: 6080, tunnelSrc4: '172.16.0.0', nexthopMac: '02:00:00:00:00:fe' },
    limits: LIMITS,
  });
}

/** Programs 512 × 100 from empty in a fresh process, keeps only what the agent keeps
 * (the programmed state), and reports the time and the resident set. */
function programFullChild(): void {
  const balancer = load();
  let state = desired(VIPS, BACKENDS_PER_VIP);
  const start = performance.now();
  const p = plan(emptyState(LIMITS), state, RING_SIZE);
  const planMs = performance.now() - start;
  const applied = ok(applyPlan(balancer, p));
  const totalMs = performance.now() - start;
  const kept = p.next;
  state = desired(0, 0);
  globalThis.gc?.();
  const rssMb = process.memoryUsage().rss / (1 << 20);
  process.stdout.write(JSON.stringify({ totalMs, planMs, applyMs: applied.durationMs, slots: applied.counts.ringSlotsWritten, rssMb, vips: kept.vips.size }));
  balancer.close();
}

/** One backend removed from one 100-backend VIP, planned and applied, on a node
 * holding `vips` VIPs; median of 5 different VIPs. */
function deltaMs(vips: number): { median: number; all: number[] } {
  const balancer = load();
  try {
    const full = desired(vips, BACKENDS_PER_VIP);
    let current = ok2(balancer, plan(emptyState(LIMITS), full, RING_SIZE));
    const times: number[] = [];
    for (let k = 0; k < 5; k++) {
      const changed = desired(vips, BACKENDS_PER_VIP, { vip: (k * 97) % vips, backend: 42 });
      const t0 = performance.now();
      const p = plan(current, changed, RING_SIZE);
      ok(applyPlan(balancer, p));
      times.push(performance.now() - t0);
      current = ok2(balancer, plan(p.next, full, RING_SIZE));
    }
    const sorted = [...times].sort((a, b) => a - b);
    return { median: sorted[2]!, all: times };
  } finally {
    balancer.close();
  }
}

function ok2(balancer: BalancerProgram, p: ReturnType<typeof plan>) {
  ok(applyPlan(balancer, p));
  return p.next;
}

async function main(): Promise<void> {
  execFileSync('make', ['-s', '-C', join(ROOT, 'bpf')]);
  const maglev = await benchMaglev();
  // The child runs with the V8 flags the agent is deployed with (AGENT_NODE_OPTIONS):
  // a small young generation returns the garbage of programming to the OS promptly.
  const child = JSON.parse(execFileSync(process.execPath, ['--expose-gc', ...AGENT_NODE_OPTIONS, import.meta.filename, '--program-full-child'], { maxBuffer: 1 << 20 }).toString()) as {
    totalMs: number; planMs: number; applyMs: number; slots: number; rssMb: number;
  };
  const deltaOneVip = deltaMs(1);
  const deltaFullNode = deltaMs(VIPS);

  const result = {
    maglev_ms: maglev,
    program_full_ms: round(child.totalMs),
    delta_one_backend_ms: round(deltaOneVip.median),
    delta_one_backend_full_node_ms: round(deltaFullNode.median),
    rss_mb: round(child.rssMb),
  };
  console.log(`Maglev ring (65537 slots), median ms: 10 backends ${round(maglev['10'])}, 100: ${round(maglev['100'])}, 1000: ${round(maglev['1000'])}  (target <= 4)`);
  console.table([
    { figure: 'program_full_ms', value: result.program_full_ms, target: '<= 10000', detail: `${VIPS} VIPs × ${BACKENDS_PER_VIP} backends from empty; plan ${round(child.planMs)} ms, apply ${round(child.applyMs)} ms, ${child.slots} ring slots` },
    { figure: 'delta_one_backend_ms', value: result.delta_one_backend_ms, target: '<= 20', detail: `node with one 100-backend VIP; median of 5: ${deltaOneVip.all.map(round).join(', ')}` },
    { figure: 'delta_one_backend_full_node_ms', value: result.delta_one_backend_full_node_ms, target: '(report)', detail: `node with ${VIPS} VIPs × ${BACKENDS_PER_VIP}; median of 5: ${deltaFullNode.all.map(round).join(', ')}` },
    { figure: 'rss_mb', value: result.rss_mb, target: '<= 250', detail: `fresh agent-like process (${AGENT_NODE_OPTIONS.join(' ')}) after programming ${VIPS} × ${BACKENDS_PER_VIP}` },
  ]);
  mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/out/agent.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log('wrote bench/out/agent.json');
}

const round = (x: number) => Math.round(x * 10) / 10;

if (process.argv.includes('--program-full-child')) programFullChild();
else await main();
