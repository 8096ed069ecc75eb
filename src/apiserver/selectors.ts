// Label and field selectors with the grammar of k8s.io/apimachinery/pkg/labels and
// pkg/fields. Parse errors surface as 400 BadRequest like the real server's.

import { badRequest } from './status.ts';
import { isLabelValue, isQualifiedName } from './meta.ts';
import type { KubeObject } from './types.ts';

// ---------------------------------------------------------------- label selectors

type LabelOperator = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  values: string[];
}

export interface LabelSelector {
  readonly requirements: readonly LabelRequirement[];
  matches(labels: Record<string, string> | undefined): boolean;
  readonly empty: boolean;
}

const EVERYTHING: LabelSelector = { requirements: [], matches: () => true, empty: true };

/** Splits on commas that are not inside an `in (...)` value set. */
function splitTopLevel(input: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(input.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(input.slice(start));
  return parts;
}

function parseRequirement(raw: string, whole: string): LabelRequirement {
  const text = raw.trim();
  const fail = (why: string): never => {
    throw badRequest(`unable to parse requirement: ${why}`);
  };
  if (text === '') fail(`found '', expected: identifier in selector "${whole}"`);
  const setMatch = /^(!?)([^\s!=<>(),]+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(text);
  let req: LabelRequirement;
  if (setMatch) {
    const values = (setMatch[4] ?? '').split(',').map((v) => v.trim());
    if (values.length === 1 && values[0] === '') values.length = 0;
    if (values.length === 0 && setMatch[3] === 'in') fail(`for 'in', 'notin' operators, values set can't be empty`);
    req = { key: setMatch[2] ?? '', operator: setMatch[3] as 'in' | 'notin', values };
  } else if (text.startsWith('!')) {
    req = { key: text.slice(1).trim(), operator: '!exists', values: [] };
  } else {
    const opMatch = /^([^\s!=<>(),]+)\s*(==|=|!=|>|<)\s*(.*)$/.exec(text);
    if (opMatch) {
      const op = opMatch[2];
      const value = (opMatch[3] ?? '').trim();
      const operator: LabelOperator = op === '!=' ? '!=' : op === '>' ? 'gt' : op === '<' ? 'lt' : '=';
      if ((operator === 'gt' || operator === 'lt') && !/^-?\d+$/.test(value)) {
        fail(`for 'Gt', 'Lt' operators, the value must be an integer`);
      }
      req = { key: opMatch[1] ?? '', operator, values: [value] };
    } else if (/^[^\s!=<>(),]+$/.test(text)) {
      req = { key: text, operator: 'exists', values: [] };
    } else {
      return fail(`invalid label selector "${whole}"`);
    }
  }
  if (!isQualifiedName(req.key)) fail(`key: Invalid value: "${req.key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`);
  if (req.operator !== 'gt' && req.operator !== 'lt') {
    for (const v of req.values) {
      if (!isLabelValue(v)) fail(`values[0][${req.key}]: Invalid value: "${v}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`);
    }
  }
  return req;
}

function requirementMatches(req: LabelRequirement, labels: Record<string, string> | undefined): boolean {
  const has = labels !== undefined && Object.hasOwn(labels, req.key);
  const value = has ? labels[req.key] : undefined;
  switch (req.operator) {
    case 'exists': return has;
    case '!exists': return !has;
    case '=': return has && value === req.values[0];
    case '!=': return !has || value !== req.values[0];
    case 'in': return has && req.values.includes(value ?? '');
    case 'notin': return !has || !req.values.includes(value ?? '');
    case 'gt':
    case 'lt': {
      if (!has || !/^-?\d+$/.test(value ?? '')) return false;
      const n = Number(value);
      const bound = Number(req.values[0]);
      return req.operator === 'gt' ? n > bound : n < bound;
    }
  }
}

export function parseLabelSelector(input: string | undefined | null): LabelSelector {
  if (input === undefined || input === null || input.trim() === '') return EVERYTHING;
  const requirements = splitTopLevel(input).map((part) => parseRequirement(part, input));
  return {
    requirements,
    empty: false,
    matches: (labels) => requirements.every((r) => requirementMatches(r, labels)),
  };
}

// ---------------------------------------------------------------- field selectors

export interface FieldRequirement {
  field: string;
  operator: '=' | '!=';
  value: string;
}

export interface FieldSelector {
  readonly requirements: readonly FieldRequirement[];
  readonly empty: boolean;
}

/** Splits on unescaped separators; field selector values escape `\`, `,` and `=`. */
function splitEscaped(input: string, separator: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i] ?? '';
    if (c === '\\' && i + 1 < input.length) {
      cur += c + (input[i + 1] ?? '');
      i++;
    } else if (c === separator) {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

function unescapeFieldValue(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') {
      const next = value[i + 1];
      if (next !== '\\' && next !== ',' && next !== '=') {
        throw badRequest(`invalid field selector: invalid escape sequence in value "${value}"`);
      }
      out += next;
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

export function parseFieldSelector(input: string | undefined | null): FieldSelector {
  if (input === undefined || input === null || input.trim() === '') return { requirements: [], empty: true };
  const requirements: FieldRequirement[] = [];
  for (const part of splitEscaped(input, ',')) {
    const text = part.trim();
    if (text === '') continue;
    const m = /^([^=!]+?)\s*(==|!=|=)\s*(.*)$/s.exec(text);
    if (!m) throw badRequest(`invalid field selector: invalid selector: '${input}'; can't understand '${text}'`);
    requirements.push({
      field: (m[1] ?? '').trim(),
      operator: m[2] === '!=' ? '!=' : '=',
      value: unescapeFieldValue(m[3] ?? ''),
    });
  }
  return { requirements, empty: requirements.length === 0 };
}

export type FieldGetter = (obj: KubeObject) => string | undefined;

/** Binds a parsed field selector to a resource's field labels. Unknown labels are a 400 like
 *  the real server's `field label not supported: X`. */
export function compileFieldSelector(
  selector: FieldSelector,
  fieldLabels: Record<string, FieldGetter>,
  mapLabel: (label: string) => string = (l) => l,
): (obj: KubeObject) => boolean {
  if (selector.empty) return () => true;
  const checks = selector.requirements.map((req) => {
    const storageLabel = mapLabel(req.field);
    const getter = STANDARD_FIELD_LABELS[storageLabel] ?? fieldLabels[storageLabel];
    if (getter === undefined) throw badRequest(`field label not supported: ${req.field}`);
    return { getter, req };
  });
  return (obj) =>
    checks.every(({ getter, req }) => {
      const actual = getter(obj) ?? '';
      return req.operator === '=' ? actual === req.value : actual !== req.value;
    });
}

const STANDARD_FIELD_LABELS: Record<string, FieldGetter> = {
  'metadata.name': (o) => o.metadata.name,
  'metadata.namespace': (o) => o.metadata.namespace ?? '',
};

/** The exact name a field selector pins (`metadata.name=x`), which lets list and watch skip
 *  scanning the whole table. */
export function pinnedName(selector: FieldSelector): string | undefined {
  const req = selector.requirements.find((r) => r.field === 'metadata.name' && r.operator === '=');
  return req?.value;
}
