// What one LoadBalancerVip object means to the rest of the operator: its validated spec,
// the address it claims, and whether (and how) it may be placed on nodes. Pure.
import { ANNOTATIONS } from '../kinds.ts';
import { LoadBalancerVipSpec } from '../api.ts';
import type { LoadBalancerVip } from '../api.ts';
import { isConditionTrue } from '../status.ts';
import type { Claim, PortClaim } from './allocate.ts';
import type { VipModel } from './nodes.ts';

export type ParsedVip = { kind: 'valid'; spec: LoadBalancerVipSpec } | { kind: 'invalid'; message: string };

// Informer objects are replaced on every change, never mutated: parse once per version.
const parsedCache = new WeakMap<LoadBalancerVip, ParsedVip>();

export function parseVip(vip: LoadBalancerVip): ParsedVip {
  const cached = parsedCache.get(vip);
  if (cached !== undefined) return cached;
  const result = LoadBalancerVipSpec.safeParse(vip.spec ?? {});
  const parsed: ParsedVip = result.success
    ? { kind: 'valid', spec: result.data }
    : { kind: 'invalid', message: result.error.issues.map((i) => `${i.path.length > 0 ? `spec.${i.path.join('.')}: ` : 'spec: '}${i.message}`).join('; ') };
  parsedCache.set(vip, parsed);
  return parsed;
}

export function vipPorts(spec: LoadBalancerVipSpec): PortClaim[] {
  if (spec.allPorts !== undefined) return spec.allPorts.protocols.map((protocol) => ({ protocol, port: 0 }));
  return (spec.ports ?? []).map((p) => ({ protocol: p.protocol, port: p.port }));
}

export function shareKeyOf(vip: LoadBalancerVip): string | undefined {
  const key = vip.metadata.annotations?.[ANNOTATIONS.allowSharedIp];
  return key === undefined || key === '' ? undefined : key;
}

export function familyOf(vip: LoadBalancerVip): 4 | 6 | undefined {
  const f = vip.metadata.annotations?.[ANNOTATIONS.ipFamily];
  return f === 'IPv4' ? 4 : f === 'IPv6' ? 6 : undefined;
}

export function vipKeyOf(vip: LoadBalancerVip): string {
  return `${vip.metadata.namespace ?? ''}/${vip.metadata.name}`;
}

/**
 * The address a VIP holds or asks for: spec.address, or the status.address it was
 * given from its pool (while AddressAssigned is True).
 */
export function claimOf(vip: LoadBalancerVip): Claim | undefined {
  const parsed = parseVip(vip);
  if (parsed.kind !== 'valid') return undefined;
  const base = { key: vipKeyOf(vip), created: vip.metadata.creationTimestamp ?? '', ports: vipPorts(parsed.spec), shareKey: shareKeyOf(vip) };
  if (parsed.spec.address !== undefined) return { ...base, address: parsed.spec.address };
  const assigned = vip.status?.address;
  if (assigned !== undefined && assigned !== '' && isConditionTrue(vip.status?.conditions, 'AddressAssigned')) return { ...base, address: assigned };
  return undefined;
}

export type Placement =
  | { kind: 'place'; model: VipModel; service: string }
  | { kind: 'none' }
  /** The spec changed and the lbvip controller has not validated it yet: keep what is placed. */
  | { kind: 'stale' };

/** Whether and how a VIP goes onto nodes: only validated generations with an assigned address. */
export function placement(vip: LoadBalancerVip | undefined): Placement {
  if (vip === undefined || vip.metadata.deletionTimestamp !== undefined) return { kind: 'none' };
  const parsed = parseVip(vip);
  if (parsed.kind !== 'valid') return { kind: 'none' };
  const status = vip.status;
  if (status?.observedGeneration !== vip.metadata.generation) return { kind: 'stale' };
  if (!isConditionTrue(status?.conditions, 'Accepted') || !isConditionTrue(status?.conditions, 'AddressAssigned')) return { kind: 'none' };
  const address = status?.address;
  if (address === undefined || address === '') return { kind: 'none' };
  const spec = parsed.spec;
  return {
    kind: 'place',
    service: `${vip.metadata.namespace ?? ''}/${spec.backends.service}`,
    model: {
      key: vipKeyOf(vip),
      address,
      ports: vipPorts(spec),
      encapsulation: spec.encapsulation,
      sourceIpOnly: spec.hashing?.sourceIpOnly ?? false,
      lruBypass: spec.hashing?.lruBypass ?? false,
      nodeSelector: spec.nodeSelector,
    },
  };
}
