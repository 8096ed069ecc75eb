// The packet builder checked against independent truth: checksum vectors from RFC 1071
// and published headers, packets the Linux kernel sent (captured with tcpdump, which
// verified or corrected each checksum), byte offsets from the protocol specifications,
// and the exact formats in docs/dataplane.md.

import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { describe, test } from 'node:test';
import { flowEntropy, flowLabel, formatAddress, gueSourcePort, tunnelSource4, tunnelSource6 } from '../../src/shared/flowhash.ts';
import {
  assertFramesEqual,
  balancerEchoReply,
  balancerFragNeeded,
  balancerPacketTooBig,
  decapsulate,
  decodeFrame,
  describeFrame,
  destinationOptions,
  diffFrames,
  encap4in6,
  encap6in4,
  encapGue,
  encapIp6ip6,
  encapIpip,
  encapOverhead,
  encapsulate,
  ether,
  exceedsMtu,
  flowKeyOf,
  fragmentHeader,
  hopByHop,
  icmp,
  icmp6,
  icmp6DestUnreachable,
  icmp6EchoReply,
  icmp6EchoRequest,
  icmp6PacketTooBig,
  icmpDestUnreachable,
  icmpEchoReply,
  icmpEchoRequest,
  icmpFragNeeded,
  internetChecksum,
  ipv4,
  ipv4HeaderChecksum,
  ipv6,
  onesComplementSum,
  rawTransport,
  routingHeader,
  tcp,
  transportChecksum,
  udp,
} from '../support/packets.ts';
import type { TunnelConfig } from '../support/packets.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const CLIENT_MAC = '02:00:00:00:00:c1';
const LB_MAC = '02:00:00:00:00:1b';
const CLIENT4 = '198.51.100.7';
const VIP4 = '192.0.2.10';
const CLIENT6 = '2001:db8:c::7';
const VIP6 = '2001:db8:f::10';

const CONFIG: TunnelConfig = {
  tunnelSrc4: '172.16.0.0',
  tunnelSrc6: 'fd00:7::',
  nodeAddr4: '10.20.0.1',
  nodeAddr6: 'fd00:20::1',
  guePort: 6080,
  ttl: 32,
  nexthopMac: '02:00:00:00:00:ee',
};

function tcpFrame4(o: { tos?: number; payload?: string } = {}): Buffer {
  return ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv4({ src: CLIENT4, dst: VIP4, tos: o.tos ?? 0, df: true, id: 0x1234 },
    tcp({ sport: 40000, dport: 443, seq: 1, flags: { syn: true }, payload: o.payload })));
}

function udpFrame6(o: { trafficClass?: number } = {}): Buffer {
  return ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv6({ src: CLIENT6, dst: VIP6, trafficClass: o.trafficClass ?? 0, flowLabel: 0x12345 },
    udp({ sport: 5353, dport: 53, payload: 'query' })));
}

// ─── Checksums ───────────────────────────────────────────────────────────────────────

describe('checksums', () => {
  test('RFC 1071 §3 example: sum ddf2, checksum 220d', () => {
    const data = hex('0001 f203 f4f5 f6f7');
    assert.equal(onesComplementSum(data), 0xddf2);
    assert.equal(internetChecksum(data), 0x220d);
  });

  test('chunks are summed as one buffer, odd lengths included', () => {
    const data = hex('45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7 ab');
    const whole = internetChecksum(data);
    for (let cut = 0; cut <= data.length; cut++) {
      assert.equal(internetChecksum(data.subarray(0, cut), data.subarray(cut)), whole, `split at ${cut}`);
    }
    assert.equal(onesComplementSum(hex('ff')), 0xff00); // a trailing odd byte is the high byte
  });

  test('a captured IPv4 header: 192.168.0.1 -> 192.168.0.199, checksum b861', () => {
    const header = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
    assert.equal(ipv4HeaderChecksum(header), 0xb861);
    assert.equal(internetChecksum(header), 0); // a correct header sums to all ones
  });

  test('a captured IPv4 TCP ACK with timestamps rebuilds byte for byte', () => {
    const captured = hex(`4500 0034 eda5 4000 4006 4eb6 ac16 686d 4a7d 9f67
      af1f 0050 e833 8b62 fc13 da66 8010 005c 37a6 0000 0101 080a 04b8 66f7 4add 9045`);
    const segment = captured.subarray(20);
    assert.equal(transportChecksum(4, captured.subarray(12, 16), captured.subarray(16, 20), 6, segment), 0);
    const built = ipv4({ src: '172.22.104.109', dst: '74.125.159.103', id: 0xeda5, df: true, ttl: 64 },
      tcp({ sport: 0xaf1f, dport: 80, seq: 0xe8338b62, ack: 0xfc13da66, flags: { ack: true }, window: 0x5c,
        options: hex('0101 080a 04b8 66f7 4add 9045') }));
    assert.deepEqual(built, captured);
  });
});

// Packets Linux sent over lo, captured with tcpdump. Loopback leaves TCP / UDP checksums
// to offload, so those fields hold tcpdump's computed value ("bad cksum X -> Y": Y);
// ICMP and ICMPv6 checksums are the kernel's own ("sum ok").
describe('kernel-captured packets rebuild byte for byte', () => {
  const udp4Sent = hex('4500 0023 e39b 4000 4011 592c 7f00 0001 7f00 0001 b04b 0009 000f fe22 6675 6c63 7275 6d');
  const udp6Sent = hex(`600c a179 000f 1140 0000 0000 0000 0000 0000 0000 0000 0001 0000 0000 0000 0000
    0000 0000 0000 0001 ac12 0009 000f 0022 6675 6c63 7275 6d`);

  test('IPv4 UDP (checksum 9f2a)', () => {
    const built = ipv4({ src: '127.0.0.1', dst: '127.0.0.1', id: 0xe39b, df: true },
      udp({ sport: 45131, dport: 9, payload: 'fulcrum' }));
    const expected = Buffer.from(udp4Sent);
    expected.writeUInt16BE(0x9f2a, 26);
    assert.deepEqual(built, expected);
  });

  test('ICMP port unreachable quoting that datagram', () => {
    const captured = hex(`45c0 003f 35bc 0000 4001 4640 7f00 0001 7f00 0001 0303 9c27 0000 0000`);
    const built = ipv4({ src: '127.0.0.1', dst: '127.0.0.1', tos: 0xc0, id: 0x35bc },
      icmpDestUnreachable({ code: 3, quote: udp4Sent }));
    assert.deepEqual(built, Buffer.concat([captured, udp4Sent]));
  });

  test('IPv6 TCP SYN with options (checksum 3750) and the RST answering it (6647)', () => {
    const syn = ipv6({ src: '::1', dst: '::1', flowLabel: 0x51bd4 },
      tcp({ sport: 37398, dport: 9, seq: 1267231711, flags: { syn: true }, window: 65476,
        options: hex('0204 ffc4 0402 080a fb40 d20d 0000 0000 0103 030a') }));
    assert.deepEqual(syn.subarray(0, 8), hex('6005 1bd4 0028 0640'));
    assert.deepEqual(syn.subarray(40), hex(`9216 0009 4b88 6bdf 0000 0000 a002 ffc4 3750 0000
      0204 ffc4 0402 080a fb40 d20d 0000 0000 0103 030a`));
    const rst = ipv6({ src: '::1', dst: '::1', flowLabel: 0xeb774 },
      tcp({ sport: 9, dport: 37398, ack: 1267231712, flags: { rst: true, ack: true }, window: 0 }));
    assert.deepEqual(rst.subarray(40), hex('0009 9216 0000 0000 4b88 6be0 5014 0000 6647 0000'));
  });

  test('IPv6 UDP (checksum a164)', () => {
    const built = ipv6({ src: '::1', dst: '::1', flowLabel: 0xca179 }, udp({ sport: 44050, dport: 9, payload: 'fulcrum' }));
    const expected = Buffer.from(udp6Sent);
    expected.writeUInt16BE(0xa164, 46);
    assert.deepEqual(built, expected);
  });

  test('ICMPv6 port unreachable quoting that datagram (checksum 8d0e)', () => {
    const built = ipv6({ src: '::1', dst: '::1', flowLabel: 0x5304b }, icmp6DestUnreachable({ code: 4, quote: udp6Sent }));
    assert.deepEqual(built.subarray(0, 8), hex('6005 304b 003f 3a40'));
    assert.deepEqual(built.subarray(40, 48), hex('0104 8d0e 0000 0000'));
    assert.deepEqual(built.subarray(48), udp6Sent);
  });
});

// ─── Layers ──────────────────────────────────────────────────────────────────────────

describe('Ethernet and VLAN', () => {
  const l3 = ipv4({ src: CLIENT4, dst: VIP4 }, udp({ sport: 1, dport: 2 }));

  test('untagged: 14 bytes, EtherType from the IP version', () => {
    const frame = ether({ dst: LB_MAC, src: CLIENT_MAC }, l3);
    assert.equal(frame.length, 14 + 28);
    assert.deepEqual(frame.subarray(0, 14), hex('02000000001b 0200000000c1 0800'));
    assert.equal(ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv6({ src: CLIENT6, dst: VIP6 })).readUInt16BE(12), 0x86dd);
    assert.throws(() => ether({ dst: LB_MAC, src: CLIENT_MAC }, Buffer.alloc(28)), /EtherType/);
    assert.equal(ether({ dst: LB_MAC, src: CLIENT_MAC, type: 0x0806 }, Buffer.alloc(28)).readUInt16BE(12), 0x0806);
  });

  test('802.1Q tag: TPID 8100, TCI (PCP, DEI, VID), then the EtherType', () => {
    const frame = ether({ dst: LB_MAC, src: CLIENT_MAC, vlan: { vid: 100, pcp: 5, dei: true } }, l3);
    assert.equal(frame.length, 18 + 28);
    assert.deepEqual(frame.subarray(12, 18), hex('8100 b064 0800'));
  });

  test('802.1ad: S-tag 88a8 outermost, then the C-tag', () => {
    const frame = ether({ dst: LB_MAC, src: CLIENT_MAC, vlan: [{ tpid: 0x88a8, vid: 10 }, { vid: 20 }] }, l3);
    assert.deepEqual(frame.subarray(12, 22), hex('88a8 000a 8100 0014 0800'));
  });

  test('padding to the 60-byte minimum', () => {
    const frame = ether({ dst: LB_MAC, src: CLIENT_MAC, padTo: 60 }, l3);
    assert.equal(frame.length, 60);
    assert.ok(frame.subarray(42).every((b) => b === 0));
  });
});

describe('IPv4', () => {
  test('header fields at their RFC 791 offsets', () => {
    const p = ipv4({ src: CLIENT4, dst: VIP4, tos: 0xb8, id: 0xbeef, df: true, ttl: 17 }, udp({ sport: 1, dport: 2, payload: 'abc' }));
    assert.equal(p.length, 20 + 8 + 3);
    assert.equal(p[0], 0x45);
    assert.equal(p[1], 0xb8);
    assert.equal(p.readUInt16BE(2), 31);
    assert.equal(p.readUInt16BE(4), 0xbeef);
    assert.equal(p.readUInt16BE(6), 0x4000);
    assert.equal(p[8], 17);
    assert.equal(p[9], 17);
    assert.equal(internetChecksum(p.subarray(0, 20)), 0);
    assert.deepEqual(p.subarray(12, 20), hex('c6336407 c000020a'));
  });

  test('flags and fragment offset share a word: reserved, DF, MF, 13-bit offset', () => {
    const word = (o: Parameters<typeof ipv4>[0]) => ipv4(o, rawTransport(17, Buffer.alloc(8))).readUInt16BE(6);
    assert.equal(word({ src: CLIENT4, dst: VIP4, mf: true, fragmentOffset: 185 }), 0x2000 | 185);
    assert.equal(word({ src: CLIENT4, dst: VIP4, reservedFlag: true, df: true }), 0xc000);
    assert.equal(word({ src: CLIENT4, dst: VIP4, fragmentOffset: 0x1fff }), 0x1fff);
    assert.throws(() => word({ src: CLIENT4, dst: VIP4, fragmentOffset: 0x2000 }), RangeError);
  });

  test('options pad to 32 bits and raise the IHL', () => {
    const p = ipv4({ src: CLIENT4, dst: VIP4, options: hex('940400') }, udp({ sport: 1, dport: 2 }));
    assert.equal(p[0], 0x46);
    assert.deepEqual(p.subarray(20, 24), hex('94040000'));
    assert.equal(p.readUInt16BE(2), 24 + 8);
    assert.equal(internetChecksum(p.subarray(0, 24)), 0);
    assert.equal(p.readUInt16BE(24), 1); // the UDP header starts after the options
  });

  test('overrides for malformed headers are written as given', () => {
    const p = ipv4({ src: CLIENT4, dst: VIP4, version: 5, ihl: 4, totalLength: 9999, checksum: 0xdead, protocol: 99 },
      tcp({ sport: 1, dport: 2 }));
    assert.equal(p[0], 0x54);
    assert.equal(p.readUInt16BE(2), 9999);
    assert.equal(p.readUInt16BE(10), 0xdead);
    assert.equal(p[9], 99);
    assert.equal(p.length, 40);
    assert.throws(() => ipv4({ src: CLIENT4, dst: VIP4 }, Buffer.alloc(4)), /protocol/);
  });
});

describe('IPv6 and extension headers', () => {
  test('fixed header: version, traffic class, flow label, payload length, hop limit', () => {
    const p = ipv6({ src: CLIENT6, dst: VIP6, trafficClass: 0xb9, flowLabel: 0xabcde, hopLimit: 3 }, udp({ sport: 1, dport: 2 }));
    assert.equal(p.length, 48);
    assert.equal(p.readUInt32BE(0), (6 << 28 | 0xb9 << 20 | 0xabcde) >>> 0);
    assert.equal(p.readUInt16BE(4), 8);
    assert.equal(p[6], 17);
    assert.equal(p[7], 3);
    assert.equal(transportChecksum(6, p.subarray(8, 24), p.subarray(24, 40), 17, p.subarray(40)), 0);
  });

  test('extension headers chain their Next Header fields and pad to 8 bytes', () => {
    const p = ipv6({
      src: CLIENT6, dst: VIP6,
      extensions: [hopByHop(), routingHeader({ addresses: ['2001:db8::99'] }), fragmentHeader({ offset: 0, more: true, id: 0x01020304 }), destinationOptions({ options: hex('1e03010203') })],
    }, tcp({ sport: 1, dport: 2 }));
    assert.equal(p[6], 0); // hop-by-hop
    let at = 40;
    assert.deepEqual(p.subarray(at, at + 8), hex('2b00 0104 0000 0000')); // -> routing, PadN(4)
    at += 8;
    assert.deepEqual(p.subarray(at, at + 4), hex('2c02 0000')); // -> fragment, 24 bytes, type 0, segments left 0
    at += 24;
    assert.deepEqual(p.subarray(at, at + 8), hex('3c00 0001 0102 0304')); // -> dest opts, M=1
    at += 8;
    assert.deepEqual(p.subarray(at, at + 8), hex('0600 1e03 0102 0300')); // -> TCP, Pad1
    at += 8;
    assert.equal(p.readUInt16BE(4), at - 40 + 20);
    assert.equal(p.readUInt16BE(at), 1);
  });

  test('a fragment header with an offset, over raw bytes', () => {
    const p = ipv6({ src: CLIENT6, dst: VIP6, extensions: [fragmentHeader({ offset: 100, id: 7 })], protocol: 17 }, Buffer.alloc(16, 0xaa));
    assert.deepEqual(p.subarray(40, 48), hex('1100 0320 0000 0007'));
    assert.equal(p.readUInt16BE(4), 24);
  });

  test('a routing header with segments left moves the pseudo-header destination', () => {
    const last = '2001:db8::99';
    const p = ipv6({ src: CLIENT6, dst: VIP6, extensions: [routingHeader({ segmentsLeft: 1, addresses: [last] })] },
      udp({ sport: 1, dport: 2 }));
    const dgram = p.subarray(40 + 24);
    assert.equal(transportChecksum(6, p.subarray(8, 24), Buffer.from(hex('20010db8000000000000000000000099')), 17, dgram), 0);
  });
});

describe('TCP and UDP', () => {
  test('TCP: data offset, flag bits, window, options', () => {
    const seg = ipv4({ src: CLIENT4, dst: VIP4 }, tcp({
      sport: 1000, dport: 80, seq: 0x01020304, ack: 0x05060708,
      flags: { syn: true, ack: true }, window: 512, options: hex('020405b4'), payload: 'hi',
    })).subarray(20);
    assert.equal(seg.length, 24 + 2);
    assert.equal(seg[12], 6 << 4);
    assert.equal(seg[13], 0x12);
    assert.equal(seg.readUInt32BE(4), 0x01020304);
    assert.equal(seg.readUInt32BE(8), 0x05060708);
    assert.equal(seg.readUInt16BE(14), 512);
    const flags = (f: Parameters<typeof tcp>[0]['flags']) => ipv4({ src: CLIENT4, dst: VIP4 }, tcp({ sport: 1, dport: 2, flags: f }))[33];
    assert.equal(flags({ fin: true, ack: true }), 0x11);
    assert.equal(flags({ rst: true }), 0x04);
    assert.equal(flags({ psh: true, urg: true, ece: true, cwr: true }), 0xe8);
    const odd = ipv4({ src: CLIENT4, dst: VIP4 }, tcp({ sport: 1, dport: 2, dataOffset: 15 }));
    assert.equal(odd[32], 0xf0);
  });

  test('UDP: length, a computed zero is sent as ffff, zero checksum on request', () => {
    const build = (payload: Buffer, zeroChecksum = false) =>
      ipv4({ src: CLIENT4, dst: VIP4 }, udp({ sport: 1, dport: 2, payload, zeroChecksum })).subarray(20);
    const plain = build(Buffer.alloc(2));
    assert.equal(plain.readUInt16BE(4), 10);
    // A payload word equal to the checksum of the zero payload makes the sum all ones.
    const zeroing = build(Buffer.from(plain.subarray(6, 8)));
    assert.equal(zeroing.readUInt16BE(6), 0xffff);
    assert.equal(build(Buffer.alloc(2), true).readUInt16BE(6), 0);
  });
});

describe('ICMP and ICMPv6', () => {
  test('echo request and reply: type, id, sequence, checksum over the message', () => {
    const msg = ipv4({ src: CLIENT4, dst: VIP4 }, icmpEchoRequest({ id: 0x1234, seq: 7, payload: 'ping' })).subarray(20);
    assert.deepEqual(msg.subarray(0, 2), hex('0800'));
    assert.deepEqual(msg.subarray(4, 8), hex('1234 0007'));
    assert.equal(internetChecksum(msg), 0);
    assert.equal(ipv4({ src: CLIENT4, dst: VIP4 }, icmpEchoReply({ id: 1 }))[20], 0);
  });

  test('frag-needed: type 3 code 4, unused, 16-bit MTU, the quote (optionally cut)', () => {
    const offending = ipv4({ src: VIP4, dst: CLIENT4 }, tcp({ sport: 443, dport: 40000, payload: 'x'.repeat(100) }));
    const msg = ipv4({ src: '203.0.113.1', dst: VIP4 }, icmpFragNeeded({ mtu: 1400, quote: offending, quoteLength: 28 })).subarray(20);
    assert.deepEqual(msg.subarray(0, 2), hex('0304'));
    assert.deepEqual(msg.subarray(4, 8), hex('0000 0578'));
    assert.deepEqual(msg.subarray(8), offending.subarray(0, 28));
    assert.equal(internetChecksum(msg), 0);
    const unreach = ipv4({ src: '203.0.113.1', dst: VIP4 }, icmpDestUnreachable({ code: 1, quote: offending })).subarray(20);
    assert.equal(unreach.length, 8 + offending.length);
  });

  test('ICMPv6: echo types 128 / 129, packet too big with a 32-bit MTU, pseudo-header checksum', () => {
    const echo = ipv6({ src: CLIENT6, dst: VIP6 }, icmp6EchoRequest({ id: 9, seq: 1 }));
    assert.equal(echo[6], 58);
    assert.equal(echo[40], 128);
    assert.equal(ipv6({ src: CLIENT6, dst: VIP6 }, icmp6EchoReply())[40], 129);
    assert.equal(transportChecksum(6, echo.subarray(8, 24), echo.subarray(24, 40), 58, echo.subarray(40)), 0);
    const offending = ipv6({ src: VIP6, dst: CLIENT6 }, udp({ sport: 53, dport: 5353, payload: 'y'.repeat(200) }));
    const ptb = ipv6({ src: '2001:db8:1::1', dst: VIP6 }, icmp6PacketTooBig({ mtu: 70000, quote: offending, quoteLength: 128 }));
    assert.deepEqual(ptb.subarray(40, 42), hex('0200'));
    assert.equal(ptb.readUInt32BE(44), 70000);
    assert.equal(ptb.length, 40 + 8 + 128);
    assert.equal(transportChecksum(6, ptb.subarray(8, 24), ptb.subarray(24, 40), 58, ptb.subarray(40)), 0);
  });
});

// ─── Flow key ────────────────────────────────────────────────────────────────────────

describe('flowKeyOf', () => {
  test('TCP and UDP: source address and both ports', () => {
    assert.deepEqual(keyText(tcpFrame4().subarray(14)), '4 198.51.100.7 40000 443');
    assert.deepEqual(keyText(udpFrame6().subarray(14)), '6 2001:db8:c::7 5353 53');
  });

  test('an ICMP error is hashed as the flow it quotes, turned round to client->VIP', () => {
    const reply = ipv4({ src: VIP4, dst: CLIENT4 }, tcp({ sport: 443, dport: 40000 }));
    const error = ipv4({ src: '203.0.113.1', dst: VIP4 }, icmpFragNeeded({ mtu: 1400, quote: reply, quoteLength: 28 }));
    assert.deepEqual(keyText(error), '4 198.51.100.7 40000 443');
    const reply6 = ipv6({ src: VIP6, dst: CLIENT6 }, udp({ sport: 53, dport: 5353 }));
    const error6 = ipv6({ src: '2001:db8:1::1', dst: VIP6 }, icmp6PacketTooBig({ mtu: 1280, quote: reply6 }));
    assert.deepEqual(keyText(error6), '6 2001:db8:c::7 5353 53');
  });

  test('never hashed: echo, fragments, extension headers', () => {
    assert.equal(flowKeyOf(ipv4({ src: CLIENT4, dst: VIP4 }, icmpEchoRequest())), null);
    assert.equal(flowKeyOf(ipv6({ src: CLIENT6, dst: VIP6 }, icmp6EchoRequest())), null);
    assert.equal(flowKeyOf(ipv4({ src: CLIENT4, dst: VIP4, mf: true }, udp({ sport: 1, dport: 2 }))), null);
    assert.equal(flowKeyOf(ipv6({ src: CLIENT6, dst: VIP6, extensions: [destinationOptions()] }, udp({ sport: 1, dport: 2 }))), null);
  });
});

function keyText(l3: Uint8Array): string {
  const key = flowKeyOf(l3);
  assert.ok(key !== null);
  const src = typeof key.src === 'string' ? key.src : formatAddress(key.src);
  return `${key.family} ${src} ${key.sport} ${key.dport}`;
}

// ─── Encapsulation ───────────────────────────────────────────────────────────────────

describe('encapsulation', () => {
  const input4 = tcpFrame4({ tos: 0xb9 });
  const inner4 = input4.subarray(14);
  const entropy4 = flowEntropy({ family: 4, src: CLIENT4, sport: 40000, dport: 443 });
  const input6 = udpFrame6({ trafficClass: 0x2e });
  const inner6 = input6.subarray(14);
  const entropy6 = flowEntropy({ family: 6, src: CLIENT6, sport: 5353, dport: 53 });

  function outerEthernet(frame: Buffer, type: number): void {
    assert.deepEqual(frame.subarray(0, 6), hex('0200000000ee'), 'destination = nexthop_mac');
    assert.deepEqual(frame.subarray(6, 12), hex('02000000001b'), 'source = the incoming frame\'s destination');
    assert.equal(frame.readUInt16BE(12), type);
  }

  function outerIpv4(frame: Buffer, o: { protocol: number; tos: number; src: string; dst: string; extra: number; innerLength: number }): void {
    const ip = frame.subarray(14);
    assert.equal(ip[0], 0x45);
    assert.equal(ip[1], o.tos, 'TOS copied from the inner packet');
    assert.equal(ip.readUInt16BE(2), o.innerLength + 20 + o.extra);
    assert.equal(ip.readUInt16BE(4), 0, 'ID 0');
    assert.equal(ip.readUInt16BE(6), 0x4000, 'DF, offset 0');
    assert.equal(ip[8], CONFIG.ttl);
    assert.equal(ip[9], o.protocol);
    assert.equal(internetChecksum(ip.subarray(0, 20)), 0);
    assert.equal(formatAddress(ip.subarray(12, 16)), o.src);
    assert.equal(formatAddress(ip.subarray(16, 20)), o.dst);
  }

  function outerIpv6(frame: Buffer, o: { nexthdr: number; tc: number; entropy: number; src: string; dst: string; extra: number; innerLength: number }): void {
    const ip = frame.subarray(14);
    assert.equal(ip.readUInt32BE(0), ((6 << 28) | (o.tc << 20) | flowLabel(o.entropy)) >>> 0);
    assert.equal(ip.readUInt16BE(4), o.innerLength + o.extra);
    assert.equal(ip[6], o.nexthdr);
    assert.equal(ip[7], CONFIG.ttl);
    assert.deepEqual(ip.subarray(8, 24), ipv6({ src: o.src, dst: '::' }).subarray(8, 24));
    assert.deepEqual(ip.subarray(24, 40), ipv6({ src: o.dst, dst: '::' }).subarray(8, 24));
  }

  test('IPIP: outer source from tunnel_src4 and the entropy, inner unchanged', () => {
    const out = encapIpip({ frame: input4, backend: '10.1.0.5', config: CONFIG });
    assert.equal(out.length, input4.length + 20);
    outerEthernet(out, 0x0800);
    outerIpv4(out, { protocol: 4, tos: 0xb9, src: tunnelSource4('172.16.0.0', entropy4), dst: '10.1.0.5', extra: 0, innerLength: inner4.length });
    assert.deepEqual(out.subarray(34), inner4);
  });

  test('6in4: protocol 41, TOS from the IPv6 traffic class', () => {
    const out = encap6in4({ frame: input6, backend: '10.1.0.6', config: CONFIG });
    outerEthernet(out, 0x0800);
    outerIpv4(out, { protocol: 41, tos: 0x2e, src: tunnelSource4('172.16.0.0', entropy6), dst: '10.1.0.6', extra: 0, innerLength: inner6.length });
    assert.deepEqual(out.subarray(34), inner6);
  });

  test('4in6: next header 4, flow label and source from the entropy', () => {
    const out = encap4in6({ frame: input4, backend: 'fd00:1::5', config: CONFIG });
    assert.equal(out.length, input4.length + 40);
    outerEthernet(out, 0x86dd);
    outerIpv6(out, { nexthdr: 4, tc: 0xb9, entropy: entropy4, src: tunnelSource6('fd00:7::', entropy4), dst: 'fd00:1::5', extra: 0, innerLength: inner4.length });
    assert.deepEqual(out.subarray(54), inner4);
  });

  test('IP6IP6: next header 41', () => {
    const out = encapIp6ip6({ frame: input6, backend: 'fd00:1::6', config: CONFIG });
    outerEthernet(out, 0x86dd);
    outerIpv6(out, { nexthdr: 41, tc: 0x2e, entropy: entropy6, src: tunnelSource6('fd00:7::', entropy6), dst: 'fd00:1::6', extra: 0, innerLength: inner6.length });
    assert.deepEqual(out.subarray(54), inner6);
  });

  test('GUE over IPv4: from node_addr4, UDP to gue_port, zero checksum', () => {
    const out = encapGue({ frame: input6, backend: '10.1.0.7', config: CONFIG });
    outerEthernet(out, 0x0800);
    outerIpv4(out, { protocol: 17, tos: 0x2e, src: '10.20.0.1', dst: '10.1.0.7', extra: 8, innerLength: inner6.length });
    const gue = out.subarray(34, 42);
    assert.equal(gue.readUInt16BE(0), gueSourcePort(entropy6));
    assert.equal(gue.readUInt16BE(2), 6080);
    assert.equal(gue.readUInt16BE(4), 8 + inner6.length);
    assert.equal(gue.readUInt16BE(6), 0);
    assert.deepEqual(out.subarray(42), inner6);
  });

  test('GUE over IPv6: from node_addr6, flow label from the entropy', () => {
    const out = encapGue({ frame: input4, backend: 'fd00:1::7', config: CONFIG });
    outerEthernet(out, 0x86dd);
    outerIpv6(out, { nexthdr: 17, tc: 0xb9, entropy: entropy4, src: 'fd00:20::1', dst: 'fd00:1::7', extra: 8, innerLength: inner4.length });
    assert.equal(out.readUInt16BE(54), gueSourcePort(entropy4));
    assert.equal(out.readUInt16BE(60), 0);
    assert.deepEqual(out.subarray(62), inner4);
  });

  test('inner bytes and MAC may be given instead of a frame; explicit entropy wins', () => {
    const fromFrame = encapIpip({ frame: input4, backend: '10.1.0.5', config: CONFIG, entropy: 0x2212 });
    const fromParts = encapIpip({ inner: inner4, srcMac: LB_MAC, backend: '10.1.0.5', config: CONFIG, entropy: 0x2212 });
    assert.deepEqual(fromParts, fromFrame);
    assert.equal(formatAddress(fromFrame.subarray(26, 30)), '172.16.34.18');
  });

  test('encapsulate picks the kind by inner and backend family', () => {
    assert.deepEqual(encapsulate({ frame: input4, backend: '10.1.0.5', config: CONFIG }), encapIpip({ frame: input4, backend: '10.1.0.5', config: CONFIG }));
    assert.deepEqual(encapsulate({ frame: input6, backend: '10.1.0.5', config: CONFIG }), encap6in4({ frame: input6, backend: '10.1.0.5', config: CONFIG }));
    assert.deepEqual(encapsulate({ frame: input4, backend: 'fd00::5', config: CONFIG }), encap4in6({ frame: input4, backend: 'fd00::5', config: CONFIG }));
    assert.deepEqual(encapsulate({ frame: input6, backend: 'fd00::5', config: CONFIG }), encapIp6ip6({ frame: input6, backend: 'fd00::5', config: CONFIG }));
    assert.deepEqual(encapsulate({ frame: input6, backend: 'fd00::5', config: CONFIG, gue: true }), encapGue({ frame: input6, backend: 'fd00::5', config: CONFIG }));
  });

  test('mismatched families and unhashable packets are refused', () => {
    assert.throws(() => encapIpip({ frame: input6, backend: '10.1.0.5', config: CONFIG }), /inner packet is IPv6/);
    assert.throws(() => encapIpip({ frame: input4, backend: 'fd00::5', config: CONFIG }), /backend is IPv6/);
    const echo = ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv4({ src: CLIENT4, dst: VIP4 }, icmpEchoRequest()));
    assert.throws(() => encapIpip({ frame: echo, backend: '10.1.0.5', config: CONFIG }), /entropy/);
    const tagged = ether({ dst: LB_MAC, src: CLIENT_MAC, vlan: { vid: 5 } }, inner4);
    assert.throws(() => encapIpip({ frame: tagged, backend: '10.1.0.5', config: CONFIG }), /VLAN/);
  });

  test('overhead and the too-big rule', () => {
    assert.equal(encapOverhead(4, false), 20);
    assert.equal(encapOverhead(6, false), 40);
    assert.equal(encapOverhead(4, true), 28);
    assert.equal(encapOverhead(6, true), 48);
    assert.equal(exceedsMtu(1480, 20, 1500), false);
    assert.equal(exceedsMtu(1481, 20, 1500), true);
  });

  test('decapsulation restores the inner frame under the outer Ethernet addresses', () => {
    const cases: [Buffer, Buffer][] = [
      [encapIpip({ frame: input4, backend: '10.1.0.5', config: CONFIG }), inner4],
      [encap6in4({ frame: input6, backend: '10.1.0.5', config: CONFIG }), inner6],
      [encap4in6({ frame: input4, backend: 'fd00::5', config: CONFIG }), inner4],
      [encapIp6ip6({ frame: input6, backend: 'fd00::5', config: CONFIG }), inner6],
      [encapGue({ frame: input4, backend: '10.1.0.5', config: CONFIG }), inner4],
      [encapGue({ frame: input6, backend: 'fd00::5', config: CONFIG }), inner6],
    ];
    for (const [encapsulated, inner] of cases) {
      assertFramesEqual(decapsulate(encapsulated), ether({ dst: CONFIG.nexthopMac, src: LB_MAC }, inner));
    }
    assert.throws(() => decapsulate(input4), /not a tunnel/);
  });
});

// ─── ICMP from the balancer ──────────────────────────────────────────────────────────

describe('balancer ICMP replies', () => {
  test('IPv4 echo reply: addresses swapped, TTL 64, TOS / ID / flags / code / data kept', () => {
    const request = ether({ dst: LB_MAC, src: CLIENT_MAC },
      ipv4({ src: CLIENT4, dst: VIP4, tos: 0x10, id: 0x4242, df: true, ttl: 9 }, icmpEchoRequest({ id: 77, seq: 3, code: 0, payload: 'abcdefgh' })));
    const expected = ether({ dst: CLIENT_MAC, src: LB_MAC },
      ipv4({ src: VIP4, dst: CLIENT4, tos: 0x10, id: 0x4242, df: true, ttl: 64 }, icmpEchoReply({ id: 77, seq: 3, payload: 'abcdefgh' })));
    assertFramesEqual(balancerEchoReply(request), expected);
  });

  test('IPv6 echo reply: addresses swapped, hop limit 64, type 129', () => {
    const request = ether({ dst: LB_MAC, src: CLIENT_MAC },
      ipv6({ src: CLIENT6, dst: VIP6, trafficClass: 4, flowLabel: 0x777, hopLimit: 3 }, icmp6EchoRequest({ id: 1, seq: 2, payload: 'ping6' })));
    const expected = ether({ dst: CLIENT_MAC, src: LB_MAC },
      ipv6({ src: VIP6, dst: CLIENT6, trafficClass: 4, flowLabel: 0x777, hopLimit: 64 }, icmp6EchoReply({ id: 1, seq: 2, payload: 'ping6' })));
    assertFramesEqual(balancerEchoReply(request), expected);
    assert.throws(() => balancerEchoReply(udpFrame6()), /echo request/);
  });

  test('frag-needed: from the VIP, MTU minus overhead, the first 64 bytes quoted', () => {
    const offending = tcpFrame4({ tos: 0x28, payload: 'z'.repeat(1500) });
    const reply = balancerFragNeeded(offending, { mtu: 1500, overhead: encapOverhead(4, true) });
    assert.equal(reply.length, 14 + 20 + 8 + 64);
    const expected = ether({ dst: CLIENT_MAC, src: LB_MAC },
      ipv4({ src: VIP4, dst: CLIENT4, tos: 0, id: 0, ttl: 64 },
        icmp({ type: 3, code: 4, rest: 1472, payload: offending.subarray(14, 14 + 64) })));
    assertFramesEqual(reply, expected);
  });

  test('packet-too-big: from the VIP, MTU at least 1280, the first 128 bytes quoted', () => {
    const offending = ether({ dst: LB_MAC, src: CLIENT_MAC },
      ipv6({ src: CLIENT6, dst: VIP6, trafficClass: 0xff, flowLabel: 5 }, udp({ sport: 1, dport: 2, payload: Buffer.alloc(1400, 1) })));
    const reply = balancerPacketTooBig(offending, { mtu: 1500, overhead: encapOverhead(6, false) });
    assert.equal(reply.length, 14 + 40 + 8 + 128);
    const expected = ether({ dst: CLIENT_MAC, src: LB_MAC },
      ipv6({ src: VIP6, dst: CLIENT6, hopLimit: 64 },
        icmp6({ type: 2, code: 0, rest: 1460, payload: offending.subarray(14, 14 + 128) })));
    assertFramesEqual(reply, expected);
    const floor = balancerPacketTooBig(offending, { mtu: 1300, overhead: 48 });
    assert.equal(floor.readUInt32BE(14 + 40 + 4), 1280);
  });
});

// ─── Decoding ────────────────────────────────────────────────────────────────────────

function everyBuilderOutput(): Map<string, Buffer> {
  const frames = new Map<string, Buffer>();
  const e = (l3: Buffer, o: Partial<Parameters<typeof ether>[0]> = {}) => ether({ dst: LB_MAC, src: CLIENT_MAC, ...o }, l3);
  const v4 = (t: Parameters<typeof ipv4>[1], o: Partial<Parameters<typeof ipv4>[0]> = {}) => ipv4({ src: CLIENT4, dst: VIP4, ...o }, t);
  const v6 = (t: Parameters<typeof ipv6>[1], o: Partial<Parameters<typeof ipv6>[0]> = {}) => ipv6({ src: CLIENT6, dst: VIP6, ...o }, t);
  const seg4 = v4(tcp({ sport: 443, dport: 40000, payload: 'q'.repeat(80) }), { src: VIP4, dst: CLIENT4 });
  const seg6 = v6(udp({ sport: 53, dport: 5353, payload: 'q'.repeat(200) }), { src: VIP6, dst: CLIENT6 });

  frames.set('tcp4', tcpFrame4({ payload: 'hello' }));
  frames.set('tcp4 options', e(v4(tcp({ sport: 1, dport: 2, options: hex('020405b4'), flags: { fin: true, ack: true } }), { options: hex('94040000') })));
  frames.set('udp6', udpFrame6());
  frames.set('udp4 zero checksum', e(v4(udp({ sport: 1, dport: 2, zeroChecksum: true, payload: 'x' }))));
  frames.set('vlan', e(v4(udp({ sport: 1, dport: 2 })), { vlan: { vid: 7 } }));
  frames.set('qinq', e(v6(udp({ sport: 1, dport: 2 })), { vlan: [{ tpid: 0x88a8, vid: 1 }, { vid: 2 }] }));
  frames.set('padded', e(v4(tcp({ sport: 1, dport: 2, flags: { ack: true } })), { padTo: 60 }));
  frames.set('arp', e(Buffer.alloc(28), { type: 0x0806 }));
  frames.set('frag4 first', e(v4(udp({ sport: 1, dport: 2, payload: 'a'.repeat(16) }), { mf: true })));
  frames.set('frag4 later', e(v4(rawTransport(17, 'b'.repeat(16)), { fragmentOffset: 3 })));
  frames.set('ext6', e(v6(tcp({ sport: 1, dport: 2 }), { extensions: [hopByHop(), routingHeader({ segmentsLeft: 1, addresses: ['2001:db8::9'] }), destinationOptions()] })));
  frames.set('frag6 later', e(v6(Buffer.alloc(24, 7), { extensions: [fragmentHeader({ offset: 2, id: 1 })], protocol: 17 })));
  frames.set('echo4', e(v4(icmpEchoRequest({ id: 1, seq: 1, payload: 'ping' }))));
  frames.set('echo6', e(v6(icmp6EchoRequest({ id: 1, seq: 1 }))));
  frames.set('echo reply4', balancerEchoReply(frames.get('echo4')!));
  frames.set('echo reply6', balancerEchoReply(frames.get('echo6')!));
  frames.set('frag needed in', e(v4(icmpFragNeeded({ mtu: 1400, quote: seg4, quoteLength: 28 }), { src: '203.0.113.1' })));
  frames.set('unreachable in', e(v4(icmpDestUnreachable({ code: 3, quote: seg4 }), { src: '203.0.113.1' })));
  frames.set('ptb in', e(v6(icmp6PacketTooBig({ mtu: 1280, quote: seg6, quoteLength: 128 }), { src: '2001:db8:1::1' })));
  frames.set('unreachable6 in', e(v6(icmp6DestUnreachable({ code: 4, quote: seg6 }), { src: '2001:db8:1::1' })));
  frames.set('frag needed out', balancerFragNeeded(tcpFrame4({ payload: 'z'.repeat(1480) }), { mtu: 1500, overhead: 20 }));
  frames.set('ptb out', balancerPacketTooBig(e(seg6), { mtu: 1280, overhead: 40 }));
  for (const [name, input] of [['tcp4', frames.get('tcp4')!], ['udp6', frames.get('udp6')!], ['frag needed in', frames.get('frag needed in')!]] as const) {
    for (const backend of ['10.1.0.5', 'fd00::5']) {
      frames.set(`${name} over ${backend}`, encapsulate({ frame: input, backend, config: CONFIG }));
      frames.set(`${name} gue over ${backend}`, encapsulate({ frame: input, backend, config: CONFIG, gue: true }));
    }
  }
  frames.set('decapsulated', decapsulate(frames.get('tcp4 gue over fd00::5')!));
  return frames;
}

function assertCovered(frame: Uint8Array, name: string): void {
  const covered = new Uint8Array(frame.length);
  for (const field of decodeFrame(frame).flatMap((l) => l.fields)) covered.fill(1, field.offset, field.offset + field.length);
  const gap = covered.indexOf(0);
  assert.equal(gap, -1, `${name}: byte ${gap} belongs to no field\n${describeFrame(frame)}`);
}

describe('describeFrame', () => {
  const frames = everyBuilderOutput();

  test('every builder output decodes, every byte in a field, every checked checksum ok', () => {
    for (const [name, frame] of frames) {
      const text = describeFrame(frame);
      assert.match(text, /^frame: \d+ bytes\neth /, name);
      assert.doesNotMatch(text, /\(bad/, `${name}\n${text}`);
      assert.doesNotMatch(text, /truncated: /, `${name}\n${text}`);
      assertCovered(frame, name);
    }
  });

  test('layers are labelled outer / inner / quoted', () => {
    const labels = (name: string) => decodeFrame(frames.get(name)!).map((l) => l.label);
    assert.deepEqual(labels('tcp4 over 10.1.0.5'), ['eth', 'outer ipv4', 'inner ipv4', 'inner tcp']);
    assert.deepEqual(labels('udp6 gue over fd00::5'), ['eth', 'outer ipv6', 'outer udp', 'inner ipv6', 'inner udp']);
    assert.deepEqual(labels('frag needed in over 10.1.0.5'), ['eth', 'outer ipv4', 'inner ipv4', 'inner icmp', 'inner quoted ipv4', 'inner quoted tcp']);
    assert.deepEqual(labels('qinq'), ['eth', 'vlan', 'vlan2', 'ipv6', 'udp']);
    assert.deepEqual(labels('ext6'), ['eth', 'ipv6', 'ipv6 hop-by-hop', 'ipv6 routing', 'ipv6 dest-opts', 'tcp']);
    assert.deepEqual(labels('padded'), ['eth', 'ipv4', 'tcp', 'trailer']);
  });

  test('checksums are verified and a wrong one says what it should be', () => {
    const frame = Buffer.from(frames.get('tcp4')!);
    const right = frame.readUInt16BE(24);
    frame.writeUInt16BE(right ^ 0x0101, 24);
    assert.match(describeFrame(frame), new RegExp(`check 0x[0-9a-f]{4} \\(bad, want 0x${right.toString(16).padStart(4, '0')}\\)`));
  });

  test('GUE is recognised by port when given, by shape otherwise', () => {
    const gue = frames.get('tcp4 gue over 10.1.0.5')!;
    assert.equal(decodeFrame(gue, { guePort: 6080 }).at(-1)?.label, 'inner tcp');
    assert.equal(decodeFrame(gue, { guePort: 6081 }).at(-1)?.label, 'udp');
    const plain = ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv4({ src: CLIENT4, dst: VIP4 }, udp({ sport: 1, dport: 2, payload: 'hello world' })));
    assert.equal(decodeFrame(plain).at(-1)?.label, 'udp');
  });

  test('never throws on truncated or corrupted frames, and still covers every byte', () => {
    let seed = 12345;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
    for (const [name, frame] of frames) {
      for (let cut = 0; cut <= frame.length; cut += cut < 80 ? 1 : 17) {
        const part = frame.subarray(0, cut);
        describeFrame(part);
        assertCovered(part, `${name} cut at ${cut}`);
      }
      for (let i = 0; i < 20; i++) {
        const bent = Buffer.from(frame);
        for (let j = 0; j < 3; j++) bent[rand() % bent.length] = rand() & 0xff;
        describeFrame(bent);
        assertCovered(bent, `${name} corrupted`);
      }
    }
  });
});

describe('diffFrames', () => {
  const expected = encapIpip({ frame: tcpFrame4({ payload: 'hello' }), backend: '10.1.0.5', config: CONFIG, entropy: 0x2212 });

  function withSaddr(frame: Buffer, saddr: string): Buffer {
    const copy = Buffer.from(frame);
    copy.set(saddr.split('.').map(Number), 26);
    return copy;
  }

  test('identical frames: null', () => {
    assert.equal(diffFrames(expected, Buffer.from(expected)), null);
  });

  test('names the layer and field, and the checksum that follows from it', () => {
    const wrong = encapIpip({ frame: tcpFrame4({ payload: 'hello' }), backend: '10.1.0.5', config: CONFIG, entropy: 0x0001 });
    const diff = diffFrames(expected, wrong);
    assert.ok(diff !== null);
    assert.equal(diff.layer, 'outer ipv4');
    assert.equal(diff.field, 'saddr');
    assert.equal(diff.expected, '172.16.34.18');
    assert.equal(diff.actual, '172.16.0.1');
    assert.equal(diff.offset, 28);
    assert.deepEqual(diff.alsoDiffers, ['outer ipv4.check']);
    assert.match(diff.message, /^outer ipv4\.saddr: expected 172\.16\.34\.18, got 172\.16\.0\.1 \(byte 28\)/);
  });

  test('a checksum alone', () => {
    const wrong = Buffer.from(expected);
    wrong[24] = expected[24]! ^ 0xff;
    const diff = diffFrames(expected, wrong);
    assert.equal(diff?.layer, 'outer ipv4');
    assert.equal(diff?.field, 'check');
    // An address change without the checksum change is still reported as the address.
    assert.equal(diffFrames(expected, withSaddr(expected, '172.16.34.19'))?.field, 'saddr');
  });

  test('bit fields sharing a byte are told apart', () => {
    const wrong = Buffer.from(expected);
    wrong[34] = 0x46; // inner IHL 6, version still 4
    assert.equal(diffFrames(expected, wrong)?.field, 'ihl');
    assert.equal(diffFrames(expected, wrong)?.layer, 'inner ipv4');
    const flags = Buffer.from(expected);
    flags[14 + 6] = 0; // outer DF cleared
    assert.equal(diffFrames(expected, flags)?.field, 'flags');
  });

  test('payload bytes are named by index', () => {
    const wrong = Buffer.from(expected);
    wrong[wrong.length - 2] = 0x21;
    const diff = diffFrames(expected, wrong);
    assert.equal(`${diff?.layer}.${diff?.field}`, 'inner tcp.payload[3]');
    assert.equal(diff?.expected, '0x6c');
    assert.equal(diff?.actual, '0x21');
    assert.deepEqual(diff?.alsoDiffers, []);
  });

  test('length differences say where the shorter frame stops', () => {
    const short = diffFrames(expected, expected.subarray(0, 40));
    assert.equal(short?.message, `frame length: expected ${expected.length}, got 40 (actual ends before inner ipv4.flags)`);
    const long = diffFrames(expected, Buffer.concat([expected, Buffer.alloc(4)]));
    assert.match(long?.message ?? '', /^frame length: expected \d+, got \d+ \(actual goes on into trailer\.data\)$/);
  });

  test('IPv6 and GUE layers', () => {
    const frame = udpFrame6();
    const exp6 = encapGue({ frame, backend: 'fd00::5', config: CONFIG });
    const hop = Buffer.from(exp6);
    hop[14 + 40 + 8 + 7] = 1; // inner hop limit
    assert.equal(diffFrames(exp6, hop)?.message, 'inner ipv6.hop_limit: expected 64, got 1 (byte 69)');
    const label = Buffer.from(exp6);
    label[14 + 3] = exp6[14 + 3]! ^ 1; // outer flow label, low byte
    assert.equal(`${diffFrames(exp6, label)?.layer}.${diffFrames(exp6, label)?.field}`, 'outer ipv6.flow_lbl');
  });

  test('assertFramesEqual throws with the field and both frames described', () => {
    const wrong = withSaddr(expected, '172.16.0.1');
    assert.throws(() => assertFramesEqual(wrong, expected, 'IPIP to backend 1'), (err: unknown) => {
      assert.ok(err instanceof AssertionError);
      assert.match(err.message, /^IPIP to backend 1: outer ipv4\.saddr: expected 172\.16\.34\.18, got 172\.16\.0\.1/);
      assert.match(err.message, /--- expected\nframe: 79 bytes\neth /);
      assert.match(err.message, /--- actual\n/);
      return true;
    });
    assertFramesEqual(Buffer.from(expected), expected);
  });
});
