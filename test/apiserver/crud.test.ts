import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { expectStatus, withServer } from './helpers.ts';

describe('apiserver CRUD through client-node', () => {
  let server: ApiServer;
  let core: k8s.CoreV1Api;
  let discovery: k8s.DiscoveryV1Api;
  let coordination: k8s.CoordinationV1Api;

  before(async () => {
    server = await withServer();
    const kc = server.kubeConfig();
    core = kc.makeApiClient(k8s.CoreV1Api);
    discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    coordination = kc.makeApiClient(k8s.CoordinationV1Api);
  });
  after(() => server.stop());

  it('starts with the system namespaces and the kubernetes service', async () => {
    const namespaces = await core.listNamespace();
    assert.deepEqual(namespaces.items.map((n) => n.metadata?.name), ['default', 'kube-node-lease', 'kube-public', 'kube-system']);
    assert.equal(namespaces.items[0]?.status?.phase, 'Active');
    const svc = await core.readNamespacedService({ namespace: 'default', name: 'kubernetes' });
    assert.equal(svc.spec?.clusterIP, '10.96.0.1');
  });

  it('creates, reads, updates and deletes with system metadata', async () => {
    const created = await core.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: 'web', labels: { app: 'web' } }, spec: { type: 'LoadBalancer', ports: [{ port: 80 }] } },
    });
    assert.ok(created.metadata?.uid);
    assert.ok(created.metadata?.creationTimestamp);
    assert.match(created.metadata?.resourceVersion ?? '', /^\d+$/);
    assert.equal(created.metadata?.generation, undefined, 'Services carry no generation, as in Kubernetes');
    // Service defaulting and allocation.
    assert.match(created.spec?.clusterIP ?? '', /^10\.9[6-9]|^10\.1[01]/);
    assert.equal(created.spec?.ports?.[0]?.protocol, 'TCP');
    assert.equal(created.spec?.ports?.[0]?.targetPort, 80);
    const nodePort = created.spec?.ports?.[0]?.nodePort ?? 0;
    assert.ok(nodePort >= 30000 && nodePort <= 32767);

    const read = await core.readNamespacedService({ namespace: 'default', name: 'web' });
    assert.deepEqual(read, created);

    read.metadata!.labels = { app: 'web', tier: 'edge' };
    const updated = await core.replaceNamespacedService({ namespace: 'default', name: 'web', body: read });
    assert.ok(Number(updated.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
    assert.equal(updated.spec?.clusterIP, created.spec?.clusterIP);

    await core.deleteNamespacedService({ namespace: 'default', name: 'web' });
    const missing = await expectStatus(core.readNamespacedService({ namespace: 'default', name: 'web' }), 404);
    assert.equal(missing.reason, 'NotFound');
    assert.equal(missing.message, 'services "web" not found');
  });

  it('answers 409 AlreadyExists on duplicate create and 404 in a missing namespace', async () => {
    const body = { metadata: { name: 'dup' }, spec: { ports: [{ port: 53, protocol: 'UDP' }] } };
    await core.createNamespacedService({ namespace: 'default', body });
    const dup = await expectStatus(core.createNamespacedService({ namespace: 'default', body }), 409);
    assert.equal(dup.reason, 'AlreadyExists');
    const noNs = await expectStatus(core.createNamespacedService({ namespace: 'nowhere', body }), 404);
    assert.equal(noNs.message, 'namespaces "nowhere" not found');
  });

  it('answers 409 Conflict when an update carries a stale resourceVersion', async () => {
    const lease = await coordination.createNamespacedLease({ namespace: 'default', body: { metadata: { name: 'leader' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } } });
    const fresh = await coordination.replaceNamespacedLease({ namespace: 'default', name: 'leader', body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b' } } });
    const stale = await expectStatus(coordination.replaceNamespacedLease({ namespace: 'default', name: 'leader', body: { ...lease, spec: { ...lease.spec, holderIdentity: 'c' } } }), 409);
    assert.equal(stale.reason, 'Conflict');
    assert.match(stale.message ?? '', /the object has been modified/);
    const current = await coordination.readNamespacedLease({ namespace: 'default', name: 'leader' });
    assert.equal(current.spec?.holderIdentity, 'b');
    assert.equal(current.metadata?.resourceVersion, fresh.metadata?.resourceVersion);
  });

  it('does not write (or bump resourceVersion) for an update that changes nothing', async () => {
    const lease = await coordination.readNamespacedLease({ namespace: 'default', name: 'leader' });
    const again = await coordination.replaceNamespacedLease({ namespace: 'default', name: 'leader', body: lease });
    assert.equal(again.metadata?.resourceVersion, lease.metadata?.resourceVersion);
  });

  it('generates names and validates them', async () => {
    const a = await core.createNamespacedPod({ namespace: 'default', body: { metadata: { generateName: 'worker-' }, spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] } } });
    assert.match(a.metadata?.name ?? '', /^worker-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    assert.equal(a.status?.phase, 'Pending');
    assert.equal(a.spec?.containers[0]?.imagePullPolicy, 'IfNotPresent');
    const bad = await expectStatus(core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'Bad_Name' }, spec: { ports: [{ port: 1 }] } } }), 422);
    assert.equal(bad.reason, 'Invalid');
    assert.equal(bad.details?.causes?.[0]?.field, 'metadata.name');
  });

  it('validates built-in objects with field causes', async () => {
    const status = await expectStatus(core.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: 'badports' }, spec: { ports: [{ port: 0 }, { port: 80, protocol: 'ICMP' as 'TCP' }] } },
    }), 422);
    const fields = status.details?.causes?.map((c) => c.field).sort();
    // targetPort defaults to port, so the bad port is reported twice, as by the real server.
    assert.deepEqual(fields, ['spec.ports[0].name', 'spec.ports[0].port', 'spec.ports[0].targetPort', 'spec.ports[1].name', 'spec.ports[1].protocol']);
    assert.match(status.message ?? '', /^Service "badports" is invalid: \[/);
  });

  it('lists with label selectors (=, ==, !=, in, notin, exists, !exists)', async () => {
    const mk = (name: string, labels: Record<string, string>) => core.createNamespace({ body: { metadata: { name, labels } } });
    await mk('team-a', { team: 'a', env: 'prod' });
    await mk('team-b', { team: 'b', env: 'dev' });
    await mk('team-c', { team: 'c' });
    const names = async (labelSelector: string) =>
      (await core.listNamespace({ labelSelector })).items.map((n) => n.metadata?.name).filter((n) => n?.startsWith('team-'));
    assert.deepEqual(await names('team=a'), ['team-a']);
    assert.deepEqual(await names('team==b'), ['team-b']);
    assert.deepEqual(await names('team,team!=a'), ['team-b', 'team-c']);
    assert.deepEqual(await names('team in (a, c)'), ['team-a', 'team-c']);
    assert.deepEqual(await names('team,team notin (a,c)'), ['team-b']);
    assert.deepEqual(await names('env'), ['team-a', 'team-b']);
    assert.deepEqual(await names('team,!env'), ['team-c']);
    assert.deepEqual(await names('team=a,env=dev'), []);
    const bad = await expectStatus(core.listNamespace({ labelSelector: 'team in (a' }), 400);
    assert.equal(bad.reason, 'BadRequest');
  });

  it('lists with field selectors, including per-kind fields', async () => {
    const pod = (name: string, nodeName: string) => core.createNamespacedPod({
      namespace: 'default', body: { metadata: { name }, spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] } },
    });
    await pod('p1', 'node-1');
    await pod('p2', 'node-2');
    const onNode1 = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-1' });
    assert.deepEqual(onNode1.items.map((p) => p.metadata?.name), ['p1']);
    const notP1 = await core.listNamespacedPod({ namespace: 'default', fieldSelector: 'metadata.name!=p1,spec.nodeName!=' });
    assert.deepEqual(notP1.items.map((p) => p.metadata?.name), ['p2']);
    const byName = await core.listNamespacedPod({ namespace: 'default', fieldSelector: 'metadata.name=p2' });
    assert.equal(byName.items.length, 1);
    const unsupported = await expectStatus(core.listNamespacedPod({ namespace: 'default', fieldSelector: 'spec.bogus=x' }), 400);
    assert.equal(unsupported.message, 'field label not supported: spec.bogus');
  });

  it('paginates with limit/continue on a consistent snapshot', async () => {
    for (let i = 0; i < 5; i++) await core.createNamespace({ body: { metadata: { name: `page-${i}`, labels: { paged: 'yes' } } } });
    const first = await core.listNamespace({ limit: 4 });
    assert.equal(first.items.length, 4);
    assert.ok(first.metadata?._continue);
    assert.ok((first.metadata?.remainingItemCount ?? 0) > 0);
    await core.createNamespace({ body: { metadata: { name: 'aaa-after-first-page' } } });
    const rest: string[] = [];
    let token: string | undefined = first.metadata?._continue;
    while (token) {
      const page: k8s.V1NamespaceList = await core.listNamespace({ limit: 4, _continue: token });
      rest.push(...page.items.map((n) => n.metadata!.name!));
      assert.equal(page.metadata?.resourceVersion, first.metadata?.resourceVersion, 'pages share the first page\'s snapshot');
      token = page.metadata?._continue;
    }
    assert.ok(!rest.includes('aaa-after-first-page'));
    const all = await core.listNamespace();
    assert.equal(first.items.length + rest.length, all.items.length - 1);
  });

  it('serves EndpointSlices with validation and generation', async () => {
    const slice = await discovery.createNamespacedEndpointSlice({
      namespace: 'default',
      body: {
        metadata: { name: 'web-abc', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: true } }],
        ports: [{ name: 'http', port: 80 }],
      },
    });
    assert.equal(slice.metadata?.generation, 1);
    assert.equal(slice.ports?.[0]?.protocol, 'TCP');
    slice.endpoints?.push({ addresses: ['10.0.0.2'] });
    const updated = await discovery.replaceNamespacedEndpointSlice({ namespace: 'default', name: 'web-abc', body: slice });
    assert.equal(updated.metadata?.generation, 2);
    updated.metadata!.labels = { ...updated.metadata!.labels, extra: 'x' };
    const relabeled = await discovery.replaceNamespacedEndpointSlice({ namespace: 'default', name: 'web-abc', body: updated });
    assert.equal(relabeled.metadata?.generation, 2, 'metadata changes do not bump generation');
    const bad = await expectStatus(discovery.createNamespacedEndpointSlice({
      namespace: 'default', body: { metadata: { name: 'bad' }, addressType: 'IPv4', endpoints: [{ addresses: ['fe80::1'] }] },
    }), 422);
    assert.equal(bad.details?.causes?.[0]?.field, 'endpoints[0].addresses[0]');
  });

  it('honours dryRun=All without persisting', async () => {
    const dry = await core.createNamespace({ body: { metadata: { name: 'dry' } }, dryRun: 'All' });
    assert.equal(dry.metadata?.name, 'dry');
    await expectStatus(core.readNamespace({ name: 'dry' }), 404);
  });

  it('shares storage between core/v1 and events.k8s.io/v1 events', async () => {
    const events = server.kubeConfig().makeApiClient(k8s.EventsV1Api);
    await events.createNamespacedEvent({
      namespace: 'default',
      body: {
        metadata: { name: 'pool.1' },
        eventTime: new Date() as unknown as k8s.V1MicroTime,
        reportingController: 'fulcrum.io/operator',
        reportingInstance: 'operator-0',
        action: 'Allocate',
        reason: 'Allocated',
        type: 'Normal',
        note: 'allocated 192.0.2.1',
        regarding: { kind: 'Service', namespace: 'default', name: 'web', apiVersion: 'v1' },
      },
    });
    const core1 = await core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.kind=Service,involvedObject.name=web' });
    assert.equal(core1.items.length, 1);
    assert.equal(core1.items[0]?.message, 'allocated 192.0.2.1');
    assert.equal(core1.items[0]?.reportingComponent, 'fulcrum.io/operator');
    const invalid = await expectStatus(events.createNamespacedEvent({ namespace: 'default', body: { metadata: { name: 'bad' }, eventTime: new Date() as unknown as k8s.V1MicroTime } }), 422);
    assert.ok(invalid.details?.causes?.some((c) => c.field === 'reportingController'));
  });
});
