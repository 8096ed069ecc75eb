// Pins the TypeScript mirrors to the C they mirror: every struct of bpf/include/structs.h
// and consts.h (size, alignment, every field's offset, and the same field names), every
// user-space constant of consts.h, the reason and global-counter enums of reasons.h,
// and the libbpf option / info structs and constants against the installed headers.
// The C side is measured by compiling a probe with the host clang, never by hand.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as abi from '../../src/agent/bpf/abi.ts';
import * as libbpfMod from '../../src/agent/bpf/libbpf.ts';
import { BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, BPF_MAP_TYPE } from '../../src/agent/bpf/map.ts';
import { BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP } from '../../src/agent/bpf/object.ts';
import { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX } from '../../src/agent/bpf/test-run.ts';
import { GSTATS, REASONS } from '../../src/shared/reasons.ts';
import { BPF_INCLUDE, compileAndRunC, tempDir } from './support.ts';
import type { TypeObject } from 'koffi';

const header = (name: string): string => readFileSync(join(BPF_INCLUDE, name), 'utf8');
const stripComments = (text: string): string => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

/** struct name → member names, from a header of flat structs. */
function parseStructs(text: string): Map<string, string[]> {
  const structs = new Map<string, string[]>();
  for (const match of stripComments(text).matchAll(/struct\s+(\w+)\s*\{([^}]*)\}\s*;/g)) {
    const [, name = '', body = ''] = match;
    assert.ok(!body.includes('{'), `struct ${name}: nested definitions are not parsed by this test`);
    const members = body.split(';').map((decl) => decl.trim()).filter(Boolean).map((decl) => {
      const m = /(\w+)\s*(\[[^\]]*\])?$/.exec(decl);
      assert.ok(m?.[1], `struct ${name}: cannot read the member name of '${decl}'`);
      return m[1];
    });
    structs.set(name, members);
  }
  return structs;
}

/** enum name → enumerator names in order, without the trailing *_COUNT. */
function parseEnum(text: string, name: string): string[] {
  const body = new RegExp(`enum\\s+${name}\\s*\\{([^}]*)\\}`).exec(stripComments(text))?.[1];
  assert.ok(body, `enum ${name} not found`);
  return body.split(',').map((e) => e.trim().split(/\s|=/)[0] ?? '').filter((e) => e && !e.endsWith('_COUNT'));
}

interface Measured {
  structs: Map<string, { size: number; align: number; fields: Map<string, number> }>;
  values: Map<string, bigint>;
}

/**
 * Compile and run a probe printing `struct <name> <size> <align>`, `field <struct>
 * <member> <offset>` and `value <NAME> <value>` lines.
 */
function measure(includes: string[], structs: Map<string, string[]>, values: string[], includeDirs?: string[]): Measured {
  const lines = [
    '#include <stdio.h>', '#include <stddef.h>', ...includes.map((h) => `#include ${h}`),
    'int main(void) {',
  ];
  for (const [name, fields] of structs) {
    lines.push(`  printf("struct ${name} %zu %zu\\n", sizeof(struct ${name}), _Alignof(struct ${name}));`);
    for (const field of fields) {
      lines.push(`  printf("field ${name} ${field} %zu\\n", offsetof(struct ${name}, ${field}));`);
    }
  }
  for (const value of values) lines.push(`  printf("value ${value} %llu\\n", (unsigned long long)(${value}));`);
  lines.push('  return 0;', '}');

  const { dir, cleanup } = tempDir();
  try {
    const out = compileAndRunC(lines.join('\n'), dir, includeDirs);
    const measured: Measured = { structs: new Map(), values: new Map() };
    for (const line of out.trim().split('\n')) {
      const [kind, a = '', b = '', c = ''] = line.split(' ');
      if (kind === 'struct') measured.structs.set(a, { size: Number(b), align: Number(c), fields: new Map() });
      else if (kind === 'field') measured.structs.get(a)?.fields.set(b, Number(c));
      else if (kind === 'value') measured.values.set(a, BigInt(b));
    }
    return measured;
  } finally {
    cleanup();
  }
}

function koffiFields(type: TypeObject): Map<string, number> {
  return new Map(Object.values(type.members ?? {}).map((m) => [m.name, m.offset]));
}

test('abi.ts mirrors every struct of structs.h and consts.h: names, sizes, alignment, offsets', () => {
  const cStructs = new Map([...parseStructs(header('structs.h')), ...parseStructs(header('consts.h'))]);
  const mirrored = Object.keys(abi.ABI_STRUCTS).sort();
  assert.deepEqual(mirrored, [...cStructs.keys()].sort(), 'abi.ts must mirror exactly the structs of structs.h and consts.h');

  const measured = measure(['"structs.h"', '"consts.h"'], cStructs, []);
  for (const [name, type] of Object.entries(abi.ABI_STRUCTS)) {
    const c = measured.structs.get(name);
    assert.ok(c, `struct ${name} was not measured`);
    assert.equal(type.size, c.size, `sizeof(struct ${name})`);
    assert.equal(type.alignment, c.align, `_Alignof(struct ${name})`);
    assert.equal(abi.ABI_SIZES[name as abi.AbiStructName], c.size, `ABI_SIZES.${name}`);
    assert.deepEqual(koffiFields(type), c.fields, `fields and offsets of struct ${name}`);
  }
});

test('abi.ts mirrors every user-space constant of consts.h', () => {
  // Packet-format constants the programs use internally; user space never sees them.
  const internal = new Set(['ETH_P_IP_BE', 'ETH_P_IPV6_BE', 'ETH_P_8021Q_BE', 'ETH_P_8021AD_BE', 'IP_DF_BE']);
  const defines = [...stripComments(header('consts.h')).matchAll(/^#define\s+(\w+)\s+\S/gm)]
    .map((m) => m[1] ?? '')
    .filter((name) => !name.startsWith('FULCRUM_') && !internal.has(name));
  assert.ok(defines.length > 10, 'consts.h defines were not found');

  const measured = measure(['"consts.h"'], new Map(), defines);
  const exports = abi as unknown as Record<string, unknown>;
  for (const cName of defines) {
    const tsName = cName.replace(/_$/, ''); // ETH_HLEN_ (a name clash in C) is ETH_HLEN here
    const value = exports[tsName];
    assert.ok(typeof value === 'number' || typeof value === 'bigint', `abi.ts has no constant ${tsName} for ${cName}`);
    assert.equal(BigInt(value), measured.values.get(cName), `${tsName} = ${cName}`);
  }
});

test('abi codecs round-trip and put fields where the C layout says', () => {
  const key = abi.vip4Key({ addr: '10.0.0.1', port: 80, proto: abi.IPPROTO_TCP });
  assert.deepEqual([...key], [10, 0, 0, 1, 0, 80, 6, 0]);
  assert.deepEqual(abi.decodeVip4Key(key), { addr: '10.0.0.1', port: 80, proto: 6 });
  const key6 = abi.vip6Key({ addr: '2001:db8::1', port: 443, proto: abi.IPPROTO_UDP });
  assert.deepEqual(abi.decodeVip6Key(key6), { addr: '2001:db8::1', port: 443, proto: 17 });
  assert.deepEqual(abi.decodeFlow4Key(abi.flow4Key({ src: '192.0.2.7', addrId: 3, sport: 40000, dport: 80, proto: 6 })),
    { src: '192.0.2.7', addrId: 3, sport: 40000, dport: 80, proto: 6 });
  assert.deepEqual(abi.decodeFlow6Key(abi.flow6Key({ src: 'fd00::7', addrId: 65535, sport: 1, dport: 2, proto: 17 })),
    { src: 'fd00::7', addrId: 65535, sport: 1, dport: 2, proto: 17 });
  assert.deepEqual(abi.decodeVipMeta(abi.vipMeta({ flags: abi.VIP_F_ENCAP_GUE, vipId: 9, gen: 3 })), { flags: 4, vipId: 9, gen: 3 });
  assert.deepEqual(abi.decodeConnValue(abi.connValue({ backendId: 3, vipId: 2, vipGen: 5, atimeNs: 123456789012n })),
    { backendId: 3, vipId: 2, vipGen: 5, atimeNs: 123456789012n });
  assert.deepEqual(abi.decodeVipAddr4(abi.vipAddr4({ addr: '10.0.0.1', flags: 1, addrId: 7 })), { addr: '10.0.0.1', flags: 1, addrId: 7 });
  assert.equal(abi.decodeVipAddr6(abi.vipAddr6(null)), null);
  const b4 = abi.backend({ addr: '172.16.1.2' });
  assert.deepEqual([...b4.subarray(0, 4)], [172, 16, 1, 2]);
  assert.deepEqual(abi.decodeBackend(b4), { family: 4, addr: '172.16.1.2', flags: 0 });
  assert.deepEqual(abi.decodeBackend(abi.backend({ addr: 'fd00::2', flags: 1 })), { family: 6, addr: 'fd00::2', flags: 1 });
  assert.deepEqual(abi.decodeBackend(abi.backend(null)), { family: 0, addr: null, flags: 0 });
  assert.deepEqual(abi.decodeAddrKey(abi.addrKey({ addr: '10.9.8.7' })), { family: 4, addr: '10.9.8.7' });
  assert.deepEqual(abi.sumCounters([abi.counter({ packets: 1n, bytes: 60n }), abi.counter({ packets: 2n, bytes: 1500n })]),
    { packets: 3n, bytes: 1560n });

  const cfg = abi.balancerConfig({
    ringSize: 65537, mtu: 1500, tunnelTtl: 64, guePort: 6080, tunnelSrc4: '172.16.0.0', tunnelSrc6: '100::',
    nodeAddr4: '192.0.2.1', nodeAddr6: '2001:db8::10', nexthopMac: '02:00:00:00:00:01', flags: abi.CFG_F_FIB_LOOKUP,
  });
  assert.equal(cfg.length, abi.ABI_SIZES.balancer_config);
  assert.deepEqual(abi.decodeBalancerConfig(cfg), {
    ringSize: 65537, mtu: 1500, udpTimeoutNs: abi.DEFAULT_UDP_TIMEOUT_NS, tunnelSrc4: '172.16.0.0', tunnelSrc6: '100::',
    nodeAddr4: '192.0.2.1', nodeAddr6: '2001:db8::10', guePort: 6080, nexthopMac: '02:00:00:00:00:01', tunnelTtl: 64, flags: 1,
    addrSlotBits: 11,
  });
  // gue_port is network order: 6080 = 0x17c0.
  assert.deepEqual([...cfg.subarray(abi.ABI_STRUCTS.balancer_config.members!['gue_port']!.offset).subarray(0, 2)], [0x17, 0xc0]);
  assert.deepEqual(abi.decodeDecapConfig(abi.decapConfig({ guePort: 6080 })), { guePort: 6080 });
});

test('abi codecs reject bad input in words', () => {
  assert.throws(() => abi.vip4Key({ addr: '2001:db8::1', port: 80, proto: 6 }), /vip4_key\.addr: not an IPv4 address/);
  assert.throws(() => abi.vip4Key({ addr: '10.0.1', port: 80, proto: 6 }), /not an IPv4 address: '10\.0\.1'/);
  assert.throws(() => abi.vip4Key({ addr: '10.0.0.1', port: 70000, proto: 6 }), /vip4_key\.port: must be an integer from 0 to 65535, got 70000/);
  assert.throws(() => abi.decodeVip4Key(Buffer.alloc(7)), /vip4_key: expected 8 bytes, got 7/);
  assert.throws(() => abi.balancerConfig({ ringSize: 7, mtu: 1500, tunnelTtl: 64, guePort: 1, nexthopMac: 'zz' }),
    /balancer_config\.nexthop_mac: not a MAC address/);
});

test('src/shared/reasons.ts mirrors enum reason and enum gstat of reasons.h', () => {
  const text = header('reasons.h');
  const reasons = parseEnum(text, 'reason');
  const gstats = parseEnum(text, 'gstat');
  assert.deepEqual([...REASONS], reasons.map((r) => r.replace(/^REASON_/, '').toLowerCase()), 'REASONS: names and order');
  assert.deepEqual([...GSTATS], gstats.map((g) => g.replace(/^GSTAT_/, '').toLowerCase()), 'GSTATS: names and order');

  // The numbers, from the compiler: array index = enum value, and the counts.
  const measured = measure(['"reasons.h"'], new Map(), [...reasons, 'REASON_COUNT', ...gstats, 'GSTAT_COUNT']);
  reasons.forEach((r, i) => assert.equal(measured.values.get(r), BigInt(i), `${r} = ${i}`));
  gstats.forEach((g, i) => assert.equal(measured.values.get(g), BigInt(i), `${g} = ${i}`));
  assert.equal(measured.values.get('REASON_COUNT'), BigInt(REASONS.length));
  assert.equal(measured.values.get('GSTAT_COUNT'), BigInt(GSTATS.length));
});

test('libbpf.ts option and info structs match the installed libbpf and kernel headers', () => {
  // Members that stand for a union: the C member designator at the union's start.
  const unionStarts: Record<string, Record<string, string>> = {
    bpf_link_create_opts: { _union: 'kprobe_multi.flags' },
    bpf_link_info: { _union: 'xdp.ifindex' },
  };
  const structs = new Map<string, string[]>();
  for (const [name, type] of Object.entries(libbpfMod.LIBBPF_STRUCTS)) {
    structs.set(name, Object.values(type.members ?? {})
      .map((m) => unionStarts[name]?.[m.name] ?? m.name)
      .filter((m) => !m.startsWith('_')));
  }
  const measured = measure(['<bpf/libbpf.h>', '<bpf/bpf.h>', '<linux/bpf.h>'], structs, [], []);
  for (const [name, type] of Object.entries(libbpfMod.LIBBPF_STRUCTS)) {
    const c = measured.structs.get(name);
    assert.ok(c, `struct ${name} was not measured`);
    assert.equal(type.size, c.size, `sizeof(struct ${name})`);
    assert.equal(type.alignment, c.align, `_Alignof(struct ${name})`);
    assert.equal(libbpfMod.SIZEOF[name as keyof typeof libbpfMod.SIZEOF], c.size, `SIZEOF.${name}`);
    for (const member of Object.values(type.members ?? {})) {
      const cName = unionStarts[name]?.[member.name] ?? member.name;
      if (cName.startsWith('_')) continue; // padding and bit-fields: covered by the size
      assert.equal(member.offset, c.fields.get(cName), `offsetof(struct ${name}, ${cName})`);
    }
  }
});

test('libbpf.ts, map.ts, object.ts and test-run.ts constants match the installed headers', () => {
  const expected: Record<string, number> = {
    BPF_ANY: libbpfMod.BPF_ANY, BPF_NOEXIST: libbpfMod.BPF_NOEXIST, BPF_EXIST: libbpfMod.BPF_EXIST, BPF_F_LOCK: libbpfMod.BPF_F_LOCK,
    BPF_XDP: libbpfMod.BPF_XDP, BPF_F_REPLACE: libbpfMod.BPF_F_REPLACE,
    XDP_FLAGS_UPDATE_IF_NOEXIST: libbpfMod.XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE: libbpfMod.XDP_FLAGS_SKB_MODE,
    XDP_FLAGS_DRV_MODE: libbpfMod.XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE: libbpfMod.XDP_FLAGS_HW_MODE,
    XDP_FLAGS_REPLACE: libbpfMod.XDP_FLAGS_REPLACE,
    XDP_ATTACHED_NONE: libbpfMod.XDP_ATTACHED_NONE, XDP_ATTACHED_DRV: libbpfMod.XDP_ATTACHED_DRV,
    XDP_ATTACHED_SKB: libbpfMod.XDP_ATTACHED_SKB, XDP_ATTACHED_HW: libbpfMod.XDP_ATTACHED_HW,
    XDP_ATTACHED_MULTI: libbpfMod.XDP_ATTACHED_MULTI,
    BPF_TC_INGRESS: libbpfMod.BPF_TC_INGRESS, BPF_TC_EGRESS: libbpfMod.BPF_TC_EGRESS, BPF_TC_F_REPLACE: libbpfMod.BPF_TC_F_REPLACE,
    BPF_F_NO_PREALLOC, BPF_F_NO_COMMON_LRU, BPF_F_RDONLY_PROG,
    BPF_PROG_TYPE_XDP, BPF_PROG_TYPE_SCHED_CLS,
    XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT,
    ...Object.fromEntries(Object.entries(BPF_MAP_TYPE).map(([name, value]) => [`BPF_MAP_TYPE_${name}`, value])),
  };
  const measured = measure(['<bpf/libbpf.h>', '<bpf/bpf.h>', '<linux/bpf.h>', '<linux/if_link.h>'], new Map(),
    Object.keys(expected), []);
  for (const [name, value] of Object.entries(expected)) {
    assert.equal(BigInt(value), measured.values.get(name), name);
  }
});
