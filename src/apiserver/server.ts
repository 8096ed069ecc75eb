// HTTP front end: routes Kubernetes API paths to discovery, the REST storage and watches;
// negotiates content (JSON, YAML, Table, PartialObjectMetadata); turns every failure into a
// metav1.Status with the real status code.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import YAML from 'yaml';
import type { Discovery } from './discovery.ts';
import { versionInfo } from './discovery.ts';
import type { Faults, RequestInfo, Verb } from './faults.ts';
import { isObject } from './meta.ts';
import { PATCH_TYPES } from './patch.ts';
import { decodeProtobufObject, PROTOBUF_MEDIA_TYPE } from './protobuf.ts';
import type { ResourceCatalog } from './resources.ts';
import type { DeleteOptions, FieldValidation, RestStorage, WriteOptions } from './rest.ts';
import {
  ApiError, badRequest, expired, internalError, methodNotAllowed, notAcceptable, pathNotFound, unsupportedMediaType,
} from './status.ts';
import { buildTable } from './table.ts';
import type { IncludeObject } from './table.ts';
import type { JsonObject, KubeObject, ResourceType } from './types.ts';
import { groupVersion } from './types.ts';
import type { WatchHub } from './watch.ts';

const MAX_BODY_BYTES = 3 * 1024 * 1024; // the apiserver's request size limit

export interface HandlerDeps {
  catalog: ResourceCatalog;
  rest: RestStorage;
  watches: WatchHub;
  discovery: Discovery;
  faults: Faults;
  log: Logger;
  serverAddress(): string;
}

interface ResourceRoute {
  group: string;
  version: string;
  rt: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  legacyWatch: boolean;
}

type OutputFormat =
  | { kind: 'json' }
  | { kind: 'yaml' }
  | { kind: 'table'; apiVersion: string }
  | { kind: 'partial'; apiVersion: string };

class HttpResult {
  readonly code: number;
  readonly body: unknown;
  readonly warnings: string[];
  constructor(code: number, body: unknown, warnings: string[] = []) {
    this.code = code;
    this.body = body;
    this.warnings = warnings;
  }
}

export function createRequestHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(deps, req, res).catch((err: unknown) => {
      writeError(deps, res, err);
    });
  };
}

function writeError(deps: HandlerDeps, res: ServerResponse, err: unknown): void {
  let apiError: ApiError;
  if (err instanceof ApiError) apiError = err;
  else {
    deps.log.error({ err }, 'apiserver: unexpected error');
    apiError = internalError(err instanceof Error ? err.message : String(err));
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(apiError.code, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(apiError.status));
}

function send(res: ServerResponse, result: HttpResult, format: OutputFormat): void {
  const headers: Record<string, string | string[]> = {};
  if (result.warnings.length > 0) {
    headers['Warning'] = result.warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  }
  if (format.kind === 'yaml' && !(isObject(result.body) && result.body['kind'] === 'Status' && result.code >= 400)) {
    headers['Content-Type'] = 'application/yaml';
    res.writeHead(result.code, headers);
    res.end(YAML.stringify(result.body));
    return;
  }
  headers['Content-Type'] = 'application/json';
  res.writeHead(result.code, headers);
  res.end(JSON.stringify(result.body));
}

// ---------------------------------------------------------------- content negotiation

interface MediaRange {
  type: string;
  params: Record<string, string>;
}

function parseAccept(header: string | undefined): MediaRange[] {
  if (header === undefined || header.trim() === '') return [{ type: '*/*', params: {} }];
  return header.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((p) => p.trim());
    const parsed: Record<string, string> = {};
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq > 0) parsed[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
    }
    return { type: type.toLowerCase(), params: parsed };
  });
}

function negotiate(accept: string | undefined, allowTable: boolean): OutputFormat {
  for (const range of parseAccept(accept)) {
    const as = range.params['as'];
    if (as !== undefined) {
      const v = range.params['v'];
      if (range.params['g'] !== 'meta.k8s.io' || (v !== 'v1' && v !== 'v1beta1')) continue;
      if (as === 'Table' && allowTable) return { kind: 'table', apiVersion: `meta.k8s.io/${v}` };
      if (as === 'PartialObjectMetadata' || as === 'PartialObjectMetadataList') return { kind: 'partial', apiVersion: `meta.k8s.io/${v}` };
      continue;
    }
    if (range.type === 'application/json' || range.type === 'application/*' || range.type === '*/*') return { kind: 'json' };
    if (range.type === 'application/yaml') return { kind: 'yaml' };
  }
  throw notAcceptable('only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io');
}

// ---------------------------------------------------------------- request bodies

async function readBody(req: IncomingMessage): Promise<string> {
  return (await readRawBody(req)).toString('utf8');
}

async function readRawBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728');
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
}

function parseBody(text: string, contentType: string): unknown {
  try {
    if (contentType === 'application/yaml' || contentType === PATCH_TYPES.apply) return YAML.parse(text);
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`the body of the request was in an unknown format: ${(err as Error).message}`);
  }
}

async function readObjectBody(req: IncomingMessage): Promise<unknown> {
  const type = mediaType(req);
  if (type === PROTOBUF_MEDIA_TYPE) return decodeProtobufObject(await readRawBody(req));
  if (type !== 'application/json' && type !== 'application/yaml' && type !== '*/*') {
    throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
  }
  const text = await readBody(req);
  if (text.trim() === '') throw badRequest('the body of the request was empty');
  return parseBody(text, type);
}

// ---------------------------------------------------------------- query parameters

function writeOptions(query: URLSearchParams): WriteOptions {
  const dryRun = query.getAll('dryRun');
  for (const d of dryRun) if (d !== 'All') throw badRequest(`dryRun: Unsupported value: "${d}": supported values: "All"`);
  const fv = query.get('fieldValidation') ?? 'Warn';
  const normalized = fv.toLowerCase();
  const fieldValidation: FieldValidation = normalized === 'strict' ? 'Strict' : normalized === 'ignore' ? 'Ignore' : 'Warn';
  if (!['strict', 'warn', 'ignore', ''].includes(normalized)) {
    throw badRequest(`fieldValidation: Unsupported value: "${fv}": supported values: "Ignore", "Strict", "Warn"`);
  }
  return { dryRun: dryRun.length > 0, fieldValidation };
}

function optionalInt(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^-?\d+$/.test(raw)) throw badRequest(`${name}: invalid value "${raw}"`);
  return Number(raw);
}

function boolParam(query: URLSearchParams, name: string): boolean {
  const raw = query.get(name);
  return raw === 'true' || raw === '1';
}

// ---------------------------------------------------------------- routing

async function handle(deps: HandlerDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://apiserver');
  const segments = url.pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  const method = (req.method ?? 'GET').toUpperCase();
  deps.log.debug({ method, path: url.pathname, query: url.search }, 'request');

  if (segments[0] !== 'api' && segments[0] !== 'apis') {
    if (method !== 'GET') throw methodNotAllowed(method, 'non-resource path');
    const body = nonResource(deps, segments);
    if (typeof body === 'string') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(body);
      return;
    }
    send(res, new HttpResult(200, body), { kind: 'json' });
    return;
  }

  const route = resolveRoute(deps, segments);
  if (!('rt' in route)) {
    if (method !== 'GET') throw methodNotAllowed(method, 'discovery');
    send(res, new HttpResult(200, route.discovery), negotiate(req.headers['accept'], false));
    return;
  }
  await handleResource(deps, req, res, route, url.searchParams, method);
}

function nonResource(deps: HandlerDeps, segments: string[]): unknown {
  const path = segments.join('/');
  if (path === 'version') return versionInfo();
  if (path === 'healthz' || path === 'livez' || path === 'readyz') return 'ok';
  if (path === 'openapi/v3') return deps.discovery.openAPIRoot();
  if (segments[0] === 'openapi' && segments[1] === 'v3') {
    const rest = segments.slice(2);
    const doc = rest[0] === 'api' && rest.length === 2
      ? deps.discovery.openAPIGroupVersion('', rest[1] ?? '')
      : rest[0] === 'apis' && rest.length === 3
        ? deps.discovery.openAPIGroupVersion(rest[1] ?? '', rest[2] ?? '')
        : undefined;
    if (doc !== undefined) return doc;
  }
  throw pathNotFound();
}

function resolveRoute(deps: HandlerDeps, segments: string[]): ResourceRoute | { discovery: unknown } {
  let group: string;
  let version: string;
  let rest: string[];
  if (segments[0] === 'api') {
    if (segments.length === 1) return { discovery: deps.discovery.coreVersions(deps.serverAddress()) };
    group = '';
    version = segments[1] ?? '';
    rest = segments.slice(2);
  } else {
    if (segments.length === 1) return { discovery: deps.discovery.groupList() };
    group = segments[1] ?? '';
    if (segments.length === 2) {
      const doc = deps.discovery.group(group);
      if (doc === undefined) throw pathNotFound();
      return { discovery: doc };
    }
    version = segments[2] ?? '';
    rest = segments.slice(3);
  }
  if (rest.length === 0) {
    const list = deps.discovery.resourceList(group, version);
    if (list === undefined) throw pathNotFound();
    return { discovery: list };
  }
  let legacyWatch = false;
  if (rest[0] === 'watch') {
    legacyWatch = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && deps.catalog.get(group, version, rest[2] ?? '')?.namespaced === true) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length > 3) throw pathNotFound();
  const rt = deps.catalog.get(group, version, rest[0] ?? '');
  if (rt === undefined) throw pathNotFound();
  const name = rest[1];
  const subresource = rest[2];
  if (rt.namespaced && namespace === undefined && name !== undefined) throw pathNotFound();
  if (subresource !== undefined) {
    const known = (subresource === 'status' && rt.statusSubresource) || rt.extraSubresources.includes(subresource);
    if (!known) throw pathNotFound();
  }
  return { group, version, rt, namespace, name, subresource, legacyWatch };
}

function verbOf(method: string, route: ResourceRoute, query: URLSearchParams): Verb {
  const watch = route.legacyWatch || boolParam(query, 'watch');
  switch (method) {
    case 'GET':
      if (watch) return 'watch';
      return route.name === undefined ? 'list' : 'get';
    case 'POST':
      if (route.name === undefined) return 'create';
      break;
    case 'PUT':
      if (route.name !== undefined) return 'update';
      break;
    case 'PATCH':
      if (route.name !== undefined) return 'patch';
      break;
    case 'DELETE':
      if (route.subresource === undefined) return route.name === undefined ? 'deletecollection' : 'delete';
      break;
  }
  throw methodNotAllowed(method, route.rt.kind);
}

async function handleResource(
  deps: HandlerDeps, req: IncomingMessage, res: ServerResponse, route: ResourceRoute, query: URLSearchParams, method: string,
): Promise<void> {
  const { rt, namespace, name, subresource } = route;
  const verb = verbOf(method, route, query);
  if (subresource === 'finalize' && verb !== 'update') throw methodNotAllowed(method, `${rt.kind}/finalize`);
  const info: RequestInfo = { verb, group: rt.group, resource: rt.resource, subresource, namespace, name };
  await deps.faults.admit(info);
  const gv = groupVersion(rt.group, rt.version);

  switch (verb) {
    case 'get': {
      const format = negotiate(req.headers['accept'], true);
      const obj = deps.rest.get(rt, namespace, name!);
      send(res, new HttpResult(200, renderOne(rt, obj, format, query)), format);
      return;
    }
    case 'list': {
      const format = negotiate(req.headers['accept'], true);
      if (deps.faults.takeExpiry(info)) throw expired('The resourceVersion for the provided list is too old.');
      const result = deps.rest.list(rt, namespace, {
        labelSelector: query.get('labelSelector') ?? undefined,
        fieldSelector: query.get('fieldSelector') ?? undefined,
        limit: optionalInt(query, 'limit'),
        continueToken: query.get('continue') ?? undefined,
        resourceVersion: query.get('resourceVersion') ?? undefined,
        resourceVersionMatch: query.get('resourceVersionMatch') ?? undefined,
      });
      const listMeta: { resourceVersion: string; continue?: string; remainingItemCount?: number } = { resourceVersion: result.resourceVersion };
      if (result.continueToken !== undefined) listMeta.continue = result.continueToken;
      if (result.remainingItemCount !== undefined) listMeta.remainingItemCount = result.remainingItemCount;
      let body: unknown;
      if (format.kind === 'table') {
        body = { ...buildTable(rt, result.items, { includeObject: includeObject(query), withColumnDefinitions: !boolParam(query, 'noHeaders') }, listMeta), apiVersion: format.apiVersion };
      } else if (format.kind === 'partial') {
        body = {
          kind: 'PartialObjectMetadataList', apiVersion: format.apiVersion, metadata: listMeta,
          items: result.items.map((o) => partial(o, format.apiVersion)),
        };
      } else {
        body = { kind: rt.listKind, apiVersion: gv, metadata: listMeta, items: result.items };
      }
      send(res, new HttpResult(200, body), format);
      return;
    }
    case 'watch': {
      const format = negotiate(req.headers['accept'], true);
      let fieldSelector = query.get('fieldSelector') ?? undefined;
      if (name !== undefined) {
        // GET .../name?watch=true is the deprecated single-object watch.
        fieldSelector = [fieldSelector, `metadata.name=${name}`].filter(Boolean).join(',');
      }
      if (deps.faults.takeExpiry(info)) {
        deps.watches.serveExpired(res, `too old resource version: ${query.get('resourceVersion') ?? ''} (injected)`);
        return;
      }
      deps.watches.serve(res, {
        rt, namespace,
        labelSelector: query.get('labelSelector') ?? undefined,
        fieldSelector,
        resourceVersion: query.get('resourceVersion') ?? undefined,
        allowWatchBookmarks: boolParam(query, 'allowWatchBookmarks'),
        sendInitialEvents: boolParam(query, 'sendInitialEvents'),
        timeoutSeconds: optionalInt(query, 'timeoutSeconds'),
        table: format.kind === 'table' ? { includeObject: includeObject(query) } : undefined,
        partialMetadata: format.kind === 'partial',
      });
      return;
    }
    case 'create': {
      const format = negotiate(req.headers['accept'], false);
      const body = await readObjectBody(req);
      const result = deps.rest.create(rt, namespace, body, writeOptions(query));
      send(res, new HttpResult(201, result.object, result.warnings), format);
      return;
    }
    case 'update': {
      const format = negotiate(req.headers['accept'], false);
      const body = await readObjectBody(req);
      const existed = deps.rest.peek(rt, namespace, name!) !== undefined;
      const result = deps.rest.update(rt, namespace, name!, body, writeOptions(query), subresource);
      send(res, new HttpResult(existed ? 200 : 201, result.object, result.warnings), format);
      return;
    }
    case 'patch': {
      const format = negotiate(req.headers['accept'], false);
      const type = mediaType(req);
      if (type === PATCH_TYPES.apply || type === PATCH_TYPES.applyCbor) {
        throw unsupportedMediaType(`server-side apply (${type}) is not supported by this API server; use application/merge-patch+json, application/json-patch+json${rt.patchMeta === undefined ? '' : ' or application/strategic-merge-patch+json'}`);
      }
      if (type !== PATCH_TYPES.json && type !== PATCH_TYPES.merge && type !== PATCH_TYPES.strategic) {
        throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.json}, ${PATCH_TYPES.merge}, ${PATCH_TYPES.apply}${rt.patchMeta === undefined ? '' : `, ${PATCH_TYPES.strategic}`}`);
      }
      const text = await readBody(req);
      const patch = parseBody(text, 'application/json');
      const result = deps.rest.patch(rt, namespace, name!, type, patch, writeOptions(query), subresource);
      send(res, new HttpResult(200, result.object, result.warnings), format);
      return;
    }
    case 'delete':
    case 'deletecollection': {
      const format = negotiate(req.headers['accept'], false);
      const options = await deleteOptions(req, query);
      const dryRun = writeOptions(query).dryRun || options.dryRun;
      if (verb === 'delete') {
        const result = deps.rest.delete(rt, namespace, name!, options.options, dryRun);
        const code = !result.deleted && options.options.orphanDependents === false ? 202 : 200;
        send(res, new HttpResult(code, result.object), format);
      } else {
        const deleted = deps.rest.deleteCollection(rt, namespace, {
          labelSelector: query.get('labelSelector') ?? undefined,
          fieldSelector: query.get('fieldSelector') ?? undefined,
        }, options.options, dryRun);
        send(res, new HttpResult(200, { kind: rt.listKind, apiVersion: gv, metadata: {}, items: deleted }), format);
      }
      return;
    }
  }
}

function includeObject(query: URLSearchParams): IncludeObject {
  const raw = query.get('includeObject');
  if (raw === null || raw === '') return 'PartialObjectMetadata';
  if (raw === 'None' || raw === 'Object' || raw === 'PartialObjectMetadata') return raw;
  throw badRequest(`includeObject: Unsupported value: "${raw}": supported values: "None", "Object", "PartialObjectMetadata"`);
}

function partial(obj: KubeObject, apiVersion: string): KubeObject {
  return { kind: 'PartialObjectMetadata', apiVersion, metadata: obj.metadata };
}

function renderOne(rt: ResourceType, obj: KubeObject, format: OutputFormat, query: URLSearchParams): unknown {
  if (format.kind === 'table') {
    return { ...buildTable(rt, [obj], { includeObject: includeObject(query), withColumnDefinitions: !boolParam(query, 'noHeaders') }, { resourceVersion: obj.metadata.resourceVersion ?? '' }), apiVersion: format.apiVersion };
  }
  if (format.kind === 'partial') return partial(obj, format.apiVersion);
  return obj;
}

async function deleteOptions(req: IncomingMessage, query: URLSearchParams): Promise<{ options: DeleteOptions; dryRun: boolean }> {
  const options: DeleteOptions = {};
  const policy = query.get('propagationPolicy');
  if (policy !== null) options.propagationPolicy = policy as DeleteOptions['propagationPolicy'];
  const grace = optionalInt(query, 'gracePeriodSeconds');
  if (grace !== undefined) options.gracePeriodSeconds = grace;
  if (query.get('orphanDependents') !== null) options.orphanDependents = boolParam(query, 'orphanDependents');
  let dryRun = false;
  const text = await readBody(req);
  if (text.trim() !== '') {
    const body = parseBody(text, mediaType(req) === 'application/yaml' ? 'application/yaml' : 'application/json');
    if (isObject(body)) {
      const b = body as JsonObject;
      if (typeof b['propagationPolicy'] === 'string') options.propagationPolicy = b['propagationPolicy'] as DeleteOptions['propagationPolicy'];
      if (typeof b['gracePeriodSeconds'] === 'number') options.gracePeriodSeconds = b['gracePeriodSeconds'];
      if (typeof b['orphanDependents'] === 'boolean') options.orphanDependents = b['orphanDependents'];
      if (isObject(b['preconditions'])) {
        const p = b['preconditions'] as JsonObject;
        options.preconditions = {};
        if (typeof p['uid'] === 'string') options.preconditions.uid = p['uid'];
        if (typeof p['resourceVersion'] === 'string') options.preconditions.resourceVersion = p['resourceVersion'];
      }
      if (Array.isArray(b['dryRun']) && b['dryRun'].includes('All')) dryRun = true;
    }
  }
  return { options, dryRun };
}
