import { redactUrl } from './redact.js';

const URL_IN_TEXT = /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g;
const BEARER = /\b(Bearer\s+)[A-Za-z0-9\-._~+/=]+/gi;
const MASK = '***';
/** Shorter secrets are only masked where they are the whole text: masking every occurrence of a short string would mangle logs. */
const MIN_MASKED_IN_TEXT = 8;
const secretValues = new Set<string>();

/**
 * Registers a secret that is not a URL (an API token) so that it is masked wherever it
 * turns up: in the effective config printed by `config show` or logged at start, in log
 * lines and in error messages. The config loader registers every secret key's value.
 */
export function registerSecretValue(value: string | undefined): void {
  if (!value) return;
  secretValues.add(value);
  const escaped = JSON.stringify(value).slice(1, -1); // as it appears inside a JSON log line
  if (escaped !== value) secretValues.add(escaped);
}

/**
 * Redacts every URL found inside free text (log lines, error messages, "id=url" specs),
 * every registered secret value and every `Bearer <token>`.
 */
export function redactSecrets(text: string): string {
  let out = text;
  for (const secret of secretValues) {
    if (out === secret) return MASK;
    if (secret.length >= MIN_MASKED_IN_TEXT && out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out.replace(BEARER, `$1${MASK}`).replace(URL_IN_TEXT, (url) => redactUrl(url));
}

const SCHEME_IN_TEXT = /[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/**
 * Redacts one whole setting value (a URL, or a camera's "id=url"): unlike in free text,
 * the URL runs to the end of the value, so a password holding a space or a quote (which
 * would end a URL in free text) is masked too.
 */
export function redactValue(value: string): string {
  const m = SCHEME_IN_TEXT.exec(value);
  return redactSecrets(m ? value.slice(0, m.index) + redactUrl(value.slice(m.index)) : value);
}
