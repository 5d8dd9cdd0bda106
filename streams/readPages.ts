import { Observable } from 'rxjs'

/** Anything that can lend views of its bytes without copying (an mmap'd file, a Buffer). */
export interface PageSource {
  readonly size: number
  /** Views covering [offset, offset+length), in order; may be several when the range crosses a window. */
  view: (offset: number, length: number) => Buffer[]
}

/**
 * The bytes [offset, offset+length) of a source as a stream of chunks of at most `chunkBytes`,
 * each a view into the mapping (no copy). Chunks are produced one at a time as the subscriber
 * takes them, so unsubscribing midway stops the reads.
 */
export function readPages (src: PageSource, offset: number, length: number, chunkBytes = 1 << 20): Observable<Buffer> {
  return new Observable<Buffer>((sub) => {
    const end = offset + length
    if (offset < 0 || end > src.size) { sub.error(new RangeError(`range [${offset}, ${end}) outside 0..${src.size}`)); return }
    let pos = offset
    while (pos < end && !sub.closed) {
      const n = Math.min(chunkBytes, end - pos)
      try {
        for (const v of src.view(pos, n)) { if (!sub.closed) sub.next(v) }
      } catch (err) { sub.error(err); return }
      pos += n
    }
    sub.complete()
  })
}
