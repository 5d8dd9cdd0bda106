import { mergeMap, map, type Observable, type OperatorFunction } from 'rxjs'

/** A chunk bound for a position of a file. */
export interface PositionedChunk { position: number, data: Buffer }

/** Where chunks are written: one positional write per call, completing when it is durable in the OS. */
export interface PositionalWriter {
  write: (data: Buffer, position: number) => Observable<void>
}

/**
 * Write each chunk at its position, at most `concurrency` writes in flight; emits each chunk
 * once it is written, in completion order. A failed write (disk full, file gone) errors the
 * stream: the caller keeps what was written before and reports the rest.
 */
export function writeSink<C extends PositionedChunk> (writer: PositionalWriter, concurrency = 4): OperatorFunction<C, C> {
  return mergeMap((c: C) => writer.write(c.data, c.position).pipe(map(() => c)), concurrency)
}
