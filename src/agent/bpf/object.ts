// BpfObject: one BPF ELF object file through its libbpf life cycle. Open it, adjust it
// before load (map sizes, the .rodata configuration block, pin paths so that a
// restarted agent adopts the maps it pinned before), load it into the kernel, then
// hand out program fds and maps. Load failures carry the verifier's own words.

import { existsSync } from 'node:fs';
import koffi from 'koffi';
import {
  LIBBPF_STRUCTS, SIZEOF, bpfFailure, errnoMessage, errnoName, libbpf, libbpfLogMark, libbpfLogSince,
  libbpfWarningsSince, type Pointer,
} from './libbpf.ts';
import { BpfMap } from './map.ts';
import { FulcrumError } from '../../shared/errors.ts';

/** enum bpf_prog_type values Fulcrum uses. */
export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_PROG_TYPE_XDP = 6;

export interface ProgramInfo {
  id: number;
  type: number;
  name: string;
  /** The program's tag (hash of its instructions), as hex. */
  tag: string;
}

/** bpf_obj_get_info_by_fd() on a program fd: its kernel id, type, name and tag. */
export function programInfo(fd: number): ProgramInfo {
  const buf = Buffer.alloc(SIZEOF.bpf_prog_info);
  const len: [number] = [buf.length];
  const ret = libbpf.bpf_obj_get_info_by_fd(fd, buf, len);
  if (ret < 0) {
    throw bpfFailure('ERR_LIBBPF', `cannot read the info of program fd ${fd}`, ret,
      { hint: 'the fd is not an open BPF program' });
  }
  const info = koffi.decode(buf, LIBBPF_STRUCTS.bpf_prog_info) as { id: number; type: number; name: string; tag: Uint8Array };
  return { id: info.id, type: info.type, name: info.name, tag: Buffer.from(info.tag).toString('hex') };
}

export interface MapSpec {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  pinPath: string | null;
}

export interface Program {
  name: string;
  sectionName: string;
  type: number;
  /** Valid until the object is closed. */
  fd: number;
  id: number;
}

/** How many lines of the verifier log go into an error message (the whole log is in details). */
const VERIFIER_TAIL_LINES = 30;
const LOAD_LOG = /prog '([^']+)': -- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/;

export class BpfObject {
  readonly path: string;
  readonly name: string;
  #obj: Pointer | null;
  #state: 'opened' | 'loaded' | 'failed' = 'opened';
  readonly #maps = new Map<string, BpfMap>();

  private constructor(path: string, obj: Pointer) {
    this.path = path;
    this.#obj = obj;
    this.name = libbpf.bpf_object__name(obj);
  }

  /** Parse the ELF file (nothing reaches the kernel yet). */
  static open(path: string): BpfObject {
    if (!existsSync(path)) {
      throw new FulcrumError('ERR_LIBBPF', `cannot open BPF object ${path}: the file does not exist (build it: make -C bpf)`,
        { details: { file: path } });
    }
    const mark = libbpfLogMark();
    const obj = libbpf.bpf_object__open_file(path, null);
    if (obj === null) {
      const err = koffi.errno();
      throw bpfFailure('ERR_LIBBPF', `cannot open BPF object ${path}`, err, {
        hint: 'not a valid BPF ELF object (built with clang -target bpf?) or built for another libbpf',
        logSince: mark, details: { file: path },
      });
    }
    return new BpfObject(path, obj);
  }

  get loaded(): boolean {
    return this.#state === 'loaded';
  }

  mapNames(): string[] {
    const obj = this.#handle('list maps');
    const names: string[] = [];
    for (let map = libbpf.bpf_object__next_map(obj, null); map !== null; map = libbpf.bpf_object__next_map(obj, map)) {
      names.push(libbpf.bpf_map__name(map));
    }
    return names;
  }

  programNames(): string[] {
    const obj = this.#handle('list programs');
    const names: string[] = [];
    for (let prog = libbpf.bpf_object__next_program(obj, null); prog !== null;
      prog = libbpf.bpf_object__next_program(obj, prog)) {
      names.push(libbpf.bpf_program__name(prog));
    }
    return names;
  }

  /** A map as the object defines it (after any set* calls). */
  mapSpec(mapName: string): MapSpec {
    const map = this.#mapHandle(mapName);
    return {
      name: libbpf.bpf_map__name(map),
      type: libbpf.bpf_map__type(map),
      keySize: libbpf.bpf_map__key_size(map),
      valueSize: libbpf.bpf_map__value_size(map),
      maxEntries: libbpf.bpf_map__max_entries(map),
      flags: libbpf.bpf_map__map_flags(map),
      pinPath: libbpf.bpf_map__pin_path(map),
    };
  }

  /** Size a map before load (e.g. ring = max VIPs × ring size). */
  setMaxEntries(mapName: string, maxEntries: number): void {
    this.#beforeLoad(`set max_entries of map ${mapName}`);
    const map = this.#mapHandle(mapName);
    if (!Number.isInteger(maxEntries) || maxEntries <= 0 || maxEntries > 0xffffffff) {
      throw new FulcrumError('ERR_LIBBPF', `${this.path}: max_entries of map ${mapName} must be a positive 32-bit integer, got ${maxEntries}`);
    }
    const ret = libbpf.bpf_map__set_max_entries(map, maxEntries);
    if (ret < 0) throw bpfFailure('ERR_LIBBPF', `${this.path}: cannot set max_entries of map ${mapName} to ${maxEntries}`, ret);
  }

  /**
   * Set the initial contents of a global-data map before load; by default `.rodata`,
   * which holds the program's one `const volatile` configuration struct
   * (balancer_config CFG / decap_config DECAP_CFG; encode it with abi.ts). The verifier
   * then sees the configuration as constants.
   */
  setRodata(value: Uint8Array, mapName = '.rodata'): void {
    this.#beforeLoad(`set the initial value of ${mapName}`);
    const map = this.#mapHandle(mapName,
      mapName === '.rodata' ? 'the object declares no const volatile variables' : undefined);
    const size = libbpf.bpf_map__value_size(map);
    if (value.byteLength !== size) {
      throw new FulcrumError('ERR_LIBBPF',
        `${this.path}: ${mapName} is ${size} bytes but the value given is ${value.byteLength} bytes: ` +
        'the object\'s const volatile variables do not match the configuration struct ' +
        '(rebuild the object, or check src/agent/bpf/abi.ts against bpf/include/consts.h)',
        { details: { file: this.path, map: mapName, size, given: value.byteLength } });
    }
    const ret = libbpf.bpf_map__set_initial_value(map, value, value.byteLength);
    if (ret < 0) throw bpfFailure('ERR_LIBBPF', `${this.path}: cannot set the initial value of ${mapName}`, ret);
  }

  /**
   * Pin a map at `path` (null: do not pin). At load, libbpf adopts the map already
   * pinned there if its type, sizes and flags match (a restarted agent keeps its
   * connection table and counters), or creates the map and pins it there.
   */
  setPinPath(mapName: string, path: string | null): void {
    this.#beforeLoad(`set the pin path of map ${mapName}`);
    const ret = libbpf.bpf_map__set_pin_path(this.#mapHandle(mapName), path);
    if (ret < 0) throw bpfFailure('ERR_LIBBPF', `${this.path}: cannot set the pin path of map ${mapName} to ${path}`, ret);
  }

  /** Use an existing map (e.g. one shared with another object) instead of creating one. The caller keeps its fd. */
  reuseMap(mapName: string, map: BpfMap | number): void {
    this.#beforeLoad(`reuse a map for ${mapName}`);
    const fd = typeof map === 'number' ? map : map.fd;
    const mark = libbpfLogMark();
    const ret = libbpf.bpf_map__reuse_fd(this.#mapHandle(mapName), fd);
    if (ret < 0) {
      throw bpfFailure('ERR_LIBBPF', `${this.path}: cannot reuse map fd ${fd} for map ${mapName}`, ret,
        { hint: 'the fd is not an open BPF map', logSince: mark });
    }
  }

  /** Create the maps and load every program into the kernel. */
  load(): void {
    const obj = this.#handle('load');
    this.#beforeLoad('load');
    const mark = libbpfLogMark();
    const ret = libbpf.bpf_object__load(obj);
    if (ret === 0) {
      this.#state = 'loaded';
      return;
    }
    // libbpf has unloaded whatever it created; the object can only be closed now.
    this.#state = 'failed';
    throw this.#loadFailure(ret, mark);
  }

  /** A loaded program by function name. */
  program(programName: string): Program {
    const obj = this.#handle('get a program');
    const prog = libbpf.bpf_object__find_program_by_name(obj, programName);
    if (prog === null) {
      throw new FulcrumError('ERR_LIBBPF',
        `${this.path} has no program named ${programName} (it has: ${this.programNames().join(', ') || 'none'})`);
    }
    this.#afterLoad(`get the fd of program ${programName}`);
    const fd = libbpf.bpf_program__fd(prog);
    if (fd < 0) throw bpfFailure('ERR_LIBBPF', `${this.path}: program ${programName} has no fd (not loaded?)`, fd);
    return {
      name: programName,
      sectionName: libbpf.bpf_program__section_name(prog),
      type: libbpf.bpf_program__type(prog),
      fd,
      id: programInfo(fd).id,
    };
  }

  /** A loaded program's fd (valid until close()). */
  programFd(programName: string): number {
    return this.program(programName).fd;
  }

  /** A loaded map by name ('.rodata' for the global-data maps). Closed with the object. */
  map(mapName: string): BpfMap {
    const cached = this.#maps.get(mapName);
    if (cached) return cached;
    const handle = this.#mapHandle(mapName);
    this.#afterLoad(`get map ${mapName}`);
    const fd = libbpf.bpf_map__fd(handle);
    if (fd < 0) throw bpfFailure('ERR_LIBBPF', `${this.path}: map ${mapName} has no fd`, fd);
    const map = BpfMap.fromFd(fd, { owned: false, name: libbpf.bpf_map__name(handle) });
    this.#maps.set(mapName, map);
    return map;
  }

  /**
   * Release the object: its program and map fds close. Attachments made through
   * netlink or tc, pinned links and pinned maps stay in the kernel.
   */
  close(): void {
    if (this.#obj === null) return;
    for (const map of this.#maps.values()) map.close();
    this.#maps.clear();
    libbpf.bpf_object__close(this.#obj);
    this.#obj = null;
  }

  #handle(op: string): Pointer {
    if (this.#obj === null) throw new FulcrumError('ERR_LIBBPF', `${this.path}: cannot ${op}: the object is closed`);
    return this.#obj;
  }

  #beforeLoad(op: string): void {
    this.#handle(op);
    if (this.#state !== 'opened') {
      throw new FulcrumError('ERR_LIBBPF', `${this.path}: cannot ${op}: the object was already ${this.#state === 'loaded' ? 'loaded' : 'loaded and failed'}`);
    }
  }

  #afterLoad(op: string): void {
    if (this.#state !== 'loaded') {
      throw new FulcrumError('ERR_LIBBPF', `${this.path}: cannot ${op}: the object is not loaded${this.#state === 'failed' ? ' (load failed)' : ''}`);
    }
  }

  #mapHandle(mapName: string, whyMissing?: string): Pointer {
    const map = libbpf.bpf_object__find_map_by_name(this.#handle(`find map ${mapName}`), mapName);
    if (map === null) {
      throw new FulcrumError('ERR_LIBBPF',
        `${this.path} has no map named ${mapName}${whyMissing ? ` (${whyMissing})` : ''} (it has: ${this.mapNames().join(', ') || 'none'})`,
        { details: { file: this.path, map: mapName } });
    }
    return map;
  }

  #loadFailure(ret: number, mark: number): FulcrumError {
    const name = errnoName(ret);
    const messages = libbpfLogSince(mark, 'warn').map((m) => m.text).join('');
    const verifier = LOAD_LOG.exec(messages);
    if (verifier) {
      const [, program, log = ''] = verifier;
      const lines = log.trimEnd().split('\n');
      const tail = lines.slice(-VERIFIER_TAIL_LINES);
      const omitted = lines.length - tail.length;
      return new FulcrumError('ERR_BPF_VERIFIER',
        `the verifier rejected program ${program} of ${this.path}: ${name} (${errnoMessage(ret)})\n` +
        (omitted > 0 ? `[${omitted} earlier lines of the verifier log omitted]\n` : '') + tail.join('\n'),
        { details: { file: this.path, program, errno: Math.abs(ret), errnoName: name, verifierLog: log } });
    }
    const warnings = libbpfWarningsSince(mark);
    const reuseMismatch = warnings.find((line) => line.includes("couldn't reuse pinned map"));
    const hints: Record<string, string> = {
      EPERM: 'loading BPF needs root (CAP_BPF with CAP_NET_ADMIN, or CAP_SYS_ADMIN)',
      E2BIG: 'a map is too large (max_entries × value size) or a program exceeds the verifier\'s limits',
      ENOMEM: 'not enough memory for the maps (memory cgroup limit, or max_entries too large)',
      EINVAL: reuseMismatch
        ? 'a pinned map no longer matches the object\'s definition (type, key/value size, max_entries or flags changed): remove the pin so a fresh map is created'
        : 'a map or program definition is not valid for this kernel (see libbpf\'s messages)',
      EACCES: 'the kernel refused the program',
      ENOENT: 'a kernel feature, BTF type or pinned path the object needs is missing',
    };
    return bpfFailure('ERR_LIBBPF', `cannot load BPF object ${this.path}`, ret,
      { hint: hints[name], logSince: mark, details: { file: this.path } });
  }
}

