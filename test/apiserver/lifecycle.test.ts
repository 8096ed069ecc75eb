import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { expectStatus, waitFor, withServer } from './helpers.ts';

const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

describe('apiserver deletion: finalizers, garbage collection, namespaces', () => {
  let server: ApiServer;
  let core: k8s.CoreV1Api;
  let discovery: k8s.DiscoveryV1Api;

  before(async () => {
    server = await withServer();
    const kc = server.kubeConfig();
    core = kc.makeApiClient(k8s.CoreV1Api);
    discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
  });
  after(() => server.stop());

  const exists = async (fn: () => Promise<unknown>): Promise<boolean> => {
    try {
      await fn();
      return true;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return false;
      throw err;
    }
  };

  it('holds an object with finalizers until the last one is removed', async () => {
    await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'held', finalizers: ['fulcrum.io/vip'] }, spec: { ports: [{ port: 80 }] } } });
    const deleting = await core.deleteNamespacedService({ namespace: 'default', name: 'held' });
    assert.ok(deleting.metadata?.deletionTimestamp, 'deletionTimestamp set');
    const still = await core.readNamespacedService({ namespace: 'default', name: 'held' });
    assert.deepEqual(still.metadata?.finalizers, ['fulcrum.io/vip']);
    const added = await expectStatus(core.patchNamespacedService({ namespace: 'default', name: 'held', body: { metadata: { finalizers: ['fulcrum.io/vip', 'other.io/x'] } } }, merge), 422);
    assert.match(added.message ?? '', /no new finalizers can be added if the object is being deleted/);
    const again = await core.deleteNamespacedService({ namespace: 'default', name: 'held' });
    assert.equal(again.metadata?.resourceVersion, still.metadata?.resourceVersion, 'a repeated delete changes nothing');
    await core.patchNamespacedService({ namespace: 'default', name: 'held', body: { metadata: { finalizers: null } } }, merge);
    assert.equal(await exists(() => core.readNamespacedService({ namespace: 'default', name: 'held' })), false);
  });

  it('garbage-collects dependents in the background when their owner goes', async () => {
    const svc = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'owner' }, spec: { ports: [{ port: 80 }] } } });
    const owner = { apiVersion: 'v1', kind: 'Service', name: 'owner', uid: svc.metadata!.uid!, controller: true, blockOwnerDeletion: true };
    const other = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'other-owner' }, spec: { ports: [{ port: 80 }] } } });
    const otherRef = { apiVersion: 'v1', kind: 'Service', name: 'other-owner', uid: other.metadata!.uid! };
    const slice = (name: string, ownerReferences: k8s.V1OwnerReference[]) => discovery.createNamespacedEndpointSlice({
      namespace: 'default', body: { metadata: { name, ownerReferences }, addressType: 'IPv4', endpoints: [] },
    });
    await slice('owned-1', [owner]);
    await slice('owned-2', [owner, otherRef]);
    await core.deleteNamespacedService({ namespace: 'default', name: 'owner' });
    await waitFor(async () => !(await exists(() => discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 'owned-1' }))), 'owned-1 collected');
    const survivor = await waitFor(async () => {
      const s = await discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 'owned-2' });
      return s.metadata?.ownerReferences?.length === 1 ? s : undefined;
    }, 'dangling reference removed');
    assert.equal(survivor.metadata?.ownerReferences?.[0]?.name, 'other-owner');
  });

  it('deletes dependents created with an already-missing owner', async () => {
    await discovery.createNamespacedEndpointSlice({
      namespace: 'default',
      body: { metadata: { name: 'orphaned', ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'ghost', uid: '00000000-0000-0000-0000-000000000000' }] }, addressType: 'IPv4', endpoints: [] },
    });
    await waitFor(async () => !(await exists(() => discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 'orphaned' }))), 'dangling dependent collected');
  });

  it('waits for dependents under foreground deletion and orphans them on request', async () => {
    const fg = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'fg' }, spec: { ports: [{ port: 80 }] } } });
    await discovery.createNamespacedEndpointSlice({
      namespace: 'default',
      body: { metadata: { name: 'fg-dep', finalizers: ['test.io/hold'], ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'fg', uid: fg.metadata!.uid!, blockOwnerDeletion: true }] }, addressType: 'IPv4', endpoints: [] },
    });
    const deleting = await core.deleteNamespacedService({ namespace: 'default', name: 'fg', propagationPolicy: 'Foreground' });
    assert.ok(deleting.metadata?.finalizers?.includes('foregroundDeletion'));
    await waitFor(async () => (await discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 'fg-dep' })).metadata?.deletionTimestamp, 'dependent deleting');
    assert.ok(await exists(() => core.readNamespacedService({ namespace: 'default', name: 'fg' })), 'owner waits for its blocking dependent');
    await discovery.patchNamespacedEndpointSlice({ namespace: 'default', name: 'fg-dep', body: { metadata: { finalizers: null } } }, merge);
    await waitFor(async () => !(await exists(() => core.readNamespacedService({ namespace: 'default', name: 'fg' }))), 'owner deleted after dependents');

    const orphanOwner = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'orph' }, spec: { ports: [{ port: 80 }] } } });
    await discovery.createNamespacedEndpointSlice({
      namespace: 'default',
      body: { metadata: { name: 'orph-dep', ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'orph', uid: orphanOwner.metadata!.uid! }] }, addressType: 'IPv4', endpoints: [] },
    });
    await core.deleteNamespacedService({ namespace: 'default', name: 'orph', propagationPolicy: 'Orphan' });
    await waitFor(async () => !(await exists(() => core.readNamespacedService({ namespace: 'default', name: 'orph' }))), 'orphaning owner deleted');
    const kept = await discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 'orph-dep' });
    assert.equal(kept.metadata?.ownerReferences, undefined);
  });

  it('checks delete preconditions', async () => {
    await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'pre' }, spec: { ports: [{ port: 80 }] } } });
    const status = await expectStatus(core.deleteNamespacedService({ namespace: 'default', name: 'pre', body: { preconditions: { uid: 'wrong' } } }), 409);
    assert.match(status.message ?? '', /Precondition failed: UID in precondition: wrong/);
  });

  it('empties a deleted namespace, then removes it', async () => {
    await core.createNamespace({ body: { metadata: { name: 'doomed' } } });
    await core.createNamespacedService({ namespace: 'doomed', body: { metadata: { name: 's1' }, spec: { ports: [{ port: 80 }] } } });
    await core.createNamespacedService({ namespace: 'doomed', body: { metadata: { name: 's2', finalizers: ['fulcrum.io/vip'] }, spec: { ports: [{ port: 80 }] } } });
    // The real server answers with the Terminating Namespace (client-node types it as a Status).
    const ns = await core.deleteNamespace({ name: 'doomed' }) as unknown as k8s.V1Namespace;
    assert.equal(ns.status?.phase, 'Terminating');
    const forbidden = await expectStatus(core.createNamespacedService({ namespace: 'doomed', body: { metadata: { name: 's3' }, spec: { ports: [{ port: 80 }] } } }), 403);
    assert.match(forbidden.message ?? '', /because it is being terminated/);
    await waitFor(async () => !(await exists(() => core.readNamespacedService({ namespace: 'doomed', name: 's1' }))), 's1 deleted');
    assert.ok(await exists(() => core.readNamespace({ name: 'doomed' })), 'namespace waits for finalized content');
    await core.patchNamespacedService({ namespace: 'doomed', name: 's2', body: { metadata: { finalizers: null } } }, merge);
    await waitFor(async () => !(await exists(() => core.readNamespace({ name: 'doomed' }))), 'namespace removed');
  });
});
