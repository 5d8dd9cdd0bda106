import net from 'node:net'
import { Observable } from 'rxjs'
import { ConnectionClosedError, RemoteError } from '../errors'
import { MAX_OUTSTANDING_PER_CONNECTION } from '../limits'
import { log } from '../log'
import { encodeFrameHead } from '../protocol/codec'
import { FrameDecoder, type Frame } from '../protocol/frames'
import type { PeerAddress, PeerRequest } from '../protocol/messages'
import type { BufferPool } from '../storage/bufferPool'

const READ_BUFFER_BYTES = 256 * 1024

export type WithoutReq<T> = T extends unknown ? Omit<T, 'req'> : never

/** What a leecher needs of a peer: send a request, get its one reply. */
export interface PeerLink {
  readonly peer: PeerAddress
  /** Cold: sends on subscribe; emits the reply frame and completes; errors with RemoteError on an `error` reply. */
  request: (msg: WithoutReq<PeerRequest>) => Observable<Frame>
  close: () => void
}

/**
 * A client connection to one peer, multiplexing requests by `req` id. Connects on first use;
 * when the connection fails or closes, every pending request errors with ConnectionClosedError
 * and the next request reconnects.
 */
export class PeerConnection implements PeerLink {
  private sock: net.Socket | null = null
  private decoder = new FrameDecoder()
  private readonly pending = new Map<number, { next: (f: Frame) => void, fail: (e: Error) => void }>()
  private nextReq = 1
  private closed = false
  private readonly log = log.child({ module: 'peer-conn' })

  /**
   * @param pool piece payloads are read into its buffers (given back by whoever consumes them)
   */
  constructor (readonly peer: PeerAddress, private readonly pool?: BufferPool) {}

  private get label (): string { return `${this.peer.host}:${this.peer.port}` }

  private connect (): net.Socket {
    if (this.sock !== null) return this.sock
    // the socket reads into one reused buffer (no allocation per read); the decoder copies out
    // what it keeps, payloads into pooled buffers
    const readBuf = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
    const pool = this.pool
    this.decoder = new FrameDecoder({ transientChunks: true, allocPayload: pool === undefined ? undefined : (n) => pool.get(n) })
    const sock = net.connect({ host: this.peer.host, port: this.peer.port, noDelay: true, onread: { buffer: readBuf, callback: (n: number, buf: Uint8Array) => { this.onData(sock, Buffer.from(buf.buffer, buf.byteOffset, n)); return true } } })
    sock.on('error', (err) => this.drop(sock, new ConnectionClosedError(this.label, err.message)))
    sock.on('close', () => this.drop(sock, new ConnectionClosedError(this.label)))
    this.sock = sock
    return sock
  }

  private onData (sock: net.Socket, chunk: Buffer): void {
    let frames: Frame[]
    try {
      frames = this.decoder.push(chunk)
    } catch (err) {
      this.log.warn({ peer: this.label, err: (err as Error).message }, 'bad frame from peer: closing')
      this.drop(sock, new ConnectionClosedError(this.label, `bad frame: ${(err as Error).message}`))
      return
    }
    for (const f of frames) {
      const p = this.pending.get(f.msg.req)
      if (p === undefined) continue // a reply to a request we gave up on
      this.pending.delete(f.msg.req)
      if (f.msg.type === 'error') p.fail(new RemoteError(f.msg.code, f.msg.message, f.msg.retryMs))
      else p.next(f)
    }
  }

  private drop (sock: net.Socket, err: Error): void {
    if (this.sock === sock) this.sock = null
    sock.destroy()
    const all = [...this.pending.values()]
    this.pending.clear()
    for (const p of all) p.fail(err)
  }

  request (msg: WithoutReq<PeerRequest>): Observable<Frame> {
    return new Observable<Frame>((sub) => {
      if (this.closed) { sub.error(new ConnectionClosedError(this.label, 'closed')); return }
      if (this.pending.size >= MAX_OUTSTANDING_PER_CONNECTION) { sub.error(new RangeError(`more than ${MAX_OUTSTANDING_PER_CONNECTION} requests outstanding to ${this.label}`)); return }
      const req = this.nextReq
      this.nextReq = (this.nextReq % 0xffffffff) + 1
      this.pending.set(req, { next: (f) => { sub.next(f); sub.complete() }, fail: (e) => sub.error(e) })
      this.connect().write(encodeFrameHead({ ...msg, req } as PeerRequest))
      return () => { this.pending.delete(req) }
    })
  }

  /** Close the connection; pending requests fail. Safe to call twice. */
  close (): void {
    this.closed = true
    if (this.sock !== null) this.drop(this.sock, new ConnectionClosedError(this.label, 'closed'))
  }
}
