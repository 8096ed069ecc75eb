// The `fulcrum` command line as a user meets it: exit codes (0 ok, 1 runtime failure,
// 2 usage or configuration), errors in words without stack traces, and the agent run
// for real inside a network namespace the test creates (nsenter --net keeps
// /sys/fs/bpf visible, unlike ip netns exec): programmed, reprogrammed on an edit,
// stopped by SIGTERM without detaching, then uninstalled.
import { afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { inNetns } from '../../src/agent/bpf/attach.ts';
import { BpfMap } from '../../src/agent/bpf/map.ts';
import { NEXTHOP_MAC, OBJECT_DIR, REPO, RING_SIZE, TestNetns, buildBpf, eventually, pinRoot, rootOnly, tempDir } from './support.ts';

const CLI = join(REPO, 'src/cli.ts');

let ns: TestNetns | undefined;
let pins: ReturnType<typeof pinRoot> | undefined;
let dir: ReturnType<typeof tempDir> | undefined;
let child: ChildProcess | undefined;

before(() => buildBpf());
afterEach(() => {
  if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  pins?.cleanup();
  ns?.delete();
  dir?.cleanup();
  pins = ns = dir = undefined;
});

function run(args: string[], options: { netns?: string } = {}): { status: number | null; stdout: string; stderr: string } {
  const argv = [process.execPath, CLI, ...args];
  const [cmd, ...rest] = options.netns === undefined ? argv : ['nsenter', `--net=${options.netns}`, '--', ...argv];
  const r = spawnSync(cmd!, rest, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function writeConfig(content: unknown): string {
  dir ??= tempDir('fulcrum-cli-');
  const file = join(dir.dir, 'fulcrum.yaml');
  writeFileSync(file, typeof content === 'string' ? content : stringify(content));
  return file;
}

function agentSection(root: string, iface = 'fx0'): Record<string, unknown> {
  return {
    nodeName: 'node-a',
    pinRoot: root,
    bpfObjectDir: OBJECT_DIR,
    balancer: { interfaces: [{ name: iface }], nextHop: { mac: NEXTHOP_MAC }, ringSize: RING_SIZE, maxVips: 8, maxBackends: 64, connTableSize: 4096 },
    metrics: { host: '127.0.0.1', port: 0 },
  };
}

const state = (backends: string[]) => ({ vips: [{ name: 'default/web', address: '10.10.0.1', port: 80, protocol: 'TCP', backends: backends.map((address) => ({ address })) }] });

test('--help answers with exit code 0, for the program and for agent', () => {
  const top = run(['--help']);
  assert.equal(top.status, 0);
  assert.match(top.stdout, /Usage: fulcrum/);
  assert.match(top.stdout, /agent/);
  const agent = run(['agent', '--help']);
  assert.equal(agent.status, 0);
  assert.match(agent.stdout, /--reset-maps/);
  assert.match(agent.stdout, /Exit codes: 0/);
});

test('usage errors exit with 2', () => {
  const noConfig = run(['agent']);
  assert.equal(noConfig.status, 2);
  assert.match(noConfig.stderr, /required option '-c, --config <file>' not specified/);
  assert.equal(run(['agent', '--config', '/x', '--frobnicate']).status, 2);
  assert.equal(run(['nonsense']).status, 2);
  const bare = run([]);
  assert.equal(bare.status, 2, 'no command: help on stderr, a usage error');
  assert.match(bare.stderr, /Usage: fulcrum/);
  const level = run(['agent', '--config', '/x', '--log-level', 'loud']);
  assert.equal(level.status, 2);
  assert.match(level.stderr, /Allowed choices are fatal, error, warn, info, debug, trace, silent/);
});

test('a missing config file exits with 2 and says so in words', () => {
  const r = run(['agent', '--config', '/nonexistent/fulcrum.yaml']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^fulcrum: ERR_CONFIG: cannot read \/nonexistent\/fulcrum\.yaml: no such file/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('an invalid config exits with 2, naming the file, line and field; --debug adds the stack', () => {
  const file = writeConfig({ agent: { nodeName: 'n', pinRoot: '/tmp/x' }, state: { vips: [{ name: 'a', address: 'not-an-ip', port: 80, protocol: 'TCP', backends: [] }] } });
  const r = run(['agent', '--config', file]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /fulcrum: ERR_CONFIG: .*fulcrum\.yaml is invalid:/);
  assert.match(r.stderr, /fulcrum\.yaml:\d+:\d+ agent\.pinRoot: /);
  assert.match(r.stderr, /fulcrum\.yaml:\d+:\d+ state\.vips\[0\]\.address: must be an IPv4 or IPv6 address/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const debug = run(['--debug', 'agent', '--config', file]);
  assert.equal(debug.status, 2);
  assert.match(debug.stderr, /\n\s+at /);
});

test('an agent configuration without a state is refused with the reason', () => {
  const file = writeConfig({ nodeName: 'n', balancer: { interfaces: [{ name: 'eth0' }], nextHop: { fib: true } } });
  const r = run(['agent', '--config', file]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /without a state: section/);
});

test('a runtime failure exits with 1', rootOnly, () => {
  ns = new TestNetns();
  pins = pinRoot();
  const file = writeConfig({ agent: agentSection(pins.root, 'nosuch0'), state: state(['10.1.0.1']) });
  const r = run(['agent', '--config', file], { netns: ns.path });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^fulcrum: ERR_BPF_ATTACH: interface nosuch0 \(balancer\.interfaces\) does not exist on this node/);
});

test('the agent runs in a namespace, follows edits, stops on SIGTERM without detaching, and uninstalls', rootOnly, async () => {
  ns = new TestNetns();
  ns.vethPair('fx0', 'fx1');
  pins = pinRoot();
  const root = pins.root;
  const file = writeConfig({ agent: agentSection(root), state: state(['10.1.0.1', '10.1.0.2']) });

  const proc = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, CLI, 'agent', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const logs = () => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; generation?: number });
  const programmedCount = () => logs().filter((l) => l.msg === 'programmed').length;

  await eventually(() => assert.equal(programmedCount(), 1), 20_000, `the first "programmed" log (stderr: ${stderr})`);
  const backendIds = () => {
    const map = BpfMap.openPinned(join(root, 'maps', 'backends'));
    try {
      return [1, 2, 3].filter((id) => map.lookup(Buffer.from(new Uint32Array([id]).buffer))!.some((b) => b !== 0)).length;
    } finally {
      map.close();
    }
  };
  assert.equal(backendIds(), 2);

  writeFileSync(file, stringify({ agent: agentSection(root), state: state(['10.1.0.1', '10.1.0.2', '10.1.0.3']) }));
  await eventually(() => assert.equal(programmedCount(), 2), 10_000, 'the edit programmed');
  assert.equal(backendIds(), 3);

  const progId = await inNetns(ns.path, 'xdpProgramId', 'fx0');
  assert.ok(progId > 0);
  proc.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  assert.ok(logs().some((l) => l.msg.startsWith('agent stopped; the data plane keeps running')));
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), progId, 'still attached after the agent exited');
  assert.ok(existsSync(join(root, 'links', 'fx0')));

  const uninstall = run(['agent', '--config', file, '--uninstall']);
  assert.equal(uninstall.status, 0, uninstall.stderr);
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), 0);
  assert.equal(existsSync(root), false);
});
