// Condition helpers (metav1.Condition): set a condition so that lastTransitionTime moves
// only when the status flips, and compare condition lists the way a status write cares
// about — so a reconcile that changes nothing writes nothing.
import type { Condition } from './kinds.ts';

export interface ConditionInput<Type extends string = string, Reason extends string = string> {
  type: Type;
  status: boolean | 'Unknown';
  reason: Reason;
  message: string;
}

function statusText(s: boolean | 'Unknown'): Condition['status'] {
  return s === 'Unknown' ? 'Unknown' : s ? 'True' : 'False';
}

/** The conditions with `input` set; others kept in their order, a new type appended. */
export function setCondition(conditions: readonly Condition[] | undefined, input: ConditionInput, observedGeneration: number | undefined, now: () => string = rfc3339Now): Condition[] {
  const list = [...(conditions ?? [])];
  const status = statusText(input.status);
  const i = list.findIndex((c) => c.type === input.type);
  const previous = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    type: input.type,
    status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime: previous !== undefined && previous.status === status ? previous.lastTransitionTime : now(),
    ...(observedGeneration !== undefined ? { observedGeneration } : {}),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function setConditions(conditions: readonly Condition[] | undefined, inputs: readonly ConditionInput[], observedGeneration: number | undefined, now: () => string = rfc3339Now): Condition[] {
  let list = [...(conditions ?? [])];
  for (const input of inputs) list = setCondition(list, input, observedGeneration, now);
  return list;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/** Whether a status write would change anything, comparing JSON with sorted keys. */
export function sameJson(a: unknown, b: unknown): boolean {
  return stableStringify(a) === stableStringify(b);
}

export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v as Record<string, unknown>).sort()) {
        const item = (v as Record<string, unknown>)[k];
        if (item !== undefined) sorted[k] = item;
      }
      return sorted;
    }
    return v;
  });
}

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function rfc3339Now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** metav1.MicroTime. */
export function microTimeNow(): string {
  return new Date().toISOString().replace(/Z$/, '000Z');
}
