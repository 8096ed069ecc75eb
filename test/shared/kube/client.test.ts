// The shared Kubernetes client against a scripted loopback server: failures become
// KubeApiError (ERR_KUBE_API, HTTP code and reason), answers lose managedFields, writes
// carry the field manager.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KubeClient, withoutManagedFields } from '../../../src/shared/kube/client.ts';
import { KubeApiError, isApiError } from '../../../src/shared/kube/errors.ts';
import type { KubeObject, ResourceType } from '../../../src/shared/kube/objects.ts';
import { isFulcrumError } from '../../../src/shared/errors.ts';
import { errorFields } from '../../../src/shared/logging.ts';
import { fakeApi, json, status } from './fake-api.ts';

const THINGS: ResourceType = { group: 'example.dev', version: 'v1', plural: 'things', kind: 'Thing', namespaced: false };

test('drops managedFields from answers: objects and list items', () => {
  const answer = { metadata: { name: 'a', managedFields: [{ manager: 'm' }] }, items: [{ metadata: { name: 'b', managedFields: [] } }] };
  assert.deepEqual(withoutManagedFields(answer), { metadata: { name: 'a' }, items: [{ metadata: { name: 'b' } }] });
  assert.equal(withoutManagedFields(undefined), undefined);
});

test('a failed call is a KubeApiError in the error catalog, with the HTTP code and the reason', async () => {
  const api = await fakeApi((req, res) => {
    if (req.method === 'GET') status(res, 404, 'NotFound', 'things.example.dev "a" not found');
    else json(res, 200, { ...JSON.parse(req.body), metadata: { name: 'a', resourceVersion: '2', managedFields: [{ manager: 'x' }] } });
  });
  const client = new KubeClient(api.kc, { userAgent: 'test' });
  try {
    const err = await client.get(THINGS, 'a').then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof KubeApiError);
    assert.ok(isApiError(err, 404));
    assert.equal(isApiError(err, 409), false);
    assert.ok(isFulcrumError(err, 'ERR_KUBE_API'));
    assert.equal(err.reason, 'NotFound');
    assert.deepEqual(errorFields(err).details, { httpCode: 404, reason: 'NotFound' });

    const written = await client.replace<KubeObject>(THINGS, { metadata: { name: 'a', resourceVersion: '1' } }, 'status', { fieldManager: 'fm' });
    assert.equal(written.metadata.managedFields, undefined, 'managedFields never kept');
    const put = api.requests.at(-1)!;
    assert.equal(put.method, 'PUT');
    assert.equal(put.url.pathname, '/apis/example.dev/v1/things/a/status');
    assert.equal(put.url.searchParams.get('fieldManager'), 'fm');
  } finally {
    client.close();
    await api.close();
  }
  const refused = await new KubeClient(api.kc).get(THINGS, 'a').then(() => undefined, (e: unknown) => e);
  assert.ok(isApiError(refused, 0), 'no answer at all: code 0');
  assert.equal((refused as KubeApiError).reason, 'ConnectionFailed');
});
