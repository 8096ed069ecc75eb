// bpf_prog_test_run_opts: run a loaded program on a packet without a network and get
// back its verdict, the packet as the program left it, and the kernel-measured run time.
// The packet fixtures and the benchmark call this hundreds of thousands of times, so a
// TestRunner keeps its option struct and packet buffers in one native allocation made
// up front: a run copies the packet in, sets four fields and makes one koffi call.

import koffi from 'koffi';
import { endianness } from 'node:os';
import { LIBBPF_STRUCTS, SIZEOF, bpfFailure, errnoName, libbpf, type Pointer } from './libbpf.ts';
import { FulcrumError } from '../../shared/errors.ts';

export interface TestRunOptions {
  /** Run the program this many times on the same input; durationNs is the average. Default 1. */
  repeat?: number;
  /** Room for the output packet; a larger result fails with ENOSPC. Default: the runner's capacity. */
  dataOutSize?: number;
  /** Context passed in (for XDP, a struct xdp_md: ingress_ifindex, rx_queue_index). */
  ctxIn?: Uint8Array;
  /** Room for the context the program leaves; 0 (default) does not read it back. */
  ctxOutSize?: number;
}

export interface TestRunResult {
  /** The program's return value (XDP_PASS = 2, XDP_TX = 3, TC_ACT_OK = 0, ...). */
  retval: number;
  /** The packet after the program: exactly data_size_out bytes. */
  dataOut: Buffer;
  /** Average run time per repetition, measured by the kernel. */
  durationNs: number;
  /** The context after the program, when ctxOutSize was given. */
  ctxOut?: Buffer;
}

/** XDP verdicts, for reading retval. */
export const XDP_ABORTED = 0;
export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;
export const XDP_REDIRECT = 4;

const LITTLE = endianness() === 'LE';
const O = Object.fromEntries(
  Object.values(LIBBPF_STRUCTS.bpf_test_run_opts.members ?? {}).map((m) => [m.name, m.offset]),
) as Record<'sz' | 'data_in' | 'data_out' | 'data_size_in' | 'data_size_out' | 'ctx_in' | 'ctx_out' |
  'ctx_size_in' | 'ctx_size_out' | 'retval' | 'repeat' | 'duration' | 'flags' | 'cpu' | 'batch_size', number>;

/** Room the output always has beyond the input: encapsulation and ICMP replies grow the packet. */
const OUT_SLACK = 1024;
const DEFAULT_DATA_CAPACITY = 16 * 1024;
const DEFAULT_CTX_CAPACITY = 256;

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/**
 * A reusable test-run context. Not safe to share between concurrent users (there are
 * none in one JS thread: a run is one synchronous call).
 */
export class TestRunner {
  #region: Pointer | null = null;
  #opts!: DataView;
  #optsPtr!: Pointer;
  #dataIn!: Buffer;
  #dataOut!: Buffer;
  #ctxIn!: Buffer;
  #ctxOut!: Buffer;
  #ctxSet = false;
  #outView: Buffer = Buffer.alloc(0);

  constructor(dataCapacity = DEFAULT_DATA_CAPACITY, ctxCapacity = DEFAULT_CTX_CAPACITY) {
    this.#allocate(dataCapacity, ctxCapacity);
  }

  /** Run and return a result that owns its bytes. */
  run(progFd: number, dataIn: Uint8Array, options: TestRunOptions = {}): TestRunResult {
    const result = this.runShared(progFd, dataIn, options);
    result.dataOut = Buffer.from(result.dataOut);
    if (result.ctxOut) result.ctxOut = Buffer.from(result.ctxOut);
    return result;
  }

  /**
   * Run without copying the output: dataOut (and ctxOut) are views of the runner's
   * buffers, valid only until the next run. For hot loops (the benchmark).
   */
  runShared(progFd: number, dataIn: Uint8Array, options: TestRunOptions = {}): TestRunResult {
    if (this.#region === null) throw new FulcrumError('ERR_LIBBPF', 'testRun: the runner is closed');
    const repeat = options.repeat ?? 1;
    const ctxIn = options.ctxIn;
    const ctxOutSize = options.ctxOutSize ?? 0;
    const outSize = options.dataOutSize ?? Math.max(this.#dataOut.length, dataIn.byteLength + OUT_SLACK);
    const ctxNeeded = Math.max(ctxIn?.byteLength ?? 0, ctxOutSize);
    if (dataIn.byteLength > this.#dataIn.length || outSize > this.#dataOut.length || ctxNeeded > this.#ctxIn.length) {
      this.#allocate(Math.max(dataIn.byteLength + OUT_SLACK, outSize, this.#dataIn.length),
        Math.max(ctxNeeded, this.#ctxIn.length));
    }
    if (!Number.isInteger(repeat) || repeat < 1 || repeat > 0x7fffffff) {
      throw new FulcrumError('ERR_LIBBPF', `testRun: repeat must be a positive integer, got ${repeat}`);
    }

    const opts = this.#opts;
    this.#dataIn.set(dataIn);
    opts.setUint32(O.data_size_in, dataIn.byteLength, LITTLE);
    opts.setUint32(O.data_size_out, outSize, LITTLE); // in: room; out: the packet's size
    opts.setInt32(O.repeat, repeat, LITTLE);
    // retval and duration are outputs the kernel writes on every successful run.
    if (ctxIn !== undefined || ctxOutSize > 0) {
      if (ctxIn) this.#ctxIn.set(ctxIn);
      this.#setPointer(O.ctx_in, ctxIn ? this.#ctxIn : null);
      opts.setUint32(O.ctx_size_in, ctxIn?.byteLength ?? 0, LITTLE);
      this.#setPointer(O.ctx_out, ctxOutSize > 0 ? this.#ctxOut : null);
      opts.setUint32(O.ctx_size_out, ctxOutSize, LITTLE);
      this.#ctxSet = true;
    } else if (this.#ctxSet) {
      // Clear the context fields only after a run that used them.
      this.#setPointer(O.ctx_in, null);
      opts.setUint32(O.ctx_size_in, 0, LITTLE);
      this.#setPointer(O.ctx_out, null);
      opts.setUint32(O.ctx_size_out, 0, LITTLE);
      this.#ctxSet = false;
    }

    // With repeat > 1 the kernel stops early with EINTR when a signal is pending (a
    // child process exiting, say), after an unknown number of runs whose side effects
    // (map writes) stay: that is reported, never retried. A single run cannot be
    // interrupted.
    const ret = libbpf.bpf_prog_test_run_opts(progFd, this.#optsPtr);
    const sizeOut = opts.getUint32(O.data_size_out, LITTLE);
    if (ret < 0) throw testRunFailure(progFd, ret, dataIn.byteLength, sizeOut, outSize);

    // Creating a Buffer view costs about as much as the rest of the call: reuse the
    // last one while the output size stays the same (the usual case in a loop).
    if (this.#outView.length !== sizeOut) this.#outView = this.#dataOut.subarray(0, sizeOut);
    const result: TestRunResult = {
      retval: opts.getUint32(O.retval, LITTLE),
      dataOut: this.#outView,
      durationNs: opts.getUint32(O.duration, LITTLE),
    };
    if (ctxOutSize > 0) result.ctxOut = this.#ctxOut.subarray(0, opts.getUint32(O.ctx_size_out, LITTLE));
    return result;
  }

  /** Free the native buffers (outputs of runShared() die with them). Further runs throw. */
  close(): void {
    if (this.#region !== null) koffi.free(this.#region);
    this.#region = null;
  }

  #allocate(dataCapacity: number, ctxCapacity: number): void {
    if (this.#region !== null) koffi.free(this.#region);
    const optsSize = align8(SIZEOF.bpf_test_run_opts);
    const data = align8(dataCapacity);
    const ctx = align8(ctxCapacity);
    const total = optsSize + 2 * ctx + 2 * data;
    // Native memory: its address never moves, so the pointers written into the
    // option struct below stay valid for the runner's life.
    const region = koffi.alloc('uint8_t', total) as Pointer;
    const all = Buffer.from(koffi.view(region, total));
    all.fill(0);
    this.#region = region;
    this.#optsPtr = region;
    this.#ctxSet = false;
    this.#opts = new DataView(all.buffer, all.byteOffset, optsSize);
    let offset = optsSize;
    const take = (size: number): Buffer => {
      const view = all.subarray(offset, offset + size);
      offset += size;
      return view;
    };
    this.#ctxIn = take(ctx);
    this.#ctxOut = take(ctx);
    this.#dataIn = take(data);
    this.#dataOut = take(data);
    this.#outView = this.#dataOut.subarray(0, 0);
    this.#opts.setBigUint64(O.sz, BigInt(SIZEOF.bpf_test_run_opts), LITTLE);
    this.#setPointer(O.data_in, this.#dataIn);
    this.#setPointer(O.data_out, this.#dataOut);
  }

  #setPointer(offset: number, view: Buffer | null): void {
    const address = view === null ? 0n : this.#region! + BigInt(view.byteOffset - this.#opts.byteOffset);
    this.#opts.setBigUint64(offset, address, LITTLE);
  }
}

function testRunFailure(progFd: number, ret: number, sizeIn: number, sizeOut: number, room: number): FulcrumError {
  const hints: Record<string, string> = {
    ENOSPC: `the output packet is ${sizeOut} bytes, more than the ${room} bytes of room (raise dataOutSize)`,
    EINVAL: `the input (${sizeIn} bytes) or context is not valid for this program type (XDP needs at least a 14-byte Ethernet header and at most a page)`,
    EBADF: `fd ${progFd} is not an open BPF program`,
    ENOTSUPP: 'this program type cannot be test-run',
    EPERM: 'test runs need CAP_BPF / root',
  };
  return bpfFailure('ERR_LIBBPF', `bpf_prog_test_run on program fd ${progFd} failed`, ret,
    { hint: hints[errnoName(ret)], details: { progFd, sizeIn } });
}

let shared: TestRunner | undefined;

/** Run `progFd` once (or `repeat` times) on `dataIn`, with a process-wide preallocated runner. */
export function testRun(progFd: number, dataIn: Uint8Array, options?: TestRunOptions): TestRunResult {
  shared ??= new TestRunner();
  return shared.run(progFd, dataIn, options);
}
