// `fulcrum inspect` against a real data plane: the project's loader programs a balancer
// into a pin directory of the test's own and attaches it to a veth inside a network
// namespace the test creates; packets go through the program by BPF_PROG_TEST_RUN only
// (nothing is sent on any network). Then the inspection — the function and the CLI
// (`node src/cli.ts inspect --json`) — must report exactly what was programmed and what
// the packets did, without changing anything.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import { fsTypeName } from '../../src/agent/bpf/bpffs.ts';
import { AgentConfig } from '../../src/agent/config.ts';
import { loadDataplane, type LoadedDataplane } from '../../src/agent/loader.ts';
import { plan } from '../../src/agent/dataplane/plan.ts';
import { applyPlan } from '../../src/agent/dataplane/apply.ts';
import { emptyState } from '../../src/agent/dataplane/state.ts';
import { TestRunner, XDP_PASS, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import { ABI_SIZES, connValue, flow4Key, u32 } from '../../src/agent/bpf/abi.ts';
import { BPF_F_NO_COMMON_LRU, BPF_MAP_TYPE, createMap } from '../../src/agent/bpf/map.ts';
import { PinnedBalancer, inspectPinned, openPinnedMapReadOnly, pinPresence } from '../../src/agent/inspect/pinned.ts';
import { SECTIONS, type InspectReport } from '../../src/agent/inspect/report.ts';
import { reportJson } from '../../src/cli/inspect.ts';
import { EXIT } from '../../src/cli/common.ts';
import { REASONS } from '../../src/shared/reasons.ts';
import { ether } from '../support/packets.ts';
import {
  CLIENT_MAC, LB_MAC, LIMITS, NEXTHOP_MAC, OBJECT_DIR, REPO, RING_SIZE, TestNetns, buildBpf, desired, memoryLogger, pinRoot, rootOnly,
  tcp4, tempDir, udp6, uniqueName,
} from './support.ts';

const CLI = join(REPO, 'src/cli.ts');

const WEB = { name: 'default/web', address: '10.10.0.1', port: 80, protocol: 'TCP' as const };
const DNS = { name: 'default/dns', address: 'fd00:10::1', port: 53, protocol: 'UDP' as const };
const BYPASS = { name: 'default/bypass', address: '10.10.0.2', port: 443, protocol: 'TCP' as const };
const WEB_WEIGHTS: Record<string, number> = { '10.1.0.1': 1, '10.1.0.2': 1, '10.1.0.3': 2 };

const runner = new TestRunner();
let ns: TestNetns | undefined;
let pins: ReturnType<typeof pinRoot> | undefined;
let dp: LoadedDataplane | undefined;

/** What the test sent and what the program did with it, tallied independently of the maps. */
const sent = {
  vipPackets: new Map<string, number>(),
  vipBytes: new Map<string, number>(),
  backendPackets: new Map<string, number>(),
  backendBytes: new Map<string, number>(),
  reasonBytes: new Map<string, number>(),
};

const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);

/** The backend a forwarded frame was sent to: the outer destination address. */
function outerDestination(frame: Buffer): string {
  if (frame.readUInt16BE(12) === 0x0800) return Array.from(frame.subarray(30, 34)).join('.');
  const words = Array.from({ length: 8 }, (_, i) => frame.readUInt16BE(38 + 2 * i).toString(16));
  return words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

function forward(vipKey: string, frame: Buffer): void {
  const r = runner.run(dp!.balancer.progFd, frame);
  assert.equal(r.retval, XDP_TX, `${vipKey}: forwarded`);
  const backend = outerDestination(r.dataOut);
  add(sent.vipPackets, vipKey, 1);
  add(sent.vipBytes, vipKey, frame.length);
  add(sent.backendPackets, backend, 1);
  add(sent.backendBytes, backend, frame.length);
}

function pass(reason: string, frame: Buffer): void {
  assert.equal(runner.run(dp!.balancer.progFd, frame).retval, XDP_PASS, reason);
  add(sent.reasonBytes, reason, frame.length);
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  buildBpf();
  ns = new TestNetns();
  // The veth is attached for real, so anything the kernel sends on it (IPv6 router
  // solicitations, MLD, DAD) would pass through the program and into the counters this
  // test checks to the packet. Without IPv6 and without addresses the link stays silent.
  execFileSync('ip', ['netns', 'exec', ns.name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  ns.vethPair('fx0', 'fx1');
  pins = pinRoot();
  const config = AgentConfig.parse({
    nodeName: 'node-a',
    pinRoot: pins.root,
    bpfObjectDir: OBJECT_DIR,
    balancer: { interfaces: [{ name: 'fx0' }], nextHop: { mac: NEXTHOP_MAC }, ringSize: RING_SIZE, ...LIMITS },
  });
  dp = await loadDataplane({ config: { ...config, balancer: config.balancer! }, log: memoryLogger().log, netns: ns.path });
  const state = desired({
    generation: 1,
    vips: [
      { ...WEB, backends: Object.entries(WEB_WEIGHTS).map(([address, weight]) => ({ address, weight })) },
      { ...DNS, encapsulation: 'gue', sourceIpOnly: true, backends: [{ address: 'fd00:1::1', weight: 2 }, { address: 'fd00:1::2', weight: 2 }] },
      { ...BYPASS, lruBypass: true, backends: [{ address: '10.1.0.1' }] },
    ],
  });
  const applied = applyPlan(dp.balancer, plan(emptyState(LIMITS), state, RING_SIZE));
  assert.equal(applied.outcome, 'applied');

  forward('TCP/10.10.0.1:80', tcp4(WEB.address, 80, 40000, true)); // miss: a SYN always consults the ring
  forward('TCP/10.10.0.1:80', tcp4(WEB.address, 80, 40000, false)); // hit
  forward('TCP/10.10.0.1:80', tcp4(WEB.address, 80, 40001, true)); // miss
  forward('UDP/[fd00:10::1]:53', udp6(DNS.address, 53, 5353)); // miss
  forward('TCP/10.10.0.2:443', tcp4(BYPASS.address, 443, 40002, true)); // bypass: no table
  pass('pass_not_vip', tcp4('10.99.0.1', 80, 40003, true));
  pass('pass_not_ip', ether({ dst: LB_MAC, src: CLIENT_MAC, type: 0x0806 }, Buffer.alloc(28)));
});

after(() => {
  // Each step on its own: a failure in one must not leave pins or the namespace behind.
  try {
    dp?.balancer.close();
  } finally {
    try {
      pins?.cleanup(); // detaches the pinned link, removes every pin
    } finally {
      ns?.delete();
      runner.close();
    }
  }
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'inspect', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A --json report with the timings (which differ run to run) taken out. */
function comparable(json: string): Record<string, unknown> {
  const parsed = JSON.parse(json) as Record<string, unknown> & { conntrack?: { tables: { countMs: number }[] } };
  for (const t of parsed.conntrack?.tables ?? []) t.countMs = 0;
  return parsed;
}

test('inspect reports the programmed VIPs, backends, ring shares, connection table and counters exactly', rootOnly, async () => {
  const report = await inspectPinned(pins!.root, { sections: SECTIONS, netns: ns!.path });
  assert.equal(report.pinDir, pins!.root);
  assert.equal(report.ringSize, RING_SIZE, 'ring size found from the map sizes');

  assert.deepEqual(report.vips!.map((v) => ({ key: v.key, protocol: v.protocol, flags: v.flags, encapsulation: v.encapsulation, ringSize: v.ringSize })), [
    { key: 'TCP/10.10.0.1:80', protocol: 'TCP', flags: [], encapsulation: 'ipip', ringSize: RING_SIZE },
    { key: 'UDP/[fd00:10::1]:53', protocol: 'UDP', flags: ['src-ip-only'], encapsulation: 'gue', ringSize: RING_SIZE },
    { key: 'TCP/10.10.0.2:443', protocol: 'TCP', flags: ['lru-bypass'], encapsulation: 'ipip', ringSize: RING_SIZE },
  ]);
  for (const v of report.vips!) {
    assert.equal(v.packets, BigInt(sent.vipPackets.get(v.key)!), `${v.key} packets`);
    assert.equal(v.bytes, BigInt(sent.vipBytes.get(v.key)!), `${v.key} bytes`);
  }

  assert.deepEqual(report.backends!.map((b) => b.address).sort(), ['10.1.0.1', '10.1.0.2', '10.1.0.3', 'fd00:1::1', 'fd00:1::2']);
  for (const b of report.backends!) {
    assert.equal(b.packets, BigInt(sent.backendPackets.get(b.address) ?? 0), `${b.address} packets`);
    assert.equal(b.bytes, BigInt(sent.backendBytes.get(b.address) ?? 0), `${b.address} bytes`);
  }

  // Every slot of every ring is held, and each backend's share follows its weight
  // (Maglev rounds shares to whole slots; on 251 slots that is within a slot or two).
  const shares = new Map(report.ringShares!.map((r) => [r.vip, r]));
  const web = shares.get('TCP/10.10.0.1:80')!;
  assert.equal(web.emptySlots, 0);
  assert.equal(web.members.reduce((s, m) => s + m.slots, 0), RING_SIZE);
  for (const m of web.members) {
    assert.ok(Math.abs(m.percent - (WEB_WEIGHTS[m.address!]! / 4) * 100) <= 1, `${m.address}: ${m.percent} % for weight ${WEB_WEIGHTS[m.address!]}`);
  }
  const dns = shares.get('UDP/[fd00:10::1]:53')!;
  assert.deepEqual(dns.members.map((m) => m.address).sort(), ['fd00:1::1', 'fd00:1::2']);
  for (const m of dns.members) assert.ok(Math.abs(m.percent - 50) <= 1, `${m.address}: ${m.percent} %`);
  assert.deepEqual(shares.get('TCP/10.10.0.2:443')!.members.map((m) => [m.address, m.slots, m.percent]), [['10.1.0.1', RING_SIZE, 100]]);

  // Two IPv4 flows and one IPv6 flow are remembered; the bypass VIP writes no entry.
  const c = report.conntrack!;
  assert.equal(c.possibleCpus, report.possibleCpus);
  assert.deepEqual(c.tables.map((t) => [t.map, t.entries, t.capacity, t.perCpuCapacity, t.fillPercent]), [
    ['conn_v4', 2, LIMITS.connTableSize, LIMITS.connTableSize / c.possibleCpus, Math.round((2 / LIMITS.connTableSize) * 10_000) / 100],
    ['conn_v6', 1, LIMITS.connTableSize, LIMITS.connTableSize / c.possibleCpus, Math.round((1 / LIMITS.connTableSize) * 10_000) / 100],
  ]);
  assert.ok(c.tables.every((t) => t.countMs >= 0));
  assert.deepEqual([c.hits, c.misses, c.udpExpired], [1n, 3n, 0n]);

  // Every balancer reason is listed, zeros included; only the two passes counted.
  assert.deepEqual(report.notForwarded!.map((r) => r.reason), REASONS.filter((r) => !r.startsWith('decap_')));
  for (const r of report.notForwarded!) {
    const bytes = sent.reasonBytes.get(r.reason) ?? 0;
    assert.deepEqual([r.packets, r.bytes], [bytes === 0 ? 0n : 1n, BigInt(bytes)], r.reason);
  }

  const attachment = dp!.attachments[0]!;
  assert.deepEqual(report.attachments, [{
    interface: 'fx0', pinPath: join(pins!.root, 'links', 'fx0'), linkId: attachment.linkId, programId: attachment.progId,
    ifindex: attachment.ifindex, mode: attachment.mode,
  }]);
  assert.equal(attachment.mode, 'native', 'veth runs XDP in the driver');
});

test('inspect changes nothing: maps are opened read-only and a second look sees the same', rootOnly, async () => {
  const first = await inspectPinned(pins!.root, { sections: SECTIONS, netns: ns!.path });
  const map = openPinnedMapReadOnly(join(pins!.root, 'maps', 'backends'));
  try {
    assert.throws(() => map.update(u32(1), Buffer.alloc(map.valueSize)), /EPERM/, 'the kernel refuses writes through a read-only fd');
  } finally {
    map.close();
  }
  const second = await inspectPinned(pins!.root, { sections: SECTIONS, netns: ns!.path });
  assert.deepEqual(comparable(reportJson(second)), comparable(reportJson(first)));
});

test('the attach mode needs the interfaces\' namespace: from another one it is unknown, not guessed', rootOnly, async () => {
  const report = await inspectPinned(pins!.root, { sections: ['counters'] });
  assert.deepEqual(report.attachments!.map((a) => [a.interface, a.mode]), [['fx0', 'unknown']]);
  assert.deepEqual(Object.keys(report).sort(), ['attachments', 'notForwarded', 'pinDir', 'possibleCpus']);
});

test('fulcrum inspect --json prints the same report as the function', rootOnly, async () => {
  const r = cli(['--pin-dir', pins!.root, '--json', '--netns', ns!.path]);
  assert.equal(r.status, EXIT.ok, r.stderr);
  const fromFunction = await inspectPinned(pins!.root, { sections: SECTIONS, netns: ns!.path });
  assert.deepEqual(comparable(r.stdout), comparable(reportJson(fromFunction)));
  const vips = (JSON.parse(r.stdout) as { vips: { packets: unknown }[] }).vips;
  assert.equal(vips[0]!.packets, sent.vipPackets.get('TCP/10.10.0.1:80'), 'counters are JSON numbers');
});

test('fulcrum inspect with sections prints only those, as tables by default', rootOnly, () => {
  const json = cli(['ring', 'conntrack', '--pin-dir', pins!.root, '--json']);
  assert.equal(json.status, EXIT.ok, json.stderr);
  assert.deepEqual(Object.keys(JSON.parse(json.stdout) as object).sort(), ['conntrack', 'pinDir', 'possibleCpus', 'ringShares', 'ringSize']);

  const text = cli(['vips', 'counters', '--pin-dir', pins!.root]);
  assert.equal(text.status, EXIT.ok, text.stderr);
  assert.match(text.stdout, new RegExp(`^Fulcrum data plane pinned at ${pins!.root} \\(\\d+ possible CPUs\\)\n`));
  assert.match(text.stdout, /\nVIPs \(Maglev ring of 251 slots each\)\nID +VIP +PROTOCOL +FLAGS +ENCAP +GEN +PACKETS +BYTES\n +0 +10\.10\.0\.1:80 +TCP +- +ipip +\d+ +3 +\d+\n/);
  assert.match(text.stdout, /\n +1 +\[fd00:10::1\]:53 +UDP +src-ip-only +gue /);
  assert.match(text.stdout, /\npass_not_vip +pass +1 +\d+\n/);
  assert.match(text.stdout, /\nfx0 +unknown +\d+ +\d+ +\d+\n {2}fx0: unknown: no interface of that name and index in this network namespace/);
  assert.doesNotMatch(text.stdout, /Connection table|Ring shares|Backends/);
});

test('counting walks a table larger than one batch, every entry once', rootOnly, () => {
  const own = pinRoot();
  const map = createMap(BPF_MAP_TYPE.LRU_HASH, ABI_SIZES.flow4_key, ABI_SIZES.conn_value, 65_536, BPF_F_NO_COMMON_LRU, 'conn_v4');
  const reader = new PinnedBalancer(own.root);
  try {
    // Inserts from user space land in the calling CPU's LRU share (32768 here), so
    // 10,000 entries fit without evictions whichever CPU the writes run on.
    const keys = Array.from({ length: 10_000 }, (_, i) => flow4Key({ src: `198.18.${i >> 8}.${i & 255}`, addrId: 1, sport: 1024 + i, dport: 80, proto: 6 }));
    map.updateBatch(keys, keys.map((_, i) => connValue({ backendId: 1 + (i % 3), vipId: 0, vipGen: 1, atimeNs: 0n })));
    map.pin(join(own.root, 'maps', 'conn_v4'));
    const { entries } = reader.countConnTable('conn_v4');
    assert.equal(entries, 10_000);
    const seen = new Set<string>();
    reader.walkConnTable('conn_v4', (k, _v, count) => {
      for (let i = 0; i < count; i++) seen.add(k.subarray(i * ABI_SIZES.flow4_key, (i + 1) * ABI_SIZES.flow4_key).toString('hex'));
    });
    assert.equal(seen.size, 10_000);
  } finally {
    reader.close();
    map.close();
    own.cleanup();
  }
});

test('nothing pinned: the words and exit code 3', rootOnly, () => {
  const dir = `/sys/fs/bpf/${uniqueName('fulcrum-test-none', 40)}`;
  assert.deepEqual(pinPresence(dir), { outcome: 'absent' });
  const r = cli(['--pin-dir', dir]);
  assert.equal(r.status, EXIT.notPinned);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `fulcrum: no Fulcrum data plane pinned at ${dir} (is the agent running on this node?)\n`);
});

// What a user without root sees depends on how the node mounted bpffs: systemd mounts it
// 0700 (the pin root cannot even be looked at), the kernel's default is 1777 with the pins
// 0600 (the names are listed, the maps do not open). Each is mounted here, in a private
// mount namespace on a directory of the test's own, with a balancer map pinned by bpftool.
for (const mode of [{ name: 'mode 0700, as systemd mounts it', options: ['-o', 'mode=0700'], denied: 'pin root' },
  { name: 'the kernel default (1777, pins 0600)', options: [], denied: 'map' }] as const) {
  test(`without root, bpffs ${mode.name}: the permission problem in words (exit 1), not "nothing pinned"`, { ...rootOnly, timeout: 60_000 }, (t) => {
    if (spawnSync('setpriv', ['--version']).status !== 0) return t.skip('setpriv (util-linux) is not installed');
    const dir = tempDir('fulcrum-bpffs-mode-');
    t.after(() => dir.cleanup());
    const root = join(dir.dir, 'fulcrum');
    const script = [
      'set -euo pipefail',
      `mount -t bpf ${mode.options.join(' ')} bpf "$MNT"`,
      'mkdir -p "$ROOT/maps"',
      'bpftool map create "$ROOT/maps/vips_v4" type hash key 12 value 12 entries 4 name vips_v4',
      'exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$NODE" "$CLI" inspect --pin-dir "$ROOT"',
    ].join('\n');
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', '--', 'bash', '-c', script], {
      encoding: 'utf8', timeout: 30_000, env: { ...process.env, MNT: dir.dir, ROOT: root, NODE: process.execPath, CLI },
    });
    const at = mode.denied === 'pin root' ? root : join(root, 'maps/vips_v4');
    assert.equal(r.status, EXIT.runtime, r.stderr);
    assert.equal(r.stderr, `fulcrum: ERR_BPF_MAP: cannot read ${at}: permission denied — the BPF filesystem is readable by root only; run fulcrum inspect as root (sudo)\n`);
  });
}

test('a pin root that is not on bpffs: the fix in words (exit 1), not "nothing pinned"', rootOnly, () => {
  const dir = tempDir('fulcrum-not-bpffs-');
  try {
    const r = cli(['--pin-dir', join(dir.dir, 'fulcrum')]);
    assert.equal(r.status, EXIT.runtime);
    assert.equal(r.stderr, `fulcrum: ERR_BPFFS: ${join(dir.dir, 'fulcrum')} is not on a BPF filesystem (${dir.dir} is on ${fsTypeName(statfsSync(dir.dir).type)}): mount one with 'mount -t bpf bpf /sys/fs/bpf' as root\n`);
  } finally {
    dir.cleanup();
  }
});

test('a wrong --ring-size is refused in words (exit 2)', rootOnly, () => {
  const r = cli(['vips', '--pin-dir', pins!.root, '--ring-size', '65537']);
  assert.equal(r.status, EXIT.usage);
  assert.match(r.stderr, /^fulcrum: ERR_CONFIG: ring size 65537 does not fit the pinned ring map: 8 VIPs × 65537 slots would take 32769 ring elements, the map has 126\n/);
});
