import { redactUrl } from './redact.js';

const URL_IN_TEXT = /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g;

/** Redacts every URL found inside free text (log lines, error messages, "id=url" specs). */
export function redactSecrets(text: string): string {
  return text.replace(URL_IN_TEXT, (url) => redactUrl(url));
}
