// fulcrum.dev/v1alpha1 as the operator sees it. The schemas are the shared ones
// (src/shared/api/, from which crds/*.yaml are generated); this module adds the
// wire shapes of objects as they sit in an informer's cache — plain JSON, not yet
// validated, so `spec` is `unknown` until parsed at the boundary (a bad object becomes a
// condition, never a crash).
import type { BalancerNodeSpec, BalancerNodeStatus, LoadBalancerVipStatus, VipPoolStatus } from '../shared/api/index.ts';
import type { KubeObject } from './kinds.ts';

export {
  LoadBalancerVipSpec, VipPoolSpec, BalancerNodeSpec as BalancerNodeSpecSchema, parsePoolEntry,
} from '../shared/api/index.ts';
export type {
  BalancerNodeDecap, BalancerNodeSpec, BalancerNodeStatus, BalancerNodeVip, LabelSelector, LoadBalancerVipStatus, PoolRange, VipPoolStatus,
} from '../shared/api/index.ts';

/** A LoadBalancerVip as cached: spec unvalidated (parse with LoadBalancerVipSpec). */
export interface LoadBalancerVip extends KubeObject {
  spec?: unknown;
  status?: LoadBalancerVipStatus;
}

/** A VipPool as cached: spec unvalidated (parse with VipPoolSpec). */
export interface VipPool extends KubeObject {
  spec?: unknown;
  status?: VipPoolStatus;
}

/** A BalancerNode as cached: spec written by the operator, status by the node's agent. */
export interface BalancerNode extends KubeObject {
  spec?: BalancerNodeSpec;
  status?: BalancerNodeStatus;
}
