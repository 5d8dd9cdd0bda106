import { ProtocolError } from '../errors'
import { MAX_FRAME_BYTES, MAX_HEADER_BYTES } from '../limits'
import { decodeFrameHeader, FRAME_PREFIX_BYTES } from './codec'
import type { PeerMessage } from './messages'

/** A decoded frame: its validated header and, for `piece`, the raw payload. */
export interface Frame {
  msg: PeerMessage
  payload?: Buffer
}

export interface FrameDecoderOptions {
  maxFrameBytes?: number
  maxHeaderBytes?: number
  /**
   * The chunks pushed are reused by the caller after `push` returns (a socket reading into one
   * static buffer): nothing may keep a view of them, so partial heads and payloads are copied.
   */
  transientChunks?: boolean
  /** Where payload buffers come from (a pool); by default fresh allocations. */
  allocPayload?: (n: number) => Buffer
}

/**
 * Splits a TCP byte stream into frames (layout in codec.ts). Pure: feed chunks, get frames.
 * Buffers at most one frame: a length prefix over the cap throws before anything is allocated,
 * and a piece payload is copied into one buffer of exactly its announced size as it arrives.
 * After a throw the stream is unusable: the caller closes the connection.
 */
export class FrameDecoder {
  private readonly maxFrame: number
  private readonly maxHeader: number
  private pending: Buffer[] = []
  private pendingBytes = 0
  private msg: PeerMessage | null = null
  private payload: Buffer | null = null
  private payloadFilled = 0
  private broken = false
  private readonly transient: boolean
  private readonly alloc: (n: number) => Buffer

  constructor (opts: FrameDecoderOptions = {}) {
    this.maxFrame = opts.maxFrameBytes ?? MAX_FRAME_BYTES
    this.maxHeader = opts.maxHeaderBytes ?? MAX_HEADER_BYTES
    this.transient = opts.transientChunks ?? false
    this.alloc = opts.allocPayload ?? ((n) => Buffer.allocUnsafe(n))
  }

  /** Bytes held between calls (a partial frame). */
  get buffered (): number { return this.pendingBytes + this.payloadFilled }

  push (chunk: Buffer): Frame[] {
    if (this.broken) throw new ProtocolError('frame stream already failed')
    try {
      return this.pushInner(chunk)
    } catch (err) {
      this.broken = true
      this.pending = []
      this.pendingBytes = 0
      this.payload = null
      this.payloadFilled = 0
      throw err
    }
  }

  private pushInner (chunk: Buffer): Frame[] {
    const out: Frame[] = []
    let c = chunk
    while (c.length > 0) {
      if (this.payload !== null) {
        // filling a piece payload
        const need = this.payload.length - this.payloadFilled
        const n = Math.min(need, c.length)
        c.copy(this.payload, this.payloadFilled, 0, n)
        this.payloadFilled += n
        c = c.subarray(n)
        if (this.payloadFilled === this.payload.length) {
          out.push({ msg: this.msg as PeerMessage, payload: this.payload })
          this.msg = null; this.payload = null; this.payloadFilled = 0
        }
        continue
      }
      this.pending.push(c); this.pendingBytes += c.length
      c = Buffer.alloc(0)
      let keep = true
      // parse as many whole heads as we can from pending
      while (this.payload === null && this.pendingBytes >= FRAME_PREFIX_BYTES) {
        const head = this.peek(FRAME_PREFIX_BYTES)
        const total = head.readUInt32BE(0)
        const headerLen = head.readUInt32BE(4)
        if (total + 4 > this.maxFrame) throw new ProtocolError(`frame of ${total + 4} bytes exceeds ${this.maxFrame}`)
        if (headerLen === 0 || headerLen > this.maxHeader || headerLen + 4 > total) throw new ProtocolError(`bad frame header length ${headerLen}`)
        if (this.pendingBytes < FRAME_PREFIX_BYTES + headerLen) break
        const all = this.take(FRAME_PREFIX_BYTES + headerLen)
        const msg = decodeFrameHeader(all.subarray(FRAME_PREFIX_BYTES))
        const payloadLen = total - 4 - headerLen
        if (msg.type === 'piece') {
          if (msg.pieceSize !== payloadLen) throw new ProtocolError(`piece header says ${msg.pieceSize} bytes, frame carries ${payloadLen}`)
        } else if (msg.type === 'hashes') {
          if (msg.count * 32 !== payloadLen) throw new ProtocolError(`hashes header says ${msg.count} hashes, frame carries ${payloadLen} bytes`)
        } else if (payloadLen !== 0) {
          throw new ProtocolError(`${msg.type} frame carries an unexpected payload`)
        }
        if (payloadLen === 0) {
          out.push(msg.type === 'piece' || msg.type === 'hashes' ? { msg, payload: Buffer.alloc(0) } : { msg })
          continue
        }
        if (!this.transient && this.pendingBytes >= payloadLen && this.pending[0].length >= payloadLen) {
          // whole payload inside one received chunk: no copy
          out.push({ msg, payload: this.take(payloadLen) })
          continue
        }
        this.msg = msg
        this.payload = this.alloc(payloadLen)
        this.payloadFilled = 0
        // move what is pending into the payload, then continue with the rest of the chunks
        const rest = this.pending; this.pending = []; this.pendingBytes = 0
        keep = false
        for (const r of rest) out.push(...this.pushInner(r))
        return out
      }
      // what stays pending must outlive a transient chunk
      if (keep && this.transient && this.pendingBytes > 0) this.pending = [Buffer.concat(this.pending)] // concat copies
    }
    return out
  }

  /** The first n pending bytes, without consuming them. */
  private peek (n: number): Buffer {
    if (this.pending[0].length >= n) return this.pending[0].subarray(0, n)
    const merged = Buffer.concat(this.pending)
    this.pending = [merged]
    return merged.subarray(0, n)
  }

  /** Consume and return the first n pending bytes. */
  private take (n: number): Buffer {
    const b = this.peek(n)
    const first = this.pending[0]
    if (first.length === n) this.pending.shift()
    else this.pending[0] = first.subarray(n)
    this.pendingBytes -= n
    return b
  }
}
