/** A sorted set: members (byte strings) with scores, ordered by score then member bytes. */
export class SortedSet {
  readonly scores = new Map<string, number>();
  private sorted: [string, number][] | undefined;

  get size(): number {
    return this.scores.size;
  }

  /** Sets a member's score; true when the member is new. */
  set(member: string, score: number): boolean {
    const had = this.scores.has(member);
    if (had && this.scores.get(member) === score) return false;
    this.scores.set(member, score);
    this.sorted = undefined;
    return !had;
  }

  delete(member: string): boolean {
    if (!this.scores.delete(member)) return false;
    this.sorted = undefined;
    return true;
  }

  /** Members in order (cached until the next change). */
  ordered(): [string, number][] {
    this.sorted ??= [...this.scores].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return this.sorted;
  }
}

export interface ScoreBound {
  value: number;
  exclusive: boolean;
}

export function inRange(score: number, min: ScoreBound, max: ScoreBound): boolean {
  const aboveMin = min.exclusive ? score > min.value : score >= min.value;
  const belowMax = max.exclusive ? score < max.value : score <= max.value;
  return aboveMin && belowMax;
}

/** Redis 7.0's reply form of a double score: C's `%.17g` (`0.1` is `0.10000000000000001`), inf as `inf`. */
export function formatScore(score: number): string {
  if (score === Infinity) return 'inf';
  if (score === -Infinity) return '-inf';
  if (score === 0) return Object.is(score, -0) ? '-0' : '0';
  const [mantissa, expText] = score.toExponential(16).split('e');
  const exp = Number(expText);
  const trim = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (exp < -4 || exp >= 17) {
    const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : String(Math.abs(exp));
    return `${trim(mantissa)}e${exp < 0 ? '-' : '+'}${e}`;
  }
  return trim(score.toFixed(Math.max(0, 16 - exp)));
}
