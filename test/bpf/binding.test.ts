// The libbpf binding against the real kernel: maps of each kind the balancer uses,
// errors in words, objects (load, .rodata, max_entries, pinned-map adoption, verifier
// failures), test runs, and attachments (XDP through links and netlink, tc ingress)
// inside a network namespace made for the test. Needs root; skips otherwise.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readlinkSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import {
  BPF_EXIST, BPF_F_NO_COMMON_LRU, BPF_MAP_TYPE, BPF_NOEXIST, BpfMap, createMap,
} from '../../src/agent/bpf/map.ts';
import { BpfObject, BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP, programInfo } from '../../src/agent/bpf/object.ts';
import { TestRunner, XDP_DROP, XDP_PASS, testRun } from '../../src/agent/bpf/test-run.ts';
import {
  attachXdp, detachLink, inNetns, linkInfo, queryXdp, updateLink,
} from '../../src/agent/bpf/attach.ts';
import { setLibbpfLogSink, type LibbpfMessage } from '../../src/agent/bpf/libbpf.ts';
import {
  counter, decapConfig, decodeConnValue, decodeVipMeta, connValue, flow4Key, u32, vip4Key, vipMeta,
} from '../../src/agent/bpf/abi.ts';
import { FulcrumError, isFulcrumError } from '../../src/shared/errors.ts';
import { TestNetns, compileBpf, floorObject, rootOnly, tempDir, uniqueName } from './support.ts';

// libbpf warns on every failure these tests provoke on purpose; keep them in the ring
// (the errors quote them) but out of the test output.
const libbpfWarnings: LibbpfMessage[] = [];
setLibbpfLogSink((m) => {
  if (m.level === 'warn') libbpfWarnings.push(m);
});

/** assert.throws for a FulcrumError with `code` whose message matches every pattern. */
function throwsFulcrum(fn: () => unknown, code: string, ...patterns: RegExp[]): FulcrumError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(isFulcrumError(caught), `expected a FulcrumError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

async function rejectsFulcrum(promise: Promise<unknown>, code: string, ...patterns: RegExp[]): Promise<FulcrumError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(isFulcrumError(caught), `expected a FulcrumError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

/** A fresh pin directory under /sys/fs/bpf, removed afterwards. */
function pinDir(t: TestContext): string {
  const dir = `/sys/fs/bpf/${uniqueName('fulcrum-test')}`;
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function loadFloor(t: TestContext): { object: BpfObject; fd: number; id: number } {
  const object = BpfObject.open(floorObject());
  t.after(() => object.close());
  object.load();
  const program = object.program('floor');
  return { object, fd: program.fd, id: program.id };
}

const tcSource = `
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
SEC("tc")
int tc_pass(struct __sk_buff *skb) { return TC_ACT_OK; }
char LICENSE[] SEC("license") = "GPL";
`;

// ---------------------------------------------------------------------------------
// Maps

test('hash map: update, lookup, delete, flags, iteration, batch', rootOnly, (t) => {
  const map = createMap(BPF_MAP_TYPE.HASH, 8, 8, 64, 0, 'test_vips');
  t.after(() => map.close());
  assert.equal(map.keySize, 8);
  assert.equal(map.valueSize, 8);
  assert.equal(map.maxEntries, 64);
  assert.ok(map.id > 0);

  const key = vip4Key({ addr: '10.0.0.1', port: 80, proto: 6 });
  assert.equal(map.lookup(key), undefined);
  map.update(key, vipMeta({ flags: 1, vipId: 7, gen: 1 }));
  assert.deepEqual(decodeVipMeta(map.lookup(key)!), { flags: 1, vipId: 7, gen: 1 });

  throwsFulcrum(() => map.update(key, vipMeta({ flags: 0, vipId: 0, gen: 1 }), BPF_NOEXIST), 'ERR_BPF_MAP',
    /map test_vips \(hash\): update failed: EEXIST/, /BPF_NOEXIST/);
  const other = vip4Key({ addr: '10.0.0.2', port: 80, proto: 6 });
  throwsFulcrum(() => map.update(other, vipMeta({ flags: 0, vipId: 0, gen: 1 }), BPF_EXIST), 'ERR_BPF_MAP', /ENOENT/, /BPF_EXIST/);

  const keys = Array.from({ length: 10 }, (_, i) => vip4Key({ addr: `10.1.0.${i}`, port: 443, proto: 6 }));
  map.updateBatch(keys, keys.map((_, i) => vipMeta({ flags: 0, vipId: 100 + i, gen: 1 })));
  assert.equal([...map.keys()].length, 11);
  assert.deepEqual(decodeVipMeta(map.lookup(keys[4]!)!), { flags: 0, vipId: 104, gen: 1 });
  assert.equal([...map.entries()].length, 11);

  assert.equal(map.delete(key), true);
  assert.equal(map.delete(key), false);
  assert.equal(map.lookup(key), undefined);
});

test('map errors are FulcrumErrors in words, never crashes', rootOnly, (t) => {
  const map = createMap(BPF_MAP_TYPE.HASH, 8, 8, 2, 0, 'test_small');
  t.after(() => map.close());
  throwsFulcrum(() => map.lookup(Buffer.alloc(5)), 'ERR_BPF_MAP', /key is 5 bytes, the map's key_size is 8/);
  throwsFulcrum(() => map.update(Buffer.alloc(8), Buffer.alloc(16)), 'ERR_BPF_MAP', /value is 16 bytes, the map's value_size is 8/);
  throwsFulcrum(() => map.lookupPerCpu(Buffer.alloc(8)), 'ERR_BPF_MAP', /not per-CPU: use lookup\(\)/);
  map.update(Buffer.alloc(8, 1), Buffer.alloc(8));
  map.update(Buffer.alloc(8, 2), Buffer.alloc(8));
  throwsFulcrum(() => map.update(Buffer.alloc(8, 3), Buffer.alloc(8)), 'ERR_BPF_MAP', /E2BIG/, /the map is full \(max_entries 2\)/);
  throwsFulcrum(() => createMap(BPF_MAP_TYPE.ARRAY, 8, 4, 4), 'ERR_BPF_MAP', /cannot create array map \(key 8 B/, /EINVAL/,
    /arrays need 4-byte keys/);

  const closed = createMap(BPF_MAP_TYPE.ARRAY, 4, 4, 4);
  closed.close();
  throwsFulcrum(() => closed.lookup(u32(0)), 'ERR_BPF_MAP', /lookup after close\(\)/);
});

test('array map: contiguous batch write and range read (the Maglev ring path)', rootOnly, (t) => {
  const ring = createMap(BPF_MAP_TYPE.ARRAY, 4, 4, 3 * 1021, 0, 'test_ring');
  t.after(() => ring.close());
  const ringSize = 1021;
  const vipId = 2;
  const keys = new Uint32Array(ringSize).map((_, i) => vipId * ringSize + i);
  const values = new Uint32Array(ringSize).map((_, i) => (i * 31) % 17 + 1);
  ring.updateBatchContiguous(Buffer.from(keys.buffer), Buffer.from(values.buffer), ringSize);
  assert.deepEqual(ring.lookupRange(vipId * ringSize, ringSize), values);
  assert.deepEqual(ring.lookupRange(0, 4), new Uint32Array(4));
  throwsFulcrum(() => ring.lookupRange(3 * ringSize - 1, 2), 'ERR_BPF_MAP', /outside the map's 3063 entries/);
  throwsFulcrum(() => ring.update(u32(3 * ringSize), u32(1)), 'ERR_BPF_MAP', /E2BIG/, /index is beyond max_entries/);
  throwsFulcrum(() => ring.updateBatchContiguous(Buffer.alloc(8), Buffer.alloc(4), 2), 'ERR_BPF_MAP',
    /values of 2 entries is 4 bytes, the map's value_size × count is 8/);
  throwsFulcrum(() => ring.delete(u32(0)), 'ERR_BPF_MAP', /EINVAL/, /cannot be deleted/);
});

test('per-CPU array: one value per possible CPU, counter sums, reset', rootOnly, (t) => {
  const stats = createMap(BPF_MAP_TYPE.PERCPU_ARRAY, 4, 16, 8, 0, 'test_stats');
  t.after(() => stats.close());
  assert.equal(stats.perCpu, true);
  const cpus = stats.lookupPerCpu(u32(0))!.length;
  assert.ok(cpus >= 1);

  stats.updatePerCpu(u32(3), Array.from({ length: cpus }, (_, cpu) => counter({ packets: BigInt(cpu + 1), bytes: 100n })));
  const perCpu = stats.lookupPerCpu(u32(3))!;
  assert.equal(perCpu.length, cpus);
  assert.ok(perCpu.every((v) => v.length === 16));
  assert.deepEqual(stats.counterSum(u32(3)), {
    packets: BigInt((cpus * (cpus + 1)) / 2), bytes: BigInt(100 * cpus),
  });
  stats.updatePerCpu(u32(3), counter({ packets: 0n, bytes: 0n }));
  assert.deepEqual(stats.counterSum(u32(3)), { packets: 0n, bytes: 0n });

  // Batch writes take whole per-CPU values.
  const whole = Buffer.alloc(stats.perCpuStride * cpus);
  for (let cpu = 0; cpu < cpus; cpu++) counter({ packets: 1n, bytes: 2n }).copy(whole, cpu * stats.perCpuStride);
  stats.updateBatch([u32(5), u32(6)], [whole, whole]);
  assert.deepEqual(stats.counterSum(u32(6)), { packets: BigInt(cpus), bytes: BigInt(2 * cpus) });
  throwsFulcrum(() => stats.lookup(u32(0)), 'ERR_BPF_MAP', /is per-CPU: use lookupPerCpu\(\)/);
});

test('LRU hash (the connection table) and a map type without batch ops', rootOnly, (t) => {
  const conn = createMap(BPF_MAP_TYPE.LRU_HASH, 12, 16, 1024, BPF_F_NO_COMMON_LRU, 'test_conn');
  t.after(() => conn.close());
  assert.equal(conn.flags, BPF_F_NO_COMMON_LRU);
  const flows = Array.from({ length: 100 }, (_, i) => flow4Key({ src: `192.0.2.${i}`, addrId: 1, sport: 1000 + i, dport: 80, proto: 6 }));
  conn.updateBatch(flows, flows.map((_, i) => connValue({ backendId: i + 1, vipId: 0, vipGen: 1, atimeNs: 0n })));
  assert.deepEqual(decodeConnValue(conn.lookup(flows[42]!)!), { backendId: 43, vipId: 0, vipGen: 1, atimeNs: 0n });
  assert.equal([...conn.keys()].length, 100);

  // LPM tries have no batch update: the same call writes entry by entry.
  const lpm = createMap(BPF_MAP_TYPE.LPM_TRIE, 8, 4, 16, 1 /* BPF_F_NO_PREALLOC, required */, 'test_lpm');
  t.after(() => lpm.close());
  const prefix = (len: number, a: number): Buffer => Buffer.from([len, 0, 0, 0, 10, a, 0, 0]);
  lpm.updateBatch([prefix(16, 1), prefix(24, 2)], [u32(1), u32(2)]);
  assert.equal([...lpm.keys()].length, 2);
});

test('pin a map and open it again by path', rootOnly, (t) => {
  const dir = pinDir(t);
  const map = createMap(BPF_MAP_TYPE.HASH, 4, 4, 8, 0, 'test_pinned');
  t.after(() => map.close());
  map.update(u32(1), u32(42));
  map.pin(`${dir}/map`);
  throwsFulcrum(() => map.pin(`${dir}/map`), 'ERR_BPF_MAP', /cannot pin/, /EEXIST/, /already exists/);

  const again = BpfMap.openPinned(`${dir}/map`);
  t.after(() => again.close());
  assert.equal(again.id, map.id);
  assert.equal(again.name, 'test_pinned');
  assert.deepEqual(again.lookup(u32(1)), u32(42));
  assert.equal(again.unpin(), true);
  assert.equal(existsSync(`${dir}/map`), false);

  throwsFulcrum(() => BpfMap.openPinned(`${dir}/nothing`), 'ERR_BPF_MAP', /ENOENT/, /nothing is pinned at/);
});

// ---------------------------------------------------------------------------------
// Objects and test runs

test('floor.bpf.o loads; testRun returns XDP_PASS and the same bytes', rootOnly, (t) => {
  const floor = loadFloor(t);
  assert.deepEqual(floor.object.programNames(), ['floor']);
  const program = floor.object.program('floor');
  assert.equal(program.type, BPF_PROG_TYPE_XDP);
  assert.equal(program.sectionName, 'xdp');
  assert.equal(programInfo(program.fd).name, 'floor');

  const packet = randomBytes(98);
  const result = testRun(floor.fd, packet);
  assert.equal(result.retval, XDP_PASS);
  assert.deepEqual(result.dataOut, packet);
  assert.ok(result.durationNs >= 0);
  assert.equal(testRun(floor.fd, packet, { repeat: 100 }).retval, XDP_PASS);
  // struct xdp_md as context in and out: data 0, data_end = the packet's length.
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(packet.length, 4);
  assert.equal(testRun(floor.fd, packet, { ctxIn: ctx, ctxOutSize: 24 }).ctxOut?.length, 24);

  throwsFulcrum(() => testRun(floor.fd, packet, { dataOutSize: 16 }), 'ERR_LIBBPF', /ENOSPC/, /raise dataOutSize/);
  throwsFulcrum(() => testRun(floor.fd, Buffer.alloc(5)), 'ERR_LIBBPF', /EINVAL/, /14-byte Ethernet header/);
});

test('testRun throughput (calls per second, reported)', rootOnly, (t) => {
  const floor = loadFloor(t);
  const runner = new TestRunner();
  t.after(() => runner.close());
  const packet = randomBytes(64);
  const rate = (fn: () => void, n: number): number => {
    for (let i = 0; i < 1000; i++) fn(); // warm up
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Math.round(n / (Number(process.hrtime.bigint() - start) / 1e9));
  };
  const shared = rate(() => runner.runShared(floor.fd, packet), 200_000);
  const copied = rate(() => runner.run(floor.fd, packet), 200_000);
  t.diagnostic(`testRun on floor (64-byte packet): ${shared} calls/s without copy (runShared), ${copied} calls/s with copy (run)`);
  assert.ok(shared > 10_000, `only ${shared} calls/s`);
});

test('object: .rodata configuration, max_entries, and errors in words', rootOnly, (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  // An XDP program that passes only when its .rodata says gue_port 6080.
  const path = compileBpf(`
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
const volatile struct decap_config DECAP_CFG = {};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __type(key, __u32);
  __type(value, __u64);
  __uint(max_entries, 4);
} table SEC(".maps");
SEC("xdp")
int configured(struct xdp_md *ctx) {
  __u32 k = 0;
  __u64 *v = bpf_map_lookup_elem(&table, &k);
  if (v) *v += 1;
  return DECAP_CFG.gue_port == bpf_htons(6080) ? XDP_PASS : XDP_DROP;
}
char LICENSE[] SEC("license") = "GPL";
`, 'configured', dir);
  const packet = Buffer.alloc(60);

  const plain = BpfObject.open(path);
  t.after(() => plain.close());
  plain.load();
  assert.equal(testRun(plain.programFd('configured'), packet).retval, XDP_DROP);
  throwsFulcrum(() => plain.setMaxEntries('table', 8), 'ERR_LIBBPF', /cannot set max_entries of map table: the object was already loaded/);

  const configured = BpfObject.open(path);
  t.after(() => configured.close());
  const names = configured.mapNames();
  assert.ok(names.includes('table') && names.some((n) => n.endsWith('.rodata')), `maps: ${names.join(', ')}`);
  throwsFulcrum(() => configured.setRodata(Buffer.alloc(3)), 'ERR_LIBBPF', /\.rodata is 8 bytes but the value given is 3 bytes/);
  throwsFulcrum(() => configured.setMaxEntries('nope', 8), 'ERR_LIBBPF', /has no map named nope \(it has: /);
  configured.setRodata(decapConfig({ guePort: 6080 }));
  configured.setMaxEntries('table', 1000);
  configured.load();
  assert.equal(configured.map('table').maxEntries, 1000);
  const fd = configured.programFd('configured');
  // One run per call: with repeat > 1 a pending signal (a child process exiting) can
  // stop the kernel's loop early, so the count would depend on timing.
  for (let i = 0; i < 5; i++) assert.equal(testRun(fd, packet).retval, XDP_PASS);
  assert.equal(configured.map('table').lookup(u32(0))?.readBigUInt64LE(0), 5n);
  throwsFulcrum(() => configured.programFd('nope'), 'ERR_LIBBPF', /has no program named nope \(it has: configured\)/);

  throwsFulcrum(() => BpfObject.open(`${dir}/missing.bpf.o`), 'ERR_LIBBPF', /missing\.bpf\.o: the file does not exist/);
  throwsFulcrum(() => BpfObject.open('/etc/hostname'), 'ERR_LIBBPF', /cannot open BPF object \/etc\/hostname/);
});

test('a verifier rejection carries the verifier\'s words', rootOnly, (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  // Reads packet data without a bounds check: the verifier refuses.
  const path = compileBpf(`
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp")
int unchecked(struct xdp_md *ctx) {
  unsigned char *data = (unsigned char *)(long)ctx->data;
  return data[20];
}
char LICENSE[] SEC("license") = "GPL";
`, 'unchecked', dir);
  const object = BpfObject.open(path);
  t.after(() => object.close());
  const err = throwsFulcrum(() => object.load(), 'ERR_BPF_VERIFIER',
    /the verifier rejected program unchecked of .*unchecked\.bpf\.o: EACCES/, /invalid access to packet/);
  assert.match(String(err.details['verifierLog']), /invalid access to packet/);
  throwsFulcrum(() => object.programFd('unchecked'), 'ERR_LIBBPF', /not loaded \(load failed\)/);
});

test('pinned maps are adopted by the next load, and a mismatch is explained', rootOnly, (t) => {
  const dir = pinDir(t);
  const { dir: build, cleanup } = tempDir();
  t.after(cleanup);
  const path = compileBpf(`
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __type(key, __u32);
  __type(value, __u32);
  __uint(max_entries, 16);
} kept SEC(".maps");
SEC("xdp")
int uses_kept(struct xdp_md *ctx) {
  __u32 k = 1;
  return bpf_map_lookup_elem(&kept, &k) ? XDP_PASS : XDP_DROP;
}
char LICENSE[] SEC("license") = "GPL";
`, 'kept', build);

  const first = BpfObject.open(path);
  first.setPinPath('kept', `${dir}/kept`);
  first.load();
  first.map('kept').update(u32(1), u32(99));
  const firstId = first.map('kept').id;
  first.close(); // the agent exits; the pinned map stays

  const second = BpfObject.open(path);
  t.after(() => second.close());
  second.setPinPath('kept', `${dir}/kept`);
  second.load();
  assert.equal(second.map('kept').id, firstId);
  assert.deepEqual(second.map('kept').lookup(u32(1)), u32(99));
  assert.equal(testRun(second.programFd('uses_kept'), Buffer.alloc(60)).retval, XDP_PASS);

  const resized = BpfObject.open(path);
  t.after(() => resized.close());
  resized.setPinPath('kept', `${dir}/kept`);
  resized.setMaxEntries('kept', 32);
  throwsFulcrum(() => resized.load(), 'ERR_LIBBPF', /cannot load BPF object/, /EINVAL/, /pinned map no longer matches/,
    /couldn't reuse pinned map/);
});

// ---------------------------------------------------------------------------------
// Attachments, inside a network namespace made for the test

test('XDP through a pinned bpf_link inside a network namespace: attach, query, replace atomically, detach', rootOnly, async (t) => {
  const ns = new TestNetns();
  t.after(() => ns.delete());
  ns.vethPair('fx0', 'fx1');
  const dir = pinDir(t);
  const pin = `${dir}/xdp-fx0`;
  const hostNs = readlinkSync('/proc/thread-self/ns/net');

  const first = loadFloor(t);
  const second = loadFloor(t);
  assert.notEqual(first.id, second.id);

  const link = await inNetns(ns.path, 'attachXdpLink', 'fx0', first.fd, { pinPath: pin });
  assert.equal(link.progId, first.id);
  assert.equal(link.fd, null);
  assert.ok(existsSync(pin));
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), first.id);
  assert.equal((await inNetns(ns.path, 'queryXdp', 'fx0')).attachMode, 'native'); // veth has native XDP
  assert.deepEqual(linkInfo(pin), { id: link.linkId, type: 6, progId: first.id, ifindex: link.ifindex });
  assert.equal(readlinkSync('/proc/thread-self/ns/net'), hostNs, 'the main thread never leaves its namespace');

  // Netlink cannot take over a hook a link owns.
  await rejectsFulcrum(inNetns(ns.path, 'attachXdp', 'fx0', second.fd), 'ERR_BPF_ATTACH', /EBUSY/, /bpf_link owns it/);

  // Atomic replacement, guarded by the expected current program.
  updateLink(pin, second.fd, { expectedProgFd: first.fd });
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), second.id);
  throwsFulcrum(() => updateLink(pin, first.fd, { expectedProgFd: first.fd }), 'ERR_BPF_ATTACH', /EPERM/, /not the expected one/);

  // The attachment outlives every fd of this process: only the pin holds it.
  first.object.close();
  second.object.close();
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), second.id);

  assert.equal(detachLink(pin), true);
  assert.equal(existsSync(pin), false);
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0'), 0);
  assert.equal(detachLink(pin), false);
});

test('XDP through netlink inside a network namespace: native and generic, guarded replace, detach', rootOnly, async (t) => {
  const ns = new TestNetns();
  t.after(() => ns.delete());
  ns.vethPair('fx0', 'fx1');
  const first = loadFloor(t);
  const second = loadFloor(t);

  await inNetns(ns.path, 'attachXdp', 'fx0', first.fd, { mode: 'native' });
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0', 'native'), first.id);
  await inNetns(ns.path, 'attachXdp', 'fx0', second.fd, { mode: 'native', replaceProgFd: first.fd });
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx0', 'native'), second.id);
  await rejectsFulcrum(inNetns(ns.path, 'attachXdp', 'fx0', first.fd, { mode: 'native', replaceProgFd: first.fd }),
    'ERR_BPF_ATTACH', /cannot replace XDP program/, /EEXIST/, /not the expected old one/, /Active program does not match expected/);
  await rejectsFulcrum(inNetns(ns.path, 'attachXdp', 'fx0', first.fd, { mode: 'native', onlyIfNone: true }),
    'ERR_BPF_ATTACH', /EBUSY/, /XDP program already attached/);
  await inNetns(ns.path, 'detachXdp', 'fx0', { mode: 'native', expectedProgFd: second.fd });
  assert.equal((await inNetns(ns.path, 'queryXdp', 'fx0')).attachMode, 'none');

  await inNetns(ns.path, 'attachXdp', 'fx1', first.fd, { mode: 'generic' });
  const state = await inNetns(ns.path, 'queryXdp', 'fx1');
  assert.equal(state.attachMode, 'generic');
  assert.equal(state.genericProgId, first.id);
  await inNetns(ns.path, 'detachXdp', 'fx1', { mode: 'generic' });
  assert.equal(await inNetns(ns.path, 'xdpProgramId', 'fx1'), 0);
});

test('tc ingress inside a network namespace: attach, query, replace, detach', rootOnly, async (t) => {
  const ns = new TestNetns();
  t.after(() => ns.delete());
  ns.vethPair('fx0', 'fx1');
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = compileBpf(tcSource, 'tc_pass', dir);
  const load = (): { fd: number; id: number } => {
    const object = BpfObject.open(path);
    t.after(() => object.close());
    object.load();
    const program = object.program('tc_pass');
    assert.equal(program.type, BPF_PROG_TYPE_SCHED_CLS);
    return program;
  };
  const first = load();
  const second = load();

  assert.equal(await inNetns(ns.path, 'queryTcIngress', 'fx0'), 0);
  const attached = await inNetns(ns.path, 'attachTcIngress', 'fx0', first.fd);
  assert.deepEqual({ ...attached, ifindex: 0 }, { ifindex: 0, handle: 1, priority: 1, progId: first.id });
  assert.equal(await inNetns(ns.path, 'queryTcIngress', 'fx0'), first.id);

  await rejectsFulcrum(inNetns(ns.path, 'attachTcIngress', 'fx0', second.fd, { replace: false }), 'ERR_BPF_ATTACH',
    /EEXIST/, /replace was not asked/);
  await inNetns(ns.path, 'attachTcIngress', 'fx0', second.fd);
  assert.equal(await inNetns(ns.path, 'queryTcIngress', 'fx0'), second.id);

  assert.equal(await inNetns(ns.path, 'detachTcIngress', 'fx0'), true);
  assert.equal(await inNetns(ns.path, 'queryTcIngress', 'fx0'), 0);
  assert.equal(await inNetns(ns.path, 'detachTcIngress', 'fx0'), false);
  assert.equal(await inNetns(ns.path, 'destroyClsact', 'fx0'), true);
  assert.equal(await inNetns(ns.path, 'destroyClsact', 'fx0'), false);
});

test('inNetns errors: unknown interface, not a namespace', rootOnly, async (t) => {
  const ns = new TestNetns();
  t.after(() => ns.delete());
  await rejectsFulcrum(inNetns(ns.path, 'ifindexOf', 'nope0'), 'ERR_BPF_ATTACH',
    new RegExp(`in network namespace ${ns.path}: no interface named nope0 in this network namespace`));
  await rejectsFulcrum(inNetns('/tmp', 'ifindexOf', 'lo'), 'ERR_NETNS', /cannot enter network namespace \/tmp/, /not a network namespace/);
  await rejectsFulcrum(inNetns(`${ns.path}-missing`, 'ifindexOf', 'lo'), 'ERR_NETNS', /cannot open network namespace/);
  assert.equal(await inNetns(ns.path, 'ifindexOf', 'lo'), 1);
});

test('netlink attach on the host thread refuses an unknown interface in words', rootOnly, () => {
  throwsFulcrum(() => attachXdp(`nx${randomBytes(4).toString('hex')}`, 0), 'ERR_BPF_ATTACH', /no interface named nx/);
  throwsFulcrum(() => queryXdp(0), 'ERR_BPF_ATTACH', /not an interface index: 0/);
});
