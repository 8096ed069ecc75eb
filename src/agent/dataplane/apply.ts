// Executes a Plan against the balancer's maps, step by step in the planner's order
// (plan.ts explains why that order keeps every packet consistent):
//   reset counters of new ids → addresses that go → backends → rings → VIP entries
//   → addresses that come → VIPs that go → backends that go.
// Nothing here decides anything: the plan is the decision, this is the I/O.
//
// A failure stops at the step that failed and says which; the maps then hold a prefix
// of the plan. The caller must not trust plan.next after a failure: re-adopt the maps
// (adopt.ts), which are the truth, and plan again from there.
import { performance } from 'node:perf_hooks';
import { FulcrumError } from '../../shared/errors.ts';
import { PROTOCOL_NUMBER, type BalancerProgram, type VipEntry } from './balancer.ts';
import { buildRing, type Plan, type VipWrite } from './plan.ts';

/** The steps of an apply, in the order they run. */
export const APPLY_STEPS = [
  'resetCounters',
  'removeAddresses',
  'writeBackends',
  'writeRings',
  'writeVips',
  'addAddresses',
  'deleteVips',
  'clearBackends',
] as const;
export type ApplyStep = (typeof APPLY_STEPS)[number];

/** How many of each kind of operation were carried out. */
export type ApplyCounts = {
  vipCounterResets: number;
  backendCounterResets: number;
  addressSlotsCleared: number;
  backendsWritten: number;
  /** Rings the plan rebuilt (new VIPs, changed backends or weights). */
  ringsRebuilt: number;
  /** Ring slots whose value changed in the map, over all rings. */
  ringSlotsWritten: number;
  vipsWritten: number;
  addressSlotsWritten: number;
  vipsDeleted: number;
  backendsCleared: number;
};

export type ApplyResult =
  | { readonly outcome: 'applied'; readonly counts: ApplyCounts; readonly durationMs: number }
  | {
      readonly outcome: 'failed';
      /** The step that failed; the steps before it completed. */
      readonly step: ApplyStep;
      readonly error: FulcrumError;
      /** What was done before the failure. */
      readonly counts: ApplyCounts;
      readonly durationMs: number;
    };

export function zeroCounts(): ApplyCounts {
  return {
    vipCounterResets: 0, backendCounterResets: 0, addressSlotsCleared: 0, backendsWritten: 0, ringsRebuilt: 0,
    ringSlotsWritten: 0, vipsWritten: 0, addressSlotsWritten: 0, vipsDeleted: 0, backendsCleared: 0,
  };
}

function vipEntry(v: VipWrite): VipEntry {
  return { address: v.address, port: v.port, protocol: PROTOCOL_NUMBER[v.protocol], id: v.id, flags: v.flags, gen: v.gen };
}

/** Writes `plan` into the balancer's maps. Never throws for a map failure: see ApplyResult. */
export function applyPlan(balancer: BalancerProgram, plan: Plan): ApplyResult {
  const started = performance.now();
  const counts = zeroCounts();
  const steps: Record<ApplyStep, () => void> = {
    resetCounters: () => {
      // Before anything can forward through a new id: its counters start from zero,
      // not from what the id's previous owner counted.
      balancer.resetVipCounters(plan.resetVipCounters);
      counts.vipCounterResets = plan.resetVipCounters.length;
      balancer.resetBackendCounters(plan.resetBackendCounters);
      counts.backendCounterResets = plan.resetBackendCounters.length;
    },
    removeAddresses: () => {
      balancer.writeAddressSlots(plan.removeAddresses);
      counts.addressSlotsCleared = plan.removeAddresses.length;
    },
    writeBackends: () => {
      balancer.writeBackends(plan.writeBackends);
      counts.backendsWritten = plan.writeBackends.length;
    },
    writeRings: () => {
      for (const write of plan.writeRings) {
        counts.ringSlotsWritten += balancer.writeRing({ vipId: write.vipId, ring: buildRing(write) });
        counts.ringsRebuilt++;
      }
    },
    writeVips: () => {
      for (const vip of plan.writeVips) {
        balancer.writeVip(vipEntry(vip));
        counts.vipsWritten++;
      }
    },
    addAddresses: () => {
      balancer.writeAddressSlots(plan.addAddresses);
      counts.addressSlotsWritten = plan.addAddresses.length;
    },
    deleteVips: () => {
      for (const vip of plan.deleteVips) {
        balancer.deleteVip(vipEntry(vip));
        counts.vipsDeleted++;
      }
    },
    clearBackends: () => {
      balancer.clearBackends(plan.clearBackends.map((b) => b.id));
      counts.backendsCleared = plan.clearBackends.length;
    },
  };

  for (const step of APPLY_STEPS) {
    try {
      steps[step]();
    } catch (err) {
      const error = err instanceof FulcrumError
        ? err
        : new FulcrumError('ERR_BPF_MAP', `programming step ${step} failed: ${String(err)}`, { cause: err });
      return { outcome: 'failed', step, error, counts, durationMs: performance.now() - started };
    }
  }
  return { outcome: 'applied', counts, durationMs: performance.now() - started };
}
