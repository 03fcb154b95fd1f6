import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Block, wrongArity, type ClientInfo, type CommandContext, type CommandSpec, type Scripting, type ServerInfo } from './command.js';
import { BASIC_COMMANDS } from './commands-basic.js';
import { SERVER_COMMANDS } from './commands-server.js';
import { STREAM_COMMANDS } from './commands-stream.js';
import { Keyspace } from './keyspace.js';
import { CommandError, ErrorReply, OK, ProtocolError, QUEUED, ReplyWriter, RequestParser, type Reply } from './resp.js';

/** The Redis version whose semantics the embedded server follows (what INFO reports). */
export const EMBEDDED_REDIS_VERSION = '7.0.0';

export interface EmbeddedRedisOptions {
  host?: string;
  /** 0 (default): an ephemeral port. */
  port?: number;
  /** How often expired keys are swept (they also vanish when touched). */
  sweepIntervalMs?: number;
  /** EVAL/EVALSHA support (src/embedded/lua.ts); without it those commands are unknown. */
  scripting?: Scripting;
  /** Internal errors (a bug, never a client's mistake) are reported here. */
  onError?: (err: Error) => void;
}

interface Conn {
  socket: Socket;
  parser: RequestParser;
  info: ClientInfo;
  /** Requests received, not yet run (a blocked client keeps the rest of its pipeline). */
  queue: Buffer[][];
  writer: ReplyWriter;
  multi?: { queued: { spec: CommandSpec; args: string[]; raw: Buffer[] }[]; dirty: boolean };
  blocked?: { block: Block; timer?: NodeJS.Timeout; since: number };
  closed: boolean;
}

/**
 * An in-process server speaking the Redis protocol (RESP2) on 127.0.0.1, holding its data in
 * memory: the commands detektr uses, with Redis 7 semantics (see docs/architecture.md,
 * "Embedded backends"). ioredis talks to it unchanged. Unknown commands get
 * `-ERR unknown command`, so a command added to detektr but not here fails loudly.
 */
export class EmbeddedRedis {
  readonly db = new Keyspace();
  private readonly commands = new Map<string, CommandSpec>();
  private readonly conns = new Set<Conn>();
  /** Blocked clients, oldest first (Redis serves them in the order they blocked). */
  private readonly blocked: Conn[] = [];
  private readonly touched = new Set<string>();
  private serving = false;
  private server?: Server;
  private sweepTimer?: NodeJS.Timeout;
  private nextClientId = 1;
  private readonly info: ServerInfo;
  port = 0;

  constructor(private readonly opts: EmbeddedRedisOptions = {}) {
    for (const table of [BASIC_COMMANDS, STREAM_COMMANDS, SERVER_COMMANDS]) {
      for (const [name, spec] of Object.entries(table)) this.commands.set(name, spec);
    }
    this.info = {
      port: 0,
      startedAt: Date.now(),
      version: EMBEDDED_REDIS_VERSION,
      clients: () => [...this.conns].map((c) => c.info),
      scripting: opts.scripting,
      call: (raw, client) => this.call(raw, client),
    };
    this.db.onTouch = (key) => {
      if (this.blocked.length) this.touched.add(key);
    };
  }

  get url(): string {
    return `redis://${this.opts.host ?? '127.0.0.1'}:${this.port}`;
  }

  /** Command names this server answers (lower case). */
  commandNames(): string[] {
    return [
      ...this.commands.keys(),
      'multi',
      'exec',
      'discard',
      'quit',
      ...(this.opts.scripting ? ['eval', 'evalsha', 'script'] : []),
    ].sort();
  }

  async start(): Promise<string> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as AddressInfo).port;
    this.info.port = this.port;
    this.sweepTimer = setInterval(() => this.db.sweep(), this.opts.sweepIntervalMs ?? 1000);
    this.sweepTimer.unref();
    return this.url;
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    for (const c of this.conns) {
      if (c.blocked?.timer) clearTimeout(c.blocked.timer);
      c.closed = true;
      c.socket.destroy();
    }
    this.conns.clear();
    this.blocked.length = 0;
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Runs one command in-process, as a client inside MULTI would (never blocks). For
   * scripts (redis.call) and tests.
   */
  call(args: (string | Buffer)[], client?: ClientInfo): Reply {
    const raw = args.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(a, 'latin1')));
    const ctx = this.context(client ?? this.internalClient, false);
    return this.run(ctx, raw, { fromScript: true }) as Reply; // canBlock false: never a Block
  }

  private readonly internalClient: ClientInfo = { id: 0, name: 'internal', addr: 'internal', connectedAt: Date.now() };

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const conn: Conn = {
      socket,
      parser: new RequestParser(),
      info: { id: this.nextClientId++, name: '', addr: `${socket.remoteAddress}:${socket.remotePort}`, connectedAt: Date.now() },
      queue: [],
      writer: new ReplyWriter(),
      closed: false,
    };
    this.conns.add(conn);
    socket.on('data', (chunk: Buffer) => {
      if (conn.closed) return;
      try {
        for (const req of conn.parser.push(chunk)) conn.queue.push(req);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        conn.writer.write(new ErrorReply(`ERR Protocol error: ${err.message}`));
        this.flush(conn);
        this.drop(conn);
        socket.end();
        return;
      }
      this.drain(conn);
      this.serveBlocked();
    });
    socket.on('error', () => this.drop(conn));
    socket.on('close', () => this.drop(conn));
  }

  private drop(conn: Conn): void {
    if (conn.closed && !this.conns.has(conn)) return;
    conn.closed = true;
    this.unblock(conn);
    this.conns.delete(conn);
  }

  private context(client: ClientInfo, canBlock: boolean): CommandContext {
    return { db: this.db, now: Date.now(), client, canBlock, server: this.info };
  }

  /** Runs the connection's queued requests until it blocks or has none left; writes the replies. */
  private drain(conn: Conn): void {
    while (conn.queue.length && !conn.blocked && !conn.closed) {
      const raw = conn.queue.shift()!;
      const name = raw[0].toString('latin1').toLowerCase();
      if (name === 'quit') {
        conn.writer.write(OK);
        this.flush(conn);
        conn.closed = true;
        conn.socket.end();
        return;
      }
      const r = this.runForClient(conn, name, raw);
      if (r instanceof Block) {
        this.block(conn, r);
        break;
      }
      conn.writer.write(r);
    }
    this.flush(conn);
  }

  private flush(conn: Conn): void {
    const out = conn.writer.take();
    if (out && !conn.socket.destroyed) conn.socket.write(out);
  }

  /** MULTI/EXEC/DISCARD around the plain command path. */
  private runForClient(conn: Conn, name: string, raw: Buffer[]): Reply | Block {
    if (name === 'multi') {
      if (conn.multi) return new ErrorReply('ERR MULTI calls can not be nested');
      conn.multi = { queued: [], dirty: false };
      return OK;
    }
    if (name === 'discard') {
      if (!conn.multi) return new ErrorReply('ERR DISCARD without MULTI');
      conn.multi = undefined;
      return OK;
    }
    if (name === 'exec') {
      const m = conn.multi;
      if (!m) return new ErrorReply('ERR EXEC without MULTI');
      conn.multi = undefined;
      if (m.dirty) return new ErrorReply('EXECABORT Transaction discarded because of previous errors.');
      // Atomic: every queued command runs now, one after the other, with nothing in between.
      // A command that fails at run time replies its error; the others still run (as in Redis).
      const ctx = this.context(conn.info, false);
      return m.queued.map((q) => this.invoke(ctx, q.spec, q.args, q.raw) as Reply); // canBlock false: never a Block
    }
    if (conn.multi) {
      const checked = this.lookup(name, raw);
      if (checked instanceof ErrorReply) {
        conn.multi.dirty = true;
        return checked;
      }
      conn.multi.queued.push({ spec: checked, args: raw.map((b) => b.toString('latin1')), raw });
      return QUEUED;
    }
    return this.run(this.context(conn.info, true), raw);
  }

  private lookup(name: string, raw: Buffer[]): CommandSpec | ErrorReply {
    const spec = this.commands.get(name) ?? this.scriptCommand(name);
    if (!spec) {
      const args = raw
        .slice(1, 20)
        .map((b) => `'${b.toString('latin1').slice(0, 128)}' `)
        .join('');
      return new ErrorReply(`ERR unknown command '${raw[0].toString('latin1').slice(0, 128)}', with args beginning with: ${args}`);
    }
    if ((spec.arity > 0 && raw.length !== spec.arity) || raw.length < Math.abs(spec.arity)) return new ErrorReply(wrongArity(name));
    return spec;
  }

  private run(ctx: CommandContext, raw: Buffer[], opts: { fromScript?: boolean } = {}): Reply | Block {
    const name = raw[0].toString('latin1').toLowerCase();
    if (opts.fromScript && ['multi', 'exec', 'discard', 'quit', 'eval', 'evalsha', 'script'].includes(name)) {
      return new ErrorReply('ERR This Redis command is not allowed from script');
    }
    const spec = this.lookup(name, raw);
    if (spec instanceof ErrorReply) {
      if (!opts.fromScript) return spec;
      if (spec.message.startsWith('ERR unknown command')) return new ErrorReply('ERR Unknown Redis command called from script');
      if (spec.message.startsWith('ERR wrong number of arguments'))
        return new ErrorReply('ERR Wrong number of args calling Redis command from script');
      return spec;
    }
    if (opts.fromScript && spec.noScript) return new ErrorReply('ERR This Redis command is not allowed from script');
    return this.invoke(
      ctx,
      spec,
      raw.map((b) => b.toString('latin1')),
      raw,
    );
  }

  private invoke(ctx: CommandContext, spec: CommandSpec, args: string[], raw: Buffer[]): Reply | Block {
    try {
      const r = spec.handler(ctx, args, raw);
      if (r instanceof Block && !ctx.canBlock) return r.onTimeout;
      return r;
    } catch (err) {
      if (err instanceof CommandError) return new ErrorReply(err.message);
      this.opts.onError?.(err as Error);
      return new ErrorReply(`ERR internal error in the embedded server: ${(err as Error).message}`);
    }
  }

  private scriptCommand(name: string): CommandSpec | undefined {
    const s = this.opts.scripting;
    if (!s) return undefined;
    const keysAndArgs = (a: string[]) => {
      const n = Number(a[2]);
      if (!/^-?\d+$/.test(a[2]) || n < 0) throw new CommandError("ERR Number of keys can't be negative");
      if (n > a.length - 3) throw new CommandError("ERR Number of keys can't be greater than number of args");
      return { keys: a.slice(3, 3 + n), args: a.slice(3 + n) };
    };
    if (name === 'eval')
      return {
        arity: -3,
        handler: (ctx, a) => {
          const k = keysAndArgs(a);
          return s.eval(ctx, a[1], k.keys, k.args);
        },
      };
    if (name === 'evalsha')
      return {
        arity: -3,
        handler: (ctx, a) => {
          const k = keysAndArgs(a);
          return s.evalsha(ctx, a[1].toLowerCase(), k.keys, k.args);
        },
      };
    if (name === 'script') {
      return {
        arity: -2,
        handler: (_ctx, a) => {
          const sub = a[1].toUpperCase();
          if (sub === 'LOAD' && a.length === 3) return s.load(a[2]);
          if (sub === 'EXISTS' && a.length >= 3) return a.slice(2).map((sha) => (s.exists(sha.toLowerCase()) ? 1 : 0));
          if (sub === 'FLUSH') return (s.flush(), OK);
          throw new CommandError(`ERR unknown subcommand '${a[1]}'. Try SCRIPT HELP.`);
        },
      };
    }
    return undefined;
  }

  // --- blocking reads --------------------------------------------------------------------

  private block(conn: Conn, block: Block): void {
    conn.blocked = { block, since: Date.now() };
    if (block.timeoutMs > 0) {
      conn.blocked.timer = setTimeout(() => {
        if (!conn.blocked || conn.closed) return;
        this.unblock(conn);
        conn.writer.write(block.onTimeout);
        this.drain(conn);
        this.serveBlocked();
      }, block.timeoutMs);
    }
    this.blocked.push(conn);
  }

  private unblock(conn: Conn): void {
    if (!conn.blocked) return;
    if (conn.blocked.timer) clearTimeout(conn.blocked.timer);
    conn.blocked = undefined;
    const i = this.blocked.indexOf(conn);
    if (i !== -1) this.blocked.splice(i, 1);
  }

  /** Retries blocked reads whose keys were written, oldest first, until nothing more changes. */
  private serveBlocked(): void {
    if (this.serving) return;
    this.serving = true;
    try {
      while (this.touched.size && this.blocked.length) {
        const keys = new Set(this.touched);
        this.touched.clear();
        for (const conn of [...this.blocked]) {
          const b = conn.blocked;
          if (!b || conn.closed || !b.block.keys.some((k) => keys.has(k))) continue;
          let reply: Reply | undefined;
          try {
            reply = b.block.retry(this.context(conn.info, false));
          } catch (err) {
            reply = new ErrorReply(err instanceof CommandError ? err.message : `ERR ${(err as Error).message}`);
          }
          if (reply === undefined) continue;
          this.unblock(conn);
          conn.writer.write(reply);
          this.drain(conn);
        }
      }
      this.touched.clear();
    } finally {
      this.serving = false;
    }
  }
}
