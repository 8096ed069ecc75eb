// Attaching programs to interfaces: XDP through netlink (with atomic replacement),
// XDP through a pinned bpf_link (the attachment outlives the agent, and a new program
// is swapped in atomically), and tc ingress for the decap program.
//
// Every function here acts in the network namespace of the calling thread. For a
// pod's namespace, call them through inNetns(), which runs them on a worker thread
// that has entered the namespace (see netns.ts): interface names and indexes are then
// resolved there too.

import koffi from 'koffi';
import {
  BPF_F_REPLACE, BPF_TC_EGRESS, BPF_TC_F_REPLACE, BPF_TC_INGRESS, BPF_XDP, LIBBPF_STRUCTS, SIZEOF,
  XDP_ATTACHED_DRV, XDP_ATTACHED_HW, XDP_ATTACHED_MULTI, XDP_ATTACHED_SKB,
  XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE, XDP_FLAGS_REPLACE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST,
  bpfFailure, errno, errnoName, libbpf, libbpfLogMark, type TcHook, type TcOpts, type XdpQueryOpts,
} from './libbpf.ts';
import { if_nametoindex } from './libc.ts';
import { closeQuietly, openPinnedFd, pinFd, unpin } from './pin.ts';
import { runInNetns, type InNetnsOptions } from './netns.ts';
import { disableGro, groEnabled } from './ethtool.ts';
// The netns worker runs NETNS_OPS by their export from this module.
export { disableGro, groEnabled };
import { FulcrumError } from '../../shared/errors.ts';

/** An interface by name (resolved in the calling thread's namespace) or by index. */
export type Iface = string | number;

/**
 * native: the driver runs the program (XDP_FLAGS_DRV_MODE); generic: the kernel runs
 * it after the SKB is built (slower, works everywhere); offload: the NIC runs it;
 * auto: native if the driver supports XDP, else generic.
 */
export type XdpMode = 'native' | 'generic' | 'offload' | 'auto';

const ENOENT = errno('ENOENT');
const EINVAL = errno('EINVAL');
const EEXIST = errno('EEXIST');
const ENOLINK = errno('ENOLINK');
const EOPNOTSUPP = errno('EOPNOTSUPP');

const MODE_FLAGS: Readonly<Record<XdpMode, number>> = {
  native: XDP_FLAGS_DRV_MODE,
  generic: XDP_FLAGS_SKB_MODE,
  offload: XDP_FLAGS_HW_MODE,
  auto: 0,
};

/** The interface index of `iface` in the calling thread's network namespace. */
export function ifindexOf(iface: Iface): number {
  if (typeof iface === 'number') {
    if (!Number.isInteger(iface) || iface <= 0) {
      throw new FulcrumError('ERR_BPF_ATTACH', `not an interface index: ${iface}`);
    }
    return iface;
  }
  const index = if_nametoindex(iface);
  if (index === 0) {
    throw new FulcrumError('ERR_BPF_ATTACH', `no interface named ${iface} in this network namespace`,
      { details: { iface, errno: koffi.errno() } });
  }
  return index;
}

function describe(iface: Iface, ifindex: number): string {
  return typeof iface === 'string' ? `${iface} (ifindex ${ifindex})` : `ifindex ${ifindex}`;
}

const XDP_HINTS: Readonly<Record<string, string>> = {
  EBUSY: 'another XDP program holds the hook: a bpf_link owns it (detach the link), one is attached in another mode, or one is attached and only-if-none was asked',
  EEXIST: 'the attached program is not the expected old one',
  EOPNOTSUPP: 'the driver has no native XDP: use mode generic',
  ERANGE: 'the MTU is too large for XDP on this driver (lower it, or use mode generic)',
  EINVAL: 'not an XDP program, or flags not valid for this interface',
  ENODEV: 'no such interface in this network namespace',
  EPERM: 'attaching needs CAP_NET_ADMIN / root',
};

// ---------------------------------------------------------------------------------
// XDP through netlink

export interface AttachXdpOptions {
  mode?: XdpMode;
  /** Replace atomically, only if this program (fd) is the one attached (XDP_FLAGS_REPLACE). */
  replaceProgFd?: number;
  /** Fail (EBUSY) if any program is attached (XDP_FLAGS_UPDATE_IF_NOEXIST). */
  onlyIfNone?: boolean;
}

/** Attach (or replace) an XDP program through netlink. It stays attached after the process exits. */
export function attachXdp(iface: Iface, progFd: number, options: AttachXdpOptions = {}): void {
  const ifindex = ifindexOf(iface);
  let flags = MODE_FLAGS[options.mode ?? 'auto'];
  if (options.onlyIfNone) flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  let opts = null;
  if (options.replaceProgFd !== undefined) {
    flags |= XDP_FLAGS_REPLACE;
    opts = { sz: SIZEOF.bpf_xdp_attach_opts, old_prog_fd: options.replaceProgFd };
  }
  const mark = libbpfLogMark();
  const ret = libbpf.bpf_xdp_attach(ifindex, progFd, flags, opts);
  if (ret < 0) {
    throw bpfFailure('ERR_BPF_ATTACH',
      `cannot ${options.replaceProgFd === undefined ? 'attach' : 'replace'} XDP program fd ${progFd} on ${describe(iface, ifindex)} (mode ${options.mode ?? 'auto'})`,
      ret, { hint: XDP_HINTS[errnoName(ret)], logSince: mark, details: { ifindex, progFd, mode: options.mode ?? 'auto' } });
  }
}

export interface DetachXdpOptions {
  /** The mode it was attached in. */
  mode?: XdpMode;
  /** Detach only if this program (fd) is the one attached. */
  expectedProgFd?: number;
}

/** Detach the netlink-attached XDP program. */
export function detachXdp(iface: Iface, options: DetachXdpOptions = {}): void {
  const ifindex = ifindexOf(iface);
  let flags = MODE_FLAGS[options.mode ?? 'auto'];
  let opts = null;
  if (options.expectedProgFd !== undefined) {
    flags |= XDP_FLAGS_REPLACE;
    opts = { sz: SIZEOF.bpf_xdp_attach_opts, old_prog_fd: options.expectedProgFd };
  }
  const mark = libbpfLogMark();
  const ret = libbpf.bpf_xdp_detach(ifindex, flags, opts);
  if (ret < 0) {
    throw bpfFailure('ERR_BPF_ATTACH', `cannot detach XDP from ${describe(iface, ifindex)}`, ret,
      { hint: XDP_HINTS[errnoName(ret)], logSince: mark, details: { ifindex } });
  }
}

export interface XdpState {
  ifindex: number;
  /** The attached program's id when exactly one is attached, else 0. */
  progId: number;
  nativeProgId: number;
  genericProgId: number;
  offloadProgId: number;
  attachMode: 'none' | 'native' | 'generic' | 'offload' | 'multi';
}

/** Which XDP programs are attached to `iface`, by id (bpf_xdp_query). */
export function queryXdp(iface: Iface): XdpState {
  const ifindex = ifindexOf(iface);
  const opts: XdpQueryOpts = {
    sz: SIZEOF.bpf_xdp_query_opts, prog_id: 0, drv_prog_id: 0, hw_prog_id: 0, skb_prog_id: 0, attach_mode: 0,
  };
  const mark = libbpfLogMark();
  const ret = libbpf.bpf_xdp_query(ifindex, 0, opts);
  if (ret < 0) {
    throw bpfFailure('ERR_BPF_ATTACH', `cannot query XDP on ${describe(iface, ifindex)}`, ret,
      { hint: XDP_HINTS[errnoName(ret)], logSince: mark, details: { ifindex } });
  }
  const modes = {
    [XDP_ATTACHED_DRV]: 'native', [XDP_ATTACHED_SKB]: 'generic', [XDP_ATTACHED_HW]: 'offload', [XDP_ATTACHED_MULTI]: 'multi',
  } as const;
  return {
    ifindex,
    progId: opts.prog_id,
    nativeProgId: opts.drv_prog_id,
    genericProgId: opts.skb_prog_id,
    offloadProgId: opts.hw_prog_id,
    attachMode: (modes as Record<number, XdpState['attachMode']>)[opts.attach_mode] ?? 'none',
  };
}

/** The id of the XDP program attached to `iface` (in `mode`, or whichever single one), 0 if none. */
export function xdpProgramId(iface: Iface, mode: XdpMode = 'auto'): number {
  const state = queryXdp(iface);
  switch (mode) {
    case 'native': return state.nativeProgId;
    case 'generic': return state.genericProgId;
    case 'offload': return state.offloadProgId;
    case 'auto': return state.progId || state.nativeProgId || state.genericProgId || state.offloadProgId;
  }
}

// ---------------------------------------------------------------------------------
// XDP through bpf_link

export interface AttachXdpLinkOptions {
  mode?: XdpMode;
  /**
   * Pin the link here (on the BPF filesystem): the attachment then outlives the
   * process, and the returned fd is already closed. Without a pin, the attachment
   * lasts while the returned fd is open.
   */
  pinPath?: string;
}

export interface XdpLink {
  linkId: number;
  progId: number;
  ifindex: number;
  /** The link fd when not pinned (closing it detaches); null when pinned. */
  fd: number | null;
  pinPath: string | null;
}

export interface LinkState {
  id: number;
  /** enum bpf_link_type (6 = XDP). */
  type: number;
  progId: number;
  /** For XDP links: the interface; 0 once the interface is gone. */
  ifindex: number;
}

/** Attach through a bpf_link (BPF_XDP); netlink attachments and other links on the hook make it fail with EBUSY / EEXIST. */
export function attachXdpLink(iface: Iface, progFd: number, options: AttachXdpLinkOptions = {}): XdpLink {
  const ifindex = ifindexOf(iface);
  const mode = options.mode ?? 'auto';
  const mark = libbpfLogMark();
  const fd = libbpf.bpf_link_create(progFd, ifindex, BPF_XDP, {
    sz: SIZEOF.bpf_link_create_opts, flags: MODE_FLAGS[mode], iter_info: null, iter_info_len: 0, target_btf_id: 0,
    _union: { flags: 0, cnt: 0, syms: null, addrs: null, cookies: null },
  });
  if (fd < 0) {
    throw bpfFailure('ERR_BPF_ATTACH', `cannot create an XDP link for program fd ${progFd} on ${describe(iface, ifindex)} (mode ${mode})`,
      fd, { hint: XDP_HINTS[errnoName(fd)], logSince: mark, details: { ifindex, progFd, mode } });
  }
  try {
    const state = linkInfo(fd);
    if (options.pinPath !== undefined) {
      pinFd(fd, options.pinPath, `the XDP link on ${describe(iface, ifindex)}`, 'ERR_BPF_ATTACH');
      closeQuietly(fd);
      return { linkId: state.id, progId: state.progId, ifindex, fd: null, pinPath: options.pinPath };
    }
    return { linkId: state.id, progId: state.progId, ifindex, fd, pinPath: null };
  } catch (err) {
    closeQuietly(fd); // unpinned: closing the only fd detaches again
    throw err;
  }
}

/** Run `fn` with a link fd: a pinned path is opened (and closed after), an fd is used as is. */
function withLink<T>(link: string | number, fn: (fd: number) => T): T {
  if (typeof link === 'number') return fn(link);
  const fd = openPinnedFd(link, 'link', 'ERR_BPF_ATTACH');
  try {
    return fn(fd);
  } finally {
    closeQuietly(fd);
  }
}

/** A link's id, type, program and (XDP) interface. `link`: pin path or fd. */
export function linkInfo(link: string | number): LinkState {
  return withLink(link, (fd) => {
    const buf = Buffer.alloc(SIZEOF.bpf_link_info);
    const len: [number] = [buf.length];
    const ret = libbpf.bpf_obj_get_info_by_fd(fd, buf, len);
    if (ret < 0) throw bpfFailure('ERR_BPF_ATTACH', `cannot read the info of link ${String(link)}`, ret);
    const info = koffi.decode(buf, LIBBPF_STRUCTS.bpf_link_info) as { type: number; id: number; prog_id: number; _union: Uint32Array };
    return { id: info.id, type: info.type, progId: info.prog_id, ifindex: info._union[0] ?? 0 };
  });
}

/**
 * Swap the link's program atomically (bpf_link_update): packets see either the old or
 * the new program, never none. With expectedProgFd, only if that program is the
 * current one (BPF_F_REPLACE), so two agents cannot race each other.
 */
export function updateLink(link: string | number, newProgFd: number, options: { expectedProgFd?: number } = {}): void {
  withLink(link, (fd) => {
    const expected = options.expectedProgFd;
    const mark = libbpfLogMark();
    const ret = libbpf.bpf_link_update(fd, newProgFd, {
      sz: SIZEOF.bpf_link_update_opts,
      flags: expected === undefined ? 0 : BPF_F_REPLACE,
      old_prog_fd: expected ?? 0,
    });
    if (ret < 0) {
      const hints: Record<string, string> = {
        EPERM: 'the link\'s current program is not the expected one, or the process lacks CAP_NET_ADMIN',
        EINVAL: 'the new program\'s type or attach type does not match the link',
        ENOLINK: 'the link is detached (its interface is gone)',
      };
      throw bpfFailure('ERR_BPF_ATTACH', `cannot update link ${String(link)} to program fd ${newProgFd}`, ret,
        { hint: hints[errnoName(ret)], logSince: mark, details: { link: String(link), newProgFd } });
    }
  });
}

/**
 * Detach a link for good. A pin path is opened, detached (bpf_link_detach, so other
 * holders of the link cannot keep the program attached), unpinned and closed. Returns
 * false if nothing was pinned at the path. An fd is only detached; the caller closes it.
 */
export function detachLink(link: string | number): boolean {
  const fd = typeof link === 'number' ? link : openPinnedFd(link, 'link', 'ERR_BPF_ATTACH', true);
  if (fd === null) return false;
  let ret: number;
  try {
    ret = libbpf.bpf_link_detach(fd);
  } finally {
    // Unpin even if the detach failed: once the pin and this fd are gone, the link is
    // released, which detaches the program unless another process holds the link.
    if (typeof link === 'string') {
      unpin(link);
      closeQuietly(fd);
    }
  }
  // ENOLINK: already detached (its interface went away). EOPNOTSUPP: a kernel before
  // 5.9 without BPF_LINK_DETACH; releasing the link above detached it.
  const e = -ret;
  if (ret < 0 && e !== ENOLINK && e !== EOPNOTSUPP) {
    throw bpfFailure('ERR_BPF_ATTACH', `cannot detach link ${String(link)}`, ret, { details: { link: String(link) } });
  }
  return true;
}

// ---------------------------------------------------------------------------------
// tc ingress (the decap program)

export interface TcOptions {
  /** Filter handle (default 1): with priority, identifies the filter for detach and query. */
  handle?: number;
  /** Filter priority (default 1). */
  priority?: number;
}

export interface TcAttachment {
  ifindex: number;
  handle: number;
  priority: number;
  progId: number;
}

const TC_HINTS: Readonly<Record<string, string>> = {
  EEXIST: 'a filter with this handle and priority exists and replace was not asked',
  EINVAL: 'not a tc (SCHED_CLS) program, or no clsact qdisc / filter chain on the interface',
  ENODEV: 'no such interface in this network namespace',
  EPERM: 'tc needs CAP_NET_ADMIN / root',
  ENOENT: 'no such filter on the interface',
};

function tcHook(ifindex: number, attachPoint = BPF_TC_INGRESS): TcHook {
  return { sz: SIZEOF.bpf_tc_hook, ifindex, attach_point: attachPoint, parent: 0 };
}

function tcOpts(options: TcOptions, progFd = 0, flags = 0): TcOpts {
  const handle = options.handle ?? 1;
  const priority = options.priority ?? 1;
  // 0 would ask the kernel to pick one, and then the filter could not be found again.
  if (!Number.isInteger(handle) || handle < 1 || handle > 0xffffffff) {
    throw new FulcrumError('ERR_BPF_ATTACH', `tc filter handle must be an integer from 1 to 2^32-1, got ${handle}`);
  }
  if (!Number.isInteger(priority) || priority < 1 || priority > 0xffff) {
    throw new FulcrumError('ERR_BPF_ATTACH', `tc filter priority must be an integer from 1 to 65535, got ${priority}`);
  }
  return { sz: SIZEOF.bpf_tc_opts, prog_fd: progFd, flags, prog_id: 0, handle, priority };
}

/** Whether a failed tc query / detach / destroy only means "nothing there". */
function tcAbsent(ret: number): boolean {
  // ENOENT: no filter with this priority; EINVAL: no clsact qdisc ("Parent Qdisc doesn't
  // exists") or no filter chain left. Handle and priority were validated above, so
  // EINVAL is not about the arguments.
  return ret === -ENOENT || ret === -EINVAL;
}

/**
 * Attach a tc program at ingress (direct-action), creating the clsact qdisc if there
 * is none. An existing filter with the same handle and priority is replaced
 * atomically unless replace is false.
 */
export function attachTcIngress(iface: Iface, progFd: number, options: TcOptions & { replace?: boolean } = {}): TcAttachment {
  const ifindex = ifindexOf(iface);
  const opts = tcOpts(options, progFd, options.replace === false ? 0 : BPF_TC_F_REPLACE);
  const hook = tcHook(ifindex);
  const mark = libbpfLogMark();
  const created = libbpf.bpf_tc_hook_create(hook);
  if (created < 0 && -created !== EEXIST) {
    throw bpfFailure('ERR_BPF_ATTACH', `cannot create the clsact qdisc on ${describe(iface, ifindex)}`, created,
      { hint: TC_HINTS[errnoName(created)], logSince: mark, details: { ifindex } });
  }
  const ret = libbpf.bpf_tc_attach(hook, opts);
  if (ret < 0) {
    throw bpfFailure('ERR_BPF_ATTACH', `cannot attach tc program fd ${progFd} at ingress of ${describe(iface, ifindex)}`, ret,
      { hint: TC_HINTS[errnoName(ret)], logSince: mark, details: { ifindex, progFd, handle: opts.handle, priority: opts.priority } });
  }
  return { ifindex, handle: opts.handle, priority: opts.priority, progId: opts.prog_id };
}

/** The id of the program in the ingress filter (handle, priority), 0 if there is none. */
export function queryTcIngress(iface: Iface, options: TcOptions = {}): number {
  const ifindex = ifindexOf(iface);
  const opts = tcOpts(options);
  const mark = libbpfLogMark();
  const ret = libbpf.bpf_tc_query(tcHook(ifindex), opts);
  if (ret === 0) return opts.prog_id;
  if (tcAbsent(ret)) return 0;
  throw bpfFailure('ERR_BPF_ATTACH', `cannot query tc ingress of ${describe(iface, ifindex)}`, ret,
    { hint: TC_HINTS[errnoName(ret)], logSince: mark, details: { ifindex } });
}

/** Remove the ingress filter (handle, priority). False if it was not there. Other filters and the qdisc stay. */
export function detachTcIngress(iface: Iface, options: TcOptions = {}): boolean {
  const ifindex = ifindexOf(iface);
  const mark = libbpfLogMark();
  const ret = libbpf.bpf_tc_detach(tcHook(ifindex), tcOpts(options));
  if (ret === 0) return true;
  if (tcAbsent(ret)) return false;
  throw bpfFailure('ERR_BPF_ATTACH', `cannot detach tc ingress filter from ${describe(iface, ifindex)}`, ret,
    { hint: TC_HINTS[errnoName(ret)], logSince: mark, details: { ifindex } });
}

/**
 * Delete the clsact qdisc: every tc program on the interface, ingress and egress,
 * including other tools' (only for interfaces Fulcrum owns). False if there was none.
 */
export function destroyClsact(iface: Iface): boolean {
  const ifindex = ifindexOf(iface);
  const mark = libbpfLogMark();
  const ret = libbpf.bpf_tc_hook_destroy(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS));
  if (ret === 0) return true;
  if (tcAbsent(ret)) return false;
  throw bpfFailure('ERR_BPF_ATTACH', `cannot delete the clsact qdisc of ${describe(iface, ifindex)}`, ret,
    { hint: TC_HINTS[errnoName(ret)], logSince: mark, details: { ifindex } });
}

// ---------------------------------------------------------------------------------
// The same, inside another network namespace

const NETNS_OPS = {
  ifindexOf, attachXdp, detachXdp, queryXdp, xdpProgramId, attachXdpLink, attachTcIngress, queryTcIngress,
  detachTcIngress, destroyClsact, disableGro, groEnabled,
} as const;

export type NetnsOps = typeof NETNS_OPS;
export type NetnsOp = keyof NetnsOps;

/**
 * Run one of this module's interface functions inside the network namespace at
 * `nsPath` (e.g. /run/netns/pod-x, /proc/<pid>/ns/net), on a worker thread (see
 * netns.ts). Interface names resolve in that namespace; fds are shared with it.
 *
 *   const { progId } = await inNetns('/proc/1234/ns/net', 'attachTcIngress', 'eth0', decapFd);
 *
 * Link updates and detaches by pin path need no namespace: call them directly.
 */
export function inNetns<K extends NetnsOp>(nsPath: string, op: K, ...args: Parameters<NetnsOps[K]>):
  Promise<ReturnType<NetnsOps[K]>> {
  return inNetnsWith({}, nsPath, op, ...args);
}

/** inNetns with options (timeout). */
export function inNetnsWith<K extends NetnsOp>(options: InNetnsOptions, nsPath: string, op: K,
  ...args: Parameters<NetnsOps[K]>): Promise<ReturnType<NetnsOps[K]>> {
  if (!(op in NETNS_OPS)) throw new FulcrumError('ERR_INTERNAL', `inNetns: unknown operation ${String(op)}`);
  return runInNetns<ReturnType<NetnsOps[K]>>(nsPath, import.meta.url, op, args, options);
}
