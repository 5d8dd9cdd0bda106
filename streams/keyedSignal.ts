import { Observable } from 'rxjs'

/**
 * One-shot signals by key: `once(key)` emits (and completes) the next time `fire(key)` — or
 * `fireAll()`, or `fireWhere` with a predicate true for the key — is called. For the flows' fan-out
 * notices ("piece i landed", "source s has news"): a Subject with a `filter` per waiter costs every
 * waiter for every notice (and rxjs copies the observer list on each `next`); this costs only the
 * waiters of the key fired.
 */
export class KeyedSignal<K> {
  // (a key's one waiter as itself, several in an array: most keys have one waiter, and a set or a
  // list per wait was most of what a big simulation's waits allocated)
  private readonly waiting = new Map<K, Waiter | Waiter[]>()

  once (key: K): Observable<void> {
    return new Observable<void>((sub) => this.on(key, () => { sub.next(); sub.complete() }))
  }

  /**
   * Call `f` the next time `key` fires; returns what takes it back (safe to call after it ran).
   * What `once` does, without an Observable and a subscriber per waiter, for a hand-written flow.
   */
  on (key: K, f: () => void): () => void {
    // (each wait is its own entry: once fired, a later wait of the same function on the key is
    // another entry, and this one's remover does not take it back)
    const w: Waiter = { f }
    const cur = this.waiting.get(key)
    if (cur === undefined) this.waiting.set(key, w)
    else if (Array.isArray(cur)) cur.push(w)
    else this.waiting.set(key, [cur, w])
    return () => this.off(key, w)
  }

  private off (key: K, w: Waiter): void {
    const cur = this.waiting.get(key)
    if (cur === w) { this.waiting.delete(key); return }
    if (!Array.isArray(cur)) return
    const i = cur.indexOf(w)
    if (i < 0) return
    cur.splice(i, 1)
    if (cur.length === 0) this.waiting.delete(key)
  }

  fire (key: K): void {
    const cur = this.waiting.get(key)
    if (cur === undefined) return
    // (the key's waiters as they were: those that wait again wait for the next fire)
    this.waiting.delete(key)
    if (Array.isArray(cur)) for (const w of cur) w.f()
    else cur.f()
  }

  fireWhere (pred: (key: K) => boolean): void {
    for (const k of [...this.waiting.keys()]) if (pred(k)) this.fire(k)
  }

  fireAll (): void { this.fireWhere(() => true) }

  /** Keys with a waiter. */
  get size (): number { return this.waiting.size }
}

interface Waiter { readonly f: () => void }
