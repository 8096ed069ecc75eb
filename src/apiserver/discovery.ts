// Discovery documents (/version, /api, /apis, APIResourceLists) and the OpenAPI v3 documents
// kubectl reads. The OpenAPI documents are deliberately small: paths with their
// x-kubernetes-group-version-kind and the fieldValidation parameter (which tells kubectl to
// rely on server-side field validation instead of downloading schemas), and component
// schemas for custom resources. Built-in PATCH operations do not advertise strategic merge
// in OpenAPI, so kubectl apply computes strategic patches from its compiled-in types, exactly
// as it does against an apiserver whose OpenAPI lacks the type.

import { createHash } from 'node:crypto';
import type { ResourceCatalog } from './resources.ts';
import type { JsonObject, ResourceType } from './types.ts';
import { groupVersion } from './types.ts';

export const KUBERNETES_VERSION = { major: '1', minor: '33', gitVersion: 'v1.33.0-fulcrum' };

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const SUBRESOURCE_VERBS = ['get', 'patch', 'update'];

/** Kube-aware version ordering: GA before beta before alpha, higher numbers first. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): [number, number, number] | undefined => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return undefined;
    const stability = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stability, Number(m[1]), Number(m[3] ?? 0)];
  };
  const pa = parse(a);
  const pb = parse(b);
  if (pa && pb) {
    for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pb[i] ?? 0) - (pa[i] ?? 0);
    return 0;
  }
  if (pa) return -1;
  if (pb) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function versionInfo(): JsonObject {
  return {
    major: KUBERNETES_VERSION.major,
    minor: KUBERNETES_VERSION.minor,
    emulationMajor: KUBERNETES_VERSION.major,
    emulationMinor: KUBERNETES_VERSION.minor,
    gitVersion: KUBERNETES_VERSION.gitVersion,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2025-04-23T00:00:00Z',
    goVersion: 'go1.24.2',
    compiler: 'gc',
    platform: 'linux/amd64',
  };
}

export class Discovery {
  private readonly catalog: ResourceCatalog;
  private readonly cache = new Map<string, { generation: number; body: JsonObject }>();

  constructor(catalog: ResourceCatalog) {
    this.catalog = catalog;
  }

  private cached(key: string, build: () => JsonObject): JsonObject {
    const hit = this.cache.get(key);
    if (hit !== undefined && hit.generation === this.catalog.generation) return hit.body;
    const body = build();
    this.cache.set(key, { generation: this.catalog.generation, body });
    return body;
  }

  coreVersions(serverAddress: string): JsonObject {
    return {
      kind: 'APIVersions',
      versions: ['v1'],
      serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
    };
  }

  private groupEntry(name: string, versions: string[]): JsonObject {
    const sorted = [...versions].sort(compareVersions);
    const entries = sorted.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
    return { name, versions: entries, preferredVersion: entries[0] };
  }

  groupList(): JsonObject {
    return this.cached('groups', () => {
      const groups = [...this.catalog.groups()].filter(([name]) => name !== '');
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map(([name, versions]) => this.groupEntry(name, versions)) };
    });
  }

  group(name: string): JsonObject | undefined {
    const versions = this.catalog.groups().get(name);
    if (name === '' || versions === undefined) return undefined;
    return { kind: 'APIGroup', apiVersion: 'v1', ...this.groupEntry(name, versions) };
  }

  resourceList(group: string, version: string): JsonObject | undefined {
    const types = this.catalog.inGroupVersion(group, version);
    if (types.length === 0) return undefined;
    return this.cached(`resources:${group}/${version}`, () => {
      const resources: JsonObject[] = [];
      for (const rt of types) {
        const entry: JsonObject = {
          name: rt.resource,
          singularName: rt.singular,
          namespaced: rt.namespaced,
          kind: rt.kind,
          verbs: VERBS,
          storageVersionHash: createHash('sha256').update(`${rt.storageKey}/${rt.storageVersion}`).digest('base64').slice(0, 11),
        };
        if (rt.shortNames.length > 0) entry['shortNames'] = rt.shortNames;
        if (rt.categories.length > 0) entry['categories'] = rt.categories;
        resources.push(entry);
        const subresources = [...(rt.statusSubresource ? ['status'] : []), ...rt.extraSubresources];
        for (const sub of subresources) {
          resources.push({ name: `${rt.resource}/${sub}`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: sub === 'finalize' ? ['update'] : SUBRESOURCE_VERBS });
        }
      }
      return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: groupVersion(group, version), resources };
    });
  }

  // ------------------------------------------------------------ OpenAPI v3

  private gvPath(group: string, version: string): string {
    return group === '' ? `api/${version}` : `apis/${group}/${version}`;
  }

  openAPIRoot(): JsonObject {
    return this.cached('openapi-root', () => {
      const paths: Record<string, JsonObject> = {};
      for (const [group, versions] of this.catalog.groups()) {
        for (const version of versions) {
          const path = this.gvPath(group, version);
          const doc = this.openAPIGroupVersion(group, version);
          const hash = createHash('sha512').update(JSON.stringify(doc)).digest('hex').slice(0, 64).toUpperCase();
          paths[path] = { serverRelativeURL: `/openapi/v3/${path}?hash=${hash}` };
        }
      }
      return { paths };
    });
  }

  openAPIGroupVersion(group: string, version: string): JsonObject | undefined {
    const types = this.catalog.inGroupVersion(group, version);
    if (types.length === 0) return undefined;
    return this.cached(`openapi:${group}/${version}`, () => {
      const paths: Record<string, JsonObject> = {};
      const schemas: Record<string, JsonObject> = {};
      for (const rt of types) {
        const gvk = { group: rt.group, version: rt.version, kind: rt.kind };
        const schemaName = schemaNameOf(rt);
        schemas[schemaName] = {
          ...(rt.openAPISchema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }),
          'x-kubernetes-group-version-kind': [gvk],
        };
        const ref = { $ref: `#/components/schemas/${schemaName}` };
        const base = `/${this.gvPath(group, version)}${rt.namespaced ? '/namespaces/{namespace}' : ''}/${rt.resource}`;
        paths[base] = {
          get: operation('list', rt, gvk, ref, []),
          post: operation('create', rt, gvk, ref, ['dryRun', 'fieldManager', 'fieldValidation']),
          delete: operation('deletecollection', rt, gvk, ref, ['dryRun']),
        };
        const itemOps = (verbSuffix: string): JsonObject => ({
          get: operation(`read${verbSuffix}`, rt, gvk, ref, []),
          put: operation(`replace${verbSuffix}`, rt, gvk, ref, ['dryRun', 'fieldManager', 'fieldValidation']),
          patch: patchOperation(`patch${verbSuffix}`, rt, gvk, ref),
          ...(verbSuffix === '' ? { delete: operation('delete', rt, gvk, ref, ['dryRun']) } : {}),
        });
        paths[`${base}/{name}`] = itemOps('');
        if (rt.statusSubresource) paths[`${base}/{name}/status`] = itemOps('Status');
      }
      return {
        openapi: '3.0.0',
        info: { title: 'Kubernetes', version: KUBERNETES_VERSION.gitVersion },
        paths,
        components: { schemas },
      };
    });
  }
}

function schemaNameOf(rt: ResourceType): string {
  const group = rt.group === '' ? 'core' : rt.group.split('.').reverse().join('.');
  return `${group}.${rt.version}.${rt.kind}`;
}

function queryParameter(name: string): JsonObject {
  return { name, in: 'query', schema: { type: 'string', uniqueItems: true } };
}

function operation(action: string, rt: ResourceType, gvk: JsonObject, ref: JsonObject, params: string[]): JsonObject {
  return {
    operationId: `${action}${rt.kind}`,
    'x-kubernetes-action': action.replace(/Status$/, ''),
    'x-kubernetes-group-version-kind': gvk,
    parameters: params.map(queryParameter),
    responses: { '200': { description: 'OK', content: { 'application/json': { schema: ref } } } },
  };
}

function patchOperation(action: string, rt: ResourceType, gvk: JsonObject, ref: JsonObject): JsonObject {
  const body = { schema: { type: 'object' } };
  return {
    ...operation(action, rt, gvk, ref, ['dryRun', 'fieldManager', 'fieldValidation', 'force']),
    'x-kubernetes-action': 'patch',
    requestBody: {
      content: {
        'application/json-patch+json': body,
        'application/merge-patch+json': body,
        'application/apply-patch+yaml': body,
      },
      required: true,
    },
  };
}
