import pino from 'pino'

/**
 * The root logger: pino JSON on stderr (stdout is for user-facing output). Modules take a child:
 * `log.child({ module: 'tracker' })`.
 */
export const log = pino({ level: process.env.LP2P_LOG_LEVEL ?? 'warn', base: { pid: process.pid } }, pino.destination(2))
export type Logger = pino.Logger

/** Change the level of the root logger and every child made from it from now on. */
export function setLogLevel (level: string): void { log.level = level }
