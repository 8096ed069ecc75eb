import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { expectStatus, waitFor, withServer } from './helpers.ts';

describe('apiserver fault injection and request accounting', () => {
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

  it('injects a 409 on the next update of one object only', async () => {
    const svc = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'racy' }, spec: { ports: [{ port: 80 }] } } });
    server.faults.conflictOnNextUpdate({ resource: 'services', namespace: 'default', name: 'racy' });
    const conflict = await expectStatus(core.replaceNamespacedService({ namespace: 'default', name: 'racy', body: svc }), 409);
    assert.equal(conflict.reason, 'Conflict');
    assert.match(conflict.message ?? '', /^Operation cannot be fulfilled on services "racy"/);
    svc.metadata!.labels = { retried: 'yes' };
    const retried = await core.replaceNamespacedService({ namespace: 'default', name: 'racy', body: svc });
    assert.equal(retried.metadata?.labels?.['retried'], 'yes');
  });

  it('counts requests per verb and resource', async () => {
    server.faults.resetCounts();
    await core.listNamespacedService({ namespace: 'default' });
    await core.readNamespacedService({ namespace: 'default', name: 'racy' });
    await core.patchNamespacedServiceStatus({ namespace: 'default', name: 'racy', body: { status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    assert.equal(server.faults.count({ verb: 'list', resource: 'services' }), 1);
    assert.equal(server.faults.count({ verb: 'get', resource: 'services', name: 'racy' }), 1);
    assert.equal(server.faults.count({ verb: 'patch', resource: 'services/status' }), 1);
    assert.equal(server.faults.count({ verb: 'patch', resource: 'services', subresource: null }), 0);
    assert.equal(server.faults.count({ verb: ['create', 'update', 'patch', 'delete'] }), 1);
    assert.ok(server.faults.counts().some((c) => c.verb === 'list' && c.resource === 'services' && c.count === 1));
  });

  it('injects arbitrary errors, latency and list expiry', async () => {
    server.faults.injectError({ verb: 'get', resource: 'services' }, { code: 503, message: 'etcd leader changed' });
    const unavailable = await expectStatus(core.readNamespacedService({ namespace: 'default', name: 'racy' }), 503);
    assert.equal(unavailable.reason, 'ServiceUnavailable');
    await core.readNamespacedService({ namespace: 'default', name: 'racy' });

    server.faults.setLatency(150, { verb: 'get' });
    const started = Date.now();
    await core.readNamespacedService({ namespace: 'default', name: 'racy' });
    assert.ok(Date.now() - started >= 140);
    server.faults.clearLatency();

    server.faults.expireNext({ verb: 'list', resource: 'services' });
    const gone = await expectStatus(core.listNamespacedService({ namespace: 'default' }), 410);
    assert.equal(gone.reason, 'Expired');
  });

  it('holds 100 nodes and 10,000 endpoints in 100 slices under a watching informer', async () => {
    for (let i = 0; i < 100; i++) {
      await core.createNode({ body: { metadata: { name: `node-${i}` }, status: { addresses: [{ type: 'InternalIP', address: `10.1.0.${i}` }] } } });
    }
    const kc = server.kubeConfig();
    const informer = k8s.makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());
    let events = 0;
    informer.on('add', () => events++);
    informer.on('update', () => events++);
    await informer.start();
    const started = Date.now();
    for (let s = 0; s < 100; s++) {
      const endpoints = Array.from({ length: 100 }, (_, e) => ({ addresses: [`10.2.${s}.${e}`], conditions: { ready: true }, nodeName: `node-${e}` }));
      await discovery.createNamespacedEndpointSlice({
        namespace: 'default',
        body: { metadata: { name: `svc-${s}`, labels: { 'kubernetes.io/service-name': `svc-${s}` } }, addressType: 'IPv4', endpoints, ports: [{ port: 80 }] },
      });
    }
    await waitFor(() => events >= 100, 'informer saw all slices', 20_000);
    const elapsed = Date.now() - started;
    const all = await discovery.listEndpointSliceForAllNamespaces();
    assert.equal(all.items.reduce((n, s) => n + (s.endpoints?.length ?? 0), 0), 10_000);
    assert.ok(elapsed < 15_000, `100 slice writes + watch took ${elapsed} ms`);
    await informer.stop();
  });
});
