import v8 from 'node:v8'
import vm from 'node:vm'
import { UNMAP_FIRST_MS, UNMAP_MAX_MS, UNMAP_TRIES } from '../limits'

/**
 * mmap-io has no unmap: a mapping goes when the memory of its Buffer is collected, and a file
 * removed (or replaced) while mapped keeps its disk blocks until then. On an idle peer nothing
 * allocates, so no full collection comes for many minutes: a shared file deleted to make room did
 * not give its room back (soak: 3 × 4 MB files still mapped 580 s later).
 *
 * `releaseMappings` watches the mappings of such a file: while any is left, a full collection runs
 * after UNMAP_FIRST_MS, then at doubling intervals up to UNMAP_MAX_MS, at most UNMAP_TRIES times
 * (a piece of it still on its way to a socket keeps it until sent). A few milliseconds each on a
 * peer's small heap, and only after a mapped file went away.
 */
let waiting = 0
let timer: NodeJS.Timeout | null = null
let tries = 0
const registry = new FinalizationRegistry<undefined>(() => { waiting = Math.max(0, waiting - 1) })

/** Mappings (memory of a mapped file's windows) that should go soon: their file is gone from disk. */
export function releaseMappings (mappings: Iterable<ArrayBufferLike>): void {
  let n = 0
  for (const m of mappings) { registry.register(m, undefined); n++ }
  if (n === 0) return
  waiting += n
  tries = 0
  if (timer !== null) clearTimeout(timer)
  schedule(UNMAP_FIRST_MS)
}

/** Mappings of gone files not collected yet. */
export function mappingsWaiting (): number { return waiting }

function schedule (ms: number): void {
  timer = setTimeout(() => {
    timer = null
    collect()
    // (the finalizers run after the collection, on a later turn of the loop)
    if (++tries < UNMAP_TRIES) {
      timer = setTimeout(() => {
        timer = null
        if (waiting > 0) schedule(Math.min(UNMAP_MAX_MS, UNMAP_FIRST_MS * 2 ** tries))
      }, 0)
      timer.unref()
    }
  }, ms)
  timer.unref()
}

let gc: (() => void) | null | undefined
/** A full collection, if this runtime allows one (node's --expose-gc, set here at first use). */
function collect (): void {
  if (gc === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc
    try {
      if (typeof exposed === 'function') gc = exposed
      else { v8.setFlagsFromString('--expose-gc'); gc = vm.runInNewContext('gc') as () => void }
    } catch { gc = null }
  }
  gc?.()
}
