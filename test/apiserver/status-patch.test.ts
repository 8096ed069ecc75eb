import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { expectStatus, withServer } from './helpers.ts';
import { POOL_CRD } from './crd-fixture.ts';

const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const strategic = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
const jsonPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);

describe('apiserver status subresource and patches', () => {
  let server: ApiServer;
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    server = await withServer();
    const kc = server.kubeConfig();
    core = kc.makeApiClient(k8s.CoreV1Api);
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    await kc.makeApiClient(k8s.ApiextensionsV1Api).createCustomResourceDefinition({ body: POOL_CRD });
  });
  after(() => server.stop());

  const pool = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: 'fulcrum.io/v1alpha1', kind: 'LoadBalancerPool', metadata: { name }, spec,
  });
  const poolApi = { group: 'fulcrum.io', version: 'v1alpha1', namespace: 'default', plural: 'loadbalancerpools' };

  it('ignores status on create, status on PUT of the main resource and spec on PUT of /status', async () => {
    const created = await custom.createNamespacedCustomObject({ ...poolApi, body: { ...pool('p1', { cidr: '192.0.2.0/24' }), status: { allocated: 5 } } });
    assert.equal(created.status, undefined, 'status is dropped on create');
    assert.equal(created.metadata.generation, 1);

    const withStatus = await custom.replaceNamespacedCustomObjectStatus({ ...poolApi, name: 'p1', body: { ...created, spec: { cidr: '198.51.100.0/24' }, status: { allocated: 3 } } });
    assert.equal(withStatus.status.allocated, 3);
    assert.equal(withStatus.spec.cidr, '192.0.2.0/24', 'PUT /status ignores spec');
    assert.equal(withStatus.metadata.generation, 1, 'status changes do not bump generation');

    const mainPut = await custom.replaceNamespacedCustomObject({ ...poolApi, name: 'p1', body: { ...withStatus, spec: { ...withStatus.spec, cidr: '198.51.100.0/24' }, status: { allocated: 99 } } });
    assert.equal(mainPut.status.allocated, 3, 'PUT of the main resource ignores status');
    assert.equal(mainPut.spec.cidr, '198.51.100.0/24');
    assert.equal(mainPut.metadata.generation, 2, 'spec change bumps generation');

    const labelled = await custom.patchNamespacedCustomObject({ ...poolApi, name: 'p1', body: { metadata: { labels: { a: 'b' } } } }, merge);
    assert.equal(labelled.metadata.generation, 2, 'metadata changes do not bump generation');
  });

  it('keeps Service status behind its subresource', async () => {
    const svc = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'lb' }, spec: { type: 'LoadBalancer', ports: [{ name: 'http', port: 80 }] } } });
    const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
    assert.deepEqual(plain(svc.status), { loadBalancer: {} });
    const ingress = { loadBalancer: { ingress: [{ ip: '192.0.2.10', ipMode: 'VIP' }] } };
    const patched = await core.patchNamespacedServiceStatus({ namespace: 'default', name: 'lb', body: { status: ingress } }, merge);
    assert.deepEqual(plain(patched.status), ingress);
    const mainPatch = await core.patchNamespacedService({ namespace: 'default', name: 'lb', body: { status: { loadBalancer: { ingress: [{ ip: '192.0.2.99' }] } } } }, merge);
    assert.deepEqual(plain(mainPatch.status), ingress, 'status written through the main resource is ignored');
    const invalid = await expectStatus(core.patchNamespacedServiceStatus({ namespace: 'default', name: 'lb', body: { status: { loadBalancer: { ingress: [{ ip: 'not-an-ip' }] } } } }, merge), 422);
    assert.equal(invalid.details?.causes?.[0]?.field, 'status.loadBalancer.ingress[0].ip');
  });

  it('merges Service ports by port with a strategic merge patch', async () => {
    const patched = await core.patchNamespacedService({
      namespace: 'default', name: 'lb',
      body: { spec: { ports: [{ name: 'https', port: 443 }, { port: 80, targetPort: 8080 }] } },
    }, strategic);
    const ports = patched.spec?.ports?.map((p) => `${p.name}:${p.port}->${String(p.targetPort)}`);
    assert.deepEqual(ports, ['http:80->8080', 'https:443->443']);
    const removed = await core.patchNamespacedService({
      namespace: 'default', name: 'lb', body: { spec: { ports: [{ port: 443, $patch: 'delete' }] } },
    }, strategic);
    assert.deepEqual(removed.spec?.ports?.map((p) => p.port), [80]);
    // A merge patch replaces lists whole.
    const replaced = await core.patchNamespacedService({ namespace: 'default', name: 'lb', body: { spec: { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } } }, merge);
    assert.deepEqual(replaced.spec?.ports?.map((p) => p.port), [53]);
  });

  it('merges finalizers as a set and conditions by type', async () => {
    await core.createNode({ body: { metadata: { name: 'n1', finalizers: ['a.io/x'] }, status: { conditions: [{ type: 'Ready', status: 'False' }, { type: 'DiskPressure', status: 'False' }] } } });
    const n = await core.patchNode({ name: 'n1', body: { metadata: { finalizers: ['b.io/y'] } } }, strategic);
    assert.deepEqual(n.metadata?.finalizers, ['a.io/x', 'b.io/y']);
    const s = await core.patchNodeStatus({ name: 'n1', body: { status: { conditions: [{ type: 'Ready', status: 'True' }] } } }, strategic);
    assert.deepEqual(s.status?.conditions?.map((c) => `${c.type}=${c.status}`), ['Ready=True', 'DiskPressure=False']);
    const cleared = await core.patchNode({ name: 'n1', body: { metadata: { '$deleteFromPrimitiveList/finalizers': ['a.io/x', 'b.io/y'] } } }, strategic);
    assert.equal(cleared.metadata?.finalizers, undefined);
  });

  it('applies JSON patches, including test operations and resourceVersion preconditions', async () => {
    const svc = await core.readNamespacedService({ namespace: 'default', name: 'lb' });
    const patched = await core.patchNamespacedService({
      namespace: 'default', name: 'lb',
      body: [
        { op: 'test', path: '/spec/type', value: 'LoadBalancer' },
        { op: 'add', path: '/metadata/annotations', value: { owner: 'fulcrum' } },
        { op: 'replace', path: '/spec/ports/0/port', value: 5353 },
      ],
    }, jsonPatch);
    assert.equal(patched.metadata?.annotations?.['owner'], 'fulcrum');
    assert.equal(patched.spec?.ports?.[0]?.port, 5353);
    await expectStatus(core.patchNamespacedService({ namespace: 'default', name: 'lb', body: [{ op: 'test', path: '/spec/type', value: 'ClusterIP' }] }, jsonPatch), 422);
    const stale = await expectStatus(core.patchNamespacedService({
      namespace: 'default', name: 'lb', body: { metadata: { resourceVersion: svc.metadata?.resourceVersion }, spec: { sessionAffinity: 'ClientIP' } },
    }, merge), 409);
    assert.equal(stale.reason, 'Conflict');
  });

  it('refuses strategic merge and server-side apply for custom resources with 415', async () => {
    const smp = await expectStatus(custom.patchNamespacedCustomObject({ ...poolApi, name: 'p1', body: { spec: { mode: 'random' } } }, strategic), 415);
    assert.equal(smp.reason, 'UnsupportedMediaType');
    const apply = await expectStatus(custom.patchNamespacedCustomObject({ ...poolApi, name: 'p1', body: { spec: { mode: 'random' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply)), 415);
    assert.match(apply.message ?? '', /server-side apply/);
    const ok = await custom.patchNamespacedCustomObject({ ...poolApi, name: 'p1', body: { spec: { mode: 'random' } } }, merge);
    assert.equal(ok.spec.mode, 'random');
  });
});
