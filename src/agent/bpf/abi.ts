// The ABI mirror: every struct of bpf/include/structs.h, the configuration blocks of
// bpf/include/consts.h, and the constants that cross into user space. KEEP IN SYNC with
// bpf/include/structs.h and bpf/include/consts.h: test/bpf/abi.test.ts compiles the C
// headers and fails on any size, offset or constant that differs from this file.
//
// The koffi structs are the layout; the encoders and decoders below read their field
// offsets from them, so the test that pins the koffi layout also pins the codecs.
// Codecs write with Buffer methods (clear, and faster than koffi.encode for 8-40 byte
// keys). Addresses and ports are network byte order in the structs; the codecs take
// and return them as strings ('10.0.0.1', '2001:db8::1') and plain numbers. Other
// integers (ids, flags, counters) are host byte order.

import koffi from 'koffi';
import ipaddr from 'ipaddr.js';
import { endianness } from 'node:os';
import { FulcrumError } from '../../shared/errors.ts';

// ---------------------------------------------------------------------------------
// Constants (consts.h)

export const FAMILY_V4 = 4;
export const FAMILY_V6 = 6;

/** struct vip_meta.flags */
export const VIP_F_SRC_IP_ONLY = 1 << 0;
export const VIP_F_LRU_BYPASS = 1 << 1;
export const VIP_F_ENCAP_GUE = 1 << 2;

/** struct vip_addr4/6.flags */
export const ADDR_F_USES_TABLE = 1 << 0;
export const ADDR_F_HAS_BYPASS = 1 << 1;

/** struct balancer_config.flags */
export const CFG_F_FIB_LOOKUP = 1 << 0;

export const DEFAULT_UDP_TIMEOUT_NS = 30_000_000_000n;

export const ETH_HLEN = 14;
export const IPV4_HLEN = 20;
export const IPV6_HLEN = 40;
export const UDP_HLEN = 8;
export const ICMP_HLEN = 8;
export const ICMP4_TOOBIG_QUOTE = 64;
export const ICMP6_TOOBIG_QUOTE = 128;
export const IPV6_MIN_MTU = 1280;

/** Ring slots per element of the ring map (structs.h RING_CHUNK). */
export const RING_CHUNK = 16;

/** IP protocol numbers used in VIP and flow keys. */
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

// ---------------------------------------------------------------------------------
// Layout (structs.h, consts.h)

const be32 = 'uint32_be_t';
const be16 = 'uint16_be_t';

export const ABI_STRUCTS = {
  vip4_key: koffi.struct('vip4_key', { addr: be32, port: be16, proto: 'uint8_t', pad: 'uint8_t' }),
  vip6_key: koffi.struct('vip6_key', { addr: koffi.array(be32, 4), port: be16, proto: 'uint8_t', pad: 'uint8_t' }),
  vip_meta: koffi.struct('vip_meta', { flags: 'uint32_t', vip_id: 'uint16_t', gen: 'uint16_t' }),
  vip_addr4: koffi.struct('vip_addr4', { addr: be32, flags: 'uint16_t', addr_id: 'uint16_t' }),
  vip_addr6: koffi.struct('vip_addr6', { addr: koffi.array(be32, 4), flags: 'uint16_t', addr_id: 'uint16_t' }),
  flow4_key: koffi.struct('flow4_key', {
    src: be32, addr_id: 'uint16_t', sport: be16, dport: be16, proto: 'uint8_t', pad: 'uint8_t',
  }),
  flow6_key: koffi.struct('flow6_key', {
    src: koffi.array(be32, 4), addr_id: 'uint16_t', sport: be16, dport: be16, proto: 'uint8_t', pad: 'uint8_t',
  }),
  conn_value: koffi.struct('conn_value', { backend_id: 'uint32_t', vip_id: 'uint16_t', vip_gen: 'uint16_t', atime_ns: 'uint64_t' }),
  backend: koffi.struct('backend', { addr: koffi.array(be32, 4), family: 'uint8_t', flags: 'uint8_t', pad: 'uint16_t' }),
  counter: koffi.struct('counter', { packets: 'uint64_t', bytes: 'uint64_t' }),
  ring_chunk: koffi.struct('ring_chunk', { backend_id: koffi.array('uint32_t', 16) }),
  addr_key: koffi.struct('addr_key', { addr: koffi.array(be32, 4), family: 'uint8_t', pad: koffi.array('uint8_t', 3) }),
  balancer_config: koffi.struct('balancer_config', {
    ring_size: 'uint32_t',
    mtu: 'uint32_t',
    udp_timeout_ns: 'uint64_t',
    tunnel_src4: be32,
    tunnel_src6: koffi.array(be32, 4),
    node_addr4: be32,
    node_addr6: koffi.array(be32, 4),
    gue_port: be16,
    nexthop_mac: koffi.array('uint8_t', 6),
    tunnel_ttl: 'uint8_t',
    flags: 'uint8_t',
    pad: koffi.array('uint8_t', 2),
    addr_slot_bits: 'uint32_t',
  }),
  decap_config: koffi.struct('decap_config', { gue_port: be16, pad: koffi.array('uint8_t', 6) }),
} as const;

export type AbiStructName = keyof typeof ABI_STRUCTS;

/** sizeof(struct X) for every mirrored struct. */
export const ABI_SIZES = Object.fromEntries(
  Object.entries(ABI_STRUCTS).map(([name, type]) => [name, koffi.sizeof(type)]),
) as Record<AbiStructName, number>;

function offsetsOf<N extends AbiStructName>(name: N): Record<string, number> {
  const members = ABI_STRUCTS[name].members ?? {};
  return Object.fromEntries(Object.values(members).map((m) => [m.name, m.offset]));
}

// Field offsets, read once from the koffi layout.
function field(offsets: Record<string, number>, struct: string, name: string): number {
  const offset = offsets[name];
  if (offset === undefined) throw new FulcrumError('ERR_INTERNAL', `abi: struct ${struct} has no field ${name}`);
  return offset;
}
function layout<N extends AbiStructName, F extends string>(name: N, fields: readonly F[]): Record<F, number> {
  const offsets = offsetsOf(name);
  return Object.fromEntries(fields.map((f) => [f, field(offsets, name, f)])) as Record<F, number>;
}

const VIP4 = layout('vip4_key', ['addr', 'port', 'proto']);
const VIP6 = layout('vip6_key', ['addr', 'port', 'proto']);
const META = layout('vip_meta', ['flags', 'vip_id', 'gen']);
const ADDR4 = layout('vip_addr4', ['addr', 'flags', 'addr_id']);
const ADDR6 = layout('vip_addr6', ['addr', 'flags', 'addr_id']);
const FLOW4 = layout('flow4_key', ['src', 'addr_id', 'sport', 'dport', 'proto']);
const FLOW6 = layout('flow6_key', ['src', 'addr_id', 'sport', 'dport', 'proto']);
const CONN = layout('conn_value', ['backend_id', 'vip_id', 'vip_gen', 'atime_ns']);
const BACKEND = layout('backend', ['addr', 'family', 'flags']);
const COUNTER = layout('counter', ['packets', 'bytes']);
const ADDR_KEY = layout('addr_key', ['addr', 'family']);
const CFG = layout('balancer_config', [
  'ring_size', 'mtu', 'udp_timeout_ns', 'tunnel_src4', 'tunnel_src6', 'node_addr4', 'node_addr6',
  'gue_port', 'nexthop_mac', 'tunnel_ttl', 'flags', 'addr_slot_bits',
]);
const DECAP_CFG = layout('decap_config', ['gue_port']);

// ---------------------------------------------------------------------------------
// Host-order integers

const LITTLE = endianness() === 'LE';

function writeU32(buf: Buffer, value: number, offset: number): void {
  if (LITTLE) buf.writeUInt32LE(value, offset);
  else buf.writeUInt32BE(value, offset);
}
function readU32(buf: Uint8Array, offset: number): number {
  const b = asBuffer(buf);
  return LITTLE ? b.readUInt32LE(offset) : b.readUInt32BE(offset);
}
function writeU16(buf: Buffer, value: number, offset: number): void {
  if (LITTLE) buf.writeUInt16LE(value, offset);
  else buf.writeUInt16BE(value, offset);
}
function readU16(buf: Uint8Array, offset: number): number {
  const b = asBuffer(buf);
  return LITTLE ? b.readUInt16LE(offset) : b.readUInt16BE(offset);
}
function writeU64(buf: Buffer, value: bigint, offset: number): void {
  if (LITTLE) buf.writeBigUInt64LE(value, offset);
  else buf.writeBigUInt64BE(value, offset);
}
function readU64(buf: Uint8Array, offset: number): bigint {
  const b = asBuffer(buf);
  return LITTLE ? b.readBigUInt64LE(offset) : b.readBigUInt64BE(offset);
}
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---------------------------------------------------------------------------------
// Validation in words

function fail(where: string, what: string): never {
  throw new FulcrumError('ERR_DESIRED_STATE', `${where}: ${what}`);
}
function checkUint(where: string, value: number, bits: 8 | 16 | 32): number {
  const max = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    fail(where, `must be an integer from 0 to ${max}, got ${String(value)}`);
  }
  return value;
}
function checkU64(where: string, value: bigint): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > 0xffffffffffffffffn) {
    fail(where, `must be a bigint from 0 to 2^64-1, got ${String(value)}`);
  }
  return value;
}
function checkLength(what: string, bytes: Uint8Array, size: number): void {
  if (bytes.byteLength !== size) fail(what, `expected ${size} bytes, got ${bytes.byteLength}`);
}

// ---------------------------------------------------------------------------------
// Addresses

/** An address as text ('10.0.0.1', '2001:db8::1') or as its 4 / 16 network-order bytes. */
export type Addr = string | Uint8Array;

/** The 4 bytes of an IPv4 address. */
export function ipv4Bytes(addr: Addr, where = 'address'): Uint8Array {
  if (typeof addr !== 'string') {
    if (addr.byteLength !== 4) fail(where, `an IPv4 address is 4 bytes, got ${addr.byteLength}`);
    return addr;
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(addr)) fail(where, `not an IPv4 address: '${addr}'`);
  return Uint8Array.from(ipaddr.IPv4.parse(addr).toByteArray());
}

/** The 16 bytes of an IPv6 address. */
export function ipv6Bytes(addr: Addr, where = 'address'): Uint8Array {
  if (typeof addr !== 'string') {
    if (addr.byteLength !== 16) fail(where, `an IPv6 address is 16 bytes, got ${addr.byteLength}`);
    return addr;
  }
  if (addr.includes('%') || !ipaddr.IPv6.isValid(addr)) fail(where, `not an IPv6 address: '${addr}'`);
  return Uint8Array.from(ipaddr.IPv6.parse(addr).toByteArray());
}

/** Family and bytes of an address of either family (4 bytes for IPv4, 16 for IPv6). */
export function addrBytes(addr: Addr, where = 'address'): { family: typeof FAMILY_V4 | typeof FAMILY_V6; bytes: Uint8Array } {
  if (typeof addr !== 'string') {
    if (addr.byteLength === 4) return { family: FAMILY_V4, bytes: addr };
    if (addr.byteLength === 16) return { family: FAMILY_V6, bytes: addr };
    fail(where, `an address is 4 or 16 bytes, got ${addr.byteLength}`);
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(addr)) return { family: FAMILY_V4, bytes: ipv4Bytes(addr, where) };
  return { family: FAMILY_V6, bytes: ipv6Bytes(addr, where) };
}

export function ipv4String(bytes: Uint8Array, offset = 0): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

export function ipv6String(bytes: Uint8Array, offset = 0): string {
  const parts = Array.from(bytes.subarray(offset, offset + 16));
  return (ipaddr.fromByteArray(parts) as ipaddr.IPv6).toRFC5952String();
}

/** '02:00:00:00:00:01' or 6 bytes → 6 bytes. */
export function macBytes(mac: string | Uint8Array, where = 'mac'): Uint8Array {
  if (typeof mac !== 'string') {
    if (mac.byteLength !== 6) fail(where, `a MAC address is 6 bytes, got ${mac.byteLength}`);
    return mac;
  }
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) fail(where, `not a MAC address: '${mac}'`);
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function macString(bytes: Uint8Array, offset = 0): string {
  return Array.from(bytes.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}

// ---------------------------------------------------------------------------------
// u32 keys and values (array maps: ring, backends, stats; ring values are backend ids)

export function u32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  writeU32(buf, checkUint('u32', value, 32), 0);
  return buf;
}

export function decodeU32(buf: Uint8Array): number {
  checkLength('u32', buf, 4);
  return readU32(buf, 0);
}

// ---------------------------------------------------------------------------------
// VIP keys and values

export interface Vip4Key { addr: Addr; port: number; proto: number }
export interface Vip6Key { addr: Addr; port: number; proto: number }

export function vip4Key(key: Vip4Key): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.vip4_key);
  buf.set(ipv4Bytes(key.addr, 'vip4_key.addr'), VIP4.addr);
  buf.writeUInt16BE(checkUint('vip4_key.port', key.port, 16), VIP4.port);
  buf[VIP4.proto] = checkUint('vip4_key.proto', key.proto, 8);
  return buf;
}

export function decodeVip4Key(buf: Uint8Array): Vip4Key & { addr: string } {
  checkLength('vip4_key', buf, ABI_SIZES.vip4_key);
  const b = asBuffer(buf);
  return { addr: ipv4String(b, VIP4.addr), port: b.readUInt16BE(VIP4.port), proto: b[VIP4.proto]! };
}

export function vip6Key(key: Vip6Key): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.vip6_key);
  buf.set(ipv6Bytes(key.addr, 'vip6_key.addr'), VIP6.addr);
  buf.writeUInt16BE(checkUint('vip6_key.port', key.port, 16), VIP6.port);
  buf[VIP6.proto] = checkUint('vip6_key.proto', key.proto, 8);
  return buf;
}

export function decodeVip6Key(buf: Uint8Array): Vip6Key & { addr: string } {
  checkLength('vip6_key', buf, ABI_SIZES.vip6_key);
  const b = asBuffer(buf);
  return { addr: ipv6String(b, VIP6.addr), port: b.readUInt16BE(VIP6.port), proto: b[VIP6.proto]! };
}

/** A VIP entry's value, also vip_state[vipId]. gen 0 marks a free id. */
export interface VipMeta { flags: number; vipId: number; gen: number }

export function vipMeta(meta: VipMeta): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.vip_meta);
  writeU32(buf, checkUint('vip_meta.flags', meta.flags, 32), META.flags);
  writeU16(buf, checkUint('vip_meta.vip_id', meta.vipId, 16), META.vip_id);
  writeU16(buf, checkUint('vip_meta.gen', meta.gen, 16), META.gen);
  return buf;
}

export function decodeVipMeta(buf: Uint8Array): VipMeta {
  checkLength('vip_meta', buf, ABI_SIZES.vip_meta);
  return { flags: readU32(buf, META.flags), vipId: readU16(buf, META.vip_id), gen: readU16(buf, META.gen) };
}

/** A slot of the VIP address tables; null encodes an empty slot. */
export interface VipAddr { addr: Addr; flags: number; addrId: number }

export function vipAddr4(value: VipAddr | null): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.vip_addr4);
  if (value === null) return buf;
  buf.set(ipv4Bytes(value.addr, 'vip_addr4.addr'), ADDR4.addr);
  writeU16(buf, checkUint('vip_addr4.flags', value.flags, 16), ADDR4.flags);
  writeU16(buf, checkUint('vip_addr4.addr_id', value.addrId, 16), ADDR4.addr_id);
  return buf;
}

export function vipAddr6(value: VipAddr | null): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.vip_addr6);
  if (value === null) return buf;
  buf.set(ipv6Bytes(value.addr, 'vip_addr6.addr'), ADDR6.addr);
  writeU16(buf, checkUint('vip_addr6.flags', value.flags, 16), ADDR6.flags);
  writeU16(buf, checkUint('vip_addr6.addr_id', value.addrId, 16), ADDR6.addr_id);
  return buf;
}

/** A VIP address table slot as read back: null for an empty slot. */
export function decodeVipAddr4(buf: Uint8Array): (VipAddr & { addr: string }) | null {
  checkLength('vip_addr4', buf, ABI_SIZES.vip_addr4);
  const b = asBuffer(buf);
  if (b.readUInt32BE(ADDR4.addr) === 0) return null;
  return { addr: ipv4String(b, ADDR4.addr), flags: readU16(b, ADDR4.flags), addrId: readU16(b, ADDR4.addr_id) };
}

export function decodeVipAddr6(buf: Uint8Array): (VipAddr & { addr: string }) | null {
  checkLength('vip_addr6', buf, ABI_SIZES.vip_addr6);
  const b = asBuffer(buf);
  if (b.subarray(ADDR6.addr, ADDR6.addr + 16).every((x) => x === 0)) return null;
  return { addr: ipv6String(b, ADDR6.addr), flags: readU16(b, ADDR6.flags), addrId: readU16(b, ADDR6.addr_id) };
}

// ---------------------------------------------------------------------------------
// Connection table

/** A connection-table key: the client, the VIP address's addr_id, ports and protocol. */
export interface Flow4Key { src: Addr; addrId: number; sport: number; dport: number; proto: number }
export interface Flow6Key { src: Addr; addrId: number; sport: number; dport: number; proto: number }

export function flow4Key(key: Flow4Key): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.flow4_key);
  buf.set(ipv4Bytes(key.src, 'flow4_key.src'), FLOW4.src);
  writeU16(buf, checkUint('flow4_key.addr_id', key.addrId, 16), FLOW4.addr_id);
  buf.writeUInt16BE(checkUint('flow4_key.sport', key.sport, 16), FLOW4.sport);
  buf.writeUInt16BE(checkUint('flow4_key.dport', key.dport, 16), FLOW4.dport);
  buf[FLOW4.proto] = checkUint('flow4_key.proto', key.proto, 8);
  return buf;
}

export function decodeFlow4Key(buf: Uint8Array): Flow4Key & { src: string } {
  checkLength('flow4_key', buf, ABI_SIZES.flow4_key);
  const b = asBuffer(buf);
  return {
    src: ipv4String(b, FLOW4.src),
    addrId: readU16(b, FLOW4.addr_id),
    sport: b.readUInt16BE(FLOW4.sport),
    dport: b.readUInt16BE(FLOW4.dport),
    proto: b[FLOW4.proto]!,
  };
}

export function flow6Key(key: Flow6Key): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.flow6_key);
  buf.set(ipv6Bytes(key.src, 'flow6_key.src'), FLOW6.src);
  writeU16(buf, checkUint('flow6_key.addr_id', key.addrId, 16), FLOW6.addr_id);
  buf.writeUInt16BE(checkUint('flow6_key.sport', key.sport, 16), FLOW6.sport);
  buf.writeUInt16BE(checkUint('flow6_key.dport', key.dport, 16), FLOW6.dport);
  buf[FLOW6.proto] = checkUint('flow6_key.proto', key.proto, 8);
  return buf;
}

export function decodeFlow6Key(buf: Uint8Array): Flow6Key & { src: string } {
  checkLength('flow6_key', buf, ABI_SIZES.flow6_key);
  const b = asBuffer(buf);
  return {
    src: ipv6String(b, FLOW6.src),
    addrId: readU16(b, FLOW6.addr_id),
    sport: b.readUInt16BE(FLOW6.sport),
    dport: b.readUInt16BE(FLOW6.dport),
    proto: b[FLOW6.proto]!,
  };
}

export interface ConnValue { backendId: number; vipId: number; vipGen: number; atimeNs: bigint }

export function connValue(value: ConnValue): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.conn_value);
  writeU32(buf, checkUint('conn_value.backend_id', value.backendId, 32), CONN.backend_id);
  writeU16(buf, checkUint('conn_value.vip_id', value.vipId, 16), CONN.vip_id);
  writeU16(buf, checkUint('conn_value.vip_gen', value.vipGen, 16), CONN.vip_gen);
  writeU64(buf, checkU64('conn_value.atime_ns', value.atimeNs), CONN.atime_ns);
  return buf;
}

export function decodeConnValue(buf: Uint8Array): ConnValue {
  checkLength('conn_value', buf, ABI_SIZES.conn_value);
  return {
    backendId: readU32(buf, CONN.backend_id), vipId: readU16(buf, CONN.vip_id), vipGen: readU16(buf, CONN.vip_gen),
    atimeNs: readU64(buf, CONN.atime_ns),
  };
}

// ---------------------------------------------------------------------------------
// Backends

export interface Backend { addr: Addr; flags?: number }
export interface DecodedBackend {
  /** 0 marks an unused slot (then addr is null). */
  family: 0 | typeof FAMILY_V4 | typeof FAMILY_V6;
  addr: string | null;
  flags: number;
}

/** struct backend for an address (family from the address); null encodes an unused slot. */
export function backend(value: Backend | null): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.backend);
  if (value === null) return buf;
  const { family, bytes } = addrBytes(value.addr, 'backend.addr');
  buf.set(bytes, BACKEND.addr); // IPv4 in addr[0], the rest zero
  buf[BACKEND.family] = family;
  buf[BACKEND.flags] = checkUint('backend.flags', value.flags ?? 0, 8);
  return buf;
}

export function decodeBackend(buf: Uint8Array): DecodedBackend {
  checkLength('backend', buf, ABI_SIZES.backend);
  const family = buf[BACKEND.family]!;
  const flags = buf[BACKEND.flags]!;
  if (family === FAMILY_V4) return { family, addr: ipv4String(buf, BACKEND.addr), flags };
  if (family === FAMILY_V6) return { family, addr: ipv6String(buf, BACKEND.addr), flags };
  if (family === 0) return { family, addr: null, flags };
  return fail('backend.family', `unknown family ${family}`);
}

// ---------------------------------------------------------------------------------
// Counters (every stats map; per-CPU, summed here)

export interface Counter { packets: bigint; bytes: bigint }

export function counter(value: Counter): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.counter);
  writeU64(buf, checkU64('counter.packets', value.packets), COUNTER.packets);
  writeU64(buf, checkU64('counter.bytes', value.bytes), COUNTER.bytes);
  return buf;
}

export function decodeCounter(buf: Uint8Array, offset = 0): Counter {
  if (buf.byteLength - offset < ABI_SIZES.counter) {
    fail('counter', `expected ${ABI_SIZES.counter} bytes at offset ${offset}, buffer has ${buf.byteLength}`);
  }
  return { packets: readU64(buf, offset + COUNTER.packets), bytes: readU64(buf, offset + COUNTER.bytes) };
}

/** The sum over CPUs of a per-CPU struct counter (one buffer per possible CPU). */
export function sumCounters(perCpu: readonly Uint8Array[]): Counter {
  let packets = 0n;
  let bytes = 0n;
  for (const value of perCpu) {
    const c = decodeCounter(value);
    packets += c.packets;
    bytes += c.bytes;
  }
  return { packets, bytes };
}

// ---------------------------------------------------------------------------------
// Decap address keys

export interface AddrKey { addr: Addr }

export function addrKey(key: AddrKey): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.addr_key);
  const { family, bytes } = addrBytes(key.addr, 'addr_key.addr');
  buf.set(bytes, ADDR_KEY.addr);
  buf[ADDR_KEY.family] = family;
  return buf;
}

export function decodeAddrKey(buf: Uint8Array): { addr: string; family: typeof FAMILY_V4 | typeof FAMILY_V6 } {
  checkLength('addr_key', buf, ABI_SIZES.addr_key);
  const family = buf[ADDR_KEY.family]!;
  if (family === FAMILY_V4) return { family, addr: ipv4String(buf, ADDR_KEY.addr) };
  if (family === FAMILY_V6) return { family, addr: ipv6String(buf, ADDR_KEY.addr) };
  return fail('addr_key.family', `unknown family ${family}`);
}

// ---------------------------------------------------------------------------------
// Load-time configuration (.rodata of the balancer and the decap program)

export interface BalancerConfig {
  /** Maglev slots per VIP, a prime. */
  ringSize: number;
  /** Egress MTU the encapsulated packet must fit. */
  mtu: number;
  /** Outer TTL / hop limit. */
  tunnelTtl: number;
  /** GUE destination port. */
  guePort: number;
  /** UDP connection-table entry lifetime; DEFAULT_UDP_TIMEOUT_NS if absent. */
  udpTimeoutNs?: bigint;
  /** IPIP outer source: upper 16 bits kept, lower 16 from the flow hash. */
  tunnelSrc4?: Addr;
  /** IP6IP6 outer source: first 96 bits kept, last 32 from the flow hash. */
  tunnelSrc6?: Addr;
  /** GUE outer sources: the node's own addresses. */
  nodeAddr4?: Addr;
  nodeAddr6?: Addr;
  /** Outer destination MAC unless CFG_F_FIB_LOOKUP. */
  nexthopMac?: string | Uint8Array;
  /** CFG_F_* */
  flags?: number;
  /** log2 of the VIP address table's slots (1..16); default 11. */
  addrSlotBits?: number;
}

export function balancerConfig(cfg: BalancerConfig): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.balancer_config);
  writeU32(buf, checkUint('balancer_config.ring_size', cfg.ringSize, 32), CFG.ring_size);
  writeU32(buf, checkUint('balancer_config.mtu', cfg.mtu, 32), CFG.mtu);
  writeU64(buf, checkU64('balancer_config.udp_timeout_ns', cfg.udpTimeoutNs ?? DEFAULT_UDP_TIMEOUT_NS), CFG.udp_timeout_ns);
  buf.set(ipv4Bytes(cfg.tunnelSrc4 ?? '0.0.0.0', 'balancer_config.tunnel_src4'), CFG.tunnel_src4);
  buf.set(ipv6Bytes(cfg.tunnelSrc6 ?? '::', 'balancer_config.tunnel_src6'), CFG.tunnel_src6);
  buf.set(ipv4Bytes(cfg.nodeAddr4 ?? '0.0.0.0', 'balancer_config.node_addr4'), CFG.node_addr4);
  buf.set(ipv6Bytes(cfg.nodeAddr6 ?? '::', 'balancer_config.node_addr6'), CFG.node_addr6);
  buf.writeUInt16BE(checkUint('balancer_config.gue_port', cfg.guePort, 16), CFG.gue_port);
  buf.set(macBytes(cfg.nexthopMac ?? '00:00:00:00:00:00', 'balancer_config.nexthop_mac'), CFG.nexthop_mac);
  buf[CFG.tunnel_ttl] = checkUint('balancer_config.tunnel_ttl', cfg.tunnelTtl, 8);
  buf[CFG.flags] = checkUint('balancer_config.flags', cfg.flags ?? 0, 8);
  writeU32(buf, checkUint('balancer_config.addr_slot_bits', cfg.addrSlotBits ?? 11, 32), CFG.addr_slot_bits);
  return buf;
}

export function decodeBalancerConfig(buf: Uint8Array): Required<BalancerConfig> & {
  tunnelSrc4: string; tunnelSrc6: string; nodeAddr4: string; nodeAddr6: string; nexthopMac: string;
} {
  checkLength('balancer_config', buf, ABI_SIZES.balancer_config);
  const b = asBuffer(buf);
  return {
    ringSize: readU32(b, CFG.ring_size),
    mtu: readU32(b, CFG.mtu),
    udpTimeoutNs: readU64(b, CFG.udp_timeout_ns),
    tunnelSrc4: ipv4String(b, CFG.tunnel_src4),
    tunnelSrc6: ipv6String(b, CFG.tunnel_src6),
    nodeAddr4: ipv4String(b, CFG.node_addr4),
    nodeAddr6: ipv6String(b, CFG.node_addr6),
    guePort: b.readUInt16BE(CFG.gue_port),
    nexthopMac: macString(b, CFG.nexthop_mac),
    tunnelTtl: b[CFG.tunnel_ttl]!,
    flags: b[CFG.flags]!,
    addrSlotBits: readU32(b, CFG.addr_slot_bits),
  };
}

export interface DecapConfig { guePort: number }

export function decapConfig(cfg: DecapConfig): Buffer {
  const buf = Buffer.alloc(ABI_SIZES.decap_config);
  buf.writeUInt16BE(checkUint('decap_config.gue_port', cfg.guePort, 16), DECAP_CFG.gue_port);
  return buf;
}

export function decodeDecapConfig(buf: Uint8Array): DecapConfig {
  checkLength('decap_config', buf, ABI_SIZES.decap_config);
  return { guePort: asBuffer(buf).readUInt16BE(DECAP_CFG.gue_port) };
}
