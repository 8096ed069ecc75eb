// The README's main job, as a newcomer runs it: `fulcrum lab` (scripts/lab.sh execs it)
// builds the lab, runs the whole product on it, drives traffic, drains a pod midway,
// prints a summary and removes everything. A short run, end to end, through the CLI.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { listNamespaces } from '../../src/lab/netns.ts';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const run = promisify(execFile);

test('fulcrum lab runs to its summary and leaves nothing behind', async (t) => {
  const before = new Set(listNamespaces());
  const { stdout } = await run(process.execPath, [CLI, 'lab', '--duration', '6', '--flows', '20'], { timeout: 280_000, maxBuffer: 16 << 20 });
  t.diagnostic(stdout.split('\n').filter((l) => /summary|pod\d|without an answer|download|direct server return|lb\d:/.test(l)).slice(-10).join('\n'));
  // The VIPs the operator assigned from examples/, and kubectl's way in.
  assert.match(stdout, /VIP web\/TCP\/80\s+203\.0\.113\.\d+ port 80\/TCP \(ipip\)/);
  assert.match(stdout, /VIP web6\/TCP\/80\s+2001:db8:100::80 port 80\/TCP \(gue\)/);
  const kubeconfig = /export KUBECONFIG=(\S+)/.exec(stdout)?.[1];
  assert.ok(kubeconfig, 'the lab prints a kubeconfig');
  // The drain midway, and the summary.
  assert.match(stdout, /pod2 draining \(weight 0\): new flows avoid it/);
  assert.match(stdout, /summary after \d+ rounds:/);
  assert.match(stdout, /flows without an answer: 0/);
  assert.match(stdout, /byte download from pod\d \(complete\)/);
  for (const pod of ['pod1', 'pod2', 'pod3']) assert.match(stdout, new RegExp(`\\n  ${pod}  █+·*\\s+\\d+\\.\\d %`), `${pod} answered flows`);
  assert.match(stdout, /done: every namespace, pin and process of this run is gone\./);
  // And it is gone: no new namespace, no run directory (the kubeconfig lived there).
  assert.deepEqual(listNamespaces().filter((n) => !before.has(n)), []);
  assert.equal(existsSync(kubeconfig), false);
});
