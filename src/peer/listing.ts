import { asyncScheduler, defer, map, type Observable, of, type SchedulerLike, tap } from 'rxjs'
import { LISTING_FRESH_MS, LISTING_REUSE_MS } from '../limits'
import type { ListedFile } from '../protocol/messages'
import { resolveFile } from './resolve'

/**
 * The tracker's listing, fetched once for several downloads of one get (a dataset of many
 * names): each name was resolved in a listing of its own, every page of the tracker's registry
 * once per name (100 files a datagram, at most 400 datagrams a second: 1,000 names at a tracker of
 * 10,000 files spent four minutes listing). A listing is reused while it is younger than
 * `maxAgeMs` and names the query with a file some live node holds; a query it does not name, names
 * in a way it cannot tell apart, or names with a file no one held then, is resolved in a new one
 * (the file may have been published since). A file changed at its sharer meanwhile is listed
 * there under its old id: the download that finds no holder asks `forget` and is resolved again.
 */
export class SharedListing {
  private last: { at: number, files: ListedFile[] } | null = null
  /** The queries answered from the listing kept (not fetched for them). */
  private readonly kept = new Set<string>()

  constructor (private readonly fetch: () => Observable<ListedFile[]>, private readonly scheduler: SchedulerLike = asyncScheduler, private readonly maxAgeMs = LISTING_REUSE_MS) {}

  /** A listing to resolve `query` in. */
  files (query: string): Observable<ListedFile[]> {
    return this.listing((files) => resolves(files, query), query)
  }

  /**
   * `query` found no holder of what it was resolved to: was it resolved in the listing kept?
   * Then that listing is dropped (the next resolution fetches a new one) and true is returned,
   * once; false when it was resolved in a listing fetched for it.
   */
  forget (query: string): boolean {
    if (!this.kept.delete(query)) return false
    this.last = null
    this.kept.clear()
    return true
  }

  /**
   * The names of the files in `folder` (a name ending in `/`) and in its folders, sorted, each
   * once: those some live node holds (`names`), and how many others are listed there, held by no
   * one (`unheld`: files deleted at their sharer stay listed; each cost a folder get seconds of
   * asking, then a failure).
   */
  namesIn (folder: string): Observable<{ names: string[], unheld: number }> {
    const inIt = (files: ListedFile[]): { names: string[], unheld: number } => {
      const held = new Map<string, boolean>()
      for (const f of files) if (f.name.startsWith(folder)) held.set(f.name, held.get(f.name) === true || f.holders === undefined || f.holders > 0)
      const names = [...held].filter(([, h]) => h).map(([n]) => n).sort()
      return { names, unheld: held.size - names.length }
    }
    return this.listing((files) => files.some((f) => f.name.startsWith(folder)) ? 'yes' : 'no').pipe(map(inIt))
  }

  /** The listing kept, while it is fresh and `enough`; else a new one. */
  private listing (enough: (files: ListedFile[]) => Enough, query?: string): Observable<ListedFile[]> {
    return defer(() => {
      const l = this.last
      const age = l === null ? Infinity : this.scheduler.now() - l.at
      const says = l === null ? 'no' : enough(l.files)
      // (a name it gives a file no one holds: taken as it is while younger than LISTING_FRESH_MS,
      // or names no one holds, asked one after another, each fetched every page again)
      if (l !== null && ((says === 'yes' && age < this.maxAgeMs) || (says === 'unheld' && age < LISTING_FRESH_MS))) {
        if (query !== undefined && this.kept.size < MAX_KEPT_QUERIES) this.kept.add(query)
        return of(l.files)
      }
      const at = this.scheduler.now()
      return this.fetch().pipe(tap((files) => { this.last = { at, files }; this.kept.clear() }))
    })
  }
}

/** Does a listing serve a query: yes, no (not in it, or not one file), or only with a file no one held then? */
type Enough = 'yes' | 'no' | 'unheld'

/** Does `query` resolve in `files` to a file some live node held then (or the tracker does not say)? */
function resolves (files: ListedFile[], query: string): Enough {
  let hash: string
  try { hash = resolveFile(files, query).hash } catch { return 'no' }
  const held = files.find((f) => f.hash === hash)?.holders
  return held === undefined || held > 0 ? 'yes' : 'unheld'
}

/** Queries a listing remembers having answered (a get takes at most MAX_GET_NAMES names, and folders). */
const MAX_KEPT_QUERIES = 100_000
