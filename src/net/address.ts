import net from 'node:net'
import { UsageError } from '../errors'
import type { Endpoint } from '../tracker/flow'

/**
 * Parse "HOST:PORT", "[V6]:PORT" or ":PORT" (host defaults to 127.0.0.1). `localhost` means 127.0.0.1.
 * `listen`: an address to bind, where port 0 means any free port.
 */
export function parseEndpoint (s: string, what = 'address', listen = false): Endpoint {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s.trim())
  if (m === null) throw new UsageError(`${what} "${s}" is not HOST:PORT`)
  let host = m[1] ?? m[2]
  if (host === '' || host === 'localhost') host = '127.0.0.1'
  if (net.isIP(host) === 0) throw new UsageError(`${what} "${s}": host must be an IP address`)
  const port = Number(m[3])
  if (port < (listen ? 0 : 1) || port > 65535) throw new UsageError(`${what} "${s}": port out of range`)
  return { address: host, port }
}

export function formatEndpoint (e: Endpoint): string {
  return net.isIPv6(e.address) ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
}

const LOOPBACK = new net.BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')
/** 127.x.x.x, ::1, and 127.x.x.x written as IPv6 in any form (::ffff:127.0.0.1, ::ffff:7f00:1: what a browser sends). */
export const isLoopbackAddress = (a: string): boolean => net.isIPv4(a) ? LOOPBACK.check(a, 'ipv4') : net.isIPv6(a) && LOOPBACK.check(a, 'ipv6')

/** May one more connection come from `addr`, which has `open` already? Off loopback at most `max`; loopback (every local process) is not capped per address. */
export function connectionAllowedFrom (addr: string, open: number, max: number): boolean {
  return isLoopbackAddress(addr) || open < max
}

/**
 * Whose connections count together against the per-address cap: one host address, written one
 * way (an IPv4 address also as IPv4-mapped IPv6, an IPv6 address in any of its spellings, without
 * its zone). Not an IPv6 /64: a LAN is one /64, so every peer of an IPv6 LAN counted as one
 * address and a seeder took 16 of them at most.
 */
export function addressGroup (addr: string): string {
  const a = addr.replace(/%.*$/, '').toLowerCase()
  if (!net.isIPv6(a)) return a
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a)
  if (mapped !== null) return mapped[1]
  const [head, tail] = a.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const words = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t]
  return words.map((w) => parseInt(w, 16).toString(16)).join(':')
}

/**
 * Connections open per remote address (or per group of addresses: see `addressGroup`), for a
 * server that lets no one address take all its slots. Loopback is neither capped nor counted
 * (every local process is 127.0.0.1).
 */
export class AddressCounts {
  private readonly open = new Map<string, number>()
  constructor (private readonly max: number, private readonly group: (addr: string) => string = (a) => a) {}

  /** May one more connection come from `addr`? */
  allows (addr: string): boolean { return connectionAllowedFrom(addr, this.open.get(this.group(addr)) ?? 0, this.max) }

  /** A connection from `addr` opened. */
  add (addr: string): void {
    if (isLoopbackAddress(addr)) return
    const g = this.group(addr)
    this.open.set(g, (this.open.get(g) ?? 0) + 1)
  }

  /** A connection from `addr` closed. */
  remove (addr: string): void {
    const g = this.group(addr)
    const n = this.open.get(g)
    if (n === undefined) return
    if (n <= 1) this.open.delete(g); else this.open.set(g, n - 1)
  }

  clear (): void { this.open.clear() }
}
