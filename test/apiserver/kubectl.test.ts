import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { ApiServer } from '../../src/apiserver/index.ts';
import { FIXTURES, makeKubectl, withServer } from './helpers.ts';
import type { KubectlResult } from './helpers.ts';

describe('kubectl against the in-process apiserver', async () => {
  let server: ApiServer;
  let kubectl: ((...args: string[]) => Promise<KubectlResult>) | null = null;

  before(async () => {
    server = await withServer();
    kubectl = await makeKubectl(server);
  });
  after(() => server?.stop());

  const ok = async (...args: string[]): Promise<string> => {
    const result = await kubectl!(...args);
    assert.equal(result.code, 0, `kubectl ${args.join(' ')} failed: ${result.stderr}`);
    // A clean run prints no warnings (no OpenAPI fallbacks, no pruned fields).
    assert.equal(result.stderr.replace(/^Warning: .*\n?/gm, (w) => (w.includes('unknown field') ? w : '')), '', `kubectl ${args.join(' ')} warned: ${result.stderr}`);
    return result.stdout;
  };

  it('applies, gets, describes and deletes a custom resource', async (t) => {
    if (kubectl === null) {
      t.skip('kubectl binary could not be produced by scripts/kube-tools.sh');
      return;
    }
    assert.match(await ok('apply', '-f', join(FIXTURES, 'crd.yaml')), /customresourcedefinition.apiextensions.k8s.io\/loadbalancerpools.fulcrum.io created/);
    await ok('wait', '--for', 'condition=Established', '--timeout=10s', 'crd/loadbalancerpools.fulcrum.io');
    assert.match(await ok('apply', '-f', join(FIXTURES, 'pool.yaml')), /loadbalancerpool.fulcrum.io\/public created/);
    assert.match(await ok('apply', '-f', join(FIXTURES, 'pool.yaml')), /loadbalancerpool.fulcrum.io\/public unchanged/);

    const changed = join(tmpdir(), `pool-${process.pid}.yaml`);
    await writeFile(changed, (await import('node:fs')).readFileSync(join(FIXTURES, 'pool.yaml'), 'utf8').replace('maxVIPs: 16', 'maxVIPs: 32\n  mode: random'));
    assert.match(await ok('apply', '-f', changed), /loadbalancerpool.fulcrum.io\/public configured/);

    const table = await ok('get', 'lbp');
    const [header, row] = table.trim().split('\n');
    assert.match(header ?? '', /^NAME\s+CIDR\s+MODE\s+ALLOCATED\s+AGE$/);
    assert.match(row ?? '', /^public\s+192\.0\.2\.0\/24\s+random\s+\S+$/);
    assert.match(await ok('get', 'fulcrum', '-A'), /default\s+public/, 'categories resolve');

    const json = JSON.parse(await ok('get', 'loadbalancerpool', 'public', '-o', 'json')) as { spec: { maxVIPs: number; minVIPs: number } };
    assert.equal(json.spec.maxVIPs, 32);
    assert.equal(json.spec.minVIPs, 0, 'server-side defaults visible to kubectl');

    // describe lists events by involvedObject field selectors.
    const obj = await server.kubeConfig().makeApiClient(k8s.CustomObjectsApi)
      .getNamespacedCustomObject({ group: 'fulcrum.io', version: 'v1alpha1', namespace: 'default', plural: 'loadbalancerpools', name: 'public' });
    await server.kubeConfig().makeApiClient(k8s.CoreV1Api).createNamespacedEvent({
      namespace: 'default',
      body: {
        metadata: { name: 'public.1' },
        involvedObject: { apiVersion: 'fulcrum.io/v1alpha1', kind: 'LoadBalancerPool', name: 'public', namespace: 'default', uid: obj.metadata.uid },
        reason: 'Synced', message: 'pool programmed on 3 nodes', type: 'Normal', source: { component: 'fulcrum-operator' },
        firstTimestamp: new Date(), lastTimestamp: new Date(), count: 1,
      },
    });
    const described = await ok('describe', 'lbp', 'public');
    assert.match(described, /Name:\s+public/);
    assert.match(described, /Normal\s+Synced\s+.*fulcrum-operator\s+pool programmed on 3 nodes/);

    assert.match(await ok('delete', 'lbp', 'public'), /loadbalancerpool.fulcrum.io "public" deleted/);
    const gone = await kubectl!('get', 'lbp', 'public');
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /NotFound|not found/);
  });

  it('reports validation errors and strict unknown fields like a real cluster', async (t) => {
    if (kubectl === null) {
      t.skip('kubectl binary could not be produced by scripts/kube-tools.sh');
      return;
    }
    const bad = join(tmpdir(), `bad-pool-${process.pid}.yaml`);
    await writeFile(bad, 'apiVersion: fulcrum.io/v1alpha1\nkind: LoadBalancerPool\nmetadata:\n  name: bad\nspec:\n  cidr: nope\n  bogus: 1\n');
    const result = await kubectl!('apply', '-f', bad);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /unknown field "spec\.bogus"/);
    const lax = await kubectl!('apply', '-f', bad, '--validate=false');
    assert.notEqual(lax.code, 0);
    assert.match(lax.stderr, /spec\.cidr/);
  });

  it('applies and patches built-in Services (strategic merge) and prints them', async (t) => {
    if (kubectl === null) {
      t.skip('kubectl binary could not be produced by scripts/kube-tools.sh');
      return;
    }
    const manifest = join(tmpdir(), `svc-${process.pid}.yaml`);
    const svc = (ports: string) => `apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  type: LoadBalancer\n  selector:\n    app: web\n  ports:\n${ports}`;
    await writeFile(manifest, svc('  - name: http\n    port: 80\n'));
    assert.match(await ok('apply', '-f', manifest), /service\/web created/);
    assert.match(await ok('apply', '-f', manifest), /service\/web unchanged/);
    await writeFile(manifest, svc('  - name: http\n    port: 80\n  - name: https\n    port: 443\n'));
    assert.match(await ok('apply', '-f', manifest), /service\/web configured/);
    await ok('patch', 'svc', 'web', '--subresource=status', '--type=merge', '-p', '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.7"}]}}}');
    const line = (await ok('get', 'svc', 'web')).trim().split('\n')[1] ?? '';
    assert.match(line, /^web\s+LoadBalancer\s+10\.\d+\.\d+\.\d+\s+192\.0\.2\.7\s+80:\d+\/TCP,443:\d+\/TCP\s+\S+$/);
    assert.match((await kubectl!('get', 'nodes')).stderr, /No resources found/);
    assert.match(await ok('delete', 'svc', 'web'), /service "web" deleted/);
  });

  it('runs imperative commands that send protobuf bodies (create namespace) and label/annotate', async (t) => {
    if (kubectl === null) {
      t.skip('kubectl binary could not be produced by scripts/kube-tools.sh');
      return;
    }
    assert.match(await ok('create', 'namespace', 'lab'), /namespace\/lab created/);
    assert.match(await ok('label', 'namespace', 'lab', 'purpose=demo'), /namespace\/lab labeled/);
    const ns = JSON.parse(await ok('get', 'ns', 'lab', '-o', 'json')) as { metadata: { labels: Record<string, string>; generateName?: string }; spec: { finalizers: string[] } };
    assert.deepEqual(ns.metadata.labels, { 'kubernetes.io/metadata.name': 'lab', purpose: 'demo' });
    assert.equal(ns.metadata.generateName, undefined);
    assert.deepEqual(ns.spec.finalizers, ['kubernetes']);
    assert.match(await ok('delete', 'namespace', 'lab'), /namespace "lab" deleted/);
  });
});
