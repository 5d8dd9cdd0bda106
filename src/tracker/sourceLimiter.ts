/**
 * Datagrams per second allowed from one source address (a token bucket per address). Bounded:
 * at most `maxSources` addresses are tracked; the least recently seen makes room. Time is passed
 * in, so tests drive it.
 */
export class SourceLimiter {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (private readonly ratePerSec: number, private readonly burst: number, private readonly maxSources = 10_000) {}

  /** May a datagram from `address` be handled at `now` (ms)? */
  allow (address: string, now: number): boolean {
    let b = this.buckets.get(address)
    if (b === undefined) {
      if (this.buckets.size >= this.maxSources) this.buckets.delete(this.buckets.keys().next().value as string)
      b = { tokens: this.burst, at: now }
    } else {
      this.buckets.delete(address) // re-insert: most recently seen last
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.ratePerSec / 1000)
      b.at = now
    }
    this.buckets.set(address, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  get tracked (): number { return this.buckets.size }
}
