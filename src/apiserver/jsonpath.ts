// The JSONPath subset CRD additionalPrinterColumns use: `.a.b`, `['key.with.dots']`, `[0]`,
// `[*]` and `[?(@.field=="value")]` filters (==, !=), optionally wrapped in `{...}`.

import { isObject } from './meta.ts';

type Step =
  | { kind: 'field'; name: string }
  | { kind: 'index'; index: number }
  | { kind: 'wildcard' }
  | { kind: 'filter'; path: string[]; op: '==' | '!='; value: string | number | boolean };

export class JsonPathError extends Error {}

function parseLiteral(raw: string): string | number | boolean {
  const t = raw.trim();
  if ((t.startsWith('"') && t.endsWith('"')) || (t.startsWith("'") && t.endsWith("'"))) return t.slice(1, -1);
  if (t === 'true' || t === 'false') return t === 'true';
  const n = Number(t);
  if (t !== '' && !Number.isNaN(n)) return n;
  throw new JsonPathError(`unsupported filter literal ${raw}`);
}

export function parseJsonPath(expression: string): Step[] {
  let text = expression.trim();
  if (text.startsWith('{') && text.endsWith('}')) text = text.slice(1, -1).trim();
  if (text.startsWith('$')) text = text.slice(1);
  const steps: Step[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '.') {
      i++;
      const m = /^[A-Za-z0-9_\-$]+/.exec(text.slice(i));
      if (!m) {
        if (i >= text.length) break; // a trailing "." (or the bare root ".")
        throw new JsonPathError(`invalid JSONPath ${expression}`);
      }
      steps.push({ kind: 'field', name: m[0] });
      i += m[0].length;
    } else if (c === '[') {
      const end = text.indexOf(']', i);
      if (end < 0) throw new JsonPathError(`unterminated [ in ${expression}`);
      const inner = text.slice(i + 1, end).trim();
      i = end + 1;
      if (inner === '*') steps.push({ kind: 'wildcard' });
      else if (/^-?\d+$/.test(inner)) steps.push({ kind: 'index', index: Number(inner) });
      else if (/^['"].*['"]$/.test(inner)) steps.push({ kind: 'field', name: inner.slice(1, -1) });
      else {
        const f = /^\?\(@((?:\.[A-Za-z0-9_\-]+)+)\s*(==|!=)\s*(.+)\)$/.exec(inner);
        if (!f) throw new JsonPathError(`unsupported JSONPath element [${inner}]`);
        steps.push({ kind: 'filter', path: (f[1] ?? '').slice(1).split('.'), op: f[2] as '==' | '!=', value: parseLiteral(f[3] ?? '') });
      }
    } else {
      throw new JsonPathError(`invalid JSONPath ${expression}`);
    }
  }
  return steps;
}

/** All values the path selects, in document order. */
export function evaluateJsonPath(steps: Step[], root: unknown): unknown[] {
  let current: unknown[] = [root];
  for (const step of steps) {
    const next: unknown[] = [];
    for (const value of current) {
      switch (step.kind) {
        case 'field':
          if (isObject(value) && value[step.name] !== undefined) next.push(value[step.name]);
          break;
        case 'index':
          if (Array.isArray(value)) {
            const idx = step.index < 0 ? value.length + step.index : step.index;
            if (idx >= 0 && idx < value.length) next.push(value[idx]);
          }
          break;
        case 'wildcard':
          if (Array.isArray(value)) next.push(...value);
          else if (isObject(value)) next.push(...Object.values(value));
          break;
        case 'filter':
          if (Array.isArray(value)) {
            for (const item of value) {
              let v: unknown = item;
              for (const p of step.path) v = isObject(v) ? v[p] : undefined;
              const equal = v === step.value;
              if (v !== undefined && (step.op === '==' ? equal : !equal)) next.push(item);
            }
          }
          break;
      }
    }
    current = next;
  }
  return current;
}
