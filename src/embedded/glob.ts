/** Redis glob patterns (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a-z]`, `\x`, over byte strings. */
export function globToRegExp(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '\\' && i + 1 < pattern.length) re += escape(pattern[++i]);
    else if (c === '[') {
      let j = i + 1;
      let negate = false;
      if (pattern[j] === '^') {
        negate = true;
        j++;
      }
      let cls = '';
      while (j < pattern.length && pattern[j] !== ']') {
        if (pattern[j] === '\\' && j + 1 < pattern.length) {
          cls += escapeClass(pattern[j + 1]);
          j += 2;
        } else if (pattern[j + 1] === '-' && j + 2 < pattern.length && pattern[j + 2] !== ']') {
          let a = pattern[j];
          let b = pattern[j + 2];
          if (a > b) [a, b] = [b, a];
          cls += `${escapeClass(a)}-${escapeClass(b)}`;
          j += 3;
        } else {
          cls += escapeClass(pattern[j]);
          j++;
        }
      }
      // Redis treats an unterminated class as running to the end of the pattern.
      re += cls ? `[${negate ? '^' : ''}${cls}]` : negate ? '[\\s\\S]' : '(?!)';
      i = j;
    } else re += escape(c);
  }
  return new RegExp(`${re}$`);
}

function escape(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? `\\${c}` : c;
}

function escapeClass(c: string): string {
  return /[\\\]^-]/.test(c) ? `\\${c}` : c;
}
