// The three patch formats the apiserver accepts for PATCH: JSON merge patch (RFC 7386), JSON
// patch (RFC 6902) and strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch).
// Server-side apply is not implemented; the server answers it with 415.

import { badRequest, ApiError } from './status.ts';
import { clone, deepEqual, isObject } from './meta.ts';
import type { JsonObject, PatchMeta, PatchMetaEntry } from './types.ts';

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
  applyCbor: 'application/apply-patch+cbor',
} as const;

// ---------------------------------------------------------------- RFC 7386 merge patch

export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const result: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

// ---------------------------------------------------------------- RFC 6902 JSON patch

interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw badRequest(`the server rejected our request due to an error in our request: invalid JSON pointer "${pointer}"`);
  return pointer.slice(1).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function jsonPatchError(message: string): ApiError {
  // The real server reports patch application failures as 422 Invalid-free errors with code
  // 422 ("the server rejected our request due to an error in our request").
  return new ApiError(422, 'Invalid', message);
}

function resolveParent(doc: unknown, tokens: string[], op: string, path: string): { parent: JsonObject | unknown[]; last: string } {
  let cur: unknown = doc;
  for (let i = 0; i < tokens.length - 1; i++) {
    const t = tokens[i] ?? '';
    if (Array.isArray(cur)) {
      const idx = Number(t);
      if (!Number.isInteger(idx) || idx < 0 || idx >= cur.length) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
      cur = cur[idx];
    } else if (isObject(cur)) {
      if (!Object.hasOwn(cur, t)) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
      cur = cur[t];
    } else {
      throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
    }
  }
  if (!Array.isArray(cur) && !isObject(cur)) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  return { parent: cur, last: tokens[tokens.length - 1] ?? '' };
}

function getAt(doc: unknown, path: string, op: string): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return doc;
  const { parent, last } = resolveParent(doc, tokens, op, path);
  if (Array.isArray(parent)) {
    const idx = Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx >= parent.length) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
    return parent[idx];
  }
  if (!Object.hasOwn(parent, last)) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  return parent[last];
}

function addAt(doc: unknown, path: string, value: unknown, op: string): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return value;
  const { parent, last } = resolveParent(doc, tokens, op, path);
  if (Array.isArray(parent)) {
    const idx = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx > parent.length) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
    parent.splice(idx, 0, value);
  } else {
    parent[last] = value;
  }
  return doc;
}

function removeAt(doc: unknown, path: string, op: string): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) throw jsonPatchError('cannot remove the document root');
  const { parent, last } = resolveParent(doc, tokens, op, path);
  if (Array.isArray(parent)) {
    const idx = Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx >= parent.length) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
    parent.splice(idx, 1);
  } else {
    if (!Object.hasOwn(parent, last)) throw jsonPatchError(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
    delete parent[last];
  }
  return doc;
}

export function applyJsonPatch(target: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw badRequest('the server rejected our request due to an error in our request: json patch must be an array of operations');
  let doc = clone(target);
  for (const raw of patch) {
    if (!isObject(raw) || typeof raw['op'] !== 'string' || typeof raw['path'] !== 'string') {
      throw badRequest('the server rejected our request due to an error in our request: invalid json patch operation');
    }
    const op = raw as unknown as JsonPatchOperation;
    switch (op.op) {
      case 'add':
        if (!('value' in raw)) throw jsonPatchError('add operation missing value');
        doc = addAt(doc, op.path, clone(op.value), 'add');
        break;
      case 'remove':
        doc = removeAt(doc, op.path, 'remove');
        break;
      case 'replace':
        if (!('value' in raw)) throw jsonPatchError('replace operation missing value');
        getAt(doc, op.path, 'replace'); // the target must exist
        if (parsePointer(op.path).length === 0) doc = clone(op.value);
        else {
          doc = removeAt(doc, op.path, 'replace');
          doc = addAt(doc, op.path, clone(op.value), 'replace');
        }
        break;
      case 'move': {
        if (typeof op.from !== 'string') throw jsonPatchError('move operation missing from');
        const value = getAt(doc, op.from, 'move');
        doc = removeAt(doc, op.from, 'move');
        doc = addAt(doc, op.path, value, 'move');
        break;
      }
      case 'copy': {
        if (typeof op.from !== 'string') throw jsonPatchError('copy operation missing from');
        doc = addAt(doc, op.path, clone(getAt(doc, op.from, 'copy')), 'copy');
        break;
      }
      case 'test':
        if (!deepEqual(getAt(doc, op.path, 'test'), op.value)) {
          throw jsonPatchError(`testing value ${op.path} failed: test failed`);
        }
        break;
      default:
        throw badRequest(`the server rejected our request due to an error in our request: Unexpected kind: ${String((raw as JsonObject)['op'])}`);
    }
  }
  return doc;
}

// ---------------------------------------------------------------- strategic merge patch

const DIRECTIVE = '$patch';
const RETAIN_KEYS = '$retainKeys';
const SET_ELEMENT_ORDER = '$setElementOrder/';
const DELETE_FROM_PRIMITIVE_LIST = '$deleteFromPrimitiveList/';

/**
 * Applies a strategic merge patch. Maps merge recursively; `null` deletes a key; lists are
 * replaced unless the patch metadata names a merge strategy: lists of maps with a merge key
 * merge element-wise by that key, lists of scalars merge as ordered sets. The directives
 * kubectl generates are honoured: `$patch: replace|delete|merge`, `$retainKeys`,
 * `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
 */
export function applyStrategicMergePatch(target: unknown, patch: unknown, meta: PatchMeta): unknown {
  if (!isObject(patch)) throw badRequest('the server rejected our request due to an error in our request: strategic merge patch must be a JSON object');
  return mergeMap(isObject(target) ? target : {}, patch, meta, '');
}

function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function mergeMap(original: JsonObject, patch: JsonObject, meta: PatchMeta, path: string): JsonObject | undefined {
  const directive = patch[DIRECTIVE];
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const replaced: JsonObject = {};
    for (const [k, v] of Object.entries(patch)) if (k !== DIRECTIVE && v !== null) replaced[k] = clone(v);
    return stripDirectives(replaced) as JsonObject;
  }
  if (directive !== undefined && directive !== 'merge') {
    throw badRequest(`the server rejected our request due to an error in our request: Unknown patch type: ${String(directive)}`);
  }

  const result: JsonObject = { ...original };
  const retainKeys = patch[RETAIN_KEYS];
  if (retainKeys !== undefined) {
    if (!Array.isArray(retainKeys)) throw badRequest('the server rejected our request due to an error in our request: $retainKeys must be a list');
    for (const k of Object.keys(result)) if (!retainKeys.includes(k)) delete result[k];
  }

  const orders = new Map<string, unknown[]>();
  for (const [key, value] of Object.entries(patch)) {
    if (key === DIRECTIVE || key === RETAIN_KEYS) continue;
    if (key.startsWith(SET_ELEMENT_ORDER)) {
      if (!Array.isArray(value)) throw badRequest(`the server rejected our request due to an error in our request: ${key} must be a list`);
      orders.set(key.slice(SET_ELEMENT_ORDER.length), value);
      continue;
    }
    if (key.startsWith(DELETE_FROM_PRIMITIVE_LIST)) {
      const field = key.slice(DELETE_FROM_PRIMITIVE_LIST.length);
      const current = result[field];
      if (Array.isArray(current) && Array.isArray(value)) {
        result[field] = current.filter((item) => !value.some((d) => deepEqual(d, item)));
      }
      continue;
    }
    if (key.startsWith('$')) {
      throw badRequest(`the server rejected our request due to an error in our request: unsupported strategic merge patch directive ${key}`);
    }
    const fieldPath = childPath(path, key);
    if (value === null) {
      delete result[key];
      continue;
    }
    const current = result[key];
    if (isObject(value)) {
      const merged = mergeMap(isObject(current) ? current : {}, value, meta, fieldPath);
      if (merged === undefined) delete result[key];
      else result[key] = merged;
    } else if (Array.isArray(value)) {
      result[key] = mergeList(Array.isArray(current) ? current : [], value, meta.get(fieldPath), meta, fieldPath);
    } else {
      result[key] = value;
    }
  }

  for (const [field, order] of orders) {
    const list = result[field];
    if (Array.isArray(list)) result[field] = applyElementOrder(list, order, meta.get(childPath(path, field)));
  }
  return result;
}

function mergeList(original: unknown[], patch: unknown[], entry: PatchMetaEntry | undefined, meta: PatchMeta, path: string): unknown[] {
  if (entry === undefined || entry.strategy !== 'merge') {
    // Atomic list: replaced whole; directives inside it are meaningless, so refuse them
    // rather than storing "$patch" keys.
    return stripDirectives(patch) as unknown[];
  }
  if (entry.mergeKey === undefined) {
    // Primitive set merge (finalizers, podCIDRs, ...): union keeping original order.
    const result = [...original];
    for (const item of patch) {
      if (isObject(item)) throw badRequest(`the server rejected our request due to an error in our request: ${path}: expected a list of primitives`);
      if (!result.some((existing) => deepEqual(existing, item))) result.push(item);
    }
    return result;
  }
  const mergeKey = entry.mergeKey;
  // A `{$patch: replace}` element replaces the whole list with the patch's other elements.
  if (patch.some((item) => isObject(item) && item[DIRECTIVE] === 'replace')) {
    return stripDirectives(patch.filter((item) => !(isObject(item) && item[DIRECTIVE] === 'replace'))) as unknown[];
  }
  const result: unknown[] = [...original];
  for (const item of patch) {
    if (!isObject(item)) throw badRequest(`the server rejected our request due to an error in our request: ${path}: expected a list of maps merged by "${mergeKey}"`);
    if (!Object.hasOwn(item, mergeKey)) {
      throw badRequest(`the server rejected our request due to an error in our request: map: ${JSON.stringify(item)} does not contain declared merge key: ${mergeKey}`);
    }
    const index = result.findIndex((existing) => isObject(existing) && deepEqual(existing[mergeKey], item[mergeKey]));
    if (item[DIRECTIVE] === 'delete') {
      if (index >= 0) result.splice(index, 1);
      continue;
    }
    if (index >= 0) {
      const merged = mergeMap(result[index] as JsonObject, item, meta, path);
      if (merged === undefined) result.splice(index, 1);
      else result[index] = merged;
    } else {
      result.push(mergeMap({}, item, meta, path));
    }
  }
  return result;
}

/** `$setElementOrder`: elements named in the order list come first in that order; the rest
 *  (present only on the server) keep their relative order after them. */
function applyElementOrder(list: unknown[], order: unknown[], entry: PatchMetaEntry | undefined): unknown[] {
  const keyOfItem = (item: unknown): unknown =>
    entry?.mergeKey !== undefined && isObject(item) ? item[entry.mergeKey] : item;
  const orderKeys = order.map((o) => (entry?.mergeKey !== undefined && isObject(o) ? o[entry.mergeKey] : o));
  const placed: unknown[] = [];
  const rest: unknown[] = [];
  const byOrder = new Map<number, unknown>();
  for (const item of list) {
    const idx = orderKeys.findIndex((k) => deepEqual(k, keyOfItem(item)));
    if (idx >= 0) byOrder.set(idx, item);
    else rest.push(item);
  }
  for (let i = 0; i < orderKeys.length; i++) if (byOrder.has(i)) placed.push(byOrder.get(i));
  return [...placed, ...rest];
}

function stripDirectives(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripDirectives);
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (k.startsWith('$')) continue;
    out[k] = stripDirectives(v);
  }
  return out;
}
