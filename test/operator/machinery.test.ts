// The controller machinery on its own: work queue, conditions, merge patches.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { topLevelFields } from '../../src/operator/json-scan.ts';
import { finalizerPatch, mergePatchTo, withResourceVersion } from '../../src/operator/merge-patch.ts';
import { DONE, WorkQueue, requeue } from '../../src/operator/queue.ts';
import type { ReconcileResult } from '../../src/operator/queue.ts';
import { setCondition, setConditions, stableStringify } from '../../src/operator/status.ts';
import { pino } from 'pino';
import { KubeApiError } from '../../src/shared/kube/errors.ts';
import { testLogger } from './harness.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function queue(handler: (key: string) => Promise<ReconcileResult>, concurrency = 4): WorkQueue {
  return new WorkQueue({ name: 't', concurrency, handler, log: testLogger('queue'), backoff: { initialMs: 10, maxMs: 80 } });
}

describe('work queue', () => {
  it('collapses duplicate keys waiting to run', async () => {
    const seen: string[] = [];
    const q = queue(async (k) => {
      seen.push(k);
      return DONE;
    }, 1);
    for (let i = 0; i < 10; i++) q.add('a');
    q.add('b');
    q.add('a');
    q.start();
    await q.idle();
    assert.deepEqual(seen, ['a', 'b']);
    await q.stop();
  });

  it('never runs one key twice at once, and runs it again when added while running', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const q = queue(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs++;
      await sleep(20);
      running--;
      return DONE;
    });
    q.start();
    q.add('k');
    await sleep(5);
    q.add('k');
    q.add('k');
    await q.idle();
    assert.equal(maxRunning, 1);
    assert.equal(runs, 2, 'one run, then one more for the adds during it');
    await q.stop();
  });

  it('logs a 409 conflict at debug until it keeps coming, then warns', async () => {
    const lines: { level: number; msg: string }[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line) as { level: number; msg: string }); } });
    let runs = 0;
    const q = new WorkQueue({
      name: 't', concurrency: 1, log, backoff: { initialMs: 1, maxMs: 2 },
      handler: async () => {
        runs++;
        if (runs <= 5) throw new KubeApiError(409, 'Conflict', 'the object has been modified');
        return DONE;
      },
    });
    q.start();
    q.add('k');
    await q.idle();
    await q.stop();
    const retries = lines.filter((l) => /retrying/.test(l.msg));
    assert.deepEqual(retries.map((l) => l.level), [20, 20, 20, 40, 40], 'three at debug (20), then warn (40)');
    assert.equal(retries[0]!.msg, 'reconcile met a conflict (409); retrying from the fresh copy');
  });

  it('retries failures with growing backoff and forgets them after a success', async () => {
    const times: number[] = [];
    const q = queue(async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error('boom');
      return DONE;
    });
    q.start();
    q.add('k');
    await q.idle();
    assert.equal(times.length, 4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps[2]! >= 15, `third retry waits longer: ${gaps.join(',')}`);
    await q.stop();
  });

  it('requeues after the delay a handler asks for', async () => {
    let n = 0;
    const q = queue(async () => (++n < 3 ? requeue(10, 'again') : DONE));
    q.start();
    q.add('k');
    await q.idle();
    assert.equal(n, 3);
    await q.stop();
  });

  it('drops queued work and ignores adds once stopped', async () => {
    let n = 0;
    const q = queue(async () => {
      n++;
      await sleep(10);
      return DONE;
    }, 1);
    q.start();
    q.add('a');
    q.add('b');
    q.add('c');
    await sleep(2);
    await q.stop();
    q.add('d');
    await sleep(20);
    assert.equal(n, 1);
  });
});

describe('conditions', () => {
  const t1 = () => '2026-01-01T00:00:00Z';
  const t2 = () => '2026-01-02T00:00:00Z';
  it('moves lastTransitionTime only when the status flips', () => {
    const a = setCondition(undefined, { type: 'Ready', status: true, reason: 'Ready', message: 'ok' }, 1, t1);
    const b = setCondition(a, { type: 'Ready', status: true, reason: 'StillReady', message: 'still' }, 2, t2);
    assert.equal(b[0]!.lastTransitionTime, '2026-01-01T00:00:00Z');
    assert.equal(b[0]!.reason, 'StillReady');
    assert.equal(b[0]!.observedGeneration, 2);
    const c = setCondition(b, { type: 'Ready', status: false, reason: 'Broken', message: 'no' }, 2, t2);
    assert.equal(c[0]!.lastTransitionTime, '2026-01-02T00:00:00Z');
  });

  it('keeps other conditions and their order', () => {
    const list = setConditions(undefined, [
      { type: 'A', status: true, reason: 'R', message: '' },
      { type: 'B', status: 'Unknown', reason: 'R', message: '' },
    ], undefined, t1);
    const next = setCondition(list, { type: 'A', status: false, reason: 'X', message: '' }, undefined, t2);
    assert.deepEqual(next.map((c) => [c.type, c.status]), [['A', 'False'], ['B', 'Unknown']]);
  });

  it('compares JSON regardless of key order', () => {
    assert.equal(stableStringify({ b: 1, a: { d: 2, c: [1, { y: 1, x: 2 }] } }), stableStringify({ a: { c: [1, { x: 2, y: 1 }], d: 2 }, b: 1 }));
  });
});

describe('json-scan', () => {
  it('parses only the wanted top-level fields, whatever the nesting, strings and order', () => {
    const cases = [
      '{"apiVersion":"x","kind":"K","metadata":{"name":"a","labels":{"k":"v,}"}},"spec":{"vips":[{"a":"b\\"}"}]},"status":{"x":[1,2,{"y":"]"}]}}',
      '{ "metadata" : {"name":"a"} , "spec": [1,2], "status": "s" }',
      '{"spec":{"metadata":{"name":"wrong"}},"metadata":{"name":"right"}}',
      '{"metadata":{"name":"últïmo ☃"},"status":{"n":-1.5e3,"t":true,"z":null}}',
    ];
    for (const text of cases) {
      const full = JSON.parse(text) as Record<string, unknown>;
      const want: Record<string, unknown> = {};
      for (const k of ['metadata', 'status']) if (k in full) want[k] = full[k];
      assert.deepEqual(topLevelFields(Buffer.from(text), ['metadata', 'status']), want, text);
    }
  });
});

describe('merge patches', () => {
  const cases: { name: string; current: unknown; desired: unknown; patch: Record<string, unknown> }[] = [
    { name: 'equal: nothing', current: { a: 1, b: { c: [1, 2] } }, desired: { a: 1, b: { c: [1, 2] } }, patch: {} },
    { name: 'a changed scalar', current: { a: 1, b: 2 }, desired: { a: 1, b: 3 }, patch: { b: 3 } },
    { name: 'a removed member is null, an undefined one too', current: { a: 1, b: 2, c: 3 }, desired: { a: 1, c: undefined }, patch: { b: null, c: null } },
    { name: 'objects recursively', current: { s: { x: 1, y: { z: 1, w: 2 } } }, desired: { s: { x: 1, y: { z: 2 } } }, patch: { s: { y: { z: 2, w: null } } } },
    { name: 'arrays whole', current: { l: [1, 2, 3] }, desired: { l: [1, 3] }, patch: { l: [1, 3] } },
    { name: 'an object replacing a scalar', current: { a: 'x' }, desired: { a: { b: 1 } }, patch: { a: { b: 1 } } },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(mergePatchTo(c.current, c.desired), c.patch));
  }

  it('guards a patch with the resourceVersion it was computed from, keeping its metadata', () => {
    assert.deepEqual(withResourceVersion('7', { metadata: { finalizers: ['f'] }, status: {} }), { metadata: { finalizers: ['f'], resourceVersion: '7' }, status: {} });
    assert.deepEqual(withResourceVersion(undefined, { status: {} }), { status: {} });
  });

  it('adds and releases a finalizer as a patch of metadata.finalizers only', () => {
    assert.deepEqual(finalizerPatch({ resourceVersion: '5' }, 'x/y', true), { metadata: { finalizers: ['x/y'], resourceVersion: '5' } });
    assert.deepEqual(finalizerPatch({ finalizers: ['other'], resourceVersion: '5' }, 'x/y', true), { metadata: { finalizers: ['other', 'x/y'], resourceVersion: '5' } });
    assert.equal(finalizerPatch({ finalizers: ['x/y'] }, 'x/y', true), undefined);
    assert.deepEqual(finalizerPatch({ finalizers: ['other', 'x/y'], resourceVersion: '6' }, 'x/y', false), { metadata: { finalizers: ['other'], resourceVersion: '6' } });
    assert.deepEqual(finalizerPatch({ finalizers: ['x/y'], resourceVersion: '6' }, 'x/y', false), { metadata: { finalizers: null, resourceVersion: '6' } });
    assert.equal(finalizerPatch({ finalizers: ['other'] }, 'x/y', false), undefined);
  });
});
