// A backend pod's DSR sysctls are files written from a process inside the pod's
// namespace, through a configurable procfs sys directory (AgentConfig.sysctlRoot).
// This is what lets the agent run unprivileged: a container's own /proc/sys is
// read-only, but a writable mount of the host's /proc reaches the pod's values just
// the same, because /proc/sys/net shows the namespace of whoever opens it. Checked
// here with real procfs mounts: a second writable one (the host /proc a container
// would mount) and a read-only one (the container's own /proc/sys).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PodNetns } from '../../src/agent/pod-netns.ts';
import { netnsPath, nsExec } from '../../src/lab/netns.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { rootOnly, uniqueName } from '../bpf/support.ts';

const KEY = 'net/ipv4/conf/all/arp_ignore';
let ns = '';
let dir = '';
const mounts: string[] = [];

function mountProc(name: string, readOnly: boolean): string {
  const at = join(dir, name);
  execFileSync('mkdir', ['-p', at]);
  execFileSync('mount', ['-t', 'proc', ...(readOnly ? ['-o', 'ro'] : []), 'proc', at]);
  mounts.push(at);
  return at;
}

before(() => {
  if (process.getuid?.() !== 0) return;
  ns = uniqueName('fsys');
  execFileSync('ip', ['netns', 'add', ns]);
  dir = mkdtempSync(join(tmpdir(), 'fulcrum-sysctl-'));
});

after(() => {
  for (const at of mounts.reverse()) execFileSync('umount', [at]);
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  if (ns !== '') execFileSync('ip', ['netns', 'del', ns]);
});

test('sysctls written through another procfs mount land in the pod\'s namespace, not the host\'s', rootOnly, async () => {
  const hostProc = mountProc('host-proc', false);
  const hostBefore = readFileSync(`/proc/sys/${KEY}`, 'utf8').trim();
  const pod = PodNetns.open(netnsPath(ns), 'the test pod');
  try {
    assert.equal((await nsExec(ns, ['sysctl', '-n', 'net.ipv4.conf.all.arp_ignore'])).trim(), '0', 'a fresh namespace starts at 0');
    await pod.writeSysctls([{ key: KEY, value: '1' }, { key: 'net/ipv4/conf/all/arp_announce', value: '2' }], `${hostProc}/sys`);
    assert.equal((await nsExec(ns, ['sysctl', '-n', 'net.ipv4.conf.all.arp_ignore'])).trim(), '1');
    assert.equal((await nsExec(ns, ['sysctl', '-n', 'net.ipv4.conf.all.arp_announce'])).trim(), '2');
    assert.equal(readFileSync(`/proc/sys/${KEY}`, 'utf8').trim(), hostBefore, 'the host namespace is untouched');
    assert.deepEqual(await pod.readSysctls([KEY], `${hostProc}/sys`), new Map([[KEY, '1']]));
    assert.deepEqual(await pod.readSysctls([KEY]), new Map([[KEY, '1']]), 'the default root sees the same value');
  } finally {
    pod.close();
  }
});

test('a read-only /proc/sys (an unprivileged container\'s) fails in words, naming the file', rootOnly, async () => {
  const readOnly = mountProc('ro-proc', true);
  const pod = PodNetns.open(netnsPath(ns), 'the test pod');
  try {
    await assert.rejects(pod.writeSysctls([{ key: KEY, value: '1' }], `${readOnly}/sys`), (err: unknown) => {
      assert.ok(isFulcrumError(err) && err.code === 'ERR_NETNS');
      assert.match(err.message, /Read-only file system/);
      assert.match(err.message, new RegExp(`${readOnly}/sys/${KEY}`));
      return true;
    });
    await assert.rejects(pod.writeSysctls([{ key: 'net/ipv4/conf/nosuchif/arp_ignore', value: '1' }]), /nonexistent|No such file/);
  } finally {
    pod.close();
  }
});
