import type { Command } from 'commander'
import { program } from '../../src/cli/main'

/** The options a command's action would get for `args` with `env` set, without running it. */
export function optionsOf (name: string, args: string[], env: Record<string, string> = {}): Record<string, unknown> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env)
  try {
    const p = program().exitOverride()
    const cmd = p.commands.find((c) => c.name() === name) as Command
    cmd.exitOverride() // (commander's own errors throw here instead of exiting the test process)
    let got: Record<string, unknown> = {}
    cmd.action((...a: unknown[]) => { got = (a.find((x) => x !== null && typeof x === 'object' && !Array.isArray(x) && !('commands' in (x as object))) ?? {}) as Record<string, unknown> })
    p.parse(['node', 'lp2p', name, ...args])
    return got
  } finally {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) unset(k); else process.env[k] = v }
  }
}
export function unset (k: string): void { Reflect.deleteProperty(process.env, k) }
