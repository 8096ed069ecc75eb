// CustomResourceDefinitions: the CRD resource type with its validation, and the controller
// that turns an established CRD into served resource types (one per served version, sharing
// the storage version's table) and tears them down when the CRD is deleted — after deleting
// every instance, as the apiextensions finalizer controller does.

import type { Logger } from 'pino';
import { parseJsonPath } from './jsonpath.ts';
import { clone, deepEqual, getPath, isObject, validateName } from './meta.ts';
import type { ResourceCatalog } from './resources.ts';
import type { RestStorage } from './rest.ts';
import { DEFAULT_WRITE_OPTIONS } from './rest.ts';
import { ApiError, fieldErrors } from './status.ts';
import type { Store, StoredEvent } from './store.ts';
import type { FieldError, JsonObject, KubeObject, PrinterColumn, ResourceType } from './types.ts';
import { applyDefaults, CompiledSchema, prune, validateStructural, validateValue } from './validation.ts';
import type { Schema } from './validation.ts';
import type { WatchHub } from './watch.ts';

export const CRD_CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io';
const CRD_STORAGE_KEY = 'apiextensions.k8s.io/customresourcedefinitions';

interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  schema?: { openAPIV3Schema?: Schema };
  subresources?: { status?: JsonObject; scale?: JsonObject };
  additionalPrinterColumns?: { name: string; type: string; format?: string; description?: string; priority?: number; jsonPath: string }[];
  selectableFields?: { jsonPath: string }[];
}

interface CrdSpec {
  group: string;
  scope: string;
  names: { plural: string; singular?: string; kind: string; listKind?: string; shortNames?: string[]; categories?: string[] };
  versions: CrdVersion[];
}

function crdSpec(obj: KubeObject): CrdSpec {
  return obj['spec'] as unknown as CrdSpec;
}

const COLUMN_TYPES = ['integer', 'number', 'string', 'boolean', 'date'];

function validateCrd(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errors: FieldError[] = [];
  const spec = obj['spec'];
  if (!isObject(spec)) return [fieldErrors.required('spec')];
  const group = spec['group'];
  const names = isObject(spec['names']) ? (spec['names'] as JsonObject) : {};
  const plural = names['plural'];
  if (typeof group !== 'string' || group === '') errors.push(fieldErrors.required('spec.group'));
  else {
    errors.push(...validateName(group, 'dns1123-subdomain', 'spec.group'));
    if (!group.includes('.')) errors.push(fieldErrors.invalid('spec.group', group, 'should be a domain with at least one dot'));
  }
  if (typeof plural !== 'string' || plural === '') errors.push(fieldErrors.required('spec.names.plural'));
  else errors.push(...validateName(plural, 'dns1123-label', 'spec.names.plural'));
  if (typeof names['kind'] !== 'string' || names['kind'] === '') errors.push(fieldErrors.required('spec.names.kind'));
  if (typeof plural === 'string' && typeof group === 'string' && obj.metadata.name !== `${plural}.${group}`) {
    errors.push(fieldErrors.invalid('metadata.name', obj.metadata.name, 'must be spec.names.plural+"."+spec.group'));
  }
  if (spec['scope'] !== 'Namespaced' && spec['scope'] !== 'Cluster') {
    errors.push(fieldErrors.notSupported('spec.scope', spec['scope'], ['Cluster', 'Namespaced']));
  }
  const versions = Array.isArray(spec['versions']) ? spec['versions'] : [];
  if (versions.length === 0) errors.push(fieldErrors.invalid('spec.versions', versions, 'must have exactly one version marked as storage version'));
  const storage = versions.filter((v) => isObject(v) && v['storage'] === true).length;
  if (versions.length > 0 && storage !== 1) errors.push(fieldErrors.invalid('spec.versions', versions.length, 'must have exactly one version marked as storage version'));
  const seen = new Set<string>();
  versions.forEach((v, i) => {
    const path = `spec.versions[${i}]`;
    if (!isObject(v)) return;
    const name = v['name'];
    if (typeof name !== 'string' || name === '') errors.push(fieldErrors.required(`${path}.name`));
    else {
      errors.push(...validateName(name, 'dns1035-label', `${path}.name`));
      if (seen.has(name)) errors.push(fieldErrors.duplicate(`${path}.name`, name));
      seen.add(name);
    }
    const schema = getPath(v, 'schema.openAPIV3Schema');
    const schemaPath = `${path}.schema.openAPIV3Schema`;
    if (schema === undefined) errors.push(fieldErrors.required(schemaPath, 'schemas are required'));
    else {
      errors.push(...validateStructural(schema, schemaPath));
      if (isObject(schema)) errors.push(...CompiledSchema.compile(schema, schemaPath).errors);
    }
    const columns = Array.isArray(v['additionalPrinterColumns']) ? v['additionalPrinterColumns'] : [];
    columns.forEach((c, j) => {
      const cPath = `${path}.additionalPrinterColumns[${j}]`;
      if (!isObject(c)) return;
      if (typeof c['name'] !== 'string' || c['name'] === '') errors.push(fieldErrors.required(`${cPath}.name`));
      if (!COLUMN_TYPES.includes(String(c['type']))) errors.push(fieldErrors.notSupported(`${cPath}.type`, c['type'], COLUMN_TYPES));
      const jsonPath = c['jsonPath'];
      if (typeof jsonPath !== 'string' || jsonPath === '') errors.push(fieldErrors.required(`${cPath}.jsonPath`));
      else {
        try {
          parseJsonPath(jsonPath);
        } catch {
          errors.push(fieldErrors.invalid(`${cPath}.jsonPath`, jsonPath, 'must be a simple json path starting with .'));
        }
      }
    });
  });
  if (old !== undefined && isObject(old['spec'])) {
    const oldSpec = old['spec'] as JsonObject;
    if (oldSpec['scope'] !== spec['scope']) errors.push(fieldErrors.immutable('spec.scope', spec['scope']));
    if (oldSpec['group'] !== spec['group']) errors.push(fieldErrors.immutable('spec.group', spec['group']));
  }
  return errors;
}

export function crdResourceType(): ResourceType {
  return {
    group: 'apiextensions.k8s.io', version: 'v1', resource: 'customresourcedefinitions', singular: 'customresourcedefinition',
    kind: 'CustomResourceDefinition', listKind: 'CustomResourceDefinitionList', namespaced: false,
    shortNames: ['crd', 'crds'], categories: ['api-extensions'],
    storageKey: CRD_STORAGE_KEY, storageVersion: 'apiextensions.k8s.io/v1',
    statusSubresource: true, extraSubresources: [], generation: 'spec', allowCreateOnUpdate: false,
    finalizersOnDelete: [CRD_CLEANUP_FINALIZER],
    fieldLabels: {},
    patchMeta: new Map([
      ['metadata.finalizers', { strategy: 'merge' }],
      ['metadata.ownerReferences', { strategy: 'merge', mergeKey: 'uid' }],
    ]),
    printerColumns: [
      { name: 'Created At', type: 'string', format: 'date', compute: (o) => o.metadata.creationTimestamp },
    ],
    omitAgeColumn: true,
    prepareForCreate(obj) {
      obj['status'] = { conditions: [], acceptedNames: { plural: '', kind: '' }, storedVersions: [] };
      defaultCrd(obj);
    },
    prepareForUpdate(obj) {
      defaultCrd(obj);
    },
    validate: validateCrd,
  };
}

function defaultCrd(obj: KubeObject): void {
  const spec = obj['spec'];
  if (!isObject(spec)) return;
  const names = spec['names'];
  if (isObject(names) && typeof names['kind'] === 'string') {
    names['singular'] ??= names['kind'].toLowerCase();
    names['listKind'] ??= `${names['kind']}List`;
  }
  spec['conversion'] ??= { strategy: 'None' };
  for (const v of Array.isArray(spec['versions']) ? spec['versions'] : []) {
    if (!isObject(v)) continue;
    v['served'] ??= true;
    v['storage'] ??= false;
  }
}

/** Builds the served resource type of one CRD version. */
function customResourceType(crd: KubeObject, version: CrdVersion, terminating: boolean): ResourceType {
  const spec = crdSpec(crd);
  const storageVersion = spec.versions.find((v) => v.storage)?.name ?? version.name;
  const gv = `${spec.group}/${version.name}`;
  const storageGv = `${spec.group}/${storageVersion}`;
  const rootSchema = version.schema?.openAPIV3Schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
  const compiled = CompiledSchema.compile(rootSchema, '').schema;
  const statusSubresource = version.subresources?.status !== undefined;
  const printerColumns: PrinterColumn[] = (version.additionalPrinterColumns ?? []).map((c) => {
    const column: PrinterColumn = { name: c.name, type: c.type as PrinterColumn['type'], jsonPath: c.jsonPath, priority: c.priority ?? 0 };
    if (c.format !== undefined) column.format = c.format;
    if (c.description !== undefined) column.description = c.description;
    return column;
  });
  const fieldLabels: ResourceType['fieldLabels'] = {};
  for (const field of version.selectableFields ?? []) {
    const label = field.jsonPath.replace(/^\./, '');
    fieldLabels[label] = (o) => {
      const v = getPath(o, label);
      return v === undefined || v === null ? undefined : String(v);
    };
  }
  const rt: ResourceType = {
    group: spec.group,
    version: version.name,
    resource: spec.names.plural,
    singular: spec.names.singular ?? spec.names.kind.toLowerCase(),
    kind: spec.names.kind,
    listKind: spec.names.listKind ?? `${spec.names.kind}List`,
    namespaced: spec.scope === 'Namespaced',
    shortNames: spec.names.shortNames ?? [],
    categories: spec.names.categories ?? [],
    storageKey: `${spec.group}/${spec.names.plural}`,
    storageVersion: storageGv,
    statusSubresource,
    extraSubresources: [],
    generation: 'non-metadata',
    allowCreateOnUpdate: false,
    fieldLabels,
    // Strategic merge patch needs Go struct tags; custom resources have none (415, as real).
    patchMeta: undefined,
    printerColumns,
    crdName: crd.metadata.name ?? '',
    openAPISchema: rootSchema,
    admitSchema(obj, old, errors) {
      const unknown: string[] = [];
      const pruned = prune(obj, rootSchema, '', unknown, true) as JsonObject;
      const defaulted = applyDefaults(pruned, rootSchema) as JsonObject;
      for (const key of Object.keys(obj)) if (!(key in defaulted)) delete obj[key];
      Object.assign(obj, defaulted);
      // The schema describes the served version's shape; apiVersion differs only by name.
      const view = { ...obj, apiVersion: gv };
      const oldView = old === undefined ? undefined : { ...old, apiVersion: gv };
      errors.push(...validateValue(compiled, view, oldView, '').filter((e) => !e.field.startsWith('metadata') && e.field !== 'apiVersion' && e.field !== 'kind'));
      return unknown;
    },
  };
  if (terminating) {
    rt.prepareForCreate = () => {
      throw new ApiError(405, 'MethodNotAllowed', 'create not allowed while custom resource definition is terminating');
    };
  }
  if (gv !== storageGv) {
    // Conversion strategy None: versions differ only in apiVersion.
    rt.toExternal = (stored) => ({ ...stored, apiVersion: gv });
  }
  return rt;
}

/** Serves CRDs' resources and finalizes deleted CRDs. */
export class CrdController {
  private readonly store: Store;
  private readonly catalog: ResourceCatalog;
  private readonly rest: RestStorage;
  private readonly watches: WatchHub;
  private readonly log: Logger;
  private readonly crdType: ResourceType;
  private readonly cleanupWaiters = new Map<string, () => void>();
  private unsubscribe: (() => void) | undefined;

  constructor(store: Store, catalog: ResourceCatalog, rest: RestStorage, watches: WatchHub, crdType: ResourceType, log: Logger) {
    this.store = store;
    this.catalog = catalog;
    this.rest = rest;
    this.watches = watches;
    this.crdType = crdType;
    this.log = log;
  }

  start(): void {
    this.unsubscribe = this.store.subscribe(CRD_STORAGE_KEY, (e) => this.onCrdEvent(e));
  }

  stop(): void {
    this.unsubscribe?.();
    for (const stop of this.cleanupWaiters.values()) stop();
    this.cleanupWaiters.clear();
  }

  private onCrdEvent(event: StoredEvent): void {
    const crd = event.object;
    const spec = crdSpec(crd);
    if (event.type === 'DELETED') {
      this.catalog.replaceVersions(spec.group, spec.names.plural, []);
      const storageKey = `${spec.group}/${spec.names.plural}`;
      this.watches.closeStorage(storageKey);
      if (this.store.size(storageKey) === 0) this.store.dropTable(storageKey);
      this.cleanupWaiters.get(crd.metadata.name ?? '')?.();
      return;
    }
    const terminating = crd.metadata.deletionTimestamp !== undefined;
    // Serving starts synchronously so a client may create instances right after the CRD;
    // the Established condition follows asynchronously, as from the real controllers.
    const types = spec.versions.filter((v) => v.served).map((v) => customResourceType(crd, v, terminating));
    this.catalog.replaceVersions(spec.group, spec.names.plural, types);
    setImmediate(() => this.reconcileStatus(crd.metadata.name ?? ''));
    if (terminating) this.beginCleanup(crd);
  }

  private reconcileStatus(name: string): void {
    const crd = this.store.get(CRD_STORAGE_KEY, name);
    if (crd === undefined) return;
    const spec = crdSpec(crd);
    const status = isObject(crd['status']) ? clone(crd['status'] as JsonObject) : {};
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const conditions = (Array.isArray(status['conditions']) ? status['conditions'] : []) as JsonObject[];
    const setCondition = (type: string, value: string, reason: string, message: string): void => {
      const existing = conditions.find((c) => c['type'] === type);
      if (existing !== undefined) {
        if (existing['status'] !== value) existing['lastTransitionTime'] = now;
        Object.assign(existing, { status: value, reason, message });
      } else {
        conditions.push({ type, status: value, lastTransitionTime: now, reason, message });
      }
    };
    setCondition('NamesAccepted', 'True', 'NoConflicts', 'no conflicts found');
    setCondition('Established', 'True', 'InitialNamesAccepted', 'the initial names have been accepted');
    if (crd.metadata.deletionTimestamp !== undefined) {
      setCondition('Terminating', 'True', 'InstanceDeletionInProgress', 'CustomResource deletion is in progress');
    }
    status['conditions'] = conditions;
    const names = spec.names;
    status['acceptedNames'] = {
      plural: names.plural, singular: names.singular ?? names.kind.toLowerCase(), kind: names.kind,
      listKind: names.listKind ?? `${names.kind}List`,
      ...(names.shortNames ? { shortNames: names.shortNames } : {}),
      ...(names.categories ? { categories: names.categories } : {}),
    };
    const stored = Array.isArray(status['storedVersions']) ? [...(status['storedVersions'] as string[])] : [];
    const storageVersion = spec.versions.find((v) => v.storage)?.name;
    if (storageVersion !== undefined && !stored.includes(storageVersion)) stored.push(storageVersion);
    status['storedVersions'] = stored;
    if (deepEqual(status, crd['status'])) return;
    try {
      this.rest.update(this.crdType, undefined, name, { ...crd, status }, DEFAULT_WRITE_OPTIONS, 'status');
    } catch (err) {
      // A concurrent write moved the CRD on; its own event schedules another reconcile.
      if (!(err instanceof ApiError && (err.code === 409 || err.code === 404))) throw err;
    }
  }

  /** Deletes every instance, then drops the cleanup finalizer once the table is empty. */
  private beginCleanup(crd: KubeObject): void {
    const name = crd.metadata.name ?? '';
    if (this.cleanupWaiters.has(name)) return;
    const spec = crdSpec(crd);
    const storageKey = `${spec.group}/${spec.names.plural}`;
    const rt = this.catalog.byStorageKey(storageKey);
    const finish = (): void => {
      if (this.store.size(storageKey) > 0) return;
      const current = this.store.get(CRD_STORAGE_KEY, name);
      if (current === undefined || !(current.metadata.finalizers ?? []).includes(CRD_CLEANUP_FINALIZER)) return;
      stopWatching();
      this.cleanupWaiters.delete(name);
      const next = clone(current);
      next.metadata.finalizers = (next.metadata.finalizers ?? []).filter((f) => f !== CRD_CLEANUP_FINALIZER);
      this.rest.update(this.crdType, undefined, name, next, DEFAULT_WRITE_OPTIONS);
    };
    const stopWatching = this.store.subscribe(storageKey, () => setImmediate(finish));
    this.cleanupWaiters.set(name, stopWatching);
    setImmediate(() => {
      if (rt !== undefined) {
        for (const obj of this.store.list(storageKey)) {
          if (obj.metadata.deletionTimestamp !== undefined) continue;
          try {
            this.rest.delete(rt, obj.metadata.namespace, obj.metadata.name ?? '', {});
          } catch (err) {
            if (!(err instanceof ApiError && err.code === 404)) this.log.warn({ err }, 'crd cleanup: delete failed');
          }
        }
      }
      finish();
    });
  }
}

