import { TestScheduler } from 'rxjs/testing'
import { NEVER, type Observable } from 'rxjs'
import { addHave, heatmap, probeAvailability, type ProbeOutcome } from '../../../src/tracker/dashboard/availability'
import type { Have, PeerAddress } from '../../../src/protocol/messages'

const F = 'f'.repeat(64)
const peer = (c: string): PeerAddress => ({ nodeId: c.repeat(32), host: '127.0.0.1', port: 7000 + c.charCodeAt(0) })
const have = (bitfield?: number[]): Have => ({ type: 'have', req: 1, fileId: F, totalPieces: 10, ...(bitfield === undefined ? {} : { bitfield: Uint8Array.from(bitfield) }) })

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

describe('addHave', () => {
  it('counts set bits MSB first, and every piece for a seeder (no bitfield)', () => {
    const c = new Uint16Array(10)
    addHave(c, have([0b10100000, 0b01000000]))
    expect([...c]).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    addHave(c, have())
    expect([...c]).toEqual([2, 1, 2, 1, 1, 1, 1, 1, 1, 2])
  })

  it('a short bitfield holds nothing past its end', () => {
    const c = new Uint16Array(10)
    addHave(c, have([0xff]))
    expect([...c]).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
  })
})

describe('heatmap', () => {
  it('keeps one cell per piece when they fit', () => {
    expect(heatmap([0, 1, 2], 8)).toEqual({ piecesPerCell: 1, min: [0, 1, 2], mean: [0, 1, 2] })
  })
  it('downsamples to at most `cells` cells: the least and the mean of each run', () => {
    const h = heatmap([3, 1, 2, 2, 0, 4, 5], 3)
    expect(h).toEqual({ piecesPerCell: 3, min: [1, 0, 5], mean: [2, 2, 5] })
  })
})

describe('probeAvailability', () => {
  it('sums the answers of every holder; a silent one (timeout) and a failing one count as holding nothing', () => {
    setup().run(({ cold, expectObservable, flush }) => {
      const answers: Record<string, Observable<Have>> = {
        [peer('a').nodeId]: cold('--h|', { h: have() }),
        [peer('b').nodeId]: cold('----h|', { h: have([0b11000000, 0]) }),
        [peer('c').nodeId]: NEVER,
        [peer('d').nodeId]: cold('-#', undefined, new Error('connection refused')),
      }
      const outcomes: ProbeOutcome[] = []
      const out = probeAvailability([{ fileId: F, pieces: 10, holders: [peer('a'), peer('b'), peer('c'), peer('d')] }], {
        probe: (p) => answers[p.nodeId],
        timeoutMs: 10,
        onProbe: (o) => outcomes.push(o),
      })
      const counts = new Uint16Array([2, 2, 1, 1, 1, 1, 1, 1, 1, 1])
      expectObservable(out).toBe('----------(r|)', { r: new Map([[F, { counts, probed: 4, answered: 2 }]]) })
      flush()
      expect(outcomes.sort()).toEqual(['error', 'ok', 'ok', 'timeout'])
    })
  })

  it('reports each probe\'s outcome, and drops an answer for another segmentation', () => {
    setup().run(({ cold, expectObservable, flush }) => {
      const outcomes: ProbeOutcome[] = []
      const out = probeAvailability([{ fileId: F, pieces: 10, holders: [peer('a'), peer('b'), peer('c')] }], {
        probe: (p) => p.nodeId === peer('a').nodeId
          ? cold('-h|', { h: have() })
          : p.nodeId === peer('b').nodeId ? cold('-h|', { h: { ...have(), totalPieces: 20 } }) : NEVER,
        timeoutMs: 5,
        onProbe: (o) => outcomes.push(o),
      })
      expectObservable(out).toBe('-----(r|)', { r: new Map([[F, { counts: new Uint16Array(10).fill(1), probed: 3, answered: 1 }]]) })
      flush()
      expect(outcomes.sort()).toEqual(['error', 'ok', 'timeout'])
    })
  })

  it('unsubscribing early stops every probe in flight', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const a = cold<Have>('-----h|', { h: have() })
      const out = probeAvailability([{ fileId: F, pieces: 10, holders: [peer('a')] }], { probe: () => a, timeoutMs: 100 })
      expectObservable(out, '^--!').toBe('----')
      expectSubscriptions(a.subscriptions).toBe('^--!')
    })
  })

  it('no targets: an empty map at once', () => {
    setup().run(({ expectObservable }) => {
      expectObservable(probeAvailability([], { probe: () => NEVER })).toBe('(r|)', { r: new Map() })
    })
  })
})
