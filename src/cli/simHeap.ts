import { UsageError } from '../errors'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

/**
 * Heap a simulation of `nodes` leechers needs, bytes. Measured (16 MiB file, peak JS heap): 1.34
 * MiB per node at 10,000 nodes (14.4 GiB RSS); at 1,000 the heap grows to 2.3 MiB per node
 * because the collector lets garbage pile up while there is room, not because more is live.
 */
export function simHeapBytes (nodes: number): number { return GiB + nodes * 1.5 * MiB }

/**
 * Young generation (semi-space, MiB) for a big run, by its size: in virtual time most objects
 * (timers, requests, frames in flight) outlive a scavenge of a small young generation, so each
 * scavenge copies most of what it finds; a larger one lets more of them die first. Measured: 1,000
 * nodes in 91 s with 128 MiB instead of 106 s with node's default (256 MiB: the same); the first
 * 300 virtual ms of 3,000 nodes in 72 and 81 s with 512 MiB against 91 and 94 s with 128 (1,024:
 * 83 s; 2,048: 120 s, each scavenge then copies more than it saves).
 */
const SEMI_SPACES: Array<{ fromNodes: number, mib: number }> = [{ fromNodes: 2000, mib: 512 }, { fromNodes: 500, mib: 128 }]
/** Never ask V8 for more than this share of the machine's memory. */
const MEMORY_SHARE = 0.85

/**
 * The V8 flags to run `lp2p simulate --nodes N` again with, or null when this process will do
 * (its heap limit is large enough and, for a big run, the young generation was set). Node's
 * default heap limit (about 4 GiB on a 64-bit machine) ends a run of a few thousand nodes with
 * "JavaScript heap out of memory" deep into it. A run that cannot fit in this machine's memory is
 * refused up front. Flags the user gave (`node --max-old-space-size=… bin/lp2p`, NODE_OPTIONS)
 * are kept: they come later on the command line and win.
 */
export function simNodeFlags (nodes: number, m: { heapLimit: number, totalMemory: number, nodeFlags: string }): string[] | null {
  const want = simHeapBytes(nodes)
  const userOld = /--max-old-space-size/.test(m.nodeFlags)
  const userSemi = /--max-semi-space-size=(\d+)/.exec(m.nodeFlags)
  const semi = userSemi === null ? SEMI_SPACES.find((s) => nodes >= s.fromNodes)?.mib : Number(userSemi[1])
  // the young generation comes on top of the old space: V8 sizes it at three semi-spaces (two, and
  // as much again for large young objects)
  const young = 3 * (semi ?? 0) * MiB
  const cap = m.totalMemory * MEMORY_SHARE - young
  if (want > cap && !userOld) {
    throw new UsageError(`simulating ${nodes} nodes needs about ${((want + young) / GiB).toFixed(1)} GiB of memory; this machine has ${(m.totalMemory / GiB).toFixed(1)} GiB (use fewer --nodes, or set node's --max-old-space-size yourself to try anyway)`)
  }
  const flags: string[] = []
  // (twice what is live: the collector then runs less often)
  if (want > m.heapLimit && !userOld) flags.push(`--max-old-space-size=${Math.floor(Math.min(cap, Math.max(2 * want, 4 * GiB)) / MiB)}`)
  if (semi !== undefined && userSemi === null) flags.push(`--max-semi-space-size=${semi}`)
  return flags.length === 0 ? null : flags
}
