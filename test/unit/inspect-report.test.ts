// The pure half of `fulcrum inspect`: ring size from map sizes, VIP flags in words, ring
// shares, connection-table fill, attach modes, and the text and JSON the CLI prints.
// No BPF here; test/agent/inspect.test.ts reads a real pinned data plane.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VIP_F_ENCAP_GUE, VIP_F_LRU_BYPASS, VIP_F_SRC_IP_ONLY, IPPROTO_TCP, IPPROTO_UDP } from '../../src/agent/bpf/abi.ts';
import {
  SECTIONS, attachMode, connTableReport, percentOf, reasonReports, resolveRingSize, ringShareReport, vipFlags, vipReport,
  type InspectReport,
} from '../../src/agent/inspect/report.ts';
import { DEFAULT_PIN_DIR, formatReport, notPinnedMessage, renderTable, reportJson, selectSections } from '../../src/cli/inspect.ts';

test('ring size: found from the ring map and vip_stats sizes, as the agent sizes them', () => {
  const cases: [elements: number, maxVips: number, given: number | undefined, expected: ReturnType<typeof resolveRingSize>][] = [
    [2_097_184, 512, undefined, { outcome: 'found', ringSize: 65537 }], // the defaults
    [126, 8, undefined, { outcome: 'found', ringSize: 251 }], // the agent tests' maps: 252 is not prime
    [4_194_368, 1024, undefined, { outcome: 'found', ringSize: 65537 }],
    // One VIP: ceil(p / 16) = 16 for every p in 241..256, and 241 and 251 are both prime.
    [16, 1, undefined, { outcome: 'ambiguous', candidates: [241, 251] }],
    [16, 1, 251, { outcome: 'found', ringSize: 251 }],
    [126, 8, 65537, { outcome: 'mismatch', message: 'ring size 65537 does not fit the pinned ring map: 8 VIPs × 65537 slots would take 32769 ring elements, the map has 126' }],
  ];
  for (const [elements, maxVips, given, expected] of cases) {
    assert.deepEqual(resolveRingSize(elements, maxVips, given), expected, `${elements} elements, ${maxVips} VIPs, given ${given}`);
  }
  assert.equal(resolveRingSize(7, 512, undefined).outcome, 'mismatch');
});

test('VIP flags and encapsulation in words', () => {
  assert.deepEqual(vipFlags(0), []);
  assert.deepEqual(vipFlags(VIP_F_SRC_IP_ONLY | VIP_F_LRU_BYPASS | VIP_F_ENCAP_GUE), ['src-ip-only', 'lru-bypass']);
  const v = vipReport({ address: '2001:db8::1', port: 53, protocol: IPPROTO_UDP, id: 3, flags: VIP_F_ENCAP_GUE | VIP_F_LRU_BYPASS, gen: 9 },
    { packets: 2n, bytes: 140n }, 65537);
  assert.deepEqual(v, {
    key: 'UDP/[2001:db8::1]:53', id: 3, address: '2001:db8::1', port: 53, protocol: 'UDP', flags: ['lru-bypass'], encapsulation: 'gue',
    gen: 9, ringSize: 65537, packets: 2n, bytes: 140n,
  });
  assert.equal(vipReport({ address: '10.0.0.1', port: 0, protocol: IPPROTO_TCP, id: 0, flags: 0, gen: 1 }, { packets: 0n, bytes: 0n }, 7).encapsulation, 'ipip');
  assert.equal(vipReport({ address: '10.0.0.1', port: 0, protocol: 47, id: 0, flags: 0, gen: 1 }, { packets: 0n, bytes: 0n }, 7).protocol, 'proto 47');
});

test('ring shares: slots per backend, most first; empty slots and unknown ids apart', () => {
  const slots = Uint32Array.from([1, 2, 2, 0, 2, 9, 1, 2]);
  const share = ringShareReport({ key: 'TCP/10.0.0.1:80', id: 4 }, slots, new Map([[1, '10.1.0.1'], [2, '10.1.0.2']]));
  assert.deepEqual(share, {
    vip: 'TCP/10.0.0.1:80', vipId: 4, ringSize: 8, emptySlots: 1,
    members: [
      { backendId: 2, address: '10.1.0.2', slots: 4, percent: 50 },
      { backendId: 1, address: '10.1.0.1', slots: 2, percent: 25 },
      { backendId: 9, address: null, slots: 1, percent: 12.5 },
    ],
  });
  assert.equal(percentOf(1, 3), 33.33);
  assert.equal(percentOf(0, 0), 0);
});

test('connection-table fill: per-CPU capacity is the table shared out among possible CPUs', () => {
  assert.deepEqual(connTableReport('conn_v6', 300, 1_048_576, 64, 12.3456), {
    map: 'conn_v6', family: 6, entries: 300, capacity: 1_048_576, perCpuCapacity: 16_384, fillPercent: 0.03, meanPerCpu: 4.7, countMs: 12.35,
  });
});

test('attach mode: the program id decides, and only on the same interface index', () => {
  const link = { ifindex: 3, programId: 42 };
  const seen = (over: Partial<{ ifindex: number; native: number; generic: number; offload: number }>) => ({ ifindex: 3, native: 0, generic: 0, offload: 0, ...over });
  assert.equal(attachMode(link, seen({ native: 42 })), 'native');
  assert.equal(attachMode(link, seen({ generic: 42 })), 'generic');
  assert.equal(attachMode(link, seen({ offload: 42 })), 'offload');
  assert.equal(attachMode(link, seen({ native: 41 })), 'unknown', 'another program on the hook');
  assert.equal(attachMode(link, seen({ ifindex: 4, native: 42 })), 'unknown', 'same name, another interface');
  assert.equal(attachMode(link, undefined), 'unknown');
  assert.equal(attachMode({ ifindex: 0, programId: 42 }, undefined), 'detached');
});

test('sections: in print order, each once, all by default', () => {
  assert.deepEqual(selectSections([]), [...SECTIONS]);
  assert.deepEqual(selectSections(['counters', 'vips', 'counters']), ['vips', 'counters']);
  assert.equal(DEFAULT_PIN_DIR, '/sys/fs/bpf/fulcrum');
  assert.equal(notPinnedMessage('/x'), 'no Fulcrum data plane pinned at /x (is the agent running on this node?)');
});

const REPORT: InspectReport = {
  pinDir: '/sys/fs/bpf/fulcrum',
  possibleCpus: 2,
  ringSize: 7,
  vips: [vipReport({ address: '10.0.0.1', port: 80, protocol: IPPROTO_TCP, id: 0, flags: VIP_F_SRC_IP_ONLY, gen: 1 },
    { packets: 18_446_744_073_709_551_615n, bytes: 9_007_199_254_740_993n }, 7)],
  ringShares: [ringShareReport({ key: 'TCP/10.0.0.1:80', id: 0 }, Uint32Array.from([1, 1, 1, 1, 2, 2, 0]), new Map([[1, '10.1.0.1'], [2, '10.1.0.2']]))],
  notForwarded: reasonReports(['pass_not_vip', 'drop_fragment'], (r) => (r === 'pass_not_vip' ? { packets: 3n, bytes: 180n } : { packets: 0n, bytes: 0n })),
  attachments: [{ interface: 'eth0', pinPath: '/sys/fs/bpf/fulcrum/links/eth0', linkId: 5, programId: 42, ifindex: 2, mode: 'detached' }],
};

test('JSON: u64 counters as exact integers, bigints nowhere else', () => {
  const json = reportJson(REPORT);
  assert.match(json, /"packets": 18446744073709551615,\n/);
  assert.match(json, /"bytes": 9007199254740993\n/);
  const parsed = JSON.parse(json) as { vips: { flags: string[]; key: string }[]; notForwarded: { reason: string; action: string }[] };
  assert.deepEqual(parsed.vips[0]!.flags, ['src-ip-only']);
  assert.deepEqual(parsed.notForwarded.map((r) => [r.reason, r.action]), [['pass_not_vip', 'pass'], ['drop_fragment', 'drop']]);
  assert.ok(json.endsWith('}\n'));
});

test('tables: columns padded to the widest cell, numbers right-aligned', () => {
  assert.deepEqual(renderTable(['ID', 'NAME'], [['7', 'a'], ['12', 'bbb']], ['right', 'left'], '  '), ['  ID  NAME', '   7  a', '  12  bbb']);
  assert.equal(formatReport(REPORT), [
    'Fulcrum data plane pinned at /sys/fs/bpf/fulcrum (2 possible CPUs)',
    '',
    'VIPs (Maglev ring of 7 slots each)',
    'ID  VIP          PROTOCOL  FLAGS        ENCAP  GEN               PACKETS             BYTES',
    ' 0  10.0.0.1:80  TCP       src-ip-only  ipip     1  18446744073709551615  9007199254740993',
    '',
    'Ring shares (a backend\'s slots are its share of new flows; a draining backend holds none)',
    '  TCP/10.0.0.1:80 (VIP 0, 7 slots)',
    '    BACKEND                ID  SLOTS    SHARE',
    '    10.1.0.1                1      4  57.14 %',
    '    10.1.0.2                2      2  28.57 %',
    '    (no backend: dropped)   -      1  14.29 %',
    '',
    'Not forwarded (every verdict other than a forward, by reason)',
    'REASON         ACTION  PACKETS  BYTES',
    'pass_not_vip   pass          3    180',
    'drop_fragment  drop          0      0',
    '',
    'XDP attachments (links pinned by the agent)',
    'INTERFACE  MODE      PROGRAM  LINK  IFINDEX',
    'eth0       detached       42     5        2',
    '  eth0: detached: the interface is gone; the agent attaches anew when it starts',
    '',
  ].join('\n'));
});
