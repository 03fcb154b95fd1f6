const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const SECRET_PARAM = /([?&;](?:pass|password|passwd|pwd|secret|token|access_token|api_?key|auth|sentinel_?password)=)[^&#;]*/gi;
const MASK = '***';

/**
 * Masks the password in `scheme://user:password@host...` (any scheme: rtsp, redis,
 * postgres...) and the values of credential-like query parameters, so a url can be
 * logged or shown in an error. Strings that are not urls come back unchanged.
 */
export function redactUrl(url: string): string {
  const scheme = SCHEME.exec(url);
  if (!scheme) return url;
  const head = scheme[0];
  let rest = url.slice(head.length);

  // FFmpeg takes the userinfo up to the last '@' before the path. Camera passwords often
  // hold unencoded '@' or '/', so when the authority has no '@' we still treat a
  // `user:...@` prefix as credentials: over-masking a display string beats leaking.
  const authorityEnd = rest.search(/[/?#]|$/);
  let at = rest.lastIndexOf('@', authorityEnd - 1);
  if (at < 0) {
    const colon = rest.indexOf(':');
    const lastAt = rest.lastIndexOf('@');
    if (colon >= 0 && colon < authorityEnd && lastAt > colon) at = lastAt;
  }
  if (at >= 0) {
    const colon = rest.indexOf(':');
    if (colon >= 0 && colon < at && colon + 1 < at) {
      rest = `${rest.slice(0, colon + 1)}${MASK}${rest.slice(at)}`;
    }
  }
  return head + rest.replace(SECRET_PARAM, `$1${MASK}`);
}
