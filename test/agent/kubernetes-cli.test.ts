// `fulcrum agent --kubernetes` as a user meets it: the node name from --node-name or
// NODE_NAME (missing: exit 2 with the reason, as MetalLB's speaker does), the file being
// an agent configuration alone, flags that only belong to Kubernetes mode, a kubeconfig
// that cannot be read — and a real run through the CLI against a real control plane
// (etcd + kube-apiserver on loopback, Fulcrum's CRDs and RBAC installed), with the
// kubeconfig of the agents' ServiceAccount, so RBAC is enforced on it as on a cluster.
//
// The real run is a backend-only node (no balancer section): it attaches nothing, so it
// can run in this (the host's) namespace, where the API server's 127.0.0.1 is; its only
// decap duty names a pod that has no namespace here, so it touches no network namespace
// either. It must program the BalancerNode, write status, and stop on SIGTERM with 0.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { ControlPlane } from '../../src/lab/control-plane.ts';
import { installFulcrum } from '../../src/lab/install.ts';
import type { BalancerNodeStatus } from '../../src/shared/api/balancer-node.ts';
import { OBJECT_DIR, REPO, eventually, pinRoot, rootOnly, tempDir } from './support.ts';

const CLI = join(REPO, 'src/cli.ts');
const API = { group: 'fulcrum.dev', version: 'v1alpha1', plural: 'balancernodes' } as const;

let dir: ReturnType<typeof tempDir> | undefined;
let pins: ReturnType<typeof pinRoot> | undefined;
let cp: ControlPlane | undefined;
let child: ChildProcess | undefined;

afterEach(async () => {
  if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  await cp?.stop();
  pins?.cleanup();
  dir?.cleanup();
  cp = undefined;
  pins = undefined;
  dir = undefined;
});

/** Environment without NODE_NAME or KUBECONFIG of the machine running the tests. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const key of ['NODE_NAME', 'KUBECONFIG', 'KUBERNETES_SERVICE_HOST']) if (!(key in extra)) delete env[key];
  return env;
}

function run(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: cleanEnv(env) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function writeConfig(content: unknown, name = 'agent.yaml'): string {
  dir ??= tempDir('fulcrum-k8s-cli-');
  const file = join(dir.dir, name);
  writeFileSync(file, typeof content === 'string' ? content : stringify(content));
  return file;
}

test('--help lists Kubernetes mode\'s flags', () => {
  const r = run(['agent', '--help']);
  assert.equal(r.status, 0);
  for (const flag of ['--kubernetes', '--kubeconfig <file>', '--node-name <name>', '--pod-netns <strategies>', '--resync-seconds <n>']) assert.ok(r.stdout.includes(flag), flag);
});

test('a missing node name exits 2 and says where it comes from', () => {
  const file = writeConfig({ metrics: { host: '127.0.0.1', port: 0 } });
  const r = run(['agent', '--kubernetes', '--config', file]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^fulcrum: ERR_CONFIG: the node name is missing: pass --node-name <name> or set NODE_NAME \(in a DaemonSet: env NODE_NAME from the downward API/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const bad = run(['agent', '--kubernetes', '--config', file, '--node-name', 'Node_A']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /the node name "Node_A" is not a Kubernetes object name/);
});

test('Kubernetes mode refuses a standalone file, and its flags need --kubernetes', () => {
  const standalone = writeConfig({ agent: { nodeName: 'n' }, state: { vips: [] } });
  const r = run(['agent', '--kubernetes', '--config', standalone], { NODE_NAME: 'node-a' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /is a standalone file \(agent: \/ state: sections\)\. In Kubernetes mode the file holds the agent configuration alone/);

  const agentOnly = writeConfig({ balancer: { interfaces: [{ name: 'eth0' }], nextHop: { fib: true } } });
  const without = run(['agent', '--config', agentOnly, '--node-name', 'node-a']);
  assert.equal(without.status, 2);
  assert.match(without.stderr, /--node-name is for Kubernetes mode: add --kubernetes/);
  const noState = run(['agent', '--config', writeConfig({ nodeName: 'n', balancer: { interfaces: [{ name: 'eth0' }], nextHop: { fib: true } } }, 'n.yaml')]);
  assert.equal(noState.status, 2);
  assert.match(noState.stderr, /without a state: section: run it in Kubernetes mode \(add --kubernetes/);
});

test('Kubernetes mode reports a wrong file with line and field, bad strategies, and an unreadable kubeconfig with exit 2', () => {
  const wrong = writeConfig('balancer:\n  interfaces: []\n  nextHop: { fib: true }\nmtu: 9000\n');
  const r = run(['agent', '--kubernetes', '--config', wrong], { NODE_NAME: 'node-a' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /agent\.yaml:\d+:\d+ balancer\.interfaces: /);
  assert.match(r.stderr, /agent\.yaml:1:1 \(top level\): unknown field "mtu"/);

  const file = writeConfig({ metrics: { host: '127.0.0.1', port: 0 } }, 'ok.yaml');
  const strategies = run(['agent', '--kubernetes', '--config', file, '--pod-netns', 'dir=/run/netns,cri'], { NODE_NAME: 'node-a' });
  assert.equal(strategies.status, 2);
  assert.match(strategies.stderr, /--pod-netns: unknown strategy "cri"/);

  const missing = run(['agent', '--kubernetes', '--config', file, '--kubeconfig', join(dir!.dir, 'nope.yaml')], { NODE_NAME: 'node-a' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^fulcrum: ERR_CONFIG: cannot load the kubeconfig .*nope\.yaml/);

  const none = run(['agent', '--kubernetes', '--config', file], { NODE_NAME: 'node-a', HOME: dir!.dir });
  assert.equal(none.status, 2);
  assert.match(none.stderr, /no kubeconfig: pass --kubeconfig <file>, set KUBECONFIG, or run in a pod/);
});

test('the agent runs in Kubernetes mode through the CLI: programs its BalancerNode, reports, stops on SIGTERM', { ...rootOnly, timeout: 240_000 }, async () => {
  cp = await ControlPlane.start({ controllerManager: false });
  const { agentKubeconfig, agentUser } = await installFulcrum(cp);
  // The BalancerNode as the operator writes it (here by the cluster admin).
  const kc = new KubeConfig();
  kc.loadFromString(cp.adminKubeconfig());
  const custom = kc.makeApiClient(CustomObjectsApi);
  await custom.createClusterCustomObject({ ...API, body: {
    apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: 'node-b' },
    spec: { decap: [{ pod: 'shop/web-1', podUID: 'not-on-this-node', addresses: ['10.1.0.1'], vips: ['192.0.2.10'] }] },
  } });
  pins = pinRoot();
  // Backend role only: nothing is attached, so the host namespace is not touched.
  const file = writeConfig({ pinRoot: pins.root, bpfObjectDir: OBJECT_DIR, metrics: { host: '127.0.0.1', port: 0 } });
  const emptyDir = join(dir!.dir, 'netns');
  child = spawn(process.execPath, [CLI, 'agent', '--kubernetes', '--kubeconfig', agentKubeconfig, '--config', file, '--pod-netns', `dir=${emptyDir}`],
    { env: cleanEnv({ NODE_NAME: 'node-b' }), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));

  const status = await eventually(async () => {
    const obj = await custom.getClusterCustomObject({ ...API, name: 'node-b' }) as { status?: BalancerNodeStatus };
    assert.equal(obj.status?.observedGeneration, 1, `no status yet\n${stdout}\n${stderr}`);
    return obj.status!;
  }, 90_000, 'status from the CLI agent');
  assert.equal(status.attachMode, 'none');
  assert.deepEqual(status.vips, []);
  assert.deepEqual(status.decap?.map((d) => [d.pod, d.outcome]), [['shop/web-1', 'pending']]);
  assert.deepEqual(status.conditions?.map((c) => [c.type, c.status, c.reason]), [['Ready', 'True', 'AgentReady'], ['Programmed', 'True', 'Programmed']]);

  const exited = new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the agent did not exit within 30 s of SIGTERM\n${stderr}`)), 30_000);
    child!.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(lines.some((l) => l.component === 'kubernetes' && l.node === 'node-b' && l.msg === 'watching this node\'s BalancerNode'));
  assert.ok(lines.some((l) => l.msg === 'stopping; the data plane keeps running'));
  // It did so as the agents' ServiceAccount: the API server's audit log names it.
  assert.ok(cp.audit.count({ verb: 'update', resource: 'balancernodes', subresource: 'status', name: 'node-b', user: agentUser, code: 200 }) >= 1);
  assert.equal(cp.audit.count({ user: agentUser, code: 403 }), 0, 'nothing it tried was refused');
});
