// XDP data-plane benchmark: nanoseconds per packet per scenario, as the kernel
// measures them. One BPF_PROG_TEST_RUN call per packet (repeat = 1): with repeat = N
// the kernel re-runs the program on its own output, so after the first pass it would
// time an already-encapsulated packet. Each scenario's figure is the mean of the
// kernel-reported durations over CALLS_PER_ROUND × ROUNDS calls; scenarios are
// interleaved round by round so slow drift on the machine hits all of them alike. The
// empty program (`floor`) is measured the same way, so results compare across
// machines as (ns − floor).
//
// Side by side: with FULCRUM_BENCH_BASELINE=<git revision> the balancer of that revision
// is built too (git archive of its bpf/, its own make) and both run the same frames,
// scenario by scenario and round by round in alternating order, each with maps of its
// own; the report gives each net of the floor and their ratio. A ratio from one run on
// one machine is what compares: figures taken on another host (Katran's, say) do not.
//
//   npm run bench:xdp                                    (writes bench/out/xdp.json)
//   FULCRUM_BENCH_BASELINE=0949017 npm run bench:xdp     (this build against that one)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfObject } from '../src/agent/bpf/object.ts';
import { TestRunner, XDP_PASS, XDP_TX } from '../src/agent/bpf/test-run.ts';
import { BalancerProgram } from '../src/agent/dataplane/balancer.ts';
import { buildMaglevRing } from '../src/agent/dataplane/maglev.ts';
import { AddressTable } from '../src/agent/dataplane/address-table.ts';
import { ether, icmpEchoRequest, ipv4, ipv6, tcp, udp } from '../test/support/packets.ts';

const ROOT = join(import.meta.dirname, '..');
const CALLS_PER_ROUND = Number(process.env.FULCRUM_BENCH_CALLS ?? 25_000);
const ROUNDS = Number(process.env.FULCRUM_BENCH_ROUNDS ?? 8); // 200,000 calls per scenario
const RING_SIZE = 65537;
const BACKENDS = 100;
const CONN_TABLE = Number(process.env.FULCRUM_BENCH_CONN_TABLE ?? 4_194_304);

const BASELINE = process.env.FULCRUM_BENCH_BASELINE;
/** The data-plane issue's targets, as (ns − floor) of this build over the baseline's. */
const RATIO_TARGETS: Readonly<Record<string, number>> = {
  v4_tcp_established: 0.88, v6_tcp_established: 0.88, v4_udp_established: 0.88, v4_lru_bypass: 0.82,
  v4_tcp_new_flow_empty: 0.75, v4_tcp_new_flow_full: 0.75, icmp_echo_vip: 0.73,
};

const LB_MAC = '02:00:00:00:00:02';
const CLIENT_MAC = '02:00:00:00:00:01';
const frame = (l3: Buffer) => ether({ dst: LB_MAC, src: CLIENT_MAC }, l3);
const payload = 'x'.repeat(64);

type Scenario = { name: string; prog: 'floor' | 'balancer'; input: Buffer; expect: number; mutate?: (buf: Buffer, i: number) => void };

function main(): void {
  execFileSync('make', ['-s', '-C', join(ROOT, 'bpf')]);
  const floorObj = BpfObject.open(join(ROOT, 'bpf/build/floor.bpf.o'));
  floorObj.load();
  const floorFd = floorObj.programFd('floor');
  const baselineDir = BASELINE === undefined ? undefined : buildBaseline(BASELINE);
  const load = (objectPath: string) => BalancerProgram.load({
    objectPath,
    config: { ringSize: RING_SIZE, mtu: 1500, tunnelTtl: 64, guePort: 6080, tunnelSrc4: '172.16.0.0', tunnelSrc6: 'fd00:7::', nexthopMac: '02:00:00:00:00:fe' },
    limits: { maxVips: 512, maxBackends: 4096, connTableSize: CONN_TABLE },
  });
  const programs: Program[] = [];
  try {
    programs.push({ label: 'current', balancer: load(process.env.FULCRUM_BENCH_OBJECT ?? join(ROOT, 'bpf/build/balancer.bpf.o')) });
    if (baselineDir !== undefined) programs.push({ label: `baseline ${BASELINE}`, balancer: load(join(baselineDir, 'bpf/build/balancer.bpf.o')) });
    for (const p of programs) program(p.balancer);
    report(run(programs, floorFd));
  } finally {
    for (const p of programs) p.balancer.close();
    floorObj.close();
    if (baselineDir !== undefined) rmSync(baselineDir, { recursive: true, force: true });
  }
}

type Program = { label: string; balancer: BalancerProgram };

/** bpf/ of `rev` (git archive), built with its own Makefile in a directory of its own. */
function buildBaseline(rev: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'fulcrum-bench-baseline-'));
  execFileSync('bash', ['-c', `git -C "$ROOT" archive "$REV" bpf | tar -x -C "$DIR"`], { env: { ...process.env, ROOT, REV: rev, DIR: dir } });
  execFileSync('make', ['-s', '-C', join(dir, 'bpf')]);
  return dir;
}

const VIP4 = '10.10.0.1';
const VIP6 = 'fd00:10::1';
/** An address whose only VIP bypasses the connection table. */
const VIP4_BYPASS = '10.10.0.2';
/** An address with both kinds of VIP: its established flows look the VIP up before the
 * table (so bypass traffic never pays a table miss), which costs them one lookup more. */
const VIP4_MIXED = '10.10.0.3';

/** Six VIPs on 100 backends each (mixed families), 65537-slot Maglev rings. */
function program(balancer: BalancerProgram): void {
  const backends = Array.from({ length: BACKENDS }, (_, i) => ({ id: i + 1, address: i % 2 ? `10.1.${i >> 8}.${i & 255}` : `fd00:1::${i.toString(16)}` }));
  balancer.writeBackends(backends);
  const ring = buildMaglevRing(backends.map((b) => ({ id: b.id, key: b.address, weight: 1 })), RING_SIZE);
  const vips = [
    { address: VIP4, port: 80, protocol: 6, id: 0, flags: 0, gen: 1 },
    { address: VIP4, port: 53, protocol: 17, id: 1, flags: 0, gen: 1 },
    { address: VIP4_BYPASS, port: 81, protocol: 6, id: 2, flags: 2 /* lru bypass */, gen: 1 },
    { address: VIP6, port: 443, protocol: 6, id: 3, flags: 0, gen: 1 },
    { address: VIP4_MIXED, port: 80, protocol: 6, id: 4, flags: 0, gen: 1 },
    { address: VIP4_MIXED, port: 81, protocol: 6, id: 5, flags: 2 /* lru bypass */, gen: 1 },
  ];
  for (const vip of vips) {
    balancer.writeRing({ vipId: vip.id, ring });
    balancer.writeVip(vip);
  }
  // Address flags: 1 = some VIP uses the table, 2 = some VIP bypasses it.
  const v4 = new AddressTable(4, balancer.addressSlots);
  balancer.writeAddressSlots(v4.upsert(VIP4, 1, 1));
  balancer.writeAddressSlots(v4.upsert(VIP4_BYPASS, 2, 3));
  balancer.writeAddressSlots(v4.upsert(VIP4_MIXED, 3, 4));
  balancer.writeAddressSlots(new AddressTable(6, balancer.addressSlots).upsert(VIP6, 1, 2));
}

function scenarios(): Scenario[] {
  const v4 = (dport: number, o: { syn?: boolean; dst?: string } = {}) =>
    frame(ipv4({ src: '198.51.100.7', dst: o.dst ?? VIP4, ttl: 61 }, tcp({ sport: 40000, dport, flags: o.syn ? { syn: true } : { ack: true }, payload })));
  return [
    { name: 'floor', prog: 'floor', input: v4(80), expect: XDP_PASS },
    { name: 'v4_tcp_established', prog: 'balancer', input: v4(80), expect: XDP_TX },
    { name: 'v6_tcp_established', prog: 'balancer', input: frame(ipv6({ src: '2001:db8:c::7', dst: VIP6 }, tcp({ sport: 40000, dport: 443, flags: { ack: true }, payload }))), expect: XDP_TX },
    { name: 'v4_udp_established', prog: 'balancer', input: frame(ipv4({ src: '198.51.100.7', dst: VIP4 }, udp({ sport: 40000, dport: 53, payload }))), expect: XDP_TX },
    { name: 'v4_lru_bypass', prog: 'balancer', input: v4(81, { dst: VIP4_BYPASS }), expect: XDP_TX },
    { name: 'v4_tcp_established_mixed_address', prog: 'balancer', input: v4(80, { dst: VIP4_MIXED }), expect: XDP_TX },
    { name: 'non_vip_pass', prog: 'balancer', input: frame(ipv4({ src: '198.51.100.7', dst: '192.0.2.99' }, tcp({ sport: 40000, dport: 80, flags: { ack: true }, payload }))), expect: XDP_PASS },
    { name: 'icmp_echo_vip', prog: 'balancer', input: frame(ipv4({ src: '198.51.100.7', dst: VIP4 }, icmpEchoRequest({ id: 1, seq: 1, payload }))), expect: XDP_TX },
  ];
}

/** A new client each call: the source address walks 100.64.0.0/10 (checksums are not
 * checked by the balancer, so only the address bytes change). */
function newFlowMutator(start: number): (buf: Buffer, i: number) => void {
  return (buf, i) => buf.writeUInt32BE((0x64400000 + ((start + i) & 0x3fffff)) >>> 0, 14 + 12);
}

type ProgramResults = { scenarios: Record<string, number>; spread: Record<string, [number, number]>; new_flow_fill: { fill_pct: number; ns: number }[] };
type Results = { floor_ns: number; programs: { label: string; results: ProgramResults }[] };

function measure(runner: TestRunner, fd: number, s: Scenario, calls: number, offset = 0): number {
  const input = Buffer.from(s.input);
  let total = 0;
  for (let i = 0; i < calls; i++) {
    s.mutate?.(input, offset + i);
    const r = runner.runShared(fd, input);
    if (r.retval !== s.expect) throw new Error(`${s.name}: verdict ${r.retval}, expected ${s.expect}`);
    total += r.durationNs;
  }
  return total / calls;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function run(programs: readonly Program[], floorFd: number): Results {
  const runner = new TestRunner();
  const list = scenarios();
  const floor = list.find((s) => s.prog === 'floor')!;
  const balancerScenarios = list.filter((s) => s.prog === 'balancer');
  // Warm-up: fills the connection-table entries the established scenarios hit.
  measure(runner, floorFd, floor, 2000);
  for (const p of programs) for (const s of balancerScenarios) measure(runner, p.balancer.progFd, s, 2000);

  const floorRounds: number[] = [];
  const rounds = programs.map(() => new Map<string, number[]>(balancerScenarios.map((s) => [s.name, []])));
  for (let r = 0; r < ROUNDS; r++) {
    floorRounds.push(measure(runner, floorFd, floor, CALLS_PER_ROUND));
    for (const s of balancerScenarios) {
      // Alternate which program goes first, so drift within a round hits both alike.
      const order = r % 2 === 0 ? programs.map((_, i) => i) : programs.map((_, i) => programs.length - 1 - i);
      for (const i of order) rounds[i]!.get(s.name)!.push(measure(runner, programs[i]!.balancer.progFd, s, CALLS_PER_ROUND));
    }
  }

  // New flows as the connection table fills: SYNs from ever new sources, measured in
  // slices (the programs alternate slice by slice); the fill level is read from the
  // table's key count at each slice's end.
  const newFlow: Scenario = {
    name: 'v4_tcp_new_flow', prog: 'balancer', expect: XDP_TX,
    input: frame(ipv4({ src: '100.64.0.0', dst: VIP4 }, tcp({ sport: 40000, dport: 80, flags: { syn: true }, payload }))),
  };
  const fills = programs.map(() => [] as { fill_pct: number; ns: number }[]);
  const slice = Math.max(CALLS_PER_ROUND * 4, Math.floor(CONN_TABLE / 8));
  let sent = 0;
  for (let k = 0; k < 12; k++) {
    for (const [i, p] of programs.entries()) {
      newFlow.mutate = newFlowMutator(sent);
      const ns = measure(runner, p.balancer.progFd, newFlow, slice);
      fills[i]!.push({ fill_pct: Math.round((100 * connEntries(p.balancer)) / CONN_TABLE), ns: round1(ns) });
    }
    sent += slice;
  }
  runner.close();
  return {
    floor_ns: round1(mean(floorRounds)),
    programs: programs.map((p, i) => {
      const scenariosOut: Record<string, number> = {};
      const spread: Record<string, [number, number]> = {};
      for (const [name, xs] of rounds[i]!) {
        scenariosOut[name] = round1(mean(xs));
        spread[name] = [round1(Math.min(...xs)), round1(Math.max(...xs))];
      }
      const fill = fills[i]!;
      scenariosOut.v4_tcp_new_flow = round1(mean(fill.map((f) => f.ns)));
      // The first slice (an almost empty table) and the last (every insert evicts).
      scenariosOut.v4_tcp_new_flow_empty = fill[0]!.ns;
      scenariosOut.v4_tcp_new_flow_full = fill[fill.length - 1]!.ns;
      return { label: p.label, results: { scenarios: scenariosOut, spread, new_flow_fill: fill } };
    }),
  };
}

function connEntries(balancer: BalancerProgram): number {
  let n = 0;
  for (const _ of balancer.maps.conn_v4.keys()) n++;
  return n;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

function report(r: Results): void {
  const [current, baseline] = r.programs;
  const net = (ns: number) => round1(ns - r.floor_ns);
  const rows = Object.entries(current!.results.scenarios).map(([name, ns]) => {
    const row: Record<string, string | number> = { scenario: name, 'ns - floor': net(ns) };
    const spread = current!.results.spread[name];
    if (spread) row['round min..max'] = `${spread[0]}..${spread[1]}`;
    if (baseline !== undefined) {
      const base = baseline.results.scenarios[name]!;
      const ratio = Math.round((net(ns) / net(base)) * 100) / 100;
      row['baseline ns - floor'] = net(base);
      row.ratio = ratio;
      const target = RATIO_TARGETS[name];
      row['target (<=)'] = target ?? 'report';
      row.met = target === undefined ? '' : ratio <= target ? 'yes' : 'NO';
    }
    return row;
  });
  console.log(`floor (empty XDP program): ${r.floor_ns} ns; ${CALLS_PER_ROUND * ROUNDS} calls per scenario, repeat = 1` +
    (baseline !== undefined ? `; ${current!.label} against ${baseline.label}, interleaved` : ''));
  console.table(rows);
  console.log(`v4_tcp_new_flow as the ${CONN_TABLE}-entry connection table fills (SYN from a new source each call):`);
  console.table(current!.results.new_flow_fill.map((f, i) => ({
    'table fill %': f.fill_pct, 'ns - floor': net(f.ns),
    ...(baseline !== undefined ? { 'baseline ns - floor': net(baseline.results.new_flow_fill[i]!.ns) } : {}),
  })));
  mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
  const out = {
    floor_ns: r.floor_ns,
    scenarios: current!.results.scenarios,
    new_flow_fill: current!.results.new_flow_fill,
    ...(baseline !== undefined ? { baseline: { revision: BASELINE, scenarios: baseline.results.scenarios, new_flow_fill: baseline.results.new_flow_fill } } : {}),
  };
  writeFileSync(join(ROOT, 'bench/out/xdp.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log('wrote bench/out/xdp.json');
}

main();
