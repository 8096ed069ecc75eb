// Runs the decap packet fixtures through BPF_PROG_TEST_RUN on the real tc program:
// verdict, output frame (compared field by field against the builder's decapsulate()),
// and the one counter each packet must move. Then the DecapProgram wrapper itself:
// exact-set map writes, and pinned maps adopted by the next load.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DECAP_MAPS, DecapProgram } from '../../src/agent/dataplane/decap.ts';
import { TestRunner } from '../../src/agent/bpf/test-run.ts';
import { decodeU32, type Counter } from '../../src/agent/bpf/abi.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { REASONS, type Reason } from '../../src/shared/reasons.ts';
import { assertFramesEqual } from '../support/packets.ts';
import {
  DECAP_FIXTURES, GUE_PORT, LOCAL_ADDRESSES, SERVED_VIPS, TC_ACT_OK, TC_ACT_SHOT, innerEtherType, type Fixture,
} from './decap-fixtures.ts';
import { uniqueName } from './support.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const OBJECT = join(ROOT, 'bpf/build/decap.bpf.o');
const VERDICTS = { TC_ACT_OK, TC_ACT_SHOT } as const;

/** One loaded program per GUE port the fixtures name (the port is a load-time constant). */
const programs = new Map<number, DecapProgram>();
const runner = new TestRunner();

before(() => {
  execFileSync('make', ['-s', '-C', join(ROOT, 'bpf'), 'build/decap.bpf.o']);
  for (const port of new Set(DECAP_FIXTURES.map((f) => f.guePort ?? GUE_PORT))) {
    const program = DecapProgram.load({ objectPath: OBJECT, guePort: port });
    programs.set(port, program);
    program.setLocalAddresses(LOCAL_ADDRESSES);
    program.setVips(SERVED_VIPS);
  }
});

after(() => {
  for (const program of programs.values()) program.close();
  runner.close();
});

type Snapshot = { reasons: Record<Reason, Counter>; decapped: Counter };

const snapshot = (p: DecapProgram): Snapshot => ({ reasons: p.reasonCounters(), decapped: p.decappedCounter() });
const moved = (a: Counter, b: Counter) => ({ packets: Number(b.packets - a.packets), bytes: Number(b.bytes - a.bytes) });

function check(f: Fixture): void {
  const program = programs.get(f.guePort ?? GUE_PORT)!;
  const beforeRun = snapshot(program);
  const result = runner.run(program.progFd, f.input);
  const afterRun = snapshot(program);

  assert.equal(result.retval, VERDICTS[f.verdict], `verdict: expected ${f.verdict} (${VERDICTS[f.verdict]}), got ${result.retval}`);
  if (f.counter === 'decapped') {
    assertFramesEqual(result.dataOut, f.output!, f.name);
    assert.equal(result.dataOut.readUInt16BE(12), innerEtherType(f.output!), 'EtherType of the inner family');
  } else {
    assert.ok(result.dataOut.equals(f.input), `${f.verdict} without decapsulation must leave the frame untouched`);
  }

  // Exactly one counted outcome, by one packet of the input's size.
  for (const reason of REASONS) {
    const m = moved(beforeRun.reasons[reason], afterRun.reasons[reason]);
    assert.equal(m.packets, reason === f.counter ? 1 : 0, `reason counter ${reason}`);
    if (reason === f.counter) assert.equal(m.bytes, f.input.length, `reason counter ${reason} bytes`);
  }
  const d = moved(beforeRun.decapped, afterRun.decapped);
  assert.equal(d.packets, f.counter === 'decapped' ? 1 : 0, 'decapped counter');
  if (f.counter === 'decapped') assert.equal(d.bytes, f.input.length, 'decapped bytes (the frame as received)');
}

for (const f of DECAP_FIXTURES) test(f.name, () => check(f));

test('the fixture table covers every decap reason a packet can get', () => {
  const covered = new Set<string>(DECAP_FIXTURES.map((f) => f.counter));
  // bpf_skb_adjust_room / bpf_skb_store_bytes do not fail on BPF_PROG_TEST_RUN's buffers.
  const unreachable = new Set<Reason>(['decap_drop_failed']);
  const missing = REASONS.filter((r) => r.startsWith('decap_') && !unreachable.has(r) && !covered.has(r));
  assert.deepEqual(missing, []);
  assert.ok(covered.has('decapped'));
  assert.ok(DECAP_FIXTURES.some((f) => f.guePort !== undefined && f.guePort !== GUE_PORT), 'a second GUE port');
});

// ── the wrapper ──────────────────────────────────────────────────────────────

const sorted = (a: readonly string[]) => [...a].sort();

test('setLocalAddresses / setVips make the maps hold exactly the given set', (t) => {
  const program = DecapProgram.load({ objectPath: OBJECT, guePort: GUE_PORT });
  t.after(() => program.close());

  program.setLocalAddresses(['10.1.0.1', 'fd00:1::1']);
  assert.deepEqual(sorted(program.localAddresses()), ['10.1.0.1', 'fd00:1::1']);
  // Another spelling of the same address is the same key; duplicates collapse.
  program.setLocalAddresses(['FD00:1:0::1', '10.1.0.2', '10.1.0.2']);
  assert.deepEqual(sorted(program.localAddresses()), ['10.1.0.2', 'fd00:1::1']);
  for (const key of program.maps.decap_addrs.keys()) assert.equal(decodeU32(program.maps.decap_addrs.lookup(key)!), 1);

  program.setVips(['10.10.0.1', '10.10.0.2', 'fd00:10::1']);
  program.setVips(['10.10.0.2', 'fd00:10::3']);
  assert.deepEqual(sorted(program.vips()), ['10.10.0.2', 'fd00:10::3']);
  program.setVips([]);
  assert.deepEqual(program.vips(), []);

  // An invalid address changes nothing.
  assert.throws(() => program.setLocalAddresses(['10.1.0.3', 'not-an-address']), (err) => isFulcrumError(err, 'ERR_DESIRED_STATE'));
  assert.deepEqual(sorted(program.localAddresses()), ['10.1.0.2', 'fd00:1::1']);
});

test('a set larger than the map is refused before any write; a full swap at capacity works', (t) => {
  const program = DecapProgram.load({ objectPath: OBJECT, guePort: GUE_PORT });
  t.after(() => program.close());
  const max = program.maps.decap_addrs.maxEntries;
  const range = (base: number, n: number) => Array.from({ length: n }, (_, i) => `10.${base}.${i >> 8}.${i & 0xff}`);

  program.setLocalAddresses(range(1, max));
  assert.equal(program.localAddresses().length, max);
  // Every address replaced while the map is full: stale keys must go out first.
  program.setLocalAddresses(range(2, max));
  assert.deepEqual(sorted(program.localAddresses()), sorted(range(2, max)));

  assert.throws(() => program.setLocalAddresses(range(3, max + 1)),
    (err) => isFulcrumError(err, 'ERR_DESIRED_STATE') && /holds at most/.test((err as Error).message));
  assert.deepEqual(sorted(program.localAddresses()), sorted(range(2, max)));
});

test('maps pinned by one load are adopted by the next (agent restart)', (t) => {
  const dir = `/sys/fs/bpf/${uniqueName('fulcrum-test')}`;
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const first = DecapProgram.load({ objectPath: OBJECT, guePort: GUE_PORT, pinDir: dir });
  first.setLocalAddresses(['10.1.0.1']);
  first.setVips(['10.10.0.1']);
  runner.run(first.progFd, Buffer.alloc(60)); // EtherType 0: not a tunnel
  const passedBefore = first.reasonCounters().decap_pass_not_tunnel.packets;
  first.close();
  for (const name of DECAP_MAPS) assert.ok(existsSync(join(dir, name)), `${name} pinned`);

  const second = DecapProgram.load({ objectPath: OBJECT, guePort: GUE_PORT, pinDir: dir });
  t.after(() => second.close());
  assert.deepEqual(second.localAddresses(), ['10.1.0.1']);
  assert.deepEqual(second.vips(), ['10.10.0.1']);
  assert.equal(second.reasonCounters().decap_pass_not_tunnel.packets, passedBefore);
  assert.equal(passedBefore, 1n);
});
