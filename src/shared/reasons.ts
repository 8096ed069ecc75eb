// Why a packet was not forwarded, and the global counters: the names of `enum reason`
// and `enum gstat` in bpf/include/reasons.h, in order, so that array index = enum value
// = index into reason_stats / decap_stats / global_stats. KEEP IN SYNC with
// bpf/include/reasons.h (names, numbers, order; only ever append):
// test/bpf/abi.test.ts parses the header and fails on any difference.
// Name rule: REASON_PASS_NOT_IP → 'pass_not_ip', GSTAT_CONN_HIT → 'conn_hit'.

export const REASONS = [
  'pass_not_ip',
  'pass_vlan',
  'pass_not_vip',
  'pass_icmp_other',
  'drop_malformed',
  'drop_ip_options',
  'drop_fragment',
  'drop_ipv6_ext',
  'drop_no_backend',
  'drop_bad_backend',
  'tx_icmp_echo',
  'tx_icmp_too_big',
  'drop_adjust_failed',
  'pass_fib_miss',
  'drop_unknown_vip_id',
  // decap program
  'decap_pass_not_tunnel',
  'decap_drop_not_local',
  'decap_drop_not_vip',
  'decap_drop_malformed',
  'decap_drop_failed',
  // balancer, appended
  'drop_not_served',
  'drop_error_too_big',
  // decap, appended
  'decap_drop_ce_not_ect',
] as const;

export type Reason = (typeof REASONS)[number];

/** REASON_COUNT: the number of entries of reason_stats / decap_stats. */
export const REASON_COUNT = REASONS.length;

export const GSTATS = [
  'conn_hit',
  'conn_miss',
  'conn_udp_expired',
  'decapped',
] as const;

export type GlobalStat = (typeof GSTATS)[number];

/** GSTAT_COUNT: the number of entries of global_stats. */
export const GSTAT_COUNT = GSTATS.length;

/** What the program did with the packet: the word after an optional 'decap_' prefix. */
export type ReasonAction = 'pass' | 'drop' | 'tx';

export function reasonAction(reason: Reason): ReasonAction {
  const word = reason.replace(/^decap_/, '').split('_', 1)[0];
  return word === 'pass' || word === 'drop' ? word : 'tx';
}

/** Index of a reason (its enum value). */
export function reasonIndex(reason: Reason): number {
  return REASONS.indexOf(reason);
}
