// The few libc functions the BPF binding needs that Node does not offer: formatting
// libbpf's printf-style messages (vsnprintf on its va_list), switching a thread's
// network namespace (setns), and interface-name lookups that must happen in the
// calling thread's network namespace (if_nametoindex), which /sys/class/net cannot
// give when the thread has entered a namespace other than the one /sys was mounted in;
// mounting the BPF filesystem (mount) and interface offloads (socket, ioctl SIOCETHTOOL).

import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** CLONE_NEWNET from <sched.h>: the namespace type setns() must switch. */
export const CLONE_NEWNET = 0x40000000;

/**
 * vsnprintf(buf, size, fmt, ap). `fmt` and `ap` are raw pointers exactly as libbpf
 * handed them to its print callback; `buf` is written in place.
 */
export const vsnprintf = libc.func('int vsnprintf(void *buf, size_t size, void *fmt, void *ap)') as
  (buf: Uint8Array, size: number, fmt: bigint, ap: Uint8Array | bigint) => number;

/** setns(fd, nstype): 0 or -1 with errno (koffi.errno()). Affects the calling thread only. */
export const setns = libc.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number;

/** if_nametoindex(name): the index in the calling thread's network namespace, or 0 with errno. */
export const if_nametoindex = libc.func('unsigned int if_nametoindex(const char *name)') as (name: string) => number;

/** close(fd): 0 or -1 with errno. */
export const close = libc.func('int close(int fd)') as (fd: number) => number;

/** mmap(addr, len, prot, flags, fd, offset): the mapping, or MAP_FAILED ((void *)-1) with errno. */
export const mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as
  (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => unknown;

/** munmap(addr, len): 0 or -1 with errno. */
export const munmap = libc.func('int munmap(void *addr, size_t length)') as (addr: unknown, length: number) => number;

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;

/**
 * mount(source, target, fstype, flags, data): 0 or -1 with errno (koffi.errno()). The
 * agent mounts the BPF filesystem itself (src/agent/bpf/bpffs.ts) rather than running
 * mount(8), so a host without util-linux in the image still works.
 */
export const mount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)') as
  (source: string, target: string, fstype: string, flags: number, data: string | null) => number;

export const AF_INET = 2;
export const SOCK_DGRAM = 2;

/** socket(domain, type, protocol): an fd, or -1 with errno. Created in the calling thread's network namespace. */
export const socket = libc.func('int socket(int domain, int type, int protocol)') as (domain: number, type: number, protocol: number) => number;

/**
 * struct ifreq as SIOCETHTOOL reads it (40 bytes on 64-bit): the interface name, then a
 * pointer to the ethtool command (src/agent/bpf/ethtool.ts).
 */
koffi.struct('fulcrum_ifreq_ethtool', {
  name: koffi.array('uint8', 16, 'Array'),
  data: 'void *',
  pad: koffi.array('uint8', 16, 'Array'),
});

/** ioctl(fd, SIOCETHTOOL, &ifr): 0 or -1 with errno; `data` points at the command, which the kernel fills in. */
export const ioctlEthtool = libc.func('int ioctl(int fd, unsigned long request, _Inout_ fulcrum_ifreq_ethtool *ifr)') as
  (fd: number, request: number, ifr: { name: number[]; data: Buffer; pad: number[] }) => number;
