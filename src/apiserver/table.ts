// Server-side printing: meta.k8s.io/v1 Table responses for `Accept: ...;as=Table`, which is
// what `kubectl get` asks for. Custom resources print their CRD's additionalPrinterColumns
// (an Age column when there are none); built-ins print a few columns of their real printers.

import { PRINTER_COLUMN_NAME } from './builtins.ts';
import { evaluateJsonPath, parseJsonPath } from './jsonpath.ts';
import type { KubeObject, PrinterColumn, ResourceType } from './types.ts';

export type IncludeObject = 'None' | 'Object' | 'PartialObjectMetadata';

const AGE_COLUMN: PrinterColumn = {
  name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
};

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration, so ages read as kubectl users expect. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const d = Math.floor(hours / 24) % 365;
    return d === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${d}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

/** The columns a type prints: Name, its own columns, then Age (CRDs supply their own list). */
export function tableColumns(rt: ResourceType): PrinterColumn[] {
  if (rt.crdName !== undefined) {
    return [PRINTER_COLUMN_NAME, ...(rt.printerColumns.length > 0 ? rt.printerColumns : [AGE_COLUMN])];
  }
  const wide = rt.printerColumns.filter((c) => (c.priority ?? 0) > 0);
  const normal = rt.printerColumns.filter((c) => (c.priority ?? 0) === 0);
  return [PRINTER_COLUMN_NAME, ...normal, ...(rt.omitAgeColumn === true ? [] : [AGE_COLUMN]), ...wide];
}

function cellFor(column: PrinterColumn, obj: KubeObject, now: number): unknown {
  if (column === PRINTER_COLUMN_NAME) return obj.metadata.name ?? '';
  let value: unknown;
  if (column.compute !== undefined) {
    value = column.compute(obj);
  } else if (column.jsonPath !== undefined) {
    let results: unknown[];
    try {
      results = evaluateJsonPath(parseJsonPath(column.jsonPath), obj);
    } catch {
      results = [];
    }
    // Like the apiextensions table convertor: the first match, or an empty cell.
    if (results.length === 0) return null;
    value = results[0];
  }
  switch (column.type) {
    case 'date': {
      if (typeof value !== 'string') return null;
      const t = Date.parse(value);
      return Number.isNaN(t) ? null : humanDuration(now - t);
    }
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value) ? value : null;
    case 'number':
      return typeof value === 'number' ? value : null;
    case 'boolean':
      return typeof value === 'boolean' ? value : null;
    default:
      if (value === undefined || value === null) return column.compute !== undefined ? '' : null;
      return typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
}

function rowObject(obj: KubeObject, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return obj;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata };
}

export interface TableOptions {
  includeObject: IncludeObject;
  /** Watch events after the first omit the column definitions, as the real server does. */
  withColumnDefinitions: boolean;
}

export function buildTable(
  rt: ResourceType,
  objects: KubeObject[],
  options: TableOptions,
  listMeta: { resourceVersion?: string; continue?: string; remainingItemCount?: number } = {},
): KubeObject {
  const columns = tableColumns(rt);
  const now = Date.now();
  const table: KubeObject = {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: listMeta,
    columnDefinitions: options.withColumnDefinitions
      ? columns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? '', description: c.description ?? '', priority: c.priority ?? 0 }))
      : [],
    rows: objects.map((obj) => {
      const row: Record<string, unknown> = { cells: columns.map((c) => cellFor(c, obj, now)) };
      const included = rowObject(obj, options.includeObject);
      if (included !== undefined) row['object'] = included;
      return row;
    }),
  };
  return table;
}
