import { STARVED_SHARE, STARVED_WINDOW_MS } from '../limits'

const SLOTS = 4

/**
 * The pace of a download: is it starved, getting pieces far slower than it has so far? Pieces
 * that landed are counted in SLOTS slots of a quarter of `windowMs` each (constant memory at any
 * rate). Starved: over the last window (the slot under way and the three before it) fewer pieces
 * landed than `share` of what the download's average pace brings in as long. Never before two
 * windows passed since the first piece (the start and the very first pieces say nothing of a pace).
 */
export class PaceMeter {
  private readonly counts = new Float64Array(SLOTS)
  private readonly slotOf = new Float64Array(SLOTS).fill(-1)
  private first = -1
  private landed = 0
  private readonly slotMs: number

  constructor (private readonly windowMs = STARVED_WINDOW_MS, private readonly share = STARVED_SHARE) {
    this.slotMs = windowMs / SLOTS
  }

  /** A piece landed at `now` (ms). */
  land (now: number): void {
    if (this.first < 0) this.first = now
    this.landed++
    const slot = Math.floor(now / this.slotMs)
    const k = slot % SLOTS
    if (this.slotOf[k] !== slot) { this.slotOf[k] = slot; this.counts[k] = 0 }
    this.counts[k]++
  }

  starved (now: number): boolean {
    if (this.first < 0 || now - this.first < 2 * this.windowMs) return false
    const slot = Math.floor(now / this.slotMs)
    let recent = 0
    for (let k = 0; k < SLOTS; k++) if (this.slotOf[k] > slot - SLOTS) recent += this.counts[k]
    // (the slots cover from the start of the oldest to now: between 3/4 of the window and all of it)
    const span = now - (slot - SLOTS + 1) * this.slotMs
    return recent < this.share * this.landed * span / (now - this.first)
  }
}
