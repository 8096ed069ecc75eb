// The address helpers' fast paths (canonical dotted quads by pattern, IPv6 from a
// cache) must answer exactly what the ipaddr.js parse answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import ipaddr from 'ipaddr.js';
import { addressFamily, canonicalAddress, isIpAddress } from '../../src/shared/addresses.ts';

function slow(text: string): { valid: boolean; canonical?: string; family?: 4 | 6 } {
  const valid = ipaddr.isValid(text) && (ipaddr.IPv4.isValidFourPartDecimal(text) || text.includes(':'));
  if (!valid) return { valid };
  const parsed = ipaddr.parse(text);
  return parsed.kind() === 'ipv6'
    ? { valid, canonical: (parsed as ipaddr.IPv6).toRFC5952String(), family: 6 }
    : { valid, canonical: parsed.toString(), family: 4 };
}

function fast(text: string): { valid: boolean; canonical?: string; family?: 4 | 6 } {
  const valid = isIpAddress(text);
  return valid ? { valid, canonical: canonicalAddress(text), family: addressFamily(text) } : { valid };
}

test('the fast paths agree with a full parse, for canonical, odd and invalid texts', () => {
  const texts = [
    '0.0.0.0', '255.255.255.255', '10.0.0.1', '192.0.2.10', '1.2.3.4', '9.99.199.249',
    '01.2.3.4', '1.2.3.04', '256.1.1.1', '1.2.3', '1.2.3.4.5', '1.2.3.4 ', ' 1.2.3.4', '0x1.2.3.4', '1.2.3.-1', '',
    '2001:db8::1', '2001:DB8::1', '2001:db8:0::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '::', '::1',
    '::ffff:192.0.2.1', 'fe80::1%eth0', '2001:db8::g', ':::', 'not an address',
  ];
  // Twice: the second round answers IPv6 from the cache.
  for (const round of [1, 2]) for (const text of texts) assert.deepEqual(fast(text), slow(text), `${JSON.stringify(text)} (round ${round})`);
  for (let i = 0; i < 2000; i++) {
    const text = Array.from({ length: 4 }, () => Math.floor(Math.random() * 256)).join('.');
    assert.deepEqual(fast(text), slow(text), text);
  }
});
