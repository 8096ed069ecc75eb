// zod schema → CustomResourceDefinition: the one place the API is written is the zod
// schemas of src/shared/api/; crds/*.yaml (and the chart's copy) are generated from them
// by `npm run gen:crds` (scripts/gen-crds.ts), and test/shared/api/crd-generate.test.ts
// fails when a committed file differs from what this module writes.
//
// What zod cannot say about a field (its description, CEL rules, list and map types, an
// OpenAPI format, a bound that zod checks with a refinement because kube-openapi counts
// differently) the schema carries in `.meta({...})`, spelt as in the CRD; z.toJSONSchema()
// copies it into its output. Refinements (.refine, .superRefine) are zod-only: each must
// have its CRD counterpart in the same schema's meta (a CEL rule, a list type, maxLength).
//
// Pure: no I/O. The output is a structural schema as the API server requires it: no $ref,
// no combinators (anyOf, oneOf, allOf, not), a type on every node, no
// additionalProperties next to properties.
import { Document, isScalar, visit } from 'yaml';
import { z } from 'zod';

/** One CEL rule of x-kubernetes-validations. Keep each O(1) in the API server's cost estimate. */
export type CelRule = { readonly rule: string; readonly message: string };

declare module 'zod' {
  interface GlobalMeta {
    'x-kubernetes-validations'?: readonly CelRule[];
    'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
    'x-kubernetes-list-map-keys'?: readonly string[];
    'x-kubernetes-map-type'?: 'atomic' | 'granular';
    /** An OpenAPI format the API server checks (date-time) or documents (int32, int64). */
    format?: string;
    /** Bounds that zod checks with a refinement (kube-openapi counts code points). */
    maxLength?: number;
    minLength?: number;
    maxProperties?: number;
  }
}

/** Text written over several source lines, as one line (what YAML's folded `>-` gives). */
export function doc(strings: TemplateStringsArray, ...values: readonly unknown[]): string {
  return String.raw({ raw: strings }, ...values).replace(/\s+/g, ' ').trim();
}

export type OpenApiSchema = { [key: string]: unknown };

export type PrinterColumn = {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  readonly jsonPath: string;
  readonly description?: string;
  readonly priority?: number;
};

/** What a kind's CRD says besides its schema. */
export type CrdSkeleton = {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  readonly scope: 'Namespaced' | 'Cluster';
  readonly printerColumns: readonly PrinterColumn[];
  /** The kind's description (the schema root's). */
  readonly description: string;
  readonly spec: z.ZodType;
  readonly status: z.ZodType;
  /** The source file of the schemas, for the generated file's header. */
  readonly source: string;
};

/** The keys a node of the generated schema may have, in the order they are written. */
const KEY_ORDER = [
  'description', 'type', 'format', 'enum', 'default', 'nullable', 'x-kubernetes-int-or-string',
  'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'minItems', 'maxItems', 'maxProperties',
  'required', 'x-kubernetes-validations', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type', 'properties', 'additionalProperties', 'items',
] as const;
const KNOWN = new Set<string>(KEY_ORDER);
const FORBIDDEN = ['$ref', 'anyOf', 'oneOf', 'allOf', 'not', 'const', 'exclusiveMinimum', 'exclusiveMaximum'];

export class CrdSchemaError extends Error {
  override readonly name = 'CrdSchemaError';
}

/**
 * A zod schema as the structural OpenAPI v3 schema of a CRD: the input side (what a
 * client may send: defaulted fields optional, defaults kept), with zod's JSON Schema
 * extras removed and the keys in a fixed order. Throws CrdSchemaError on what a CRD
 * cannot hold (unions, refs, an unrepresentable type, an untyped node, an unknown key).
 */
export function toOpenApi(schema: z.ZodType): OpenApiSchema {
  const json = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw', reused: 'inline', cycles: 'throw' }) as OpenApiSchema;
  delete json['$schema'];
  if (json['$defs'] !== undefined || json['definitions'] !== undefined) throw new CrdSchemaError('the schema has shared definitions ($defs): a CRD cannot refer to them');
  return structural(json, '');
}

function structural(node: OpenApiSchema, path: string): OpenApiSchema {
  const where = path === '' ? '(root)' : path;
  let intOrString = false;
  if (isIntOrString(node)) {
    // z.union([z.int(), z.string()]): the one union Kubernetes has, spelt its way (IntOrString).
    const { anyOf: _, ...rest } = node;
    node = { ...rest, 'x-kubernetes-int-or-string': true };
    intOrString = true;
  }
  for (const key of FORBIDDEN) if (key in node) throw new CrdSchemaError(`${where}: ${key} has no place in a structural CRD schema`);
  if (!intOrString && typeof node['type'] !== 'string') throw new CrdSchemaError(`${where}: no type (a structural schema types every node)`);
  const out: OpenApiSchema = {};
  for (const key of Object.keys(node)) {
    if (!KNOWN.has(key) && key !== 'propertyNames') throw new CrdSchemaError(`${where}: ${key} is not a key this generator writes`);
  }
  for (const key of KEY_ORDER) {
    const value = node[key];
    if (value === undefined) continue;
    if (key === 'properties') {
      const props: OpenApiSchema = {};
      for (const [name, child] of Object.entries(value as Record<string, OpenApiSchema>)) props[name] = structural(child, `${path}.${name}`);
      out[key] = props;
    } else if (key === 'items') {
      out[key] = structural(value as OpenApiSchema, `${path}[]`);
    } else if (key === 'additionalProperties') {
      // z.object() says false (unknown fields are dropped, as the API server prunes them);
      // a structural schema may not say it. A record's value schema stays.
      if (typeof value === 'object') out[key] = structural(value as OpenApiSchema, `${path}{}`);
    } else if (key === 'required') {
      if ((value as unknown[]).length > 0) out[key] = value;
    } else if (key === 'pattern') {
      out[key] = unescapeSlashes(value as string);
    } else {
      out[key] = value;
    }
  }
  // propertyNames (a record's key schema) is dropped: OpenAPI v3 in a CRD has no such key.
  return out;
}

function isIntOrString(node: OpenApiSchema): boolean {
  const branches = node['anyOf'];
  if (!Array.isArray(branches) || branches.length !== 2 || node['type'] !== undefined) return false;
  const types = (branches as OpenApiSchema[]).map((b) => String(b['type'])).sort();
  return types[0] === 'integer' && types[1] === 'string';
}

/**
 * RegExp.prototype.source writes "/" as "\\/" (for a regex literal); a CRD's pattern is
 * RE2 text where "/" needs no escape, so it is written as the schema's author wrote it.
 */
export function unescapeSlashes(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[i + 1]!;
      out += next === '/' ? '/' : c + next;
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

const CRD_LABELS = { 'app.kubernetes.io/name': 'fulcrum', 'app.kubernetes.io/component': 'crd' } as const;

/** The CustomResourceDefinition of one kind, as an object. */
export function toCrd(kind: CrdSkeleton): OpenApiSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${kind.plural}.${kind.group}`, labels: { ...CRD_LABELS } },
    spec: {
      group: kind.group,
      scope: kind.scope,
      names: {
        plural: kind.plural,
        singular: kind.singular,
        kind: kind.kind,
        listKind: `${kind.kind}List`,
        shortNames: [...kind.shortNames],
        categories: [...kind.categories],
      },
      versions: [{
        name: kind.version,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: kind.printerColumns.map((c) => ({
          name: c.name,
          type: c.type,
          ...(c.priority !== undefined ? { priority: c.priority } : {}),
          ...(c.description !== undefined ? { description: c.description } : {}),
          jsonPath: c.jsonPath,
        })),
        schema: {
          openAPIV3Schema: {
            description: kind.description,
            type: 'object',
            required: ['spec'],
            properties: {
              apiVersion: { description: 'APIVersion defines the versioned schema of this representation of an object.', type: 'string' },
              kind: { description: 'Kind is a string value representing the REST resource this object represents.', type: 'string' },
              spec: toOpenApi(kind.spec),
              status: toOpenApi(kind.status),
            },
          },
        },
      }],
    },
  };
}

/** The file crds/<plural>.<group>.yaml: a header naming its source, then the CRD. */
export function toCrdYaml(kind: CrdSkeleton): string {
  const document = new Document(toCrd(kind));
  document.commentBefore = [
    ` ${kind.kind}: GENERATED from ${kind.source}`,
    ' by `npm run gen:crds` (scripts/gen-crds.ts). Do not edit: change the zod schema and',
    ' regenerate; test/shared/api/crd-generate.test.ts fails when this file differs from what',
    ' the generator writes.',
  ].join('\n');
  visit(document, {
    // Short lists of scalars on one line: [TCP, UDP].
    Seq(_, node) {
      if (node.items.length > 0 && node.items.every((item) => isScalar(item) && String(item.value).length < 40)) node.flow = true;
    },
    Pair(_, pair) {
      if (!isScalar(pair.key) || !isScalar(pair.value) || typeof pair.value.value !== 'string') return;
      const key = String(pair.key.value);
      // Regular expressions quoted, so no character of theirs reads as YAML.
      if (key === 'pattern') pair.value.type = 'QUOTE_SINGLE';
      // Long prose and CEL folded (>-): a reader sees lines, the API server one string.
      else if (LONG_TEXT.has(key) && pair.value.value.length > 80) pair.value.type = 'BLOCK_FOLDED';
    },
  });
  return document.toString({ lineWidth: 100, minContentWidth: 40, flowCollectionPadding: false });
}

const LONG_TEXT = new Set(['description', 'rule', 'message']);

/** The file name of a kind's CRD in crds/ and charts/fulcrum/files/crds/. */
export function crdFileName(kind: Pick<CrdSkeleton, 'plural' | 'group'>): string {
  return `${kind.plural}.${kind.group}.yaml`;
}
