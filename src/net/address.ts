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
