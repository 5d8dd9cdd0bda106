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
