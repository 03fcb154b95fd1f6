import Table from 'cli-table3';

/** Prints benchmark rows as a table (stdout), columns in the order of the first row. */
export function printTable(title: string, rows: Record<string, string | number>[]): void {
  if (!rows.length) return;
  const head = Object.keys(rows[0]);
  const table = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) table.push(head.map((h) => (typeof r[h] === 'number' ? fmt(r[h] as number) : String(r[h] ?? ''))));
  process.stdout.write(`${title}\n${table.toString()}\n`);
}

function fmt(n: number): string {
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 1 ? n.toFixed(2) : n.toFixed(3);
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
