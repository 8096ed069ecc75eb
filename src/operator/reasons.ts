// Reasons: the string literals that name why the operator did something. The same word
// appears in a log line's `reason` field, a metric's `reason`/`outcome` label, an Event's
// reason and a condition's reason, so one grep finds them all (MetalLB's SyncState).
// Only ever add; tools and dashboards match on these words.

export const CONDITION_TYPES = {
  lbvip: ['Accepted', 'AddressAssigned', 'Programmed'],
  pool: ['Ready', 'Exhausted'],
} as const;

export type LbVipConditionType = (typeof CONDITION_TYPES.lbvip)[number];
export type PoolConditionType = (typeof CONDITION_TYPES.pool)[number];

/** LoadBalancerVip reasons. */
export const LBVIP_REASONS = [
  // Accepted
  'Accepted',
  'InvalidSpec',
  'ServiceNotFound',
  'NoBackendsOfFamily',
  // AddressAssigned
  'AddressAssigned',
  'AddressConflict',
  'PortsCollide',
  'PoolNotFound',
  'PoolExhausted',
  'PoolInvalid',
  'PoolSelectorMismatch',
  'AddressFamilyUnavailable',
  // Programmed
  'Programmed',
  'Pending',
  'NoBalancerNodes',
  'NotAccepted',
  'AddressNotAssigned',
  'Deleting',
] as const;
export type LbVipReason = (typeof LBVIP_REASONS)[number];

/** VipPool reasons. */
export const POOL_REASONS = ['Ready', 'InvalidAddresses', 'Overlap', 'Exhausted', 'AddressesAvailable'] as const;
export type PoolReason = (typeof POOL_REASONS)[number];

/** Service reasons (Events on the Service; the Service has no conditions of ours). */
export const SERVICE_REASONS = [
  'LoadBalancerVipCreated',
  'LoadBalancerVipUpdated',
  'LoadBalancerVipDeleted',
  'LoadBalancerVipConflict',
  'AddressAssigned',
  'NoMatchingPool',
  'UnsupportedProtocol',
  'InvalidAnnotation',
  'AddressPending',
] as const;
export type ServiceReason = (typeof SERVICE_REASONS)[number];

/** Backend-side reasons, reported on the Pod or the LoadBalancerVip. */
export const BACKEND_REASONS = ['InvalidWeight'] as const;
export type BackendReason = (typeof BACKEND_REASONS)[number];

/** BalancerNode writes: the `outcome` label of fulcrum_operator_balancernode_writes_total. */
export const WRITE_OUTCOMES = ['created', 'updated', 'unchanged', 'deleted', 'absent'] as const;
export type WriteOutcome = (typeof WRITE_OUTCOMES)[number];

/** Reconcile outcomes: the `outcome` label of fulcrum_operator_reconcile_total. */
export const RECONCILE_OUTCOMES = ['done', 'requeue', 'error'] as const;
export type ReconcileOutcome = (typeof RECONCILE_OUTCOMES)[number];

export type Reason = LbVipReason | PoolReason | ServiceReason | BackendReason;
