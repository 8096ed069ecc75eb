// The CRDs are generated from the zod schemas (src/shared/api/crd-generate.ts): the
// committed files must be what the generator writes now, so that a schema edited without
// `npm run gen:crds` fails here; and the conversion itself, table by table.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { CrdSchemaError, doc, toCrd, toCrdYaml, toOpenApi, unescapeSlashes } from '../../../src/shared/api/crd-generate.ts';
import type { CrdSkeleton } from '../../../src/shared/api/crd-generate.ts';
import { CRD_DIRS, crdFiles } from '../../../src/shared/api/crds.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

describe('committed CRDs', () => {
  const files = crdFiles();
  for (const dir of CRD_DIRS) {
    it(`${dir}/ is what the generator writes (else: npm run gen:crds)`, () => {
      assert.deepEqual(readdirSync(join(ROOT, dir)).filter((f) => f.endsWith('.yaml')).sort(), [...files.keys()].sort());
      for (const [name, text] of files) assert.equal(readFileSync(join(ROOT, dir, name), 'utf8'), text, `${dir}/${name} is stale: run npm run gen:crds`);
    });
  }
});

describe('toOpenApi: zod → structural OpenAPI', () => {
  const cases: { name: string; schema: z.ZodType; expected: Record<string, unknown> }[] = [
    {
      name: 'an object: required lists what is neither optional nor defaulted; no additionalProperties',
      schema: z.object({ a: z.string().max(3), b: z.int().min(0).max(9).optional(), c: z.boolean().default(true) }),
      expected: {
        type: 'object',
        required: ['a'],
        properties: { a: { type: 'string', maxLength: 3 }, b: { type: 'integer', minimum: 0, maximum: 9 }, c: { type: 'boolean', default: true } },
      },
    },
    {
      name: 'meta carries description, CEL rules and list type, written in a fixed key order',
      schema: z.array(z.enum(['TCP', 'UDP'])).max(2).meta({
        'x-kubernetes-list-type': 'set', description: 'The protocols.', 'x-kubernetes-validations': [{ rule: 'size(self) > 0', message: 'empty' }],
      }),
      expected: {
        description: 'The protocols.', type: 'array', maxItems: 2,
        'x-kubernetes-validations': [{ rule: 'size(self) > 0', message: 'empty' }], 'x-kubernetes-list-type': 'set',
        items: { type: 'string', enum: ['TCP', 'UDP'] },
      },
    },
    {
      name: 'meta on the wrapped schema and on the wrapper both count (the wrapper wins a clash)',
      schema: z.string().max(5).meta({ format: 'date-time', description: 'inner' }).optional().meta({ description: 'outer' }),
      expected: { description: 'outer', type: 'string', format: 'date-time', maxLength: 5 },
    },
    {
      name: 'a record keeps its value schema and drops its key schema (propertyNames)',
      schema: z.record(z.string(), z.string().max(63)).meta({ maxProperties: 4, 'x-kubernetes-map-type': 'granular' }),
      expected: { type: 'object', maxProperties: 4, 'x-kubernetes-map-type': 'granular', additionalProperties: { type: 'string', maxLength: 63 } },
    },
    {
      name: 'a regex pattern without the "\\/" a regex literal needs',
      schema: z.string().max(9).regex(new RegExp('^a/b$')),
      expected: { type: 'string', maxLength: 9, pattern: '^a/b$' },
    },
    {
      name: 'refinements are zod-only: the meta states their CRD form',
      schema: z.string().refine((s) => s.length < 4).meta({ maxLength: 3 }),
      expected: { type: 'string', maxLength: 3 },
    },
    {
      name: 'nullable (openapi-3.0)',
      schema: z.string().max(3).nullable(),
      expected: { type: 'string', nullable: true, maxLength: 3 },
    },
    {
      name: 'int or string: x-kubernetes-int-or-string, not anyOf',
      schema: z.union([z.int(), z.string()]).meta({ description: 'A port number or name.' }),
      expected: { description: 'A port number or name.', 'x-kubernetes-int-or-string': true },
    },
    {
      name: 'a literal: an enum of one',
      schema: z.literal('fulcrum.dev/v1alpha1'),
      expected: { type: 'string', enum: ['fulcrum.dev/v1alpha1'] },
    },
    {
      name: 'a defaulted list keeps its default',
      schema: z.array(z.string().max(1)).max(3).default([]),
      expected: { type: 'array', default: [], maxItems: 3, items: { type: 'string', maxLength: 1 } },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const out = toOpenApi(c.schema);
      assert.deepEqual(out, c.expected);
      assert.deepEqual(Object.keys(out), Object.keys(c.expected), 'key order');
    });
  }

  const refused: { name: string; schema: z.ZodType; message: RegExp }[] = [
    { name: 'a union', schema: z.object({ u: z.union([z.string(), z.boolean()]) }), message: /\.u: anyOf has no place/ },
    { name: 'an untyped node', schema: z.object({ x: z.any() }), message: /\.x: no type/ },
    { name: 'a loose object (unknown fields kept)', schema: z.looseObject({ a: z.string() }), message: /^\{\}: no type/ },
    { name: 'a key no CRD has', schema: z.string().meta({ examples: ['a'] }), message: /examples is not a key/ },
    { name: 'what JSON has no type for', schema: z.object({ when: z.date() }), message: /Date cannot be represented/ },
  ];
  for (const c of refused) {
    it(`refuses ${c.name}`, () => {
      assert.throws(() => toOpenApi(c.schema), (e: unknown) => (e instanceof CrdSchemaError || e instanceof Error) && c.message.test((e as Error).message));
    });
  }
});

describe('helpers', () => {
  it('doc joins lines into one, single-spaced', () => {
    assert.equal(doc`One
      two,   three.
    `, 'One two, three.');
  });
  for (const [input, expected] of [['^a\\/b$', '^a/b$'], ['\\\\/', '\\\\/'], ['\\.\\/\\d', '\\./\\d'], ['a/b', 'a/b']] as const) {
    it(`unescapeSlashes(${JSON.stringify(input)}) = ${JSON.stringify(expected)}`, () => assert.equal(unescapeSlashes(input), expected));
  }
});

describe('toCrd and toCrdYaml', () => {
  const kind: CrdSkeleton = {
    group: 'example.dev', version: 'v1', kind: 'Widget', plural: 'widgets', singular: 'widget', shortNames: ['wd'], categories: ['all'],
    scope: 'Namespaced', source: 'test/widget.ts', description: 'A widget.',
    spec: z.object({ size: z.int().min(1).max(3).meta({ description: 'How big.' }) }).meta({ description: 'What it is.' }),
    status: z.object({ ready: z.boolean().optional().meta({ description: 'Whether it is.' }) }).meta({ description: 'How it is.' }),
    printerColumns: [{ name: 'Size', type: 'integer', jsonPath: '.spec.size', description: 'How big.' }, { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }],
  };

  it('builds the CRD around the schemas: names, scope, status subresource, printer columns', () => {
    assert.deepEqual(toCrd(kind), {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.example.dev', labels: { 'app.kubernetes.io/name': 'fulcrum', 'app.kubernetes.io/component': 'crd' } },
      spec: {
        group: 'example.dev',
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList', shortNames: ['wd'], categories: ['all'] },
        versions: [{
          name: 'v1', served: true, storage: true, subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Size', type: 'integer', description: 'How big.', jsonPath: '.spec.size' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              description: 'A widget.',
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { description: 'APIVersion defines the versioned schema of this representation of an object.', type: 'string' },
                kind: { description: 'Kind is a string value representing the REST resource this object represents.', type: 'string' },
                spec: { description: 'What it is.', type: 'object', required: ['size'], properties: { size: { description: 'How big.', type: 'integer', minimum: 1, maximum: 3 } } },
                status: { description: 'How it is.', type: 'object', properties: { ready: { description: 'Whether it is.', type: 'boolean' } } },
              },
            },
          },
        }],
      },
    });
  });

  it('writes YAML that parses back to the CRD, under a header that says it is generated and how', () => {
    const text = toCrdYaml(kind);
    assert.match(text, /^# Widget: GENERATED from test\/widget\.ts\n# by `npm run gen:crds`/);
    assert.deepEqual(parse(text), toCrd(kind));
  });

  it('folds long prose and CEL, keeps each regex on one quoted line', () => {
    const long = { ...kind, description: 'word '.repeat(40).trim(), spec: z.object({ p: z.string().max(300).regex(new RegExp(`^(${'a|'.repeat(60)}b)$`)) }) };
    const text = toCrdYaml(long);
    assert.match(text, /description: >-\n/);
    assert.match(text, /pattern: '\^\(a\|a\|.*b\)\$'\n/);
    assert.deepEqual(parse(text), toCrd(long));
  });
});
