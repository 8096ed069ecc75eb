// CEL evaluation of CRD `x-kubernetes-validations` rules with @bufbuild/cel.
//
// Values are bound the way the apiserver types them from the structural schema: `integer`
// becomes CEL int (bigint), `number` double, objects and maps become CEL maps (field selection
// and has() work on both), lists become lists. The standard library plus the strings
// extension are available, and a few Kubernetes library functions (isIP, isCIDR, the list
// helpers). Rules that use other Kubernetes libraries (quantity, url, ip()/cidr() objects,
// format) fail to compile and are reported on the CRD, rather than silently passing.

import { celEnv, celFunc, celMethod, CelScalar, isCelError, listType, parse, plan } from '@bufbuild/cel';
import type { CelValue } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { isIP } from 'node:net';
import { isObject } from './meta.ts';
import type { JsonObject } from './types.ts';

export interface CelRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
  fieldPath?: string;
  optionalOldSelf?: boolean;
}

export interface CompiledRule {
  readonly source: CelRule;
  /** Rules that mention oldSelf are transition rules: evaluated only on update. */
  readonly isTransition: boolean;
  evaluate(self: unknown, oldSelf: unknown): { ok: true } | { ok: false; message: string; evalError?: string };
}

function isCidr(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const addr = text.slice(0, slash);
  const prefix = text.slice(slash + 1);
  const family = isIP(addr);
  if (family === 0 || !/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

function numericValues(list: Iterable<CelValue>): number[] {
  const out: number[] = [];
  for (const v of list) out.push(typeof v === 'bigint' ? Number(v) : Number(v));
  return out;
}

const DYN_LIST = listType(CelScalar.DYN);

// Kubernetes' CEL libraries the operator's CRDs are likely to use.
const kubernetesFuncs = [
  celFunc('isIP', [CelScalar.STRING], CelScalar.BOOL, (s) => isIP(s) !== 0),
  celFunc('isCIDR', [CelScalar.STRING], CelScalar.BOOL, (s) => isCidr(s)),
  celMethod('isSorted', DYN_LIST, [], CelScalar.BOOL, function () {
    const values = [...this];
    for (let i = 1; i < values.length; i++) {
      const a = values[i - 1];
      const b = values[i];
      if ((typeof a === 'string' && typeof b === 'string' && a > b) || (typeof a !== 'string' && Number(a) > Number(b))) return false;
    }
    return true;
  }),
  celMethod('sum', DYN_LIST, [], CelScalar.DYN, function () {
    const values = [...this];
    if (values.every((v) => typeof v === 'bigint')) return (values as bigint[]).reduce((a, b) => a + b, 0n);
    return numericValues(values).reduce((a, b) => a + b, 0);
  }),
  celMethod('min', DYN_LIST, [], CelScalar.DYN, function () {
    const values = [...this];
    if (values.length === 0) throw new Error('min called on empty list');
    return values.reduce((a, b) => (Number(b) < Number(a) ? b : a));
  }),
  celMethod('max', DYN_LIST, [], CelScalar.DYN, function () {
    const values = [...this];
    if (values.length === 0) throw new Error('max called on empty list');
    return values.reduce((a, b) => (Number(b) > Number(a) ? b : a));
  }),
];

const env = celEnv({ funcs: [...strings, ...kubernetesFuncs] });

/** Converts a JSON value to its CEL binding, guided by the schema node describing it. */
export function toCel(value: unknown, schema: JsonObject | undefined): unknown {
  if (value === null || value === undefined) return null;
  const type = schema?.['type'];
  if (typeof value === 'number') {
    if (type === 'number') return value;
    if (Number.isInteger(value)) return BigInt(value);
    return value;
  }
  if (Array.isArray(value)) {
    const items = isObject(schema?.['items']) ? (schema['items'] as JsonObject) : undefined;
    return value.map((v) => toCel(v, items));
  }
  if (isObject(value)) {
    const props = isObject(schema?.['properties']) ? (schema['properties'] as Record<string, JsonObject>) : undefined;
    const additional = isObject(schema?.['additionalProperties']) ? (schema['additionalProperties'] as JsonObject) : undefined;
    const m = new Map<string, unknown>();
    for (const [k, v] of Object.entries(value)) m.set(k, toCel(v, props?.[k] ?? additional));
    return m;
  }
  return value;
}

export class CelCompileError extends Error {}

export function compileRule(rule: CelRule): CompiledRule {
  let evalRule: ReturnType<typeof plan>;
  let evalMessage: ReturnType<typeof plan> | undefined;
  try {
    evalRule = plan(env, parse(rule.rule));
    if (rule.messageExpression) evalMessage = plan(env, parse(rule.messageExpression));
  } catch (err) {
    throw new CelCompileError(`compilation failed: ${(err as Error).message}`);
  }
  const isTransition = /\boldSelf\b/.test(rule.rule);
  const defaultMessage = rule.message ?? `failed rule: ${rule.rule}`;
  return {
    source: rule,
    isTransition,
    evaluate(self, oldSelf) {
      const bindings = { self, oldSelf } as unknown as Record<string, never>;
      const result = (evalRule as (ctx: Record<string, never>) => unknown)(bindings);
      if (isCelError(result)) {
        return { ok: false, message: `${result.message} evaluating rule: ${rule.rule}`, evalError: result.message };
      }
      if (result === true) return { ok: true };
      let message = defaultMessage;
      if (evalMessage !== undefined) {
        const m = (evalMessage as (ctx: Record<string, never>) => unknown)(bindings);
        if (typeof m === 'string' && m.trim() !== '') message = m;
      }
      return { ok: false, message };
    },
  };
}
