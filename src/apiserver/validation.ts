// Structural-schema processing of custom resources, in the order the apiextensions server
// applies it on every write: prune unknown fields, apply defaults, then validate (OpenAPI
// value validations, list-type uniqueness, CEL `x-kubernetes-validations`). Error messages
// follow kube-openapi's ("spec.replicas in body should be less than or equal to 5") wrapped
// in field errors, because users and tests read them.

import { isIP } from 'node:net';
import { CelCompileError, compileRule, toCel } from './cel.ts';
import type { CelRule, CompiledRule } from './cel.ts';
import { clone, deepEqual, isObject } from './meta.ts';
import { fieldErrors } from './status.ts';
import type { FieldError, JsonObject } from './types.ts';

export type Schema = JsonObject;

/** A schema with its CEL rules compiled once, at CRD registration. */
export class CompiledSchema {
  readonly root: Schema;
  private readonly rules = new Map<Schema, CompiledRule[]>();

  private constructor(root: Schema) {
    this.root = root;
  }

  /** Compiles the CEL rules; compile failures are returned as CRD field errors. */
  static compile(root: Schema, fieldPath: string): { schema: CompiledSchema; errors: FieldError[] } {
    const compiled = new CompiledSchema(root);
    const errors: FieldError[] = [];
    const visit = (node: unknown, path: string): void => {
      if (!isObject(node)) return;
      const rules = node['x-kubernetes-validations'];
      if (Array.isArray(rules)) {
        const list: CompiledRule[] = [];
        rules.forEach((r, i) => {
          const rulePath = `${path}.x-kubernetes-validations[${i}].rule`;
          if (!isObject(r) || typeof r['rule'] !== 'string') {
            errors.push(fieldErrors.required(rulePath));
            return;
          }
          try {
            list.push(compileRule(r as unknown as CelRule));
          } catch (err) {
            if (!(err instanceof CelCompileError)) throw err;
            errors.push(fieldErrors.invalid(rulePath, r['rule'], err.message));
          }
        });
        compiled.rules.set(node, list);
      }
      const props = node['properties'];
      if (isObject(props)) for (const [k, v] of Object.entries(props)) visit(v, `${path}.properties[${k}]`);
      if (isObject(node['items'])) visit(node['items'], `${path}.items`);
      if (isObject(node['additionalProperties'])) visit(node['additionalProperties'], `${path}.additionalProperties`);
    };
    visit(root, fieldPath);
    return { schema: compiled, errors };
  }

  rulesOf(node: Schema): CompiledRule[] | undefined {
    return this.rules.get(node);
  }
}

// ---------------------------------------------------------------- structural checks (CRD side)

/** A subset of the apiextensions structural-schema rules that catches the common mistakes. */
export function validateStructural(schema: unknown, path: string): FieldError[] {
  const errors: FieldError[] = [];
  if (!isObject(schema)) return [fieldErrors.required(path)];
  if (schema['type'] !== 'object') {
    errors.push(schema['type'] === undefined
      ? fieldErrors.required(`${path}.type`, 'must not be empty at the root')
      : fieldErrors.invalid(`${path}.type`, schema['type'], 'must be object at the root'));
  }
  const walk = (node: unknown, p: string, root: boolean): void => {
    if (!isObject(node)) return;
    const hasType = typeof node['type'] === 'string' && node['type'] !== '';
    const escape = node['x-kubernetes-int-or-string'] === true || node['x-kubernetes-preserve-unknown-fields'] === true;
    if (!hasType && !escape && !root) errors.push(fieldErrors.required(`${p}.type`, 'must not be empty for specified object fields'));
    if (isObject(node['properties']) && isObject(node['additionalProperties'])) {
      errors.push(fieldErrors.forbidden(`${p}.additionalProperties`, 'additionalProperties and properties are mutual exclusive'));
    }
    if (node['type'] === 'array' && !isObject(node['items'])) errors.push(fieldErrors.required(`${p}.items`, 'must be specified'));
    if (isObject(node['properties'])) {
      for (const [k, v] of Object.entries(node['properties'])) walk(v, `${p}.properties[${k}]`, false);
    }
    if (isObject(node['items'])) walk(node['items'], `${p}.items`, false);
    if (isObject(node['additionalProperties'])) walk(node['additionalProperties'], `${p}.additionalProperties`, false);
  };
  walk(schema, path, true);
  return errors;
}

// ---------------------------------------------------------------- pruning and defaulting

function preservesUnknown(schema: Schema): boolean {
  return schema['x-kubernetes-preserve-unknown-fields'] === true;
}

function propertiesOf(schema: Schema): Record<string, Schema> | undefined {
  return isObject(schema['properties']) ? (schema['properties'] as Record<string, Schema>) : undefined;
}

const EMBEDDED_KEEP = new Set(['apiVersion', 'kind', 'metadata']);

/**
 * Removes fields the schema does not specify (unless preserved) and records their paths, so
 * `fieldValidation=Strict` can reject and `Warn` can report them. Nulls that the schema does
 * not allow are dropped before defaulting, as the apiserver does.
 */
export function prune(value: unknown, schema: Schema, path: string, unknown: string[], isRoot: boolean): unknown {
  if (Array.isArray(value)) {
    const items = isObject(schema['items']) ? (schema['items'] as Schema) : undefined;
    if (items === undefined) return value;
    return value.map((v, i) => prune(v, items, `${path}[${i}]`, unknown, false));
  }
  if (!isObject(value)) return value;
  const props = propertiesOf(schema);
  const additional = schema['additionalProperties'];
  const embedded = isRoot || schema['x-kubernetes-embedded-resource'] === true;
  const out: JsonObject = {};
  for (const [key, child] of Object.entries(value)) {
    const childPath = path === '' ? key : `${path}.${key}`;
    const childSchema = props?.[key] ?? (isObject(additional) ? (additional as Schema) : undefined);
    // apiVersion, kind and metadata of a resource are the server's, whatever the CRD's
    // schema says of them (controller-gen CRDs declare `metadata: {type: object}`):
    // ObjectMeta has its own rules, and pruning it against that stub would empty it.
    if (embedded && EMBEDDED_KEEP.has(key)) {
      out[key] = child;
      continue;
    }
    if (childSchema === undefined) {
      if (preservesUnknown(schema) || additional === true) out[key] = child;
      else unknown.push(childPath);
      continue;
    }
    if (child === null && childSchema['nullable'] !== true) continue;
    out[key] = prune(child, childSchema, childPath, unknown, false);
  }
  return out;
}

/** Applies `default`s to absent fields, top-down, including inside list items and map values. */
export function applyDefaults(value: unknown, schema: Schema): unknown {
  if (Array.isArray(value)) {
    const items = isObject(schema['items']) ? (schema['items'] as Schema) : undefined;
    return items === undefined ? value : value.map((v) => applyDefaults(v, items));
  }
  if (!isObject(value)) return value;
  const props = propertiesOf(schema);
  const additional = isObject(schema['additionalProperties']) ? (schema['additionalProperties'] as Schema) : undefined;
  const out: JsonObject = { ...value };
  if (props !== undefined) {
    for (const [key, childSchema] of Object.entries(props)) {
      if (out[key] === undefined && childSchema['default'] !== undefined) out[key] = clone(childSchema['default']);
    }
  }
  for (const [key, child] of Object.entries(out)) {
    const childSchema = props?.[key] ?? additional;
    if (childSchema !== undefined) out[key] = applyDefaults(child, childSchema);
  }
  return out;
}

// ---------------------------------------------------------------- validation

function typeOfJson(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function typeMatches(value: unknown, type: string): boolean {
  switch (type) {
    case 'object': return isObject(value);
    case 'array': return Array.isArray(value);
    case 'string': return typeof value === 'string';
    case 'integer': return typeof value === 'number' && Number.isInteger(value);
    case 'number': return typeof value === 'number';
    case 'boolean': return typeof value === 'boolean';
    default: return true;
  }
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const UUID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
const HOSTNAME = /^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/;
const MAC = /^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const GO_DURATION = /^[-+]?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$/;

/** Formats the apiserver checks (k8s.io/kube-openapi strfmt registry); unknown ones pass. */
function formatValid(format: string, value: unknown): boolean {
  if (typeof value === 'number') {
    if (format === 'int32') return Number.isInteger(value) && value >= -2147483648 && value <= 2147483647;
    if (format === 'int64') return Number.isInteger(value);
    return true;
  }
  if (typeof value !== 'string') return true;
  switch (format) {
    case 'ipv4': return isIP(value) === 4;
    case 'ipv6': return isIP(value) === 6;
    case 'cidr': {
      const [addr, bits, extra] = value.split('/');
      if (addr === undefined || bits === undefined || extra !== undefined || !/^\d+$/.test(bits)) return false;
      const family = isIP(addr);
      return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
    }
    case 'date-time':
    case 'datetime': return DATE_TIME.test(value) && !Number.isNaN(Date.parse(value));
    case 'date': return DATE.test(value) && !Number.isNaN(Date.parse(value));
    case 'uuid': return UUID.test(value);
    case 'hostname': return value.length <= 255 && HOSTNAME.test(value);
    case 'mac': return MAC.test(value);
    case 'byte': return BASE64.test(value);
    case 'duration': return GO_DURATION.test(value);
    case 'uri': return URL.canParse(value);
    default: return true;
  }
}

function inBody(path: string): string {
  return `${path} in body`;
}

interface ValidationContext {
  schema: CompiledSchema;
  errors: FieldError[];
}

/**
 * Validates `value` against `schema`. `old` is the correlated previous value (same property,
 * map key or map-list element) used for CEL transition rules; undefined on create or where the
 * apiserver cannot correlate (plain lists).
 */
export function validateValue(schema: CompiledSchema, value: unknown, old: unknown, path: string, node: Schema = schema.root): FieldError[] {
  const ctx: ValidationContext = { schema, errors: [] };
  validateNode(ctx, node, value, old, path);
  return ctx.errors;
}

function schemaTypeName(schema: Schema): string {
  return typeof schema['type'] === 'string' ? schema['type'] : 'object';
}

function validateNode(ctx: ValidationContext, schema: Schema, value: unknown, old: unknown, path: string): void {
  const errors = ctx.errors;
  const before = errors.length;
  if (value === null) {
    if (schema['nullable'] !== true) errors.push(fieldErrors.typeInvalid(path, value, `${inBody(path)} must be of type ${schemaTypeName(schema)}: "null"`));
    return;
  }
  const type = schema['type'];
  if (schema['x-kubernetes-int-or-string'] === true) {
    if (!(typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value)))) {
      errors.push(fieldErrors.typeInvalid(path, value, `${inBody(path)} must be of type integer,string: "${typeOfJson(value)}"`));
      return;
    }
  } else if (typeof type === 'string' && !typeMatches(value, type)) {
    errors.push(fieldErrors.typeInvalid(path, value, `${inBody(path)} must be of type ${type}: "${typeOfJson(value)}"`));
    return;
  }

  const enumValues = schema['enum'];
  if (Array.isArray(enumValues) && !enumValues.some((e) => deepEqual(e, value))) {
    errors.push(fieldErrors.notSupported(path, value, enumValues));
  }

  if (typeof value === 'string') validateString(ctx, schema, value, path);
  if (typeof value === 'number') validateNumber(ctx, schema, value, path);
  if (Array.isArray(value)) validateArray(ctx, schema, value, old, path);
  if (isObject(value)) validateObject(ctx, schema, value, old, path);

  for (const combinator of ['allOf', 'anyOf', 'oneOf'] as const) {
    const list = schema[combinator];
    if (!Array.isArray(list)) continue;
    const passing = list.filter((sub) => isObject(sub) && validateValue(ctx.schema, value, old, path, sub).length === 0).length;
    if (combinator === 'allOf' && passing !== list.length) {
      for (const sub of list) if (isObject(sub)) errors.push(...validateValue(ctx.schema, value, old, path, sub));
    }
    if (combinator === 'anyOf' && passing === 0) errors.push(fieldErrors.invalid(path, value, `${inBody(path)} must validate at least one schema (anyOf)`));
    if (combinator === 'oneOf' && passing !== 1) errors.push(fieldErrors.invalid(path, value, `${inBody(path)} must validate one and only one schema (oneOf).`));
  }
  if (isObject(schema['not']) && validateValue(ctx.schema, value, old, path, schema['not']).length === 0) {
    errors.push(fieldErrors.invalid(path, value, `${inBody(path)} must not validate the schema (not)`));
  }

  // CEL rules run only when the value's own schema validation passed, as in the apiserver.
  const rules = ctx.schema.rulesOf(schema);
  if (rules !== undefined && errors.length === before) {
    const self = toCel(value, schema);
    const oldSelf = old === undefined ? undefined : toCel(old, schema);
    for (const rule of rules) {
      if (rule.isTransition && old === undefined) continue;
      const result = rule.evaluate(self, oldSelf ?? null);
      if (result.ok) continue;
      const fieldPath = rule.source.fieldPath ? `${path}${rule.source.fieldPath}` : path;
      const typeName = schemaTypeName(schema);
      switch (rule.source.reason) {
        case 'FieldValueRequired': errors.push(fieldErrors.required(fieldPath, result.message)); break;
        case 'FieldValueForbidden': errors.push(fieldErrors.forbidden(fieldPath, result.message)); break;
        case 'FieldValueDuplicate': errors.push({ type: 'FieldValueDuplicate', field: fieldPath, message: `Duplicate value: ${result.message}` }); break;
        default: errors.push(fieldErrors.invalid(fieldPath, typeName, result.message));
      }
    }
  }
}

function validateString(ctx: ValidationContext, schema: Schema, value: string, path: string): void {
  const errors = ctx.errors;
  const length = [...value].length;
  if (typeof schema['maxLength'] === 'number' && length > schema['maxLength']) errors.push(fieldErrors.tooLong(path, schema['maxLength']));
  if (typeof schema['minLength'] === 'number' && length < schema['minLength']) {
    errors.push(fieldErrors.invalid(path, value, `${inBody(path)} should be at least ${schema['minLength']} chars long`));
  }
  if (typeof schema['pattern'] === 'string') {
    let re: RegExp | undefined;
    try {
      re = new RegExp(schema['pattern'], 'u');
    } catch {
      re = undefined;
    }
    if (re !== undefined && !re.test(value)) errors.push(fieldErrors.invalid(path, value, `${inBody(path)} should match '${schema['pattern']}'`));
  }
  if (typeof schema['format'] === 'string' && !formatValid(schema['format'], value)) {
    errors.push(fieldErrors.invalid(path, value, `${inBody(path)} must be of type ${schema['format']}: ${JSON.stringify(value)}`));
  }
}

function validateNumber(ctx: ValidationContext, schema: Schema, value: number, path: string): void {
  const errors = ctx.errors;
  const max = schema['maximum'];
  const min = schema['minimum'];
  if (typeof max === 'number') {
    if (schema['exclusiveMaximum'] === true ? value >= max : value > max) {
      errors.push(fieldErrors.invalid(path, value, `${inBody(path)} should be less than ${schema['exclusiveMaximum'] === true ? '' : 'or equal to '}${max}`));
    }
  }
  if (typeof min === 'number') {
    if (schema['exclusiveMinimum'] === true ? value <= min : value < min) {
      errors.push(fieldErrors.invalid(path, value, `${inBody(path)} should be greater than ${schema['exclusiveMinimum'] === true ? '' : 'or equal to '}${min}`));
    }
  }
  const multipleOf = schema['multipleOf'];
  if (typeof multipleOf === 'number' && multipleOf > 0 && Math.abs(value / multipleOf - Math.round(value / multipleOf)) > 1e-9) {
    errors.push(fieldErrors.invalid(path, value, `${inBody(path)} should be a multiple of ${multipleOf}`));
  }
  if (typeof schema['format'] === 'string' && !formatValid(schema['format'], value)) {
    errors.push(fieldErrors.invalid(path, value, `${inBody(path)} must be of type ${schema['format']}`));
  }
}

function mapListKey(item: unknown, keys: string[]): string | undefined {
  if (!isObject(item)) return undefined;
  return JSON.stringify(keys.map((k) => item[k] ?? null));
}

function validateArray(ctx: ValidationContext, schema: Schema, value: unknown[], old: unknown, path: string): void {
  const errors = ctx.errors;
  if (typeof schema['maxItems'] === 'number' && value.length > schema['maxItems']) errors.push(fieldErrors.tooMany(path, value.length, schema['maxItems']));
  if (typeof schema['minItems'] === 'number' && value.length < schema['minItems']) {
    errors.push(fieldErrors.invalid(path, value.length, `${inBody(path)} should have at least ${schema['minItems']} items`));
  }
  const listType = schema['x-kubernetes-list-type'];
  const mapKeys = Array.isArray(schema['x-kubernetes-list-map-keys']) ? (schema['x-kubernetes-list-map-keys'] as string[]) : [];
  if (schema['uniqueItems'] === true || listType === 'set') {
    value.forEach((item, i) => {
      if (value.findIndex((other) => deepEqual(other, item)) !== i) errors.push(fieldErrors.duplicate(`${path}[${i}]`, item));
    });
  }
  const oldByKey = new Map<string, unknown>();
  if (listType === 'map') {
    const seen = new Set<string>();
    value.forEach((item, i) => {
      const key = mapListKey(item, mapKeys);
      if (key === undefined) return;
      if (seen.has(key)) errors.push(fieldErrors.duplicate(`${path}[${i}]`, item));
      seen.add(key);
    });
    if (Array.isArray(old)) for (const o of old) { const k = mapListKey(o, mapKeys); if (k !== undefined) oldByKey.set(k, o); }
  }
  const items = isObject(schema['items']) ? (schema['items'] as Schema) : undefined;
  if (items === undefined) return;
  value.forEach((item, i) => {
    // Only map-lists correlate elements with the old object (for transition rules).
    const k = listType === 'map' ? mapListKey(item, mapKeys) : undefined;
    validateNode(ctx, items, item, k === undefined ? undefined : oldByKey.get(k), `${path}[${i}]`);
  });
}

function validateObject(ctx: ValidationContext, schema: Schema, value: JsonObject, old: unknown, path: string): void {
  const errors = ctx.errors;
  const required = schema['required'];
  if (Array.isArray(required)) {
    for (const r of required) {
      if (typeof r === 'string' && value[r] === undefined) errors.push(fieldErrors.required(path === '' ? r : `${path}.${r}`));
    }
  }
  const count = Object.keys(value).length;
  if (typeof schema['maxProperties'] === 'number' && count > schema['maxProperties']) errors.push(fieldErrors.tooMany(path, count, schema['maxProperties']));
  if (typeof schema['minProperties'] === 'number' && count < schema['minProperties']) {
    errors.push(fieldErrors.invalid(path, count, `${inBody(path)} should have at least ${schema['minProperties']} properties`));
  }
  const props = propertiesOf(schema);
  const additional = isObject(schema['additionalProperties']) ? (schema['additionalProperties'] as Schema) : undefined;
  const oldObj = isObject(old) ? old : undefined;
  for (const [key, child] of Object.entries(value)) {
    const childSchema = props?.[key] ?? additional;
    if (childSchema === undefined) continue;
    const childPath = path === '' ? key : (props?.[key] !== undefined ? `${path}.${key}` : `${path}[${key}]`);
    validateNode(ctx, childSchema, child, oldObj?.[key], childPath);
  }
}
