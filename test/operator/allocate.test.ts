import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocate, overlappingPools, parseRanges, poolUsage, portsCollide, rangeSize, resolveClaims } from '../../src/operator/compute/allocate.ts';
import type { Claim, PoolInput } from '../../src/operator/compute/allocate.ts';

const pool = (addresses: string[], extra: Partial<PoolInput['spec']> = {}, name = 'p'): PoolInput => ({
  name, created: '2026-01-01T00:00:00Z', spec: { addresses, autoAssign: true, avoidBuggyIPs: false, ...extra },
});
const tcp = (port: number) => ({ protocol: 'TCP' as const, port });
const claim = (key: string, address: string, extra: Partial<Claim> = {}): Claim => ({ key, created: '2026-01-01T00:00:00Z', address, ports: [tcp(80)], ...extra });

describe('compute/allocate: ranges', () => {
  const cases: [string, string[], ReturnType<typeof parseRanges>['kind'], number | undefined][] = [
    ['v4 cidr', ['192.0.2.0/30'], 'ok', 4],
    ['v4 range', ['192.0.2.10-192.0.2.12'], 'ok', 3],
    ['v6 cidr', ['2001:db8::/126'], 'ok', 4],
    ['v6 range', ['2001:db8::a-2001:db8::b'], 'ok', 2],
    ['host bits set', ['192.0.2.5/24'], 'invalid', undefined],
    ['single /32', ['192.0.2.7/32'], 'ok', 1],
    ['mixed families range', ['192.0.2.1-2001:db8::1'], 'invalid', undefined],
    ['reversed range', ['192.0.2.9-192.0.2.1'], 'invalid', undefined],
    ['garbage', ['nope'], 'invalid', undefined],
    ['prefix too long', ['192.0.2.0/33'], 'invalid', undefined],
  ];
  for (const [name, addresses, kind, size] of cases) {
    it(name, () => {
      const r = parseRanges(addresses);
      assert.equal(r.kind, kind);
      if (r.kind === 'ok' && size !== undefined) assert.equal(Number(rangeSize(r.ranges[0]!, false)), size);
    });
  }

  it('counts buggy addresses out of a range', () => {
    const r = parseRanges(['10.0.0.0/23']);
    assert.equal(r.kind, 'ok');
    if (r.kind === 'ok') assert.equal(rangeSize(r.ranges[0]!, true), 512n - 4n);
    const r2 = parseRanges(['10.0.0.0/16']);
    if (r2.kind === 'ok') assert.equal(rangeSize(r2.ranges[0]!, true), 65536n - 512n);
  });
});

describe('compute/allocate: claims', () => {
  it('settles conflicts oldest first, sharing only with one key and disjoint ports', () => {
    const cases: { name: string; claims: Claim[]; want: Record<string, string> }[] = [
      { name: 'distinct addresses', claims: [claim('a', '192.0.2.1'), claim('b', '192.0.2.2')], want: { a: 'held', b: 'held' } },
      { name: 'same address, no key', claims: [claim('a', '192.0.2.1'), claim('b', '192.0.2.1', { created: '2026-01-02T00:00:00Z', ports: [tcp(443)] })], want: { a: 'held', b: 'AddressConflict' } },
      { name: 'older wins whatever the order', claims: [claim('b', '192.0.2.1', { created: '2026-01-02T00:00:00Z' }), claim('a', '192.0.2.1')], want: { a: 'held', b: 'AddressConflict' } },
      { name: 'same key, disjoint ports', claims: [claim('a', '192.0.2.1', { shareKey: 'k' }), claim('b', '192.0.2.1', { shareKey: 'k', ports: [tcp(443)] })], want: { a: 'held', b: 'held' } },
      { name: 'same key, colliding ports', claims: [claim('a', '192.0.2.1', { shareKey: 'k' }), claim('b', '192.0.2.1', { shareKey: 'k' })], want: { a: 'held', b: 'PortsCollide' } },
      { name: 'different keys', claims: [claim('a', '192.0.2.1', { shareKey: 'k' }), claim('b', '192.0.2.1', { shareKey: 'j', ports: [tcp(443)] })], want: { a: 'held', b: 'AddressConflict' } },
      { name: 'canonical forms compare equal', claims: [claim('a', '2001:db8::1'), claim('b', '2001:DB8:0::1')], want: { a: 'held', b: 'AddressConflict' } },
      { name: 'a loser does not block a third VIP', claims: [
        claim('a', '192.0.2.1', { shareKey: 'k' }),
        claim('b', '192.0.2.1', { shareKey: 'k', created: '2026-01-02T00:00:00Z' }),
        claim('c', '192.0.2.1', { shareKey: 'k', ports: [tcp(8080)], created: '2026-01-03T00:00:00Z' }),
      ], want: { a: 'held', b: 'PortsCollide', c: 'held' } },
    ];
    for (const c of cases) {
      const out = resolveClaims(c.claims);
      const got = Object.fromEntries([...out].map(([k, v]) => [k, v.kind === 'held' ? 'held' : v.reason]));
      assert.deepEqual(got, c.want, c.name);
    }
  });

  it('all-ports claims collide with every port of their protocol only', () => {
    assert.equal(portsCollide([{ protocol: 'TCP', port: 0 }], [tcp(80)]), true);
    assert.equal(portsCollide([{ protocol: 'UDP', port: 0 }], [tcp(80)]), false);
    assert.equal(portsCollide([tcp(80)], [tcp(81)]), false);
  });
});

describe('compute/allocate: allocate', () => {
  const req = { key: 'ns/new', ports: [tcp(80)] };
  const cases: { name: string; pool: PoolInput; held: Claim[]; request?: Partial<typeof req> & { shareKey?: string; family?: 4 | 6 }; want: string }[] = [
    { name: 'first address', pool: pool(['192.0.2.0/30']), held: [], want: '192.0.2.0' },
    { name: 'skips used', pool: pool(['192.0.2.0/30']), held: [claim('a', '192.0.2.0'), claim('b', '192.0.2.1')], want: '192.0.2.2' },
    { name: 'avoids buggy', pool: pool(['192.0.2.0/24'], { avoidBuggyIPs: true }), held: [], want: '192.0.2.1' },
    { name: 'second range', pool: pool(['192.0.2.1-192.0.2.1', '198.51.100.5/32']), held: [claim('a', '192.0.2.1')], want: '198.51.100.5' },
    { name: 'exhausted', pool: pool(['192.0.2.1/32']), held: [claim('a', '192.0.2.1')], want: 'exhausted' },
    { name: 'v6', pool: pool(['2001:db8::/64']), held: [claim('a', '2001:db8::')], want: '2001:db8::1' },
    { name: 'family chosen', pool: pool(['192.0.2.0/30', '2001:db8::/126']), held: [], request: { family: 6 }, want: '2001:db8::' },
    { name: 'family missing', pool: pool(['192.0.2.0/30']), held: [], request: { family: 6 }, want: 'familyUnavailable' },
    { name: 'shares with same key and disjoint ports', pool: pool(['192.0.2.0/30']), held: [claim('a', '192.0.2.3', { shareKey: 'k', ports: [tcp(443)] })], request: { shareKey: 'k' }, want: '192.0.2.3' },
    { name: 'does not share on colliding ports', pool: pool(['192.0.2.0/30']), held: [claim('a', '192.0.2.3', { shareKey: 'k' })], request: { shareKey: 'k' }, want: '192.0.2.0' },
    { name: 'does not share outside the pool', pool: pool(['192.0.2.0/30']), held: [claim('a', '198.51.100.1', { shareKey: 'k', ports: [tcp(443)] })], request: { shareKey: 'k' }, want: '192.0.2.0' },
    { name: 'an explicit address inside the pool is skipped', pool: pool(['192.0.2.0/31']), held: [claim('x', '192.0.2.0')], want: '192.0.2.1' },
    { name: 'ignores its own old claim', pool: pool(['192.0.2.0/31']), held: [claim('ns/new', '192.0.2.0')], want: '192.0.2.0' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const out = allocate({ ...req, ...c.request }, c.pool, c.held);
      assert.equal(out.kind === 'allocated' ? out.address : out.kind, c.want);
    });
  }

  it('reports usage and availability', () => {
    assert.deepEqual(poolUsage(pool(['192.0.2.0/30']), [claim('a', '192.0.2.1'), claim('b', '198.51.100.1'), claim('c', '192.0.2.1', { shareKey: 'k' })]), { assigned: 1, available: 3 });
    assert.deepEqual(poolUsage(pool(['2001:db8::/64']), []), { assigned: 0, available: Number.MAX_SAFE_INTEGER });
  });

  it('finds overlapping pools, blaming the younger one', () => {
    const older = { ...pool(['192.0.2.0/24'], {}, 'older'), created: '2026-01-01T00:00:00Z' };
    const younger = { ...pool(['192.0.2.128/25'], {}, 'younger'), created: '2026-01-02T00:00:00Z' };
    const apart = { ...pool(['198.51.100.0/24'], {}, 'apart'), created: '2026-01-03T00:00:00Z' };
    const self = { ...pool(['203.0.113.0/24', '203.0.113.5/32'], {}, 'self'), created: '2026-01-04T00:00:00Z' };
    assert.deepEqual([...overlappingPools([younger, apart, older, self])], [['younger', 'older'], ['self', 'self']]);
  });
});
