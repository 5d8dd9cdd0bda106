import { fork, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'

/** The server child exits by itself after this long, whatever the parent does. */
const SERVER_MAX_LIFE_MS = 60 * 60_000
/** How long `stop()` waits for the child to leave after asking, before SIGKILL. */
const STOP_GRACE_MS = 3_000
/** How long to wait for the child to report its port. */
const START_TIMEOUT_MS = 10_000

/**
 * The baseline of the benchmark, the same idea as ../shared/anchors/tcp_node.mjs: a server child
 * process that streams a file on every connection (fs.createReadStream(file).pipe(socket), default
 * 64 KiB reads, 127.0.0.1 only), and a client that writes what it receives to a file.
 */
export interface PipeServer {
  port: number
  pid: number
  /** Ask the child to leave, SIGKILL it by PID after a grace period; safe to call twice. */
  stop: () => Promise<void>
}

/** Fork this file as the server child for `file` and wait for its port. */
export async function startPipeServer (file: string): Promise<PipeServer> {
  const ts = path.extname(__filename) === '.ts'
  const child: ChildProcess = fork(__filename, ['--serve', file], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // Under ts-node the child needs the TypeScript hook too; compiled, plain node is enough.
    execArgv: ts ? ['-r', 'ts-node/register/transpile-only'] : [],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    if (child.connected) child.send('stop')
    const t = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
    await exited
    clearTimeout(t)
  }
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`tcp pipe server: no port in ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
      child.once('message', (m) => { clearTimeout(t); resolve((m as { port: number }).port) })
      void exited.then(() => { clearTimeout(t); reject(new Error('tcp pipe server exited before listening')) })
    })
    return { port, pid: child.pid as number, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * Connect to the server, pipe the socket into `dest` until the write stream has finished.
 * Resolves with the byte count; rejects after `timeoutMs` (the socket and file are closed then).
 */
export function receive (port: number, dest: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    const out = fs.createWriteStream(dest)
    let n = 0
    const fail = (err: Error): void => { clearTimeout(t); sock.destroy(); out.destroy(); reject(err) }
    const t = setTimeout(() => fail(new Error(`tcp pipe: not finished in ${timeoutMs} ms`)), timeoutMs)
    sock.on('data', (d: Buffer) => { n += d.length })
    sock.pipe(out)
    out.on('finish', () => { clearTimeout(t); resolve(n) })
    sock.on('error', fail)
    out.on('error', fail)
  })
}

function serve (file: string): void {
  const srv = net.createServer((s) => {
    s.on('error', (err) => { process.stderr.write(`tcp pipe server: ${err.message}\n`) })
    fs.createReadStream(file).pipe(s)
  })
  srv.listen(0, '127.0.0.1', () => { (process.send as (m: unknown) => void)({ port: (srv.address() as net.AddressInfo).port }) })
  process.on('message', (m) => { if (m === 'stop') { srv.close(); process.exit(0) } })
  // The parent is gone (crashed or killed): nobody will ask us to stop.
  process.on('disconnect', () => process.exit(0))
  setTimeout(() => process.exit(2), SERVER_MAX_LIFE_MS).unref()
}

if (require.main === module && process.argv[2] === '--serve') serve(process.argv[3])
