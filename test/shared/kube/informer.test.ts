// The shared informer's restart rules, against a scripted loopback server: a watch that
// answers 410 relists at once, a list that answers 410 backs off, a watch that goes
// silent is replaced after the idle limit; list events and watch events say which they are.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { KubeClient } from '../../../src/shared/kube/client.ts';
import { Informer, backoffDelay, type InformerEvent } from '../../../src/shared/kube/informer.ts';
import type { KubeObject, ResourceType } from '../../../src/shared/kube/objects.ts';
import { fakeApi, json, status } from './fake-api.ts';

const THINGS: ResourceType = { group: 'example.dev', version: 'v1', plural: 'things', kind: 'Thing', namespaced: false };
const log = pino({ level: 'silent' });
const thing = (rv: string): KubeObject => ({ metadata: { name: 'a', resourceVersion: rv } });

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !check(); await sleep(10)) if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
}

test('backoff grows exponentially with jitter in [d/2, d], capped', () => {
  const opts = { initialMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(0, opts, () => 0), 50);
  assert.equal(backoffDelay(0, opts, () => 1), 100);
  assert.equal(backoffDelay(3, opts, () => 1), 800);
  assert.equal(backoffDelay(50, opts, () => 1), 1000);
  assert.equal(backoffDelay(50, opts, () => 0), 500);
});

test('410 on a watch relists at once; 410 on a list backs off; a silent watch is replaced after the idle limit', async () => {
  let lists = 0;
  let watches = 0;
  const open: ServerResponse[] = [];
  const api = await fakeApi((req, res) => {
    if (req.url.searchParams.get('watch') === null) {
      lists++;
      if (lists === 2) return status(res, 410, 'Expired', 'continue token expired');
      return json(res, 200, { metadata: { resourceVersion: String(lists * 10) }, items: [thing(String(lists * 10))] });
    }
    watches++;
    if (watches === 1) return status(res, 410, 'Expired', 'too old resource version');
    // Later watches: headers, one event, then silence (a connection that died quietly).
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write(`${JSON.stringify({ type: 'MODIFIED', object: thing(`${lists * 10 + 1}`) })}\n`);
    open.push(res);
  });
  const client = new KubeClient(api.kc);
  const restarts: string[] = [];
  const events: InformerEvent<KubeObject>[] = [];
  let listed = 0;
  const informer = new Informer<KubeObject>({
    client, type: THINGS, log, fieldSelector: 'metadata.name=a',
    backoff: { initialMs: 50, maxMs: 100 }, idleMs: 300, watchTimeoutSeconds: 60,
    onListed: () => listed++,
    onRestart: (reason) => restarts.push(reason),
  });
  informer.on((e) => events.push(e));
  try {
    informer.start();
    await informer.synced;
    // list 1 → watch 1 answers 410 → list 2 answers 410 (backoff) → list 3 → watch 2 goes silent → replaced.
    await until(() => watches >= 3, 'the silent watch replaced');
    assert.deepEqual(restarts.slice(0, 3), ['expired', 'error', 'error']);
    assert.equal(informer.stats.relistsAfterGone, 1);
    assert.ok(informer.stats.restartsAfterError >= 2);
    assert.equal(lists, 3, 'an idle restart resumes the watch; it does not relist');
    assert.equal(listed, 2);
    assert.deepEqual(events.slice(0, 3).map((e) => [e.type, e.source, e.object.metadata.resourceVersion]),
      [['added', 'list', '10'], ['updated', 'list', '30'], ['updated', 'watch', '31']]);
    const watch = api.requests.filter((r) => r.url.searchParams.get('watch') !== null).at(-1)!;
    assert.equal(watch.url.searchParams.get('resourceVersion'), '31', 'resumes from the last resourceVersion seen');
    assert.equal(watch.url.searchParams.get('fieldSelector'), 'metadata.name=a');
    assert.equal(informer.get('a')?.metadata.resourceVersion, '31');
  } finally {
    await informer.stop();
    client.close();
    for (const res of open) res.destroy();
    await api.close();
  }
});
