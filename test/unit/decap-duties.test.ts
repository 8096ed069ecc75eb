// The pure parts of the backend role: pin directory names, the lo plan, the DSR
// sysctls, the duty record's encoding, interface name checks. The namespace side is in
// test/agent/decap-duties.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeDutyRecord, dsrSysctls, encodeDutyRecord, planLoopback, podKey, type DutyRecord,
} from '../../src/agent/decap-duties.ts';
import { hostPrefix, isValidInterfaceName } from '../../src/agent/pod-netns.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';

test('podKey: readable, unique per pod, always one safe path component', () => {
  assert.match(podKey('shop/web-0'), /^shop_web-0-[0-9a-f]{12}$/);
  assert.equal(podKey('shop/web-0'), podKey('shop/web-0'), 'stable');
  // Same readable part, different pods: the digest tells them apart.
  assert.notEqual(podKey('shop/web-0'), podKey('shop_web-0'));
  for (const pod of ['..', '.', '../../etc', 'a/b/c', 'ns/' + 'x'.repeat(400), 'ünïcode/pod', ' ']) {
    const key = podKey(pod);
    assert.match(key, /^[A-Za-z0-9_][A-Za-z0-9._-]*$/, pod);
    assert.ok(!key.includes('/') && key !== '.' && key !== '..', pod);
    assert.ok(key.length <= 213, `${pod}: ${key.length} characters`);
  }
});

type LoopbackCase = {
  name: string;
  onLoopback: [string, number][];
  previous: string[];
  wanted: string[];
  add: string[];
  remove: string[];
};

const LOOPBACK_CASES: LoopbackCase[] = [
  {
    name: 'first programming: every wanted VIP is added',
    onLoopback: [['127.0.0.1', 8], ['::1', 128]], previous: [], wanted: ['203.0.113.10', '2001:db8::10'],
    add: ['203.0.113.10', '2001:db8::10'], remove: [],
  },
  {
    name: 'nothing changed: nothing to do',
    onLoopback: [['127.0.0.1', 8], ['203.0.113.10', 32]], previous: ['203.0.113.10'], wanted: ['203.0.113.10'],
    add: [], remove: [],
  },
  {
    name: 'a VIP replaced by another',
    onLoopback: [['203.0.113.10', 32]], previous: ['203.0.113.10'], wanted: ['203.0.113.11'],
    add: ['203.0.113.11'], remove: ['203.0.113.10'],
  },
  {
    name: 'a VIP Fulcrum added was deleted by someone: added again',
    onLoopback: [], previous: ['203.0.113.10'], wanted: ['203.0.113.10'],
    add: ['203.0.113.10'], remove: [],
  },
  {
    name: 'a stale VIP that is no longer on lo is not deleted again',
    onLoopback: [], previous: ['203.0.113.10'], wanted: [],
    add: [], remove: [],
  },
  {
    name: 'addresses someone else put on lo are never removed',
    onLoopback: [['192.0.2.55', 32], ['203.0.113.10', 32]], previous: ['203.0.113.10'], wanted: [],
    add: [], remove: ['203.0.113.10'],
  },
  {
    name: 'the VIP inside a wider prefix is not the host address: the /32 is added',
    onLoopback: [['203.0.113.10', 24]], previous: [], wanted: ['203.0.113.10'],
    add: ['203.0.113.10'], remove: [],
  },
  {
    name: 'IPv6 spellings compare canonically',
    onLoopback: [['2001:db8::10', 128]], previous: ['2001:DB8:0::10'], wanted: ['2001:0db8::10'],
    add: [], remove: [],
  },
];

for (const c of LOOPBACK_CASES) {
  test(`planLoopback: ${c.name}`, () => {
    const plan = planLoopback({
      onLoopback: c.onLoopback.map(([address, prefixLength]) => ({ address, prefixLength })),
      previous: c.previous,
      wanted: c.wanted,
    });
    assert.deepEqual(plan, { add: c.add, remove: c.remove });
  });
}

test('hostPrefix: /32 for IPv4, /128 for IPv6', () => {
  assert.equal(hostPrefix('203.0.113.10'), 32);
  assert.equal(hostPrefix('2001:db8::10'), 128);
});

test('dsrSysctls: arp_ignore and arp_announce on all, lo and the interface; rp_filter off on all and the interface', () => {
  assert.deepEqual(dsrSysctls('eth0').map((s) => `${s.key}=${s.value}`), [
    'net/ipv4/conf/all/arp_ignore=1', 'net/ipv4/conf/lo/arp_ignore=1', 'net/ipv4/conf/eth0/arp_ignore=1',
    'net/ipv4/conf/all/arp_announce=2', 'net/ipv4/conf/lo/arp_announce=2', 'net/ipv4/conf/eth0/arp_announce=2',
    'net/ipv4/conf/all/rp_filter=0', 'net/ipv4/conf/eth0/rp_filter=0',
  ]);
  // Slash form: a VLAN interface's dot is part of its name, not a separator.
  assert.ok(dsrSysctls('eth0.100').some((s) => s.key === 'net/ipv4/conf/eth0.100/rp_filter'));
});

const RECORD: DutyRecord = {
  version: 1, pod: 'shop/web-0', netns: '/run/netns/cni-1234', netnsDev: 4, netnsIno: 4026532999,
  interface: 'eth0', tcHandle: 0x464c4352, tcPriority: 1,
};

test('duty record: round trip through the pinned value', () => {
  const value = encodeDutyRecord(RECORD);
  assert.equal(value.length, 4096);
  assert.deepEqual(decodeDutyRecord(value), RECORD);
});

test('duty record: too long to record is a desired-state error; a damaged one does not decode', () => {
  assert.throws(() => encodeDutyRecord({ ...RECORD, netns: `/proc/${'9'.repeat(5000)}/ns/net` }),
    (err) => isFulcrumError(err, 'ERR_DESIRED_STATE'));
  assert.throws(() => decodeDutyRecord(Buffer.from('{"version":2}')));
  assert.throws(() => decodeDutyRecord(Buffer.alloc(16)));
});

test('isValidInterfaceName: what the kernel accepts', () => {
  for (const name of ['eth0', 'eth0.100', 'net1', 'a'.repeat(15), 'veth-x_1']) assert.ok(isValidInterfaceName(name), name);
  for (const name of ['', '.', '..', 'a'.repeat(16), 'eth/0', 'eth:0', 'eth 0', 'eth0\n']) assert.ok(!isValidInterfaceName(name), name);
});
