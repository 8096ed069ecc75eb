// metav1.Status construction. Every failure the server returns is an ApiError carrying a
// Status shaped exactly like kube-apiserver's (k8s.io/apimachinery/pkg/api/errors), because
// clients branch on `reason` and `code`, and kubectl prints `message` verbatim.

import type { FieldError, JsonObject, ResourceType } from './types.ts';

export type StatusReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Gone'
  | 'Expired'
  | 'MethodNotAllowed'
  | 'BadRequest'
  | 'Forbidden'
  | 'UnsupportedMediaType'
  | 'NotAcceptable'
  | 'InternalError'
  | 'TooManyRequests'
  | 'ServiceUnavailable'
  | 'Timeout'
  | 'RequestEntityTooLarge';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: { reason: string; message: string; field?: string }[];
  retryAfterSeconds?: number;
}

export interface StatusObject extends JsonObject {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: JsonObject;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: StatusReason;
  details?: StatusDetails;
  code: number;
}

export class ApiError extends Error {
  readonly status: StatusObject;

  constructor(code: number, reason: StatusReason, message: string, details?: StatusDetails) {
    super(message);
    this.name = 'ApiError';
    this.status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
    if (details !== undefined) this.status.details = details;
  }

  get code(): number {
    return this.status.code;
  }

  get reason(): StatusReason | undefined {
    return this.status.reason;
  }
}

export function successStatus(details: StatusDetails): StatusObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details, code: 200 };
}

type ResourceRef = Pick<ResourceType, 'group' | 'resource'>;

function qualified(rt: ResourceRef): string {
  return rt.group === '' ? rt.resource : `${rt.resource}.${rt.group}`;
}

function baseDetails(rt: ResourceRef, name: string): StatusDetails {
  const details: StatusDetails = { name, kind: rt.resource };
  if (rt.group !== '') details.group = rt.group;
  return details;
}

export function notFound(rt: ResourceRef, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualified(rt)} "${name}" not found`, baseDetails(rt, name));
}

export function alreadyExists(rt: ResourceRef, name: string): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualified(rt)} "${name}" already exists`, baseDetails(rt, name));
}

export function conflict(rt: ResourceRef, name: string, why: string): ApiError {
  return new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(rt)} "${name}": ${why}`,
    baseDetails(rt, name));
}

export const STALE_OBJECT_MESSAGE = 'the object has been modified; please apply your changes to the latest version and try again';

export function staleConflict(rt: ResourceRef, name: string): ApiError {
  return conflict(rt, name, STALE_OBJECT_MESSAGE);
}

/** 422 Invalid: `Kind "name" is invalid: [cause, cause]` with one cause per field error. */
export function invalid(rt: Pick<ResourceType, 'group' | 'kind'>, name: string, errors: FieldError[]): ApiError {
  const rendered = errors.map((e) => `${e.field}: ${e.message}`);
  const summary = rendered.length === 1 ? rendered[0] : `[${rendered.join(', ')}]`;
  const kindLabel = rt.group === '' ? rt.kind : `${rt.kind}.${rt.group}`;
  const details: StatusDetails = {
    name,
    kind: rt.kind,
    causes: errors.map((e) => ({ reason: e.type, message: e.message, field: e.field })),
  };
  details.group = rt.group;
  return new ApiError(422, 'Invalid', `${kindLabel} "${name}" is invalid: ${summary}`, details);
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

export function forbidden(message: string, rt?: ResourceRef, name?: string): ApiError {
  return new ApiError(403, 'Forbidden', message, rt === undefined ? undefined : baseDetails(rt, name ?? ''));
}

export function methodNotAllowed(verb: string, what: string): ApiError {
  return new ApiError(405, 'MethodNotAllowed', `${verb} is not supported on resources of kind "${what}"`);
}

/** 410 as the watch cache and the list path report a compacted resourceVersion. */
export function expired(message: string): ApiError {
  return new ApiError(410, 'Expired', message);
}

export function unsupportedMediaType(message: string): ApiError {
  return new ApiError(415, 'UnsupportedMediaType', message);
}

export function notAcceptable(message: string): ApiError {
  return new ApiError(406, 'NotAcceptable', message);
}

export function internalError(message: string): ApiError {
  return new ApiError(500, 'InternalError', `Internal error occurred: ${message}`,
    { causes: [{ reason: '', message }] });
}

export function pathNotFound(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource', {});
}

// ---- field errors, rendered like k8s.io/apimachinery/pkg/util/validation/field ----

/** Go's %#v-like rendering used in "Invalid value: X" messages. */
export function renderValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return '[]' + (value.length === 0 ? '' : 'interface {}{...}');
  return '"object"';
}

export const fieldErrors = {
  required(field: string, detail = ''): FieldError {
    return { type: 'FieldValueRequired', field, message: detail ? `Required value: ${detail}` : 'Required value' };
  },
  invalid(field: string, value: unknown, detail: string): FieldError {
    return { type: 'FieldValueInvalid', field, message: `Invalid value: ${renderValue(value)}${detail ? `: ${detail}` : ''}` };
  },
  typeInvalid(field: string, value: unknown, detail: string): FieldError {
    return { type: 'FieldValueTypeInvalid', field, message: `Invalid value: ${renderValue(value)}: ${detail}` };
  },
  notSupported(field: string, value: unknown, supported: readonly unknown[]): FieldError {
    const list = supported.map((v) => (typeof v === 'string' ? JSON.stringify(v) : String(v))).join(', ');
    return { type: 'FieldValueNotSupported', field, message: `Unsupported value: ${renderValue(value)}: supported values: ${list}` };
  },
  forbidden(field: string, detail: string): FieldError {
    return { type: 'FieldValueForbidden', field, message: `Forbidden: ${detail}` };
  },
  tooLong(field: string, max: number): FieldError {
    return { type: 'FieldValueTooLong', field, message: `Too long: may not be more than ${max} bytes` };
  },
  tooMany(field: string, actual: number, max: number): FieldError {
    return { type: 'FieldValueTooMany', field, message: `Too many: ${actual}: must have at most ${max} items` };
  },
  duplicate(field: string, value: unknown): FieldError {
    return { type: 'FieldValueDuplicate', field, message: `Duplicate value: ${renderValue(value)}` };
  },
  immutable(field: string, value: unknown): FieldError {
    return { type: 'FieldValueInvalid', field, message: `Invalid value: ${renderValue(value)}: field is immutable` };
  },
};
