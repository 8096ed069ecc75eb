// The packet builder for the BPF packet fixtures: input frames, and the frames the data
// plane must produce, built from docs/dataplane.md ("Exact formats") — never from the
// BPF code — so a fixture checks the program against the written contract.
//
// Layers compose inside out. A transport builder (tcp, udp, icmp…) returns a Transport:
// its bytes depend on the enclosing IP header's addresses through the pseudo-header
// checksum, so the IP builder encodes it. IP builders return the L3 bytes; `ether` wraps
// them in a frame:
//
//   ether({ dst: LB_MAC, src: CLIENT_MAC },
//     ipv4({ src: CLIENT, dst: VIP, df: true }, tcp({ sport: 40000, dport: 80, flags: { syn: true } })))
//
// Every checksum is computed unless overridden; every length-like field can be overridden
// to build malformed packets. Decoding and diffing live in frame-decode.ts, re-exported
// here so fixtures import one module.

import { Buffer } from 'node:buffer';
import {
  addressBytes,
  addressFamily,
  flowEntropy,
  flowLabel,
  gueSourcePort,
  tunnelSource4,
  tunnelSource6,
} from '../../src/shared/flowhash.ts';
import type { Address, Family, FlowInput } from '../../src/shared/flowhash.ts';
import { internetChecksum, ipv4HeaderChecksum, transportChecksum } from './checksum.ts';

export { internetChecksum, ipv4HeaderChecksum, onesComplementSum, pseudoHeader, transportChecksum } from './checksum.ts';
export { assertFramesEqual, decodeFrame, describeFrame, diffFrames } from './frame-decode.ts';
export type { DecodedField, DecodedLayer, DecodeOptions, FrameDiff } from './frame-decode.ts';
export type { Address, Family, FlowInput } from '../../src/shared/flowhash.ts';

// ─── Constants ───────────────────────────────────────────────────────────────────────

export const ETH_HLEN = 14;
export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_IPIP = 4;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;

export const IPV4_HLEN = 20;
export const IPV6_HLEN = 40;
export const UDP_HLEN = 8;
export const ICMP_HLEN = 8;

// From bpf/include/consts.h, restated here because the fixtures check the spec's numbers.
export const ICMP4_TOOBIG_QUOTE = 64;
export const ICMP6_TOOBIG_QUOTE = 128;
export const IPV6_MIN_MTU = 1280;
/** TTL / hop limit of every ICMP message the balancer originates. */
export const BALANCER_ICMP_TTL = 64;

// ─── Small helpers ───────────────────────────────────────────────────────────────────

/** A MAC address: 'aa:bb:cc:dd:ee:ff' (or with '-') or its 6 bytes. */
export type Mac = string | Uint8Array;

/** Payload bytes; a string is taken as UTF-8, which keeps fixtures readable. */
export type Bytes = Uint8Array | string;

export function macBytes(mac: Mac): Buffer {
  if (typeof mac !== 'string') {
    if (mac.length !== 6) throw new RangeError(`a MAC address is 6 bytes, got ${mac.length}`);
    return Buffer.from(mac);
  }
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new RangeError(`not a MAC address: '${mac}'`);
  }
  return Buffer.from(parts.map((p) => Number.parseInt(p, 16)));
}

function bytes(data: Bytes | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
}

function addr(address: Address, family: Family): Buffer {
  return Buffer.from(addressBytes(address, family));
}

// Catches fixture mistakes (a 13-bit field given 9000) instead of silently masking them.
function checkField(value: number, bits: number, name: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new RangeError(`${name} must be an integer in [0, 2^${bits}), got ${value}`);
  }
  return value;
}

// Zero-pads to a multiple of `unit` bytes (IPv4 options: EOL; TCP options: EOL).
function padTo(data: Buffer, unit: number): Buffer {
  const rem = data.length % unit;
  return rem === 0 ? data : Buffer.concat([data, Buffer.alloc(unit - rem)]);
}

// ─── Transport layer ─────────────────────────────────────────────────────────────────

/** The enclosing IP header's view that a transport checksum needs. */
export interface IpEndpoints {
  readonly family: Family;
  readonly src: Uint8Array;
  /** The pseudo-header destination: the final one when a routing header is present. */
  readonly dst: Uint8Array;
}

/** An upper-layer segment whose bytes are fixed once the IP endpoints are known. */
export interface Transport {
  readonly protocol: number;
  encode(ip: IpEndpoints): Buffer;
}

/** Bytes under an IP header as they are: an unknown protocol, or a hand-made segment. */
export function rawTransport(protocol: number, data: Bytes): Transport {
  const fixed = bytes(data);
  return { protocol, encode: () => Buffer.from(fixed) };
}

export interface TcpFlags {
  readonly fin?: boolean;
  readonly syn?: boolean;
  readonly rst?: boolean;
  readonly psh?: boolean;
  readonly ack?: boolean;
  readonly urg?: boolean;
  readonly ece?: boolean;
  readonly cwr?: boolean;
}

export interface TcpOptions {
  readonly sport: number;
  readonly dport: number;
  readonly seq?: number;
  /** Acknowledgment number (the ACK flag is in `flags`). */
  readonly ack?: number;
  readonly flags?: TcpFlags;
  readonly window?: number;
  readonly urgent?: number;
  /** TCP options, zero-padded to a multiple of 4 bytes. */
  readonly options?: Uint8Array;
  /** Data offset in 32-bit words; default: 5 + options. Override for malformed headers. */
  readonly dataOffset?: number;
  readonly checksum?: number;
  readonly payload?: Bytes;
}

function tcpFlagBits(flags: TcpFlags): number {
  return (flags.fin === true ? 0x01 : 0) | (flags.syn === true ? 0x02 : 0) | (flags.rst === true ? 0x04 : 0) |
    (flags.psh === true ? 0x08 : 0) | (flags.ack === true ? 0x10 : 0) | (flags.urg === true ? 0x20 : 0) |
    (flags.ece === true ? 0x40 : 0) | (flags.cwr === true ? 0x80 : 0);
}

export function tcp(o: TcpOptions): Transport {
  return {
    protocol: IPPROTO_TCP,
    encode(ip) {
      const options = padTo(bytes(o.options), 4);
      const payload = bytes(o.payload);
      const header = Buffer.alloc(20 + options.length);
      header.writeUInt16BE(o.sport, 0);
      header.writeUInt16BE(o.dport, 2);
      header.writeUInt32BE(o.seq ?? 0, 4);
      header.writeUInt32BE(o.ack ?? 0, 8);
      header[12] = checkField(o.dataOffset ?? header.length / 4, 4, 'TCP data offset') << 4;
      header[13] = tcpFlagBits(o.flags ?? {});
      header.writeUInt16BE(o.window ?? 65535, 14);
      header.writeUInt16BE(o.urgent ?? 0, 18);
      options.copy(header, 20);
      const segment = Buffer.concat([header, payload]);
      segment.writeUInt16BE(o.checksum ?? transportChecksum(ip.family, ip.src, ip.dst, IPPROTO_TCP, segment), 16);
      return segment;
    },
  };
}

export interface UdpOptions {
  readonly sport: number;
  readonly dport: number;
  readonly payload?: Bytes;
  /** Send checksum 0 ("none"): legal over IPv4, and for tunnels over IPv6 (RFC 6935). */
  readonly zeroChecksum?: boolean;
  readonly checksum?: number;
  /** Length field override; default 8 + payload. */
  readonly length?: number;
}

export function udp(o: UdpOptions): Transport {
  return {
    protocol: IPPROTO_UDP,
    encode(ip) {
      const payload = bytes(o.payload);
      const segment = Buffer.alloc(UDP_HLEN + payload.length);
      segment.writeUInt16BE(o.sport, 0);
      segment.writeUInt16BE(o.dport, 2);
      segment.writeUInt16BE(o.length ?? segment.length, 4);
      payload.copy(segment, UDP_HLEN);
      let checksum = o.checksum;
      if (checksum === undefined) {
        checksum = o.zeroChecksum === true ? 0 : transportChecksum(ip.family, ip.src, ip.dst, IPPROTO_UDP, segment);
        // RFC 768: a computed 0 is sent as all ones, since 0 means "no checksum".
        if (checksum === 0 && o.zeroChecksum !== true) checksum = 0xffff;
      }
      segment.writeUInt16BE(checksum, 6);
      return segment;
    },
  };
}

/** Any ICMP / ICMPv6 message: type, code, checksum, the 4 type-specific bytes, then the body. */
export interface IcmpOptions {
  readonly type: number;
  readonly code?: number;
  /** Bytes 4..7 as a big-endian u32 (identifier + sequence, MTU, pointer, unused). */
  readonly rest?: number;
  readonly payload?: Bytes;
  readonly checksum?: number;
}

function icmpMessage(protocol: number, o: IcmpOptions): Transport {
  return {
    protocol,
    encode(ip) {
      const payload = bytes(o.payload);
      const message = Buffer.alloc(ICMP_HLEN + payload.length);
      message[0] = checkField(o.type, 8, 'ICMP type');
      message[1] = checkField(o.code ?? 0, 8, 'ICMP code');
      message.writeUInt32BE(o.rest ?? 0, 4);
      payload.copy(message, ICMP_HLEN);
      // ICMPv4 sums the message alone; ICMPv6 includes the pseudo-header (RFC 4443 §2.3).
      const checksum = o.checksum ??
        (protocol === IPPROTO_ICMPV6
          ? transportChecksum(ip.family, ip.src, ip.dst, IPPROTO_ICMPV6, message)
          : internetChecksum(message));
      message.writeUInt16BE(checksum, 2);
      return message;
    },
  };
}

export function icmp(o: IcmpOptions): Transport {
  return icmpMessage(IPPROTO_ICMP, o);
}

export function icmp6(o: IcmpOptions): Transport {
  return icmpMessage(IPPROTO_ICMPV6, o);
}

export interface EchoOptions {
  readonly id?: number;
  readonly seq?: number;
  readonly code?: number;
  readonly payload?: Bytes;
}

function echoRest(o: EchoOptions): number {
  return (((o.id ?? 0) << 16) | (o.seq ?? 0)) >>> 0;
}

export function icmpEchoRequest(o: EchoOptions = {}): Transport {
  return icmp({ type: 8, code: o.code ?? 0, rest: echoRest(o), payload: o.payload });
}

export function icmpEchoReply(o: EchoOptions = {}): Transport {
  return icmp({ type: 0, code: o.code ?? 0, rest: echoRest(o), payload: o.payload });
}

export function icmp6EchoRequest(o: EchoOptions = {}): Transport {
  return icmp6({ type: 128, code: o.code ?? 0, rest: echoRest(o), payload: o.payload });
}

export function icmp6EchoReply(o: EchoOptions = {}): Transport {
  return icmp6({ type: 129, code: o.code ?? 0, rest: echoRest(o), payload: o.payload });
}

/** An ICMP error's quote of an offending packet (its L3 bytes), whole unless a length is given. */
export interface QuoteOptions {
  readonly quote: Uint8Array;
  readonly quoteLength?: number;
}

function quoted(o: QuoteOptions): Buffer {
  const q = Buffer.from(o.quote);
  return o.quoteLength === undefined ? q : q.subarray(0, o.quoteLength);
}

/** ICMP destination unreachable (type 3). `nextHopMtu` fills the low 16 bits of the second word. */
export function icmpDestUnreachable(o: QuoteOptions & { readonly code: number; readonly nextHopMtu?: number }): Transport {
  return icmp({ type: 3, code: o.code, rest: o.nextHopMtu ?? 0, payload: quoted(o) });
}

/** ICMP fragmentation needed and DF set (type 3 code 4, RFC 1191). */
export function icmpFragNeeded(o: QuoteOptions & { readonly mtu: number }): Transport {
  return icmpDestUnreachable({ ...o, code: 4, nextHopMtu: checkField(o.mtu, 16, 'next-hop MTU') });
}

/** ICMPv6 destination unreachable (type 1); the second word is unused. */
export function icmp6DestUnreachable(o: QuoteOptions & { readonly code: number }): Transport {
  return icmp6({ type: 1, code: o.code, rest: 0, payload: quoted(o) });
}

/** ICMPv6 packet too big (type 2 code 0) with a 32-bit MTU. */
export function icmp6PacketTooBig(o: QuoteOptions & { readonly mtu: number }): Transport {
  return icmp6({ type: 2, code: 0, rest: o.mtu, payload: quoted(o) });
}

// ─── IPv4 ────────────────────────────────────────────────────────────────────────────

export interface Ipv4Options {
  readonly src: Address;
  readonly dst: Address;
  readonly tos?: number;
  readonly id?: number;
  readonly df?: boolean;
  readonly mf?: boolean;
  /** The reserved flag bit (RFC 3514's "evil bit"): must be zero on the wire. */
  readonly reservedFlag?: boolean;
  /** Fragment offset in 8-byte units, as in the header. */
  readonly fragmentOffset?: number;
  readonly ttl?: number;
  /** Protocol field; default: the transport's. Required when the payload is raw bytes. */
  readonly protocol?: number;
  /** Option bytes, zero-padded (End of Option List) to a multiple of 4. */
  readonly options?: Uint8Array;
  // Overrides for malformed packets; each defaults to the correct value.
  readonly version?: number;
  /** Header length in 32-bit words. */
  readonly ihl?: number;
  readonly totalLength?: number;
  readonly checksum?: number;
}

/** An IPv4 packet: header, then the payload (a transport, or raw bytes with `protocol`). */
export function ipv4(o: Ipv4Options, payload: Transport | Uint8Array = Buffer.alloc(0)): Buffer {
  const src = addr(o.src, 4);
  const dst = addr(o.dst, 4);
  const body = payload instanceof Uint8Array ? Buffer.from(payload) : payload.encode({ family: 4, src, dst });
  const protocol = o.protocol ?? (payload instanceof Uint8Array ? undefined : payload.protocol);
  if (protocol === undefined) throw new RangeError('ipv4: raw payload bytes need an explicit protocol');

  const options = padTo(bytes(o.options), 4);
  const header = Buffer.alloc(IPV4_HLEN + options.length);
  header[0] = (checkField(o.version ?? 4, 4, 'IPv4 version') << 4) |
    checkField(o.ihl ?? header.length / 4, 4, 'IPv4 IHL');
  header[1] = checkField(o.tos ?? 0, 8, 'IPv4 TOS');
  header.writeUInt16BE(o.totalLength ?? header.length + body.length, 2);
  header.writeUInt16BE(o.id ?? 0, 4);
  const flags = (o.reservedFlag === true ? 0x8000 : 0) | (o.df === true ? 0x4000 : 0) | (o.mf === true ? 0x2000 : 0);
  header.writeUInt16BE(flags | checkField(o.fragmentOffset ?? 0, 13, 'IPv4 fragment offset'), 6);
  header[8] = checkField(o.ttl ?? 64, 8, 'IPv4 TTL');
  header[9] = checkField(protocol, 8, 'IPv4 protocol');
  src.copy(header, 12);
  dst.copy(header, 16);
  options.copy(header, IPV4_HLEN);
  header.writeUInt16BE(o.checksum ?? ipv4HeaderChecksum(header), 10);
  return Buffer.concat([header, body]);
}

// ─── IPv6 ────────────────────────────────────────────────────────────────────────────

/** An IPv6 extension header; `encode` is given the header that follows it. */
export interface Ipv6Extension {
  readonly protocol: number;
  encode(nextHeader: number): Buffer;
  /** A routing header with segments left changes the pseudo-header's destination. */
  readonly finalDestination?: Address;
}

export interface OptionsHeaderOptions {
  /** TLV-encoded options; padded with Pad1 / PadN to the 8-byte boundary. */
  readonly options?: Uint8Array;
  /** Next Header override. */
  readonly nextHeader?: number;
}

// Hop-by-hop and destination options share a layout: next header, length in 8-byte
// units not counting the first 8, then options padded so the header ends on 8 bytes.
function optionsHeader(protocol: number, o: OptionsHeaderOptions): Ipv6Extension {
  return {
    protocol,
    encode(nextHeader) {
      const options = bytes(o.options);
      const unpadded = 2 + options.length;
      const padding = (8 - (unpadded % 8)) % 8;
      const out = Buffer.alloc(unpadded + padding);
      out[0] = o.nextHeader ?? nextHeader;
      out[1] = out.length / 8 - 1;
      options.copy(out, 2);
      if (padding === 1) {
        out[unpadded] = 0; // Pad1
      } else if (padding > 1) {
        out[unpadded] = 1; // PadN
        out[unpadded + 1] = padding - 2;
      }
      return out;
    },
  };
}

export function hopByHop(o: OptionsHeaderOptions = {}): Ipv6Extension {
  return optionsHeader(IPPROTO_HOPOPTS, o);
}

export function destinationOptions(o: OptionsHeaderOptions = {}): Ipv6Extension {
  return optionsHeader(IPPROTO_DSTOPTS, o);
}

export interface RoutingHeaderOptions {
  readonly routingType?: number;
  readonly segmentsLeft?: number;
  /** Type 0 / type 2 style address list, after 4 reserved bytes. */
  readonly addresses?: readonly Address[];
  /** Type-specific data replacing the reserved word and addresses (length a multiple of 8, minus 4). */
  readonly data?: Uint8Array;
  readonly nextHeader?: number;
}

export function routingHeader(o: RoutingHeaderOptions = {}): Ipv6Extension {
  const addresses = (o.addresses ?? []).map((a) => addr(a, 6));
  const segmentsLeft = o.segmentsLeft ?? 0;
  const last = addresses.at(-1);
  return {
    protocol: IPPROTO_ROUTING,
    ...(segmentsLeft > 0 && last !== undefined ? { finalDestination: last } : {}),
    encode(nextHeader) {
      const data = o.data !== undefined ? Buffer.from(o.data) : Buffer.concat([Buffer.alloc(4), ...addresses]);
      const out = Buffer.alloc(4 + data.length);
      if (out.length % 8 !== 0) throw new RangeError(`routing header length ${out.length} is not a multiple of 8`);
      out[0] = o.nextHeader ?? nextHeader;
      out[1] = out.length / 8 - 1;
      out[2] = o.routingType ?? 0;
      out[3] = checkField(segmentsLeft, 8, 'segments left');
      data.copy(out, 4);
      return out;
    },
  };
}

export interface FragmentHeaderOptions {
  /** Fragment offset in 8-byte units, as in the header. */
  readonly offset?: number;
  readonly more?: boolean;
  readonly id?: number;
  readonly nextHeader?: number;
}

export function fragmentHeader(o: FragmentHeaderOptions = {}): Ipv6Extension {
  return {
    protocol: IPPROTO_FRAGMENT,
    encode(nextHeader) {
      const out = Buffer.alloc(8);
      out[0] = o.nextHeader ?? nextHeader;
      out.writeUInt16BE((checkField(o.offset ?? 0, 13, 'fragment offset') << 3) | (o.more === true ? 1 : 0), 2);
      out.writeUInt32BE(o.id ?? 0, 4);
      return out;
    },
  };
}

export interface Ipv6Options {
  readonly src: Address;
  readonly dst: Address;
  readonly trafficClass?: number;
  readonly flowLabel?: number;
  readonly hopLimit?: number;
  /** Extension headers in wire order; their Next Header fields are chained automatically. */
  readonly extensions?: readonly Ipv6Extension[];
  /** Next Header of the fixed header; default: the first extension's, else the transport's. */
  readonly nextHeader?: number;
  /** Transport protocol number when the payload is raw bytes (ends the extension chain). */
  readonly protocol?: number;
  // Overrides for malformed packets.
  readonly version?: number;
  readonly payloadLength?: number;
}

/** An IPv6 packet: fixed header, extension headers, then the payload. */
export function ipv6(o: Ipv6Options, payload: Transport | Uint8Array = Buffer.alloc(0)): Buffer {
  const src = addr(o.src, 6);
  const dst = addr(o.dst, 6);
  const extensions = o.extensions ?? [];
  const routed = extensions.findLast((e) => e.finalDestination !== undefined)?.finalDestination;
  const pseudoDst = routed === undefined ? dst : addr(routed, 6);
  const body = payload instanceof Uint8Array ? Buffer.from(payload) : payload.encode({ family: 6, src, dst: pseudoDst });
  const transportProtocol = o.protocol ?? (payload instanceof Uint8Array ? IPPROTO_NONE : payload.protocol);

  const encodedExtensions = extensions.map((ext, i) => ext.encode(extensions[i + 1]?.protocol ?? transportProtocol));
  const rest = Buffer.concat([...encodedExtensions, body]);

  const header = Buffer.alloc(IPV6_HLEN);
  const tc = checkField(o.trafficClass ?? 0, 8, 'traffic class');
  const label = checkField(o.flowLabel ?? 0, 20, 'flow label');
  header.writeUInt32BE(((checkField(o.version ?? 6, 4, 'IPv6 version') << 28) | (tc << 20) | label) >>> 0, 0);
  header.writeUInt16BE(o.payloadLength ?? rest.length, 4);
  header[6] = o.nextHeader ?? extensions[0]?.protocol ?? transportProtocol;
  header[7] = checkField(o.hopLimit ?? 64, 8, 'hop limit');
  src.copy(header, 8);
  dst.copy(header, 24);
  return Buffer.concat([header, rest]);
}

// ─── Ethernet ────────────────────────────────────────────────────────────────────────

export interface VlanTag {
  /** 0x8100 (802.1Q C-tag, the default) or 0x88a8 (802.1ad S-tag). */
  readonly tpid?: number;
  readonly vid: number;
  readonly pcp?: number;
  readonly dei?: boolean;
}

export interface EthernetOptions {
  readonly dst: Mac;
  readonly src: Mac;
  /** One tag, or a stack outermost first (802.1ad: the S-tag, then the C-tag). */
  readonly vlan?: VlanTag | readonly VlanTag[];
  /** EtherType of the payload; default from the payload's IP version nibble. */
  readonly type?: number;
  /** Zero-pad the frame to at least this many bytes, as a NIC pads short frames to 60. */
  readonly padTo?: number;
}

function etherTypeOf(l3: Uint8Array): number {
  const version = (l3[0] ?? 0) >>> 4;
  if (version === 4) return ETH_P_IP;
  if (version === 6) return ETH_P_IPV6;
  throw new RangeError(`ether: cannot infer the EtherType of a payload with version nibble ${version}; pass type`);
}

export function ether(o: EthernetOptions, payload: Uint8Array): Buffer {
  const tags: readonly VlanTag[] = o.vlan === undefined ? [] : 'vid' in o.vlan ? [o.vlan] : o.vlan;
  const header = Buffer.alloc(12 + 4 * tags.length + 2);
  macBytes(o.dst).copy(header, 0);
  macBytes(o.src).copy(header, 6);
  tags.forEach((tag, i) => {
    const at = 12 + 4 * i;
    header.writeUInt16BE(tag.tpid ?? ETH_P_8021Q, at);
    const tci = (checkField(tag.pcp ?? 0, 3, 'VLAN PCP') << 13) | (tag.dei === true ? 0x1000 : 0) |
      checkField(tag.vid, 12, 'VLAN ID');
    header.writeUInt16BE(tci, at + 2);
  });
  header.writeUInt16BE(o.type ?? etherTypeOf(payload), header.length - 2);
  const frame = Buffer.concat([header, payload]);
  if (o.padTo !== undefined && frame.length < o.padTo) return Buffer.concat([frame, Buffer.alloc(o.padTo - frame.length)]);
  return frame;
}

// ─── Reading frames (for the expectation builders) ───────────────────────────────────

interface UntaggedFrame {
  readonly dst: Buffer;
  readonly src: Buffer;
  readonly etherType: number;
  /** Everything after the Ethernet header, trailing padding included. */
  readonly l3: Buffer;
}

// The balancer passes VLAN-tagged frames, so nothing it transmits starts from one.
function splitFrame(frame: Uint8Array, what: string): UntaggedFrame {
  const buf = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (buf.length < ETH_HLEN) throw new RangeError(`${what}: frame of ${buf.length} bytes has no Ethernet header`);
  const etherType = buf.readUInt16BE(12);
  if (etherType === ETH_P_8021Q || etherType === ETH_P_8021AD) {
    throw new RangeError(`${what}: VLAN-tagged frames are passed, never transmitted by the balancer`);
  }
  return { dst: buf.subarray(0, 6), src: buf.subarray(6, 12), etherType, l3: buf.subarray(ETH_HLEN) };
}

/** The IP version of an L3 packet, checked against its first byte. */
function ipFamily(l3: Uint8Array, what: string): Family {
  const version = (l3[0] ?? 0) >>> 4;
  if (version === 4 && l3.length >= IPV4_HLEN) return 4;
  if (version === 6 && l3.length >= IPV6_HLEN) return 6;
  throw new RangeError(`${what}: not an IPv4 or IPv6 packet (version ${version}, ${l3.length} bytes)`);
}

/** The packet's own length from its header (total length / 40 + payload length). */
function ipLength(l3: Buffer, family: Family): number {
  return family === 4 ? l3.readUInt16BE(2) : IPV6_HLEN + l3.readUInt16BE(4);
}

// DSCP and ECN as one byte: IPv4 TOS, or the IPv6 traffic class split across bytes 0-1.
function tosOf(l3: Uint8Array, family: Family): number {
  return family === 4 ? (l3[1] ?? 0) : (((l3[0] ?? 0) & 0x0f) << 4) | ((l3[1] ?? 0) >>> 4);
}

const ICMP4_ERROR_TYPES = new Set([3, 11, 12]); // dest unreachable, time exceeded, parameter problem
const ICMP6_ERROR_TYPES = new Set([1, 2, 3, 4]); // dest unreachable, too big, time exceeded, parameter problem

/**
 * The flow-hash input of an L3 packet per "Flow hash": TCP / UDP give their own source and
 * ports; an ICMP error gives the flow it quotes, turned round to client→VIP (client = the
 * quoted destination). Null for what is never hashed: echo, other ICMP, other protocols,
 * IPv4 fragments and IPv6 packets with extension headers (never forwarded), and quotes
 * too short to hold the ports.
 */
export function flowKeyOf(l3: Uint8Array): FlowInput | null {
  const buf = Buffer.from(l3.buffer, l3.byteOffset, l3.byteLength);
  const family = ipFamily(buf, 'flowKeyOf');
  const hlen = family === 4 ? (buf[0]! & 0x0f) * 4 : IPV6_HLEN;
  const protocol = family === 4 ? buf[9]! : buf[6]!;
  if (family === 4 && (buf.readUInt16BE(6) & 0x3fff) !== 0) return null;
  if (buf.length < hlen + 8) return null;

  const srcAt = family === 4 ? 12 : 8;
  const dstAt = family === 4 ? 16 : 24;
  const alen = family === 4 ? 4 : 16;
  if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
    return {
      family,
      src: Buffer.from(buf.subarray(srcAt, srcAt + alen)),
      sport: buf.readUInt16BE(hlen),
      dport: buf.readUInt16BE(hlen + 2),
    };
  }
  const isIcmpError = family === 4
    ? protocol === IPPROTO_ICMP && ICMP4_ERROR_TYPES.has(buf[hlen]!)
    : protocol === IPPROTO_ICMPV6 && ICMP6_ERROR_TYPES.has(buf[hlen]!);
  if (!isIcmpError) return null;

  const inner = buf.subarray(hlen + ICMP_HLEN);
  if (inner.length < (family === 4 ? IPV4_HLEN : IPV6_HLEN) || (inner[0]! >>> 4) !== family) return null;
  const innerHlen = family === 4 ? (inner[0]! & 0x0f) * 4 : IPV6_HLEN;
  const innerProtocol = family === 4 ? inner[9]! : inner[6]!;
  if ((innerProtocol !== IPPROTO_TCP && innerProtocol !== IPPROTO_UDP) || inner.length < innerHlen + 4) return null;
  return {
    family,
    src: Buffer.from(inner.subarray(dstAt, dstAt + alen)),
    sport: inner.readUInt16BE(innerHlen + 2),
    dport: inner.readUInt16BE(innerHlen),
  };
}

// ─── Encapsulation ───────────────────────────────────────────────────────────────────

/** The balancer's load-time configuration, as far as encapsulation reads it. */
export interface TunnelConfig {
  /** IPIP outer source prefix: its upper 16 bits are kept. */
  readonly tunnelSrc4: Address;
  /** IP6IP6 / 4in6 outer source prefix: its first 96 bits are kept. */
  readonly tunnelSrc6: Address;
  /** GUE outer source over IPv4. */
  readonly nodeAddr4: Address;
  /** GUE outer source over IPv6. */
  readonly nodeAddr6: Address;
  readonly guePort: number;
  /** Outer TTL / hop limit. */
  readonly ttl: number;
  readonly nexthopMac: Mac;
}

/** What is encapsulated: an incoming frame, or its L3 bytes and destination MAC. */
export type EncapSource =
  | { readonly frame: Uint8Array }
  | { readonly inner: Uint8Array; readonly srcMac: Mac };

export type EncapParams = EncapSource & {
  /** The backend: the outer destination, whose family is the outer family. */
  readonly backend: Address;
  readonly config: TunnelConfig;
  /** The flow's entropy; default: flowEntropy(flowKeyOf(inner)). */
  readonly entropy?: number;
};

/** Bytes an encapsulation adds: the outer IP header, plus UDP for GUE. */
export function encapOverhead(outer: Family, gue: boolean): number {
  return (outer === 4 ? IPV4_HLEN : IPV6_HLEN) + (gue ? UDP_HLEN : 0);
}

interface Resolved {
  readonly inner: Buffer;
  readonly innerFamily: Family;
  readonly srcMac: Buffer;
  readonly outer: Family;
  readonly backend: Buffer;
  readonly entropy: number;
}

function resolve(p: EncapParams, what: string): Resolved {
  let inner: Buffer;
  let srcMac: Buffer;
  if ('frame' in p) {
    const frame = splitFrame(p.frame, what);
    inner = Buffer.from(frame.l3);
    srcMac = Buffer.from(frame.dst);
  } else {
    inner = Buffer.from(p.inner);
    srcMac = macBytes(p.srcMac);
  }
  const innerFamily = ipFamily(inner, what);
  const outer = addressFamily(p.backend);
  let entropy = p.entropy;
  if (entropy === undefined) {
    const key = flowKeyOf(inner);
    if (key === null) throw new RangeError(`${what}: the inner packet is never hashed; pass entropy explicitly`);
    entropy = flowEntropy(key);
  }
  return { inner, innerFamily, srcMac, outer, backend: addr(p.backend, outer), entropy };
}

function outerFrame(r: Resolved, config: TunnelConfig, outerL3: Buffer): Buffer {
  return ether({ dst: config.nexthopMac, src: r.srcMac, type: r.outer === 4 ? ETH_P_IP : ETH_P_IPV6 }, outerL3);
}

// IPIP, 6in4, 4in6 and IP6IP6: the inner packet straight after the outer IP header.
function encapIp(p: EncapParams, innerFamily: Family, outer: Family, what: string): Buffer {
  const r = resolve(p, what);
  if (r.innerFamily !== innerFamily) throw new RangeError(`${what}: inner packet is IPv${r.innerFamily}, not IPv${innerFamily}`);
  if (r.outer !== outer) throw new RangeError(`${what}: backend is IPv${r.outer}, not IPv${outer}`);
  const protocol = innerFamily === 4 ? IPPROTO_IPIP : IPPROTO_IPV6;
  const tos = tosOf(r.inner, innerFamily);
  const { config } = p;
  const outerL3 = outer === 4
    ? ipv4({
      src: tunnelSource4(config.tunnelSrc4, r.entropy), dst: r.backend,
      tos, id: 0, df: true, ttl: config.ttl, protocol,
    }, r.inner)
    : ipv6({
      src: tunnelSource6(config.tunnelSrc6, r.entropy), dst: r.backend,
      trafficClass: tos, flowLabel: flowLabel(r.entropy), hopLimit: config.ttl, protocol,
    }, r.inner);
  return outerFrame(r, config, outerL3);
}

/** IPv4 in IPv4 (protocol 4): outer source from tunnel_src4 and the entropy. */
export function encapIpip(p: EncapParams): Buffer {
  return encapIp(p, 4, 4, 'encapIpip');
}

/** IPv6 in IPv4 (protocol 41): an IPv6 VIP served by an IPv4 backend. */
export function encap6in4(p: EncapParams): Buffer {
  return encapIp(p, 6, 4, 'encap6in4');
}

/** IPv4 in IPv6 (next header 4): an IPv4 VIP served by an IPv6 backend. */
export function encap4in6(p: EncapParams): Buffer {
  return encapIp(p, 4, 6, 'encap4in6');
}

/** IPv6 in IPv6 (next header 41): outer source from tunnel_src6 and the entropy. */
export function encapIp6ip6(p: EncapParams): Buffer {
  return encapIp(p, 6, 6, 'encapIp6ip6');
}

/** GUE variant 1 over the backend's family: UDP to gue_port, zero checksum, from node_addr4/6. */
export function encapGue(p: EncapParams): Buffer {
  const r = resolve(p, 'encapGue');
  const { config } = p;
  const tos = tosOf(r.inner, r.innerFamily);
  const segment = udp({ sport: gueSourcePort(r.entropy), dport: config.guePort, payload: r.inner, zeroChecksum: true });
  const outerL3 = r.outer === 4
    ? ipv4({ src: config.nodeAddr4, dst: r.backend, tos, id: 0, df: true, ttl: config.ttl }, segment)
    : ipv6({
      src: config.nodeAddr6, dst: r.backend,
      trafficClass: tos, flowLabel: flowLabel(r.entropy), hopLimit: config.ttl,
    }, segment);
  return outerFrame(r, config, outerL3);
}

/** The encapsulation the balancer picks: GUE if the VIP says so, else by inner and backend family. */
export function encapsulate(p: EncapParams & { readonly gue?: boolean }): Buffer {
  if (p.gue === true) return encapGue(p);
  const inner = 'frame' in p ? splitFrame(p.frame, 'encapsulate').l3 : p.inner;
  const innerFamily = ipFamily(inner, 'encapsulate');
  const outer = addressFamily(p.backend);
  if (innerFamily === 4) return outer === 4 ? encapIpip(p) : encap4in6(p);
  return outer === 4 ? encap6in4(p) : encapIp6ip6(p);
}

// ─── Decapsulation ───────────────────────────────────────────────────────────────────

/**
 * What the decap program makes of an encapsulated frame: the outer IP header (and GUE's
 * UDP header) removed, the Ethernet addresses kept, the EtherType of the inner family.
 * Everything after the outer headers to the end of the frame is kept, as removing
 * headers at the front leaves the tail alone.
 */
export function decapsulate(frame: Uint8Array): Buffer {
  const f = splitFrame(frame, 'decapsulate');
  const outer = ipFamily(f.l3, 'decapsulate');
  const hlen = outer === 4 ? (f.l3[0]! & 0x0f) * 4 : IPV6_HLEN;
  const protocol = outer === 4 ? f.l3[9]! : f.l3[6]!;
  let innerAt: number;
  if (protocol === IPPROTO_IPIP || protocol === IPPROTO_IPV6) innerAt = hlen;
  else if (protocol === IPPROTO_UDP) innerAt = hlen + UDP_HLEN;
  else throw new RangeError(`decapsulate: outer protocol ${protocol} is not a tunnel`);
  const inner = Buffer.from(f.l3.subarray(innerAt));
  const innerFamily = ipFamily(inner, 'decapsulate');
  // RFC 6040 (docs/dataplane.md, decap): the outer congestion mark reaches the inner header.
  const ecn = decapEcn(ecnOf(f.l3, outer), ecnOf(inner, innerFamily));
  if (ecn === 'drop') throw new RangeError('decapsulate: CE over a Not-ECT inner packet is dropped (RFC 6040)');
  setEcn(inner, innerFamily, ecn);
  return ether({ dst: f.dst, src: f.src, type: innerFamily === 4 ? ETH_P_IP : ETH_P_IPV6 }, inner);
}

/** The ECN field (two low bits of the IPv4 TOS / IPv6 traffic class) of an IP header. */
export function ecnOf(l3: Uint8Array, family: Family): number {
  return family === 4 ? l3[1]! & 3 : (l3[1]! >> 4) & 3;
}

/** Sets the ECN field (IPv4: and the header checksum) in place. */
export function setEcn(l3: Uint8Array, family: Family, ecn: number): void {
  if (family === 4) {
    l3[1] = (l3[1]! & ~3) | ecn;
    const hlen = (l3[0]! & 0x0f) * 4;
    Buffer.from(l3.buffer, l3.byteOffset, l3.length).writeUInt16BE(0, 10);
    Buffer.from(l3.buffer, l3.byteOffset, l3.length).writeUInt16BE(ipv4HeaderChecksum(l3.subarray(0, hlen)), 10);
  } else {
    l3[1] = (l3[1]! & ~0x30) | (ecn << 4);
  }
}

/** RFC 6040 section 4.2, normal mode: the inner ECN field after decapsulation, or 'drop'. */
export function decapEcn(outer: number, inner: number): number | 'drop' {
  const CE = 3, ECT0 = 2, ECT1 = 1, NOT_ECT = 0;
  if (outer === CE) return inner === NOT_ECT ? 'drop' : CE;
  if (outer === ECT1 && inner === ECT0) return ECT1;
  return inner;
}

// ─── ICMP the balancer originates ────────────────────────────────────────────────────

/**
 * The balancer's answer to an ICMP / ICMPv6 echo request frame to a VIP: Ethernet and IP
 * addresses swapped, TTL / hop limit 64, type 0 / 129; TOS, ID, flags, code, identifier,
 * sequence and data kept; checksums recomputed over the changed bytes. Bytes after the
 * IP packet (Ethernet padding) stay, as the program answers in the frame it received.
 */
export function balancerEchoReply(request: Uint8Array): Buffer {
  const f = splitFrame(request, 'balancerEchoReply');
  const family = ipFamily(f.l3, 'balancerEchoReply');
  const reply = Buffer.concat([f.src, f.dst, request.subarray(12)]);
  const l3 = reply.subarray(ETH_HLEN);
  const end = ipLength(l3, family);

  if (family === 4) {
    const hlen = (l3[0]! & 0x0f) * 4;
    if (l3[9] !== IPPROTO_ICMP || l3[hlen] !== 8) throw new RangeError('balancerEchoReply: not an ICMP echo request');
    swap(l3, 12, 16, 4);
    l3[8] = BALANCER_ICMP_TTL;
    l3.writeUInt16BE(ipv4HeaderChecksum(l3.subarray(0, hlen)), 10);
    const message = l3.subarray(hlen, end);
    message[0] = 0;
    message.writeUInt16BE(0, 2);
    message.writeUInt16BE(internetChecksum(message), 2);
  } else {
    if (l3[6] !== IPPROTO_ICMPV6 || l3[IPV6_HLEN] !== 128) {
      throw new RangeError('balancerEchoReply: not an ICMPv6 echo request');
    }
    swap(l3, 8, 24, 16);
    l3[7] = BALANCER_ICMP_TTL;
    const message = l3.subarray(IPV6_HLEN, end);
    message[0] = 129;
    message.writeUInt16BE(0, 2);
    message.writeUInt16BE(transportChecksum(6, l3.subarray(8, 24), l3.subarray(24, 40), IPPROTO_ICMPV6, message), 2);
  }
  return reply;
}

function swap(buf: Buffer, a: number, b: number, length: number): void {
  const saved = Buffer.from(buf.subarray(a, a + length));
  buf.copy(buf, a, b, b + length);
  saved.copy(buf, b);
}

export interface TooBigOptions {
  /** The configured egress MTU. */
  readonly mtu: number;
  /** encapOverhead(outer family, gue). */
  readonly overhead: number;
}

/**
 * The balancer's ICMP fragmentation-needed for an IPv4 frame too big to encapsulate:
 * from the VIP to the client, next-hop MTU = mtu - overhead, quoting the first 64 bytes.
 */
export function balancerFragNeeded(offending: Uint8Array, o: TooBigOptions): Buffer {
  const f = splitFrame(offending, 'balancerFragNeeded');
  if (ipFamily(f.l3, 'balancerFragNeeded') !== 4) throw new RangeError('balancerFragNeeded: not an IPv4 frame');
  const packet = f.l3.subarray(0, Math.min(f.l3.length, ipLength(f.l3, 4)));
  const l3 = ipv4(
    { src: f.l3.subarray(16, 20), dst: f.l3.subarray(12, 16), tos: 0, id: 0, ttl: BALANCER_ICMP_TTL },
    icmpFragNeeded({ mtu: o.mtu - o.overhead, quote: packet, quoteLength: ICMP4_TOOBIG_QUOTE }),
  );
  return ether({ dst: f.src, src: f.dst, type: ETH_P_IP }, l3);
}

/**
 * The balancer's ICMPv6 packet-too-big for an IPv6 frame too big to encapsulate:
 * from the VIP to the client, MTU = max(1280, mtu - overhead), quoting the first 128 bytes.
 */
export function balancerPacketTooBig(offending: Uint8Array, o: TooBigOptions): Buffer {
  const f = splitFrame(offending, 'balancerPacketTooBig');
  if (ipFamily(f.l3, 'balancerPacketTooBig') !== 6) throw new RangeError('balancerPacketTooBig: not an IPv6 frame');
  const packet = f.l3.subarray(0, Math.min(f.l3.length, ipLength(f.l3, 6)));
  const l3 = ipv6(
    { src: f.l3.subarray(24, 40), dst: f.l3.subarray(8, 24), trafficClass: 0, flowLabel: 0, hopLimit: BALANCER_ICMP_TTL },
    icmp6PacketTooBig({
      mtu: Math.max(IPV6_MIN_MTU, o.mtu - o.overhead),
      quote: packet,
      quoteLength: ICMP6_TOOBIG_QUOTE,
    }),
  );
  return ether({ dst: f.src, src: f.dst, type: ETH_P_IPV6 }, l3);
}

/** Whether an L3 packet of `l3Length` bytes is too big once encapsulated. */
export function exceedsMtu(l3Length: number, overhead: number, mtu: number): boolean {
  return l3Length + overhead > mtu;
}
