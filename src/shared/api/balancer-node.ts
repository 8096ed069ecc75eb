// BalancerNode (cluster-scoped, short name bnode, named after the node): the operator→agent
// contract as a Kubernetes object. spec is src/shared/desired-state.ts's NodeDesiredState
// adapted: a decap duty names its pod by UID and the agent resolves the network namespace
// itself, so no host path travels through the API. status is what the agent reports.
// Mirrors crds/balancernodes.fulcrum.dev.yaml: KEEP IN SYNC.
import { z } from 'zod';
import { FulcrumError } from '../errors.ts';
import { Encapsulation, NodeDesiredState, Protocol } from '../desired-state.ts';
import type { NodeDesiredStateInput } from '../desired-state.ts';
import {
  API_VERSION, Conditions, Generation, IpText, WEIGHT_DEFAULT, WEIGHT_MAX, WEIGHT_MIN, boundedString, uniqueBy, wire,
} from './common.ts';

export const BALANCER_NODE = { kind: 'BalancerNode', plural: 'balancernodes', shortName: 'bnode', namespaced: false } as const;

/** The condition types of status.conditions (docs/operator.md lists the reasons). */
export const BALANCER_NODE_CONDITIONS = ['Ready', 'Programmed'] as const;
export type BalancerNodeConditionType = (typeof BALANCER_NODE_CONDITIONS)[number];

/**
 * The reasons the agent reports on its BalancerNode, the same words in its logs, metrics
 * and Events (docs/operator.md#balancernode-status explains each). Only ever add.
 */
export const BALANCER_NODE_REASONS = [
  // Ready
  'AgentReady', // the agent runs; its programs are loaded (and attached, on a balancer node)
  'LoadFailed', // a BPF object failed to open, load or pass the verifier
  'AttachFailed', // XDP could not be attached to a configured interface in an allowed mode
  'BpffsUnavailable', // the pin root is not on a BPF filesystem and the agent could not (or may not) mount one
  // Programmed
  'Programmed', // the data plane holds spec generation metadata.generation
  'InvalidSpec', // the spec breaks the node contract (toNodeDesiredState threw); nothing of it applied
  'ApplyFailed', // a map operation failed or a table is full; the data plane keeps status.observedGeneration
  'DecapFailed', // the VIPs are programmed; at least one decap duty failed (status.decap)
] as const;
export type BalancerNodeReason = (typeof BALANCER_NODE_REASONS)[number];

/** namespace/name of a pod. */
export const POD_REF = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** A pod UID as the agent accepts it: it becomes part of paths on the node. */
export const POD_UID = '^[0-9A-Za-z][-0-9A-Za-z]*$';
/** Printable ASCII without "/" and ":" (Linux's dev_valid_name also refuses "." and ".."). */
export const INTERFACE_NAME = '^[!-.0-9;-~]+$';

const PodRef = z.string().max(317).regex(new RegExp(POD_REF));
const InterfaceName = z
  .string()
  .max(15)
  .regex(new RegExp(INTERFACE_NAME))
  .refine((n) => n !== '.' && n !== '..', { message: 'must be an interface name (printable ASCII without / and :, not . or ..)' });

export const BalancerNodeBackend = z.object({
  address: IpText,
  /** Relative share of new flows; 0 = draining: no new flows, established ones stay. */
  weight: z.int().min(WEIGHT_MIN).max(WEIGHT_MAX).default(WEIGHT_DEFAULT),
});
export type BalancerNodeBackend = z.infer<typeof BalancerNodeBackend>;

export const BalancerNodeVip = z.object({
  /** The LoadBalancerVip's namespace/name; the entries of one VIP share it. */
  name: boundedString(253, 1),
  address: IpText,
  /** 0 = every port of the protocol. */
  port: z.int().min(0).max(65535),
  protocol: Protocol,
  encapsulation: Encapsulation.default('ipip'),
  sourceIpOnly: z.boolean().default(false),
  lruBypass: z.boolean().default(false),
  backends: z
    .array(BalancerNodeBackend)
    .max(4096)
    .superRefine((list, ctx) => uniqueBy(list, (b) => b.address, ctx, []))
    .default([]),
});
export type BalancerNodeVip = z.infer<typeof BalancerNodeVip>;

export const BalancerNodeDecap = z.object({
  /** namespace/name of the pod. */
  pod: PodRef,
  /** How the agent finds the pod's network namespace; a new pod with the same name has another. */
  podUID: z.string().min(1).max(128).regex(new RegExp(POD_UID)),
  /** The pod's own addresses: outer destinations decapsulated. */
  addresses: z
    .array(IpText)
    .min(1)
    .max(16)
    .superRefine((list, ctx) => uniqueBy(list, (a) => a, ctx, [])),
  /** VIPs the pod serves: on its lo, and accepted as inner destinations. */
  vips: z
    .array(IpText)
    .min(1)
    .max(1024)
    .superRefine((list, ctx) => uniqueBy(list, (a) => a, ctx, [])),
  interface: InterfaceName.default('eth0'),
});
export type BalancerNodeDecap = z.infer<typeof BalancerNodeDecap>;

const spec = z.object({
  vips: z
    .array(BalancerNodeVip)
    .max(1024)
    .superRefine((list, ctx) => uniqueBy(list, (v) => JSON.stringify([v.address, v.port, v.protocol]), ctx, []))
    .default([]),
  decap: z
    .array(BalancerNodeDecap)
    .max(2048)
    .superRefine((list, ctx) => uniqueBy(list, (d) => d.pod, ctx, []))
    .default([]),
});

/** BalancerNode.spec as the API server accepts and defaults it. */
export const BalancerNodeSpec = wire(spec);
export type BalancerNodeSpec = z.output<typeof spec>;
export type BalancerNodeSpecInput = z.input<typeof spec>;

// ------------------------------------------------------------------ status (the agent's)

export const AttachModeStatus = z.enum(['native', 'generic', 'none']);
export type AttachModeStatus = z.infer<typeof AttachModeStatus>;

/** A decap duty's outcome: programmed; pending (no network namespace on this node yet); failed. */
export const DecapOutcome = z.enum(['programmed', 'pending', 'failed']);
export type DecapOutcome = z.infer<typeof DecapOutcome>;

export const BalancerNodeInterfaceStatus = z.object({
  name: z.string().max(15).regex(new RegExp(INTERFACE_NAME)),
  mode: z.enum(['native', 'generic']),
  /** The kernel's id of the attached program. */
  programId: z.int().min(0).max(4294967295),
});

export const BalancerNodeVipStatus = z.object({
  name: boundedString(253, 1),
  /** vipKey(): PROTOCOL/address:port. */
  key: boundedString(64, 1),
  /** ringKeyDigest: equal on every node that programmed the same backends and weights. */
  ringDigest: z.string().min(1).max(64).regex(/^[0-9a-f]+$/),
  backends: z.int().min(0).max(2147483647),
});
export type BalancerNodeVipStatus = z.infer<typeof BalancerNodeVipStatus>;

export const BalancerNodeDecapStatus = z.object({
  pod: PodRef,
  outcome: DecapOutcome,
  message: boundedString(1024).optional(),
});
export type BalancerNodeDecapStatus = z.infer<typeof BalancerNodeDecapStatus>;

const status = z.object({
  /** The spec generation the data plane holds; a failed apply leaves the previous one. */
  observedGeneration: Generation.optional(),
  attachMode: AttachModeStatus.optional(),
  interfaces: z
    .array(BalancerNodeInterfaceStatus)
    .max(16)
    .superRefine((list, ctx) => uniqueBy(list, (i) => i.name, ctx, []))
    .optional(),
  /** The length of vips (for kubectl get). */
  vipCount: z.int().min(0).max(2147483647).optional(),
  vips: z
    .array(BalancerNodeVipStatus)
    .max(1024)
    .superRefine((list, ctx) => uniqueBy(list, (v) => v.key, ctx, []))
    .optional(),
  decap: z
    .array(BalancerNodeDecapStatus)
    .max(2048)
    .superRefine((list, ctx) => uniqueBy(list, (d) => d.pod, ctx, []))
    .optional(),
  conditions: Conditions.optional(),
  errors: z.array(boundedString(1024)).max(32).optional(),
  agentVersion: boundedString(128).optional(),
});

export const BalancerNodeStatus = wire(status);
export type BalancerNodeStatus = z.output<typeof status>;

export const BalancerNode = wire(
  z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(BALANCER_NODE.kind),
    metadata: z.looseObject({ name: z.string(), generation: Generation.optional() }),
    spec,
    status: status.optional(),
  }),
);
export type BalancerNode = z.output<typeof BalancerNode>;

// ------------------------------------------------------------------ spec → NodeDesiredState

/**
 * The network namespace of a backend pod on this node (a path such as
 * /proc/<pid>/ns/net or /run/netns/<name>), or undefined when the pod has none here (yet).
 * Resolve first (I/O), then map (pure): the resolver is typically a lookup in a table the
 * agent built from the container runtime or /proc.
 */
export type NetnsResolver = (pod: { readonly pod: string; readonly podUID: string }) => string | undefined;

export type UnresolvedDecap = { readonly pod: string; readonly podUID: string };

export type NodeDesiredStateMapping = {
  readonly state: NodeDesiredState;
  /** Duties left out because the resolver found no namespace: report them as outcome "pending". */
  readonly unresolved: readonly UnresolvedDecap[];
};

/**
 * A BalancerNode spec as the agent's NodeDesiredState: VIPs as they are, decap duties with
 * the namespace the resolver gives (duties it cannot resolve are left out and listed).
 * Validates the result against the contract, which canonicalises addresses; throws
 * ERR_DESIRED_STATE when the spec breaks it (e.g. "2001:db8::1" and "2001:DB8::1" as two
 * entries, which the API server's text comparison lets through).
 */
export function toNodeDesiredState(
  nodeSpec: BalancerNodeSpec,
  resolveNetns: NetnsResolver,
  options: { readonly generation?: number } = {},
): NodeDesiredStateMapping {
  const decap: NonNullable<NodeDesiredStateInput['decap']> = [];
  const unresolved: UnresolvedDecap[] = [];
  for (const duty of nodeSpec.decap) {
    const netns = resolveNetns({ pod: duty.pod, podUID: duty.podUID });
    if (netns === undefined) {
      unresolved.push({ pod: duty.pod, podUID: duty.podUID });
      continue;
    }
    decap.push({ pod: duty.pod, netns, interface: duty.interface, addresses: [...duty.addresses], vips: [...duty.vips] });
  }
  const input: NodeDesiredStateInput = {
    generation: options.generation ?? 0,
    vips: nodeSpec.vips.map((v) => ({
      name: v.name,
      address: v.address,
      port: v.port,
      protocol: v.protocol,
      encapsulation: v.encapsulation,
      sourceIpOnly: v.sourceIpOnly,
      lruBypass: v.lruBypass,
      backends: v.backends.map((b) => ({ address: b.address, weight: b.weight })),
    })),
    decap,
  };
  const parsed = NodeDesiredState.safeParse(input);
  if (!parsed.success) {
    throw new FulcrumError('ERR_DESIRED_STATE', `BalancerNode spec breaks the node contract: ${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
      details: { generation: input.generation },
    });
  }
  return { state: parsed.data, unresolved };
}
