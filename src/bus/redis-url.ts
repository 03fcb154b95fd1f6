import { redactValue } from '../config/redact-text.js';
import { InvalidInputError } from '../domain/errors.js';

/**
 * The Redis setting (REDIS_URL / --redis-url / redisUrl) as a connection spec:
 * - `redis://` / `rediss://`: one server (ioredis parses the URL itself, as before);
 * - `redis+cluster://[user:pass@]h1:p1,h2:p2[,...]` (TLS: `rediss+cluster://`): a Redis
 *   Cluster, these nodes to start from, the credentials sent to every node;
 * - `redis+sentinel://[user:pass@]h1:p1,h2:p2/<masterName>[/db][?sentinelPassword=..]`
 *   (TLS: `rediss+sentinel://`): the master that the sentinels name. The URL's credentials
 *   are the master's; sentinels usually have none, so theirs come only from the query
 *   (`sentinelUsername`, `sentinelPassword`).
 * Kept free of ioredis so the config layer can validate with it.
 */

export interface RedisHostPort {
  host: string;
  port: number;
}

interface Credentials {
  username?: string;
  password?: string;
}

export type RedisTarget =
  | { kind: 'standalone'; url: string; tls: boolean }
  | ({ kind: 'cluster'; nodes: RedisHostPort[]; tls: boolean } & Credentials)
  | ({
      kind: 'sentinel';
      sentinels: RedisHostPort[];
      masterName: string;
      db: number;
      tls: boolean;
      sentinelUsername?: string;
      sentinelPassword?: string;
    } & Credentials);

const FORM = /^(rediss?)(?:\+(cluster|sentinel))?:\/\/(.*)$/is;
/** A multi-host form, which WHATWG URL parsing rejects (the comma list is not a port). */
export const MULTI_HOST_REDIS_URL = /^rediss?\+(?:cluster|sentinel):\/\//i;
const HOST = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$/;
const MASTER_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const SENTINEL_PARAMS = new Set(['sentinelUsername', 'sentinelPassword']);

/** Parses (and so validates) the Redis setting; `setting` names it in errors, which never show the password. */
export function parseRedisUrl(url: string, setting = 'redisUrl'): RedisTarget {
  const bad = (why: string) => new InvalidInputError(`${setting}: "${redactValue(url)}" ${why}`);
  const m = FORM.exec(url);
  if (!m) {
    throw bad('is not a Redis URL: use redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://');
  }
  const tls = m[1].toLowerCase() === 'rediss';
  const kind = m[2]?.toLowerCase() as 'cluster' | 'sentinel' | undefined;
  if (!kind) {
    try {
      new URL(url);
    } catch {
      throw bad('is not a valid URL');
    }
    return { kind: 'standalone', url, tls };
  }

  const rest = m[3];
  // Credentials end at the last '@' before the first '/', '?' or '#' (so a '/' in a password must be %2F).
  const at = rest.lastIndexOf('@', endOfAuthority(rest, -1) - 1);
  const creds = at >= 0 ? credentials(rest.slice(0, at), bad) : {};
  const afterCreds = rest.slice(at + 1);
  const end = endOfAuthority(afterCreds, -1);
  const hostList = afterCreds.slice(0, end);
  const tail = afterCreds.slice(end);
  const [pathPart, query = ''] = splitOnce(tail.replace(/#.*$/s, ''), '?');
  const defaultPort = kind === 'cluster' ? 6379 : 26379;
  const nodes = hostList.split(',').map((spec, i) => hostPort(spec.trim(), i + 1, defaultPort, bad));
  const params = new URLSearchParams(query);

  if (kind === 'cluster') {
    if (pathPart !== '' && pathPart !== '/') throw bad('has a path: a Redis Cluster has only database 0, so nothing may follow the hosts');
    if (query) throw bad('has query parameters, which a cluster URL does not take');
    return { kind, nodes, tls, ...creds };
  }

  const segments = pathPart.replace(/^\//, '').split('/');
  const masterName = decode(segments[0] ?? '', 'the master name', bad);
  if (!MASTER_NAME.test(masterName)) throw bad('needs the master name after the hosts: redis+sentinel://host:26379,host2:26379/mymaster');
  if (segments.length > 2 || (segments.length === 2 && !/^\d{1,2}$/.test(segments[1]))) {
    throw bad('has a bad database: after the master name only /<db number> may follow');
  }
  for (const name of params.keys()) {
    if (!SENTINEL_PARAMS.has(name)) throw bad(`has an unknown query parameter "${name}" (known: ${[...SENTINEL_PARAMS].join(', ')})`);
  }
  return {
    kind,
    sentinels: nodes,
    masterName,
    db: segments.length === 2 ? Number(segments[1]) : 0,
    tls,
    ...creds,
    ...(params.get('sentinelUsername') ? { sentinelUsername: params.get('sentinelUsername')! } : {}),
    ...(params.get('sentinelPassword') ? { sentinelPassword: params.get('sentinelPassword')! } : {}),
  };
}

/** Where the host list ends: the first '/', '?' or '#' after `from`. Hosts are not quoted in errors: a mis-split password could be in them. */
function endOfAuthority(s: string, from: number): number {
  const i = s.slice(from + 1).search(/[/?#]/);
  return i < 0 ? s.length : from + 1 + i;
}

function splitOnce(s: string, sep: string): [string, string?] {
  const i = s.indexOf(sep);
  return i < 0 ? [s] : [s.slice(0, i), s.slice(i + 1)];
}

function decode(s: string, what: string, bad: (why: string) => Error): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(`has ${what} in bad percent-encoding`);
  }
}

function credentials(userinfo: string, bad: (why: string) => Error): Credentials {
  const [user, pass] = splitOnce(userinfo, ':');
  const username = decode(user, 'a user name', bad);
  const password = pass === undefined ? undefined : decode(pass, 'a password', bad);
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

function hostPort(spec: string, n: number, defaultPort: number, bad: (why: string) => Error): RedisHostPort {
  if (!spec) throw bad(`has an empty host (number ${n} of the comma-separated list)`);
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(spec);
  const host = m?.[1] ?? '';
  if (!HOST.test(host)) throw bad(`has a bad host (number ${n} of the list): use host:port, or [ipv6]:port`);
  const portText = m?.[2];
  const port = portText === undefined ? defaultPort : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) throw bad(`has a bad port (host number ${n} of the list): a port is 1-65535`);
  return { host: host.replace(/^\[|\]$/g, ''), port };
}
