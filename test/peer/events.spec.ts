import { TestScheduler } from 'rxjs/testing'
import { downloadEvents, type DownloadEvent } from '../../src/peer/events'
import type { LeechEvent } from '../../src/peer/leech'

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

// a 1000-byte file in 4 pieces of 256 (the last one 232)
const start: LeechEvent = { event: 'start', fileId: 'f', name: 'a.bin', size: 1000, blockSize: 256, pieces: 4, present: 0 }
const peers: LeechEvent = { event: 'peers', neighbours: 1, cluster: 2, sources: 2 }
const piece = (index: number, bytes = 256): LeechEvent => ({ event: 'piece', index, bytes, peer: 'p:1' })
const hashes: LeechEvent = { event: 'hashes', pieceHashes: Buffer.alloc(128), from: 'p:1' }
const done: LeechEvent = { event: 'done', fileId: 'f', name: 'a.bin', path: '/x/a.bin', bytes: 1000, sha256: 'f', downloaded: 1000 }
const progress = (bytes: number, rate: number, peers = 2): DownloadEvent => ({ event: 'progress', bytes, size: 1000, percent: Math.round(bytes / 10 * 10) / 10, rate, peers })

describe('downloadEvents', () => {
  it('passes start, peers and failures through, drops hashes, throttles progress and ends with 100% before done', () => {
    setup().run(({ cold, expectObservable }) => {
      const src = cold<LeechEvent>('s p h 97ms a b 96ms c 98ms d (e|)', { s: start, p: peers, h: hashes, a: piece(0), b: piece(1), c: piece(2), d: piece(3, 232), e: done })
      // a at 100 ms (the first interval has passed), b at 101 ms: throttled; c at 198 ms: < 100 since a; d at 297: shown
      expectObservable(src.pipe(downloadEvents({ progressIntervalMs: 100 }))).toBe('s p 98ms a 196ms d (ze|)', {
        s: start, p: peers,
        a: progress(256, 2560),
        d: progress(1000, Math.round(1000 / 0.297)),
        z: progress(1000, Math.round(1000 / 0.298)),
        e: done,
      })
    })
  })

  it('passes a refetch on; the start after it counts from what is still held (a second round after the final check forgot pieces)', () => {
    setup().run(({ cold, expectObservable }) => {
      const refetch: LeechEvent = { event: 'refetch', pieces: 1, reason: '1 piece(s) changed' }
      const again: LeechEvent = { ...start, present: 3 }
      const src = cold<LeechEvent>('s 99ms a b c 97ms r t 99ms d (e|)', { s: start, a: piece(0), b: piece(1), c: piece(3, 232), r: refetch, t: again, d: piece(2), e: done })
      // after the second start: 3 × 256 held, the fourth piece brings 256 (so 1000 + … would pass 100 %: capped)
      // (the rate too: bytes fetched since that start, over the time since it)
      expectObservable(src.pipe(downloadEvents({ progressIntervalMs: 100 }))).toBe('s 99ms a 99ms r t 99ms d (ze|)', {
        s: start, a: progress(256, 2560, 0), r: refetch, t: again,
        d: progress(1000, 2560, 0), z: progress(1000, Math.round(256 / 0.101), 0), e: done,
      })
    })
  })

  it('passes a peers round on only when its counts changed, or after a peer was dropped', () => {
    setup().run(({ cold, expectObservable }) => {
      const more: LeechEvent = { event: 'peers', neighbours: 1, cluster: 3, sources: 3 }
      const drop: LeechEvent = { event: 'peer-dropped', peer: 'p:1', code: 'ERR_TIMEOUT', error: 'silent' }
      const src = cold<LeechEvent>('s p p p m m p x p p|', { s: start, p: peers, m: more, x: drop })
      expectObservable(src.pipe(downloadEvents({ progressIntervalMs: 100 }))).toBe('s p - - m - p x p -|', { s: start, p: peers, m: more, x: drop })
    })
  })

  it('counts resumed pieces in bytes but not in the rate, and never more than the size', () => {
    setup().run(({ cold, expectObservable }) => {
      const resumed: LeechEvent = { ...start, present: 3 } as LeechEvent
      const src = cold<LeechEvent>('s 99ms d (e|)', { s: resumed, d: piece(3, 232), e: done })
      expectObservable(src.pipe(downloadEvents({ progressIntervalMs: 100 }))).toBe('s 99ms d (ze|)', {
        s: resumed,
        d: progress(1000, 2320, 0),
        z: progress(1000, Math.round(232 / 0.101), 0),
        e: { ...done },
      })
    })
  })

  it('lowers the peer count when a peer is dropped and passes piece-failed through', () => {
    setup().run(({ cold, expectObservable }) => {
      const drop: LeechEvent = { event: 'peer-dropped', peer: 'p:1', code: 'ERR_PEER_TIMEOUT', error: 'silent' }
      const bad: LeechEvent = { event: 'piece-failed', index: 0, peer: 'p:1', reason: 'hash mismatch' }
      const src = cold<LeechEvent>('s p f x 96ms a|', { s: start, p: peers, f: bad, x: drop, a: piece(0) })
      expectObservable(src.pipe(downloadEvents({ progressIntervalMs: 100 }))).toBe('s p f x 96ms a|', {
        s: start, p: peers, f: bad, x: drop, a: progress(256, 2560, 1),
      })
    })
  })

  it('errors as the source errors (no error event in the stream)', () => {
    setup().run(({ cold, expectObservable }) => {
      const err = new Error('no sources')
      expectObservable(cold<LeechEvent>('s 5ms #', { s: start }, err).pipe(downloadEvents())).toBe('s 5ms #', { s: start }, err)
    })
  })

  it('unsubscribing early unsubscribes the source', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const src = cold<LeechEvent>('s 99ms a 99ms b 99ms e|', { s: start, a: piece(0), b: piece(1), e: done })
      expectObservable(src.pipe(downloadEvents({ progressIntervalMs: 100 })), '^ 150ms !').toBe('s 99ms a', { s: start, a: progress(256, 2560, 0) })
      expectSubscriptions(src.subscriptions).toBe('^ 150ms !')
    })
  })

  it('starts its counts afresh for each subscription', () => {
    setup().run(({ cold, expectObservable }) => {
      const src = cold<LeechEvent>('s 99ms a|', { s: start, a: piece(0) })
      const events = src.pipe(downloadEvents({ progressIntervalMs: 100 }))
      const values = { s: start, a: progress(256, 2560, 0) }
      expectObservable(events).toBe('s 99ms a|', values)
      expectObservable(events).toBe('s 99ms a|', values)
    })
  })
})
