/**
 * Reusable piece buffers. Fresh large buffers cost page faults on first touch and GC pressure
 * (a 1 GiB download is a thousand 1 MiB allocations); pooled ones are already mapped and hot.
 * Buffers come in power-of-two buckets (pieces are usually exactly one bucket); at most
 * `maxIdleBytes` of idle buffers are kept, the rest go to the GC.
 */
export class BufferPool {
  private readonly idle = new Map<number, Buffer[]>()
  private readonly mine = new WeakSet<ArrayBufferLike>()
  private idleBytes = 0
  /** Buffers allocated because none was idle (for tests and tuning). */
  allocated = 0

  constructor (private readonly maxIdleBytes: number, readonly maxBuffer: number) {}

  private static bucket (n: number): number {
    let b = 4096
    while (b < n) b *= 2
    return b
  }

  /** A buffer of exactly `n` bytes (a view of a pooled one); give it back with `release`. */
  get (n: number): Buffer {
    if (n > this.maxBuffer) return Buffer.allocUnsafe(n)
    const size = BufferPool.bucket(n)
    let b = this.idle.get(size)?.pop()
    if (b === undefined) { b = Buffer.allocUnsafeSlow(size); this.mine.add(b.buffer); this.allocated++ } else this.idleBytes -= size
    return n === size ? b : b.subarray(0, n)
  }

  /**
   * Take back a buffer of ours that came home through a transfer (a worker): its ArrayBuffer is a
   * new object, so it is recognised by size and made ours again.
   */
  adopt (b: Buffer): void {
    this.claim(b)
    this.release(b)
  }

  /** Recognise a buffer of ours that came back through a transfer and is still in use. */
  claim (b: Buffer): void {
    if (b.byteOffset !== 0 || b.buffer.byteLength !== BufferPool.bucket(b.buffer.byteLength) || b.buffer.byteLength > this.maxBuffer) return
    this.mine.add(b.buffer)
  }

  /** Whether `b` is a view of a buffer this pool allocated (so its memory is ours to move). */
  owns (b: Buffer): boolean { return this.mine.has(b.buffer) }

  /** Return a buffer from `get` (or a view of one). It must not be used afterwards. */
  release (b: Buffer): void {
    const size = b.buffer.byteLength
    // only our own buffers come back: anything else is left to the GC
    if (!this.mine.has(b.buffer) || b.byteOffset !== 0) return
    if (this.idleBytes + size > this.maxIdleBytes) return
    const whole = b.length === size ? b : Buffer.from(b.buffer, 0, size)
    let list = this.idle.get(size)
    if (list === undefined) { list = []; this.idle.set(size, list) }
    list.push(whole)
    this.idleBytes += size
  }

  get pooledBytes (): number { return this.idleBytes }
}
