import fs from 'node:fs'
import pino from 'pino'

/** How log lines look: JSON (one object a line), pretty (pino-pretty, coloured), or pretty only on a terminal. */
export type LogFormat = 'json' | 'pretty' | 'auto'
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'json', 'pretty']

/** Called around every log write, so a live progress line can step aside and come back. */
export interface LogWriteHooks { before: () => void, after: () => void }

const json = pino.destination({ fd: 2, sync: true })
let prettify: ((line: string) => string) | null = null
let hooks: LogWriteHooks | null = null

/**
 * Where pino writes: one object that stays the logger's destination (children made at module load
 * keep it) while the format can still change after the command line is parsed. Pretty lines go
 * through pino-pretty's synchronous `prettyFactory`, not a worker transport, so nothing is lost when
 * the process exits right after logging.
 */
const sink = {
  write (line: string): boolean {
    hooks?.before()
    try {
      if (prettify === null) json.write(line)
      else fs.writeSync(2, prettify(line))
    } finally { hooks?.after() }
    return true
  },
  flushSync (): void { if (prettify === null) json.flushSync() },
}

/**
 * The root logger, on stderr (stdout is for user-facing output). Modules take a child:
 * `log.child({ module: 'tracker' })`.
 */
// (a bad LP2P_LOG_LEVEL is refused by the CLI's --log-level with a usage error: pino must not
// throw on it first, while this module loads)
const startLevel = process.env.LP2P_LOG_LEVEL !== undefined && Object.hasOwn(pino.levels.values, process.env.LP2P_LOG_LEVEL) ? process.env.LP2P_LOG_LEVEL : 'warn'
export const log = pino({ level: startLevel, base: { pid: process.pid } }, sink)
export type Logger = pino.Logger

/** Change the level of the root logger and every child made from it from now on. */
export function setLogLevel (level: string): void { log.level = level }

/** Pick the log format; `auto` is pretty when stderr is a terminal, JSON otherwise. */
export function setLogFormat (format: LogFormat, stderrIsTTY = process.stderr.isTTY === true): void {
  const pretty = format === 'pretty' || (format === 'auto' && stderrIsTTY)
  if (!pretty) { prettify = null; return }
  // loaded only when wanted: a JSON-logging process never pays for it
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty')
  prettify = prettyFactory({ colorize: stderrIsTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
}

/** Install (or, with null, remove) the hooks run around every log write. */
export function aroundLogWrites (h: LogWriteHooks | null): void { hooks = h }
