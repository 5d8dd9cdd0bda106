import { isUtf8 } from 'node:buffer'
import { Decoder, Encoder } from 'cbor-x'
import { ProtocolError } from '../errors'
import { MAX_DATAGRAM_BYTES, MAX_FRAME_BYTES, MAX_HEADER_BYTES } from '../limits'
import { peerMessage, trackerMessage, type PeerMessage, type TrackerMessage } from './messages'

// Records off: every datagram and frame header must decode on its own, with no shared structure table.
const encoder = new Encoder({ useRecords: false, variableMapSize: true })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })

/** Most nesting we let the CBOR decoder walk before rejecting (our messages nest 3 deep). */
const MAX_DEPTH = 8

export function encodeValue (value: unknown): Buffer {
  return encoder.encode(value)
}

function decodeValue (bytes: Uint8Array, what: string): unknown {
  const bad = cborShapeError(bytes, MAX_DEPTH)
  if (bad !== null) throw new ProtocolError(`${what} ${bad}`)
  try {
    return decoder.decode(bytes)
  } catch (err) {
    throw new ProtocolError(`${what} is not CBOR: ${(err as Error).message.slice(0, 80)}`)
  }
}

/**
 * Tracker wire: one CBOR map per UDP datagram, at most MAX_DATAGRAM_BYTES.
 */
export function encodeDatagram (msg: TrackerMessage): Buffer {
  const buf = encoder.encode(msg)
  if (buf.length > MAX_DATAGRAM_BYTES) throw new RangeError(`datagram of ${buf.length} bytes exceeds ${MAX_DATAGRAM_BYTES}`)
  return buf
}

export function decodeDatagram (buf: Uint8Array): TrackerMessage {
  if (buf.length === 0) throw new ProtocolError('empty datagram')
  if (buf.length > MAX_DATAGRAM_BYTES) throw new ProtocolError(`datagram of ${buf.length} bytes exceeds ${MAX_DATAGRAM_BYTES}`)
  return trackerMessage(decodeValue(buf, 'datagram'))
}

/**
 * Peer wire: frames on a TCP stream.
 *
 *   0         4          8                 8+H                    4+L
 *   +---------+----------+-----------------+----------------------+
 *   | L (u32) | H (u32)  | CBOR header (H) | raw payload (L-4-H)  |
 *   +---------+----------+-----------------+----------------------+
 *
 * L counts every byte after itself. Only `piece` frames carry a payload: the bytes go to the
 * socket straight from the mmap'd file, never through CBOR.
 */
export const FRAME_PREFIX_BYTES = 8

/** The 8-byte prefix and CBOR header of a frame; the caller writes `payloadBytes` raw bytes after it. */
export function encodeFrameHead (msg: PeerMessage, payloadBytes = 0): Buffer {
  const header = encoder.encode(msg)
  if (header.length > MAX_HEADER_BYTES) throw new RangeError(`frame header of ${header.length} bytes exceeds ${MAX_HEADER_BYTES}`)
  const total = 4 + header.length + payloadBytes
  if (total + 4 > MAX_FRAME_BYTES) throw new RangeError(`frame of ${total + 4} bytes exceeds ${MAX_FRAME_BYTES}`)
  const head = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + header.length)
  head.writeUInt32BE(total, 0)
  head.writeUInt32BE(header.length, 4)
  header.copy(head, FRAME_PREFIX_BYTES)
  return head
}

export function decodeFrameHeader (bytes: Uint8Array): PeerMessage {
  return peerMessage(decodeValue(bytes, 'frame header'))
}

/**
 * Walks CBOR item headers without building values, to refuse deeply nested input before the
 * recursive decoder sees it. Returns true when nesting exceeds `max` or a string claims more
 * bytes than there are (so the walk could not see what follows); other garbage is left to the
 * decoder, which rejects it.
 */
export function exceedsDepth (b: Uint8Array, max: number): boolean {
  return cborShapeError(b, max) !== null
}

/**
 * What is wrong with the shape of a CBOR value before it is decoded: nesting deeper than `max`,
 * a string claiming more bytes than there are, or a text string that is not UTF-8 (invalid CBOR,
 * RFC 8949 §5.3.1: decoders would silently turn it into replacement characters, changing names
 * and sizes). Null when the walk finds none of these.
 */
export function cborShapeError (b: Uint8Array, max: number): string | null {
  const r = walkCbor(b, max)
  return r === 'depth' ? `nests deeper than ${max}` : r === 'length' ? 'has a string longer than the input' : r === 'utf8' ? 'has text that is not UTF-8' : null
}

function walkCbor (b: Uint8Array, max: number): 'depth' | 'length' | 'utf8' | null {
  // stack of remaining item counts per open container (-1 = indefinite)
  const stack: number[] = []
  let i = 0
  let items = 0
  while (i < b.length) {
    if (++items > 100_000) return 'depth'
    const ib = b[i++]
    const major = ib >> 5
    const info = ib & 31
    let arg = 0
    if (info < 24) arg = info
    else if (info === 24) { arg = b[i]; i += 1 } else if (info === 25) { arg = (b[i] << 8) | b[i + 1]; i += 2 } else if (info === 26) { arg = ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]; i += 4 } else if (info === 27) { arg = b[i] === 0 && b[i + 1] === 0 ? (b[i + 2] * 2 ** 40) + (b[i + 3] * 2 ** 32) + (((b[i + 4] << 24) >>> 0) + (b[i + 5] << 16) + (b[i + 6] << 8) + b[i + 7]) : Number.MAX_SAFE_INTEGER; i += 8 } else if (info === 31) arg = -1
    else return null
    if (ib === 0xff) { // break of an indefinite container
      stack.pop()
      closeItem(stack)
      continue
    }
    if (major === 2 || major === 3) { // byte / text string
      if (arg > b.length - i) return 'length' // a length past the end: malformed, refuse without decoding
      if (arg >= 0) {
        if (major === 3 && !isUtf8(b.subarray(i, i + arg))) return 'utf8'
        i += arg
      } else { stack.push(-1); if (stack.length > max) return 'depth'; continue }
      closeItem(stack)
    } else if (major === 4 || major === 5) { // array / map
      const n = arg < 0 ? -1 : major === 5 ? arg * 2 : arg
      if (n === 0) { closeItem(stack); continue }
      stack.push(n)
      if (stack.length > max) return 'depth'
    } else if (major === 6) { // tag: the tagged item follows, count it as one level
      stack.push(1)
      if (stack.length > max) return 'depth'
    } else {
      closeItem(stack)
    }
  }
  return null
}

function closeItem (stack: number[]): void {
  while (stack.length > 0) {
    const top = stack.length - 1
    if (stack[top] < 0) return
    stack[top] -= 1
    if (stack[top] > 0) return
    stack.pop()
  }
}
