// Object metadata helpers shared by the registry, the controllers and the strategies:
// cloning and comparison of JSON values, timestamps, generated names and the name rules of
// k8s.io/apimachinery/pkg/util/validation.

import { randomUUID } from 'node:crypto';
import { fieldErrors } from './status.ts';
import type { FieldError, JsonObject, KubeObject } from './types.ts';

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep copy of a JSON value. Objects in storage are never mutated after commit, so any code
 *  that wants to change one clones first. */
export function clone<T>(value: T): T {
  return structuredClone(value);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ao = a as JsonObject;
  const bo = b as JsonObject;
  const aKeys = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bKeys = Object.keys(bo).filter((k) => bo[k] !== undefined);
  if (aKeys.length !== bKeys.length) return false;
  for (const k of aKeys) if (!deepEqual(ao[k], bo[k])) return false;
  return true;
}

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function rfc3339(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** RFC 3339 with microseconds, as metav1.MicroTime serialises (leases, events.k8s.io). */
export function rfc3339Micro(date: Date = new Date()): string {
  return date.toISOString().replace(/Z$/, '000Z');
}

export function newUID(): string {
  return randomUUID();
}

// The alphabet of k8s.io/apiserver's SimpleNameGenerator: no vowels (no accidental words)
// and no look-alike characters.
const GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
const GENERATED_SUFFIX_LENGTH = 5;
const MAX_GENERATED_PREFIX = 63 - GENERATED_SUFFIX_LENGTH;

export function generateName(prefix: string): string {
  const base = prefix.length > MAX_GENERATED_PREFIX ? prefix.slice(0, MAX_GENERATED_PREFIX) : prefix;
  let suffix = '';
  for (let i = 0; i < GENERATED_SUFFIX_LENGTH; i++) {
    suffix += GENERATE_NAME_ALPHABET[Math.floor(Math.random() * GENERATE_NAME_ALPHABET.length)];
  }
  return base + suffix;
}

/** The storage key of an object: `namespace/name` or `name`. */
export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

export function keyOf(obj: KubeObject): string {
  return objectKey(obj.metadata.namespace, obj.metadata.name ?? '');
}

// ---- name validation (k8s.io/apimachinery/pkg/util/validation) ----

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export type NameRule = 'dns1123-subdomain' | 'dns1123-label' | 'dns1035-label' | 'path-segment';

export function validateName(name: string, rule: NameRule, field = 'metadata.name'): FieldError[] {
  switch (rule) {
    case 'dns1123-label':
      if (name.length > 63) return [fieldErrors.invalid(field, name, 'must be no more than 63 characters')];
      if (!DNS1123_LABEL.test(name)) {
        return [fieldErrors.invalid(field, name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")];
      }
      return [];
    case 'dns1035-label':
      if (name.length > 63) return [fieldErrors.invalid(field, name, 'must be no more than 63 characters')];
      if (!DNS1035_LABEL.test(name)) {
        return [fieldErrors.invalid(field, name, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")];
      }
      return [];
    case 'dns1123-subdomain':
      if (name.length > 253) return [fieldErrors.invalid(field, name, 'must be no more than 253 characters')];
      if (!DNS1123_SUBDOMAIN.test(name)) {
        return [fieldErrors.invalid(field, name, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")];
      }
      return [];
    case 'path-segment':
      if (name === '.' || name === '..') return [fieldErrors.invalid(field, name, `may not be '${name}'`)];
      if (/[/%]/.test(name)) return [fieldErrors.invalid(field, name, "may not contain '/' or '%'")];
      return [];
  }
}

// Label keys are an optional DNS subdomain prefix and a qualified name; values are ≤ 63
// characters of [A-Za-z0-9_.-] that start and end alphanumerically.
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function isQualifiedName(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && QUALIFIED_NAME.test(name);
}

export function isLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

/** Validates the user-settable parts of metadata every resource shares. */
export function validateObjectMeta(meta: JsonObject): FieldError[] {
  const errors: FieldError[] = [];
  const labels = meta['labels'];
  if (labels !== undefined && labels !== null) {
    if (!isObject(labels)) {
      errors.push(fieldErrors.typeInvalid('metadata.labels', labels, 'must be a map of strings'));
    } else {
      for (const [k, v] of Object.entries(labels)) {
        if (!isQualifiedName(k)) errors.push(fieldErrors.invalid('metadata.labels', k, 'name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an alphanumeric character'));
        if (typeof v !== 'string' || !isLabelValue(v)) errors.push(fieldErrors.invalid(`metadata.labels`, v, 'a valid label must be an empty string or consist of alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an alphanumeric character'));
      }
    }
  }
  const annotations = meta['annotations'];
  if (annotations !== undefined && annotations !== null) {
    if (!isObject(annotations)) {
      errors.push(fieldErrors.typeInvalid('metadata.annotations', annotations, 'must be a map of strings'));
    } else {
      for (const [k, v] of Object.entries(annotations)) {
        if (!isQualifiedName(k)) errors.push(fieldErrors.invalid('metadata.annotations', k, 'name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an alphanumeric character'));
        if (typeof v !== 'string') errors.push(fieldErrors.typeInvalid(`metadata.annotations.${k}`, v, 'must be a string'));
      }
    }
  }
  const finalizers = meta['finalizers'];
  if (finalizers !== undefined && finalizers !== null) {
    if (!Array.isArray(finalizers)) {
      errors.push(fieldErrors.typeInvalid('metadata.finalizers', finalizers, 'must be a list of strings'));
    } else {
      finalizers.forEach((f, i) => {
        if (typeof f !== 'string' || !isQualifiedName(f)) errors.push(fieldErrors.invalid(`metadata.finalizers[${i}]`, f, 'name part must consist of alphanumeric characters'));
      });
    }
  }
  const owners = meta['ownerReferences'];
  if (owners !== undefined && owners !== null) {
    if (!Array.isArray(owners)) {
      errors.push(fieldErrors.typeInvalid('metadata.ownerReferences', owners, 'must be a list'));
    } else {
      let controllers = 0;
      owners.forEach((o, i) => {
        const path = `metadata.ownerReferences[${i}]`;
        if (!isObject(o)) {
          errors.push(fieldErrors.typeInvalid(path, o, 'must be an object'));
          return;
        }
        for (const f of ['apiVersion', 'kind', 'name', 'uid'] as const) {
          if (typeof o[f] !== 'string' || o[f] === '') errors.push(fieldErrors.required(`${path}.${f}`));
        }
        if (o['controller'] === true) controllers++;
      });
      if (controllers > 1) {
        errors.push(fieldErrors.invalid('metadata.ownerReferences', owners, 'Only one reference can have Controller set to true'));
      }
    }
  }
  return errors;
}

/** Reads a dotted path (`spec.nodeName`) from an object; undefined if any hop is missing. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!isObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

export function asString(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  return typeof value === 'string' ? value : String(value);
}
