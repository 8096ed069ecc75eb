// Shared shapes of the in-process Kubernetes API server: objects, resource types and the
// hooks a resource type supplies (the equivalent of the apiserver's RESTCreateStrategy /
// RESTUpdateStrategy and TableConvertor).

export type JsonObject = Record<string, unknown>;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  managedFields?: unknown[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** One field-level validation failure, rendered like k8s.io/apimachinery field.Error. */
export interface FieldError {
  type:
    | 'FieldValueRequired'
    | 'FieldValueInvalid'
    | 'FieldValueNotSupported'
    | 'FieldValueForbidden'
    | 'FieldValueTooLong'
    | 'FieldValueTooMany'
    | 'FieldValueDuplicate'
    | 'FieldValueTypeInvalid'
    | 'FieldValueNotFound';
  field: string;
  /** The message without the leading "field: ", e.g. `Invalid value: 3: must be odd`. */
  message: string;
}

/** How metadata.generation is maintained, mirroring each real strategy. */
export type GenerationPolicy =
  | 'none'          // the real server never sets generation (Service, Pod, Node, Lease, Event, ...)
  | 'spec'          // bumped when .spec changes (CRDs; custom resources with a status subresource)
  | 'non-metadata'; // bumped when anything but metadata (and status, when it is a subresource)
                    // changes (EndpointSlice, custom resources)

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  format?: string;
  description?: string;
  priority?: number;
  /** JSONPath of a CRD additionalPrinterColumn, e.g. `.status.phase`. */
  jsonPath?: string;
  /** Built-in printers compute a cell from the whole object instead of a JSONPath. */
  compute?: (obj: KubeObject) => unknown;
}

/** Context handed to strategy hooks (allocators and clocks live on the server). */
export interface StrategyContext {
  now(): string;
  allocateClusterIP(): string;
  allocateNodePort(): number;
}

/** Strategic-merge-patch metadata for one position in an object: the `patchStrategy` and
 *  `patchMergeKey` struct tags of the Go types, keyed by a dotted path without list indices
 *  (e.g. `spec.ports`, `spec.containers.env`). */
export interface PatchMetaEntry {
  strategy: 'merge' | 'replace' | 'retainKeys';
  mergeKey?: string;
}
export type PatchMeta = ReadonlyMap<string, PatchMetaEntry>;

export interface ResourceType {
  group: string;
  version: string;
  /** Plural lower-case resource name used in URLs. */
  resource: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** Objects of every version of a resource (and aliases such as events.k8s.io events) share
   *  one storage table; this names it. */
  storageKey: string;
  /** The apiVersion objects are stored under in `storageKey`. */
  storageVersion: string;
  statusSubresource: boolean;
  /** Extra subresources served besides status (namespaces/finalize). */
  extraSubresources: string[];
  generation: GenerationPolicy;
  allowCreateOnUpdate: boolean;
  /** Finalizers the registry adds when the object is deleted (CRDs: instance cleanup). */
  finalizersOnDelete?: string[];
  /** Field selector labels beyond metadata.name / metadata.namespace. */
  fieldLabels: Record<string, (obj: KubeObject) => string | undefined>;
  /** Strategic merge patch metadata; undefined means SMP is unsupported (custom resources). */
  patchMeta: PatchMeta | undefined;
  printerColumns: PrinterColumn[];
  /** Built-in tables end with an Age column unless the real printer has none (CRDs). */
  omitAgeColumn?: boolean;
  /** Strategy hooks. Hooks mutate the object they are given. */
  prepareForCreate?(obj: KubeObject, ctx: StrategyContext): void;
  prepareForUpdate?(obj: KubeObject, old: KubeObject, ctx: StrategyContext): void;
  validate?(obj: KubeObject, old: KubeObject | undefined): FieldError[];
  /** Schema-driven processing (CRDs): prune, default, validate. Returns unknown-field paths. */
  admitSchema?(obj: KubeObject, old: KubeObject | undefined, errors: FieldError[]): string[];
  /** Conversion between this version and the storage form (undefined = same shape). */
  toExternal?(stored: KubeObject): KubeObject;
  toStorage?(external: KubeObject): KubeObject;
  /** Maps a field label of this version to the storage version's label (events.k8s.io). */
  fieldLabelToStorage?(label: string): string;
  /** For resources served from a CRD: its name; discovery and OpenAPI use it. */
  crdName?: string;
  /** OpenAPI v3 schema of the whole object, if known (CRDs). */
  openAPISchema?: JsonObject;
}

export function groupVersion(group: string, version: string): string {
  return group === '' ? version : `${group}/${version}`;
}

/** The qualified resource name used in Status messages: `services`, `fooes.example.com`. */
export function qualifiedResource(rt: Pick<ResourceType, 'group' | 'resource'>): string {
  return rt.group === '' ? rt.resource : `${rt.resource}.${rt.group}`;
}
