// Reading parts of large JSON documents without building the rest. A BalancerNode is
// half a megabyte at scale; a write's answer needs only its metadata, and an agent's
// status update only its metadata and status. One byte scan finds where each top-level
// field's value lies; only the wanted slices are decoded and parsed. Works on UTF-8
// bytes: the structural characters are ASCII, and no byte of a multi-byte sequence is.

const QUOTE = 34;
const BACKSLASH = 92;
const COLON = 58;
const COMMA = 44;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;

function isSpace(c: number | undefined): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** Where each top-level field's value lies in a JSON object ([start, end) byte offsets). */
export function topLevelRanges(bytes: Uint8Array): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  const n = bytes.length;
  let depth = 0;
  let i = 0;
  let key: string | undefined;
  let valueStart = -1;
  while (i < n) {
    const c = bytes[i]!;
    if (c === QUOTE) {
      const start = i;
      i++;
      while (i < n) {
        const d = bytes[i]!;
        if (d === BACKSLASH) i += 2;
        else if (d === QUOTE) break;
        else i++;
      }
      // A key at depth 1 is a string followed by a colon.
      if (depth === 1 && valueStart < 0) {
        let j = i + 1;
        while (j < n && isSpace(bytes[j])) j++;
        if (bytes[j] === COLON) {
          key = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + start, i + 1 - start).toString('utf8')) as string;
          i = j + 1;
          while (i < n && isSpace(bytes[i])) i++;
          valueStart = i;
          continue;
        }
      }
      i++;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
    // The end of a depth-1 value: a comma at depth 1, or the closing brace of the object.
    if (valueStart >= 0 && ((c === COMMA && depth === 1) || depth === 0)) {
      let end = i;
      while (end > valueStart && isSpace(bytes[end - 1])) end--;
      if (key !== undefined) out.set(key, [valueStart, end]);
      key = undefined;
      valueStart = -1;
    }
    i++;
  }
  return out;
}

/** The value of one range, parsed. */
export function parseRange<T>(bytes: Uint8Array, range: [number, number]): T {
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + range[0], range[1] - range[0]).toString('utf8')) as T;
}

/** A sub-range of bytes as a view (no copy). */
export function slice(bytes: Uint8Array, range: [number, number]): Uint8Array {
  return bytes.subarray(range[0], range[1]);
}

/** The parsed values of some top-level fields; the rest is skipped. */
export function topLevelFields(bytes: Uint8Array, wanted: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, range] of topLevelRanges(bytes)) if (wanted.includes(key)) out[key] = parseRange(bytes, range);
  return out;
}
