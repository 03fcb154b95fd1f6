import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';
import { ConnectionError } from '../domain/errors.js';

/**
 * Embedded PostgreSQL: PGlite (PostgreSQL compiled to WebAssembly) keeping its files in a
 * data directory, served on 127.0.0.1 over the PostgreSQL wire protocol so `pg` connects
 * to it unchanged.
 *
 * PGlite has ONE backend session. pglite-socket frames the protocol per connection; the
 * scheduler below decides whose message runs: a connection that starts a request keeps
 * the session until the request is over (a Sync or simple Query leaves the backend idle,
 * outside a transaction), so an extended-protocol query (Parse/Bind/Execute/Sync) or a
 * transaction is never interleaved with another connection's. pglite-socket's own queue
 * interleaves between the messages of one query, and a second connection's Parse then
 * replaces the first's unnamed statement.
 *
 * Session settings given at connect (`options=-c search_path=...`, how detektr's pools
 * select their schema) are not applied by PGlite; the scheduler applies each connection's
 * `-c` settings to the shared session whenever that connection takes it.
 */

export interface EmbeddedPostgresOptions {
  /** Directory of the database files (created when missing; initialised on first use). */
  dataDir: string;
  host?: string;
  /** 0 (default): an ephemeral port. */
  port?: number;
}

const SYNC = new Uint8Array([0x53, 0, 0, 0, 4]);
const PROTOCOL_3 = 196608;

interface Item {
  handlerId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (err: Error) => void;
}

/** Gives the one PGlite session to one connection at a time, per request (see above). */
class SessionScheduler {
  private owner: number | null = null;
  private readonly waiting: Item[] = [];
  private running = false;
  private readonly settings = new Map<number, Map<string, string>>();
  private readonly closed = new Set<number>();
  /** Settings currently applied to the session by a connection (name -> value). */
  private readonly applied = new Map<string, string>();

  constructor(private readonly db: PGlite) {}

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.waiting.push({ handlerId, message, onData, resolve, reject });
      void this.pump();
    });
  }

  getQueueLength(): number {
    return this.waiting.length;
  }

  clearQueueForHandler(handlerId: number): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i].handlerId === handlerId) this.waiting.splice(i, 1)[0].reject(new Error('Handler disconnected'));
    }
  }

  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    this.closed.add(handlerId);
    this.settings.delete(handlerId);
    await this.pump();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        if (this.owner !== null && this.closed.has(this.owner)) await this.releaseAbandoned();
        const i = this.owner === null ? 0 : this.waiting.findIndex((w) => w.handlerId === this.owner);
        if (i === -1 || this.waiting.length === 0) break;
        const item = this.waiting.splice(i, 1)[0];
        await this.run(item);
      }
    } finally {
      this.running = false;
    }
  }

  private async run(item: Item): Promise<void> {
    const msg = item.message;
    const startup = msg.length >= 8 && msg[0] === 0 && readInt32(msg, 4) === PROTOCOL_3;
    if (startup) this.settings.set(item.handlerId, startupSettings(msg));
    try {
      if (this.owner === null) {
        this.owner = item.handlerId;
        if (!startup) await this.applySettings(item.handlerId);
      }
      let bytes = 0;
      await this.db.runExclusive(() =>
        this.db.execProtocolRawStream(msg, {
          onRawData: (d) => {
            bytes += d.length;
            item.onData(d);
          },
        }),
      );
      // A Sync, a simple Query, a startup or a Terminate ends a request: if that left the
      // backend outside a transaction block, another connection may have the session.
      const type = msg[0];
      if ((startup || type === 0x53 || type === 0x51 || type === 0x58) && !this.db.isInTransaction()) this.owner = null;
      item.resolve(bytes);
    } catch (err) {
      if (this.owner === item.handlerId && !this.db.isInTransaction()) this.owner = null;
      item.reject(err as Error);
    }
  }

  /** The owner went away mid-request: end its extended-protocol state and transaction. */
  private async releaseAbandoned(): Promise<void> {
    const id = this.owner!;
    this.closed.delete(id);
    try {
      await this.db.runExclusive(() => this.db.execProtocolRawStream(SYNC, { onRawData: () => {} }));
      if (this.db.isInTransaction()) await this.db.exec('ROLLBACK');
    } finally {
      this.owner = null;
    }
  }

  /** Makes the session's `-c` settings those the connection asked for at connect. */
  private async applySettings(handlerId: number): Promise<void> {
    const want = this.settings.get(handlerId) ?? new Map<string, string>();
    for (const [name, value] of want) {
      if (this.applied.get(name) === value) continue;
      await this.db.query('SELECT set_config($1, $2, false)', [name, value]);
      this.applied.set(name, value);
    }
    for (const name of [...this.applied.keys()]) {
      if (want.has(name)) continue;
      await this.db.exec(`RESET ${quoteIdent(name)}`);
      this.applied.delete(name);
    }
  }
}

function readInt32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** The `-c name=value` settings in a startup packet's `options` parameter. */
export function startupSettings(msg: Uint8Array): Map<string, string> {
  const text = Buffer.from(msg.buffer, msg.byteOffset + 8, msg.length - 8).toString('utf8');
  const parts = text.split('\0');
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < parts.length; i += 2) {
    if (parts[i] !== 'options') continue;
    // PostgreSQL splits options on unescaped whitespace; a backslash escapes the next character.
    const words: string[] = [];
    let cur = '';
    let escaped = false;
    for (const ch of parts[i + 1]) {
      if (escaped) {
        cur += ch;
        escaped = false;
      } else if (ch === '\\') escaped = true;
      else if (/\s/.test(ch)) {
        if (cur) words.push(cur);
        cur = '';
      } else cur += ch;
    }
    if (cur) words.push(cur);
    for (let j = 0; j < words.length; j++) {
      let setting: string | undefined;
      if (words[j] === '-c' || words[j] === '--') setting = words[++j];
      else if (words[j].startsWith('-c')) setting = words[j].slice(2);
      else if (words[j].startsWith('--')) setting = words[j].slice(2);
      const eq = setting?.indexOf('=') ?? -1;
      if (setting && eq > 0) out.set(setting.slice(0, eq).replace(/-/g, '_'), setting.slice(eq + 1));
    }
  }
  return out;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * A lock file beside the data: PGlite must never have two processes on one data
 * directory. Stale locks (their process is gone) are taken over.
 */
function acquireLock(dir: string): () => void {
  const path = `${dir}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, JSON.stringify({ pid: process.pid, at: new Date().toISOString() }), { flag: 'wx' });
      return () => {
        try {
          const held = JSON.parse(readFileSync(path, 'utf8')) as { pid?: number };
          if (held.pid === process.pid) unlinkSync(path);
        } catch {
          // gone already
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let pid: number | undefined;
      try {
        pid = (JSON.parse(readFileSync(path, 'utf8')) as { pid?: number }).pid;
      } catch {
        // unreadable (being written): treat as held briefly
      }
      if (pid !== undefined && pid !== process.pid && isAlive(pid)) {
        throw new ConnectionError(
          `the embedded PostgreSQL data in ${dir} is in use by process ${pid} (one process at a time; stop it, or connect to it through its run.json)`,
        );
      }
      try {
        unlinkSync(path);
      } catch {
        // someone else removed it
      }
    }
  }
  throw new ConnectionError(`cannot lock the embedded PostgreSQL data in ${dir}`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class EmbeddedPostgres {
  private server?: Server;
  private readonly handlers = new Set<PGLiteSocketHandler>();
  private readonly sockets = new Set<Socket>();
  private scheduler?: SessionScheduler;
  private closing?: Promise<void>;
  port = 0;

  private constructor(
    readonly db: PGlite,
    readonly dataDir: string,
    private readonly host: string,
    private readonly releaseLock: () => void,
  ) {}

  /** Opens (or creates) the database in `dataDir`. First use initialises it (a few seconds). */
  static async open(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
    const dir = resolve(opts.dataDir);
    mkdirSync(dirname(dir), { recursive: true });
    const release = acquireLock(dir);
    try {
      const db = await PGlite.create({ dataDir: dir });
      return new EmbeddedPostgres(db, dir, opts.host ?? '127.0.0.1', release);
    } catch (err) {
      release();
      throw new ConnectionError(`cannot open the embedded PostgreSQL in ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** `postgres://postgres@127.0.0.1:<port>/postgres` once listening. */
  get url(): string {
    return `postgres://postgres@${this.host}:${this.port}/postgres`;
  }

  /** Serves the database over TCP; returns the URL. */
  async listen(port = 0): Promise<string> {
    if (this.server) return this.url;
    const scheduler = new SessionScheduler(this.db);
    this.scheduler = scheduler;
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      const handler = new PGLiteSocketHandler({
        // pglite-socket's handler frames messages and calls enqueue / clearQueueForHandler /
        // clearTransactionIfNeeded on its queue; ours keeps a request on one connection.
        queryQueue: scheduler as unknown as PGLiteSocketHandlerOptions['queryQueue'],
        closeOnDetach: true,
      });
      this.handlers.add(handler);
      const forget = () => this.handlers.delete(handler);
      handler.addEventListener('close', forget);
      handler.addEventListener('error', forget);
      handler.attach(socket).catch(() => socket.destroy());
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as AddressInfo).port;
    return this.url;
  }

  /** Stops serving, closes the database cleanly (a checkpoint) and releases the data directory. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        const server = this.server;
        if (server) {
          for (const h of this.handlers) await h.detach(true).catch(() => {});
          for (const s of this.sockets) s.destroy();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
        await this.db.close();
      } finally {
        this.releaseLock();
      }
    })();
    return this.closing;
  }
}
