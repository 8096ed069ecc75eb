import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { expectStatus, waitFor, withServer } from './helpers.ts';
import { POOL_CRD } from './crd-fixture.ts';

const poolApi = { group: 'fulcrum.io', version: 'v1alpha1', namespace: 'default', plural: 'loadbalancerpools' };
const pool = (name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'fulcrum.io/v1alpha1', kind: 'LoadBalancerPool', metadata: { name }, spec, ...extra,
});

describe('apiserver CustomResourceDefinitions', () => {
  let server: ApiServer;
  let custom: k8s.CustomObjectsApi;
  let extensions: k8s.ApiextensionsV1Api;

  before(async () => {
    server = await withServer();
    const kc = server.kubeConfig();
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    extensions = kc.makeApiClient(k8s.ApiextensionsV1Api);
  });
  after(() => server.stop());

  it('serves a CRD\'s resource once created and reports it Established', async () => {
    await expectStatus(custom.listNamespacedCustomObject(poolApi), 404);
    await extensions.createCustomResourceDefinition({ body: POOL_CRD });
    const crd = await waitFor(async () => {
      const c = await extensions.readCustomResourceDefinition({ name: 'loadbalancerpools.fulcrum.io' });
      return c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True') ? c : undefined;
    }, 'Established');
    assert.deepEqual(crd.status?.storedVersions, ['v1alpha1']);
    assert.equal(crd.status?.acceptedNames?.kind, 'LoadBalancerPool');
    const resources = await (await fetch(`${server.url}/apis/fulcrum.io/v1alpha1`)).json() as { resources: { name: string; kind: string; shortNames?: string[]; namespaced: boolean; verbs: string[]; categories?: string[] }[] };
    const main = resources.resources.find((r) => r.name === 'loadbalancerpools');
    assert.equal(main?.kind, 'LoadBalancerPool');
    assert.deepEqual(main?.shortNames, ['lbp']);
    assert.deepEqual(main?.categories, ['fulcrum']);
    assert.equal(main?.namespaced, true);
    assert.ok(main?.verbs.includes('watch'));
    assert.ok(resources.resources.some((r) => r.name === 'loadbalancerpools/status'));
    const groups = await (await fetch(`${server.url}/apis`)).json() as { groups: { name: string; preferredVersion: { version: string } }[] };
    assert.equal(groups.groups.find((g) => g.name === 'fulcrum.io')?.preferredVersion.version, 'v1alpha1');
  });

  it('rejects invalid custom resources with 422 and per-field causes', async () => {
    const status = await expectStatus(custom.createNamespacedCustomObject({
      ...poolApi,
      body: pool('bad', { cidr: 'not-a-cidr', mode: 'roundrobin', maxVIPs: 5000, name: 'Bad', ports: [1, 2, 3, 4, 5], minVIPs: 'x' }),
    }), 422);
    assert.equal(status.reason, 'Invalid');
    const causes = Object.fromEntries((status.details?.causes ?? []).map((c) => [c.field, c]));
    assert.equal(causes['spec.cidr']?.reason, 'FieldValueInvalid');
    assert.equal(causes['spec.mode']?.reason, 'FieldValueNotSupported');
    assert.match(causes['spec.mode']?.message ?? '', /supported values: "maglev", "random"/);
    assert.match(causes['spec.maxVIPs']?.message ?? '', /should be less than or equal to 1024/);
    assert.match(causes['spec.name']?.message ?? '', /should match/);
    assert.equal(causes['spec.ports']?.reason, 'FieldValueTooMany');
    assert.equal(causes['spec.minVIPs']?.reason, 'FieldValueTypeInvalid');
    assert.match(status.message ?? '', /^LoadBalancerPool\.fulcrum\.io "bad" is invalid: \[/);

    const missing = await expectStatus(custom.createNamespacedCustomObject({ ...poolApi, body: pool('bad2', {}) }), 422);
    assert.deepEqual(missing.details?.causes?.map((c) => [c.field, c.reason]), [['spec.cidr', 'FieldValueRequired']]);
  });

  it('evaluates CEL x-kubernetes-validations rules', async () => {
    const status = await expectStatus(custom.createNamespacedCustomObject({ ...poolApi, body: pool('cel', { cidr: '192.0.2.0/24', minVIPs: 8, maxVIPs: 4 }) }), 422);
    assert.deepEqual(status.details?.causes?.map((c) => [c.field, c.message]), [['spec', 'Invalid value: "object": maxVIPs must be at least minVIPs']]);
    await custom.createNamespacedCustomObject({ ...poolApi, body: pool('cel', { cidr: '192.0.2.0/24', minVIPs: 2, maxVIPs: 4 }) });
  });

  it('prunes unknown fields, applies defaults, and honours fieldValidation', async () => {
    const created = await custom.createNamespacedCustomObject({
      ...poolApi, fieldValidation: 'Ignore',
      body: pool('pruned', { cidr: '192.0.2.0/24', bogus: true, labels: { any: 'thing' } }, { extraTopLevel: 1 }),
    });
    assert.equal(created.spec.bogus, undefined);
    assert.equal(created.extraTopLevel, undefined);
    assert.deepEqual(created.spec.labels, { any: 'thing' }, 'additionalProperties keeps arbitrary keys');
    assert.equal(created.spec.mode, 'maglev', 'default applied');
    assert.equal(created.spec.minVIPs, 0);

    const strict = await expectStatus(custom.createNamespacedCustomObject({
      ...poolApi, fieldValidation: 'Strict', body: pool('strict', { cidr: '192.0.2.0/24', bogus: true }),
    }), 400);
    assert.match(strict.message ?? '', /strict decoding error: unknown field "spec\.bogus"/);

    // The default (Warn) prunes and says so in a Warning header.
    const res = await fetch(`${server.url}/apis/fulcrum.io/v1alpha1/namespaces/default/loadbalancerpools`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(pool('warned', { cidr: '192.0.2.0/24', bogus: 1 })),
    });
    assert.equal(res.status, 201);
    assert.match(res.headers.get('warning') ?? '', /299 - "unknown field \\"spec\.bogus\\""/);
  });

  it('prints additionalPrinterColumns as a Table', async () => {
    await custom.patchNamespacedCustomObjectStatus({ ...poolApi, name: 'pruned', body: { status: { allocated: 7 } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const res = await fetch(`${server.url}/apis/fulcrum.io/v1alpha1/namespaces/default/loadbalancerpools`, {
      headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
    });
    const table = await res.json() as { kind: string; apiVersion: string; columnDefinitions: { name: string; type: string }[]; rows: { cells: unknown[]; object: { kind: string; metadata: { name: string } } }[] };
    assert.equal(table.kind, 'Table');
    assert.equal(table.apiVersion, 'meta.k8s.io/v1');
    assert.deepEqual(table.columnDefinitions.map((c) => c.name), ['Name', 'CIDR', 'Mode', 'Allocated', 'Age']);
    const row = table.rows.find((r) => r.cells[0] === 'pruned');
    assert.deepEqual(row?.cells.slice(0, 4), ['pruned', '192.0.2.0/24', 'maglev', 7]);
    assert.match(String(row?.cells[4]), /^\d+s$/);
    assert.equal(row?.object.kind, 'PartialObjectMetadata');
  });

  it('supports list and watch by label selector on custom resources', async () => {
    await custom.patchNamespacedCustomObject({ ...poolApi, name: 'cel', body: { metadata: { labels: { tier: 'edge' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const list = await custom.listNamespacedCustomObject({ ...poolApi, labelSelector: 'tier=edge' });
    assert.deepEqual(list.items.map((i: { metadata: { name: string } }) => i.metadata.name), ['cel']);
  });

  it('deletes every instance and stops serving when the CRD is deleted', async () => {
    await custom.patchNamespacedCustomObject({ ...poolApi, name: 'cel', body: { metadata: { finalizers: ['fulcrum.io/cleanup'] } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await extensions.deleteCustomResourceDefinition({ name: 'loadbalancerpools.fulcrum.io' });
    await waitFor(async () => (await custom.listNamespacedCustomObject(poolApi)).items.length === 1, 'instances deleted except the finalized one');
    const held = await custom.getNamespacedCustomObject({ ...poolApi, name: 'cel' });
    assert.ok(held.metadata.deletionTimestamp);
    const refused = await expectStatus(custom.createNamespacedCustomObject({ ...poolApi, body: pool('late', { cidr: '192.0.2.0/24' }) }), 405);
    assert.match(refused.message ?? '', /terminating/);
    await custom.patchNamespacedCustomObject({ ...poolApi, name: 'cel', body: { metadata: { finalizers: null } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await waitFor(async () => {
      try {
        await extensions.readCustomResourceDefinition({ name: 'loadbalancerpools.fulcrum.io' });
        return false;
      } catch {
        return true;
      }
    }, 'CRD gone');
    await expectStatus(custom.listNamespacedCustomObject(poolApi), 404);
    assert.equal((await fetch(`${server.url}/apis/fulcrum.io/v1alpha1`)).status, 404);
  });

  it('validates the CRD itself', async () => {
    const status = await expectStatus(extensions.createCustomResourceDefinition({
      body: {
        metadata: { name: 'wrong.example.com' },
        spec: {
          group: 'example.com', scope: 'Namespaced', names: { plural: 'things', kind: 'Thing' },
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_validations: [{ rule: 'self.a <' }] } } }],
        },
      },
    }), 422);
    const fields = status.details?.causes?.map((c) => c.field);
    assert.ok(fields?.includes('metadata.name'));
    assert.ok(fields?.includes('spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule'));
  });

  it('keeps ObjectMeta when the CRD schema declares metadata as a bare object (controller-gen style)', async () => {
    const post = (path: string, body: unknown) => fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'metathings.example.io' },
      spec: {
        group: 'example.io', scope: 'Namespaced', names: { plural: 'metathings', singular: 'metathing', kind: 'MetaThing' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: {
          type: 'object',
          properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec: { type: 'object', properties: { size: { type: 'integer' } } } },
        } } }],
      },
    };
    assert.equal((await post('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)).status, 201);
    const thing = { apiVersion: 'example.io/v1', kind: 'MetaThing', metadata: { name: 'kept', labels: { a: 'b' } }, spec: { size: 3 } };
    const created = await waitFor(async () => {
      const r = await post('/apis/example.io/v1/namespaces/default/metathings', thing);
      return r.status === 201 ? await r.json() as { metadata: { name: string } } : undefined;
    }, 'served');
    assert.equal(created.metadata.name, 'kept');
    const read = await (await fetch(`${server.url}/apis/example.io/v1/namespaces/default/metathings/kept`)).json() as { metadata: { labels: Record<string, string> }; spec: { size: number } };
    assert.deepEqual(read.metadata.labels, { a: 'b' });
    assert.equal(read.spec.size, 3);
  });
});
