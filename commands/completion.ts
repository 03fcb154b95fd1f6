import { Argument, Command, type Option } from 'commander';

/** One command of the tree, as the completion scripts need it. */
interface Node {
  /** `/`, `/trace`, `/trace/find`... */
  path: string;
  subcommands: { name: string; description: string }[];
  options: { flags: string[]; description: string; takesValue: boolean; choices: string[] }[];
  /** Choices of its positional arguments (e.g. `completion <shell>`). */
  argChoices: string[];
}

const SHELLS = ['bash', 'zsh', 'fish'] as const;

const firstLine = (s: string) => s.split('\n')[0].trim();

/** Walks the commander tree: every command, its subcommands and options (help and version included). */
export function completionTree(program: Command): Node[] {
  const nodes: Node[] = [];
  const walk = (cmd: Command, path: string) => {
    const help = cmd.createHelp();
    const options: Option[] = help.visibleOptions(cmd);
    nodes.push({
      path,
      subcommands: cmd.commands.map((c) => ({ name: c.name(), description: firstLine(c.description()) })),
      options: options.map((o) => ({
        flags: [o.long, o.short].filter((f): f is string => Boolean(f)),
        description: firstLine(o.description),
        takesValue: o.required || o.optional,
        choices: o.argChoices ?? [],
      })),
      argChoices: cmd.registeredArguments.flatMap((a) => a.argChoices ?? []),
    });
    for (const c of cmd.commands) walk(c, path === '/' ? `/${c.name()}` : `${path}/${c.name()}`);
  };
  walk(program, '/');
  return nodes;
}

const valueOptions = (nodes: Node[]) => {
  const m = new Map<string, string[]>();
  for (const n of nodes)
    for (const o of n.options) if (o.takesValue) for (const f of o.flags) m.set(f, [...new Set([...(m.get(f) ?? []), ...o.choices])]);
  return m;
};

const subPaths = (nodes: Node[]) => nodes.filter((n) => n.path !== '/').map((n) => n.path);

function bash(nodes: Node[]): string {
  const words = (n: Node) => [...n.subcommands.map((s) => s.name), ...n.argChoices, ...n.options.flatMap((o) => o.flags)].join(' ');
  const values = [...valueOptions(nodes)];
  return `# detektr completion for bash: source <(detektr completion bash)
_detektr() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmdpath="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$cmdpath/$w" in
      ${subPaths(nodes).join('|')}) cmdpath="$cmdpath/$w" ;;
    esac
  done
  case "$prev" in
${values.map(([flag, choices]) => `    ${flag}) COMPREPLY=(${choices.length ? `$(compgen -W "${choices.join(' ')}" -- "$cur")` : ''}); return ;;`).join('\n')}
  esac
  case "\${cmdpath:-/}" in
${nodes.map((n) => `    ${n.path}) COMPREPLY=($(compgen -W "${words(n)}" -- "$cur")) ;;`).join('\n')}
  esac
}
complete -o default -F _detektr detektr
`;
}

const zq = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

function zsh(nodes: Node[]): string {
  const entries = (n: Node) => [
    ...n.subcommands.map((s) => zq(`${s.name}:${s.description}`)),
    ...n.argChoices.map((c) => zq(c)),
    ...n.options.flatMap((o) => o.flags.map((f) => zq(`${f}:${o.description}`))),
  ];
  const values = [...valueOptions(nodes)];
  return `#compdef detektr
# detektr completion for zsh: source <(detektr completion zsh) after compinit, or save as _detektr in $fpath
_detektr() {
  local cmdpath="" w i
  local -a opts
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    case "$cmdpath/$w" in
      ${subPaths(nodes).join('|')}) cmdpath="$cmdpath/$w" ;;
    esac
  done
  case "\${words[CURRENT-1]}" in
${values.map(([flag, choices]) => `    ${flag}) ${choices.length ? `opts=(${choices.map(zq).join(' ')}); _describe 'value' opts` : '_files'}; return ;;`).join('\n')}
  esac
  case "\${cmdpath:-/}" in
${nodes.map((n) => `    ${n.path}) opts=(${entries(n).join(' ')}) ;;`).join('\n')}
  esac
  _describe 'detektr' opts
}
if (( $+functions[compdef] )); then compdef _detektr detektr; fi
`;
}

const fq = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

function fish(nodes: Node[]): string {
  const lines = [
    '# detektr completion for fish: detektr completion fish | source',
    'function __detektr_path',
    "    set -l path ''",
    '    for t in (commandline -opc)[2..-1]',
    '        switch "$path/$t"',
    `            case ${subPaths(nodes).join(' ')}`,
    '                set path "$path/$t"',
    '        end',
    '    end',
    '    test -n "$path"; and echo $path; or echo /',
    'end',
    'complete -c detektr -f',
  ];
  for (const n of nodes) {
    const when = `-n ${fq(`test (__detektr_path) = ${n.path}`)}`;
    for (const s of n.subcommands) lines.push(`complete -c detektr ${when} -a ${fq(s.name)} -d ${fq(s.description)}`);
    if (n.argChoices.length) lines.push(`complete -c detektr ${when} -a ${fq(n.argChoices.join(' '))}`);
    for (const o of n.options) {
      const long = o.flags.find((f) => f.startsWith('--'));
      const short = o.flags.find((f) => !f.startsWith('--'));
      const value = o.takesValue ? (o.choices.length ? ` -x -a ${fq(o.choices.join(' '))}` : ' -r -F') : '';
      lines.push(
        `complete -c detektr ${when}${long ? ` -l ${long.slice(2)}` : ''}${short ? ` -s ${short.slice(1)}` : ''}${value} -d ${fq(o.description)}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}

export function completionScript(shell: (typeof SHELLS)[number], program: Command): string {
  const nodes = completionTree(program);
  return shell === 'bash' ? bash(nodes) : shell === 'zsh' ? zsh(nodes) : fish(nodes);
}

export function completionCommand(): Command {
  return new Command('completion')
    .description('print a shell completion script: source <(detektr completion bash), likewise zsh; fish: detektr completion fish | source')
    .addArgument(new Argument('<shell>', 'bash | zsh | fish').choices(SHELLS))
    .action(async (shell: (typeof SHELLS)[number]) => {
      // This process loaded only `completion`: build the whole tree to describe it.
      const { buildProgram } = await import('./index.js');
      process.stdout.write(completionScript(shell, await buildProgram()));
    });
}
