// LoadBalancerVip (namespaced, short name lbvip): the VIP a user applies, or the operator
// creates for a Service of class fulcrum.dev/xdp. Mirrors
// crds/loadbalancervips.fulcrum.dev.yaml: KEEP IN SYNC.
import { z } from 'zod';
import { Encapsulation, Protocol } from '../desired-state.ts';
import {
  API_VERSION, Conditions, Generation, LabelSelector, ObjectName, ServiceName, StatusAddress, VipAddress, uniqueBy, wire,
} from './common.ts';

export const LOAD_BALANCER_VIP = { kind: 'LoadBalancerVip', plural: 'loadbalancervips', shortName: 'lbvip', namespaced: true } as const;

/** The condition types of status.conditions (docs/operator.md lists the reasons). */
export const LOAD_BALANCER_VIP_CONDITIONS = ['Accepted', 'AddressAssigned', 'Programmed'] as const;
export type LoadBalancerVipConditionType = (typeof LOAD_BALANCER_VIP_CONDITIONS)[number];

export const VipPort = z.object({
  port: z.int().min(1).max(65535),
  protocol: Protocol.default('TCP'),
});
export type VipPort = z.infer<typeof VipPort>;

export const AllPorts = z.object({
  protocols: z
    .array(Protocol)
    .min(1)
    .max(2)
    .superRefine((list, ctx) => uniqueBy(list, (p) => p, ctx, [])),
});
export type AllPorts = z.infer<typeof AllPorts>;

export const VipBackends = z.object({
  /** A Service in the VIP's namespace; its EndpointSlices give the backends. */
  service: ServiceName,
});

export const VipHashing = z.object({
  /** Hash the client address only: every connection of a client reaches one backend. */
  sourceIpOnly: z.boolean().default(false),
  /** Skip the connection table: Maglev alone places every packet. */
  lruBypass: z.boolean().default(false),
});
export type VipHashing = z.infer<typeof VipHashing>;

const spec = z
  .object({
    /** The VIP address; exactly one of address and pool. */
    address: VipAddress.optional(),
    /** The VipPool to assign the address from; exactly one of address and pool. */
    pool: ObjectName.optional(),
    /** Exactly one of ports and allPorts. */
    ports: z
      .array(VipPort)
      .min(1)
      .max(128)
      .superRefine((list, ctx) => uniqueBy(list, (p) => `${p.protocol}/${p.port}`, ctx, []))
      .optional(),
    allPorts: AllPorts.optional(),
    backends: VipBackends,
    /** Absent: nodes labelled fulcrum.dev/balancer=true (BALANCER_NODE_LABEL). */
    nodeSelector: LabelSelector.optional(),
    encapsulation: Encapsulation.default('ipip'),
    hashing: VipHashing.optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.address === undefined) === (s.pool === undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'set exactly one of address (a fixed VIP address) or pool (assign one from a VipPool)' });
    }
    if ((s.ports === undefined) === (s.allPorts === undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'set exactly one of ports (listed ports) or allPorts (every port of the given protocols)' });
    }
  });

/** LoadBalancerVip.spec as the API server accepts and defaults it. */
export const LoadBalancerVipSpec = wire(spec);
export type LoadBalancerVipSpec = z.output<typeof spec>;
/** What a writer may send: defaulted fields optional. */
export type LoadBalancerVipSpecInput = z.input<typeof spec>;

const status = z.object({
  /** The address in use: spec.address, or the one assigned from spec.pool. */
  address: StatusAddress.optional(),
  conditions: Conditions.optional(),
  balancerNodes: z
    .object({
      /** Nodes the nodeSelector selects. */
      selected: z.int().min(0).max(2147483647),
      /** Selected nodes whose agent reports every port of the VIP programmed. */
      programmed: z.int().min(0).max(2147483647),
    })
    .optional(),
  /** Ready endpoints of the VIP's family (a weight-0 Pod counts, though it takes no new flows). */
  readyBackends: z.int().min(0).max(2147483647).optional(),
  /** Terminating endpoints that still serve: weight 0, established flows stay. */
  drainingBackends: z.int().min(0).max(2147483647).optional(),
  observedGeneration: Generation.optional(),
});

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

/** The data-plane ports of a VIP: port 0 stands for every port of a protocol (allPorts). */
export function vipPorts(s: Pick<LoadBalancerVipSpec, 'ports' | 'allPorts'>): { port: number; protocol: Protocol }[] {
  if (s.allPorts !== undefined) return s.allPorts.protocols.map((protocol) => ({ port: 0, protocol }));
  return (s.ports ?? []).map((p) => ({ port: p.port, protocol: p.protocol }));
}
