// The generic REST storage behind every resource: the verbs with the semantics of
// k8s.io/apiserver's generic registry Store — system metadata, optimistic concurrency on
// resourceVersion, status subresource isolation, generation, finalizers and graceful
// deletion, no-op update suppression, dry-run and field validation directives.
//
// Objects cross this boundary in their external (served-version) form and are kept in their
// storage form; ResourceType.toStorage/toExternal convert.

import { NAME_RULES } from './builtins.ts';
import { applyJsonPatch, applyMergePatch, applyStrategicMergePatch, PATCH_TYPES } from './patch.ts';
import { clone, deepEqual, generateName, isObject, keyOf, newUID, objectKey, rfc3339, validateName, validateObjectMeta } from './meta.ts';
import type { ResourceCatalog } from './resources.ts';
import { compileFieldSelector, parseFieldSelector, parseLabelSelector, pinnedName } from './selectors.ts';
import {
  alreadyExists, ApiError, badRequest, conflict, expired, fieldErrors, forbidden, internalError, invalid, notFound, staleConflict,
  unsupportedMediaType,
} from './status.ts';
import type { Store } from './store.ts';
import type { FieldError, JsonObject, KubeObject, ResourceType, StrategyContext } from './types.ts';
import { groupVersion } from './types.ts';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export interface WriteOptions {
  dryRun: boolean;
  fieldValidation: FieldValidation;
}

export const DEFAULT_WRITE_OPTIONS: WriteOptions = { dryRun: false, fieldValidation: 'Warn' };

export interface WriteResult {
  object: KubeObject;
  warnings: string[];
  /** True when an update was a no-op and nothing was written. */
  unchanged?: boolean;
}

export interface DeleteOptions {
  propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
  orphanDependents?: boolean;
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface DeleteResult {
  object: KubeObject;
  /** True when the object is gone; false when it waits on finalizers. */
  deleted: boolean;
}

export interface ListOptions {
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  limit?: number | undefined;
  continueToken?: string | undefined;
  resourceVersion?: string | undefined;
  resourceVersionMatch?: string | undefined;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continueToken?: string;
  remainingItemCount?: number;
}

/** ObjectMeta fields a client may send; anything else is unknown (pruned, or rejected under
 *  fieldValidation=Strict), as typed decoding of metav1.ObjectMeta does. */
const OBJECT_META_FIELDS = new Set([
  'name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation', 'creationTimestamp',
  'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations', 'ownerReferences', 'finalizers', 'managedFields',
]);

const GENERATE_NAME_ATTEMPTS = 8;
export const FINALIZER_ORPHAN = 'orphan';
export const FINALIZER_FOREGROUND = 'foregroundDeletion';

interface ContinueToken {
  rv: number;
  start: string;
}

function encodeContinue(token: ContinueToken): string {
  return Buffer.from(JSON.stringify(token)).toString('base64url');
}

function decodeContinue(raw: string): ContinueToken {
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown;
    if (isObject(parsed) && typeof parsed['rv'] === 'number' && typeof parsed['start'] === 'string') {
      return { rv: parsed['rv'], start: parsed['start'] };
    }
  } catch {
    // fall through
  }
  throw badRequest('invalid continue token');
}

/** Patch content types a resource accepts (custom resources have no strategic merge). */
export function acceptedPatchTypes(rt: ResourceType): string[] {
  const types: string[] = [PATCH_TYPES.json, PATCH_TYPES.merge];
  if (rt.patchMeta !== undefined) types.push(PATCH_TYPES.strategic);
  return types;
}

function smpUnsupported(): ApiError {
  return unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.json}, ${PATCH_TYPES.merge}, ${PATCH_TYPES.apply}`);
}

/** metav1.ObjectMeta marshals its collections with omitempty: an emptied list or map is
 *  absent, never `[]` or `{}`. */
function normalizeMeta(meta: KubeObject['metadata']): void {
  for (const key of ['finalizers', 'ownerReferences', 'labels', 'annotations', 'managedFields'] as const) {
    const v = meta[key];
    if (v === null || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0)) delete meta[key];
  }
  if (meta.generateName === '') delete meta.generateName;
}

function parseRevision(raw: string, what = 'resourceVersion'): number {
  if (!/^\d+$/.test(raw)) throw badRequest(`invalid ${what}: "${raw}"`);
  return Number(raw);
}

export class RestStorage {
  private readonly store: Store;
  private readonly catalog: ResourceCatalog;
  private readonly ctx: StrategyContext;

  constructor(store: Store, catalog: ResourceCatalog, ctx: StrategyContext) {
    this.store = store;
    this.catalog = catalog;
    this.ctx = ctx;
  }

  // ------------------------------------------------------------ conversion

  external(rt: ResourceType, stored: KubeObject): KubeObject {
    return rt.toExternal !== undefined ? rt.toExternal(stored) : stored;
  }

  private toStorage(rt: ResourceType, body: KubeObject): KubeObject {
    const obj = rt.toStorage !== undefined ? rt.toStorage(body) : body;
    obj.apiVersion = rt.storageVersion;
    obj.kind = rt.kind;
    return obj;
  }

  /** Type checks every request body gets before anything else looks at it. */
  private checkBody(rt: ResourceType, body: unknown): KubeObject {
    if (!isObject(body)) throw badRequest('the body of the request was in an unknown format');
    const gv = groupVersion(rt.group, rt.version);
    if (body['apiVersion'] !== undefined && body['apiVersion'] !== gv) {
      throw badRequest(`the API version in the data (${String(body['apiVersion'])}) does not match the expected API version (${gv})`);
    }
    if (body['kind'] !== undefined && body['kind'] !== rt.kind) {
      throw badRequest(`the kind in the data (${String(body['kind'])}) does not match the expected kind (${rt.kind})`);
    }
    if (body['metadata'] !== undefined && !isObject(body['metadata'])) {
      throw badRequest('metadata: expected an object');
    }
    const obj = clone(body) as KubeObject;
    obj.metadata ??= {};
    return obj;
  }

  // ------------------------------------------------------------ reads

  get(rt: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const obj = this.store.get(rt.storageKey, objectKey(rt.namespaced ? namespace : undefined, name));
    if (obj === undefined) throw notFound(rt, name);
    return this.external(rt, obj);
  }

  /** Stored form, or undefined; for controllers inside the server. */
  peek(rt: ResourceType, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.store.get(rt.storageKey, objectKey(rt.namespaced ? namespace : undefined, name));
  }

  /** A predicate over stored objects for the given selectors (used by list and watch). */
  matcher(rt: ResourceType, namespace: string | undefined, labelSelector: string | undefined, fieldSelector: string | undefined): (obj: KubeObject) => boolean {
    const labels = parseLabelSelector(labelSelector);
    const fields = compileFieldSelector(parseFieldSelector(fieldSelector), rt.fieldLabels, rt.fieldLabelToStorage);
    return (obj) =>
      (namespace === undefined || obj.metadata.namespace === namespace) && labels.matches(obj.metadata.labels) && fields(obj);
  }

  list(rt: ResourceType, namespace: string | undefined, options: ListOptions): ListResult {
    const match = this.matcher(rt, namespace, options.labelSelector, options.fieldSelector);
    const hasSelector = (options.labelSelector ?? '') !== '' || (options.fieldSelector ?? '') !== '';
    const current = this.store.currentRevision;
    let revision = current;
    let start: string | undefined;
    let source: KubeObject[] | 'expired';

    if (options.continueToken) {
      const token = decodeContinue(options.continueToken);
      revision = token.rv;
      start = token.start;
      source = this.store.snapshotAt(rt.storageKey, revision, namespace);
      if (source === 'expired') {
        throw expired('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
    } else {
      const rv = options.resourceVersion ?? '';
      const requested = rv === '' ? undefined : parseRevision(rv);
      if (requested !== undefined && requested > current && requested !== 0) {
        throw new ApiError(504, 'Timeout', `Too large resource version: ${requested}, current: ${current}`, {
          causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
          retryAfterSeconds: 1,
        });
      }
      if (options.resourceVersionMatch === 'Exact') {
        if (requested === undefined || requested === 0) throw badRequest('resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"');
        revision = requested;
        source = this.store.snapshotAt(rt.storageKey, requested, namespace);
        if (source === 'expired') throw expired('The resourceVersion for the provided list is too old.');
      } else {
        // "", "0" and NotOlderThan: this store is never behind, so the newest state qualifies.
        const pinned = pinnedName(parseFieldSelector(options.fieldSelector));
        if (pinned !== undefined && (namespace !== undefined || !rt.namespaced)) {
          const one = this.store.get(rt.storageKey, objectKey(rt.namespaced ? namespace : undefined, pinned));
          source = one === undefined ? [] : [one];
        } else {
          source = this.store.list(rt.storageKey, namespace);
        }
      }
    }

    const items: KubeObject[] = [];
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : Infinity;
    let continueToken: string | undefined;
    let remaining = 0;
    for (const obj of source) {
      if (start !== undefined && keyOf(obj) <= start) continue;
      if (!match(obj)) continue;
      if (items.length >= limit) {
        remaining++;
        continue;
      }
      items.push(obj);
    }
    if (remaining > 0) {
      const last = items[items.length - 1];
      if (last !== undefined) continueToken = encodeContinue({ rv: revision, start: keyOf(last) });
    }
    const result: ListResult = { items: items.map((o) => this.external(rt, o)), resourceVersion: String(revision) };
    if (continueToken !== undefined) {
      result.continueToken = continueToken;
      // The real server reports the count only when it can be computed without a selector.
      if (!hasSelector) result.remainingItemCount = remaining;
    }
    return result;
  }

  // ------------------------------------------------------------ create

  create(rt: ResourceType, namespace: string | undefined, body: unknown, options: WriteOptions): WriteResult {
    const obj = this.toStorage(rt, this.checkBody(rt, body));
    const meta = obj.metadata;
    if (rt.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = namespace;
      this.admitNamespace(rt, namespace ?? '', meta.name ?? meta.generateName ?? '');
    } else {
      delete meta.namespace;
    }
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== '') {
      throw internalError('resourceVersion should not be set on objects to be created');
    }
    const warnings: string[] = [];
    const unknownMeta = this.pruneMetadata(obj);

    // System-owned metadata is always the server's.
    meta.uid = newUID();
    meta.creationTimestamp = this.ctx.now();
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.managedFields;
    delete meta.selfLink;
    delete meta.resourceVersion;
    if (rt.generation !== 'none') meta.generation = 1;
    else delete meta.generation;
    if (rt.statusSubresource && rt.crdName !== undefined) delete obj['status'];
    rt.prepareForCreate?.(obj, this.ctx);
    normalizeMeta(meta);

    const errors: FieldError[] = [];
    const unknownFields = [...unknownMeta, ...(rt.admitSchema?.(obj, undefined, errors) ?? [])];
    this.applyFieldValidation(unknownFields, options, warnings);
    if (!meta.name && !meta.generateName) {
      errors.unshift(fieldErrors.required('metadata.name', 'name or generateName is required'));
    }
    if (meta.name) errors.unshift(...validateName(meta.name, this.nameRule(rt)));
    else if (meta.generateName) errors.unshift(...validateName(`${meta.generateName}a`, this.nameRule(rt), 'metadata.generateName'));
    errors.push(...validateObjectMeta(meta), ...(rt.validate?.(obj, undefined) ?? []));
    if (errors.length > 0) throw invalid(rt, meta.name ?? meta.generateName ?? '', errors);

    if (!meta.name) {
      // generateName collisions are retried, as the apiserver does since v1.32.
      for (let attempt = 0; attempt < GENERATE_NAME_ATTEMPTS; attempt++) {
        const candidate = generateName(meta.generateName ?? '');
        if (this.store.get(rt.storageKey, objectKey(meta.namespace, candidate)) === undefined) {
          meta.name = candidate;
          break;
        }
      }
      if (!meta.name) throw alreadyExists(rt, `${meta.generateName ?? ''}*`);
    }
    const key = keyOf(obj);
    if (this.store.get(rt.storageKey, key) !== undefined) throw alreadyExists(rt, meta.name);
    if (options.dryRun) return { object: this.external(rt, obj), warnings };
    const event = this.store.commit(rt.storageKey, key, obj);
    return { object: this.external(rt, event.object), warnings };
  }

  private nameRule(rt: ResourceType): 'dns1123-subdomain' | 'dns1123-label' | 'dns1035-label' | 'path-segment' {
    return NAME_RULES[rt.storageKey] ?? 'dns1123-subdomain';
  }

  /** NamespaceLifecycle admission: content needs a namespace that exists and is not terminating. */
  private admitNamespace(rt: ResourceType, namespace: string, name: string): void {
    const nsType = this.catalog.get('', 'v1', 'namespaces');
    if (nsType === undefined) return;
    const ns = this.store.get(nsType.storageKey, namespace);
    if (ns === undefined) throw notFound(nsType, namespace);
    if (ns.metadata.deletionTimestamp !== undefined) {
      const err = forbidden(`${rt.group === '' ? rt.resource : `${rt.resource}.${rt.group}`} "${name}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`, rt, name);
      err.status.details!.causes = [{ reason: 'NamespaceTerminating', message: `namespace ${namespace} is being terminated`, field: 'metadata.namespace' }];
      throw err;
    }
  }

  private pruneMetadata(obj: KubeObject): string[] {
    const unknown: string[] = [];
    for (const key of Object.keys(obj.metadata)) {
      if (!OBJECT_META_FIELDS.has(key)) {
        unknown.push(`metadata.${key}`);
        delete obj.metadata[key];
      }
    }
    return unknown;
  }

  private applyFieldValidation(unknownFields: string[], options: WriteOptions, warnings: string[]): void {
    if (unknownFields.length === 0 || options.fieldValidation === 'Ignore') return;
    if (options.fieldValidation === 'Strict') {
      const list = unknownFields.map((f) => `unknown field "${f}"`);
      throw badRequest(`strict decoding error: ${list.join(', ')}`);
    }
    for (const f of unknownFields) warnings.push(`unknown field "${f}"`);
  }

  // ------------------------------------------------------------ update

  /**
   * PUT. `subresource` 'status' replaces only .status; 'finalize' (namespaces) only
   * .spec.finalizers; otherwise everything except status when the type has a status
   * subresource.
   */
  update(rt: ResourceType, namespace: string | undefined, name: string, body: unknown, options: WriteOptions, subresource?: string): WriteResult {
    const candidate = this.toStorage(rt, this.checkBody(rt, body));
    this.checkIdentity(rt, candidate, namespace, name);
    const key = objectKey(rt.namespaced ? namespace : undefined, name);
    const old = this.store.get(rt.storageKey, key);
    if (old === undefined) {
      if (rt.allowCreateOnUpdate && subresource === undefined) {
        delete candidate.metadata.resourceVersion;
        candidate.metadata.name = name;
        return this.create(rt, namespace, this.external(rt, candidate), options);
      }
      throw notFound(rt, name);
    }
    return this.applyUpdate(rt, key, old, candidate, options, subresource);
  }

  private checkIdentity(rt: ResourceType, obj: KubeObject, namespace: string | undefined, name: string): void {
    const meta = obj.metadata;
    if (meta.name !== undefined && meta.name !== '' && meta.name !== name) {
      throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
    }
    meta.name = name;
    if (rt.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = namespace;
    } else {
      delete meta.namespace;
    }
  }

  /** Shared by PUT and PATCH: `candidate` is the full desired object in storage form. */
  applyUpdate(rt: ResourceType, key: string, old: KubeObject, candidate: KubeObject, options: WriteOptions, subresource?: string): WriteResult {
    const name = old.metadata.name ?? '';
    const rv = candidate.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== old.metadata.resourceVersion) throw staleConflict(rt, name);
    const warnings: string[] = [];
    const unknownMeta = this.pruneMetadata(candidate);
    const errors: FieldError[] = [];

    let next: KubeObject;
    if (subresource === 'status') {
      // Only .status moves; metadata and spec stay as stored (status strategy).
      next = clone(old);
      if (candidate['status'] === undefined) delete next['status'];
      else next['status'] = candidate['status'];
    } else if (subresource === 'finalize') {
      next = clone(old);
      const finalizers = isObject(candidate['spec']) ? (candidate['spec'] as JsonObject)['finalizers'] : undefined;
      next['spec'] = { ...(isObject(old['spec']) ? (old['spec'] as JsonObject) : {}), finalizers: Array.isArray(finalizers) ? finalizers : [] };
    } else {
      next = candidate;
      const meta = next.metadata;
      if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== old.metadata.uid) {
        errors.push(fieldErrors.immutable('metadata.uid', meta.uid));
      }
      meta.uid = old.metadata.uid;
      meta.creationTimestamp = old.metadata.creationTimestamp;
      if (old.metadata.deletionTimestamp !== undefined) {
        meta.deletionTimestamp = old.metadata.deletionTimestamp;
        meta.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
      } else {
        delete meta.deletionTimestamp;
        delete meta.deletionGracePeriodSeconds;
      }
      delete meta.managedFields;
      delete meta.selfLink;
      if (meta.generateName === undefined && old.metadata.generateName !== undefined) meta.generateName = old.metadata.generateName;
      if (rt.statusSubresource) {
        if (old['status'] === undefined) delete next['status'];
        else next['status'] = clone(old['status']);
      }
      rt.prepareForUpdate?.(next, old, this.ctx);
      const oldFinalizers = old.metadata.finalizers ?? [];
      const added = (meta.finalizers ?? []).filter((f) => !oldFinalizers.includes(f));
      if (old.metadata.deletionTimestamp !== undefined && added.length > 0) {
        errors.push(fieldErrors.forbidden('metadata.finalizers', `no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`));
      }
    }
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    normalizeMeta(next.metadata);

    const unknownFields = [...unknownMeta, ...(rt.admitSchema?.(next, old, errors) ?? [])];
    this.applyFieldValidation(unknownFields, options, warnings);
    errors.push(...validateObjectMeta(next.metadata), ...(rt.validate?.(next, old) ?? []));
    if (errors.length > 0) throw invalid(rt, name, errors);

    this.applyGeneration(rt, next, old);
    if (deepEqual(next, old)) {
      // etcd's GuaranteedUpdate skips identical writes: no new resourceVersion, no event.
      return { object: this.external(rt, old), warnings, unchanged: true };
    }
    if (next.metadata.deletionTimestamp !== undefined && this.pendingFinalizers(rt, next).length === 0) {
      // The last finalizer is gone: the object is deleted instead of updated.
      if (options.dryRun) return { object: this.external(rt, next), warnings };
      const event = this.store.commit(rt.storageKey, key, undefined);
      return { object: this.external(rt, event.object), warnings };
    }
    if (options.dryRun) return { object: this.external(rt, next), warnings };
    const event = this.store.commit(rt.storageKey, key, next);
    return { object: this.external(rt, event.object), warnings };
  }

  private applyGeneration(rt: ResourceType, next: KubeObject, old: KubeObject): void {
    if (rt.generation === 'none') {
      delete next.metadata.generation;
      return;
    }
    const previous = old.metadata.generation ?? 1;
    let changed: boolean;
    if (rt.generation === 'spec') {
      changed = !deepEqual(next['spec'], old['spec']);
    } else {
      const strip = (o: KubeObject): JsonObject => {
        const { metadata: _m, ...rest } = o;
        if (rt.statusSubresource) delete rest['status'];
        return rest;
      };
      changed = !deepEqual(strip(next), strip(old));
    }
    next.metadata.generation = changed ? previous + 1 : previous;
  }

  /** Finalizers that still hold the object (namespaces also wait on spec.finalizers). */
  pendingFinalizers(rt: ResourceType, obj: KubeObject): string[] {
    const list = [...(obj.metadata.finalizers ?? [])];
    if (rt.storageKey === 'core/namespaces' && isObject(obj['spec']) && Array.isArray((obj['spec'] as JsonObject)['finalizers'])) {
      list.push(...((obj['spec'] as JsonObject)['finalizers'] as string[]));
    }
    return list;
  }

  // ------------------------------------------------------------ patch

  /** PATCH: the patch applies to the current external object; the result then goes through
   *  the update path, so every update rule (status isolation, validation, conflict on a
   *  resourceVersion the patch itself sets) holds for patches too. */
  patch(rt: ResourceType, namespace: string | undefined, name: string, patchType: string, patch: unknown, options: WriteOptions, subresource?: string): WriteResult {
    const key = objectKey(rt.namespaced ? namespace : undefined, name);
    const old = this.store.get(rt.storageKey, key);
    if (old === undefined) throw notFound(rt, name);
    const current = clone(this.external(rt, old));
    let patched: unknown;
    switch (patchType) {
      case PATCH_TYPES.merge:
        patched = applyMergePatch(current, patch);
        break;
      case PATCH_TYPES.json:
        patched = applyJsonPatch(current, patch);
        break;
      case PATCH_TYPES.strategic:
        if (rt.patchMeta === undefined) throw smpUnsupported();
        patched = applyStrategicMergePatch(current, patch, rt.patchMeta);
        break;
      default:
        throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${acceptedPatchTypes(rt).join(', ')}`);
    }
    const candidate = this.toStorage(rt, this.checkBody(rt, patched));
    this.checkIdentity(rt, candidate, namespace, name);
    return this.applyUpdate(rt, key, old, candidate, options, subresource);
  }

  // ------------------------------------------------------------ delete

  delete(rt: ResourceType, namespace: string | undefined, name: string, options: DeleteOptions, dryRun = false): DeleteResult {
    const key = objectKey(rt.namespaced ? namespace : undefined, name);
    const old = this.store.get(rt.storageKey, key);
    if (old === undefined) throw notFound(rt, name);
    const pre = options.preconditions;
    if (pre?.uid !== undefined && pre.uid !== old.metadata.uid) {
      throw conflict(rt, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid ?? ''}`);
    }
    if (pre?.resourceVersion !== undefined && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(rt, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion ?? ''}`);
    }
    const policy = options.propagationPolicy
      ?? (options.orphanDependents === true ? 'Orphan' : 'Background');
    if (!['Background', 'Foreground', 'Orphan'].includes(policy)) {
      throw invalid(rt, name, [fieldErrors.notSupported('propagationPolicy', policy, ['Foreground', 'Background', 'Orphan'])]);
    }

    const finalizers = [...(old.metadata.finalizers ?? [])];
    const wanted = policy === 'Orphan' ? FINALIZER_ORPHAN : policy === 'Foreground' ? FINALIZER_FOREGROUND : undefined;
    if (old.metadata.deletionTimestamp === undefined) {
      // Only a first delete picks the GC finalizer; Background clears one left by an earlier choice.
      for (const f of [FINALIZER_ORPHAN, FINALIZER_FOREGROUND]) {
        const idx = finalizers.indexOf(f);
        if (idx >= 0 && f !== wanted) finalizers.splice(idx, 1);
      }
      if (wanted !== undefined && !finalizers.includes(wanted)) finalizers.push(wanted);
      for (const f of rt.finalizersOnDelete ?? []) if (!finalizers.includes(f)) finalizers.push(f);
    }

    const next = clone(old);
    next.metadata.finalizers = finalizers;
    if (finalizers.length === 0) delete next.metadata.finalizers;
    if (this.pendingFinalizers(rt, next).length > 0) {
      if (old.metadata.deletionTimestamp !== undefined && deepEqual(next, old)) {
        return { object: this.external(rt, old), deleted: false };
      }
      next.metadata.deletionTimestamp ??= this.ctx.now();
      next.metadata.deletionGracePeriodSeconds ??= 0;
      // BeforeDelete bumps generation when the object tracks one.
      if (old.metadata.deletionTimestamp === undefined && (next.metadata.generation ?? 0) > 0) {
        next.metadata.generation = (next.metadata.generation ?? 0) + 1;
      }
      if (rt.storageKey === 'core/namespaces') next['status'] = { ...(isObject(next['status']) ? (next['status'] as JsonObject) : {}), phase: 'Terminating' };
      if (dryRun) return { object: this.external(rt, next), deleted: false };
      const event = this.store.commit(rt.storageKey, key, next);
      return { object: this.external(rt, event.object), deleted: false };
    }
    if (dryRun) return { object: this.external(rt, old), deleted: true };
    const event = this.store.commit(rt.storageKey, key, undefined);
    return { object: this.external(rt, event.object), deleted: true };
  }

  deleteCollection(rt: ResourceType, namespace: string | undefined, list: ListOptions, options: DeleteOptions, dryRun = false): KubeObject[] {
    const match = this.matcher(rt, namespace, list.labelSelector, list.fieldSelector);
    const deleted: KubeObject[] = [];
    for (const obj of this.store.list(rt.storageKey, namespace)) {
      if (!match(obj)) continue;
      try {
        deleted.push(this.delete(rt, obj.metadata.namespace, obj.metadata.name ?? '', { ...options, preconditions: undefined }, dryRun).object);
      } catch (err) {
        // Objects deleted concurrently (by GC) are not an error for the collection.
        if (!(err instanceof ApiError && err.code === 404)) throw err;
      }
    }
    return deleted;
  }
}
