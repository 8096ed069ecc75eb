// LoadBalancerVip (namespaced, short name lbvip): the VIP a user applies, or the operator
// creates for a Service of class fulcrum.dev/xdp. The one definition of the kind:
// crds/loadbalancervips.fulcrum.dev.yaml is generated from LOAD_BALANCER_VIP_CRD below
// (`npm run gen:crds`); docs/operator.md explains every field.
import { z } from 'zod';
import { Encapsulation, Protocol } from '../desired-state.ts';
import {
  API_VERSION, Conditions, Count32, GROUP, Generation, ObjectName, ServiceName, StatusAddress, VERSION, VipAddress, labelSelector, uniqueBy, wire,
} from './common.ts';
import { doc } from './crd-generate.ts';
import type { CrdSkeleton } from './crd-generate.ts';

export const LOAD_BALANCER_VIP = { kind: 'LoadBalancerVip', plural: 'loadbalancervips', shortName: 'lbvip', namespaced: true } as const;

/** The condition types of status.conditions (docs/operator.md lists the reasons). */
export const LOAD_BALANCER_VIP_CONDITIONS = ['Accepted', 'AddressAssigned', 'Programmed'] as const;
export type LoadBalancerVipConditionType = (typeof LOAD_BALANCER_VIP_CONDITIONS)[number];

export const VipPort = z.object({
  port: z.int().min(1).max(65535).meta({ description: 'The destination port clients connect to, 1 to 65535.' }),
  protocol: Protocol.default('TCP').meta({ description: 'TCP or UDP.' }),
}).meta({ description: 'One port and protocol of the VIP.' });
export type VipPort = z.infer<typeof VipPort>;

export const AllPorts = z.object({
  protocols: z
    .array(Protocol)
    .min(1)
    .max(2)
    .superRefine((list, ctx) => uniqueBy(list, (p) => p, ctx, []))
    .meta({ description: 'The protocols, TCP and/or UDP.', 'x-kubernetes-list-type': 'set' }),
});
export type AllPorts = z.infer<typeof AllPorts>;

export const VipBackends = z.object({
  service: ServiceName.meta({
    description: doc`A Service in this namespace. Its EndpointSlices give the backends: ready
      endpoints take new flows (weighted by the Pod annotation fulcrum.dev/weight, default 1);
      terminating but serving endpoints drain (weight 0: no new flows, established flows stay);
      others are out. Only endpoints of the VIP's address family are used.`,
  }),
});

export const VipHashing = z.object({
  sourceIpOnly: z.boolean().default(false).meta({
    description: doc`Hash the client address only, so every connection of one client reaches one
      backend (session affinity by source address). Default false: the 5-tuple.`,
  }),
  lruBypass: z.boolean().default(false).meta({
    description: doc`Do not remember flows in the per-CPU connection table: Maglev alone places
      every packet. Saves table space for huge flow counts, at the cost of connections moving
      when the backend set changes. Default false.`,
  }),
});
export type VipHashing = z.infer<typeof VipHashing>;

const ONE_ADDRESS_SOURCE = 'set exactly one of address (a fixed VIP address) or pool (assign one from a VipPool)';
const ONE_PORT_FORM = 'set exactly one of ports (listed ports) or allPorts (every port of the given protocols)';

const spec = z
  .object({
    address: VipAddress.optional().meta({
      description: doc`The VIP address, IPv4 or IPv6 (192.0.2.10, 2001:db8::10). Must be a unicast
        address a VIP can use: not unspecified, loopback, link-local, multicast, IPv4-mapped, in
        0.0.0.0/8 or in 240.0.0.0/4. Route it to the balancer nodes yourself (static routes or
        ECMP): Fulcrum does not announce addresses. If it lies in a VipPool, that pool will not
        hand it out to another VIP. Exactly one of address and pool.`,
    }),
    pool: ObjectName.optional().meta({
      description: doc`The VipPool (cluster-scoped) to assign the address from; the assigned address
        appears in status.address and stays with this VIP while it exists. The pool's
        namespaceSelector and serviceSelector must admit this VIP. Exactly one of address and
        pool.`,
    }),
    ports: z
      .array(VipPort)
      .min(1)
      .max(128)
      .superRefine((list, ctx) => uniqueBy(list, (p) => `${p.protocol}/${p.port}`, ctx, []))
      .optional()
      .meta({
        description: doc`The ports balanced, each with its protocol. Fulcrum does not translate ports
          (direct server return): backends must listen on these ports at the VIP address. Exactly
          one of ports and allPorts.`,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['port', 'protocol'],
      }),
    allPorts: AllPorts.optional().meta({
      description: doc`Balance every destination port of these protocols (a wildcard VIP: the data
        plane falls back to it when no listed port matches). Exactly one of ports and allPorts.`,
    }),
    backends: VipBackends.meta({ description: 'Where the traffic goes.' }),
    nodeSelector: labelSelector({
      matchLabels: 'Labels a node must have, with exactly these values.',
      matchExpressions: "Requirements a node's labels must all meet.",
    }).optional().meta({
      description: doc`The nodes that balance this VIP (their agents program it into XDP). When
        absent, nodes labelled fulcrum.dev/balancer=true. An empty selector ({}) selects every
        node.`,
    }),
    encapsulation: Encapsulation.default('ipip').meta({
      description: doc`How packets travel to a backend. ipip (default): IPIP, IP6IP6, 4in6 or 6in4 by
        the address families; the outer source varies with the flow so the backend's NIC spreads
        flows over its queues. gue: Generic UDP Encapsulation (variant 1), for networks that only
        pass UDP or balance on ports.`,
    }),
    hashing: VipHashing.optional().meta({ description: 'How flows map to backends.' }),
  })
  .superRefine((s, ctx) => {
    if ((s.address === undefined) === (s.pool === undefined)) ctx.addIssue({ code: 'custom', path: [], message: ONE_ADDRESS_SOURCE });
    if ((s.ports === undefined) === (s.allPorts === undefined)) ctx.addIssue({ code: 'custom', path: [], message: ONE_PORT_FORM });
  })
  .meta({
    description: doc`What to balance: the address (fixed, or from a pool), the ports, the backends,
      which nodes balance it, and how.`,
    'x-kubernetes-validations': [
      { rule: 'has(self.address) != has(self.pool)', message: ONE_ADDRESS_SOURCE },
      { rule: 'has(self.ports) != has(self.allPorts)', message: ONE_PORT_FORM },
    ],
  });

/** LoadBalancerVip.spec as the API server accepts and defaults it. */
export const LoadBalancerVipSpec = wire(spec);
export type LoadBalancerVipSpec = z.output<typeof spec>;
/** What a writer may send: defaulted fields optional. */
export type LoadBalancerVipSpecInput = z.input<typeof spec>;

const status = z.object({
  address: StatusAddress.optional().meta({ description: 'The VIP address in use; for a pool VIP, the address assigned to it.' }),
  conditions: Conditions.optional().meta({
    description: doc`Accepted (the spec is valid and what it refers to exists), AddressAssigned (the
      VIP holds an address), Programmed (every selected balancer node has programmed the current
      state). docs/operator.md lists every reason.`,
  }),
  balancerNodes: z
    .object({
      selected: Count32.meta({ description: 'Nodes the nodeSelector selects.' }),
      programmed: Count32.meta({
        description: doc`Selected nodes whose agent reports every port of this VIP programmed: in the
          BalancerNode's status.vips, at a status.observedGeneration that carries the VIP's current
          entries.`,
      }),
    })
    .optional()
    .meta({ description: 'The balancer nodes of this VIP.' }),
  readyBackends: Count32.optional().meta({
    description: doc`Ready endpoints of the VIP's address family: in the ring with their Pod's weight
      (a Pod annotated fulcrum.dev/weight "0" counts here but takes no new flows).`,
  }),
  drainingBackends: Count32.optional().meta({
    description: doc`Terminating endpoints that still serve: in the ring with weight 0, so they take
      no new flows while their established flows stay.`,
  }),
  observedGeneration: Generation.optional().meta({ description: 'The .metadata.generation this status describes.' }),
}).meta({ description: 'What the operator did with this VIP. Written by the operator only.' });

export const LoadBalancerVipStatus = wire(status);
export type LoadBalancerVipStatus = z.output<typeof status>;

export const LoadBalancerVip = wire(
  z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(LOAD_BALANCER_VIP.kind),
    metadata: z.looseObject({ name: z.string(), namespace: z.string().optional() }),
    spec,
    status: status.optional(),
  }),
);
export type LoadBalancerVip = z.output<typeof LoadBalancerVip>;

/** What crds/loadbalancervips.fulcrum.dev.yaml says besides the schemas above. */
export const LOAD_BALANCER_VIP_CRD: CrdSkeleton = {
  group: GROUP,
  version: VERSION,
  kind: LOAD_BALANCER_VIP.kind,
  plural: LOAD_BALANCER_VIP.plural,
  singular: 'loadbalancervip',
  shortNames: [LOAD_BALANCER_VIP.shortName],
  categories: ['fulcrum'],
  scope: 'Namespaced',
  source: 'src/shared/api/load-balancer-vip.ts',
  description: doc`LoadBalancerVip is a virtual IP address that Fulcrum balances: the XDP program on
    every selected balancer node picks a backend for each new flow with Maglev consistent hashing
    and tunnels the packets to it (IPIP or GUE); the backend answers the client directly. A Service
    of type LoadBalancer with loadBalancerClass fulcrum.dev/xdp gets one of these automatically.`,
  spec,
  status,
  printerColumns: [
    { name: 'Address', type: 'string', description: 'The VIP address in use (spec.address, or the one assigned from the pool).', jsonPath: '.status.address' },
    { name: 'Ports', type: 'string', description: 'The ports and protocols balanced (empty for an all-ports VIP; see All-Ports).', jsonPath: '.spec.ports' },
    { name: 'Backends', type: 'integer', description: "Ready backends (endpoints of the VIP's family).", jsonPath: '.status.readyBackends' },
    { name: 'Programmed', type: 'integer', description: "Balancer nodes whose data plane holds this VIP's current state.", jsonPath: '.status.balancerNodes.programmed' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    { name: 'All-Ports', type: 'string', priority: 1, description: 'The protocols of an all-ports VIP.', jsonPath: '.spec.allPorts.protocols' },
    { name: 'Pool', type: 'string', priority: 1, description: 'The VipPool the address comes from.', jsonPath: '.spec.pool' },
    { name: 'Draining', type: 'integer', priority: 1, description: 'Backends that keep their established flows but take no new ones.', jsonPath: '.status.drainingBackends' },
    { name: 'Selected', type: 'integer', priority: 1, description: 'Balancer nodes selected to serve this VIP.', jsonPath: '.status.balancerNodes.selected' },
  ],
};

/** The data-plane ports of a VIP: port 0 stands for every port of a protocol (allPorts). */
export function vipPorts(s: Pick<LoadBalancerVipSpec, 'ports' | 'allPorts'>): { port: number; protocol: Protocol }[] {
  if (s.allPorts !== undefined) return s.allPorts.protocols.map((protocol) => ({ port: 0, protocol }));
  return (s.ports ?? []).map((p) => ({ port: p.port, protocol: p.protocol }));
}
