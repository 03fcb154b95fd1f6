/**
 * RESP2, the Redis wire protocol: an incremental request parser and a reply encoder.
 *
 * Every string inside the embedded server is a "byte string": bytes decoded as latin1, one
 * character per byte, so keys, fields and values round-trip any bytes exactly (the client
 * encodes UTF-8; we never decode it). Large string values (frame JPEGs) stay Buffers.
 */

/** `+OK`-style status reply. */
export class SimpleString {
  constructor(readonly value: string) {}
}

/** An error reply; the message starts with its code (`ERR ...`, `WRONGTYPE ...`, `NOGROUP ...`). */
export class ErrorReply {
  constructor(readonly message: string) {}
}

/** Thrown by command handlers; becomes an error reply. */
export class CommandError extends Error {}

/** `*-1`: what Redis answers to a read that timed out (XREADGROUP BLOCK). */
export const NULL_ARRAY: unique symbol = Symbol('null-array');

export type Reply = SimpleString | ErrorReply | number | bigint | string | Buffer | null | typeof NULL_ARRAY | Reply[];

export const OK = new SimpleString('OK');
export const QUEUED = new SimpleString('QUEUED');

const MAX_BULK = 512 * 1024 * 1024;
const MAX_MULTIBULK = 1024 * 1024;
const MAX_INLINE = 64 * 1024;

export class ProtocolError extends Error {}

/**
 * Parses requests as they arrive: `*<n>\r\n$<len>\r\n<bytes>\r\n...` (what every client
 * sends) and inline commands (`PING\r\n`, what a person types into telnet). Argument
 * buffers are copies, never views into the socket's chunks.
 */
export class RequestParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes needed before another parse attempt can make progress. */
  private needed = 0;

  /** Feeds a chunk; returns the complete requests it finished (maybe none). */
  push(chunk: Buffer): Buffer[][] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.needed) return [];
    const buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    const out: Buffer[][] = [];
    let pos = 0;
    for (;;) {
      const r = parseOne(buf, pos);
      if (r === undefined) break;
      if (typeof r === 'number') {
        this.needed = r - pos;
        break;
      }
      pos = r.end;
      if (r.args.length) out.push(r.args);
      this.needed = 0;
    }
    if (pos === buf.length) {
      this.chunks = [];
      this.buffered = 0;
      this.needed = 0;
    } else {
      const rest = buf.subarray(pos);
      this.chunks = [rest];
      this.buffered = rest.length;
      if (this.needed === 0) this.needed = rest.length + 1;
    }
    return out;
  }
}

/** One request from `pos`: the args and where it ends; a number (bytes needed up to) or undefined when incomplete. */
function parseOne(buf: Buffer, pos: number): { args: Buffer[]; end: number } | number | undefined {
  if (pos >= buf.length) return undefined;
  if (buf[pos] !== 0x2a /* '*' */) return parseInline(buf, pos);
  const head = readLine(buf, pos + 1);
  if (!head) {
    if (buf.length - pos > MAX_INLINE) throw new ProtocolError('too big mbulk count string');
    return undefined;
  }
  const n = parseIntStrict(head.line);
  if (n === undefined || n > MAX_MULTIBULK) throw new ProtocolError('invalid multibulk length');
  let p = head.next;
  const args: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (p >= buf.length) return undefined;
    if (buf[p] !== 0x24 /* '$' */) throw new ProtocolError(`expected '$', got '${String.fromCharCode(buf[p])}'`);
    const lenLine = readLine(buf, p + 1);
    if (!lenLine) return undefined;
    const len = parseIntStrict(lenLine.line);
    if (len === undefined || len < 0 || len > MAX_BULK) throw new ProtocolError('invalid bulk length');
    const start = lenLine.next;
    if (start + len + 2 > buf.length) return start + len + 2;
    const arg = Buffer.allocUnsafe(len);
    buf.copy(arg, 0, start, start + len);
    args.push(arg);
    p = start + len + 2;
  }
  return { args, end: p };
}

function parseInline(buf: Buffer, pos: number): { args: Buffer[]; end: number } | undefined {
  const nl = buf.indexOf(0x0a, pos);
  if (nl === -1) {
    if (buf.length - pos > MAX_INLINE) throw new ProtocolError('too big inline request');
    return undefined;
  }
  const line = buf.toString('latin1', pos, nl).replace(/\r$/, '');
  const args = line
    .split(/\s+/)
    .filter(Boolean)
    .map((s) => Buffer.from(s, 'latin1'));
  return { args, end: nl + 1 };
}

function readLine(buf: Buffer, pos: number): { line: string; next: number } | undefined {
  const cr = buf.indexOf(0x0d, pos);
  if (cr === -1 || cr + 1 >= buf.length) return undefined;
  if (buf[cr + 1] !== 0x0a) throw new ProtocolError('expected \\r\\n');
  return { line: buf.toString('latin1', pos, cr), next: cr + 2 };
}

function parseIntStrict(s: string): number | undefined {
  if (!/^-?\d{1,12}$/.test(s)) return undefined;
  return Number(s);
}

/**
 * Encodes replies into latin1 text and raw buffers, in order. Text pieces are merged, so a
 * pipeline of small replies becomes one socket write.
 */
export class ReplyWriter {
  private parts: (string | Buffer)[] = [];
  private text = '';

  write(r: Reply): void {
    if (typeof r === 'string') {
      this.text += `$${r.length}\r\n${r}\r\n`;
    } else if (typeof r === 'number') {
      this.text += `:${Number.isInteger(r) ? r : Math.trunc(r)}\r\n`;
    } else if (typeof r === 'bigint') {
      this.text += `:${r}\r\n`;
    } else if (r === null) {
      this.text += '$-1\r\n';
    } else if (r === NULL_ARRAY) {
      this.text += '*-1\r\n';
    } else if (Array.isArray(r)) {
      this.text += `*${r.length}\r\n`;
      for (const x of r) this.write(x);
    } else if (Buffer.isBuffer(r)) {
      this.text += `$${r.length}\r\n`;
      if (r.length < 1024) this.text += r.toString('latin1');
      else {
        this.flushText();
        this.parts.push(r);
      }
      this.text += '\r\n';
    } else if (r instanceof SimpleString) {
      this.text += `+${r.value.replace(/[\r\n]/g, ' ')}\r\n`;
    } else if (r instanceof ErrorReply) {
      this.text += `-${r.message.replace(/[\r\n]/g, ' ')}\r\n`;
    } else {
      throw new Error(`cannot encode reply ${String(r)}`);
    }
  }

  private flushText(): void {
    if (this.text) this.parts.push(this.text);
    this.text = '';
  }

  /** The encoded bytes so far (and resets). */
  take(): Buffer | undefined {
    this.flushText();
    if (!this.parts.length) return undefined;
    const bufs = this.parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p));
    this.parts = [];
    return bufs.length === 1 ? bufs[0] : Buffer.concat(bufs);
  }
}
