import pc from 'picocolors';

export type Colors = ReturnType<typeof pc.createColors>;

/**
 * Whether to colour what goes to `stream`: never with NO_COLOR set (no-color.org), always
 * with FORCE_COLOR set to anything but 0/false, otherwise only on a terminal that is not
 * `dumb`. (picocolors' own guess also colours pipes when CI is set.)
 */
export function colorEnabled(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}

/** picocolors' functions, each the identity when colour is off. */
export function colors(enabled: boolean): Colors {
  return pc.createColors(enabled);
}

/**
 * Libraries that decide for themselves (ink through chalk, cli-table3 through @colors) honour
 * FORCE_COLOR=0 but not NO_COLOR: translate it once, before they load.
 */
export function applyNoColor(env: NodeJS.ProcessEnv = process.env): void {
  if (env.NO_COLOR && env.FORCE_COLOR === undefined) env.FORCE_COLOR = '0';
}

export type Style = 'red' | 'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | 'gray' | 'bold';
export type Paint = (style: Style, text: string) => string;

/** A painter by style name, for renderers that pick a style from data (a frame's state, say). */
export function painter(enabled?: boolean): Paint {
  const c = colors(Boolean(enabled));
  return (style, text) => c[style](text);
}
