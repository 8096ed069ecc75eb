import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { waitFor, withServer } from './helpers.ts';

interface WatchLine {
  type: string;
  object: { kind?: string; code?: number; reason?: string; message?: string; metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> } };
}

/** Opens a raw watch and collects its lines until `until` holds or the stream ends. */
async function rawWatch(server: ApiServer, path: string, until: (lines: WatchLine[]) => boolean, timeoutMs = 3000): Promise<{ lines: WatchLine[]; status: number; ended: boolean }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const res = await fetch(`${server.url}${path}`, { signal: controller.signal });
  const lines: WatchLine[] = [];
  let buffer = '';
  let ended = false;
  try {
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buffer.slice(0, nl)) as WatchLine);
        buffer = buffer.slice(nl + 1);
      }
      if (until(lines)) break;
    }
    ended = !until(lines) || res.bodyUsed;
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return { lines, status: res.status, ended };
}

describe('apiserver watch and informers', () => {
  let server: ApiServer;
  let core: k8s.CoreV1Api;

  before(async () => {
    server = await withServer({ bookmarkIntervalMs: 100 });
    core = server.kubeConfig().makeApiClient(k8s.CoreV1Api);
  });
  after(() => server.stop());

  it('feeds an informer add, update and delete', async () => {
    const kc = server.kubeConfig();
    const informer = k8s.makeInformer(kc, '/api/v1/nodes', () => core.listNode());
    const seen: string[] = [];
    informer.on('add', (n) => seen.push(`add:${n.metadata?.name}`));
    informer.on('update', (n) => seen.push(`update:${n.metadata?.name}:${n.metadata?.labels?.['zone'] ?? ''}`));
    informer.on('delete', (n) => seen.push(`delete:${n.metadata?.name}`));
    await core.createNode({ body: { metadata: { name: 'node-0' } } });
    await informer.start();
    await waitFor(() => seen.includes('add:node-0'), 'initial list');
    await core.createNode({ body: { metadata: { name: 'node-1' } } });
    await core.patchNode({ name: 'node-1', body: { metadata: { labels: { zone: 'a' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await core.deleteNode({ name: 'node-1' });
    await waitFor(() => seen.includes('delete:node-1'), 'delete event');
    assert.deepEqual(seen, ['add:node-0', 'add:node-1', 'update:node-1:a', 'delete:node-1']);
    assert.deepEqual(informer.list().map((n) => n.metadata?.name), ['node-0']);
    await informer.stop();
  });

  it('makes an informer re-list after a forced 410 and a broken connection', async () => {
    const kc = server.kubeConfig();
    let lists = 0;
    const informer = k8s.makeInformer(kc, '/api/v1/namespaces/default/pods', () => {
      lists++;
      return core.listNamespacedPod({ namespace: 'default' });
    });
    const added: string[] = [];
    const deleted: string[] = [];
    const errors: unknown[] = [];
    informer.on('add', (p) => added.push(p.metadata?.name ?? ''));
    informer.on('delete', (p) => deleted.push(p.metadata?.name ?? ''));
    informer.on('error', (e) => errors.push(e));
    await informer.start();
    assert.equal(lists, 1);
    const pod = (name: string) => core.createNamespacedPod({ namespace: 'default', body: { metadata: { name }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } });
    await pod('before');
    await waitFor(() => added.includes('before'), 'pod added');

    // The next watch is told its resourceVersion expired; cut the current one so the
    // informer reconnects into it. Changes made meanwhile must still arrive via the re-list.
    server.faults.expireNext({ verb: 'watch', resource: 'pods' });
    server.faults.compactHistory();
    server.faults.breakWatches();
    await core.deleteNamespacedPod({ namespace: 'default', name: 'before' });
    await pod('during');
    // client-node reports a reset connection as an error and leaves restarting to its user.
    await waitFor(() => errors.length > 0 || lists > 1, 'informer notices the cut');
    if (lists === 1) await informer.start();
    await waitFor(() => lists >= 2 && added.includes('during') && deleted.includes('before'), 're-list after 410');
    await pod('after');
    await waitFor(() => added.includes('after'), 'watch resumed after re-list');
    assert.deepEqual(informer.list().map((p) => p.metadata?.name).sort(), ['after', 'during']);
    await informer.stop();
  });

  it('answers a watch from a compacted resourceVersion with an in-stream 410 Expired', async () => {
    const ns = await core.createNamespace({ body: { metadata: { name: 'compaction' } } });
    const oldRv = ns.metadata?.resourceVersion ?? '';
    await core.createNamespace({ body: { metadata: { name: 'compaction-2' } } });
    server.faults.compactHistory();
    const { lines, status } = await rawWatch(server, `/api/v1/namespaces?watch=1&resourceVersion=${oldRv}`, (l) => l.length >= 1);
    assert.equal(status, 200);
    assert.equal(lines[0]?.type, 'ERROR');
    assert.equal(lines[0]?.object.code, 410);
    assert.equal(lines[0]?.object.reason, 'Expired');
    assert.match(lines[0]?.object.message ?? '', /^too old resource version/);
    // The current resourceVersion is still a valid start.
    const list = await core.listNamespace();
    const fresh = rawWatch(server, `/api/v1/namespaces?watch=1&resourceVersion=${list.metadata?.resourceVersion}`, (l) => l.length >= 1);
    await new Promise((r) => setTimeout(r, 50));
    await core.createNamespace({ body: { metadata: { name: 'compaction-3' } } });
    const after3 = await fresh;
    assert.equal(after3.lines[0]?.type, 'ADDED');
    assert.equal(after3.lines[0]?.object.metadata?.name, 'compaction-3');
  });

  it('replays history from a resourceVersion and reports selector transitions', async () => {
    const start = (await core.listNamespace()).metadata?.resourceVersion;
    await core.createNamespace({ body: { metadata: { name: 'sel-1', labels: { watch: 'me' } } } });
    await core.patchNamespace({ name: 'sel-1', body: { metadata: { labels: { watch: 'not-me' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await core.patchNamespace({ name: 'sel-1', body: { metadata: { labels: { watch: 'me' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const { lines } = await rawWatch(server, `/api/v1/namespaces?watch=true&labelSelector=watch%3Dme&resourceVersion=${start}`, (l) => l.length >= 3);
    assert.deepEqual(lines.map((l) => `${l.type}:${l.object.metadata?.name}`), ['ADDED:sel-1', 'DELETED:sel-1', 'ADDED:sel-1']);
    const rvs = lines.map((l) => Number(l.object.metadata?.resourceVersion));
    assert.deepEqual(rvs, [...rvs].sort((a, b) => a - b));
  });

  it('sends the initial state without a resourceVersion, bookmarks, and honours timeoutSeconds', async () => {
    const started = Date.now();
    const { lines } = await rawWatch(server, '/api/v1/namespaces?watch=1&allowWatchBookmarks=true&timeoutSeconds=1&labelSelector=kubernetes.io%2Fmetadata.name%3Ddefault', () => false, 5000);
    assert.ok(Date.now() - started < 4000, 'stream ended by timeoutSeconds');
    assert.equal(lines[0]?.type, 'ADDED');
    assert.equal(lines[0]?.object.metadata?.name, 'default');
    const bookmarks = lines.filter((l) => l.type === 'BOOKMARK');
    assert.ok(bookmarks.length >= 1);
    assert.equal(bookmarks[0]?.object.kind, 'Namespace');
    assert.match(bookmarks[0]?.object.metadata?.resourceVersion ?? '', /^\d+$/);
  });

  it('streams the initial list with sendInitialEvents and an initial-events-end bookmark', async () => {
    const { lines } = await rawWatch(server, '/api/v1/namespaces?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan',
      (l) => l.some((x) => x.type === 'BOOKMARK'));
    const bookmark = lines.find((l) => l.type === 'BOOKMARK');
    assert.equal(bookmark?.object.metadata?.annotations?.['k8s.io/initial-events-end'], 'true');
    assert.ok(lines.filter((l) => l.type === 'ADDED').some((l) => l.object.metadata?.name === 'kube-system'));
  });

  it('lists at an exact past resourceVersion from history', async () => {
    const before = await core.listNamespace();
    await core.createNamespace({ body: { metadata: { name: 'later' } } });
    const past = await core.listNamespace({ resourceVersion: before.metadata?.resourceVersion, resourceVersionMatch: 'Exact' });
    assert.deepEqual(past.items.map((n) => n.metadata?.name), before.items.map((n) => n.metadata?.name));
  });
});
