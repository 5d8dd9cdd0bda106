import { lastValueFrom, of, type SchedulerLike, Subscription } from 'rxjs'
import { SharedListing } from '../../src/peer/listing'
import { LISTING_FRESH_MS, LISTING_REUSE_MS } from '../../src/limits'
import type { ListedFile } from '../../src/protocol/messages'

const file = (name: string, hex: string, holders = 1): ListedFile => ({ name, hash: hex.repeat(64 / hex.length), size: 10, blockSize: 4096, pieces: 1, holders })

/** A clock the test moves (SharedListing only reads `now`). */
function clock (): SchedulerLike & { t: number } {
  const c = { t: 0, now: () => c.t, schedule: () => new Subscription() }
  return c
}

describe('SharedListing: one tracker listing for the names of one get', () => {
  it('resolves the names a fresh listing holds in it, by name or id prefix: one listing for all', async () => {
    const registry = [file('a.bin', 'a'), file('b.bin', 'b'), file('c.bin', 'c')]
    let fetched = 0
    const listing = new SharedListing(() => { fetched++; return of(registry) }, clock())
    for (const q of ['a.bin', 'b.bin', 'ccc', 'a.bin']) expect(await lastValueFrom(listing.files(q))).toBe(registry)
    expect(fetched).toBe(1)
  })

  it('asks the tracker again for a name the listing does not hold (published since), and keeps the newer listing', async () => {
    let registry = [file('a.bin', 'a')]
    let fetched = 0
    const listing = new SharedListing(() => { fetched++; return of(registry) }, clock())
    await lastValueFrom(listing.files('a.bin'))
    registry = [...registry, file('new.bin', 'd')]
    expect((await lastValueFrom(listing.files('new.bin'))).map((f) => f.name)).toEqual(['a.bin', 'new.bin'])
    expect(fetched).toBe(2)
    await lastValueFrom(listing.files('new.bin'))
    expect(fetched).toBe(2)
    // a name nowhere: a new listing each time it is asked (the error comes from resolving in it)
    await lastValueFrom(listing.files('nowhere.bin'))
    expect(fetched).toBe(3)
  })

  it('asks again once the listing is older than its reuse time, and for a query it cannot tell apart (holders may have changed)', async () => {
    const c = clock()
    let registry = [file('x.bin', 'ab'), file('x.bin', 'cd')]
    let fetched = 0
    const listing = new SharedListing(() => { fetched++; return of(registry) }, c)
    await lastValueFrom(listing.files('ab'))
    c.t += LISTING_REUSE_MS - 1
    await lastValueFrom(listing.files('ab'))
    expect(fetched).toBe(1)
    c.t += 1
    await lastValueFrom(listing.files('ab'))
    expect(fetched).toBe(2)
    // both held: ambiguous in the listing kept, so a fresh one decides (one holder left now)
    await lastValueFrom(listing.files('x.bin'))
    expect(fetched).toBe(3)
    registry = [file('x.bin', 'ab', 0), file('x.bin', 'cd')]
    await lastValueFrom(listing.files('x.bin'))
    expect(fetched).toBe(4)
    await lastValueFrom(listing.files('x.bin'))
    expect(fetched).toBe(4)
  })

  it('namesIn: the names under a folder (its subfolders too), sorted, each once, held by some live node (how many are not), from the listing kept when it has any', async () => {
    // (train/a.png: one version held, an old one not; train/old.png: held by no one, deleted at its sharer)
    const registry = [file('train/b.png', 'b'), file('train/a.png', 'a'), file('train/x/c.png', 'c'), file('train/a.png', 'd', 0), file('train/old.png', 'e0', 0), file('trainer.png', 'e'), file('val/a.png', 'f')]
    let fetched = 0
    const listing = new SharedListing(() => { fetched++; return of(registry) }, clock())
    expect(await lastValueFrom(listing.namesIn('train/'))).toEqual({ names: ['train/a.png', 'train/b.png', 'train/x/c.png'], unheld: 1 })
    expect(await lastValueFrom(listing.namesIn('val/'))).toEqual({ names: ['val/a.png'], unheld: 0 })
    expect(fetched).toBe(1)
    expect(await lastValueFrom(listing.namesIn('test/'))).toEqual({ names: [], unheld: 0 })
    expect(fetched).toBe(2)
  })

  it('a name the kept listing gives a version no one holds is resolved in a new listing; forget drops a kept listing a query was answered from, once', async () => {
    let registry = [file('a.bin', 'a'), file('b.bin', 'b', 0), file('c.bin', 'c')]
    let fetched = 0
    const c = clock()
    const listing = new SharedListing(() => { fetched++; return of(registry) }, c)
    await lastValueFrom(listing.files('a.bin'))
    // held by no one in the listing kept: taken as it is while it is fresh (names no one holds,
    // one after another, each fetched the listing again), then a new one
    await lastValueFrom(listing.files('b.bin'))
    expect(fetched).toBe(1)
    c.t += LISTING_FRESH_MS
    await lastValueFrom(listing.files('b.bin'))
    expect(fetched).toBe(2)
    // c.bin changed at its sharer: the listing kept still names its old id
    await lastValueFrom(listing.files('c.bin'))
    expect(fetched).toBe(2)
    registry = [file('a.bin', 'a'), file('c.bin', 'c', 0), file('c.bin', 'd')]
    expect(listing.forget('c.bin')).toBe(true)
    expect(listing.forget('c.bin')).toBe(false)
    const fresh = await lastValueFrom(listing.files('c.bin'))
    expect(fetched).toBe(3)
    expect(fresh).toBe(registry)
    // answered from a listing fetched for it: nothing to forget
    expect(listing.forget('c.bin')).toBe(false)
  })
})
