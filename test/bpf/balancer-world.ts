// The world the balancer fixtures and the fuzz test run in: one loaded balancer with a
// small ring, a handful of VIPs covering every encapsulation and flag, and backends of
// both families. Fixtures name VIPs and backends from here; loadBalancerWorld programs it.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { vip4Key, vipMeta, type BalancerConfig } from '../../src/agent/bpf/abi.ts';
import { AddressTable } from '../../src/agent/dataplane/address-table.ts';
import { BalancerProgram } from '../../src/agent/dataplane/balancer.ts';
import type { TunnelConfig } from '../support/packets.ts';

export const RING_SIZE = 13;
export const LIMITS = { maxVips: 16, maxBackends: 64, connTableSize: 4096 };

export const CLIENT_MAC = '02:00:00:00:00:01';
export const LB_MAC = '02:00:00:00:00:02';
export const NEXTHOP_MAC = '02:00:00:00:00:fe';
export const CLIENT4 = '198.51.100.7';
export const CLIENT6 = '2001:db8:c::7';
export const ROUTER4 = '203.0.113.1';
export const ROUTER6 = '2001:db8:ffff::1';

export const CONFIG: BalancerConfig = {
  ringSize: RING_SIZE,
  mtu: 1500,
  tunnelTtl: 64,
  guePort: 6080,
  tunnelSrc4: '172.16.0.0',
  tunnelSrc6: 'fd00:7::',
  nodeAddr4: '192.168.50.1',
  nodeAddr6: 'fd00:50::1',
  nexthopMac: NEXTHOP_MAC,
};

export const TUNNEL: TunnelConfig = {
  tunnelSrc4: '172.16.0.0',
  tunnelSrc6: 'fd00:7::',
  nodeAddr4: '192.168.50.1',
  nodeAddr6: 'fd00:50::1',
  guePort: 6080,
  ttl: 64,
  nexthopMac: NEXTHOP_MAC,
};

export const BACKENDS = {
  b4a: { id: 1, address: '10.1.0.1' },
  b4b: { id: 2, address: '10.1.0.2' },
  b6a: { id: 3, address: 'fd00:1::1' },
  b6b: { id: 4, address: 'fd00:1::2' },
} as const;
export type BackendName = keyof typeof BACKENDS;
/** An id whose slot in the backends table is unused, and one outside the table. */
export const UNUSED_BACKEND_ID = 9;
export const OUT_OF_TABLE_BACKEND_ID = 5000;

export const VIP_FLAG = { srcIpOnly: 1, lruBypass: 2, gue: 4 } as const;

export type WorldVip = {
  id: number;
  address: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  flags: number;
  /** Every ring slot holds this id, or the ring cycles through a list of ids. */
  ring: number | readonly number[];
};

const all = (name: BackendName) => BACKENDS[name].id;

export const VIPS = {
  web4: { id: 0, address: '10.10.0.1', port: 80, protocol: 'TCP', flags: 0, ring: all('b4a') },
  dns4: { id: 1, address: '10.10.0.1', port: 53, protocol: 'UDP', flags: 0, ring: all('b4a') },
  anyPort4to6: { id: 2, address: '10.10.0.2', port: 0, protocol: 'TCP', flags: 0, ring: all('b6a') },
  web6: { id: 3, address: 'fd00:10::1', port: 443, protocol: 'TCP', flags: 0, ring: all('b6a') },
  web6to4: { id: 4, address: 'fd00:10::1', port: 80, protocol: 'TCP', flags: 0, ring: all('b4a') },
  gue4: { id: 5, address: '10.10.0.3', port: 80, protocol: 'TCP', flags: VIP_FLAG.gue, ring: all('b4a') },
  gue6: { id: 6, address: 'fd00:10::3', port: 80, protocol: 'TCP', flags: VIP_FLAG.gue, ring: all('b6a') },
  sticky: { id: 7, address: '10.10.0.4', port: 80, protocol: 'TCP', flags: VIP_FLAG.srcIpOnly | VIP_FLAG.lruBypass, ring: [1, 2, 3, 4] },
  empty: { id: 8, address: '10.10.0.5', port: 80, protocol: 'TCP', flags: 0, ring: 0 },
  unusedBackend: { id: 9, address: '10.10.0.6', port: 80, protocol: 'TCP', flags: 0, ring: UNUSED_BACKEND_ID },
  outOfTable: { id: 10, address: '10.10.0.6', port: 81, protocol: 'TCP', flags: 0, ring: OUT_OF_TABLE_BACKEND_ID },
  conn4: { id: 11, address: '10.10.0.7', port: 80, protocol: 'TCP', flags: 0, ring: all('b4a') },
  udpConn4: { id: 12, address: '10.10.0.7', port: 5000, protocol: 'UDP', flags: 0, ring: all('b4a') },
  bypass4: { id: 13, address: '10.10.0.7', port: 81, protocol: 'TCP', flags: VIP_FLAG.lruBypass, ring: all('b4a') },
  conn6: { id: 14, address: 'fd00:10::7', port: 80, protocol: 'TCP', flags: 0, ring: all('b6a') },
  badVipId: { id: 999, address: '10.10.0.8', port: 80, protocol: 'TCP', flags: 0, ring: 0 },
} as const satisfies Record<string, WorldVip>;
export type VipName = keyof typeof VIPS;

/** The ring id at slot i of a VIP. */
export function ringAt(vip: WorldVip, slot: number): number {
  return typeof vip.ring === 'number' ? vip.ring : vip.ring[slot % vip.ring.length]!;
}

export function backendById(id: number): { id: number; address: string } {
  const found = Object.values(BACKENDS).find((b) => b.id === id);
  if (!found) throw new RangeError(`no backend ${id}`);
  return found;
}

export const PROTO = { TCP: 6, UDP: 17 } as const;
/** The generation every world VIP is written with. */
export const VIP_GEN = 1;

const ROOT = join(import.meta.dirname, '..', '..');

/** Writes `vip`'s ring slot by slot from `fill`; the bad-id VIP (outside the ring map) has none. */
export function writeWorldRing(balancer: BalancerProgram, vip: WorldVip, fill: (slot: number) => number): void {
  if (vip.id >= LIMITS.maxVips) return;
  const ring = new Uint32Array(RING_SIZE);
  for (let i = 0; i < RING_SIZE; i++) ring[i] = fill(i);
  balancer.writeRing({ vipId: vip.id, ring });
}

/**
 * Builds and loads the balancer and programs the world: backends, rings, VIP entries and
 * the address table. Returns it with each VIP address's addr_id (the connection-table
 * keys use it).
 */
export function loadBalancerWorld(): { balancer: BalancerProgram; addressIds: ReadonlyMap<string, number> } {
  execFileSync('make', ['-s', '-C', join(ROOT, 'bpf')]);
  const balancer = BalancerProgram.load({ objectPath: join(ROOT, 'bpf/build/balancer.bpf.o'), config: CONFIG, limits: LIMITS });
  balancer.writeBackends(Object.values(BACKENDS));
  const addressFlags = new Map<string, number>();
  for (const vip of Object.values(VIPS) as WorldVip[]) {
    writeWorldRing(balancer, vip, (slot) => ringAt(vip, slot));
    const entry = { address: vip.address, port: vip.port, protocol: PROTO[vip.protocol], id: vip.id, flags: vip.flags, gen: VIP_GEN };
    if (vip.id < LIMITS.maxVips) {
      balancer.writeVip(entry);
    } else {
      // An id outside vip_state and the ring: only the lookup entry can hold it.
      balancer.maps.vips_v4.update(vip4Key({ addr: vip.address, port: vip.port, proto: entry.protocol }), vipMeta({ flags: 0, vipId: vip.id, gen: VIP_GEN }));
    }
    const flag = (vip.flags & VIP_FLAG.lruBypass) === 0 ? 1 /* uses table */ : 2 /* has bypass */;
    addressFlags.set(vip.address, (addressFlags.get(vip.address) ?? 0) | flag);
  }
  const tables = { 4: new AddressTable(4, balancer.addressSlots), 6: new AddressTable(6, balancer.addressSlots) };
  const addressIds = new Map<string, number>();
  for (const [address, flags] of addressFlags) {
    addressIds.set(address, addressIds.size + 1);
    balancer.writeAddressSlots(tables[address.includes(':') ? 6 : 4].upsert(address, flags, addressIds.get(address)!));
  }
  return { balancer, addressIds };
}
