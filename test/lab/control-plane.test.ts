// The real control plane the tests and the lab run on (src/lab/control-plane.ts): etcd,
// kube-apiserver and kube-controller-manager built from their Go modules, on loopback,
// with RBAC enforced, TokenRequest working, the audit log readable, etcd compaction
// giving 410 to old watches, and nothing left behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { ControlPlane } from '../../src/lab/control-plane.ts';

let cp: ControlPlane;

before(async () => {
  cp = await ControlPlane.start();
}, { timeout: 180_000 });
after(() => cp?.stop(), { timeout: 30_000 });

const versions = Object.fromEntries(readFileSync(new URL('../../controlplane/versions.env', import.meta.url), 'utf8')
  .split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=') as [string, string]));

test('kube-apiserver reports the version it was built as, on loopback only', async () => {
  const res = await cp.adminRequest('GET', '/version');
  assert.equal(res.status, 200);
  assert.equal((JSON.parse(res.body) as { gitVersion: string }).gitVersion, versions['KUBERNETES_VERSION']);
  assert.match(cp.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(cp.etcdUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
});

test('RBAC is enforced on ServiceAccount tokens from TokenRequest; the audit log names who asked', async () => {
  await cp.kubectl(['create', 'namespace', 'rbac-test']);
  await cp.kubectl(['create', 'serviceaccount', 'reader', '-n', 'rbac-test']);
  const kubeconfig = `${cp.dir}/reader.kubeconfig`;
  (await import('node:fs')).writeFileSync(kubeconfig, await cp.serviceAccountKubeconfig('rbac-test', 'reader'));
  cp.audit.mark();
  await assert.rejects(cp.kubectl(['get', 'configmaps', '-n', 'rbac-test'], { kubeconfig }), /forbidden/);
  await cp.kubectl(['create', 'role', 'read-cm', '--verb=list', '--resource=configmaps', '-n', 'rbac-test']);
  await cp.kubectl(['create', 'rolebinding', 'read-cm', '--role=read-cm', '--serviceaccount=rbac-test:reader', '-n', 'rbac-test']);
  await cp.kubectl(['get', 'configmaps', '-n', 'rbac-test'], { kubeconfig });
  const user = 'system:serviceaccount:rbac-test:reader';
  assert.equal(cp.audit.count({ verb: 'list', resource: 'configmaps', user, code: 403 }), 1);
  assert.equal(cp.audit.count({ verb: 'list', resource: 'configmaps', user, code: 200 }), 1);
});

test('kube-controller-manager runs the real controllers: ServiceAccounts, EndpointSlices', async () => {
  await cp.kubectl(['create', 'namespace', 'kcm-test']);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const sa = await cp.adminRequest('GET', '/api/v1/namespaces/kcm-test/serviceaccounts/default');
    if (sa.status === 200) break;
    assert.ok(Date.now() < deadline, 'the default ServiceAccount of kcm-test within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  await cp.kubectl(['create', 'service', 'clusterip', 'web', '--tcp=80:8080', '-n', 'kcm-test']);
  for (;;) {
    const slices = await cp.adminRequest('GET', '/apis/discovery.k8s.io/v1/namespaces/kcm-test/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb');
    const items = (JSON.parse(slices.body) as { items: { metadata: { labels: Record<string, string> } }[] }).items;
    if (items.length > 0) {
      assert.equal(items[0]!.metadata.labels['endpointslice.kubernetes.io/managed-by'], 'endpointslice-controller.k8s.io');
      break;
    }
    assert.ok(Date.now() < deadline, 'an EndpointSlice for kcm-test/web within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
});

test('etcd compaction makes a watch from an old resourceVersion answer 410 Gone', async () => {
  const list = await cp.adminRequest('GET', '/api/v1/namespaces/default/configmaps');
  const old = (JSON.parse(list.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
  for (let i = 0; i < 3; i++) await cp.kubectl(['create', 'configmap', `c${i}`, '-n', 'default']);
  await cp.compactEtcd();
  // The watch cache keeps a window of its own; a restart empties it, as an outage would.
  await cp.restart('kube-apiserver');
  const res = await cp.adminRequest('GET', `/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${old}&timeoutSeconds=1`);
  assert.match(res.body, /"code":410/);
});

test('stop removes every process and file', { timeout: 120_000 }, async () => {
  const other = await ControlPlane.start({ controllerManager: false });
  const pids = [other.component('etcd').pid!, other.component('kube-apiserver').pid!];
  await other.stop();
  assert.equal(existsSync(other.dir), false);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);
});
