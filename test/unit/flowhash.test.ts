// The TypeScript flow hash against the C one: a small host program #includes
// bpf/include/hash.h, loads the hash words from packet bytes the way the BPF program
// does on a little-endian host, and prints the hashes for the same inputs.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  addressBytes,
  addressFamily,
  flowEntropy,
  flowLabel,
  formatAddress,
  gueSourcePort,
  hashWords,
  jhash2words,
  ringHash,
  ringSlot,
  tunnelSource4,
  tunnelSource6,
} from '../../src/shared/flowhash.ts';
import type { FlowInput } from '../../src/shared/flowhash.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';

const BPF_INCLUDE = fileURLToPath(new URL('../../bpf/include', import.meta.url));

// Two kinds of input line:
//   w <a> <b> <initval>                   jhash_2words on raw words (hex)
//   f <family> <addr hex> <sport> <dport>  the flow hash as the data plane computes it:
//                                         prints entropy and the src_ip_only hash
const HARNESS = String.raw`
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#include "hash.h"

static int hexbytes(const char *hex, unsigned char *out, int n)
{
	for (int i = 0; i < n; i++)
		if (sscanf(hex + 2 * i, "%2hhx", &out[i]) != 1)
			return -1;
	return 0;
}

int main(void)
{
	char kind[2], addr[33];
	while (scanf("%1s", kind) == 1) {
		if (kind[0] == 'w') {
			__u32 a, b, c;
			if (scanf("%x %x %x", &a, &b, &c) != 3) return 1;
			printf("%08x\n", jhash_2words(a, b, c));
		} else {
			int family;
			unsigned sport, dport;
			unsigned char bytes[16];
			if (scanf("%d %32s %u %u", &family, addr, &sport, &dport) != 4) return 1;
			if (hexbytes(addr, bytes, family == 4 ? 4 : 16)) return 1;
			__u32 w[4];
			memcpy(w, bytes, family == 4 ? 4 : 16); /* loads from packet memory */
			__u32 a = family == 4 ? w[0] : fold_ipv6_words(w[0], w[1], w[2], w[3]);
			struct { __be16 source, dest; } ports = { htons(sport), htons(dport) };
			__u32 b;
			memcpy(&b, &ports, 4);
			printf("%08x %08x\n", jhash_2words(a, b, 0), jhash_2words(a, 0, 0));
		}
	}
	return 0;
}
`;

function findCompiler(): string | undefined {
  return ['clang', 'cc'].find((cc) => spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0);
}

// A deterministic xorshift32 stream, so a failure reproduces.
function* randomU32(seed: number): Generator<number> {
  let x = seed >>> 0;
  for (;;) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    yield x;
  }
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

describe('jhash2words', () => {
  // Pinned from the C header, so the model is checked even where no compiler is installed.
  test('known values', () => {
    assert.equal(hex8(jhash2words(0, 0, 0)), '58c184bf');
    assert.equal(hex8(jhash2words(1, 2, 0)), '8b4c7979');
    assert.equal(hex8(jhash2words(0xdeadbeef, 0, 0)), 'cbf70fc7');
    assert.equal(hex8(jhash2words(0xffffffff, 0xffffffff, 0xffffffff)), 'e7af1d40');
  });

  test('always returns a u32', () => {
    const rnd = randomU32(7);
    for (let i = 0; i < 1000; i++) {
      const h = jhash2words(rnd.next().value as number, rnd.next().value as number, 0);
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `${h}`);
    }
  });
});

describe('flow hash against bpf/include/hash.h', () => {
  let dir = '';
  let harness = '';
  const compiler = findCompiler();

  before(() => {
    if (compiler === undefined) return;
    dir = mkdtempSync(join(tmpdir(), 'fulcrum-jhash-'));
    writeFileSync(join(dir, 'harness.c'), HARNESS);
    harness = join(dir, 'harness');
    execFileSync(compiler, ['-O2', '-Wall', '-Werror', '-I', BPF_INCLUDE, '-o', harness, join(dir, 'harness.c')]);
  });

  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  function runHarness(lines: readonly string[]): string[] {
    const out = execFileSync(harness, { input: `${lines.join('\n')}\n`, encoding: 'utf8' });
    return out.trim().split('\n');
  }

  test('jhash_2words on edge and pseudo-random words', (t) => {
    if (compiler === undefined) return t.skip('no host C compiler');
    const inputs: [number, number, number][] = [
      [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0xffffffff, 0, 0], [0, 0xffffffff, 0],
      [0xffffffff, 0xffffffff, 0xffffffff], [0x80000000, 0x7fffffff, 0], [0xdeadbeef, 0xdeadbeef, 0xdeadbeef],
      [0x21524111, 0, 0], // a + initval wraps to exactly 0 for initval 0
    ];
    const rnd = randomU32(0x5eed);
    for (let i = 0; i < 500; i++) {
      const initval = i % 4 === 0 ? (rnd.next().value as number) : 0;
      inputs.push([rnd.next().value as number, rnd.next().value as number, initval]);
    }
    const got = runHarness(inputs.map(([a, b, c]) => `w ${hex8(a)} ${hex8(b)} ${hex8(c)}`));
    assert.equal(got.length, inputs.length);
    inputs.forEach(([a, b, c], i) => {
      assert.equal(hex8(jhash2words(a, b, c)), got[i], `jhash_2words(${hex8(a)}, ${hex8(b)}, ${hex8(c)})`);
    });
  });

  test('flowEntropy and the src_ip_only ring hash, loaded from packet bytes', (t) => {
    if (compiler === undefined) return t.skip('no host C compiler');
    const flows: FlowInput[] = [
      { family: 4, src: '10.0.0.1', sport: 40000, dport: 80 },
      { family: 4, src: '0.0.0.0', sport: 0, dport: 0 },
      { family: 4, src: '255.255.255.255', sport: 65535, dport: 65535 },
      { family: 4, src: '192.0.2.77', sport: 1, dport: 256 },
      { family: 6, src: '2001:db8::1', sport: 40000, dport: 443 },
      { family: 6, src: '::', sport: 0, dport: 0 },
      { family: 6, src: 'fe80::1234:5678:9abc:def0', sport: 53, dport: 5353 },
      { family: 6, src: '::ffff:10.0.0.1', sport: 12345, dport: 80 },
    ];
    const rnd = randomU32(0xf10);
    for (let i = 0; i < 300; i++) {
      const family = i % 2 === 0 ? 4 : 6;
      const src = new Uint8Array(family === 4 ? 4 : 16).map(() => (rnd.next().value as number) & 0xff);
      flows.push({ family, src, sport: (rnd.next().value as number) & 0xffff, dport: (rnd.next().value as number) & 0xffff });
    }
    const got = runHarness(flows.map((f) => {
      const addr = Buffer.from(addressBytes(f.src, f.family)).toString('hex');
      return `f ${f.family} ${addr} ${f.sport} ${f.dport}`;
    }));
    flows.forEach((flow, i) => {
      const label = `${typeof flow.src === 'string' ? flow.src : formatAddress(flow.src)} ${flow.sport}->${flow.dport}`;
      const mine = `${hex8(flowEntropy(flow))} ${hex8(ringHash({ ...flow, srcIpOnly: true }))}`;
      assert.equal(mine, got[i], label);
    });
  });
});

describe('hash words', () => {
  test('IPv4: the address bytes loaded little-endian; ports byte-swapped into b', () => {
    const { a, b } = hashWords({ family: 4, src: '10.0.0.1', sport: 0x9c40, dport: 0x0050 });
    assert.equal(hex8(a), '0100000a');
    // Wire bytes 9c 40 00 50, loaded little-endian.
    assert.equal(hex8(b), '5000409c');
  });

  test('IPv6: the four little-endian words rotated by 0, 8, 16 and 24 bits, XORed', () => {
    const { a } = hashWords({ family: 6, src: '2001:db8::1', sport: 0, dport: 0 });
    // Bytes 20 01 0d b8 | 0 | 0 | 00 00 00 01 load as 0xb80d0120 ^ rol(0x01000000, 24) = 0x00010000.
    assert.equal(hex8(a), 'b80c0120');
  });

  test('IPv6: structured address plans do not collide (a plain XOR folded them alike)', () => {
    const word = (src: string): number => hashWords({ family: 6, src, sport: 0, dport: 0 }).a;
    assert.notEqual(word('2001:db8:0:1::2'), word('2001:db8:0:2::1'));
    assert.notEqual(word('2001:db8:1::2:0:0'), word('2001:db8:2::1:0:0'));
    // A /48 plan: subnet i, host j — every address its own word.
    const seen = new Set<number>();
    for (let i = 0; i < 128; i++) for (let j = 1; j <= 128; j++) seen.add(word(`2001:db8:0:${i.toString(16)}::${j.toString(16)}`));
    assert.equal(seen.size, 128 * 128);
  });

  test('text and bytes give the same hash', () => {
    const text = flowEntropy({ family: 6, src: '2001:db8::1', sport: 1000, dport: 443 });
    const bytes = flowEntropy({ family: 6, src: addressBytes('2001:db8::1', 6), sport: 1000, dport: 443 });
    assert.equal(text, bytes);
  });
});

describe('ring hash and slot', () => {
  const flow: FlowInput = { family: 4, src: '198.51.100.7', sport: 51515, dport: 443 };

  test('the ring hash is the entropy unless src_ip_only', () => {
    assert.equal(ringHash(flow), flowEntropy(flow));
    assert.equal(ringHash({ ...flow, srcIpOnly: false }), flowEntropy(flow));
    const { a } = hashWords(flow);
    assert.equal(ringHash({ ...flow, srcIpOnly: true }), jhash2words(a, 0, 0));
  });

  test('src_ip_only ignores the ports', () => {
    const one = ringHash({ ...flow, srcIpOnly: true });
    assert.equal(ringHash({ ...flow, sport: 1, dport: 2, srcIpOnly: true }), one);
    assert.notEqual(ringHash({ ...flow, sport: 1 }), ringHash(flow));
  });

  test('slot = (hash × ring size) >> 32, over the full u32 range', () => {
    assert.equal(ringSlot(0, 65537), 0);
    assert.equal(ringSlot(0x80000000, 65537), 32768);
    assert.equal(ringSlot(0xffffffff, 65537), 65536);
    assert.equal(ringSlot(0xffffffff, 13), 12);
    assert.throws(() => ringSlot(1, 0), (err) => isFulcrumError(err, 'ERR_CONFIG'));
  });
});

describe('encapsulation fields from the entropy', () => {
  const entropy = 0x89abcdef;

  test('IPIP source: prefix upper 16 bits, entropy low 16 bits high byte first', () => {
    assert.equal(tunnelSource4('172.16.0.0', entropy), '172.16.205.239');
    assert.equal(tunnelSource4('172.16.99.99', 0x00000102), '172.16.1.2');
    assert.equal(tunnelSource4(Uint8Array.of(10, 255, 1, 1), 0xffff0000), '10.255.0.0');
  });

  test('IP6IP6 source: prefix first 12 bytes, entropy big-endian', () => {
    assert.equal(tunnelSource6('fd00:1:2:3:4:5:6:7', entropy), 'fd00:1:2:3:4:5:89ab:cdef');
    assert.equal(tunnelSource6('fd00::', 0), 'fd00::');
  });

  test('GUE source port keeps the top bit set', () => {
    assert.equal(gueSourcePort(entropy), 0x8000 | 0x4def);
    assert.equal(gueSourcePort(0), 0x8000);
    assert.equal(gueSourcePort(0xffffffff), 0xffff);
  });

  test('flow label is the low 20 bits', () => {
    assert.equal(flowLabel(entropy), 0xbcdef);
    assert.equal(flowLabel(0xffffffff), 0xfffff);
  });
});

describe('addresses', () => {
  test('parse, format and infer the family', () => {
    assert.deepEqual(Array.from(addressBytes('10.0.0.1', 4)), [10, 0, 0, 1]);
    assert.equal(addressBytes('2001:db8::1', 6).length, 16);
    assert.equal(formatAddress(addressBytes('2001:0db8:0:0:0:0:0:1', 6)), '2001:db8::1');
    assert.equal(addressFamily('10.0.0.1'), 4);
    assert.equal(addressFamily('::1'), 6);
    assert.equal(addressFamily(new Uint8Array(16)), 6);
  });

  test('reject malformed and mismatched addresses', () => {
    const configError = (err: unknown) => isFulcrumError(err, 'ERR_CONFIG');
    assert.throws(() => addressBytes('10.1', 4), configError); // inet_aton shorthand, not accepted
    assert.throws(() => addressBytes('10.0.0.1', 6), configError);
    assert.throws(() => addressBytes('2001:db8::1', 4), configError);
    assert.throws(() => addressBytes(new Uint8Array(5), 4), configError);
    assert.throws(() => addressFamily('example.com'), configError);
    assert.throws(() => flowEntropy({ family: 4, src: '10.0.0.1', sport: 70000, dport: 80 }), configError);
  });
});
