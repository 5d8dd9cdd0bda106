import { createHash } from 'node:crypto'
import { HeldDownload } from '../../src/peer/held'
import { hasBit } from '../../src/peer/picker'
import type { FileMetaData } from '../../src/protocol/messages'

const meta: FileMetaData = { name: 'a.bin', hash: 'ab'.repeat(32), size: 10 * 4096, blockSize: 4096, pieces: 10 }
const source = (size: number): { size: number, view: () => Buffer[] } => ({ size, view: () => [] })
const list = Buffer.alloc(10 * 32, 7)

describe('HeldDownload: a download as its node holds and serves it (Lp2pNode and the simulator both)', () => {
  it('serves nothing until the hash list is verified, then the pieces it stored; says when to tell the tracker', () => {
    const partial = source(0)
    const h = new HeldDownload(meta, [], () => partial, () => null)
    const served = h.serving()
    expect(served.source()).toBe(partial)
    expect(Array.from(served.have() as Uint8Array)).toEqual([0, 0])
    expect(h.stored(3)).toBe(false) // no list yet: nothing to serve, nothing to say
    expect(Array.from(served.have() as Uint8Array)).toEqual([0, 0])
    expect(h.gotHashes(list)).toBe(true) // it holds a piece it can serve now
    expect(served.pieceHashes()).toBe(list)
    expect(hasBit(served.have() as Uint8Array, 3)).toBe(true)
    expect(h.stored(5)).toBe(false) // not the first
    expect(h.have).toBe(2)
    expect(served.log?.version).toBe(2)
  })

  it('with the list first, the first piece stored is the one to tell the tracker about', () => {
    const h = new HeldDownload(meta, [], () => source(0), () => null)
    expect(h.gotHashes(list)).toBe(false) // holds nothing yet
    expect(h.stored(0)).toBe(true)
    expect(h.stored(1)).toBe(false)
  })

  it('a resumed download holds (and lists in its log) what the last run stored', () => {
    const h = new HeldDownload(meta, [1, 8], () => source(0), () => null)
    expect(h.have).toBe(2)
    h.gotHashes(list)
    const have = h.serving().have() as Uint8Array
    expect([...Array(10).keys()].filter((i) => hasBit(have, i))).toEqual([1, 8])
    expect(h.log.version).toBe(2)
  })

  it('lists the pieces in flight from the leech flow, once it gave its view, and none once complete', () => {
    let view: (() => Uint8Array) | null = null
    const h = new HeldDownload(meta, [], () => source(0), () => view)
    const served = h.serving()
    expect(served.pending?.()).toBeNull()
    view = () => Uint8Array.of(0x80, 0)
    expect(Array.from(served.pending?.() as Uint8Array)).toEqual([0x80, 0])
    h.completed(source(meta.size))
    expect(served.pending?.()).toBeNull()
  })

  it('sends every piece once before any twice, on the clock it is given (virtual time in a simulation)', () => {
    let now = 0
    const sent = new HeldDownload(meta, [], () => source(0), () => null, () => now).serving().sent
    sent?.note(4)
    expect(sent?.take(4, 1)).toBe(false) // held back: sent a moment ago
    now = 10_000
    expect(sent?.take(4, 1)).toBe(true) // the hold is over, and the asker knows no other holder
  })

  it('the tracker hears what it holds so far; complete without a hash list (none to check: a file of no pieces, or no root), it is listed without a root', () => {
    const h = new HeldDownload(meta, [2, 3], () => source(0), () => null)
    expect(h.file).toBeNull() // a partial file is its sink's to close
    expect(h.publish('n2', 7001)).toEqual({ type: 'publish', nodeId: 'n2', port: 7001, name: 'a.bin', hash: meta.hash, size: meta.size, have: 2 })
    h.completed(source(meta.size))
    expect(h.publish('n2', 7001)).toEqual({ type: 'publish', nodeId: 'n2', port: 7001, name: 'a.bin', hash: meta.hash, size: meta.size, have: meta.pieces })
  })

  it('complete: served whole from the verified file, with no log and no send-once rule; the tracker hears it as a seeder with the root', () => {
    const h = new HeldDownload(meta, [], () => source(0), () => null)
    h.gotHashes(list)
    expect(h.publish('n1', 7000)).toEqual({ type: 'publish', nodeId: 'n1', port: 7000, name: 'a.bin', hash: meta.hash, size: meta.size, have: 0 })
    const file = source(meta.size)
    let checked = 0
    const done = h.completed(file, () => { checked++ })
    expect(h.complete).toBe(true)
    expect(h.have).toBe(10)
    expect(done.have()).toBeNull()
    expect(done.source()).toBe(file)
    expect(h.source()).toBe(file)
    expect(h.file).toBe(file) // (what the node closes when it stops)
    done.checkSize()
    expect(checked).toBe(1)
    expect(done.log).toBeUndefined()
    expect(done.sent).toBeUndefined()
    expect(h.publish('n1', 7000)).toEqual({ type: 'publish', nodeId: 'n1', port: 7000, name: 'a.bin', hash: meta.hash, size: meta.size, have: meta.pieces, blockSize: 4096, root: createHash('sha256').update(list).digest('hex') })
  })
})
