import path from 'node:path'
import Database from 'better-sqlite3'
import { MAX_FILE_SIZE } from '../limits'
import type { FileMetaData } from '../protocol/messages'
import type { FileStore } from './registry'
import { mkdirs } from '../storage/mkdirs'

type Row = FileMetaData & { root: string | null }

function fromRow (r: Row): FileMetaData {
  const { root, ...meta } = r
  return root === null ? meta : { ...meta, root }
}

/**
 * The tracker's file registry in SQLite (`DIR/tracker.db`, WAL mode): after a restart every
 * published file is listed again at once. Nodes are not stored: they are soft state that
 * heartbeats rebuild within a few periods.
 *
 * One tracker per registry: the database is locked for as long as it is open (SQLite's exclusive
 * locking mode; the lock goes with the process). Two trackers started with the default `--data`
 * (on two ports) shared one registry before: each listed, after a restart, what the other's nodes
 * had published.
 */
export class SqliteFileStore implements FileStore {
  private readonly db: Database.Database
  private stmt!: {
    get: Database.Statement<[string]>
    put: Database.Statement<[string, string, number, number, number, number, string | null]>
    listAll: Database.Statement<[number]>
    listAfter: Database.Statement<[string, number]>
    count: Database.Statement<[]>
    delete: Database.Statement<[string]>
  }

  private count = 0

  constructor (dir: string) {
    const file = path.join(dir, 'tracker.db')
    try {
      mkdirs(dir)
      // (no wait for the lock: another tracker holds it for as long as it runs)
      this.db = new Database(file, { timeout: 0 })
    } catch (err) {
      throw new Error(`cannot open the file registry ${file}: ${(err as Error).message}`, { cause: err })
    }
    try {
      this.open()
    } catch (err) {
      this.db.close()
      if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new Error(`another tracker uses the file registry ${file}: give this one its own --data folder (or --memory)`, { cause: err })
      throw new Error(`cannot use the file registry ${file} (${(err as Error).message}): move it away to start with an empty one, or choose another --data`, { cause: err })
    }
  }

  private open (): void {
    this.db.pragma('locking_mode = EXCLUSIVE')
    // (taken now, and kept: the lock an exclusive connection gets it holds until it closes)
    this.db.exec('BEGIN EXCLUSIVE; COMMIT')
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = NORMAL')
    this.db.exec(`CREATE TABLE IF NOT EXISTS files (
      hash TEXT PRIMARY KEY NOT NULL,
      name TEXT NOT NULL,
      size INTEGER NOT NULL,
      blockSize INTEGER NOT NULL,
      pieces INTEGER NOT NULL,
      published INTEGER NOT NULL,
      root TEXT
    ) WITHOUT ROWID`)
    // registries from before piece roots gain the column
    const cols = this.db.prepare('PRAGMA table_info(files)').all() as { name: string }[]
    if (!cols.some((c) => c.name === 'root')) this.db.exec('ALTER TABLE files ADD COLUMN root TEXT')
    this.stmt = {
      get: this.db.prepare('SELECT name, hash, size, blockSize, pieces, root FROM files WHERE hash = ?'),
      put: this.db.prepare('INSERT INTO files (hash, name, size, blockSize, pieces, published, root) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET name = excluded.name, size = excluded.size, blockSize = excluded.blockSize, pieces = excluded.pieces, root = excluded.root'),
      listAll: this.db.prepare('SELECT name, hash, size, blockSize, pieces, root FROM files ORDER BY hash LIMIT ?'),
      listAfter: this.db.prepare('SELECT name, hash, size, blockSize, pieces, root FROM files WHERE hash > ? ORDER BY hash LIMIT ?'),
      count: this.db.prepare('SELECT count(*) AS n FROM files'),
      delete: this.db.prepare('DELETE FROM files WHERE hash = ?'),
    }
    // files bigger than a file may be (published before that bound): nobody could fetch them, and
    // one in a list would make the whole list unreadable to clients
    this.db.prepare('DELETE FROM files WHERE size > ?').run(MAX_FILE_SIZE)
    this.count = (this.stmt.count.get() as { n: number }).n
  }

  get size (): number { return this.count }

  get (fileId: string): FileMetaData | undefined {
    const row = this.stmt.get.get(fileId) as Row | undefined
    return row === undefined ? undefined : fromRow(row)
  }

  put (meta: FileMetaData): void {
    const had = this.get(meta.hash) !== undefined
    this.stmt.put.run(meta.hash, meta.name, meta.size, meta.blockSize, meta.pieces, Date.now(), meta.root ?? null)
    if (!had) this.count++
  }

  list (after: string | undefined, limit: number): FileMetaData[] {
    return ((after === undefined ? this.stmt.listAll.all(limit) : this.stmt.listAfter.all(after, limit)) as Row[]).map(fromRow)
  }

  delete (fileId: string): void {
    if (this.stmt.delete.run(fileId).changes > 0) this.count--
  }

  /** Close the database. Safe to call twice. */
  close (): void {
    if (this.db.open) this.db.close()
  }
}
