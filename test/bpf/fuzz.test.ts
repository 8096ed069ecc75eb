// The packet fuzzer: seeded, reproducible mutations of valid frames (every encapsulation
// and family, ICMP errors, options, fragments, extension headers, VLAN tags, truncations,
// length lies, address swaps, garbage) through the balancer and the decap program with
// BPF_PROG_TEST_RUN. Each output is judged by the reference models of test/support/fuzz.ts,
// which follow docs/dataplane.md and never the BPF code; counters are checked per batch.
//
//   FULCRUM_FUZZ_SEED=<n>|random   seed (default: a fixed one, so CI is reproducible)
//   FULCRUM_FUZZ_FRAMES=<n>        balancer frames (default 1,000,000; decap: a fifth)
//   FULCRUM_FUZZ_DECAP_FRAMES=<n>  decap frames
//   FULCRUM_FUZZ_REPLAY=balancer:<i> | decap:<i>   run that one frame of the seed, verbosely
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BalancerProgram } from '../../src/agent/dataplane/balancer.ts';
import { DecapProgram } from '../../src/agent/dataplane/decap.ts';
import { TestRunner, XDP_DROP, XDP_PASS, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import { addressBytes } from '../../src/shared/flowhash.ts';
import { REASONS, reasonAction, type Reason } from '../../src/shared/reasons.ts';
import { internetChecksum } from '../support/checksum.ts';
import {
  BalancerModel, DecapModel, MAX_FRAME, Mutator, Rng, equalMasked, garbageFrame, tooBigWithFrameQuote, type Expectation, type DecapExpectation,
} from '../support/fuzz.ts';
import {
  decodeFrame, describeFrame, diffFrames, ether, icmp6DestUnreachable, icmp6EchoRequest, icmp6PacketTooBig, icmpDestUnreachable,
  icmpEchoRequest, icmpFragNeeded, ipv4, ipv6, tcp, udp,
} from '../support/packets.ts';
import { BALANCER_FIXTURES } from './balancer-fixtures.ts';
import { DECAP_FIXTURES, GUE_PORT, LOCAL_ADDRESSES, OTHER_POD4, OTHER_POD6, SERVED_VIPS, TC_ACT_OK, TC_ACT_SHOT } from './decap-fixtures.ts';
import {
  BACKENDS, CLIENT4, CLIENT6, CLIENT_MAC, CONFIG, LB_MAC, LIMITS, PROTO, RING_SIZE, ROUTER4, ROUTER6, TUNNEL, VIPS, VIP_FLAG,
  loadBalancerWorld, ringAt, type WorldVip,
} from './balancer-world.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const REASON_INDEX = new Map(REASONS.map((r, i) => [r, i]));

const env = process.env;
const SEED = env['FULCRUM_FUZZ_SEED'] === 'random' ? (Math.random() * 0x100000000) >>> 0
  : Number(env['FULCRUM_FUZZ_SEED'] ?? 0x5eed_f00d) >>> 0;
const FRAMES = Number(env['FULCRUM_FUZZ_FRAMES'] ?? 1_000_000);
const DECAP_FRAMES = Number(env['FULCRUM_FUZZ_DECAP_FRAMES'] ?? Math.ceil(FRAMES / 5));
const REPLAY = /^(balancer|decap):(\d+)$/.exec(env['FULCRUM_FUZZ_REPLAY'] ?? '');
/** Frames between counter reads: each read is ~60 map lookups. */
const BATCH = 10_000;
/** Distinct failures reported in full (all are counted). */
const MAX_REPORTED = 8;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytesOf = (a: string) => addressBytes(a, a.includes(':') ? 6 : 4);

// ── seeds ────────────────────────────────────────────────────────────────────

/** Client frames and ICMP errors for every VIP of the world, besides the fixtures. */
function worldSeeds(): Buffer[] {
  const out: Buffer[] = [];
  const frame = (l3: Buffer) => ether({ dst: LB_MAC, src: CLIENT_MAC }, l3);
  for (const vip of Object.values(VIPS) as WorldVip[]) {
    const v6 = vip.address.includes(':');
    const port = vip.port === 0 ? 8443 : vip.port;
    const client = v6 ? CLIENT6 : CLIENT4;
    for (const sport of [40000, 50001, 61234]) {
      const l4 = vip.protocol === 'TCP'
        ? tcp({ sport, dport: port, flags: sport === 50001 ? { syn: true } : { ack: true }, payload: 'fuzz' })
        : udp({ sport, dport: port, payload: 'fuzz' });
      out.push(frame(v6 ? ipv6({ src: client, dst: vip.address, trafficClass: 0x2a, hopLimit: 61 }, l4)
        : ipv4({ src: client, dst: vip.address, tos: 0x2a, df: true, ttl: 61 }, l4)));
    }
    // The VIP's reply, quoted by a router's error (client port 41000).
    const reply = vip.protocol === 'TCP' ? tcp({ sport: port, dport: 41000, flags: { ack: true }, payload: 'r'.repeat(64) })
      : udp({ sport: port, dport: 41000, payload: 'r'.repeat(64) });
    if (v6) {
      const quote = ipv6({ src: vip.address, dst: client, hopLimit: 60 }, reply);
      out.push(frame(ipv6({ src: ROUTER6, dst: vip.address }, icmp6PacketTooBig({ mtu: 1280, quote, quoteLength: 48 }))));
      out.push(frame(ipv6({ src: ROUTER6, dst: vip.address }, icmp6DestUnreachable({ code: 4, quote }))));
      out.push(frame(ipv6({ src: client, dst: vip.address }, icmp6EchoRequest({ id: 3, seq: 9, payload: 'ping6' }))));
    } else {
      const quote = ipv4({ src: vip.address, dst: client, ttl: 60, df: true }, reply);
      out.push(frame(ipv4({ src: ROUTER4, dst: vip.address }, icmpFragNeeded({ mtu: 1400, quote, quoteLength: 28 }))));
      out.push(frame(ipv4({ src: ROUTER4, dst: vip.address }, icmpDestUnreachable({ code: 3, quote }))));
      out.push(frame(ipv4({ src: client, dst: vip.address }, icmpEchoRequest({ id: 3, seq: 9, payload: 'ping' }))));
    }
  }
  // Near the MTU: too big once encapsulated, or just fitting.
  for (const size of [1400, 1472, 1480, 1481, 1500]) {
    out.push(frame(ipv4({ src: CLIENT4, dst: VIPS.web4.address, df: true }, tcp({ sport: 40100, dport: 80, flags: { ack: true }, payload: Buffer.alloc(size - 40, 0x42) }))));
    out.push(frame(ipv6({ src: CLIENT6, dst: VIPS.web6.address }, tcp({ sport: 40100, dport: 443, flags: { ack: true }, payload: Buffer.alloc(size - 60, 0x42) }))));
  }
  return out;
}

// ── the balancer ─────────────────────────────────────────────────────────────

let balancer: BalancerProgram;
let decap: DecapProgram;
const runner = new TestRunner();

before(() => {
  ({ balancer } = loadBalancerWorld()); // builds bpf/ too
  decap = DecapProgram.load({ objectPath: join(ROOT, 'bpf/build/decap.bpf.o'), guePort: GUE_PORT });
  decap.setLocalAddresses(LOCAL_ADDRESSES);
  decap.setVips(SERVED_VIPS);
});

after(() => {
  balancer?.close();
  decap?.close();
  runner.close();
});

// ── shared loop machinery ────────────────────────────────────────────────────

type Failure = { invariant: string; text: string };

class Failures {
  readonly counts = new Map<string, number>();
  readonly reported: Failure[] = [];

  add(invariant: string, text: () => string): void {
    const n = (this.counts.get(invariant) ?? 0) + 1;
    this.counts.set(invariant, n);
    if (n === 1 && this.reported.length < MAX_REPORTED) this.reported.push({ invariant, text: text() });
  }

  get total(): number {
    let t = 0;
    for (const n of this.counts.values()) t += n;
    return t;
  }

  summary(program: string): string {
    const counts = [...this.counts].map(([k, n]) => `  ${n} × ${k}`).join('\n');
    return `${program}: ${this.total} invariant violations (seed ${SEED}):\n${counts}\n\n${this.reported.map((f) => f.text).join('\n\n')}`;
  }
}

function frameReport(program: string, index: number, invariant: string, input: Uint8Array, detail: string, output?: Uint8Array): string {
  return [
    `[${program}] ${invariant} — seed ${SEED}, frame ${index}`,
    `  replay: FULCRUM_FUZZ_SEED=${SEED} FULCRUM_FUZZ_REPLAY=${program}:${index} node --test test/bpf/fuzz.test.ts`,
    `  ${detail}`,
    `  input  (${input.length} bytes): ${hex(input)}`,
    ...(output ? [`  output (${output.length} bytes): ${hex(output)}`] : []),
    describeFrame(input).replace(/^/gm, '    '),
  ].join('\n');
}

/** Builds frame `index` of the seed into `work`: a mutated seed frame, or garbage. Returns its length. */
function makeFrame(rng: Rng, seeds: readonly Buffer[], mutator: Mutator, work: Buffer, index: number): number {
  rng.reseed(SEED, index);
  if (rng.chance(0.02)) return garbageFrame(rng, work);
  const seed = rng.pick(seeds);
  seed.copy(work);
  let len = seed.length;
  if (rng.chance(0.04)) return len; // some valid frames, as they are
  const rounds = 1 + (rng.chance(0.5) ? 0 : rng.chance(0.5) ? 1 : 2 + rng.below(2));
  for (let r = 0; r < rounds; r++) len = mutator.mutate(rng, work, len);
  return len;
}

const sumPackets = (a: Record<Reason, { packets: bigint }>, b: Record<Reason, { packets: bigint }>, pick: (r: Reason) => boolean) =>
  REASONS.filter(pick).reduce((s, r) => s + Number(b[r].packets - a[r].packets), 0);

// ── balancer fuzz ────────────────────────────────────────────────────────────

test(`balancer: ${REPLAY ? `replay of frame ${REPLAY[2]}` : `${FRAMES.toLocaleString('en')} mutated frames`} (seed ${SEED})`,
  { skip: REPLAY !== null && REPLAY[1] !== 'balancer' }, () => {
    const seeds = [...BALANCER_FIXTURES.map((f) => f.input), ...worldSeeds(), ...DECAP_FIXTURES.map((f) => f.input)]
      .filter((s) => s.length >= 14 && s.length <= MAX_FRAME);
    const vipList = (Object.values(VIPS) as WorldVip[]).map((v) => ({
      id: v.id, address: v.address, port: v.port, protocol: PROTO[v.protocol], flags: v.flags,
      ring: Array.from({ length: RING_SIZE }, (_, i) => ringAt(v, i)),
    }));
    const model = new BalancerModel({
      vips: vipList,
      backends: new Map(Object.values(BACKENDS).map((b) => [b.id, b.address])),
      maxBackends: LIMITS.maxBackends, maxVips: LIMITS.maxVips, ringSize: RING_SIZE, mtu: CONFIG.mtu, tunnel: TUNNEL,
      gueFlag: VIP_FLAG.gue, srcIpOnlyFlag: VIP_FLAG.srcIpOnly,
    });
    const addr4 = [...new Set([...vipList.map((v) => v.address), ...Object.values(BACKENDS).map((b) => b.address)])]
      .filter((a) => !a.includes(':')).concat([CLIENT4, '0.0.0.0', '255.255.255.255', '192.0.2.77', ROUTER4]).map(bytesOf);
    const addr6 = [...new Set([...vipList.map((v) => v.address), ...Object.values(BACKENDS).map((b) => b.address)])]
      .filter((a) => a.includes(':')).concat([CLIENT6, '::', '::ffff:10.10.0.1', '2001:db8:ffff::99', ROUTER6]).map(bytesOf);
    const mutator = new Mutator({ addr4, addr6, ports: [80, 53, 443, 81, 5000, 8080, 8443, 6080, 0, 40000, 41000, 65535] }, 0.3);

    const rng = new Rng();
    const work = Buffer.alloc(MAX_FRAME + 64);
    const failures = new Failures();
    const notes = new Map<string, number>();
    const fd = balancer.progFd;
    const vipIds = vipList.map((v) => v.id).filter((id) => id < LIMITS.maxVips);
    let observed = { pass: 0, drop: 0, echo: 0, tooBig: 0, forward: new Map<number, number>(), frames: 0 };
    let before = { reasons: balancer.reasonCounters(), vips: new Map(vipIds.map((id) => [id, balancer.vipCounter(id).packets])) };
    const totals = { pass: 0, drop: 0, tx: 0, forwards: 0, erroredOtherAddress: 0 };
    let decoded = 0;
    // Reason-level bounds per batch: reasons the model names alone count exactly; a frame
    // with a choice of reasons widens each of them by one. A batch with a violation is not judged.
    const exact = new Int32Array(REASONS.length);
    const maybe = new Int32Array(REASONS.length);
    let tainted = false;
    const expectReasons = (reasons: readonly Reason[] | undefined) => {
      if (reasons === undefined || reasons.length === 0) tainted = true;
      else if (reasons.length === 1) exact[REASON_INDEX.get(reasons[0]!)!]!++;
      else for (const r of reasons) maybe[REASON_INDEX.get(r)!]!++;
    };

    const checkCounters = (upTo: number) => {
      const after = { reasons: balancer.reasonCounters(), vips: new Map(vipIds.map((id) => [id, balancer.vipCounter(id).packets])) };
      const moved = {
        pass: sumPackets(before.reasons, after.reasons, (r) => !r.startsWith('decap_') && reasonAction(r) === 'pass'),
        drop: sumPackets(before.reasons, after.reasons, (r) => !r.startsWith('decap_') && reasonAction(r) === 'drop'),
        echo: sumPackets(before.reasons, after.reasons, (r) => r === 'tx_icmp_echo'),
        tooBig: sumPackets(before.reasons, after.reasons, (r) => r === 'tx_icmp_too_big'),
        all: sumPackets(before.reasons, after.reasons, () => true),
      };
      let forwards = 0;
      const perVip: string[] = [];
      for (const id of vipIds) {
        const d = Number(after.vips.get(id)! - before.vips.get(id)!);
        forwards += d;
        if (d !== (observed.forward.get(id) ?? 0)) perVip.push(`vip ${id}: counted ${d}, forwarded ${observed.forward.get(id) ?? 0}`);
      }
      const seen = { pass: observed.pass, drop: observed.drop, echo: observed.echo, tooBig: observed.tooBig };
      const byReason = tainted ? [] : REASONS.filter((r) => !r.startsWith('decap_') && !r.startsWith('tx_')).flatMap((r, _, __, i = REASON_INDEX.get(r)!) => {
        const d = Number(after.reasons[r].packets - before.reasons[r].packets);
        return d < exact[i]! || d > exact[i]! + maybe[i]! ? [`${r}: counted ${d}, expected ${exact[i]}${maybe[i] ? ` to ${exact[i]! + maybe[i]!}` : ''}`] : [];
      });
      const problems = [
        moved.all + forwards !== observed.frames ? `reasons + forwards = ${moved.all + forwards}, frames run ${observed.frames}` : '',
        ...(['pass', 'drop', 'echo', 'tooBig'] as const).filter((k) => moved[k] !== seen[k]).map((k) => `${k}: counted ${moved[k]}, seen ${seen[k]}`),
        ...perVip,
        ...byReason,
      ].filter(Boolean);
      if (problems.length > 0) {
        failures.add('exactly one counted verdict per frame', () =>
          `[balancer] counters over frames ${upTo - observed.frames}..${upTo - 1} (seed ${SEED}): ${problems.join('; ')}`);
      }
      before = after;
      observed = { pass: 0, drop: 0, echo: 0, tooBig: 0, forward: new Map(), frames: 0 };
      exact.fill(0);
      maybe.fill(0);
      tainted = false;
    };

    const start = process.hrtime.bigint();
    const from = REPLAY ? Number(REPLAY[2]) : 0;
    const to = REPLAY ? from + 1 : FRAMES;
    for (let i = from; i < to; i++) {
      if (observed.frames === BATCH) checkCounters(i);
      const len = makeFrame(rng, seeds, mutator, work, i);
      const input = work.subarray(0, len);
      const { retval, dataOut } = runner.runShared(fd, input);
      observed.frames++;
      const fail = (invariant: string, detail: string, output?: Uint8Array) =>
        failures.add(invariant, () => frameReport('balancer', i, invariant, input, detail, output));

      if (retval === XDP_PASS || retval === XDP_DROP) {
        const verdict = retval === XDP_PASS ? 'pass' : 'drop';
        observed[verdict]++;
        totals[verdict]++;
        if (dataOut.length !== len || Buffer.compare(dataOut, input) !== 0) {
          fail(`${verdict.toUpperCase()} leaves the frame untouched`, `verdict ${verdict}`, dataOut);
          continue;
        }
        const exp = model.expect(input);
        if (!exp[verdict]) {
          // The model cannot say which reason a wrong verdict counts under: any of its class.
          for (const r of REASONS) if (!r.startsWith('decap_') && reasonAction(r) === verdict) maybe[REASON_INDEX.get(r)!]!++;
          fail(`${verdict.toUpperCase()} only where the docs allow it — expected by rule: ${exp.rule}`, `got ${verdict}; model allows ${allowed(exp)}${exp.note ? ` (${exp.note})` : ''}`);
        } else {
          expectReasons(verdict === 'pass' ? exp.passReasons : exp.dropReasons);
          if (exp.note) notes.set(exp.note, (notes.get(exp.note) ?? 0) + 1);
        }
        if (REPLAY) console.log(`frame ${i}: ${verdict}; model allows ${allowed(exp)}\n${describeFrame(input)}`);
        continue;
      }
      if (retval !== XDP_TX) {
        fail('the verdict is PASS, DROP or TX', `retval ${retval}`, dataOut);
        continue;
      }
      totals.tx++;
      const exp = model.expect(input);
      const out = Buffer.from(dataOut); // the builder below may not be given a view that the next run reuses
      if (REPLAY) console.log(`frame ${i}: TX; model allows ${allowed(exp)}\n--- input\n${describeFrame(input)}\n--- output\n${describeFrame(out, { guePort: GUE_PORT })}`);
      // What the program did, from the output's size: a forward grows the frame, an echo reply
      // keeps its size, a too-big reply quotes a part of it.
      if (out.length > len) {
        totals.forwards++;
        if (exp.tx?.kind === 'forward') observed.forward.set(exp.tx.vip!, (observed.forward.get(exp.tx.vip!) ?? 0) + 1);
        if (exp.errorToOtherAddress) totals.erroredOtherAddress++;
      } else if (out.length === len) observed.echo++;
      else observed.tooBig++;
      if (exp.tx === null) {
        fail(`TX only for a VIP flow, an echo to a VIP address or a too-big reply — expected by rule: ${exp.rule}`, `got TX; model allows ${allowed(exp)}`, out);
        continue;
      }
      if (exp.note) notes.set(exp.note, (notes.get(exp.note) ?? 0) + 1);

      const outerProblem = outerWellFormed(out);
      if (outerProblem !== null) {
        fail(`a TX frame is well formed (outer lengths, IPv4 header checksum) — ${exp.tx.kind}`, outerProblem, out);
        continue;
      }
      if (exp.tx.build !== null) {
        const want = exp.tx.build();
        const q = exp.tx.quoteOf;
        if (!equalMasked(out, want, exp.tx.maskChecksumAt) &&
          !(q && tooBigWithFrameQuote(out, want, input, q.header, q.header === 28 ? 64 : 128))) {
          const diff = diffFrames(want, out, { guePort: GUE_PORT });
          fail(`a ${exp.tx.kind} TX is exactly the frame docs/dataplane.md describes — rule: ${exp.rule}`, `${diff?.message ?? 'differs'}\n  expected (${want.length} bytes): ${hex(want)}`, out);
          continue;
        }
      }
      // frame-decode on a sample of outputs (the exact comparison above covers every byte).
      if (decoded < 2000 || (i & 63) === 0) {
        decoded++;
        const problem = decodeProblem(out, exp.tx.kind);
        if (problem !== null) fail('a TX frame decodes cleanly (frame-decode)', problem, out);
      }
    }
    if (observed.frames > 0) checkCounters(to);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const ran = to - from;
    console.log(`balancer fuzz: seed ${SEED}, ${ran} frames in ${seconds.toFixed(1)} s (${Math.round(ran / seconds).toLocaleString('en')} frames/s): ` +
      `${totals.pass} PASS, ${totals.drop} DROP, ${totals.tx} TX (${totals.forwards} forwards, ${totals.erroredOtherAddress} of them ICMP errors ` +
      `addressed to a non-VIP address), ${decoded} outputs decoded`);
    for (const [note, n] of notes) console.log(`  allowed either way (${n}×): ${note}`);
    assert.equal(failures.total, 0, failures.summary('balancer'));
  });

function allowed(exp: Expectation): string {
  return [exp.pass ? 'PASS' : '', exp.drop ? 'DROP' : '', exp.tx ? `TX ${exp.tx.kind}` : ''].filter(Boolean).join(' | ') || 'nothing';
}

/** The outer IP header of a TX frame: lengths equal to the frame, a valid IPv4 header checksum. */
function outerWellFormed(out: Buffer): string | null {
  if (out.length < 14) return `${out.length} bytes: no Ethernet header`;
  const type = out.readUInt16BE(12);
  if (type === 0x0800) {
    if (out.length < 34 || out[14] !== 0x45) return 'outer IPv4 header missing or not 20 bytes';
    if (internetChecksum(out.subarray(14, 34)) !== 0) return 'outer IPv4 header checksum is wrong';
    if (out.readUInt16BE(16) > out.length - 14) return `outer total length ${out.readUInt16BE(16)} beyond the ${out.length - 14} bytes present`;
    return null;
  }
  if (type === 0x86dd) {
    if (out.length < 54 || out[14]! >>> 4 !== 6) return 'outer IPv6 header missing';
    if (40 + out.readUInt16BE(18) > out.length - 14) return `outer payload length ${out.readUInt16BE(18)} beyond the frame`;
    return null;
  }
  return `EtherType 0x${type.toString(16)} is not IP`;
}

/** frame-decode's verdict on the layers the program wrote (not the client's own bytes). */
function decodeProblem(out: Buffer, kind: 'forward' | 'echo' | 'too_big'): string | null {
  const layers = decodeFrame(out, { guePort: GUE_PORT });
  const ours = kind === 'forward' ? layers.filter((l) => l.label.startsWith('outer ') || l.label === 'eth') : layers.slice(0, 2);
  for (const layer of ours) {
    for (const note of layer.notes) if (/malformed|truncated/.test(note)) return `${layer.label}: ${note}`;
    for (const f of layer.fields) {
      if (f.name === 'check' && f.note?.startsWith('bad') && !(kind !== 'forward' && layer.label !== 'ipv4')) return `${layer.label}.check ${f.note}`;
    }
  }
  if (kind === 'forward' && !ours.some((l) => l.label.startsWith('outer '))) return 'no outer IP header found';
  return null;
}

// ── decap fuzz ───────────────────────────────────────────────────────────────

test(`decap: ${REPLAY ? `replay of frame ${REPLAY[2]}` : `${DECAP_FRAMES.toLocaleString('en')} mutated frames`} (seed ${SEED})`,
  { skip: REPLAY !== null && REPLAY[1] !== 'decap' }, () => {
    const forwards = BALANCER_FIXTURES.filter((f) => f.verdict === 'XDP_TX' && f.reason === undefined && f.output).map((f) => f.output!);
    const seeds = [...DECAP_FIXTURES.map((f) => f.input), ...forwards].filter((s) => s.length >= 14 && s.length <= MAX_FRAME);
    const model = new DecapModel({ localAddresses: LOCAL_ADDRESSES, vips: SERVED_VIPS, guePort: GUE_PORT });
    const addr4 = [...LOCAL_ADDRESSES, ...SERVED_VIPS, OTHER_POD4, VIPS.sticky.address, CLIENT4, '0.0.0.0', String(TUNNEL.nodeAddr4)]
      .filter((a) => !a.includes(':')).map(bytesOf);
    const addr6 = [...LOCAL_ADDRESSES, ...SERVED_VIPS, OTHER_POD6, VIPS.conn6.address, CLIENT6, '::', `::ffff:${LOCAL_ADDRESSES[0]}`, String(TUNNEL.nodeAddr6)]
      .filter((a) => a.includes(':')).map(bytesOf);
    const mutator = new Mutator({ addr4, addr6, ports: [GUE_PORT, GUE_PORT + 1, 9999, 4789, 80, 443, 53, 0, 0x8123] }, 0.75);

    const rng = new Rng();
    const work = Buffer.alloc(MAX_FRAME + 64);
    const failures = new Failures();
    const notes = new Map<string, number>();
    const fd = decap.progFd;
    const totals = { pass: 0, drop: 0, decap: 0, unrunnable: 0 };
    let observed = { pass: 0, drop: 0, decap: 0, frames: 0 };
    let before = { reasons: decap.reasonCounters(), decapped: decap.decappedCounter().packets };
    const exact = new Int32Array(REASONS.length);
    const maybe = new Int32Array(REASONS.length);
    let tainted = false;
    const checkCounters = (upTo: number) => {
      const after = { reasons: decap.reasonCounters(), decapped: decap.decappedCounter().packets };
      const moved = {
        pass: sumPackets(before.reasons, after.reasons, (r) => r === 'decap_pass_not_tunnel'),
        drop: sumPackets(before.reasons, after.reasons, (r) => r.startsWith('decap_drop_')),
        decap: Number(after.decapped - before.decapped),
        all: sumPackets(before.reasons, after.reasons, () => true),
      };
      const problems = [
        moved.all + moved.decap !== observed.frames ? `reasons + decapped = ${moved.all + moved.decap}, frames run ${observed.frames}` : '',
        ...(['pass', 'drop', 'decap'] as const).filter((k) => moved[k] !== observed[k]).map((k) => `${k}: counted ${moved[k]}, seen ${observed[k]}`),
        ...(tainted ? [] : REASONS.filter((r) => r.startsWith('decap_drop_')).flatMap((r, _, __, i = REASON_INDEX.get(r)!) => {
          const d = Number(after.reasons[r].packets - before.reasons[r].packets);
          return d < exact[i]! || d > exact[i]! + maybe[i]! ? [`${r}: counted ${d}, expected ${exact[i]}${maybe[i] ? ` to ${exact[i]! + maybe[i]!}` : ''}`] : [];
        })),
      ].filter(Boolean);
      if (problems.length > 0) {
        failures.add('exactly one counted outcome per frame', () =>
          `[decap] counters over the ${observed.frames} frames before ${upTo} (seed ${SEED}): ${problems.join('; ')}`);
      }
      before = after;
      observed = { pass: 0, drop: 0, decap: 0, frames: 0 };
      exact.fill(0);
      maybe.fill(0);
      tainted = false;
    };

    const start = process.hrtime.bigint();
    const from = REPLAY ? Number(REPLAY[2]) : 0;
    let ran = 0;
    let i = from;
    // Frames the kernel cannot run are skipped: the loop goes on until DECAP_FRAMES have run.
    for (; REPLAY ? i < from + 1 : ran < DECAP_FRAMES; i++) {
      if (observed.frames === BATCH) checkCounters(i);
      const len = makeFrame(rng, seeds, mutator, work, i);
      const input = work.subarray(0, len);
      const exp: DecapExpectation = model.expect(input);
      if (exp.unrunnable) {
        // BPF_PROG_TEST_RUN refuses an IP EtherType shorter than its IP header (EINVAL).
        totals.unrunnable++;
        continue;
      }
      const fail = (invariant: string, detail: string, output?: Uint8Array) =>
        failures.add(invariant, () => frameReport('decap', i, invariant, input, detail, output));
      let result;
      try {
        result = runner.runShared(fd, input);
      } catch (err) {
        fail('the program runs', (err as Error).message);
        continue;
      }
      ran++;
      observed.frames++;
      const { retval, dataOut } = result;
      const untouched = dataOut.length === len && Buffer.compare(dataOut, input) === 0;
      let got: 'pass' | 'drop' | 'decap';
      if (retval === TC_ACT_SHOT) got = 'drop';
      else if (retval === TC_ACT_OK) got = untouched ? 'pass' : 'decap';
      else {
        fail('the verdict is TC_ACT_OK or TC_ACT_SHOT', `retval ${retval}`, dataOut);
        continue;
      }
      observed[got]++;
      totals[got]++;
      if (REPLAY) console.log(`frame ${i}: ${got}; model allows ${[...exp.allowed].join(' | ')}\n${describeFrame(input, { guePort: GUE_PORT })}` +
        (got === 'decap' ? `\n--- output\n${describeFrame(dataOut)}` : ''));
      if (got === 'drop' && !untouched) fail('SHOT leaves the frame untouched', 'changed', Buffer.from(dataOut));
      if (got === 'drop' && exp.allowed.has('drop')) {
        const reasons = exp.dropReasons ?? [];
        if (reasons.length === 0) tainted = true;
        else if (reasons.length === 1) exact[REASON_INDEX.get(reasons[0]!)!]!++;
        else for (const r of reasons) maybe[REASON_INDEX.get(r)!]!++;
      }
      if (!exp.allowed.has(got)) {
        if (got === 'drop') for (const r of REASONS) if (r.startsWith('decap_drop_')) maybe[REASON_INDEX.get(r)!]!++;
        fail(`${got} only where the decap contract allows it — expected by rule: ${exp.rule}`, `got ${got}; model allows ${[...exp.allowed].join(' | ')}${exp.note ? ` (${exp.note})` : ''}`,
          got === 'decap' ? Buffer.from(dataOut) : undefined);
        continue;
      }
      if (exp.note) notes.set(exp.note, (notes.get(exp.note) ?? 0) + 1);
      if (got === 'decap' && exp.output && !equalMasked(dataOut, exp.output, exp.maskChecksumAt)) {
        const diff = diffFrames(exp.output, dataOut);
        fail('a decapsulated frame is exactly the inner packet (ECN per RFC 6040)', `${diff?.message ?? 'differs'}\n  expected: ${hex(exp.output)}`, Buffer.from(dataOut));
      }
    }
    if (observed.frames > 0) checkCounters(i);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(`decap fuzz: seed ${SEED}, ${ran} frames run in ${seconds.toFixed(1)} s (${Math.round(ran / seconds).toLocaleString('en')} frames/s): ` +
      `${totals.pass} passed, ${totals.drop} dropped, ${totals.decap} decapsulated; ${totals.unrunnable} too short for an IP EtherType (not run)`);
    for (const [note, n] of notes) console.log(`  allowed either way (${n}×): ${note}`);
    assert.equal(failures.total, 0, failures.summary('decap'));
  });
