// Decoding frames for people: `describeFrame` prints a frame layer by layer, and
// `diffFrames` names the field where two frames part — "outer ipv4.saddr: expected
// 172.16.34.18, got 172.16.0.1" — so a failing packet fixture explains itself instead of
// dumping hex.
//
// The decoder never throws: malformed and truncated frames (the fixtures build plenty)
// decode as far as their bytes allow, and every byte of the frame belongs to some field,
// so any differing byte can be named.

import { AssertionError } from 'node:assert';
import { Buffer } from 'node:buffer';
import { formatAddress } from '../../src/shared/flowhash.ts';
import type { Family } from '../../src/shared/flowhash.ts';
import { internetChecksum, ipv4HeaderChecksum, transportChecksum } from './checksum.ts';

export interface DecodedField {
  /** The layer's label, e.g. 'eth', 'ipv4', 'outer ipv6', 'inner tcp', 'quoted udp'. */
  readonly layer: string;
  /** Field name, after the Linux header structs where they name it: 'saddr', 'tot_len', 'check'. */
  readonly name: string;
  /** Byte offset of the field in the frame. */
  readonly offset: number;
  /** Bytes the field occupies; bit fields sharing a byte each claim the whole byte. */
  readonly length: number;
  readonly value: string;
  /** A remark on the value, e.g. a checksum's 'ok' or 'bad, want 0x1234'. */
  readonly note?: string;
  /** Opaque bytes (payload, options): differences are named by byte index within the field. */
  readonly opaque?: boolean;
}

export interface DecodedLayer {
  readonly label: string;
  readonly offset: number;
  readonly end: number;
  readonly fields: readonly DecodedField[];
  /** Layer-level remarks: truncation, malformed lengths, GUE. */
  readonly notes: readonly string[];
}

export interface DecodeOptions {
  /**
   * The GUE port. UDP to it is decoded as GUE. Without it, a UDP payload that is exactly
   * one well-formed IP packet is taken for GUE (variant 1 has no header to recognise).
   */
  readonly guePort?: number;
}

// ─── Names ───────────────────────────────────────────────────────────────────────────

const ETHER_TYPES: Readonly<Record<number, string>> = {
  0x0800: 'ipv4', 0x86dd: 'ipv6', 0x0806: 'arp', 0x8100: '802.1Q', 0x88a8: '802.1ad',
};

const IP_PROTOCOLS: Readonly<Record<number, string>> = {
  0: 'hop-by-hop', 1: 'icmp', 4: 'ipip', 6: 'tcp', 17: 'udp', 41: 'ipv6', 43: 'routing', 44: 'fragment',
  58: 'icmpv6', 59: 'no-next-header', 60: 'dest-opts',
};

const ICMP4_TYPES: Readonly<Record<number, string>> = {
  0: 'echo-reply', 3: 'dest-unreachable', 8: 'echo-request', 11: 'time-exceeded', 12: 'parameter-problem',
};

const ICMP4_UNREACH_CODES: Readonly<Record<number, string>> = {
  0: 'net-unreachable', 1: 'host-unreachable', 2: 'protocol-unreachable', 3: 'port-unreachable',
  4: 'frag-needed', 13: 'admin-prohibited',
};

const ICMP6_TYPES: Readonly<Record<number, string>> = {
  1: 'dest-unreachable', 2: 'packet-too-big', 3: 'time-exceeded', 4: 'parameter-problem',
  128: 'echo-request', 129: 'echo-reply',
};

const ICMP6_UNREACH_CODES: Readonly<Record<number, string>> = {
  0: 'no-route', 1: 'admin-prohibited', 3: 'address-unreachable', 4: 'port-unreachable',
};

const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;

function named(value: number, names: Readonly<Record<number, string>>): string {
  const name = names[value];
  return name === undefined ? `${value}` : `${value} (${name})`;
}

function hex(value: number, digits: number): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}

function mac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

const SHOWN_BYTES = 32;

function opaqueValue(bytes: Uint8Array): string {
  if (bytes.length === 0) return '0 bytes';
  const shown = Buffer.from(bytes.subarray(0, SHOWN_BYTES)).toString('hex');
  const printable = bytes.every((b) => b >= 0x20 && b < 0x7f);
  const text = printable && bytes.length <= SHOWN_BYTES ? ` "${Buffer.from(bytes).toString('latin1')}"` : '';
  return `${bytes.length} bytes ${shown}${bytes.length > SHOWN_BYTES ? '…' : ''}${text}`;
}

// ─── Decoder ─────────────────────────────────────────────────────────────────────────

interface Field {
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  readonly value: string;
  readonly note?: string;
  readonly opaque?: boolean;
}

// Labels are mutable: an IP header is known to be an "outer" one only once its payload
// turns out to be a tunnelled packet.
interface Layer {
  label: string;
  readonly offset: number;
  /** Part of an ICMP error's quote, where being cut short is normal. */
  readonly quoted: boolean;
  readonly fields: Field[];
  readonly notes: string[];
}

interface Context {
  readonly buf: Buffer;
  readonly layers: Layer[];
  readonly guePort: number | undefined;
}

/** What an upper-layer decoder needs from the IP header it sits in. */
interface IpInfo {
  readonly family: Family;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  /** The whole datagram is present (not truncated, not a fragment): checksums can be verified. */
  readonly complete: boolean;
  readonly layer: Layer;
  readonly name: 'ipv4' | 'ipv6';
  readonly quoted: boolean;
}

function addLayer(ctx: Context, label: string, offset: number, quoted = false): Layer {
  const layer: Layer = { label, offset, quoted, fields: [], notes: [] };
  ctx.layers.push(layer);
  return layer;
}

function add(layer: Layer, field: Field): void {
  layer.fields.push(field);
}

function addOpaque(ctx: Context, layer: Layer, name: string, from: number, to: number): void {
  if (to <= from) return;
  add(layer, { name, offset: from, length: to - from, value: opaqueValue(ctx.buf.subarray(from, to)), opaque: true });
}

// The header of `layer` needed `need` bytes but the packet ends at `end`; the bytes from
// `from` on are named so that diffs can point at them.
function truncated(ctx: Context, layer: Layer, from: number, end: number, need: number): void {
  layer.notes.push(`${layer.quoted ? 'quoted' : 'truncated'}: ${Math.max(0, end - layer.offset)} of ${need} header bytes`);
  addOpaque(ctx, layer, 'truncated', from, end);
}

// A checksum field's note: 'ok', or 'bad, want X' where X is what the field should hold.
function verifyNote(stored: number, residue: number): string {
  if (residue === 0) return 'ok';
  // The residue is ~(sum); the right value makes the sum 0xffff: want = ~(sum - stored).
  const sumWithout = (~residue & 0xffff) + (~stored & 0xffff);
  const folded = (sumWithout & 0xffff) + (sumWithout >>> 16);
  return `bad, want ${hex(~folded & 0xffff, 4)}`;
}

function decodeEthernet(ctx: Context): void {
  const { buf } = ctx;
  const eth = addLayer(ctx, 'eth', 0);
  if (buf.length < 14) {
    truncated(ctx, eth, 0, buf.length, 14);
    return;
  }
  add(eth, { name: 'dst', offset: 0, length: 6, value: mac(buf.subarray(0, 6)) });
  add(eth, { name: 'src', offset: 6, length: 6, value: mac(buf.subarray(6, 12)) });
  let type = buf.readUInt16BE(12);
  add(eth, { name: 'type', offset: 12, length: 2, value: `${hex(type, 4)}${tagName(type)}` });
  let off = 14;
  let tags = 0;
  while ((type === 0x8100 || type === 0x88a8) && off < buf.length) {
    const vlan = addLayer(ctx, tags === 0 ? 'vlan' : `vlan${tags + 1}`, off);
    tags++;
    if (buf.length - off < 4) {
      truncated(ctx, vlan, off, buf.length, 4);
      return;
    }
    const tci = buf.readUInt16BE(off);
    add(vlan, { name: 'pcp', offset: off, length: 1, value: `${tci >>> 13}` });
    add(vlan, { name: 'dei', offset: off, length: 1, value: `${(tci >>> 12) & 1}` });
    add(vlan, { name: 'vid', offset: off, length: 2, value: `${tci & 0xfff}` });
    type = buf.readUInt16BE(off + 2);
    add(vlan, { name: 'type', offset: off + 2, length: 2, value: `${hex(type, 4)}${tagName(type)}` });
    off += 4;
  }
  if (type === 0x0800) decodeIpv4(ctx, off, buf.length, '', false);
  else if (type === 0x86dd) decodeIpv6(ctx, off, buf.length, '', false);
  else if (off < buf.length) addOpaque(ctx, addLayer(ctx, 'payload', off), 'data', off, buf.length);
}

function tagName(type: number): string {
  const name = ETHER_TYPES[type];
  return name === undefined ? '' : ` (${name})`;
}

/** An IP packet whose version is known only from its first nibble (ICMP quote, GUE payload). */
function decodeIp(ctx: Context, off: number, end: number, prefix: string, quoted: boolean): void {
  const version = (ctx.buf[off] ?? 0) >>> 4;
  if (version === 4) decodeIpv4(ctx, off, end, prefix, quoted);
  else if (version === 6) decodeIpv6(ctx, off, end, prefix, quoted);
  else addOpaque(ctx, addLayer(ctx, `${prefix}data`, off), 'data', off, end);
}

/**
 * Where an IP packet's payload ends, given its own length field: the packet may be
 * shorter than the bytes around it (Ethernet padding) or longer (truncated, or quoted).
 */
function packetEnd(layer: Layer, off: number, end: number, length: number, quoted: boolean): { payloadEnd: number; complete: boolean } {
  const pktEnd = off + length;
  if (pktEnd <= end) return { payloadEnd: pktEnd, complete: true };
  layer.notes.push(quoted ? `quoted: ${end - off} of ${length} bytes` : `truncated: ${end - off} of ${length} bytes present`);
  return { payloadEnd: end, complete: false };
}

function decodeIpv4(ctx: Context, off: number, end: number, prefix: string, quoted: boolean): void {
  const { buf } = ctx;
  const ip = addLayer(ctx, `${prefix}ipv4`, off, quoted);
  if (end - off < 20) {
    truncated(ctx, ip, off, end, 20);
    return;
  }
  const ihl = buf[off]! & 0x0f;
  const totLen = buf.readUInt16BE(off + 2);
  const fragWord = buf.readUInt16BE(off + 6);
  const protocol = buf[off + 9]!;
  const hlen = Math.max(ihl, 5) * 4;
  const headerComplete = off + hlen <= end;

  add(ip, { name: 'version', offset: off, length: 1, value: `${buf[off]! >>> 4}` });
  add(ip, { name: 'ihl', offset: off, length: 1, value: `${ihl}` });
  add(ip, { name: 'tos', offset: off + 1, length: 1, value: hex(buf[off + 1]!, 2) });
  add(ip, { name: 'tot_len', offset: off + 2, length: 2, value: `${totLen}` });
  add(ip, { name: 'id', offset: off + 4, length: 2, value: `${hex(buf.readUInt16BE(off + 4), 4)}` });
  const flags = [fragWord & 0x8000 ? 'RESERVED' : '', fragWord & 0x4000 ? 'DF' : '', fragWord & 0x2000 ? 'MF' : '']
    .filter((f) => f !== '');
  add(ip, { name: 'flags', offset: off + 6, length: 1, value: flags.length === 0 ? 'none' : flags.join('|') });
  add(ip, { name: 'frag_off', offset: off + 6, length: 2, value: `${fragWord & 0x1fff}` });
  add(ip, { name: 'ttl', offset: off + 8, length: 1, value: `${buf[off + 8]}` });
  add(ip, { name: 'protocol', offset: off + 9, length: 1, value: named(protocol, IP_PROTOCOLS) });
  const stored = buf.readUInt16BE(off + 10);
  add(ip, {
    name: 'check', offset: off + 10, length: 2, value: hex(stored, 4),
    ...(headerComplete ? { note: verifyNote(stored, internetChecksum(buf.subarray(off, off + hlen))) } : {}),
  });
  add(ip, { name: 'saddr', offset: off + 12, length: 4, value: formatAddress(buf.subarray(off + 12, off + 16)) });
  add(ip, { name: 'daddr', offset: off + 16, length: 4, value: formatAddress(buf.subarray(off + 16, off + 20)) });
  if (ihl < 5) ip.notes.push(`malformed: IHL ${ihl} < 5`);
  if (!headerComplete) {
    truncated(ctx, ip, off + 20, end, hlen);
    return;
  }
  addOpaque(ctx, ip, 'options', off + 20, off + hlen);
  if (totLen < hlen) ip.notes.push(`malformed: total length ${totLen} < header length ${hlen}`);

  const { payloadEnd, complete } = packetEnd(ip, off, end, Math.max(totLen, hlen), quoted);
  const fragment = (fragWord & 0x3fff) !== 0;
  const info: IpInfo = {
    family: 4, src: buf.subarray(off + 12, off + 16), dst: buf.subarray(off + 16, off + 20),
    complete: complete && !fragment, layer: ip, name: 'ipv4', quoted,
  };
  if ((fragWord & 0x1fff) !== 0) {
    addOpaque(ctx, addLayer(ctx, `${prefix}ipv4 fragment`, off + hlen), 'data', off + hlen, payloadEnd);
  } else {
    decodeUpper(ctx, protocol, off + hlen, payloadEnd, prefix, info);
  }
  if (payloadEnd < end) addOpaque(ctx, addLayer(ctx, `${prefix}trailer`, payloadEnd), 'data', payloadEnd, end);
}

const IPV6_EXTENSIONS: Readonly<Record<number, string>> = { 0: 'hop-by-hop', 43: 'routing', 44: 'fragment', 60: 'dest-opts' };

function decodeIpv6(ctx: Context, off: number, end: number, prefix: string, quoted: boolean): void {
  const { buf } = ctx;
  const ip = addLayer(ctx, `${prefix}ipv6`, off, quoted);
  if (end - off < 40) {
    truncated(ctx, ip, off, end, 40);
    return;
  }
  const word = buf.readUInt32BE(off);
  const payloadLen = buf.readUInt16BE(off + 4);
  let nexthdr = buf[off + 6]!;
  add(ip, { name: 'version', offset: off, length: 1, value: `${word >>> 28}` });
  add(ip, { name: 'traffic_class', offset: off, length: 2, value: hex((word >>> 20) & 0xff, 2) });
  add(ip, { name: 'flow_lbl', offset: off + 1, length: 3, value: hex(word & 0xfffff, 5) });
  add(ip, { name: 'payload_len', offset: off + 4, length: 2, value: `${payloadLen}` });
  add(ip, { name: 'nexthdr', offset: off + 6, length: 1, value: named(nexthdr, IP_PROTOCOLS) });
  add(ip, { name: 'hop_limit', offset: off + 7, length: 1, value: `${buf[off + 7]}` });
  add(ip, { name: 'saddr', offset: off + 8, length: 16, value: formatAddress(buf.subarray(off + 8, off + 24)) });
  add(ip, { name: 'daddr', offset: off + 24, length: 16, value: formatAddress(buf.subarray(off + 24, off + 40)) });

  const { payloadEnd, complete } = packetEnd(ip, off, end, 40 + payloadLen, quoted);
  let at = off + 40;
  let pseudoDst = buf.subarray(off + 24, off + 40);
  let fragment = false;
  let later = false; // a non-first fragment: no upper-layer header here

  for (let name = IPV6_EXTENSIONS[nexthdr]; name !== undefined; name = IPV6_EXTENSIONS[nexthdr]) {
    const ext = addLayer(ctx, `${prefix}ipv6 ${name}`, at, quoted);
    const extLen = nexthdr === 44 ? 8 : ((buf[at + 1] ?? 0) + 1) * 8;
    if (payloadEnd - at < 2 || at + extLen > payloadEnd) {
      truncated(ctx, ext, at, payloadEnd, extLen);
      return finishIp(ctx, prefix, payloadEnd, end);
    }
    const next = buf[at]!;
    add(ext, { name: 'nexthdr', offset: at, length: 1, value: named(next, IP_PROTOCOLS) });
    if (nexthdr === 44) {
      const fragWord = buf.readUInt16BE(at + 2);
      add(ext, { name: 'reserved', offset: at + 1, length: 1, value: hex(buf[at + 1]!, 2) });
      add(ext, { name: 'frag_off', offset: at + 2, length: 2, value: `${fragWord >>> 3}` });
      add(ext, { name: 'more', offset: at + 3, length: 1, value: `${fragWord & 1}` });
      add(ext, { name: 'id', offset: at + 4, length: 4, value: hex(buf.readUInt32BE(at + 4), 8) });
      fragment = true;
      later = fragWord >>> 3 !== 0;
    } else {
      add(ext, { name: 'hdrlen', offset: at + 1, length: 1, value: `${buf[at + 1]}` });
      if (nexthdr === 43) {
        const segmentsLeft = buf[at + 3]!;
        add(ext, { name: 'type', offset: at + 2, length: 1, value: `${buf[at + 2]}` });
        add(ext, { name: 'segments_left', offset: at + 3, length: 1, value: `${segmentsLeft}` });
        addOpaque(ctx, ext, 'data', at + 4, at + extLen);
        // The pseudo-header names the final destination: the routing header's last address.
        if (segmentsLeft > 0 && extLen >= 24) pseudoDst = buf.subarray(at + extLen - 16, at + extLen);
      } else {
        addOpaque(ctx, ext, 'options', at + 2, at + extLen);
      }
    }
    nexthdr = next;
    at += extLen;
    if (later) break;
  }

  const info: IpInfo = {
    family: 6, src: buf.subarray(off + 8, off + 24), dst: pseudoDst,
    complete: complete && !fragment, layer: ip, name: 'ipv6', quoted,
  };
  if (later) addOpaque(ctx, addLayer(ctx, `${prefix}ipv6 fragment`, at), 'data', at, payloadEnd);
  else decodeUpper(ctx, nexthdr, at, payloadEnd, prefix, info);
  finishIp(ctx, prefix, payloadEnd, end);
}

function finishIp(ctx: Context, prefix: string, payloadEnd: number, end: number): void {
  if (payloadEnd < end) addOpaque(ctx, addLayer(ctx, `${prefix}trailer`, payloadEnd), 'data', payloadEnd, end);
}

function decodeUpper(ctx: Context, protocol: number, off: number, end: number, prefix: string, ip: IpInfo): void {
  switch (protocol) {
    case 6:
      return decodeTcp(ctx, off, end, prefix, ip);
    case 17:
      return decodeUdp(ctx, off, end, prefix, ip);
    case 1:
    case 58:
      return decodeIcmp(ctx, off, end, prefix, protocol === 58, ip);
    case 4:
    case 41:
      ip.layer.label = `${prefix}outer ${ip.name}`;
      if (protocol === 4) decodeIpv4(ctx, off, end, `${prefix}inner `, ip.quoted);
      else decodeIpv6(ctx, off, end, `${prefix}inner `, ip.quoted);
      return;
    default:
      if (off < end) addOpaque(ctx, addLayer(ctx, `${prefix}${ip.name} payload`, off), 'data', off, end);
  }
}

// Adds fixed-size fields in order while they fit; the rest becomes 'truncated'.
// Returns whether all of them fitted.
function fixedFields(ctx: Context, layer: Layer, off: number, end: number, size: number,
  fields: readonly (readonly [name: string, at: number, length: number, value: (at: number) => string])[]): boolean {
  for (const [name, at, length, value] of fields) {
    if (off + at + length > end) {
      truncated(ctx, layer, off + at, end, size);
      return false;
    }
    add(layer, { name, offset: off + at, length, value: value(off + at) });
  }
  return true;
}

function upperChecksumNote(ctx: Context, ip: IpInfo, protocol: number, off: number, end: number, at: number): string | undefined {
  if (!ip.complete) return undefined;
  const stored = ctx.buf.readUInt16BE(at);
  const segment = ctx.buf.subarray(off, end);
  const residue = protocol === 1 ? internetChecksum(segment) : transportChecksum(ip.family, ip.src, ip.dst, protocol, segment);
  return verifyNote(stored, residue);
}

function withNote(layer: Layer, name: string, note: string | undefined): void {
  if (note === undefined) return;
  const i = layer.fields.findIndex((f) => f.name === name);
  const field = layer.fields[i];
  if (field !== undefined) layer.fields[i] = { ...field, note };
}

function decodeTcp(ctx: Context, off: number, end: number, prefix: string, ip: IpInfo): void {
  const { buf } = ctx;
  const tcp = addLayer(ctx, `${prefix}tcp`, off, ip.quoted);
  const u16 = (at: number) => `${buf.readUInt16BE(at)}`;
  const u32 = (at: number) => `${buf.readUInt32BE(at)}`;
  const whole = fixedFields(ctx, tcp, off, end, 20, [
    ['source', 0, 2, u16],
    ['dest', 2, 2, u16],
    ['seq', 4, 4, u32],
    ['ack_seq', 8, 4, u32],
    ['doff', 12, 1, (at) => `${buf[at]! >>> 4}`],
    ['res1', 12, 1, (at) => hex(buf[at]! & 0x0f, 1)],
    ['flags', 13, 1, (at) => TCP_FLAG_NAMES.filter((_, bit) => (buf[at]! >>> bit) & 1).join('|') || 'none'],
    ['window', 14, 2, u16],
    ['check', 16, 2, (at) => hex(buf.readUInt16BE(at), 4)],
    ['urg_ptr', 18, 2, u16],
  ]);
  if (!whole) return;
  const doff = buf[off + 12]! >>> 4;
  if (doff < 5) tcp.notes.push(`malformed: data offset ${doff} < 5`);
  const hlen = Math.max(doff, 5) * 4;
  if (off + hlen > end) {
    truncated(ctx, tcp, off + 20, end, hlen);
    return;
  }
  withNote(tcp, 'check', upperChecksumNote(ctx, ip, 6, off, end, off + 16));
  addOpaque(ctx, tcp, 'options', off + 20, off + hlen);
  addOpaque(ctx, tcp, 'payload', off + hlen, end);
}

// GUE variant 1 carries a bare IP packet; without a configured port, accept a payload
// only if it is exactly one consistent packet, which application data almost never is.
function looksLikeIpPacket(buf: Buffer, off: number, end: number): boolean {
  const version = (buf[off] ?? 0) >>> 4;
  if (version === 4 && end - off >= 20) {
    const hlen = (buf[off]! & 0x0f) * 4;
    return hlen >= 20 && buf.readUInt16BE(off + 2) === end - off && off + hlen <= end &&
      ipv4HeaderChecksum(buf.subarray(off, off + hlen)) === buf.readUInt16BE(off + 10);
  }
  if (version === 6 && end - off >= 40) return 40 + buf.readUInt16BE(off + 4) === end - off;
  return false;
}

function decodeUdp(ctx: Context, off: number, end: number, prefix: string, ip: IpInfo): void {
  const { buf } = ctx;
  const udp = addLayer(ctx, `${prefix}udp`, off, ip.quoted);
  const u16 = (at: number) => `${buf.readUInt16BE(at)}`;
  const whole = fixedFields(ctx, udp, off, end, 8, [
    ['source', 0, 2, u16],
    ['dest', 2, 2, u16],
    ['len', 4, 2, u16],
    ['check', 6, 2, (at) => hex(buf.readUInt16BE(at), 4)],
  ]);
  if (!whole) return;
  const len = buf.readUInt16BE(off + 4);
  let dataEnd = end;
  if (len < 8) udp.notes.push(`malformed: length ${len} < 8`);
  else if (off + len < end) dataEnd = off + len;
  else if (off + len > end && ip.complete) udp.notes.push(`malformed: length ${len} exceeds the ${end - off} bytes present`);
  const stored = buf.readUInt16BE(off + 6);
  withNote(udp, 'check', stored === 0 ? 'none' : upperChecksumNote(ctx, ip, 17, off, dataEnd, off + 6));

  const dport = buf.readUInt16BE(off + 2);
  const gue = ctx.guePort !== undefined ? dport === ctx.guePort && dataEnd > off + 8
    : !ip.quoted && looksLikeIpPacket(buf, off + 8, dataEnd);
  if (gue) {
    ip.layer.label = `${prefix}outer ${ip.name}`;
    udp.label = `${prefix}outer udp`;
    udp.notes.push('GUE');
    decodeIp(ctx, off + 8, dataEnd, `${prefix}inner `, ip.quoted);
  } else {
    addOpaque(ctx, udp, 'payload', off + 8, dataEnd);
  }
  if (dataEnd < end) addOpaque(ctx, udp, 'excess', dataEnd, end);
}

function decodeIcmp(ctx: Context, off: number, end: number, prefix: string, v6: boolean, ip: IpInfo): void {
  const { buf } = ctx;
  const layer = addLayer(ctx, `${prefix}${v6 ? 'icmpv6' : 'icmp'}`, off, ip.quoted);
  const type = buf[off] ?? 0;
  const code = buf[off + 1] ?? 0;
  const unreachable = v6 ? type === 1 : type === 3;
  const codeNames = unreachable ? (v6 ? ICMP6_UNREACH_CODES : ICMP4_UNREACH_CODES) : {};
  const u16 = (at: number) => `${buf.readUInt16BE(at)}`;
  const whole = fixedFields(ctx, layer, off, end, 8, [
    ['type', 0, 1, () => named(type, v6 ? ICMP6_TYPES : ICMP4_TYPES)],
    ['code', 1, 1, () => named(code, codeNames)],
    ['checksum', 2, 2, (at) => hex(buf.readUInt16BE(at), 4)],
  ]);
  if (!whole) return;
  withNote(layer, 'checksum', upperChecksumNote(ctx, ip, v6 ? 58 : 1, off, end, off + 2));

  const echo = v6 ? type === 128 || type === 129 : type === 0 || type === 8;
  const error = v6 ? type >= 1 && type <= 4 : type === 3 || type === 11 || type === 12;
  let rest: (readonly [string, number, number, (at: number) => string])[];
  if (echo) rest = [['id', 4, 2, u16], ['sequence', 6, 2, u16]];
  else if (!v6 && type === 3 && code === 4) rest = [['unused', 4, 2, u16], ['mtu', 6, 2, u16]];
  else if (v6 && type === 2) rest = [['mtu', 4, 4, (at) => `${buf.readUInt32BE(at)}`]];
  else if (type === (v6 ? 4 : 12)) {
    rest = v6 ? [['pointer', 4, 4, (at) => `${buf.readUInt32BE(at)}`]]
      : [['pointer', 4, 1, (at) => `${buf[at]}`], ['unused', 5, 3, (at) => hex(buf.readUIntBE(at, 3), 6)]];
  } else if (error) rest = [['unused', 4, 4, (at) => hex(buf.readUInt32BE(at), 8)]];
  else rest = [['rest', 4, 4, (at) => hex(buf.readUInt32BE(at), 8)]];
  if (!fixedFields(ctx, layer, off, end, 8, rest)) return;

  if (error && off + 8 < end) decodeIp(ctx, off + 8, end, `${prefix}quoted `, true);
  else addOpaque(ctx, layer, 'data', off + 8, end);
}

/** The frame's layers, outermost first, each with its fields. Never throws. */
export function decodeFrame(frame: Uint8Array, options: DecodeOptions = {}): DecodedLayer[] {
  const buf = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const ctx: Context = { buf, layers: [], guePort: options.guePort };
  decodeEthernet(ctx);

  // Two layers with one label (two destination-options headers, say) get '#2', '#3'
  // so that every (layer, field) pair names one place.
  const seen = new Map<string, number>();
  return ctx.layers.map((layer) => {
    const count = (seen.get(layer.label) ?? 0) + 1;
    seen.set(layer.label, count);
    const label = count === 1 ? layer.label : `${layer.label} #${count}`;
    const fields = layer.fields.map((f): DecodedField => ({ layer: label, ...f }));
    const end = fields.reduce((max, f) => Math.max(max, f.offset + f.length), layer.offset);
    return { label, offset: layer.offset, end, fields, notes: [...layer.notes] };
  });
}

/** One line per layer: label, byte range, fields (checksums with ok / bad), notes. */
export function describeFrame(frame: Uint8Array, options: DecodeOptions = {}): string {
  const layers = decodeFrame(frame, options);
  const width = Math.max(...layers.map((l) => l.label.length));
  const lines = layers.map((layer) => {
    const fields = layer.fields.map((f) => `${f.name} ${f.value}${f.note === undefined ? '' : ` (${f.note})`}`);
    const notes = layer.notes.map((n) => `[${n}]`);
    return `${layer.label.padEnd(width)}  @${layer.offset}..${layer.end}  ${[...fields, ...notes].join('  ')}`;
  });
  return [`frame: ${frame.length} bytes`, ...lines].join('\n');
}

// ─── Diff ────────────────────────────────────────────────────────────────────────────

export interface FrameDiff {
  /** Byte offset of the reported difference (or, for a length-only difference, the shorter length). */
  readonly offset: number;
  /** The layer label, e.g. 'outer ipv4'. */
  readonly layer: string;
  /** The field, e.g. 'saddr', or 'payload[3]' within opaque bytes. */
  readonly field: string;
  readonly expected: string;
  readonly actual: string;
  /** Other fields that differ too (checksums that follow from the reported field, say). */
  readonly alsoDiffers: readonly string[];
  /** 'outer ipv4.saddr: expected 172.16.34.18, got 172.16.0.1 (byte 26)' and more. */
  readonly message: string;
}

function isChecksum(field: DecodedField): boolean {
  return field.name === 'check' || field.name === 'checksum';
}

function byteHex(buf: Uint8Array, at: number): string {
  const b = buf[at];
  return b === undefined ? 'nothing' : hex(b, 2);
}

function rawHex(buf: Uint8Array, offset: number, length: number): string {
  const bytes = buf.subarray(offset, offset + length);
  return bytes.length === 0 ? 'nothing' : `0x${Buffer.from(bytes).toString('hex')}`;
}

/**
 * Where two frames part, by layer and field, or null if they are identical. When several
 * fields differ the first one that is not a checksum is reported — a wrong address makes
 * the checksum before it differ too, and the address is the news.
 */
export function diffFrames(expected: Uint8Array, actual: Uint8Array, options: DecodeOptions = {}): FrameDiff | null {
  if (Buffer.compare(expected, actual) === 0) return null;
  const exp = decodeFrame(expected, options).flatMap((l) => l.fields);
  const act = decodeFrame(actual, options).flatMap((l) => l.fields);
  const actualByKey = new Map<string, DecodedField>();
  for (const f of act) if (!actualByKey.has(`${f.layer}.${f.name}`)) actualByKey.set(`${f.layer}.${f.name}`, f);

  const common = Math.min(expected.length, actual.length);
  const lengthNote = expected.length === actual.length ? '' : `; frame length: expected ${expected.length}, got ${actual.length}`;

  // Every field of the expected frame that differs, in byte order, with the first differing byte.
  interface Hit { field: DecodedField; at: number; name: string; expected: string; actual: string }
  const hits: Hit[] = [];
  const judged = new Set<DecodedField>();
  for (let at = 0; at < common; at++) {
    if (expected[at] === actual[at]) continue;
    for (const field of exp) {
      if (at < field.offset || at >= field.offset + field.length || judged.has(field)) continue;
      if (field.opaque === true) {
        judged.add(field);
        hits.push({ field, at, name: `${field.name}[${at - field.offset}]`, expected: byteHex(expected, at), actual: byteHex(actual, at) });
        continue;
      }
      const other = actualByKey.get(`${field.layer}.${field.name}`);
      const actualValue = other?.value ?? rawHex(actual, field.offset, field.length);
      // Fields sharing a byte (version / IHL) are judged by their own bits.
      if (actualValue === field.value && other !== undefined) continue;
      judged.add(field);
      hits.push({ field, at, name: field.name, expected: field.value, actual: actualValue });
    }
    if (!hits.some((h) => !isChecksum(h.field))) continue;
    break;
  }

  const primary = hits.find((h) => !isChecksum(h.field)) ?? hits[0];
  if (primary !== undefined) {
    const also = hits.filter((h) => h !== primary).map((h) => `${h.field.layer}.${h.name}`);
    const alsoText = also.length === 0 ? '' : `; also differs: ${also.join(', ')}`;
    return {
      offset: primary.at,
      layer: primary.field.layer,
      field: primary.name,
      expected: primary.expected,
      actual: primary.actual,
      alsoDiffers: also,
      message: `${primary.field.layer}.${primary.name}: expected ${primary.expected}, got ${primary.actual} (byte ${primary.at})${alsoText}${lengthNote}`,
    };
  }

  let firstDiff = 0;
  while (firstDiff < common && expected[firstDiff] === actual[firstDiff]) firstDiff++;
  if (firstDiff < common) {
    // Bytes differ but every field over them decodes alike in both frames: report the raw bytes.
    const where = exp.find((f) => firstDiff >= f.offset && firstDiff < f.offset + f.length);
    const layer = where?.layer ?? 'frame';
    const field = where?.name ?? `byte[${firstDiff}]`;
    const [from, length] = where === undefined ? [firstDiff, 1] : [where.offset, where.length];
    const e = rawHex(expected, from, length);
    const a = rawHex(actual, from, length);
    return {
      offset: firstDiff, layer, field, expected: e, actual: a, alsoDiffers: [],
      message: `${layer}.${field}: expected ${e}, got ${a} (byte ${firstDiff})${lengthNote}`,
    };
  }

  // One frame is a prefix of the other: name the field where the shorter one stops.
  const longer = expected.length > actual.length ? exp : act;
  const where = longer.find((f) => common >= f.offset && common < f.offset + f.length);
  const layer = where?.layer ?? 'frame';
  const field = where?.name ?? `byte[${common}]`;
  const place = where === undefined ? ''
    : ` (${expected.length > actual.length ? 'actual ends before' : 'actual goes on into'} ${layer}.${field})`;
  return {
    offset: common, layer, field,
    expected: `${expected.length} bytes`, actual: `${actual.length} bytes`, alsoDiffers: [],
    message: `frame length: expected ${expected.length}, got ${actual.length}${place}`,
  };
}

/** Throws an AssertionError naming the differing field, with both frames described. */
export function assertFramesEqual(actual: Uint8Array, expected: Uint8Array, context?: string, options: DecodeOptions = {}): void {
  const diff = diffFrames(expected, actual, options);
  if (diff === null) return;
  const message = [
    `${context === undefined ? '' : `${context}: `}${diff.message}`,
    '--- expected',
    describeFrame(expected, options),
    '--- actual',
    describeFrame(actual, options),
  ].join('\n');
  throw new AssertionError({ message });
}
