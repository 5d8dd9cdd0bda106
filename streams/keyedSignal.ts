import { Observable } from 'rxjs'

/**
 * One-shot signals by key: `once(key)` emits (and completes) the next time `fire(key)` — or
 * `fireAll()`, or `fireWhere` with a predicate true for the key — is called. For the flows' fan-out
 * notices ("piece i landed", "source s has news"): a Subject with a `filter` per waiter costs every
 * waiter for every notice (and rxjs copies the observer list on each `next`); this costs only the
 * waiters of the key fired.
 */
export class KeyedSignal<K> {
  private readonly waiting = new Map<K, Set<() => void>>()

  once (key: K): Observable<void> {
    return new Observable<void>((sub) => this.on(key, () => { sub.next(); sub.complete() }))
  }

  /**
   * Call `f` the next time `key` fires; returns what takes it back (safe to call after it ran).
   * What `once` does, without an Observable and a subscriber per waiter, for a hand-written flow.
   */
  on (key: K, f: () => void): () => void {
    let set = this.waiting.get(key)
    if (set === undefined) { set = new Set(); this.waiting.set(key, set) }
    set.add(f)
    // (from the set it joined: once fired, that set is no longer the key's, and a later wait of
    // the same function on the key is not taken back)
    const joined = set
    return () => {
      joined.delete(f)
      if (joined.size === 0 && this.waiting.get(key) === joined) this.waiting.delete(key)
    }
  }

  fire (key: K): void {
    const set = this.waiting.get(key)
    if (set === undefined) return
    this.waiting.delete(key)
    for (const f of [...set]) f()
  }

  fireWhere (pred: (key: K) => boolean): void {
    for (const k of [...this.waiting.keys()]) if (pred(k)) this.fire(k)
  }

  fireAll (): void { this.fireWhere(() => true) }

  /** Keys with a waiter. */
  get size (): number { return this.waiting.size }
}
