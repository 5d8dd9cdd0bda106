import type { WithoutTx } from '../net/trackerClient'
import type { FileMetaData, Publish } from '../protocol/messages'
import { hashRoot } from '../storage/hashFile'
import type { PageSource } from '../../streams/readPages'
import { setBit } from './picker'
import { PieceLog } from './pieceLog'
import { SentCounts, type ServedFile } from './serve'

/**
 * A download as its node holds and serves it: the pieces stored (bitfield, count, and the order
 * they came in, for watches), its verified hash list, and what the node serves it as, while it
 * downloads and once it is complete. `Lp2pNode` and the simulator's `SimNode` both keep their
 * downloads in one of these, fed by the leech flow's events, so a simulated node serves what a
 * real one would, from the same code.
 *
 * While downloading it serves only pieces checked against a verified hash list (before the list,
 * it says it holds none), lists the pieces in flight (`pending`) and sends every piece once before
 * any twice while it can (`SentCounts`, on the injected clock).
 */
export class HeldDownload<S extends PageSource = PageSource> {
  readonly bits: Uint8Array
  have = 0
  pieceHashes: Buffer | null = null
  /** The verified file it is served from once complete (a node closes it when it stops). */
  file: S | null = null
  readonly log: PieceLog

  /**
   * `present`: pieces an earlier run stored and verified (a resume); `partial`: where piece bytes
   * are read while downloading; `pending`: the leech flow's view of the pieces in flight, once it
   * gave one; `now`: the clock of the send-once hold (virtual time in a simulation).
   */
  constructor (
    readonly meta: FileMetaData,
    present: Iterable<number>,
    private readonly partial: () => S,
    private readonly pending: () => (() => Uint8Array) | null,
    private readonly now?: () => number,
  ) {
    this.bits = new Uint8Array(Math.ceil(meta.pieces / 8))
    this.log = new PieceLog(meta.pieces)
    for (const i of present) { setBit(this.bits, i); this.have++; this.log.add(i) }
  }

  /** Verified and complete (`completed` was called). */
  get complete (): boolean { return this.file !== null }

  /** Where its pieces are read: the partial file while it downloads, the verified one once complete. */
  source (): S { return this.file ?? this.partial() }

  /**
   * How the node lists it at the tracker: what it holds so far, or (complete) every piece, with
   * its root when it has the list. (Always with `have`: a download is not a sharer, and the name
   * it repeats, the one it was given at its start, must not rename a file renamed since.)
   */
  publish (nodeId: string, port: number): WithoutTx<Publish> {
    const m = this.meta
    return this.complete
      ? { type: 'publish', nodeId, port, name: m.name, hash: m.hash, size: m.size, have: m.pieces, ...(this.pieceHashes === null ? {} : { blockSize: m.blockSize, root: hashRoot(this.pieceHashes) }) }
      : { type: 'publish', nodeId, port, name: m.name, hash: m.hash, size: m.size, have: this.have }
  }

  /** What the node serves this download as while it runs. */
  serving (): ServedFile {
    return {
      meta: this.meta,
      source: () => this.source(),
      checkSize: () => {},
      pieceHashes: () => this.pieceHashes,
      have: () => this.pieceHashes === null ? new Uint8Array(this.bits.length) : this.bits,
      pending: () => { const p = this.complete ? null : this.pending(); return p === null ? null : p() },
      log: this.log,
      sent: new SentCounts(this.meta.pieces, this.now),
    }
  }

  /** The hash list arrived, verified against the root. True when the node should say so at the tracker (it holds pieces it can serve now). */
  gotHashes (list: Buffer): boolean {
    this.pieceHashes = list
    this.log.gotHashes() // watchers that have no list yet may fetch it here
    return this.have > 0
  }

  /** Piece `index` is stored and verified. True when it is the first this download can serve (the node says so at the tracker). */
  stored (index: number): boolean {
    // the bit first: the log wakes watches at once, and their answers read the bitfield
    setBit(this.bits, index)
    this.log.add(index)
    return ++this.have === 1 && this.pieceHashes !== null
  }

  /** The whole file verified: from here on it is served as a complete file from `source` (no piece log, no send-once rule: that is an initial seeder's). */
  completed (source: S, checkSize: () => void = () => {}): ServedFile {
    this.file = source
    this.have = this.meta.pieces
    return { meta: this.meta, source: () => source, checkSize, pieceHashes: () => this.pieceHashes, have: () => null }
  }
}
