import net from 'node:net'
import { ProtocolError } from '../errors'
import { MAX_PATH_NAME_BYTES } from '../limits'

/** Small, strict readers for decoded CBOR values. Each throws ProtocolError on a bad value. */

export type Obj = Record<string, unknown>

export function obj (v: unknown, what = 'message'): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw new ProtocolError(`${what} is not a map`)
  return v as Obj
}

export function int (o: Obj, key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[key]
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new ProtocolError(`${key} is not an integer in [${min}, ${max}]`)
  return v
}

export function bool (o: Obj, key: string): boolean {
  const v = o[key]
  if (typeof v !== 'boolean') throw new ProtocolError(`${key} is not a boolean`)
  return v
}

export function str (o: Obj, key: string, maxBytes: number): string {
  const v = o[key]
  if (typeof v !== 'string') throw new ProtocolError(`${key} is not a string`)
  if (v.length > maxBytes || Buffer.byteLength(v) > maxBytes) throw new ProtocolError(`${key} is longer than ${maxBytes} bytes`)
  return v
}

export function optStr (o: Obj, key: string, maxBytes: number): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : str(o, key, maxBytes)
}

const HEX64 = /^[0-9a-f]{64}$/
const HEX32 = /^[0-9a-f]{32}$/

/** A SHA-256 in lower-case hex: file ids and cluster names. */
export function hash (o: Obj, key: string): string {
  const v = str(o, key, 64)
  if (!HEX64.test(v)) throw new ProtocolError(`${key} is not a hex SHA-256`)
  return v
}

export function optHash (o: Obj, key: string): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : hash(o, key)
}

/** A node id: 16 random bytes in hex. */
export function nodeId (o: Obj, key = 'nodeId'): string {
  const v = str(o, key, 32)
  if (!HEX32.test(v)) throw new ProtocolError(`${key} is not a node id`)
  return v
}

export function optNodeId (o: Obj, key: string): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : nodeId(o, key)
}

/** A file name as published (a path in its sharer's folder): non-empty, bounded. Whether it is safe on disk is checked where it is used. */
export function name (o: Obj, key = 'name'): string {
  const v = str(o, key, MAX_PATH_NAME_BYTES)
  if (v.length === 0) throw new ProtocolError(`${key} is empty`)
  return v
}

export function bytes (o: Obj, key: string, maxBytes: number): Uint8Array {
  const v = o[key]
  if (!(v instanceof Uint8Array)) throw new ProtocolError(`${key} is not a byte string`)
  if (v.length > maxBytes) throw new ProtocolError(`${key} is longer than ${maxBytes} bytes`)
  // decoded byte strings point into the receive buffer: copy so the caller owns it
  return Uint8Array.prototype.slice.call(v)
}

export function list<T> (o: Obj, key: string, maxItems: number, item: (v: unknown) => T): T[] {
  const v = o[key]
  if (!Array.isArray(v)) throw new ProtocolError(`${key} is not an array`)
  if (v.length > maxItems) throw new ProtocolError(`${key} has more than ${maxItems} items`)
  return v.map(item)
}

/** Host as given by a node: an IPv4 or IPv6 literal (names are never resolved from the wire). */
export function host (o: Obj, key = 'host'): string {
  const v = str(o, key, 45)
  if (net.isIP(v) === 0) throw new ProtocolError(`${key} is not an IP address`)
  return v
}
