/**
 * A column table: for each column of a table, its name, the type its values travel in, and
 * how to get the value from a row. The INSERT column list, the unnest() parameters and
 * their aliases, and the parameter values are all built from one such table, so they
 * cannot fall out of step.
 */
export type CellValue = string | number | boolean | null;

export interface ColumnSpec {
  /** The column of the table, and the name of the unnested value. */
  name: string;
  /** The PostgreSQL type of the array the values travel in. */
  type: 'text' | 'float8' | 'int' | 'bool';
  /** The stored value as SQL, from the unnested one (`v`, qualified); default: as is. */
  sql?: (v: string) => string;
}

export interface Column<R, C = undefined> extends ColumnSpec {
  value: (row: R, context: C) => CellValue;
}

/** Milliseconds since the epoch, as a timestamptz. */
export const fromEpochMs = (v: string) => `'epoch'::timestamptz + ${v} * interval '1 millisecond'`;

export const columnList = (columns: readonly ColumnSpec[]) => columns.map((c) => c.name).join(', ');

/**
 * `SELECT <converted values> FROM unnest($first::type[], ...) AS <alias>(<names>)`: the
 * rows of one parameter array per column, named as the table's columns.
 */
export function unnestSelect(columns: readonly ColumnSpec[], alias: string, first = 1): string {
  const params = columns.map((c, i) => `$${first + i}::${c.type}[]`).join(', ');
  const values = columns.map((c) => (c.sql ? `${c.sql(`${alias}.${c.name}`)} AS ${c.name}` : `${alias}.${c.name}`)).join(', ');
  return `SELECT ${values}\n  FROM unnest(${params})\n       AS ${alias}(${columnList(columns)})`;
}

/** An empty array per column, `size` long (shortened by the caller to what it filled). */
export function newColumns(columns: readonly ColumnSpec[], size: number): CellValue[][] {
  return columns.map(() => new Array<CellValue>(size));
}

/** Fills row `i` of the column arrays from `row`. */
export function setRow<R, C>(columns: readonly Column<R, C>[], arrays: CellValue[][], i: number, row: R, context: C): void {
  for (let k = 0; k < columns.length; k++) arrays[k][i] = columns[k].value(row, context);
}

/**
 * The PostgreSQL array literal of a column. pg's generic array serialisation cost about
 * as much as the INSERT itself at 10k-event batches; this is several times cheaper: every
 * string is quoted (so "NULL" stays a string), and escaped only when it holds a quote or a
 * backslash; U+0000, which text cannot hold, is dropped.
 */
export function arrayLiteral(values: readonly CellValue[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) parts[i] = 'NULL';
    else if (typeof v === 'number') parts[i] = String(v);
    else if (typeof v === 'boolean') parts[i] = v ? 't' : 'f';
    else if (v.includes('"') || v.includes('\\') || v.includes('\0')) parts[i] = `"${v.replaceAll('\0', '').replace(/[\\"]/g, '\\$&')}"`;
    else parts[i] = `"${v}"`;
  }
  return `{${parts.join(',')}}`;
}
