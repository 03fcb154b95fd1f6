import { fail, parseInteger, upper, type CommandContext, type CommandSpec } from './command.js';
import { OK, SimpleString, type Reply } from './resp.js';

/** Connection and server commands: what clients send on connect, and a few for operators. */
export const SERVER_COMMANDS: Record<string, CommandSpec> = {
  ping: {
    arity: -1,
    handler: (_ctx, a) => {
      if (a.length > 2) fail(`ERR wrong number of arguments for 'ping' command`);
      return a.length === 2 ? a[1] : new SimpleString('PONG');
    },
  },
  echo: { arity: 2, handler: (_ctx, a) => a[1] },
  time: {
    arity: 1,
    handler: () => {
      const us = BigInt(Math.round(performance.timeOrigin * 1000 + performance.now() * 1000));
      return [String(us / 1_000_000n), String(us % 1_000_000n)];
    },
  },
  select: {
    arity: 2,
    noScript: true,
    handler: (_ctx, a) => {
      const db = parseInteger(a[1]);
      if (db !== 0) fail('ERR DB index is out of range');
      return OK;
    },
  },
  hello: { arity: -1, noScript: true, handler: hello },
  client: { arity: -2, noScript: true, handler: client },
  info: { arity: -1, handler: (ctx, a) => info(ctx, a.slice(1)) },
  command: {
    arity: -1,
    handler: (_ctx, a) => {
      const sub = upper(a[1]);
      if (sub === 'COUNT') return 0;
      return [];
    },
  },
};

function hello(ctx: CommandContext, a: string[]): Reply {
  if (a.length > 1) {
    const ver = parseInteger(a[1], 'NOPROTO unsupported protocol version');
    // RESP2 only: clients asking for RESP3 (ioredis 6 does) fall back to RESP2 on NOPROTO.
    if (ver !== 2) fail('NOPROTO sorry, this protocol version is not supported');
    for (let i = 2; i < a.length; i++) {
      const o = upper(a[i]);
      if (o === 'AUTH' && i + 2 < a.length) i += 2;
      else if (o === 'SETNAME' && i + 1 < a.length) ctx.client.name = checkName(a[++i]);
      else fail(`ERR Syntax error in HELLO option '${a[i]}'`);
    }
  }
  return [
    'server',
    'redis',
    'version',
    ctx.server.version,
    'proto',
    2,
    'id',
    ctx.client.id,
    'mode',
    'standalone',
    'role',
    'master',
    'modules',
    [],
  ];
}

function checkName(name: string): string {
  if (/[^\x21-\x7e]/.test(name)) fail('ERR Client names cannot contain spaces, newlines or special characters.');
  return name;
}

function client(ctx: CommandContext, a: string[]): Reply {
  const sub = upper(a[1]);
  switch (sub) {
    case 'SETNAME':
      if (a.length !== 3) break;
      ctx.client.name = checkName(a[2]);
      return OK;
    case 'GETNAME':
      return ctx.client.name || null;
    case 'ID':
      return ctx.client.id;
    case 'SETINFO': {
      if (a.length !== 4) break;
      const attr = upper(a[2]);
      if (attr === 'LIB-NAME') ctx.client.libName = a[3];
      else if (attr === 'LIB-VER') ctx.client.libVer = a[3];
      else fail(`ERR Unrecognized option '${a[2]}'`);
      return OK;
    }
    case 'LIST':
    case 'INFO': {
      const now = Date.now();
      const line = (c: typeof ctx.client) =>
        `id=${c.id} addr=${c.addr} name=${c.name} age=${Math.floor((now - c.connectedAt) / 1000)} db=0 lib-name=${c.libName ?? ''} lib-ver=${c.libVer ?? ''}`;
      return sub === 'INFO'
        ? `${line(ctx.client)}\n`
        : ctx.server
            .clients()
            .map((c) => `${line(c)}\n`)
            .join('');
    }
    case 'NO-EVICT':
    case 'NO-TOUCH':
      return OK;
    default:
      fail(`ERR unknown subcommand '${a[1]}'. Try CLIENT HELP.`);
  }
  fail(`ERR unknown subcommand or wrong number of arguments for '${a[1]}'. Try CLIENT HELP.`);
}

function info(ctx: CommandContext, sections: string[]): Reply {
  const want = new Set(sections.map((s) => s.toLowerCase()));
  const all = want.size === 0 || want.has('all') || want.has('everything') || want.has('default');
  const mem = process.memoryUsage();
  const parts: [string, Record<string, string | number>][] = [
    [
      'Server',
      {
        redis_version: ctx.server.version,
        redis_mode: 'standalone',
        // not a Redis server: detektr's in-process one (src/embedded/resp-server.ts)
        server_name: 'detektr-embedded',
        os: `${process.platform} ${process.arch}`,
        process_id: process.pid,
        tcp_port: ctx.server.port,
        uptime_in_seconds: Math.floor((ctx.now - ctx.server.startedAt) / 1000),
      },
    ],
    ['Clients', { connected_clients: ctx.server.clients().length }],
    ['Memory', { used_memory: mem.heapUsed, used_memory_rss: mem.rss }],
    ['Persistence', { loading: 0 }],
    ['Replication', { role: 'master', connected_slaves: 0 }],
    ['Keyspace', ctx.db.size ? { db0: `keys=${ctx.db.size},expires=0,avg_ttl=0` } : {}],
  ];
  let out = '';
  for (const [name, fields] of parts) {
    if (!all && !want.has(name.toLowerCase())) continue;
    out += `# ${name}\r\n${Object.entries(fields)
      .map(([k, v]) => `${k}:${v}\r\n`)
      .join('')}\r\n`;
  }
  return out;
}
