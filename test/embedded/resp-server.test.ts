import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedRedis } from '../../src/embedded/resp-server.js';
import { NULL_ARRAY, ReplyWriter, RequestParser, SimpleString, ErrorReply, ProtocolError, type Reply } from '../../src/embedded/resp.js';
import { waitFor } from '../helpers/redis.js';

const enc = (...args: (string | Buffer)[]) =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((a) => {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(a);
      return [Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')];
    }),
  ]);

describe('RESP parser and writer', () => {
  it('parses requests split at every byte, and several in one chunk', () => {
    const wire = Buffer.concat([enc('SET', 'k', 'v'), enc('GET', 'k')]);
    const p = new RequestParser();
    const got: string[][] = [];
    for (let i = 0; i < wire.length; i++) got.push(...p.push(wire.subarray(i, i + 1)).map((r) => r.map(String)));
    expect(got).toEqual([
      ['SET', 'k', 'v'],
      ['GET', 'k'],
    ]);
    expect(new RequestParser().push(wire).map((r) => r.map(String))).toEqual(got);
  });

  it('parses a large binary value arriving in many chunks, into a buffer of its own', () => {
    const value = Buffer.alloc(1_000_000);
    for (let i = 0; i < value.length; i++) value[i] = i % 251;
    const wire = enc('SET', 'k', value);
    const p = new RequestParser();
    let out: Buffer[][] = [];
    for (let i = 0; i < wire.length; i += 65_536) out = out.concat(p.push(Buffer.from(wire.subarray(i, i + 65_536))));
    expect(out).toHaveLength(1);
    expect(out[0][2].equals(value)).toBe(true);
    // a copy of its own: keeping it never pins the socket's chunks
    expect(out[0][2].byteOffset === 0 && out[0][2].buffer.byteLength === value.length).toBe(true);
  });

  it('parses inline commands and rejects malformed ones', () => {
    expect(new RequestParser().push(Buffer.from('PING\r\nECHO  hi \n')).map((r) => r.map(String))).toEqual([['PING'], ['ECHO', 'hi']]);
    expect(() => new RequestParser().push(Buffer.from('*1\r\n+PING\r\n'))).toThrow(ProtocolError);
    expect(() => new RequestParser().push(Buffer.from('*x\r\n'))).toThrow(ProtocolError);
  });

  it('writes every reply type', () => {
    const w = new ReplyWriter();
    const replies: Reply[] = [
      new SimpleString('OK'),
      new ErrorReply('ERR no'),
      42,
      'bulk',
      Buffer.from([0, 255]),
      null,
      NULL_ARRAY,
      [1, ['a', null]],
    ];
    for (const r of replies) w.write(r);
    expect(w.take()!.toString('latin1')).toBe(
      '+OK\r\n-ERR no\r\n:42\r\n$4\r\nbulk\r\n$2\r\n\x00\xff\r\n$-1\r\n*-1\r\n*2\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n',
    );
  });
});

describe('embedded server', () => {
  let server: EmbeddedRedis;
  let redis: Redis;

  beforeAll(async () => {
    server = new EmbeddedRedis({ sweepIntervalMs: 50 });
    redis = new Redis(await server.start());
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.close();
  });

  async function raw(send: Buffer | string, expectBytes: number): Promise<string> {
    const sock: Socket = connect(server.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.write(send);
    await waitFor(`${expectBytes} bytes`, () => got.length >= expectBytes, 2000, 10);
    sock.destroy();
    return got;
  }

  it('answers telnet-style inline commands and a protocol error (then closes)', async () => {
    expect(await raw('PING\r\n', 7)).toBe('+PONG\r\n');
    expect(await raw('*1\r\n+PING\r\n', 10)).toMatch(/^-ERR Protocol error/);
  });

  it('serves a pipeline written in one go, in order, and MULTI split across writes', async () => {
    const wire = Buffer.concat([enc('MULTI'), enc('SET', 'p', '1'), enc('INCR', 'p'), enc('EXEC'), enc('GET', 'p')]);
    expect(await raw(wire, 43)).toBe('+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n$1\r\n2\r\n');
  });

  it('drops expired keys in the background, without them being touched (memory stays bounded)', async () => {
    const before = server.db.size;
    const p = redis.pipeline();
    for (let i = 0; i < 1000; i++) p.set(`exp:${i}`, Buffer.alloc(1000), 'PX', 1500);
    const replies = await p.exec();
    expect(replies!.every(([err, v]) => !err && v === 'OK')).toBe(true);
    expect(server.db.size).toBeGreaterThan(before);
    await waitFor('swept', () => server.db.size === before, 8000);
  });

  it('keeps a stream at MAXLEN whatever is added', async () => {
    const p = redis.pipeline();
    for (let i = 0; i < 5000; i++) p.xadd('bounded', 'MAXLEN', '~', 500, '*', 'i', String(i));
    await p.exec();
    expect(await redis.xlen('bounded')).toBe(500);
  });

  it('forgets a blocked client that disconnects, and serves the next one', async () => {
    await redis.xgroup('CREATE', 'blk', 'g', '$', 'MKSTREAM');
    const gone = new Redis(server.url);
    void gone.xreadgroup('GROUP', 'g', 'gone', 'BLOCK', 0, 'STREAMS', 'blk', '>').catch(() => {});
    await new Promise((r) => setTimeout(r, 50));
    gone.disconnect();
    const waiter = new Redis(server.url);
    const read = waiter.xreadgroup('GROUP', 'g', 'w', 'BLOCK', 0, 'STREAMS', 'blk', '>');
    await new Promise((r) => setTimeout(r, 50));
    await redis.xadd('blk', '*', 'k', 'v');
    const res = (await read) as [string, [string, string[]][]][];
    expect(res[0][1]).toHaveLength(1);
    expect(((await redis.xpending('blk', 'g', '-', '+', 10)) as unknown[][]).map((r) => r[1])).toEqual(['w']);
    waiter.disconnect();
  });

  it('inside MULTI a blocking read does not block', async () => {
    await redis.xgroup('CREATE', 'mb', 'g', '$', 'MKSTREAM');
    const res = await redis.multi().xreadgroup('GROUP', 'g', 'c', 'BLOCK', 5000, 'STREAMS', 'mb', '>').exec();
    expect(res).toEqual([[null, null]]);
  });

  it('names the connection and answers INFO with a Redis 7 version', async () => {
    const named = new Redis(server.url, { connectionName: 'detektr:test' });
    expect(await named.client('GETNAME')).toBe('detektr:test');
    expect(await named.info('server')).toMatch(/redis_version:7\./);
    named.disconnect();
  });

  it('QUIT answers OK and closes', async () => {
    const q = new Redis(server.url);
    expect(await q.quit()).toBe('OK');
  });
});
