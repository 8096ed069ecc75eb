// Decoding of Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf).
//
// kubectl's imperative generators (`kubectl create namespace X`, ...) send typed objects as
// protobuf; everything else (apply, patch, create -f, client-node) sends JSON. Responses are
// always JSON, which those clients accept too. Decoding needs each type's generated.proto
// field numbers, so only the types listed in DECODERS are understood; others get a 415 that
// names the JSON alternative.

import { unsupportedMediaType } from './status.ts';
import type { JsonObject } from './types.ts';

export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

interface Field {
  number: number;
  wireType: number;
  /** Varint value (wire type 0) or the raw bytes (wire type 2). */
  value: bigint | Buffer;
}

function readVarint(buf: Buffer, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const byte = buf[pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [tag, next] = readVarint(buf, pos);
    pos = next;
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    if (wireType === 0) {
      const [v, p] = readVarint(buf, pos);
      out.push({ number, wireType, value: v });
      pos = p;
    } else if (wireType === 2) {
      const [len, p] = readVarint(buf, pos);
      const end = p + Number(len);
      if (end > buf.length) throw new Error('truncated field');
      out.push({ number, wireType, value: buf.subarray(p, end) });
      pos = end;
    } else if (wireType === 1) {
      out.push({ number, wireType, value: buf.subarray(pos, pos + 8) });
      pos += 8;
    } else if (wireType === 5) {
      out.push({ number, wireType, value: buf.subarray(pos, pos + 4) });
      pos += 4;
    } else {
      throw new Error(`unsupported wire type ${wireType}`);
    }
  }
  return out;
}

const str = (f: Field): string => (f.value as Buffer).toString('utf8');

function stringMap(entries: Field[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    let key = '';
    let value = '';
    for (const kv of fields(e.value as Buffer)) {
      if (kv.number === 1) key = str(kv);
      if (kv.number === 2) value = str(kv);
    }
    out[key] = value;
  }
  return out;
}

/** metav1.ObjectMeta: the fields a client sets on create. */
function objectMeta(buf: Buffer): JsonObject {
  const meta: JsonObject = {};
  const all = fields(buf);
  for (const f of all) {
    // gogo-protobuf writes unset strings as empty ones; JSON omits them.
    if (f.wireType === 2 && (f.value as Buffer).length === 0 && f.number !== 11 && f.number !== 12) continue;
    switch (f.number) {
      case 1: meta['name'] = str(f); break;
      case 2: meta['generateName'] = str(f); break;
      case 3: meta['namespace'] = str(f); break;
      case 6: meta['resourceVersion'] = str(f); break;
      case 14: ((meta['finalizers'] ??= []) as string[]).push(str(f)); break;
    }
  }
  const labels = all.filter((f) => f.number === 11);
  const annotations = all.filter((f) => f.number === 12);
  if (labels.length > 0) meta['labels'] = stringMap(labels);
  if (annotations.length > 0) meta['annotations'] = stringMap(annotations);
  return meta;
}

const DECODERS: Record<string, (raw: Buffer) => JsonObject> = {
  'v1/Namespace': (raw) => {
    const obj: JsonObject = {};
    for (const f of fields(raw)) {
      if (f.number === 1) obj['metadata'] = objectMeta(f.value as Buffer);
      if (f.number === 2) {
        const finalizers = fields(f.value as Buffer).filter((x) => x.number === 1).map(str);
        obj['spec'] = finalizers.length > 0 ? { finalizers } : {};
      }
    }
    return obj;
  },
};

/** Decodes a protobuf-encoded object into its JSON form, or answers 415. */
export function decodeProtobufObject(body: Buffer): JsonObject {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) {
    throw unsupportedMediaType('the body of the request was in an unknown format: missing the k8s protobuf envelope');
  }
  let apiVersion = '';
  let kind = '';
  let raw: Buffer = Buffer.alloc(0);
  for (const f of fields(body.subarray(4))) {
    if (f.number === 1) {
      for (const t of fields(f.value as Buffer)) {
        if (t.number === 1) apiVersion = str(t);
        if (t.number === 2) kind = str(t);
      }
    }
    if (f.number === 2) raw = f.value as Buffer;
  }
  const decoder = DECODERS[`${apiVersion}/${kind}`];
  if (decoder === undefined) {
    throw unsupportedMediaType(`protobuf request bodies are not supported for ${apiVersion}/${kind} by this API server; send JSON instead (for kubectl create <type>: kubectl create <type> ... --dry-run=client -o json | kubectl create -f -)`);
  }
  return { apiVersion, kind, ...decoder(raw) };
}
