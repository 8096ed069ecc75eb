// VipPool (cluster-scoped, short name vippool): addresses the operator assigns to VIPs.
// The one definition of the kind: crds/vippools.fulcrum.dev.yaml is generated from
// VIP_POOL_CRD below (`npm run gen:crds`).
import { z } from 'zod';
import { FulcrumError } from '../errors.ts';
import { API_VERSION, Conditions, Count, GROUP, Generation, PoolEntry, VERSION, labelSelector, parsePoolEntry, uniqueBy, wire } from './common.ts';
import type { PoolRange } from './common.ts';
import { doc } from './crd-generate.ts';
import type { CrdSkeleton } from './crd-generate.ts';

export const VIP_POOL = { kind: 'VipPool', plural: 'vippools', shortName: 'vippool', namespaced: false } as const;

/** The condition types of status.conditions (docs/operator.md lists the reasons). */
export const VIP_POOL_CONDITIONS = ['Ready', 'Exhausted'] as const;
export type VipPoolConditionType = (typeof VIP_POOL_CONDITIONS)[number];

const poolSelector = labelSelector({
  matchLabels: 'Labels that must be present, with exactly these values.',
  matchExpressions: 'Requirements the labels must all meet.',
});

const spec = z.object({
  addresses: z
    .array(PoolEntry)
    .min(1)
    .max(64)
    .superRefine((list, ctx) => uniqueBy(list, (a) => a, ctx, []))
    .meta({
      description: doc`CIDRs ("192.0.2.0/28", "2001:db8::/120"; no bits set after the prefix length)
        and inclusive ranges FIRST-LAST ("192.0.2.100-192.0.2.110", both ends of one family, lower
        first). Every address of an entry can be assigned, the network and broadcast addresses of
        an IPv4 CIDR included (see avoidBuggyIPs). Assignment takes the lowest free address,
        entries in this order. IPv6 is written in hexadecimal groups (no dotted quad) and
        IPv4-mapped addresses are not allowed.`,
      'x-kubernetes-list-type': 'set',
    }),
  autoAssign: z.boolean().default(true).meta({
    description: doc`Whether a Service that names no pool (annotation fulcrum.dev/pool) may get an
      address from this pool. Default true. A LoadBalancerVip that names the pool in spec.pool gets
      an address either way.`,
  }),
  namespaceSelector: poolSelector.optional().meta({
    description: doc`Only VIPs in namespaces whose labels match may get addresses from this pool.
      Absent: every namespace.`,
  }),
  serviceSelector: poolSelector.optional().meta({
    description: doc`Only Services whose labels match may get addresses from this pool (for a
      LoadBalancerVip, the Service named in spec.backends.service). Absent: every Service.`,
  }),
  avoidBuggyIPs: z.boolean().default(false).meta({
    description: doc`Never assign IPv4 addresses ending in .0 or .255, which some old clients and
      middleboxes mishandle. Default false.`,
  }),
}).meta({ description: 'The addresses, and who may get them.' });

/** VipPool.spec as the API server accepts and defaults it. */
export const VipPoolSpec = wire(spec);
export type VipPoolSpec = z.output<typeof spec>;
export type VipPoolSpecInput = z.input<typeof spec>;

const status = z.object({
  assigned: Count.optional().meta({ description: 'Distinct addresses of the pool held by VIPs.' }),
  available: Count.optional().meta({
    description: doc`Addresses left to assign (after avoidBuggyIPs), capped at 9007199254740991 for
      very large IPv6 pools.`,
  }),
  conditions: Conditions.optional().meta({
    description: doc`Ready (the addresses are valid and overlap no older pool) and Exhausted (no
      address left). docs/operator.md lists every reason.`,
  }),
  observedGeneration: Generation.optional().meta({ description: 'The .metadata.generation this status describes.' }),
}).meta({ description: "The pool's use. Written by the operator only." });

export const VipPoolStatus = wire(status);
export type VipPoolStatus = z.output<typeof status>;

export const VipPool = wire(
  z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(VIP_POOL.kind),
    metadata: z.looseObject({ name: z.string() }),
    spec,
    status: status.optional(),
  }),
);
export type VipPool = z.output<typeof VipPool>;

/** What crds/vippools.fulcrum.dev.yaml says besides the schemas above. */
export const VIP_POOL_CRD: CrdSkeleton = {
  group: GROUP,
  version: VERSION,
  kind: VIP_POOL.kind,
  plural: VIP_POOL.plural,
  singular: 'vippool',
  shortNames: [VIP_POOL.shortName],
  categories: ['fulcrum'],
  scope: 'Cluster',
  source: 'src/shared/api/vip-pool.ts',
  description: doc`VipPool is a set of addresses that the operator assigns to LoadBalancerVips which
    name it in spec.pool, and to Services of type LoadBalancer with loadBalancerClass
    fulcrum.dev/xdp. An assigned address stays with its VIP while the VIP exists and returns to the
    pool when the VIP is deleted. Pools must not overlap: an address in two pools is reported (Ready
    False, Overlap) on the newer pool. Fulcrum does not announce the addresses; route them to the
    balancer nodes.`,
  spec,
  status,
  printerColumns: [
    { name: 'Addresses', type: 'string', description: "The pool's CIDRs and ranges.", jsonPath: '.spec.addresses' },
    { name: 'Assigned', type: 'integer', description: 'Addresses of the pool held by VIPs.', jsonPath: '.status.assigned' },
    { name: 'Available', type: 'integer', description: 'Addresses left to assign.', jsonPath: '.status.available' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    { name: 'Auto-Assign', type: 'boolean', priority: 1, description: 'Whether Services that name no pool may get addresses from this one.', jsonPath: '.spec.autoAssign' },
  ],
};

/**
 * The ranges of a validated pool, in spec order (a CIDR as its first and last address).
 * Throws on an entry the schema would reject: parse the spec first.
 */
export function poolRanges(s: Pick<VipPoolSpec, 'addresses'>): PoolRange[] {
  return s.addresses.map((text) => {
    const parsed = parsePoolEntry(text);
    if (parsed.kind === 'invalid') throw new FulcrumError('ERR_INTERNAL', `VipPool entry ${text} was not validated: ${parsed.messages.join('; ')}`);
    return parsed.range;
  });
}
