import { encode } from 'cbor-x'
import { decodeDatagram, decodeFrameHeader, encodeDatagram, encodeFrameHead, encodeValue, exceedsDepth, FRAME_PREFIX_BYTES } from '../../src/protocol/codec'
import { FrameDecoder, type Frame } from '../../src/protocol/frames'
import {
  checkSegmentation, fileMetaData, MAX_FILES_PER_NODE_ITEM, MAX_LIST_ITEMS, peerMessage, pieceLength, trackerMessage,
  type FileMetaData, type NodeInfo, type PeerAddress, type PeerMessage, type TrackerMessage,
} from '../../src/protocol/messages'
import { MAX_BITFIELD_BYTES, MAX_BLOCK_SIZE, MAX_BUSY_RETRY_MS, MAX_DATAGRAM_BYTES, MAX_FILE_SIZE, MAX_FRAME_BYTES, MAX_PIECES, MAX_HEADER_BYTES, MAX_PEERS_PER_REPLY, MAX_WATCH_MS, PAGE_SIZE } from '../../src/limits'

// ---------------------------------------------------------------- fixtures
const H1 = '0123456789abcdef'.repeat(4)
const H2 = 'f'.repeat(64)
const NODE = '00112233445566778899aabbccddeeff'
const NODE2 = 'ffeeddccbbaa99887766554433221100'

const meta = (over: Partial<FileMetaData> = {}): FileMetaData =>
  ({ name: 'movie.mkv', hash: H1, size: 100_000, blockSize: 16384, pieces: 7, ...over })
const peer = (over: Partial<PeerAddress> = {}): PeerAddress => ({ nodeId: NODE, host: '192.168.1.20', port: 7000, ...over })
const node = (over: Partial<NodeInfo> = {}): NodeInfo =>
  ({ ...peer(), lastSeen: 1_700_000_000_000, files: [{ fileId: H1, have: 7, pieces: 7 }, { fileId: H2, have: 3, pieces: 10 }], fileCount: 2, uploaded: 1_000_000, downloaded: 5, ...over })

/** Raw CBOR of any value, bypassing every type check (for hostile input). */
const raw = (v: unknown): Buffer => Buffer.from(encode(v))
/** A decoded datagram of an arbitrary (possibly hostile) value. */
const dg = (v: unknown): TrackerMessage => decodeDatagram(raw(v))
/** A decoded frame header of an arbitrary (possibly hostile) value. */
const fh = (v: unknown): PeerMessage => decodeFrameHeader(raw(v))

const PROTOCOL = expect.objectContaining({ name: 'ProtocolError', code: 'ERR_PROTOCOL' })

/** Runs f and returns what it threw (fails the test if it did not throw). */
function thrown (f: () => unknown): unknown {
  try { f() } catch (err) { return err }
  throw new Error('expected a throw')
}

function expectProtocolError (f: () => unknown): void {
  const err = thrown(f)
  expect(err).toEqual(PROTOCOL)
}

/** Deterministic bytes (xorshift32) so a failure is reproducible. */
function prng (seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s }
}
function randomBytes (rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = rand() & 0xff
  return b
}

/** The frames a fresh decoder produces from `msg` framed with `payload`. */
function viaFrames (msg: PeerMessage, payload?: Buffer): Frame[] {
  const head = encodeFrameHead(msg, payload?.length ?? 0)
  return new FrameDecoder().push(payload === undefined ? head : Buffer.concat([head, payload]))
}

// ---------------------------------------------------------------- tracker wire
describe('tracker datagrams', () => {
  const messages: Array<[string, TrackerMessage]> = [
    ['publish', { type: 'publish', tx: 1, nodeId: NODE, port: 7000, name: 'movie.mkv', hash: H1, size: 100_000 }],
    ['publish of an empty file with a unicode name', { type: 'publish', tx: 0xffffffff, nodeId: NODE, port: 65535, name: 'résumé 2024.pdf', hash: H2, size: 0 }],
    ['published', { type: 'published', tx: 2, meta: meta() }],
    ['published of an empty file', { type: 'published', tx: 2, meta: meta({ size: 0, pieces: 0 }) }],
    ['announce', { type: 'announce', tx: 3, nodeId: NODE, port: 1, files: 12, uploaded: 2 ** 40, downloaded: 0 }],
    ['publish with segmentation and root', { type: 'publish', tx: 1, nodeId: NODE, port: 7000, name: 'movie.mkv', hash: H1, size: 100_000, blockSize: 16384, root: H2 }],
    ['publish of a partial holder', { type: 'publish', tx: 1, nodeId: NODE, port: 7000, name: 'movie.mkv', hash: H1, size: 100_000, have: 3 }],
    ['published with a root', { type: 'published', tx: 2, meta: meta({ root: H2 }) }],
    ['announced', { type: 'announced', tx: 4, interval: 3000, resync: true }],
    ['withdraw', { type: 'withdraw', tx: 8, nodeId: NODE, port: 7000, fileId: H1 }],
    ['withdrawn', { type: 'withdrawn', tx: 8 }],
    ['leave', { type: 'leave', tx: 8, nodeId: NODE, port: 7000 }],
    ['left', { type: 'left', tx: 8 }],
    ['files with holder counts', { type: 'files', tx: 6, files: [{ ...meta(), holders: 0 }, { ...meta({ name: 'b', hash: H2, size: 16384, pieces: 1 }), holders: 12 }] }],
    ['announced without resync', { type: 'announced', tx: 4, interval: 1, resync: false }],
    ['query_files', { type: 'query_files', tx: 5 }],
    ['query_files after a cursor', { type: 'query_files', tx: 5, after: H1 }],
    ['files', { type: 'files', tx: 6, files: [meta(), meta({ name: 'b', hash: H2, size: 16384, pieces: 1 })], next: H2 }],
    ['files, last page', { type: 'files', tx: 6, files: [] }],
    ['get_nodes', { type: 'get_nodes', tx: 7 }],
    ['get_nodes for a file after a cursor', { type: 'get_nodes', tx: 7, fileId: H1, after: NODE }],
    ['nodes', { type: 'nodes', tx: 8, nodes: [node(), node({ nodeId: NODE2, host: '::1', files: [], fileCount: 0 })], next: NODE2 }],
    ['nodes, last page', { type: 'nodes', tx: 8, nodes: [] }],
    ['error', { type: 'error', tx: 9, code: 'NOT_FOUND', message: 'no such file' }],
  ]

  it.each(messages)('round-trips %s', (_, msg) => {
    const buf = encodeDatagram(msg)
    expect(buf.length).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES)
    expect(decodeDatagram(buf)).toStrictEqual(msg)
  })

  it('decodes from a Uint8Array view into a larger buffer (as a socket hands it over)', () => {
    const msg: TrackerMessage = { type: 'announce', tx: 3, nodeId: NODE, port: 9, files: 0, uploaded: 0, downloaded: 0 }
    const enc = encodeDatagram(msg)
    const big = Buffer.alloc(enc.length + 20, 0xee)
    enc.copy(big, 10)
    expect(decodeDatagram(new Uint8Array(big.buffer, big.byteOffset + 10, enc.length))).toStrictEqual(msg)
  })

  it('refuses to encode a datagram over MAX_DATAGRAM_BYTES (a bug of ours, so a RangeError)', () => {
    expect(() => encodeDatagram({ type: 'error', tx: 1, code: 'X', message: 'x'.repeat(MAX_DATAGRAM_BYTES) })).toThrow(RangeError)
  })

  describe('drops unknown fields', () => {
    it('at the top level', () => {
      const out = dg({ type: 'announce', tx: 3, nodeId: NODE, port: 9, files: 0, uploaded: 1, downloaded: 2, admin: true, evil: { x: 1 } })
      expect(out).toStrictEqual({ type: 'announce', tx: 3, nodeId: NODE, port: 9, files: 0, uploaded: 1, downloaded: 2 })
    })
    it('refuses a holder count that is not a count', () => {
      for (const holders of [-1, 0.5, 'many', 2 ** 53]) expectProtocolError(() => dg({ type: 'files', tx: 1, files: [{ ...meta(), holders }] }))
    })
    it('inside nested file metadata', () => {
      const out = dg({ type: 'files', tx: 1, files: [{ ...meta(), path: '/etc/passwd' }], extra: 1 })
      expect(out).toStrictEqual({ type: 'files', tx: 1, files: [meta()] })
    })
    it('inside node items', () => {
      const out = dg({ type: 'nodes', tx: 1, nodes: [{ ...node(), secret: 'x' }] })
      expect(out).toStrictEqual({ type: 'nodes', tx: 1, nodes: [node()] })
    })
    it('treats null optional fields as absent', () => {
      expect(dg({ type: 'query_files', tx: 1, after: null })).toStrictEqual({ type: 'query_files', tx: 1 })
      expect(dg({ type: 'get_nodes', tx: 1, fileId: null, after: null })).toStrictEqual({ type: 'get_nodes', tx: 1 })
      expect(dg({ type: 'files', tx: 1, files: [], next: null })).toStrictEqual({ type: 'files', tx: 1, files: [] })
    })
  })

  describe('rejects with ERR_PROTOCOL', () => {
    it('an empty datagram', () => {
      expectProtocolError(() => decodeDatagram(Buffer.alloc(0)))
    })

    it('a datagram one byte over MAX_DATAGRAM_BYTES, even when it is a valid message', () => {
      // padded through an unknown field, which would be dropped if the size were allowed
      const at = (pad: number): Buffer => raw({ type: 'query_files', tx: 1, pad: 'x'.repeat(pad) })
      let pad = MAX_DATAGRAM_BYTES - at(0).length
      while (at(pad).length > MAX_DATAGRAM_BYTES) pad--
      while (at(pad + 1).length <= MAX_DATAGRAM_BYTES) pad++
      expect(at(pad).length).toBe(MAX_DATAGRAM_BYTES)
      expect(decodeDatagram(at(pad))).toStrictEqual({ type: 'query_files', tx: 1 })
      const over = Buffer.concat([at(pad), Buffer.from([0])])
      expect(over.length).toBe(MAX_DATAGRAM_BYTES + 1)
      expectProtocolError(() => decodeDatagram(over))
      expectProtocolError(() => decodeDatagram(Buffer.alloc(1 << 20)))
    })

    it('random bytes of many lengths', () => {
      const rand = prng(0x1badb002)
      for (let i = 0; i < 500; i++) {
        const b = randomBytes(rand, 1 + (rand() % 300))
        expectProtocolError(() => decodeDatagram(b))
      }
    })

    it('random bytes behind a valid map head', () => {
      const rand = prng(42)
      for (let i = 0; i < 300; i++) {
        const b = Buffer.concat([Buffer.from([0xa4, 0x64, 0x74, 0x79, 0x70, 0x65]), randomBytes(rand, 1 + (rand() % 100))])
        expectProtocolError(() => decodeDatagram(b))
      }
    })

    it('truncated valid datagrams, at every length', () => {
      const full = encodeDatagram({ type: 'nodes', tx: 8, nodes: [node()], next: NODE2 })
      for (let n = 1; n < full.length; n++) expectProtocolError(() => decodeDatagram(full.subarray(0, n)))
    })

    it('trailing bytes after the message', () => {
      const ok = encodeDatagram({ type: 'query_files', tx: 1 })
      expectProtocolError(() => decodeDatagram(Buffer.concat([ok, Buffer.from([0x00])])))
      expectProtocolError(() => decodeDatagram(Buffer.concat([ok, ok])))
    })

    it.each<[string, unknown]>([
      ['an array', [1, 2, 3]],
      ['an array holding a message', [{ type: 'query_files', tx: 1 }]],
      ['a string', 'query_files'],
      ['a number', 42],
      ['a float', 1.5],
      ['null', null],
      ['a boolean', true],
      ['a byte string', Buffer.from('hello')],
      ['an empty map', {}],
      ['a map without type', { tx: 1, nodeId: NODE, port: 1, files: 0 }],
      ['an unknown type', { type: 'shutdown', tx: 1 }],
      ['a peer message type', { type: 'probe', req: 1, fileId: H1 }],
      ['a type that is a number', { type: 1, tx: 1 }],
      ['a type that is a byte string', { type: Buffer.from('query_files'), tx: 1 }],
      ['a type that is an array', { type: ['query_files'], tx: 1 }],
      ['a type that is a map', { type: { a: 1 }, tx: 1 }],
      ['a type with different case', { type: 'QUERY_FILES', tx: 1 }],
    ])('valid CBOR of the wrong shape: %s', (_, v) => {
      expectProtocolError(() => dg(v))
    })

    // regression: naming an unknown type must not run user data through ToPrimitive (a map whose
    // `toString` key is not a function threw TypeError instead of ProtocolError)
    it('a type that is a map with a toString key (no primitive value)', () => {
      expectProtocolError(() => dg({ type: { toString: 1 }, tx: 1 }))
    })

    const publish = { type: 'publish', tx: 1, nodeId: NODE, port: 7000, name: 'a.bin', hash: H1, size: 10 }
    const announce = { type: 'announce', tx: 1, nodeId: NODE, port: 7000, files: 1 }
    const published = { type: 'published', tx: 1, meta: meta() }

    it.each<[string, Record<string, unknown>]>([
      ['tx as a string', { ...announce, tx: '1' }],
      ['tx missing', { ...announce, tx: undefined }],
      ['port as a string', { ...announce, port: '7000' }],
      ['files as a boolean', { ...announce, files: true }],
      ['nodeId as a number', { ...announce, nodeId: 1 }],
      ['nodeId as bytes', { ...announce, nodeId: Buffer.from(NODE, 'hex') }],
      ['name as a number', { ...publish, name: 1 }],
      ['name as an array', { ...publish, name: ['a'] }],
      ['hash as bytes', { ...publish, hash: Buffer.from(H1, 'hex') }],
      ['size as a string', { ...publish, size: '10' }],
      ['resync as a number', { type: 'announced', tx: 1, interval: 1000, resync: 1 }],
      ['interval as a string', { type: 'announced', tx: 1, interval: '1000', resync: false }],
      ['meta as an array', { ...published, meta: [meta()] }],
      ['meta missing', { type: 'published', tx: 1 }],
      ['meta.size as a string', { ...published, meta: { ...meta(), size: '100000' } }],
      ['files as a map', { type: 'files', tx: 1, files: { 0: meta() } }],
      ['files holding a string', { type: 'files', tx: 1, files: ['movie.mkv'] }],
      ['nodes as a string', { type: 'nodes', tx: 1, nodes: 'x' }],
      ['node files holding a number', { type: 'nodes', tx: 1, nodes: [{ ...node(), files: [1] }] }],
      ['node lastSeen as a string', { type: 'nodes', tx: 1, nodes: [{ ...node(), lastSeen: 'now' }] }],
      ['next as a number', { type: 'files', tx: 1, files: [], next: 5 }],
      ['after as a number', { type: 'query_files', tx: 1, after: 5 }],
      ['error code as a number', { type: 'error', tx: 1, code: 404, message: 'x' }],
      ['error message missing', { type: 'error', tx: 1, code: 'X' }],
    ])('wrong field type: %s', (_, v) => {
      expectProtocolError(() => dg(v))
    })

    it.each<[string, unknown]>([
      ['negative', -1],
      ['negative zero-ish float', -0.5],
      ['non-integer', 1.5],
      ['2^53 (not safe)', 2 ** 53],
      ['2^53 + 2', 2 ** 53 + 2],
      ['a 64-bit big integer', 2n ** 64n - 1n],
      ['a negative 64-bit big integer', -(2n ** 63n)],
      ['NaN', NaN],
      ['Infinity', Infinity],
      ['-Infinity', -Infinity],
    ])('a %s size', (_, size) => {
      expectProtocolError(() => dg({ ...publish, size }))
      expectProtocolError(() => dg({ ...published, meta: { ...meta(), size } }))
      expectProtocolError(() => dg({ ...announce, files: size }))
    })

    it('accepts MAX_FILE_SIZE (MAX_PIECES of the largest block) as a size, not a byte more (nor a file of more pieces)', () => {
      expect(dg({ ...publish, size: MAX_FILE_SIZE })).toMatchObject({ size: MAX_FILE_SIZE })
      expectProtocolError(() => dg({ ...publish, size: MAX_FILE_SIZE + 1 }))
      expectProtocolError(() => dg({ ...publish, size: Number.MAX_SAFE_INTEGER }))
      const big = { ...meta(), size: MAX_FILE_SIZE, blockSize: MAX_BLOCK_SIZE, pieces: MAX_PIECES }
      expect(dg({ ...published, meta: big })).toMatchObject({ meta: big })
      expectProtocolError(() => dg({ ...published, meta: { ...big, size: MAX_FILE_SIZE + MAX_BLOCK_SIZE, pieces: MAX_PIECES + 1 } }))
    })

    it.each<[string, number]>([['-1', -1], ['2^32', 2 ** 32], ['1.5', 1.5]])('a tx of %s', (_, tx) => {
      expectProtocolError(() => dg({ ...announce, tx }))
    })

    it.each<[string, number]>([['0', 0], ['65536', 65536], ['-1', -1], ['80.5', 80.5]])('a port of %s', (_, port) => {
      expectProtocolError(() => dg({ ...announce, port }))
    })

    it.each<[string, number]>([['0', 0], ['over an hour', 3_600_001]])('an announce interval of %s', (_, interval) => {
      expectProtocolError(() => dg({ type: 'announced', tx: 1, interval, resync: false }))
    })

    it.each<[string, string]>([
      ['upper case', H1.toUpperCase()],
      ['mixed case', 'A' + H1.slice(1)],
      ['63 digits', H1.slice(1)],
      ['65 digits', H1 + '0'],
      ['empty', ''],
      ['a non-hex digit', 'g' + H1.slice(1)],
      ['surrounded by spaces', ` ${H1.slice(2)} `],
      ['a trailing newline', H1.slice(1) + '\n'],
      ['a 0x prefix', '0x' + H1.slice(2)],
    ])('a hash that is %s', (_, hash) => {
      expectProtocolError(() => dg({ ...publish, hash }))
      expectProtocolError(() => dg({ ...published, meta: { ...meta(), hash } }))
      expectProtocolError(() => dg({ type: 'query_files', tx: 1, after: hash }))
      expectProtocolError(() => dg({ type: 'get_nodes', tx: 1, fileId: hash }))
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: [{ ...node(), files: [hash] }] }))
    })

    it.each<[string, string]>([
      ['upper case', NODE.toUpperCase()],
      ['31 digits', NODE.slice(1)],
      ['a hash', H1],
    ])('a node id that is %s', (_, nodeId) => {
      expectProtocolError(() => dg({ ...announce, nodeId }))
      expectProtocolError(() => dg({ type: 'get_nodes', tx: 1, after: nodeId }))
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: [{ ...node(), nodeId }] }))
    })

    it('an empty name', () => {
      expectProtocolError(() => dg({ ...publish, name: '' }))
      expectProtocolError(() => dg({ ...published, meta: { ...meta(), name: '' } }))
    })

    it('a name over 512 bytes (a path in its sharer\'s folder), counting UTF-8 bytes rather than characters', () => {
      expect(dg({ ...publish, name: 'a'.repeat(512) })).toMatchObject({ name: 'a'.repeat(512) })
      expectProtocolError(() => dg({ ...publish, name: 'a'.repeat(513) }))
      const accents = 'é'.repeat(255) + 'ab' // 512 bytes, 257 characters
      expect(dg({ ...publish, name: accents })).toMatchObject({ name: accents })
      expectProtocolError(() => dg({ ...publish, name: 'é'.repeat(256) + 'a' })) // 513 bytes
      expectProtocolError(() => dg({ ...published, meta: { ...meta(), name: 'x'.repeat(513) } }))
    })

    it('error code and message over their caps', () => {
      expect(dg({ type: 'error', tx: 1, code: 'C'.repeat(32), message: 'm'.repeat(512) })).toMatchObject({ type: 'error' })
      expectProtocolError(() => dg({ type: 'error', tx: 1, code: 'C'.repeat(33), message: 'm' }))
      expectProtocolError(() => dg({ type: 'error', tx: 1, code: 'C', message: 'm'.repeat(513) }))
      expectProtocolError(() => dg({ type: 'error', tx: 1, code: 'C', message: '€'.repeat(171) })) // 513 bytes
    })

    it('a next cursor over 64 bytes', () => {
      expectProtocolError(() => dg({ type: 'files', tx: 1, files: [], next: 'n'.repeat(65) }))
    })

    it.each<[string, Partial<FileMetaData>]>([
      ['blockSize not a multiple of 4096', { blockSize: 16385, pieces: 7 }],
      ['blockSize of 6000', { blockSize: 6000, pieces: 17 }],
      ['blockSize 0', { blockSize: 0, pieces: 0 }],
      ['blockSize over MAX_BLOCK_SIZE', { blockSize: MAX_BLOCK_SIZE + PAGE_SIZE, pieces: 1 }],
      ['pieces one short of ceil(size / blockSize)', { pieces: 6 }],
      ['pieces one over ceil(size / blockSize)', { pieces: 8 }],
      ['pieces for an exact multiple counted one too many', { size: 16384 * 4, pieces: 5 }],
      ['one piece for an empty file', { size: 0, pieces: 1 }],
    ])('file metadata with %s', (_, over) => {
      expectProtocolError(() => dg({ ...published, meta: meta(over) }))
      expectProtocolError(() => dg({ type: 'files', tx: 1, files: [meta(), meta(over)] }))
    })

    it('a node files list longer than MAX_FILES_PER_NODE_ITEM', () => {
      const f = { fileId: H1, have: 1, pieces: 2 }
      const files = Array.from({ length: MAX_FILES_PER_NODE_ITEM }, () => f)
      expect(dg({ type: 'nodes', tx: 1, nodes: [{ ...node(), files }] })).toMatchObject({ type: 'nodes' })
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: [{ ...node(), files: [...files, f] }] }))
    })
    it('a node file with more pieces held than it has', () => {
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: [{ ...node(), files: [{ fileId: H1, have: 3, pieces: 2 }] }] }))
    })
    it('a publish with a root but no blockSize', () => {
      expectProtocolError(() => dg({ type: 'publish', tx: 1, nodeId: NODE, port: 7000, name: 'a', hash: H1, size: 1, root: H2 }))
    })

    it('files and nodes lists longer than MAX_LIST_ITEMS, before looking at the items', () => {
      // items are junk: the length cap must reject the list without validating 1025 items
      const junk = new Array(MAX_LIST_ITEMS + 1).fill(0)
      expectProtocolError(() => dg({ type: 'files', tx: 1, files: junk }))
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: junk }))
    })
  })

  describe('trackerMessage list caps (on decoded values, beyond what one datagram could carry)', () => {
    it('accepts MAX_LIST_ITEMS files and refuses one more', () => {
      const files = Array.from({ length: MAX_LIST_ITEMS }, () => meta())
      expect((trackerMessage({ type: 'files', tx: 1, files }) as { files: unknown[] }).files).toHaveLength(MAX_LIST_ITEMS)
      expectProtocolError(() => trackerMessage({ type: 'files', tx: 1, files: [...files, meta()] }))
    })
    it('accepts MAX_LIST_ITEMS nodes and refuses one more', () => {
      const nodes = Array.from({ length: MAX_LIST_ITEMS }, () => node())
      expect((trackerMessage({ type: 'nodes', tx: 1, nodes }) as { nodes: unknown[] }).nodes).toHaveLength(MAX_LIST_ITEMS)
      expectProtocolError(() => trackerMessage({ type: 'nodes', tx: 1, nodes: [...nodes, node()] }))
    })
  })

  describe('host of a node', () => {
    it.each(['10.0.0.1', '255.255.255.255', '::1', 'fe80::1', '2001:db8::ff00:42:8329', '::ffff:192.168.1.1'])('accepts the IP literal %s', (host) => {
      expect(dg({ type: 'nodes', tx: 1, nodes: [node({ host })] })).toMatchObject({ nodes: [{ host }] })
    })
    it.each(['', 'example.com', 'localhost', '1.2.3.4 ', 'x'.repeat(46)])('rejects %j', (host) => {
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: [node({ host })] }))
    })
    // regression: host names spelled in hex letters passed an earlier regex check, and
    // net.connect() would have resolved them through DNS; only IP literals come from the wire
    it.each(['cafe', 'dead.beef', 'bad', '...', '999.1.1.1'])('rejects the non-IP %j', (host) => {
      expectProtocolError(() => dg({ type: 'nodes', tx: 1, nodes: [node({ host })] }))
    })
  })
})

// ---------------------------------------------------------------- peer wire
describe('peer frames', () => {
  const messages: Array<[string, PeerMessage]> = [
    ['find_cluster', { type: 'find_cluster', req: 1, fileId: H1 }],
    ['cluster', { type: 'cluster', req: 2, fileId: H1, peers: [peer(), peer({ nodeId: NODE2, host: '::1', port: 65535 })] }],
    ['cluster with no peers', { type: 'cluster', req: 2, fileId: H1, peers: [] }],
    ['probe', { type: 'probe', req: 3, fileId: H2 }],
    ['probe from a peer that serves the file too', { type: 'probe', req: 3, fileId: H2, from: { nodeId: NODE, port: 7000 } }],
    ['watch', { type: 'probe', req: 3, fileId: H2, since: 12, lacks: new Uint8Array([0xf0, 0x01]), waitMs: 2000, from: { nodeId: NODE, port: 7000 } }],
    ['watch of an asker with no hash list yet', { type: 'probe', req: 3, fileId: H2, since: 0, lacks: new Uint8Array([0xff, 0xc0]), waitMs: 2000, needHashes: true }],
    ['have of a holder with the hash list and no piece yet', { type: 'have', req: 4, fileId: H1, totalPieces: 10, bitfield: new Uint8Array([0, 0]), version: 0, hashes: true }],
    ['have of a holder still downloading, with its version', { type: 'have', req: 4, fileId: H1, totalPieces: 10, bitfield: new Uint8Array([0xc0, 0x00]), pending: new Uint8Array([0x20, 0x00]), version: 2 }],
    ['have without bitfield (every piece)', { type: 'have', req: 4, fileId: H1, totalPieces: 7 }],
    ['leech of the first piece', { type: 'leech', req: 5, hash: H1, size: 100_000, offset: 0, blockSize: 16384, pieces: 7 }],
    ['leech of the last (short) piece', { type: 'leech', req: 0xffffffff, hash: H1, size: 100_000, offset: 6 * 16384, blockSize: 16384, pieces: 7 }],
    ['leech saying how many copies the asker knows of', { type: 'leech', req: 6, hash: H1, size: 100_000, offset: 0, blockSize: 16384, pieces: 7, copies: 3 }],
    ['leech of a starved asker', { type: 'leech', req: 6, hash: H1, size: 100_000, offset: 0, blockSize: 16384, pieces: 7, copies: 3, starved: true }],
    ['error', { type: 'error', req: 7, code: 'BUSY', message: 'try later' }],
    ['BUSY saying when to ask again', { type: 'error', req: 7, code: 'BUSY', message: 'try later', retryMs: 51 }],
    ['BUSY saying to ask again at once', { type: 'error', req: 7, code: 'BUSY', message: 'try later', retryMs: 0 }],
    ['BUSY asking the longest wait', { type: 'error', req: 7, code: 'BUSY', message: 'try later', retryMs: MAX_BUSY_RETRY_MS }],
  ]

  it.each(messages)('round-trips %s through encodeFrameHead and FrameDecoder', (_, msg) => {
    const frames = viaFrames(msg)
    expect(frames).toHaveLength(1)
    expect(frames[0].msg).toStrictEqual(msg)
    expect(frames[0].payload).toBeUndefined()
  })

  it.each([
    ['a Buffer', (b: number[]) => Buffer.from(b)],
    ['a Uint8Array', (b: number[]) => new Uint8Array(b)],
  ])('round-trips have with a bitfield given as %s', (_, make) => {
    const bits = [0b10110000, 0b01000000] // 10 pieces: 0, 2, 3 and 9
    const msg: PeerMessage = { type: 'have', req: 4, fileId: H1, totalPieces: 10, bitfield: make(bits) }
    const [f] = viaFrames(msg)
    expect(f.msg).toMatchObject({ type: 'have', req: 4, fileId: H1, totalPieces: 10 })
    const got = (f.msg as { bitfield?: Uint8Array }).bitfield
    expect(got).toBeInstanceOf(Uint8Array)
    expect(Array.from(got as Uint8Array)).toEqual(bits)
  })

  it('a decoded bitfield is a copy, not a view of the receive buffer', () => {
    const head = encodeFrameHead({ type: 'have', req: 1, fileId: H1, totalPieces: 8, bitfield: Buffer.from([0xaa]) })
    const [f] = new FrameDecoder().push(head)
    head.fill(0)
    expect(Array.from((f.msg as { bitfield: Uint8Array }).bitfield)).toEqual([0xaa])
  })

  it('round-trips piece with its raw payload', () => {
    const payload = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff))
    const msg: PeerMessage = { type: 'piece', req: 6, pieceSize: payload.length, offset: 16384, totalPieces: 7, clusterName: H1 }
    const frames = viaFrames(msg, payload)
    expect(frames).toHaveLength(1)
    expect(frames[0].msg).toStrictEqual(msg)
    expect(Buffer.compare(frames[0].payload as Buffer, payload)).toBe(0)
  })

  it('round-trips piece with the sender\'s bitfield', () => {
    const msg: PeerMessage = { type: 'piece', req: 6, pieceSize: 3, offset: 0, totalPieces: 10, clusterName: H1, bitfield: new Uint8Array([0xa0, 0x40]) }
    const [f] = viaFrames(msg, Buffer.from([1, 2, 3]))
    expect(f.msg).toMatchObject({ type: 'piece', totalPieces: 10 })
    expect(Array.from((f.msg as { bitfield: Uint8Array }).bitfield)).toEqual([0xa0, 0x40])
  })

  it('round-trips an empty piece', () => {
    const msg: PeerMessage = { type: 'piece', req: 6, pieceSize: 0, offset: 0, totalPieces: 0, clusterName: H1 }
    const [f] = viaFrames(msg)
    expect(f.msg).toStrictEqual(msg)
    expect(f.payload).toEqual(Buffer.alloc(0))
  })

  it('writes the documented prefix: L counts every byte after itself, H the header', () => {
    const head = encodeFrameHead({ type: 'probe', req: 3, fileId: H1 }, 100)
    const h = head.readUInt32BE(4)
    expect(head.length).toBe(FRAME_PREFIX_BYTES + h)
    expect(head.readUInt32BE(0)).toBe(4 + h + 100)
    expect(decodeFrameHeader(head.subarray(FRAME_PREFIX_BYTES))).toStrictEqual({ type: 'probe', req: 3, fileId: H1 })
  })

  it('refuses to encode a frame over MAX_FRAME_BYTES or a header over MAX_HEADER_BYTES (RangeError)', () => {
    const piece: PeerMessage = { type: 'piece', req: 1, pieceSize: MAX_BLOCK_SIZE, offset: 0, totalPieces: 1, clusterName: H1 }
    expect(encodeFrameHead(piece, MAX_BLOCK_SIZE).length).toBeGreaterThan(FRAME_PREFIX_BYTES)
    expect(() => encodeFrameHead(piece, MAX_FRAME_BYTES)).toThrow(RangeError)
    expect(() => encodeFrameHead({ type: 'error', req: 1, code: 'X', message: 'm'.repeat(MAX_HEADER_BYTES) })).toThrow(RangeError)
  })

  it('drops unknown fields, nested ones included', () => {
    expect(fh({ type: 'probe', req: 1, fileId: H1, priority: 9 })).toStrictEqual({ type: 'probe', req: 1, fileId: H1 })
    expect(fh({ type: 'cluster', req: 1, fileId: H1, peers: [{ ...peer(), token: 'x' }] }))
      .toStrictEqual({ type: 'cluster', req: 1, fileId: H1, peers: [peer()] })
    expect(fh({ type: 'have', req: 1, fileId: H1, totalPieces: 3, bitfield: null }))
      .toStrictEqual({ type: 'have', req: 1, fileId: H1, totalPieces: 3 })
  })

  describe('rejects with ERR_PROTOCOL', () => {
    const leech = { type: 'leech', req: 5, hash: H1, size: 100_000, offset: 0, blockSize: 16384, pieces: 7 }
    const piece = { type: 'piece', req: 6, pieceSize: 10, offset: 0, totalPieces: 1, clusterName: H1 }
    const have = { type: 'have', req: 4, fileId: H1, totalPieces: 10 }

    it('random bytes as a frame header', () => {
      const rand = prng(7)
      for (let i = 0; i < 300; i++) {
        const b = randomBytes(rand, 1 + (rand() % 200))
        expectProtocolError(() => decodeFrameHeader(b))
      }
    })

    it.each<[string, unknown]>([
      ['an array', [{ type: 'probe', req: 1, fileId: H1 }]],
      ['a string', 'probe'],
      ['a number', 7],
      ['a map without type', { req: 1, fileId: H1 }],
      ['an unknown type', { type: 'upload', req: 1 }],
      ['a tracker message type', { type: 'announce', tx: 1, nodeId: NODE, port: 1, files: 0 }],
    ])('valid CBOR of the wrong shape: %s', (_, v) => {
      expectProtocolError(() => fh(v))
    })

    it('a type that is a map with a toString key (no primitive value)', () => {
      expectProtocolError(() => fh({ type: { toString: 1 }, req: 1 }))
    })

    it.each<[string, Record<string, unknown>]>([
      ['req as a string', { type: 'probe', req: '1', fileId: H1 }],
      ['req negative', { type: 'probe', req: -1, fileId: H1 }],
      ['req over u32', { type: 'probe', req: 2 ** 32, fileId: H1 }],
      ['fileId upper case', { type: 'find_cluster', req: 1, fileId: H1.toUpperCase() }],
      ['fileId as bytes', { type: 'find_cluster', req: 1, fileId: Buffer.from(H1, 'hex') }],
      ['peers as a map', { type: 'cluster', req: 1, fileId: H1, peers: { 0: peer() } }],
      ['a peer with port 0', { type: 'cluster', req: 1, fileId: H1, peers: [peer({ port: 0 })] }],
      ['a peer with a host name', { type: 'cluster', req: 1, fileId: H1, peers: [peer({ host: 'evil.example' })] }],
      ['a peer with a bad node id', { type: 'cluster', req: 1, fileId: H1, peers: [peer({ nodeId: 'x' })] }],
      ['totalPieces as a string', { ...have, totalPieces: '10' }],
      ['bitfield as an array of numbers', { ...have, bitfield: [0xff, 0xc0] }],
      ['bitfield as a string', { ...have, bitfield: '\xff\xc0' }],
      ['leech size negative', { ...leech, size: -1 }],
      ['leech offset a float', { ...leech, offset: 0.5 }],
      ['leech size over 2^53', { ...leech, size: 2 ** 53 + 2, pieces: Math.ceil((2 ** 53 + 2) / 16384) }],
      ['piece pieceSize over MAX_BLOCK_SIZE', { ...piece, pieceSize: MAX_BLOCK_SIZE + 1 }],
      ['piece pieceSize negative', { ...piece, pieceSize: -1 }],
      ['piece clusterName not a hash', { ...piece, clusterName: 'movie.mkv' }],
      ['piece offset as a big integer', { ...piece, offset: 2n ** 60n }],
      ['error code as a number', { type: 'error', req: 1, code: 1, message: '' }],
      ['retryMs negative', { type: 'error', req: 1, code: 'BUSY', message: '', retryMs: -1 }],
      ['retryMs a float', { type: 'error', req: 1, code: 'BUSY', message: '', retryMs: 1.5 }],
      ['retryMs over MAX_BUSY_RETRY_MS', { type: 'error', req: 1, code: 'BUSY', message: '', retryMs: MAX_BUSY_RETRY_MS + 1 }],
      ['retryMs a string', { type: 'error', req: 1, code: 'BUSY', message: '', retryMs: '20' }],
    ])('wrong field: %s', (_, v) => {
      expectProtocolError(() => fh(v))
    })

    it.each<[string, Record<string, unknown>]>([
      ['blockSize not a multiple of 4096', { blockSize: 16000, pieces: 7 }],
      ['blockSize below a page', { blockSize: 2048, pieces: 49 }],
      ['blockSize over MAX_BLOCK_SIZE', { blockSize: MAX_BLOCK_SIZE * 2, pieces: 1 }],
      ['pieces != ceil(size / blockSize)', { pieces: 6 }],
      ['offset not a multiple of blockSize', { offset: 4096 }],
      ['offset one past a piece start', { offset: 16385 }],
      ['offset == size', { size: 16384 * 7, offset: 16384 * 7 }],
      ['offset past the end', { offset: 7 * 16384 }],
      ['any offset into an empty file', { size: 0, pieces: 0, offset: 0 }],
      ['copies negative', { copies: -1 }],
      ['copies a float', { copies: 1.5 }],
      ['copies over 65535', { copies: 65536 }],
      ['copies a string', { copies: '1' }],
      ['starved a number', { starved: 1 }],
      ['starved a string', { starved: 'yes' }],
    ])('leech with %s', (_, over) => {
      expectProtocolError(() => fh({ ...leech, ...over }))
    })

    it('have with a bitfield of the wrong length', () => {
      expect(fh({ ...have, bitfield: Buffer.alloc(2) })).toMatchObject({ totalPieces: 10 })
      expectProtocolError(() => fh({ ...have, bitfield: Buffer.alloc(1) }))
      expectProtocolError(() => fh({ ...have, bitfield: Buffer.alloc(3) }))
      expectProtocolError(() => fh({ ...have, bitfield: Buffer.alloc(0) }))
      expectProtocolError(() => fh({ ...have, totalPieces: 0, bitfield: Buffer.alloc(1) }))
      expectProtocolError(() => fh({ ...have, bitfield: Buffer.alloc(60_000) }))
    })

    it('piece with a bitfield of the wrong length', () => {
      const piece = { type: 'piece', req: 6, pieceSize: 10, offset: 0, totalPieces: 10, clusterName: H1 }
      expect(fh({ ...piece, bitfield: Buffer.alloc(2) })).toMatchObject({ totalPieces: 10 })
      expectProtocolError(() => fh({ ...piece, bitfield: Buffer.alloc(1) }))
      expectProtocolError(() => fh({ ...piece, bitfield: Buffer.alloc(3) }))
      expectProtocolError(() => fh({ ...piece, bitfield: Buffer.alloc(60_000) }))
    })

    describe('watches (probe with since, lacks, waitMs, from) and have.version', () => {
      const watch = { type: 'probe', req: 3, fileId: H1, since: 4, lacks: Buffer.alloc(2), waitMs: 2000 }

      it('accepts the bounds: waitMs 0 and MAX_WATCH_MS, lacks of MAX_BITFIELD_BYTES, an empty lacks', () => {
        expect(fh({ ...watch, waitMs: 0 })).toMatchObject({ since: 4, waitMs: 0 })
        expect(fh({ ...watch, waitMs: MAX_WATCH_MS })).toMatchObject({ waitMs: MAX_WATCH_MS })
        expect((fh({ ...watch, lacks: Buffer.alloc(MAX_BITFIELD_BYTES) }) as { lacks: Uint8Array }).lacks).toHaveLength(MAX_BITFIELD_BYTES)
        expect((fh({ ...watch, lacks: Buffer.alloc(0) }) as { lacks: Uint8Array }).lacks).toHaveLength(0)
      })

      it('a plain probe ignores lacks and waitMs without since (they mean nothing there)', () => {
        expect(fh({ type: 'probe', req: 3, fileId: H1, lacks: 'junk', waitMs: -1 })).toStrictEqual({ type: 'probe', req: 3, fileId: H1 })
      })

      it.each<[string, Record<string, unknown>]>([
        ['waitMs over MAX_WATCH_MS', { waitMs: MAX_WATCH_MS + 1 }],
        ['waitMs negative', { waitMs: -1 }],
        ['waitMs missing', { waitMs: undefined }],
        ['waitMs a float', { waitMs: 1.5 }],
        ['lacks longer than MAX_BITFIELD_BYTES', { lacks: Buffer.alloc(MAX_BITFIELD_BYTES + 1) }],
        ['lacks missing', { lacks: undefined }],
        ['lacks as an array of numbers', { lacks: [0xff] }],
        ['since negative', { since: -1 }],
        ['since a string', { since: '4' }],
        ['since over 2^53', { since: 2 ** 53 }],
        ['from with a bad node id', { from: { nodeId: 'x', port: 7000 } }],
        ['from with port 0', { from: { nodeId: NODE, port: 0 } }],
        ['from not a map', { from: 7000 }],
        ['needHashes not a boolean', { needHashes: 1 }],
        ['needHashes a string', { needHashes: 'yes' }],
      ])('a watch with %s', (_, over) => {
        expectProtocolError(() => fh({ ...watch, ...over }))
      })

      it('have.version is at most totalPieces', () => {
        expect(fh({ ...have, version: 0 })).toMatchObject({ version: 0 })
        expect(fh({ ...have, version: 10 })).toMatchObject({ version: 10 })
        expectProtocolError(() => fh({ ...have, version: 11 }))
        expectProtocolError(() => fh({ ...have, version: -1 }))
        expectProtocolError(() => fh({ ...have, version: '3' }))
      })

      it('have.hashes is a boolean', () => {
        expect(fh({ ...have, hashes: true })).toMatchObject({ hashes: true })
        expectProtocolError(() => fh({ ...have, hashes: 1 }))
        expectProtocolError(() => fh({ ...have, hashes: 'true' }))
      })
    })

    it('a cluster with more than MAX_PEERS_PER_REPLY peers', () => {
      const peers = Array.from({ length: MAX_PEERS_PER_REPLY }, () => peer())
      expect((fh({ type: 'cluster', req: 1, fileId: H1, peers }) as { peers: unknown[] }).peers).toHaveLength(MAX_PEERS_PER_REPLY)
      expectProtocolError(() => fh({ type: 'cluster', req: 1, fileId: H1, peers: [...peers, peer()] }))
    })
  })
})

// ---------------------------------------------------------------- nesting
describe('deeply nested CBOR', () => {
  const nestedArrays = (n: number): Buffer => Buffer.concat([Buffer.alloc(n, 0x81), Buffer.from([0x00])])
  const nestedIndefinite = (n: number): Buffer => Buffer.concat([Buffer.alloc(n, 0x9f), Buffer.alloc(n, 0xff)])
  // {"x": {"x": … 0}}
  const nestedMaps = (n: number): Buffer => Buffer.concat([Buffer.from('a16178'.repeat(n), 'hex'), Buffer.from([0x00])])
  const nestedTags = (n: number): Buffer => Buffer.concat([Buffer.alloc(n, 0xc6), Buffer.from([0x00])])

  it.each<[string, (n: number) => Buffer]>([
    ['arrays', nestedArrays],
    ['indefinite-length arrays', nestedIndefinite],
    ['maps', nestedMaps],
    ['tags', nestedTags],
  ])('1000 nested %s are refused quickly, as a datagram and as a frame header', (_, make) => {
    const b = make(1000)
    const t0 = process.hrtime.bigint()
    expect(exceedsDepth(b, 8)).toBe(true)
    expectProtocolError(() => decodeDatagram(b))
    expectProtocolError(() => decodeFrameHeader(b))
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(200)
  })

  it('the largest nesting a datagram or frame header can hold is refused', () => {
    expectProtocolError(() => decodeDatagram(nestedArrays(MAX_DATAGRAM_BYTES - 1)))
    expectProtocolError(() => decodeFrameHeader(nestedArrays(MAX_HEADER_BYTES - 1)))
    expect(exceedsDepth(nestedArrays(MAX_HEADER_BYTES - 1), 8)).toBe(true)
  })

  it('a deeply nested value under an otherwise valid message is refused', () => {
    const inner = nestedArrays(100)
    // {"type": "query_files", "tx": 1, "x": [[[…]]]}: the extra field would be dropped if decoded
    const b = Buffer.concat([Buffer.from([0xa3]), raw('type'), raw('query_files'), raw('tx'), raw(1), raw('x'), inner])
    expect(exceedsDepth(b, 8)).toBe(true)
    expectProtocolError(() => decodeDatagram(b))
  })

  it('counts depth exactly: 8 levels pass, 9 do not', () => {
    expect(exceedsDepth(nestedArrays(8), 8)).toBe(false)
    expect(exceedsDepth(nestedArrays(9), 8)).toBe(true)
    expect(exceedsDepth(nestedMaps(8), 8)).toBe(false)
    expect(exceedsDepth(nestedMaps(9), 8)).toBe(true)
  })

  it('siblings do not add up to depth', () => {
    // [[0], [0], … 100 times] is 2 deep however many siblings there are
    const b = encodeValue(Array.from({ length: 100 }, () => [0]))
    expect(exceedsDepth(b, 2)).toBe(false)
    expect(exceedsDepth(b, 1)).toBe(true)
  })

  it('every real message is within the depth limit', () => {
    const msgs: unknown[] = [
      { type: 'nodes', tx: 8, nodes: [node(), node()], next: NODE2 },
      { type: 'files', tx: 6, files: [meta(), meta()] },
      { type: 'cluster', req: 2, fileId: H1, peers: [peer(), peer()] },
      { type: 'have', req: 4, fileId: H1, totalPieces: 10, bitfield: new Uint8Array(2) },
    ]
    for (const m of msgs) expect(exceedsDepth(encodeValue(m), 8)).toBe(false)
  })

  // regression: an 8-byte string length (additional info 27) was read as MAX_SAFE_INTEGER, so the
  // walk ran off the end and answered "not too deep" while the decoder read the real length (1)
  // and recursed into the nesting that follows
  it('a string with an 8-byte length does not hide nesting that follows it', () => {
    const b = Buffer.concat([Buffer.from([0x82, 0x5b, 0, 0, 0, 0, 0, 0, 0, 1, 0x78]), nestedArrays(1000)])
    expect(exceedsDepth(b, 8)).toBe(true)
  })
})

// ---------------------------------------------------------------- helpers of messages.ts
describe('segmentation helpers', () => {
  it('checkSegmentation accepts ceil(size / blockSize) pieces of a page-multiple block', () => {
    expect(() => checkSegmentation(0, 16384, 0)).not.toThrow()
    expect(() => checkSegmentation(1, 16384, 1)).not.toThrow()
    expect(() => checkSegmentation(16384, 16384, 1)).not.toThrow()
    expect(() => checkSegmentation(16385, 16384, 2)).not.toThrow()
    expect(() => checkSegmentation(Number.MAX_SAFE_INTEGER, MAX_BLOCK_SIZE, Math.ceil(Number.MAX_SAFE_INTEGER / MAX_BLOCK_SIZE))).not.toThrow()
    expectProtocolError(() => checkSegmentation(16385, 16384, 1))
    expectProtocolError(() => checkSegmentation(100, 4097, 1))
  })

  it('fileMetaData validates a bare object', () => {
    expect(fileMetaData(meta())).toStrictEqual(meta())
    expectProtocolError(() => fileMetaData('movie.mkv'))
  })

  it('pieceLength covers the file exactly', () => {
    const size = 100_000; const bs = 16384
    let total = 0
    for (let i = 0; i < 7; i++) total += pieceLength(size, bs, i)
    expect(total).toBe(size)
    expect(pieceLength(size, bs, 0)).toBe(bs)
    expect(pieceLength(size, bs, 6)).toBe(size - 6 * bs)
    expect(pieceLength(size, bs, 7)).toBe(0)
  })

  it('peerMessage validates a bare object', () => {
    expect(peerMessage({ type: 'probe', req: 1, fileId: H1 })).toStrictEqual({ type: 'probe', req: 1, fileId: H1 })
    expectProtocolError(() => peerMessage(undefined))
  })
})
