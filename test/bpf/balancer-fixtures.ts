// The balancer's packet fixtures: {name, input frame, expected verdict, expected
// output frame, the counter that must move}. Expected frames come from the packet
// builder (test/support/packets.ts), which follows docs/dataplane.md, never from the
// program. balancer.test.ts runs them through BPF_PROG_TEST_RUN.
import {
  balancerEchoReply, balancerFragNeeded, balancerPacketTooBig, destinationOptions, encapsulate, ether, fragmentHeader,
  hopByHop, icmp, icmp6, icmp6DestUnreachable, icmp6EchoRequest, icmp6PacketTooBig, icmpDestUnreachable, icmpEchoRequest,
  icmpFragNeeded, ipv4, ipv6, rawTransport, routingHeader, tcp, udp, ETH_P_ARP,
} from '../support/packets.ts';
import { ringHash, ringSlot } from '../../src/shared/flowhash.ts';
import type { Reason } from '../../src/shared/reasons.ts';
import {
  BACKENDS, CLIENT4, CLIENT6, CLIENT_MAC, LB_MAC, RING_SIZE, ROUTER4, ROUTER6, TUNNEL, VIPS, backendById, ringAt,
  type BackendName, type VipName,
} from './balancer-world.ts';

export type Verdict = 'XDP_DROP' | 'XDP_PASS' | 'XDP_TX';

/** What the runner may do to the maps before a fixture (conn-table and ring cases). */
export type Setup =
  | { kind: 'ring'; vip: VipName; backend: BackendName }
  /** age: fresh = now, old = 10 s ago (still valid), stale = past the UDP timeout. */
  | { kind: 'conn'; vip: VipName; src: string; sport: number; backend: number; age: 'fresh' | 'old' | 'stale'; gen?: number };

export type Fixture = {
  name: string;
  input: Buffer;
  verdict: Verdict;
  /** TX only: the frame the program must leave. PASS and DROP must leave the input untouched. */
  output?: Buffer;
  /** The non-forwarding reason counted (absent: a forward, counted under vip and backend). */
  reason?: Reason;
  vip?: VipName;
  backend?: BackendName;
  /** Connection-table counter expected to move. */
  conn?: 'hit' | 'miss' | 'udp_expired';
  setup?: readonly Setup[];
  /** The flow's table entry afterwards: its idle time kept, or refreshed by the packet. */
  connAtime?: { vip: VipName; src: string; sport: number; expect: 'kept' | 'refreshed' };
};

const TOS = 0x29; // DSCP AF11 with ECN ECT(1): the outer header must copy both

export const frame = (l3: Buffer, vlan?: { vid: number; tpid?: number }) =>
  ether({ dst: LB_MAC, src: CLIENT_MAC, ...(vlan ? { vlan } : {}) }, l3);

type FlowOptions = { src?: string; sport?: number; syn?: boolean; rst?: boolean; fin?: boolean; payload?: string | Buffer; tos?: number };

export function tcp4(vip: { address: string }, dport: number, o: FlowOptions = {}): Buffer {
  return frame(ipv4({ src: o.src ?? CLIENT4, dst: vip.address, tos: o.tos ?? TOS, id: 0x1234, df: true, ttl: 61 },
    tcp({ sport: o.sport ?? 40000, dport, flags: o.syn ? { syn: true } : { ack: true, psh: !o.rst && !o.fin, rst: o.rst === true, fin: o.fin === true }, payload: o.payload ?? 'GET / HTTP/1.1\r\n\r\n' })));
}

export function udp4(vip: { address: string }, dport: number, o: FlowOptions = {}): Buffer {
  return frame(ipv4({ src: o.src ?? CLIENT4, dst: vip.address, tos: o.tos ?? TOS, ttl: 61 }, udp({ sport: o.sport ?? 40000, dport, payload: o.payload ?? 'query' })));
}

export function tcp6(vip: { address: string }, dport: number, o: FlowOptions = {}): Buffer {
  return frame(ipv6({ src: o.src ?? CLIENT6, dst: vip.address, trafficClass: o.tos ?? TOS, flowLabel: 0x12345, hopLimit: 61 },
    tcp({ sport: o.sport ?? 40000, dport, flags: o.syn ? { syn: true } : { ack: true }, payload: o.payload ?? 'hello' })));
}

const forward = (input: Buffer, backend: BackendName, gue = false) =>
  encapsulate({ frame: input, backend: BACKENDS[backend].address, config: TUNNEL, gue });

function forwarded(name: string, vip: VipName, backend: BackendName, input: Buffer, extra: Partial<Fixture> = {}): Fixture {
  const gue = (VIPS[vip].flags & 4) !== 0;
  return { name, input, verdict: 'XDP_TX', output: forward(input, backend, gue), vip, backend, ...extra };
}

const passed = (name: string, input: Buffer, reason: Reason): Fixture => ({ name, input, verdict: 'XDP_PASS', reason });
const dropped = (name: string, input: Buffer, reason: Reason): Fixture => ({ name, input, verdict: 'XDP_DROP', reason });

// ── forwarding: every encapsulation ───────────────────────────────────────────
const { web4, dns4, anyPort4to6, web6, web6to4, gue4, gue6, sticky, conn4, udpConn4, bypass4, conn6 } = VIPS;

const forwarding: Fixture[] = [
  forwarded('IPv4 TCP to a port VIP: IPIP, DSCP/ECN copied, outer source from the flow', 'web4', 'b4a', tcp4(web4, 80)),
  forwarded('IPv4 UDP to a port VIP: IPIP', 'dns4', 'b4a', udp4(dns4, 53)),
  forwarded('IPv4 TCP SYN: IPIP', 'web4', 'b4a', tcp4(web4, 80, { sport: 40001, syn: true })),
  forwarded('IPv4 TCP with an empty payload (pure ACK) is forwarded', 'web4', 'b4a', tcp4(web4, 80, { sport: 40002, payload: '' })),
  forwarded('IPv4 UDP with an empty payload is forwarded', 'dns4', 'b4a', udp4(dns4, 53, { sport: 40003, payload: '' })),
  forwarded('IPv4 to an all-port VIP on an IPv6 backend: 4in6', 'anyPort4to6', 'b6a', tcp4(anyPort4to6, 8443)),
  forwarded('IPv6 TCP to a port VIP: IP6IP6, traffic class copied, flow label from the flow', 'web6', 'b6a', tcp6(web6, 443)),
  forwarded('IPv6 VIP on an IPv4 backend: 6in4', 'web6to4', 'b4a', tcp6(web6to4, 80)),
  forwarded('GUE over IPv4: UDP to the GUE port from the node address, zero checksum', 'gue4', 'b4a', tcp4(gue4, 80)),
  forwarded('GUE over IPv6', 'gue6', 'b6a', tcp6(gue6, 80)),
  forwarded('a frame with Ethernet padding keeps the padding inside the tunnel', 'web4', 'b4a',
    ether({ dst: LB_MAC, src: CLIENT_MAC, padTo: 60 }, ipv4({ src: CLIENT4, dst: web4.address, ttl: 61 }, tcp({ sport: 40004, dport: 80, flags: { ack: true } })))),
];

// source-IP-only hashing: the ring slot comes from the client address alone.
const stickyClients = ['198.51.100.10', '198.51.100.11', '198.51.100.12', '198.51.100.13', '198.51.100.14', '198.51.100.15'];
const stickyFixtures: Fixture[] = stickyClients.flatMap((src, i) => {
  const slot = ringSlot(ringHash({ family: 4, src, sport: 0, dport: 0, srcIpOnly: true }), RING_SIZE);
  const backend = backendById(ringAt(sticky, slot));
  const name = (Object.keys(BACKENDS) as BackendName[]).find((n) => BACKENDS[n].id === backend.id)!;
  return [1, 2].map((k) =>
    forwarded(`source-IP-only VIP: client ${src} port ${50000 + 7 * i + k} goes to slot ${slot} (${name})`, 'sticky', name,
      tcp4(sticky, 80, { src, sport: 50000 + 7 * i + k })));
});

// ── ICMP ─────────────────────────────────────────────────────────────────────
const quotedReply4 = ipv4({ src: conn4.address, dst: CLIENT4, ttl: 60, df: true }, tcp({ sport: 80, dport: 41000, flags: { ack: true }, payload: 'x'.repeat(1400) }));
const quotedReply6 = ipv6({ src: conn6.address, dst: CLIENT6, hopLimit: 60 }, tcp({ sport: 80, dport: 41000, flags: { ack: true }, payload: 'x'.repeat(1400) }));
const quotedUnknown4 = ipv4({ src: '192.0.2.99', dst: CLIENT4, ttl: 60 }, tcp({ sport: 80, dport: 41000, flags: { ack: true } }));

const icmpFixtures: Fixture[] = [
  (() => {
    const input = frame(ipv4({ src: CLIENT4, dst: web4.address, ttl: 61 }, icmpEchoRequest({ id: 7, seq: 1, payload: 'ping' })));
    return { name: 'ICMP echo request to a VIP address is answered (XDP_TX)', input, verdict: 'XDP_TX', output: balancerEchoReply(input), reason: 'tx_icmp_echo' } as Fixture;
  })(),
  (() => {
    const input = frame(ipv6({ src: CLIENT6, dst: web6.address, hopLimit: 61 }, icmp6EchoRequest({ id: 7, seq: 1, payload: 'ping' })));
    return { name: 'ICMPv6 echo request to a VIP address is answered', input, verdict: 'XDP_TX', output: balancerEchoReply(input), reason: 'tx_icmp_echo' } as Fixture;
  })(),
  passed('ICMP echo request to another address passes', frame(ipv4({ src: CLIENT4, dst: '192.0.2.50' }, icmpEchoRequest({ id: 1, seq: 1 }))), 'pass_not_vip'),
  passed('ICMPv6 neighbour solicitation for a VIP address passes to the stack',
    frame(ipv6({ src: CLIENT6, dst: web6.address, hopLimit: 255 }, icmp6({ type: 135, payload: Buffer.alloc(20) }))), 'pass_icmp_other'),
  passed('ICMP time exceeded is left to the stack', frame(ipv4({ src: ROUTER4, dst: conn4.address }, icmp({ type: 11, payload: quotedReply4.subarray(0, 28) }))), 'pass_icmp_other'),
  {
    name: 'ICMP frag-needed about a VIP flow reaches the backend that owns the flow (connection table)',
    input: frame(ipv4({ src: ROUTER4, dst: conn4.address, ttl: 62 }, icmpFragNeeded({ mtu: 1400, quote: quotedReply4, quoteLength: 28 }))),
    verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'hit',
    setup: [{ kind: 'conn', vip: 'conn4', src: CLIENT4, sport: 41000, backend: BACKENDS.b4b.id, age: 'fresh' }],
  },
  {
    name: 'ICMP port unreachable about a VIP flow without a table entry follows the ring',
    input: frame(ipv4({ src: ROUTER4, dst: dns4.address, ttl: 62 }, icmpDestUnreachable({ code: 3, quote: ipv4({ src: dns4.address, dst: CLIENT4 }, udp({ sport: 53, dport: 42000 })), quoteLength: 28 }))),
    verdict: 'XDP_TX', vip: 'dns4', backend: 'b4a', conn: 'miss',
  },
  {
    name: 'ICMPv6 packet-too-big about a VIP flow reaches its backend',
    input: frame(ipv6({ src: ROUTER6, dst: conn6.address, hopLimit: 62 }, icmp6PacketTooBig({ mtu: 1280, quote: quotedReply6, quoteLength: 48 }))),
    verdict: 'XDP_TX', vip: 'conn6', backend: 'b6b', conn: 'hit',
    setup: [{ kind: 'conn', vip: 'conn6', src: CLIENT6, sport: 41000, backend: BACKENDS.b6b.id, age: 'fresh' }],
  },
  {
    name: 'ICMPv6 destination unreachable about a VIP flow follows the ring',
    input: frame(ipv6({ src: ROUTER6, dst: web6.address, hopLimit: 62 }, icmp6DestUnreachable({ code: 4, quote: ipv6({ src: web6.address, dst: CLIENT6 }, tcp({ sport: 443, dport: 43000, flags: { ack: true } })), quoteLength: 48 }))),
    verdict: 'XDP_TX', vip: 'web6', backend: 'b6a', conn: 'miss',
  },
  // An ICMP error is no sign of life of the flow: it must not keep a UDP entry alive.
  {
    name: 'an ICMP error about a UDP flow reaches its backend without refreshing the entry\'s idle time',
    input: frame(ipv4({ src: ROUTER4, dst: udpConn4.address, ttl: 62 }, icmpDestUnreachable({ code: 3, quote: ipv4({ src: udpConn4.address, dst: CLIENT4 }, udp({ sport: 5000, dport: 45010 })), quoteLength: 28 }))),
    verdict: 'XDP_TX', vip: 'udpConn4', backend: 'b4b', conn: 'hit',
    setup: [{ kind: 'conn', vip: 'udpConn4', src: CLIENT4, sport: 45010, backend: BACKENDS.b4b.id, age: 'old' }],
    connAtime: { vip: 'udpConn4', src: CLIENT4, sport: 45010, expect: 'kept' },
  },
  {
    name: '… while a datagram of the flow refreshes it',
    input: udp4(udpConn4, 5000, { sport: 45010 }), verdict: 'XDP_TX', vip: 'udpConn4', backend: 'b4b', conn: 'hit',
    connAtime: { vip: 'udpConn4', src: CLIENT4, sport: 45010, expect: 'refreshed' },
  },
  dropped('an ICMP error about a VIP flow too big once encapsulated is dropped (legitimate ones are ≤ 576 bytes)',
    frame(ipv4({ src: ROUTER4, dst: conn4.address }, icmpFragNeeded({ mtu: 1400, quote: ipv4({ src: conn4.address, dst: CLIENT4, df: true }, tcp({ sport: 80, dport: 41000, flags: { ack: true }, payload: 'x'.repeat(1460) })), quoteLength: 1472 }))),
    'drop_error_too_big'),
  dropped('an ICMPv6 error about a VIP flow too big once encapsulated is dropped',
    frame(ipv6({ src: ROUTER6, dst: conn6.address }, icmp6PacketTooBig({ mtu: 1400, quote: ipv6({ src: conn6.address, dst: CLIENT6 }, tcp({ sport: 80, dport: 41000, flags: { ack: true }, payload: 'x'.repeat(1440) })), quoteLength: 1452 }))),
    'drop_error_too_big'),
  passed('ICMP error quoting a non-first fragment passes (its payload is no transport header)',
    frame(ipv4({ src: ROUTER4, dst: dns4.address }, icmpDestUnreachable({ code: 3, quote: ipv4({ src: dns4.address, dst: CLIENT4, fragmentOffset: 185 }, udp({ sport: 53, dport: 42001 })), quoteLength: 28 }))), 'pass_icmp_other'),
  passed('ICMP error about a flow of no VIP passes', frame(ipv4({ src: ROUTER4, dst: '192.0.2.99' }, icmpFragNeeded({ mtu: 1400, quote: quotedUnknown4, quoteLength: 28 }))), 'pass_icmp_other'),
  passed('ICMP error quoting a truncated header passes',
    frame(ipv4({ src: ROUTER4, dst: conn4.address }, icmpFragNeeded({ mtu: 1400, quote: quotedReply4, quoteLength: 22 }))), 'pass_icmp_other'),
];
for (const f of icmpFixtures) {
  if (f.output === undefined && f.verdict === 'XDP_TX') f.output = forward(f.input, f.backend!);
}

// ── MTU ──────────────────────────────────────────────────────────────────────
const big4 = tcp4(web4, 80, { sport: 40100, payload: 'B'.repeat(1500 - 40) });     // L3 = 1500: 1520 once wrapped
const fits4 = tcp4(web4, 80, { sport: 40101, payload: 'B'.repeat(1480 - 40) });    // L3 = 1480: exactly 1500
const big6 = tcp6(web6, 443, { sport: 40100, payload: 'B'.repeat(1500 - 60) });
const bigGue4 = tcp4(gue4, 80, { sport: 40102, payload: 'B'.repeat(1480 - 40) });   // 1480 + 28 > 1500
const mtuFixtures: Fixture[] = [
  { name: 'IPv4 too big once encapsulated: ICMP frag-needed with MTU 1480', input: big4, verdict: 'XDP_TX', output: balancerFragNeeded(big4, { mtu: 1500, overhead: 20 }), reason: 'tx_icmp_too_big' },
  forwarded('IPv4 that fits exactly once encapsulated is forwarded', 'web4', 'b4a', fits4),
  { name: 'IPv6 too big once encapsulated: ICMPv6 packet-too-big with MTU 1460', input: big6, verdict: 'XDP_TX', output: balancerPacketTooBig(big6, { mtu: 1500, overhead: 40 }), reason: 'tx_icmp_too_big' },
  { name: 'GUE overhead counts: frag-needed with MTU 1472', input: bigGue4, verdict: 'XDP_TX', output: balancerFragNeeded(bigGue4, { mtu: 1500, overhead: 28 }), reason: 'tx_icmp_too_big' },
];

// ── connection table ─────────────────────────────────────────────────────────
const connFixtures: Fixture[] = [
  {
    name: 'an established flow keeps its backend after the ring changes (table hit)',
    input: tcp4(conn4, 80, { sport: 44000 }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'hit',
    setup: [
      { kind: 'conn', vip: 'conn4', src: CLIENT4, sport: 44000, backend: BACKENDS.b4b.id, age: 'fresh' },
      { kind: 'ring', vip: 'conn4', backend: 'b4a' },
    ],
  },
  {
    name: 'a SYN ignores the table entry and follows the current ring',
    input: tcp4(conn4, 80, { sport: 44000, syn: true }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4a', conn: 'miss',
    setup: [{ kind: 'conn', vip: 'conn4', src: CLIENT4, sport: 44000, backend: BACKENDS.b4b.id, age: 'fresh' }],
  },
  {
    name: 'after the SYN the table holds the new backend',
    input: tcp4(conn4, 80, { sport: 44000 }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4a', conn: 'hit',
    setup: [{ kind: 'ring', vip: 'conn4', backend: 'b4b' }],
  },
  {
    name: 'a flow whose backend was removed is re-placed from the ring',
    input: tcp4(conn4, 80, { sport: 44001 }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'miss',
    setup: [{ kind: 'conn', vip: 'conn4', src: CLIENT4, sport: 44001, backend: 9, age: 'fresh' }],
  },
  {
    name: 'a fresh UDP entry is used',
    input: udp4(udpConn4, 5000, { sport: 45000 }), verdict: 'XDP_TX', vip: 'udpConn4', backend: 'b4b', conn: 'hit',
    setup: [{ kind: 'conn', vip: 'udpConn4', src: CLIENT4, sport: 45000, backend: BACKENDS.b4b.id, age: 'fresh' }],
  },
  {
    name: 'a stale UDP entry (older than the timeout) is re-placed from the ring',
    input: udp4(udpConn4, 5000, { sport: 45001 }), verdict: 'XDP_TX', vip: 'udpConn4', backend: 'b4a', conn: 'udp_expired',
    setup: [{ kind: 'conn', vip: 'udpConn4', src: CLIENT4, sport: 45001, backend: BACKENDS.b4b.id, age: 'stale' }],
  },
  {
    name: 'an LRU-bypass VIP never reads the table',
    input: tcp4(bypass4, 81, { sport: 46000 }), verdict: 'XDP_TX', vip: 'bypass4', backend: 'b4a',
    setup: [{ kind: 'conn', vip: 'bypass4', src: CLIENT4, sport: 46000, backend: BACKENDS.b4b.id, age: 'fresh' }],
  },
  {
    name: 'a table entry made for an earlier VIP on the same id (another gen) is not used',
    input: tcp4(conn4, 80, { sport: 44002 }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'miss',
    setup: [{ kind: 'conn', vip: 'conn4', src: CLIENT4, sport: 44002, backend: BACKENDS.b4a.id, age: 'fresh', gen: 7 }],
  },
  {
    name: 'table first (address without LRU-bypass VIPs): an entry of another gen is not used',
    input: tcp6(conn6, 80, { sport: 44003 }), verdict: 'XDP_TX', vip: 'conn6', backend: 'b6a', conn: 'miss',
    setup: [{ kind: 'conn', vip: 'conn6', src: CLIENT6, sport: 44003, backend: BACKENDS.b6b.id, age: 'fresh', gen: 7 }],
  },
  // RST and FIN end flows: for a flow the table does not know (a spoofed or late
  // segment) they follow the ring but create no entry, which a flood of them would
  // otherwise use to push real flows out of the LRU.
  {
    name: 'a RST of a flow the table does not know follows the ring',
    input: tcp4(conn4, 80, { sport: 44010, rst: true, payload: '' }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4a', conn: 'miss',
    setup: [{ kind: 'ring', vip: 'conn4', backend: 'b4a' }],
  },
  {
    name: 'a FIN of a flow the table does not know follows the ring',
    input: tcp4(conn4, 80, { sport: 44011, fin: true, payload: '' }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4a', conn: 'miss',
  },
  {
    name: '… and neither made a table entry: after a ring change the flow follows the new ring',
    input: tcp4(conn4, 80, { sport: 44010 }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'miss',
    setup: [{ kind: 'ring', vip: 'conn4', backend: 'b4b' }],
  },
  {
    name: '… (the FIN\'s flow too)',
    input: tcp4(conn4, 80, { sport: 44011 }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'miss',
  },
  {
    name: 'a FIN of a known flow keeps its backend (table hit)',
    input: tcp4(conn4, 80, { sport: 44011, fin: true, payload: '' }), verdict: 'XDP_TX', vip: 'conn4', backend: 'b4b', conn: 'hit',
    setup: [{ kind: 'ring', vip: 'conn4', backend: 'b4a' }],
  },
  {
    name: 'IPv6: an established flow keeps its backend',
    input: tcp6(conn6, 80, { sport: 44000 }), verdict: 'XDP_TX', vip: 'conn6', backend: 'b6b', conn: 'hit',
    setup: [{ kind: 'conn', vip: 'conn6', src: CLIENT6, sport: 44000, backend: BACKENDS.b6b.id, age: 'fresh' }],
  },
];
for (const f of connFixtures) f.output = forward(f.input, f.backend!, (VIPS[f.vip!].flags & 4) !== 0);

// ── not ours, or not forwardable ─────────────────────────────────────────────
const tcpTo = (dst: string, o: { ihl?: number; options?: Buffer; mf?: boolean; fragmentOffset?: number; totalLength?: number; version?: number } = {}) =>
  ipv4({ src: CLIENT4, dst, ttl: 61, ...o }, tcp({ sport: 40000, dport: 80, flags: { ack: true }, payload: 'data' }));
const ipOptions = Buffer.from([0x94, 0x04, 0x00, 0x00]); // Router Alert
const v6With = (dst: string, ext: Parameters<typeof ipv6>[0]['extensions']) =>
  frame(ipv6({ src: CLIENT6, dst, extensions: ext }, tcp({ sport: 40000, dport: 443, flags: { ack: true } })));

const refusals: Fixture[] = [
  passed('ARP passes', ether({ dst: 'ff:ff:ff:ff:ff:ff', src: CLIENT_MAC, type: ETH_P_ARP }, Buffer.alloc(28, 1)), 'pass_not_ip'),
  passed('an 802.1Q-tagged frame passes untouched', frame(ipv4({ src: CLIENT4, dst: web4.address }, tcp({ sport: 1, dport: 80 })), { vid: 100 }), 'pass_vlan'),
  passed('an 802.1ad (QinQ) frame passes untouched', frame(ipv4({ src: CLIENT4, dst: web4.address }, tcp({ sport: 1, dport: 80 })), { vid: 100, tpid: 0x88a8 }), 'pass_vlan'),
  passed('TCP to an address that is no VIP passes', tcp4({ address: '192.0.2.77' }, 80), 'pass_not_vip'),
  // The node does not own VIP addresses: its stack would route these back to the router.
  dropped('TCP to a VIP address on an unconfigured port is dropped (no routing loop)', tcp4(web4, 8080), 'drop_not_served'),
  dropped('UDP to a TCP-only VIP port is dropped', udp4(web4, 80), 'drop_not_served'),
  dropped('IPv6 TCP to a VIP address on an unconfigured port is dropped', tcp6(web6, 8080), 'drop_not_served'),
  dropped('an unknown transport (GRE) to a VIP address is dropped', frame(ipv4({ src: CLIENT4, dst: web4.address }, rawTransport(47, Buffer.alloc(8)))), 'drop_not_served'),
  passed('an unknown transport (GRE) to another address passes', frame(ipv4({ src: CLIENT4, dst: '192.0.2.77' }, rawTransport(47, Buffer.alloc(8)))), 'pass_not_vip'),
  // Address 0 hashes to the slots of empty address-table entries (address 0, id 0).
  passed('TCP to 0.0.0.0 is no VIP address (empty table slots do not match)', tcp4({ address: '0.0.0.0' }, 80), 'pass_not_vip'),
  passed('IPv6 TCP to :: is no VIP address', tcp6({ address: '::' }, 80), 'pass_not_vip'),
  passed('ICMP echo to 0.0.0.0 is not answered', frame(ipv4({ src: CLIENT4, dst: '0.0.0.0' }, icmpEchoRequest({ id: 1, seq: 1 }))), 'pass_not_vip'),
  passed('a fragment to 0.0.0.0 passes', frame(tcpTo('0.0.0.0', { mf: true })), 'pass_not_vip'),
  passed('IPv6 TCP to another address passes', tcp6({ address: '2001:db8:ffff::99' }, 443), 'pass_not_vip'),
  dropped('IPv4 options to a VIP address are dropped', frame(tcpTo(web4.address, { options: ipOptions })), 'drop_ip_options'),
  passed('IPv4 options to another address pass', frame(tcpTo('192.0.2.77', { options: ipOptions })), 'pass_not_vip'),
  dropped('a first fragment (MF) to a VIP address is dropped', frame(tcpTo(web4.address, { mf: true })), 'drop_fragment'),
  dropped('a later fragment to a VIP address is dropped', frame(ipv4({ src: CLIENT4, dst: web4.address, fragmentOffset: 185, protocol: 6 }, Buffer.alloc(64, 7))), 'drop_fragment'),
  passed('a fragment to another address passes', frame(tcpTo('192.0.2.77', { mf: true })), 'pass_not_vip'),
  dropped('IPv6 fragment header to a VIP address is dropped', v6With(web6.address, [fragmentHeader({ more: true, id: 5 })]), 'drop_fragment'),
  dropped('IPv6 hop-by-hop header to a VIP address is dropped', v6With(web6.address, [hopByHop()]), 'drop_ipv6_ext'),
  dropped('IPv6 routing header to a VIP address is dropped', v6With(web6.address, [routingHeader({ addresses: [web6.address] })]), 'drop_ipv6_ext'),
  dropped('IPv6 destination options to a VIP address are dropped', v6With(web6.address, [destinationOptions()]), 'drop_ipv6_ext'),
  passed('IPv6 extension headers to another address pass', v6With('2001:db8:ffff::99', [hopByHop()]), 'pass_not_vip'),
  dropped('a VIP whose ring is empty drops: no backend', tcp4(VIPS.empty, 80), 'drop_no_backend'),
  dropped('a ring slot naming an unused backend drops: no backend', tcp4(VIPS.unusedBackend, 80), 'drop_no_backend'),
  dropped('a ring slot naming an id outside the table drops: bad backend', tcp4(VIPS.outOfTable, 81), 'drop_bad_backend'),
  dropped('a VIP id outside the ring drops: unknown VIP id', tcp4(VIPS.badVipId, 80), 'drop_unknown_vip_id'),
];

// ── malformed input ──────────────────────────────────────────────────────────
const good4 = tcp4(web4, 80, { sport: 40200 });
const good6 = tcp6(web6, 443, { sport: 40200 });
const goodUdp4 = udp4(dns4, 53, { sport: 40200 });
const truncations: Fixture[] = [
  ...[14, 15, 20, 33].map((len) => dropped(`IPv4 frame cut at ${len} bytes (inside the IP header)`, good4.subarray(0, len), 'drop_malformed')),
  ...[34, 40, 53].map((len) => dropped(`IPv4 frame cut at ${len} bytes (total length beyond the frame)`, good4.subarray(0, len), 'drop_malformed')),
  ...[14, 30, 53].map((len) => dropped(`IPv6 frame cut at ${len} bytes`, good6.subarray(0, len), 'drop_malformed')),
  dropped('IPv6 payload length beyond the frame', good6.subarray(0, good6.length - 3), 'drop_malformed'),
  dropped('IPv4 IHL below 5', frame(tcpTo(web4.address, { ihl: 4 })), 'drop_malformed'),
  dropped('IPv4 header with version 6 under an IPv4 EtherType', ether({ dst: LB_MAC, src: CLIENT_MAC, type: 0x0800 }, tcpTo(web4.address, { version: 6 })), 'drop_malformed'),
  dropped('IPv4 total length below the header length', frame(tcpTo(web4.address, { totalLength: 19 })), 'drop_malformed'),
  dropped('TCP header cut short (consistent IP length) to a VIP address',
    frame(ipv4({ src: CLIENT4, dst: web4.address, protocol: 6 }, good4.subarray(34, 34 + 12))), 'drop_malformed'),
  passed('TCP header cut short to another address passes', frame(ipv4({ src: CLIENT4, dst: '192.0.2.77', protocol: 6 }, good4.subarray(34, 34 + 12))), 'pass_not_vip'),
  dropped('TCP data offset below 5 to a VIP', frame(ipv4({ src: CLIENT4, dst: web4.address }, tcp({ sport: 1, dport: 80, dataOffset: 4 }))), 'drop_malformed'),
  dropped('UDP header cut short to a VIP address', frame(ipv4({ src: CLIENT4, dst: dns4.address, protocol: 17 }, goodUdp4.subarray(34, 34 + 6))), 'drop_malformed'),
  dropped('UDP length field below 8 to a VIP', frame(ipv4({ src: CLIENT4, dst: dns4.address }, udp({ sport: 1, dport: 53, length: 7 }))), 'drop_malformed'),
  dropped('IPv6 TCP header cut short to a VIP address', frame(ipv6({ src: CLIENT6, dst: web6.address, protocol: 6 }, good6.subarray(54, 54 + 10))), 'drop_malformed'),
  dropped('ICMP header cut short to a VIP address', frame(ipv4({ src: CLIENT4, dst: web4.address, protocol: 1 }, Buffer.from([8, 0, 0]))), 'drop_malformed'),
  dropped('IPv6 version field wrong', ether({ dst: LB_MAC, src: CLIENT_MAC, type: 0x86dd }, ipv6({ src: CLIENT6, dst: web6.address, version: 4 }, tcp({ sport: 1, dport: 443 }))), 'drop_malformed'),
];

export const BALANCER_FIXTURES: readonly Fixture[] = [
  ...forwarding, ...stickyFixtures, ...icmpFixtures, ...mtuFixtures, ...connFixtures, ...refusals, ...truncations,
];
