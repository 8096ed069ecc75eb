// The decap program's packet fixtures: {name, input frame, expected verdict, expected
// output frame, the counter that must move}. Inputs are what reaches a backend pod's
// interface: the balancer's own encapsulations (built with the balancer world's tunnel
// configuration, so a decap input is exactly a balancer output) and hand-made frames.
// Expected frames come from the builder's decapsulate(), never from the program.
// decap.test.ts runs them through BPF_PROG_TEST_RUN (tc: the frame goes in and comes
// back with its Ethernet header).
import {
  decapsulate, setEcn, encap4in6, encap6in4, encapGue, encapIp6ip6, encapIpip, encapsulate, ether, fragmentHeader,
  icmp6EchoRequest, icmpEchoRequest, ipv4, ipv6, rawTransport, tcp, udp, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6,
  IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP, type TunnelConfig,
} from '../support/packets.ts';
import type { Reason } from '../../src/shared/reasons.ts';
import { BACKENDS, CLIENT4, CLIENT6, CLIENT_MAC, LB_MAC, TUNNEL, VIPS, type VipName } from './balancer-world.ts';

/** tc verdicts (linux/pkt_cls.h). */
export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export type Verdict = 'TC_ACT_OK' | 'TC_ACT_SHOT';

export type Fixture = {
  name: string;
  input: Buffer;
  verdict: Verdict;
  /** Decapsulated fixtures only: the frame the program must leave. Others must leave the input untouched. */
  output?: Buffer;
  /** The one counter that must move by exactly one packet: a reason, or GSTAT_DECAPPED. */
  counter: Reason | 'decapped';
  /** The GUE port the program is loaded with (.rodata); default GUE_PORT. */
  guePort?: number;
};

// ── the pod's world ──────────────────────────────────────────────────────────
// The pod is backend b4a / b6a of the balancer world (dual stack); b4b / b6b are
// other pods. It serves some of the balancer's VIPs; `sticky` and `conn6` are VIPs
// served elsewhere.

export const POD_MAC = '02:00:00:00:01:01';
export const HOST_MAC = '02:00:00:00:01:fe';
export const POD4 = BACKENDS.b4a.address;
export const POD6 = BACKENDS.b6a.address;
export const OTHER_POD4 = BACKENDS.b4b.address;
export const OTHER_POD6 = BACKENDS.b6b.address;
export const LOCAL_ADDRESSES: readonly string[] = [POD4, POD6];
export const SERVED_VIPS: readonly string[] = [
  ...new Set((['web4', 'anyPort4to6', 'gue4', 'web6', 'gue6'] as const).map((v) => VIPS[v].address)),
];
const ELSEWHERE_VIP4 = VIPS.sticky.address;
const ELSEWHERE_VIP6 = VIPS.conn6.address;

export const GUE_PORT = TUNNEL.guePort;
export const ALT_GUE_PORT = 9999;

/** The balancer's tunnel configuration, with the frame addressed to the pod as it arrives on its interface. */
const POD_TUNNEL: TunnelConfig = { ...TUNNEL, nexthopMac: POD_MAC };

const TOS = 0x29; // DSCP AF11 + ECT(1): the inner header keeps its own

// ── builders ─────────────────────────────────────────────────────────────────

type Inner = { dst?: string; src?: string; sport?: number; dport?: number; payload?: string | Buffer; udp?: boolean; tos?: number };

function inner4(o: Inner = {}): Buffer {
  const l4 = o.udp
    ? udp({ sport: o.sport ?? 40000, dport: o.dport ?? 53, payload: o.payload ?? 'query' })
    : tcp({ sport: o.sport ?? 40000, dport: o.dport ?? 80, flags: { ack: true, psh: true }, payload: o.payload ?? 'GET / HTTP/1.1\r\n\r\n' });
  return ipv4({ src: o.src ?? CLIENT4, dst: o.dst ?? VIPS.web4.address, tos: o.tos ?? TOS, id: 0x1234, df: true, ttl: 61 }, l4);
}

function inner6(o: Inner = {}): Buffer {
  const l4 = o.udp
    ? udp({ sport: o.sport ?? 40000, dport: o.dport ?? 53, payload: o.payload ?? 'query' })
    : tcp({ sport: o.sport ?? 40000, dport: o.dport ?? 443, flags: { ack: true }, payload: o.payload ?? 'hello' });
  return ipv6({ src: o.src ?? CLIENT6, dst: o.dst ?? VIPS.web6.address, trafficClass: o.tos ?? TOS, flowLabel: 0x12345, hopLimit: 61 }, l4);
}

/** The frame with `trailer` appended after its IP packet (bytes the outer length does not count). */
const withTrailer = (input: Buffer, trailer: Uint8Array) => Buffer.concat([input, trailer]);
/** The IPv4 header at `offset` with its checksum off by one. */
function corruptIpv4Checksum(packet: Buffer, offset = 0): Buffer {
  const out = Buffer.from(packet);
  out.writeUInt16BE(out.readUInt16BE(offset + 10) ^ 1, offset + 10);
  return out;
}
/** A GUE-over-IPv4 frame whose UDP length field is off by `delta`. */
function udpLength(input: Buffer, delta: number): Buffer {
  const out = Buffer.from(input);
  out.writeUInt16BE(out.readUInt16BE(14 + 20 + 4) + delta, 14 + 20 + 4);
  return out;
}

/** A frame as the pod's interface receives it. */
const frame = (l3: Buffer, type?: number) => ether({ dst: POD_MAC, src: HOST_MAC, ...(type === undefined ? {} : { type }) }, l3);

const ipip = (inner: Buffer, backend: string = POD4) => encapIpip({ inner, srcMac: HOST_MAC, backend, config: POD_TUNNEL });
const sixIn4 = (inner: Buffer, backend: string = POD4) => encap6in4({ inner, srcMac: HOST_MAC, backend, config: POD_TUNNEL });
const fourIn6 = (inner: Buffer, backend: string = POD6) => encap4in6({ inner, srcMac: HOST_MAC, backend, config: POD_TUNNEL });
const ip6ip6 = (inner: Buffer, backend: string = POD6) => encapIp6ip6({ inner, srcMac: HOST_MAC, backend, config: POD_TUNNEL });
const gue = (inner: Buffer, backend: string, guePort = GUE_PORT) =>
  encapGue({ inner, srcMac: HOST_MAC, backend, config: { ...POD_TUNNEL, guePort } });

/** An outer IPv4 header (the balancer's shape: 20 bytes, DF) around raw bytes. */
const outer4 = (dst: string, protocol: number, payload: Uint8Array, extra: Partial<Parameters<typeof ipv4>[0]> = {}) =>
  frame(ipv4({ src: '172.16.0.1', dst, id: 0, df: true, ttl: 64, protocol, ...extra }, payload));
const outer6 = (dst: string, protocol: number, payload: Uint8Array, extra: Partial<Parameters<typeof ipv6>[0]> = {}) =>
  frame(ipv6({ src: 'fd00:7::1', dst, hopLimit: 64, protocol, ...extra }, payload));
/** GUE around raw bytes (the payload need not be an IP packet). */
const gueRaw4 = (dst: string, payload: Uint8Array, dport = GUE_PORT) =>
  frame(ipv4({ src: TUNNEL.nodeAddr4, dst, df: true, ttl: 64 }, udp({ sport: 0x8123, dport, payload, zeroChecksum: true })));
const gueRaw6 = (dst: string, payload: Uint8Array, dport = GUE_PORT) =>
  frame(ipv6({ src: TUNNEL.nodeAddr6, dst, hopLimit: 64 }, udp({ sport: 0x8123, dport, payload, zeroChecksum: true })));

const decapped = (name: string, input: Buffer, guePort?: number): Fixture =>
  ({ name, input, verdict: 'TC_ACT_OK', output: decapsulate(input), counter: 'decapped', ...(guePort === undefined ? {} : { guePort }) });
const passed = (name: string, input: Buffer, guePort?: number): Fixture =>
  ({ name, input, verdict: 'TC_ACT_OK', counter: 'decap_pass_not_tunnel', ...(guePort === undefined ? {} : { guePort }) });
const dropped = (name: string, input: Buffer, counter: Reason): Fixture => ({ name, input, verdict: 'TC_ACT_SHOT', counter });

// ── every encapsulation ──────────────────────────────────────────────────────

const encapsulations: Fixture[] = [
  decapped('IPIP (4in4): outer IPv4 stripped, IPv4 inner passed up', ipip(inner4())),
  decapped('6in4: IPv4 outer stripped, EtherType becomes IPv6', sixIn4(inner6())),
  decapped('4in6: IPv6 outer stripped, EtherType becomes IPv4', fourIn6(inner4())),
  decapped('IP6IP6: outer IPv6 stripped, IPv6 inner passed up', ip6ip6(inner6())),
  decapped('GUE over IPv4 carrying IPv4: outer IPv4 and UDP stripped', gue(inner4({ dst: VIPS.gue4.address }), POD4)),
  decapped('GUE over IPv4 carrying IPv6: EtherType becomes IPv6', gue(inner6({ dst: VIPS.gue6.address }), POD4)),
  decapped('GUE over IPv6 carrying IPv4: EtherType becomes IPv4', gue(inner4({ dst: VIPS.gue4.address }), POD6)),
  decapped('GUE over IPv6 carrying IPv6: outer IPv6 and UDP stripped', gue(inner6({ dst: VIPS.gue6.address }), POD6)),
  decapped('IPIP carrying UDP with a payload', ipip(inner4({ udp: true, payload: 'a DNS query' }))),
  decapped('IP6IP6 carrying UDP with a payload', ip6ip6(inner6({ udp: true, payload: 'a DNS query' }))),
  decapped('IPIP carrying a near-MTU TCP segment', ipip(inner4({ payload: 'x'.repeat(1440) }))),
  decapped('GUE over IPv6 carrying a near-MTU IPv6 segment', gue(inner6({ dst: VIPS.gue6.address, payload: 'x'.repeat(1384) }), POD6)),
  decapped('IPIP carrying a TCP segment with no payload (pure ACK)', ipip(inner4({ payload: '' }))),
];

// ── what the balancer actually sends ─────────────────────────────────────────
// The balancer-world client frames of balancer-fixtures.ts, encapsulated for the
// backend the way the balancer does it (encapsulate(): GUE if the VIP says so, else
// by inner and backend family).

const clientTcp4 = (vip: VipName, dport: number, payload = 'GET / HTTP/1.1\r\n\r\n') =>
  ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv4({ src: CLIENT4, dst: VIPS[vip].address, tos: TOS, id: 0x1234, df: true, ttl: 61 },
    tcp({ sport: 40000, dport, flags: { ack: true, psh: true }, payload })));
const clientUdp4 = (vip: VipName, dport: number, payload = 'query') =>
  ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv4({ src: CLIENT4, dst: VIPS[vip].address, tos: TOS, ttl: 61 }, udp({ sport: 40000, dport, payload })));
const clientTcp6 = (vip: VipName, dport: number, payload = 'hello') =>
  ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv6({ src: CLIENT6, dst: VIPS[vip].address, trafficClass: TOS, flowLabel: 0x12345, hopLimit: 61 },
    tcp({ sport: 40000, dport, flags: { ack: true }, payload })));
const clientUdp6 = (vip: VipName, dport: number, payload = 'query') =>
  ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv6({ src: CLIENT6, dst: VIPS[vip].address, hopLimit: 61 }, udp({ sport: 40000, dport, payload })));

const fromBalancer = (client: Buffer, vip: VipName, backend: string) =>
  encapsulate({ frame: client, backend, config: TUNNEL, gue: (VIPS[vip].flags & 4) !== 0 });

const balancerOutputs: Fixture[] = [
  decapped('balancer output: IPv4 TCP to web4 over IPIP', fromBalancer(clientTcp4('web4', 80), 'web4', POD4)),
  decapped('balancer output: IPv4 UDP to dns4 over IPIP', fromBalancer(clientUdp4('dns4', 53), 'dns4', POD4)),
  decapped('balancer output: IPv4 TCP to an all-port VIP over 4in6', fromBalancer(clientTcp4('anyPort4to6', 8443), 'anyPort4to6', POD6)),
  decapped('balancer output: IPv6 TCP to web6 over IP6IP6', fromBalancer(clientTcp6('web6', 443), 'web6', POD6)),
  decapped('balancer output: IPv6 UDP over IP6IP6', fromBalancer(clientUdp6('web6', 53, 'an IPv6 query'), 'web6', POD6)),
  decapped('balancer output: IPv6 TCP to web6to4 over 6in4', fromBalancer(clientTcp6('web6to4', 80), 'web6to4', POD4)),
  decapped('balancer output: IPv4 TCP to gue4 over GUE/IPv4', fromBalancer(clientTcp4('gue4', 80), 'gue4', POD4)),
  decapped('balancer output: IPv6 TCP to gue6 over GUE/IPv6', fromBalancer(clientTcp6('gue6', 80), 'gue6', POD6)),
  decapped('balancer output: a padded client frame keeps its padding after the inner packet',
    fromBalancer(ether({ dst: LB_MAC, src: CLIENT_MAC, padTo: 60 }, ipv4({ src: CLIENT4, dst: VIPS.web4.address, ttl: 61 },
      tcp({ sport: 40004, dport: 80, flags: { ack: true } }))), 'web4', POD4)),
];

// ── ECN (RFC 6040): the outer congestion mark reaches the inner packet ───────
// The balancer copies the inner ECN field to the outer header; a congested router on the
// way to the pod marks the outer one CE (or ECT(1) for L4S).
const ECT1 = 1, ECT0 = 2, CE = 3;
const inner4Ecn = (ecn: number, o: Inner = {}) => inner4({ ...o, tos: (TOS & ~3) | ecn });
const inner6Ecn = (ecn: number, o: Inner = {}) => inner6({ ...o, tos: (TOS & ~3) | ecn });
/** The frame with its outer header's ECN field set as a router on the way would. */
function outerEcn(input: Buffer, ecn: number): Buffer {
  const out = Buffer.from(input);
  setEcn(out.subarray(14), out.readUInt16BE(12) === ETH_P_IP ? 4 : 6, ecn);
  return out;
}

const ecnFixtures: Fixture[] = [
  decapped('IPIP: outer CE over inner ECT(0) arrives as CE (IPv4 checksum updated)', outerEcn(ipip(inner4Ecn(ECT0)), CE)),
  decapped('IPIP: outer CE over inner ECT(1) arrives as CE', outerEcn(ipip(inner4Ecn(ECT1)), CE)),
  decapped('IP6IP6: outer CE over inner ECT(0) arrives as CE', outerEcn(ip6ip6(inner6Ecn(ECT0)), CE)),
  decapped('4in6: outer CE over inner ECT(0) arrives as CE', outerEcn(fourIn6(inner4Ecn(ECT0)), CE)),
  decapped('6in4: outer CE over inner ECT(1) arrives as CE', outerEcn(sixIn4(inner6Ecn(ECT1)), CE)),
  decapped('GUE over IPv4: outer CE over inner ECT(0) arrives as CE', outerEcn(gue(inner4Ecn(ECT0, { dst: VIPS.gue4.address }), POD4), CE)),
  decapped('GUE over IPv6: outer CE over inner ECT(1) arrives as CE', outerEcn(gue(inner6Ecn(ECT1, { dst: VIPS.gue6.address }), POD6), CE)),
  decapped('IPIP: outer ECT(1) over inner ECT(0) arrives as ECT(1)', outerEcn(ipip(inner4Ecn(ECT0)), ECT1)),
  decapped('IPIP: outer ECT(0) over inner ECT(1) stays ECT(1)', outerEcn(ipip(inner4Ecn(ECT1)), ECT0)),
  decapped('IPIP: an inner CE stays CE under a Not-ECT outer header', outerEcn(ipip(inner4Ecn(CE)), 0)),
  dropped('IPIP: outer CE over a Not-ECT inner packet is dropped', outerEcn(ipip(inner4Ecn(0)), CE), 'decap_drop_ce_not_ect'),
  dropped('IP6IP6: outer CE over a Not-ECT inner packet is dropped', outerEcn(ip6ip6(inner6Ecn(0)), CE), 'decap_drop_ce_not_ect'),
];

// ── not a tunnel: left alone ─────────────────────────────────────────────────

const ipOptions = Buffer.from([0x94, 0x04, 0x00, 0x00]); // Router Alert
const notTunnels: Fixture[] = [
  passed('plain TCP to the pod', frame(ipv4({ src: CLIENT4, dst: POD4 }, tcp({ sport: 40000, dport: 8080, flags: { ack: true }, payload: 'data' })))),
  passed('plain TCP to the VIP on the pod (a reply path packet) is not a tunnel',
    frame(ipv4({ src: CLIENT4, dst: VIPS.web4.address }, tcp({ sport: 40000, dport: 80, flags: { ack: true } })))),
  passed('plain UDP to the pod', frame(ipv4({ src: CLIENT4, dst: POD4 }, udp({ sport: 40000, dport: 53, payload: 'query' })))),
  passed('ICMP echo to the pod', frame(ipv4({ src: CLIENT4, dst: POD4 }, icmpEchoRequest({ id: 1, seq: 1, payload: 'ping' })))),
  passed('IPv6 TCP to the pod', frame(ipv6({ src: CLIENT6, dst: POD6 }, tcp({ sport: 40000, dport: 8080, flags: { ack: true }, payload: 'data' })))),
  passed('ICMPv6 echo to the pod', frame(ipv6({ src: CLIENT6, dst: POD6 }, icmp6EchoRequest({ id: 1, seq: 1, payload: 'ping' })))),
  passed('ARP', ether({ dst: 'ff:ff:ff:ff:ff:ff', src: HOST_MAC, type: ETH_P_ARP }, Buffer.alloc(28, 1))),
  passed('an 802.1Q-tagged IPIP frame', ether({ dst: POD_MAC, src: HOST_MAC, vlan: { vid: 100 } }, ipip(inner4()).subarray(14))),
  passed('UDP to another port (VXLAN 4789) carrying an IPv4 packet', gueRaw4(POD4, inner4(), 4789)),
  passed('UDP to the port after the GUE port over IPv6', gueRaw6(POD6, inner6(), GUE_PORT + 1)),
  passed('GRE to the pod', outer4(POD4, 47, Buffer.alloc(24, 0))),
  passed('IPv4 with options (protocol IPIP) is not the balancer\'s', outer4(POD4, IPPROTO_IPIP, inner4(), { options: ipOptions })),
  passed('IPv4 with options carrying GUE', frame(ipv4({ src: TUNNEL.nodeAddr4, dst: POD4, options: ipOptions },
    udp({ sport: 0x8123, dport: GUE_PORT, payload: inner4({ dst: VIPS.gue4.address }), zeroChecksum: true })))),
  passed('a first fragment (MF) of an IPIP packet', outer4(POD4, IPPROTO_IPIP, inner4(), { df: false, mf: true })),
  passed('a later fragment of an IPIP packet', outer4(POD4, IPPROTO_IPIP, Buffer.alloc(64, 0x45), { df: false, fragmentOffset: 185 })),
  passed('a later fragment of a GUE packet (UDP header bytes are data)', outer4(POD4, IPPROTO_UDP,
    Buffer.concat([Buffer.from([0x80, 0x00, GUE_PORT >> 8, GUE_PORT & 0xff, 0, 40, 0, 0]), inner4().subarray(0, 32)]), { df: false, fragmentOffset: 100 })),
  passed('IPv6 with a fragment header before IP6IP6', frame(ipv6({ src: 'fd00:7::1', dst: POD6, extensions: [fragmentHeader({ more: true, id: 9 })] },
    rawTransport(IPPROTO_IPV6, inner6())))),
  // Frames cut inside the outer IP header cannot be test-run: BPF_PROG_TEST_RUN refuses an
  // skb whose EtherType is IPv4 / IPv6 but which is shorter than that header (EINVAL).
  passed('an IPv4 frame cut inside the UDP header', gue(inner4({ dst: VIPS.gue4.address }), POD4).subarray(0, 14 + 20 + 4)),
  passed('an IPv6 frame cut inside the UDP header', gue(inner6({ dst: VIPS.gue6.address }), POD6).subarray(0, 14 + 40 + 7)),
];

const good4 = inner4();
const good6 = inner6();

// ── UDP to the GUE port that is not a tunnel packet: ordinary traffic, untouched ──
// A pod may have a service of its own on that port: only a whole IP packet filling the
// UDP payload (an IPv4 one with a valid header checksum) is taken for a tunnel.
const ordinaryUdp: Fixture[] = [
  passed('an ordinary datagram to the GUE port over IPv4', gueRaw4(POD4, Buffer.from('hello, service on 6080'))),
  passed('an ordinary datagram to the GUE port over IPv6', gueRaw6(POD6, Buffer.from('hello, service on 6080'))),
  passed('a datagram to the GUE port with no payload', gueRaw4(POD4, Buffer.alloc(0))),
  passed('… over IPv6', gueRaw6(POD6, Buffer.alloc(0))),
  passed('a single payload byte 0x45', gueRaw6(POD6, Buffer.from([0x45]))),
  passed('a payload starting with version nibble 0', gueRaw4(POD4, Buffer.alloc(40, 0))),
  passed('a payload starting with version nibble 5', gueRaw6(POD6, Buffer.concat([Buffer.from([0x55]), good4.subarray(1)]))),
  passed('a GUE header (variant 0) before an IP packet', gueRaw4(POD4, Buffer.concat([Buffer.from([0x00, 0x00, 0x04, 0x00]), good4]))),
  passed('a truncated IPv4 header', gueRaw4(POD4, inner4({ dst: VIPS.gue4.address }).subarray(0, 19))),
  passed('an IPv6 header whose payload length is beyond the datagram', gueRaw4(POD4,
    ipv6({ src: CLIENT6, dst: VIPS.gue6.address, payloadLength: 400, protocol: 6 }, good6.subarray(40)))),
  passed('an IPv4 packet that fills only part of a full-size datagram', gueRaw4(POD4,
    Buffer.concat([inner4({ dst: VIPS.gue4.address }), Buffer.alloc(100, 7)]))),
  passed('an IPv4 header with a wrong header checksum', gueRaw4(POD4, corruptIpv4Checksum(inner4({ dst: VIPS.gue4.address })))),
  passed('a UDP length that disagrees with the IP length', udpLength(gue(inner4({ dst: VIPS.gue4.address }), POD4), -4)),
];

// ── a broken outer header: the stack drops it and counts the IP error ────────
const brokenOuter: Fixture[] = [
  passed('IPIP with a wrong outer header checksum', corruptIpv4Checksum(ipip(inner4()), 14)),
  passed('GUE over IPv4 with a wrong outer header checksum', corruptIpv4Checksum(gue(inner4({ dst: VIPS.gue4.address }), POD4), 14)),
  passed('IPIP whose outer total length is beyond the frame', outer4(POD4, IPPROTO_IPIP, inner4(), { totalLength: 20 + inner4().length + 8 })),
  passed('IP6IP6 whose outer payload length is beyond the frame', outer6(POD6, IPPROTO_IPV6, inner6(), { payloadLength: inner6().length + 8 })),
];

// ── tunnel to an address that is not ours ────────────────────────────────────

const notLocal: Fixture[] = [
  dropped('IPIP to another pod\'s address', ipip(inner4(), OTHER_POD4), 'decap_drop_not_local'),
  dropped('6in4 to another pod\'s address', sixIn4(inner6(), OTHER_POD4), 'decap_drop_not_local'),
  dropped('4in6 to another pod\'s address', fourIn6(inner4(), OTHER_POD6), 'decap_drop_not_local'),
  dropped('IP6IP6 to another pod\'s address', ip6ip6(inner6(), OTHER_POD6), 'decap_drop_not_local'),
  dropped('GUE over IPv4 to another pod\'s address', gue(inner4({ dst: VIPS.gue4.address }), OTHER_POD4), 'decap_drop_not_local'),
  dropped('GUE over IPv6 to another pod\'s address', gue(inner6({ dst: VIPS.gue6.address }), OTHER_POD6), 'decap_drop_not_local'),
  dropped('IPIP to a VIP address (the outer destination must be the pod\'s own)', ipip(inner4(), VIPS.web4.address), 'decap_drop_not_local'),
  dropped('4in6 to the IPv4-mapped form of the pod\'s address', fourIn6(inner4(), `::ffff:${POD4}`), 'decap_drop_not_local'),
];

// ── inner destination not a VIP served here: no open relay ───────────────────

const notVip: Fixture[] = [
  dropped('IPIP whose inner destination is a VIP served elsewhere', ipip(inner4({ dst: ELSEWHERE_VIP4 })), 'decap_drop_not_vip'),
  dropped('IPIP whose inner destination is the pod itself', ipip(inner4({ dst: POD4 })), 'decap_drop_not_vip'),
  dropped('IPIP whose inner destination is an outside address (relay attempt)', ipip(inner4({ dst: '8.8.8.8' })), 'decap_drop_not_vip'),
  dropped('IP6IP6 whose inner destination is the pod itself', ip6ip6(inner6({ dst: POD6 })), 'decap_drop_not_vip'),
  dropped('IP6IP6 whose inner destination is a VIP served elsewhere', ip6ip6(inner6({ dst: ELSEWHERE_VIP6 })), 'decap_drop_not_vip'),
  dropped('6in4 whose inner destination is the pod\'s IPv6 address', sixIn4(inner6({ dst: POD6 })), 'decap_drop_not_vip'),
  dropped('4in6 whose inner destination is the pod\'s IPv4 address', fourIn6(inner4({ dst: POD4 })), 'decap_drop_not_vip'),
  dropped('GUE over IPv4 whose inner destination is the pod itself', gue(inner4({ dst: POD4 }), POD4), 'decap_drop_not_vip'),
  dropped('GUE over IPv6 whose inner destination is an outside address', gue(inner6({ dst: '2001:4860::8888' }), POD6), 'decap_drop_not_vip'),
];

// ── malformed ────────────────────────────────────────────────────────────────

const malformed: Fixture[] = [
  dropped('IPIP with a truncated inner IPv4 header', outer4(POD4, IPPROTO_IPIP, good4.subarray(0, 12)), 'decap_drop_malformed'),
  dropped('IP6IP6 with a truncated inner IPv6 header', outer6(POD6, IPPROTO_IPV6, good6.subarray(0, 30)), 'decap_drop_malformed'),
  dropped('IPIP whose inner total length is beyond the frame', outer4(POD4, IPPROTO_IPIP, good4.subarray(0, good4.length - 5)), 'decap_drop_malformed'),
  dropped('IP6IP6 whose inner payload length is beyond the frame', outer6(POD6, IPPROTO_IPV6, good6.subarray(0, good6.length - 1)), 'decap_drop_malformed'),
  dropped('4in6 whose inner total length is beyond the frame', outer6(POD6, IPPROTO_IPIP,
    ipv4({ src: CLIENT4, dst: VIPS.web4.address, totalLength: good4.length + 100, protocol: 6 }, good4.subarray(20))), 'decap_drop_malformed'),
  dropped('IPIP carrying an IPv6 header (version mismatch)', outer4(POD4, IPPROTO_IPIP, good6), 'decap_drop_malformed'),
  dropped('6in4 carrying an IPv4 header (version mismatch)', outer4(POD4, IPPROTO_IPV6, good4), 'decap_drop_malformed'),
  dropped('IP6IP6 carrying an IPv4 header (version mismatch)', outer6(POD6, IPPROTO_IPV6, good4), 'decap_drop_malformed'),
  dropped('IPIP with an inner IHL below 5', outer4(POD4, IPPROTO_IPIP,
    ipv4({ src: CLIENT4, dst: VIPS.web4.address, ihl: 4, protocol: 6 }, good4.subarray(20))), 'decap_drop_malformed'),
  // The outer header's own length bounds the inner packet, not the frame's.
  dropped('IPIP whose inner total length is beyond the outer total length (extra bytes in the frame)',
    withTrailer(outer4(POD4, IPPROTO_IPIP, good4.subarray(0, good4.length - 5)), good4.subarray(good4.length - 5)), 'decap_drop_malformed'),
];

// ── another GUE port, set in .rodata ─────────────────────────────────────────

const altPort: Fixture[] = [
  decapped(`GUE port ${ALT_GUE_PORT}: GUE over IPv4 to it is decapsulated`, gue(inner4({ dst: VIPS.gue4.address }), POD4, ALT_GUE_PORT), ALT_GUE_PORT),
  decapped(`GUE port ${ALT_GUE_PORT}: GUE over IPv6 carrying IPv4 to it is decapsulated`, gue(inner4({ dst: VIPS.gue4.address }), POD6, ALT_GUE_PORT), ALT_GUE_PORT),
  passed(`GUE port ${ALT_GUE_PORT}: GUE to ${GUE_PORT} is not a tunnel`, gue(inner4({ dst: VIPS.gue4.address }), POD4), ALT_GUE_PORT),
  passed(`GUE port ${ALT_GUE_PORT}: GUE over IPv6 to ${GUE_PORT} is not a tunnel`, gue(inner6({ dst: VIPS.gue6.address }), POD6), ALT_GUE_PORT),
  decapped(`GUE port ${ALT_GUE_PORT}: IPIP is unaffected`, ipip(inner4()), ALT_GUE_PORT),
];

export const DECAP_FIXTURES: readonly Fixture[] = [
  ...encapsulations, ...balancerOutputs, ...ecnFixtures, ...notTunnels, ...ordinaryUdp, ...brokenOuter, ...notLocal, ...notVip,
  ...malformed, ...altPort,
];

/** The EtherType a decapsulated frame must carry: the inner packet's family. */
export function innerEtherType(output: Uint8Array): number {
  return (output[14]! >> 4) === 4 ? ETH_P_IP : ETH_P_IPV6;
}
