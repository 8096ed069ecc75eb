// Standalone mode: the agent driven by a YAML file. A valid file is programmed; an
// edit (written the way editors do: a new file renamed over the old one, or in place)
// is programmed again; a broken file is reported with its line and field and changes
// nothing in the maps. Attached to a veth inside a namespace the test creates.
import { afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { StandaloneAgent, parseStandaloneText, type ReloadOutcome } from '../../src/agent/standalone.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import type { BalancerProgram } from '../../src/agent/dataplane/balancer.ts';
import { NEXTHOP_MAC, OBJECT_DIR, REPO, RING_SIZE, TestNetns, buildBpf, memoryLogger, pinRoot, rootOnly, tempDir } from './support.ts';

let ns: TestNetns | undefined;
let pins: ReturnType<typeof pinRoot> | undefined;
let dir: ReturnType<typeof tempDir> | undefined;
let running: StandaloneAgent | undefined;

before(() => buildBpf());
afterEach(async () => {
  await running?.stop();
  running = undefined;
  pins?.cleanup();
  ns?.delete();
  dir?.cleanup();
  pins = undefined;
  ns = undefined;
  dir = undefined;
});

type Backends = { address: string; weight?: number }[];

function fileText(root: string, backends: Backends): string {
  return stringify({
    agent: {
      nodeName: 'node-a',
      pinRoot: root,
      bpfObjectDir: OBJECT_DIR,
      balancer: { interfaces: [{ name: 'fx0' }], nextHop: { mac: NEXTHOP_MAC }, ringSize: RING_SIZE, maxVips: 8, maxBackends: 64, connTableSize: 4096 },
      metrics: { host: '127.0.0.1', port: 0 },
    },
    state: {
      vips: [{ name: 'default/web', address: '10.10.0.1', port: 80, protocol: 'TCP', backends }],
    },
  });
}

function setup(): { file: string; root: string } {
  ns = new TestNetns();
  ns.vethPair('fx0', 'fx1');
  pins = pinRoot();
  dir = tempDir('fulcrum-standalone-');
  return { file: join(dir.dir, 'fulcrum.yaml'), root: pins.root };
}

/** Writes like an editor: a temporary file, then rename over the old one. */
function saveAsEditor(file: string, text: string): void {
  writeFileSync(`${file}.swp`, text);
  renameSync(`${file}.swp`, file);
}

function nextReload(s: StandaloneAgent): Promise<ReloadOutcome> {
  return new Promise((resolve) => s.once('reload', resolve));
}

function snapshot(b: BalancerProgram): unknown {
  return { vips: b.readVips(), backends: [...b.readBackends()], ring: [...b.readRing(0)] };
}

test('a valid file is programmed, and edits are programmed again', rootOnly, async () => {
  const { file, root } = setup();
  writeFileSync(file, fileText(root, [{ address: '10.1.0.1' }, { address: '10.1.0.2' }]));
  const { log } = memoryLogger();
  running = await StandaloneAgent.start({ file, netns: ns!.path, log, debounceMs: 50 });
  const balancer = running.agent.balancer!;
  assert.deepEqual(balancer.readVips().map((v) => v.address), ['10.10.0.1']);
  assert.deepEqual([...balancer.readBackends().values()].sort(), ['10.1.0.1', '10.1.0.2']);

  // Editor-style save: rename over the file.
  let reload = nextReload(running);
  saveAsEditor(file, fileText(root, [{ address: '10.1.0.1' }, { address: '10.1.0.2' }, { address: '10.1.0.3' }]));
  let outcome = await reload;
  assert.equal(outcome.outcome, 'reconciled');
  if (outcome.outcome === 'reconciled') assert.equal(outcome.result.outcome, 'programmed');
  assert.deepEqual([...balancer.readBackends().values()].sort(), ['10.1.0.1', '10.1.0.2', '10.1.0.3']);
  assert.ok(balancer.readRing(0).includes(balancer.readBackends().entries().next().value![0]));

  // In-place write.
  reload = nextReload(running);
  writeFileSync(file, fileText(root, [{ address: '10.1.0.3' }]));
  outcome = await reload;
  assert.equal(outcome.outcome, 'reconciled');
  assert.deepEqual([...balancer.readBackends().values()], ['10.1.0.3']);
  assert.ok(balancer.readRing(0).every((id) => id === balancer.readBackends().keys().next().value));
});

test('a broken file is reported with line and field, and the maps stay as they were', rootOnly, async () => {
  const { file, root } = setup();
  writeFileSync(file, fileText(root, [{ address: '10.1.0.1' }]));
  const { log, lines } = memoryLogger();
  running = await StandaloneAgent.start({ file, netns: ns!.path, log, debounceMs: 50 });
  const balancer = running.agent.balancer!;
  const before = snapshot(balancer);

  // YAML that does not parse.
  let reload = nextReload(running);
  saveAsEditor(file, `${fileText(root, [{ address: '10.1.0.2' }])}\n  bad: [indentation\n`);
  let outcome = await reload;
  assert.equal(outcome.outcome, 'rejected');
  if (outcome.outcome === 'rejected') assert.match(outcome.error.message, /is not valid YAML:\n.*fulcrum\.yaml:\d+:\d+: /);
  assert.deepEqual(snapshot(balancer), before);

  // YAML that parses, with a field zod rejects.
  reload = nextReload(running);
  saveAsEditor(file, fileText(root, [{ address: '10.1.0.999' }]));
  outcome = await reload;
  assert.equal(outcome.outcome, 'rejected');
  if (outcome.outcome === 'rejected') {
    assert.equal(outcome.error.code, 'ERR_CONFIG');
    assert.match(outcome.error.message, /fulcrum\.yaml:\d+:\d+ state\.vips\[0\]\.backends\[0\]\.address: must be an IPv4 or IPv6 address/);
  }
  assert.deepEqual(snapshot(balancer), before, 'the data plane keeps what it had');
  const logged = lines.find((l) => l.level === 50 && String(l.msg).includes('not valid'));
  assert.ok(logged, 'the rejection is logged as an error');
  assert.equal(logged.code, 'ERR_CONFIG');

  // Fixing the file programs it.
  reload = nextReload(running);
  saveAsEditor(file, fileText(root, [{ address: '10.1.0.2' }]));
  outcome = await reload;
  assert.equal(outcome.outcome, 'reconciled');
  assert.deepEqual([...balancer.readBackends().values()], ['10.1.0.2']);
});

test('an invalid file at start stops nothing and starts nothing', rootOnly, async () => {
  const { file, root } = setup();
  writeFileSync(file, fileText(root, [{ address: '10.1.0.1', weight: -1 }]));
  await assert.rejects(StandaloneAgent.start({ file, netns: ns!.path, log: memoryLogger().log }), (err: unknown) => {
    assert.ok(isFulcrumError(err, 'ERR_CONFIG'));
    assert.match(err.message, /state\.vips\[0\]\.backends\[0\]\.weight: /);
    return true;
  });
});

test('file errors name every problem, with unknown and missing fields in words', () => {
  const text = [
    'agent:',
    '  nodeName: n1',
    '  pinRoot: /tmp/not-bpffs',
    '  balancer:',
    '    interfaces: [{ name: eth0, attachMode: turbo }]',
    '    nextHop: { mac: "02:00:00:00:00:01" }',
    '    ringSize: 100',
    'state:',
    '  vips:',
    '    - name: a',
    '      address: 10.0.0.1',
    '      protocol: TCP',
    '      backends: []',
    '      colour: blue',
  ].join('\n');
  assert.throws(() => parseStandaloneText(text, 'f.yaml'), (err: unknown) => {
    assert.ok(isFulcrumError(err, 'ERR_CONFIG'));
    const lines = err.message.split('\n');
    assert.equal(lines[0], 'f.yaml is invalid:');
    assert.ok(lines.some((l) => /^ {2}f\.yaml:3:\d+ agent\.pinRoot: /.test(l)), err.message);
    assert.ok(lines.some((l) => /^ {2}f\.yaml:5:\d+ agent\.balancer\.interfaces\[0\]\.attachMode: /.test(l)), err.message);
    assert.ok(lines.some((l) => /^ {2}f\.yaml:7:\d+ agent\.balancer\.ringSize: must be a prime/.test(l)), err.message);
    assert.ok(lines.some((l) => /^ {2}f\.yaml:10:\d+ state\.vips\[0\]: unknown field "colour"/.test(l)), err.message);
    assert.ok(lines.some((l) => /^ {2}f\.yaml:10:\d+ state\.vips\[0\]\.port: required/.test(l)), err.message);
    return true;
  });
});

test('the example fulcrum.yaml of docs/agent.md is valid', () => {
  const doc = readFileSync(join(REPO, 'docs/agent.md'), 'utf8');
  const example = /```yaml\n(# fulcrum\.yaml[\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(example !== undefined, 'docs/agent.md has the example');
  const file = parseStandaloneText(example, 'docs/agent.md');
  assert.equal(file.agent.balancer?.ringSize, 65537);
  assert.deepEqual(file.state.vips.map((v) => [v.name, v.backends.length]), [['default/web', 3], ['default/dns', 2]]);
});
