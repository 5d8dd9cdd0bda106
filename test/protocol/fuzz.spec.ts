import { performance } from 'node:perf_hooks'
import { encode as cborEncode, Encoder } from 'cbor-x'
import fc from 'fast-check'
import { Subject } from 'rxjs'
import { decodeDatagram, decodeFrameHeader, encodeDatagram, encodeFrameHead, FRAME_PREFIX_BYTES } from '../../src/protocol/codec'
import { FrameDecoder, type Frame } from '../../src/protocol/frames'
import { CONNECT_PAD_BYTES, MAX_HASHES_PER_FRAME, TOKEN_BYTES, type FileMetaData, type PeerMessage, type TrackerMessage, type TrackerReply, type TrackerRequest } from '../../src/protocol/messages'
import { trackerFlow, type Endpoint, type Inbound, type Outbound } from '../../src/tracker/flow'
import { Registry } from '../../src/tracker/registry'
import { MAX_BLOCK_SIZE, MAX_DATAGRAM_BYTES, MAX_FILE_SIZE, MAX_PIECES, PAGE_SIZE } from '../../src/limits'
import { seeded } from '../helpers/random'

/**
 * Property-based fuzzing of everything that reads bytes from the network (the tracker datagram
 * codec, the peer frame decoder) and of the tracker flow's replies. fast-check prints the seed
 * and the shrunk counterexample of a failure; replay it with `{ seed, path }` in fc.assert.
 * FUZZ_SCALE=10 runs ten times as many cases (the default keeps the file under a few seconds).
 */
const SCALE = Math.max(1, Number(process.env.FUZZ_SCALE ?? 1))
/**
 * `n` runs. A property passes in a second or two; the time limit only bounds shrinking of a
 * failure (a list of hundreds of requests can take minutes to shrink fully): past it fast-check
 * stops and reports the smallest counterexample so far, as a failure.
 */
const runs = (n: number): fc.Parameters<unknown> => ({ numRuns: Math.ceil(n * SCALE), interruptAfterTimeLimit: 30_000 * SCALE, markInterruptAsFailure: true })

/** A decode of at most 20 000 bytes that takes longer than this is a hang, not a slow machine. */
const SLOW_MS = 250
/** The frame decoder's cap in these specs: small, so the fuzzer reaches it. */
const MAX_FRAME = 4096

// ---------------------------------------------------------------- arbitraries: values

const hex = (chars: number): fc.Arbitrary<string> =>
  fc.uint8Array({ minLength: chars / 2, maxLength: chars / 2 }).map((b) => Buffer.from(b).toString('hex'))
/** A few fixed ids mixed with random ones, so requests collide on files and nodes. */
const pooled = (chars: number, pool: string[]): fc.Arbitrary<string> => fc.oneof(fc.constantFrom(...pool), hex(chars))
const HASH_POOL = ['0', '7', 'a', 'f'].map((c) => c.repeat(64))
const NODE_POOL = ['1', '8', 'b', 'e'].map((c) => c.repeat(32))
const hash64 = pooled(64, HASH_POOL)
const nodeId32 = pooled(32, NODE_POOL)
/** Integers in [min, max] for max beyond 2^31 (fc.integer stops there); biased to the edges. */
const uint = (max: number, min = 0): fc.Arbitrary<number> => fc.bigInt({ min: BigInt(min), max: BigInt(max) }).map(Number)
const tx = uint(0xffffffff)
const port = fc.integer({ min: 1, max: 65535 })
const size = uint(MAX_FILE_SIZE)
const name = fc.string({ minLength: 1, maxLength: 40, unit: 'binary' })
const blockSize = fc.integer({ min: 1, max: MAX_BLOCK_SIZE / PAGE_SIZE }).map((k) => k * PAGE_SIZE)
const host = fc.oneof(fc.ipV4(), fc.ipV6())
const shortText = (maxLength: number): fc.Arbitrary<string> => fc.string({ maxLength, unit: 'binary' })
const code = fc.string({ maxLength: 32, unit: 'grapheme-ascii' })
/**
 * `minLength`..`maxLength` bytes: a seeded 61-byte random pattern, repeated. Far cheaper than
 * fc.uint8Array for payloads and long noise, where the length matters (and still shrinks) more
 * than every byte being independent.
 */
const noise = (maxLength: number, minLength = 0): fc.Arbitrary<Buffer> =>
  fc.tuple(fc.integer({ min: minLength, max: maxLength }), fc.integer()).map(([n, seed]) => {
    const rand = seeded(seed)
    const pattern = Buffer.from(Array.from({ length: 61 }, () => Math.floor(rand() * 256)))
    return Buffer.alloc(n, pattern)
  })

// ---------------------------------------------------------------- arbitraries: tracker messages

/** A size of at most MAX_PIECES pieces of `blockSize`. */
const sizeFor = (blockSize: number, min = 0): fc.Arbitrary<number> => uint(blockSize * MAX_PIECES, min)
const fileMeta: fc.Arbitrary<FileMetaData> = blockSize.chain((b) => fc.record({ name, hash: hash64, size: sizeFor(b), blockSize: fc.constant(b), root: hex(64) }, { requiredKeys: ['name', 'hash', 'size', 'blockSize'] }))
  .map((m) => ({ ...m, pieces: Math.ceil(m.size / m.blockSize) }))

const nodeFile = fc.record({ fileId: hash64, pieces: uint(MAX_PIECES) }).chain(({ fileId, pieces }) =>
  uint(pieces).map((have) => ({ fileId, have, pieces })))

const nodeInfo = fc.record({
  nodeId: nodeId32, host, port, lastSeen: uint(2 ** 45),
  files: fc.array(nodeFile, { maxLength: 32 }), fileCount: uint(2 ** 20), uploaded: uint(2 ** 50), downloaded: uint(2 ** 50),
})

const publish = fc.record({
  type: fc.constant('publish' as const), tx, nodeId: nodeId32, port, name, hash: hash64, size,
  blockSize, root: hex(64), have: uint(2 ** 20),
}, { requiredKeys: ['type', 'tx', 'nodeId', 'port', 'name', 'hash', 'size'] })
  .map((m) => { if (m.blockSize === undefined) delete m.root; return m })
const announce = fc.record({ type: fc.constant('announce' as const), tx, nodeId: nodeId32, port, files: uint(2 ** 20), uploaded: uint(2 ** 50), downloaded: uint(2 ** 50) })
const queryFiles = fc.record({ type: fc.constant('query_files' as const), tx, after: hash64 }, { requiredKeys: ['type', 'tx'] })
const getNodes = fc.record({ type: fc.constant('get_nodes' as const), tx, fileId: hash64, after: nodeId32 }, { requiredKeys: ['type', 'tx'] })
const withdraw = fc.record({ type: fc.constant('withdraw' as const), tx, nodeId: nodeId32, port, fileId: hash64 })
const leave = fc.record({ type: fc.constant('leave' as const), tx, nodeId: nodeId32, port })
const connect = fc.record({ type: fc.constant('connect' as const), tx, pad: noise(1024, CONNECT_PAD_BYTES) })
/** Requests as a client builds them before it attaches a token. */
const trackerRequest: fc.Arbitrary<TrackerRequest> = fc.oneof(publish, announce, queryFiles, getNodes, withdraw, leave, connect)
const token = noise(TOKEN_BYTES, TOKEN_BYTES)
/** Requests as they go on the wire: all but connect may carry a token. */
const trackerRequestWire: fc.Arbitrary<TrackerRequest> = fc.tuple(trackerRequest, fc.option(token, { nil: undefined }))
  .map(([m, t]) => t === undefined || m.type === 'connect' ? m : { ...m, token: t })

const trackerReply: fc.Arbitrary<TrackerReply> = fc.oneof(
  fc.record({ type: fc.constant('published' as const), tx, meta: fileMeta }),
  fc.record({ type: fc.constant('announced' as const), tx, interval: fc.integer({ min: 1, max: 3_600_000 }), resync: fc.boolean() }),
  fc.record({ type: fc.constant('files' as const), tx, files: fc.array(fc.oneof(fileMeta, fc.tuple(fileMeta, uint(2 ** 20)).map(([m, holders]) => ({ ...m, holders }))), { maxLength: 20 }), next: fc.oneof(hex(64), shortText(16)) }, { requiredKeys: ['type', 'tx', 'files'] }),
  fc.record({ type: fc.constant('nodes' as const), tx, nodes: fc.array(nodeInfo, { maxLength: 3 }), next: nodeId32 }, { requiredKeys: ['type', 'tx', 'nodes'] }),
  fc.record({ type: fc.constant('withdrawn' as const), tx }),
  fc.record({ type: fc.constant('left' as const), tx }),
  fc.record({ type: fc.constant('connected' as const), tx, token }),
  fc.record({ type: fc.constant('error' as const), tx, code, message: shortText(120) }),
)
const trackerMessage: fc.Arbitrary<TrackerMessage> = fc.oneof(trackerRequestWire, trackerReply)

// ---------------------------------------------------------------- arbitraries: peer messages

const req = uint(0xffffffff)
const bitsFor = (totalPieces: number): fc.Arbitrary<Uint8Array> => {
  const n = Math.ceil(totalPieces / 8)
  return noise(n, n)
}
const have = fc.record({ req, fileId: hash64, totalPieces: fc.integer({ min: 0, max: 4000 }) }).chain((h) =>
  fc.record({ bitfield: bitsFor(h.totalPieces), pending: bitsFor(h.totalPieces), sent: bitsFor(h.totalPieces) }, { requiredKeys: [] })
    .map((bits) => ({ type: 'have' as const, ...h, ...bits })))
const leech = blockSize.chain((b) => fc.record({ req, hash: hash64, size: sizeFor(b, 1), blockSize: fc.constant(b) })).chain((l) => {
  const pieces = Math.ceil(l.size / l.blockSize)
  return fc.integer({ min: 0, max: pieces - 1 }).map((i) => ({ type: 'leech' as const, ...l, offset: i * l.blockSize, pieces }))
})
const pieceHeader = (pieceSize: fc.Arbitrary<number>): fc.Arbitrary<PeerMessage> =>
  fc.record({ type: fc.constant('piece' as const), req, pieceSize, offset: uint(2 ** 40), totalPieces: uint(MAX_PIECES), clusterName: hash64 })
const hashesHeader = (count: fc.Arbitrary<number>): fc.Arbitrary<PeerMessage> =>
  fc.record({ type: fc.constant('hashes' as const), req, fileId: hash64, from: uint(2 ** 28), count })
/** Peer messages without a payload (their headers stay well under MAX_FRAME). */
const plainPeerMessage: fc.Arbitrary<PeerMessage> = fc.oneof(
  fc.record({ type: fc.constant('find_cluster' as const), req, fileId: hash64, from: fc.record({ nodeId: nodeId32, port }) }, { requiredKeys: ['type', 'req', 'fileId'] }),
  fc.record({ type: fc.constant('cluster' as const), req, fileId: hash64, peers: fc.array(fc.record({ nodeId: nodeId32, host, port }), { maxLength: 16 }) }),
  fc.record({ type: fc.constant('get_hashes' as const), req, fileId: hash64, from: uint(2 ** 28), count: fc.integer({ min: 1, max: MAX_HASHES_PER_FRAME }) }),
  fc.record({ type: fc.constant('probe' as const), req, fileId: hash64 }),
  have,
  leech,
  fc.record({ type: fc.constant('error' as const), req, code, message: shortText(120) }),
)
/** Any valid frame header, payload sizes unconstrained (for decodeFrameHeader alone). */
const peerMessage: fc.Arbitrary<PeerMessage> = fc.oneof(
  plainPeerMessage,
  pieceHeader(fc.integer({ min: 0, max: MAX_BLOCK_SIZE })),
  hashesHeader(fc.integer({ min: 1, max: MAX_HASHES_PER_FRAME })),
)

interface Sent { msg: PeerMessage, payload?: Uint8Array }
/** A piece whose frame is exactly MAX_FRAME bytes: the largest the decoder must accept. */
const fullPiece: fc.Arbitrary<Sent> = pieceHeader(fc.constant(0)).chain((m) => {
  let n = MAX_FRAME
  for (let i = 0; i < 4; i++) n = MAX_FRAME - encodeFrameHead({ ...m, pieceSize: n } as PeerMessage, 0).length
  return noise(n, n).map((payload) => ({ msg: { ...m, pieceSize: n } as PeerMessage, payload }))
})
/** A frame as sent: its message and, for piece and hashes, the payload it announces. */
const sentFrame: fc.Arbitrary<Sent> = fc.oneof(
  { arbitrary: plainPeerMessage.map((msg) => ({ msg })), weight: 3 },
  { arbitrary: noise(2500).chain((payload) => pieceHeader(fc.constant(payload.length)).map((msg) => ({ msg, payload }))), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 100 }).chain((count) => noise(count * 32, count * 32).chain((payload) => hashesHeader(fc.constant(count)).map((msg) => ({ msg, payload })))), weight: 1 },
  { arbitrary: fullPiece, weight: 1 },
)
const wireOf = (s: Sent): Buffer => {
  const head = encodeFrameHead(s.msg, s.payload?.length ?? 0)
  return s.payload === undefined ? head : Buffer.concat([head, s.payload])
}

// ---------------------------------------------------------------- arbitraries: hostile bytes

/** Bytes a CBOR walker treats specially: heads with long or indefinite lengths, tags, simple values, floats, break. */
const CBOR_SPECIAL = [0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x3b, 0x40, 0x58, 0x5a, 0x5b, 0x5f, 0x60, 0x78, 0x7a, 0x7b, 0x7f,
  0x80, 0x98, 0x9a, 0x9b, 0x9f, 0xa0, 0xb8, 0xba, 0xbb, 0xbf, 0xc0, 0xc1, 0xc2, 0xc6, 0xd8, 0xd9, 0xda, 0xdb, 0xf4, 0xf5, 0xf6, 0xf7,
  0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xff]
const specialByte = fc.constantFrom(...CBOR_SPECIAL)
const garbage = fc.uint8Array({ maxLength: 64 })

type Mutation =
  | { kind: 'flip', at: number, xor: number }
  | { kind: 'set', at: number, byte: number }
  | { kind: 'truncate', at: number }
  | { kind: 'append', bytes: Uint8Array }
  | { kind: 'insert', at: number, bytes: Uint8Array }
  | { kind: 'delete', at: number, n: number }
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: specialByte }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.oneof(garbage, fc.array(specialByte, { minLength: 1, maxLength: 16 }).map((a) => Uint8Array.from(a))) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.oneof(garbage, specialByte.map((b) => Uint8Array.of(b))) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
)
/** Mostly one or two mutations, so a damaged message still looks nearly valid. */
const mutations = fc.oneof({ arbitrary: fc.array(mutation, { minLength: 1, maxLength: 2 }), weight: 3 }, { arbitrary: fc.array(mutation, { minLength: 3, maxLength: 6 }), weight: 1 })
function mutate (bytes: Uint8Array, ms: Mutation[]): Buffer {
  let b = Buffer.from(bytes)
  for (const m of ms) {
    const at = b.length === 0 ? 0 : ('at' in m ? m.at % b.length : 0)
    switch (m.kind) {
      case 'flip': if (b.length > 0) b[at] ^= m.xor; break
      case 'set': if (b.length > 0) b[at] = m.byte; break
      case 'truncate': b = b.subarray(0, at); break
      case 'append': b = Buffer.concat([b, m.bytes]); break
      case 'insert': b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]); break
      case 'delete': b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]); break
      default: { const never: never = m; throw new Error(`unknown mutation ${String(never)}`) }
    }
  }
  return b
}

/** Encoders that emit cbor-x's extension tags too: records, packed values, shared references, tag 259 maps. */
const ENCODERS: Array<(v: unknown) => Uint8Array> = [
  cborEncode,
  (v) => new Encoder({ useRecords: true }).encode(v),
  (v) => new Encoder({ pack: true }).encode(v),
  (v) => new Encoder({ structuredClone: true }).encode(v),
  (v) => new Encoder({ useRecords: false, mapsAsObjects: true, useTag259ForMaps: true } as ConstructorParameters<typeof Encoder>[0]).encode(v),
]
/** Any JS value (cbor-x may refuse to encode a few: those cases are discarded). */
const anyValue = fc.anything({
  maxDepth: 5, withBigInt: true, withBoxedValues: true, withDate: true, withMap: true, withSet: true,
  withTypedArray: true, withSparseArray: true, withNullPrototype: true, withObjectString: true,
})
const FIELDS = ['type', 'tx', 'req', 'nodeId', 'port', 'name', 'hash', 'size', 'blockSize', 'root', 'have', 'files', 'uploaded',
  'downloaded', 'after', 'fileId', 'next', 'nodes', 'meta', 'interval', 'resync', 'code', 'message', 'pieces', 'host', 'lastSeen',
  'fileCount', 'holders', 'from', 'count', 'peers', 'totalPieces', 'bitfield', 'pending', 'sent', 'offset', 'pieceSize', 'clusterName', 'token', 'pad',
  '__proto__', 'constructor']
const TYPES = ['publish', 'published', 'announce', 'announced', 'query_files', 'files', 'get_nodes', 'nodes', 'withdraw', 'withdrawn', 'leave', 'left', 'connect', 'connected', 'error',
  'find_cluster', 'cluster', 'get_hashes', 'hashes', 'probe', 'have', 'leech', 'piece', 'toString', '__proto__']
/** Values that sit near what the validators accept: boundary numbers, ids of the wrong length or case, IPs, nested lookalikes. */
const nearValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown, obj: Record<string, unknown> }>((tie) => ({
  v: fc.oneof(
    { arbitrary: fc.constantFrom(0, -0, 1, -1, 0.5, 255, 256, 4096, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 64, -(2 ** 63), NaN, Infinity, -Infinity, null, undefined, true, false, '', 'a'.repeat(64), 'A'.repeat(64), 'a'.repeat(32), 'a'.repeat(65), '10.0.0.1', '::1', 'localhost'), weight: 4 },
    { arbitrary: fc.constantFrom(...TYPES), weight: 2 },
    { arbitrary: hash64, weight: 2 },
    { arbitrary: nodeId32, weight: 1 },
    { arbitrary: fc.integer(), weight: 2 },
    { arbitrary: fc.double(), weight: 1 },
    { arbitrary: fc.string({ maxLength: 300, unit: 'binary' }), weight: 1 },
    { arbitrary: fc.uint8Array({ maxLength: 600 }), weight: 1 },
    { arbitrary: fc.constantFrom(15, 16, 17, 31, 32, 1024, 1025).map((n) => new Uint8Array(n)), weight: 1 },
    { arbitrary: fc.array(tie('v'), { maxLength: 5 }), weight: 1 },
    { arbitrary: tie('obj'), weight: 2 },
  ),
  obj: fc.dictionary(fc.constantFrom(...FIELDS), tie('v'), { maxKeys: 10, depthIdentifier: 'near' }),
})).v
/** A map with a known message type and fields drawn from the message vocabulary. */
const messageLike = fc.record({ type: fc.constantFrom(...TYPES), rest: fc.dictionary(fc.constantFrom(...FIELDS), nearValue, { maxKeys: 12 }) })
  .map(({ type, rest }) => ({ ...rest, type }))

/** CBOR built from arbitrary values, message lookalikes and valid messages, with the extension tags cbor-x knows. */
const cborBytes = (valid: fc.Arbitrary<unknown>): fc.Arbitrary<Uint8Array> =>
  fc.tuple(fc.oneof(anyValue, fc.object(), messageLike, valid), fc.nat({ max: ENCODERS.length - 1 })).map(([value, e]) => {
    try {
      return ENCODERS[e](value)
    } catch {
      return null // cbor-x cannot encode this value: nothing to feed
    }
  }).filter((b): b is Uint8Array => b !== null)

/** Arbitrary bytes: short, up to 20 000 long (over MAX_DATAGRAM_BYTES), behind a map head, or made of CBOR heads only. */
const rawBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 20_000, size: 'max' }),
  fc.tuple(fc.integer({ min: 0xa0, max: 0xbf }), fc.uint8Array({ maxLength: 200 })).map(([h, rest]) => Buffer.concat([Uint8Array.of(h), rest])),
  fc.array(specialByte, { maxLength: 200 }).map((a) => Uint8Array.from(a)),
)
/** Hostile byte strings: arbitrary bytes, CBOR of odd values, and both of those or valid messages mutated. */
const hostileBytes = (valid: fc.Arbitrary<Uint8Array>, validValue: fc.Arbitrary<unknown>): fc.Arbitrary<Uint8Array> => fc.oneof(
  rawBytes,
  cborBytes(validValue),
  fc.tuple(cborBytes(validValue), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([b, ms]) => mutate(b, ms)),
  fc.tuple(valid, mutations).map(([b, ms]) => mutate(b, ms)),
)

// ---------------------------------------------------------------- checks

/**
 * The one way a decoder may fail: a ProtocolError. Anything else (TypeError, RangeError, stack
 * overflow) is rethrown as is, so the property fails showing it. (A plain check: expect() on an
 * Error costs milliseconds, and this runs for every refused input.)
 */
function expectProtocolError (err: unknown): void {
  const e = err as { name?: unknown, code?: unknown } | null
  if (typeof e !== 'object' || e === null || e.name !== 'ProtocolError' || e.code !== 'ERR_PROTOCOL') throw err
}

/** Runs `f` and returns its result, or undefined when it threw a ProtocolError; checks it was quick. */
function decodeOrRefuse<T> (f: () => T): T | undefined {
  const t0 = performance.now()
  try {
    return f()
  } catch (err) {
    expectProtocolError(err)
    return undefined
  } finally {
    const ms = performance.now() - t0
    if (ms >= SLOW_MS) throw new Error(`decoding took ${ms.toFixed(0)} ms`)
  }
}

// A known datagram decoded after each hostile one: no input may leave the shared decoder in a state that breaks the next.
const PROBE: TrackerMessage = { type: 'query_files', tx: 7, after: 'a'.repeat(64) }
const PROBE_BYTES = encodeDatagram(PROBE)

function checkDatagram (bytes: Uint8Array): void {
  const msg = decodeOrRefuse(() => decodeDatagram(bytes))
  // encodeDatagram throws a RangeError for a message that does not fit a datagram
  if (msg !== undefined) expect(decodeDatagram(encodeDatagram(msg))).toEqual(msg)
  expect(decodeDatagram(PROBE_BYTES)).toEqual(PROBE)
}

function checkFrameHeader (bytes: Uint8Array): void {
  const msg = decodeOrRefuse(() => decodeFrameHeader(bytes))
  if (msg !== undefined) {
    expect(decodeFrameHeader(encodeFrameHead(msg).subarray(FRAME_PREFIX_BYTES))).toEqual(msg)
  }
}

const validDatagram = trackerMessage.map((m) => encodeDatagram(m))
const validHeader = peerMessage.map((m) => encodeFrameHead(m).subarray(FRAME_PREFIX_BYTES))

describe('decodeDatagram (fuzz)', () => {
  it('round-trips every valid tracker message exactly', () => {
    fc.assert(fc.property(trackerMessage, (m) => {
      expect(decodeDatagram(encodeDatagram(m))).toEqual(m)
    }), runs(300))
  })

  it('on arbitrary bytes up to 20 000 long, returns a message that round-trips or throws ERR_PROTOCOL, quickly', () => {
    fc.assert(fc.property(rawBytes, checkDatagram), runs(600))
  })

  it('on CBOR of arbitrary values and message lookalikes, returns a message that round-trips or throws ERR_PROTOCOL', () => {
    fc.assert(fc.property(cborBytes(trackerMessage), checkDatagram), runs(1500))
  })

  it('on mutated valid datagrams (flipped, truncated, extended), returns a message that round-trips or throws ERR_PROTOCOL', () => {
    fc.assert(fc.property(validDatagram, mutations, (b, ms) => checkDatagram(mutate(b, ms))), runs(1500))
  })

  // Regression, built by hand (random mutation rarely makes long runs of invalid UTF-8): cbor-x
  // decodes invalid UTF-8 to U+FFFD (3 bytes each), so a 15 626-byte `files` reply with names of
  // 85 bytes of 0xff used to decode into a message re-encoding to 29 064 bytes. Text that is not
  // UTF-8 is invalid CBOR (RFC 8949 §5.3.1) and is now refused before decoding.
  it('a datagram that decodes re-encodes within MAX_DATAGRAM_BYTES, even with invalid UTF-8 in its names', () => {
    const PLACEHOLDER = 'x'.repeat(85)
    const files = Array.from({ length: 80 }, (_, i) => ({ name: PLACEHOLDER, hash: i.toString(16).padStart(64, '0'), size: 1, blockSize: 262_144, pieces: 1 }))
    const bytes = Buffer.from(cborEncode({ type: 'files', tx: 1, files }))
    let patched = 0
    for (let at = bytes.indexOf(PLACEHOLDER); at >= 0; at = bytes.indexOf(PLACEHOLDER, at)) { bytes.fill(0xff, at, at + 85); patched++ }
    expect(patched).toBe(80)
    expect(bytes.length).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES)
    checkDatagram(bytes)
    expect(() => decodeDatagram(bytes)).toThrow(expect.objectContaining({ code: 'ERR_PROTOCOL' }))
  })
})

describe('decodeFrameHeader (fuzz)', () => {
  it('round-trips every valid frame header exactly', () => {
    fc.assert(fc.property(peerMessage, (m) => {
      expect(decodeFrameHeader(encodeFrameHead(m).subarray(FRAME_PREFIX_BYTES))).toEqual(m)
    }), runs(300))
  })

  it('on hostile bytes, returns a message that round-trips or throws ERR_PROTOCOL, quickly', () => {
    fc.assert(fc.property(hostileBytes(validHeader, peerMessage), checkFrameHeader), runs(2000))
  })
})

// ---------------------------------------------------------------- frame streams

/** Cut `wire` into chunks: at arbitrary points (empty chunks included), or in fixed sizes down to 1 byte. */
const splitter = fc.oneof(
  fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 30 }).map((cuts) => (wire: Buffer): Buffer[] => {
    const at = cuts.map((f) => Math.floor(f * wire.length)).sort((a, b) => a - b)
    const out: Buffer[] = []
    let prev = 0
    for (const p of [...at, wire.length]) { out.push(wire.subarray(prev, p)); prev = p }
    return out
  }),
  fc.integer({ min: 1, max: 700 }).map((n) => (wire: Buffer): Buffer[] => {
    const out: Buffer[] = []
    for (let i = 0; i < wire.length; i += n) out.push(wire.subarray(i, i + n))
    return out
  }),
)

/** A raw frame: consistent prefix around an arbitrary header and payload. */
const rawFrame = fc.tuple(fc.oneof(cborBytes(peerMessage), validHeader), noise(300)).map(([header, payload]) => {
  const prefix = Buffer.alloc(FRAME_PREFIX_BYTES)
  prefix.writeUInt32BE(4 + header.length + payload.length, 0)
  prefix.writeUInt32BE(header.length, 4)
  return Buffer.concat([prefix, header, payload])
})
/** A prefix with small, possibly inconsistent lengths, then noise. */
const oddPrefix = fc.tuple(fc.nat({ max: MAX_FRAME + 16 }), fc.nat({ max: MAX_FRAME + 16 }), garbage).map(([l, h, rest]) => {
  const prefix = Buffer.alloc(FRAME_PREFIX_BYTES)
  prefix.writeUInt32BE(l, 0)
  prefix.writeUInt32BE(h, 4)
  return Buffer.concat([prefix, rest])
})
/** A byte stream of valid frames, mutated frames, raw frames and noise. */
const hostileStream = fc.array(fc.oneof(
  { arbitrary: sentFrame.map(wireOf), weight: 4 },
  { arbitrary: fc.tuple(sentFrame.map(wireOf), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([b, ms]) => mutate(b, ms)), weight: 2 },
  { arbitrary: rawFrame, weight: 2 },
  { arbitrary: oddPrefix, weight: 1 },
  { arbitrary: garbage, weight: 1 },
), { maxLength: 8 }).map((parts) => Buffer.concat(parts))

/** What a consumer sees of a frame: payloads as hex (copied out the moment they are returned). */
const view = (f: { msg: PeerMessage, payload?: Uint8Array }): { msg: PeerMessage, payload?: string } =>
  f.payload === undefined ? { msg: f.msg } : { msg: f.msg, payload: Buffer.from(f.payload).toString('hex') }

function checkBuffered (dec: FrameDecoder): void {
  if (dec.buffered > MAX_FRAME) throw new Error(`decoder buffers ${dec.buffered} bytes, over maxFrameBytes ${MAX_FRAME}`)
}

describe('FrameDecoder (fuzz)', () => {
  it('on arbitrary streams in arbitrary chunks, returns valid frames or throws ERR_PROTOCOL, then keeps throwing; buffers at most maxFrameBytes', () => {
    fc.assert(fc.property(hostileStream, splitter, fc.boolean(), (wire, split, transientChunks) => {
      const dec = new FrameDecoder({ maxFrameBytes: MAX_FRAME, transientChunks })
      let failed = false
      for (const chunk of [...split(wire), Buffer.from('after the end')]) {
        let frames: Frame[]
        try {
          frames = dec.push(chunk)
        } catch (err) {
          expectProtocolError(err)
          failed = true
          continue
        }
        // (plain checks rather than expect in this loop: it runs for every byte of a stream fed one byte at a time)
        if (failed) throw new Error('a decoder that threw returned frames afterwards')
        checkBuffered(dec)
        for (const f of frames) {
          // every frame is a valid message, and carries exactly the payload its header announces
          expect(decodeFrameHeader(encodeFrameHead(f.msg).subarray(FRAME_PREFIX_BYTES))).toEqual(f.msg)
          const want = f.msg.type === 'piece' ? f.msg.pieceSize : f.msg.type === 'hashes' ? f.msg.count * 32 : undefined
          expect(f.payload?.length).toBe(want)
        }
      }
    }), runs(700))
  })

  // Regression found by the property above: after a throw, `buffered` used to keep reporting
  // bytes the decoder no longer held.
  it('holds nothing once push has thrown: buffered is 0', () => {
    const dec = new FrameDecoder({ maxFrameBytes: MAX_FRAME })
    const chunk = Buffer.alloc(20_000)
    chunk.writeUInt32BE(0xffffffff, 0) // a length prefix far over maxFrameBytes
    let thrown: unknown
    try { dec.push(chunk) } catch (err) { thrown = err }
    expectProtocolError(thrown)
    expect(dec.buffered).toBe(0)
  })

  it('decodes valid frames split at arbitrary points into exactly the messages and payloads sent, in order', () => {
    fc.assert(fc.property(fc.array(sentFrame, { maxLength: 10 }), splitter, fc.boolean(), (sent, split, transientChunks) => {
      const wire = Buffer.concat(sent.map(wireOf))
      const dec = new FrameDecoder({ maxFrameBytes: MAX_FRAME, transientChunks })
      const got: Frame[] = []
      // a transient caller reads every chunk into one buffer it overwrites after each push
      const scratch = Buffer.alloc(wire.length)
      for (const chunk of split(wire)) {
        if (transientChunks) {
          const c = scratch.subarray(0, chunk.length)
          chunk.copy(c)
          got.push(...dec.push(c))
          c.fill(0xee)
        } else {
          got.push(...dec.push(chunk))
        }
        checkBuffered(dec)
      }
      expect(got.map(view)).toEqual(sent.map((s) => view(s.msg.type === 'piece' || s.msg.type === 'hashes' ? { msg: s.msg, payload: s.payload ?? new Uint8Array() } : { msg: s.msg })))
      expect(dec.buffered).toBe(0)
    }), runs(400))
  })
})

// ---------------------------------------------------------------- tracker flow

const endpoint: fc.Arbitrary<Endpoint> = fc.record({ address: fc.oneof(fc.constantFrom('10.0.0.1', '10.0.0.2', '::1', 'fe80::1%eth0'), host), port })
const inbound: fc.Arbitrary<Inbound> = fc.record({ msg: trackerRequest, from: endpoint })

interface Tracker {
  /** The replies the request produced, synchronously. */
  send: (r: Inbound) => Outbound[]
  /** The request with the token its source got by connecting (once per source); as is without a secret. */
  prove: (r: Inbound) => Inbound
  close: () => void
}

/** A tracker flow fed by a Subject; with `secret`, requests need connection tokens. */
function tracker (secret?: Buffer): Tracker {
  const requests = new Subject<Inbound>()
  const replies: Outbound[] = []
  const sub = trackerFlow(requests, { registry: new Registry(undefined, 1e9), sweepMs: 1e9, secret }).subscribe({
    next: (o) => replies.push(o),
    error: (err: unknown) => { throw err },
  })
  const send = (r: Inbound): Outbound[] => { const from = replies.length; requests.next(r); return replies.slice(from) }
  const tokens = new Map<string, Uint8Array>()
  return {
    send,
    prove: (r) => {
      if (secret === undefined || r.msg.type === 'connect') return r
      const source = `${r.from.address}|${r.from.port}`
      let t = tokens.get(source)
      if (t === undefined) {
        const [reply] = send({ msg: { type: 'connect', tx: 0, pad: new Uint8Array(CONNECT_PAD_BYTES) }, from: r.from })
        if (reply?.msg.type !== 'connected') throw new Error(`connect from ${source} answered with ${JSON.stringify(reply)}`)
        t = reply.msg.token
        tokens.set(source, t)
      }
      return { ...r, msg: { ...r.msg, token: t } }
    },
    close: () => { sub.unsubscribe(); requests.complete() },
  }
}

const SECRET = Buffer.alloc(32, 0x5e)

/** One request (with its source's token), one reply with its tx, sent back to its source, that fits a datagram and decodes as valid. */
function exchange (t: Tracker, r: Inbound): TrackerReply {
  const out = t.send(t.prove(r))
  expect(out).toHaveLength(1)
  const [{ msg, to }] = out
  expect(msg.tx).toBe(r.msg.tx)
  expect(to).toEqual(r.from)
  const bytes = encodeDatagram(msg)
  expect(decodeDatagram(bytes)).toEqual(msg)
  const ids = msg.type === 'files' ? msg.files.map((f) => f.hash) : msg.type === 'nodes' ? msg.nodes.map((n) => n.nodeId) : []
  expectIncreasing(ids)
  return msg
}

function expectIncreasing (ids: string[]): void {
  for (let i = 1; i < ids.length; i++) if (!(ids[i - 1] < ids[i])) throw new Error(`ids out of order at ${i}: ${ids[i - 1]} then ${ids[i]}`)
}

/** Follows `next` cursors through every page of `query_files` (or `get_nodes`): the ids, in the order seen. */
function walk (t: Tracker, kind: 'query_files' | 'get_nodes'): string[] {
  const seen: string[] = []
  let after: string | undefined
  for (let pages = 0; pages < 10_000; pages++) {
    const msg: TrackerRequest = after === undefined ? { type: kind, tx: pages } : { type: kind, tx: pages, after }
    const reply = exchange(t, { msg, from: { address: '10.9.9.9', port: 9 } })
    if (reply.type === 'files') seen.push(...reply.files.map((f) => f.hash))
    else if (reply.type === 'nodes') seen.push(...reply.nodes.map((n) => n.nodeId))
    else throw new Error(`unexpected ${reply.type} reply to ${kind}`)
    if (reply.next === undefined) return seen
    after = reply.next
  }
  throw new Error('cursor never ends')
}

/** Runs `requests`, then walks every page of files and of nodes: each published file and live node once, in increasing id order. */
function checkTracker (requests: Inbound[], secret?: Buffer): void {
  const t = tracker(secret)
  try {
    const published = new Set<string>()
    // live nodes, each with the address it was last seen at (a leave from there forgets it)
    const live = new Map<string, string>()
    for (const r of requests) {
      const reply = exchange(t, r)
      if (reply.type === 'published') published.add(reply.meta.hash)
      if (reply.type === 'error' || !('nodeId' in r.msg)) continue
      const at = `${r.from.address} ${r.msg.port}`
      // (a withdraw from a node the tracker does not know changes nothing; a live id from another host is refused: an error)
      if (r.msg.type === 'withdraw' && !live.has(r.msg.nodeId)) continue
      if (r.msg.type !== 'leave') live.set(r.msg.nodeId, at)
      else if (live.get(r.msg.nodeId) === at) live.delete(r.msg.nodeId)
    }
    // a refused publish leaves nothing behind: exactly the published files are listed
    const listed = walk(t, 'query_files')
    expect(listed).toEqual([...published].sort())
    expectIncreasing(listed)
    const nodes = walk(t, 'get_nodes')
    expect(nodes).toEqual([...live.keys()].sort())
    expectIncreasing(nodes)
  } finally {
    t.close()
  }
}

describe('trackerFlow (fuzz)', () => {
  it('answers every sequence of valid requests with one valid, datagram-sized reply each, in increasing id order', () => {
    fc.assert(fc.property(fc.array(inbound, { maxLength: 60 }), (reqs) => checkTracker(reqs)), runs(150))
  })

  it('with connection tokens, answers requests carrying the token their source got from connect just the same', () => {
    fc.assert(fc.property(fc.array(inbound, { maxLength: 40 }), (reqs) => checkTracker(reqs, SECRET)), runs(100))
  })

  it('with connection tokens, gives an unproven request nothing, or a BAD_TOKEN error no bigger than its datagram, and changes nothing', () => {
    fc.assert(fc.property(fc.array(fc.record({ msg: trackerRequestWire, from: endpoint }), { maxLength: 30 }), (reqs) => {
      const t = tracker(SECRET)
      try {
        for (const r of reqs) {
          // a random token is as good as none (one in 2^128 is the right one)
          const bytes = encodeDatagram(r.msg).length
          const out = t.send({ ...r, bytes })
          if (r.msg.type === 'connect') {
            // the padding makes the handshake no amplifier either
            expect(out.map((o) => o.msg.type)).toEqual(['connected'])
          } else {
            expect(out.length).toBeLessThanOrEqual(1)
            for (const o of out) expect(o).toEqual({ msg: { type: 'error', tx: r.msg.tx, code: 'BAD_TOKEN', message: '' }, to: r.from })
          }
          for (const o of out) expect(encodeDatagram(o.msg).length).toBeLessThanOrEqual(bytes)
        }
        expect(walk(t, 'query_files')).toEqual([])
        expect(walk(t, 'get_nodes')).toEqual([])
      } finally {
        t.close()
      }
    }), runs(100))
  })

  it('pages through hundreds of published files: following next visits each exactly once', () => {
    // many distinct files with long names, so the listing spans several datagrams; a dozen nodes
    // holding dozens of files each, so node items are large and get_nodes pages too
    const WIDE_NODE_POOL = Array.from({ length: 12 }, (_, i) => i.toString(16).padStart(2, '0').repeat(16))
    const manyPublishes = fc.array(fc.record({
      msg: fc.record({ type: fc.constant('publish' as const), tx, nodeId: fc.oneof(fc.constantFrom(...WIDE_NODE_POOL), hex(32)), port, name: fc.string({ minLength: 30, maxLength: 40, unit: 'binary' }), hash: hex(64), size }),
      from: endpoint,
    }), { minLength: 100, maxLength: 400 })
    fc.assert(fc.property(manyPublishes, fc.array(inbound, { maxLength: 10 }), (pubs, others) => checkTracker([...pubs, ...others])), runs(15))
  })

  // Regression found by the properties above: a refused publish used to leave its file listed.
  it('a publish refused for claiming more pieces than the file has does not list the file', () => {
    const t = tracker()
    try {
      const refused = exchange(t, {
        msg: { type: 'publish', tx: 1, nodeId: '0'.repeat(32), port: 1, name: 'f', hash: '0'.repeat(64), size: 0, have: 1 },
        from: { address: '10.0.0.1', port: 1 },
      })
      expect({ reply: refused.type, listed: walk(t, 'query_files') }).toEqual({ reply: 'error', listed: [] })
    } finally {
      t.close()
    }
  })
})
