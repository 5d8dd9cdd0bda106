import { encode } from 'cbor-x'
import { encodeFrameHead, FRAME_PREFIX_BYTES } from '../../src/protocol/codec'
import { FrameDecoder, type Frame } from '../../src/protocol/frames'
import type { PeerMessage } from '../../src/protocol/messages'

const H = 'c0ffee00'.repeat(8)
const PROTOCOL = expect.objectContaining({ name: 'ProtocolError', code: 'ERR_PROTOCOL' })

/** Deterministic pseudo-random numbers (xorshift32). */
function prng (seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s }
}

function bytes (n: number, seed: number): Buffer {
  const rand = prng(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = rand() & 0xff
  return b
}

const piece = (req: number, payload: Buffer, offset = 0): [PeerMessage, Buffer] =>
  [{ type: 'piece', req, pieceSize: payload.length, offset, totalPieces: 9, clusterName: H }, payload]

/** One whole frame on the wire. */
function frame (msg: PeerMessage, payload?: Buffer): Buffer {
  const head = encodeFrameHead(msg, payload?.length ?? 0)
  return payload === undefined ? head : Buffer.concat([head, payload])
}

/** A raw frame with a hand-made prefix: L = 4 + header + payload, H = header.length. */
function rawFrame (header: Buffer, payload = Buffer.alloc(0), total = 4 + header.length + payload.length, headerLen = header.length): Buffer {
  const prefix = Buffer.alloc(FRAME_PREFIX_BYTES)
  prefix.writeUInt32BE(total, 0)
  prefix.writeUInt32BE(headerLen, 4)
  return Buffer.concat([prefix, header, payload])
}

/** A mixed stream: every message kind, pieces of several sizes (empty, tiny, bigger than a chunk). */
const stream: Array<[PeerMessage, Buffer?]> = [
  [{ type: 'find_cluster', req: 1, fileId: H }],
  piece(2, bytes(70_000, 2), 0),
  [{ type: 'cluster', req: 3, fileId: H, peers: [{ nodeId: 'ab'.repeat(16), host: '10.0.0.2', port: 4000 }] }],
  piece(4, Buffer.alloc(0), 16384),
  [{ type: 'probe', req: 5, fileId: H }],
  piece(6, bytes(1, 6), 32768),
  piece(7, bytes(5000, 7), 49152),
  [{ type: 'have', req: 8, fileId: H, totalPieces: 9, bitfield: Buffer.from([0xff, 0x80]) }],
  [{ type: 'leech', req: 9, hash: H, size: 140_000, offset: 16384, blockSize: 16384, pieces: 9 }],
  piece(10, bytes(16384, 10), 65536),
  [{ type: 'error', req: 11, code: 'BUSY', message: 'later' }],
]
const wire = Buffer.concat(stream.map(([m, p]) => frame(m, p)))

/** What a consumer sees: messages plus payload bytes (copied, so later pushes can't change them). */
function summary (frames: Frame[]): Array<{ msg: PeerMessage, payload?: string }> {
  return frames.map((f) => f.payload === undefined ? { msg: f.msg } : { msg: f.msg, payload: f.payload.toString('hex') })
}
const expected = summary(stream.map(([msg, payload]) => payload === undefined ? { msg } : { msg, payload }))

/** Feeds `chunks` to a fresh decoder, collecting frames and checking `buffered` after each push. */
function feed (chunks: Buffer[], dec = new FrameDecoder()): { frames: Frame[], maxBuffered: number, dec: FrameDecoder } {
  const frames: Frame[] = []
  let maxBuffered = 0
  for (const c of chunks) {
    // snapshot payloads as they come out: a consumer may hand them on immediately
    for (const f of dec.push(c)) frames.push(f.payload === undefined ? f : { msg: f.msg, payload: Buffer.from(f.payload) })
    maxBuffered = Math.max(maxBuffered, dec.buffered)
  }
  return { frames, maxBuffered, dec }
}

function chunksOf (buf: Buffer, sizes: () => number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < buf.length;) {
    const n = Math.max(1, sizes())
    out.push(buf.subarray(i, i + n))
    i += n
  }
  return out
}

/** Copies each chunk into its own buffer, as a socket delivers them. */
const own = (chunks: Buffer[]): Buffer[] => chunks.map((c) => Buffer.from(c))

const largestFrame = Math.max(...stream.map(([m, p]) => frame(m, p).length))

describe('FrameDecoder', () => {
  describe('chunk boundaries', () => {
    it('decodes many frames delivered in one chunk', () => {
      const { frames, dec } = feed([wire])
      expect(summary(frames)).toEqual(expected)
      expect(dec.buffered).toBe(0)
    })

    it('decodes the same frames delivered one byte at a time', () => {
      const { frames, maxBuffered, dec } = feed(own(chunksOf(wire, () => 1)))
      expect(summary(frames)).toEqual(expected)
      expect(dec.buffered).toBe(0)
      expect(maxBuffered).toBeLessThan(largestFrame)
    })

    it.each([2, 3, 7, 8, 9, 100, 4096, 65_536])('decodes the same frames in chunks of %i bytes', (n) => {
      const { frames, dec } = feed(own(chunksOf(wire, () => n)))
      expect(summary(frames)).toEqual(expected)
      expect(dec.buffered).toBe(0)
    })

    it.each([1, 2, 3, 4, 5])('decodes the same frames in random chunk sizes (seed %i)', (seed) => {
      const rand = prng(seed * 7919)
      const { frames, maxBuffered, dec } = feed(own(chunksOf(wire, () => rand() % 20_000)))
      expect(summary(frames)).toEqual(expected)
      expect(dec.buffered).toBe(0)
      expect(maxBuffered).toBeLessThan(largestFrame)
    })

    it('decodes identically split in two at every byte position', () => {
      const small = Buffer.concat([
        frame({ type: 'probe', req: 1, fileId: H }),
        frame(...piece(2, bytes(40, 40))),
        frame({ type: 'error', req: 3, code: 'X', message: 'y' }),
      ])
      const want = feed([small]).frames.map((f) => ({ msg: f.msg, payload: f.payload?.toString('hex') }))
      expect(want).toHaveLength(3)
      for (let i = 1; i < small.length; i++) {
        const { frames, dec } = feed(own([small.subarray(0, i), small.subarray(i)]))
        expect(frames.map((f) => ({ msg: f.msg, payload: f.payload?.toString('hex') }))).toEqual(want)
        expect(dec.buffered).toBe(0)
      }
    })

    it('emits a frame as soon as its last byte arrives, not later', () => {
      const dec = new FrameDecoder()
      const a = frame({ type: 'probe', req: 1, fileId: H })
      expect(dec.push(a.subarray(0, a.length - 1))).toEqual([])
      expect(dec.buffered).toBe(a.length - 1)
      expect(dec.push(a.subarray(a.length - 1))).toEqual([{ msg: { type: 'probe', req: 1, fileId: H } }])
      expect(dec.buffered).toBe(0)
    })

    it('accepts empty chunks anywhere', () => {
      const dec = new FrameDecoder()
      const a = frame(...piece(1, bytes(10, 1)))
      expect(dec.push(Buffer.alloc(0))).toEqual([])
      expect(dec.push(a.subarray(0, 12))).toEqual([])
      expect(dec.push(Buffer.alloc(0))).toEqual([])
      const out = dec.push(a.subarray(12))
      expect(out).toHaveLength(1)
      expect(dec.push(Buffer.alloc(0))).toEqual([])
    })
  })

  describe('piece payloads', () => {
    it('are exact when the payload arrives with its header', () => {
      const payload = bytes(30_000, 99)
      const [f] = new FrameDecoder().push(frame(...piece(1, payload)))
      expect(f.payload?.length).toBe(payload.length)
      expect(Buffer.compare(f.payload as Buffer, payload)).toBe(0)
    })

    it('are exact when the payload trickles in after its header', () => {
      const payload = bytes(30_000, 98)
      const all = frame(...piece(1, payload))
      const dec = new FrameDecoder()
      const out: Frame[] = []
      for (const c of own(chunksOf(all, () => 777))) out.push(...dec.push(c))
      expect(out).toHaveLength(1)
      expect(Buffer.compare(out[0].payload as Buffer, payload)).toBe(0)
    })

    it('spanning several chunks are copied out, so they survive the caller reusing its chunk buffer', () => {
      const payload = bytes(20_000, 97)
      const all = frame(...piece(1, payload))
      const dec = new FrameDecoder()
      const chunk = Buffer.alloc(1000)
      const out: Frame[] = []
      for (let i = 0; i < all.length; i += 1000) {
        const n = all.copy(chunk, 0, i, i + 1000)
        out.push(...dec.push(chunk.subarray(0, n)))
        chunk.fill(0)
      }
      expect(out).toHaveLength(1)
      expect(Buffer.compare(out[0].payload as Buffer, payload)).toBe(0)
    })

    it('an empty piece comes with an empty payload', () => {
      const [f] = new FrameDecoder().push(frame(...piece(1, Buffer.alloc(0))))
      expect(f.msg).toMatchObject({ type: 'piece', pieceSize: 0 })
      expect(f.payload).toEqual(Buffer.alloc(0))
    })
  })

  describe('refuses with ERR_PROTOCOL', () => {
    it('a length prefix over maxFrameBytes as soon as the 8-byte prefix is in, before allocating', () => {
      const alloc = jest.spyOn(Buffer, 'allocUnsafe')
      const allocSafe = jest.spyOn(Buffer, 'alloc')
      try {
        const dec = new FrameDecoder({ maxFrameBytes: 1024 })
        const prefix = Buffer.alloc(FRAME_PREFIX_BYTES)
        prefix.writeUInt32BE(0xffffffff, 0)
        prefix.writeUInt32BE(16, 4)
        expect(dec.push(prefix.subarray(0, 7))).toEqual([])
        expect(() => dec.push(prefix.subarray(7))).toThrow(PROTOCOL)
        const big = (s: jest.SpyInstance): number[] => s.mock.calls.map((c) => c[0] as number).filter((n) => n > 1024)
        expect(big(alloc)).toEqual([])
        expect(big(allocSafe)).toEqual([])
      } finally {
        alloc.mockRestore(); allocSafe.mockRestore()
      }
    })

    it('a frame one byte over maxFrameBytes, while one at the limit passes', () => {
      const f = frame(...piece(1, bytes(100, 1)))
      expect(new FrameDecoder({ maxFrameBytes: f.length }).push(f)).toHaveLength(1)
      expect(() => new FrameDecoder({ maxFrameBytes: f.length - 1 }).push(f)).toThrow(PROTOCOL)
    })

    it('the largest length prefix under the default limits', () => {
      expect(() => new FrameDecoder().push(rawFrame(Buffer.alloc(0), Buffer.alloc(0), 0xffffffff, 10))).toThrow(PROTOCOL)
    })

    it('a header length of 0', () => {
      expect(() => new FrameDecoder().push(rawFrame(Buffer.alloc(0), Buffer.alloc(4), 8, 0))).toThrow(PROTOCOL)
    })

    it('a header length larger than the frame', () => {
      const header = Buffer.from(encode({ type: 'probe', req: 1, fileId: H }))
      expect(() => new FrameDecoder().push(rawFrame(header, Buffer.alloc(0), 4 + header.length - 1))).toThrow(PROTOCOL)
      // a frame length below 4 cannot even hold the header-length field
      expect(() => new FrameDecoder().push(rawFrame(header, Buffer.alloc(0), 3, 1))).toThrow(PROTOCOL)
    })

    it('a header length over maxHeaderBytes, before the header arrives', () => {
      const dec = new FrameDecoder({ maxHeaderBytes: 16 })
      const f = frame({ type: 'probe', req: 1, fileId: H })
      expect(f.readUInt32BE(4)).toBeGreaterThan(16)
      expect(() => dec.push(f.subarray(0, FRAME_PREFIX_BYTES))).toThrow(PROTOCOL)
    })

    it('a header that is not CBOR, or not a peer message', () => {
      expect(() => new FrameDecoder().push(rawFrame(Buffer.from([0xff, 0xfe, 0xfd])))).toThrow(PROTOCOL)
      expect(() => new FrameDecoder().push(rawFrame(Buffer.from(encode({ type: 'announce', tx: 1 }))))).toThrow(PROTOCOL)
      expect(() => new FrameDecoder().push(rawFrame(Buffer.from(encode([1, 2, 3]))))).toThrow(PROTOCOL)
    })

    it('a non-piece frame that carries a payload', () => {
      const header = Buffer.from(encode({ type: 'probe', req: 1, fileId: H }))
      expect(() => new FrameDecoder().push(rawFrame(header, Buffer.from([1, 2, 3])))).toThrow(PROTOCOL)
      // even when only the header has arrived so far: the prefix already announces the payload
      const dec = new FrameDecoder()
      const f = rawFrame(header, Buffer.alloc(1000))
      expect(() => dec.push(f.subarray(0, FRAME_PREFIX_BYTES + header.length))).toThrow(PROTOCOL)
    })

    it('a piece whose pieceSize differs from its payload length', () => {
      const header = (pieceSize: number): Buffer => Buffer.from(encode({ type: 'piece', req: 1, pieceSize, offset: 0, totalPieces: 1, clusterName: H }))
      expect(() => new FrameDecoder().push(rawFrame(header(10), Buffer.alloc(9)))).toThrow(PROTOCOL)
      expect(() => new FrameDecoder().push(rawFrame(header(9), Buffer.alloc(10)))).toThrow(PROTOCOL)
      expect(() => new FrameDecoder().push(rawFrame(header(5), Buffer.alloc(0)))).toThrow(PROTOCOL)
      expect(new FrameDecoder().push(rawFrame(header(10), Buffer.alloc(10)))).toHaveLength(1)
    })

    it('further pushes after a failure, even of valid frames', () => {
      const dec = new FrameDecoder()
      const good = frame({ type: 'probe', req: 1, fileId: H })
      expect(dec.push(good)).toHaveLength(1)
      expect(() => dec.push(rawFrame(Buffer.from([0xff])))).toThrow(PROTOCOL)
      expect(() => dec.push(good)).toThrow(PROTOCOL)
      expect(() => dec.push(Buffer.alloc(0))).toThrow(PROTOCOL)
    })

    it('a bad frame after good ones in the same chunk (the good ones are not returned)', () => {
      const dec = new FrameDecoder()
      const chunk = Buffer.concat([frame({ type: 'probe', req: 1, fileId: H }), rawFrame(Buffer.from([0xff]))])
      expect(() => dec.push(chunk)).toThrow(PROTOCOL)
    })

    it('random garbage streams, quickly', () => {
      const rand = prng(1234)
      for (let i = 0; i < 200; i++) {
        const dec = new FrameDecoder({ maxFrameBytes: 1 << 20 })
        const junk = bytes(64 + (rand() % 256), rand())
        let threw = false
        try { dec.push(junk) } catch (err) { threw = true; expect(err).toEqual(PROTOCOL) }
        // junk either throws or is waiting for more of an (allowed) frame: never more than that
        if (!threw) expect(dec.buffered).toBeLessThanOrEqual(junk.length)
      }
    })
  })

  describe('buffered', () => {
    it('counts the bytes of the partial frame held between pushes and returns to 0', () => {
      const dec = new FrameDecoder()
      const payload = bytes(10_000, 5)
      const f = frame(...piece(1, payload))
      const head = f.length - payload.length
      dec.push(f.subarray(0, 5))
      expect(dec.buffered).toBe(5)
      dec.push(f.subarray(5, head - 1))
      expect(dec.buffered).toBe(head - 1)
      // once the header is parsed only payload bytes are held
      dec.push(f.subarray(head - 1, 5000))
      expect(dec.buffered).toBe(5000 - head)
      dec.push(f.subarray(5000, f.length - 1))
      expect(dec.buffered).toBe(payload.length - 1)
      expect(dec.push(f.subarray(f.length - 1))).toHaveLength(1)
      expect(dec.buffered).toBe(0)
    })

    it('stays below one frame over a long stream of piece frames', () => {
      const payload = bytes(16_384, 11)
      const one = frame(...piece(1, payload))
      const many = Buffer.concat(Array.from({ length: 64 }, () => one))
      const rand = prng(77)
      const { frames, maxBuffered, dec } = feed(own(chunksOf(many, () => rand() % 50_000)))
      expect(frames).toHaveLength(64)
      for (const f of frames) expect(Buffer.compare(f.payload as Buffer, payload)).toBe(0)
      expect(maxBuffered).toBeLessThan(one.length)
      expect(dec.buffered).toBe(0)
    })
  })
})
