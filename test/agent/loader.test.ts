// The data-plane life cycle on real interfaces: a veth pair inside a network
// namespace the test creates (nothing touches the host namespace), pins under a
// /sys/fs/bpf directory of the test's own. Attach, restart (the pinned link keeps its
// id and gets the new program atomically; maps and connection table are the same
// kernel objects), configuration changes, --reset-maps, and uninstall.
import { afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { inNetns, linkInfo } from '../../src/agent/bpf/attach.ts';
import { BPF_MAP_TYPE, BpfMap, createMap } from '../../src/agent/bpf/map.ts';
import { unpin } from '../../src/agent/bpf/pin.ts';
import { REASON_COUNT } from '../../src/shared/reasons.ts';
import { connValue, flow4Key } from '../../src/agent/bpf/abi.ts';
import { AgentConfig, type AttachMode } from '../../src/agent/config.ts';
import { loadDataplane, resetMaps, uninstallDataplane, type LoadedDataplane } from '../../src/agent/loader.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { NEXTHOP_MAC, OBJECT_DIR, TestNetns, buildBpf, memoryLogger, pinRoot, rootOnly } from './support.ts';

let ns: TestNetns | undefined;
let pins: ReturnType<typeof pinRoot> | undefined;
const loaded: LoadedDataplane[] = [];

before(() => buildBpf());
afterEach(() => {
  for (const dp of loaded.splice(0)) dp.balancer.close();
  pins?.cleanup(); // detaches the links before the namespace goes
  ns?.delete();
  pins = undefined;
  ns = undefined;
});

function setup(): { ns: TestNetns; root: string } {
  ns = new TestNetns();
  ns.vethPair('fx0', 'fx1');
  ns.vethPair('fy0', 'fy1');
  pins = pinRoot();
  return { ns, root: pins.root };
}

function config(root: string, overrides: { ringSize?: number; mtu?: number; interfaces?: { name: string; attachMode?: AttachMode }[] } = {}): AgentConfig & { balancer: NonNullable<AgentConfig['balancer']> } {
  const parsed = AgentConfig.parse({
    nodeName: 'node-a',
    pinRoot: root,
    bpfObjectDir: OBJECT_DIR,
    balancer: {
      interfaces: overrides.interfaces ?? [{ name: 'fx0' }],
      nextHop: { mac: NEXTHOP_MAC },
      ringSize: overrides.ringSize ?? 251,
      maxVips: 8,
      maxBackends: 64,
      connTableSize: 4096,
      mtu: overrides.mtu ?? 1500,
    },
    metrics: { host: '127.0.0.1', port: 0 },
  });
  return { ...parsed, balancer: parsed.balancer! };
}

async function load(cfg: ReturnType<typeof config>, options: { resetMaps?: boolean } = {}): Promise<LoadedDataplane> {
  const dp = await loadDataplane({ config: cfg, log: memoryLogger().log, netns: ns!.path, ...options });
  loaded.push(dp);
  return dp;
}

/** Closes the agent's fds, as an exiting agent does. */
function exit(dp: LoadedDataplane): void {
  dp.balancer.close();
  loaded.splice(loaded.indexOf(dp), 1);
}

const pinnedMapId = (root: string, name: string): number => {
  const map = BpfMap.openPinned(join(root, 'maps', name));
  try {
    return map.id;
  } finally {
    map.close();
  }
};

test('attaches through a pinned link, native mode on veth', rootOnly, async () => {
  const { ns, root } = setup();
  const dp = await load(config(root));
  const [a] = dp.attachments;
  assert.equal(a?.interface, 'fx0');
  assert.equal(a?.action, 'attached');
  assert.equal(a?.mode, 'native');
  assert.equal(a?.pinPath, join(root, 'links', 'fx0'));
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0', 'native'), dp.balancer.object.program('balancer').id);
  assert.equal(linkInfo(a!.pinPath).progId, a!.progId);
  assert.deepEqual(dp.adoptedMaps, [], 'fresh maps');
});

test('a restart or upgrade swaps the program into the same link and keeps maps and connection table', rootOnly, async () => {
  const { ns, root } = setup();
  const first = await load(config(root));
  const entry = { src: '198.51.100.7', addrId: 1, sport: 40000, dport: 80, proto: 6 };
  first.balancer.maps.conn_v4.update(flow4Key(entry), connValue({ backendId: 3, vipId: 0, vipGen: 1, atimeNs: 0n }));
  const mapIds = { ring: pinnedMapId(root, 'ring'), conn: pinnedMapId(root, 'conn_v4') };
  const firstProg = first.balancer.object.program('balancer').id;
  exit(first);
  // The link keeps the program running without the agent.
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), firstProg);

  // Restart with a new .rodata (another MTU): a new program, same link, same maps.
  const second = await load(config(root, { mtu: 9000 }));
  const [a] = second.attachments;
  const secondProg = second.balancer.object.program('balancer').id;
  assert.notEqual(secondProg, firstProg);
  assert.equal(a?.action, 'replaced');
  assert.equal(a?.linkId, first.attachments[0]!.linkId, 'the same bpf_link');
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), secondProg);
  assert.equal(pinnedMapId(root, 'ring'), mapIds.ring);
  assert.equal(pinnedMapId(root, 'conn_v4'), mapIds.conn);
  assert.equal(second.balancer.maps.conn_v4.id, mapIds.conn, 'the new program uses the adopted map');
  assert.ok(second.balancer.maps.conn_v4.lookup(flow4Key(entry)) !== undefined, 'the connection-table entry survived');
  assert.equal(second.adoptedMaps.length, 13);
});

test('an upgrade whose build has more reasons replaces the counter maps and keeps the connection table', rootOnly, async () => {
  const { ns, root } = setup();
  const first = await load(config(root));
  const entry = { src: '198.51.100.7', addrId: 1, sport: 40001, dport: 80, proto: 6 };
  first.balancer.maps.conn_v4.update(flow4Key(entry), connValue({ backendId: 3, vipId: 0, vipGen: 1, atimeNs: 0n }));
  const reasons = first.balancer.maps.reason_stats;
  exit(first);
  // What an older release pinned: a reason_stats two reasons shorter.
  unpin(join(root, 'maps', 'reason_stats'));
  const older = createMap(BPF_MAP_TYPE.PERCPU_ARRAY, reasons.keySize, reasons.valueSize, REASON_COUNT - 2, 0, 'reason_stats');
  older.pin(join(root, 'maps', 'reason_stats'));
  older.close();
  const conn = pinnedMapId(root, 'conn_v4');

  const second = await load(config(root));
  assert.equal(second.balancer.maps.reason_stats.maxEntries, REASON_COUNT);
  assert.equal(pinnedMapId(root, 'conn_v4'), conn, 'the connection table was adopted');
  assert.ok(second.balancer.maps.conn_v4.lookup(flow4Key(entry)) !== undefined, 'its entry survived');
  assert.equal(second.attachments[0]?.action, 'replaced');
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), second.balancer.object.program('balancer').id);
});

test('generic mode turns GRO off on the interface (the program must not see merged packets), at every start', rootOnly, async () => {
  const { ns, root } = setup();
  const groOn = (iface: string) => execFileSync('nsenter', [`--net=${ns.path}`, 'ethtool', '-K', iface, 'gro', 'on']);
  groOn('fx0');
  groOn('fy0');
  assert.equal(await inNetns(ns.path, 'groEnabled', 'fx0'), true);
  const generic = { interfaces: [{ name: 'fx0', attachMode: 'generic' as const }, { name: 'fy0', attachMode: 'native' as const }] };
  const first = await load(config(root, generic));
  assert.deepEqual(first.attachments.map((a) => [a.interface, a.mode, a.groDisabled ?? false]), [['fx0', 'generic', true], ['fy0', 'native', false]]);
  assert.equal(await inNetns(ns.path, 'groEnabled', 'fx0'), false);
  assert.equal(await inNetns(ns.path, 'groEnabled', 'fy0'), true, 'native mode sees packets before GRO: left alone');
  exit(first);
  // Someone turns it on again; the next start (an adoption) turns it off again.
  groOn('fx0');
  const second = await load(config(root, generic));
  assert.equal(second.attachments[0]?.action, 'replaced');
  assert.equal(second.attachments[0]?.groDisabled, true);
  assert.equal(await inNetns(ns.path, 'groEnabled', 'fx0'), false);
});

test('a ring size change is refused in words, and the running data plane is untouched', rootOnly, async () => {
  const { ns, root } = setup();
  const first = await load(config(root));
  const prog = first.balancer.object.program('balancer').id;
  exit(first);
  await assert.rejects(load(config(root, { ringSize: 509 })), (err: unknown) => {
    assert.ok(isFulcrumError(err, 'ERR_CONFIG'));
    assert.match(err.message, /ring \(.*maps\/ring\): max_entries 126 → 255 — balancer\.maxVips × balancer\.ringSize changed/);
    assert.match(err.message, /--reset-maps/);
    assert.doesNotMatch(err.message, /conn_v4/, 'only the maps that changed are named');
    return true;
  });
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), prog);

  // The documented way out: reset the maps. The link stays and gets the new program.
  assert.deepEqual(resetMaps(root).length, 13);
  const second = await load(config(root, { ringSize: 509 }));
  assert.equal(second.attachments[0]?.action, 'replaced');
  assert.equal(second.balancer.maps.ring.maxEntries, Math.ceil((8 * 509) / 16), "16-slot chunks");
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), second.balancer.object.program('balancer').id);
});

test('--reset-maps through loadDataplane starts with fresh maps', rootOnly, async () => {
  const { root } = setup();
  const first = await load(config(root));
  const ringId = pinnedMapId(root, 'ring');
  exit(first);
  const second = await load(config(root, { ringSize: 509 }), { resetMaps: true });
  assert.notEqual(pinnedMapId(root, 'ring'), ringId);
  assert.deepEqual(second.adoptedMaps, []);
});

test('another attach mode, a dropped interface and a recreated interface are handled', rootOnly, async () => {
  const { ns, root } = setup();
  const first = await load(config(root, { interfaces: [{ name: 'fx0' }, { name: 'fy0' }] }));
  assert.deepEqual(first.attachments.map((a) => [a.interface, a.mode]), [['fx0', 'native'], ['fy0', 'native']]);
  exit(first);

  // fx0 is asked in generic mode now (a link cannot change mode: detach, attach), fy0 is dropped.
  const second = await load(config(root, { interfaces: [{ name: 'fx0', attachMode: 'generic' }] }));
  assert.equal(second.attachments[0]?.action, 'reattached');
  assert.equal(second.attachments[0]?.mode, 'generic');
  assert.deepEqual(second.detachedInterfaces, ['fy0']);
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fy0'), 0);
  assert.equal(existsSync(join(root, 'links', 'fy0')), false);
  exit(second);

  // fx0 recreated under the same name: its old link is defunct and is replaced.
  ns.ip('link', 'del', 'fx0');
  ns.vethPair('fx0', 'fx1');
  const third = await load(config(root, { interfaces: [{ name: 'fx0', attachMode: 'generic' }] }));
  assert.equal(third.attachments[0]?.action, 'reattached');
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), third.balancer.object.program('balancer').id);
});

test('auto mode falls back to generic when native XDP cannot run', rootOnly, async () => {
  const { ns, root } = setup();
  // veth refuses native XDP when the peer's MTU is beyond what fits a page.
  ns.ip('link', 'set', 'fx1', 'mtu', '9000');
  ns.ip('link', 'set', 'fx0', 'mtu', '9000');
  const dp = await load(config(root));
  assert.equal(dp.attachments[0]?.mode, 'generic');
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0', 'generic'), dp.balancer.object.program('balancer').id);
});

test('a missing interface is an error in words', rootOnly, async () => {
  const { root } = setup();
  await assert.rejects(load(config(root, { interfaces: [{ name: 'nosuch0' }] })), /interface nosuch0 \(balancer.interfaces\) does not exist/);
});

test('uninstall detaches every link and removes every pin', rootOnly, async () => {
  const { ns, root } = setup();
  const dp = await load(config(root, { interfaces: [{ name: 'fx0' }, { name: 'fy0' }] }));
  exit(dp);
  const result = uninstallDataplane(root);
  assert.deepEqual(result.detachedLinks, ['fx0', 'fy0']);
  assert.equal(result.unpinnedMaps.length, 13);
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), 0);
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fy0'), 0);
  assert.equal(existsSync(root), false);
});
